"""The inbound journal: written before processing; a crash loses nothing, a re-delivery is a no-op."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import InboundEvent
from storage.upsert import insert_for

J = InboundEvent.__table__  # type: ignore[attr-defined]


async def record(
    session: AsyncSession, *, platform: str, event_id: str, payload: dict[str, Any]
) -> int | None:
    """Journal an event; returns its row id, or None when this event was seen before."""
    stmt = (
        insert_for(session, J)
        .values(platform=platform, event_id=event_id, payload=payload, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        .returning(J.c.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def claim(session: AsyncSession, *, journal_id: int) -> bool:
    """Mark a row processed in the caller's transaction; False if it already was (nothing to do)."""
    stmt = (
        update(J)
        .where(J.c.id == journal_id, J.c.processed_at.is_(None))
        .values(processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def mark_failed(session: AsyncSession, *, journal_id: int, error: str) -> None:
    """Close a row whose processing failed, keeping the reason."""
    await session.execute(
        update(J).where(J.c.id == journal_id).values(processed_at=utcnow(), error=error[:2000])
    )


async def unprocessed(
    session: AsyncSession, *, after_id: int = 0, limit: int = 500
) -> list[tuple[int, str, dict[str, Any]]]:
    """Events journaled but never processed (a crash in between); replayed at start, oldest first."""
    stmt = (
        select(J.c.id, J.c.platform, J.c.payload)
        .where(J.c.processed_at.is_(None), J.c.id > after_id)
        .order_by(J.c.id)
        .limit(limit)
    )
    return [(i, p, payload) for i, p, payload in (await session.execute(stmt)).all()]
