"""HR quality reviews of sampled 1:1 records: the month's records, the review rows, scores and comments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import ActionItem, FeedbackItem, OneOnOne, Person, QualityReview
from storage.upsert import insert_for

O: Table = OneOnOne.__table__  # type: ignore[attr-defined]  # noqa: E741
FI: Table = FeedbackItem.__table__  # type: ignore[attr-defined]
AI: Table = ActionItem.__table__  # type: ignore[attr-defined]
QR: Table = QualityReview.__table__  # type: ignore[attr-defined]
P: Table = Person.__table__  # type: ignore[attr-defined]

# rows per INSERT: far below SQLite's 32,766 bound parameters, and a month's sample is a few batches
_BATCH = 500


@dataclass(frozen=True)
class RecordedOneOnOne:
    """A 1:1 record written in a time window, with the manager's time zone (which decides its month)."""

    id: int
    manager_id: int
    report_id: int
    recorded_at: datetime
    manager_timezone: str


async def recorded_between(
    session: AsyncSession, *, start: datetime, end: datetime
) -> list[RecordedOneOnOne]:
    """1:1 records written in ``[start, end)`` (UTC), oldest id first."""
    stmt = (
        select(O.c.id, O.c.manager_id, O.c.report_id, O.c.recorded_at, P.c.timezone)
        .join(P, P.c.id == O.c.manager_id)
        .where(O.c.recorded_at >= start, O.c.recorded_at < end)
        .order_by(O.c.id)
    )
    return [RecordedOneOnOne(*tuple(r)) for r in (await session.execute(stmt)).all()]


async def month_sampled(session: AsyncSession, *, month: str) -> bool:
    """Whether the month's sample was drawn already (any review row of it exists).

    The scheduler asks every tick, and ``month`` has no index of its own: newest rows first, along the
    primary key, finds the latest month's rows at once instead of reading every past month's.
    """
    stmt = select(QR.c.id).where(QR.c.month == month).order_by(QR.c.id.desc()).limit(1)
    return (await session.execute(stmt)).first() is not None


async def create_reviews(
    session: AsyncSession, *, month: str, seed: int, picks: list[tuple[int, int]], sent_at: datetime
) -> dict[int, int]:
    """Review rows for ``picks`` (record id, reviewer id); a record already under review for the month is
    left alone. Returns ``{record id: review id}`` of the rows created now."""
    created: dict[int, int] = {}
    for i in range(0, len(picks), _BATCH):
        values = [
            {
                "one_on_one_id": record,
                "month": month,
                "seed": seed,
                "reviewer_id": reviewer,
                "sent_at": sent_at,
            }
            for record, reviewer in picks[i : i + _BATCH]
        ]
        stmt = (
            insert_for(session, QR)
            .values(values)
            .on_conflict_do_nothing(index_elements=["one_on_one_id", "month"])
            .returning(QR.c.id, QR.c.one_on_one_id)
        )
        created.update({int(record): int(review) for review, record in (await session.execute(stmt)).all()})
    return created


@dataclass(frozen=True)
class Review:
    """One review row."""

    id: int
    one_on_one_id: int
    month: str
    seed: int
    reviewer_id: int
    score: int | None
    comment: str | None
    sent_at: datetime | None
    scored_at: datetime | None


_REVIEW = (
    QR.c.id,
    QR.c.one_on_one_id,
    QR.c.month,
    QR.c.seed,
    QR.c.reviewer_id,
    QR.c.score,
    QR.c.comment,
    QR.c.sent_at,
    QR.c.scored_at,
)


async def get(session: AsyncSession, *, review_id: int) -> Review | None:
    """One review by id."""
    row = (await session.execute(select(*_REVIEW).where(QR.c.id == review_id))).first()
    return Review(*tuple(row)) if row else None


async def for_month(session: AsyncSession, *, month: str) -> list[Review]:
    """Every review of a month, by record id."""
    stmt = select(*_REVIEW).where(QR.c.month == month).order_by(QR.c.one_on_one_id)
    return [Review(*tuple(r)) for r in (await session.execute(stmt)).all()]


