"""A DingTalk server on 127.0.0.1 for the real dingtalk-stream SDK and our own httpx code.

One port serves the Stream gateway, the new API (``api.dingtalk.com`` paths) and the legacy oapi
(``oapi.dingtalk.com`` paths). Wire behaviour, checked against the installed dingtalk-stream 0.24.3
(``stream.py``, ``frames.py``, ``handlers.py``, ``chatbot.py``, ``card_callback.py``,
``card_replier.py``) and ``/work/shared/reference/im-platforms.md`` §3; sources for the error answers
are marked [VERIFIED: where] or GUESS:

* The fake serves from its own thread and event loop: the SDK calls ``connections/open``, the token
  endpoint and ``sessionWebhook`` with blocking ``requests`` from inside its event loop
  (``DingTalkStreamClient.start`` → ``open_connection``; ``ChatbotHandler.reply_text``), so a server on
  the caller's loop would deadlock. Its methods are still called from the test's loop
  (``await fake.push_chatbot_message(...)``); state is guarded by one lock.
* ``POST /v1.0/gateway/connections/open`` ``{"clientId", "clientSecret", "subscriptions", "ua",
  "localIp"}`` → ``{"endpoint": "ws://127.0.0.1:<port>/connect", "ticket"}``. A ticket is good once and
  for ``ticket_ttl`` (90) seconds. Wrong credentials: HTTP 401 ``{"code": "authFailed", "message":
  "鉴权失败"}`` [VERIFIED: issue zfanswer/dify-on-dingtalk#28]; the SDK logs it and sleeps 10 s.
  The subscriptions are kept with the connection: a CALLBACK goes only to a connection subscribed to
  its topic, an EVENT only to one subscribed to ``*`` (the SDK subscribes to EVENT only after
  ``register_all_event_handler``).
* ``GET /connect?ticket=`` (WebSocket): an unknown, used or stale ticket is refused with HTTP 401 before
  the upgrade. Frames are JSON text ``{"specVersion": "1.0", "type": "CALLBACK|EVENT|SYSTEM",
  "headers": {"appId", "connectionId", "contentType", "messageId", "time", "topic"[, "eventId",
  "eventType", "eventCorpId", "eventBornTime", "eventUnifiedAppId"]}, "data": "<JSON string>"}``; the
  SDK acks with ``{"code", "headers": {"messageId", "contentType"}, "message", "data": "<JSON>"}``
  (``AckMessage.to_dict``). ``push_*`` return that ack with ``data`` parsed. ``ChatbotHandler`` acks
  ``data = {"response": <its second return value>}`` with an empty ``message``;
  ``AsyncChatbotHandler`` acks at once with ``code`` 200, ``message`` "ok" and the pushed data echoed;
  the card ``CallbackHandler`` acks ``{"response": <return>}``; an EVENT and a SYSTEM ack echo the data
  (so a SYSTEM ``ping`` gets its ``opaque`` back). With several connections each push goes to one of
  them, chosen at random (DingTalk does the same). A push whose connection closes before the ack
  raises ``ConnectionResetError``; no ack within ``timeout`` raises ``TimeoutError``.
* SYSTEM ``disconnect`` (``send_disconnect``): the SDK acks, closes the socket itself and opens a new
  connection at once (a normal close makes its ``async for`` end without an exception, so there is no
  sleep). DingTalk closes TCP 10 s after sending it; the fake after ``disconnect_delay`` (0.2 s).
  The connection stops counting in ``connections`` as soon as the frame is sent.
* Chatbot messages (CALLBACK ``/v1.0/im/bot/messages/get``): data as ``ChatbotMessage.from_dict``
  reads it: ``conversationId`` ("cid…", stable per person for 1:1), ``conversationType``, ``msgId``,
  ``senderId`` ("$:LWCP_v1:$…"), ``senderStaffId`` (= the userid batchSend and cards take),
  ``senderNick``, ``senderCorpId``, ``chatbotCorpId``, ``chatbotUserId``, ``robotCode``, ``isInAtList``,
  ``isAdmin``, ``createAt`` (ms), ``sessionWebhook`` (``http://127.0.0.1:<port>/robot/sendBySession?
  session=…``, a new one per message) and ``sessionWebhookExpiredTime`` (createAt + 90 min),
  ``msgtype: text``, ``text: {"content"}``; group messages (``conversationType`` "2") add
  ``conversationTitle`` and ``atUsers``. An unknown sender is added to the directory (name = userid).
* Card callbacks (CALLBACK ``/v1.0/card/instances/callback``): ``{"outTrackId", "corpId", "userId",
  "userIdType": 1, "spaceType", "spaceId", "type": "actionCallback", "extension": "{}", "content":
  "{\\"cardPrivateData\\": {\\"actionIds\\": [...], \\"params\\": {...}}}"}`` (``card_callback.py``;
  ``spaceType``/``spaceId`` values GUESS: "IM_ROBOT" and the userid).
* Tokens: ``POST /v1.0/oauth2/accessToken`` ``{"appKey", "appSecret"}`` → ``{"accessToken",
  "expireIn": 7200}`` (the SDK indexes ``expireIn``); ``GET /gettoken?appkey=&appsecret=`` →
  ``{"errcode": 0, "errmsg": "ok", "access_token", "expires_in": 7200}``. Both hand out the same token
  until ``expire_tokens`` (DingTalk answers the still-valid token). Wrong appKey / appSecret on the new
  endpoint: HTTP 400 ``{"code": "invalidClientId" | "invalidClientSecret"}`` (GUESS); on /gettoken
  ``errcode`` 40089 "不合法的corpid或corpsecret" (from memory, unverified).
* New API calls (``/v1.0/…`` except the two above) need ``x-acs-dingtalk-access-token``: missing →
  HTTP 400 ``{"code": "MissingxAcsDingtalkAccessToken"}`` (GUESS); unknown or expired → HTTP 400
  ``{"code": "InvalidAuthentication", "message": "不合法的access_token"}`` [VERIFIED: satorijs/satori#240
  and alibabacloud-sdk-php/dingtalk#1 show HTTP 400, not 401]. Error bodies are always ``{"code":
  "<string>", "message", "requestid"}``. Legacy calls (``/topapi/…``) take ``?access_token=``: missing,
  unknown or expired → HTTP 200 ``{"errcode": 40014, "errmsg": "不合法的access_token"}`` [VERIFIED:
  satorijs/satori#240]; every legacy answer is HTTP 200 with ``errcode`` (0 = ok) and ``request_id``.
* ``POST /v1.0/robot/oToMessages/batchSend`` ``{"robotCode", "userIds", "msgKey", "msgParam": "<JSON>"}``
  → ``{"processQueryKey", "invalidStaffIdList", "flowControlledStaffIdList"}``. ``robotCode`` must be
  the app's (else HTTP 400 ``robot.notExist``, GUESS); 1..20 ``userIds`` (else HTTP 400
  ``invalidParameter.userIds``, GUESS); ``msgParam`` a JSON object (else HTTP 400
  ``invalidParameter.msgParam``, GUESS). Unknown, removed or ``set_invalid`` ids are listed invalid;
  ``flow_control`` ids flow-controlled; neither is delivered. Every accepted call is a ``BatchSend``.
* Cards: ``POST /v1.0/card/instances/createAndDeliver`` (``cardTemplateId``, ``outTrackId``,
  ``cardData.cardParamMap``, ``callbackType``, ``openSpaceId`` "dtv1.card//IM_ROBOT.<userId>" (several
  joined by ";"), ``imRobotOpenDeliverModel.spaceType`` "IM_ROBOT", ``userIdType``) →
  ``{"success": true, "result": {"outTrackId", "deliverResults": [{"spaceType", "spaceId", "success",
  "carrierId"}]}}``. A repeated ``outTrackId`` creates no second card and overwrites nothing: it answers
  success again and counts in ``duplicate_out_track_ids`` (the im_1_0 card docs: "同一个outTrackId重复
  创建，卡片数据不覆盖更新"; that createAndDeliver behaves the same is a GUESS). ``POST
  /v1.0/card/instances`` + ``POST /v1.0/card/instances/deliver`` do the same in two steps.
  ``PUT /v1.0/card/instances`` ``{"outTrackId", "cardData", "privateData"?, "cardUpdateOptions"?}``:
  ``updateCardDataByKey`` true merges the keys, otherwise the cardParamMap is replaced; each accepted
  update's ``cardData`` is appended to ``Card.updates``; unknown ``outTrackId`` → HTTP 400
  ``invalidParameter.outTrackId`` (GUESS). ``PUT /v1.0/card/streaming`` sets (``isFull``) or appends
  one key.
* ``POST /robot/sendBySession?session=`` (no token): ``{"msgtype": "text"|"markdown", ...}`` →
  ``{"errcode": 0, "errmsg": "ok"}``; an unknown or expired session → ``errcode`` 300001 (GUESS).
* Legacy directory: ``POST /topapi/v2/department/listsub`` ``{"dept_id"}`` (default 1, the root
  "Company") → direct children ``[{"dept_id", "name", "parent_id", ...}]``; ``POST
  /topapi/v2/user/list`` ``{"dept_id", "cursor", "size" (1..100)}`` → ``{"has_more", "next_cursor"
  (when has_more), "list": [...]}`` (people directly in the department; in two departments → in
  both lists, in the order added); ``POST /topapi/v2/user/get`` ``{"userid"}``. Both answer
  ``userid``, ``unionid``, ``name``, ``title``, ``email``, ``org_email``, ``dept_id_list``, ``active``,
  ``admin``, ``boss`` (absent ones are left out); a list item adds ``leader`` (a 主管 of the department
  being listed: ``add_user(leads=...)``), user/get adds ``manager_userid`` (the console's 直属主管, when
  set) and ``leader_in_dept`` ``[{"dept_id", "leader"}]`` [VERIFIED: the apifox mirror of both docs;
  user/list items have no ``manager_userid``]. ``dept_order`` / ``dept_order_list`` are left out.
  ``DingTalkFake(list_has_manager=True)`` adds ``manager_userid`` to list items too (not in the doc).
  Unknown department → 60003 "部门不存在"; unknown user → 60121 "找不到该用户"; a bad size/cursor →
  40035 (codes from memory, unverified).
* Todos (reference task-sources.md §4; the SDK is alibabacloud-dingtalk ``todo_1_0``): every id is a
  unionId (``add_user``'s ``unionid``, ``set_unionid``). ``POST /v1.0/todo/users/{unionId}/org/tasks/
  query`` ``{"nextToken", "isDone", "roleTypes", "todoType"}`` → ``{"todoCards": [...], "nextToken"}``
  [VERIFIED: SDK ``QueryOrgTodoTasks``]; ``nextToken`` "0" (or absent) starts, null ends [S:
  dingtalk-mcp YAML]; the token is the offset as a string and a page holds ``todo_page_size`` (20)
  cards (GUESS, from the doc's example ``"nextToken": "20"``); cards in creation order (GUESS).
  ``isDone`` true/false filters, absent lists both (GUESS). ``roleTypes``: a list of lists of
  ``executor`` / ``creator`` / ``participant``, outer OR, inner AND [S]; absent → any role (GUESS);
  anything else → HTTP 400 ``InvalidParameter`` (GUESS). Card fields ``taskId, subject, dueTime,
  isDone, creatorId, createdTime, modifiedTime, priority, bizTag, sourceId, todoType, detailUrl{appUrl,
  pcUrl}`` — no ``executorIds`` / ``finishTime`` [VERIFIED: SDK]; an absent ``dueTime`` is left out.
  ``GET /v1.0/todo/users/{unionId}/tasks/{taskId}`` → the detail (``id, subject, description,
  startTime, dueTime, finishTime, done, executorIds, participantIds, creatorId, modifierId,
  createdTime, modifiedTime, priority, source, sourceId, bizTag, detailUrl, isOnlyShowExecutor,
  requestId``) [VERIFIED: SDK ``GetTodoTask``, example from the apifox mirror]; it answers whoever the
  path names while the todo exists in the org (GUESS). A deleted or unknown todo → HTTP 400
  ``{"code": "todo.taskQuery.paramError", "message": "task not exist"}`` (GUESS, after the update
  API's documented "task not exist" [S: dingtalk.apifox.cn api-9093536]). Times are ms ints; a change
  through ``update_todo`` moves ``modifiedTime`` forward (at least 1 ms) and completing sets
  ``finishTime``. The path's unionId is not checked against the directory (GUESS). Helpers:
  ``add_todo``, ``update_todo``, ``delete_todo``, ``todo`` (the detail now); ``todo_detail_gets``
  counts detail calls per taskId.
* Todo-side misbehaviour: ``qps_storm`` (the next calls to a path refused as over QPS: new API HTTP 403
  ``Forbidden.AccessDenied.QpsLimitForApi``, oapi errcode 90018); ``exhaust_quota`` (the monthly quota
  is used up: every new-API call but the token endpoints → HTTP 403 ``{"code":
  "Forbidden.AccessDenied.ApiCountLimitForOrg"}``, every oapi call → errcode 90020 [S: reference
  §4.4]; the HTTP status is a GUESS). A missing permission: ``fail(path, code="Forbidden.AccessDenied.
  AccessTokenPermissionDenied", status=403)`` (the code [VERIFIED: open-dingtalk developerpedia
  "permission-deny"]; its body adds ``accessdenieddetail.requiredScopes``; the status is a GUESS).
* Misbehaviour on demand: ``fail`` (the next calls to a path; new API → ``status`` +
  ``{"code": "<code>"}``, legacy → HTTP 200 ``{"errcode": <code>}``), ``expire_tokens``, ``limit`` (a
  token bucket on one API; over it HTTP 403 ``{"code": "Forbidden.AccessDenied.QpsLimitForApi",
  "message": "请求过于频繁…"}`` [VERIFIED: apps catching exactly this code around batchSendOTO; a
  per-app-key variant ``Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`` exists too — pass ``code=``]).
  A refused call changes nothing. Platform codes for ``fail``: 90002 (global API limit), 90018 /
  90019 (QPS), 90020 (monthly quota) [reference §3.7].

For load (benchmarks): per call O(1) work beyond parsing and answering (per batchSend O(len(userIds));
``record_calls=False`` keeps no ``Call``; ``call_counts`` still counts per path).

Stop every Stream client before ``stop()``: a connected SDK answers the server's close by reconnecting
(and then sleeps 10 s when the gateway is gone).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import random
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.threaded_server import ThreadedServer

CHATBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_CALLBACK_TOPIC = "/v1.0/card/instances/callback"
BATCH_SEND = "/v1.0/robot/oToMessages/batchSend"
_OPEN_PATH = "/v1.0/gateway/connections/open"
_TOKEN_PATH = "/v1.0/oauth2/accessToken"
_GETTOKEN_PATH = "/gettoken"
_SESSION_PATH = "/robot/sendBySession"
_TOKEN_HEADER = "x-acs-dingtalk-access-token"
_ROOT_DEPT = 1
_MAX_BATCH = 20
_MAX_PAGE = 100
_SESSION_TTL_MS = 90 * 60 * 1000
_INVALID_TOKEN_MSG = "不合法的access_token"
QPS_LIMIT_CODE = "Forbidden.AccessDenied.QpsLimitForApi"
QUOTA_CODE = "Forbidden.AccessDenied.ApiCountLimitForOrg"
QUOTA_ERRCODE = 90020
QPS_ERRCODE = 90018
TODO_QUERY = "/org/tasks/query"  # POST /v1.0/todo/users/{unionId}/org/tasks/query
TODO_PAGE_SIZE = 20
_TODO_ROLES = frozenset({"executor", "creator", "participant"})


# ---- public records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request as DingTalk would have received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON (None without a body)
    headers: dict[str, str]  # names lower-cased


@dataclass
class DeliveredMessage:
    """Something that reached a person: a batchSend message, a card, or a sessionWebhook reply."""

    kind: str  # "batch" | "card" | "session"
    msg_key: str  # batch: msgKey; card: the template id; session: msgtype
    content: dict[str, Any]  # batch: msgParam; card: cardData (updated in place); session: body[msgtype]
    out_track_id: str | None = None  # cards
    process_query_key: str | None = None  # batch
    user_id: str = ""


@dataclass
class BatchSend:
    """One accepted ``oToMessages/batchSend`` call."""

    robot_code: str
    user_ids: list[str]
    msg_key: str
    msg_param: dict[str, Any]
    process_query_key: str
    invalid: list[str] = field(default_factory=list)
    flow_controlled: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)


@dataclass
class Card:
    """An interactive card instance, by ``outTrackId``."""

    out_track_id: str
    template_id: str
    user_id: str  # the IM_ROBOT space it went to ("" until delivered)
    card_data: dict[str, Any]  # the cardData, {"cardParamMap": {...}}, kept current by updates
    private_data: dict[str, Any] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)  # each accepted update's cardData
    callback_type: str = ""
    open_space_id: str = ""


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
    """What ``DingTalkFake.limit`` let through and refused (times from the fake's clock)."""

    admitted: int = 0
    refused: int = 0
    first: float | None = None
    last: float | None = None

    def achieved_per_s(self) -> float | None:
        """Admitted calls per second between the first and the last (None below two calls).

        At most ``rate + (burst - 1) / elapsed``: more would mean the limit leaks.
        """
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.admitted - 1) / (self.last - self.first)


