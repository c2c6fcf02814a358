"""People a platform cannot message, and a platform's used-up API quota: what delivery stores (the row's
reason, the identity's unreachable mark, cleared by the next message that reaches them or by the person
writing to the bot), that nothing loops, and what HR and managers read in ``cycle status``, in both
languages, on both databases."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from sqlmodel import col, select

from bot.app import App
from bot.delivery import MAX_RATE_LIMITED_ATTEMPTS
from bot.platforms.base import EventHandler, IncomingEvent, Platform, SendError
from bot.platforms.console import ConsolePlatform
from conversations.i18n import LOCALES, t
from conversations.messages import Message
from conversations.org_service import import_org_file
from storage import cycles, journal, outbox, people
from storage.clock import set_clock
from storage.models import Identity, Outbox
from tests.harness import CANNED, HR, LILEI, MANAGER, SAMPLE_ORG, WEEKLY, Clock
from tests.harness import test_settings as settings_for

# DingTalk staff ids from the sample org: HR (赵敏), 张伟 (王芳's report), 孙丽 and 周强 (James's)
HR_ID, ZHANG_WEI, SUN_LI, ZHOU_QIANG = "0411283456", "0411283457", "0411283458", "0411283459"
JAMES = "james.wilson@example.com"
QUOTA_WAIT = 3600
QUOTA_ERROR = "errcode 90020: monthly API quota used up"
FIRST_ANSWER = CANNED[WEEKLY][LILEI][0]


@dataclass(frozen=True)
class Call:
    recipient: str
    key: str
    message: Message


@dataclass
class DingtalkFake(Platform):
    """A DingTalk adapter at the edge: staff ids in ``unreachable`` are not valid for the app
    (``invalidStaffIdList``); once ``quota_used_up``, every new message meets errcode 90020 (the
    app's monthly API quota is used up: try again in an hour). Edits of sent messages are left alone."""

    name = "dingtalk"
    unreachable: set[str] = field(default_factory=set)
    quota_used_up: bool = False
    # when set, decides the next sends one by one: True reaches the person, False is refused as unreachable
    verdicts: list[bool] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    attempts: list[tuple[str, str]] = field(default_factory=list)
    _on_event: EventHandler | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self, on_event: EventHandler) -> None:
        self._on_event = on_event

    async def stop(self) -> None:
        self._on_event = None

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        self.attempts.append((recipient, key))
        if self.quota_used_up:
            raise SendError(QUOTA_ERROR, retry_after=QUOTA_WAIT, reason="quota")
        if (self.verdicts and not self.verdicts.pop(0)) or recipient in self.unreachable:
            raise SendError(f"invalidStaffIdList: {recipient}", unreachable=True)
        self.calls.append(Call(recipient, key, message))
        return f"m{next(self._ids)}"

    async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None:
        self.calls.append(Call(recipient, key, message))

    async def say(self, user_id: str, said: str) -> None:
        await self.event(user_id, "text", said)

    async def event(self, user_id: str, kind: Literal["text", "action"], said: str) -> None:
        """``user_id`` types ``said`` (kind "text") or clicks a button whose value is ``said`` ("action")."""
        assert self._on_event is not None
        text, action = (said, "") if kind == "text" else ("", said)
        await self._on_event(
            IncomingEvent("dingtalk", uuid.uuid4().hex, user_id, kind, text=text, action=action)
        )

    def to(self, recipient: str) -> list[Call]:
        return [c for c in self.calls if c.recipient == recipient]

    def tries(self, recipient: str | None = None) -> list[str]:
        return [key for who, key in self.attempts if recipient in (None, who)]


@dataclass(frozen=True)
class Row:
    """An outbox row tied to a conversation, as stored."""

    key: str
    status: str
    attempts: int
    error_reason: str | None
    last_error: str | None
    due_at: datetime


