"""Feishu (Lark) Task v2 as a task source: the tasklists the app can read, and each authorised person's tasks.

Two kinds of scope, because Feishu gives no single listing of a tenant's tasks:

* ``feishu:tasklist:<guid>`` — a tasklist the app was added to, read with the app's tenant token.
  Its listing gives only summaries (no ``updated_at``), so each task worth looking at costs one
  GET (Feishu allows 10 a second). Cost per run: one listing call per 100 tasks of the list, plus
  one detail call per task that is open or was completed since the cursor, less those whose
  summary is the same as on the last complete read by this process (a memo kept in memory, so
  the first run after a start fetches every open task: a list of 2,000 open tasks takes about
  200 s then). A task completed before the cursor and edited afterwards is not seen again.
* ``feishu:user:<open_id>`` — the tasks a person created, is assigned or follows, read with their
  own user token (``task_v2/list_related_task`` refuses the tenant token). Its page token is an
  ``updated_at`` cursor in microseconds, so an incremental read asks for exactly what changed.

Timestamps come as strings of milliseconds; ``completed_at`` "0" means not completed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.base import Member, Page, Scope
from connectors.http import Pacer, Sleep, SourceAuthError, SourceError, SourceHttp
from connectors.records import (
    PersonRef,
    StatusCategory,
    TaskRecord,
    TombstoneReason,
    from_epoch_ms,
    to_epoch_ms,
)

log = logging.getLogger(__name__)

SOURCE = "feishu_task"
FEISHU = "https://open.feishu.cn"
LARK = "https://open.larksuite.com"

TENANT_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
TASKLISTS_PATH = "/open-apis/task/v2/tasklists"
TASKLIST_TASKS_PATH = "/open-apis/task/v2/tasklists/{guid}/tasks"
RELATED_TASKS_PATH = "/open-apis/task/v2/task_v2/list_related_task"
TASK_PATH = "/open-apis/task/v2/tasks/{guid}"
BATCH_GET_ID_PATH = "/open-apis/contact/v3/users/batch_get_id"

TASKLIST_SCOPE = "feishu:tasklist:"
USER_SCOPE = "feishu:user:"

# Feishu's generic codes (open.feishu.cn "generic error code" page, as the official CLI lists them)
RATE_LIMITED = 99991400
TOKEN_MISSING, TOKEN_INVALID, TOKEN_BAD_FORMAT = 99991661, 99991663, 99991671
USER_TOKEN_INVALID, USER_TOKEN_EXPIRED = 99991668, 99991677
APP_SCOPE_MISSING, TOKEN_SCOPE_MISSING, USER_SCOPE_MISSING = 99991672, 99991676, 99991679
TOKEN_CODES = frozenset(
    {TOKEN_MISSING, TOKEN_INVALID, TOKEN_BAD_FORMAT, USER_TOKEN_INVALID, USER_TOKEN_EXPIRED}
)
# Task v2's own: 403 no permission on the resource, 404 it does not exist or was deleted;
# 1470450 "request too fast" is Task v1's word for a rate limit, honoured in case v2 says it too
TASK_FORBIDDEN, TASK_NOT_FOUND, TASK_TOO_FAST = 1470403, 1470404, 1470450

PAGE_SIZE = 100  # the most Task v2 and the tasklist listing give per page
BATCH_GET_ID_MAX = 50  # emails per batch_get_id call
_TRIMMED_KEYS = (
    "guid",
    "task_id",
    "summary",
    "status",
    "completed_at",
    "created_at",
    "updated_at",
    "due",
    "start",
    "creator",
    "members",
    "assignee_related",
    "tasklists",
    "parent_task_guid",
    "subtask_count",
    "is_milestone",
    "url",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class UserGrant:
    """A person's usable Feishu user token, for reading their tasks as them."""

    person_id: int
    open_id: str
    access_token: str = field(repr=False)


UserGrants = Callable[[], Awaitable[Sequence[UserGrant]]]


