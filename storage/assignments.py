"""Conversation state: assignments and their answers, read and written with keyword-only functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.clock import utcnow
from storage.models import Answer, Assignment, Cycle
from storage.upsert import insert_for

A = Assignment.__table__  # type: ignore[attr-defined]
ANS = Answer.__table__  # type: ignore[attr-defined]

# statuses that hold a person's one conversation slot: a new ritual waits behind them
HOLDING = ("active", "snoozed", "paused")
OPEN = ("pending", *HOLDING)


class StaleStateError(RuntimeError):
    """The assignment changed since it was read (another process or a double click got there first)."""


@dataclass(frozen=True)
class ConversationRow:
    """An assignment with what the engine needs beside it, read in one query."""

    id: int
    cycle_id: int
    ritual_id: int
    person_id: int
    subject_id: int
    part: str
    status: str
    current_step: str | None
    return_to_summary: bool
    version: int
    snoozed_until: datetime | None
    cycle_status: str


_COLUMNS = (
    A.c.id,
    A.c.cycle_id,
    Cycle.__table__.c.ritual_id,  # type: ignore[attr-defined]
    A.c.person_id,
    A.c.subject_id,
    A.c.part,
    A.c.status,
    A.c.current_step,
    A.c.return_to_summary,
    A.c.version,
    A.c.snoozed_until,
    Cycle.__table__.c.status,  # type: ignore[attr-defined]
)


def _row(r: Any) -> ConversationRow:
    return ConversationRow(*r)


async def holding_conversation(session: AsyncSession, *, person_id: int) -> ConversationRow | None:
    """The person's conversation in progress (active first, then snoozed or paused), if any."""
    active_first = case((A.c.status == "active", 0), else_=1)
    stmt = (
        select(*_COLUMNS)
        .join(Cycle, Cycle.id == A.c.cycle_id)
        .where(A.c.person_id == person_id, A.c.status.in_(HOLDING))
        .order_by(active_first, A.c.id)
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return _row(row) if row else None


async def get_conversation(session: AsyncSession, *, assignment_id: int) -> ConversationRow | None:
    """One assignment with its cycle's ritual and status."""
    stmt = select(*_COLUMNS).join(Cycle, Cycle.id == A.c.cycle_id).where(A.c.id == assignment_id)
    row = (await session.execute(stmt)).first()
    return _row(row) if row else None


async def next_pending(session: AsyncSession, *, person_id: int) -> ConversationRow | None:
    """The oldest assignment waiting in the person's queue, in an open cycle."""
    stmt = (
        select(*_COLUMNS)
        .join(Cycle, Cycle.id == A.c.cycle_id)
        .where(A.c.person_id == person_id, A.c.status == "pending", col(Cycle.status) == "open")
        .order_by(A.c.id)
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return _row(row) if row else None


async def holds_slot(session: AsyncSession, *, person_id: int) -> bool:
    """Whether the person already has a conversation in progress."""
    stmt = select(func.count()).select_from(A).where(A.c.person_id == person_id, A.c.status.in_(HOLDING))
    return bool((await session.execute(stmt)).scalar_one())


async def move(
    session: AsyncSession,
    *,
    assignment_id: int,
    expected_version: int,
    status: str,
    current_step: str | None,
    return_to_summary: bool = False,
    snoozed_until: datetime | None = None,
    started: bool = False,
    submitted: bool = False,
) -> int:
    """Move an assignment to a new state if nobody else did first; returns the new version."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "current_step": current_step,
        "return_to_summary": return_to_summary,
        "snoozed_until": snoozed_until,
        "version": A.c.version + 1,
    }
    if started:
        values["started_at"] = func.coalesce(A.c.started_at, now)
    if submitted:
        values["submitted_at"] = now
    stmt = (
        update(A)
        .where(and_(A.c.id == assignment_id, A.c.version == expected_version))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleStateError(f"assignment {assignment_id} is no longer at version {expected_version}")
    return expected_version + 1


async def save_answer(
    session: AsyncSession, *, assignment_id: int, step: str, value: Any, skipped: bool = False
) -> None:
    """Store (or replace) the answer to one step."""
    now = utcnow()
    stmt = insert_for(session, ANS).values(
        assignment_id=assignment_id, step=step, value=value, skipped=skipped, answered_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["assignment_id", "step"],
        set_={"value": value, "skipped": skipped, "answered_at": now},
    )
    await session.execute(stmt)


async def answers_for(session: AsyncSession, *, assignment_id: int) -> dict[str, tuple[Any, bool]]:
    """``{step: (value, skipped)}`` for one assignment."""
    stmt = select(ANS.c.step, ANS.c.value, ANS.c.skipped).where(ANS.c.assignment_id == assignment_id)
    return {step: (value, skipped) for step, value, skipped in (await session.execute(stmt)).all()}


async def create_assignment(
    session: AsyncSession, *, cycle_id: int, person_id: int, subject_id: int, part: str
) -> int | None:
    """A new pending assignment; None if this person already has this part in this cycle."""
    stmt = (
        insert_for(session, A)
        .values(
            cycle_id=cycle_id,
            person_id=person_id,
            subject_id=subject_id,
            part=part,
            status="pending",
            return_to_summary=False,
            version=0,
            reminders_sent=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["cycle_id", "person_id", "subject_id", "part"])
        .returning(A.c.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_assignment(
    session: AsyncSession, *, cycle_id: int, person_id: int, subject_id: int, part: str
) -> int | None:
    """The id of one person's part in a cycle."""
    stmt = select(A.c.id).where(
        A.c.cycle_id == cycle_id, A.c.person_id == person_id, A.c.subject_id == subject_id, A.c.part == part
    )
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True)
class AssignmentSummary:
    """One assignment of a person, for "me" and "view" screens."""

    id: int
    cycle_id: int
    ritual_id: int
    period: str
    part: str
    status: str
    current_step: str | None
    subject_id: int
    due_at: datetime | None
    submitted_at: datetime | None


async def for_person(
    session: AsyncSession, *, person_id: int, statuses: tuple[str, ...] | None = None, limit: int = 20
) -> list[AssignmentSummary]:
    """A person's assignments, newest first."""
    C = Cycle.__table__  # type: ignore[attr-defined]
    stmt = (
        select(
            A.c.id,
            A.c.cycle_id,
            C.c.ritual_id,
            C.c.period,
            A.c.part,
            A.c.status,
            A.c.current_step,
            A.c.subject_id,
            C.c.due_at,
            A.c.submitted_at,
        )
        .join(C, C.c.id == A.c.cycle_id)
        .where(A.c.person_id == person_id)
        .order_by(A.c.id.desc())
        .limit(limit)
    )
    if statuses is not None:
        stmt = stmt.where(A.c.status.in_(statuses))
    return [AssignmentSummary(*tuple(r)) for r in (await session.execute(stmt)).all()]