@dataclass
class Rig:
    app: App
    dingtalk: DingtalkFake
    console: ConsolePlatform
    clock: Clock

    async def drain(self) -> int:
        return await self.app.delivery.drain()

    async def ask(self, user_id: str, said: str) -> str:
        """Someone says ``said`` on DingTalk; returns the last message they were sent, as text."""
        before = len(self.dingtalk.to(user_id))
        await self.dingtalk.say(user_id, said)
        await self.drain()
        new = self.dingtalk.to(user_id)[before:]
        assert new, f"{user_id} was sent nothing after {said!r}"
        return new[-1].message.plain_text()

    async def status(self, email: str, said: str = "cycle status 1") -> str:
        """What ``email`` reads after typing ``said`` in the console (which DingTalk's quota leaves alone)."""
        before = len(self.console.transcript)
        await self.console.say(email, said)
        await self.drain()
        new = [s for s in self.console.transcript[before:] if s.recipient == email]
        assert new, f"{email} was shown nothing after {said!r}"
        return new[-1].message.plain_text()

    async def tied_rows(self, staff_id: str) -> list[Row]:
        """The rows of ``staff_id``'s conversations, oldest first."""
        async with self.app.db.sessions() as session:
            found = (
                await session.exec(
                    select(Outbox)
                    .join(Identity, col(Identity.person_id) == col(Outbox.person_id))
                    .where(
                        col(Identity.platform) == "dingtalk",
                        col(Identity.external_id) == staff_id,
                        col(Outbox.platform) == "dingtalk",
                        col(Outbox.assignment_id).is_not(None),
                    )
                    .order_by(col(Outbox.id))
                )
            ).all()
        return [
            Row(r.idempotency_key, r.status, r.attempts, r.error_reason, r.last_error, r.due_at)
            for r in found
        ]

    async def identity(self, staff_id: str) -> tuple[bool, datetime | None, str | None]:
        """(reachable, unreachable_at, unreachable_reason) of a DingTalk identity."""
        async with self.app.db.sessions() as session:
            found = (
                await session.exec(
                    select(Identity).where(
                        col(Identity.platform) == "dingtalk", col(Identity.external_id) == staff_id
                    )
                )
            ).one()
        return found.reachable, found.unreachable_at, found.unreachable_reason


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    set_clock(clock)
    dingtalk, console = DingtalkFake(), ConsolePlatform()
    app = App(settings_for(db_url), platforms={"dingtalk": dingtalk, "console": console})
    await app.start()
    await import_org_file(app.db, SAMPLE_ORG)
    try:
        yield Rig(app, dingtalk, console, clock)
    finally:
        await app.stop()
        set_clock(None)


async def _start_cycle(rig: Rig) -> None:
    """HR starts a weekly recap on DingTalk for 张伟 (whose staff id the app may not message), 孙丽 and
    周强; then the app's monthly quota runs out, just as 孙丽 answers her first question."""
    rig.dingtalk.unreachable = {ZHANG_WEI}
    people_ = "zhang.wei@example.com,sun.li@example.com,zhou.qiang@example.com"
    assert "#1" in await rig.ask(HR_ID, f"cycle start {WEEKLY} --people {people_}")
    rig.dingtalk.quota_used_up = True
    await rig.dingtalk.say(SUN_LI, FIRST_ANSWER)
    await rig.drain()


def _field(shown: str, label: str) -> str:
    """The value of the field ``label`` in a message's plain text ("  • label: value")."""
    found = [line for line in shown.splitlines() if line.startswith(f"  • {label}: ")]
    assert len(found) == 1, f"no field {label!r} in:\n{shown}"
    return found[0].removeprefix(f"  • {label}: ")


async def people_id(rig: Rig, email: str) -> int:
    async with rig.app.db.sessions() as session:
        person = await people.by_email(session, email=email)
    assert person is not None
    return person.id


# ---- what is stored, and that nothing loops ------------------------------------------------------


