"""DingTalk todos (待办) as TaskRecords: each member's cards as executor, details for changed ones only.

The todo API has no "modified since" filter (task-sources.md §4.4), so every run pages through all of a
person's cards, open ones then done ones, and keeps those with ``modifiedTime >= since``; only those
cost a detail call (the listing lacks ``executorIds`` and ``finishTime``). All todo ids are unionIds,
found per person through the older oapi's ``topapi/v2/user/get``. One app token serves both APIs, as
in ``bot.platforms.dingtalk_api`` (the new API takes it as a header, the oapi as ``access_token``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from connectors.base import Member, Page, Scope
from connectors.http import (
    Sleep,
    SourceAuthError,
    SourceError,
    SourceHttp,
    SourceRateLimited,
    retry_after_header,
)
from connectors.records import (
    PersonRef,
    StatusCategory,
    TaskRecord,
    TombstoneReason,
    from_epoch_ms,
    to_epoch_ms,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_A = TypeVar("_A")

SOURCE = "dingtalk_todo"
DEFAULT_API_URL = "https://api.dingtalk.com"
DEFAULT_OAPI_URL = "https://oapi.dingtalk.com"
# calls a second at most: internal apps get about 20 per API (a GUESS, task-sources.md §4.4); None
# passed as ``per_s`` means no pacing at all (tests)
DEFAULT_PER_S = 20.0
TOKEN_PATH = "/v1.0/oauth2/accessToken"
USER_GET_PATH = "/topapi/v2/user/get"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
CREDENTIALS = "DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET"
# "the person's own todos": cards where they are the one to do it (outer list OR, inner list AND)
ROLE_TYPES = [["executor"]]
# listing phases in the order read; a resume token names the phase it belongs to
PHASES = (("open", False), ("done", True))

# the global per-API limit (90002) and the per-app / per-org QPS limits (90018, 90019), in the oapi's
# errcode; the new API names its throttles in words (``Forbidden.AccessDenied.QpsLimitForApi``, and a
# per-app-key variant), so any code with one of these words counts
QPS_ERRCODES = frozenset({"90002", "90018", "90019"})
_THROTTLE_WORDS = ("qpslimit", "throttl", "flowcontrol")
# the org's monthly quota of metered calls is used up: waiting seconds does not help, so these are
# not retried; the run ends and the next is told to come back no sooner than this
QUOTA_CODES = frozenset({"90020", "Forbidden.AccessDenied.ApiCountLimitForOrg"})
QUOTA_RETRY_AFTER = 3600.0
# an egress IP over 10,000 calls in 20 s is blocked for 5 minutes with a non-standard body
# (``{"status": 1111, "wait": 5, "punish": "deny"}``, §4.4): wait the block out
IP_BLOCK_WAIT = 300.0
_TOKEN_INVALID = frozenset({"InvalidAuthentication", "invalidAuthentication", "40014", "42001"})
# the app lacks a permission: the new API's code, and the oapi's 60011 (or 88 wrapping it)
_PERMISSION_DENIED = frozenset({"Forbidden.AccessDenied.AccessTokenPermissionDenied", "60011"})
_WRAPPED = "88"  # the oapi's wrapper code: a permission refusal when its subcode is 60011 or absent
TODO_READ = "the todo read permission (待办应用中待办读权限)"
MEMBER_READ = "qyapi_get_member (成员信息读权限)"
_NO_SUCH_USER = "60121"
# how a detail call says the todo is gone: no such code is documented for the detail GET; the update
# API answers "task not exist" (HTTP 400), so the words are matched, in English and Chinese
_GONE_WORDS = ("notexist", "not exist", "notfound", "not found", "不存在")
_API_NOT_FOUND = "InvalidAction.NotFound"  # a path DingTalk does not have: our bug, not a gone todo
# kept of a todo for re-derivation (the rest, e.g. tenantId or requestId, says nothing about it)
_RAW_KEYS = (
    "taskId",
    "subject",
    "priority",
    "bizTag",
    "source",
    "sourceId",
    "todoType",
    "creatorId",
    "executorIds",
    "participantIds",
    "isDone",
    "done",
    "createdTime",
    "modifiedTime",
    "startTime",
    "dueTime",
    "finishTime",
)
_DESCRIPTION_CHARS = 2000
# detail and user/get calls in flight at once (the pool holds 8; the pacer still spaces them)
CONCURRENCY = 4


def dingtalk_rate_limited(response: httpx.Response, body: Any) -> float | None:
    """DingTalk's "slow down" answers → seconds to wait (0: back off), None when not limited.

    The monthly quota is not one of them: ``DingtalkTodosConnector`` ends the run on it instead.
    """
    code = _code(response, body)
    if code in QUOTA_CODES:
        return None
    if isinstance(body, dict) and body.get("punish") == "deny":
        return IP_BLOCK_WAIT
    lowered = code.lower()
    if (
        response.status_code == 429
        or code in QPS_ERRCODES
        or any(word in lowered for word in _THROTTLE_WORDS)
    ):
        return retry_after_header(response) or 0.0
    return None


def _code(response: httpx.Response, body: Any) -> str:
    """The error code of an answer ("" when it is a success): the new API's ``code`` (it refuses with
    an HTTP error status), the oapi's ``errcode`` (it refuses with HTTP 200), else the HTTP status."""
    if isinstance(body, dict):
        if body.get("code") and response.status_code >= 400:
            return str(body["code"])
        errcode = body.get("errcode")
        if errcode not in (None, 0, "0"):
            return str(errcode)
    return str(response.status_code) if response.status_code >= 400 else ""


