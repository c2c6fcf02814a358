"""Sending no faster than a platform allows: overall per platform, and per recipient.

Each limit spaces sends evenly (the next send may go 1/rate seconds after the last one), which keeps
under a per-second limit without bursts that would earn 429s. A 429's Retry-After pauses the whole
platform, since it usually means a workspace- or app-wide budget is spent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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

    def _reserve(
        self, table: dict[str, float] | dict[tuple[str, str], float], key: object, rate: float | None
    ) -> float:
        """The earliest moment for this key; books the one after it (so concurrent senders queue)."""
        now = self._clock()
        if not rate:
            return now
        start = max(now, table.get(key, now))  # type: ignore[call-overload]
        table[key] = start + 1.0 / rate  # type: ignore[index]
        return start

    async def acquire(self, platform: str, recipient: str, *, new_message: bool = True) -> None:
        """Wait for this send's turn. Edits of earlier messages skip the per-recipient spacing."""
        start = max(
            self._paused_until.get(platform, 0.0),
            self._reserve(self._next_platform, platform, self.per_platform.get(platform)),
        )
        if new_message:
            start = max(
                start,
                self._reserve(self._next_recipient, (platform, recipient), self.per_recipient.get(platform)),
            )
        delay = start - self._clock()
        if delay > 0:
            await self._sleep(delay)

    def recipient_wait(self, platform: str, recipient: str) -> float:
        """Seconds until a new message to ``recipient`` is allowed (0 when it is now); books nothing."""
        if not self.per_recipient.get(platform):
            return 0.0
        return max(0.0, self._next_recipient.get((platform, recipient), 0.0) - self._clock())

    def pause(self, platform: str, seconds: float) -> None:
        """The platform said Retry-After: nothing goes to it for ``seconds``."""
        self._paused_until[platform] = max(self._paused_until.get(platform, 0.0), self._clock() + seconds)
