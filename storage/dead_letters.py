"""The outbox's failures and size: dead rows to list and re-queue, counts by status, a database ping."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import Outbox, Person

OUT = Outbox.__table__  # type: ignore[attr-defined]
P = Person.__table__  # type: ignore[attr-defined]

STATUSES = ("pending", "sending", "sent", "obsolete", "dead")
# what is still to do or needs a person; sent and obsolete rows are history that only grows
DEPTH_STATUSES = ("pending", "sending", "dead")


@dataclass(frozen=True)
class DeadRow:
    """One message the outbox gave up on, with whom it was for and why it failed last."""

    id: int
    key: str
    platform: str
    person_email: str | None
    person_name: str | None
    recipient: str | None
    kind: str
    attempts: int
    last_error: str | None
    created_at: datetime


async def list_dead(session: AsyncSession, *, limit: int = 100) -> list[DeadRow]:
    """Dead rows, oldest first, with their person's email and name (None for a bare recipient)."""
    stmt = (
        select(
            OUT.c.id,
            OUT.c.idempotency_key,
            OUT.c.platform,
            P.c.email,
            P.c.name,
            OUT.c.recipient,
            OUT.c.kind,
            OUT.c.attempts,
            OUT.c.last_error,
            OUT.c.created_at,
        )
        .select_from(OUT.outerjoin(P, P.c.id == OUT.c.person_id))
        .where(OUT.c.status == "dead")
        .order_by(OUT.c.id)
        .limit(limit)
    )
    return [DeadRow(*tuple(r)) for r in (await session.execute(stmt)).all()]


async def requeue_rows(session: AsyncSession, *, ids: list[int] | None) -> list[int]:
    """Send dead rows again now, from attempt 0 (``None``: every dead row); the ids re-queued.

    Only dead rows move; ``last_error`` stays so the reason is still there if it fails again.
    """
    stmt = (
        update(OUT)
        .where(OUT.c.status == "dead")
        .values(status="pending", attempts=0, due_at=utcnow())
        .returning(OUT.c.id)
    )
    if ids is not None:
        if not ids:
            return []
        stmt = stmt.where(OUT.c.id.in_(ids))
    return sorted(i for (i,) in (await session.execute(stmt)).all())


async def requeue(session: AsyncSession, *, ids: list[int] | None) -> int:
    """Like ``requeue_rows``, but only how many rows were re-queued."""
    return len(await requeue_rows(session, ids=ids))


async def status_of(session: AsyncSession, *, ids: Iterable[int]) -> dict[int, str]:
    """The status of each of ``ids`` that exists (to tell "no such row" from "not dead")."""
    wanted = list(ids)
    if not wanted:
        return {}
    stmt = select(OUT.c.id, OUT.c.status).where(OUT.c.id.in_(wanted))
    return {i: s for i, s in (await session.execute(stmt)).all()}


async def count_by_status(
    session: AsyncSession, *, statuses: Iterable[str] = DEPTH_STATUSES
) -> dict[str, int]:
    """How many outbox rows are in each of ``statuses`` (0 for none; served by ix_outbox_due)."""
    wanted = list(statuses)
    counts = dict.fromkeys(wanted, 0)
    stmt = select(OUT.c.status, func.count()).where(OUT.c.status.in_(wanted)).group_by(OUT.c.status)
    for status, n in (await session.execute(stmt)).all():
        counts[status] = int(n)
    return counts


async def ping(session: AsyncSession) -> None:
    """One round trip to the database (``select 1``); raises what the driver raises."""
    await session.execute(text("select 1"))
