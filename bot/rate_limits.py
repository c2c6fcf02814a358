"""Sending no faster than a platform allows: overall per platform, and per recipient.

Each limit spaces sends evenly (the next send may go 1/rate seconds after the last one), which keeps
under a per-second limit without bursts that would earn 429s. A recipient's spacing has a margin
(``RECIPIENT_MARGIN``) and also counts from when the platform answered the last send, so that
network and event-loop jitter cannot bring two messages to one person in under 1/rate seconds.

A 429 does not say which limit it hit (Slack's has only Retry-After: the per-channel "one message a
second", a method's tier or a workspace-wide budget look the same). A per-recipient limit concerns
one person, so one recipient's 429 pauses only that recipient; a shared budget refuses whomever comes
next, so 429s for several different recipients within a short window (``SPREAD_RECIPIENTS`` within
``SPREAD_WINDOW`` seconds) pause the whole platform for the Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

# a person's messages are spaced 5% wider than their rate (1.05 s at one a second): the platform
# counts from when a message arrives, and a send that waited less on the way than the one before it
# would otherwise arrive just under the interval after it (measured: 181 of 183 429s in the limited
# fan-out benchmark came from the per-channel limit with exact 1.000 s spacing)
RECIPIENT_MARGIN = 0.05
# 429s for this many different recipients within this many seconds mean a platform-wide budget
SPREAD_RECIPIENTS = 3
SPREAD_WINDOW = 1.0


class RateLimiter:
    """Waits until a send to ``(platform, recipient)`` is allowed."""

    def __init__(
        self,
        *,
        per_platform: dict[str, float | None],
        per_recipient: dict[str, float | None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_platform, self.per_recipient = per_platform, per_recipient
        self._clock, self._sleep = clock, sleep
        self._next_platform: dict[str, float] = {}
        self._next_recipient: dict[tuple[str, str], float] = {}
        self._paused_until: dict[str, float] = {}
        self._recipient_paused_until: dict[tuple[str, str], float] = {}
        self._recent_429s: dict[str, deque[tuple[float, str]]] = {}

    def _recipient_interval(self, platform: str) -> float | None:
        rate = self.per_recipient.get(platform)
        return (1.0 + RECIPIENT_MARGIN) / rate if rate else None

    def _reserve(self, table: dict[str, float], key: str, rate: float | None) -> float:
        """The earliest moment for this key; books the one after it (so concurrent senders queue)."""
        now = self._clock()
        if not rate:
            return now
        start = max(now, table.get(key, now))
        table[key] = start + 1.0 / rate
        return start

    async def acquire(
        self,
        platform: str,
        recipient: str,
        *,
        new_message: bool = True,
        before_wait: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Wait for this send's turn. Edits of earlier messages skip the per-recipient spacing.

        ``before_wait(seconds)`` is awaited first when there is a wait (the caller may finish work
        that should not wait with it); the wait then ends when it would have.
        """
        key = (platform, recipient)
        start = max(
            self._paused_until.get(platform, 0.0),
            self._recipient_paused_until.get(key, 0.0),
            self._reserve(self._next_platform, platform, self.per_platform.get(platform)),
        )
        interval = self._recipient_interval(platform)
        if new_message and interval is not None:
            start = max(start, self._next_recipient.get(key, start))
            self._next_recipient[key] = start + interval
        delay = start - self._clock()
        if delay > 0 and before_wait is not None:
            await before_wait(delay)
            delay = start - self._clock()
        if delay > 0:
            await self._sleep(delay)

    def sent(self, platform: str, recipient: str) -> None:
        """The platform accepted a new message to ``recipient`` now: the next one goes an interval later.

        ``acquire`` booked the next turn from when this send started; the platform counts from when
        the message arrived, which is later by however long the request took on the way.
        """
        interval = self._recipient_interval(platform)
        if interval is not None:
            key = (platform, recipient)
            self._next_recipient[key] = max(self._next_recipient.get(key, 0.0), self._clock() + interval)

    def recipient_wait(self, platform: str, recipient: str, *, new_message: bool = True) -> float:
        """Seconds until a message to ``recipient`` is allowed (0 when it is now); books nothing.

        Edits (``new_message=False``) skip the spacing but not a pause after the recipient's 429.
        """
        key = (platform, recipient)
        until = self._recipient_paused_until.get(key, 0.0)
        if new_message and self.per_recipient.get(platform):
            until = max(until, self._next_recipient.get(key, 0.0))
        return max(0.0, until - self._clock())

    def pause(self, platform: str, seconds: float) -> None:
        """Nothing goes to ``platform`` for ``seconds``."""
        self._paused_until[platform] = max(self._paused_until.get(platform, 0.0), self._clock() + seconds)

    def rate_limited(self, platform: str, recipient: str, retry_after: float) -> None:
        """The platform answered a send to ``recipient`` with 429 and Retry-After ``retry_after``.

        That recipient waits ``retry_after``; if 429s came for ``SPREAD_RECIPIENTS`` different
        recipients within ``SPREAD_WINDOW`` seconds, the whole platform does (see the module's doc).
        """
        now = self._clock()
        key = (platform, recipient)
        self._recipient_paused_until[key] = max(self._recipient_paused_until.get(key, 0.0), now + retry_after)
        recent = self._recent_429s.setdefault(platform, deque())
        recent.append((now, recipient))
        while recent and recent[0][0] < now - SPREAD_WINDOW:
            recent.popleft()
        if len({who for _, who in recent}) >= SPREAD_RECIPIENTS:
            self.pause(platform, retry_after)
            # the sends already on their way meet the same empty budget: their 429s pause only
            # their recipients instead of stretching this pause
            recent.clear()
        self._forget_past_pauses(now)

    def _forget_past_pauses(self, now: float) -> None:
        # recipient pauses are few (one per 429) but would otherwise stay for the process's life
        if len(self._recipient_paused_until) > 1000:
            self._recipient_paused_until = {k: t for k, t in self._recipient_paused_until.items() if t > now}
