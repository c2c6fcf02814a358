"""Cycles and their ritual definitions, scope and completion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.assignments import OPEN
from storage.clock import utcnow
from storage.models import Assignment, Cycle, Person, RitualDefinition
from storage.upsert import insert_for

A = Assignment.__table__  # type: ignore[attr-defined]
C = Cycle.__table__  # type: ignore[attr-defined]
P = Person.__table__  # type: ignore[attr-defined]
R = RitualDefinition.__table__  # type: ignore[attr-defined]


async def ensure_ritual_definition(
    session: AsyncSession, *, key: str, digest: str, body: dict[str, Any]
) -> int:
    """The id of this exact question set, stored on first use."""
    stmt = (
        insert_for(session, R)
        .values(key=key, digest=digest, body=body, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["key", "digest"])
    )
    await session.execute(stmt)
    found = select(R.c.id).where(R.c.key == key, R.c.digest == digest)
    return int((await session.execute(found)).scalar_one())


async def ritual_body(session: AsyncSession, *, ritual_id: int) -> dict[str, Any]:
    """The stored question set a cycle runs on."""
    return dict((await session.execute(select(R.c.body).where(R.c.id == ritual_id))).scalar_one())


async def find_or_create_cycle(
    session: AsyncSession,
    *,
    ritual_key: str,
    ritual_id: int,
    period: str,
    scope: dict[str, Any],
    due_at: datetime | None,
    started_by_id: int | None,
) -> tuple[Cycle, bool]:
    """The cycle of this ritual and period, created if missing; the flag says whether it is new."""
    stmt = (
        insert_for(session, C)
        .values(
            ritual_key=ritual_key,
            ritual_id=ritual_id,
            period=period,
            status="open",
            scope=scope,
            due_at=due_at,
            started_by_id=started_by_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["ritual_key", "period"])
        .returning(C.c.id)
    )
    new_id = (await session.execute(stmt)).scalar_one_or_none()
    found = select(Cycle).where(col(Cycle.ritual_key) == ritual_key, col(Cycle.period) == period)
    cycle = (await session.execute(found)).scalar_one()
    return cycle, new_id is not None


async def get_cycle(session: AsyncSession, *, cycle_id: int) -> Cycle | None:
    """One cycle by id."""
    return (await session.execute(select(Cycle).where(col(Cycle.id) == cycle_id))).scalar_one_or_none()


async def open_cycles(session: AsyncSession) -> list[Cycle]:
    """Every open cycle, oldest first."""
    stmt = select(Cycle).where(col(Cycle.status) == "open").order_by(col(Cycle.id))
    return list((await session.execute(stmt)).scalars().all())


@dataclass(frozen=True)
class ScopedPerson:
    """Who a cycle goes to."""

    id: int
    email: str
    name: str
    manager_id: int | None
    department: str


async def people_in_scope(
    session: AsyncSession, *, departments: list[str] | None = None, emails: list[str] | None = None
) -> list[ScopedPerson]:
    """Active people in any of ``departments`` or ``emails``; everyone active when both are empty."""
    stmt = select(P.c.id, P.c.email, P.c.name, P.c.manager_id, P.c.department).where(P.c.active.is_(True))
    if departments or emails:
        conditions = []
        if departments:
            conditions.append(func.lower(P.c.department).in_([d.lower() for d in departments]))
        if emails:
            conditions.append(P.c.email.in_([e.lower() for e in emails]))
        stmt = stmt.where(or_(*conditions))
    return [ScopedPerson(*tuple(r)) for r in (await session.execute(stmt.order_by(P.c.id))).all()]


@dataclass(frozen=True)
class CompletionRow:
    """One assignment's progress, for status screens."""

    assignment_id: int
    person_id: int
    subject_id: int
    name: str
    email: str
    department: str
    part: str
    status: str
    submitted_at: datetime | None
    reminders_sent: int
    version: int
    current_step: str | None


async def completion(session: AsyncSession, *, cycle_id: int) -> list[CompletionRow]:
    """Every assignment of a cycle with the person answering it."""
    stmt = (
        select(
            A.c.id,
            A.c.person_id,
            A.c.subject_id,
            P.c.name,
            P.c.email,
            P.c.department,
            A.c.part,
            A.c.status,
            A.c.submitted_at,
            A.c.reminders_sent,
            A.c.version,
            A.c.current_step,
        )
        .join(P, P.c.id == A.c.person_id)
        .where(A.c.cycle_id == cycle_id)
        .order_by(P.c.department, P.c.name, A.c.id)
    )
    return [CompletionRow(*tuple(r)) for r in (await session.execute(stmt)).all()]


async def close_cycle(session: AsyncSession, *, cycle_id: int) -> list[int]:
    """Close a cycle; its unfinished assignments expire. Returns the people whose slot was freed."""
    now = utcnow()
    await session.execute(update(C).where(C.c.id == cycle_id).values(status="closed", closed_at=now))
    freed = select(A.c.person_id).where(
        A.c.cycle_id == cycle_id, A.c.status.in_(("active", "snoozed", "paused"))
    )
    people = sorted({p for (p,) in (await session.execute(freed)).all()})
    await session.execute(
        update(A)
        .where(A.c.cycle_id == cycle_id, A.c.status.in_(OPEN))
        .values(status="expired", version=A.c.version + 1)
    )
    return people


async def count_reminder(session: AsyncSession, *, assignment_id: int) -> int:
    """Count one more reminder for an assignment; returns the new count (part of the reminder's key)."""
    await session.execute(
        update(A).where(A.c.id == assignment_id).values(reminders_sent=A.c.reminders_sent + 1)
    )
    stmt = select(A.c.reminders_sent).where(A.c.id == assignment_id)
    return int((await session.execute(stmt)).scalar_one())


async def find_cycle(session: AsyncSession, *, ritual_key: str, period: str) -> Cycle | None:
    """The cycle of a ritual for a period, if it was ever opened (closed ones too)."""
    stmt = select(Cycle).where(col(Cycle.ritual_key) == ritual_key, col(Cycle.period) == period)
    return (await session.execute(stmt)).scalar_one_or_none()