async def test_an_unreachable_user_is_given_up_and_marked_and_a_used_up_quota_holds_the_platform(
    rig: Rig,
) -> None:
    started = rig.clock.now
    await _start_cycle(rig)

    # 张伟: his first question is given up after one try; his identity says why and since when
    (zhang,) = await rig.tied_rows(ZHANG_WEI)
    assert (zhang.status, zhang.attempts, zhang.error_reason) == ("dead", 1, "unreachable")
    assert zhang.last_error == f"invalidStaffIdList: {ZHANG_WEI}"
    assert await rig.identity(ZHANG_WEI) == (False, started, f"invalidStaffIdList: {ZHANG_WEI}")
    # 孙丽: her second question waits an hour for the quota, with the reason stored
    first, second = [r for r in await rig.tied_rows(SUN_LI) if r.status != "obsolete"][-2:]
    assert (first.status, first.attempts, first.error_reason) == ("sent", 1, None)
    assert (second.status, second.attempts, second.error_reason, second.last_error) == (
        "pending",
        1,
        "quota",
        QUOTA_ERROR,
    )
    assert second.due_at == rig.clock.now + timedelta(seconds=QUOTA_WAIT)
    assert await rig.identity(SUN_LI) == (True, None, None)
    assert len(rig.dingtalk.to(ZHOU_QIANG)) == 1  # 周强 got his first question before the quota ran out

    # while the quota is used up DingTalk is not called at all, whatever comes up meanwhile; the
    # console (another platform) is served as usual
    tried = len(rig.dingtalk.tries())
    await rig.dingtalk.say(ZHOU_QIANG, FIRST_ANSWER)
    for _ in range(3):
        assert await rig.drain() == 0
        rig.clock.advance(minutes=15)
    assert "#1" in await rig.status(HR)
    assert len(rig.dingtalk.tries()) == tried
    assert [(r.status, r.attempts) for r in await rig.tied_rows(ZHOU_QIANG)][-1] == ("pending", 0)

    # the quota is back: what waited goes out, and the reasons are gone with it
    rig.dingtalk.quota_used_up = False
    rig.clock.advance(minutes=15)
    await rig.drain()
    assert [(r.status, r.attempts, r.error_reason) for r in await rig.tied_rows(SUN_LI)][-1] == (
        "sent",
        2,
        None,
    )
    assert [r.status for r in await rig.tied_rows(ZHOU_QIANG)][-1] == "sent"
    assert rig.dingtalk.tries(SUN_LI) == [first.key, second.key, second.key]  # once refused, once sent
    assert rig.dingtalk.tries(ZHANG_WEI) == [zhang.key]  # a dead row is not tried again


async def test_a_quota_that_never_comes_back_ends_in_a_dead_row_not_a_loop(rig: Rig) -> None:
    rig.dingtalk.quota_used_up = True
    await rig.dingtalk.say(HR_ID, "help")
    for _ in range(MAX_RATE_LIMITED_ATTEMPTS + 5):
        await rig.drain()
        rig.clock.advance(seconds=QUOTA_WAIT)
    assert len(rig.dingtalk.tries(HR_ID)) == MAX_RATE_LIMITED_ATTEMPTS
    async with rig.app.db.sessions() as session:
        (row,) = (await session.exec(select(Outbox))).all()
    assert (row.status, row.attempts, row.error_reason) == ("dead", MAX_RATE_LIMITED_ATTEMPTS, "quota")


async def test_the_next_message_that_reaches_a_person_clears_the_mark(rig: Rig) -> None:
    await _start_cycle(rig)
    assert (await rig.identity(ZHANG_WEI))[0] is False

    # the quota renews and someone added 张伟 to the app's availability range: HR's reminder reaches him
    rig.dingtalk.quota_used_up, rig.dingtalk.unreachable = False, set()
    rig.clock.advance(seconds=QUOTA_WAIT)
    await rig.ask(HR_ID, "cycle remind 1")
    assert [c.key for c in rig.dingtalk.to(ZHANG_WEI)] == ["c1:remind:1:1"]
    assert await rig.identity(ZHANG_WEI) == (True, None, None)

    shown = await rig.status(HR)
    assert t("status.unreachable_on", "zh-CN", platform="钉钉") not in shown
    # his first question is still not delivered; HR reads that, and why
    assert _field(shown, "1 条消息未能通过钉钉送达").startswith("钉钉表示无法给此人发消息。")
    assert "等待发送" not in shown  # 孙丽's question went out with the renewed quota


async def test_a_failure_after_a_message_reached_someone_keeps_the_mark(rig: Rig) -> None:
    """In one batch, the later result wins: reached then refused stays marked; the other way round clears."""
    zhang = await people_id(rig, "zhang.wei@example.com")
    for verdicts, marked in (([True, False], True), ([False, True], False)):
        async with rig.app.db.sessions() as session, session.begin():
            await people.mark_unreachable(
                session, platform="dingtalk", external_id=ZHANG_WEI, reason="earlier"
            )
            await outbox.enqueue(
                session,
                rows=[
                    {
                        "idempotency_key": f"{verdicts}-{n}",
                        "person_id": zhang,
                        "platform": "dingtalk",
                        "kind": "notice",
                        "payload": Message(text=str(n)).model_dump(mode="json"),
                    }
                    for n in (1, 2)
                ],
            )
        rig.clock.advance(minutes=1)
        rig.dingtalk.verdicts = list(verdicts)

        assert await rig.drain() == 2
        assert rig.dingtalk.verdicts == []
        reachable, at, reason = await rig.identity(ZHANG_WEI)
        assert reachable is not marked, verdicts
        assert (at, reason) == (
            (rig.clock.now, f"invalidStaffIdList: {ZHANG_WEI}") if marked else (None, None)
        )


