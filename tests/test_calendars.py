"""Workday calendars, quiet hours, fire and delivery times on fixed dates (no wall clock).

The mainland China dates are the State Council's 2026 schedule (国务院办公厅关于2026年部分节假日安排的
通知, November 2025) as the ``holidays`` library encodes it: 1 Jan–3 Jan, 15–23 Feb, 4–6 Apr, 1–5 May,
19–21 Jun, 25–27 Sep and 1–7 Oct off; Sun 4 Jan, Sat 14 Feb, Sat 28 Feb, Sat 9 May, Sun 20 Sep and
Sat 10 Oct worked (调休).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from conversations.away import parse_away
from scheduler.calendars import QuietHours, WorkCalendar
from scheduler.schedule import Rule, deliver_at, fire_date, fire_time, local_to_utc

WEEKLY = Rule(kind="last_workday_of_week", at=time(16, 0))
MONTHLY = Rule(kind="last_workday_of_month", at=time(10, 0))
QUARTERLY = Rule(kind="last_week_of_quarter", at=time(10, 0))
QUIET = QuietHours()
NO_QUIET = QuietHours(enabled=False)
CN = WorkCalendar("CN")
US = WorkCalendar("US")
GB = WorkCalendar("GB")


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# --- calendars -----------------------------------------------------------------------------------


def test_china_2026_make_up_workdays_are_worked() -> None:
    for worked in (date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9)):
        assert CN.is_workday(worked), worked
    assert CN.is_workday(date(2026, 9, 20)) and CN.is_workday(date(2026, 10, 10))
    assert not CN.is_workday(date(2026, 10, 11))  # an ordinary Sunday stays off
    assert not CN.is_workday(date(2026, 2, 20)) and not CN.is_workday(date(2026, 2, 23))  # 春节 调休 off


def test_china_golden_week_2026_is_off_and_the_8th_is_worked() -> None:
    assert [day for day in days(date(2026, 10, 1), date(2026, 10, 7)) if CN.is_workday(day)] == []
    assert CN.is_workday(date(2026, 10, 8))
    assert CN.is_workday(date(2026, 9, 30))


def test_unknown_or_empty_country_is_monday_to_friday_without_holidays() -> None:
    for calendar in (WorkCalendar(""), WorkCalendar("XX")):
        assert calendar.is_workday(date(2026, 1, 1))  # New Year's Day is a holiday only somewhere
        assert calendar.is_workday(date(2026, 10, 9))
        assert not calendar.is_workday(date(2026, 10, 10))  # Saturday
    assert not US.is_workday(date(2026, 1, 1))


def test_country_codes_are_case_insensitive_and_take_a_subdivision() -> None:
    assert not WorkCalendar("cn").is_workday(date(2026, 10, 5))
    # Easter Monday is a bank holiday in England but not in Scotland
    assert not WorkCalendar("GB-ENG").is_workday(date(2026, 4, 6))
    assert WorkCalendar("GB-SCT").is_workday(date(2026, 4, 6))


def test_company_day_off_is_not_a_workday() -> None:
    calendar = WorkCalendar("US", company_days_off=[date(2026, 3, 13)])
    assert not calendar.is_workday(date(2026, 3, 13))
    assert calendar.is_workday(date(2026, 3, 12))


# --- quiet hours ---------------------------------------------------------------------------------


def test_quiet_hours_wrap_past_midnight() -> None:
    assert QUIET.contains(datetime(2026, 3, 2, 20, 0))
    assert QUIET.contains(datetime(2026, 3, 2, 8, 59))
    assert not QUIET.contains(datetime(2026, 3, 2, 9, 0))
    assert not QUIET.contains(datetime(2026, 3, 2, 19, 59))
    assert QUIET.next_allowed(datetime(2026, 3, 2, 21, 0)) == datetime(2026, 3, 3, 9, 0)
    assert QUIET.next_allowed(datetime(2026, 3, 3, 2, 0)) == datetime(2026, 3, 3, 9, 0)
    assert QUIET.next_allowed(datetime(2026, 3, 3, 12, 0)) == datetime(2026, 3, 3, 12, 0)


def test_quiet_hours_within_a_day_disabled_or_empty() -> None:
    lunch = QuietHours(start=time(12, 0), end=time(13, 0))
    assert lunch.contains(datetime(2026, 3, 2, 12, 30)) and not lunch.contains(datetime(2026, 3, 2, 21, 0))
    assert lunch.next_allowed(datetime(2026, 3, 2, 12, 30)) == datetime(2026, 3, 2, 13, 0)
    assert not NO_QUIET.contains(datetime(2026, 3, 2, 23, 0))
    assert not QuietHours(start=time(9, 0), end=time(9, 0)).contains(datetime(2026, 3, 2, 9, 0))


# --- fire times across daylight saving -------------------------------------------------------------


@pytest.mark.parametrize(
    ("period_start", "expected"),
    [
        (date(2026, 3, 2), utc(2026, 3, 6, 21, 0)),  # Fri 16:00 EST (UTC-5), before 8 March
        (date(2026, 3, 9), utc(2026, 3, 13, 20, 0)),  # Fri 16:00 EDT (UTC-4), after
        (date(2026, 10, 26), utc(2026, 10, 30, 20, 0)),  # EDT, before 1 November
        (date(2026, 11, 2), utc(2026, 11, 6, 21, 0)),  # EST, after
    ],
)
def test_new_york_weekly_fire_across_dst(period_start: date, expected: datetime) -> None:
    assert fire_time(WEEKLY, period_start=period_start, tz="America/New_York", calendar=US) == expected


@pytest.mark.parametrize(
    ("rule", "period_start", "expected"),
    [
        (WEEKLY, date(2026, 3, 23), utc(2026, 3, 27, 16, 0)),  # GMT, before 29 March
        # BST, and Good Friday (3 April) is a bank holiday: Thursday is the week's last workday
        (WEEKLY, date(2026, 3, 30), utc(2026, 4, 2, 15, 0)),
        (WEEKLY, date(2026, 10, 19), utc(2026, 10, 23, 15, 0)),  # BST, before 25 October
        (WEEKLY, date(2026, 10, 26), utc(2026, 10, 30, 16, 0)),  # GMT, after
        (MONTHLY, date(2026, 2, 1), utc(2026, 2, 27, 10, 0)),  # GMT
        (MONTHLY, date(2026, 3, 1), utc(2026, 3, 31, 9, 0)),  # Tue 31 March, BST
    ],
)
def test_london_fire_across_dst(rule: Rule, period_start: date, expected: datetime) -> None:
    assert fire_time(rule, period_start=period_start, tz="Europe/London", calendar=GB) == expected


def test_skipped_local_time_moves_to_the_end_of_the_gap_and_repeated_takes_the_first() -> None:
    assert local_to_utc(datetime(2026, 3, 8, 2, 30), "America/New_York") == utc(2026, 3, 8, 7, 0)
    assert local_to_utc(datetime(2026, 11, 1, 1, 30), "America/New_York") == utc(2026, 11, 1, 5, 30)
    assert local_to_utc(datetime(2026, 3, 29, 1, 30), "Europe/London") == utc(2026, 3, 29, 1, 0)
    assert local_to_utc(datetime(2026, 10, 25, 1, 30), "Europe/London") == utc(2026, 10, 25, 0, 30)
    # a weekday rule at a skipped time fires at the gap's end (Sunday 8 March is worked in this calendar)
    sunday_0230 = Rule(kind="weekday", weekday=6, at=time(2, 30))
    works_sundays = WorkCalendar("IL")  # Israel's weekend is Friday–Saturday
    assert fire_time(
        sunday_0230, period_start=date(2026, 3, 2), tz="America/New_York", calendar=works_sundays
    ) == (utc(2026, 3, 8, 7, 0))


# --- Asia/Shanghai: 调休 and Golden Week -----------------------------------------------------------


def test_shanghai_weekly_recap_on_a_make_up_saturday() -> None:
    # week of 5–11 Oct 2026: Mon–Wed are Golden Week, Thu–Sat worked, so Saturday 10 Oct is the last
    assert fire_time(WEEKLY, period_start=date(2026, 10, 8), tz="Asia/Shanghai", calendar=CN) == utc(
        2026, 10, 10, 8, 0
    )
    # and a worked Sunday: 20 Sep 2026 closes its week
    assert fire_date(WEEKLY, period_start=date(2026, 9, 14), calendar=CN) == date(2026, 9, 20)
    assert fire_date(WEEKLY, period_start=date(2026, 2, 9), calendar=CN) == date(2026, 2, 14)
    # the same Saturday in a Monday–Friday calendar is not a workday
    assert fire_date(WEEKLY, period_start=date(2026, 10, 8), calendar=US) == date(2026, 10, 9)


def test_golden_week_has_no_fires_and_periods_close_before_it() -> None:
    rules = [WEEKLY, MONTHLY, QUARTERLY] + [Rule(kind="weekday", weekday=n, at=time(10)) for n in range(7)]
    fired = {
        fire_date(rule, period_start=day, calendar=CN)
        for rule in rules
        for day in days(date(2026, 9, 1), date(2026, 10, 31))
    }
    assert not fired & set(days(date(2026, 10, 1), date(2026, 10, 7)))
    # the week of 28 Sep–4 Oct ends on Wednesday 30 Sep, as does the month and (Q3) the quarter's week
    assert fire_date(WEEKLY, period_start=date(2026, 10, 1), calendar=CN) == date(2026, 9, 30)
    assert fire_date(MONTHLY, period_start=date(2026, 9, 1), calendar=CN) == date(2026, 9, 30)
    assert fire_date(QUARTERLY, period_start=date(2026, 7, 1), calendar=CN) == date(2026, 9, 28)
    assert (
        fire_date(Rule(kind="weekday", weekday=0, at=time(10)), period_start=date(2026, 10, 5), calendar=CN)
        is None
    )


def test_make_up_saturday_is_the_last_workday_of_february_2026() -> None:
    assert fire_time(MONTHLY, period_start=date(2026, 2, 1), tz="Asia/Shanghai", calendar=CN) == utc(
        2026, 2, 28, 2, 0
    )


def test_last_week_of_quarter_starts_on_its_monday_or_the_next_workday() -> None:
    assert fire_date(QUARTERLY, period_start=date(2026, 1, 15), calendar=CN) == date(2026, 3, 30)
    # GB: Monday 28 Dec 2026 is Boxing Day (observed)
    assert fire_date(QUARTERLY, period_start=date(2026, 11, 2), calendar=GB) == date(2026, 12, 29)
    # a company day off on that Tuesday too
    closed = WorkCalendar("GB", company_days_off=[date(2026, 12, 29)])
    assert fire_date(QUARTERLY, period_start=date(2026, 11, 2), calendar=closed) == date(2026, 12, 30)
    # nothing worked from Monday to the quarter's end: the last workday of the seven days before it
    shut = WorkCalendar("", company_days_off=days(date(2026, 12, 28), date(2026, 12, 31)))
    assert fire_date(QUARTERLY, period_start=date(2026, 12, 1), calendar=shut) == date(2026, 12, 25)


def test_company_day_off_moves_the_weekly_fire() -> None:
    calendar = WorkCalendar("US", company_days_off=[date(2026, 3, 13)])
    assert fire_time(WEEKLY, period_start=date(2026, 3, 9), tz="America/New_York", calendar=calendar) == utc(
        2026, 3, 12, 20, 0
    )


def test_rule_validation() -> None:
    assert Rule.model_validate({"kind": "weekday", "weekday": 4, "at": "16:00"}).at == time(16, 0)
    with pytest.raises(ValidationError):
        Rule(kind="weekday", at=time(16))
    with pytest.raises(ValidationError):
        Rule(kind="last_workday_of_week", weekday=4, at=time(16))
    with pytest.raises(ValidationError):
        Rule.model_validate({"kind": "every_full_moon", "at": "16:00"})


# --- delivery: leave, quiet hours, workdays -------------------------------------------------------


def test_on_time_delivery_is_unchanged() -> None:
    due = utc(2026, 3, 13, 20, 0)
    assert deliver_at(due, tz="America/New_York", calendar=US, quiet=QUIET, away_until=None) == due
    # a leave that has ended changes nothing
    assert (
        deliver_at(due, tz="America/New_York", calendar=US, quiet=QUIET, away_until=date(2026, 3, 12)) == due
    )


def test_person_on_leave_gets_the_prompt_when_back() -> None:
    due = utc(2026, 6, 12, 8, 0)  # Fri 12 Jun 16:00 Shanghai
    # back Fri 19 Jun? that is 端午节, then a weekend: Monday 22 Jun at the rule's 16:00
    back = deliver_at(due, tz="Asia/Shanghai", calendar=CN, quiet=QUIET, away_until=date(2026, 6, 18))
    assert back == utc(2026, 6, 22, 8, 0)
    # back across the spring-forward change: 16:00 EDT
    due_ny = utc(2026, 3, 6, 21, 0)  # Fri 6 Mar 16:00 EST
    assert deliver_at(
        due_ny, tz="America/New_York", calendar=US, quiet=QUIET, away_until=date(2026, 3, 6)
    ) == utc(2026, 3, 9, 20, 0)


def test_leave_ending_before_a_quiet_hours_rule_time_delivers_at_quiet_end() -> None:
    due = utc(2026, 3, 2, 0, 0)  # Mon 2 Mar 08:00 Shanghai, inside quiet hours
    assert deliver_at(due, tz="Asia/Shanghai", calendar=CN, quiet=QUIET, away_until=date(2026, 3, 4)) == utc(
        2026, 3, 5, 1, 0
    )


def test_quiet_hours_push_a_21_00_fire_to_09_00_next_workday() -> None:
    friday_21 = utc(2026, 3, 7, 2, 0)  # Fri 6 Mar 21:00 EST
    assert deliver_at(friday_21, tz="America/New_York", calendar=US, quiet=QUIET, away_until=None) == utc(
        2026, 3, 9, 13, 0
    )  # Mon 09:00 EDT
    assert deliver_at(friday_21, tz="America/New_York", calendar=US, quiet=NO_QUIET, away_until=None) == (
        friday_21
    )
    # Wed 30 Sep 21:00 Shanghai: Golden Week follows, so 09:00 on Thursday 8 Oct
    assert deliver_at(
        utc(2026, 9, 30, 13, 0), tz="Asia/Shanghai", calendar=CN, quiet=QUIET, away_until=None
    ) == (utc(2026, 10, 8, 1, 0))
    # early morning of a workday: the same day's quiet end
    assert deliver_at(
        utc(2026, 3, 10, 11, 0), tz="America/New_York", calendar=US, quiet=QUIET, away_until=None
    ) == (utc(2026, 3, 10, 13, 0))


def test_delivery_skips_a_company_day_off_and_holidays() -> None:
    calendar = WorkCalendar("CN", company_days_off=[date(2026, 10, 8)])
    due = utc(2026, 10, 2, 6, 0)  # a prompt started by HR on National Day, 14:00 Shanghai
    assert deliver_at(due, tz="Asia/Shanghai", calendar=calendar, quiet=QUIET, away_until=None) == utc(
        2026, 10, 9, 6, 0
    )


def test_deliver_at_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError):
        deliver_at(datetime(2026, 3, 2, 9), tz="UTC", calendar=US, quiet=QUIET, away_until=None)


def test_repeated_hour_on_time_keeps_its_instant() -> None:
    # Israel falls back on Sunday 25 Oct 2026, a workday there: 01:30 happens twice. A prompt due at the
    # second 01:30 (UTC+2) is not moved, so it must not be turned into the first one (UTC+3).
    second_0130 = utc(2026, 10, 24, 23, 30)
    assert local_to_utc(datetime(2026, 10, 25, 1, 30), "Asia/Jerusalem") == utc(2026, 10, 24, 22, 30)
    assert (
        deliver_at(
            second_0130, tz="Asia/Jerusalem", calendar=WorkCalendar("IL"), quiet=NO_QUIET, away_until=None
        )
        == second_0130
    )


# --- parse_away ----------------------------------------------------------------------------------

TODAY = date(2026, 11, 20)


@pytest.mark.parametrize(
    "text",
    [
        "away until 2026-12-10",
        "Away until Dec 10",
        "away until December 10th, 2026",
        "I'm off till 10 Dec",
        "请假到 12月10日",
        "请假到12月10号",
        "休假至 2026-12-10",
        "休假至 2026年12月10日",
        "请假到１２月１０日，有事找小王",
    ],
)
def test_parse_away_both_languages(text: str) -> None:
    assert parse_away(text, today=TODAY) == date(2026, 12, 10)


def test_parse_away_without_a_year_means_the_next_such_date() -> None:
    assert parse_away("away until Jan 5", today=date(2026, 12, 20)) == date(2027, 1, 5)
    assert parse_away("请假到2月29日", today=date(2027, 3, 1)) == date(2028, 2, 29)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "away until someday",
        "请假到下周",
        "away until 2026-13-01",
        "away until Feb 30",
        "away until Smarch 3",
        "away until 2020-01-01",  # already past
        "away until 2099-01-01",  # a typo, not a leave
        "2026-12-10",  # a date with no "away until"
    ],
)
def test_parse_away_rejects_bad_input(text: str) -> None:
    assert parse_away(text, today=TODAY) is None
