"""Outbox delivery through a fake platform adapter that records sends and fails on demand: retries at
the time the platform asks for, dead rows, obsolete prompts, updates of earlier messages, leases."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from bot.app import App
from bot.delivery import FLUSH_ROWS, LEASE, MAX_ATTEMPTS, Delivery
from bot.platforms.base import EventHandler, IncomingEvent, Platform, SendError
from bot.rate_limits import RECIPIENT_MARGIN, RateLimiter
from conversations.i18n import t
from conversations.messages import Message
from conversations.org_service import import_org_file
from conversations.prompts import prompt_key
from storage import outbox, people
from storage.clock import set_clock
from storage.models import Assignment, Outbox
from tests.harness import EMMA, HR, LILEI, SAMPLE_ORG, Clock
from tests.harness import test_settings as settings_for

HELP_TITLE = t("cmd.help_title", "zh-CN")


class ProcessDied(BaseException):
    """The process is killed in the middle of a send (not an error the worker could handle)."""


@dataclass(frozen=True)
class Sent:
    """One call the platform received."""

    call: str  # "send" or "update"
    recipient: str
    key: str
    message: Message
    message_id: str


@dataclass
class FakePlatform(Platform):
    """A platform adapter at the edge: records every call; ``failures`` are raised by the next calls."""

    name = "console"  # the rows the router queues for console events route here
    calls: list[Sent] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    fail_always: BaseException | None = None
    _on_event: EventHandler | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self, on_event: EventHandler) -> None:
        self._on_event = on_event

    async def stop(self) -> None:
        self._on_event = None

    def _maybe_fail(self, key: str) -> None:
        self.attempts.append(key)
        if self.fail_always is not None:
            raise self.fail_always
        if self.failures:
            raise self.failures.pop(0)

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        self._maybe_fail(key)
        message_id = f"m{next(self._ids)}"
        self.calls.append(Sent("send", recipient, key, message, message_id))
        return message_id

    async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None:
        self._maybe_fail(key)
        self.calls.append(Sent("update", recipient, key, message, message_id))

    async def say(self, email: str, text: str) -> None:
        """A person types ``text`` (the event reaches the app as any platform's would)."""
        assert self._on_event is not None
        await self._on_event(
            IncomingEvent("console", uuid.uuid4().hex, email, "text", text=text, email=email)
        )

    def to(self, recipient: str) -> list[Sent]:
        return [c for c in self.calls if c.recipient == recipient]


@dataclass
class Rig:
    app: App
    platform: FakePlatform
    clock: Clock

    async def drain(self) -> int:
        return await self.app.delivery.drain()

    async def rows(self) -> list[Outbox]:
        async with self.app.db.sessions() as session:
            return list((await session.exec(select(Outbox).order_by(col(Outbox.id)))).all())

    async def row(self, key: str) -> Outbox:
        found = [r for r in await self.rows() if r.idempotency_key == key]
        assert len(found) == 1, key
        return found[0]

    async def help_row(self) -> Outbox:
        """The one reply row of HR's ``帮助`` command."""
        found = [r for r in await self.rows() if r.kind == "reply" and r.idempotency_key.endswith(":r1")]
        assert len(found) == 1
        return found[0]

    async def assignment_of_lilei(self) -> Assignment:
        async with self.app.db.sessions() as session:
            rows = (await session.exec(select(Assignment))).all()
        assert len(rows) == 1
        return rows[0]


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    set_clock(clock)
    platform = FakePlatform()
    app = App(settings_for(db_url), platforms={"console": platform})
    await app.start()
    await import_org_file(app.db, SAMPLE_ORG)
    try:
        yield Rig(app, platform, clock)
    finally:
        await app.stop()
        set_clock(None)


async def test_a_rate_limited_send_is_retried_when_the_platform_said(rig: Rig) -> None:
    rig.platform.failures = [SendError("ratelimited", retry_after=30)]
    await rig.platform.say(HR, "帮助")

    assert await rig.drain() == 1
    row = await rig.help_row()
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "ratelimited")
    assert row.due_at == rig.clock.now + timedelta(seconds=30)
    assert rig.platform.calls == []

    rig.clock.advance(seconds=29)
    assert await rig.drain() == 0
    assert rig.platform.calls == []

    rig.clock.advance(seconds=1)
    assert await rig.drain() == 1
    assert await rig.drain() == 0
    (sent,) = rig.platform.to(HR)
    assert HELP_TITLE in sent.message.plain_text()
    row = await rig.help_row()
    assert (row.status, row.attempts, row.last_error, row.platform_message_id) == (
        "sent",
        2,
        None,
        sent.message_id,
    )
    assert row.sent_at == rig.clock.now


