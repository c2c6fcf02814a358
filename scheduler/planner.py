"""Path 1 (PLAN): open each scheduled ritual's cycle once per period, each person at their own time.

The leader runs ``plan`` every minute and once at start. A cycle is created when the period's
earliest local fire time is near; each person's assignment carries the moment their prompt may go
out (their time zone, workdays, leave, quiet hours). After downtime the previous period is looked
at too: a cycle that was missed is created then, once, if its deadline has not passed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from conversations.periods import end_of_day, period_label
from conversations.ritual_loader import RitualCatalog, digest
from scheduler.schedule import fire_time, period_bounds
from scheduler.schedules import Schedule, ScheduleBook
from scheduler.timing import PersonTiming
from storage import assignments, cycles, people
from storage.engine import Database
from storage.people import PersonRow

log = logging.getLogger(__name__)
LEAD = timedelta(hours=1)  # cycles exist a little before their first prompt is due


@dataclass(frozen=True)
class Planned:
    """A cycle the planner opened."""

    cycle_id: int
    ritual: str
    period: str
    people: int
    first_start: datetime
    due_at: datetime


class Planner:
    """Creates scheduled cycles; safe to run on several processes (cycles are unique per period)."""

    def __init__(
        self,
        db: Database,
        catalog: RitualCatalog,
        book: ScheduleBook,
        timing: PersonTiming,
        *,
        company_timezone: str,
    ) -> None:
        self.db, self.catalog, self.book, self.timing = db, catalog, book, timing
        self.company_tz = ZoneInfo(company_timezone)

    async def plan(self, now: datetime) -> list[Planned]:
        """Open every cycle whose time has come and that does not exist yet."""
        opened: list[Planned] = []
        for schedule in self.book.enabled():
            for period_start in self._candidate_periods(schedule, now):
                planned = await self._plan_one(schedule, period_start, now)
                if planned is not None:
                    opened.append(planned)
        return opened

    def _candidate_periods(self, schedule: Schedule, now: datetime) -> list[date]:
        """The previous period (missed while down), the current one, and the next (people east of
        the company's time zone may reach their fire time first)."""
        today = now.astimezone(self.company_tz).date()
        first, last = period_bounds(schedule.rule.period, today)
        previous = period_bounds(schedule.rule.period, first - timedelta(days=1))[0]
        return [previous, first, last + timedelta(days=1)]

    async def _plan_one(self, schedule: Schedule, period_start: date, now: datetime) -> Planned | None:
        ritual = self.catalog.get(schedule.ritual)
        label = period_label(ritual.period, period_start)
        async with self.db.sessions() as session, session.begin():
            if await cycles.find_cycle(session, ritual_key=ritual.key, period=label) is not None:
                return None
            who = schedule.who
            scope = {"departments": list(who.departments), "emails": list(who.people)}
            # every tick asks, for days before the fire time: the time zones and countries tell when
            # the first fire is without reading every person
            earliest = self._earliest_fire(schedule, period_start, await people.places(session, **scope))
            if earliest is None or now < earliest - LEAD:
                return None
            audience = await people.audience(session, **scope)
            fires = self._fire_times(schedule, period_start, audience)
            if not fires:
                return None
            starts = {
                person.id: self.timing.allowed_from(person, max(fires[person.id], now), workdays=True)
                for person in audience
                if person.id in fires
            }
            days = ritual.due_days if schedule.deadline_days is None else schedule.deadline_days
            # the deadline follows the planned fire times, not the catch-up: a cycle missed while down
            # keeps the deadline it would have had (and is not opened once that has passed)
            last_fire = max(fires.values()).astimezone(self.company_tz).date()
            due_at = end_of_day(last_fire + timedelta(days=days), str(self.company_tz))
            if due_at <= now:
                return None  # missed entirely while down: opening it now would only be noise
            ritual_id = await cycles.ensure_ritual_definition(
                session,
                key=ritual.key,
                digest=digest(ritual),
                body=ritual.model_dump(mode="json", by_alias=True),
            )
            cycle_scope = {
                "schedule": schedule.ritual,
                "departments": list(who.departments),
                "people": list(who.people),
                "reminders": schedule.reminders.model_dump(),
            }
            cycle, created = await cycles.find_or_create_cycle(
                session,
                ritual_key=ritual.key,
                ritual_id=ritual_id,
                period=label,
                scope=cycle_scope,
                due_at=due_at,
                started_by_id=None,
            )
            if not created or cycle.id is None:
                return None
            await assignments.create_many(
                session, cycle_id=cycle.id, part=ritual.parts[0].id, starts=dict(starts)
            )
        planned = Planned(cycle.id, ritual.key, label, len(starts), min(starts.values()), due_at)
        log.info(
            "opened cycle #%d %s %s for %d people (first prompt %s, due %s)",
            planned.cycle_id, planned.ritual, planned.period, planned.people,
            planned.first_start.isoformat(), due_at.isoformat(),
        )  # fmt: skip
        return planned

    def _earliest_fire(
        self, schedule: Schedule, period_start: date, places: list[tuple[str, str]]
    ) -> datetime | None:
        fires = [self._fire(schedule, period_start, tz, country) for tz, country in places]
        return min((f for f in fires if f is not None), default=None)

    def _fire(self, schedule: Schedule, period_start: date, tz: str, country: str) -> datetime | None:
        calendar = self.timing.calendar(country)
        return fire_time(schedule.rule, period_start=period_start, tz=tz, calendar=calendar)

    def _fire_times(
        self, schedule: Schedule, period_start: date, audience: list[PersonRow]
    ) -> dict[int, datetime]:
        """Each person's local fire time this period; people with no workday for it are left out.

        Computed once per (time zone, country): a company has far fewer of those than people.
        """
        by_place: dict[tuple[str, str], datetime | None] = {}
        fires: dict[int, datetime] = {}
        for person in audience:
            place = (person.timezone, person.country)
            if place not in by_place:
                by_place[place] = self._fire(schedule, period_start, *place)
            fire = by_place[place]
            if fire is not None:
                fires[person.id] = fire
        return fires
