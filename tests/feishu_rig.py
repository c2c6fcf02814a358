"""A Cadence process connected to the Feishu fake over the long connection, for end-to-end tests."""

from __future__ import annotations

import itertools
from typing import Any

from bot.settings import FeishuSettings, Settings
from tests.fakes.feishu import FeishuFake
from tests.platform_rig import PlatformRig, sample_ids

# lark-oapi keeps tenant tokens in a process-wide cache keyed by app id: one app id per rig
_APP_IDS = itertools.count(1)


def feishu_users() -> dict[str, str]:
    """Every sample-org email with a Feishu open_id: the org file's where it has one, else a made-up one."""
    return sample_ids("feishu", "ou_")


def feishu_settings(fake: FeishuFake, **overrides: Any) -> FeishuSettings:
    """The Feishu adapter pointed at the fake, without the per-person pacing (it waits real seconds)."""
    values: dict[str, Any] = {
        "enabled": True,
        "app_id": fake.app_id,
        "app_secret": fake.app_secret,
        "domain": fake.url,
        "per_recipient_per_s": None,
        "rate_per_s": None,
    }
    return FeishuSettings(**(values | overrides))


class FeishuRig(PlatformRig):
    """Cadence with Feishu enabled against the fake (the long connection, or webhooks)."""

    def __init__(self, db_url: str, *, connection: str = "long") -> None:
        super().__init__(db_url)
        self.connection = connection
        self.fake = FeishuFake(app_id=f"cli_rig{next(_APP_IDS):04d}")
        self.users = feishu_users()

    def add_users(self) -> None:
        """The sample org's people as Feishu users, with their emails."""
        for email, open_id in self.users.items():
            self.fake.add_user(open_id, name=email.split("@")[0], email=email)

    def platform_settings(self, settings: Settings) -> None:
        """Feishu on, at the fake, with the fake's webhook secrets."""
        settings.feishu = feishu_settings(
            self.fake,
            connection=self.connection,
            verification_token=self.fake.verification_token,
            encrypt_key=self.fake.encrypt_key,
        )

    async def connected(self) -> None:
        """Connected over the long connection (webhook mode waits for Feishu instead)."""
        if self.connection == "long":
            await self.fake.wait_connected()

    def cards_to(self, email: str) -> list[dict[str, Any]]:
        """The cards the person has, as Feishu shows them now (the latest update of each)."""
        return [(m.updates[-1] if m.updates else m.content) for m in self.fake.messages_to(self.users[email])]


def card_text(card: dict[str, Any]) -> str:
    """Every text a person reads on a card, in order, one per line."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("tag") in ("plain_text", "markdown") and isinstance(node.get("content"), str):
                found.append(node["content"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return "\n".join(found)


def card_buttons(card: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, callback value) of every button on a card."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("tag") == "button":
                value: dict[str, Any] = next(
                    (b.get("value") for b in node.get("behaviors", []) if b.get("type") == "callback"), {}
                )
                found.append((node["text"]["content"], value or {}))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return found
