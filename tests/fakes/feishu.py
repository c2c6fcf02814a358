"""A Feishu (Lark) server on 127.0.0.1 for the real lark-oapi SDK: long connection, IM and contact APIs.

Wire behaviour, checked against the installed lark-oapi 1.7.5 (``lark_oapi/ws``, ``core/token``,
``event/dispatcher_handler.py``, ``api/im/v1``, ``api/contact/v3``):

* The fake serves from its own thread and event loop. lark-oapi fetches the tenant token with blocking
  ``requests`` even inside ``acreate``/``apatch`` (``core/token/auth.py::verify``) and ``ws.Client``
  calls the endpoint with ``requests`` too: a server on the caller's loop would deadlock. Its methods are
  still called from the test's loop (``await fake.push_text(...)``); state is guarded by one lock.
* Every answer is JSON (the SDK parses each with ``JSON.unmarshal``): ``{"code": 0, "msg": "success",
  "data": {...}}``, errors ``{"code": N, "msg": ..., "error": {"log_id": ...}}`` with HTTP 400 (429 for
  the per-app frequency limit), and an ``X-Tt-Logid`` header (``BaseResponse.get_log_id``).
* ``POST /callback/ws/endpoint`` (``ws/client.py::_get_conn_url``): JSON ``{"AppID", "AppSecret"}``.
  Answers ``data.URL`` = ``ws://127.0.0.1:<port>/ws?device_id=…&service_id=<int>&ticket=…`` (the SDK
  ``parse_qs``-es ``device_id`` and ``service_id``; each ticket is good once, as the SDK asks for a new
  URL on every connect) and ``data.ClientConfig`` with all four keys (``_configure`` copies them
  verbatim; a missing one breaks the SDK's ping/reconnect sleeps). Wrong AppID/AppSecret: HTTP 200
  ``code`` 1000040344, which the SDK raises as a fatal ``ClientException`` (codes 1 and 1000040343 would
  be retried). A bad or reused ticket fails the handshake with HTTP 403 and the ``handshake-status`` /
  ``handshake-msg`` headers (the SDK raises ``ClientException(403, …)``).
* ``/ws``: binary protobuf ``pbbp2.Frame`` (proto2, encoded here by hand: SeqID=1, LogID=2, service=3,
  method=4 (0 CONTROL, 1 DATA), headers=5 {key=1, value=2}, payload_encoding=6, payload_type=7,
  payload=8, LogIDNew=9; the four numeric fields are required, so always written). A CONTROL ``ping``
  (the SDK sends one on connect and every ``PingInterval``) is answered with a CONTROL ``pong`` whose
  payload is the ClientConfig JSON (the SDK re-applies it). Events go out as DATA frames with headers
  ``type=event``, ``message_id``, ``trace_id``, ``sum=1``, ``seq=0`` (all five are required by
  ``_handle_data_frame``) and the schema-2.0 event JSON as payload; ``type=card`` frames would be
  dropped by the SDK, so card actions (``card.action.trigger``) travel as ``type=event`` too. The ack is
  the same frame echoed with a ``biz_rt`` header and payload ``{"code": 200}`` /
  ``{"code": 200, "data": "<base64 of the handler's JSON answer>"}`` / ``{"code": 500}`` (handler raised,
  or no processor for the event type). Over the long connection the SDK checks no token, signature or
  encryption (``_do_without_validation``). With several connections each event goes to one of them,
  chosen at random (Feishu's cluster mode). An event whose connection closes before it is acked fails
  the push with ``ConnectionResetError`` (Feishu would re-push it; the fake leaves that to the test).
* Event builders (``text_event``, ``menu_event``, ``card_action_event``; ``push_*`` and ``webhook_body``
  use them): an unknown sender is added to the directory (name = open_id), so the bot can answer them.
  ``im.message.receive_v1``: ``sender.sender_id{open_id, union_id, user_id}``, ``sender_type: user``,
  ``message{message_id, chat_id (the sender's p2p chat), chat_type, message_type: text, content}``;
  ``application.bot.menu_v6``: ``operator{operator_name, operator_id{…}}``, ``event_key``, ``timestamp``;
  ``card.action.trigger``: ``operator{tenant_key, open_id, user_id, union_id}``, ``token``,
  ``action{value, tag[, name, form_value]}``, ``host: im_message``, ``context{open_message_id,
  open_chat_id}``. The header carries ``token`` = the verification token, ``app_id`` and ``tenant_key``.
* ``POST /open-apis/auth/v3/tenant_access_token/internal``: ``{"app_id", "app_secret"}`` →
  ``{"code": 0, "tenant_access_token": "t-…", "expire": 7200}``; wrong credentials → code 10014. The SDK
  caches the token process-wide for ``expire - 600`` s under ``self_tenant_token:{app_id}`` and never
  refreshes it on 99991663: after ``expire_tokens`` it keeps failing until its cache is cleared.
* Authorization (every ``/open-apis`` call but the token one): ``Bearer t-…``. Missing → HTTP 400
  99991661; unknown or expired → HTTP 400 99991663.
* ``POST /open-apis/im/v1/messages?receive_id_type=open_id|user_id|union_id|email|chat_id``, body
  ``{"receive_id", "msg_type", "content": "<JSON text>", "uuid"?}``. Checked: the type; a known, not
  resigned recipient (230013, "not in the bot's availability range"; ``email`` matches ``email`` or
  ``enterprise_email``); ``msg_type`` text/post/interactive and ``content`` a JSON object (text: with a
  string ``text``) — else 230001; ``uuid`` ≤ 50 characters (230001); size (text 150 KB, post and card
  30 KB: 230025). A ``uuid`` seen within the last hour (fake clock) answers the original message's data
  and stores nothing. The answer's ``data`` is a ``CreateMessageResponseBody`` (message_id ``om_…``,
  chat_id ``oc_…`` — a person's p2p chat is stable —, msg_type, create_time/update_time as millisecond
  strings, sender ``{id: app_id, id_type: app_id, sender_type: app}``, body.content).
* ``PATCH /open-apis/im/v1/messages/{message_id}``, body ``{"content"}``: unknown id → 230011; not an
  interactive message → 230001; the old or the new card not shared → 230099 (the ``msg`` says which).
  A card is shared when ``config.update_multi`` is true; a schema-2.0 card without the key counts as
  shared (Feishu's card JSON 2.0 defaults it to true and supports nothing else), a 1.0 card does not.
  Each accepted PATCH's parsed content is appended to ``SentMessage.updates``. ``GET`` of a message
  answers ``data.items[0]`` as a ``Message`` (latest content).
* Contact v3 (``user_id_type`` open_id/user_id/union_id, ``department_id_type``
  open_department_id/department_id; ids in answers follow them, ``leader_user_id`` included):
  ``GET users/{id}`` → ``data.user`` (unknown or removed → 41050); ``GET users/find_by_department``
  (people directly in the department, resigned ones left out); ``GET departments/{id}/children``
  (``fetch_child`` for all descendants; ``"0"`` is the root); both page with ``page_size`` (default 10,
  1..50, else 99992402) and an opaque ``page_token``/``has_more``; unknown department → 40004.
  ``POST users/batch_get_id`` ``{"emails", "mobiles", "include_resigned"}`` → ``data.user_list`` (an
  unknown or resigned email has no ``user_id``).
* Misbehaviour on demand: ``fail`` (the next calls to a path), ``expire_tokens``, ``limit`` (token buckets
  on message create + patch: per app → HTTP 429 ``{"code": 99991400}`` with ``x-ogw-ratelimit-limit``
  and ``x-ogw-ratelimit-reset`` (integer seconds ≥ 1); per recipient on create → HTTP 400
  ``{"code": 230020}`` without headers). A refused call changes nothing.
* Webhook mode (no server involved): ``webhook_body``/``url_verification_body`` build what Feishu posts:
  ``{"encrypt": base64(IV ‖ AES-256-CBC(PKCS7, key = SHA-256(encrypt_key)))}`` (or the plain JSON) and
  ``X-Lark-Signature = sha256_hex(timestamp + nonce + encrypt_key + body)``, as
  ``EventDispatcherHandler.do`` verifies them.

For load (benchmarks): per call O(1) work beyond parsing and answering (``record_calls=False`` keeps no
``Call``; ``call_counts`` still counts per path).

Stop every ``ws.Client`` before ``stop()``: a connected client answers the server's close by reconnecting.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import random
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSCloseCode, WSMsgType, web
from Crypto.Cipher import AES

from tests.fakes.threaded_server import ThreadedServer

# ws/enum.py, ws/const.py
_CONTROL, _DATA = 0, 1
_NO_CREDENTIAL = 1000040344
# error codes (Feishu's server-side error code list)
_MISSING_TOKEN, _INVALID_TOKEN = 99991661, 99991663
_APP_LIMIT, _USER_LIMIT = 99991400, 230020
_INVALID_PARAM, _NOT_IN_RANGE, _MESSAGE_GONE, _TOO_LONG, _CARD_ERROR = 230001, 230013, 230011, 230025, 230099
_FIELD_VALIDATION = 99992402
_NO_USER_AUTHORITY, _NO_DEPT_AUTHORITY = 41050, 40004
_BAD_SECRET = 10014
_RECEIVE_ID_TYPES = frozenset({"open_id", "user_id", "union_id", "email", "chat_id"})
_MSG_TYPES = frozenset({"text", "post", "interactive"})
_TEXT_LIMIT, _CARD_LIMIT = 150 * 1024, 30 * 1024
_UUID_WINDOW = 3600.0
_MAX_PAGE, _DEFAULT_PAGE = 50, 10
_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
_ENDPOINT_PATH = "/callback/ws/endpoint"
_INVALID_TOKEN_MSG = "Invalid access token for authorization. Please make a request with token attached."


# ---- protobuf (pbbp2.Frame), by hand ---------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


@dataclass
class _Frame:
    seq_id: int
    log_id: int
    service: int
    method: int
    headers: dict[str, str]
    payload: bytes = b""

    def encode(self) -> bytes:
        out = bytearray()
        for number, value in ((1, self.seq_id), (2, self.log_id), (3, self.service), (4, self.method)):
            out += _varint(number << 3) + _varint(value)
        for key, val in self.headers.items():
            out += _bytes_field(5, _bytes_field(1, key.encode()) + _bytes_field(2, val.encode()))
        if self.payload:
            out += _bytes_field(8, self.payload)
        return bytes(out)

    @staticmethod
    def decode(data: bytes) -> _Frame:
        frame = _Frame(0, 0, 0, 0, {})
        for number, value in _fields(data):
            if isinstance(value, int):
                if number == 1:
                    frame.seq_id = value
                elif number == 2:
                    frame.log_id = value
                elif number == 3:
                    frame.service = value
                elif number == 4:
                    frame.method = value
            elif number == 5:
                pair = dict(_fields(value))
                key, val = pair.get(1, b""), pair.get(2, b"")
                if isinstance(key, bytes) and isinstance(val, bytes):
                    frame.headers[key.decode()] = val.decode()
            elif number == 8:
                frame.payload = value
        return frame


# ---- public records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request as Feishu would have received it."""

    method: str  # HTTP verb
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON (None without a body)
    headers: dict[str, str]  # names lower-cased


