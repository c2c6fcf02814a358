"""The outbox: messages queued in the same transaction as the state they follow from."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import Assignment, Outbox
from storage.prepared import Prepared, dialect_insert, run

OUT = Outbox.__table__  # type: ignore[attr-defined]
A = Assignment.__table__  # type: ignore[attr-defined]

# why a row was not sent (``Outbox.error_reason``), the codes a status screen has words for:
# the app's API quota is used up; the platform asked to slow down; the person cannot be messaged on
# the platform; no platform id is known for the person; the platform refused the message; the
# stored message cannot be read any more; anything else (a server error, the network, a bug)
REASONS = ("quota", "rate_limit", "unreachable", "no_identity", "rejected", "unreadable", "failed")


@dataclass(frozen=True)
class OutboxRow:
    """One queued message as the delivery worker sees it."""

    id: int
    idempotency_key: str
    person_id: int | None
    recipient: str | None
    platform: str
    kind: str
    payload: dict[str, Any]
    assignment_id: int | None
    assignment_version: int | None
    attempts: int
    in_doubt: bool = False  # the platform may have it already: ask before sending again


_ENQUEUE = Prepared(
    lambda dialect: dialect_insert(dialect, OUT).on_conflict_do_nothing(index_elements=["idempotency_key"])
)


async def enqueue(session: AsyncSession, *, rows: list[dict[str, Any]]) -> None:
    """Queue messages; a key already queued is left alone (that is what makes a replay harmless)."""
    if not rows:
        return
    now = utcnow()
    values = [
        {
            "person_id": None,
            "recipient": None,
            "assignment_id": None,
            "assignment_version": None,
            "status": "pending",
            "attempts": 0,
            "in_doubt": False,
            "created_at": now,
            **row,
            "due_at": row.get("due_at") or now,
        }
        for row in rows
    ]
    await run(session, _ENQUEUE, values)


_ROW_COLUMNS = (
    OUT.c.id,
    OUT.c.idempotency_key,
    OUT.c.person_id,
    OUT.c.recipient,
    OUT.c.platform,
    OUT.c.kind,
    OUT.c.payload,
    OUT.c.assignment_id,
    OUT.c.assignment_version,
    OUT.c.attempts,
    OUT.c.in_doubt,
)


async def claim_due(
    session: AsyncSession, *, platforms: list[str], limit: int, lease_until: datetime
) -> list[OutboxRow]:
    """Take due rows for sending: pending ones, and ``sending`` ones whose sender's lease ran out.

    A claimed row is ``sending`` until ``lease_until``; if its process dies mid-send, the row
    comes due again then, marked in doubt: the platform may have it already. On PostgreSQL rows
    another worker is claiming are skipped, not waited for.
    """
    now = utcnow()
    due = (
        select(OUT.c.id)
        .where(
            OUT.c.platform.in_(platforms),
            OUT.c.due_at <= now,
            or_(OUT.c.status == "pending", OUT.c.status == "sending"),
        )
        .order_by(OUT.c.due_at, OUT.c.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = [i for (i,) in (await session.execute(due)).all()]
    if not ids:
        return []
    claimed = (
        update(OUT)
        .where(OUT.c.id.in_(ids))
        # SET reads the row as it was: a row still "sending" is one whose sender died mid-send
        .values(status="sending", due_at=lease_until, in_doubt=or_(OUT.c.in_doubt, OUT.c.status == "sending"))
        .returning(*_ROW_COLUMNS)
    )
    rows = [OutboxRow(*tuple(r)) for r in (await session.execute(claimed)).all()]
    return sorted(rows, key=lambda r: r.id)


async def obsolete_ids(session: AsyncSession, *, rows: list[OutboxRow]) -> set[int]:
    """Rows tied to a conversation state that has since moved on: sending them would confuse."""
    tied = [r for r in rows if r.assignment_id is not None and r.assignment_version is not None]
    if not tied:
        return set()
    ids = {r.assignment_id for r in tied}
    stmt = select(A.c.id, A.c.version).where(A.c.id.in_(ids))
    versions: dict[int, int] = {i: v for i, v in (await session.execute(stmt)).all()}
    return {r.id for r in tied if versions.get(r.assignment_id or 0) != r.assignment_version}


def _mark_statement(sent: bool, in_doubt: bool, error: bool, retry: bool, guarded: bool) -> Any:
    # bind names differ from the column names: SQLAlchemy keeps those for the SET clause's own binds
    values: dict[str, Any] = {"status": bindparam("b_status"), "attempts": OUT.c.attempts + 1}
    if sent:
        values.update(
            sent_at=bindparam("b_sent_at"),
            platform_message_id=bindparam("b_message_id"),
            last_error=None,
            error_reason=None,
            in_doubt=False,
        )
    elif in_doubt:
        values["in_doubt"] = True
    if error:
        values["last_error"] = bindparam("b_error")
        values["error_reason"] = bindparam("b_reason")
    if retry:
        values["due_at"] = bindparam("b_retry_at")
    stmt = update(OUT).where(OUT.c.id == bindparam("b_id")).values(**values)
    if guarded:
        stmt = stmt.where(OUT.c.status == "sending", OUT.c.due_at == bindparam("b_lease"))
    return stmt


def _mark_builder(shape: tuple[bool, ...]) -> Callable[[str], Any]:
    return lambda _: _mark_statement(*shape)


# one prebuilt UPDATE per shape of result (which columns it sets, whether a lease guards it)
_MARKS = {shape: Prepared(_mark_builder(shape)) for shape in itertools.product((False, True), repeat=5)}


async def mark(
    session: AsyncSession,
    *,
    outbox_id: int,
    status: str,
    platform_message_id: str | None = None,
    error: str | None = None,
    reason: str | None = None,
    retry_at: datetime | None = None,
    lease_until: datetime | None = None,
    in_doubt: bool = False,
) -> bool:
    """Record what happened to one row: sent, obsolete, failed (to retry at ``retry_at``) or dead.

    ``error`` is the failure in the platform's words, ``reason`` its short code (``REASONS``; stored
    with the error, None without one). With ``lease_until``, only while this sender's claim still
    holds; False if another took over. Many "sent" results at once go through ``mark_sent``.
    """
    sent = status == "sent"
    shape = (sent, in_doubt and not sent, error is not None, retry_at is not None, lease_until is not None)
    params: dict[str, Any] = {"b_id": outbox_id, "b_status": status}
    if sent:
        params.update(b_sent_at=utcnow(), b_message_id=platform_message_id)
    if error is not None:
        params["b_error"] = error[:2000]
        params["b_reason"] = reason[:32] if reason else None
    if retry_at is not None:
        params["b_retry_at"] = retry_at
    if lease_until is not None:
        params["b_lease"] = lease_until
    return bool((await run(session, _MARKS[shape], params)).rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SentMark:
    """A row the platform accepted, to be recorded as sent under the claim it was sent under."""

    outbox_id: int
    lease_until: datetime
    platform_message_id: str | None
    sent_at: datetime


_MARK_SENT = Prepared(
    lambda _: (
        update(OUT)
        .where(
            OUT.c.id.in_(bindparam("b_ids", expanding=True)),
            OUT.c.status == "sending",
            OUT.c.due_at == bindparam("b_lease"),
        )
        .values(
            status="sent", attempts=OUT.c.attempts + 1, last_error=None, error_reason=None, in_doubt=False
        )
        .returning(OUT.c.id)
    )
)
_SENT_DETAILS = Prepared(
    lambda _: (
        update(OUT)
        .where(OUT.c.id == bindparam("b_id"))
        .values(sent_at=bindparam("b_sent_at"), platform_message_id=bindparam("b_message_id"))
    )
)


async def mark_sent(session: AsyncSession, *, marks: list[SentMark]) -> set[int]:
    """Record many sent rows at once; returns the ids recorded (the others' claims were lost).

    Each row is recorded only while this sender's claim on it holds (``status = 'sending'`` and
    ``due_at`` = its lease), as ``mark`` does: one UPDATE ... RETURNING id per lease value (a claimed
    batch shares one, unless a row's claim was renewed), which says which rows it took (an
    executemany's per-row counts are not reported by every driver). The rows taken are then this
    transaction's: their message ids and send times are written by id, as one executemany.
    """
    by_lease: dict[datetime, list[int]] = {}
    for m in marks:
        by_lease.setdefault(m.lease_until, []).append(m.outbox_id)
    recorded: set[int] = set()
    for lease, ids in by_lease.items():
        result = await run(session, _MARK_SENT, {"b_ids": ids, "b_lease": lease})
        recorded.update(i for (i,) in result.all())
    details = [
        {"b_id": m.outbox_id, "b_sent_at": m.sent_at, "b_message_id": m.platform_message_id}
        for m in marks
        if m.outbox_id in recorded
    ]
    if details:
        await run(session, _SENT_DETAILS, details)
    return recorded


async def platform_message_id(session: AsyncSession, *, idempotency_key: str) -> str | None:
    """The platform's id for a sent message (to update it), by the key it was queued under."""
    stmt = select(OUT.c.platform_message_id).where(OUT.c.idempotency_key == idempotency_key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def release(session: AsyncSession, *, ids: list[int], due_at: datetime, lease_until: datetime) -> None:
    """Give claimed rows back unsent, due at ``due_at`` (they wait behind an earlier row's retry)."""
    if ids:
        await session.execute(
            update(OUT)
            .where(OUT.c.id.in_(ids), OUT.c.status == "sending", OUT.c.due_at == lease_until)
            .values(status="pending", due_at=due_at)
        )


async def renew(session: AsyncSession, *, outbox_id: int, lease_until: datetime, until: datetime) -> bool:
    """Extend this sender's claim on a row to ``until``; False if the claim was lost meanwhile."""
    stmt = (
        update(OUT)
        .where(OUT.c.id == outbox_id, OUT.c.status == "sending", OUT.c.due_at == lease_until)
        .values(due_at=until)
    )
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
