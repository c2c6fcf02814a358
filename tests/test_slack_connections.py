"""What a Slack send costs on the wire: one kept-alive connection, one chat.postMessage per message.

Cadence's ``SlackPlatform`` (the real slack_sdk and slack-bolt) against the Slack fake on 127.0.0.1;
the fake numbers the TCP connections its clients' calls come on (``SlackFake.api_connections``).
A started platform sends every Web API call through one aiohttp session; a first message to a person
goes to their user id, and Slack's answer names the DM, so no conversations.open is needed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import bot.platforms.slack as slack_module
from bot.platforms.base import IncomingEvent, SendError
from bot.platforms.slack import SlackPlatform
from bot.settings import SlackSettings
from conversations.messages import Message
from tests.fakes.slack import PROXY_ENV_VARS, SlackFake
from tests.slack_rig import BOT_TOKEN, platform_for

PEOPLE = 25
USERS = {f"person{n}@example.com": f"U{n:04d}" for n in range(PEOPLE)}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    async with SlackFake(users=USERS) as server:
        yield server


class Events:
    """What the platform hands Cadence; each event is acknowledged (journaled) at once."""

    def __init__(self) -> None:
        self.seen: list[IncomingEvent] = []

    async def __call__(
        self, event: IncomingEvent, *, acknowledge: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.seen.append(event)
        if acknowledge is not None:
            await acknowledge()


@pytest.fixture
async def started(fake: SlackFake) -> AsyncIterator[SlackPlatform]:
    """The platform connected over Socket Mode, as ``cadence run`` starts it."""
    slack = platform_for(fake)
    await slack.start(Events())
    await fake.wait_connected()
    yield slack
    await slack.stop()


def connections(fake: SlackFake, method: str) -> set[int]:
    """The TCP connections ``method``'s calls came on."""
    return {call.connection for call in fake.calls_to(method)}


async def test_a_fan_out_is_one_post_per_person_on_one_connection(
    fake: SlackFake, started: SlackPlatform
) -> None:
    people = list(USERS.values())

    sent = [await started.send(user, Message(text="How was your week?"), key=f"k-{user}") for user in people]

    assert fake.call_counts["chat.postMessage"] == PEOPLE
    assert fake.call_counts["conversations.open"] == 0
    # every call reused the connection the first one opened (apps.connections.open's included)
    assert len(connections(fake, "chat.postMessage")) == 1
    assert len(fake.api_connections) == 1
    # each message went to the person's id, and is known by the DM Slack named in its answer
    assert [call.body["channel"] for call in fake.calls_to("chat.postMessage")] == people
    assert sent == [f"{fake.dm_channel(user)}|{fake.messages_to(user)[0]['ts']}" for user in people]
    assert fake.delivered_keys() == Counter({f"k-{user}": 1 for user in people})


async def test_a_platform_that_was_not_started_connects_per_call(fake: SlackFake) -> None:
    """slack_sdk without a session: a new session, so a new connection, for every call."""
    slack = platform_for(fake)

    for user in list(USERS.values())[:5]:
        await slack.send(user, Message(text="hello"), key=f"k-{user}")

    assert len(connections(fake, "chat.postMessage")) == 5


async def test_concurrent_sends_share_a_few_connections(fake: SlackFake, started: SlackPlatform) -> None:
    people = list(USERS.values())

    for round_ in range(2):
        await asyncio.gather(*(started.send(u, Message(text="hi"), key=f"k-{u}-{round_}") for u in people))

    # at most one connection per send in flight, kept for the next round
    assert fake.call_counts["chat.postMessage"] == 2 * PEOPLE
    assert len(connections(fake, "chat.postMessage")) <= PEOPLE


async def test_the_dm_slack_named_is_what_later_calls_use(fake: SlackFake, started: SlackPlatform) -> None:
    user = USERS["person1@example.com"]
    first = await started.send(user, Message(text="Q1/5"), key="k1")
    second = await started.send(user, Message(text="Q2/5"), key="k2")

    await started.update(user, first, Message(text="Q1/5: saved"), key="k1")

    dm = fake.dm_channel(user)
    assert [call.body["channel"] for call in fake.calls_to("chat.postMessage")] == [user, dm]
    assert fake.calls_to("chat.update")[0].body["channel"] == dm
    assert await started.find_sent(user, "k2") == second
    assert fake.call_counts["conversations.open"] == 0
    # a new process (nothing cached) edits and looks up by the ids stored in the outbox
    restarted = platform_for(fake)
    await restarted.update(user, second, Message(text="Q2/5: saved"), key="k2")
    assert fake.messages[(dm, second.partition("|")[2])]["text"] == "Q2/5: saved"
    assert await restarted.find_sent(user, "k1") == first
    assert fake.call_counts["conversations.open"] == 1  # find_sent needs the DM's id: opened once


