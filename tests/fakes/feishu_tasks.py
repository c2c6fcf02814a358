"""Feishu Task v2, contact lookup and user OAuth on 127.0.0.1, for ``connectors.feishu_tasks`` and
``connectors.feishu_oauth`` (httpx, no SDK).

One port serves both the open platform (``open.feishu.cn`` paths) and the accounts domain
(``accounts.feishu.cn`` paths). It runs on the caller's event loop: our code is async httpx only, so
nothing blocks it (the IM fake in ``feishu.py`` needs its own thread for lark-oapi's blocking calls).
Wire behaviour, marked [VERIFIED: where] or GUESS:

* Every open-platform answer is ``{"code": 0, "msg": "success", "data": {...}}``; errors
  ``{"code": N, "msg": ..., "error": {"log_id"}}`` with an HTTP status [VERIFIED: lark-oapi 1.7.5
  ``core/model``]. Timestamps are strings of milliseconds, ``completed_at`` "0" = not completed
  [VERIFIED: task-sources.md §3.1 (official MCP field doc, CLI)].
* ``POST /open-apis/auth/v3/tenant_access_token/internal`` ``{"app_id", "app_secret"}`` →
  ``{"code": 0, "tenant_access_token": "t-…", "expire": 7200}`` [VERIFIED: lark-oapi ``core/token``];
  wrong secret → code 10014 (as the IM fake ``feishu.py`` answers; the connector reads any non-zero
  code as refused credentials). Tokens: "t-" tenant, "u-" user
  [VERIFIED: larksuite/cli ``internal/output`` error constants]. Missing → HTTP 400 99991661; unknown
  or expired tenant token → 99991663; unknown user token → 99991668; expired user token → 99991677;
  a user token without ``task:task:read`` on a task API → 99991679 [VERIFIED: same constants; the
  HTTP status is a GUESS]. A tenant token at a user-only API (``list_related_task``) → HTTP 400
  99991668 (GUESS: lark-oapi never sends one there, so its answer is undocumented); a user token at
  ``batch_get_id`` (tenant only) → 99991663 (GUESS).
* ``GET /open-apis/task/v2/tasklists`` (tenant: lists the app was added to; user: lists they are a
  member of), ``GET …/tasklists/:guid/tasks`` (TaskSummary ``{guid, summary, completed_at, due,
  members, subtask_count}``, no ``updated_at``; filters ``completed``, ``created_from``/``created_to``
  ms inclusive), ``GET …/tasks/:guid`` (``data.task``, full Task) [VERIFIED: lark-oapi ``api/task/v2``
  models and request builders]. ``page_size`` 1..100, default 50, else 99992402; ``has_more`` and an
  opaque ``page_token``, "" on the last page [VERIFIED: Lark Task v2 overview, "pagination"].
  Not visible to the caller → HTTP 403 1470403; no such task or deleted → HTTP 404 1470404
  [VERIFIED: Lark Task v2 overview, "API error specification"].
* ``GET /open-apis/task/v2/task_v2/list_related_task`` (user token only [VERIFIED: lark-oapi
  ``token_types={USER}``]): tasks the user created, is assigned or follows, ordered by ``updated_at``;
  ``page_token`` is an ``updated_at`` cursor in microseconds [VERIFIED: larksuite/cli task skill doc];
  that the cursor is exclusive and the next token is the page's last ``updated_at`` µs is a GUESS.
  Deleted tasks are not listed (GUESS). Each change gets a distinct µs stamp.
* ``POST /open-apis/contact/v3/users/batch_get_id?user_id_type=open_id`` ``{"emails", "mobiles",
  "include_resigned"}`` → ``data.user_list`` (unknown or resigned email: no ``user_id``), ≤ 50 each
  [VERIFIED: lark-oapi contact v3 model; limit as in ``feishu.py``].
* OAuth [VERIFIED: lark-oapi ``core/access_token`` + ``core/const.py``; open platform "obtain OAuth
  code" page]: ``GET /open-apis/authen/v1/authorize?client_id&redirect_uri&scope&state`` answers 302 to
  ``redirect_uri?code=…&state=…`` for the user ``sign_in`` chose (a wrong ``client_id`` → HTTP 400 page,
  GUESS); a code lasts 5 minutes and works once. ``POST /oauth/v3/token`` (JSON): ``authorization_code``
  (``code``, ``redirect_uri``) or ``refresh_token``, with ``client_id``/``client_secret``; answers the
  flat ``{code: 0, access_token, expires_in, refresh_token, refresh_token_expires_in, scope,
  token_type: "Bearer"}``; a refresh token only with ``offline_access`` [VERIFIED: open platform doc
  field note]. A refresh rotates: the old refresh token is spent. Refusals are HTTP 400 ``{code,
  error, error_description}`` (status GUESS): refresh token unknown 20026, expired 20037, revoked
  20064, used already 20073 [VERIFIED: larksuite/cli constants]; bad client 20002 / bad code 20003
  (GUESS). ``GET /open-apis/authen/v1/user_info`` (user token) → ``data{open_id, union_id, name,
  email}`` [VERIFIED: lark-oapi authen v1 model].
* Rate limits on demand (``throttle``): HTTP 429, ``x-ogw-ratelimit-limit``/``x-ogw-ratelimit-reset``
  (seconds) and ``{"code": 99991400}`` [VERIFIED: task-sources.md §3.3, frequency-control doc].
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from tests.fakes.local_server import LocalServer

RATE_LIMITED = 99991400
MISSING_TOKEN, INVALID_TOKEN, USER_TOKEN_INVALID, USER_TOKEN_EXPIRED = 99991661, 99991663, 99991668, 99991677
USER_SCOPE_MISSING = 99991679
FIELD_VALIDATION = 99992402
BAD_SECRET = 10014
TASK_FORBIDDEN, TASK_NOT_FOUND = 1470403, 1470404
REFRESH_INVALID, REFRESH_EXPIRED, REFRESH_REVOKED, REFRESH_USED = 20026, 20037, 20064, 20073
BAD_CLIENT, BAD_CODE = 20002, 20003
TASK_READ = "task:task:read"


@dataclass(frozen=True)
class Call:
    """One HTTP request as Feishu would have received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON (None without a body)
    headers: dict[str, str]  # names lower-cased


