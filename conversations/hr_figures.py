"""HR's figures of a cycle, per team and per manager: completion, on-time rate, share of specific feedback.

What is counted (the `stats` hint and `cadence report` say the same in fewer words):

- An assignment counts for the team (``Person.department``) and the direct manager (``Person.manager_id``)
  of its *subject*, the person it is about: a manager's part about a report counts in the report's
  team and under the report's manager, so a manager's row is how far their people's rituals got.
  Department and manager are today's: the org data keeps no history, so someone who changed team
  since the cycle counts in their new one.
- **completion rate** = submitted assignments / assignments (every part; expired ones count as not
  submitted).
- **on-time rate** = assignments submitted at or before the cycle's deadline / submitted assignments.
  The deadline is the cycle's (``Cycle.due_at``): assignments carry none of their own. A cycle without
  a deadline has no on-time rate.
- **share of specific feedback** = specific items (``FeedbackItem.specific``) / all items, of the 1:1
  records written within the cycle's period (its label's week, month or quarter, on the manager's
  time zone, as the quality sample counts months) about someone the cycle is about. Per manager: the
  records that manager wrote (``OneOnOne.manager_id``); per team: the records about people of the team
  (the report's department).
- A rate with nothing to divide by is ``None``, shown as "—".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.i18n import t
from conversations.quality_sampling import local_day
from storage import hr_figures as store
from storage.hr_figures import AssignmentCounts, FeedbackCounts, Named, RecordCounts
from storage.models import Cycle

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


def period_window(label: str) -> tuple[date, date] | None:
    """The first day of the period a cycle label names (``2026-W48``, ``2026-11``, ``2026-Q4``) and the
    first day after it; None for a label that is none of these."""
    try:
        if match := _WEEK.match(label):
            first = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
            return first, first + timedelta(days=7)
        if match := _MONTH.match(label):
            first = date(int(match.group(1)), int(match.group(2)), 1)
            return first, (first + timedelta(days=32)).replace(day=1)
        if match := _QUARTER.match(label):
            year, quarter = int(match.group(1)), int(match.group(2))
            first = date(year, 3 * quarter - 2, 1)
            after = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
            return first, after
    except ValueError:  # "2026-W60", "2026-13"
        return None
    return None


@dataclass(frozen=True)
class Ratio:
    """A count of a count: its value (None with nothing to divide by) and its text ("66.7%")."""

    part: int
    whole: int

    @property
    def value(self) -> float | None:
        return self.part / self.whole if self.whole else None

    @property
    def text(self) -> str | None:
        """The percentage rounded half up to one decimal, without a trailing ".0" (80%, 66.7%)."""
        if not self.whole:
            return None
        percent = (Decimal(self.part * 100) / Decimal(self.whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)
        return f"{percent.normalize():f}%" if percent == percent.to_integral() else f"{percent}%"


@dataclass(frozen=True)
class Counts:
    """The counts behind the three figures."""

    assigned: int = 0
    submitted: int = 0
    on_time: int = 0
    items: int = 0
    specific: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.assigned + other.assigned,
            self.submitted + other.submitted,
            self.on_time + other.on_time,
            self.items + other.items,
            self.specific + other.specific,
        )

    @property
    def completion(self) -> Ratio:
        return Ratio(self.submitted, self.assigned)

    @property
    def on_time_rate(self) -> Ratio:
        return Ratio(self.on_time, self.submitted)

    @property
    def specific_share(self) -> Ratio:
        return Ratio(self.specific, self.items)


class Level(StrEnum):
    """What a row adds up."""

    TOTAL = "total"
    TEAM = "team"
    MANAGER = "manager"


@dataclass(frozen=True)
class Row:
    """One line of figures: everyone, a team (department) or a manager (their direct reports)."""

    level: Level
    name: str  # the department, the manager's name; "" for no department / no manager / the total
    counts: Counts
    email: str = ""  # a manager's
    person_id: int | None = None  # a manager's


@dataclass(frozen=True)
class Figures:
    """A cycle's figures: the total, then per team and per manager."""

    cycle_id: int
    period: str
    due_at: datetime | None
    total: Row
    teams: tuple[Row, ...] = ()
    managers: tuple[Row, ...] = field(default_factory=tuple)

    @property
    def has_deadline(self) -> bool:
        return self.due_at is not None