class FeishuApiError(SourceError):
    """Feishu answered with a non-zero ``code`` (kept as an int in ``feishu_code``)."""

    def __init__(self, message: str, *, status: int, feishu_code: int) -> None:
        super().__init__(SOURCE, message, status=status, code=str(feishu_code))
        self.feishu_code = feishu_code


class FeishuUserTokenInvalid(SourceAuthError):
    """A person's user token was refused (expired, revoked, or lacking a scope they must grant).

    The engine should mark that person's grant for refreshing or re-authorisation
    (``GrantStore.access_refused``) and carry on with the other scopes.
    """

    def __init__(
        self, message: str, *, person_id: int | None, open_id: str, status: int = 0, code: int | None = None
    ) -> None:
        super().__init__(SOURCE, message, status=status, code=None if code is None else str(code))
        self.person_id = person_id
        self.open_id = open_id


def feishu_rate_limited(response: httpx.Response, body: Any) -> float | None:
    """Feishu's "slow down": HTTP 429 or code 99991400, with ``x-ogw-ratelimit-reset`` seconds."""
    code = body.get("code") if isinstance(body, dict) else None
    if response.status_code != 429 and code not in (RATE_LIMITED, TASK_TOO_FAST):
        return None
    reset = response.headers.get("x-ogw-ratelimit-reset")
    try:
        return max(0.0, float(reset)) if reset else 0.0
    except ValueError:
        return 0.0


def _code(body: dict[str, Any]) -> int:
    try:
        return int(body.get("code") or 0)
    except (TypeError, ValueError):
        return -1


