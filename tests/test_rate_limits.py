"""Pacing sends: per platform, per recipient (with a margin, counted from the platform's answer), and
Retry-After: one recipient's 429 pauses that recipient, several recipients' 429s the platform."""

from __future__ import annotations

import pytest

from bot.rate_limits import RECIPIENT_MARGIN, SPREAD_RECIPIENTS, SPREAD_WINDOW, RateLimiter

PACE = 1.0 + RECIPIENT_MARGIN  # seconds between two new messages to one person at one a second


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
    assert fake.slept == [PACE]


async def test_a_platform_pause_stops_the_whole_platform_but_no_other() -> None:
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


def test_the_per_recipient_margin_is_small_and_documented() -> None:
    assert 0 < RECIPIENT_MARGIN <= 0.1


async def test_a_recipients_next_message_counts_from_when_the_platform_answered() -> None:
    """Spacing from when sends start lets a slow first send and a quick second one arrive closer
    together than the interval; counting from the answer cannot."""
    fake = FakeTime()
    limiter = _limiter(fake, per_recipient={"slack": 1.0})
    await limiter.acquire("slack", "U1")
    fake.now += 0.3  # the request took 0.3 s on its way and back
    limiter.sent("slack", "U1")
    assert limiter.recipient_wait("slack", "U1") == pytest.approx(PACE)
    await limiter.acquire("slack", "U1")
    assert fake.slept == [pytest.approx(PACE)]
    assert fake.now - 1000.0 == pytest.approx(0.3 + PACE)


async def test_one_recipients_429_pauses_only_that_recipient() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, per_recipient={"slack": 1.0})
    limiter.rate_limited("slack", "U1", 30)
    await limiter.acquire("slack", "U2")  # others go on
    await limiter.acquire("slack", "U3")
    assert fake.slept == []
    assert limiter.recipient_wait("slack", "U1") == 30.0
    assert limiter.recipient_wait("slack", "U1", new_message=False) == 30.0  # edits wait it out too
    await limiter.acquire("slack", "U1", new_message=False)
    assert fake.slept == [30.0]


async def test_one_recipients_429s_never_pause_the_platform() -> None:
    fake = FakeTime()
    limiter = _limiter(fake)
    for _ in range(10):
        limiter.rate_limited("slack", "U1", 1)
    await limiter.acquire("slack", "U2")
    assert fake.slept == []


async def test_429s_from_several_recipients_at_once_pause_the_whole_platform() -> None:
    """A shared budget (a method's tier, the workspace) refuses whoever comes next."""
    fake = FakeTime()
    limiter = _limiter(fake)
    for n in range(SPREAD_RECIPIENTS - 1):
        limiter.rate_limited("slack", f"U{n}", 2)
        fake.now += 0.1
    await limiter.acquire("slack", "U-someone-else")  # not yet: it may be their own limits
    assert fake.slept == []
    limiter.rate_limited("slack", "U-last", 2)  # this one's Retry-After pauses everyone
    fake.now += 0.5
    await limiter.acquire("feishu", "ou_1")  # another platform is not paused
    assert fake.slept == []
    await limiter.acquire("slack", "U-someone-else")
    assert fake.slept == [pytest.approx(1.5)]


async def test_429s_from_several_recipients_spread_out_pause_only_them() -> None:
    fake = FakeTime()
    limiter = _limiter(fake)
    for n in range(SPREAD_RECIPIENTS):
        limiter.rate_limited("slack", f"U{n}", 1)
        fake.now += SPREAD_WINDOW * 0.6  # never SPREAD_RECIPIENTS of them within the window
    await limiter.acquire("slack", "U-someone-else")
    assert fake.slept == []


async def test_before_a_wait_the_caller_may_finish_work_and_the_wait_still_ends_on_time() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, per_platform={"slack": 1.0})
    told: list[float] = []

    async def before_wait(seconds: float) -> None:
        told.append(seconds)
        fake.now += 0.25  # the work took a while

    await limiter.acquire("slack", "U1", before_wait=before_wait)
    assert told == [] and fake.slept == []  # no wait, nothing to do first
    await limiter.acquire("slack", "U2", before_wait=before_wait)
    assert told == [1.0]
    assert fake.slept == [0.75]
    assert fake.now == 1001.0
