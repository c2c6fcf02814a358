"""Slack HTTP mode over real sockets: signed requests reach Cadence's Bolt listeners, the rest are refused.

Cadence's own Bolt app (``SlackPlatform.build_app``) is served by ``start_http`` on 127.0.0.1, port 0;
its Web API calls go to the Slack fake. Requests are posted the way Slack posts them: JSON for the
Events API, form-encoded (``payload=<json>`` for interactivity) for slash commands and clicks, signed
with v0 HMAC-SHA256 over ``v0:<timestamp>:<body>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.http_runner import bound_port
from bot.platforms import slack_http
from bot.platforms.base import IncomingEvent
from bot.platforms.slack import SlackPlatform
from bot.platforms.slack_http import slack_routes, start_http
from bot.settings import SlackSettings
from tests.fakes.slack import PROXY_ENV_VARS, SlackFake

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-2718281828-3141592653-Zq8Lw2XvR7tYbN4cKm9PdHs1"
USER = "U0EMMA"
SMALL = 2048  # the body limit of the servers built to test it
WAIT = 5.0  # seconds: the bound on every wait


def sign(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    """Slack's v0 signature, computed here from the published recipe (not with the module's helper)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def form(fields: dict[str, Any]) -> bytes:
    return urlencode(fields).encode()


def interaction(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass
class Served:
    """A running HTTP-mode server and what reached Cadence through it."""

    fake: SlackFake
    url: str
    events: list[IncomingEvent] = field(default_factory=list)
    dispatched: list[AsyncBoltRequest] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # Cadence's handler waits for it

    async def wait_events(self, count: int) -> list[IncomingEvent]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.events) >= count), WAIT)
        return list(self.events)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk takes proxies from the environment and ignores NO_PROXY: everything here is loopback
    for name in PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    async with SlackFake(users={"emma.smith@example.com": USER}) as slack:
        yield slack


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as client:
        yield client


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(fake: SlackFake) -> AsyncIterator[Serve]:
    """Start Cadence's Bolt app in HTTP mode; each call is one more server, all cleaned up at the end."""
    runners: list[web.AppRunner] = []

    async def start(max_body: int = slack_http.MAX_BODY_BYTES) -> Served:
        served = Served(fake, "")

        async def on_event(
            event: IncomingEvent, *, acknowledge: Callable[[], Awaitable[None]] | None = None
        ) -> None:
            # journaled at once (as Cadence's router does before its work), then the work is held
            if acknowledge is not None:
                await acknowledge()
            await asyncio.wait_for(served.gate.wait(), WAIT)
            async with served.arrived:
                served.events.append(event)
                served.arrived.notify_all()

        # HTTP mode has no app token; SlackSettings still asks for one when enabled, and the
        # adapter does not look at ``enabled``
        settings = SlackSettings(bot_token=BOT_TOKEN, signing_secret=SECRET, api_url=fake.base_url)
        app = SlackPlatform(settings).build_app(on_event)
        dispatch = app.async_dispatch

        async def spy(req: AsyncBoltRequest) -> BoltResponse:
            served.dispatched.append(req)
            return await dispatch(req)

        app.async_dispatch = spy  # type: ignore[method-assign]
        runner = await start_http(app, host="127.0.0.1", port=0, signing_secret=SECRET, max_body=max_body)
        runners.append(runner)
        served.url = f"http://127.0.0.1:{bound_port(runner)}"
        served.gate.set()
        return served

    yield start
    for runner in runners:
        await runner.cleanup()


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    content_type: str,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
    drop: tuple[str, ...] = (),
    extra: dict[str, str] | None = None,
) -> tuple[int, str]:
    """POST like Slack: signed with the current time unless told otherwise; ``drop`` omits headers."""
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature if signature is not None else sign(body, timestamp),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **(extra or {}),
    }
    for name in drop:
        del headers[name]
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


# ---- accepted -----------------------------------------------------------------------------------


async def test_a_signed_slash_command_is_acknowledged_before_cadence_handles_it(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    served = await serve()
    served.gate.clear()  # Cadence's handler is held: the 200 must not wait for it
    body = form(served.fake.slash_command(USER, "status"))
    status, _ = await post(session, served.url + "/slack/commands", body, FORM)
    assert status == 200
    assert served.events == []
    served.gate.set()
    (event,) = await served.wait_events(1)
    assert (event.user_id, event.kind, event.text) == (USER, "text", "status")
    assert event.email == "emma.smith@example.com"  # users.info went to the fake


async def test_the_url_verification_challenge_is_echoed(serve: Serve, session: aiohttp.ClientSession) -> None:
    served = await serve()
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}
    )
    status, text = await post(session, served.url + "/slack/events", body.encode(), JSON)
    assert status == 200
    assert json.loads(text) == {"challenge": challenge}


