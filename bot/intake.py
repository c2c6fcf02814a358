"""Group commit for inbound events: many events, one journal transaction and one processing one.

Under load, messages arrive faster than one transaction per message can commit. Events that wait
while a batch is being handled form the next batch: one INSERT journals them all (the platform can
be acknowledged right after it commits), then one transaction claims, processes and queues the
replies of all of them. If that transaction fails, it is rolled back whole and each event is
processed on its own, so one bad event costs its neighbours only time, never their answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.platforms.base import IncomingEvent
from storage import assignments, journal, outbox, people
from storage.assignments import ConversationRow
from storage.clock import utcnow
from storage.people import PersonRow

if TYPE_CHECKING:
    from bot.router import Router

log = logging.getLogger(__name__)
Acknowledge = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Known:
    """An event's person and their conversation in progress, read ahead for a batch."""

    person: PersonRow | None
    conv: ConversationRow | None


@dataclass
class _Waiting:
    event: IncomingEvent
    payload: dict[str, Any]
    done: asyncio.Future[bool]
    acknowledge: Acknowledge | None
    arrived: datetime  # when this process got it: a mark made later is the platform's newer word
    journal_id: int | None = None


class Intake:
    """Batches concurrent ``Router.receive`` calls in two stages that overlap.

    Stage one journals whatever queued while it last ran, and acknowledges it; stage two processes
    whatever stage one has journaled. On PostgreSQL the stages use two connections, so the next
    batch is journaled while the last one is processed; on SQLite they take turns.
    """

    def __init__(self, router: Router, *, max_batch: int = 100) -> None:
        self.router, self.max_batch = router, max_batch
        self._arrived: deque[_Waiting] = deque()
        self._journaled: deque[_Waiting] = deque()
        self._journal_task: asyncio.Task[None] | None = None
        self._process_task: asyncio.Task[None] | None = None

    async def submit(
        self, event: IncomingEvent, payload: dict[str, Any], acknowledge: Acknowledge | None
    ) -> bool:
        """Journal and process ``event``; False when it is a re-delivery of one already seen."""
        future = asyncio.get_running_loop().create_future()
        waiting = _Waiting(event, payload, future, acknowledge, utcnow())
        self._arrived.append(waiting)
        if self._journal_task is None or self._journal_task.done():
            self._journal_task = asyncio.create_task(self._stage(self._arrived, self._journal_stage))
        return await waiting.done

    def _take(self, queue: deque[_Waiting]) -> list[_Waiting]:
        return [queue.popleft() for _ in range(min(len(queue), self.max_batch))]

    async def _stage(self, queue: deque[_Waiting], work: Callable[[list[_Waiting]], Awaitable[None]]) -> None:
        while queue:
            batch = self._take(queue)
            try:
                await work(batch)
            except BaseException as exc:
                # never leave a caller waiting: they hear what went wrong
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _journal_stage(self, batch: list[_Waiting]) -> None:
        live = await self._journal(batch)
        journaled = [w for w in batch if not (w.done.done() and w.done.exception() is not None)]
        acks = [w.acknowledge() for w in journaled if w.acknowledge is not None]
        # a failed acknowledgement is the platform's to retry (a re-delivery is a no-op): the events
        # are journaled, so they are processed regardless
        for failure in await asyncio.gather(*acks, return_exceptions=True):
            if isinstance(failure, Exception):
                log.warning("acknowledging an event failed: %s", failure)
        self._journaled.extend(live)
        if live and (self._process_task is None or self._process_task.done()):
            self._process_task = asyncio.create_task(self._stage(self._journaled, self._process_stage))

    async def _process_stage(self, live: list[_Waiting]) -> None:
        try:
            await self._process_together(live)
        except Exception:
            log.info(
                "a batch of %d events failed together; processing them one by one", len(live), exc_info=True
            )
            for waiting in live:
                assert waiting.journal_id is not None
                event = IncomingEvent.from_payload(waiting.payload)
                await self.router.process(waiting.journal_id, event, arrived=waiting.arrived)
        for waiting in live:
            waiting.done.set_result(True)

    async def _journal(self, batch: list[_Waiting]) -> list[_Waiting]:
        try:
            ids = await self._record(batch)
        except Exception:
            if len(batch) == 1:
                raise  # the caller (the platform adapter) hears it, and the platform re-delivers
            # one event the database refuses must not cost the others theirs: each on its own
            log.warning("journaling a batch of %d failed; journaling one by one", len(batch), exc_info=True)
            for waiting in batch:
                await self._stage_one(waiting)
            return []
        live = []
        for waiting in batch:
            # the same event twice in one batch: the first takes the id, the second is a re-delivery
            waiting.journal_id = ids.pop((waiting.event.platform, waiting.event.event_id), None)
            if waiting.journal_id is None:
                log.info("re-delivery of %s event %s ignored", waiting.event.platform, waiting.event.event_id)
                waiting.done.set_result(False)
            else:
                live.append(waiting)
        return live

    async def _record(self, batch: list[_Waiting]) -> dict[tuple[str, str], int]:
        rows = [(w.event.platform, w.event.event_id, w.payload) for w in batch]
        async with self.router.db.sessions() as session, session.begin():
            return await journal.record_many(session, rows=rows)

    async def _stage_one(self, waiting: _Waiting) -> None:
        """Journal and process one event by itself; its failure is its own."""
        try:
            live = await self._journal([waiting])
            if live:
                await self._process_stage(live)
        except Exception as exc:
            waiting.done.set_exception(exc)

    async def _process_together(self, live: list[_Waiting]) -> None:
        async with self.router.db.sessions() as session, session.begin():
            claimed = await journal.claim_many(
                session, journal_ids=[w.journal_id for w in live if w.journal_id]
            )
            events = [IncomingEvent.from_payload(w.payload) for w in live]
            known = await self._read_ahead(session, events)
            rows = []
            writers: dict[_User, tuple[IncomingEvent, datetime | None]] = {}
            for waiting, event in zip(live, events, strict=True):
                if waiting.journal_id not in claimed:
                    continue  # another process got to it first
                # what was read ahead holds for a person's first event; their next ones read again
                ahead = known.pop(_user(event), None)
                if ahead is not None and ahead.person is not None:
                    # someone nobody knows has no identity, so no mark: no statement for them
                    writers[_user(event)] = (event, waiting.arrived)
                out = await self.router.handle(session, waiting.journal_id or 0, event, ahead)
                rows.extend(self.router.outbox_rows(out, platform=event.platform))
            await outbox.enqueue(session, rows=rows)
            await clear_marks(session, writers.values())

    async def _read_ahead(self, session: AsyncSession, events: list[IncomingEvent]) -> dict[_User, Known]:
        """Each event's person and conversation in progress, in two queries for the whole batch."""
        found = await people.resolve_many(session, users=[_user(e) for e in events])
        ids = [p.id for p in found.values()]
        convs = await assignments.holding_many(session, person_ids=ids)
        known = {}
        for event in events:
            person = found.get(_user(event))
            known[_user(event)] = Known(person, convs.get(person.id) if person else None)
        return known


