"""1:1 records, their feedback items and action items, and key events: written and read by keyword.

What other modules read here:

- ``records_of``: a person's 1:1 records (newest first), each with its feedback and action items;
  ``record``: one of them by id.
- ``open_action_items``: action items not done yet, of a report (optionally of one manager's 1:1s
  with them): what the next agenda carries over.
- ``key_events``: what was noted about a person since a moment (``note @alice …``).

What the 1:1 conversation writes: ``save_record`` (the record, its items and action items in one go),
``add_key_event``; and the conversation's own bookkeeping: ``record_cycle`` (the container its state
rows live in) and ``open_record_conversation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.assignments import HOLDING
from storage.clock import utcnow
from storage.models import (
    ActionItem,
    Assignment,
    Cycle,
    FeedbackItem,
    KeyEvent,
    OneOnOne,
    OneOnOnePair,
    Person,
)
from storage.upsert import insert_for

O: Table = OneOnOne.__table__  # type: ignore[attr-defined]  # noqa: E741
PAIR: Table = OneOnOnePair.__table__  # type: ignore[attr-defined]
FB: Table = FeedbackItem.__table__  # type: ignore[attr-defined]
AI: Table = ActionItem.__table__  # type: ignore[attr-defined]
K: Table = KeyEvent.__table__  # type: ignore[attr-defined]
A: Table = Assignment.__table__  # type: ignore[attr-defined]
C: Table = Cycle.__table__  # type: ignore[attr-defined]
P: Table = Person.__table__  # type: ignore[attr-defined]

FEEDBACK_KINDS = ("strength", "improvement", "resource")
# an org tree deeper than this is broken data (a loop the import missed), not a hierarchy
_MAX_DEPTH = 64


# ---- what is written ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackDraft:
    """One statement of a 1:1 record before it is stored."""

    kind: str  # strength | improvement | resource
    text: str
    specific: bool
    nudged: bool = False
    kept_as_is: bool = False


@dataclass(frozen=True)
class ActionDraft:
    """One action item before it is stored: what, who, by when."""

    text: str
    owner_id: int
    due_on: date | None


async def save_record(
    session: AsyncSession,
    *,
    manager_id: int,
    report_id: int,
    recorded_at: datetime,
    meeting_id: int | None,
    feedback: list[FeedbackDraft],
    actions: list[ActionDraft],
) -> int:
    """Store a manager's record of a 1:1 with its items; returns the ``OneOnOne`` id.

    ``meeting_id``: the scheduled meeting it records (``meeting_around``), marked recorded; None: a
    1:1 that was not scheduled becomes a meeting of its own at ``recorded_at`` (of the pair, if the
    two have one).
    """
    record_id: int | None = None
    if meeting_id is not None:
        marked = await session.execute(
            update(O)
            .where(O.c.id == meeting_id, O.c.recorded_at.is_(None))
            .values(recorded_at=recorded_at)
            .returning(O.c.id)
        )
        record_id = marked.scalar_one_or_none()
    if record_id is None:
        pair_id = (
            await session.execute(
                select(PAIR.c.id).where(PAIR.c.manager_id == manager_id, PAIR.c.report_id == report_id)
            )
        ).scalar_one_or_none()
        created = await session.execute(
            insert(O)
            .values(
                pair_id=pair_id,
                manager_id=manager_id,
                report_id=report_id,
                scheduled_at=recorded_at,
                agenda={},
                recorded_at=recorded_at,
                created_at=utcnow(),
            )
            .returning(O.c.id)
        )
        record_id = int(created.scalar_one())
    now = utcnow()
    if feedback:
        await session.execute(
            insert(FB),
            [
                {
                    "one_on_one_id": record_id,
                    "kind": f.kind,
                    "text": f.text,
                    "specific": f.specific,
                    "nudged": f.nudged,
                    "kept_as_is": f.kept_as_is,
                    "created_at": now,
                }
                for f in feedback
            ],
        )
    if actions:
        await session.execute(
            insert(AI),
            [
                {
                    "one_on_one_id": record_id,
                    "report_id": report_id,
                    "owner_id": a.owner_id,
                    "text": a.text,
                    "due_on": a.due_on,
                    "created_at": now,
                }
                for a in actions
            ],
        )
    return record_id


@dataclass(frozen=True)
class MeetingRow:
    """A scheduled 1:1 meeting: its id and when it was planned for."""

    id: int
    scheduled_at: datetime


async def meeting_around(
    session: AsyncSession,
    *,
    manager_id: int,
    report_id: int,
    moment: datetime,
    before: timedelta = timedelta(days=3),
    after: timedelta = timedelta(hours=12),
) -> MeetingRow | None:
    """The pair's scheduled, not yet recorded meeting nearest ``moment`` (from ``before`` it to
    ``after`` it), if there is one: the meeting a record made now is about."""
    rows = (
        await session.execute(
            select(O.c.id, O.c.scheduled_at).where(
                O.c.manager_id == manager_id,
                O.c.report_id == report_id,
                O.c.recorded_at.is_(None),
                O.c.scheduled_at >= moment - before,
                O.c.scheduled_at <= moment + after,
            )
        )
    ).all()
    if not rows:
        return None
    nearest = min(rows, key=lambda r: abs(_aware(r[1]) - moment))
    return MeetingRow(int(nearest[0]), _aware(nearest[1]))


async def mark_action_item_done(session: AsyncSession, *, action_item_id: int, at: datetime) -> bool:
    """Mark an action item done; False when there is no such open item."""
    result = await session.execute(
        update(AI).where(AI.c.id == action_item_id, AI.c.done_at.is_(None)).values(done_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_key_event(
    session: AsyncSession, *, subject_id: int, author_id: int, text: str, specific: bool
) -> int:
    """Note something about a person; returns the ``KeyEvent`` id."""
    result = await session.execute(
        insert(K)
        .values(subject_id=subject_id, author_id=author_id, text=text, specific=specific, created_at=utcnow())
        .returning(K.c.id)
    )
    return int(result.scalar_one())


# ---- what is read --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackRow:
    """A stored strength, improvement or resource need."""

    id: int
    kind: str
    text: str
    specific: bool
    nudged: bool
    kept_as_is: bool


@dataclass(frozen=True)
class ActionItemRow:
    """A stored action item, with the record it came from."""

    id: int
    one_on_one_id: int
    report_id: int
    owner_id: int
    text: str
    due_on: date | None
    done_at: datetime | None
    created_at: datetime
    manager_id: int


@dataclass(frozen=True)
class RecordRow:
    """One recorded 1:1 with everything written in it."""

    id: int
    manager_id: int
    report_id: int
    scheduled_at: datetime
    recorded_at: datetime
    feedback: tuple[FeedbackRow, ...]
    actions: tuple[ActionItemRow, ...]


@dataclass(frozen=True)
class KeyEventRow:
    """Something noted about a person, by whom and when."""

    id: int
    subject_id: int
    author_id: int
    author_name: str
    text: str
    specific: bool
    created_at: datetime


_ACTION_COLUMNS = (
    AI.c.id,
    AI.c.one_on_one_id,
    AI.c.report_id,
    AI.c.owner_id,
    AI.c.text,
    AI.c.due_on,
    AI.c.done_at,
    AI.c.created_at,
    O.c.manager_id,
)


def _action(r: Any) -> ActionItemRow:
    return ActionItemRow(
        r[0], r[1], r[2], r[3], r[4], r[5], _aware(r[6]) if r[6] else None, _aware(r[7]), r[8]
    )


async def open_action_items(
    session: AsyncSession, *, report_id: int, manager_id: int | None = None, limit: int = 50
) -> list[ActionItemRow]:
    """Action items of a report's 1:1s not done yet (only those of ``manager_id``'s 1:1s, if given),
    soonest due first (undated last), then oldest."""
    stmt = (
        select(*_ACTION_COLUMNS)
        .join(O, O.c.id == AI.c.one_on_one_id)
        .where(AI.c.report_id == report_id, AI.c.done_at.is_(None))
        .order_by(AI.c.due_on.is_(None), AI.c.due_on, AI.c.id)
        .limit(limit)
    )
    if manager_id is not None:
        stmt = stmt.where(O.c.manager_id == manager_id)
    return [_action(r) for r in (await session.execute(stmt)).all()]


async def records_of(
    session: AsyncSession,
    *,
    report_id: int,
    manager_id: int | None = None,
    since: datetime | None = None,
    limit: int = 20,
) -> list[RecordRow]:
    """A person's recorded 1:1s, newest first (with ``manager_id``: only that manager's; with
    ``since``: recorded at or after it), each with its feedback and action items."""
    stmt = (
        select(O.c.id, O.c.manager_id, O.c.report_id, O.c.scheduled_at, O.c.recorded_at)
        .where(O.c.report_id == report_id, O.c.recorded_at.is_not(None))
        .order_by(O.c.recorded_at.desc(), O.c.id.desc())
        .limit(limit)
    )
    if manager_id is not None:
        stmt = stmt.where(O.c.manager_id == manager_id)
    if since is not None:
        stmt = stmt.where(O.c.recorded_at >= since)
    heads = (await session.execute(stmt)).all()
    return await _with_items(session, heads)


async def record(session: AsyncSession, *, one_on_one_id: int) -> RecordRow | None:
    """One recorded 1:1 with its items (None if there is none, or it was never recorded)."""
    heads = (
        await session.execute(
            select(O.c.id, O.c.manager_id, O.c.report_id, O.c.scheduled_at, O.c.recorded_at).where(
                O.c.id == one_on_one_id, O.c.recorded_at.is_not(None)
            )
        )
    ).all()
    found = await _with_items(session, heads)
    return found[0] if found else None


async def _with_items(session: AsyncSession, heads: Any) -> list[RecordRow]:
    ids = [h[0] for h in heads]
    if not ids:
        return []
    feedback: dict[int, list[FeedbackRow]] = {}
    rows = await session.execute(
        select(FB.c.one_on_one_id, FB.c.id, FB.c.kind, FB.c.text, FB.c.specific, FB.c.nudged, FB.c.kept_as_is)
        .where(FB.c.one_on_one_id.in_(ids))
        .order_by(FB.c.id)
    )
    for r in rows.all():
        feedback.setdefault(r[0], []).append(FeedbackRow(r[1], r[2], r[3], r[4], r[5], r[6]))
    actions: dict[int, list[ActionItemRow]] = {}
    rows = await session.execute(
        select(*_ACTION_COLUMNS)
        .join(O, O.c.id == AI.c.one_on_one_id)
        .where(AI.c.one_on_one_id.in_(ids))
        .order_by(AI.c.id)
    )
    for r in rows.all():
        actions.setdefault(r[1], []).append(_action(r))
    return [
        RecordRow(
            h[0],
            h[1],
            h[2],
            _aware(h[3]),
            _aware(h[4]),
            tuple(feedback.get(h[0], ())),
            tuple(actions.get(h[0], ())),
        )
        for h in heads
    ]


async def key_events(
    session: AsyncSession,
    *,
    subject_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[KeyEventRow]:
    """What was noted about a person (from ``since``, before ``until``), oldest first."""
    stmt = (
        select(K.c.id, K.c.subject_id, K.c.author_id, P.c.name, K.c.text, K.c.specific, K.c.created_at)
        .join(P, P.c.id == K.c.author_id)
        .where(K.c.subject_id == subject_id)
        .order_by(K.c.created_at, K.c.id)
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(K.c.created_at >= since)
    if until is not None:
        stmt = stmt.where(K.c.created_at < until)
    return [
        KeyEventRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), _aware(r[6]))
        for r in (await session.execute(stmt)).all()
    ]


# ---- who may write -------------------------------------------------------------------------------


async def manages(session: AsyncSession, *, manager_id: int, report_id: int) -> bool:
    """Whether ``manager_id`` is above ``report_id`` in the org: their manager, that manager's
    manager, … (one query a level; a loop in the org data ends the walk)."""
    seen: set[int] = set()
    current: int | None = report_id
    for _ in range(_MAX_DEPTH):
        current = (
            await session.execute(select(P.c.manager_id).where(P.c.id == current))
        ).scalar_one_or_none()
        if current is None or current in seen or current == report_id:
            return False
        if current == manager_id:
            return True
        seen.add(current)
    return False


async def has_reports(session: AsyncSession, *, manager_id: int) -> bool:
    """Whether anyone reports to this person directly (so they manage someone at all)."""
    stmt = select(P.c.id).where(P.c.manager_id == manager_id, P.c.active.is_(True)).limit(1)
    return (await session.execute(stmt)).first() is not None


# ---- the 1:1 conversation's bookkeeping ---------------------------------------------------------


async def record_cycle(
    session: AsyncSession, *, ritual_key: str, ritual_id: int, period: str, started_by_id: int
) -> int:
    """The cycle that holds 1:1 record conversations for ``period`` (one a day, shared), created if
    missing.

    It is a container, never a campaign: created closed, so nothing plans, reminds, digests or lists
    it among HR's open cycles, and no queue starts its conversations (the command starts each one).
    """
    now = utcnow()
    await session.execute(
        insert_for(session, C)
        .values(
            ritual_key=ritual_key,
            ritual_id=ritual_id,
            period=period,
            status="closed",
            scope={"kind": ritual_key, "reminders": {"max": 0}},
            due_at=None,
            started_by_id=started_by_id,
            created_at=now,
            closed_at=now,
        )
        .on_conflict_do_nothing(index_elements=["ritual_key", "period"])
    )
    found = select(C.c.id).where(C.c.ritual_key == ritual_key, C.c.period == period)
    return int((await session.execute(found)).scalar_one())


async def open_record_conversation(
    session: AsyncSession, *, ritual_key: str, manager_id: int, report_id: int
) -> int | None:
    """The assignment id of the manager's 1:1 record about ``report_id`` still in progress, if any."""
    stmt = (
        select(A.c.id)
        .join(C, C.c.id == A.c.cycle_id)
        .where(
            and_(
                C.c.ritual_key == ritual_key,
                A.c.person_id == manager_id,
                A.c.subject_id == report_id,
                A.c.status.in_(HOLDING),
            )
        )
        .order_by(A.c.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _aware(moment: datetime) -> datetime:
    """A stored moment as aware UTC (everything is stored in UTC; a naive one read back is UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
