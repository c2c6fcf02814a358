"""A Slack server on 127.0.0.1 for the real slack_sdk / slack_bolt: Web API, Socket Mode, response_url.

Wire behaviour, checked against the installed slack_sdk 3.48.0 / slack_bolt 1.30.0:

* Web API (``base_url``): every answer is JSON with ``ok``. ``AsyncWebClient`` sends chat.* and views.*
  as JSON bodies; the methods it calls with ``params=`` (auth.test, apps.connections.open,
  conversations.open, users.*) go out as the URL query string of a request whose Content-Type is
  ``application/x-www-form-urlencoded`` and whose body is empty (the sync ``WebClient`` puts the same
  fields in a form body). ``Call.body`` merges query string, form fields and JSON body.
* Tokens ride in ``Authorization: Bearer``: ``xapp-`` for apps.connections.open, ``xoxb-`` elsewhere.
* Socket Mode (``/link/``): ``hello`` on connect, envelopes as JSON text frames, acks
  ``{"envelope_id", ["payload"]}`` back; pings are answered (aiohttp autoping). The client only
  reconnects through a new apps.connections.open: each ticket in the WebSocket URL is good once.
* ``response_url`` (``/response/<id>``): JSON body, no Authorization header, answers ``ok`` (text/plain).
* Message metadata (``metadata={"event_type", "event_payload"}`` on chat.postMessage / chat.update): not an
  object with a string ``event_type`` and an object ``event_payload`` is refused ``invalid_metadata_format``;
  an ``event_type`` with characters other than letters, digits, ``_`` and ``-`` is dropped with the warning
  ``invalid_metadata_schema`` (Slack's message-metadata guide). chat.update without ``metadata`` keeps it,
  with ``{}`` removes it. conversations.history (GET, query string) returns a channel's messages newest
  first (``limit`` default 100, at most 999; ``latest``/``oldest``/``inclusive``; ``cursor`` from
  ``response_metadata.next_cursor``), with ``metadata`` only when ``include_all_metadata`` is set, and
  needs the ``*:history`` scope of the conversation's type (``im:history`` for a DM).
* Misbehaviour on demand: ``rate_limit``/``fail`` (the next calls of a method), ``chaos`` (seeded random
  429s and 5xxs), ``limit`` (token buckets: overall and per channel), ``lose_response`` (the call takes
  effect, its answer is lost), ``stall`` (the call takes effect, its answer comes late). Every 429
  carries an integer ``Retry-After`` >= 1; a refused call changes nothing. ``http_429``/``http_500``
  count the answers given; ``limit_stats`` what the limits let through.

Connections: each TCP connection a Web API call arrives on is numbered (1, 2, …, in the order they
were first used; ``Call.connection``) and ``api_connections`` counts the calls made on each. A client
that keeps its connections alive shows few; one that connects per call, one per call.

For load (benchmarks): per call the fake does O(1) work beyond parsing (``record_calls=False`` also stops
keeping every ``Call``); ``posted`` counts chat.postMessage messages per channel as they are stored and
``delivered_keys()`` counts metadata keys across the stored messages (one pass, when asked).

Close the Socket Mode handler before ``stop()``: a connected client answers the server's close frame
by reconnecting.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import random
import re
import secrets
import socket
import time
import uuid
import weakref
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import WSCloseCode, WSMsgType, web

DEFAULT_SCOPES: tuple[str, ...] = (
    "chat:write",
    "commands",
    "im:history",
    "im:write",
    "users:read",
    "users:read.email",
)
# slack_sdk reads these into its proxy setting and ignores NO_PROXY: unset them in tests
PROXY_ENV_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
APP_ID = "A0CADENCE"
VERIFICATION_TOKEN = "fake-verification-token"

# the bot-token scope each method needs (methods not listed need none)
_NEEDS_SCOPE = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.open": "im:write",
    "users.info": "users:read",
    "users.lookupByEmail": "users:read.email",
}
# conversations.history needs the history scope of the conversation's type (D: DM, G: group DM, C: channel)
_HISTORY_SCOPE = {"D": "im:history", "G": "mpim:history", "C": "channels:history"}
_MAX_HISTORY, _DEFAULT_HISTORY = 999, 100
# Slack's message-metadata guide: "letters, numbers, underscores, and hyphens, but not periods"
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_-]+")
# what a load balancer in front of an API typically answers when the service behind it fails
_HTML_500 = (
    "<html><head><title>500 Internal Server Error</title></head><body>Internal Server Error</body></html>"
)
# Block Kit limits (Slack's Block Kit reference)
_MAX_BLOCKS, _MAX_TEXT, _MAX_SECTION, _MAX_FIELD, _MAX_FIELDS = 50, 40_000, 3000, 2000, 10
_MAX_HEADER, _MAX_BUTTON_TEXT, _MAX_VALUE, _MAX_ELEMENTS, _MAX_CONTEXT = 150, 75, 2000, 25, 10
_MAX_VIEW = 250_000
_BLOCK_TYPES = frozenset(
    {"actions", "context", "divider", "file", "header", "image", "input", "rich_text", "section", "video"}
)
_TS_BASE = 1_700_000_000


@dataclass(frozen=True)
class Call:
    """One Web API request as Slack would have received it."""

    method: str
    body: dict[str, Any]  # query string + form fields + JSON body, merged
    headers: dict[str, str]  # names lower-cased
    form_encoded: bool  # Content-Type was application/x-www-form-urlencoded
    query: dict[str, str] = field(default_factory=dict)  # the URL query string alone
    verb: str = "POST"
    connection: int = 0  # the TCP connection it came on (SlackFake numbers them)


@dataclass
class _User:
    id: str
    email: str | None
    name: str
    real_name: str
    tz: str


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    request: web.BaseRequest
    number: int


@dataclass(frozen=True)
class _ResponseTarget:
    channel: str
    message_ts: str
    user: str


class _Refusal(Exception):
    """A Web API error answer: ``{"ok": false, "error": error, **extra}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error, self.extra = error, extra


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str | int) and str(value).lower() in {"1", "true"})


