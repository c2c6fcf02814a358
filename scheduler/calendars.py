"""Workday calendars per country (with mainland China's make-up workdays) and quiet hours."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

log = logging.getLogger(__name__)

MONDAY_TO_FRIDAY = frozenset({0, 1, 2, 3, 4})


@dataclass(frozen=True, slots=True)
class _Year:
    """One country's year, frozen: the library's objects are mutable dicts we must not share."""

    workweek: frozenset[int]  # date.weekday() numbers that are normally worked
    days_off: frozenset[date]  # public holidays, observed days and 调休 rest days
    extra_workdays: frozenset[date]  # weekend days the State Council made workdays (调休)


_PLAIN_YEAR = _Year(MONDAY_TO_FRIDAY, frozenset(), frozenset())


def _split(code: str) -> tuple[str, str | None]:
    """``"GB-ENG"`` → ``("GB", "ENG")``: an ISO 3166-2 code picks a subdivision (UK bank holidays differ)."""
    country, _, subdivision = code.strip().upper().partition("-")
    return country, subdivision or None


@lru_cache(maxsize=1024)
def _year(code: str, year: int) -> _Year:
    """The calendar of one (country, year), computed once per process."""
    country, subdivision = _split(code)
    if not country:
        return _PLAIN_YEAR
    try:
        # The neighbouring years too: a year's notice can place make-up workdays or observed days in the
        # year before or after it (China's 2002 notice moved two December 2001 weekend days).
        source = holidays.country_holidays(country, subdiv=subdivision, years=(year - 1, year, year + 1))
    except NotImplementedError:
        # an unknown code is an org-file mistake, not a reason to stop the planner: say it once, go on
        log.warning("no holiday calendar for country %r: using Monday to Friday without holidays", code)
        return _PLAIN_YEAR
    return _Year(
        workweek=frozenset(range(7)) - frozenset(source.weekend),
        days_off=_within(year, source.keys()),
        extra_workdays=_within(year, source.weekend_workdays),
    )


def _within(year: int, days: Iterable[date]) -> frozenset[date]:
    return frozenset(day for day in days if day.year == year)


class WorkCalendar:
    """Which days one person works: their country's official calendar minus the company's days off.

    Unknown or empty countries fall back to Monday–Friday with no holidays. Years the library has no
    official schedule for yet (China publishes each year's 调休 in November) carry only the statutory
    holidays.
    """

    def __init__(self, country: str, *, company_days_off: Iterable[date] = ()) -> None:
        self.country = country.strip().upper()
        self.company_days_off = frozenset(company_days_off)

    def is_workday(self, day: date) -> bool:
        """True when ``day`` is a working day for this person."""
        if day in self.company_days_off:
            return False
        year = _year(self.country, day.year)
        if day in year.extra_workdays:
            return True
        return day.weekday() in year.workweek and day not in year.days_off

    def next_workday(self, day: date, *, limit_days: int = 366) -> date:
        """``day`` itself when it is a workday, else the first workday after it."""
        for offset in range(limit_days + 1):
            candidate = day + timedelta(days=offset)
            if self.is_workday(candidate):
                return candidate
        # a calendar without a single workday in a year is a configuration error, not a wait
        raise ValueError(f"no workday within {limit_days} days of {day} for {self.country!r}")

    def __repr__(self) -> str:
        return f"WorkCalendar({self.country!r}, company_days_off={len(self.company_days_off)})"


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours in which nobody is messaged; ``start`` > ``end`` wraps past midnight (20:00–09:00).

    ``start == end`` means no quiet hours at all, the same as ``enabled=False``.
    """

    start: time = time(20, 0)
    end: time = time(9, 0)
    enabled: bool = True

    def contains(self, local_dt: datetime) -> bool:
        """True when the wall-clock time of ``local_dt`` falls in quiet hours (start inclusive, end not)."""
        if not self.enabled or self.start == self.end:
            return False
        now = local_dt.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_allowed(self, local_dt: datetime) -> datetime:
        """``local_dt`` itself outside quiet hours, else the wall-clock moment quiet hours end.

        Only the wall clock moves; the tzinfo (if any) is kept, so the caller resolves DST afterwards.
        """
        if not self.contains(local_dt):
            return local_dt
        day = local_dt.date()
        if self.start > self.end and local_dt.time().replace(tzinfo=None) >= self.start:
            day += timedelta(days=1)  # evening part of an overnight window: quiet ends tomorrow
        return datetime.combine(day, self.end, tzinfo=local_dt.tzinfo)
