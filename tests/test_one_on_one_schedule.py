"""1:1s on a cadence: a pair for every manager and direct report, meetings placed on the manager's
workdays at 10:00 their time, the agenda to the manager two hours before (once, however often the job
runs and on however many processes), meetings moving on by the cadence, and ``1on1 @name every N``
/ ``next DATE TIME`` from the manager."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from bot.settings import QuietSettings
from conversations.command_parser import Command, parse_command
from conversations.commands_base import CommandContext
from conversations.one_on_one_schedule import is_schedule_command, parse_every, set_cadence
from conversations.outgoing import Replies
from scheduler.calendars import WorkCalendar
from scheduler.one_on_ones import OneOnOneConfig, OneOnOnes, meeting_key
from storage import people
from storage.engine import Database
from tests.agenda_rig import add_weekly, person_id
from tests.harness import LILEI, MANAGER, Chat

MICHAEL = "michael.brown@example.com"  # Los Angeles, en: Sarah, Xu Jing, Liu Yang and David report to him
SARAH = "sarah.johnson@example.com"
DAVID = "david.lee@example.com"
JAMES = "james.wilson@example.com"  # London: Sales


def job_for(chat: Chat, db: Database | None = None, **config: object) -> OneOnOnes:
    """The 1:1 job over the chat's database (or another process's ``db``), as the App would build it."""
    assert chat.app is not None
    return OneOnOnes(
        db or chat.app.db,
        chat.app.timing,
        platform="console",
        config=OneOnOneConfig(**config),  # type: ignore[arg-type]
    )


async def start(db_url: str, **settings: object) -> Chat:
    chat = await Chat(db_url, **settings).start()
    assert chat.app is not None
    chat.app.scheduler.one_on_ones = job_for(chat)
    return chat


@pytest.fixture
async def paired(db_url: str) -> AsyncIterator[Chat]:
    chat = await start(db_url)
    yield chat
    await chat.close()


async def pairs(chat: Chat) -> dict[tuple[str, str], tuple[int, datetime | None, bool]]:
    """(manager, report) → (every_days, next_at, active)."""
    rows = await chat.rows(
        "select m.email, r.email, p.every_days, p.next_at, p.active from oneononepair p "
        "join person m on m.id = p.manager_id join person r on r.id = p.report_id"
    )
    return {(m, r): (every, _aware(at), bool(active)) for m, r, every, at, active in rows}


def _aware(value: object) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local(moment: datetime | None, tz: str) -> str:
    assert moment is not None
    return moment.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M")


async def agendas_to(chat: Chat, email: str) -> list[str]:
    """The agenda cards ``email`` was sent (their titles), in order."""
    assert chat.app is not None
    await chat.deliver()
    return [
        s.message.title or ""
        for s in chat.console.transcript
        if s.recipient == email and s.message.meta.get("kind") == "agenda"
    ]


async def test_every_manager_report_pair_meets_on_a_workday_at_ten_their_time_spread_out(
    paired: Chat,
) -> None:
    await paired.tick()
    found = await pairs(paired)
    assert len(found) == 19  # everyone but the CEO has a manager
    assert {every for every, _, _ in found.values()} == {14}
    zones = dict(await paired.rows("select email, timezone from person"))
    countries = dict(await paired.rows("select email, country from person"))
    for (manager, _), (_, at, active) in found.items():
        assert active and at is not None
        wall = at.astimezone(ZoneInfo(zones[manager]))
        assert wall.strftime("%H:%M") == "10:00"
        assert WorkCalendar(countries[manager]).is_workday(wall.date())
    # Friday 27 November: Michael's four reports on his next four workdays, in org order
    michaels = sorted(at for (m, _), (_, at, _) in found.items() if m == MICHAEL and at is not None)
    assert [local(at, "America/Los_Angeles") for at in michaels] == [
        "Mon 2026-11-30 10:00",
        "Tue 2026-12-01 10:00",
        "Wed 2026-12-02 10:00",
        "Thu 2026-12-03 10:00",
    ]
    assert local(found[(MICHAEL, SARAH)][1], "America/Los_Angeles") == "Mon 2026-11-30 10:00"
    # Wang Fang's six, in Shanghai: the sixth lands on the following Monday
    assert local(found[(MANAGER, "wu.hao@example.com")][1], "Asia/Shanghai") == "Mon 2026-12-07 10:00"


async def test_the_agenda_reaches_the_manager_two_hours_before_once_then_the_meeting_moves_on(
    paired: Chat, db_url: str
) -> None:
    await add_weekly(paired, SARAH, "2026-W47", wins=["Spec v2"], week_rating=4, blockers="Waiting on Legal")
    await paired.tick()
    meeting = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # Monday 10:00 in Los Angeles
    assert (await pairs(paired))[(MICHAEL, SARAH)][1] == meeting
    paired.clock.now = meeting - timedelta(hours=2, minutes=1)
    await paired.tick()
    assert await agendas_to(paired, MICHAEL) == []
    paired.clock.now = meeting - timedelta(hours=2)
    result = await paired.tick()
    assert result.agendas >= 1
    assert await agendas_to(paired, MICHAEL) == ["1:1 with Sarah Johnson — 2026-11-30"]
    card = next(s for s in paired.console.transcript if s.message.meta.get("kind") == "agenda").text
    assert "Your 1:1 with Sarah Johnson (Product Manager) is at 2026-11-30 10:00 (your time)" in card
    assert "Done · Weekly recap 2026-W47: Spec v2" in card
    # again, directly, and from a second process on the same database: nothing more
    await paired.tick()
    assert paired.app is not None
    assert await job_for(paired).run(paired.clock.now) == 0
    other = Database(db_url)
    try:
        assert await job_for(paired, other).run(paired.clock.now) == 0
    finally:
        await other.dispose()
    assert await agendas_to(paired, MICHAEL) == ["1:1 with Sarah Johnson — 2026-11-30"]
    pair_id = await paired.scalar(
        "select id from oneononepair where report_id = :r", r=await person_id(paired, SARAH)
    )
    key = meeting_key(pair_id, meeting)
    assert await paired.scalar("select count(*) from outbox where idempotency_key = :k", k=key) == 1
    rows = await paired.rows(
        "select scheduled_at, agenda_sent_at, cast(agenda as text) from oneonone where pair_id = :p",
        p=pair_id,
    )
    assert len(rows) == 1
    scheduled, sent, agenda = rows[0]
    assert (_aware(scheduled), _aware(sent)) == (meeting, meeting - timedelta(hours=2))
    record = json.loads(agenda)
    assert [t["rule"] for t in record["topics"]] == ["career_growth", "workload", "priorities"]
    assert record["topics"][0]["reason"] == "no 1:1 agenda has had a growth topic yet"
    assert record["counts"]["recaps"] == 1
    # the meeting's time passes: the next is two weeks on, same local time
    paired.clock.now = meeting + timedelta(minutes=1)
    await paired.tick()
    assert local((await pairs(paired))[(MICHAEL, SARAH)][1], "America/Los_Angeles") == "Mon 2026-12-14 10:00"


async def test_two_processes_sending_at_once_queue_each_agenda_once(paired: Chat, db_url: str) -> None:
    await paired.tick()
    meeting = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    now = meeting - timedelta(hours=1)
    other = Database(db_url)
    try:
        first, second = job_for(paired), job_for(paired, other)
        sent = await asyncio.gather(first.send_due(now), second.send_due(now))
    finally:
        await other.dispose()
    due = await paired.scalar("select count(*) from outbox where kind = 'agenda'")
    assert sum(sent) == due >= 1
    assert await paired.scalar("select count(*) from oneonone where agenda_sent_at is not null") == due
    michael = await person_id(paired, MICHAEL)
    assert (
        await paired.scalar("select count(*) from outbox where kind = 'agenda' and person_id = :m", m=michael)
        == 1
    )


async def test_a_moved_report_gets_a_new_pair_and_the_old_one_is_switched_off(paired: Chat) -> None:
    await paired.tick()
    james = await person_id(paired, JAMES)
    assert paired.app is not None
    async with paired.app.db.engine.begin() as conn:  # Sarah moves to Sales (as an org import would do it)
        await conn.execute(
            text("update person set manager_id = :j where email = :e"), {"j": james, "e": SARAH}
        )
    paired.clock.advance(minutes=11)  # pairs follow the org every ten minutes
    await paired.tick()
    found = await pairs(paired)
    assert found[(MICHAEL, SARAH)][2] is False
    every, at, active = found[(JAMES, SARAH)]
    assert active and every == 14
    assert local(at, "Europe/London") == "Mon 2026-11-30 10:00"
    # nothing goes to Michael about Sarah any more
    paired.clock.now = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    await paired.tick()
    assert "1:1 with Sarah Johnson — 2026-11-30" not in await agendas_to(paired, MICHAEL)


async def test_a_department_may_meet_more_often(db_url: str) -> None:
    chat = await Chat(db_url).start()
    try:
        assert chat.app is not None
        chat.app.scheduler.one_on_ones = job_for(chat, every_days_by_department={"Sales": 7})
        await chat.tick()
        found = await pairs(chat)
        assert found[(JAMES, "olivia.jones@example.com")][0] == 7
        assert found[(MICHAEL, SARAH)][0] == 14
    finally:
        await chat.close()


async def test_in_quiet_hours_the_agenda_waits_for_them_to_end_when_that_is_before_the_meeting(
    db_url: str,
) -> None:
    chat = await start(db_url, quiet=QuietSettings(enabled=True))  # 20:00–09:00
    try:
        await chat.tick()
        meeting = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
        chat.clock.now = meeting - timedelta(hours=2)  # 08:00 in Los Angeles: quiet
        await chat.tick()
        michael = await person_id(chat, MICHAEL)
        due = await chat.scalar(
            "select due_at from outbox where kind = 'agenda' and person_id = :m", m=michael
        )
        assert local(_aware(due), "America/Los_Angeles") == "Mon 2026-11-30 09:00"
    finally:
        await chat.close()


# ---- 1on1 @name every N / next DATE TIME -------------------------------------------------------


async def cadence(chat: Chat, email: str, said: str) -> str:
    """``email`` types ``said`` (a 1on1 schedule command); what they are told."""
    assert chat.app is not None
    command = parse_command(said)
    assert isinstance(command, Command) and is_schedule_command(command), said
    async with chat.app.db.sessions() as session, session.begin():
        person = await people.by_email(session, email=email)
        assert person is not None
        ctx = CommandContext(
            session=session, person=person, replies=Replies("t", person.id), engine=chat.app.engine
        )
        out = await set_cadence(ctx, command)
    return "\n".join(o.message.text for o in out)


async def test_the_manager_sets_the_cadence_and_the_next_meeting_in_their_own_time(paired: Chat) -> None:
    await paired.tick()
    assert await cadence(paired, MICHAEL, "1on1 @sarah.johnson every 7") == (
        "Done: you and Sarah Johnson meet every 7 days. Next 1:1: 2026-11-30 10:00 (your time)."
    )
    assert await cadence(paired, MICHAEL, "1on1 @sarah.johnson next 2026-12-03 15:00") == (
        "Done: your next 1:1 with Sarah Johnson is at 2026-12-03 15:00 (your time), then every 7 days. "
        "The agenda reaches you 2 hours before."
    )
    meeting = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # 15:00 in Los Angeles
    assert (await pairs(paired))[(MICHAEL, SARAH)][:2] == (7, meeting)
    paired.clock.now = meeting - timedelta(hours=2)
    await paired.tick()
    assert "1:1 with Sarah Johnson — 2026-12-03" in await agendas_to(paired, MICHAEL)
    paired.clock.now = meeting + timedelta(hours=1)
    await paired.tick()
    assert local((await pairs(paired))[(MICHAEL, SARAH)][1], "America/Los_Angeles") == "Thu 2026-12-10 15:00"
    michael, sarah = await person_id(paired, MICHAEL), await person_id(paired, SARAH)
    audited = await paired.rows(
        "select actor_id, subject_id from auditlog where action = 'one_on_one.cadence' order by id"
    )
    assert audited == [(michael, sarah), (michael, sarah)]


async def test_chinese_words_and_a_pair_the_scheduler_has_not_made_yet(paired: Chat) -> None:
    # no tick yet: the command makes the pair
    assert await cadence(paired, MANAGER, "一对一 @李雷 每 2 周") == (
        "好的：你和 李雷 每 14 天一对一一次。下次一对一稍后会安排在你的下一个工作日。"
    )
    assert await cadence(paired, MANAGER, "1on1 @li.lei 下次 12月3日 15点") == (
        "好的：你与 李雷 的下次一对一在 2026-12-03 15:00（你的时间），之后每 14 天一次。"
        "议程会在会前 2 小时发给你。"
    )
    assert (await pairs(paired))[(MANAGER, LILEI)][1] == datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
    await paired.tick()  # the scheduler keeps what the manager chose
    assert (await pairs(paired))[(MANAGER, LILEI)][1] == datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


async def test_only_the_direct_manager_may_and_bad_values_are_explained(paired: Chat) -> None:
    # David manages nobody: refused before the name is looked up, so the reply does not name Sarah
    assert await cadence(paired, DAVID, "1on1 @sarah.johnson every 7") == (
        "Only a person's manager can set their 1:1s. Nothing was changed."
    )
    assert await cadence(paired, JAMES, "1on1 @sarah.johnson every 7") == (
        "Only Sarah Johnson's manager can set their 1:1s. Nothing was changed."
    )
    assert (
        await paired.scalar("select count(*) from auditlog where action = 'one_on_one.cadence.refused'") == 2
    )
    said = {
        "1on1 @sarah.johnson every 0": "“0” is not a number of days I can use",
        "1on1 @sarah.johnson every 100": "“100” is not a number of days I can use",
        "1on1 @sarah.johnson every two weeks": "“two weeks” is not a number of days I can use",
        "1on1 @sarah.johnson next tomorrow": "I couldn't read “tomorrow” as a date and time",
        "1on1 @sarah.johnson next 2026-12-03 25:00": "I couldn't read “2026-12-03 25:00”",
        "1on1 @sarah.johnson next 2026-11-01 10:00": "2026-11-01 10:00 has already passed",
        "1on1 @nobody every 7": "I can't find “@nobody” among active people",
    }
    for typed, expected in said.items():
        assert expected in await cadence(paired, MICHAEL, typed), typed
    assert await paired.scalar("select count(*) from oneononepair") == 0


def test_which_1on1_commands_are_about_the_schedule() -> None:
    def command(text: str) -> Command:
        parsed = parse_command(text)
        assert isinstance(parsed, Command)
        return parsed

    assert is_schedule_command(command("1on1 @alice every 7"))
    assert is_schedule_command(command("1on1 @alice next 2026-12-03 15:00"))
    assert is_schedule_command(command("一对一 @李雷 每2周"))
    assert is_schedule_command(command("一对一 @李雷 下次 12月3日 15点"))
    assert not is_schedule_command(command("1on1 @alice"))
    assert not is_schedule_command(command("1on1 @alice went well, shipped SSO"))
    assert [
        parse_every(x) for x in ("every 14", "every 2 weeks", "每 7 天", "每2周", "every 91", "every")
    ] == [
        14,
        14,
        7,
        14,
        None,
        None,
    ]


async def test_the_1on1_command_hands_every_and_next_over_in_chat(paired: Chat) -> None:
    await paired.tick()
    assert "Done: you and Sarah Johnson meet every 7 days." in await paired.say(
        MICHAEL, "1on1 @sarah.johnson every 7"
    )
    assert "下次一对一在 2026-12-03 15:00（你的时间）" in await paired.say(
        MANAGER, "一对一 @李雷 下次 2026-12-03 15:00"
    )
    assert "Only Sarah Johnson's manager can set their 1:1s" in await paired.say(
        JAMES, "1on1 @sarah.johnson every 7"
    )
