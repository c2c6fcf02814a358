"""Slack sends whose outcome is unknown are looked up, not repeated; Slack misbehaving is survived.

Cadence's ``SlackPlatform`` (the real slack_sdk) against the Slack fake over real sockets on
127.0.0.1: every posted message carries its outbox key as message metadata, ``find_sent`` finds it
in the DM's history, and 429s, 5xx pages and dropped connections become the right ``SendError``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from bot.platforms.base import EventHandler, Platform, SendError
from bot.platforms.slack import OUTBOX_EVENT, SlackPlatform
from conversations.messages import Message
from tests.fakes.slack import DEFAULT_SCOPES, PROXY_ENV_VARS, SlackFake
from tests.slack_rig import platform_for

EMMA, EMMA_EMAIL = "U01EMMA", "emma.smith@example.com"
LEI, LEI_EMAIL = "U01LEI", "li.lei@example.com"
USERS = {EMMA_EMAIL: EMMA, LEI_EMAIL: LEI}


class Clock:
    """The fake's clock for ``limit``: moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[SlackFake]:
    async with SlackFake(users=USERS, clock=clock) as server:
        yield server


@pytest.fixture
def slack(fake: SlackFake) -> SlackPlatform:
    return platform_for(fake)


def stored(fake: SlackFake, message_id: str) -> dict[str, object]:
    channel, _, ts = message_id.partition("|")
    return fake.messages[(channel, ts)]


async def refused(slack: SlackPlatform, user: str, text: str, key: str) -> SendError:
    with pytest.raises(SendError) as caught:
        await slack.send(user, Message(text=text), key=key)
    return caught.value


# ---- metadata and find_sent ---------------------------------------------------------------------


async def test_every_posted_message_carries_its_key_as_metadata(
    fake: SlackFake, slack: SlackPlatform
) -> None:
    message_id = await slack.send(EMMA, Message(text="How was your week?"), key="c1:a7:wins:prompt")

    metadata = {"event_type": OUTBOX_EVENT, "event_payload": {"key": "c1:a7:wins:prompt"}}
    assert stored(fake, message_id)["metadata"] == metadata
    (call,) = fake.calls_to("chat.postMessage")
    assert call.body["metadata"] == metadata and not call.form_encoded  # a JSON object, not a string
    assert fake.delivered_keys() == Counter({"c1:a7:wins:prompt": 1})


async def test_find_sent_returns_the_id_send_returned_and_none_for_an_unknown_key(
    fake: SlackFake, slack: SlackPlatform
) -> None:
    first = await slack.send(EMMA, Message(text="Q1/5"), key="k-first")
    second = await slack.send(EMMA, Message(text="Q2/5"), key="k-second")
    elsewhere = await slack.send(LEI, Message(text="Q1/5"), key="k-lei")

    assert await slack.find_sent(EMMA, "k-first") == first
    assert await slack.find_sent(EMMA, "k-second") == second
    assert await slack.find_sent(EMMA, "k-never-sent") is None
    assert await slack.find_sent(EMMA, "k-lei") is None  # another person's DM is not this one
    assert await slack.find_sent(LEI, "k-lei") == elsewhere
    call = fake.calls_to("conversations.history")[0]
    # the SDK sends it as a GET with a query string, booleans as 1/0
    assert (call.verb, call.query) == (
        "GET",
        {"channel": fake.dm_channel(EMMA), "limit": "50", "include_all_metadata": "1"},
    )
    assert len(fake.calls_to("chat.postMessage")) == 3  # looking posted nothing


async def test_a_message_whose_answer_was_lost_is_found_and_was_posted_once(
    fake: SlackFake, slack: SlackPlatform
) -> None:
    fake.lose_response("chat.postMessage", how="disconnect")

    error = await refused(slack, EMMA, "Q1/5", "k-lost")

    assert error.in_doubt and not error.permanent and error.retry_after is None
    # slack_sdk's default handler would have posted it again after the disconnect: ours does not
    assert fake.call_counts["chat.postMessage"] == 1
    assert fake.delivered_keys() == Counter({"k-lost": 1})
    (ts,) = [ts for (channel, ts) in fake.messages if channel == fake.dm_channel(EMMA)]
    assert await slack.find_sent(EMMA, "k-lost") == f"{fake.dm_channel(EMMA)}|{ts}"


async def test_other_calls_are_still_repeated_once_after_a_dropped_connection(
    fake: SlackFake, slack: SlackPlatform
) -> None:
    # a process that restarted knows no DM yet: find_sent opens it (opening a DM twice is harmless)
    fake.lose_response("conversations.open", how="disconnect")

    assert await slack.find_sent(EMMA, "k1") is None

    assert fake.call_counts["conversations.open"] == 2
    assert fake.call_counts["conversations.history"] == 1


async def test_a_fatal_error_after_the_post_is_in_doubt_and_found(
    fake: SlackFake, slack: SlackPlatform
) -> None:
    fake.lose_response("chat.postMessage", how="fatal_error")

    error = await refused(slack, EMMA, "Q1/5", "k-fatal")

    assert error.in_doubt and not error.permanent and "fatal_error" in str(error)
    assert fake.http_500 == 1
    assert await slack.find_sent(EMMA, "k-fatal") is not None


