"""Outbound path: claim due outbox rows, send them through their platform, record the result.

A row is claimed by moving it to ``sending`` with a lease; a process that dies mid-send leaves the
lease to run out and the row is sent again (the platform's idempotency key, where it has one, makes
that harmless). Rows tied to a conversation state that moved on are dropped as obsolete.

Per claimed batch, not per message: the recipients' platform ids are read with the claim, and the
"sent" results (nearly all of them) are written together (see ``Delivery.flush``).

A failure is stored with a short reason code (``SendError.reason_code``) that HR reads, put in words,
on the cycle status. A platform that says its user cannot be messaged (``SendError(unreachable=True)``)
gets the row given up and the person's identity on it marked unreachable; the next message that
reaches them clears the mark. A platform that says the app's API quota is used up
(``SendError(reason="quota", retry_after=...)``) refuses everyone alike: nothing more is claimed for
it or sent to it from this process until then (one refused call per process, not a loop).
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
# "sent" results are written in batches: when this many wait, or this long after the first of them,
# and at the end of every pass (drain_once). A crash loses at most these: such a row is still
# "sending", comes due again when its lease runs out, marked in doubt, and the next sender asks the
# platform (Platform.find_sent) before sending it again, as for a sender that died mid-send.
FLUSH_ROWS = 100
FLUSH_SECONDS = 0.05
# the platform ids of the claimed rows' people, by (platform, person id), read with the claim
Known = dict[tuple[str, int], str]
# a platform user, as (platform, platform id)
PlatformUser = tuple[str, str]


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
        # "sent" results not yet written (see flush), and their message ids by outbox key, for an
        # edit of one of them that comes before they are written
        self._sent: list[tuple[outbox.SentMark, str]] = []
        self._unrecorded: dict[str, str | None] = {}
        self._flushing = asyncio.Lock()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        # platform users marked unreachable, as the claims read them (and as this process marked
        # them): a message that reaches one of them clears its mark, with the "sent" results
        self._unreachable: set[PlatformUser] = set()
        self._reached: list[tuple[PlatformUser, datetime]] = []
        # platforms whose API quota for the app is used up, until when (see _failed)
        self._quota_until: dict[str, datetime] = {}

    def kick(self) -> None:
        """Something was queued: look now instead of at the next tick."""
        self._kick.set()

    def _recipient_wait(self, row: OutboxRow) -> float:
        # an edit of an earlier message is not a new message in the conversation: no spacing, but it
        # still waits out a 429 the recipient earned
        new_message = not row.payload.get("replaces")
        recipient = self.limiter.recipient_wait(row.platform, _pace_key(row), new_message=new_message)
        return max(recipient, self._quota_wait(row.platform))

    def _quota_wait(self, platform: str) -> float:
        """Seconds until ``platform``'s API quota is back (0 when it is not known to be used up)."""
        until = self._quota_until.get(platform)
        return max(0.0, (until - utcnow()).total_seconds()) if until is not None else 0.0

    def _wake_at(self, moment: datetime) -> None:
        """Look again at ``moment`` (rows given back for a recipient's pace come due then)."""
        delay = max(0.0, (moment - utcnow()).total_seconds())
        asyncio.get_running_loop().call_later(delay, self._kick.set)

    async def _claim(self, limit: int, lease_until: datetime) -> tuple[list[OutboxRow], Known]:
        """Claim due rows, drop the obsolete ones, and read their people's platform ids, at once."""
        # a platform out of quota is left alone: its due rows stay pending, and say why
        platforms = [p for p in self.platforms if self._quota_wait(p) <= PACE_SLACK]
        if not platforms:
            return [], {}
        async with self.db.sessions() as session, session.begin():
            claimed = await outbox.claim_due(
                session, platforms=platforms, limit=limit, lease_until=lease_until
            )
            stale = await outbox.obsolete_ids(session, rows=claimed)
            for row in claimed:
                if row.id in stale:
                    await outbox.mark(session, outbox_id=row.id, status="obsolete")
                    self.metrics.sent(row.platform, "obsolete")
            rows = [r for r in claimed if r.id not in stale]
            wanted: dict[str, set[int]] = defaultdict(set)
            for row in rows:
                if row.recipient is None and row.person_id is not None:
                    wanted[row.platform].add(row.person_id)
            known: Known = {}
            for platform, person_ids in wanted.items():
                found = await people.platform_ids(session, person_ids=list(person_ids), platform=platform)
                for pid, user in found.items():
                    known[(platform, pid)] = user.external_id
                    if user.unreachable:
                        self._unreachable.add((platform, user.external_id))
                    else:
                        self._unreachable.discard((platform, user.external_id))
        return rows, known

    async def drain_once(self, *, limit: int = 100) -> int:
        """Send what is due now; returns how many rows were handled (their results are written)."""
        lease_until = utcnow() + self.lease
        rows, known = await self._claim(limit, lease_until)
        # one queue per recipient, in the order the rows were written (a "saved" edit before the
        # next question); different recipients are sent to side by side
        queues: dict[tuple[str, str], list[OutboxRow]] = defaultdict(list)
        for row in rows:
            queues[(row.platform, _pace_key(row))].append(row)
        try:
            await asyncio.gather(
                *(self._send_in_order(queue, lease_until, known) for queue in queues.values())
            )
        finally:
            await self.flush()
        return len(rows)

    async def _send_in_order(self, queue: list[OutboxRow], lease_until: datetime, known: Known) -> None:
        async with self._slots:
            for n, row in enumerate(queue):
                # the first row too: its recipient may be paused after a 429, or paced by a send
                # from another pass that has only just gone
                wait = self._recipient_wait(row)
                if wait > PACE_SLACK:
                    # this person's next message must wait (Slack: one a second per conversation; or
                    # the platform's quota is used up): give the rest back for later and free the
                    # sender for other people meanwhile
                    later = utcnow() + timedelta(seconds=wait)
                    async with self.db.sessions() as session, session.begin():
                        rest = [r.id for r in queue[n:]]
                        await outbox.release(session, ids=rest, due_at=later, lease_until=lease_until)
                    self._wake_at(later)
                    return
                try:
                    retry_at = await self._deliver(row, lease_until, known)
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

    async def _deliver(
        self, row: OutboxRow, lease_until: datetime, known: Known | None = None
    ) -> datetime | None:
        """Send one row; returns when to try again if it is to be retried.

        ``known``: platform ids read with the claim; a session is opened only for what is not in
        it. No database session is open while the platform is being waited on.
        """
        known = {} if known is None else known
        try:
            message = Message.model_validate(row.payload)
        except ValidationError as exc:  # e.g. a row written by an older version: never sendable
            await self._record(
                row, lease_until, status="dead", error=f"unreadable message: {exc}", reason="unreadable"
            )
            return None
        recipient, email = row.recipient, None
        if recipient is None and row.person_id is not None:
            recipient = known.get((row.platform, row.person_id))
        replaces = message.replaces
        # an earlier message sent but not yet recorded (see flush) is known here, not in the database
        earlier = self._unrecorded.get(replaces) if replaces else None
        if recipient is None or (replaces and earlier is None):
            async with self.db.sessions() as session:
                if recipient is None:
                    recipient, email = await self._recipient(session, row)
                if replaces and earlier is None:
                    earlier = await outbox.platform_message_id(session, idempotency_key=replaces)
        if recipient is None and email is not None and row.person_id is not None:
            try:
                recipient = await self._learn_identity(row.platform, row.person_id, email)
            except SendError as exc:
                return await self._failed(row, lease_until, exc, exc.retry_after, exc.permanent)
            if recipient is not None:  # the person's later rows in this batch need not ask again
                known[(row.platform, row.person_id)] = recipient
        if recipient is None:
            await self._record(
                row, lease_until, status="dead", error="no identity on this platform", reason="no_identity"
            )
            return None
        platform = self.platforms[row.platform]
        if row.in_doubt and not earlier:
            # sent before, but whether it arrived is unknown: ask instead of risking a duplicate
            asked_at = utcnow()
            try:
                found = await platform.find_sent(recipient, row.idempotency_key)
            except SendError as exc:
                return await self._failed(
                    row, lease_until, exc, exc.retry_after, exc.permanent, recipient=recipient
                )
            if found is not None:
                self._note_reached(row.platform, recipient, asked_at)
                await self._record_sent(row, lease_until, found, outcome="found")
                return None
        await self.limiter.acquire(
            row.platform, _pace_key(row), new_message=not earlier, before_wait=self._before_wait
        )
        lease_until = await self._hold(row, lease_until)
        started = utcnow()
        try:
            if earlier:
                await platform.update(recipient, earlier, message, key=row.idempotency_key)
                message_id = earlier
            else:
                message_id = await platform.send(recipient, message, key=row.idempotency_key)
        except SendError as exc:
            # a used-up quota holds the whole platform back (see _failed), not only this recipient
            if exc.retry_after is not None and exc.reason_code() != "quota":
                self.limiter.rate_limited(row.platform, _pace_key(row), exc.retry_after)
            return await self._failed(
                row,
                lease_until,
                exc,
                exc.retry_after,
                exc.permanent,
                in_doubt=exc.in_doubt,
                recipient=recipient,
            )
        except Exception as exc:  # a bug or a network fault: retried, and recorded on the row
            log.exception("sending outbox row %s failed", row.id)
            # it is unknown how far the send got: check before the next attempt
            return await self._failed(row, lease_until, exc, None, False, in_doubt=True)
        if not earlier:
            self.limiter.sent(row.platform, _pace_key(row))
            # only a new message proves the person reachable: some platforms still let an earlier
            # message be edited after its user stopped the bot
            self._note_reached(row.platform, recipient, started)
        await self._record_sent(row, lease_until, message_id)
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
        self,
        row: OutboxRow,
        lease_until: datetime,
        *,
        outcome: str | None = None,
        unreachable: tuple[str, str] | None = None,
        **result: Any,
    ) -> None:
        """Write one row's result; ``unreachable`` (recipient, the platform's words): mark them too."""
        status = result["status"]
        self.metrics.sent(row.platform, outcome or {"pending": "retry"}.get(status, status))
        async with self.db.sessions() as session, session.begin():
            if not await outbox.mark(session, outbox_id=row.id, lease_until=lease_until, **result):
                log.warning(
                    "outbox row %s was taken over by another sender before its result was recorded", row.id
                )
            if unreachable is not None:
                # marked even if another sender took the row over: what the platform said holds
                recipient, words = unreachable
                await people.mark_unreachable(
                    session, platform=row.platform, external_id=recipient, reason=words
                )
        if unreachable is not None:
            user = (row.platform, unreachable[0])
            self._unreachable.add(user)
            # a message that reached them before this one failed must not clear this mark
            self._reached = [(u, at) for u, at in self._reached if u != user]

    def _note_reached(self, platform: str, recipient: str, started: datetime) -> None:
        """A message sent from ``started`` on reached ``recipient``: clear their mark at the flush."""
        if (platform, recipient) in self._unreachable:
            self._reached.append(((platform, recipient), started))

    async def _record_sent(
        self, row: OutboxRow, lease_until: datetime, message_id: str | None, *, outcome: str = "sent"
    ) -> None:
        """Note a sent row, to be written with others (see ``flush``)."""
        self.metrics.sent(row.platform, outcome)
        self._sent.append((outbox.SentMark(row.id, lease_until, message_id, utcnow()), row.idempotency_key))
        self._unrecorded[row.idempotency_key] = message_id
        if len(self._sent) >= FLUSH_ROWS:
            await self.flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_later)

    async def _before_wait(self, seconds: float) -> None:
        # a sender about to wait for its turn longer than the flush interval (a platform's pace or
        # Retry-After) writes the results noted so far now, rather than leaving them to the timer
        if seconds > FLUSH_SECONDS:
            await self.flush()

    def _flush_later(self) -> None:
        self._flush_timer = None
        task = asyncio.create_task(self.flush())
        self._flushes.add(task)  # a reference, so the task is not collected before it ends
        task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        """Write the "sent" results noted so far, in one transaction.

        Each row is recorded only while this sender's claim still holds; a row another sender took
        over meanwhile is left to it (logged, as in ``_record``). If the write fails, the rows stay
        "sending" until their lease runs out and then come back in doubt: the platform is asked
        before anything is sent again, so nothing is sent twice (logged, not raised).
        """
        async with self._flushing:
            noted, self._sent = self._sent, []
            reached, self._reached = self._reached, []
            if not noted and not reached:
                return
            marks = [mark for mark, _ in noted]
            try:
                async with self.db.sessions() as session, session.begin():
                    recorded = await outbox.mark_sent(session, marks=marks) if marks else set()
                    await self._clear_reached(session, reached)
            except Exception:
                self._reached.extend(reached)  # cleared with the next flush
                log.exception(
                    "recording %d sent outbox rows failed; they are checked with the platform before "
                    "any second send once their lease runs out",
                    len(marks),
                )
                return
            finally:
                for _, key in noted:
                    self._unrecorded.pop(key, None)
            self._unreachable.difference_update(user for user, _ in reached)
            for mark in marks:
                if mark.outbox_id not in recorded:
                    log.warning(
                        "outbox row %s was taken over by another sender before its result was recorded",
                        mark.outbox_id,
                    )

    @staticmethod
    async def _clear_reached(session: AsyncSession, reached: list[tuple[PlatformUser, datetime]]) -> None:
        """Clear the marks of users a message reached, unless marked again since it was sent."""
        by_platform: dict[str, tuple[list[str], datetime]] = {}
        for (platform, recipient), started in reached:
            recipients, earliest = by_platform.get(platform, ([], started))
            by_platform[platform] = ([*recipients, recipient], min(earliest, started))
        for platform, (recipients, earliest) in by_platform.items():
            # a mark newer than the earliest of these sends may come from a later failure (another
            # process's): it stays, and the person's next message clears it if it was wrong
            if await people.clear_unreachable(
                session, platform=platform, external_ids=recipients, marked_before=earliest
            ):
                log.info("users on %s are reachable again: %s", platform, ", ".join(sorted(set(recipients))))

    async def _failed(
        self,
        row: OutboxRow,
        lease_until: datetime,
        exc: Exception,
        retry_after: float | None,
        permanent: bool,
        *,
        in_doubt: bool = False,
        recipient: str | None = None,
    ) -> datetime | None:
        reason = exc.reason_code() if isinstance(exc, SendError) else "failed"
        result: dict[str, Any] = {"error": str(exc), "reason": reason, "in_doubt": in_doubt}
        if reason == "quota" and retry_after is not None:
            # the app's quota refuses every recipient alike: hold the platform back until it is
            # back (set before this row's result is written, so no other sender starts meanwhile)
            until = utcnow() + timedelta(seconds=retry_after)
            if self._quota_wait(row.platform) == 0:  # once per pause, not once per refused row
                log.warning(
                    "%s: the API quota is used up (%s); sending there again at %s", row.platform, exc, until
                )
            self._quota_until[row.platform] = max(until, self._quota_until.get(row.platform, until))
        if isinstance(exc, SendError) and exc.unreachable and recipient is not None:
            log.warning("%s says user %s cannot be messaged: %s", row.platform, recipient, exc)
            result["unreachable"] = (recipient, str(exc) or reason)
        limit = MAX_RATE_LIMITED_ATTEMPTS if retry_after is not None else MAX_ATTEMPTS
        if permanent or row.attempts + 1 >= limit:
            await self._record(row, lease_until, status="dead", **result)
            return None
        delay = retry_after if retry_after is not None else backoff(row.attempts)
        retry_at = utcnow() + timedelta(seconds=delay)
        await self._record(row, lease_until, status="pending", retry_at=retry_at, **result)
        return retry_at

    async def run(self, stop: asyncio.Event, *, tick: float = 1.0) -> None:
        """Deliver until ``stop`` is set, waking on a kick or every ``tick`` seconds."""
        while not stop.is_set():
            # cleared before the pass, not after: a kick during it (rows queued, or given back for a
            # recipient's pace coming due) must wake the next pass, not wait for the tick
            self._kick.clear()
            try:
                await self.drain()
            except Exception:
                log.exception("delivery pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=tick)
