"""Scheduled rituals on a controllable clock: each person at their own local time, on their own
workdays, never in quiet hours or on leave; cycles opened once, also after downtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.settings import QuietSettings, SchedulerSettings
from conversations.i18n import t
from conversations.periods import period_label
from tests.harness import CANNED, LILEI, WEEKLY, Chat

HR = "hr@example.com"
SH = "li.na@example.com"  # Shanghai, China
NY = "sam.jones@example.com"  # New York, United States
LDN = "olivia.brown@example.com"  # London, Great Britain
BOSS = "wu.lei@example.com"  # manages all three, Shanghai

ORG = """
people:
  - {email: wu.lei@example.com, name: 吴磊, timezone: Asia/Shanghai, country: CN, locale: zh-CN,
     roles: [manager]}
  - {email: hr@example.com, name: 何蓉, manager_email: wu.lei@example.com, timezone: Asia/Shanghai,
     country: CN, locale: zh-CN, roles: [hr]}
  - {email: li.na@example.com, name: 李娜, manager_email: wu.lei@example.com, timezone: Asia/Shanghai,
     country: CN, locale: zh-CN}
  - {email: sam.jones@example.com, name: Sam Jones, manager_email: wu.lei@example.com,
     timezone: America/New_York, country: US, locale: en}
  - {email: olivia.brown@example.com, name: Olivia Brown, manager_email: wu.lei@example.com,
     timezone: Europe/London, country: GB, locale: en}
"""

WEEKLY_ONLY = """
schedules:
  - ritual: weekly_recap
    when: last_workday_of_week
    at: "16:00"
    audience: {people: [li.na@example.com, sam.jones@example.com, olivia.brown@example.com]}
    reminders: {after_hours: 4, max: 2}