@dataclass
class Ack:
    """A client's answer to a pushed event (``ws/model.py::Response``)."""

    code: int
    data: dict[str, Any] | None  # the base64-decoded JSON of the callback's answer, if any
    headers: dict[str, str]  # the ack frame's headers (type, message_id, trace_id, sum, seq, biz_rt)


@dataclass
class SentMessage:
    """A message the bot sent (``im/v1/messages`` create), with its later card updates."""

    message_id: str
    receive_id: str
    receive_id_type: str
    msg_type: str
    content: dict[str, Any]  # parsed from the request's JSON text
    uuid: str | None
    chat_id: str
    updates: list[dict[str, Any]] = field(default_factory=list)  # each accepted PATCH's parsed content
    created: float = 0.0  # fake clock
    open_id: str = ""  # the recipient's open_id
    create_time: str = ""  # milliseconds since the epoch, as Feishu answers it


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
    """What ``FeishuFake.limit`` let through and refused (times from the fake's clock)."""

    admitted: int = 0
    refused: int = 0
    first: float | None = None  # when the first admitted call came
    last: float | None = None  # when the last admitted call came
    per_user: Counter[str] = field(default_factory=Counter)  # admitted creates per recipient open_id
    refused_app: int = 0  # refused by the per-app bucket (HTTP 429)
    refused_user: int = 0  # refused by a per-user bucket (230020)

    def achieved_per_s(self) -> float | None:
        """Admitted calls per second between the first and the last (None below two calls).

        At most ``rate + (burst - 1) / elapsed``: a saturated run much longer than the burst approaches
        the rate; more than that bound would mean the limit leaks.
        """
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.admitted - 1) / (self.last - self.first)


@dataclass
class _Limits:
    per_app_per_s: float | None
    per_user_per_s: float | None
    app: _Bucket | None
    users: dict[str, _Bucket] = field(default_factory=dict)
    stats: LimitStats = field(default_factory=LimitStats)


