"""Pacing sends: per platform, per recipient, and pausing a platform that said Retry-After."""

from __future__ import annotations

from bot.rate_limits import RateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def _limiter(fake: FakeTime, **rates: dict[str, float | None]) -> RateLimiter:
    return RateLimiter(
        per_platform=rates.get("per_platform", {}),
        per_recipient=rates.get("per_recipient", {}),
        clock=fake.clock,
        sleep=fake.sleep,
    )


async def test_a_platform_limit_spaces_sends_evenly() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, per_platform={"slack": 50.0})
    for n in range(100):
        await limiter.acquire("slack", f"U{n}")
    # 100 sends at 50/s: the last one goes 99 intervals of 20 ms after the first
    assert round(fake.now - 1000.0, 6) == 1.98


async def test_one_recipient_gets_one_new_message_a_second_but_edits_go_at_once() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, per_recipient={"slack": 1.0})
    await limiter.acquire("slack", "U1")
    await limiter.acquire("slack", "U1", new_message=False)  # the "saved" edit of a question
    assert fake.slept == []
    await limiter.acquire("slack", "U2")  # someone else is not held up
    assert fake.slept == []
    await limiter.acquire("slack", "U1")
    assert fake.slept == [1.0]


async def test_retry_after_pauses_the_whole_platform_but_no_other() -> None:
    fake = FakeTime()
    limiter = _limiter(fake)
    limiter.pause("slack", 30)
    await limiter.acquire("feishu", "ou_1")
    assert fake.slept == []
    await limiter.acquire("slack", "U1")
    assert fake.slept == [30.0]


async def test_no_limit_means_no_waiting() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, per_platform={"slack": None}, per_recipient={"slack": None})
    for _ in range(1000):
        await limiter.acquire("slack", "U1")
    assert fake.slept == []