@dataclass
class _User:
    open_id: str
    union_id: str
    name: str
    email: str | None
    resigned: bool = False


@dataclass
class _Tasklist:
    guid: str
    name: str
    app_can_read: bool
    members: set[str]
    created_ms: int


@dataclass
class _Task:
    guid: str
    task_id: str
    summary: str
    creator: str | None
    assignees: list[str]
    followers: list[str]
    tasklists: list[str]
    created_ms: int
    updated_us: int
    due_ms: int | None = None
    all_day: bool = False
    completed_ms: int = 0
    deleted: bool = False
    description: str = ""

    def related(self, open_id: str) -> bool:
        return open_id == self.creator or open_id in self.assignees or open_id in self.followers


@dataclass
class _UserToken:
    open_id: str
    expires_at: float
    scopes: frozenset[str]


@dataclass
class _Code:
    open_id: str
    redirect_uri: str
    scopes: frozenset[str]
    expires_at: float
    used: bool = False


@dataclass
class _Refresh:
    open_id: str
    scopes: frozenset[str]
    expires_at: float
    state: str = "live"  # live | used | revoked


@dataclass
class _Failure:
    path_suffix: str
    status: int
    code: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)


class _Refusal(Exception):
    def __init__(self, code: int, msg: str, *, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status, self.headers = code, msg, status, headers or {}


class _OAuthRefusal(Exception):
    def __init__(self, code: int, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.code, self.error, self.description, self.status = code, error, description, status


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
        raise _Refusal(FIELD_VALIDATION, "field validation failed: page_token is invalid") from None


def _page_size(query: dict[str, str]) -> int:
    raw = query.get("page_size") or "50"
    try:
        size = int(raw)
    except ValueError:
        raise _Refusal(FIELD_VALIDATION, f"field validation failed: page_size {raw!r}") from None
    if not 1 <= size <= 100:
        raise _Refusal(FIELD_VALIDATION, "field validation failed: page_size must be 1..100")
    return size


def _offset_page(items: list[Any], query: dict[str, str], kind: str) -> tuple[list[Any], dict[str, Any]]:
    size, start = _page_size(query), _page_start(query, kind)
    chunk = items[start : start + size]
    more = start + size < len(items)
    token = base64.urlsafe_b64encode(f"{kind}:{start + size}".encode()).decode() if more else ""
    return chunk, {"has_more": more, "page_token": token}


def _flag(query: dict[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in ("true", "false"):
        raise _Refusal(FIELD_VALIDATION, f"field validation failed: {name} must be true or false")
    return raw == "true"


class FeishuTasksFake(LocalServer):
    """Feishu's Task v2, contact lookup, tenant token and user OAuth endpoints on 127.0.0.1, port 0."""

    def __init__(
        self,
        *,
        app_id: str = "cli_tasks_test",
        app_secret: str = "tasks-app-secret-for-tests",
        tenant_key: str = "tenant-tasks-test",
        user_token_ttl: int = 7200,
        refresh_token_ttl: int = 30 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: epoch seconds, for item timestamps and token lifetimes (``advance`` moves it on)."""
        self.app_id, self.app_secret, self.tenant_key = app_id, app_secret, tenant_key
        self.user_token_ttl, self.refresh_token_ttl = user_token_ttl, refresh_token_ttl
        self._clock = clock
        self._offset = 0.0
        self.calls: list[Call] = []
        self.http_429 = 0
        self.signed_in: str | None = None  # the user the authorize page acts for
        self._users: dict[str, _User] = {}
        self._tasklists: dict[str, _Tasklist] = {}
        self._tasks: dict[str, _Task] = {}
        self._tenant_tokens: set[str] = set()
        self._user_tokens: dict[str, _UserToken] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._last_us = 0

    # ---- lifecycle ----------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._http)

    @property
    def url(self) -> str:
        return self.base

    def now(self) -> float:
        return self._clock() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on (token lifetimes, item timestamps)."""
        self._offset += seconds

    def calls_to(self, path_suffix: str) -> list[Call]:
        return [c for c in self.calls if c.path.endswith(path_suffix)]

    # ---- the world ------------------------------------------------------------------------------

    def add_user(self, name: str, *, email: str | None = None, open_id: str | None = None) -> str:
        n = next(self._ids)
        open_id = open_id or f"ou_{n:030x}"
        self._users[open_id] = _User(open_id, f"on_{n:030x}", name, email)
        return open_id

    def resign_user(self, open_id: str) -> None:
        self._users[open_id].resigned = True

    def add_tasklist(self, name: str, *, app_can_read: bool = True, members: Iterable[str] = ()) -> str:
        """A tasklist; ``app_can_read``: the app was added to it (so its tenant token reads it)."""
        guid = f"tl-{secrets.token_hex(8)}"
        self._tasklists[guid] = _Tasklist(guid, name, app_can_read, set(members), self.now_ms())
        return guid

    def _stamp(self) -> int:
        # one distinct µs per change, never going back, so a cursor never splits equal stamps
        self._last_us = max(self.now_ms() * 1000, self._last_us + 1)
        return self._last_us

    def add_task(
        self,
        summary: str,
        *,
        tasklist: str | None = None,
        creator: str | None = None,
        assignees: Iterable[str] = (),
        followers: Iterable[str] = (),
        due_ms: int | None = None,
        all_day: bool = False,
        completed: bool = False,
        created_ms: int | None = None,
    ) -> str:
        n = next(self._ids)
        guid = f"{secrets.token_hex(4)}-{n:04x}-4166-b917-{secrets.token_hex(6)}"
        stamp = self._stamp()
        task = _Task(
            guid=guid,
            task_id=f"t{100000 + n}",
            summary=summary,
            creator=creator,
            assignees=list(assignees),
            followers=list(followers),
            tasklists=[tasklist] if tasklist else [],
            created_ms=created_ms if created_ms is not None else stamp // 1000,
            updated_us=stamp,
            due_ms=due_ms,
            all_day=all_day,
            completed_ms=stamp // 1000 if completed else 0,
        )
        self._tasks[guid] = task
        return guid

    def update_task(self, guid: str, **changes: Any) -> None:
        """Change a task (``summary``, ``completed``, ``due_ms``, ``all_day``, ``assignees``, ``followers``,
        ``tasklist`` (None: out of every list), ``description``); its ``updated_at`` moves on."""
        task = self._tasks[guid]
        stamp = self._stamp()
        for key, value in changes.items():
            if key == "completed":
                task.completed_ms = stamp // 1000 if value else 0
            elif key == "tasklist":
                task.tasklists = [value] if value else []
            elif key in ("assignees", "followers"):
                setattr(task, key, list(value))
            elif key in ("summary", "due_ms", "all_day", "description"):
                setattr(task, key, value)
            else:
                raise TypeError(f"update_task: unknown field {key!r}")
        task.updated_us = stamp

    def delete_task(self, guid: str) -> None:
        self._tasks[guid].deleted = True
        self._tasks[guid].updated_us = self._stamp()

    def task_json(self, guid: str) -> dict[str, Any]:
        return self._task_json(self._tasks[guid])

    # ---- tokens and misbehaviour ----------------------------------------------------------------

    def tenant_token(self) -> str:
        """A valid tenant token, as the token endpoint would issue."""
        token = "t-" + secrets.token_hex(20)
        self._tenant_tokens.add(token)
        return token

    def expire_tenant_tokens(self) -> None:
        self._tenant_tokens.clear()

    def issue_user_token(
        self, open_id: str, *, scopes: Iterable[str] = (TASK_READ,), ttl: int | None = None
    ) -> str:
        """A user access token for ``open_id``, as if they had authorised (no refresh token)."""
        token = "u-" + secrets.token_hex(20)
        lifetime = self.user_token_ttl if ttl is None else ttl
        self._user_tokens[token] = _UserToken(open_id, self.now() + lifetime, frozenset(scopes))
        return token

    def expire_user_token(self, open_id: str) -> None:
        """Every access token of the user expires now (refresh tokens still work)."""
        for token in self._user_tokens.values():
            if token.open_id == open_id:
                token.expires_at = self.now() - 1

    def revoke_user(self, open_id: str) -> None:
        """The user withdrew their authorisation: access and refresh tokens die."""
        for token in self._user_tokens.values():
            if token.open_id == open_id:
                token.expires_at = self.now() - 1
        for refresh in self._refresh.values():
            if refresh.open_id == open_id and refresh.state == "live":
                refresh.state = "revoked"

    def sign_in(self, open_id: str) -> None:
        """The browser that opens the authorize page is signed in as ``open_id``."""
        self.signed_in = open_id

    def throttle(self, path_suffix: str, *, times: int = 1, reset: int = 1, status: int = 429) -> None:
        """The next ``times`` calls to a path ending in ``path_suffix`` are rate limited (99991400)."""
        headers = {"x-ogw-ratelimit-limit": "10", "x-ogw-ratelimit-reset": str(reset)}
        self._failures.append(_Failure(path_suffix, status, RATE_LIMITED, times, headers))

    def fail(self, path_suffix: str, *, code: int, status: int = 400, times: int = 1) -> None:
        """The next ``times`` calls to a path ending in ``path_suffix`` answer ``{"code": code}``."""
        self._failures.append(_Failure(path_suffix, status, code, times))

    # ---- HTTP -----------------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        query = dict(request.query)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.calls.append(Call(request.method, request.path, query, body, headers))
        log_id = f"fake{next(self._ids):016x}"
        try:
            self._injected(request.path)
            if request.path == "/open-apis/authen/v1/authorize" and request.method == "GET":
                return self._authorize(query)
            if request.path == "/oauth/v3/token" and request.method == "POST":
                return self._oauth_token(body)
            answer = self._route(request.method, request.path, query, body, headers)
            return web.json_response(answer, headers={"X-Tt-Logid": log_id})
        except _Refusal as refusal:
            if refusal.status == 429:
                self.http_429 += 1
            answer = {"code": refusal.code, "msg": refusal.msg, "error": {"log_id": log_id}}
            return web.json_response(
                answer, status=refusal.status, headers={"X-Tt-Logid": log_id, **refusal.headers}
            )

    def _injected(self, path: str) -> None:
        for failure in self._failures:
            if path.endswith(failure.path_suffix):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                raise _Refusal(
                    failure.code,
                    "request trigger frequency limit"
                    if failure.code == RATE_LIMITED
                    else f"injected failure {failure.code}",
                    status=failure.status,
                    headers=failure.headers,
                )

    def _route(
        self, verb: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> dict[str, Any]:
        if path == "/open-apis/auth/v3/tenant_access_token/internal" and verb == "POST":
            return self._issue_tenant_token(body if isinstance(body, dict) else {})
        if not path.startswith("/open-apis/"):
            raise _Refusal(404, f"404 page not found: {verb} {path}", status=404)
        kind, who, scopes = self._caller(headers)
        parts = path.split("/")[2:]  # <service>/<version>/...
        if parts == ["authen", "v1", "user_info"] and verb == "GET":
            if who is None:
                raise _Refusal(USER_TOKEN_INVALID, "user_info needs a user access token")
            return self._ok(self._user_json(self._users[who]))
        if parts == ["contact", "v3", "users", "batch_get_id"] and verb == "POST":
            if kind != "tenant":
                raise _Refusal(INVALID_TOKEN, "batch_get_id needs a tenant access token")
            return self._batch_get_id(query, body if isinstance(body, dict) else {})
        if parts[:2] == ["task", "v2"]:
            if kind == "user" and TASK_READ not in scopes:
                raise _Refusal(USER_SCOPE_MISSING, "the user has not granted task:task:read")
            if parts[2:] == ["task_v2", "list_related_task"] and verb == "GET":
                if kind != "user":
                    raise _Refusal(USER_TOKEN_INVALID, "list_related_task accepts a user_access_token only")
                return self._related(who, query)
            if parts[2:] == ["tasklists"] and verb == "GET":
                return self._list_tasklists(kind, who, query)
            if len(parts) == 5 and parts[2] == "tasklists" and parts[4] == "tasks" and verb == "GET":
                return self._tasklist_tasks(kind, who, parts[3], query)
            if len(parts) == 4 and parts[2] == "tasks" and verb == "GET":
                return self._get_task(kind, who, parts[3])
        raise _Refusal(404, f"404 page not found: {verb} {path}", status=404)

    @staticmethod
    def _ok(data: dict[str, Any]) -> dict[str, Any]:
        return {"code": 0, "msg": "success", "data": data}

    def _caller(self, headers: dict[str, str]) -> tuple[str, str | None, frozenset[str]]:
        """Who calls: ("tenant", None, {}) or ("user", open_id, the scopes they granted)."""
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token:
            raise _Refusal(MISSING_TOKEN, "Missing access token for authorization.")
        if token.startswith("t-"):
            if token not in self._tenant_tokens:
                raise _Refusal(INVALID_TOKEN, "Invalid access token for authorization.")
            return "tenant", None, frozenset()
        user = self._user_tokens.get(token)
        if user is None:
            raise _Refusal(USER_TOKEN_INVALID, "Invalid user access token.")
        if user.expires_at <= self.now():
            raise _Refusal(USER_TOKEN_EXPIRED, "The user access token has expired.")
        return "user", user.open_id, user.scopes

    def _issue_tenant_token(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            raise _Refusal(BAD_SECRET, "app secret invalid")
        return {"code": 0, "msg": "ok", "tenant_access_token": self.tenant_token(), "expire": 7200}

    # ---- tasks ------------------------------------------------------------------------------------

    def _task_json(self, task: _Task) -> dict[str, Any]:
        members = [{"id": a, "type": "user", "role": "assignee"} for a in task.assignees]
        members += [{"id": f, "type": "user", "role": "follower"} for f in task.followers]
        body: dict[str, Any] = {
            "guid": task.guid,
            "task_id": task.task_id,
            "summary": task.summary,
            "description": task.description,
            "creator": {"id": task.creator, "type": "user"} if task.creator else None,
            "members": members,
            "completed_at": str(task.completed_ms),
            "created_at": str(task.created_ms),
            "updated_at": str(task.updated_us // 1000),
            "status": "done" if task.completed_ms else "todo",
            "tasklists": [{"tasklist_guid": g, "section_guid": f"sec-{g[3:]}"} for g in task.tasklists],
            "url": f"https://applink.feishu.cn/client/todo/task?guid={task.guid}",
            "subtask_count": 0,
            "mode": 2,
            "is_milestone": False,
            "extra": "",
        }
        if task.due_ms is not None:
            body["due"] = {"timestamp": str(task.due_ms), "is_all_day": task.all_day}
        return body

    def _summary_json(self, task: _Task) -> dict[str, Any]:
        full = self._task_json(task)
        return {
            k: full[k]
            for k in ("guid", "summary", "completed_at", "due", "members", "subtask_count")
            if k in full
        }

    def _readable_list(self, kind: str, who: str | None, tasklist: _Tasklist) -> bool:
        return tasklist.app_can_read if kind == "tenant" else who in tasklist.members

    def _related(self, open_id: str | None, query: dict[str, str]) -> dict[str, Any]:
        size = _page_size(query)
        raw = query.get("page_token") or ""
        try:
            cursor = int(raw) if raw else -1
        except ValueError:
            raise _Refusal(FIELD_VALIDATION, "field validation failed: page_token is invalid") from None
        completed = _flag(query, "completed")
        found = sorted(
            (
                t
                for t in self._tasks.values()
                if not t.deleted
                and open_id is not None
                and t.related(open_id)
                and t.updated_us > cursor
                and (completed is None or bool(t.completed_ms) == completed)
            ),
            key=lambda t: t.updated_us,
        )
        chunk, more = found[:size], len(found) > size
        return self._ok(
            {
                "items": [self._task_json(t) for t in chunk],
                "has_more": more,
                "page_token": str(chunk[-1].updated_us) if more else "",
            }
        )

    def _list_tasklists(self, kind: str, who: str | None, query: dict[str, str]) -> dict[str, Any]:
        visible = [t for t in self._tasklists.values() if self._readable_list(kind, who, t)]
        chunk, meta = _offset_page(visible, query, "tasklists")
        items = [
            {
                "guid": t.guid,
                "name": t.name,
                "members": [{"id": m, "type": "user", "role": "editor"} for m in sorted(t.members)],
                "url": f"https://applink.feishu.cn/client/todo/task_list?guid={t.guid}",
                "created_at": str(t.created_ms),
                "updated_at": str(t.created_ms),
                "archive_msec": "0",
            }
            for t in chunk
        ]
        return self._ok({"items": items, **meta})

    def _tasklist_tasks(self, kind: str, who: str | None, guid: str, query: dict[str, str]) -> dict[str, Any]:
        tasklist = self._tasklists.get(guid)
        if tasklist is None:
            raise _Refusal(TASK_NOT_FOUND, "tasklist not found", status=404)
        if not self._readable_list(kind, who, tasklist):
            raise _Refusal(TASK_FORBIDDEN, "no permission to read the tasklist", status=403)
        completed = _flag(query, "completed")
        try:
            start = int(query["created_from"]) if query.get("created_from") else None
            end = int(query["created_to"]) if query.get("created_to") else None
        except ValueError:
            raise _Refusal(FIELD_VALIDATION, "field validation failed: created_from/created_to") from None
        tasks = [
            t
            for t in self._tasks.values()
            if not t.deleted
            and guid in t.tasklists
            and (completed is None or bool(t.completed_ms) == completed)
            and (start is None or t.created_ms >= start)
            and (end is None or t.created_ms <= end)
        ]
        chunk, meta = _offset_page(tasks, query, f"tasks-{guid}")
        return self._ok({"items": [self._summary_json(t) for t in chunk], **meta})

    def _get_task(self, kind: str, who: str | None, guid: str) -> dict[str, Any]:
        task = self._tasks.get(guid)
        if task is None or task.deleted:
            raise _Refusal(TASK_NOT_FOUND, "task not found or deleted", status=404)
        lists = [self._tasklists[g] for g in task.tasklists if g in self._tasklists]
        if kind == "tenant":
            readable = any(t.app_can_read for t in lists)
        else:
            readable = who is not None and (task.related(who) or any(who in t.members for t in lists))
        if not readable:
            raise _Refusal(TASK_FORBIDDEN, "no permission to read the task", status=403)
        return self._ok({"task": self._task_json(task)})

    # ---- contact ----------------------------------------------------------------------------------

    def _batch_get_id(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if query.get("user_id_type", "open_id") != "open_id":
            raise _Refusal(FIELD_VALIDATION, "the fake answers open_ids only")
        emails, mobiles = body.get("emails") or [], body.get("mobiles") or []
        if not isinstance(emails, list) or len(emails) > 50 or len(mobiles) > 50:
            raise _Refusal(FIELD_VALIDATION, "field validation failed: at most 50 emails and 50 mobiles")
        include_resigned = body.get("include_resigned") is True
        by_email = {u.email.lower(): u for u in self._users.values() if u.email}
        user_list: list[dict[str, Any]] = []
        for email in emails:
            entry: dict[str, Any] = {"email": email}
            user = by_email.get(str(email).lower())
            if user is not None and (include_resigned or not user.resigned):
                entry["user_id"] = user.open_id
                entry["status"] = {"is_activated": not user.resigned, "is_resigned": user.resigned}
            user_list.append(entry)
        user_list += [{"mobile": m} for m in mobiles]
        return self._ok({"user_list": user_list})

    def _user_json(self, user: _User) -> dict[str, Any]:
        return {
            "name": user.name,
            "en_name": user.name,
            "open_id": user.open_id,
            "union_id": user.union_id,
            "email": user.email or "",
            "tenant_key": self.tenant_key,
        }

    # ---- OAuth ------------------------------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> web.StreamResponse:
        if query.get("client_id") != self.app_id:
            return web.Response(status=400, text="invalid client_id", content_type="text/html")
        redirect_uri = query.get("redirect_uri") or ""
        if not redirect_uri:
            return web.Response(status=400, text="redirect_uri is required", content_type="text/html")
        if self.signed_in is None:
            return web.Response(status=401, text="sign in to Feishu first", content_type="text/html")
        code = secrets.token_hex(16)
        scopes = frozenset((query.get("scope") or "").split())
        self._codes[code] = _Code(self.signed_in, redirect_uri, scopes, self.now() + 300)
        parts = urlsplit(redirect_uri)
        params = [*parse_qsl(parts.query), ("code", code)]
        if "state" in query:
            params.append(("state", query["state"]))
        location = urlunsplit(parts._replace(query=urlencode(params)))
        return web.Response(status=302, headers={"Location": location})

    def _oauth_token(self, body: Any) -> web.StreamResponse:
        try:
            if not isinstance(body, dict):
                raise _OAuthRefusal(FIELD_VALIDATION, "invalid_request", "the body must be JSON")
            if body.get("client_id") != self.app_id or body.get("client_secret") != self.app_secret:
                raise _OAuthRefusal(BAD_CLIENT, "invalid_client", "client authentication failed")
            grant_type = body.get("grant_type")
            if grant_type == "authorization_code":
                open_id, scopes = self._spend_code(body)
            elif grant_type == "refresh_token":
                open_id, scopes = self._spend_refresh(str(body.get("refresh_token") or ""))
            else:
                raise _OAuthRefusal(FIELD_VALIDATION, "unsupported_grant_type", f"grant_type {grant_type!r}")
        except _OAuthRefusal as refusal:
            return web.json_response(
                {"code": refusal.code, "error": refusal.error, "error_description": refusal.description},
                status=refusal.status,
            )
        access = self.issue_user_token(open_id, scopes=scopes)
        answer: dict[str, Any] = {
            "code": 0,
            "access_token": access,
            "expires_in": self.user_token_ttl,
            "token_type": "Bearer",
            "scope": " ".join(sorted(scopes)),
        }
        if "offline_access" in scopes:
            refresh = "ur-" + secrets.token_hex(20)
            self._refresh[refresh] = _Refresh(open_id, scopes, self.now() + self.refresh_token_ttl)
            answer["refresh_token"] = refresh
            answer["refresh_token_expires_in"] = self.refresh_token_ttl
        return web.json_response(answer)

    def _spend_code(self, body: dict[str, Any]) -> tuple[str, frozenset[str]]:
        code = self._codes.get(str(body.get("code") or ""))
        if code is None or code.used or code.expires_at <= self.now():
            raise _OAuthRefusal(
                BAD_CODE, "invalid_grant", "the authorization code is invalid, used or expired"
            )
        if body.get("redirect_uri") != code.redirect_uri:
            raise _OAuthRefusal(BAD_CODE, "invalid_grant", "redirect_uri does not match the authorization")
        code.used = True
        return code.open_id, code.scopes

    def _spend_refresh(self, token: str) -> tuple[str, frozenset[str]]:
        refresh = self._refresh.get(token)
        if refresh is None:
            raise _OAuthRefusal(REFRESH_INVALID, "invalid_grant", "the refresh token is invalid")
        if refresh.state == "used":
            raise _OAuthRefusal(REFRESH_USED, "invalid_grant", "the refresh token has been used")
        if refresh.state == "revoked":
            raise _OAuthRefusal(REFRESH_REVOKED, "invalid_grant", "the refresh token has been revoked")
        if refresh.expires_at <= self.now():
            raise _OAuthRefusal(REFRESH_EXPIRED, "invalid_grant", "the refresh token has expired")
        refresh.state = "used"
        return refresh.open_id, refresh.scopes

    def refresh_tokens_of(self, open_id: str) -> dict[str, str]:
        """The user's refresh tokens and their state (live, used, revoked)."""
        return {token: r.state for token, r in self._refresh.items() if r.open_id == open_id}
