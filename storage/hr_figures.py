"""What HR's figures read: a cycle's assignments counted by team and manager, and the 1:1 records about
its people with their feedback items counted (``conversations.hr_figures`` computes the figures)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, case, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Assignment, Cycle, FeedbackItem, OneOnOne, Person

A: Table = Assignment.__table__  # type: ignore[attr-defined]
C: Table = Cycle.__table__  # type: ignore[attr-defined]
FI: Table = FeedbackItem.__table__  # type: ignore[attr-defined]
O: Table = OneOnOne.__table__  # type: ignore[attr-defined]  # noqa: E741
P: Table = Person.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AssignmentCounts:
    """A cycle's assignments about the people of one department with one direct manager."""

    department: str
    manager_id: int | None
    assigned: int
    submitted: int
    on_time: int  # submitted at or before the cycle's deadline (0 when it has none)


async def assignment_counts(session: AsyncSession, *, cycle_id: int) -> list[AssignmentCounts]:
    """A cycle's assignments counted in one grouped query, by the department and the direct manager of
    whom each is about (its subject: the person themself, or the report of a manager's part)."""
    subject = P.alias("subject")
    submitted = A.c.status == "submitted"
    on_time = and_(submitted, A.c.submitted_at <= C.c.due_at)
    stmt = (
        select(
            subject.c.department,
            subject.c.manager_id,
            func.count(),
            func.sum(case((submitted, 1), else_=0)),
            func.sum(case((on_time, 1), else_=0)),
        )
        .select_from(A.join(C, C.c.id == A.c.cycle_id).join(subject, subject.c.id == A.c.subject_id))
        .where(A.c.cycle_id == cycle_id)
        .group_by(subject.c.department, subject.c.manager_id)
    )
    return [
        AssignmentCounts(department or "", manager_id, int(n), int(done or 0), int(timely or 0))
        for department, manager_id, n, done, timely in (await session.execute(stmt)).all()
    ]


@dataclass(frozen=True)
class FeedbackCounts:
    """Feedback items of 1:1 records by one manager about people of one department."""

    manager_id: int
    department: str  # the report's
    items: int
    specific: int


@dataclass(frozen=True)
class RecordCounts:
    """One 1:1 record about someone in a cycle, and how many of its feedback items are specific."""

    one_on_one_id: int
    manager_id: int
    manager_timezone: str  # the record's period is judged on the manager's calendar
    report_department: str
    recorded_at: datetime
    items: int
    specific: int


# the manager who wrote a 1:1 record and the report it is about
_MANAGER = P.alias("manager")
_REPORT = P.alias("report")


def _records(cycle_id: int, start: datetime, end: datetime, keys: list[Any]) -> Any:
    """1:1 records written in ``[start, end)`` about anyone the cycle is about, joined with their
    feedback items (a record without items counts none), grouped by ``keys``."""
    subjects = select(A.c.subject_id).where(A.c.cycle_id == cycle_id).distinct()
    return (
        select(*keys, func.count(FI.c.id), func.sum(case((FI.c.specific == true(), 1), else_=0)))
        .select_from(
            O.join(_MANAGER, _MANAGER.c.id == O.c.manager_id)
            .join(_REPORT, _REPORT.c.id == O.c.report_id)
            .outerjoin(FI, FI.c.one_on_one_id == O.c.id)
        )
        .where(O.c.recorded_at >= start, O.c.recorded_at < end, O.c.report_id.in_(subjects))
        .group_by(*keys)
    )


async def feedback_counts(
    session: AsyncSession, *, cycle_id: int, start: datetime, end: datetime
) -> list[FeedbackCounts]:
    """Items of the records written in ``[start, end)`` about the cycle's people, counted in the
    database by manager and the report's department (for the stretch every time zone agrees on)."""
    stmt = _records(cycle_id, start, end, [O.c.manager_id, _REPORT.c.department])
    return [
        FeedbackCounts(int(mid), dept or "", int(items), int(specific or 0))
        for mid, dept, items, specific in (await session.execute(stmt)).all()
    ]


async def record_counts(
    session: AsyncSession, *, cycle_id: int, start: datetime, end: datetime
) -> list[RecordCounts]:
    """The records written in ``[start, end)`` about the cycle's people one by one, with their managers'
    time zones (for the edges of a period, where the time zone decides), by id."""
    keys = [O.c.id, O.c.manager_id, _MANAGER.c.timezone, _REPORT.c.department, O.c.recorded_at]
    stmt = _records(cycle_id, start, end, keys).order_by(O.c.id)
    return [
        RecordCounts(rid, mid, tz or "UTC", dept or "", at, int(items), int(specific or 0))
        for rid, mid, tz, dept, at, items, specific in (await session.execute(stmt)).all()
    ]


@dataclass(frozen=True)
class Named:
    """A manager as a figures row names them."""

    id: int
    name: str
    email: str


async def names(session: AsyncSession, *, person_ids: set[int]) -> dict[int, Named]:
    """Names and emails of people by id (managers of a figures table)."""
    if not person_ids:
        return {}
    stmt = select(P.c.id, P.c.name, P.c.email).where(P.c.id.in_(sorted(person_ids)))
    return {int(i): Named(int(i), n, e) for i, n, e in (await session.execute(stmt)).all()}