async def test_looking_without_the_history_scope_says_which_scope_is_missing(clock: Clock) -> None:
    narrow = tuple(s for s in DEFAULT_SCOPES if s != "im:history")
    async with SlackFake(users=USERS, scopes=narrow, clock=clock) as fake:
        slack = platform_for(fake)
        await slack.send(EMMA, Message(text="Q1/5"), key="k1")
        with pytest.raises(SendError) as caught:
            await slack.find_sent(EMMA, "k1")

    assert "missing_scope" in str(caught.value) and "im:history" in str(caught.value)
    assert not caught.value.in_doubt


async def test_a_platform_that_cannot_tell_answers_none() -> None:
    class Mute(Platform):
        name = "mute"

        async def start(self, on_event: EventHandler) -> None: ...

        async def stop(self) -> None: ...

        async def send(self, recipient: str, message: Message, *, key: str) -> str:
            return "1"

        async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None: ...

    assert await Mute().find_sent("someone", "k1") is None


# ---- chaos --------------------------------------------------------------------------------------


async def test_a_429_says_when_to_retry_and_stores_nothing(fake: SlackFake, slack: SlackPlatform) -> None:
    fake.chaos(1.0, 0.0, retry_after=7, seed=1)

    error = await refused(slack, EMMA, "Q1/5", "k1")

    assert error.retry_after == 7 and not error.permanent and not error.in_doubt
    assert fake.http_429 == 1 and fake.messages == {}


@pytest.mark.parametrize("body", ["html", "json", "bad_json"])
async def test_a_500_is_retryable_and_in_doubt_whatever_its_body(
    fake: SlackFake, slack: SlackPlatform, body: str
) -> None:
    fake.chaos(0.0, 1.0, body_500=body)  # type: ignore[arg-type]

    error = await refused(slack, EMMA, "Q1/5", "k1")

    assert not error.permanent and error.in_doubt and error.retry_after is None
    assert "HTTP 500" in str(error)
    assert fake.http_500 == 1 and fake.messages == {}


async def test_seeded_chaos_refuses_the_same_calls_every_run(fake: SlackFake, slack: SlackPlatform) -> None:
    fake.chaos(0.3, 0.2, retry_after=2, seed=42)
    draws = random.Random(42)
    expected = []
    for _ in range(30):
        draw = draws.random()
        expected.append("429" if draw < 0.3 else "500" if draw < 0.5 else "ok")

    outcomes = []
    for n in range(30):
        try:
            await slack.send(EMMA, Message(text=f"message {n}"), key=f"k{n}")
            outcomes.append("ok")
        except SendError as exc:
            outcomes.append("429" if exc.retry_after == 2 else "500" if exc.in_doubt else repr(exc))

    assert outcomes == expected
    assert (fake.http_429, fake.http_500) == (expected.count("429"), expected.count("500"))
    assert fake.delivered_keys() == Counter({f"k{n}": 1 for n, o in enumerate(outcomes) if o == "ok"})
    assert fake.posted[fake.dm_channel(EMMA)] == expected.count("ok")
    assert fake.call_counts["conversations.open"] == 0  # posted to EMMA's id: Slack names the DM


# ---- limits -------------------------------------------------------------------------------------


async def test_one_message_a_second_per_channel(fake: SlackFake, slack: SlackPlatform, clock: Clock) -> None:
    fake.limit(None, 1.0)

    first = await slack.send(EMMA, Message(text="one"), key="k1")
    second = await refused(slack, EMMA, "two", "k2")
    third = await refused(slack, EMMA, "three", "k3")
    other_channel = await slack.send(LEI, Message(text="one"), key="k-lei")
    clock.now += 1.0
    later = await slack.send(EMMA, Message(text="two, again"), key="k2")

    assert (second.retry_after, third.retry_after) == (1, 1) and not second.in_doubt
    assert fake.http_429 == 2
    assert [m["text"] for m in fake.messages_to(EMMA)] == ["one", "two, again"]
    assert first != later and other_channel.startswith(fake.dm_channel(LEI))
    stats = fake.limit_stats
    assert (stats.admitted, stats.refused) == (3, 2)
    assert stats.per_channel == Counter({fake.dm_channel(EMMA): 2, fake.dm_channel(LEI): 1})


async def test_retry_after_is_honest_and_whole_seconds(
    fake: SlackFake, slack: SlackPlatform, clock: Clock
) -> None:
    fake.limit(None, 0.25)  # one message every 4 seconds
    await slack.send(EMMA, Message(text="one"), key="k1")

    clock.now += 1.5
    error = await refused(slack, EMMA, "two", "k2")
    assert error.retry_after == 3  # 2.5 s to go, rounded up
    clock.now += 2.4
    assert (await refused(slack, EMMA, "two", "k2")).retry_after == 1  # 0.1 s to go: at least 1
    clock.now += 0.1
    await slack.send(EMMA, Message(text="two"), key="k2")
    assert len(fake.messages_to(EMMA)) == 2


async def test_an_overall_limit_counts_every_channel(
    fake: SlackFake, slack: SlackPlatform, clock: Clock
) -> None:
    fake.limit(2.0, None)

    await slack.send(EMMA, Message(text="one"), key="k1")
    await slack.send(LEI, Message(text="one"), key="k2")  # the burst is the rate: 2
    error = await refused(slack, EMMA, "two", "k3")
    clock.now += 0.5  # one token back
    await slack.send(EMMA, Message(text="two"), key="k3")

    assert error.retry_after == 1
    stats = fake.limit_stats
    assert (stats.admitted, stats.refused) == (3, 1)
    assert stats.achieved_per_s() == 4.0  # two intervals in 0.5 s: the burst, not the rate
    fake.limit(None, None)
    assert fake.limit_stats.admitted == 0
