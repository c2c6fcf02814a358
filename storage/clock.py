"""The one source of "now" for stored timestamps: aware UTC, replaceable in tests and the demo."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def _wall_clock() -> datetime:
    return datetime.now(UTC)


_now: Callable[[], datetime] = _wall_clock


def utcnow() -> datetime:
    """Aware UTC now (SQLModel's UTCDateTime columns refuse naive values)."""
    return _now().astimezone(UTC)


def set_clock(now: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests, the scripted demo); ``None`` restores the wall clock."""
    global _now
    _now = now if now is not None else _wall_clock