async def test_a_permanent_failure_is_dead_at_once_with_its_reason(rig: Rig) -> None:
    rig.platform.failures = [SendError("user_not_found", permanent=True)]
    await rig.platform.say(HR, "帮助")

    await rig.drain()
    rig.clock.advance(days=1)
    await rig.drain()

    row = await rig.help_row()
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "user_not_found")
    assert rig.platform.attempts == [row.idempotency_key]
    assert rig.platform.calls == []


async def test_a_send_that_keeps_failing_is_dead_after_max_attempts(rig: Rig) -> None:
    rig.platform.fail_always = SendError("service unavailable")
    await rig.platform.say(HR, "帮助")

    for _ in range(MAX_ATTEMPTS + 3):
        await rig.drain()
        rig.clock.advance(seconds=301)  # past the longest backoff

    row = await rig.help_row()
    assert (row.status, row.attempts, row.last_error) == ("dead", MAX_ATTEMPTS, "service unavailable")
    assert rig.platform.attempts == [row.idempotency_key] * MAX_ATTEMPTS


async def test_rate_limited_sends_are_not_given_up_after_max_attempts(rig: Rig) -> None:
    rig.platform.fail_always = SendError("ratelimited", retry_after=1)
    await rig.platform.say(HR, "帮助")

    for _ in range(MAX_ATTEMPTS + 3):
        await rig.drain()
        rig.clock.advance(seconds=1)
    rig.platform.fail_always = None
    await rig.drain()

    row = await rig.help_row()
    assert (row.status, row.attempts) == ("sent", MAX_ATTEMPTS + 4)


async def test_an_unexpected_fault_is_retried_with_backoff_and_recorded(rig: Rig) -> None:
    rig.platform.failures = [ConnectionResetError("connection reset by peer")]
    await rig.platform.say(HR, "帮助")

    await rig.drain()
    row = await rig.help_row()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None and "connection reset by peer" in row.last_error
    # the first backoff is at most 2 s (full jitter)
    assert rig.clock.now <= row.due_at <= rig.clock.now + timedelta(seconds=2)

    rig.clock.advance(seconds=2)
    await rig.drain()
    assert [c.call for c in rig.platform.to(HR)] == ["send"]
    assert (await rig.help_row()).status == "sent"


async def test_a_row_left_sending_by_a_dead_process_is_sent_after_its_lease(rig: Rig) -> None:
    rig.platform.failures = [ProcessDied()]
    await rig.platform.say(HR, "帮助")

    with pytest.raises(ProcessDied):
        await rig.drain()
    row = await rig.help_row()
    assert (row.status, row.due_at) == ("sending", rig.clock.now + LEASE)

    assert await rig.drain() == 0  # still leased to the process that died
    rig.clock.advance(seconds=LEASE.total_seconds())
    assert await rig.drain() == 1

    assert len(rig.platform.to(HR)) == 1
    assert (await rig.help_row()).status == "sent"


async def test_a_prompt_whose_conversation_moved_on_is_obsolete_and_not_sent(rig: Rig) -> None:
    await rig.platform.say(HR, "cycle start weekly --people li.lei@example.com")
    await rig.drain()
    assignment = await rig.assignment_of_lilei()
    assert assignment.id is not None
    aid, version = assignment.id, assignment.version
    # two messages handled before the delivery worker ran: the question for the first is stale
    await rig.platform.say(LILEI, "完成了登录模块重构")
    await rig.platform.say(LILEI, "上一步")
    stale_key = prompt_key(aid, version + 1, "week_rating")
    fresh_key = prompt_key(aid, version + 2, "wins")

    await rig.drain()

    assert (await rig.row(stale_key)).status == "obsolete"
    assert stale_key not in rig.platform.attempts
    assert (await rig.row(fresh_key)).status == "sent"
    last = rig.platform.to(LILEI)[-1]
    assert last.key == fresh_key
    assert "第 1/5 题" in last.message.text
    assert not [r for r in await rig.rows() if r.status == "pending"]


