"""The scheduler's scans: planned starts that came due, reminders that came due, deadlines passed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.assignments import HOLDING
from storage.models import Assignment, Cycle
from storage.prepared import Prepared, run

A = Assignment.__table__  # type: ignore[attr-defined]
C = Cycle.__table__  # type: ignore[attr-defined]
_HOLDER = A.alias("holder")

_DUE_STARTS = Prepared(
    lambda _: (
        select(A.c.person_id)
        .join(C, C.c.id == A.c.cycle_id)
        .where(
            A.c.status == "pending",
            A.c.starts_at <= bindparam("now", type_=A.c.starts_at.type),
            C.c.status == "open",
            ~select(_HOLDER.c.id)
            .where(_HOLDER.c.person_id == A.c.person_id, _HOLDER.c.status.in_(HOLDING))
            .exists(),
        )
        .order_by(A.c.starts_at, A.c.id)
        .limit(bindparam("limit"))
    )
)


async def due_starts(session: AsyncSession, *, now: datetime, limit: int) -> list[int]:
    """People with a planned ritual whose start time has come and nothing in progress, earliest first."""
    rows = (await run(session, _DUE_STARTS, {"now": now, "limit": limit})).all()
    return list(dict.fromkeys(person_id for (person_id,) in rows))


async def postpone_starts(session: AsyncSession, *, person_id: int, now: datetime, until: datetime) -> None:
    """The person may not be messaged now (quiet hours, leave): their due planned starts wait."""
    await session.execute(
        update(A)
        .where(A.c.person_id == person_id, A.c.status == "pending", A.c.starts_at <= now)
        .values(starts_at=until)
    )


@dataclass(frozen=True)
class ReminderDue:
    """A started conversation whose nudge may be due."""

    assignment_id: int
    person_id: int
    status: str
    reminders_sent: int
    version: int


async def reminders_due(
    session: AsyncSession, *, cycle_id: int, now: datetime, first_after: datetime, limit_sent: int
) -> list[ReminderDue]:
    """Started, unfinished conversations of one cycle whose next nudge has come.

    The first nudge is due ``first_after`` the start (the caller passes now minus the delay); later
    ones at ``next_reminder_at``. Snoozed ones are left out: they have the reminder they asked for.
    """
    stmt = select(A.c.id, A.c.person_id, A.c.status, A.c.reminders_sent, A.c.version).where(
        A.c.cycle_id == cycle_id,
        A.c.status.in_(("active", "paused")),
        A.c.reminders_sent < limit_sent,
        or_(
            A.c.next_reminder_at <= now,
            and_(A.c.next_reminder_at.is_(None), A.c.started_at <= first_after),
        ),
    )
    return [ReminderDue(*tuple(r)) for r in (await session.execute(stmt.order_by(A.c.id))).all()]


async def set_reminder(
    session: AsyncSession, *, assignment_id: int, next_at: datetime | None, sent: bool
) -> None:
    """Record a nudge sent (``sent``) and/or when the next one is due (None: no more)."""
    values: dict[str, Any] = {"next_reminder_at": next_at}
    if sent:
        values["reminders_sent"] = A.c.reminders_sent + 1
    await session.execute(update(A).where(A.c.id == assignment_id).values(**values))


async def cycles_past_deadline(session: AsyncSession, *, now: datetime) -> list[Cycle]:
    """Open cycles whose deadline passed and whose managers have not been told yet."""
    stmt = select(Cycle).where(
        Cycle.status == "open",  # type: ignore[arg-type]
        Cycle.due_at <= now,  # type: ignore[arg-type,operator]
        Cycle.digest_sent_at.is_(None),  # type: ignore[union-attr]
    )
    return list((await session.execute(stmt.order_by(Cycle.id))).scalars().all())  # type: ignore[arg-type]


async def mark_digest_sent(session: AsyncSession, *, cycle_id: int, now: datetime) -> bool:
    """Claim the cycle's digest; False if another process (or an earlier run) already did."""
    result = await session.execute(
        update(C).where(C.c.id == cycle_id, C.c.digest_sent_at.is_(None)).values(digest_sent_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