# ---- the person writes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "said"),
    [("text", FIRST_ANSWER), ("text", "help"), ("action", "a button of a card long gone")],
    ids=["answer", "command", "button"],
)
async def test_a_marked_person_who_writes_is_reachable_again(
    rig: Rig, kind: Literal["text", "action"], said: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _start_cycle(rig)
    assert _field(await rig.status(HR), "无法通过钉钉联系").startswith("张伟。")

    # someone added 张伟 to the app's availability range, and he writes to the bot; the quota is still
    # used up, so no message reaches him: what clears his mark is that he wrote
    rig.dingtalk.unreachable = set()
    rig.clock.advance(minutes=5)
    tried = len(rig.dingtalk.tries())
    with caplog.at_level(logging.INFO, logger="bot.intake"):
        await rig.dingtalk.event(ZHANG_WEI, kind, said)
    await rig.drain()
    assert len(rig.dingtalk.tries()) == tried

    assert await rig.identity(ZHANG_WEI) == (True, None, None)
    assert any(ZHANG_WEI in r.getMessage() and "reachable again" in r.getMessage() for r in caplog.records)
    shown = await rig.status(HR)
    assert t("status.unreachable_on", "zh-CN", platform="钉钉") not in shown
    # what was given up on stays given up on: HR still reads that, and why
    assert _field(shown, "1 条消息未能通过钉钉送达").startswith("钉钉表示无法给此人发消息。")


async def test_others_writing_leave_a_mark_alone(rig: Rig) -> None:
    await _start_cycle(rig)
    marked = await rig.identity(ZHANG_WEI)
    rig.clock.advance(minutes=5)

    # 周强 (never marked) and someone nobody knows write at once: one batch, nothing to clear
    await asyncio.gather(rig.dingtalk.say(ZHOU_QIANG, FIRST_ANSWER), rig.dingtalk.say("04999", "你好"))
    await rig.drain()

    assert await rig.identity(ZHANG_WEI) == marked
    assert await rig.identity(ZHOU_QIANG) == (True, None, None)
    assert _field(await rig.status(HR), "无法通过钉钉联系").startswith("张伟。")


async def test_in_a_batch_only_the_marked_writer_is_cleared(rig: Rig) -> None:
    await _start_cycle(rig)
    rig.dingtalk.unreachable = set()
    rig.clock.advance(minutes=5)

    await asyncio.gather(rig.dingtalk.say(ZHOU_QIANG, FIRST_ANSWER), rig.dingtalk.say(ZHANG_WEI, "help"))
    await rig.drain()

    assert await rig.identity(ZHANG_WEI) == (True, None, None)
    assert await rig.identity(ZHOU_QIANG) == (True, None, None)
    assert t("status.unreachable_on", "zh-CN", platform="钉钉") not in await rig.status(HR)


async def test_a_mark_made_after_the_person_wrote_stays(rig: Rig) -> None:
    """An event handled late (on its own, after its batch failed) does not undo the platform's newer word."""
    arrived = rig.clock.now
    rig.clock.advance(minutes=1)
    for when, cleared in ((arrived, False), (rig.clock.now, True)):
        event = IncomingEvent("dingtalk", uuid.uuid4().hex, ZHANG_WEI, "text", text="help")
        async with rig.app.db.sessions() as session, session.begin():
            await people.mark_unreachable(session, platform="dingtalk", external_id=ZHANG_WEI, reason="late")
            journal_id = await journal.record(
                session, platform="dingtalk", event_id=event.event_id, payload=event.to_payload(max_chars=100)
            )
        assert journal_id is not None

        await rig.app.router.process(journal_id, event, arrived=when)

        expected = (True, None, None) if cleared else (False, rig.clock.now, "late")
        assert await rig.identity(ZHANG_WEI) == expected, when


# ---- what HR and managers read -------------------------------------------------------------------


async def test_hr_reads_who_cannot_be_reached_and_why_messages_wait_in_chinese(rig: Rig) -> None:
    await _start_cycle(rig)

    shown = await rig.status(HR)

    assert _field(shown, "无法通过钉钉联系") == (
        "张伟。钉钉表示节拍无法给他们发消息：请让他们在钉钉中打开节拍应用，或请管理员把他们加入应用的可用范围。"
        "下一条成功送达的消息会清除此提示。"
    )
    assert _field(shown, "1 条消息在钉钉上等待发送") == "钉钉应用的 API 调用额度已用完。节拍会自动恢复发送。"
    assert _field(shown, "1 条消息未能通过钉钉送达") == (
        "钉钉表示无法给此人发消息。节拍已放弃发送这些消息；"
        "管理员可以用“cadence outbox failed”查看，用“cadence outbox retry”重新发送。"
    )
    # waiting comes before given up, both before the list of who has not submitted
    assert shown.index("等待发送") < shown.index("未能通过钉钉送达") < shown.index("周强 <")


async def test_hr_reads_the_same_in_english(rig: Rig) -> None:
    await _start_cycle(rig)
    await rig.status(HR, "lang en")

    shown = await rig.status(HR)

    assert _field(shown, "Unreachable on DingTalk") == (
        "张伟. DingTalk says Cadence cannot message them: ask them to open the Cadence app on DingTalk, "
        "or have an admin add them to the app's availability range. The next message that reaches them "
        "clears this."
    )
    assert (
        _field(shown, "1 message(s) waiting on DingTalk")
        == "DingTalk's API call quota for the app is used up. Delivery resumes automatically."
    )
    assert _field(shown, "1 message(s) not delivered on DingTalk").startswith(
        "DingTalk said it cannot message the person. Cadence gave up on them"
    )


async def test_a_manager_reads_only_their_reports(rig: Rig) -> None:
    await _start_cycle(rig)

    wang = await rig.status(MANAGER)  # 王芳: 张伟's manager, reads Chinese
    assert _field(wang, "无法通过钉钉联系").startswith("张伟。")
    assert "1 条消息未能通过钉钉送达" in wang
    assert "等待发送" not in wang and "孙丽" not in wang  # 孙丽's waiting question is James's business

    james = await rig.status(JAMES)  # James Wilson: 孙丽's and 周强's, reads English
    assert "Unreachable" not in james and "张伟" not in james
    assert _field(james, "1 message(s) waiting on DingTalk").startswith("DingTalk's API call quota")
    assert "not delivered" not in james


async def test_a_cycle_without_delivery_trouble_shows_none(rig: Rig) -> None:
    await rig.ask(HR_ID, f"cycle start {WEEKLY} --people zhou.qiang@example.com")
    shown = await rig.status(HR)
    assert "#1" in shown and "钉钉" not in shown


async def test_the_counts_come_from_one_grouped_query(rig: Rig) -> None:
    await _start_cycle(rig)
    zhang, sun = await people_id(rig, "zhang.wei@example.com"), await people_id(rig, "sun.li@example.com")
    async with rig.app.db.sessions() as session:
        counts = await cycles.undelivered(session, cycle_id=1)
        by_subject = await cycles.undelivered(session, cycle_id=1, by_subject=True)
        marked = await cycles.unreachable_people(session, cycle_id=1)
    assert sorted((c.platform, c.status, c.reason, c.count) for c in counts) == [
        ("dingtalk", "dead", "unreachable", 1),
        ("dingtalk", "pending", "quota", 1),
    ]
    assert sorted((c.status, c.subject_id) for c in by_subject) == [("dead", zhang), ("pending", sun)]
    assert [(m.name, m.platform, m.marked_at) for m in marked] == [("张伟", "dingtalk", rig.clock.now)]


# ---- the API the platforms use -------------------------------------------------------------------


def test_send_error_keywords() -> None:
    gone = SendError("invalidStaffIdList", unreachable=True)
    assert (gone.permanent, gone.unreachable, gone.reason, gone.reason_code()) == (
        True,
        True,
        "unreachable",
        "unreachable",
    )
    quota = SendError("90020", retry_after=3600, reason="quota")
    assert (quota.permanent, quota.retry_after, quota.reason_code()) == (False, 3600, "quota")
    assert SendError("429", retry_after=1).reason_code() == "rate_limit"
    assert SendError("refused", permanent=True).reason_code() == "rejected"
    assert SendError("502", in_doubt=True).reason_code() == "failed"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_reason_has_words(locale: str) -> None:
    for reason in outbox.REASONS:
        assert t(f"status.reason_{reason}", locale, platform="DingTalk").strip()
    for status in ("pending", "dead"):
        assert t(f"status.undelivered_{status}", locale, count=2, platform="Slack")
        assert t(f"status.undelivered_{status}_why", locale, why="x")
