"""The inbound journal: written before processing; a crash loses nothing, a re-delivery is a no-op."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import InboundEvent
from storage.prepared import Prepared, dialect_insert, run

J = InboundEvent.__table__  # type: ignore[attr-defined]


_RECORD = Prepared(
    lambda dialect: (
        dialect_insert(dialect, J)
        .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        .returning(J.c.id)
    )
)
_CLAIM = Prepared(
    lambda _: (
        update(J)
        .where(J.c.id == bindparam("journal_id"), J.c.processed_at.is_(None))
        .values(processed_at=bindparam("now", type_=J.c.processed_at.type))
    )
)


async def record(
    session: AsyncSession, *, platform: str, event_id: str, payload: dict[str, Any]
) -> int | None:
    """Journal an event; returns its row id, or None when this event was seen before."""
    params = {"platform": platform, "event_id": event_id, "payload": payload, "received_at": utcnow()}
    return (await run(session, _RECORD, params)).scalar_one_or_none()


async def record_many(
    session: AsyncSession, *, rows: list[tuple[str, str, dict[str, Any]]]
) -> dict[tuple[str, str], int]:
    """Journal many events at once; ``{(platform, event_id): id}`` for those not seen before."""
    now = utcnow()
    params = [
        {"platform": p, "event_id": e, "payload": payload, "received_at": now} for p, e, payload in rows
    ]
    result = await run(session, _RECORD_MANY, params)
    return {(platform, event_id): row_id for row_id, platform, event_id in result.all()}


_RECORD_MANY = Prepared(
    lambda dialect: (
        dialect_insert(dialect, J)
        .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        .returning(J.c.id, J.c.platform, J.c.event_id)
    )
)
_CLAIM_MANY = Prepared(
    lambda _: (
        update(J)
        .where(J.c.id.in_(bindparam("journal_ids", expanding=True)), J.c.processed_at.is_(None))
        .values(processed_at=bindparam("now", type_=J.c.processed_at.type))
        .returning(J.c.id)
    )
)


async def claim_many(session: AsyncSession, *, journal_ids: list[int]) -> set[int]:
    """Claim many rows at once (see ``claim``); returns the ids this transaction got."""
    if not journal_ids:
        return set()
    result = await run(session, _CLAIM_MANY, {"journal_ids": journal_ids, "now": utcnow()})
    return {row_id for (row_id,) in result.all()}


async def claim(session: AsyncSession, *, journal_id: int) -> bool:
    """Mark a row processed in the caller's transaction; False if it already was (nothing to do)."""
    result = await run(session, _CLAIM, {"journal_id": journal_id, "now": utcnow()})
    return bool(result.rowcount)  # type: ignore[attr-defined]


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
