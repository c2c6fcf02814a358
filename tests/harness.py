"""A whole Cadence process in a test: real database, real engine, console platform, restartable.

Tests talk to it as people do (``say``, ``click``) and read back what each person was shown,
zulip-bots style: ``dialogue(email, [(said, expected), ...])`` checks a transcript in one call.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bot.app import App
from bot.platforms.console import ConsolePlatform, Said
from bot.settings import (
    DingtalkSettings,
    FeishuSettings,
    JiraSettings,
    LlmSettings,
    QuietSettings,
    Settings,
    SlackSettings,
)
from conversations.org_service import import_org_file
from scheduler.runner import TickResult
from storage.clock import set_clock

SAMPLE_ORG = Path(__file__).resolve().parents[1] / "examples" / "org.yaml"
HR = "zhao.min@example.com"
EMMA = "emma.smith@example.com"
LILEI = "li.lei@example.com"
MANAGER = "wang.fang@example.com"


def test_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings for a test process: the database and ``overrides``, nothing from the environment's
    platforms or task sources.

    Quiet hours are off unless a test turns them on: the sample org spans Shanghai and Los Angeles,
    whose daytimes never overlap, and most tests are about the conversation, not the clock.
    """
    overrides.setdefault("quiet", QuietSettings(enabled=False))
    # each section from the test alone (a test may switch one on), never from the environment
    overrides.setdefault("slack", SlackSettings())
    overrides.setdefault("feishu", FeishuSettings())
    overrides.setdefault("dingtalk", DingtalkSettings())
    overrides.setdefault("jira", JiraSettings())
    # 1:1 agendas go out on the scheduler's tick: only the tests about them switch them on
    overrides.setdefault("one_on_one_enabled", False)
    overrides.setdefault("llm", LlmSettings())
    return Settings(_env_file=None, database_url=db_url, **overrides)


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

    async def tick(self) -> TickResult:
        """One scheduler tick at the clock's time (the process first checks it leads), then delivery."""
        assert self.app is not None
        await self.app.scheduler.leadership.check()
        result = await self.app.scheduler.tick()
        await self.deliver()
        return result

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

    # ---- shared by the transcript and conversation tests: start, answer, read back ------------------

    async def start_cycle(self, ritual: str, *emails: str) -> None:
        """HR starts the first cycle (#1) of ``ritual`` for ``emails``, who each read their first question."""
        await self.dialogue(HR, [(f"cycle start {ritual} --people {','.join(emails)}", "周期 #1")])
        for email in emails:
            await self.inbox(email)

    async def answer_until(self, ritual: str, email: str, question: int) -> None:
        """``email`` answers the questions of ``ritual`` before ``question`` with their ``CANNED`` answers
        (one past the last question: all of them, which reaches the summary)."""
        for said in CANNED[ritual][email][: question - 1]:
            await self.say(email, said)

    async def at_question(self, ritual: str, email: str, question: int) -> None:
        """HR starts ``ritual`` for ``email``, who answers up to ``question`` with canned answers."""
        await self.start_cycle(ritual, email)
        await self.answer_until(ritual, email, question)

    async def submit_canned(self, ritual: str, email: str) -> None:
        """``email`` answers every question of ``ritual`` with canned answers and submits them."""
        await self.answer_until(ritual, email, len(CANNED[ritual][email]) + 1)
        said, thanks = SUBMIT[email]
        reply = await self.say(email, said)
        for expected in thanks:
            assert expected in reply, f"{email} submitted {ritual}; expected {expected!r} in:\n{reply}"

    async def stored(self, email: str, ritual: str | None = None, part: str | None = None) -> Answers:
        """``{step: (value, skipped)}`` of every answer ``email`` stored (only in ``ritual`` and in its
        ``part``, where given), in the order they were stored."""
        where, params = _assignment_filter(email, ritual, part)
        rows = await self.rows(
            "select a.step, cast(a.value as text), a.skipped from answer a "
            "join assignment s on s.id = a.assignment_id join person p on p.id = s.person_id "
            f"join cycle c on c.id = s.cycle_id where {where} order by a.id",
            **params,
        )
        return {step: (json_value(value), bool(skipped)) for step, value, skipped in rows}

    async def state(self, email: str, ritual: str | None = None) -> tuple[str, str | None, int]:
        """``(status, current_step, version)`` of ``email``'s one assignment (in ``ritual``, if given)."""
        where, params = _assignment_filter(email, ritual)
        rows = await self.rows(
            "select s.status, s.current_step, s.version from assignment s "
            f"join person p on p.id = s.person_id join cycle c on c.id = s.cycle_id where {where}",
            **params,
        )
        assert len(rows) == 1, rows
        return rows[0]

    async def start_and_converse(self, start: str, email: str, first: list[str], exchange: Exchange) -> None:
        """HR types ``start`` (which starts cycle #1); ``email`` is shown each of ``first`` in their inbox,
        then has the ``exchange`` (as in ``dialogue``)."""
        await self.dialogue(HR, [(start, "周期 #1")])
        inbox = await self.inbox(email)
        for expected in first:
            assert expected in inbox, f"expected {expected!r} in what {email} was shown first:\n{inbox}"
        await self.dialogue(email, exchange)

    async def say_changing_nothing(self, email: str, said: str, *expected: str) -> str:
        """``email`` types ``said``, is shown each of ``expected``, and every assignment and answer of
        theirs stays exactly as it was; returns what they were shown."""
        before = await self._assignments_and_answers(email)
        reply = await self.say(email, said)
        for shown in expected:
            assert shown in reply, f"{email} said {said[:60]!r}; expected {shown!r} in:\n{reply}"
        assert await self._assignments_and_answers(email) == before, f"{email} said {said[:60]!r}"
        return reply

    async def _assignments_and_answers(
        self, email: str
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        assignments = await self.rows(
            "select s.id, s.status, s.current_step, s.version from assignment s "
            "join person p on p.id = s.person_id where p.email = :email order by s.id",
            email=email,
        )
        answers = await self.rows(
            "select a.id, a.step, cast(a.value as text), a.skipped from answer a "
            "join assignment s on s.id = a.assignment_id join person p on p.id = s.person_id "
            "where p.email = :email order by a.id",
            email=email,
        )
        return assignments, answers


# a person's side of a conversation: what they say and a piece of text the answer must contain
Exchange = list[tuple[str, str]]
# ``{step: (value, skipped)}`` as ``Chat.stored`` reads it
Answers = dict[str, tuple[Any, bool]]

WEEKLY = "weekly_recap"
MONTHLY = "monthly_review"
QUARTERLY = "quarterly_assessment"

# Each person's answers to every question of a ritual (of the quarterly assessment: its self part), in order:
# to reach a later question quickly, or to answer the whole ritual.
CANNED: dict[str, dict[str, list[str]]] = {
    WEEKLY: {
        EMMA: ["Shipped the login page", "4", "Waiting on the design review", "Release 2.3", "no"],
        LILEI: ["完成了登录模块重构", "4", "等待设计评审", "准备发布 2.3", "否"],
    },
    MONTHLY: {
        EMMA: [
            "Launched billing v2",
            "On track",
            "4",
            "Profiling PostgreSQL queries",
            "skip",
            "Ship SSO",
            "skip",
        ],
        LILEI: ["上线了新版计费", "2", "4", "学会了性能分析", "跳过", "完成单点登录", "跳过"],
    },
    QUARTERLY: {
        EMMA: [
            "Cut p99 latency by 40%\nLaunched SSO",
            "Met",
            "Meets expectations",
            "Debugging",
            "Public speaking",
            "Launch v2",
        ],
        LILEI: [
            "重构支付网关 延迟降低 40%\n上线新登录流程",
            "1",
            "超出期望",
            "系统设计",
            "带新人",
            "完成数据库迁移",
        ],
    },
}
# what each person types to submit at the summary, and what the answer must contain
SUBMIT: dict[str, tuple[str, tuple[str, ...]]] = {
    EMMA: ("submit", ("Thank you!", "is submitted")),
    LILEI: ("提交", ("已提交",)),
}


def _assignment_filter(
    email: str, ritual: str | None = None, part: str | None = None
) -> tuple[str, dict[str, str]]:
    """The where clause (over person ``p``, assignment ``s``, cycle ``c``) and parameters that pick
    ``email``'s assignments, in ``ritual`` and its ``part`` where given."""
    conditions, params = ["p.email = :email"], {"email": email}
    if ritual is not None:
        conditions.append("c.ritual_key = :ritual")
        params["ritual"] = ritual
    if part is not None:
        conditions.append("s.part = :part")
        params["part"] = part
    return " and ".join(conditions), params


def json_value(raw: str | None) -> Any:
    """A JSON column selected as ``cast(... as text)``, which reads the same on both databases."""
    return None if raw is None else json.loads(raw)


def write_file(directory: Path, name: str, body: str) -> Path:
    """Write ``body`` (UTF-8) to ``directory/name``, creating the directory; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(body, encoding="utf-8")
    return path
