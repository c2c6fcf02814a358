"""Starts planned conversations when their moment comes: the first prompt goes to the outbox.

A planned assignment waits (``pending`` with ``starts_at``) until its person's local fire time. The
leader starts the due ones in batches, each batch one transaction with its outbox rows, so a crash
leaves each person either started with their prompt queued or not started at all.
"""

from __future__ import annotations

import logging
from datetime import datetime

from conversations.engine import Engine
from conversations.outgoing import outbox_rows
from conversations.timing import Timing
from storage import outbox, people, scheduling
from storage.engine import Database

log = logging.getLogger(__name__)


class Starter:
    """Turns due planned assignments into first prompts."""

    def __init__(
        self, db: Database, engine: Engine, timing: Timing, *, platform: str, batch: int = 1000
    ) -> None:
        self.db, self.engine, self.timing = db, engine, timing
        self.platform, self.batch = platform, batch

    async def start_due(self, now: datetime) -> int:
        """Start everything due at ``now``; returns how many conversations started."""
        started = 0
        stuck: set[int] = set()  # due but nothing started (a race with their own reply): not retried now
        while True:
            async with self.db.sessions() as session, session.begin():
                due = await scheduling.due_starts(session, now=now, limit=self.batch + len(stuck))
                person_ids = [p for p in due if p not in stuck][: self.batch]
                if not person_ids:
                    return started
                ready = []
                for person in await people.by_ids(session, person_ids=person_ids):
                    # the plan was made earlier: leave may have been taken since, or the process
                    # was down until the evening
                    allowed = self.timing.allowed_from(person, now, workdays=False)
                    if allowed > now:
                        await scheduling.postpone_starts(session, person_id=person.id, now=now, until=allowed)
                    else:
                        ready.append(person)
                out, opened = await self.engine.open_many(
                    session, people=ready, key_prefix=f"start:{now:%Y%m%d%H%M%S}"
                )
                started += len(opened)
                # due but not started (a race with their own reply): not tried again in this pass
                stuck.update(p.id for p in ready if p.id not in opened)
                await outbox.enqueue(session, rows=outbox_rows(out, platform=self.platform))
