"""1:1s on a cadence: a pair for every manager and direct report, each pair's next meeting on the
manager's calendar, and the agenda card to the manager ``lead_hours`` before it.

The leader runs ``run`` on every tick:

1. pairs follow the org (at most every ``pairs_every``): a new report gets a pair, one who moved or
   left has their old pair switched off (kept, with its history);
2. a pair without a next meeting gets one: the manager's next workday at ``at`` local time (their
   calendar, leave and quiet hours; after the report's leave), a manager's reports spread over the
   days of the cadence so they do not all fall on one morning;
3. agendas due (``next_at - lead_hours`` has come) are made and queued: the meeting row
   (``OneOnOne``, unique on pair and time) is claimed in the same transaction as the outbox row, so a
   second run, a second process or a crash and rerun sends nothing twice;
4. meetings whose time has passed move on by the pair's cadence, at the same local time.

The data is read and the (optional) language model asked outside any transaction; only the claim
and the outbox row are written together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.agenda import AgendaSettings
from conversations.agenda_service import Prepared, prepare
from conversations.messages import Message
from conversations.outgoing import Outgoing, outbox_rows
from conversations.topic_rewriter import TopicRewriter, TopicText
from scheduler.schedule import local_to_utc
from scheduler.timing import FALLBACK_TZ, PersonTiming
from storage import audit, one_on_one_pairs, outbox, people
from storage.engine import Database
from storage.one_on_one_pairs import PairRow
from storage.people import PersonRow

log = logging.getLogger(__name__)
MAX_LEAD = timedelta(hours=72)  # agendas are looked for this far ahead (a pair's lead_hours fits in it)
KIND = "agenda"


@dataclass(frozen=True)
class OneOnOneConfig:
    """The settings' choices for 1:1s (``ONE_ON_ONE_*``); a pair's own cadence wins over them."""

    every_days: int = 14
    # a department's own cadence for its new pairs (the report's department), e.g. {"Sales": 7}
    every_days_by_department: Mapping[str, int] = field(default_factory=dict)
    lead_hours: float = 2.0
    at: time = time(10, 0)
    agenda: AgendaSettings = field(default_factory=AgendaSettings)
    batch: int = 100  # agendas made per run (each reads a handful of queries; the model may be slow)
    place_batch: int = 2000  # pairs placed or moved on per run
    pairs_every: timedelta = timedelta(minutes=10)
    rewrite_concurrency: int = 4


def meeting_key(pair_id: int, scheduled_at: datetime) -> str:
    """The outbox key of a meeting's agenda: one per pair and meeting time."""
    return f"1on1:p{pair_id}:{scheduled_at.astimezone(UTC):%Y%m%dT%H%M%SZ}:agenda"


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(FALLBACK_TZ)


@dataclass(frozen=True)
class _Made:
    pair: PairRow
    manager: PersonRow
    prepared: Prepared