@dataclass
class _Limit:
    per_api: str
    code: str
    bucket: _Bucket
    stats: LimitStats = field(default_factory=LimitStats)


@dataclass
class _User:
    userid: str
    name: str
    email: str | None
    org_email: str | None
    departments: tuple[int, ...]
    manager: str | None
    title: str
    unionid: str
    active: bool
    leads: tuple[int, ...] = ()  # the departments they are a 主管 (leader) of


@dataclass
class _Department:
    dept_id: int
    name: str
    parent: int


@dataclass
class _Todo:
    """One todo of the org (ids are unionIds; times ms since 1970, 0 = not set)."""

    task_id: str
    subject: str
    creator: str
    executors: list[str]
    participants: list[str]
    done: bool
    created: int
    modified: int
    due: int
    start: int
    finish: int
    priority: int
    description: str
    biz_tag: str
    source: str

    def card(self) -> dict[str, Any]:
        """As the org listing shows it: no executors, no finish time."""
        card: dict[str, Any] = {
            "taskId": self.task_id,
            "subject": self.subject,
            "isDone": self.done,
            "creatorId": self.creator,
            "createdTime": self.created,
            "modifiedTime": self.modified,
            "priority": self.priority,
            "bizTag": self.biz_tag,
            "sourceId": self.task_id,
            "todoType": "TODO",
            "detailUrl": self.links(),
        }
        if self.due:
            card["dueTime"] = self.due
        return card

    def detail(self) -> dict[str, Any]:
        return {
            "id": self.task_id,
            "subject": self.subject,
            "description": self.description,
            "startTime": self.start,
            "dueTime": self.due,
            "finishTime": self.finish,
            "done": self.done,
            "executorIds": list(self.executors),
            "participantIds": list(self.participants),
            "creatorId": self.creator,
            "modifierId": self.creator,
            "createdTime": self.created,
            "modifiedTime": self.modified,
            "priority": self.priority,
            "source": self.source,
            "sourceId": self.task_id,
            "bizTag": self.biz_tag,
            "detailUrl": self.links(),
            "isOnlyShowExecutor": False,
            "requestId": _request_id(),
        }

    def links(self) -> dict[str, str]:
        return {
            "appUrl": f"dingtalk://dingtalkclient/page/todo?taskId={self.task_id}",
            "pcUrl": f"https://todo.dingtalk.test/tasks/{self.task_id}",
        }

    def has_role(self, unionid: str, role: str) -> bool:
        if role == "executor":
            return unionid in self.executors
        if role == "creator":
            return unionid == self.creator
        return unionid in self.participants


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    connection_id: str
    subscriptions: set[tuple[str, str]]
    pending: set[str] = field(default_factory=set)  # messageIds awaiting an ack
    open: bool = True