@dataclass(frozen=True)
class _Answer:
    """A DingTalk answer: ``code`` "" when it succeeded, else its error code and message."""

    status: int
    body: dict[str, Any]
    code: str
    message: str

    @property
    def ok(self) -> bool:
        return not self.code

    @property
    def denied(self) -> bool:
        """The app lacks a permission for the call."""
        if self.code == _WRAPPED:
            return "subcode" not in self.message or "subcode=60011" in self.message
        return self.code in _PERMISSION_DENIED or self.status == 403

    @property
    def gone(self) -> bool:
        """The todo (or whatever was asked for) does not exist, in DingTalk's own words: a proxy's bare
        404 or an unknown path must not turn into tombstones."""
        if not self.body or self.code == _API_NOT_FOUND:
            return False
        said = f"{self.code} {self.message}".lower()
        return self.status == 404 or any(word in said for word in _GONE_WORDS)


class DingtalkAppToken:
    """One DingTalk app's access token, fetched when first needed and again before it ends.

    Shared by every call of a connector (and usable by another DingTalk connector): concurrent callers
    wait for one fetch; a token DingTalk calls invalid is replaced once, by whoever saw it first.
    """

    # DingTalk's own SDK renews 300 s before expireIn runs out; the same here
    margin = 300.0

    def __init__(
        self,
        http: SourceHttp,
        *,
        api_url: str,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = api_url.rstrip("/") + TOKEN_PATH
        self._client_id, self._client_secret = client_id, client_secret
        self._clock = clock
        self._token: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, *, refused: str | None = None) -> str:
        """The current token; ``refused``: a token DingTalk just refused (fetch another unless that
        already happened)."""
        async with self._lock:
            stale = self._token is None or self._clock() >= self._until
            if stale or (refused is not None and refused == self._token):
                self._token, lifetime = await self._fetch()
                self._until = self._clock() + max(lifetime - min(self.margin, lifetime / 2), 0.0)
                self.fetches += 1
            assert self._token is not None
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        if not self._client_id or not self._client_secret:
            raise SourceAuthError(SOURCE, f"no DingTalk app credentials: set {CREDENTIALS}")
        body = {"appKey": self._client_id, "appSecret": self._client_secret}
        response, answer = await self._http.request("POST", self._url, json=body)
        token = answer.get("accessToken") if isinstance(answer, dict) else None
        if isinstance(token, str) and token:
            return token, float(answer.get("expireIn") or 7200)
        code = _code(response, answer) or "no accessToken"
        if 400 <= response.status_code < 500:
            said = answer.get("message", "") if isinstance(answer, dict) else ""
            raise SourceAuthError(
                SOURCE,
                f"DingTalk refused the app credentials ({code}: {said}); check {CREDENTIALS}",
                status=response.status_code,
                code=code,
            )
        raise SourceError(SOURCE, f"DingTalk gave no token (HTTP {response.status_code}, {code})")