def _sum(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for c in counts:
        total += c
    return total


def in_period(records: Iterable[RecordCounts], window: tuple[date, date] | None) -> list[FeedbackCounts]:
    """The feedback of the records written within ``window``, each on its manager's calendar (none
    without a window)."""
    if window is None:
        return []
    first, after = window
    return [
        FeedbackCounts(r.manager_id, r.report_department, r.items, r.specific)
        for r in records
        if first <= local_day(r.recorded_at, r.manager_timezone) < after
    ]


def compute(
    cycle: Cycle,
    assignments: Iterable[AssignmentCounts],
    feedback: Iterable[FeedbackCounts],
    *,
    people: dict[int, Named],
    managers: set[int] | None = None,
) -> Figures:
    """The figures of ``cycle`` from its assignments and the feedback of its period, both grouped.

    ``managers``: only the rows of these managers and a total of them, no teams (a manager's own view:
    themself and the managers below them); None: every team and manager, and the whole cycle.
    """
    by_team: dict[str, Counts] = {}
    by_manager: dict[int | None, Counts] = {}
    for a in assignments:
        counts = Counts(assigned=a.assigned, submitted=a.submitted, on_time=a.on_time)
        by_team[a.department] = by_team.get(a.department, Counts()) + counts
        by_manager[a.manager_id] = by_manager.get(a.manager_id, Counts()) + counts
    for f in feedback:
        counts = Counts(items=f.items, specific=f.specific)
        by_team[f.department] = by_team.get(f.department, Counts()) + counts
        by_manager[f.manager_id] = by_manager.get(f.manager_id, Counts()) + counts
    if cycle.due_at is None:  # no deadline: nothing was on time or late
        by_team = {k: _no_on_time(c) for k, c in by_team.items()}
        by_manager = {k: _no_on_time(c) for k, c in by_manager.items()}
    if managers is not None:
        by_manager = {k: c for k, c in by_manager.items() if k is not None and k in managers}
    manager_rows = [
        Row(
            Level.MANAGER,
            people[k].name if k is not None and k in people else "",
            c,
            email=people[k].email if k is not None and k in people else "",
            person_id=k,
        )
        for k, c in by_manager.items()
    ]
    # named rows by name, the unnamed one ("no manager", "no department") last
    manager_rows.sort(key=lambda r: (r.person_id is None, r.name.casefold(), r.person_id or 0))
    team_rows = sorted(
        (Row(Level.TEAM, k, c) for k, c in by_team.items()), key=lambda r: (not r.name, r.name.casefold())
    )
    if managers is not None:
        total = Row(Level.TOTAL, "", _sum(r.counts for r in manager_rows))
        return Figures(cycle.id or 0, cycle.period, cycle.due_at, total, (), tuple(manager_rows))
    # each assignment and record is in exactly one team: the teams add up to the whole cycle
    total = Row(Level.TOTAL, "", _sum(by_team.values()))
    return Figures(cycle.id or 0, cycle.period, cycle.due_at, total, tuple(team_rows), tuple(manager_rows))


def _no_on_time(counts: Counts) -> Counts:
    return Counts(counts.assigned, counts.submitted, 0, counts.items, counts.specific)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


async def load(session: AsyncSession, cycle: Cycle, *, managers: set[int] | None = None) -> Figures:
    """Read a cycle's rows and compute its figures (``managers`` as in ``compute``)."""
    cycle_id = cycle.id or 0
    assignments = await store.assignment_counts(session, cycle_id=cycle_id)
    window = period_window(cycle.period)
    feedback: list[FeedbackCounts] = []
    if window is not None:
        # every time zone (UTC-12 to UTC+14) puts a moment on the same day, give or take one: records
        # from a day into the period to a day before its end are in it wherever their manager is, and
        # are counted in the database; those within a day of either end are read one by one and
        # judged on their manager's calendar
        first, after = _midnight(window[0]), _midnight(window[1])
        one_day = timedelta(days=1)
        inner_start, inner_end = first + one_day, max(first + one_day, after - one_day)
        feedback = await store.feedback_counts(session, cycle_id=cycle_id, start=inner_start, end=inner_end)
        for start, end in ((first - one_day, inner_start), (inner_end, after + one_day)):
            edge = await store.record_counts(session, cycle_id=cycle_id, start=start, end=end)
            feedback += in_period(edge, window)
    ids = {a.manager_id for a in assignments if a.manager_id is not None} | {f.manager_id for f in feedback}
    if managers is not None:
        ids &= managers
    named = await store.names(session, person_ids=ids)
    return compute(cycle, assignments, feedback, people=named, managers=managers)


def row_name(row: Row, locale: str) -> str:
    """What a row is called: the department or manager, or what stands for none."""
    if row.level is Level.TOTAL:
        return t("hr.total_name", locale)
    if row.name:
        return row.name
    return t("hr.no_department" if row.level is Level.TEAM else "hr.no_manager", locale)


# the export's columns: (header key, what a cell holds)
COLUMNS = (
    "col_cycle",
    "col_period",
    "col_level",
    "col_name",
    "col_email",
    "col_assigned",
    "col_submitted",
    "col_completion",
    "col_on_time",
    "col_on_time_rate",
    "col_items",
    "col_specific",
    "col_specific_share",
)

Cell = str | int | Ratio | None


def table(figures: Figures, locale: str) -> tuple[list[str], list[list[Cell]]]:
    """The export: headers in ``locale``, then the total, every team and every manager, one row each.

    Rates are ``Ratio``s (the writer shows them as it can); on-time figures are None without a deadline.
    """
    headers = [t(f"hr.{key}", locale) for key in COLUMNS]
    rows: list[list[Cell]] = []
    for row in (figures.total, *figures.teams, *figures.managers):
        c = row.counts
        timely = figures.has_deadline
        rows.append(
            [
                figures.cycle_id,
                figures.period,
                t(f"hr.level_{row.level}", locale),
                row_name(row, locale),
                row.email,
                c.assigned,
                c.submitted,
                c.completion,
                c.on_time if timely else None,
                c.on_time_rate if timely else None,
                c.items,
                c.specific,
                c.specific_share,
            ]
        )
    return headers, rows