class _Refusal(Exception):
    """An error answer: ``body`` with HTTP ``status``."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


def _api_error(code: str, message: str, status: int = 400) -> _Refusal:
    return _Refusal(status, {"code": code, "message": message, "requestid": _request_id()})


def _oapi_error(errcode: int | str, errmsg: str) -> _Refusal:
    return _Refusal(200, {"errcode": errcode, "errmsg": errmsg, "request_id": secrets.token_hex(6)})


def _request_id() -> str:
    h = secrets.token_hex(16).upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _b64_hash(text: str) -> str:
    return base64.b64encode(hashlib.md5(text.encode()).digest()).decode()


def _now_ms() -> int:
    return int(time.time() * 1000)


_USER_FIELDS = frozenset(
    {"name", "email", "org_email", "departments", "manager", "title", "unionid", "active", "leads"}
)


class DingTalkFake(ThreadedServer):
    """DingTalk's Stream gateway, new API and legacy oapi on 127.0.0.1, port 0, in a thread."""

    thread_name = "dingtalk-fake"

    def __init__(
        self,
        *,
        client_id: str = "ding-cadence-test",
        client_secret: str = "s3cr3t-dingtalk-secret-for-tests",
        robot_code: str = "ding-cadence-test",
        corp_id: str = "ding-corp-test",
        record_calls: bool = True,
        disconnect_delay: float = 0.2,
        ticket_ttl: float = 90.0,
        list_has_manager: bool = False,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        """``disconnect_delay``: seconds between a SYSTEM disconnect and closing TCP (DingTalk: 10);
        ``clock`` drives tickets and ``limit``; ``seed`` the choice of connection for each push."""
        self.client_id, self.client_secret = client_id, client_secret
        self.robot_code, self.corp_id = robot_code, corp_id
        self.record_calls, self.disconnect_delay, self.ticket_ttl = record_calls, disconnect_delay, ticket_ttl
        self.list_has_manager, self.clock = list_has_manager, clock
        self.calls: list[Call] = []
        self.call_counts: Counter[str] = Counter()  # path -> calls (also when not recorded)
        self.batch_sends: list[BatchSend] = []
        self.cards: dict[str, Card] = {}
        self.session_replies: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}  # messageId -> last ack
        self.connections_opened = 0  # WebSocket handshakes accepted
        self.tickets_issued = 0  # successful connections/open answers
        self.token_requests = 0  # successful answers of either token endpoint
        self.duplicate_out_track_ids = 0
        self.open_requests: list[dict[str, Any]] = []  # connections/open bodies (secret masked)
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._users: dict[str, _User] = {}
        self._departments: dict[int, _Department] = {_ROOT_DEPT: _Department(_ROOT_DEPT, "Company", 0)}
        self._directory_version = 0
        self._indexed_version = -1
        self._members: dict[int, list[_User]] = {}
        self._children: dict[int, list[_Department]] = {}
        self._inbox: defaultdict[str, list[DeliveredMessage]] = defaultdict(list)
        self._sessions: dict[str, tuple[str, int]] = {}  # session -> (userid, expires ms)
        self._invalid: set[str] = set()
        self._flow: Counter[str] = Counter()
        self._token: str | None = None
        self._tokens: set[str] = set()
        self._tickets: dict[str, tuple[float, set[tuple[str, str]]]] = {}
        self._failures: list[list[Any]] = []  # [path_suffix, code, status, message, times left, sub_code]
        self._limit: _Limit | None = None
        self._todos: dict[str, _Todo] = {}  # taskId -> todo, in creation order
        self._quota_exhausted = False
        self.todo_page_size = TODO_PAGE_SIZE
        self.todo_detail_gets: Counter[str] = Counter()  # taskId -> detail GETs answered ("not exist" too)
        self._conns: list[_Conn] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._acks_pending: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ---- lifecycle (tests/fakes/threaded_server.py) -----------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/connect", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._http)

    @property
    def connections(self) -> int:
        """Stream connections open now (not counting ones told to disconnect)."""
        with self._lock:
            return len(self._conns)

    async def wait_connected(self, count: int = 1, timeout: float = 5) -> None:
        """At least ``count`` Stream connections are open."""
        await self._wait(lambda: len(self._conns) >= count, timeout, f"{count} stream connection(s)")

    async def wait_calls(self, path_suffix: str, count: int = 1, timeout: float = 5) -> list[Call]:
        """Wait until paths ending in ``path_suffix`` were called ``count`` times (needs record_calls)."""
        await self._wait(
            lambda: len(self.calls_to(path_suffix)) >= count, timeout, f"{count} calls to {path_suffix}"
        )
        return self.calls_to(path_suffix)

    async def wait_messages(self, userid: str, count: int = 1, timeout: float = 5) -> list[DeliveredMessage]:
        """Wait until at least ``count`` messages reached ``userid``; returns them all."""
        await self._wait(
            lambda: len(self._inbox.get(userid, ())) >= count, timeout, f"{count} messages to {userid}"
        )
        return self.messages_to(userid)

    async def wait_session_replies(self, count: int = 1, timeout: float = 5) -> list[dict[str, Any]]:
        await self._wait(lambda: len(self.session_replies) >= count, timeout, f"{count} session replies")
        with self._lock:
            return list(self.session_replies)

    # ---- directory ----------------------------------------------------------------------------

    def add_department(self, dept_id: int, name: str, *, parent: int = _ROOT_DEPT) -> None:
        """A department under ``parent`` (1: the root, "Company", there from the start)."""
        with self._lock:
            self._departments[dept_id] = _Department(dept_id, name, parent)
            self._directory_version += 1

    def add_user(
        self,
        userid: str,
        *,
        name: str,
        email: str | None = None,
        org_email: str | None = None,
        departments: tuple[int, ...] = (_ROOT_DEPT,),
        manager: str | None = None,
        title: str = "",
        unionid: str | None = None,
        active: bool = True,
        leads: tuple[int, ...] = (),
    ) -> None:
        """A person (``manager``: the manager's userid, answered as ``manager_userid``; ``leads``: the
        departments, among ``departments``, they are a 主管 of: ``leader`` in those listings)."""
        user = _User(
            userid,
            name,
            email,
            org_email,
            tuple(departments),
            manager,
            title,
            unionid or "union" + hashlib.md5(userid.encode()).hexdigest()[:20],
            active,
            tuple(leads),
        )
        with self._lock:
            self._users[userid] = user
            self._directory_version += 1

    def update_user(self, userid: str, **changes: Any) -> None:
        """Change fields given as in ``add_user``."""
        unknown = set(changes) - _USER_FIELDS
        if unknown:
            raise TypeError(f"unknown user fields: {sorted(unknown)}")
        with self._lock:
            user = self._users[userid]
            for key, value in changes.items():
                setattr(user, key, tuple(value) if key in ("departments", "leads") else value)
            self._directory_version += 1

    def remove_user(self, userid: str) -> None:
        """Left the company: gone from the lists, user/get answers 60121, batchSend lists them invalid."""
        with self._lock:
            self._users.pop(userid, None)
            self._directory_version += 1

    def conversation_id(self, userid: str) -> str:
        """The 1:1 conversation between the bot and ``userid`` (stable)."""
        return "cid" + _b64_hash(f"p2p:{self.robot_code}:{userid}")

    def _index(self) -> None:
        if self._indexed_version == self._directory_version:
            return
        members: dict[int, list[_User]] = defaultdict(list)
        for user in self._users.values():
            for dept in dict.fromkeys(user.departments):
                members[dept].append(user)
        children: dict[int, list[_Department]] = defaultdict(list)
        for department in self._departments.values():
            if department.dept_id != _ROOT_DEPT:
                children[department.parent].append(department)
        self._members, self._children = dict(members), dict(children)
        self._indexed_version = self._directory_version

    # ---- what the bot sent --------------------------------------------------------------------

    def messages_to(self, userid: str) -> list[DeliveredMessage]:
        with self._lock:
            return list(self._inbox.get(userid, ()))

    def calls_to(self, path_suffix: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path.endswith(path_suffix)]

    def set_invalid(self, *userids: str) -> None:
        """batchSend lists these in ``invalidStaffIdList`` and delivers nothing to them."""
        with self._lock:
            self._invalid.update(userids)

    def flow_control(self, userid: str, times: int = 1) -> None:
        """The next ``times`` batchSends to ``userid`` list them in ``flowControlledStaffIdList``."""
        with self._lock:
            self._flow[userid] += times

    # ---- misbehaviour -------------------------------------------------------------------------

    def limit(
        self,
        *,
        per_app_per_s: float | None = 20,
        per_api: str = BATCH_SEND,
        code: str = QPS_LIMIT_CODE,
    ) -> None:
        """Enforce ``per_app_per_s`` on paths ending in ``per_api`` from now on (``None`` lifts it).

        A token bucket over the fake's clock, burst ``max(rate, 1)``, starting full. Over it: HTTP 403
        ``{"code": code, "message": "请求过于频繁…"}``; the refused call takes no token, changes nothing.
        """
        if per_app_per_s is not None and per_app_per_s <= 0:
            raise ValueError("a rate is a positive number of calls per second")
        with self._lock:
            if per_app_per_s is None:
                self._limit = None
                return
            bucket = _Bucket(per_app_per_s, max(per_app_per_s, 1.0), self.clock())
            self._limit = _Limit(per_api, code, bucket)

    def limit_stats(self) -> LimitStats:
        """What the current ``limit`` admitted and refused (empty when there is none)."""
        with self._lock:
            return self._limit.stats if self._limit is not None else LimitStats()

    def fail(
        self,
        path_suffix: str,
        *,
        code: str | int,
        status: int = 400,
        message: str = "injected",
        times: int = 1,
        sub_code: str | int | None = None,
    ) -> None:
        """The next ``times`` calls to a path ending in ``path_suffix`` fail (and change nothing).

        New API (``/v1.0/…``): HTTP ``status`` ``{"code": str(code), "message", "requestid"}``; legacy
        (``/topapi/…``, ``/gettoken``, sessionWebhook): HTTP 200 ``{"errcode": int(code), "errmsg"}``,
        plus ``"sub_code": str(sub_code)`` when given (as errcode 88 carries its reason; a string is a
        GUESS).
        """
        with self._lock:
            self._failures.append([path_suffix, code, status, message, times, sub_code])

    def expire_tokens(self) -> None:
        """Every token issued so far is invalid from now on; the token endpoints mint a new one."""
        with self._lock:
            self._tokens.clear()
            self._token = None

    def qps_storm(self, path_suffix: str = TODO_QUERY, *, times: int = 3) -> None:
        """The next ``times`` calls to paths ending in ``path_suffix`` are refused as over QPS (new API:
        HTTP 403 ``QpsLimitForApi``; oapi: errcode 90018), as ``fail`` does."""
        if path_suffix.startswith("/topapi/"):
            self.fail(path_suffix, code=QPS_ERRCODE, message="请求过于频繁", times=times)
        else:
            self.fail(path_suffix, code=QPS_LIMIT_CODE, status=403, message="请求过于频繁", times=times)

    def exhaust_quota(self, exhausted: bool = True) -> None:
        """The org's monthly quota is used up (``False``: a new month): API calls are refused until then."""
        with self._lock:
            self._quota_exhausted = exhausted

    # ---- todos --------------------------------------------------------------------------------

    def set_unionid(self, userid: str, unionid: str) -> None:
        """The unionId ``topapi/v2/user/get`` answers for ``userid``."""
        self.update_user(userid, unionid=unionid)

    def add_todo(
        self,
        unionid: str,
        subject: str,
        *,
        executors: list[str] | None = None,
        participants: list[str] | None = None,
        done: bool = False,
        due: int = 0,
        start: int = 0,
        priority: int = 20,
        description: str = "",
        biz_tag: str = "todo_open_dingcadence",
        source: str = "todo_open_dingcadence",
        created: int | None = None,
        modified: int | None = None,
        task_id: str | None = None,
    ) -> str:
        """A todo created by ``unionid`` (its executor unless ``executors`` says otherwise); its taskId.

        Times are ms since 1970 (``created`` / ``modified`` default to now; ``due`` 0: none).
        """
        now = _now_ms()
        created_ms = now if created is None else created
        modified_ms = created_ms if modified is None else modified
        with self._lock:
            task = task_id or "task" + secrets.token_hex(12)
            self._todos[task] = _Todo(
                task,
                subject,
                unionid,
                list(executors) if executors is not None else [unionid],
                list(participants or []),
                done,
                created_ms,
                modified_ms,
                due,
                start,
                modified_ms if done else 0,
                priority,
                description,
                biz_tag,
                source,
            )
        return task

    def update_todo(
        self,
        task_id: str,
        *,
        subject: str | None = None,
        executors: list[str] | None = None,
        participants: list[str] | None = None,
        done: bool | None = None,
        due: int | None = None,
        priority: int | None = None,
        description: str | None = None,
        modified: int | None = None,
    ) -> None:
        """Change a todo as a person would: ``modifiedTime`` moves on (to ``modified``, else now and at
        least 1 ms later); done sets ``finishTime``, reopening clears it."""
        with self._lock:
            todo = self._todos[task_id]
            if subject is not None:
                todo.subject = subject
            if executors is not None:
                todo.executors = list(executors)
            if participants is not None:
                todo.participants = list(participants)
            if due is not None:
                todo.due = due
            if priority is not None:
                todo.priority = priority
            if description is not None:
                todo.description = description
            todo.modified = modified if modified is not None else max(_now_ms(), todo.modified + 1)
            if done is not None and done != todo.done:
                todo.done = done
                todo.finish = todo.modified if done else 0

    def delete_todo(self, task_id: str) -> None:
        """Gone from every list; its detail answers "task not exist"."""
        with self._lock:
            self._todos.pop(task_id, None)

    def todo(self, task_id: str) -> dict[str, Any]:
        """A todo's detail as the API would answer it now."""
        with self._lock:
            return self._todos[task_id].detail()

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
        with self._lock:
            self.call_counts[path] += 1
            if self.record_calls:
                self.calls.append(Call(request.method, path, query, body, headers))
            try:
                if bad_json:
                    raise self._bad_request(path, "the body is not JSON")
                status, answer = 200, self._route(request.method, path, query, body, headers)
            except _Refusal as refusal:
                status, answer = refusal.status, refusal.body
        self._notify()
        return web.json_response(answer, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    @staticmethod
    def _bad_request(path: str, message: str) -> _Refusal:
        if path.startswith("/v1.0/"):
            return _api_error("InvalidParameter", message)
        return _oapi_error(40035, f"不合法的参数: {message}")

    def _route(
        self, verb: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> dict[str, Any]:
        for failure in self._failures:
            if path.endswith(failure[0]):
                failure[4] -= 1
                if failure[4] <= 0:
                    self._failures.remove(failure)
                _, code, status, message, _, sub_code = failure
                if path.startswith("/v1.0/"):
                    raise _api_error(str(code), message, status)
                refusal = _oapi_error(int(code) if str(code).lstrip("-").isdigit() else code, message)
                if sub_code is not None:
                    refusal.body["sub_code"] = str(sub_code)
                raise refusal
        if not isinstance(body, dict | None):
            raise self._bad_request(path, "the body must be a JSON object")
        body = body or {}
        if path == _OPEN_PATH and verb == "POST":
            return self._open_connection(body)
        if path == _TOKEN_PATH and verb == "POST":
            return self._access_token(body)
        if path == _GETTOKEN_PATH and verb == "GET":
            return self._gettoken(query)
        if path == _SESSION_PATH and verb == "POST":
            return self._send_by_session(query, body)
        if path.startswith("/v1.0/"):
            self._authorize_api(headers)
            self._metered(path)
            self._admit(path)
            if path.startswith("/v1.0/todo/"):
                return self._todo_api(verb, path, body)
            if path == BATCH_SEND and verb == "POST":
                return self._batch_send(body)
            if path == "/v1.0/card/instances/createAndDeliver" and verb == "POST":
                return self._create_card(body, deliver=True)
            if path == "/v1.0/card/instances" and verb == "POST":
                return self._create_card(body, deliver=False)
            if path == "/v1.0/card/instances/deliver" and verb == "POST":
                return self._deliver_card(body)
            if path == "/v1.0/card/instances" and verb == "PUT":
                return self._update_card(body)
            if path == "/v1.0/card/streaming" and verb == "PUT":
                return self._stream_card(body)
            raise _api_error("InvalidAction.NotFound", f"Specified api is not found: {verb} {path}", 404)
        if path.startswith("/topapi/"):
            self._authorize_oapi(query)
            self._metered(path)
            self._admit(path)
            if path == "/topapi/v2/department/listsub":
                return self._listsub(body)
            if path == "/topapi/v2/user/list":
                return self._user_list(body)
            if path == "/topapi/v2/user/get":
                return self._user_get(body)
            api = path.removeprefix("/topapi/").replace("/", ".")
            raise _oapi_error(22, f"Invalid method[submsg=不合法ApiName，ApiName = dingtalk.oapi.{api}]")
        raise _Refusal(404, {"errcode": 404, "errmsg": f"not found: {verb} {path}"})

    def _authorize_api(self, headers: dict[str, str]) -> None:
        token = headers.get(_TOKEN_HEADER, "")
        if not token:
            raise _api_error(
                "MissingxAcsDingtalkAccessToken", f"{_TOKEN_HEADER} is mandatory for this action."
            )
        if token not in self._tokens:
            raise _api_error("InvalidAuthentication", _INVALID_TOKEN_MSG)

    def _authorize_oapi(self, query: dict[str, str]) -> None:
        if query.get("access_token", "") not in self._tokens:
            raise _oapi_error(40014, _INVALID_TOKEN_MSG)

    def _admit(self, path: str) -> None:
        limit = self._limit
        if limit is None or not path.endswith(limit.per_api):
            return
        now = self.clock()
        stats = limit.stats
        wait = limit.bucket.wait(now)
        if wait > 0:
            stats.refused += 1
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + wait))
            raise _api_error(limit.code, f"请求过于频繁，限制将在 {until} 结束", 403)
        limit.bucket.tokens -= 1
        stats.admitted += 1
        stats.first = now if stats.first is None else stats.first
        stats.last = now

    def _metered(self, path: str) -> None:
        """Refuse a metered call while the monthly quota is used up (``exhaust_quota``)."""
        if not self._quota_exhausted:
            return
        if path.startswith("/v1.0/"):
            raise _api_error(QUOTA_CODE, "企业本月 API 调用次数已达上限", 403)
        raise _oapi_error(QUOTA_ERRCODE, "企业本月 API 调用次数已达上限")

    # ---- todos --------------------------------------------------------------------------------

    def _todo_api(self, verb: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        parts = path.split("/")  # "", "v1.0", "todo", "users", unionId, ...
        if len(parts) == 8 and parts[3] == "users" and path.endswith(TODO_QUERY) and verb == "POST":
            return self._todo_query(parts[4], body)
        if len(parts) == 7 and parts[3] == "users" and parts[5] == "tasks" and verb == "GET":
            return self._todo_detail(parts[6])
        raise _api_error("InvalidAction.NotFound", f"Specified api is not found: {verb} {path}", 404)

    def _todo_query(self, unionid: str, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("nextToken")
        token = "0" if token in (None, "") else token
        if not isinstance(token, str) or not token.isdigit():
            raise _api_error("InvalidParameter", f"nextToken 不合法: {token!r}")
        is_done = body.get("isDone")
        if is_done is not None and not isinstance(is_done, bool):
            raise _api_error("InvalidParameter", "isDone 必须是布尔值")
        roles = body.get("roleTypes")
        if roles is not None and (
            not isinstance(roles, list)
            or not all(
                isinstance(group, list) and group and all(r in _TODO_ROLES for r in group) for group in roles
            )
        ):
            raise _api_error("InvalidParameter", "roleTypes 须为 executor/creator/participant 的二维数组")
        matching = [
            todo
            for todo in self._todos.values()
            if (is_done is None or todo.done == is_done)
            and (not roles or any(all(todo.has_role(unionid, role) for role in group) for group in roles))
        ]
        start = int(token)
        end = start + self.todo_page_size
        return {
            "todoCards": [todo.card() for todo in matching[start:end]],
            "nextToken": str(end) if end < len(matching) else None,
        }

    def _todo_detail(self, task_id: str) -> dict[str, Any]:
        self.todo_detail_gets[task_id] += 1
        todo = self._todos.get(task_id)
        if todo is None:
            raise _api_error("todo.taskQuery.paramError", "task not exist")
        return todo.detail()

    # ---- gateway and tokens -------------------------------------------------------------------

    def _open_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            raise _api_error("authFailed", "鉴权失败", 401)
        subscriptions = {
            (str(s.get("type", "")), str(s.get("topic", "")))
            for s in body.get("subscriptions") or []
            if isinstance(s, dict)
        }
        ticket = secrets.token_hex(8) + "-" + secrets.token_hex(4)
        self._tickets[ticket] = (self.clock(), subscriptions)
        self.tickets_issued += 1
        self.open_requests.append({**body, "clientSecret": "***"})
        return {"endpoint": f"ws://127.0.0.1:{self._port}/connect", "ticket": ticket}

    def _current_token(self) -> str:
        if self._token is None:
            self._token = secrets.token_hex(16)
            self._tokens.add(self._token)
        self.token_requests += 1
        return self._token

    def _access_token(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("appKey") != self.client_id:
            raise _api_error("invalidClientId", "无效的clientId")
        if body.get("appSecret") != self.client_secret:
            raise _api_error("invalidClientSecret", "无效的clientSecret")
        return {"accessToken": self._current_token(), "expireIn": 7200}

    def _gettoken(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("appkey") != self.client_id or query.get("appsecret") != self.client_secret:
            raise _oapi_error(40089, "不合法的corpid或corpsecret")
        return {"errcode": 0, "errmsg": "ok", "access_token": self._current_token(), "expires_in": 7200}

    # ---- sending ------------------------------------------------------------------------------

    def _deliver(self, userid: str, message: DeliveredMessage) -> None:
        message.user_id = userid
        self._inbox[userid].append(message)

    def _batch_send(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("robotCode") != self.robot_code:
            raise _api_error("robot.notExist", f"机器人不存在: {body.get('robotCode')}")
        user_ids = body.get("userIds")
        if (
            not isinstance(user_ids, list)
            or not 1 <= len(user_ids) <= _MAX_BATCH
            or not all(isinstance(u, str) for u in user_ids)
        ):
            raise _api_error("invalidParameter.userIds", f"userIds 必须是 1 到 {_MAX_BATCH} 个 userId")
        msg_key = body.get("msgKey")
        if not isinstance(msg_key, str) or not msg_key:
            raise _api_error("invalidParameter.msgKey", "msgKey 不能为空")
        try:
            msg_param = json.loads(body.get("msgParam") or "")
        except (TypeError, ValueError):
            msg_param = None
        if not isinstance(msg_param, dict):
            raise _api_error("invalidParameter.msgParam", "msgParam 必须是 JSON 对象字符串")
        key = base64.b64encode(secrets.token_bytes(24)).decode()
        send = BatchSend(self.robot_code, list(user_ids), msg_key, msg_param, key)
        for userid in dict.fromkeys(user_ids):
            if userid not in self._users or userid in self._invalid:
                send.invalid.append(userid)
            elif self._flow[userid] > 0:
                self._flow[userid] -= 1
                send.flow_controlled.append(userid)
            else:
                send.delivered.append(userid)
                self._deliver(userid, DeliveredMessage("batch", msg_key, msg_param, process_query_key=key))
        self.batch_sends.append(send)
        return {
            "processQueryKey": key,
            "invalidStaffIdList": send.invalid,
            "flowControlledStaffIdList": send.flow_controlled,
        }

    @staticmethod
    def _spaces(open_space_id: Any) -> list[tuple[str, str]]:
        spaces = []
        for part in str(open_space_id or "").split(";"):
            if not part.startswith("dtv1.card//") or "." not in part[11:]:
                continue
            kind, _, space = part[11:].partition(".")
            spaces.append((kind, space))
        return spaces

    def _card_data(self, body: dict[str, Any]) -> dict[str, Any]:
        card_data = body.get("cardData")
        if not isinstance(card_data, dict) or not isinstance(card_data.get("cardParamMap", {}), dict):
            raise _api_error("invalidParameter.cardData", "cardData 必须是 {cardParamMap: {...}}")
        return {**card_data, "cardParamMap": dict(card_data.get("cardParamMap") or {})}

    def _create_card(self, body: dict[str, Any], *, deliver: bool) -> dict[str, Any]:
        out_track_id, template_id = body.get("outTrackId"), body.get("cardTemplateId")
        if not isinstance(out_track_id, str) or not out_track_id:
            raise _api_error("invalidParameter.outTrackId", "outTrackId 不能为空")
        if not isinstance(template_id, str) or not template_id:
            raise _api_error("invalidParameter.cardTemplateId", "cardTemplateId 不能为空")
        card_data = self._card_data(body)
        existing = self.cards.get(out_track_id)
        if existing is not None:
            self.duplicate_out_track_ids += 1
            if not deliver:
                return {"success": True, "result": out_track_id}
            results = [
                {"spaceType": kind, "spaceId": space, "success": True, "carrierId": out_track_id}
                for kind, space in self._spaces(existing.open_space_id)
            ]
            return {"success": True, "result": {"outTrackId": out_track_id, "deliverResults": results}}
        private = body.get("privateData") if isinstance(body.get("privateData"), dict) else {}
        card = Card(
            out_track_id,
            template_id,
            "",
            card_data,
            dict(private or {}),
            [],
            str(body.get("callbackType", "")),
        )
        if deliver:
            results = self._deliver_spaces(card, body)
        self.cards[out_track_id] = card
        if not deliver:
            return {"success": True, "result": out_track_id}
        return {"success": True, "result": {"outTrackId": out_track_id, "deliverResults": results}}

    def _deliver_spaces(self, card: Card, body: dict[str, Any]) -> list[dict[str, Any]]:
        spaces = self._spaces(body.get("openSpaceId"))
        if not spaces:
            raise _api_error("invalidParameter.openSpaceId", "openSpaceId 格式错误: dtv1.card//<TYPE>.<id>")
        results = []
        for kind, space in spaces:
            result: dict[str, Any] = {"spaceType": kind, "spaceId": space, "success": False}
            if kind == "IM_ROBOT":
                model = body.get("imRobotOpenDeliverModel")
                if not isinstance(model, dict) or model.get("spaceType") != "IM_ROBOT":
                    result["errorMsg"] = "imRobotOpenDeliverModel.spaceType 必须是 IM_ROBOT"
                elif space not in self._users:
                    result["errorMsg"] = f"用户不存在: {space}"
                else:
                    card.user_id = space
                    result.update(success=True, carrierId=card.out_track_id)
                    self._deliver(
                        space, DeliveredMessage("card", card.template_id, card.card_data, card.out_track_id)
                    )
            else:
                result["errorMsg"] = f"the fake delivers to IM_ROBOT only, not {kind}"
            results.append(result)
        card.open_space_id = ";".join(f"dtv1.card//{k}.{s}" for k, s in spaces)
        return results

    def _known_card(self, body: dict[str, Any]) -> Card:
        card = self.cards.get(str(body.get("outTrackId", "")))
        if card is None:
            raise _api_error(
                "invalidParameter.outTrackId", f"卡片不存在: outTrackId={body.get('outTrackId')}"
            )
        return card

    def _deliver_card(self, body: dict[str, Any]) -> dict[str, Any]:
        card = self._known_card(body)
        return {"success": True, "result": self._deliver_spaces(card, body)}

    def _update_card(self, body: dict[str, Any]) -> dict[str, Any]:
        card = self._known_card(body)
        options = body.get("cardUpdateOptions") if isinstance(body.get("cardUpdateOptions"), dict) else {}
        options = options or {}
        if "cardData" in body:
            update = self._card_data(body)
            params = card.card_data.setdefault("cardParamMap", {})
            if not options.get("updateCardDataByKey"):
                params.clear()
            params.update(update["cardParamMap"])
            card.updates.append(update)
        private = body.get("privateData")
        if isinstance(private, dict):
            for user, data in private.items():
                if options.get("updatePrivateDataByKey") and isinstance(data, dict):
                    mine = card.private_data.setdefault(user, {})
                    mine.setdefault("cardParamMap", {}).update(data.get("cardParamMap") or {})
                else:
                    card.private_data[user] = data
        return {"success": True, "result": True}

    def _stream_card(self, body: dict[str, Any]) -> dict[str, Any]:
        card = self._known_card(body)
        key, content = str(body.get("key", "")), str(body.get("content", ""))
        params = card.card_data.setdefault("cardParamMap", {})
        params[key] = content if body.get("isFull") else str(params.get(key, "")) + content
        card.updates.append({"cardParamMap": {key: params[key]}, "streaming": True})
        return {"success": True, "result": True}

    def _send_by_session(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        session = self._sessions.get(query.get("session", ""))
        if session is None or session[1] < _now_ms():
            raise _oapi_error(300001, "session 不存在或已过期")
        msgtype = body.get("msgtype")
        content = body.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype not in ("text", "markdown", "actionCard", "link", "feedCard") or not isinstance(
            content, dict
        ):
            raise _oapi_error(40035, "不合法的参数: msgtype")
        self.session_replies.append({**body, "session": query.get("session", ""), "userid": session[0]})
        self._deliver(session[0], DeliveredMessage("session", msgtype, content))
        return {"errcode": 0, "errmsg": "ok"}

    # ---- legacy directory ---------------------------------------------------------------------

    @staticmethod
    def _int(value: Any, default: int | None = None) -> int:
        if value is None and default is not None:
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _oapi_error(40035, f"不合法的参数: {value!r}") from None

    def _listsub(self, body: dict[str, Any]) -> dict[str, Any]:
        dept_id = self._int(body.get("dept_id"), _ROOT_DEPT)
        if dept_id not in self._departments:
            raise _oapi_error(60003, "部门不存在")
        self._index()
        result = [
            {
                "dept_id": d.dept_id,
                "name": d.name,
                "parent_id": d.parent,
                "create_dept_group": False,
                "auto_add_user": True,
            }
            for d in self._children.get(dept_id, [])
        ]
        return {"errcode": 0, "errmsg": "ok", "result": result, "request_id": secrets.token_hex(6)}

    def _user_json(self, user: _User, *, with_manager: bool, listed_in: int | None = None) -> dict[str, Any]:
        """A user/list item (``listed_in``: the department listed) or, without it, a user/get result."""
        answer: dict[str, Any] = {
            "userid": user.userid,
            "unionid": user.unionid,
            "name": user.name,
            "title": user.title,
            "dept_id_list": list(user.departments),
            "active": user.active,
            "admin": False,
            "boss": False,
            "hide_mobile": False,
            "job_number": "",
            "avatar": "",
        }
        if listed_in is not None:
            answer["leader"] = listed_in in user.leads
        else:
            answer["leader_in_dept"] = [{"dept_id": d, "leader": d in user.leads} for d in user.departments]
        if user.email:
            answer["email"] = user.email
        if user.org_email:
            answer["org_email"] = user.org_email
        if with_manager and user.manager:
            answer["manager_userid"] = user.manager
        return answer

    def _user_list(self, body: dict[str, Any]) -> dict[str, Any]:
        dept_id = self._int(body.get("dept_id"))
        cursor = self._int(body.get("cursor"))
        size = self._int(body.get("size"))
        if not 1 <= size <= _MAX_PAGE or cursor < 0:
            raise _oapi_error(40035, f"不合法的参数: size 须在 1..{_MAX_PAGE}, cursor ≥ 0")
        if dept_id not in self._departments:
            raise _oapi_error(60003, "部门不存在")
        self._index()
        members = self._members.get(dept_id, [])
        page = members[cursor : cursor + size]
        result: dict[str, Any] = {
            "has_more": cursor + size < len(members),
            "list": [self._user_json(u, with_manager=self.list_has_manager, listed_in=dept_id) for u in page],
        }
        if result["has_more"]:
            result["next_cursor"] = cursor + size
        return {"errcode": 0, "errmsg": "ok", "result": result, "request_id": secrets.token_hex(6)}

    def _user_get(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(body.get("userid", "")))
        if user is None:
            raise _oapi_error(60121, "找不到该用户")
        return {
            "errcode": 0,
            "errmsg": "ok",
            "result": self._user_json(user, with_manager=True),
            "request_id": secrets.token_hex(6),
        }

    # ---- Stream -------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            issued = self._tickets.pop(ticket, None)
            valid = issued is not None and self.clock() - issued[0] <= self.ticket_ttl
        if not valid or issued is None:
            return web.json_response({"code": "invalidTicket", "message": "ticket 无效或已使用"}, status=401)
        ws = web.WebSocketResponse(autoping=True, timeout=2.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = _Conn(ws, secrets.token_hex(12), issued[1])
        with self._lock:
            self._conns.append(conn)
            self.connections_opened += 1
        self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
        finally:
            with self._lock:
                conn.open = False
                if conn in self._conns:
                    self._conns.remove(conn)
                futures = [f for mid in conn.pending for f in self._acks_pending.pop(mid, [])]
                conn.pending.clear()
            for future in futures:
                if not future.done():
                    future.set_exception(ConnectionResetError("the stream connection closed before the ack"))
            self._notify()
        return ws

    def _on_text(self, conn: _Conn, text: str) -> None:
        try:
            ack = json.loads(text)
            message_id = str(ack["headers"]["messageId"])
        except (ValueError, KeyError, TypeError):
            return
        data = ack.get("data")
        if isinstance(data, str):
            with contextlib.suppress(ValueError):
                data = json.loads(data)
        answer = {**ack, "data": data}
        with self._lock:
            futures = self._acks_pending.get(message_id, [])
            future = futures.pop(0) if futures else None
            if not futures:
                self._acks_pending.pop(message_id, None)
                conn.pending.discard(message_id)
            self.acks[message_id] = answer
        if future is not None and not future.done():
            future.set_result(answer)
        self._notify()

    def _frame(
        self, kind: str, topic: str, data: dict[str, Any], message_id: str, conn: _Conn, extra: dict[str, str]
    ) -> str:
        headers = {
            "appId": self.client_id,
            "connectionId": conn.connection_id,
            "contentType": "application/json",
            "messageId": message_id,
            "time": str(_now_ms()),
            "topic": topic,
            **extra,
        }
        frame = {
            "specVersion": "1.0",
            "type": kind,
            "headers": headers,
            "data": json.dumps(data, ensure_ascii=False),
        }
        return json.dumps(frame, ensure_ascii=False)

    async def _push(
        self,
        kind: str,
        topic: str,
        data: dict[str, Any],
        message_id: str,
        extra: dict[str, str],
        timeout: float,
    ) -> dict[str, Any]:
        want = (kind, "*" if kind == "EVENT" else topic)

        def subscribed() -> list[_Conn]:  # SYSTEM frames need no subscription
            return [c for c in self._conns if kind == "SYSTEM" or want in c.subscriptions]

        async with asyncio.timeout(timeout):
            await self._wait(lambda: bool(subscribed()), timeout, f"stream connection subscribed to {want}")
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            with self._lock:
                conn = self._rng.choice(subscribed())
                self._acks_pending.setdefault(message_id, []).append(future)
                conn.pending.add(message_id)
            try:
                await conn.ws.send_str(self._frame(kind, topic, data, message_id, conn, extra))
                return await future
            finally:
                with self._lock:
                    futures = self._acks_pending.get(message_id, [])
                    if future in futures:
                        futures.remove(future)
                    if not futures:
                        self._acks_pending.pop(message_id, None)
                        conn.pending.discard(message_id)

    async def _push_from_test(
        self,
        kind: str,
        topic: str,
        data: dict[str, Any],
        message_id: str | None,
        extra: dict[str, str] | None = None,
        timeout: float = 5,
    ) -> dict[str, Any]:
        mid = message_id or f"{secrets.token_hex(4)}_{secrets.token_hex(3)}_{next(self._ids)}"
        try:
            return await self._on_loop(self._push(kind, topic, data, mid, extra or {}, timeout))
        except TimeoutError:
            raise TimeoutError(f"DingTalkFake: no ack for {kind} {topic} within {timeout}s") from None

    def chatbot_data(
        self, userid: str, text: str, *, msg_id: str | None = None, conversation_type: str = "1"
    ) -> dict[str, Any]:
        """The data of a chatbot message from ``userid`` (a new sessionWebhook each time)."""
        with self._lock:
            if userid not in self._users:
                self.add_user(userid, name=userid)
            user = self._users[userid]
            session = secrets.token_urlsafe(24)
            created = _now_ms()
            expires = created + _SESSION_TTL_MS
            self._sessions[session] = (userid, expires)
        bot_user = "$:LWCP_v1:$" + _b64_hash(f"bot:{self.robot_code}")
        data: dict[str, Any] = {
            "conversationId": self.conversation_id(userid)
            if conversation_type == "1"
            else "cid" + _b64_hash(f"group:{self.robot_code}"),
            "chatbotCorpId": self.corp_id,
            "chatbotUserId": bot_user,
            "msgId": msg_id or "msg" + base64.b64encode(secrets.token_bytes(16)).decode(),
            "senderNick": user.name,
            "isAdmin": False,
            "senderStaffId": userid,
            "sessionWebhookExpiredTime": expires,
            "createAt": created,
            "senderCorpId": self.corp_id,
            "conversationType": conversation_type,
            "senderId": "$:LWCP_v1:$" + _b64_hash(f"staff:{self.corp_id}:{userid}"),
            "sessionWebhook": f"{self.url}{_SESSION_PATH}?session={session}",
            "robotCode": self.robot_code,
            "msgtype": "text",
            "text": {"content": text},
            "isInAtList": True,
        }
        if conversation_type == "2":
            data["conversationTitle"] = "Group"
            data["atUsers"] = [{"dingtalkId": bot_user}]
        return data

    async def push_chatbot_message(
        self,
        userid: str,
        text: str,
        *,
        msg_id: str | None = None,
        message_id: str | None = None,
        conversation_type: str = "1",
        timeout: float = 5,
    ) -> dict[str, Any]:
        """A text from ``userid`` to the bot (CALLBACK ``/v1.0/im/bot/messages/get``); returns the ack.

        ``msg_id`` is the data's ``msgId``, ``message_id`` the frame's ``headers.messageId`` (a re-push
        passes both again).
        """
        data = self.chatbot_data(userid, text, msg_id=msg_id, conversation_type=conversation_type)
        return await self._push_from_test("CALLBACK", CHATBOT_TOPIC, data, message_id, timeout=timeout)

    async def push_card_callback(
        self,
        userid: str,
        out_track_id: str,
        params: dict[str, Any],
        *,
        action_ids: tuple[str, ...] = ("submit",),
        message_id: str | None = None,
        timeout: float = 5,
    ) -> dict[str, Any]:
        """``userid`` pressed a button on card ``out_track_id`` (CALLBACK
        ``/v1.0/card/instances/callback``); returns the ack (the handler's answer in
        ``data["response"]``)."""
        content = {"cardPrivateData": {"actionIds": list(action_ids), "params": params}}
        data = {
            "extension": "{}",
            "corpId": self.corp_id,
            "spaceType": "IM_ROBOT",
            "spaceId": userid,
            "userIdType": 1,
            "type": "actionCallback",
            "userId": userid,
            "content": json.dumps(content, ensure_ascii=False),
            "outTrackId": out_track_id,
        }
        return await self._push_from_test("CALLBACK", CARD_CALLBACK_TOPIC, data, message_id, timeout=timeout)

    async def push_event(
        self, event_type: str, data: dict[str, Any], *, event_id: str | None = None, timeout: float = 5
    ) -> dict[str, Any]:
        """An EVENT (to a connection subscribed to ``*``); returns the ack."""
        now = str(_now_ms())
        extra = {
            "eventType": event_type,
            "eventId": event_id or secrets.token_hex(16),
            "eventBornTime": now,
            "eventCorpId": self.corp_id,
            "eventUnifiedAppId": self.client_id,
        }
        return await self._push_from_test("EVENT", event_type, data, None, extra, timeout)

    async def send_ping(self, opaque: str | None = None, *, timeout: float = 5) -> dict[str, Any]:
        """SYSTEM ``ping`` ``{"opaque"}`` to one connection; returns the ack (its data echoes opaque)."""
        data = {"opaque": opaque or secrets.token_hex(16)}
        return await self._push_from_test(
            "SYSTEM", "ping", data, f"ping_{secrets.token_hex(6)}", timeout=timeout
        )

    async def send_disconnect(self) -> None:
        """SYSTEM ``disconnect`` to every connection; TCP closes ``disconnect_delay`` s later."""
        await self._on_loop(self._disconnect_all())
        self._notify()

    async def _disconnect_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        loop = asyncio.get_running_loop()
        for conn in conns:
            mid = f"disconnect_{secrets.token_hex(6)}"
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(
                    self._frame("SYSTEM", "disconnect", {"reason": "gateway"}, mid, conn, {})
                )
            loop.call_later(self.disconnect_delay, self._close_later, conn)

    def _close_later(self, conn: _Conn) -> None:
        task = asyncio.get_running_loop().create_task(self._close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(conn: _Conn) -> None:
        if not conn.ws.closed:
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"disconnect")
