"""360 micro-feedback: what colleagues gave each other, and their requests for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import FeedbackRequest, PeerFeedback

F: Table = PeerFeedback.__table__  # type: ignore[attr-defined]
R: Table = FeedbackRequest.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FeedbackRow:
    """One stored piece of feedback: ``items`` is ``[{"text": str, "specific": bool}, ...]``."""

    id: int
    giver_id: int
    recipient_id: int
    items: list[dict[str, Any]]
    anonymous: bool
    request_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class RequestRow:
    """A request for feedback from ``requester_id`` to ``asked_id``; open while ``answered_at`` is None."""

    id: int
    requester_id: int
    asked_id: int
    anonymous: bool
    created_at: datetime
    answered_at: datetime | None


_FEEDBACK_COLUMNS = (
    F.c.id,
    F.c.giver_id,
    F.c.recipient_id,
    F.c["items"],  # ``.c.items`` is the collection's own method
    F.c.anonymous,
    F.c.request_id,
    F.c.created_at,
)
_REQUEST_COLUMNS = (R.c.id, R.c.requester_id, R.c.asked_id, R.c.anonymous, R.c.created_at, R.c.answered_at)


def _feedback(row: Any) -> FeedbackRow:
    r = tuple(row)
    return FeedbackRow(r[0], r[1], r[2], list(r[3] or []), bool(r[4]), r[5], r[6])


def _request(row: Any) -> RequestRow:
    r = tuple(row)
    return RequestRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5])


async def add_feedback(
    session: AsyncSession,
    *,
    giver_id: int,
    recipient_id: int,
    items: list[dict[str, Any]],
    anonymous: bool,
    request_id: int | None = None,
) -> FeedbackRow:
    """Store one piece of feedback in the caller's transaction; returns it with its id."""
    now = utcnow()
    stmt = (
        insert(F)
        .values(
            giver_id=giver_id,
            recipient_id=recipient_id,
            items=items,
            anonymous=anonymous,
            request_id=request_id,
            created_at=now,
        )
        .returning(F.c.id)
    )
    new_id = (await session.execute(stmt)).scalar_one()
    return FeedbackRow(new_id, giver_id, recipient_id, items, anonymous, request_id, now)


async def received(session: AsyncSession, *, recipient_id: int, limit: int = 200) -> list[FeedbackRow]:
    """Feedback given to ``recipient_id``, newest first (at most ``limit`` pieces)."""
    stmt = (
        select(*_FEEDBACK_COLUMNS)
        .where(F.c.recipient_id == recipient_id)
        .order_by(F.c.created_at.desc(), F.c.id.desc())
        .limit(limit)
    )
    return [_feedback(r) for r in (await session.execute(stmt)).all()]


async def given(session: AsyncSession, *, giver_id: int, limit: int = 50) -> list[FeedbackRow]:
    """Feedback ``giver_id`` gave, newest first (at most ``limit`` pieces)."""
    stmt = (
        select(*_FEEDBACK_COLUMNS)
        .where(F.c.giver_id == giver_id)
        .order_by(F.c.created_at.desc(), F.c.id.desc())
        .limit(limit)
    )
    return [_feedback(r) for r in (await session.execute(stmt)).all()]


async def anonymous_givers(session: AsyncSession, *, recipient_id: int) -> int:
    """How many different people gave ``recipient_id`` anonymous feedback (the threshold counts these)."""
    stmt = select(func.count(func.distinct(F.c.giver_id))).where(
        F.c.recipient_id == recipient_id, F.c.anonymous.is_(True)
    )
    return int((await session.execute(stmt)).scalar_one())


async def gave_anonymously(session: AsyncSession, *, giver_id: int, recipient_id: int) -> bool:
    """Whether ``giver_id`` already gave ``recipient_id`` anonymous feedback."""
    stmt = (
        select(F.c.id)
        .where(F.c.giver_id == giver_id, F.c.recipient_id == recipient_id, F.c.anonymous.is_(True))
        .limit(1)
    )
    return (await session.execute(stmt)).first() is not None


async def add_requests(
    session: AsyncSession, *, requester_id: int, asked_ids: list[int], anonymous: bool
) -> list[RequestRow]:
    """One request per asked person (in the order given), in the caller's transaction."""
    now = utcnow()
    made: list[RequestRow] = []
    for asked_id in asked_ids:
        stmt = (
            insert(R)
            .values(requester_id=requester_id, asked_id=asked_id, anonymous=anonymous, created_at=now)
            .returning(R.c.id)
        )
        new_id = (await session.execute(stmt)).scalar_one()
        made.append(RequestRow(new_id, requester_id, asked_id, anonymous, now, None))
    return made


async def open_requests(
    session: AsyncSession, *, requester_id: int, asked_ids: list[int]
) -> dict[int, RequestRow]:
    """The oldest unanswered request from ``requester_id`` to each of ``asked_ids`` that has one."""
    if not asked_ids:
        return {}
    stmt = (
        select(*_REQUEST_COLUMNS)
        .where(
            R.c.requester_id == requester_id,
            R.c.asked_id.in_(sorted(set(asked_ids))),
            R.c.answered_at.is_(None),
        )
        .order_by(R.c.created_at.desc(), R.c.id.desc())
    )
    found: dict[int, RequestRow] = {}
    for row in (await session.execute(stmt)).all():
        request = _request(row)
        found[request.asked_id] = request  # newest first, so the oldest one is kept
    return found


async def answer_request(session: AsyncSession, *, request_id: int) -> bool:
    """Mark a request answered now; False when it already was (another answer came first)."""
    stmt = update(R).where(R.c.id == request_id, R.c.answered_at.is_(None)).values(answered_at=utcnow())
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def requests_from(session: AsyncSession, *, requester_id: int, limit: int = 50) -> list[RequestRow]:
    """The requests ``requester_id`` made, newest first."""
    stmt = (
        select(*_REQUEST_COLUMNS)
        .where(R.c.requester_id == requester_id)
        .order_by(R.c.created_at.desc(), R.c.id.desc())
        .limit(limit)
    )
    return [_request(r) for r in (await session.execute(stmt)).all()]
