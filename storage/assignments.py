"""Conversation state: assignments and their answers, read and written with keyword-only functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import Answer, Assignment, Cycle
from storage.prepared import Prepared, dialect_insert, run
from storage.upsert import insert_for

A = Assignment.__table__  # type: ignore[attr-defined]
ANS = Answer.__table__  # type: ignore[attr-defined]
C = Cycle.__table__  # type: ignore[attr-defined]

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


_ACTIVE_FIRST = case((A.c.status == "active", 0), else_=1)
_HOLDING = Prepared(
    lambda _: (
        select(*_COLUMNS)
        .join(C, C.c.id == A.c.cycle_id)
        .where(A.c.person_id == bindparam("person_id"), A.c.status.in_(HOLDING))
        .order_by(_ACTIVE_FIRST, A.c.id)
        .limit(1)
    )
)
_ONE = Prepared(lambda _: select(*_COLUMNS).join(C, C.c.id == A.c.cycle_id).where(A.c.id == bindparam("id")))


async def holding_conversation(session: AsyncSession, *, person_id: int) -> ConversationRow | None:
    """The person's conversation in progress (active first, then snoozed or paused), if any."""
    row = (await run(session, _HOLDING, {"person_id": person_id})).first()
    return _row(row) if row else None


_HOLDING_MANY = Prepared(
    lambda _: (
        select(*_COLUMNS)
        .join(C, C.c.id == A.c.cycle_id)
        .where(A.c.person_id.in_(bindparam("person_ids", expanding=True)), A.c.status.in_(HOLDING))
        .order_by(A.c.person_id, _ACTIVE_FIRST, A.c.id)
    )
)


async def holding_many(session: AsyncSession, *, person_ids: list[int]) -> dict[int, ConversationRow]:
    """``holding_conversation`` for many people in one query (people with none are left out)."""
    if not person_ids:
        return {}
    found: dict[int, ConversationRow] = {}
    for row in (await run(session, _HOLDING_MANY, {"person_ids": sorted(set(person_ids))})).all():
        conv = _row(row)
        found.setdefault(conv.person_id, conv)
    return found


async def get_conversation(session: AsyncSession, *, assignment_id: int) -> ConversationRow | None:
    """One assignment with its cycle's ritual and status."""
    row = (await run(session, _ONE, {"id": assignment_id})).first()
    return _row(row) if row else None


async def next_pending(session: AsyncSession, *, person_id: int) -> ConversationRow | None:
    """The oldest assignment waiting in the person's queue whose start time has come, in an open cycle,
    if their slot is free."""
    row = (await run(session, _NEXT_PENDING, {"person_id": person_id, "now": utcnow()})).first()
    return _row(row) if row else None


_HOLDER = A.alias("holder")
# the oldest pending assignment, only when nothing else holds the person's slot: one round trip
_NEXT_PENDING = Prepared(
    lambda _: (
        select(*_COLUMNS)
        .join(C, C.c.id == A.c.cycle_id)
        .where(
            A.c.person_id == bindparam("person_id"),
            A.c.status == "pending",
            C.c.status == "open",
            # one planned for later (the person's local fire time, after quiet hours or leave) waits
            or_(A.c.starts_at.is_(None), A.c.starts_at <= bindparam("now", type_=A.c.starts_at.type)),
            ~select(_HOLDER.c.id)
            .where(_HOLDER.c.person_id == A.c.person_id, _HOLDER.c.status.in_(HOLDING))
            .exists(),
        )
        .order_by(A.c.id)
        .limit(1)
    )
)


def _move_statement(*, started: bool, submitted: bool) -> Prepared:
    values: dict[str, Any] = {
        "status": bindparam("status"),
        "current_step": bindparam("current_step"),
        "return_to_summary": bindparam("return_to_summary"),
        "snoozed_until": bindparam("snoozed_until", type_=A.c.snoozed_until.type),
        "version": A.c.version + 1,
    }
    if started:
        values["started_at"] = func.coalesce(A.c.started_at, bindparam("now", type_=A.c.started_at.type))
    if submitted:
        values["submitted_at"] = bindparam("now", type_=A.c.submitted_at.type)
    return Prepared(
        lambda _: (
            update(A)
            .where(A.c.id == bindparam("assignment_id"), A.c.version == bindparam("expected"))
            .values(**values)
        )
    )


_MOVES = {(s, d): _move_statement(started=s, submitted=d) for s in (False, True) for d in (False, True)}


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
    params = {
        "assignment_id": assignment_id,
        "expected": expected_version,
        "status": status,
        "current_step": current_step,
        "return_to_summary": return_to_summary,
        "snoozed_until": snoozed_until,
        "now": utcnow(),
    }
    result = await run(session, _MOVES[started, submitted], params)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleStateError(f"assignment {assignment_id} is no longer at version {expected_version}")
    return expected_version + 1