"""


MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
async def planned(db_url: str, tmp_path: Path) -> AsyncIterator[Chat]:
    """A process with the small org above, the weekly schedule and quiet hours on."""
    org = tmp_path / "org.yaml"
    org.write_text(ORG, encoding="utf-8")
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(WEEKLY_ONLY, encoding="utf-8")
    chat = Chat(db_url, quiet=QuietSettings(enabled=True), scheduler=SchedulerSettings(file=schedules))
    chat.clock.now = utc(2026, 11, 26, 1, 0)  # Thursday morning in Shanghai
    await chat.start(org=org)
    yield chat
    await chat.close()


async def weekly_intros(chat: Chat, email: str, period: str | None = None) -> int:
    """How many check-in openings ``email`` has been sent (in cycles of ``period``, where given)."""
    return int(
        await chat.scalar(
            "select count(*) from outbox o join person p on p.id = o.person_id "
            "join assignment a on a.id = o.assignment_id join cycle c on c.id = a.cycle_id "
            "where p.email = :e and o.kind = 'intro' and o.status = 'sent' "
            "and (c.period = :period or :period is null)",
            e=email,
            period=period,
        )
    )


async def cycles_opened(chat: Chat) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in await chat.rows("select ritual_key, period from cycle order by id")]


async def test_each_person_gets_it_at_four_in_their_own_afternoon(planned: Chat) -> None:
    planned.clock.now = utc(2026, 11, 27, 6, 59)  # Friday; an hour before Shanghai's 16:00
    first = await planned.tick()
    assert first.leader and not first.planned
    planned.clock.now = utc(2026, 11, 27, 7, 0)
    opened = await planned.tick()
    assert [(p.ritual, p.period, p.people) for p in opened.planned] == [("weekly_recap", "2026-W48", 3)]
    assert [await weekly_intros(planned, who) for who in (SH, LDN, NY)] == [0, 0, 0]

    expected = [
        (utc(2026, 11, 27, 8, 0), SH),
        (utc(2026, 11, 27, 16, 0), LDN),
        (utc(2026, 11, 27, 21, 0), NY),
    ]
    reached: list[str] = []
    for moment, who in expected:
        planned.clock.now = moment - MINUTE
        await planned.tick()
        assert await weekly_intros(planned, who) == 0, f"{who} was messaged before their 16:00"
        planned.clock.now = moment
        await planned.tick()
        reached.append(who)
        assert [await weekly_intros(planned, w) for w in reached] == [1] * len(reached)
    assert "每周回顾" in await planned.inbox(SH)
    assert "Weekly recap" in await planned.inbox(NY)

    await planned.restart()
    await planned.tick()
    assert await cycles_opened(planned) == [("weekly_recap", "2026-W48")]
    assert [await weekly_intros(planned, w) for w in (SH, LDN, NY)] == [1, 1, 1]


@pytest.mark.parametrize(
    ("who", "due"),
    [
        (NY, utc(2026, 3, 6, 21, 0)),  # 16:00 EST, the Friday before the clocks change
        (NY, utc(2026, 3, 13, 20, 0)),  # 16:00 EDT, the Friday after
        (NY, utc(2026, 10, 30, 20, 0)),  # 16:00 EDT, two days before they change back on 1 November
        (NY, utc(2026, 11, 6, 21, 0)),  # 16:00 EST, the Friday after
        (LDN, utc(2026, 3, 27, 16, 0)),  # 16:00 GMT, two days before British Summer Time
        (LDN, utc(2026, 4, 2, 15, 0)),  # 16:00 BST on Thursday: Good Friday is a bank holiday
        (SH, utc(2026, 10, 10, 8, 0)),  # 16:00 on Saturday 10 October, a 调休 make-up workday
        (SH, utc(2026, 9, 30, 8, 0)),  # Wednesday: National Day's Golden Week starts on Thursday
    ],
)
async def test_local_four_pm_across_clock_changes_and_holidays(
    planned: Chat, who: str, due: datetime
) -> None:
    period = period_label("week", due.date())
    planned.clock.now = due - MINUTE
    await planned.tick()
    assert await weekly_intros(planned, who, period) == 0
    planned.clock.now = due
    await planned.tick()
    assert await weekly_intros(planned, who, period) == 1


async def kinds_sent(chat: Chat, email: str, kind: str) -> int:
    return int(
        await chat.scalar(
            "select count(*) from outbox o join person p on p.id = o.person_id "
            "where p.email = :e and o.kind = :k and o.status = 'sent'",
            e=email,
            k=kind,
        )
    )


async def test_leave_holds_the_prompt_until_the_first_workday_back_then_sends_it_once(planned: Chat) -> None:
    assert t("cmd.away_set", "zh-CN", date="2026-12-02") in await planned.say(SH, "请假到 12月2日")
    for moment in (utc(2026, 11, 27, 7, 0), utc(2026, 11, 27, 8, 0), utc(2026, 11, 27, 16, 0)):
        planned.clock.now = moment
        await planned.tick()
    # Sam goes on leave after the cycle was planned: the plan is checked again when his time comes
    assert t("cmd.away_set", "en", date="2026-12-01") in await planned.say(NY, "away until Dec 1")
    planned.clock.now = utc(2026, 11, 27, 21, 0)
    await planned.tick()
    assert [await weekly_intros(planned, w) for w in (SH, LDN, NY)] == [0, 1, 0]

    planned.clock.now = utc(2026, 12, 3, 7, 59)  # Thursday 15:59 in Shanghai, her first day back
    await planned.tick()
    assert await weekly_intros(planned, SH) == 0
    planned.clock.now = utc(2026, 12, 3, 8, 0)
    await planned.tick()
    assert await weekly_intros(planned, SH, "2026-W48") == 1
    planned.clock.now = utc(2026, 12, 2, 21, 0) + timedelta(days=1)
    await planned.tick()
    # Sam: first workday after 1 December is Wednesday the 2nd, 16:00 in New York, then once only
    assert await weekly_intros(planned, NY, "2026-W48") == 1
    assert await weekly_intros(planned, SH, "2026-W48") == 1


async def test_hr_start_defers_people_in_quiet_hours_and_says_until_when(planned: Chat) -> None:
    planned.clock.now = utc(2026, 11, 27, 8, 0)  # 16:00 Shanghai, 08:00 London, 03:00 New York
    reply = await planned.say(HR, f"cycle start weekly --people {SH},{LDN},{NY}")
    assert t("cmd.deferred", "zh-CN", count=2, until="2026-11-27 22:00") in reply
    assert [await weekly_intros(planned, w) for w in (SH, LDN, NY)] == [1, 0, 0]
    planned.clock.now = utc(2026, 11, 27, 9, 0)  # 09:00 in London: quiet hours are over
    await planned.tick()
    assert [await weekly_intros(planned, w) for w in (SH, LDN, NY)] == [1, 1, 0]
    planned.clock.now = utc(2026, 11, 27, 13, 59)
    await planned.tick()
    assert await weekly_intros(planned, NY) == 0
    planned.clock.now = utc(2026, 11, 27, 14, 0)
    await planned.tick()
    assert [await weekly_intros(planned, w) for w in (SH, LDN, NY)] == [1, 1, 1]


async def test_with_quiet_hours_switched_off_hr_start_reaches_everyone_at_once(
    db_url: str, tmp_path: Path
) -> None:
    org = tmp_path / "org.yaml"
    org.write_text(ORG, encoding="utf-8")
    chat = Chat(db_url, quiet=QuietSettings(enabled=False))
    chat.clock.now = utc(2026, 11, 27, 8, 0)
    await chat.start(org=org)
    try:
        reply = await chat.say(HR, f"cycle start weekly --people {SH},{LDN},{NY}")
        assert "22:00" not in reply and "免打扰" not in reply
        assert [await weekly_intros(chat, w) for w in (SH, LDN, NY)] == [1, 1, 1]
    finally:
        await chat.close()


async def test_a_fire_time_missed_while_down_is_caught_up_once(planned: Chat) -> None:
    await planned.restart()  # down from Thursday until Friday 22:00 UTC, past all three 16:00s
    planned.clock.now = utc(2026, 11, 27, 22, 0)
    await planned.restart()
    result = await planned.tick()
    assert [(p.ritual, p.period) for p in result.planned] == [("weekly_recap", "2026-W48")]
    # New York: 17:00 on Friday, sent now; Shanghai: 06:00 on Saturday, and London: 22:00, wait for
    # Monday's end of quiet hours (a scheduled ritual keeps to workdays)
    assert [await weekly_intros(planned, w) for w in (SH, LDN, NY)] == [0, 0, 1]
    await planned.tick()
    await planned.restart()
    await planned.tick()
    assert await cycles_opened(planned) == [("weekly_recap", "2026-W48")]
    planned.clock.now = utc(2026, 11, 30, 9, 0)  # Monday 17:00 Shanghai, 09:00 London
    await planned.tick()
    assert [await weekly_intros(planned, w) for w in (SH, LDN, NY)] == [1, 1, 1]


async def test_a_cycle_whose_deadline_passed_while_down_is_not_opened(planned: Chat) -> None:
    planned.clock.now = utc(2026, 12, 2, 9, 0)  # Wednesday of the next week: W48 was due Tuesday
    result = await planned.tick()
    assert result.planned == ()
    assert await cycles_opened(planned) == []


async def test_nudges_skip_quiet_hours_and_weekends_then_the_manager_gets_a_digest(planned: Chat) -> None:
    for hour in (7, 8):
        planned.clock.now = utc(2026, 11, 27, hour, 0)
        await planned.tick()
    assert "每周回顾" in await planned.inbox(SH)
    planned.clock.now = utc(2026, 11, 27, 12, 0)  # four hours on: 20:00 in Shanghai, quiet
    await planned.tick()
    planned.clock.now = utc(2026, 11, 28, 4, 0)  # Saturday noon
    await planned.tick()
    assert await kinds_sent(planned, SH, "reminder") == 0

    planned.clock.now = utc(2026, 11, 30, 1, 0)  # Monday 09:00 Shanghai
    await planned.tick()
    shown = await planned.inbox(SH)
    assert t("sched.nudge", "zh-CN", title="每周回顾", due="2026-12-01") in shown
    for hour in (5, 9):  # 13:00 (the second and last), 17:00 (nothing: at most two)
        planned.clock.now = utc(2026, 11, 30, hour, 0)
        await planned.tick()
    assert await kinds_sent(planned, SH, "reminder") == 2

    for said in [*CANNED[WEEKLY][LILEI], "提交"]:  # she answers the way 李雷 does in other tests
        await planned.say(SH, said)
    assert await planned.scalar("select count(*) from assignment where status = 'submitted'") == 1
    planned.clock.now = utc(2026, 12, 1, 16, 0)  # the deadline (Tuesday 23:59 Shanghai) has passed
    await planned.tick()
    assert await planned.inbox(BOSS) == ""  # midnight for him: the digest waits for the morning
    planned.clock.now = utc(2026, 12, 2, 1, 0)
    await planned.tick()
    digest = await planned.inbox(BOSS)
    assert "Olivia Brown" in digest and "Sam Jones" in digest and "李娜" not in digest
    await planned.tick()
    await planned.restart()
    await planned.tick()
    assert await kinds_sent(planned, BOSS, "digest") == 1


async def test_a_snoozed_prompt_comes_back_when_asked_and_is_not_nudged_meanwhile(planned: Chat) -> None:
    for hour in (7, 8):
        planned.clock.now = utc(2026, 11, 27, hour, 0)
        await planned.tick()
    await planned.inbox(SH)
    planned.clock.now = utc(2026, 11, 27, 8, 30)
    assert "18:30" in await planned.say(SH, "稍后 2小时")
    planned.clock.now = utc(2026, 11, 27, 10, 29)
    await planned.tick()
    assert await planned.inbox(SH) == ""
    planned.clock.now = utc(2026, 11, 27, 10, 30)
    await planned.tick()
    assert t("chat.snooze_over", "zh-CN", title="每周回顾") in await planned.inbox(SH)
    planned.clock.now = utc(2026, 11, 27, 12, 1)  # four hours after the prompt: she is snoozed
    await planned.tick()
    assert await kinds_sent(planned, SH, "reminder") == 1  # the snooze's own, no nudge


async def test_hr_remind_waits_for_the_end_of_quiet_hours_where_it_is_night(planned: Chat) -> None:
    planned.clock.now = utc(2026, 11, 27, 15, 0)  # 23:00 in Shanghai, 15:00 in London, 10:00 in New York
    await planned.say(HR, f"cycle start weekly --people {LDN},{NY}")
    await planned.say(HR, "cycle remind 1")
    assert await kinds_sent(planned, LDN, "reminder") == 1
    assert await kinds_sent(planned, NY, "reminder") == 1
    await planned.say(HR, f"cycle start weekly --people {SH}")  # she is asleep: deferred to 09:00
    planned.clock.now = utc(2026, 11, 28, 1, 0)
    await planned.tick()
    assert await weekly_intros(planned, SH) == 1
    planned.clock.now = utc(2026, 11, 28, 14, 0)  # 22:00 in Shanghai
    await planned.say(HR, "cycle remind 1")
    assert await kinds_sent(planned, SH, "reminder") == 0
    planned.clock.now = utc(2026, 11, 29, 1, 0)  # 09:00 in Shanghai (a Sunday: HR asked, so it goes)
    await planned.tick()
    assert await kinds_sent(planned, SH, "reminder") == 1
