"""What every chat-platform rig shares: Cadence against a platform's fake, with the sample org.

A rig starts the fake, makes the sample org's people users of it (``add_users``), boots a real
``App`` with that platform switched on (``platform_settings``), imports the org, and can restart the
process on the same database. ``settle`` waits until the inbound events are handled and their
messages delivered; ``stored`` reads a person's answers as the database has them.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, Self

import yaml
from sqlalchemy import text

from bot.app import App, platforms_from
from bot.settings import Settings
from conversations.org_service import import_org_file
from storage.clock import set_clock
from tests.harness import SAMPLE_ORG, Clock, json_value
from tests.harness import test_settings as settings_for


def sample_ids(platform: str, made_up: str) -> dict[str, str]:
    """Every sample-org email with its id on ``platform``: the org file's, else ``made_up`` + local part.

    The made-up ids keep only the local part's letters and digits (``made_up`` + "emmasmith").
    """
    people = yaml.safe_load(SAMPLE_ORG.read_text(encoding="utf-8"))["people"]
    return {
        p["email"]: (p.get("ids") or {}).get(platform)
        or made_up + re.sub(r"[^a-z0-9]", "", p["email"].split("@")[0].lower())
        for p in people
    }


class PlatformRig(ABC):
    """Cadence connected to one platform's fake; subclasses name the fake and the settings."""

    fake: Any
    users: dict[str, str]

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
        self.app: App | None = None

    @abstractmethod
    def platform_settings(self, settings: Settings) -> None:
        """Switch the rig's platform on in ``settings``, pointed at the fake."""

    def add_users(self) -> None:  # noqa: B027 (a hook: most fakes need no users added)
        """Make the sample org's people users of the fake (nothing by default)."""

    async def connected(self) -> None:
        """Wait until Cadence is connected to the fake."""
        await self.fake.wait_connected()

    async def start(self, *, import_org: bool = True) -> Self:
        """Start the fake and Cadence, and import the sample org."""
        set_clock(self.clock)
        await self.fake.start()
        self.add_users()
        await self._boot()
        if import_org:
            assert self.app is not None
            await import_org_file(self.app.db, SAMPLE_ORG)
        return self

    async def _boot(self) -> None:
        settings = settings_for(self.db_url, http_port=0)
        self.platform_settings(settings)
        self.app = App(settings, platforms=platforms_from(settings))
        await self.app.start()
        await self.connected()

    async def restart(self) -> None:
        """A new Cadence process on the same database and the same fake."""
        assert self.app is not None
        await self.app.stop()
        await self._boot()

    async def close(self) -> None:
        """Stop Cadence and the fake."""
        if self.app is not None:
            await self.app.stop()
        await self.fake.stop()
        set_clock(None)

    async def rows(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        """Rows of a query on Cadence's database."""
        assert self.app is not None
        async with self.app.db.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]

    async def processed(self) -> int:
        """How many inbound events are fully handled."""
        (done,) = await self.rows("select count(*) from inboundevent where processed_at is not null")
        return int(done[0])  # type: ignore[call-overload]

    async def settle(self, expected_events: int) -> None:
        """Wait until ``expected_events`` events are handled in all, then deliver what they queued."""
        assert self.app is not None
        async with asyncio.timeout(10):
            while await self.processed() < expected_events:
                await asyncio.sleep(0.01)
        await self.app.delivery.drain()

    async def stored(self, email: str) -> dict[str, Any]:
        """The person's stored answers, step → value."""
        rows = await self.rows(
            "select a.step, cast(a.value as text) from answer a join assignment s on s.id = a.assignment_id "
            "join person p on p.id = s.person_id where p.email = :email",
            email=email,
        )
        return {str(step): json_value(value) for step, value in rows}  # type: ignore[arg-type]
