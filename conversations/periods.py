"""Period labels and due dates: which week, month or quarter a cycle belongs to, in local time."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def period_label(period: str, local_day: date) -> str:
    """``2026-W48``, ``2026-11`` or ``2026-Q4`` for the day given."""
    if period == "week":
        year, week, _ = local_day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{local_day.year}-{local_day.month:02d}"
    return f"{local_day.year}-Q{(local_day.month - 1) // 3 + 1}"


MAX_YEARS_AHEAD = 2
_DATE = re.compile(r"^(?:(\d{4})[-/.年])?(\d{1,2})[-/.月](\d{1,2})日?$")


def parse_due(text: str, *, today: date) -> date | None:
    """``2026-12-01``, ``2026/12/1``, ``12-01`` or ``12月1日``; a date without a year is the next one."""
    match = _DATE.match(text.strip())
    if not match:
        return None
    year = int(match.group(1)) if match.group(1) else today.year
    try:
        day = date(year, int(match.group(2)), int(match.group(3)))
        if not match.group(1) and day < today:
            day = day.replace(year=year + 1)  # 02-29 in a year without one: ValueError, not a date
    except ValueError:
        return None
    # a due date years away is a typo (and 9999-12-31 cannot be converted to UTC everywhere)
    return day if day.year <= today.year + MAX_YEARS_AHEAD else None


def local_date(moment: datetime | None, timezone: str) -> str:
    """The day ``moment`` falls on where the reader is (a due date shown in UTC can be a day off)."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d") if moment else "—"


def end_of_day(day: date, timezone: str) -> datetime:
    """23:59 local on ``day``, the moment a due date means."""
    return datetime.combine(day, time(23, 59), ZoneInfo(timezone))


def default_due(now: datetime, *, days: int, timezone: str) -> datetime:
    """The end of the day ``days`` after today, local time."""
    local = now.astimezone(ZoneInfo(timezone)).date()
    return end_of_day(local + timedelta(days=days), timezone)


_WEEK_LABEL = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH_LABEL = re.compile(r"^(\d{4})-(\d{2})$")


def period_days(period: str, label: str, *, today: date) -> tuple[date, date]:
    """The first day of the week or month ``label`` names (``2026-W48``, ``2026-11``) and the first day
    after it; the period holding ``today`` when the label is not one of ``period``'s."""
    try:
        if period == "week" and (match := _WEEK_LABEL.match(label)):
            first = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
            return first, first + timedelta(days=7)
        if period == "month" and (match := _MONTH_LABEL.match(label)):
            first = date(int(match.group(1)), int(match.group(2)), 1)
            return first, (first + timedelta(days=32)).replace(day=1)
    except ValueError:
        pass  # "2026-W60", "2026-13": a label no period has; fall back to today's period
    if period == "week":
        first = today - timedelta(days=today.weekday())
        return first, first + timedelta(days=7)
    first = today.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)