@dataclass
class _User:
    open_id: str
    name: str
    email: str | None
    enterprise_email: str | None
    departments: tuple[str, ...]
    leader: str | None
    time_zone: str | None
    job_title: str
    user_id: str
    union_id: str
    en_name: str
    resigned: bool = False


@dataclass
class _Department:
    open_department_id: str
    department_id: str
    name: str
    parent: str  # open_department_id ("0": the root)
    leader: str | None  # open_id


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    device_id: str
    pending: set[str] = field(default_factory=set)  # frame message_ids awaiting an ack
    open: bool = True


class _Refusal(Exception):
    """An error answer: ``{"code": code, "msg": msg}`` with HTTP ``status``."""

    def __init__(self, code: int, msg: str, *, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status, self.headers = code, msg, status, headers or {}


_USER_FIELDS = frozenset(
    {
        "name",
        "email",
        "enterprise_email",
        "departments",
        "leader",
        "time_zone",
        "job_title",
        "user_id",
        "union_id",
        "en_name",
    }
)


def _suffix(open_id: str) -> str:
    return open_id[3:] if open_id.startswith("ou_") else open_id


def _page_size(query: dict[str, str]) -> int:
    raw = query.get("page_size") or str(_DEFAULT_PAGE)
    try:
        size = int(raw)
    except ValueError:
        raise _Refusal(_FIELD_VALIDATION, f"field validation failed: page_size {raw!r}") from None
    if not 1 <= size <= _MAX_PAGE:
        raise _Refusal(_FIELD_VALIDATION, f"field validation failed: page_size must be 1..{_MAX_PAGE}")
    return size


def _page_start(query: dict[str, str], kind: str) -> int:
    token = query.get("page_token") or ""
    if not token:
        return 0
    try:
        tag, _, offset = base64.urlsafe_b64decode(token.encode()).decode().rpartition(":")
        if tag != kind:
            raise ValueError(tag)
        return int(offset)
    except ValueError:
        raise _Refusal(_FIELD_VALIDATION, "field validation failed: page_token is invalid") from None


def _page(items: list[Any], query: dict[str, str], kind: str) -> tuple[list[Any], dict[str, Any]]:
    size, start = _page_size(query), _page_start(query, kind)
    chunk = items[start : start + size]
    more = start + size < len(items)
    meta: dict[str, Any] = {"has_more": more}
    if more:
        meta["page_token"] = base64.urlsafe_b64encode(f"{kind}:{start + size}".encode()).decode()
    return chunk, meta


def _card_shared(card: dict[str, Any]) -> bool:
    config = card.get("config")
    if isinstance(config, dict) and "update_multi" in config:
        return config["update_multi"] is True
    return str(card.get("schema", "")) == "2.0"


def _encrypt(encrypt_key: str, plaintext: bytes) -> str:
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = secrets.token_bytes(16)
    pad = 16 - len(plaintext) % 16
    cipher = AES.new(key, AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(plaintext + bytes([pad]) * pad)).decode()


class FeishuFake(ThreadedServer):
    """Feishu's long connection, IM, contact and token endpoints on 127.0.0.1, port 0, in a thread."""

    thread_name = "feishu-fake"

    def __init__(
        self,
        *,
        app_id: str = "cli_cadence_test",
        app_secret: str = "s3cr3t-app-secret-for-tests",
        verification_token: str = "v-token-for-tests",
        encrypt_key: str = "e-key-for-tests",
        tenant_key: str = "tenant-test",
        record_calls: bool = True,
        ping_interval: float = 120,
        reconnect_interval: float = 1,
        reconnect_nonce: float = 0,
        reconnect_count: int = -1,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        """The last arguments go into the ClientConfig the endpoint answers (Feishu: 120, 120, 30, -1:
        the fake reconnects fast by default); ``clock`` drives ``limit``, uuid dedupe and ``created``;
        ``seed`` the choice of connection for each pushed event."""
        self.app_id, self.app_secret, self.tenant_key = app_id, app_secret, tenant_key
        self.verification_token, self.encrypt_key = verification_token, encrypt_key
        self.record_calls, self.clock = record_calls, clock
        self.client_config: dict[str, float] = {
            "ReconnectCount": reconnect_count,
            "ReconnectInterval": reconnect_interval,
            "ReconnectNonce": reconnect_nonce,
            "PingInterval": ping_interval,
        }
        self.service_id = 33554678
        self.calls: list[Call] = []
        self.call_counts: Counter[str] = Counter()  # path -> calls (also when not recorded)
        self.messages: list[SentMessage] = []
        self.events: list[dict[str, Any]] = []  # payloads pushed, in order
        self.acks: dict[str, Ack] = {}  # event_id -> ack
        self.endpoint_calls = 0  # successful /callback/ws/endpoint answers
        self.token_requests = 0
        self.pings = 0
        self.http_429 = 0
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._users: dict[str, _User] = {}
        self._departments: dict[str, _Department] = {}
        self._chats: dict[str, str] = {}  # chat_id -> open_id (p2p)
        # lookups by other ids, rebuilt when the directory changed (O(1) per call otherwise)
        self._directory_version = 0
        self._indexed_version = -1
        self._index: dict[str, dict[str, _User]] = {}
        self._by_id: dict[str, SentMessage] = {}
        self._by_open_id: defaultdict[str, list[SentMessage]] = defaultdict(list)
        self._uuids: dict[str, SentMessage] = {}
        self._tokens: set[str] = set()
        self._expired: set[str] = set()
        self._tickets: set[str] = set()
        self._failures: list[list[Any]] = []  # [path_suffix, code, status, times left]
        self._limits: _Limits | None = None
        self._conns: list[_Conn] = []
        self._acks_pending: dict[str, tuple[asyncio.Future[Ack], _Conn]] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ---- lifecycle (tests/fakes/threaded_server.py) -----------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._http)

    @property
    def connections(self) -> int:
        """Long connections currently open (not counting ones ``drop_connections`` is closing)."""
        with self._lock:
            return len(self._conns)

    async def wait_connected(self, count: int = 1, timeout: float = 5) -> None:
        """At least ``count`` long connections are open."""
        await self._wait(lambda: len(self._conns) >= count, timeout, f"{count} long connection(s)")

    async def wait_endpoint_calls(self, count: int, timeout: float = 5) -> None:
        await self._wait(lambda: self.endpoint_calls >= count, timeout, f"{count} endpoint calls")

    async def wait_messages(
        self, open_id: str | None = None, count: int = 1, timeout: float = 5
    ) -> list[SentMessage]:
        """Wait until at least ``count`` messages went (to ``open_id``, or to anyone); returns them."""
        if open_id is None:
            await self._wait(lambda: len(self.messages) >= count, timeout, f"{count} messages")
            return list(self.messages)
        await self._wait(
            lambda: len(self._by_open_id.get(open_id, ())) >= count, timeout, f"{count} messages to {open_id}"
        )
        return self.messages_to(open_id)

    async def wait_calls(self, path_suffix: str, count: int = 1, timeout: float = 5) -> list[Call]:
        """Wait until paths ending in ``path_suffix`` were called ``count`` times (needs record_calls)."""
        await self._wait(
            lambda: len(self.calls_to(path_suffix)) >= count, timeout, f"{count} calls to {path_suffix}"
        )
        return self.calls_to(path_suffix)

    # ---- directory ----------------------------------------------------------------------------

    def add_department(
        self, open_department_id: str, name: str, *, parent: str = "0", leader: str | None = None
    ) -> None:
        """A department under ``parent`` ("0": the root); ``leader`` is an open_id."""
        dept_id = open_department_id[3:] if open_department_id.startswith("od-") else open_department_id
        with self._lock:
            self._departments[open_department_id] = _Department(
                open_department_id, dept_id, name, parent, leader
            )

    def add_user(
        self,
        open_id: str,
        *,
        name: str,
        email: str | None = None,
        enterprise_email: str | None = None,
        departments: tuple[str, ...] = ("0",),
        leader: str | None = None,
        time_zone: str | None = None,
        job_title: str = "",
        user_id: str | None = None,
        union_id: str | None = None,
        en_name: str = "",
    ) -> None:
        """A person in the tenant; ``user_id`` defaults to ``u_<x>``, ``union_id`` to ``on_<x>`` (``x``:
        the open_id without its ``ou_``); ``leader`` is the manager's open_id."""
        x = _suffix(open_id)
        user = _User(
            open_id,
            name,
            email,
            enterprise_email,
            tuple(departments),
            leader,
            time_zone,
            job_title,
            user_id or f"u_{x}",
            union_id or f"on_{x}",
            en_name,
        )
        with self._lock:
            self._users[open_id] = user
            self._chats[self.chat_id(open_id)] = open_id
            self._directory_version += 1

    def update_user(self, open_id: str, **changes: Any) -> None:
        """Change fields given as in ``add_user`` (``departments``, ``leader``, ``email``, …)."""
        unknown = set(changes) - _USER_FIELDS
        if unknown:
            raise TypeError(f"unknown user fields: {sorted(unknown)}")
        with self._lock:
            user = self._users[open_id]
            for key, value in changes.items():
                setattr(user, key, tuple(value) if key == "departments" else value)
            self._directory_version += 1

    def resign_user(self, open_id: str) -> None:
        """``status.is_resigned``; left out of find_by_department; messages to them are refused."""
        with self._lock:
            self._users[open_id].resigned = True

    def remove_user(self, open_id: str) -> None:
        with self._lock:
            self._users.pop(open_id, None)
            self._directory_version += 1

    def chat_id(self, open_id: str) -> str:
        """The p2p chat between the bot and ``open_id`` (stable)."""
        return "oc_" + hashlib.md5(f"p2p:{open_id}".encode()).hexdigest()

    def _lookup(self, kind: str, key: str) -> _User | None:
        """The user whose ``kind`` (user_id, union_id, email: the primary, any_email: either) is ``key``."""
        if self._indexed_version != self._directory_version:
            index: dict[str, dict[str, _User]] = {
                k: {} for k in ("user_id", "union_id", "email", "any_email")
            }
            for user in self._users.values():
                index["user_id"][user.user_id] = user
                index["union_id"][user.union_id] = user
                for address in (user.enterprise_email, user.email):  # the primary email wins
                    if address:
                        index["any_email"][address.lower()] = user
                if user.email:
                    index["email"][user.email.lower()] = user
            self._index, self._indexed_version = index, self._directory_version
        if kind == "open_id":
            return self._users.get(key)
        return self._index[kind].get(key.lower() if kind.endswith("email") else key)

    def _ensure_user(self, open_id: str) -> _User:
        with self._lock:
            if open_id not in self._users:
                self.add_user(open_id, name=open_id)
            return self._users[open_id]

    # ---- messages -----------------------------------------------------------------------------

    def messages_to(self, open_id: str) -> list[SentMessage]:
        with self._lock:
            return list(self._by_open_id.get(open_id, ()))

    def message(self, message_id: str) -> SentMessage:
        with self._lock:
            return self._by_id[message_id]

    def delivered_uuids(self) -> Counter[str]:
        """How many stored messages carry each uuid (above 1: sent twice). One pass, when asked."""
        with self._lock:
            return Counter(m.uuid for m in self.messages if m.uuid is not None)

    def calls_to(self, path_suffix: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path.endswith(path_suffix)]

    # ---- misbehaviour -------------------------------------------------------------------------

    def limit(self, *, per_app_per_s: float | None = 50, per_user_per_s: float | None = 5) -> None:
        """Enforce rates on message create and patch from now on (``None``: no such limit).

        Token buckets over the fake's clock, one per app (create + patch) and one per recipient (create),
        each filling at its rate up to a burst of ``max(rate, 1)`` and starting full. An empty app bucket
        answers HTTP 429 ``99991400`` with ``x-ogw-ratelimit-reset`` = seconds until a token, rounded up
        (≥ 1); an empty recipient bucket HTTP 400 ``230020``. A refused call takes no token and stores
        nothing. Feishu: 50/s (and 1000/min) per app; 5/s per recipient. Both ``None`` lifts the limits.
        """
        for rate in (per_app_per_s, per_user_per_s):
            if rate is not None and rate <= 0:
                raise ValueError("a rate is a positive number of calls per second")
        with self._lock:
            if per_app_per_s is None and per_user_per_s is None:
                self._limits = None
                return
            now = self.clock()
            app = _Bucket(per_app_per_s, max(per_app_per_s, 1.0), now) if per_app_per_s is not None else None
            self._limits = _Limits(per_app_per_s, per_user_per_s, app)

    def limit_stats(self) -> LimitStats:
        """What the current ``limit`` admitted and refused (empty when there is none)."""
        with self._lock:
            return self._limits.stats if self._limits is not None else LimitStats()

    def fail(self, path_suffix: str, *, code: int, status: int = 400, times: int = 1) -> None:
        """The next ``times`` calls to a path ending in ``path_suffix`` answer ``{"code": code}``."""
        with self._lock:
            self._failures.append([path_suffix, code, status, times])

    def expire_tokens(self) -> None:
        """Every tenant token issued so far is invalid from now on (HTTP 400, 99991663)."""
        with self._lock:
            self._expired |= self._tokens
            self._tokens = set()

    def drop_connections(self) -> None:
        """Close every long connection from the server side; the SDK reconnects via a new endpoint call.

        ``connections`` is 0 at once; ``wait_connected`` waits for the new ones.
        """
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
            for conn in conns:
                conn.open = False
        if self._loop is not None:
            for conn in conns:
                asyncio.run_coroutine_threadsafe(self._close(conn), self._loop)
        self._notify()

    @staticmethod
    async def _close(conn: _Conn) -> None:
        await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"connection dropped")

    # ---- HTTP ---------------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
            bad_json = False
        except ValueError:
            body, bad_json = None, True
        query = dict(request.query)
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.path
        log_id = f"fake{next(self._ids):016x}"
        with self._lock:
            self.call_counts[path] += 1
            if self.record_calls:
                self.calls.append(Call(request.method, path, query, body, headers))
            try:
                if bad_json:
                    raise _Refusal(_FIELD_VALIDATION, "invalid JSON body")
                status, answer, extra = 200, self._route(request.method, path, query, body, headers), {}
            except _Refusal as refusal:
                status, extra = refusal.status, refusal.headers
                answer = {"code": refusal.code, "msg": refusal.msg, "error": {"log_id": log_id}}
            if status == 429:
                self.http_429 += 1
        self._notify()
        return web.json_response(answer, status=status, headers={"X-Tt-Logid": log_id, **extra})

    def _route(
        self, verb: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> dict[str, Any]:
        for failure in self._failures:
            if path.endswith(failure[0]):
                failure[3] -= 1
                if failure[3] <= 0:
                    self._failures.remove(failure)
                raise _Refusal(failure[1], f"injected failure {failure[1]}", status=failure[2])
        if not isinstance(body, dict | None):
            raise _Refusal(_FIELD_VALIDATION, "the body must be a JSON object")
        body = body or {}
        if path == _ENDPOINT_PATH and verb == "POST":
            return self._endpoint(body)
        if path == _TOKEN_PATH and verb == "POST":
            return self._tenant_token(body)
        if not path.startswith("/open-apis/"):
            raise _Refusal(404, f"404 page not found: {verb} {path}", status=404)
        self._authorize(headers)
        parts = path.split("/")[2:]  # open-apis/<service>/<version>/...
        if parts[:3] == ["im", "v1", "messages"]:
            if len(parts) == 3 and verb == "POST":
                return self._create_message(query, body)
            if len(parts) == 4 and verb == "PATCH":
                return self._patch_message(parts[3], body)
            if len(parts) == 4 and verb == "GET":
                return self._get_message(parts[3])
        elif parts[:3] == ["contact", "v3", "users"] and len(parts) == 4:
            if parts[3] == "find_by_department" and verb == "GET":
                return self._find_by_department(query)
            if parts[3] == "batch_get_id" and verb == "POST":
                return self._batch_get_id(query, body)
            if verb == "GET":
                return self._get_user(parts[3], query)
        elif parts[:3] == ["contact", "v3", "departments"] and parts[4:] == ["children"] and verb == "GET":
            return self._children(parts[3], query)
        raise _Refusal(404, f"404 page not found: {verb} {path}", status=404)

    def _authorize(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token:
            raise _Refusal(
                _MISSING_TOKEN,
                "Missing access token for authorization. Please make a request with token attached.",
            )
        if token not in self._tokens:
            raise _Refusal(_INVALID_TOKEN, _INVALID_TOKEN_MSG)

    def _endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return {"code": _NO_CREDENTIAL, "msg": "invalid AppID or AppSecret", "data": {}}
        self.endpoint_calls += 1
        ticket = secrets.token_hex(12)
        self._tickets.add(ticket)
        device_id = str(7_000_000_000_000_000_000 + next(self._ids))
        query = urlencode({"device_id": device_id, "service_id": str(self.service_id), "ticket": ticket})
        return {
            "code": 0,
            "msg": "ok",
            "data": {"URL": f"ws://127.0.0.1:{self._port}/ws?{query}", "ClientConfig": self.client_config},
        }

    def _tenant_token(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            raise _Refusal(_BAD_SECRET, "app secret invalid")
        self.token_requests += 1
        token = "t-" + secrets.token_hex(20)
        self._tokens.add(token)
        return {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}

    # ---- im/v1/messages -----------------------------------------------------------------------

    def _recipient(self, receive_id_type: str, receive_id: str) -> _User:
        user: _User | None = None
        if receive_id_type == "chat_id":
            owner = self._chats.get(receive_id)
            user = self._users.get(owner) if owner is not None else None
        else:
            user = self._lookup("any_email" if receive_id_type == "email" else receive_id_type, receive_id)
        if user is None or user.resigned:
            raise _Refusal(
                _NOT_IN_RANGE,
                f"Bot can NOT be out of the chat / user not in the bot's availability range: {receive_id}",
            )
        return user

    @staticmethod
    def _content(msg_type: str, content: Any) -> dict[str, Any]:
        if not isinstance(content, str):
            raise _Refusal(_INVALID_PARAM, "invalid request parameter: content must be a JSON string")
        try:
            parsed = json.loads(content)
        except ValueError:
            raise _Refusal(_INVALID_PARAM, "invalid request parameter: content is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise _Refusal(_INVALID_PARAM, "invalid request parameter: content must be a JSON object")
        if msg_type == "text" and not isinstance(parsed.get("text"), str):
            raise _Refusal(_INVALID_PARAM, 'invalid request parameter: text content needs a string "text"')
        limit = _TEXT_LIMIT if msg_type == "text" else _CARD_LIMIT
        if len(content.encode()) > limit:
            raise _Refusal(_TOO_LONG, f"The message content is too long (over {limit // 1024} KB)")
        return parsed

    def _create_message(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        receive_id_type = query.get("receive_id_type", "")
        if receive_id_type not in _RECEIVE_ID_TYPES:
            raise _Refusal(_FIELD_VALIDATION, f"field validation failed: receive_id_type {receive_id_type!r}")
        receive_id, msg_type, uuid = body.get("receive_id"), body.get("msg_type"), body.get("uuid")
        if not isinstance(receive_id, str) or not receive_id:
            raise _Refusal(_FIELD_VALIDATION, "field validation failed: receive_id is required")
        if msg_type not in _MSG_TYPES:
            raise _Refusal(
                _INVALID_PARAM,
                f"invalid request parameter: msg_type {msg_type!r} (fake: text/post/interactive)",
            )
        if uuid is not None and (not isinstance(uuid, str) or len(uuid) > 50):
            raise _Refusal(_INVALID_PARAM, "invalid request parameter: uuid is at most 50 characters")
        content = self._content(str(msg_type), body.get("content"))
        user = self._recipient(receive_id_type, receive_id)
        now = self.clock()
        self._admit(now, user.open_id)
        if uuid:
            original = self._uuids.get(uuid)
            if original is not None and now - original.created < _UUID_WINDOW:
                return self._message_answer(original, body_content=json.dumps(original.content))
        message = SentMessage(
            message_id=f"om_{secrets.token_hex(16)}",
            receive_id=receive_id,
            receive_id_type=receive_id_type,
            msg_type=str(msg_type),
            content=content,
            uuid=uuid or None,
            chat_id=self.chat_id(user.open_id),
            created=now,
            open_id=user.open_id,
            create_time=str(int(time.time() * 1000)),
        )
        self.messages.append(message)
        self._by_id[message.message_id] = message
        self._by_open_id[user.open_id].append(message)
        if uuid:
            self._uuids[uuid] = message
        return self._message_answer(message, body_content=body["content"])

    def _message_answer(self, message: SentMessage, *, body_content: str) -> dict[str, Any]:
        return {"code": 0, "msg": "success", "data": self._message_json(message, body_content)}

    def _message_json(self, message: SentMessage, body_content: str) -> dict[str, Any]:
        return {
            "message_id": message.message_id,
            "msg_type": message.msg_type,
            "create_time": message.create_time,
            "update_time": message.create_time,
            "deleted": False,
            "updated": bool(message.updates),
            "chat_id": message.chat_id,
            "sender": {
                "id": self.app_id,
                "id_type": "app_id",
                "sender_type": "app",
                "tenant_key": self.tenant_key,
            },
            "body": {"content": body_content},
        }

    def _patch_message(self, message_id: str, body: dict[str, Any]) -> dict[str, Any]:
        message = self._by_id.get(message_id)
        if message is None:
            raise _Refusal(_MESSAGE_GONE, f"The message was withdrawn or does not exist: {message_id}")
        if message.msg_type != "interactive":
            raise _Refusal(
                _INVALID_PARAM, "invalid request parameter: only card (interactive) messages can be updated"
            )
        content = self._content("interactive", body.get("content"))
        current = message.updates[-1] if message.updates else message.content
        if not _card_shared(current):
            raise _Refusal(
                _CARD_ERROR,
                "card content error: the sent card is not shared (config.update_multi is not true)",
            )
        if not _card_shared(content):
            raise _Refusal(
                _CARD_ERROR,
                "card content error: the new card is not shared (config.update_multi is not true)",
            )
        self._admit(self.clock(), None)
        message.updates.append(content)
        return {"code": 0, "msg": "success", "data": {}}

    def _get_message(self, message_id: str) -> dict[str, Any]:
        message = self._by_id.get(message_id)
        if message is None:
            raise _Refusal(_MESSAGE_GONE, f"The message was withdrawn or does not exist: {message_id}")
        latest = message.updates[-1] if message.updates else message.content
        return {
            "code": 0,
            "msg": "success",
            "data": {"items": [self._message_json(message, json.dumps(latest))]},
        }

    def _admit(self, now: float, open_id: str | None) -> None:
        """Raise the refusal ``limit`` gives this call now; else take its tokens."""
        limits = self._limits
        if limits is None:
            return
        stats = limits.stats
        if limits.app is not None:
            wait = limits.app.wait(now)
            if wait > 0:
                stats.refused += 1
                stats.refused_app += 1
                raise _Refusal(
                    _APP_LIMIT,
                    "request trigger frequency limit",
                    status=429,
                    headers={
                        "x-ogw-ratelimit-limit": str(math.ceil(limits.app.rate)),
                        "x-ogw-ratelimit-reset": str(max(1, math.ceil(wait))),
                    },
                )
        bucket: _Bucket | None = None
        if open_id is not None and limits.per_user_per_s is not None:
            rate = limits.per_user_per_s
            bucket = limits.users.setdefault(open_id, _Bucket(rate, max(rate, 1.0), now))
            if bucket.wait(now) > 0:
                stats.refused += 1
                stats.refused_user += 1
                raise _Refusal(
                    _USER_LIMIT,
                    f"This message triggers the frequency limit: at most {rate:g} a second to one user",
                )
        if limits.app is not None:
            limits.app.tokens -= 1
        if bucket is not None:
            bucket.tokens -= 1
        stats.admitted += 1
        if open_id is not None:
            stats.per_user[open_id] += 1
        stats.first = now if stats.first is None else stats.first
        stats.last = now

    # ---- contact/v3 ---------------------------------------------------------------------------

    @staticmethod
    def _id_type(query: dict[str, str]) -> str:
        kind = query.get("user_id_type") or "open_id"
        if kind not in ("open_id", "user_id", "union_id"):
            raise _Refusal(_FIELD_VALIDATION, f"field validation failed: user_id_type {kind!r}")
        return kind

    @staticmethod
    def _dept_type(query: dict[str, str]) -> str:
        kind = query.get("department_id_type") or "open_department_id"
        if kind not in ("open_department_id", "department_id"):
            raise _Refusal(_FIELD_VALIDATION, f"field validation failed: department_id_type {kind!r}")
        return kind

    def _user_ref(self, open_id: str | None, kind: str) -> str | None:
        if open_id is None:
            return None
        user = self._users.get(open_id)
        if user is None:
            return open_id if kind == "open_id" else None
        return str(getattr(user, kind))

    def _dept_ref(self, open_department_id: str, kind: str) -> str:
        dept = self._departments.get(open_department_id)
        if dept is None or kind == "open_department_id":
            return open_department_id
        return dept.department_id

    def _dept_lookup(self, ref: str, kind: str) -> str:
        """The open_department_id of ``ref`` given as ``kind`` ("0": the root)."""
        if ref == "0":
            return "0"
        if kind == "open_department_id" and ref in self._departments:
            return ref
        if kind == "department_id":
            for dept in self._departments.values():
                if dept.department_id == ref:
                    return dept.open_department_id
        raise _Refusal(_NO_DEPT_AUTHORITY, f"no dept authority error: {ref}")

    def _user_json(self, user: _User, kind: str, dept_kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "open_id": user.open_id,
            "union_id": user.union_id,
            "user_id": user.user_id,
            "name": user.name,
            "en_name": user.en_name,
            "department_ids": [self._dept_ref(d, dept_kind) for d in user.departments],
            "job_title": user.job_title,
            "status": {
                "is_activated": not user.resigned,
                "is_frozen": False,
                "is_resigned": user.resigned,
                "is_exited": False,
                "is_unjoin": False,
            },
            "is_tenant_manager": False,
            "employee_type": 1,
        }
        if user.email is not None:
            out["email"] = user.email
        if user.enterprise_email is not None:
            out["enterprise_email"] = user.enterprise_email
        if user.time_zone is not None:
            out["time_zone"] = user.time_zone
        leader = self._user_ref(user.leader, kind)
        if leader is not None:
            out["leader_user_id"] = leader
        return out

    def _get_user(self, ref: str, query: dict[str, str]) -> dict[str, Any]:
        kind, dept_kind = self._id_type(query), self._dept_type(query)
        user = self._lookup(kind, ref)
        if user is None:
            raise _Refusal(_NO_USER_AUTHORITY, f"no user authority error: {ref}")
        return {"code": 0, "msg": "success", "data": {"user": self._user_json(user, kind, dept_kind)}}

    def _find_by_department(self, query: dict[str, str]) -> dict[str, Any]:
        kind, dept_kind = self._id_type(query), self._dept_type(query)
        ref = query.get("department_id")
        if not ref:
            raise _Refusal(_FIELD_VALIDATION, "field validation failed: department_id is required")
        dept = self._dept_lookup(ref, dept_kind)
        members = [u for u in self._users.values() if dept in u.departments and not u.resigned]
        chunk, meta = _page(members, query, f"users:{dept}")
        items = [self._user_json(u, kind, dept_kind) for u in chunk]
        return {"code": 0, "msg": "success", "data": {**meta, "items": items}}

    def _children(self, ref: str, query: dict[str, str]) -> dict[str, Any]:
        kind, dept_kind = self._id_type(query), self._dept_type(query)
        root = self._dept_lookup(ref, dept_kind)
        fetch_child = (query.get("fetch_child") or "false").lower() == "true"
        found: list[_Department] = []
        frontier = [root]
        while frontier:
            parent = frontier.pop(0)
            children = [d for d in self._departments.values() if d.parent == parent]
            found += children
            if fetch_child:
                frontier += [d.open_department_id for d in children]
        chunk, meta = _page(found, query, f"depts:{root}:{fetch_child}")
        items = []
        for dept in chunk:
            item: dict[str, Any] = {
                "name": dept.name,
                "i18n_name": {"zh_cn": dept.name, "en_us": dept.name, "ja_jp": dept.name},
                "open_department_id": dept.open_department_id,
                "department_id": dept.department_id,
                "parent_department_id": self._dept_ref(dept.parent, dept_kind),
                "status": {"is_deleted": False},
                "order": "0",
            }
            leader = self._user_ref(dept.leader, kind)
            if leader is not None:
                item["leader_user_id"] = leader
            items.append(item)
        return {"code": 0, "msg": "success", "data": {**meta, "items": items}}

    def _batch_get_id(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        kind = self._id_type(query)
        emails, mobiles = body.get("emails") or [], body.get("mobiles") or []
        if (
            not isinstance(emails, list)
            or not isinstance(mobiles, list)
            or len(emails) > 50
            or len(mobiles) > 50
        ):
            raise _Refusal(_FIELD_VALIDATION, "field validation failed: at most 50 emails and 50 mobiles")
        include_resigned = body.get("include_resigned") is True
        user_list: list[dict[str, Any]] = []
        for email in emails:
            entry: dict[str, Any] = {"email": email}
            user = self._lookup("email", str(email))
            if user is not None and (include_resigned or not user.resigned):
                entry["user_id"] = getattr(user, kind)
                entry["status"] = {
                    "is_activated": not user.resigned,
                    "is_frozen": False,
                    "is_resigned": user.resigned,
                    "is_exited": False,
                    "is_unjoin": False,
                }
            user_list.append(entry)
        user_list += [{"mobile": m} for m in mobiles]
        return {"code": 0, "msg": "success", "data": {"user_list": user_list}}

    # ---- long connection ----------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        service_id = request.query.get("service_id", "")
        with self._lock:
            valid = ticket in self._tickets and service_id == str(self.service_id)
            self._tickets.discard(ticket)
        if not valid:
            return web.json_response(
                {"code": 403, "msg": "invalid or used ticket"},
                status=403,
                headers={"handshake-status": "403", "handshake-msg": "invalid or used ticket"},
            )
        ws = web.WebSocketResponse(autoping=True, timeout=2.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = _Conn(ws, request.query.get("device_id", ""))
        with self._lock:
            self._conns.append(conn)
        self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._on_frame(conn, msg.data)
        finally:
            with self._lock:
                conn.open = False
                if conn in self._conns:
                    self._conns.remove(conn)
                pending = [self._acks_pending.pop(mid) for mid in conn.pending if mid in self._acks_pending]
                conn.pending.clear()
            for future, _ in pending:
                if not future.done():
                    future.set_exception(ConnectionResetError("the long connection closed before the ack"))
            self._notify()
        return ws

    async def _on_frame(self, conn: _Conn, data: bytes) -> None:
        try:
            frame = _Frame.decode(data)
        except ValueError:
            return
        kind = frame.headers.get("type")
        if frame.method == _CONTROL:
            if kind == "ping":
                with self._lock:
                    self.pings += 1
                pong = _Frame(
                    frame.seq_id,
                    frame.log_id,
                    frame.service,
                    _CONTROL,
                    {"type": "pong"},
                    json.dumps(self.client_config).encode(),
                )
                if conn.open:
                    await conn.ws.send_bytes(pong.encode())
                self._notify()
            return
        message_id = frame.headers.get("message_id", "")
        with self._lock:
            entry = self._acks_pending.pop(message_id, None)
            conn.pending.discard(message_id)
        if entry is None:
            return
        try:
            answer = json.loads(frame.payload)
            code = int(answer.get("code", 0))
        except (ValueError, AttributeError, TypeError):
            answer, code = {}, 0
        data_field: dict[str, Any] | None = None
        if isinstance(answer, dict) and answer.get("data"):
            try:
                decoded = json.loads(base64.b64decode(answer["data"]))
                data_field = decoded if isinstance(decoded, dict) else {"value": decoded}
            except ValueError:
                data_field = {"raw": answer["data"]}
        future = entry[0]
        if not future.done():
            future.set_result(Ack(code, data_field, dict(frame.headers)))

    async def _push(self, payload: dict[str, Any], timeout: float) -> Ack:
        async with asyncio.timeout(timeout):
            await self._wait(lambda: bool(self._conns), timeout, "long connection to push to")
            future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            message_id = f"{secrets.token_hex(8)}_{next(self._ids)}"
            with self._lock:
                conn = self._rng.choice(self._conns)
                self._acks_pending[message_id] = (future, conn)
                conn.pending.add(message_id)
                self.events.append(payload)
            frame = _Frame(
                next(self._seq),
                next(self._seq),
                self.service_id,
                _DATA,
                {
                    "type": "event",
                    "message_id": message_id,
                    "trace_id": secrets.token_hex(8),
                    "sum": "1",
                    "seq": "0",
                },
                json.dumps(payload, ensure_ascii=False).encode(),
            )
            try:
                await conn.ws.send_bytes(frame.encode())
                return await future
            finally:
                with self._lock:
                    self._acks_pending.pop(message_id, None)
                    conn.pending.discard(message_id)

    # ---- pushing events -----------------------------------------------------------------------

    def _payload(self, event_type: str, event: dict[str, Any], event_id: str | None) -> dict[str, Any]:
        return {
            "schema": "2.0",
            "header": {
                "event_id": event_id or secrets.token_hex(16),
                "event_type": event_type,
                "create_time": str(int(time.time() * 1000)),
                "token": self.verification_token,
                "app_id": self.app_id,
                "tenant_key": self.tenant_key,
            },
            "event": event,
        }

    async def push_event(
        self, event_type: str, event: dict[str, Any], *, event_id: str | None = None, timeout: float = 5
    ) -> Ack:
        """Push a schema-2.0 event to one connected client (waiting for one); returns its ack.

        ``TimeoutError`` without a connection or an ack within ``timeout``.
        """
        payload = self._payload(event_type, event, event_id)
        try:
            ack = await self._on_loop(self._push(payload, timeout))
        except TimeoutError:
            raise TimeoutError(f"FeishuFake: no ack for {event_type} within {timeout}s") from None
        with self._lock:
            self.acks[payload["header"]["event_id"]] = ack
        return ack

    async def push_text(
        self,
        open_id: str,
        text: str,
        *,
        chat_type: str = "p2p",
        event_id: str | None = None,
        message_id: str | None = None,
        chat_id: str | None = None,
    ) -> Ack:
        """``open_id`` wrote ``text`` to the bot (``im.message.receive_v1``)."""
        kind, event = self.text_event(
            open_id, text, chat_type=chat_type, message_id=message_id, chat_id=chat_id
        )
        return await self.push_event(kind, event, event_id=event_id)

    async def push_menu(self, open_id: str, event_key: str, *, event_id: str | None = None) -> Ack:
        """``open_id`` chose the bot menu item ``event_key`` (``application.bot.menu_v6``)."""
        kind, event = self.menu_event(open_id, event_key)
        return await self.push_event(kind, event, event_id=event_id)

    async def push_card_action(
        self,
        open_id: str,
        value: dict[str, Any],
        *,
        open_message_id: str,
        form_value: dict[str, Any] | None = None,
        name: str | None = None,
        tag: str = "button",
        event_id: str | None = None,
    ) -> Ack:
        """``open_id`` clicked (or submitted) on the card of ``open_message_id`` (``card.action.trigger``)."""
        kind, event = self.card_action_event(
            open_id, value, open_message_id=open_message_id, form_value=form_value, name=name, tag=tag
        )
        return await self.push_event(kind, event, event_id=event_id)

    def _ids_of(self, open_id: str) -> dict[str, str]:
        user = self._ensure_user(open_id)
        return {"open_id": user.open_id, "union_id": user.union_id, "user_id": user.user_id}

    def text_event(
        self,
        open_id: str,
        text: str,
        *,
        chat_type: str = "p2p",
        message_id: str | None = None,
        chat_id: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """An ``im.message.receive_v1`` event (the sender is added to the directory if unknown)."""
        now = str(int(time.time() * 1000))
        return "im.message.receive_v1", {
            "sender": {
                "sender_id": self._ids_of(open_id),
                "sender_type": "user",
                "tenant_key": self.tenant_key,
            },
            "message": {
                "message_id": message_id or f"om_{secrets.token_hex(16)}",
                "create_time": now,
                "update_time": now,
                "chat_id": chat_id or self.chat_id(open_id),
                "chat_type": chat_type,
                "message_type": "text",
                "content": json.dumps({"text": text}, ensure_ascii=False),
            },
        }

    def menu_event(self, open_id: str, event_key: str) -> tuple[str, dict[str, Any]]:
        """An ``application.bot.menu_v6`` event."""
        ids = self._ids_of(open_id)
        return "application.bot.menu_v6", {
            "operator": {"operator_name": self._users[open_id].name, "operator_id": ids},
            "event_key": event_key,
            "timestamp": int(time.time()),
        }

    def card_action_event(
        self,
        open_id: str,
        value: dict[str, Any],
        *,
        open_message_id: str,
        form_value: dict[str, Any] | None = None,
        name: str | None = None,
        tag: str = "button",
    ) -> tuple[str, dict[str, Any]]:
        """A ``card.action.trigger`` callback (schema 2.0); the chat is the message's, if the fake sent it."""
        ids = self._ids_of(open_id)
        with self._lock:
            sent = self._by_id.get(open_message_id)
        action: dict[str, Any] = {"value": value, "tag": tag}
        if name is not None:
            action["name"] = name
        if form_value is not None:
            action["form_value"] = form_value
        return "card.action.trigger", {
            "operator": {"tenant_key": self.tenant_key, **ids},
            "token": f"c-{secrets.token_hex(20)}",
            "action": action,
            "host": "im_message",
            "context": {
                "open_message_id": open_message_id,
                "open_chat_id": sent.chat_id if sent is not None else self.chat_id(open_id),
            },
        }

    # ---- webhook mode -------------------------------------------------------------------------

    def _signed(self, plaintext: dict[str, Any], encrypt: bool) -> tuple[dict[str, str], bytes]:
        text = json.dumps(plaintext, ensure_ascii=False).encode()
        body = json.dumps({"encrypt": _encrypt(self.encrypt_key, text)}).encode() if encrypt else text
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        signature = hashlib.sha256((timestamp + nonce + self.encrypt_key).encode() + body).hexdigest()
        headers = {
            "X-Lark-Request-Timestamp": timestamp,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": signature,
            "Content-Type": "application/json; charset=utf-8",
        }
        return headers, body

    def webhook_body(
        self,
        event_type: str,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        encrypt: bool = True,
        token: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """(headers, raw body) of the POST Feishu makes to an event/callback URL for this event."""
        payload = self._payload(event_type, event, event_id)
        payload["header"]["token"] = self.verification_token if token is None else token
        return self._signed(payload, encrypt)

    def url_verification_body(
        self, challenge: str, *, encrypt: bool = True, token: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(headers, raw body) of the ``url_verification`` request Feishu sends when the URL is set."""
        payload = {
            "challenge": challenge,
            "token": self.verification_token if token is None else token,
            "type": "url_verification",
        }
        return self._signed(payload, encrypt)
