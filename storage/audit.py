"""The audit log: who did or read what."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.clock import utcnow
from storage.models import AuditLog


async def write(
    session: AsyncSession,
    *,
    actor_id: int | None,
    action: str,
    subject_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry in the caller's transaction."""
    session.add(
        AuditLog(at=utcnow(), actor_id=actor_id, action=action, subject_id=subject_id, detail=detail or {})
    )
    await session.flush()


async def entries(session: AsyncSession, *, action: str | None = None) -> list[AuditLog]:
    """Audit entries, oldest first, optionally of one action."""
    stmt = select(AuditLog).order_by(col(AuditLog.id))
    if action is not None:
        stmt = stmt.where(col(AuditLog.action) == action)
    return list((await session.execute(stmt)).scalars().all())