class OneOnOnes:
    """Keeps pairs, places meetings and sends agendas; run by the leader on every tick."""

    def __init__(
        self,
        db: Database,
        timing: PersonTiming,
        *,
        platform: str,
        sources: Sequence[str] = (),
        config: OneOnOneConfig | None = None,
        rewriter: TopicRewriter | None = None,
    ) -> None:
        self.db, self.timing, self.platform = db, timing, platform
        self.sources = tuple(sources)
        self.config = config or OneOnOneConfig()
        self.rewriter = rewriter
        self._synced_at: datetime | None = None

    async def run(self, now: datetime) -> int:
        """One pass at ``now``; returns how many agendas were queued."""
        synced = self._synced_at
        if synced is None or not (synced <= now < synced + self.config.pairs_every):
            await self.sync_pairs(now)
            self._synced_at = now
        await self.place(now)
        sent = await self.send_due(now)
        await self.advance(now)
        return sent

    # ---- pairs --------------------------------------------------------------------------------

    async def sync_pairs(self, now: datetime) -> tuple[int, int]:
        """Make the pairs the org implies and switch off those it no longer does: (added, switched off)."""
        async with self.db.sessions() as session, session.begin():
            links = {(x.manager_id, x.report_id): x for x in await one_on_one_pairs.org_links(session)}
            existing = {(p.manager_id, p.report_id): p for p in await one_on_one_pairs.all_pairs(session)}
            by_dept = self.config.every_days_by_department
            new = [
                {
                    "manager_id": m,
                    "report_id": r,
                    "every_days": by_dept.get(link.department, self.config.every_days),
                    "lead_hours": self.config.lead_hours,
                    "created_at": now,
                }
                for (m, r), link in links.items()
                if (m, r) not in existing
            ]
            off = [p.id for key, p in existing.items() if p.active and key not in links]
            on = [p.id for key, p in existing.items() if not p.active and key in links]
            await one_on_one_pairs.add_pairs(session, rows=new)
            await one_on_one_pairs.set_active(session, pair_ids=off, active=False)
            await one_on_one_pairs.set_active(session, pair_ids=on, active=True)
        if new or off or on:
            log.info("1:1 pairs: %d new, %d switched off, %d switched back on", len(new), len(off), len(on))
        return len(new) + len(on), len(off)

    def place_on(self, manager: PersonRow, report: PersonRow, day: date, at: time) -> datetime:
        """The first moment from ``day`` at ``at`` (manager's local time) the pair may meet: the manager's
        workday out of leave and quiet hours, not while the report is away."""
        when = datetime.min.replace(tzinfo=UTC)
        for _ in range(8):  # each turn only moves forward; a few are plenty
            try:
                start = local_to_utc(datetime.combine(day, at), manager.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                start = local_to_utc(datetime.combine(day, at), FALLBACK_TZ)
            when = self.timing.allowed_from(manager, start, workdays=True)
            away = report.away_until
            if away is None or when.astimezone(_zone(report.timezone)).date() > away:
                return when
            day = away + timedelta(days=1)
        return when

    async def place(self, now: datetime) -> int:
        """Give pairs without a next meeting one; returns how many were placed."""
        placed = 0
        async with self.db.sessions() as session, session.begin():
            todo = await one_on_one_pairs.unplaced(session, limit=self.config.place_batch)
            if not todo:
                return 0
            siblings: dict[int, list[int]] = {}
            for pair in await one_on_one_pairs.pairs_of_managers(
                session, manager_ids=[p.manager_id for p in todo]
            ):
                siblings.setdefault(pair.manager_id, []).append(pair.report_id)
            who = await self._people(session, todo)
            for pair in todo:
                manager, report = who.get(pair.manager_id), who.get(pair.report_id)
                if manager is None or report is None:
                    continue
                reports = siblings.get(pair.manager_id, [])
                position = reports.index(pair.report_id) if pair.report_id in reports else 0
                day = self._first_day(manager, now, position % max(1, pair.every_days))
                when = self.place_on(manager, report, day, self.config.at)
                placed += await one_on_one_pairs.move_next(
                    session, pair_id=pair.id, expected=None, next_at=when
                )
        return placed

    def _first_day(self, manager: PersonRow, now: datetime, offset: int) -> date:
        """The ``offset``-th workday of the manager's after today (0: the next one): a manager's reports
        are spread over the days of the cadence, not all on one morning."""
        calendar = self.timing.calendar(manager.country)
        day = now.astimezone(_zone(manager.timezone)).date() + timedelta(days=1)
        for _ in range(400):
            if calendar.is_workday(day):
                if offset == 0:
                    return day
                offset -= 1
            day += timedelta(days=1)
        return day

    async def advance(self, now: datetime) -> int:
        """Move meetings whose time has passed on by their cadence (same local time); returns how many."""
        moved = 0
        async with self.db.sessions() as session, session.begin():
            due = await one_on_one_pairs.passed(session, now=now, limit=self.config.place_batch)
            who = await self._people(session, due)
            for pair in due:
                manager, report = who.get(pair.manager_id), who.get(pair.report_id)
                if manager is None or report is None or pair.next_at is None:
                    continue
                local = pair.next_at.astimezone(_zone(manager.timezone))
                day, at, when = local.date(), local.time().replace(tzinfo=None), pair.next_at
                for _ in range(1000):  # after a long downtime, past meetings are skipped, not held
                    if when > now:
                        break
                    day += timedelta(days=pair.every_days)
                    when = self.place_on(manager, report, day, at)
                moved += await one_on_one_pairs.move_next(
                    session, pair_id=pair.id, expected=pair.next_at, next_at=when
                )
        return moved

    async def _people(self, session: AsyncSession, pairs: Sequence[PairRow]) -> dict[int, PersonRow]:
        ids = {p.manager_id for p in pairs} | {p.report_id for p in pairs}
        found = await people.by_ids(session, person_ids=sorted(ids))
        return {p.id: p for p in found if p.active}

    # ---- agendas ------------------------------------------------------------------------------

    async def send_due(self, now: datetime) -> int:
        """Make and queue the agendas whose time has come; returns how many were queued."""
        async with self.db.sessions() as session:
            ahead = await one_on_one_pairs.agendas_due(
                session, now=now, until=now + MAX_LEAD, limit=self.config.batch * 5
            )
            due = [
                p for p in ahead if p.next_at is not None and p.next_at - timedelta(hours=p.lead_hours) <= now
            ]
            due = due[: self.config.batch]
            who = await self._people(session, due)
            made: list[_Made] = []
            for pair in due:
                manager, report = who.get(pair.manager_id), who.get(pair.report_id)
                if manager is None or report is None:
                    continue
                prepared = await prepare(
                    session,
                    person=report,
                    manager=manager,
                    now=now,
                    sources=self.sources,
                    settings=self.config.agenda,
                    meeting_at=pair.next_at,
                    period_days=pair.every_days,
                )
                if prepared is not None:
                    made.append(_Made(pair, manager, prepared))
        if not made:
            return 0
        limit = asyncio.Semaphore(self.config.rewrite_concurrency)
        worded = await asyncio.gather(*(self._worded(m, limit) for m in made))
        sent = 0
        for item, texts in zip(made, worded, strict=True):
            sent += await self._queue(item, texts, self._card(item, texts), now)
        return sent

    async def _worded(self, item: _Made, limit: asyncio.Semaphore) -> list[TopicText]:
        texts = item.prepared.texts(item.manager.locale)
        if self.rewriter is None:
            return texts
        async with limit:
            try:
                return await self.rewriter.rewrite(texts, item.manager.locale)
            except Exception:  # a rewrite is a nicety: the rule topics go out instead, and it is logged
                log.exception(
                    "rewording the topics of 1:1 pair %s failed; sending the rule topics", item.pair.id
                )
                return texts

    @staticmethod
    def _card(item: _Made, texts: Sequence[TopicText]) -> Message:
        return item.prepared.card(texts, reader=item.manager)

    async def _queue(self, item: _Made, texts: Sequence[TopicText], message: Message, now: datetime) -> int:
        pair, manager = item.pair, item.manager
        assert pair.next_at is not None
        # the agenda waits for the manager's quiet hours to end, unless that would be after the meeting
        due_at = self.timing.allowed_from(manager, now, workdays=False)
        if due_at >= pair.next_at:
            due_at = now
        record = item.prepared.record(texts, locale=manager.locale)
        async with self.db.sessions() as session, session.begin():
            claimed = await one_on_one_pairs.claim_agenda(
                session, pair=pair, scheduled_at=pair.next_at, agenda=record, now=now
            )
            if claimed is None:
                return 0  # another run or process sent it
            out = Outgoing(manager.id, meeting_key(pair.id, pair.next_at), message, kind=KIND, due_at=due_at)
            await outbox.enqueue(session, rows=outbox_rows([out], platform=self.platform))
            # the card shows the report's record to the manager: a read like `agenda @name`'s
            await audit.write(
                session,
                actor_id=manager.id,
                action="record.read",
                subject_id=pair.report_id,
                detail={"via": "agenda_card", "meeting": claimed},
            )
        return 1