async def unscored_for(session: AsyncSession, *, reviewer_id: int, limit: int = 2) -> list[Review]:
    """A reviewer's reviews not scored yet, oldest first (``limit``: callers only ask "one or more?")."""
    stmt = (
        select(*_REVIEW)
        .where(QR.c.reviewer_id == reviewer_id, QR.c.score.is_(None))
        .order_by(QR.c.id)
        .limit(limit)
    )
    return [Review(*tuple(r)) for r in (await session.execute(stmt)).all()]


async def score(
    session: AsyncSession, *, review_id: int, scorer_id: int, score: int, comment: str | None, at: datetime
) -> bool:
    """Store a score (and a comment) unless the review has one already; False when it had.

    Guarded in the statement itself, so two clicks racing in two processes store one score.
    """
    stmt = (
        update(QR)
        .where(QR.c.id == review_id, QR.c.score.is_(None))
        .values(score=score, comment=comment, scored_at=at, reviewer_id=scorer_id)
    )
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def awaiting_comment(session: AsyncSession, *, reviewer_id: int, since: datetime) -> Review | None:
    """The reviewer's latest review scored since ``since`` without a comment (asked for one), if any."""
    stmt = (
        select(*_REVIEW)
        .where(
            QR.c.reviewer_id == reviewer_id,
            QR.c.score.is_not(None),
            QR.c.comment.is_(None),
            QR.c.scored_at >= since,
        )
        .order_by(QR.c.scored_at.desc(), QR.c.id.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return Review(*tuple(row)) if row else None


async def set_comment(session: AsyncSession, *, review_id: int, comment: str) -> bool:
    """Store the comment of a scored review that has none yet; False when it had one."""
    stmt = (
        update(QR)
        .where(QR.c.id == review_id, QR.c.score.is_not(None), QR.c.comment.is_(None))
        .values(comment=comment)
    )
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Item:
    """One statement of a 1:1 record."""

    kind: str
    text: str
    specific: bool


@dataclass(frozen=True)
class Action:
    """One action item of a 1:1 record."""

    owner: str
    text: str
    due_on: date | None
    done_at: datetime | None


@dataclass(frozen=True)
class RecordContent:
    """What a reviewer is shown of a 1:1 record."""

    id: int
    manager_id: int
    manager: str
    report_id: int
    report: str
    scheduled_at: datetime
    recorded_at: datetime | None
    items: tuple[Item, ...]
    actions: tuple[Action, ...]


async def record_content(session: AsyncSession, *, one_on_one_id: int) -> RecordContent | None:
    """A 1:1 record with its people's names, its feedback items and its action items."""
    manager, report, owner = aliased(P), aliased(P), aliased(P)
    head = (
        await session.execute(
            select(
                O.c.id,
                O.c.manager_id,
                manager.c.name,
                O.c.report_id,
                report.c.name,
                O.c.scheduled_at,
                O.c.recorded_at,
            )
            .join(manager, manager.c.id == O.c.manager_id)
            .join(report, report.c.id == O.c.report_id)
            .where(O.c.id == one_on_one_id)
        )
    ).first()
    if head is None:
        return None
    items = (
        await session.execute(
            select(FI.c.kind, FI.c.text, FI.c.specific)
            .where(FI.c.one_on_one_id == one_on_one_id)
            .order_by(FI.c.id)
        )
    ).all()
    actions = (
        await session.execute(
            select(owner.c.name, AI.c.text, AI.c.due_on, AI.c.done_at)
            .join(owner, owner.c.id == AI.c.owner_id)
            .where(AI.c.one_on_one_id == one_on_one_id)
            .order_by(AI.c.id)
        )
    ).all()
    rid, manager_id, manager_name, report_id, report_name, scheduled_at, recorded_at = tuple(head)
    return RecordContent(
        id=rid,
        manager_id=manager_id,
        manager=manager_name,
        report_id=report_id,
        report=report_name,
        scheduled_at=scheduled_at,
        recorded_at=recorded_at,
        items=tuple(Item(k, t, bool(s)) for k, t, s in items),
        actions=tuple(Action(*tuple(a)) for a in actions),
    )


async def scored_count(session: AsyncSession, *, month: str) -> tuple[int, int]:
    """``(scored, sampled)`` reviews of a month."""
    stmt = select(func.count(QR.c.score), func.count()).where(QR.c.month == month)
    scored, sampled = (await session.execute(stmt)).one()
    return int(scored), int(sampled)