def _time(value: Any) -> datetime | None:
    try:
        return from_epoch_ms(value)
    except (TypeError, ValueError):
        return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _digest(summary: dict[str, Any]) -> str:
    encoded = json.dumps(summary, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()[:24]


class FeishuTasksConnector:
    """One Feishu app's view of Task v2: its tasklists, plus the tasks of everyone who authorised it."""

    source = SOURCE
    # a person's scope comes from their grant, which names their open_id: no lookup needed first
    people_first = False

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        base_url: str = FEISHU,
        tenant: str | None = None,
        per_s: float | None = 50.0,
        detail_per_s: float = 10.0,
        detail_concurrency: int = 4,
        overlap: timedelta = timedelta(minutes=2),
        sleep: Sleep = asyncio.sleep,
        client: httpx.AsyncClient | None = None,
        user_grants: UserGrants | None = None,
        reuse_chat_ids: bool = True,
    ) -> None:
        """``per_s`` paces every call (Feishu's tasklist listing allows 50/s), ``detail_per_s`` the
        task GETs on top (10/s). ``reuse_chat_ids``: people's ``Member.ids["feishu"]`` (from the chat
        platform's org sync) are open_ids of this same app; turn it off when the task app is another
        app, since open_ids differ per app."""
        self.tenant = tenant or app_id
        self.overlap = overlap
        self._app_id, self._app_secret = app_id, app_secret
        self._http = SourceHttp(
            SOURCE, base_url, rate_limited=feishu_rate_limited, per_s=per_s, sleep=sleep, client=client
        )
        self._detail_pacer = Pacer(detail_per_s, sleep)
        self._detail_concurrency = max(1, detail_concurrency)
        self._user_grants = user_grants
        self._reuse_chat_ids = reuse_chat_ids
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = asyncio.Lock()
        self._tasklist_names: dict[str, str] = {}
        # tasklist guid -> {task guid: digest of its summary} as of the last complete read
        self._summaries: dict[str, dict[str, str]] = {}

    @property
    def requests(self) -> int:
        return self._http.requests

    async def prepare(self) -> None:
        """Fail fast on wrong app credentials, before any scope is read."""
        await self._tenant_token()

    async def close(self) -> None:
        await self._http.close()

    # ---- tokens and calls ----------------------------------------------------------------------

    async def _tenant_token(self, *, refused: str | None = None) -> str:
        """The app's tenant token, fetched once and renewed ahead of expiry or when ``refused``."""
        async with self._token_lock:
            if self._token is not None:
                if refused is None and time.monotonic() < self._token_renew_at:
                    return self._token
                if refused is not None and refused != self._token:
                    return self._token  # another call renewed it meanwhile
            response, body = await self._http.request(
                "POST", TENANT_TOKEN_PATH, json={"app_id": self._app_id, "app_secret": self._app_secret}
            )
            token = body.get("tenant_access_token") if isinstance(body, dict) else None
            if response.status_code >= 500 or not isinstance(body, dict):
                # Feishu is unwell, the credentials may be fine: fail this run, not the configuration
                raise SourceError(
                    SOURCE, f"tenant token: HTTP {response.status_code}", status=response.status_code
                )
            if _code(body) != 0 or not token:
                raise SourceAuthError(
                    SOURCE,
                    f"Feishu refused the app credentials (code {body.get('code')}: {body.get('msg')}); "
                    "check FEISHU_APP_ID and FEISHU_APP_SECRET",
                    status=response.status_code,
                    code=str(body.get("code")),
                )
            expire = float(body.get("expire") or 7200)
            # renew 10 minutes early (as lark-oapi does), or halfway through a short-lived token
            self._token_renew_at = time.monotonic() + max(expire - 600, expire / 2)
            self._token = str(token)
            return self._token

    async def _send(
        self, method: str, path: str, token: str, params: dict[str, Any] | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        response, answer = await self._http.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, params=params, json=body
        )
        if not isinstance(answer, dict):
            raise SourceError(
                SOURCE,
                f"{method} {path}: HTTP {response.status_code} without a JSON body",
                status=response.status_code,
            )
        return response.status_code, answer

    async def _tenant_call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        """Call as the app; a refused token is renewed and the call repeated once."""
        token = await self._tenant_token()
        status, answer = await self._send(method, path, token, params, body)
        if _code(answer) in TOKEN_CODES:
            token = await self._tenant_token(refused=token)
            status, answer = await self._send(method, path, token, params, body)
            if _code(answer) in TOKEN_CODES:
                raise SourceAuthError(
                    SOURCE,
                    f"{method} {path}: Feishu refused a fresh tenant token (code {answer.get('code')}: "
                    f"{answer.get('msg')}); check FEISHU_APP_ID and FEISHU_APP_SECRET",
                    status=status,
                    code=str(answer.get("code")),
                )
        return self._data(method, path, status, answer)

    async def _user_call(
        self, scope: Scope, method: str, path: str, *, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Call as the scope's person, with their user token."""
        if not scope.token:
            raise FeishuUserTokenInvalid(
                f"{scope.id}: no user token to read it with", person_id=scope.person_id, open_id=scope.subject
            )
        status, answer = await self._send(method, path, scope.token, params, None)
        code = _code(answer)
        if code != 0 and scope.token.startswith("t-"):
            # tenant tokens start "t-", user tokens "u-": this is a wiring mistake, not the person's
            raise SourceAuthError(
                SOURCE,
                f"{method} {path} accepts only a person's user access token, and was sent the app's "
                f"tenant token (code {code}: {answer.get('msg')})",
                status=status,
                code=str(code),
            )
        if code in TOKEN_CODES or code == USER_SCOPE_MISSING:
            raise FeishuUserTokenInvalid(
                f"{method} {path}: the user token of person {scope.person_id} was refused "
                f"(code {code}: {answer.get('msg')}); it needs refreshing or the person authorising again",
                person_id=scope.person_id,
                open_id=scope.subject,
                status=status,
                code=code,
            )
        return self._data(method, path, status, answer)

    @staticmethod
    def _data(method: str, path: str, status: int, answer: dict[str, Any]) -> dict[str, Any]:
        code = _code(answer)
        if code in (APP_SCOPE_MISSING, TOKEN_SCOPE_MISSING):
            raise SourceAuthError(
                SOURCE,
                f"{method} {path}: the Feishu app lacks this API's permission "
                f"(code {code}: {answer.get('msg')}); enable task:tasklist:read, task:task:read and "
                "contact:user.id:readonly for it in the developer console and publish a new version",
                status=status,
                code=str(code),
            )
        if code != 0:
            raise FeishuApiError(
                f"{method} {path}: code {answer.get('code')}: {answer.get('msg')}",
                status=status,
                feishu_code=code,
            )
        data = answer.get("data")
        return data if isinstance(data, dict) else {}

    # ---- scopes --------------------------------------------------------------------------------

    async def scopes(self, members: Sequence[Member]) -> list[Scope]:
        """Every tasklist the app can read, then one scope per person with a usable grant.

        Grants of people not among ``members`` (left, deactivated) are not used, unless ``members``
        is empty.
        """
        found: list[Scope] = []
        page_token = ""
        while True:
            params: dict[str, Any] = {"page_size": PAGE_SIZE, "user_id_type": "open_id"}
            if page_token:
                params["page_token"] = page_token
            data = await self._tenant_call("GET", TASKLISTS_PATH, params=params)
            for item in data.get("items") or []:
                guid = item.get("guid") if isinstance(item, dict) else None
                if guid:
                    self._tasklist_names[guid] = str(item.get("name") or guid)
                    found.append(Scope(TASKLIST_SCOPE + guid))
            page_token = _next_token(data, page_token, TASKLISTS_PATH)
            if not page_token:
                break
        if self._user_grants is not None:
            wanted = {m.person_id for m in members}
            for grant in await self._user_grants():
                if wanted and grant.person_id not in wanted:
                    continue
                found.append(
                    Scope(
                        USER_SCOPE + grant.open_id,
                        person_id=grant.person_id,
                        subject=grant.open_id,
                        token=grant.access_token,
                    )
                )
        return found

    # ---- pages ---------------------------------------------------------------------------------

    def pages(self, scope: Scope, since: datetime | None, resume: str | None) -> AsyncIterator[Page]:
        kind, ident = _parse(scope)
        if kind == "user":
            return self._user_pages(scope, since, resume)
        return self._tasklist_pages(ident, since, resume)

    async def _user_pages(
        self, scope: Scope, since: datetime | None, resume: str | None
    ) -> AsyncIterator[Page]:
        # the page token is an updated_at cursor in µs: seeding it with ``since`` skips older tasks
        page_token = resume or (str(to_epoch_ms(since) * 1000) if since is not None else "")
        while True:
            params: dict[str, Any] = {"page_size": PAGE_SIZE, "user_id_type": "open_id"}
            if page_token:
                params["page_token"] = page_token
            data = await self._user_call(scope, "GET", RELATED_TASKS_PATH, params=params)
            records = [
                self._record(item, None)
                for item in data.get("items") or []
                if isinstance(item, dict) and item.get("guid")
            ]
            page_token = _next_token(data, page_token, RELATED_TASKS_PATH)
            yield Page(records, resume=page_token or None)
            if not page_token:
                return

    async def _tasklist_pages(
        self, guid: str, since: datetime | None, resume: str | None
    ) -> AsyncIterator[Page]:
        since_ms = to_epoch_ms(since) if since is not None else None
        # the memo only ever skips work in an incremental read; a full read fetches every task
        seen_before = self._summaries.get(guid, {}) if since_ms is not None else {}
        seen_now: dict[str, str] = {}
        path = TASKLIST_TASKS_PATH.format(guid=guid)
        page_token = resume or ""
        while True:
            params: dict[str, Any] = {"page_size": PAGE_SIZE, "user_id_type": "open_id"}
            if page_token:
                params["page_token"] = page_token
            data = await self._tenant_call("GET", path, params=params)
            wanted: list[str] = []
            for summary in data.get("items") or []:
                task_guid = summary.get("guid") if isinstance(summary, dict) else None
                if not task_guid:
                    continue
                digest = seen_now[task_guid] = _digest(summary)
                if since_ms is not None:
                    completed = _time(summary.get("completed_at"))
                    if completed is not None and to_epoch_ms(completed) < since_ms:
                        continue  # done before the window opened
                    if seen_before.get(task_guid) == digest:
                        continue  # nothing a summary shows has changed since the last read
                wanted.append(task_guid)
            details = await self._details(wanted)
            records = []
            for task_guid, task in zip(wanted, details, strict=True):
                if task is None:
                    seen_now.pop(task_guid, None)  # look again next time
                else:
                    records.append(self._record(task, guid))
            page_token = _next_token(data, page_token, path)
            yield Page(records, resume=page_token or None)
            if not page_token:
                break
        # reached only when every page was taken (the engine stored them): a failed run keeps the old memo
        self._summaries[guid] = seen_now

    async def _details(self, guids: list[str]) -> list[dict[str, Any] | None]:
        """The full task for each guid, paced for the task GET's own limit; None when gone or forbidden."""
        if not guids:
            return []
        gate = asyncio.Semaphore(self._detail_concurrency)

        async def one(task_guid: str) -> dict[str, Any] | None:
            async with gate:
                await self._detail_pacer.wait()
                try:
                    data = await self._tenant_call(
                        "GET", TASK_PATH.format(guid=task_guid), params={"user_id_type": "open_id"}
                    )
                except FeishuApiError as exc:
                    if exc.feishu_code in (TASK_NOT_FOUND, TASK_FORBIDDEN):
                        log.info("feishu_task: task %s listed but not readable now (%s)", task_guid, exc)
                        return None
                    raise
                task = data.get("task")
                return task if isinstance(task, dict) else None

        try:
            async with asyncio.TaskGroup() as group:
                running = [group.create_task(one(g)) for g in guids]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [t.result() for t in running]

    def _record(self, task: dict[str, Any], tasklist_guid: str | None) -> TaskRecord:
        completed_at = _time(task.get("completed_at"))
        created_at = _time(task.get("created_at"))
        updated_at = _time(task.get("updated_at")) or created_at or completed_at or _EPOCH
        due = _obj(task.get("due"))
        assignees = tuple(
            PersonRef(str(m["id"]), display_name=str(m.get("name") or ""))
            for m in task.get("members") or []
            if isinstance(m, dict)
            and m.get("role") == "assignee"
            and m.get("id")
            and m.get("type", "user") == "user"
        )
        return TaskRecord(
            source=SOURCE,
            tenant=self.tenant,
            external_id=str(task["guid"]),
            external_key=str(task["task_id"]) if task.get("task_id") else None,
            url=str(task["url"]) if task.get("url") else None,
            title=str(task.get("summary") or ""),
            item_type="subtask" if task.get("parent_task_guid") else "task",
            status_raw=str(task.get("status") or ("done" if completed_at else "todo")),
            status_category=StatusCategory.DONE if completed_at else StatusCategory.TODO,
            created_at=created_at,
            updated_at=updated_at,
            due_at=_time(due.get("timestamp")),
            due_all_day=bool(due.get("is_all_day")),
            completed_at=completed_at,
            assignees=assignees,
            container=self._container(task, tasklist_guid),
            raw={k: task[k] for k in _TRIMMED_KEYS if k in task},
        )

    def _container(self, task: dict[str, Any], tasklist_guid: str | None) -> str | None:
        if tasklist_guid is not None:
            return self._tasklist_names.get(tasklist_guid, tasklist_guid)
        guids = [t.get("tasklist_guid") for t in task.get("tasklists") or [] if isinstance(t, dict)]
        named = [g for g in guids if g in self._tasklist_names]
        first = named[0] if named else next((g for g in guids if g), None)
        return None if first is None else self._tasklist_names.get(first, first)

    # ---- reconcile -----------------------------------------------------------------------------

    async def live_ids(self, scope: Scope) -> AsyncIterator[Sequence[str]]:
        kind, ident = _parse(scope)
        path = RELATED_TASKS_PATH if kind == "user" else TASKLIST_TASKS_PATH.format(guid=ident)
        page_token = ""
        while True:
            params: dict[str, Any] = {"page_size": PAGE_SIZE, "user_id_type": "open_id"}
            if page_token:
                params["page_token"] = page_token
            if kind == "user":
                data = await self._user_call(scope, "GET", path, params=params)
            else:
                data = await self._tenant_call("GET", path, params=params)
            yield [str(i["guid"]) for i in data.get("items") or [] if isinstance(i, dict) and i.get("guid")]
            page_token = _next_token(data, page_token, path)
            if not page_token:
                return

    async def confirm_gone(self, scope: Scope, external_id: str) -> TombstoneReason | None:
        kind, ident = _parse(scope)
        path = TASK_PATH.format(guid=external_id)
        params = {"user_id_type": "open_id"}
        try:
            if kind == "user":
                data = await self._user_call(scope, "GET", path, params=params)
            else:
                await self._detail_pacer.wait()
                data = await self._tenant_call("GET", path, params=params)
        except FeishuApiError as exc:
            if exc.feishu_code == TASK_NOT_FOUND or exc.status == 404:
                return TombstoneReason.DELETED
            if exc.feishu_code == TASK_FORBIDDEN or exc.status == 403:
                return TombstoneReason.PERMISSION_LOST
            raise
        task = _obj(data.get("task"))
        if kind == "tasklist":
            lists = {t.get("tasklist_guid") for t in task.get("tasklists") or [] if isinstance(t, dict)}
            inside = ident in lists
        else:
            people = {m.get("id") for m in task.get("members") or [] if isinstance(m, dict)}
            creator = task.get("creator")
            if isinstance(creator, dict):
                people.add(creator.get("id"))
            inside = ident in people
        return None if inside else TombstoneReason.OUT_OF_SCOPE

    # ---- people --------------------------------------------------------------------------------

    async def find_people(self, members: Sequence[Member]) -> dict[int, PersonRef]:
        """open_ids already known (stored under this source, or the chat platform's), else by email."""
        found: dict[int, PersonRef] = {}
        by_email: dict[str, list[int]] = {}
        for member in members:
            open_id = member.ids.get(SOURCE) or (member.ids.get("feishu") if self._reuse_chat_ids else None)
            if open_id:
                found[member.person_id] = PersonRef(open_id, email=member.email or None)
            elif member.email:
                by_email.setdefault(member.email.strip().lower(), []).append(member.person_id)
        emails = sorted(by_email)
        for start in range(0, len(emails), BATCH_GET_ID_MAX):
            chunk = emails[start : start + BATCH_GET_ID_MAX]
            data = await self._tenant_call(
                "POST",
                BATCH_GET_ID_PATH,
                params={"user_id_type": "open_id"},
                body={"emails": chunk, "include_resigned": False},
            )
            for entry in data.get("user_list") or []:
                if not isinstance(entry, dict) or not entry.get("user_id"):
                    continue  # unknown or resigned: Feishu answers the email without a user_id
                email = str(entry.get("email") or "")
                for person_id in by_email.get(email.strip().lower(), []):
                    found[person_id] = PersonRef(str(entry["user_id"]), email=email or None)
        return found


def _parse(scope: Scope) -> tuple[str, str]:
    if scope.id.startswith(USER_SCOPE):
        return "user", scope.id[len(USER_SCOPE) :]
    if scope.id.startswith(TASKLIST_SCOPE):
        return "tasklist", scope.id[len(TASKLIST_SCOPE) :]
    raise ValueError(f"not a Feishu task scope: {scope.id!r}")


def _next_token(data: dict[str, Any], current: str, path: str) -> str:
    """The next page's token, or "" after the last page (Feishu's last token is always empty)."""
    if not data.get("has_more"):
        return ""
    token = str(data.get("page_token") or "")
    if not token or token == current:
        # following it would loop forever; stop the run rather than store a partial cursor
        raise SourceError(SOURCE, f"GET {path}: has_more without a new page_token")
    return token
