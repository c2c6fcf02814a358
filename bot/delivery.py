"""Outbound path: claim due outbox rows, send them through their platform, record the result.

A row is claimed by moving it to ``sending`` with a lease; a process that dies mid-send leaves the
lease to run out and the row is sent again (the platform's idempotency key, where it has one, makes
that harmless). Rows tied to a conversation state that moved on are dropped as obsolete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.health import Metrics
from bot.platforms.base import Platform, SendError
from bot.rate_limits import RateLimiter
from conversations.messages import Message
from storage import outbox, people
from storage.clock import utcnow
from storage.engine import Database
from storage.outbox import OutboxRow

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)
# failures before a row is given up on (about 17 minutes of backoff); a 429 is the platform saying
# "later", not a failure, so rate-limited attempts may go on much longer
MAX_ATTEMPTS = 8
MAX_RATE_LIMITED_ATTEMPTS = 100
# a wait for a recipient's pace shorter than this is slept through; a longer one frees the sender
PACE_SLACK = 0.05


def _pace_key(row: OutboxRow) -> str:
    """Whom a row goes to, as the per-recipient pace and the send queues count them."""
    return row.recipient or f"person:{row.person_id}"


class LeaseLostError(RuntimeError):
    """Another sender claimed the row after this one's lease ran out: this one must not send it."""


