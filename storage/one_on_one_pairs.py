"""1:1 pairs and their meetings as the scheduler and the cadence command keep them: which pairs the org
implies, when each meets next, and the one meeting row per (pair, time) that says its agenda went out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OneOnOne, OneOnOnePair, Person
from storage.upsert import insert_for

PAIR: Table = OneOnOnePair.__table__  # type: ignore[attr-defined]
O: Table = OneOnOne.__table__  # type: ignore[attr-defined]  # noqa: E741
P: Table = Person.__table__  # type: ignore[attr-defined]
MGR = P.alias("manager")


@dataclass(frozen=True)
class PairRow:
    """A manager and a report who meet 1:1."""

    id: int
    manager_id: int
    report_id: int
    every_days: int
    lead_hours: float
    next_at: datetime | None
    active: bool


_PAIR_COLUMNS = (
    PAIR.c.id,
    PAIR.c.manager_id,
    PAIR.c.report_id,
    PAIR.c.every_days,
    PAIR.c.lead_hours,
    PAIR.c.next_at,
    PAIR.c.active,
)


def _pair(row: Any) -> PairRow:
    return PairRow(row[0], row[1], row[2], int(row[3]), float(row[4]), row[5], bool(row[6]))


@dataclass(frozen=True)
class OrgLink:
    """An active person with an active manager: a pair the org implies; the report's department."""

    manager_id: int
    report_id: int
    department: str


async def org_links(session: AsyncSession) -> list[OrgLink]:
    """Every active manager–direct report link in the org data."""
    stmt = (
        select(P.c.manager_id, P.c.id, P.c.department)
        .join(MGR, MGR.c.id == P.c.manager_id)
        .where(P.c.active.is_(True), MGR.c.active.is_(True), P.c.manager_id != P.c.id)
        .order_by(P.c.manager_id, P.c.id)
    )
    return [OrgLink(m, r, d or "") for m, r, d in (await session.execute(stmt)).all()]


async def all_pairs(session: AsyncSession) -> list[PairRow]:
    """Every pair, active or not."""
    return [_pair(r) for r in (await session.execute(select(*_PAIR_COLUMNS).order_by(PAIR.c.id))).all()]


async def pairs_of_managers(session: AsyncSession, *, manager_ids: Sequence[int]) -> list[PairRow]:
    """The active pairs of these managers, by manager then report."""
    if not manager_ids:
        return []
    stmt = (
        select(*_PAIR_COLUMNS)
        .where(PAIR.c.manager_id.in_(sorted(set(manager_ids))), PAIR.c.active.is_(True))
        .order_by(PAIR.c.manager_id, PAIR.c.report_id)
    )
    return [_pair(r) for r in (await session.execute(stmt)).all()]


async def pair_of(session: AsyncSession, *, manager_id: int, report_id: int) -> PairRow | None:
    """The pair of this manager and report, active or not."""
    stmt = select(*_PAIR_COLUMNS).where(PAIR.c.manager_id == manager_id, PAIR.c.report_id == report_id)
    row = (await session.execute(stmt)).first()
    return _pair(row) if row is not None else None


async def add_pairs(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    """Create pairs (``manager_id``, ``report_id``, ``every_days``, ``lead_hours``, ``created_at``); a pair
    that exists already (another process made it) is left as it is."""
    if rows:
        stmt = insert_for(session, PAIR).on_conflict_do_nothing(index_elements=["manager_id", "report_id"])
        await session.execute(stmt, [{"active": True, "next_at": None, **r} for r in rows])


async def set_active(session: AsyncSession, *, pair_ids: Sequence[int], active: bool) -> None:
    """Switch pairs on or off; one switched back on is placed afresh (its old time has passed)."""
    if pair_ids:
        values: dict[str, Any] = {"active": active}
        if active:
            values["next_at"] = None
        await session.execute(update(PAIR).where(PAIR.c.id.in_(list(pair_ids))).values(**values))


async def unplaced(session: AsyncSession, *, limit: int) -> list[PairRow]:
    """Active pairs without a next meeting yet."""
    stmt = (
        select(*_PAIR_COLUMNS)
        .where(PAIR.c.active.is_(True), PAIR.c.next_at.is_(None))
        .order_by(PAIR.c.id)
        .limit(limit)
    )
    return [_pair(r) for r in (await session.execute(stmt)).all()]


async def passed(session: AsyncSession, *, now: datetime, limit: int) -> list[PairRow]:
    """Active pairs whose next meeting time has come."""
    stmt = (
        select(*_PAIR_COLUMNS)
        .where(PAIR.c.active.is_(True), PAIR.c.next_at <= now)
        .order_by(PAIR.c.next_at, PAIR.c.id)
        .limit(limit)
    )
    return [_pair(r) for r in (await session.execute(stmt)).all()]


async def move_next(
    session: AsyncSession, *, pair_id: int, expected: datetime | None, next_at: datetime
) -> bool:
    """Set the pair's next meeting if it still is ``expected`` (another process may have moved it)."""
    same = PAIR.c.next_at.is_(None) if expected is None else PAIR.c.next_at == expected
    result = await session.execute(update(PAIR).where(PAIR.c.id == pair_id, same).values(next_at=next_at))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def set_cadence(
    session: AsyncSession, *, pair_id: int, every_days: int | None = None, next_at: datetime | None = None
) -> None:
    """The manager's choice: how often the pair meets, or when it meets next."""
    values: dict[str, Any] = {}
    if every_days is not None:
        values["every_days"] = every_days
    if next_at is not None:
        values["next_at"] = next_at
    if values:
        await session.execute(update(PAIR).where(PAIR.c.id == pair_id).values(**values))


async def agendas_due(session: AsyncSession, *, now: datetime, until: datetime, limit: int) -> list[PairRow]:
    """Active pairs meeting after ``now`` and by ``until`` whose meeting has had no agenda sent yet."""
    sent = (
        select(O.c.id)
        .where(O.c.pair_id == PAIR.c.id, O.c.scheduled_at == PAIR.c.next_at, O.c.agenda_sent_at.is_not(None))
        .exists()
    )
    stmt = (
        select(*_PAIR_COLUMNS)
        .where(PAIR.c.active.is_(True), PAIR.c.next_at > now, PAIR.c.next_at <= until, ~sent)
        .order_by(PAIR.c.next_at, PAIR.c.id)
        .limit(limit)
    )
    return [_pair(r) for r in (await session.execute(stmt)).all()]


async def claim_agenda(
    session: AsyncSession, *, pair: PairRow, scheduled_at: datetime, agenda: dict[str, Any], now: datetime
) -> int | None:
    """Record that the meeting's agenda goes out now: the meeting row (made if new) gets the agenda and
    ``agenda_sent_at``. None when it had one already (another process got there first): send nothing."""
    stmt = insert_for(session, O).on_conflict_do_nothing(index_elements=["pair_id", "scheduled_at"])
    await session.execute(
        stmt,
        [
            {
                "pair_id": pair.id,
                "manager_id": pair.manager_id,
                "report_id": pair.report_id,
                "scheduled_at": scheduled_at,
                "agenda": {},
                "created_at": now,
            }
        ],
    )
    claimed = await session.execute(
        update(O)
        .where(and_(O.c.pair_id == pair.id, O.c.scheduled_at == scheduled_at, O.c.agenda_sent_at.is_(None)))
        .values(agenda=agenda, agenda_sent_at=now)
        .returning(O.c.id)
    )
    return claimed.scalar_one_or_none()