async def test_a_click_arrives_as_a_form_encoded_payload(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    served = await serve()
    body = interaction(served.fake.block_action(USER, "yes", action_id="answer_yes"))
    status, _ = await post(session, served.url + "/slack/interactions", body, FORM)
    assert status == 200
    (event,) = await served.wait_events(1)
    assert (event.user_id, event.kind, event.action) == (USER, "action", "yes")


async def test_a_retried_event_is_answered_200_and_carries_the_retry_headers(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    served = await serve()
    body = json.dumps(served.fake.message_event(USER, "shipped the importer")).encode()
    first, _ = await post(session, served.url + "/slack/events", body, JSON)
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    again, _ = await post(session, served.url + "/slack/events", body, JSON, extra=retry)
    assert (first, again) == (200, 200)
    events = await served.wait_events(2)
    # the same event id both times: Cadence's journal turns the second into a no-op
    assert {e.event_id for e in events} == {json.loads(body)["event_id"]}
    assert served.dispatched[1].headers["x-slack-retry-num"] == ["1"]
    assert served.dispatched[1].headers["x-slack-retry-reason"] == ["http_timeout"]
    assert "x-slack-retry-num" not in served.dispatched[0].headers


async def test_a_body_of_exactly_the_limit_is_accepted(serve: Serve, session: aiohttp.ClientSession) -> None:
    served = await serve(max_body=SMALL)
    body = json.dumps({"challenge": "c", "type": "url_verification"}).encode()
    body = body.ljust(SMALL, b" ")  # JSON allows trailing white space
    status, text = await post(session, served.url + "/slack/events", body, JSON)
    assert (status, json.loads(text)) == (200, {"challenge": "c"})


# ---- refused ------------------------------------------------------------------------------------


async def test_a_bad_signature_is_refused_and_logged_and_no_listener_runs(
    serve: Serve, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve()
    body = form(served.fake.slash_command(USER, "status"))
    timestamp = str(int(time.time()))
    forged = sign(body, timestamp, secret="not-the-signing-secret")
    with caplog.at_level(logging.WARNING, logger="bot.platforms.slack_http"):
        status, text = await post(
            session, served.url + "/slack/commands", body, FORM, timestamp=timestamp, signature=forged
        )
    assert status == 401
    assert served.dispatched == []
    (record,) = [r for r in caplog.records if r.name == "bot.platforms.slack_http"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "does not match" in message and "remote=127.0.0.1" in message and "/slack/commands" in message
    assert text == "unauthorized"  # the reason is for the log, not for the sender
    assert SECRET not in message and body.decode() not in message
    # the same command, correctly signed, goes through: the refused one never reached Cadence
    assert (await post(session, served.url + "/slack/commands", body, FORM))[0] == 200
    assert len(await served.wait_events(1)) == 1
    assert len(served.dispatched) == 1


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        (lambda now: str(now - 360), "s from now"),  # six minutes old
        (lambda now: str(now + 360), "s from now"),  # six minutes ahead
        (lambda now: "yesterday", "not a number"),
        (lambda now: f"{now}.5", "not a number"),
        (lambda now: "", "not a number"),
    ],
    ids=["6-minutes-old", "6-minutes-ahead", "words", "fraction", "empty"],
)
async def test_a_timestamp_outside_five_minutes_or_not_a_number_is_refused(
    serve: Serve,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    timestamp: Callable[[int], str],
    reason: str,
) -> None:
    served = await serve()
    body = form(served.fake.slash_command(USER, "status"))
    stamp = timestamp(int(time.time()))
    # signed correctly for that timestamp: only the time is wrong
    with caplog.at_level(logging.WARNING, logger="bot.platforms.slack_http"):
        status, _ = await post(session, served.url + "/slack/commands", body, FORM, timestamp=stamp)
    assert status == 401
    assert served.dispatched == []
    assert any(reason in r.getMessage() and "remote=127.0.0.1" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("missing", "reason"),
    [("X-Slack-Signature", "no X-Slack-Signature"), ("X-Slack-Request-Timestamp", "no X-Slack-Request")],
)
async def test_a_missing_signature_or_timestamp_header_is_refused(
    serve: Serve,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    missing: str,
    reason: str,
) -> None:
    served = await serve()
    body = interaction(served.fake.block_action(USER, "yes"))
    with caplog.at_level(logging.WARNING, logger="bot.platforms.slack_http"):
        status, _ = await post(session, served.url + "/slack/interactions", body, FORM, drop=(missing,))
    assert status == 401
    assert served.dispatched == []
    assert any(reason in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_a_body_over_the_limit_is_refused_with_413(
    serve: Serve, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(max_body=SMALL)
    body = json.dumps({"challenge": "c", "type": "url_verification"}).encode().ljust(SMALL + 1, b" ")
    with caplog.at_level(logging.WARNING, logger="bot.platforms.slack_http"):
        status, _ = await post(session, served.url + "/slack/events", body, JSON)
    assert status == 413
    assert served.dispatched == []
    assert any("Content-Length" in r.getMessage() for r in caplog.records)


async def test_a_chunked_body_over_the_limit_is_refused_after_reading_one_byte_too_many(
    serve: Serve, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(max_body=SMALL)
    pieces = [b"x" * 1000] * 5
    timestamp = str(int(time.time()))

    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    headers = {
        "Content-Type": JSON,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(b"".join(pieces), timestamp),
    }
    with caplog.at_level(logging.WARNING, logger="bot.platforms.slack_http"):
        async with session.post(served.url + "/slack/events", data=chunks(), headers=headers) as resp:
            assert resp.status == 413
    assert served.dispatched == []
    assert any("body is over" in r.getMessage() for r in caplog.records)


async def test_an_oversized_content_length_is_refused_before_the_body_is_sent(serve: Serve) -> None:
    served = await serve(max_body=SMALL)
    port = int(served.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # the headers alone: the body (50 MB, announced) never comes, yet the answer does
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\nX-Slack-Request-Timestamp: 1\r\nX-Slack-Signature: v0=00\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert served.dispatched == []


async def test_a_body_that_trickles_in_is_refused_with_408(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_http, "BODY_TIMEOUT", 0.2)
    served = await serve()
    port = int(served.url.rsplit(":", 1)[1])
    timestamp = str(int(time.time()))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\nX-Slack-Request-Timestamp: " + timestamp.encode() + b"\r\n"
            b'X-Slack-Signature: v0=00\r\n\r\n{"type":'
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 408 ")
    assert served.dispatched == []


async def test_only_post_on_the_three_paths_is_served(serve: Serve, session: aiohttp.ClientSession) -> None:
    served = await serve()
    async with session.get(served.url + "/slack/events") as resp:
        assert resp.status == 405
    body = json.dumps({"challenge": "c", "type": "url_verification"}).encode()
    assert (await post(session, served.url + "/slack/other", body, JSON))[0] == 404
    assert served.dispatched == []


# ---- the clock and the recipe, without Bolt's own check -------------------------------------------


async def test_the_window_is_five_minutes_either_side_of_the_given_clock(
    fake: SlackFake, session: aiohttp.ClientSession
) -> None:
    """A plain Bolt app (its own verification off) behind ``slack_routes`` with a fixed clock."""
    commands: list[dict[str, Any]] = []
    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=fake.base_url),
        request_verification_enabled=False,
    )

    @app.command("/cadence")
    async def record(ack: Any, command: dict[str, Any]) -> None:
        commands.append(command)
        await ack()

    clock = 1_800_000_000
    runner = web.AppRunner(slack_routes(app, signing_secret=SECRET, now=lambda: clock))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{bound_port(runner)}/slack/commands"
        body = form(fake.slash_command(USER, "help"))
        answers = [
            (await post(session, url, body, FORM, timestamp=str(clock + skew)))[0]
            for skew in (-301, -300, 0, 300, 301)
        ]
    finally:
        await runner.cleanup()
    assert answers == [401, 200, 200, 200, 401]
    assert len(commands) == 3 and commands[0]["text"] == "help"


async def test_a_missing_signing_secret_is_refused_at_build_time(fake: SlackFake) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=fake.base_url),
        request_verification_enabled=False,
    )
    with pytest.raises(ValueError, match="signing secret"):
        slack_routes(app, signing_secret="  ")