async def clear_marks(
    session: AsyncSession, writers: Iterable[tuple[IncomingEvent, datetime | None]]
) -> None:
    """Whoever wrote can be messaged: clear their unreachable marks, in the caller's transaction.

    ``writers``: an event of each person who wrote, and when it arrived (None: not known, as for a
    replay; the mark is cleared whenever it was made). It is one UPDATE per platform and tenant,
    usually one a batch, in the transaction that handles the events anyway; it changes no row unless
    someone was marked, which is rare, so it costs the common case no write. It runs last, so this
    transaction takes identity rows after outbox rows, in the order delivery does (no deadlock).
    """
    by_platform: dict[tuple[str, str], list[tuple[str, datetime | None]]] = {}
    for event, arrived in writers:
        by_platform.setdefault((event.platform, event.tenant), []).append((event.user_id, arrived))
    for (platform, tenant), found in by_platform.items():
        user_ids = [user_id for user_id, _ in found]
        times = [arrived for _, arrived in found if arrived is not None]
        # a mark made after the earliest of these events arrived may be the platform's newer word
        # (another process's failed send): it stays, and their next event or a message that
        # reaches them clears it
        earliest = min(times) if len(times) == len(found) else None
        cleared = await people.clear_unreachable(
            session, platform=platform, tenant=tenant, external_ids=user_ids, marked_before=earliest
        )
        if cleared:
            log.info(
                "%s%s: %d of these users who wrote had been marked unreachable and are reachable again: %s",
                platform,
                f" ({tenant})" if tenant else "",
                cleared,
                ", ".join(sorted(set(user_ids))),
            )


_User = tuple[str, str, str, str]


def _user(event: IncomingEvent) -> _User:
    """Who sent an event: platform, tenant, platform user id and email (as the platform gave it)."""
    return (event.platform, event.tenant, event.user_id, (event.email or "").strip().lower())
