"""Task-source syncs on the scheduler: each source every ``interval``, on the leader only.

When a source is due comes from the stored runs (the newest run's start), so a restart or a new
leader keeps the rhythm instead of syncing everything at once on start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.base import Connector
from connectors.sync import RunReport, SourceSync, SyncOptions
from storage import sync_state
from storage.clock import utcnow
from storage.engine import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduledSource:
    connector: Connector
    interval: timedelta


class SyncJobs:
    """Runs the sources that are due; a failing source is logged and tried again at its next turn."""

    def __init__(
        self,
        database: Database,
        sources: Mapping[str, ScheduledSource],
        *,
        options: SyncOptions | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.sources = dict(sources)
        self.options = options or SyncOptions()
        self.now = now

    async def next_runs(self) -> dict[str, datetime]:
        """When each source runs next (now, for one that never ran)."""
        async with self.db.sessions() as session:
            last = {source: await sync_state.last_started(session, source=source) for source in self.sources}
        now = self.now()
        return {
            source: (started + self.sources[source].interval) if started is not None else now
            for source, started in last.items()
        }

    async def run_due(self) -> list[RunReport]:
        due = [source for source, at in (await self.next_runs()).items() if at <= self.now()]
        reports = []
        for source in due:
            scheduled = self.sources[source]
            report = await SourceSync(self.db, scheduled.connector, self.options, now=self.now).run()
            log.info(
                "sync %s: %s, %d read, %d changed, %d deleted, %d requests",
                source,
                report.status,
                report.items_read,
                report.items_changed,
                report.items_deleted,
                report.requests,
            )
            reports.append(report)
        return reports

    async def close(self) -> None:
        for scheduled in self.sources.values():
            await scheduled.connector.close()
