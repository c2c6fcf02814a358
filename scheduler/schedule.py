"""Ritual timing as data, and the UTC moment a person's prompt fires and may be delivered."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scheduler.calendars import QuietHours, WorkCalendar

RuleKind = Literal["last_workday_of_week", "last_workday_of_month", "last_week_of_quarter", "weekday"]
Period = Literal["week", "month", "quarter"]

_PERIOD_OF: dict[str, Period] = {
    "last_workday_of_week": "week",
    "weekday": "week",
    "last_workday_of_month": "month",
    "last_week_of_quarter": "quarter",
}


class Rule(BaseModel):
    """When in its period a ritual fires, at ``at`` in each person's own local time.

    - ``last_workday_of_week``: the last workday of the ISO week (Monday–Sunday), so a 调休 Saturday or
      Sunday that is worked can be it.
    - ``last_workday_of_month``: the last workday of the calendar month.
    - ``last_week_of_quarter``: the quarter's last seven days always hold exactly one Monday; the first
      workday from that Monday to the quarter's end, or if there is none, the last workday of those seven
      days before the Monday.
    - ``weekday``: day ``weekday`` of the ISO week (0 = Monday, as ``date.weekday()`` and APScheduler);
      skipped for a week in which that day is not a workday.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: RuleKind
    at: time
    weekday: int | None = Field(default=None, ge=0, le=6)

    @model_validator(mode="after")
    def _weekday_only_for_weekday(self) -> Rule:
        if (self.kind == "weekday") != (self.weekday is not None):
            raise ValueError("weekday is required for kind 'weekday' and only for it")
        return self

    @property
    def period(self) -> Period:
        """The period one cycle of this rule covers."""
        return _PERIOD_OF[self.kind]


def period_bounds(period: Period, day: date) -> tuple[date, date]:
    """First and last day of the week (ISO, Monday first), month or quarter that contains ``day``."""
    if period == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    first_month = day.month if period == "month" else (day.month - 1) // 3 * 3 + 1
    first = date(day.year, first_month, 1)
    months = 1 if period == "month" else 3
    following = date(first.year + (first_month + months - 1) // 12, (first_month + months - 1) % 12 + 1, 1)
    return first, following - timedelta(days=1)


def _last_workday(first: date, last: date, calendar: WorkCalendar) -> date | None:
    day = last
    while day >= first:
        if calendar.is_workday(day):
            return day
        day -= timedelta(days=1)
    return None


def fire_date(rule: Rule, *, period_start: date, calendar: WorkCalendar) -> date | None:
    """The local day ``rule`` fires in the period containing ``period_start``; None when it has none."""
    first, last = period_bounds(rule.period, period_start)
    if rule.kind == "weekday":
        assert rule.weekday is not None  # the validator guarantees it
        day = first + timedelta(days=rule.weekday)
        return day if calendar.is_workday(day) else None
    if rule.kind == "last_week_of_quarter":
        window_start = last - timedelta(days=6)
        monday = window_start + timedelta(days=(7 - window_start.weekday()) % 7)
        day = monday
        while day <= last:
            if calendar.is_workday(day):
                return day
            day += timedelta(days=1)
        return _last_workday(window_start, monday - timedelta(days=1), calendar)
    return _last_workday(first, last, calendar)


def local_to_utc(wall: datetime, tz: str) -> datetime:
    """The UTC instant of wall-clock time ``wall`` (its tzinfo ignored) in ``tz``.

    A time skipped by spring-forward becomes the first valid instant after the gap (02:30 on a
    New York spring-forward day → 03:00 EDT); a time repeated by fall-back means its first occurrence.
    """
    zone = ZoneInfo(tz)
    naive = wall.replace(tzinfo=None)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first  # exists; fold=0 is the earlier of two occurrences
    # In a gap, fold=0 applies the offset from before the jump and fold=1 the one after, which brackets
    # the transition instant (PEP 495); find it to the second.
    low = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    before = datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def fire_time(rule: Rule, *, period_start: date, tz: str, calendar: WorkCalendar) -> datetime | None:
    """When (aware, UTC) ``rule`` fires for one person in the period containing ``period_start``."""
    day = fire_date(rule, period_start=period_start, calendar=calendar)
    return None if day is None else local_to_utc(datetime.combine(day, rule.at), tz)


def deliver_at(
    when_utc: datetime,
    *,
    tz: str,
    calendar: WorkCalendar,
    quiet: QuietHours,
    away_until: date | None,
    workdays: bool = True,
) -> datetime:
    """The first moment (UTC) at or after ``when_utc`` that a prompt may reach this person.

    Someone away gets it on the first workday after ``away_until`` at the same local time as it was due
    (the rule's time). A day that is not a workday moves to the next workday, same local time. A time in
    quiet hours moves to where they end, and if that is not a workday, to the next workday's quiet end.
    With ``workdays=False`` (HR starting a cycle by hand) only leave and quiet hours move it.
    """
    if when_utc.tzinfo is None:
        raise ValueError("when_utc must be timezone-aware")
    wall = when_utc.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    original = wall
    back_from_leave = away_until is not None and wall.date() <= away_until
    if away_until is not None and back_from_leave:
        wall = datetime.combine(away_until + timedelta(days=1), wall.time())
    if workdays or back_from_leave:
        # the first day back is a workday: nobody returns from leave on a Sunday
        wall = _on_workday(wall, calendar)
    if quiet.contains(wall):
        # quiet hours end outside quiet hours, so one more move to a workday (same time) settles it
        wall = quiet.next_allowed(wall)
        if workdays or back_from_leave:
            wall = _on_workday(wall, calendar)
    # unchanged: keep the exact instant (a fall-back repeat hour would otherwise map to its first copy)
    return when_utc.astimezone(UTC) if wall == original else local_to_utc(wall, tz)


def _on_workday(wall: datetime, calendar: WorkCalendar) -> datetime:
    return datetime.combine(calendar.next_workday(wall.date()), wall.time())