async def test_a_snooze_reminder_is_sent_when_due_and_dropped_after_a_resume(rig: Rig) -> None:
    await rig.platform.say(HR, "cycle start weekly --people li.lei@example.com")
    await rig.platform.say(LILEI, "稍后 30分钟")
    await rig.drain()
    reminders = [r for r in await rig.rows() if r.kind == "reminder"]
    assert [r.status for r in reminders] == ["pending"]
    rig.clock.advance(minutes=29)
    await rig.drain()
    assert [c for c in rig.platform.to(LILEI) if c.key == reminders[0].idempotency_key] == []

    rig.clock.advance(minutes=1)
    await rig.drain()
    (reminded,) = [c for c in rig.platform.to(LILEI) if c.key == reminders[0].idempotency_key]
    assert t("chat.resume_hint", "zh-CN") in reminded.message.plain_text()

    # snooze again, resume before the time comes: the reminder is dropped
    await rig.platform.say(LILEI, "稍后 30分钟")
    await rig.platform.say(LILEI, "继续")
    await rig.drain()
    rig.clock.advance(minutes=31)
    await rig.drain()
    second = [r for r in await rig.rows() if r.kind == "reminder"][1]
    assert second.status == "obsolete"
    assert second.idempotency_key not in rig.platform.attempts


async def test_an_update_replaces_the_platform_message_it_follows(rig: Rig) -> None:
    await rig.platform.say(HR, "cycle start weekly --people li.lei@example.com")
    await rig.drain()
    question = rig.platform.to(LILEI)[-1]
    assert "第 1/5 题" in question.message.text
    assignment = await rig.assignment_of_lilei()
    assert assignment.id is not None

    await rig.platform.say(LILEI, "完成了登录模块重构")
    await rig.drain()

    update, following = rig.platform.to(LILEI)[-2:]
    assert (update.call, update.message_id, update.message.replaces) == (
        "update",
        question.message_id,
        question.key,
    )
    assert update.message.fields[0].value.endswith("完成了登录模块重构")
    next_question = prompt_key(assignment.id, assignment.version + 1, "week_rating")
    assert (following.call, following.key) == ("send", next_question)
    assert (await rig.row(update.key)).platform_message_id == question.message_id


async def test_rows_for_a_platform_this_process_does_not_serve_are_left_alone(rig: Rig) -> None:
    async with rig.app.db.sessions() as session, session.begin():
        await outbox.enqueue(
            session,
            rows=[
                {
                    "idempotency_key": "slack-only-1",
                    "platform": "slack",
                    "kind": "notice",
                    "recipient": "U01WANGFANG",
                    "payload": Message(text="hello").model_dump(mode="json"),
                }
            ],
        )
    assert await rig.drain() == 0
    row = await rig.row("slack-only-1")
    assert (row.status, row.attempts) == ("pending", 0)
    assert rig.platform.attempts == []


@dataclass
class DatabaseUsingPlatform(FakePlatform):
    """A platform whose send reads the database, as an adapter caching a lookup would."""

    app: App | None = None
    seen: list[int] = field(default_factory=list)

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        assert self.app is not None
        # with a session held across the send, SQLite's one connection would be taken: this would
        # wait for the pool until it timed out
        async with self.app.db.sessions() as session:
            self.seen.append(len((await session.exec(select(Outbox))).all()))
        return await super().send(recipient, message, key=key)


async def test_no_database_connection_is_held_while_the_platform_is_waited_on(db_url: str) -> None:
    platform = DatabaseUsingPlatform()
    app = App(settings_for(db_url), platforms={"console": platform})
    platform.app = app
    await app.start()
    try:
        await import_org_file(app.db, SAMPLE_ORG)
        await platform.say(HR, "帮助")
        assert await app.delivery.drain() == 1
        assert platform.seen == [1]
        assert [c.call for c in platform.to(HR)] == ["send"]
    finally:
        await app.stop()


