"""APScheduler wiring: the leader's planning tick and every process's leadership check.

APScheduler 3.x provides the timing (interval triggers on the asyncio loop, one run at a time,
missed runs coalesced); what runs is plain async code that tests call directly with a chosen clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler.leader import Leadership
from scheduler.one_on_ones import OneOnOnes
from scheduler.planner import Planned, Planner
from scheduler.reminders import Reminders
from scheduler.starter import Starter
from scheduler.sync_jobs import SyncJobs
from storage.clock import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickResult:
    """What one planning tick did (empty on a follower)."""

    leader: bool
    planned: tuple[Planned, ...] = ()
    started: int = 0
    nudged: int = 0
    digests: int = 0
    agendas: int = 0


class SchedulerService:
    """The planner, starter and reminders, run by whichever process leads."""

    def __init__(
        self,
        *,
        leadership: Leadership,
        planner: Planner,
        starter: Starter,
        reminders: Reminders,
        tick_seconds: float,
        on_queued: Callable[[], None] = lambda: None,
        sync: SyncJobs | None = None,
        sync_check_seconds: float = 60.0,
        one_on_ones: OneOnOnes | None = None,
        quality_sampling: Callable[[datetime], Awaitable[object]] | None = None,
    ) -> None:
        self.leadership, self.planner, self.starter, self.reminders = leadership, planner, starter, reminders
        self.tick_seconds = tick_seconds
        self.sync, self.sync_check_seconds = sync, sync_check_seconds
        self.on_queued = on_queued  # delivery's kick: new outbox rows are there now
        self.one_on_ones = one_on_ones  # 1:1 pairs and their agendas (None: not switched on)
        self.quality_sampling = quality_sampling  # HR's monthly draw of 1:1 records to score
        self._scheduler: AsyncIOScheduler | None = None

    async def tick(self, now: datetime | None = None) -> TickResult:
        """Plan, start due conversations, send due reminders and 1:1 agendas, if this process leads."""
        if not self.leadership.is_leader:
            return TickResult(leader=False)
        now = now or utcnow()
        planned = await self.planner.plan(now)
        started = await self.starter.start_due(now)
        nudged, digests = await self.reminders.run(now)
        agendas = await self._agendas(now)
        sampled = await self._quality(now)
        if started or nudged or digests or agendas or sampled:
            self.on_queued()
        return TickResult(True, tuple(planned), started, nudged, digests, agendas)

    async def _agendas(self, now: datetime) -> int:
        if self.one_on_ones is None:
            return 0
        try:
            return await self.one_on_ones.run(now)
        except Exception:  # a bug in agendas must not keep the prompts above from being delivered
            log.exception("1:1 agendas failed")
            return 0

    async def _quality(self, now: datetime) -> bool:
        if self.quality_sampling is None:
            return False
        try:  # cheap when nothing is due: one look-up once the month is drawn
            return await self.quality_sampling(now) is not None
        except Exception:
            log.exception("monthly quality sample failed")
            return False

    async def _check_then_tick(self) -> None:
        was_leader = self.leadership.is_leader
        if await self.leadership.check() and not was_leader:
            # a new leader catches up at once instead of waiting for the next tick
            await self._safe_tick()

    async def _safe_tick(self) -> None:
        try:
            await self.tick()
        except Exception:  # the next tick tries again; a planner bug must not stop delivery
            log.exception("scheduler tick failed")

    async def sync_due(self) -> int:
        """Run the task-source syncs that are due, if this process leads; returns how many ran."""
        if self.sync is None or not self.leadership.is_leader:
            return 0
        return len(await self.sync.run_due())

    async def _safe_sync(self) -> None:
        try:
            await self.sync_due()
        except Exception:  # each source records its own failures; this is a bug: log, try next time
            log.exception("task-source sync failed")

    def start(self) -> None:
        """Start the jobs on the running asyncio loop: a leadership check, then the planning tick."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        first = datetime.now(UTC)
        scheduler.add_job(
            self._check_then_tick,
            IntervalTrigger(seconds=self.leadership.check_every),
            next_run_time=first,
            max_instances=1,
            coalesce=True,
            id="leadership",
        )
        scheduler.add_job(
            self._safe_tick,
            IntervalTrigger(seconds=self.tick_seconds),
            max_instances=1,
            coalesce=True,
            id="plan",
        )
        if self.sync is not None:
            # its own job: a sync takes minutes and must not hold up planning and reminders
            scheduler.add_job(
                self._safe_sync,
                IntervalTrigger(seconds=self.sync_check_seconds),
                max_instances=1,
                coalesce=True,
                id="sync",
            )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        """Stop the jobs and give up leadership."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await self.leadership.close()