async def test_an_id_without_the_dm_is_updated_in_the_dm(fake: SlackFake, started: SlackPlatform) -> None:
    """A message id naming the person (Slack's answer did not name the DM) still gets edited."""
    user = USERS["person2@example.com"]
    _, _, ts = (await started.send(user, Message(text="Q1/5"), key="k1")).partition("|")
    started_anew = platform_for(fake)

    await started_anew.update(user, f"{user}|{ts}", Message(text="Q1/5: saved"), key="k1")

    assert fake.messages[(fake.dm_channel(user), ts)]["text"] == "Q1/5: saved"
    assert fake.calls_to("chat.update")[0].body["channel"] == fake.dm_channel(user)


async def test_an_unknown_person_is_a_permanent_failure(started: SlackPlatform) -> None:
    with pytest.raises(SendError) as caught:
        await started.send("U9NOBODY", Message(text="hello"), key="k1")

    assert caught.value.permanent and not caught.value.in_doubt


async def test_events_and_replies_share_the_session(fake: SlackFake) -> None:
    """Bolt's per-request client (auth.test), users.info and response_url replies: one connection."""
    events = Events()
    slack = platform_for(fake)
    await slack.start(events)
    try:
        await fake.wait_connected()
        user = USERS["person3@example.com"]
        envelope = await fake.send_envelope("slash_commands", fake.slash_command(user, "help"))
        await fake.wait_ack(envelope)
        (event,) = events.seen
        assert event.email == "person3@example.com" and event.reply_to
        reply = Message(text="Commands: …", ephemeral=True, meta={"reply_to": event.reply_to})

        assert await slack.send(user, reply, key="") == "ephemeral"

        assert [body["text"] for _, body in fake.responses] == ["Commands: …"]
        assert fake.call_counts["auth.test"] >= 1 and fake.call_counts["users.info"] == 1
        assert len(fake.api_connections) == 1
    finally:
        await slack.stop()


async def test_stop_closes_the_session_and_later_calls_still_work(fake: SlackFake) -> None:
    slack = platform_for(fake)
    await slack.start(Events())
    session = slack.client.session
    assert session is not None and not session.closed
    await slack.send(USERS["person4@example.com"], Message(text="before"), key="k1")

    await slack.stop()

    assert session.closed and slack.client.session is None
    # slack_sdk opens (and closes) a session of its own for a call made after stop
    await slack.send(USERS["person4@example.com"], Message(text="after"), key="k2")
    assert len(fake.messages_to(USERS["person4@example.com"])) == 2


async def test_a_start_given_up_on_closes_the_session(fake: SlackFake) -> None:
    """slack_sdk retries a refused Socket Mode connection for ever: whoever gives up cancels start."""
    settings = SlackSettings(
        enabled=True, bot_token=BOT_TOKEN, app_token="xoxb-not-an-app-token", api_url=fake.base_url
    )
    slack = SlackPlatform(settings)
    starting = asyncio.create_task(slack.start(Events()))
    await fake.wait_calls("apps.connections.open")  # refused: not_allowed_token_type

    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    assert slack.client.session is None


async def test_every_call_on_the_session_has_a_timeout(
    fake: SlackFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slack_sdk applies its ``timeout`` only to sessions it opens: the shared one carries its own."""
    monkeypatch.setattr(slack_module, "_TIMEOUT", 0.3)
    slack = platform_for(fake)
    await slack.start(Events())
    try:
        fake.stall("chat.postMessage", 1.0)

        with pytest.raises(SendError) as caught:
            await slack.send(USERS["person5@example.com"], Message(text="Q1/5"), key="k1")

        assert caught.value.in_doubt  # it was posted; the answer came too late
        assert fake.call_counts["chat.postMessage"] == 1  # and it was not posted again
        assert fake.delivered_keys() == Counter({"k1": 1})
    finally:
        await slack.stop()


async def test_a_send_that_found_no_free_connection_in_time_sent_nothing(
    fake: SlackFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for one of the session's connections is bounded by the connect timeout: not in doubt."""
    monkeypatch.setattr(slack_module, "_CONNECTIONS", 1)
    monkeypatch.setattr(slack_module, "_CONNECT_TIMEOUT", 0.1)
    slack = platform_for(fake)
    await slack.start(Events())
    try:
        fake.stall("chat.postMessage", 2.5)  # holds the only connection
        first = asyncio.create_task(slack.send(USERS["person6@example.com"], Message(text="one"), key="k1"))
        await fake.wait_calls("chat.postMessage")

        # no connection within 0.1 s, once more after slack_sdk's pause (0.5 to 1.5 s), then given up
        with pytest.raises(SendError) as caught:
            await slack.send(USERS["person7@example.com"], Message(text="two"), key="k2")

        assert not caught.value.in_doubt and "Slack unreachable" in str(caught.value)
        assert fake.call_counts["chat.postMessage"] == 1
        await first
        assert fake.delivered_keys() == Counter({"k1": 1})
    finally:
        await slack.stop()