def _save_answer(dialect: str) -> Any:
    insert = dialect_insert(dialect, ANS)
    changed = {
        "value": insert.excluded.value,
        "skipped": insert.excluded.skipped,
        "answered_at": insert.excluded.answered_at,
    }
    return insert.on_conflict_do_update(index_elements=["assignment_id", "step"], set_=changed)


_SAVE_ANSWER = Prepared(_save_answer)


async def save_answer(
    session: AsyncSession, *, assignment_id: int, step: str, value: Any, skipped: bool = False
) -> None:
    """Store (or replace) the answer to one step."""
    params = {
        "assignment_id": assignment_id,
        "step": step,
        "value": value,
        "skipped": skipped,
        "answered_at": utcnow(),
    }
    await run(session, _SAVE_ANSWER, params)


async def answers_for(session: AsyncSession, *, assignment_id: int) -> dict[str, tuple[Any, bool]]:
    """``{step: (value, skipped)}`` for one assignment."""
    rows = (await run(session, _ANSWERS, {"assignment_id": assignment_id})).all()
    return {step: (value, skipped) for step, value, skipped in rows}


_ANSWERS = Prepared(
    lambda _: select(ANS.c.step, ANS.c.value, ANS.c.skipped).where(
        ANS.c.assignment_id == bindparam("assignment_id")
    )
)


async def create_assignment(
    session: AsyncSession,
    *,
    cycle_id: int,
    person_id: int,
    subject_id: int,
    part: str,
    starts_at: datetime | None = None,
) -> int | None:
    """A new pending assignment (not started before ``starts_at``); None if this person already has
    this part in this cycle."""
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
            starts_at=starts_at,
        )
        .on_conflict_do_nothing(index_elements=["cycle_id", "person_id", "subject_id", "part"])
        .returning(A.c.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


_CREATE_MANY = Prepared(
    lambda dialect: dialect_insert(dialect, A).on_conflict_do_nothing(
        index_elements=["cycle_id", "person_id", "subject_id", "part"]
    )
)


async def create_many(
    session: AsyncSession, *, cycle_id: int, part: str, starts: dict[int, datetime | None]
) -> None:
    """Pending self-assignments for many people at once (the planner's fan-out), each with its own
    start time; people who already have this part in this cycle are left alone."""
    now = utcnow()
    rows = [
        {
            "cycle_id": cycle_id,
            "person_id": person_id,
            "subject_id": person_id,
            "part": part,
            "status": "pending",
            "return_to_summary": False,
            "version": 0,
            "reminders_sent": 0,
            "created_at": now,
            "starts_at": starts_at,
        }
        for person_id, starts_at in starts.items()
    ]
    if rows:
        await run(session, _CREATE_MANY, rows)


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


_NEXT_PENDING_MANY = Prepared(
    lambda _: (
        select(*_COLUMNS)
        .join(C, C.c.id == A.c.cycle_id)
        .where(
            A.c.person_id.in_(bindparam("person_ids", expanding=True)),
            A.c.status == "pending",
            C.c.status == "open",
            or_(A.c.starts_at.is_(None), A.c.starts_at <= bindparam("now", type_=A.c.starts_at.type)),
            ~select(_HOLDER.c.id)
            .where(_HOLDER.c.person_id == A.c.person_id, _HOLDER.c.status.in_(HOLDING))
            .exists(),
        )
        .order_by(A.c.person_id, A.c.id)
    )
)


async def next_pending_many(
    session: AsyncSession, *, person_ids: list[int], now: datetime
) -> dict[int, ConversationRow]:
    """``next_pending`` for many people in one query: each one's oldest due assignment."""
    if not person_ids:
        return {}
    found: dict[int, ConversationRow] = {}
    params = {"person_ids": sorted(set(person_ids)), "now": now}
    for row in (await run(session, _NEXT_PENDING_MANY, params)).all():
        found.setdefault(row.person_id, _row(row))
    return found


async def open_many(
    session: AsyncSession, *, assignment_ids: list[int], first_step: str, now: datetime
) -> dict[int, int]:
    """Start many pending assignments at ``first_step`` in one statement; returns id → new version.

    Only rows still pending move: one another event started meanwhile is left out of the result.
    """
    if not assignment_ids:
        return {}
    stmt = (
        update(A)
        .where(A.c.id.in_(assignment_ids), A.c.status == "pending")
        .values(
            status="active",
            current_step=first_step,
            return_to_summary=False,
            snoozed_until=None,
            version=A.c.version + 1,
            started_at=func.coalesce(A.c.started_at, now),
        )
        .returning(A.c.id, A.c.version)
    )
    return {i: v for i, v in (await session.execute(stmt)).all()}
