"""The scheduler's answer to "may this person be messaged now?": calendars, leave and quiet hours."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfoNotFoundError

from scheduler.calendars import QuietHours, WorkCalendar
from scheduler.schedule import deliver_at
from storage.people import PersonRow

FALLBACK_TZ = "UTC"


class PersonTiming:
    """Implements ``conversations.timing.Timing`` with each person's calendar and the quiet hours."""

    def __init__(self, *, quiet: QuietHours, company_days_off: Iterable[date] = ()) -> None:
        self.quiet = quiet
        self.company_days_off = frozenset(company_days_off)
        self._calendars: dict[str, WorkCalendar] = {}

    def calendar(self, country: str) -> WorkCalendar:
        """One calendar per country code, shared (each caches its years)."""
        found = self._calendars.get(country)
        if found is None:
            found = WorkCalendar(country, company_days_off=self.company_days_off)
            self._calendars[country] = found
        return found

    def allowed_from(self, person: PersonRow, when: datetime, *, workdays: bool) -> datetime:
        """The first moment at or after ``when`` this person may get a message."""
        try:
            return deliver_at(
                when,
                tz=person.timezone,
                calendar=self.calendar(person.country),
                quiet=self.quiet,
                away_until=person.away_until,
                workdays=workdays,
            )
        except ZoneInfoNotFoundError:
            # an org row with a time zone nobody knows: UTC is a guess, but silence would be worse
            return deliver_at(
                when,
                tz=FALLBACK_TZ,
                calendar=self.calendar(person.country),
                quiet=self.quiet,
                away_until=person.away_until,
                workdays=workdays,
            )
