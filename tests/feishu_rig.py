"""A Cadence process connected to the Feishu fake over the long connection, for end-to-end tests."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import text

from bot.app import App, platforms_from
from bot.settings import FeishuSettings
from conversations.org_service import import_org_file
from storage.clock import set_clock
from tests.fakes.feishu import FeishuFake
from tests.harness import SAMPLE_ORG, Clock
from tests.harness import test_settings as settings_for

# lark-oapi keeps tenant tokens in a process-wide cache keyed by app id: one app id per rig
_APP_IDS = itertools.count(1)


def feishu_users() -> dict[str, str]:
    """Every sample-org email with a Feishu open_id: the org file's where it has one, else a made-up one."""
    people = yaml.safe_load(SAMPLE_ORG.read_text(encoding="utf-8"))["people"]
    return {
        p["email"]: (p.get("ids") or {}).get("feishu")
        or "ou_" + re.sub(r"[^a-z0-9]", "", p["email"].split("@")[0])
        for p in people
    }


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


class FeishuRig:
    """Cadence with Feishu enabled against the fake; ``settle`` waits for the work to finish."""

    def __init__(self, db_url: str, *, connection: str = "long") -> None:
        self.db_url = db_url
        self.connection = connection
        self.fake = FeishuFake(app_id=f"cli_rig{next(_APP_IDS):04d}")
        self.users = feishu_users()
        self.clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
        self.app: App | None = None

    async def start(self, *, import_org: bool = True) -> FeishuRig:
        """Start the fake (with the sample org as Feishu users) and Cadence."""
        set_clock(self.clock)
        await self.fake.start()
        for email, open_id in self.users.items():
            self.fake.add_user(open_id, name=email.split("@")[0], email=email)
        await self._boot()
        if import_org:
            assert self.app is not None
            await import_org_file(self.app.db, SAMPLE_ORG)
        return self

    async def _boot(self) -> None:
        settings = settings_for(self.db_url, http_port=0)
        settings.feishu = feishu_settings(
            self.fake,
            connection=self.connection,
            verification_token=self.fake.verification_token,
            encrypt_key=self.fake.encrypt_key,
        )
        self.app = App(settings, platforms=platforms_from(settings))
        await self.app.start()
        if self.connection == "long":
            await self.fake.wait_connected()

    async def restart(self) -> None:
        """A new Cadence process on the same database and the same fake Feishu."""
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

    async def stored(self, email: str) -> dict[str, Any]:
        """The person's stored answers, step → value."""
        from tests.harness import json_value

        rows = await self.rows(
            "select a.step, cast(a.value as text) from answer a join assignment s on s.id = a.assignment_id "
            "join person p on p.id = s.person_id where p.email = :email",
            email=email,
        )
        return {str(step): json_value(value) for step, value in rows}  # type: ignore[arg-type]

    async def rows(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        """Rows of a query on Cadence's database."""
        assert self.app is not None
        async with self.app.db.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]

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
