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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.platforms.base import IncomingEvent
from storage import journal, outbox

if TYPE_CHECKING:
    from bot.router import Router

log = logging.getLogger(__name__)
Acknowledge = Callable[[], Awaitable[None]]


@dataclass
class _Waiting:
    event: IncomingEvent
    payload: dict[str, Any]
    done: asyncio.Future[bool]
    acknowledge: Acknowledge | None
    journal_id: int | None = None


class Intake:
    """Batches concurrent ``Router.receive`` calls; a batch is whatever queued during the last one."""

    def __init__(self, router: Router, *, max_batch: int = 100) -> None:
        self.router, self.max_batch = router, max_batch
        self._queue: deque[_Waiting] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def submit(
        self, event: IncomingEvent, payload: dict[str, Any], acknowledge: Acknowledge | None
    ) -> bool:
        """Journal and process ``event``; False when it is a re-delivery of one already seen."""
        waiting = _Waiting(event, payload, asyncio.get_running_loop().create_future(), acknowledge)
        self._queue.append(waiting)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await waiting.done

    async def _drain(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            try:
                await self._run(batch)
            except BaseException as exc:
                # never leave a caller waiting: the event is journaled or it is not, and they hear which
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _run(self, batch: list[_Waiting]) -> None:
        live = await self._journal(batch)
        for waiting in batch:
            if waiting.acknowledge is not None:
                await waiting.acknowledge()
        if not live:
            return
        try:
            await self._process_together(live)
        except Exception:
            log.info(
                "a batch of %d events failed together; processing them one by one", len(live), exc_info=True
            )
            for waiting in live:
                assert waiting.journal_id is not None
                await self.router.process(waiting.journal_id, IncomingEvent.from_payload(waiting.payload))
        for waiting in live:
            waiting.done.set_result(True)

    async def _journal(self, batch: list[_Waiting]) -> list[_Waiting]:
        rows = [(w.event.platform, w.event.event_id, w.payload) for w in batch]
        async with self.router.db.sessions() as session, session.begin():
            ids = await journal.record_many(session, rows=rows)
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

    async def _process_together(self, live: list[_Waiting]) -> None:
        async with self.router.db.sessions() as session, session.begin():
            claimed = await journal.claim_many(
                session, journal_ids=[w.journal_id for w in live if w.journal_id]
            )
            rows = []
            for waiting in live:
                if waiting.journal_id not in claimed:
                    continue  # another process got to it first
                event = IncomingEvent.from_payload(waiting.payload)
                out = await self.router.handle(session, waiting.journal_id or 0, event)
                rows.extend(self.router.outbox_rows(out, platform=event.platform))
            await outbox.enqueue(session, rows=rows)