class DingtalkTodosConnector:
    """The todos of one DingTalk org (an internal app with the todo read permission, 待办读权限)."""

    source = SOURCE
    # scopes are per unionId, which only ``find_people`` learns: the sync engine asks it first
    people_first = True

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        api_url: str = DEFAULT_API_URL,
        oapi_url: str = DEFAULT_OAPI_URL,
        tenant: str | None = None,
        per_s: float | None = DEFAULT_PER_S,
        overlap: timedelta = timedelta(minutes=5),
        max_wait: float = 300.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``tenant``: the corp id (the client id when not given); ``per_s``: calls a second at most
        (None: unpaced); ``max_wait``: seconds one call may spend waiting out rate limits;
        ``sleep`` and ``clock`` are there for tests."""
        self.tenant = tenant or client_id
        self.overlap = overlap
        self._api_url = api_url.rstrip("/")
        self._oapi_url = oapi_url.rstrip("/")
        # every URL below is absolute (two hosts), so a client passed in needs no base_url
        self._http = SourceHttp(
            SOURCE,
            self._api_url,
            rate_limited=dingtalk_rate_limited,
            per_s=per_s,
            max_wait=max_wait,
            sleep=sleep,
            client=client,
        )
        self.token = DingtalkAppToken(
            self._http,
            api_url=self._api_url,
            client_id=client_id,
            client_secret=client_secret,
            clock=clock,
        )

    @property
    def requests(self) -> int:
        return self._http.requests

    @property
    def waited(self) -> float:
        """Seconds spent waiting out rate limits so far."""
        return self._http.waited

    async def prepare(self) -> None:
        # a wrong secret then ends the run once, before any scope
        await self.token.get()

    async def close(self) -> None:
        await self._http.close()

    # ---- people and scopes --------------------------------------------------------------------

    async def find_people(self, members: Sequence[Member]) -> dict[int, PersonRef]:
        """Each member's unionId, from their DingTalk userid (members without one are skipped)."""
        wanted = [(m.person_id, m.ids["dingtalk"]) for m in members if m.ids.get("dingtalk")]

        async def look_up(userid: str) -> PersonRef | None:
            answer = await self._call(
                "POST", self._oapi_url + USER_GET_PATH, json={"userid": userid}, legacy=True
            )
            if answer.code == _NO_SUCH_USER:
                log.info("dingtalk_todo: userid %s is not in the org's directory", userid)
                return None
            self._expect(answer, f"user/get {userid}", needs=MEMBER_READ)
            user = answer.body.get("result")
            if not isinstance(user, dict) or not user.get("unionid"):
                log.warning("dingtalk_todo: user/get gave no unionid for %s", userid)
                return None
            email = user.get("email") or user.get("org_email") or None
            return PersonRef(str(user["unionid"]), str(user.get("name") or ""), email)

        found = await _bounded(look_up, [userid for _, userid in wanted])
        return {person_id: ref for (person_id, _), ref in zip(wanted, found, strict=True) if ref}

    async def scopes(self, members: Sequence[Member]) -> list[Scope]:
        """One scope per member whose unionId the sync engine has (``ids["dingtalk_todo"]``)."""
        scopes: dict[str, Scope] = {}
        for member in members:
            union_id = member.ids.get(SOURCE)
            if union_id and union_id not in scopes:
                scopes[union_id] = Scope(f"dingtalk:user:{union_id}", member.person_id, union_id)
        return list(scopes.values())

    # ---- reading ------------------------------------------------------------------------------

    async def pages(self, scope: Scope, since: datetime | None, resume: str | None) -> AsyncIterator[Page]:
        """Every card page of the person's todos (open, then done); records only for cards modified at
        or after ``since``, each completed by its detail. ``resume``: ``"<phase>:<nextToken>"``."""
        since_ms = None if since is None else to_epoch_ms(since)
        async for cards, next_resume in self._listing(scope, resume):
            kept = [
                card
                for card in cards
                if card.get("taskId") and (since_ms is None or _int(card.get("modifiedTime")) >= since_ms)
            ]
            details = await _bounded(lambda card: self._detail(scope, str(card.get("taskId"))), kept)
            records = [
                self._record(card, detail)
                for card, detail in zip(kept, details, strict=True)
                if detail is not None
            ]
            yield Page(records, next_resume)

    async def live_ids(self, scope: Scope) -> AsyncIterator[Sequence[str]]:
        """The taskIds of every card the person is executor of, page by page (no detail calls)."""
        async for cards, _ in self._listing(scope, None):
            yield [str(c["taskId"]) for c in cards if c.get("taskId")]

    async def confirm_gone(self, scope: Scope, external_id: str) -> TombstoneReason | None:
        """Why a todo no longer lists for the person: deleted, hidden from the app, or reassigned."""
        answer = await self._call("GET", self._detail_url(scope, external_id))
        if answer.gone:
            return TombstoneReason.DELETED
        if answer.status == 403:
            return TombstoneReason.PERMISSION_LOST
        self._expect(answer, f"todo {external_id}")
        if scope.subject not in _strings(answer.body.get("executorIds")):
            return TombstoneReason.OUT_OF_SCOPE
        return None

    async def _listing(
        self, scope: Scope, resume: str | None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        """The person's cards page by page, with where the page after each starts (None at the end).

        A card that changes phase mid-run (done while the open ones were read) may show twice or not
        at all; its new ``modifiedTime`` brings it into the next run, and the overlap absorbs twice.
        """
        start_phase, token = _parse_resume(resume)
        url = f"{self._api_url}/v1.0/todo/users/{quote(scope.subject, safe='')}/org/tasks/query"
        for index, (phase, is_done) in enumerate(PHASES):
            if index < start_phase:
                continue
            if index > start_phase:
                token = "0"
            while True:
                body = {"nextToken": token, "isDone": is_done, "roleTypes": ROLE_TYPES}
                answer = await self._call("POST", url, json=body)
                self._expect(answer, f"todos of {scope.id} ({phase})")
                cards = [c for c in answer.body.get("todoCards") or [] if isinstance(c, dict)]
                following = answer.body.get("nextToken")
                if following not in (None, "") and str(following) == token:
                    # the same token back would loop for ever: end the phase instead
                    log.warning("dingtalk_todo: %s answered nextToken %r again", scope.id, token)
                    following = None
                if following not in (None, ""):
                    token = str(following)
                    yield cards, f"{phase}:{token}"
                    continue
                last = index == len(PHASES) - 1
                yield cards, None if last else f"{PHASES[index + 1][0]}:0"
                break

    def _detail_url(self, scope: Scope, task_id: str) -> str:
        user, task = quote(scope.subject, safe=""), quote(task_id, safe="")
        return f"{self._api_url}/v1.0/todo/users/{user}/tasks/{task}"

    async def _detail(self, scope: Scope, task_id: str) -> dict[str, Any] | None:
        """A todo's detail; None when it went away between the listing and now (reconcile marks it)."""
        answer = await self._call("GET", self._detail_url(scope, task_id))
        if answer.gone:
            log.info("dingtalk_todo: todo %s of %s vanished after the listing", task_id, scope.id)
            return None
        self._expect(answer, f"todo {task_id}")
        return answer.body

    def _record(self, card: dict[str, Any], detail: dict[str, Any]) -> TaskRecord:
        merged = {**card, **{k: v for k, v in detail.items() if v is not None}}
        task_id = str(card.get("taskId") or detail.get("id"))
        done = bool(merged.get("done", merged.get("isDone", False)))
        created = from_epoch_ms(_int(merged.get("createdTime")))
        updated = from_epoch_ms(_int(merged.get("modifiedTime"))) or created or datetime.now(UTC)
        links = merged.get("detailUrl")
        links = links if isinstance(links, dict) else {}
        raw = {key: merged[key] for key in _RAW_KEYS if key in merged}
        raw["taskId"] = task_id
        if merged.get("description"):
            raw["description"] = str(merged["description"])[:_DESCRIPTION_CHARS]
        return TaskRecord(
            source=SOURCE,
            tenant=self.tenant,
            external_id=task_id,
            title=str(merged.get("subject") or ""),
            updated_at=updated,
            status_category=StatusCategory.DONE if done else StatusCategory.TODO,
            url=links.get("pcUrl") or links.get("appUrl") or None,
            item_type="todo",
            status_raw="done" if done else "todo",
            created_at=created,
            due_at=from_epoch_ms(_int(merged.get("dueTime"))),
            completed_at=from_epoch_ms(_int(merged.get("finishTime"))) if done else None,
            assignees=tuple(PersonRef(uid) for uid in _strings(merged.get("executorIds"))),
            container=str(merged.get("bizTag") or merged.get("source") or "") or None,
            raw=raw,
        )

    # ---- calls --------------------------------------------------------------------------------

    async def _call(self, method: str, url: str, *, json: Any = None, legacy: bool = False) -> _Answer:
        """One authenticated call (the token in the header, or as ``access_token`` on the ``legacy``
        oapi); a refused token is renewed once; the monthly quota ends the run."""
        refused: str | None = None
        for attempt in (1, 2):
            token = await self.token.get(refused=refused)
            response, body = await self._http.request(
                method,
                url,
                headers=None if legacy else {TOKEN_HEADER: token},
                params={"access_token": token} if legacy else None,
                json=json,
            )
            answer = _answer(response, body)
            if answer.code in QUOTA_CODES:
                raise SourceRateLimited(
                    SOURCE,
                    f"the org's monthly quota of DingTalk API calls is used up ({answer.code}: "
                    f"{answer.message}); todos are read again when the quota resets",
                    retry_after=QUOTA_RETRY_AFTER,
                    status=answer.status,
                )
            if answer.code in _TOKEN_INVALID or answer.status == 401:
                if attempt == 2:
                    raise SourceAuthError(
                        SOURCE,
                        f"DingTalk refused a fresh token ({answer.code}); check {CREDENTIALS}",
                        status=answer.status,
                        code=answer.code,
                    )
                refused = token
                continue
            return answer
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    @staticmethod
    def _expect(answer: _Answer, what: str, *, needs: str = TODO_READ) -> None:
        """Nothing when ``answer`` succeeded; else the error it is (``needs``: the permission the
        call takes, named when DingTalk says the app lacks one and does not say which)."""
        if answer.ok:
            return
        said = f"{what}: {answer.code} {answer.message}".rstrip()
        if answer.denied:
            detail = answer.body.get("accessdenieddetail")
            scopes = detail.get("requiredScopes") if isinstance(detail, dict) else None
            needed = ", ".join(map(str, scopes or [])) or needs
            raise SourceAuthError(
                SOURCE,
                f"{said}: the app lacks a permission; grant {needed} to the app of {CREDENTIALS}",
                status=answer.status,
                code=answer.code,
            )
        raise SourceError(SOURCE, f"{said} (HTTP {answer.status})", status=answer.status, code=answer.code)


def _answer(response: httpx.Response, body: Any) -> _Answer:
    if not isinstance(body, dict):
        code = "" if response.status_code < 400 else str(response.status_code)
        # a success must be DingTalk's JSON; anything else (a proxy's page) is an error too
        return _Answer(response.status_code, {}, code or "not-json", "answered without DingTalk's JSON")
    code = _code(response, body)
    message = str(body.get("message") or body.get("errmsg") or "") if code else ""
    return _Answer(response.status_code, body, code, message)


def _parse_resume(resume: str | None) -> tuple[int, str]:
    """``"<phase>:<nextToken>"`` → (phase index, token); the start of the listing when unreadable."""
    if resume:
        name, _, token = resume.partition(":")
        for index, (phase, _) in enumerate(PHASES):
            if name == phase and token:
                return index, token
        log.warning("dingtalk_todo: unreadable resume token %r, listing from the start", resume)
    return 0, "0"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value if v] if isinstance(value, list) else []


async def _bounded(work: Callable[[_A], Awaitable[_T]], items: Sequence[_A]) -> list[_T]:
    """``work`` on each item with at most ``CONCURRENCY`` in flight, results in order; the first error
    cancels the rest."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: _A) -> _T:
        async with gate:
            return await work(item)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # the caller sees the first error as it is (a TaskGroup would wrap it in an ExceptionGroup)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