async def test_a_result_is_not_recorded_over_a_sender_that_took_the_row_over(rig: Rig) -> None:
    await rig.platform.say(HR, "帮助")
    row = await rig.help_row()
    async with rig.app.db.sessions() as session, session.begin():
        lease = rig.clock.now + LEASE
        (claimed,) = await outbox.claim_due(session, platforms=["console"], limit=10, lease_until=lease)
    # the lease runs out and a second worker claims the row again
    rig.clock.advance(seconds=LEASE.total_seconds() + 1)
    async with rig.app.db.sessions() as session, session.begin():
        (again,) = await outbox.claim_due(
            session, platforms=["console"], limit=10, lease_until=rig.clock.now + LEASE
        )
    assert claimed.id == again.id == row.id
    async with rig.app.db.sessions() as session, session.begin():
        recorded = await outbox.mark(session, outbox_id=row.id, status="sent", lease_until=lease)
    assert not recorded
    assert (await rig.row(row.idempotency_key)).status == "sending"


async def test_an_unreadable_row_is_dead_with_its_reason_and_others_still_go(rig: Rig) -> None:
    await rig.platform.say(HR, "帮助")
    row = await rig.help_row()
    async with rig.app.db.engine.begin() as conn:
        await conn.execute(Outbox.__table__.update().values(payload={"no": "text"}))  # type: ignore[attr-defined]
    await rig.platform.say(HR, "帮助")
    await rig.drain()
    dead = await rig.row(row.idempotency_key)
    assert dead.status == "dead"
    assert "unreadable message" in (dead.last_error or "")
    assert [c.message.title for c in rig.platform.to(HR)] == [HELP_TITLE]


async def test_a_retried_message_keeps_its_place_in_front_of_the_recipients_next_one(rig: Rig) -> None:
    await rig.platform.say(HR, "帮助")
    await rig.platform.say(HR, "me")
    rig.platform.failures = [SendError("ratelimited", retry_after=30)]
    await rig.drain()
    # the first failed; the second waits behind it instead of overtaking it
    assert rig.platform.to(HR) == []
    rig.clock.advance(seconds=31)
    await rig.drain()
    assert [c.message.title for c in rig.platform.to(HR)] == [HELP_TITLE, t("status.me_title", "zh-CN")]


async def test_different_recipients_are_sent_to_side_by_side(rig: Rig) -> None:
    await rig.platform.say(HR, "cycle start weekly --dept Engineering")
    handled = await rig.drain()
    recipients = {c.recipient for c in rig.platform.calls}
    assert len(recipients) == 8  # seven engineers and HR's own reply
    assert handled == len(rig.platform.calls)
    written = [r.idempotency_key for r in await rig.rows()]  # the order the rows were queued in
    for recipient in recipients:
        keys = [c.key for c in rig.platform.to(recipient)]
        assert keys == sorted(keys, key=written.index)


async def test_a_recipients_pace_frees_the_sender_for_other_people(rig: Rig) -> None:
    """One sender, one new message a second per person (with its margin): the second person is not
    held up behind the first one's second message (it is given back, due when its pace allows)."""
    limiter = RateLimiter(
        per_platform={}, per_recipient={"console": 1.0}, clock=lambda: rig.clock.now.timestamp()
    )
    delivery = Delivery(rig.app.db, {"console": rig.platform}, limiter=limiter, concurrency=1)
    async with rig.app.db.sessions() as session, session.begin():
        rows = [
            {
                "idempotency_key": f"{who}{n}",
                "recipient": who,
                "platform": "console",
                "kind": "text",
                "payload": Message(text=f"{who} {n}").model_dump(mode="json"),
            }
            for who in ("ann", "bob")
            for n in (1, 2)
        ]
        await outbox.enqueue(session, rows=rows)

    async with asyncio.timeout(5):  # a sender that slept through the pace would wait on the real clock
        await delivery.drain()
    assert [c.key for c in rig.platform.calls] == ["ann1", "bob1"]
    waiting = {r.idempotency_key: r for r in await rig.rows() if r.status == "pending"}
    assert sorted(waiting) == ["ann2", "bob2"]
    pace = timedelta(seconds=1 + RECIPIENT_MARGIN)
    assert all(abs(r.due_at - (rig.clock.now + pace)) < timedelta(milliseconds=1) for r in waiting.values())

    rig.clock.advance(seconds=pace.total_seconds())
    await delivery.drain()
    assert [c.key for c in rig.platform.calls] == ["ann1", "bob1", "ann2", "bob2"]


