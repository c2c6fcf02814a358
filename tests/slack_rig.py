"""A Cadence process connected to the Slack fake over Socket Mode, for end-to-end tests."""

from __future__ import annotations

from typing import Any

from bot.platforms.slack import SlackPlatform
from bot.settings import Settings, SlackSettings
from tests.fakes.slack import SlackFake
from tests.platform_rig import PlatformRig, sample_ids

BOT_TOKEN = "xoxb-2718281828-3141592653-Zq8Lw2XvR7tYbN4cKm9PdHs1"
APP_TOKEN = "xapp-1-A0CADENCE-1618033988-Kp3Lm8Qz2Wx7Rv4Ty9Nb6Hc"


def slack_users() -> dict[str, str]:
    """Every sample-org email with a Slack id: the org file's where it has one, else a made-up one."""
    return {email: made_up.upper() for email, made_up in sample_ids("slack", "U").items()}


def platform_for(fake: SlackFake) -> SlackPlatform:
    """The real Slack adapter pointed at the fake, without Slack's per-channel pacing (it waits)."""
    settings = SlackSettings(
        enabled=True,
        bot_token=BOT_TOKEN,
        app_token=APP_TOKEN,
        api_url=fake.base_url,
        per_recipient_per_s=None,
    )
    return SlackPlatform(settings)


class SlackRig(PlatformRig):
    """Cadence with Slack enabled against the fake (Socket Mode); ``settle`` waits for the work to finish."""

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url)
        self.fake = SlackFake(users=slack_users())
        self.users = slack_users()

    def platform_settings(self, settings: Settings) -> None:
        """Slack on, at the fake, without per-channel pacing (it waits real seconds;
        tests/test_rate_limits.py covers it on a fake clock)."""
        settings.slack = SlackSettings(
            enabled=True,
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            api_url=self.fake.base_url,
            per_recipient_per_s=None,
        )

    async def envelope(self, kind: str, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
        """Push one envelope and wait for Cadence's acknowledgement of it."""
        envelope_id = await self.fake.send_envelope(kind, payload, **options)
        return await self.fake.wait_ack(envelope_id)

    def last_message(self, email: str) -> dict[str, Any]:
        """The newest message in the person's DM, as Slack now shows it."""
        messages = self.fake.messages_to(self.users[email])
        assert messages, f"no message was posted to {email}"
        return messages[-1]

    def buttons(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The buttons of a posted message."""
        return [
            e for block in message.get("blocks", []) if block["type"] == "actions" for e in block["elements"]
        ]
