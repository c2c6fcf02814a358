"""A whole Cadence process in a test: real database, real engine, console platform, restartable.

Tests talk to it as people do (``say``, ``click``) and read back what each person was shown,
zulip-bots style: ``dialogue(email, [(said, expected), ...])`` checks a transcript in one call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bot.app import App
from bot.platforms.console import ConsolePlatform, Said
from bot.settings import DingtalkSettings, FeishuSettings, JiraSettings, Settings, SlackSettings
from conversations.org_service import import_org_file
from storage.clock import set_clock

SAMPLE_ORG = Path(__file__).resolve().parents[1] / "examples" / "org.yaml"
HR = "zhao.min@example.com"
EMMA = "emma.smith@example.com"
LILEI = "li.lei@example.com"
MANAGER = "wang.fang@example.com"


def test_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings for a test process: only the database, nothing from the environment's platforms."""
    return Settings(
        _env_file=None,
        database_url=db_url,
        slack=SlackSettings(),
        feishu=FeishuSettings(),
        dingtalk=DingtalkSettings(),
        jira=JiraSettings(),
        **overrides,
    )


class Clock:
    """A controllable clock for everything stored (snoozes, due dates)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move time forward."""
        self.now += timedelta(**delta)


class Chat:
    """One Cadence process (restartable) with people chatting through the console platform."""

    def __init__(self, db_url: str, **settings: Any) -> None:
        self.settings = test_settings(db_url, **settings)
        self.clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
        self.app: App | None = None
        self.console = ConsolePlatform()
        self._seen: dict[str, int] = {}

    async def start(self, *, org: Path | None = SAMPLE_ORG) -> Chat:
        """Start the process (migrating) and import ``org`` on first start."""
        set_clock(self.clock)
        await self._boot()
        if org is not None:
            assert self.app is not None
            await import_org_file(self.app.db, org)
        return self

    async def _boot(self) -> None:
        self.console = ConsolePlatform()
        self._seen = {}
        self.app = App(self.settings, platforms={"console": self.console})
        await self.app.start()

    async def restart(self) -> None:
        """Stop the process and start a new one on the same database (nothing kept in memory)."""
        assert self.app is not None
        await self.app.stop()
        await self._boot()

    async def close(self) -> None:
        """Stop the process and restore the wall clock."""
        if self.app is not None:
            await self.app.stop()
        set_clock(None)

    def _new_for(self, email: str) -> list[Said]:
        mine = [s for s in self.console.transcript if s.recipient == email]
        new = mine[self._seen.get(email, 0) :]
        self._seen[email] = len(mine)
        return new

    async def deliver(self) -> None:
        """Run the delivery worker until nothing is due."""
        assert self.app is not None
        await self.app.delivery.drain()

    async def say(self, email: str, said: str) -> str:
        """``email`` types ``said``; returns everything they were shown as a result, joined."""
        await self.console.say(email, said)
        await self.deliver()
        return "\n".join(s.text for s in self._new_for(email))

    async def inbox(self, email: str) -> str:
        """What ``email`` was shown since last looked at (e.g. prompts from a cycle start)."""
        await self.deliver()
        return "\n".join(s.text for s in self._new_for(email))

    def last_buttons(self, email: str) -> list[tuple[str, str]]:
        """``(label, action value)`` of the buttons on the newest message to ``email`` that has any."""
        for said in reversed(self.console.transcript):
            if said.recipient == email and said.message.buttons:
                return [(b.label, b.action.encode()) for b in said.message.buttons]
        raise AssertionError(f"no message with buttons was sent to {email}")

    async def click(self, email: str, action: str) -> str:
        """``email`` clicks a button with the encoded ``action``; returns what they were shown."""
        await self.console.click(email, action)
        await self.deliver()
        return "\n".join(s.text for s in self._new_for(email))

    async def dialogue(self, email: str, pairs: list[tuple[str, str]]) -> None:
        """Check a whole exchange: each thing said and a piece of text the answer must contain."""
        for said, expected in pairs:
            got = await self.say(email, said)
            assert expected in got, f"{email} said {said[:60]!r}; expected {expected!r} in:\n{got}"

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from the database (what was stored is what counts)."""
        assert self.app is not None
        async with self.app.db.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """All rows of a query."""
        assert self.app is not None
        async with self.app.db.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