def _channel_type(channel: str) -> str:
    return {"D": "im", "G": "group", "C": "channel"}.get(channel[:1], "im")


def _json_field(value: Any, error: str) -> Any:
    """Blocks, attachments and views arrive as JSON text in form bodies, as JSON values in JSON bodies."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _Refusal(error) from None
    return value


def _metadata(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the metadata to keep, or None for none; a warning) for a request's ``metadata`` argument."""
    value = _json_field(value, "invalid_metadata_format")
    if value is None or value == {} or value == "":
        return None, None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("event_type"), str)
        or not isinstance(value.get("event_payload"), dict)
    ):
        raise _Refusal("invalid_metadata_format")
    if not _EVENT_TYPE.fullmatch(value["event_type"]):
        return None, "invalid_metadata_schema"  # a warning: the message is posted without it
    return {"event_type": value["event_type"], "event_payload": value["event_payload"]}, None


def _cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _cursor_ts(cursor: str) -> float:
    try:
        kind, _, ts = base64.b64decode(cursor.encode(), validate=True).decode().partition(":")
        if kind != "next_ts":
            raise ValueError(kind)
        return float(ts)
    except ValueError:
        raise _Refusal("invalid_cursor") from None


def _ts_arg(value: Any, error: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Refusal(error) from None


@dataclass
class _Bucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``max(rate, 1)`` (the burst)."""

    rate: float
    tokens: float
    at: float

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: there is one now); refills first."""
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class LimitStats:
    """What ``SlackFake.limit`` let through and refused (times from the fake's clock)."""

    admitted: int = 0
    refused: int = 0
    first: float | None = None  # when the first admitted call came
    last: float | None = None  # when the last admitted call came
    per_channel: Counter[str] = field(default_factory=Counter)  # admitted calls per channel

    def achieved_per_s(self) -> float | None:
        """Admitted calls per second between the first and the last (None below two calls).

        A token bucket admits at most ``burst + rate x elapsed`` calls, so this is at most
        ``rate + (burst - 1) / elapsed``: a run that keeps the limit saturated for much longer than the
        burst sees it approach the rate; more than that bound would mean the limit leaks.
        """
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.admitted - 1) / (self.last - self.first)


@dataclass
class _Limits:
    per_s: float | None
    per_channel_per_s: float | None
    methods: frozenset[str]
    overall: _Bucket | None = None
    channels: dict[str, _Bucket] = field(default_factory=dict)
    stats: LimitStats = field(default_factory=LimitStats)


@dataclass
class _Chaos:
    rate_429: float
    rate_500: float
    retry_after: int
    methods: frozenset[str]
    rng: random.Random
    body_500: Literal["html", "json", "bad_json"]


