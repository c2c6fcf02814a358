"""Cycles and their ritual definitions, scope and completion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.assignments import OPEN
from storage.clock import utcnow
from storage.models import Assignment, Cycle, Identity, Outbox, Person, RitualDefinition
from storage.upsert import insert_for

A = Assignment.__table__  # type: ignore[attr-defined]
C = Cycle.__table__  # type: ignore[attr-defined]
I = Identity.__table__  # type: ignore[attr-defined]  # noqa: E741
OUT = Outbox.__table__  # type: ignore[attr-defined]
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


@dataclass(frozen=True)
class UnreachableInCycle:
    """Someone in a cycle whom a platform said it cannot message (per assignment they answer)."""

    person_id: int
    name: str
    platform: str
    marked_at: datetime  # when the platform last said so
    subject_id: int  # whom the assignment is about: a manager sees only their reports'


async def unreachable_people(session: AsyncSession, *, cycle_id: int) -> list[UnreachableInCycle]:
    """The people answering a cycle's assignments whose identity on a platform is marked unreachable.

    Read from the few marked identities (a partial index), not from the whole audience.
    """
    stmt = (
        select(A.c.person_id, P.c.name, I.c.platform, I.c.unreachable_at, A.c.subject_id)
        .select_from(I.join(A, A.c.person_id == I.c.person_id).join(P, P.c.id == A.c.person_id))
        .where(A.c.cycle_id == cycle_id, I.c.unreachable_at.is_not(None))
        .distinct()
        .order_by(I.c.platform, P.c.name, A.c.person_id, A.c.subject_id)
    )
    return [UnreachableInCycle(*tuple(r)) for r in (await session.execute(stmt)).all()]


@dataclass(frozen=True)
class UndeliveredCount:
    """How many of a cycle's messages on one platform failed for one reason and are not sent."""

    platform: str
    status: str  # "pending": to be tried again; "dead": given up
    reason: str  # a storage.outbox.REASONS code ("failed" when none was stored)
    count: int
    subject_id: int | None = None  # with ``by_subject``: whom the conversation is about


def _undelivered() -> Any:
    # spelled as the partial index ix_outbox_undelivered is (models.UNDELIVERED), with its constants
    # inline, not bound: a planner uses a partial index only for a WHERE it can see implies it
    status, attempts = OUT.c.status, OUT.c.attempts
    return or_(
        status == literal_column("'dead'"),
        and_(status == literal_column("'pending'"), attempts > literal_column("0")),
    )


async def undelivered(
    session: AsyncSession, *, cycle_id: int, by_subject: bool = False
) -> list[UndeliveredCount]:
    """The messages of a cycle's conversations that failed and were not sent since, counted in one
    grouped query by platform, status and reason (and by subject, for a manager's view)."""
    reason = func.coalesce(OUT.c.error_reason, literal_column("'failed'"))
    keys = [OUT.c.platform, OUT.c.status, reason]
    if by_subject:
        keys.append(A.c.subject_id)
    stmt = (
        select(*keys[:3], func.count(), *keys[3:])
        .select_from(OUT.join(A, A.c.id == OUT.c.assignment_id))
        .where(A.c.cycle_id == cycle_id, _undelivered())
        .group_by(*keys)
    )
    return [UndeliveredCount(*tuple(r)) for r in (await session.execute(stmt)).all()]