def backoff(attempt: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter, in seconds."""
    return random.uniform(0, min(cap, base * 2**attempt))


class Delivery:
    """Drains the outbox to the platforms; every process runs one."""

    def __init__(
        self,
        db: Database,
        platforms: dict[str, Platform],
        *,
        limiter: RateLimiter | None = None,
        concurrency: int = 4,
        metrics: Metrics | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self.db, self.platforms = db, platforms
        self.lease = lease
        self.metrics = metrics or Metrics()
        self.limiter = limiter or RateLimiter(per_platform={}, per_recipient={})
        self._slots = asyncio.Semaphore(concurrency)
        self._kick = asyncio.Event()

    def kick(self) -> None:
        """Something was queued: look now instead of at the next tick."""
        self._kick.set()

    def _recipient_wait(self, row: OutboxRow) -> float:
        if row.payload.get("replaces"):
            return 0.0  # an edit of an earlier message is not a new message in the conversation
        return self.limiter.recipient_wait(row.platform, _pace_key(row))

    def _wake_at(self, moment: datetime) -> None:
        """Look again at ``moment`` (rows given back for a recipient's pace come due then)."""
        delay = max(0.0, (moment - utcnow()).total_seconds())
        asyncio.get_running_loop().call_later(delay, self._kick.set)

    async def _claim(self, limit: int, lease_until: datetime) -> list[OutboxRow]:
        async with self.db.sessions() as session, session.begin():
            claimed = await outbox.claim_due(
                session, platforms=list(self.platforms), limit=limit, lease_until=lease_until
            )
            stale = await outbox.obsolete_ids(session, rows=claimed)
            for row in claimed:
                if row.id in stale:
                    await outbox.mark(session, outbox_id=row.id, status="obsolete")
                    self.metrics.sent(row.platform, "obsolete")
        return [r for r in claimed if r.id not in stale]

    async def drain_once(self, *, limit: int = 100) -> int:
        """Send what is due now; returns how many rows were handled."""
        lease_until = utcnow() + self.lease
        rows = await self._claim(limit, lease_until)
        # one queue per recipient, in the order the rows were written (a "saved" edit before the
        # next question); different recipients are sent to side by side
        queues: dict[tuple[str, str], list[OutboxRow]] = defaultdict(list)
        for row in rows:
            queues[(row.platform, _pace_key(row))].append(row)
        await asyncio.gather(*(self._send_in_order(queue, lease_until) for queue in queues.values()))
        return len(rows)

    async def _send_in_order(self, queue: list[OutboxRow], lease_until: datetime) -> None:
        async with self._slots:
            for n, row in enumerate(queue):
                wait = self._recipient_wait(row) if n else 0.0
                if wait > PACE_SLACK:
                    # this person's next message must wait (Slack: one a second per conversation):
                    # give the rest back for later and free the sender for other people meanwhile
                    later = utcnow() + timedelta(seconds=wait)
                    async with self.db.sessions() as session, session.begin():
                        rest = [r.id for r in queue[n:]]
                        await outbox.release(session, ids=rest, due_at=later, lease_until=lease_until)
                    self._wake_at(later)
                    return
                try:
                    retry_at = await self._deliver(row, lease_until)
                except LeaseLostError:
                    # another process owns this person's messages now; it sends the rest, in order
                    log.warning("outbox row %s was taken over by another sender before it was sent", row.id)
                    return
                if retry_at is not None:
                    # the rest wait behind it, so the person still reads things in order
                    rest = [r.id for r in queue[n + 1 :]]
                    async with self.db.sessions() as session, session.begin():
                        await outbox.release(session, ids=rest, due_at=retry_at, lease_until=lease_until)
                    return

    async def drain(self) -> int:
        """Send until nothing is due (the console and tests use this after each event)."""
        total = 0
        while n := await self.drain_once():
            total += n
        return total

    async def _deliver(self, row: OutboxRow, lease_until: datetime) -> datetime | None:
        """Send one row; returns when to try again if it is to be retried.

        No database session is open while the platform is being waited on.
        """
        try:
            message = Message.model_validate(row.payload)
        except ValidationError as exc:  # e.g. a row written by an older version: never sendable
            await self._record(row, lease_until, status="dead", error=f"unreadable message: {exc}")
            return None
        async with self.db.sessions() as session:
            recipient, email = await self._recipient(session, row)
            earlier = None
            if message.replaces:
                earlier = await outbox.platform_message_id(session, idempotency_key=message.replaces)
        if recipient is None and email is not None and row.person_id is not None:
            try:
                recipient = await self._learn_identity(row.platform, row.person_id, email)
            except SendError as exc:
                return await self._failed(row, lease_until, exc, exc.retry_after, exc.permanent)
        if recipient is None:
            await self._record(row, lease_until, status="dead", error="no identity on this platform")
            return None
        platform = self.platforms[row.platform]
        if row.in_doubt and not earlier:
            # sent before, but whether it arrived is unknown: ask instead of risking a duplicate
            try:
                found = await platform.find_sent(recipient, row.idempotency_key)
            except SendError as exc:
                return await self._failed(row, lease_until, exc, exc.retry_after, exc.permanent)
            if found is not None:
                await self._record(
                    row, lease_until, status="sent", platform_message_id=found, outcome="found"
                )
                return None
        await self.limiter.acquire(row.platform, _pace_key(row), new_message=not earlier)
        lease_until = await self._hold(row, lease_until)
        try:
            if earlier:
                await platform.update(recipient, earlier, message, key=row.idempotency_key)
                message_id = earlier
            else:
                message_id = await platform.send(recipient, message, key=row.idempotency_key)
        except SendError as exc:
            if exc.retry_after is not None:
                self.limiter.pause(row.platform, exc.retry_after)
            return await self._failed(
                row, lease_until, exc, exc.retry_after, exc.permanent, in_doubt=exc.in_doubt
            )
        except Exception as exc:  # a bug or a network fault: retried, and recorded on the row
            log.exception("sending outbox row %s failed", row.id)
            # it is unknown how far the send got: check before the next attempt
            return await self._failed(row, lease_until, exc, None, False, in_doubt=True)
        await self._record(row, lease_until, status="sent", platform_message_id=message_id)
        return None

    async def _hold(self, row: OutboxRow, lease_until: datetime) -> datetime:
        """Make sure the claim outlasts the send about to start; returns the lease to record under.

        A batch's later rows can wait a long time (behind the rate limiter, a Retry-After pause, a
        person's earlier messages). Once less than half the lease is left, it is renewed; if another
        process took the row over meanwhile, this one must not send it too.
        """
        if lease_until - utcnow() > self.lease / 2:
            return lease_until
        renewed = utcnow() + self.lease
        async with self.db.sessions() as session, session.begin():
            if not await outbox.renew(session, outbox_id=row.id, lease_until=lease_until, until=renewed):
                raise LeaseLostError(row.id)
        return renewed

    async def _recipient(self, session: AsyncSession, row: OutboxRow) -> tuple[str | None, str | None]:
        """The platform's id for the recipient if known; else the email to look them up by."""
        if row.recipient is not None or row.person_id is None:
            return row.recipient, None
        found = await people.external_id(session, person_id=row.person_id, platform=row.platform)
        if found is not None:
            return found, None
        person = await people.by_id(session, person_id=row.person_id)
        if person is None:
            return None, None
        if row.platform == "console":
            return person.email, None
        return None, person.email

    async def _learn_identity(self, platform: str, person_id: int, email: str) -> str | None:
        """Ask the platform who has this email (Slack's users.lookupByEmail), and remember it."""
        found = await self.platforms[platform].lookup(email)
        if found is not None:
            async with self.db.sessions() as session, session.begin():
                await people.remember_identity(
                    session, person_id=person_id, platform=platform, external_id=found
                )
        return found

    async def _record(
        self, row: OutboxRow, lease_until: datetime, *, outcome: str | None = None, **result: Any
    ) -> None:
        status = result["status"]
        self.metrics.sent(row.platform, outcome or {"pending": "retry"}.get(status, status))
        async with self.db.sessions() as session, session.begin():
            if not await outbox.mark(session, outbox_id=row.id, lease_until=lease_until, **result):
                log.warning(
                    "outbox row %s was taken over by another sender before its result was recorded", row.id
                )

    async def _failed(
        self,
        row: OutboxRow,
        lease_until: datetime,
        exc: Exception,
        retry_after: float | None,
        permanent: bool,
        *,
        in_doubt: bool = False,
    ) -> datetime | None:
        limit = MAX_RATE_LIMITED_ATTEMPTS if retry_after is not None else MAX_ATTEMPTS
        if permanent or row.attempts + 1 >= limit:
            await self._record(row, lease_until, status="dead", error=str(exc), in_doubt=in_doubt)
            return None
        delay = retry_after if retry_after is not None else backoff(row.attempts)
        retry_at = utcnow() + timedelta(seconds=delay)
        await self._record(
            row, lease_until, status="pending", error=str(exc), retry_at=retry_at, in_doubt=in_doubt
        )
        return retry_at

    async def run(self, stop: asyncio.Event, *, tick: float = 1.0) -> None:
        """Deliver until ``stop`` is set, waking on a kick or every ``tick`` seconds."""
        while not stop.is_set():
            try:
                await self.drain()
            except Exception:
                log.exception("delivery pass failed; trying again")
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=tick)