# ---- per batch: recipients read with the claim, "sent" results written together -----------------


@dataclass
class DirectoryPlatform(FakePlatform):
    """A platform that can look people up by email (as Slack's users.lookupByEmail) and find a
    message already sent by its key (as Slack's DM history), counting both."""

    name = "chat"
    directory: dict[str, str] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)

    async def lookup(self, email: str) -> str | None:
        self.lookups.append(email)
        return self.directory.get(email)

    async def find_sent(self, recipient: str, key: str) -> str | None:
        self.searches.append(key)
        found = [c.message_id for c in self.calls if c.recipient == recipient and c.key == key]
        return found[0] if found else None


async def _person_ids(rig: Rig, *emails: str) -> list[int]:
    async with rig.app.db.sessions() as session:
        found = [await people.by_email(session, email=e) for e in emails]
    assert all(p is not None for p in found)
    return [p.id for p in found if p is not None]


async def _queue(rig: Rig, rows: list[dict[str, Any]]) -> None:
    async with rig.app.db.sessions() as session, session.begin():
        await outbox.enqueue(
            session,
            rows=[
                {"kind": "text", "payload": Message(text=r["idempotency_key"]).model_dump(mode="json"), **r}
                for r in rows
            ],
        )


async def test_a_batch_reads_known_ids_with_its_claim_and_still_learns_unknown_ones(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known platform ids come with the claim (no session per message); a person without one is
    looked up by email once (their second message uses what was learned) and remembered."""
    known = {"wang.fang@example.com": "U-WANG", "lucy.chen@example.com": "U-LUCY"}
    wang, lucy, emma = await _person_ids(rig, *known, EMMA)
    async with rig.app.db.sessions() as session, session.begin():
        for pid, external in ((wang, "U-WANG"), (lucy, "U-LUCY")):
            await people.remember_identity(session, person_id=pid, platform="chat", external_id=external)
    platform = DirectoryPlatform(directory={EMMA: "U-EMMA"})
    delivery = Delivery(rig.app.db, {"chat": platform})
    asked: list[int | None] = []
    original = Delivery._recipient

    async def counted(self: Delivery, session: Any, row: outbox.OutboxRow) -> tuple[str | None, str | None]:
        asked.append(row.person_id)
        return await original(self, session, row)

    monkeypatch.setattr(Delivery, "_recipient", counted)
    await _queue(
        rig,
        [
            {"idempotency_key": f"{who}-{n}", "person_id": pid, "platform": "chat"}
            for who, pid in (("wang", wang), ("lucy", lucy), ("emma", emma))
            for n in (1, 2)
        ],
    )

    assert await delivery.drain() == 6
    assert {(c.recipient, c.key) for c in platform.calls} == {
        (recipient, f"{who}-{n}")
        for who, recipient in (("wang", "U-WANG"), ("lucy", "U-LUCY"), ("emma", "U-EMMA"))
        for n in (1, 2)
    }
    assert asked == [emma]  # only the unknown person's first message needed a session
    assert platform.lookups == [EMMA]
    assert {r.status for r in await rig.rows() if r.platform == "chat"} == {"sent"}

    # remembered: the next batch knows Emma's id from its claim
    await _queue(rig, [{"idempotency_key": "emma-3", "person_id": emma, "platform": "chat"}])
    assert await delivery.drain() == 1
    assert platform.lookups == [EMMA] and asked == [emma]
    assert platform.calls[-1].recipient == "U-EMMA"


async def test_every_buffered_sent_result_is_written_with_its_message_id(rig: Rig) -> None:
    platform = DirectoryPlatform()
    delivery = Delivery(rig.app.db, {"chat": platform}, concurrency=4)
    count = 2 * FLUSH_ROWS + 17  # some flushed when the buffer fills, the rest at the end of a pass
    await _queue(
        rig, [{"idempotency_key": f"k{n}", "recipient": f"U{n}", "platform": "chat"} for n in range(count)]
    )

    assert await delivery.drain() == count
    sent = {c.key: c.message_id for c in platform.calls}
    rows = [r for r in await rig.rows() if r.platform == "chat"]
    assert len(sent) == len(rows) == count
    for row in rows:
        assert (row.status, row.attempts, row.in_doubt) == ("sent", 1, False)
        assert row.platform_message_id == sent[row.idempotency_key]
        assert row.sent_at == rig.clock.now


async def test_sent_results_are_written_soon_while_a_pass_is_still_sending(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long pass does not keep its results unwritten until it ends (a crash would lose them all)."""
    monkeypatch.setattr("bot.delivery.FLUSH_SECONDS", 0.0)
    gate = asyncio.Event()

    @dataclass
    class Slow(DirectoryPlatform):
        async def send(self, recipient: str, message: Message, *, key: str) -> str:
            if key == "late":
                await gate.wait()
            return await super().send(recipient, message, key=key)

    delivery = Delivery(rig.app.db, {"chat": Slow()}, concurrency=2)
    await _queue(rig, [{"idempotency_key": k, "recipient": k, "platform": "chat"} for k in ("late", "early")])
    draining = asyncio.create_task(delivery.drain_once())
    try:
        async with asyncio.timeout(5):
            while (await rig.row("early")).status != "sent":
                await asyncio.sleep(0.01)
        assert (await rig.row("late")).status == "sending"
    finally:
        gate.set()
        await draining
    assert (await rig.row("late")).status == "sent"


async def test_a_row_taken_over_during_a_batch_is_not_recorded_as_sent_by_this_sender(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch's rows are recorded together, each only under this sender's claim: one whose claim
    another sender took over meanwhile (a new lease) is left as the other sender has it."""
    other_lease = rig.clock.now + timedelta(hours=1)

    @dataclass
    class TakenOver(DirectoryPlatform):
        async def send(self, recipient: str, message: Message, *, key: str) -> str:
            message_id = await super().send(recipient, message, key=key)
            if key == "b":  # meanwhile another sender claimed it (after this one's lease ran out)
                async with rig.app.db.engine.begin() as conn:
                    await conn.execute(
                        Outbox.__table__.update()  # type: ignore[attr-defined]
                        .where(Outbox.__table__.c.idempotency_key == "b")  # type: ignore[attr-defined]
                        .values(due_at=other_lease, in_doubt=True)
                    )
            return message_id

    delivery = Delivery(rig.app.db, {"chat": TakenOver()})
    await _queue(rig, [{"idempotency_key": k, "recipient": f"U-{k}", "platform": "chat"} for k in "abc"])

    with caplog.at_level(logging.WARNING, logger="bot.delivery"):
        assert await delivery.drain() == 3
    a, b, c = [await rig.row(k) for k in "abc"]
    assert (a.status, c.status) == ("sent", "sent")
    assert (b.status, b.attempts, b.due_at, b.platform_message_id) == ("sending", 0, other_lease, None)
    assert f"outbox row {b.id} was taken over by another sender" in caplog.text


async def test_mark_sent_records_each_row_under_its_own_lease(rig: Rig) -> None:
    await _queue(rig, [{"idempotency_key": k, "recipient": k, "platform": "chat"} for k in "abc"])
    lease = rig.clock.now + LEASE
    async with rig.app.db.sessions() as session, session.begin():
        a, b, c = await outbox.claim_due(session, platforms=["chat"], limit=10, lease_until=lease)
        renewed = lease + timedelta(seconds=30)
        assert await outbox.renew(session, outbox_id=b.id, lease_until=lease, until=renewed)
    marks = [
        outbox.SentMark(a.id, lease, "ma", rig.clock.now),
        outbox.SentMark(b.id, renewed, "mb", rig.clock.now),
        outbox.SentMark(c.id, lease - timedelta(seconds=1), "mc", rig.clock.now),  # not c's claim
    ]
    async with rig.app.db.sessions() as session, session.begin():
        assert await outbox.mark_sent(session, marks=marks) == {a.id, b.id}
    rows = {r.idempotency_key: r for r in await rig.rows()}
    assert [(rows[k].status, rows[k].platform_message_id) for k in "abc"] == [
        ("sent", "ma"),
        ("sent", "mb"),
        ("sending", None),
    ]


async def test_a_crash_before_sent_results_are_written_finds_them_instead_of_sending_twice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the platform accepted the messages but before their "sent" was
    written: after the lease they come back in doubt, are found on the platform, and not resent."""
    platform = DirectoryPlatform()
    dying = Delivery(rig.app.db, {"chat": platform})

    async def died_first() -> None:  # the process is gone before it writes anything
        dying._sent.clear()

    monkeypatch.setattr(dying, "flush", died_first)
    await _queue(rig, [{"idempotency_key": k, "recipient": f"U-{k}", "platform": "chat"} for k in "ab"])
    await dying.drain_once()
    assert [c.key for c in platform.calls] == ["a", "b"]
    assert {r.status for r in await rig.rows() if r.platform == "chat"} == {"sending"}

    rig.clock.advance(seconds=LEASE.total_seconds())
    survivor = Delivery(rig.app.db, {"chat": platform})
    assert await survivor.drain() == 2
    assert sorted(platform.searches) == ["a", "b"]
    assert [c.key for c in platform.calls] == ["a", "b"]  # nothing sent twice
    for row in [await rig.row(k) for k in "ab"]:
        assert (row.status, row.in_doubt) == ("sent", False)
        assert row.platform_message_id == next(
            c.message_id for c in platform.calls if c.key == row.idempotency_key
        )
    assert 'cadence_sends_total{platform="chat",outcome="found"} 2' in survivor.metrics.render(depth=None)


async def test_an_edit_of_a_message_not_yet_recorded_updates_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "saved" edit right behind its question in one batch: the question's id is known before
    its "sent" is written, and the edit updates it instead of posting a new message."""
    monkeypatch.setattr("bot.delivery.FLUSH_SECONDS", 3600.0)
    platform = DirectoryPlatform()
    delivery = Delivery(rig.app.db, {"chat": platform})
    question = Message(text="question").model_dump(mode="json")
    saved = Message(text="saved", replaces="q").model_dump(mode="json")
    await _queue(
        rig,
        [
            {"idempotency_key": "q", "recipient": "U1", "platform": "chat", "payload": question},
            {"idempotency_key": "q:saved", "recipient": "U1", "platform": "chat", "payload": saved},
        ],
    )
    assert await delivery.drain() == 2
    first, edit = platform.calls
    assert (first.call, edit.call, edit.message_id) == ("send", "update", first.message_id)
    assert (await rig.row("q:saved")).platform_message_id == first.message_id


# ---- rate limits -------------------------------------------------------------------------------


async def test_one_recipients_429_does_not_hold_up_other_recipients(rig: Rig) -> None:
    @dataclass
    class Refusing(DirectoryPlatform):
        async def send(self, recipient: str, message: Message, *, key: str) -> str:
            if recipient == "U-ann":
                self.attempts.append(key)
                raise SendError("ratelimited", retry_after=30)
            return await super().send(recipient, message, key=key)

    platform = Refusing()
    delivery = Delivery(rig.app.db, {"chat": platform}, limiter=rig.app.delivery.limiter, concurrency=1)
    await _queue(
        rig,
        [
            {"idempotency_key": f"{who}{n}", "recipient": f"U-{who}", "platform": "chat"}
            for who in ("ann", "bob", "cy")
            for n in (1, 2)
        ],
    )
    async with asyncio.timeout(5):  # a paused platform would sleep 30 s on the real clock
        await delivery.drain()
    assert [c.key for c in platform.calls] == ["bob1", "bob2", "cy1", "cy2"]
    assert [k for k in platform.attempts if k.startswith("ann")] == ["ann1"]  # ann2 waits behind it
    ann1, ann2 = await rig.row("ann1"), await rig.row("ann2")
    assert (ann1.status, ann2.status) == ("pending", "pending")
    assert ann1.due_at == ann2.due_at == rig.clock.now + timedelta(seconds=30)
