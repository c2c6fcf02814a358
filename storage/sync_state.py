"""Sync cursors (where each source's scope was read up to) and the log of sync runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SyncCursor, SyncRun
from storage.upsert import insert_for

C: Table = SyncCursor.__table__  # type: ignore[attr-defined]
R: Table = SyncRun.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Cursor:
    hwm: datetime | None = None
    resume: str | None = None
    resume_since: datetime | None = None
    resume_started_at: datetime | None = None
    last_success_at: datetime | None = None
    last_reconcile_at: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None


async def cursor(session: AsyncSession, *, source: str, tenant: str, scope: str) -> Cursor:
    """The scope's cursor (a blank one when the scope was never read)."""
    row = (
        await session.execute(
            select(
                C.c.hwm,
                C.c.resume,
                C.c.resume_since,
                C.c.resume_started_at,
                C.c.last_success_at,
                C.c.last_reconcile_at,
                C.c.consecutive_failures,
                C.c.last_error,
            ).where(C.c.source == source, C.c.tenant == tenant, C.c.scope == scope)
        )
    ).first()
    return Cursor(*row) if row is not None else Cursor()


async def save_cursor(session: AsyncSession, *, source: str, tenant: str, scope: str, **values: Any) -> None:
    """Create or change a scope's cursor (only the columns given)."""
    stmt = insert_for(session, C).values(source=source, tenant=tenant, scope=scope, **values)
    if values:
        stmt = stmt.on_conflict_do_update(index_elements=[C.c.source, C.c.tenant, C.c.scope], set_=values)
    else:
        stmt = stmt.on_conflict_do_nothing()
    await session.execute(stmt)


async def record_failure(session: AsyncSession, *, source: str, tenant: str, scope: str, error: str) -> None:
    """A run of the scope failed: its cursor stays, the failure is counted and said."""
    await save_cursor(session, source=source, tenant=tenant, scope=scope)
    await session.execute(
        update(C)
        .where(C.c.source == source, C.c.tenant == tenant, C.c.scope == scope)
        .values(consecutive_failures=C.c.consecutive_failures + 1, last_error=error[:2000])
    )


async def start_run(session: AsyncSession, *, source: str, tenant: str, kind: str, now: datetime) -> int:
    result = await session.execute(
        R.insert()
        .values(source=source, tenant=tenant, kind=kind, started_at=now, status="running", unknown_people=[])
        .returning(R.c.id)
    )
    return int(result.scalar_one())


async def finish_run(session: AsyncSession, *, run_id: int, **values: Any) -> None:
    await session.execute(update(R).where(R.c.id == run_id).values(**values))


@dataclass(frozen=True)
class RunView:
    """A source's latest run, and its scopes' cursors summed up, for ``cadence sync status``."""

    source: str
    tenant: str
    kind: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    items_read: int
    items_changed: int
    items_deleted: int
    requests: int
    unknown_people: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


async def latest_runs(session: AsyncSession) -> list[RunView]:
    """The newest run of each source (and tenant)."""
    newest = (
        select(R.c.source, R.c.tenant, func.max(R.c.id).label("id"))
        .group_by(R.c.source, R.c.tenant)
        .subquery()
    )
    rows = await session.execute(
        select(
            R.c.source,
            R.c.tenant,
            R.c.kind,
            R.c.started_at,
            R.c.finished_at,
            R.c.status,
            R.c.items_read,
            R.c.items_changed,
            R.c.items_deleted,
            R.c.requests,
            R.c.unknown_people,
            R.c.error,
        )
        .join(newest, newest.c.id == R.c.id)
        .order_by(R.c.source)
    )
    return [RunView(*row) for row in rows]


async def last_started(session: AsyncSession, *, source: str) -> datetime | None:
    """When the source's newest run started (whatever its end: a failing one waits its turn too)."""
    return (
        await session.execute(select(func.max(R.c.started_at)).where(R.c.source == source))
    ).scalar_one_or_none()


async def failing_scopes(session: AsyncSession, *, source: str) -> list[tuple[str, int, str | None]]:
    """Scopes whose last run failed: (scope, failures in a row, the last error)."""
    rows = await session.execute(
        select(C.c.scope, C.c.consecutive_failures, C.c.last_error)
        .where(C.c.source == source, C.c.consecutive_failures > 0)
        .order_by(C.c.consecutive_failures.desc())
    )
    return [(scope, n, err) for scope, n, err in rows]


async def has_read(session: AsyncSession, *, source: str, tenant: str) -> bool:
    """Whether any scope of the source was read to the end before (else the next run is a full one)."""
    found = await session.execute(
        select(C.c.scope).where(C.c.source == source, C.c.tenant == tenant, C.c.hwm.is_not(None)).limit(1)
    )
    return found.first() is not None
