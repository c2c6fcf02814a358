"""A Cadence process connected to the Slack fake over Socket Mode, for end-to-end tests."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import text

from bot.app import App, platforms_from
from bot.platforms.slack import SlackPlatform
from bot.settings import SlackSettings
from conversations.org_service import import_org_file
from storage.clock import set_clock
from tests.fakes.slack import SlackFake
from tests.harness import SAMPLE_ORG, Clock
from tests.harness import test_settings as settings_for

BOT_TOKEN = "xoxb-2718281828-3141592653-Zq8Lw2XvR7tYbN4cKm9PdHs1"
APP_TOKEN = "xapp-1-A0CADENCE-1618033988-Kp3Lm8Qz2Wx7Rv4Ty9Nb6Hc"


def slack_users() -> dict[str, str]:
    """Every sample-org email with a Slack id: the org file's where it has one, else a made-up one."""
    people = yaml.safe_load(SAMPLE_ORG.read_text(encoding="utf-8"))["people"]
    users = {}
    for person in people:
        given = (person.get("ids") or {}).get("slack")
        users[person["email"]] = given or "U" + re.sub(
            r"[^A-Z0-9]", "", person["email"].split("@")[0].upper()
        )
    return users


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


class SlackRig:
    """Cadence with Slack enabled against the fake; ``settle`` waits for the work to finish."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.fake = SlackFake(users=slack_users())
        self.users = slack_users()
        self.clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
        self.app: App | None = None

    async def start(self, *, import_org: bool = True) -> SlackRig:
        """Start the fake and Cadence (connected over Socket Mode)."""
        set_clock(self.clock)
        await self.fake.start()
        await self._boot()
        if import_org:
            assert self.app is not None
            await import_org_file(self.app.db, SAMPLE_ORG)
        return self

    async def _boot(self) -> None:
        settings = settings_for(self.db_url)
        # no pacing here: it waits real seconds; tests/test_rate_limits.py covers it on a fake clock
        settings.slack = SlackSettings(
            enabled=True,
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            api_url=self.fake.base_url,
            per_recipient_per_s=None,
        )
        self.app = App(settings, platforms=platforms_from(settings))
        await self.app.start()
        await self.fake.wait_connected()

    async def restart(self) -> None:
        """A new Cadence process on the same database and the same fake Slack."""
        assert self.app is not None
        await self.app.stop()
        await self._boot()

    async def close(self) -> None:
        """Stop Cadence and the fake."""
        if self.app is not None:
            await self.app.stop()
        await self.fake.stop()
        set_clock(None)

    async def processed(self) -> int:
        """How many inbound events are fully handled."""
        assert self.app is not None
        async with self.app.db.engine.connect() as conn:
            done = await conn.execute(
                text("select count(*) from inboundevent where processed_at is not null")
            )
            return int(done.scalar_one())

    async def settle(self, expected_events: int) -> None:
        """Wait until ``expected_events`` events are handled in all, then deliver what they queued."""
        assert self.app is not None
        async with asyncio.timeout(10):
            while await self.processed() < expected_events:
                await asyncio.sleep(0.01)
        await self.app.delivery.drain()

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