def _block_problems(blocks: Any) -> list[str]:
    """What Slack would refuse in ``blocks`` (the common limits, not the whole Block Kit schema)."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    problems: list[str] = []
    if len(blocks) > _MAX_BLOCKS:
        problems.append(f"more than {_MAX_BLOCKS} blocks")
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            problems.append(f"blocks[{i}]: unknown block type")
            continue
        kind = block["type"]
        text = block.get("text")
        if kind == "section":
            if text is None and not block.get("fields"):
                problems.append(f"blocks[{i}]: section needs text or fields")
            if isinstance(text, dict) and len(str(text.get("text", ""))) > _MAX_SECTION:
                problems.append(f"blocks[{i}].text: longer than {_MAX_SECTION}")
            fields = block.get("fields") or []
            if len(fields) > _MAX_FIELDS:
                problems.append(f"blocks[{i}].fields: more than {_MAX_FIELDS}")
            problems += [
                f"blocks[{i}].fields[{j}]: longer than {_MAX_FIELD}"
                for j, f in enumerate(fields)
                if len(str(f.get("text", ""))) > _MAX_FIELD
            ]
        elif kind == "header":
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                problems.append(f"blocks[{i}].text: header text must be plain_text")
            elif len(str(text.get("text", ""))) > _MAX_HEADER:
                problems.append(f"blocks[{i}].text: longer than {_MAX_HEADER}")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not elements or len(elements) > _MAX_ELEMENTS:
                problems.append(f"blocks[{i}].elements: 1 to {_MAX_ELEMENTS} elements")
            seen: set[str] = set()
            for j, element in enumerate(elements):
                action_id = str(element.get("action_id", ""))
                if action_id and action_id in seen:
                    problems.append(f"blocks[{i}].elements[{j}]: duplicate action_id {action_id}")
                seen.add(action_id)
                if element.get("type") == "button":
                    label = element.get("text") or {}
                    if (
                        label.get("type") != "plain_text"
                        or len(str(label.get("text", ""))) > _MAX_BUTTON_TEXT
                    ):
                        problems.append(
                            f"blocks[{i}].elements[{j}].text: plain_text up to {_MAX_BUTTON_TEXT}"
                        )
                    if len(str(element.get("value", ""))) > _MAX_VALUE:
                        problems.append(f"blocks[{i}].elements[{j}].value: longer than {_MAX_VALUE}")
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > _MAX_CONTEXT:
                problems.append(f"blocks[{i}].elements: 1 to {_MAX_CONTEXT} elements")
    return problems


class SlackFake:
    """Slack's Web API, Socket Mode and response_url endpoints on 127.0.0.1, port 0."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        team_id: str = "T0CADENCE",
        bot_user_id: str = "UBOT",
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        record_calls: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``record_calls=False`` keeps no ``Call`` (``call_counts`` still counts); ``clock`` (seconds)
        drives ``limit``: a test can pass a frozen one."""
        self.team_id, self.bot_user_id, self.scopes = team_id, bot_user_id, tuple(scopes)
        self.bot_id = "B" + bot_user_id[1:]
        self.app_id = APP_ID
        self.record_calls, self.clock = record_calls, clock
        self.calls: list[Call] = []
        self.call_counts: Counter[str] = Counter()  # method -> calls received (also when not recorded)
        self.api_connections: Counter[int] = Counter()  # connection number -> Web API calls made on it
        # the live connections' numbers (by transport: a client port may be reused by a later one)
        self._connection_numbers: weakref.WeakKeyDictionary[asyncio.BaseTransport, int] = (
            weakref.WeakKeyDictionary()
        )
        self._connection_count = itertools.count(1)
        self.http_429 = 0  # answers given with HTTP 429, whatever the cause
        self.http_500 = 0  # answers given with HTTP 5xx, whatever the cause
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.posted: Counter[str] = Counter()  # channel -> messages stored by chat.postMessage
        self.ephemerals: list[dict[str, Any]] = []  # chat.postEphemeral bodies, as received
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.views_opened: list[dict[str, Any]] = []  # views.open bodies: {"trigger_id", "view", ...}
        self.views_published: list[dict[str, Any]] = []  # views.publish bodies: {"user_id", "view", ...}
        self.envelopes: list[dict[str, Any]] = []  # envelope frames sent, in order
        self.acks: dict[str, dict[str, Any]] = {}  # envelope_id -> first ack frame
        self.ack_latency: dict[str, float] = {}
        self.received_frames: list[dict[str, Any]] = []  # every JSON text frame the clients sent
        self.connections_opened = 0  # successful apps.connections.open calls
        self.connections_accepted = 0  # WebSockets that got a hello
        self._users: dict[str, _User] = {}
        for email, user_id in (users or {}).items():
            self.add_user(user_id, email=email)
        self._open_channels: set[str] = set()
        self._tickets: set[str] = set()
        self._triggers: dict[str, bool] = {}  # trigger_id -> already exchanged
        self._targets: dict[str, _ResponseTarget] = {}  # response_url id -> what it answers
        self._throttled: dict[str, list[int]] = defaultdict(list)
        self._failures: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self._lost: dict[str, list[str]] = defaultdict(list)
        self._stalls: dict[str, list[float]] = defaultdict(list)
        self._chaos: _Chaos | None = None
        self._limits: _Limits | None = None
        self._history: dict[str, list[str]] = defaultdict(list)  # channel -> ts of its messages, oldest first
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._sockets: list[_Connection] = []
        self._current: _Connection | None = None
        self._sent_at: dict[str, float] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "conversations.open": self._conversations_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.history": self._conversations_history,
            "views.open": self._views_open,
            "views.publish": self._views_publish,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.info": self._users_info,
        }

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        app.router.add_post("/response/{rid}", self._response_url)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        for conn in list(self._sockets):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackFake:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("SlackFake is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    # ---- workspace ----------------------------------------------------------------------------

    def add_user(self, user_id: str, *, email: str | None = None, tz: str = "UTC") -> None:
        """A person in the workspace (``users`` in the constructor adds people with an email)."""
        local = (email or user_id).split("@")[0]
        real_name = " ".join(p.capitalize() for p in local.replace("_", ".").split(".")) if email else user_id
        self._users[user_id] = _User(user_id, email, local.lower(), real_name, tz)

    def _ensure_user(self, user: str) -> None:
        """Someone who clicks or writes exists; without an email unless added with one."""
        if user not in self._users and user != self.bot_user_id:
            self.add_user(user)

    def dm_channel(self, user: str) -> str:
        return "D" + user

    def messages_to(self, user: str) -> list[dict[str, Any]]:
        channel = self.dm_channel(user)
        return [m for (ch, _), m in self.messages.items() if ch == channel]

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def delivered_keys(self, event_type: str = "cadence_outbox", field: str = "key") -> Counter[str]:
        """How many stored messages carry each ``metadata.event_payload[field]`` of ``event_type``.

        A count above 1 is a message delivered twice. One pass over the messages, when asked.
        """
        keys: Counter[str] = Counter()
        for message in self.messages.values():
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == event_type and field in metadata.get("event_payload", {}):
                keys[str(metadata["event_payload"][field])] += 1
        return keys

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls of ``method`` get HTTP 429 + Retry-After and ``ratelimited``."""
        self._throttled[method].extend([retry_after] * times)

    def fail(self, method: str, error: str, *, times: int = 1, status: int = 200) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        self._failures[method].extend([(error, status)] * times)

    def lose_response(
        self, method: str, *, times: int = 1, how: Literal["disconnect", "fatal_error"] = "disconnect"
    ) -> None:
        """The next ``times`` successful calls of ``method`` take effect, but their answer is lost.

        ``disconnect``: the connection is closed instead of answering (the client sees the server
        disconnect); ``fatal_error``: HTTP 500 ``{"ok": false, "error": "fatal_error"}``, which Slack
        documents as "some aspect of the operation" possibly having succeeded. The sender cannot tell
        whether the message was posted: the in-doubt case.
        """
        self._lost[method].extend([how] * times)

    def stall(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` take effect, then wait ``seconds`` before answering.

        For a client's timeout: it gives up before the answer comes, though the call was made.
        """
        self._stalls[method].extend([seconds] * times)

    def chaos(
        self,
        rate_429: float,
        rate_500: float,
        *,
        retry_after: int = 1,
        seed: int | None = None,
        methods: Iterable[str] = ("chat.postMessage",),
        body_500: Literal["html", "json", "bad_json"] = "html",
    ) -> None:
        """From now on each call of ``methods`` is refused at random, until ``chaos(0, 0)``.

        One draw ``r`` in [0, 1) per call: ``r < rate_429`` is HTTP 429 ``ratelimited`` with
        ``Retry-After: retry_after``; else ``r < rate_429 + rate_500`` is HTTP 500 (``body_500``: an HTML
        page, as a load balancer sends; ``{"ok": false, "error": "internal_error"}``; or ``bad_json``, that
        page labelled ``application/json``, as a misconfigured proxy sends). Nothing is stored for a
        refused call. A ``seed`` makes the sequence repeatable (``random.Random(seed)``).
        """
        if rate_429 < 0 or rate_500 < 0 or rate_429 + rate_500 > 1:
            raise ValueError("rates are probabilities whose sum is at most 1")
        if retry_after < 1:
            raise ValueError("Retry-After is a whole number of seconds, at least 1")
        self._chaos = _Chaos(
            rate_429, rate_500, retry_after, frozenset(methods), random.Random(seed), body_500
        )

    def limit(
        self,
        per_s: float | None,
        per_channel_per_s: float | None,
        *,
        methods: Iterable[str] = ("chat.postMessage",),
    ) -> LimitStats:
        """Enforce rates on ``methods`` from now on (``None``: no such limit); returns the new stats.

        Token buckets, one overall and one per channel (the request's ``channel``; a person's id counts
        as their DM): each fills at its rate up to a burst of ``max(rate, 1)`` calls and starts full. A
        call needs a token from both; if either is empty the call is answered HTTP 429 ``ratelimited``
        with ``Retry-After`` = the seconds until both have one, rounded up (at least 1), takes no token
        and stores nothing. Slack's chat.postMessage: about 1 per second per channel, plus an
        unpublished workspace-wide limit. ``limit(None, None)`` lifts the limits.
        """
        for rate in (per_s, per_channel_per_s):
            if rate is not None and rate <= 0:
                raise ValueError("a rate is a positive number of calls per second")
        if per_s is None and per_channel_per_s is None:
            self._limits = None
            return LimitStats()
        now = self.clock()
        overall = _Bucket(per_s, max(per_s, 1.0), now) if per_s is not None else None
        self._limits = _Limits(per_s, per_channel_per_s, frozenset(methods), overall)
        return self._limits.stats

    @property
    def limit_stats(self) -> LimitStats:
        """What the current ``limit`` admitted and refused (empty when there is none)."""
        return self._limits.stats if self._limits is not None else LimitStats()

    async def wait_calls(self, method: str, count: int = 1, timeout: float = 5) -> list[Call]:
        """Wait until ``method`` has been called at least ``count`` times; returns those calls."""
        await self._wait(lambda: self.call_counts[method] >= count, timeout, f"{count} x {method}")
        return self.calls_to(method)

    async def wait_responses(self, count: int = 1, timeout: float = 5) -> list[tuple[str, dict[str, Any]]]:
        await self._wait(lambda: len(self.responses) >= count, timeout, f"{count} response_url posts")
        return self.responses

    def _next_ts(self) -> str:
        micros = next(self._ts) * 100
        return f"{_TS_BASE + micros // 1_000_000}.{micros % 1_000_000:06d}"

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise TimeoutError(f"SlackFake: no {what} within {timeout}s") from None

    # ---- Web API ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        response = await self._dispatch(request)
        if response.status == 429:
            self.http_429 += 1
        elif response.status >= 500:
            self.http_500 += 1
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        query = dict(request.query)
        body: dict[str, Any] = dict(query)
        form_encoded = request.content_type == "application/x-www-form-urlencoded"
        bad_json = False
        if request.content_type == "application/json":
            raw = await request.text()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                body.update(parsed)
            else:
                bad_json = True
        elif request.body_exists:
            form = await request.post()
            body.update({k: v for k, v in form.items() if isinstance(v, str)})
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.call_counts[method] += 1
        connection = self._connection_number(request)
        self.api_connections[connection] += 1
        if self.record_calls:
            self.calls.append(Call(method, body, headers, form_encoded, query, request.method, connection))
        await self._notify()

        if bad_json:
            return web.json_response({"ok": False, "error": "invalid_json"})
        handler = self._methods.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method", "req_method": method})
        token = headers.get("authorization", "")
        token = token[7:].strip() if token.lower().startswith("bearer ") else str(body.get("token") or "")
        wanted = "xapp-" if method == "apps.connections.open" else "xoxb-"
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if not token.startswith(wanted):
            other = token.startswith(("xoxb-", "xoxp-", "xapp-"))
            return web.json_response(
                {"ok": False, "error": "not_allowed_token_type" if other else "invalid_auth"}
            )
        extra_headers = {} if wanted == "xapp-" else {"x-oauth-scopes": ",".join(self.scopes)}
        refused = self._injected(method, extra_headers) or self._limited(method, body, extra_headers)
        if refused is not None:
            return refused
        needed = self._needed_scope(method, body)
        if needed and needed not in self.scopes:
            answer: dict[str, Any] = {
                "ok": False,
                "error": "missing_scope",
                "needed": needed,
                "provided": ",".join(self.scopes),
            }
            return web.json_response(answer, headers=extra_headers)
        try:
            answer = handler(body)
        except _Refusal as refusal:
            answer = {"ok": False, "error": refusal.error, **refusal.extra}
        if self._stalls[method]:
            await self._notify()  # it took effect
            await asyncio.sleep(self._stalls[method].pop(0))
        if answer.get("ok") and self._lost[method]:
            await self._notify()  # it took effect
            if self._lost[method].pop(0) == "disconnect":
                assert request.transport is not None
                request.transport.close()
                return web.Response()  # never reaches the client
            return web.json_response({"ok": False, "error": "fatal_error"}, status=500)
        return web.json_response(answer, headers=extra_headers)

    def _connection_number(self, request: web.BaseRequest) -> int:
        """The number of the TCP connection ``request`` came on (0: already closed)."""
        transport = request.transport
        if transport is None:
            return 0
        number = self._connection_numbers.get(transport)
        if number is None:
            number = self._connection_numbers[transport] = next(self._connection_count)
        return number

    def _injected(self, method: str, headers: dict[str, str]) -> web.Response | None:
        """The answer of a scripted failure (``rate_limit``, ``fail``) or of ``chaos``, if any."""
        if self._throttled[method]:
            return self._ratelimited(self._throttled[method].pop(0), headers)
        if self._failures[method]:
            error, status = self._failures[method].pop(0)
            return web.json_response({"ok": False, "error": error}, status=status, headers=headers)
        chaos = self._chaos
        if chaos is None or method not in chaos.methods:
            return None
        draw = chaos.rng.random()
        if draw < chaos.rate_429:
            return self._ratelimited(chaos.retry_after, headers)
        if draw < chaos.rate_429 + chaos.rate_500:
            if chaos.body_500 == "json":
                return web.json_response({"ok": False, "error": "internal_error"}, status=500)
            kind = "application/json" if chaos.body_500 == "bad_json" else "text/html"
            return web.Response(status=500, text=_HTML_500, content_type=kind)
        return None

    def _limited(self, method: str, body: dict[str, Any], headers: dict[str, str]) -> web.Response | None:
        """429 if ``limit`` has no token for this call now; else takes the tokens and returns None."""
        limits = self._limits
        if limits is None or method not in limits.methods:
            return None
        now = self.clock()
        buckets = [limits.overall] if limits.overall is not None else []
        channel = str(body.get("channel") or "")
        if channel in self._users:
            channel = self.dm_channel(channel)
        if limits.per_channel_per_s is not None:
            rate = limits.per_channel_per_s
            buckets.append(limits.channels.setdefault(channel, _Bucket(rate, max(rate, 1.0), now)))
        wait = max((bucket.wait(now) for bucket in buckets), default=0.0)
        if wait > 0:
            limits.stats.refused += 1
            return self._ratelimited(max(1, math.ceil(wait)), headers)
        for bucket in buckets:
            bucket.tokens -= 1
        stats = limits.stats
        stats.admitted += 1
        stats.per_channel[channel] += 1
        stats.first = now if stats.first is None else stats.first
        stats.last = now
        return None

    @staticmethod
    def _ratelimited(retry_after: int, headers: dict[str, str]) -> web.Response:
        return web.json_response(
            {"ok": False, "error": "ratelimited"},
            status=429,
            headers={**headers, "Retry-After": str(retry_after)},
        )

    def _needed_scope(self, method: str, body: dict[str, Any]) -> str | None:
        if method == "conversations.history":
            return _HISTORY_SCOPE.get(str(body.get("channel") or "")[:1])
        return _NEEDS_SCOPE.get(method)

    def _auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://cadence-fake.slack.com/",
            "team": "Cadence (fake)",
            "user": "cadence",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, body: dict[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        self.connections_opened += 1
        return {"ok": True, "url": f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"}

    def _conversations_open(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel") or "")
        if channel:
            if channel not in self._open_channels:
                raise _Refusal("channel_not_found")
            return {"ok": True, "no_op": True, "already_open": True, "channel": {"id": channel}}
        ids = [u.strip() for u in str(body.get("users") or "").split(",") if u.strip()]
        if not ids:
            raise _Refusal("users_list_not_supplied")
        for user in ids:
            if user == self.bot_user_id and len(ids) == 1:
                raise _Refusal("cannot_dm_bot")
            if user not in self._users and user != self.bot_user_id:
                raise _Refusal("user_not_found")
        if len(ids) > 8:
            raise _Refusal("too_many_users")
        if len(ids) == 1:
            channel = self.dm_channel(ids[0])
        else:
            channel = "G" + hashlib.sha1(",".join(sorted(ids)).encode()).hexdigest()[:10].upper()
        already = channel in self._open_channels
        self._open_channels.add(channel)
        answer: dict[str, Any] = {"ok": True, "channel": {"id": channel}}
        if _truthy(body.get("return_im")):
            answer["channel"].update(
                {"created": _TS_BASE, "is_im": len(ids) == 1, "is_open": True, "user": ids[0], "priority": 0}
            )
        if already:
            answer.update({"no_op": True, "already_open": True})
        return answer

    def _resolve_channel(self, channel: Any) -> str:
        """The conversation a message goes to: an open one, or a person's id (their DM with the app)."""
        channel = str(channel or "")
        if channel in self._open_channels:
            return channel
        if channel[:1] in ("U", "W") and channel in self._users:
            self._open_channels.add(self.dm_channel(channel))
            return self.dm_channel(channel)
        raise _Refusal("channel_not_found")

    def _content(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(the message fields of a chat.* request, parsed; the warnings to answer with).

        ``metadata`` is in the fields only when the request has it: None when it is empty or was
        dropped (chat.update then removes the old metadata), else the checked metadata.
        """
        content: dict[str, Any] = {}
        warnings: list[str] = []
        if "text" in body:
            content["text"] = str(body["text"])
        if "blocks" in body:
            content["blocks"] = _json_field(body["blocks"], "invalid_blocks")
        if "attachments" in body:
            content["attachments"] = _json_field(body["attachments"], "invalid_attachments")
        if "thread_ts" in body:
            content["thread_ts"] = body["thread_ts"]
        if "metadata" in body:
            content["metadata"], warning = _metadata(body["metadata"])
            warnings += [warning] if warning else []
        return content, warnings

    @staticmethod
    def _warned(answer: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
        if warnings:
            answer["warning"] = ",".join(warnings)
            answer["response_metadata"] = {"warnings": warnings}
        return answer

    def _check_message(self, message: dict[str, Any]) -> None:
        if not message.get("text") and not message.get("blocks") and not message.get("attachments"):
            raise _Refusal("no_text")
        if len(message.get("text") or "") > _MAX_TEXT:
            raise _Refusal("msg_too_long")
        problems = _block_problems(message.get("blocks") or [])
        if problems:
            raise _Refusal(
                "invalid_blocks",
                errors=problems,
                response_metadata={"messages": [f"[ERROR] {p}" for p in problems]},
            )

    def _bot_message(self, content: dict[str, Any], ts: str) -> dict[str, Any]:
        content = {k: v for k, v in content.items() if not (k == "metadata" and v is None)}
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": "",
            "blocks": [],
            "ts": ts,
        }
        message.update(content)
        return message

    def _store(self, channel: str, message: dict[str, Any]) -> None:
        """A new message in ``channel`` (its ts is newer than every other one's)."""
        self.messages[(channel, message["ts"])] = message
        self._history[channel].append(message["ts"])

    def _chat_post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(body.get("channel"))
        content, warnings = self._content(body)
        self._check_message(content)
        ts = self._next_ts()
        message = self._bot_message(content, ts)
        self._store(channel, message)
        self.posted[channel] += 1
        return self._warned({"ok": True, "channel": channel, "ts": ts, "message": dict(message)}, warnings)

    def _chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(body.get("channel") or ""), str(body.get("ts") or "")
        if (channel, ts) not in self.messages:
            raise _Refusal("message_not_found" if channel in self._open_channels else "channel_not_found")
        content, warnings = self._content(body)
        # fields left out keep their old value (Slack: omitted blocks/attachments/metadata are retained)
        message = {**self.messages[(channel, ts)], **content}
        if "metadata" in message and message["metadata"] is None:
            del message["metadata"]
        self._check_message(message)
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self.messages[(channel, ts)] = message
        answer = {"ok": True, "channel": channel, "ts": ts, "text": message["text"], "message": dict(message)}
        return self._warned(answer, warnings)

    def _conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        """Newest first, ``limit`` of them; O(limit) however long the channel's history is."""
        channel = str(body.get("channel") or "")
        if channel not in self._open_channels:
            raise _Refusal("channel_not_found")
        try:
            limit = int(body.get("limit") or _DEFAULT_HISTORY)
        except (TypeError, ValueError):
            raise _Refusal("invalid_limit") from None
        limit = min(max(limit, 1), _MAX_HISTORY)
        inclusive = _truthy(body.get("inclusive"))
        latest = _ts_arg(body.get("latest"), "invalid_ts_latest")
        oldest = _ts_arg(body.get("oldest"), "invalid_ts_oldest")
        if body.get("cursor"):
            latest, inclusive = _cursor_ts(str(body["cursor"])), False
        stamps = self._history.get(channel, [])
        top = len(stamps)
        if latest is not None:
            top = (bisect_right if inclusive else bisect_left)(stamps, latest, key=float)
        bottom = 0
        if oldest is not None:
            bottom = (bisect_left if inclusive else bisect_right)(stamps, oldest, key=float)
        with_metadata = _truthy(body.get("include_all_metadata"))
        found: list[dict[str, Any]] = []
        has_more = False
        for i in range(top - 1, bottom - 1, -1):
            message = self.messages.get((channel, stamps[i]))
            if message is None:
                continue  # deleted
            if len(found) == limit:
                has_more = True
                break
            shown = dict(message)
            if not with_metadata:
                shown.pop("metadata", None)
            found.append(shown)
        return {
            "ok": True,
            "messages": found,
            "has_more": has_more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": _cursor(found[-1]["ts"]) if has_more else ""},
        }

    def _chat_post_ephemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        self._resolve_channel(body.get("channel"))
        if str(body.get("user") or "") not in self._users:
            raise _Refusal("user_not_found")
        self._check_message(self._content(body)[0])
        self.ephemerals.append(dict(body))
        return {"ok": True, "message_ts": self._next_ts()}

    def _view(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        view = _json_field(body.get("view"), "invalid_arguments")
        if not isinstance(view, dict) or view.get("type") != kind:
            raise _Refusal("invalid_arguments")
        if len(json.dumps(view)) > _MAX_VIEW:
            raise _Refusal("view_too_large")
        return view

    def _full_view(self, view: dict[str, Any]) -> dict[str, Any]:
        view_id = f"V0CAD{next(self._ids):06d}"
        return {
            "id": view_id,
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "state": {"values": {}},
            "hash": secrets.token_hex(8),
            "root_view_id": view_id,
            "previous_view_id": None,
            **view,
        }

    def _views_open(self, body: dict[str, Any]) -> dict[str, Any]:
        trigger = str(body.get("trigger_id") or "")
        view = self._view(body, "modal")
        if trigger not in self._triggers:
            raise _Refusal("invalid_trigger_id")
        if self._triggers[trigger]:
            raise _Refusal("exchanged_trigger_id")
        self._triggers[trigger] = True
        self.views_opened.append({**body, "view": view})
        return {"ok": True, "view": self._full_view(view)}

    def _views_publish(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("user_id"):
            raise _Refusal("invalid_arguments")
        view = self._view(body, "home")
        self.views_published.append({**body, "view": view})
        return {"ok": True, "view": self._full_view(view)}

    def _user_json(self, user: _User) -> dict[str, Any]:
        offset = int(datetime.now(ZoneInfo(user.tz)).utcoffset().total_seconds())  # type: ignore[union-attr]
        profile: dict[str, Any] = {
            "real_name": user.real_name,
            "display_name": user.name,
            "team": self.team_id,
        }
        if user.email is not None and "users:read.email" in self.scopes:
            profile["email"] = user.email
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": False,
            "real_name": user.real_name,
            "tz": user.tz,
            "tz_label": user.tz,
            "tz_offset": offset,
            "profile": profile,
            "is_bot": False,
            "is_app_user": False,
            "updated": _TS_BASE,
        }

    def _bot_json(self) -> dict[str, Any]:
        return {
            "id": self.bot_user_id,
            "team_id": self.team_id,
            "name": "cadence",
            "deleted": False,
            "real_name": "Cadence",
            "profile": {"real_name": "Cadence", "bot_id": self.bot_id, "team": self.team_id},
            "is_bot": True,
            "is_app_user": False,
            "updated": _TS_BASE,
        }

    def _users_lookup_by_email(self, body: dict[str, Any]) -> dict[str, Any]:
        email = str(body.get("email") or "").strip().lower()
        if not email:
            raise _Refusal("invalid_arguments")
        for user in self._users.values():
            if user.email is not None and user.email.lower() == email:
                return {"ok": True, "user": self._user_json(user)}
        raise _Refusal("users_not_found")

    def _users_info(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id = str(body.get("user") or "")
        if user_id == self.bot_user_id:
            return {"ok": True, "user": self._bot_json()}
        if user_id not in self._users:
            raise _Refusal("user_not_found")
        return {"ok": True, "user": self._user_json(self._users[user_id])}

    # ---- response_url -------------------------------------------------------------------------

    def _new_response_url(self, channel: str, message_ts: str, user: str) -> str:
        rid = secrets.token_hex(12)
        self._targets[rid] = _ResponseTarget(channel, message_ts, user)
        return f"{self.url}/response/{rid}"

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        target = self._targets.get(request.match_info["rid"])
        if target is None:
            return web.Response(status=404, text="expired_url")
        try:
            body = json.loads(await request.text())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        self.responses.append((request.path, body))
        original = (target.channel, target.message_ts)
        if _truthy(body.get("delete_original")):
            self.messages.pop(original, None)
        elif _truthy(body.get("replace_original")) and original in self.messages:
            content = {k: v for k, v in body.items() if k in ("text", "blocks", "attachments")}
            self.messages[original] = {**self.messages[original], **content}
        elif body.get("response_type") == "in_channel":
            ts = self._next_ts()
            content = {k: v for k, v in body.items() if k in ("text", "blocks", "attachments")}
            self._store(target.channel, self._bot_message(content, ts))
        await self._notify()
        return web.Response(text="ok")

    # ---- Socket Mode --------------------------------------------------------------------------

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(ws, request, len(self._sockets) + 1)
        self._sockets.append(conn)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": self.app_id},
                }
            )
            async with self._changed:
                self._current = conn
                self.connections_accepted += 1
                self._changed.notify_all()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_frame(msg.data)
        finally:
            self._sockets.remove(conn)
            async with self._changed:
                if self._current is conn:
                    self._current = None
                self._changed.notify_all()
        return ws

    async def _on_frame(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        self.received_frames.append(frame)
        envelope_id = frame.get("envelope_id")
        if isinstance(envelope_id, str) and envelope_id not in self.acks:
            self.acks[envelope_id] = frame
            if envelope_id in self._sent_at:
                self.ack_latency[envelope_id] = asyncio.get_running_loop().time() - self._sent_at[envelope_id]
        await self._notify()

    async def wait_connected(self, timeout: float = 5) -> None:
        """A Socket Mode client is connected (it has been sent hello) since the last disconnect/drop."""
        await self._wait(lambda: self._current is not None, timeout, "Socket Mode connection")

    async def send_envelope(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
    ) -> str:
        """Push an envelope to the connected client (waiting up to 5 s for one); returns envelope_id.

        ``accepts_response_payload`` defaults to what Slack sends: true for slash commands and
        view submissions, false otherwise.
        """
        await self.wait_connected()
        assert self._current is not None
        envelope_id = envelope_id or str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands" or payload.get("type") == "view_submission"
        frame = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        self.envelopes.append(frame)
        self._sent_at[envelope_id] = asyncio.get_running_loop().time()
        await self._current.ws.send_json(frame)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 5) -> dict[str, Any]:
        await self._wait(lambda: envelope_id in self.acks, timeout, f"ack for envelope {envelope_id}")
        return self.acks[envelope_id]

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to move (Slack's ``disconnect`` frame); it must call apps.connections.open again.

        The old socket stays open until the client closes it; ``wait_connected`` waits for the new one.
        """
        conn = self._require_connection()
        await conn.ws.send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        )
        async with self._changed:
            self._current = None

    async def drop_socket(self) -> None:
        """Cut the current WebSocket without a close frame, as a network drop would.

        slack_sdk notices on its next monitor tick (``ping_interval`` seconds, 10 by default in Bolt's
        handler) and reconnects through apps.connections.open.
        """
        conn = self._require_connection()
        async with self._changed:
            self._current = None
        transport = conn.request.transport
        if transport is not None:
            transport.abort()

    def _require_connection(self) -> _Connection:
        if self._current is None:
            raise RuntimeError("no Socket Mode client is connected")
        return self._current

    # ---- payload builders ---------------------------------------------------------------------

    def _prepare(self, user: str, channel: str | None) -> str:
        self._ensure_user(user)
        channel = channel or self.dm_channel(user)
        self._open_channels.add(channel)
        return channel

    def _new_trigger(self) -> str:
        n = next(self._ids)
        trigger = f"{_TS_BASE + n}.{1000 + n}.{secrets.token_hex(16)}"
        self._triggers[trigger] = False
        return trigger

    def message_event(self, user: str, text: str, *, channel: str | None = None) -> dict[str, Any]:
        """An ``events_api`` payload: ``user`` wrote ``text`` (by default in their DM with the app)."""
        channel = self._prepare(user, channel)
        ts = self._next_ts()
        return {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": {
                "client_msg_id": str(uuid.uuid4()),
                "type": "message",
                "text": text,
                "user": user,
                "ts": ts,
                "blocks": [
                    {
                        "type": "rich_text",
                        "block_id": secrets.token_hex(3),
                        "elements": [
                            {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                        ],
                    }
                ],
                "team": self.team_id,
                "channel": channel,
                "event_ts": ts,
                "channel_type": _channel_type(channel),
            },
            "type": "event_callback",
            "event_id": f"Ev0CAD{next(self._ids):06d}",
            "event_time": int(float(ts)),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def _clicked(
        self, channel: str, message_ts: str, action_id: str, value: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
        """(message, element, block_id) a click most plausibly came from."""
        if message_ts:
            candidates = (
                [self.messages[(channel, message_ts)]] if (channel, message_ts) in self.messages else []
            )
        else:
            candidates = [m for (ch, _), m in reversed(self.messages.items()) if ch == channel]
        for exact in (True, False):
            for message in candidates:
                for block in message.get("blocks") or []:
                    for element in block.get("elements") or []:
                        if element.get("action_id") == action_id and (
                            not exact or element.get("value") == value
                        ):
                            return message, element, str(block.get("block_id") or secrets.token_hex(3))
        return (candidates[0] if candidates else None), None, secrets.token_hex(3)

    def block_action(
        self,
        user: str,
        value: str,
        *,
        action_id: str = "a0",
        message_ts: str = "",
        channel: str | None = None,
    ) -> dict[str, Any]:
        """An ``interactive`` ``block_actions`` payload: ``user`` clicked a button worth ``value``.

        Without ``message_ts`` the click comes from the newest message in the channel that has a
        matching button (else the newest message there); the message is included as Slack does.
        """
        channel = self._prepare(user, channel)
        message, element, block_id = self._clicked(channel, message_ts, action_id, value)
        if message is not None:
            message_ts = message["ts"]
        label = (element or {}).get("text") or {"type": "plain_text", "text": value[:_MAX_BUTTON_TEXT]}
        name = self._users[user].name if user in self._users else user.lower()
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": name, "name": name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": VERIFICATION_TOKEN,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": self._new_trigger(),
            "team": {"id": self.team_id, "domain": "cadence-fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else channel},
            "state": {"values": {}},
            "response_url": self._new_response_url(channel, message_ts, user),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": label,
                    "value": value,
                    "type": "button",
                    "action_ts": self._next_ts(),
                }
            ],
        }
        if message is not None:
            payload["message"] = dict(message)
        return payload

    def slash_command(self, user: str, text: str, *, command: str = "/cadence") -> dict[str, Any]:
        """A ``slash_commands`` payload: ``user`` typed ``command text`` in their DM with the app."""
        channel = self._prepare(user, None)
        name = self._users[user].name if user in self._users else user.lower()
        return {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": "cadence-fake",
            "channel_id": channel,
            "channel_name": "directmessage",
            "user_id": user,
            "user_name": name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": self._new_response_url(channel, "", user),
            "trigger_id": self._new_trigger(),
        }
