"""Read the DingTalk directory (departments breadth-first, then each department's users) for the org sync.

Plain httpx against DingTalk's older OpenAPI (``oapi``): dingtalk-stream has no directory calls. One app
token from the new API (``POST /v1.0/oauth2/accessToken``) is also good as oapi's ``access_token``.
oapi answers HTTP 200 with ``errcode`` ≠ 0 when it refuses. IDs: a person is their ``userid`` (the
``senderStaffId`` of robot messages, and what robot sends and cards address); ``manager_userid`` is one
too. DingTalk knows no time zone per person.

Managers. ``topapi/v2/user/list`` items carry ``leader`` (whether the person is a 主管 of the department
being listed) but not ``manager_userid``, which only ``topapi/v2/user/get`` answers, one call per person
out of the organization's monthly API quota. So by default (``managers="leaders"``) a manager is
*derived* from department leaders, not read:

* a list item that does carry ``manager_userid`` wins (some answers may have it; the doc lists it only
  for user/get);
* otherwise a person's manager is the first leader of their department (the one whose name they get,
  or the first of their departments they lead themselves); when they lead it themselves, or it has no
  leader, the leader of its parent department, and so on up to the root. Nobody is their own manager;
  the root's leader has none.

That is the department's 主管, which is not always the admin console's 直属主管 (``manager_userid``): an
admin sets 直属主管 per person, to anyone — a team lead who is not a department 主管, someone in another
department, or nobody — while 主管 is set per department, and a department can have several. Where the
two differ, the derivation gives the head of the person's department (or of the one above, for a
leader). ``managers="direct"`` reads the exact 直属主管 with one paced user/get per person (people without
one get no manager); the setting that chooses it would be ``DINGTALK_ORG_MANAGERS=leaders|direct``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import httpx

from bot.settings import DingtalkSettings, Settings
from conversations.org_sync import Directory, DirectoryError, DirectoryPerson

__all__ = [
    "MANAGER_MODES",
    "PLATFORM",
    "Directory",
    "DirectoryError",
    "ManagerMode",
    "read_configured_directory",
    "read_directory",
]

log = logging.getLogger(__name__)

PLATFORM = "dingtalk"
ROOT_DEPARTMENT = 1
PAGE_SIZE = 100  # the most topapi/v2/user/list allows
TIMEOUT_S = 30.0
TOKEN_PATH = "/v1.0/oauth2/accessToken"
DEPARTMENTS_PATH = "/topapi/v2/department/listsub"
USERS_PATH = "/topapi/v2/user/list"
USER_PATH = "/topapi/v2/user/get"
# "leaders": derive managers from department leaders (no extra calls); "direct": user/get per person
ManagerMode = Literal["leaders", "direct"]
MANAGER_MODES: tuple[ManagerMode, ...] = get_args(ManagerMode)
# user/get calls a second in "direct" mode: DingTalk's per-app QPS limit for an oapi call is about 20
# (GUESS, as in connectors.dingtalk_todos); staying under it saves 90018 back-offs
USER_GET_PER_S = 15.0
# user/get: the person left between the list call and this one
NO_SUCH_USER = frozenset({60121})
# 90002: the API's global limit; 90018 / 90019: per-app and per-org calls per second; -1: "system busy"
RETRY_LATER = frozenset({90002, 90018, 90019, -1})
RATE_LIMITED = frozenset({90002, 90018, 90019})
BACKOFF_S = (1.0, 2.0, 4.0, 8.0)  # the waits before the 2nd … 5th try
# the org's monthly quota of API calls is used up: no call succeeds until it resets
QUOTA_EXHAUSTED = frozenset({90020})
# 88 is "authentication failed" with the reason in ``sub_code``: 60011 is "no permission for this API"
PERMISSION_DENIED = frozenset({88, 60011})
# the token was refused: fetch a new one and try once more
TOKEN_INVALID = frozenset({40001, 40014, 42001})
# what to grant when DingTalk's answer does not say (names as the developer console lists them)
DEPARTMENT_SCOPES = ("qyapi_get_department_list",)
USER_SCOPES = ("qyapi_get_department_member",)
USER_GET_SCOPES = ("qyapi_get_member",)  # 成员信息读权限, as bot.doctor names it
# DingTalk leaves out ``email`` / ``org_email`` when the app may not read them; the console's name for it
EMAIL_SCOPES = ("邮箱等个人信息",)
CREDENTIALS = ("DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET")
_SCOPE_NAMES = re.compile(r"\bqyapi_[A-Za-z0-9_]+")
LOG_EVERY = 100  # "direct" mode logs its progress every this many user/get calls

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class _Department:
    name: str
    parent: int  # ROOT_DEPARTMENT for the root's children


@dataclass(frozen=True)
class _Listed:
    """A user as first listed, and the department whose listing that was."""

    item: dict[str, Any]
    found_in: int


async def read_configured_directory(
    settings: Settings | DingtalkSettings,
    *,
    progress: Progress | None = None,
    managers: ManagerMode | None = None,
) -> Directory:
    """The directory of the DingTalk app the settings name; DirectoryError when it is not configured.

    ``managers`` (see ``read_directory``) defaults to ``DINGTALK_ORG_MANAGERS``.
    """
    dingtalk = settings.dingtalk if isinstance(settings, Settings) else settings
    missing = [f"DINGTALK_{name.upper()}" for name in dingtalk.missing_secrets()]
    if missing:
        raise DirectoryError("not_configured", platform=PLATFORM, names=missing)
    mode = managers or dingtalk.org_managers
    return await read_directory(dingtalk, progress=progress, managers=mode)


async def read_directory(
    settings: DingtalkSettings,
    *,
    managers: ManagerMode = "leaders",
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> Directory:
    """Every user of every department the app may see, each once.

    A user in several departments gets the name of the first one DingTalk lists for them (none for the
    root department, whose name is the company's). ``managers``: "leaders" derives them from department
    leaders (see the module docstring); "direct" asks ``topapi/v2/user/get`` for each person's
    ``manager_userid`` (the console's 直属主管), at most ``USER_GET_PER_S`` calls a second.
    ``progress(n)`` is called with the number of people read so far: after each page of users, or in
    "direct" mode after each person's manager (the listing alone does not count there).
    ``sleep`` and ``clock`` are for tests. Raises DirectoryError.
    """
    if managers not in MANAGER_MODES:
        raise ValueError(f"managers must be one of {', '.join(MANAGER_MODES)} (got {managers!r})")
    direct = managers == "direct"
    # proxies are a deployment's business through the base URLs, as for the other DingTalk calls
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as http:
        reader = _Reader(http, settings, sleep, clock)
        departments = await reader.departments()
        listed: dict[str, _Listed] = {}
        # dept_id -> its leaders' userids, in listing order
        leaders: dict[int, list[str]] = {}
        for department_id in (ROOT_DEPARTMENT, *departments):
            async for users in reader.users(department_id):
                for user in users:
                    userid = _text(user.get("userid")) if isinstance(user, dict) else ""
                    if not userid:
                        continue
                    # ``leader`` is about the department being listed, so it is read per listing.
                    # Several leaders: the first listed counts. With the default order_field
                    # ("custom") DingTalk lists a department by each member's dept_order (larger
                    # first, as the older user/list doc says; unverified for v2), so that is also
                    # the first by dept_order, without relying on the field's direction here.
                    if user.get("leader") is True and userid not in leaders.get(department_id, ()):
                        leaders.setdefault(department_id, []).append(userid)
                    if userid not in listed:
                        listed[userid] = _Listed(user, department_id)
                if progress is not None and not direct:
                    progress(len(listed))
        people: list[DirectoryPerson] = []
        for done, (userid, entry) in enumerate(listed.items(), start=1):
            known = _departments_of(entry, departments)
            home = known[0] if known else entry.found_in
            manager = _text(entry.item.get("manager_userid"))
            if manager == userid:
                manager = ""  # nobody is their own manager: as if DingTalk had not said
            if direct and not manager:
                manager = await reader.manager_of(userid)
                if reader.user_gets % LOG_EVERY == 0:
                    log.info(
                        "DingTalk: %d managers looked up, %d of %d people",
                        reader.user_gets,
                        done,
                        len(listed),
                    )
            elif not manager:
                # the departments they lead come first: a leader's manager is found above the team they lead
                led = [d for d in (*known, entry.found_in) if userid in leaders.get(d, ())]
                manager = _derived_manager(userid, led[0] if led else home, departments, leaders)
            people.append(_person(userid, entry.item, departments, home, manager))
            if progress is not None and direct:
                progress(done)
    if people and not any(p.email for p in people):
        raise DirectoryError("no_emails", platform=PLATFORM, scopes=EMAIL_SCOPES, count=len(people))
    return Directory(people=people, departments=len(departments))


def _departments_of(entry: _Listed, departments: dict[int, _Department]) -> list[int]:
    """The person's departments the app can see, in DingTalk's order (``dept_id_list``)."""
    ids = entry.item.get("dept_id_list")
    return [d for d in ids if d in departments or d == ROOT_DEPARTMENT] if isinstance(ids, list) else []


def _derived_manager(
    userid: str, start: int, departments: dict[int, _Department], leaders: dict[int, list[str]]
) -> str:
    """The first leader of ``start`` or, when there is none or ``userid`` is one, of the nearest
    department above it that has another leader; "" when there is none up to the root."""
    department: int | None = start
    seen: set[int] = set()
    while department is not None and department not in seen:
        seen.add(department)
        heads = leaders.get(department, ())
        if heads and userid not in heads:
            return heads[0]
        above = departments.get(department)
        department = above.parent if above is not None else None  # the root (or unseen) is the top
    return ""


def _person(
    userid: str, user: dict[str, Any], departments: dict[int, _Department], home: int, manager: str
) -> DirectoryPerson:
    # ``active`` false means "has not activated DingTalk yet", not "left": people who leave are removed
    # from the directory, so everyone listed is kept
    department = departments.get(home)
    return DirectoryPerson(
        external_id=userid,
        email=_text(user.get("email")) or _text(user.get("org_email")),
        name=_text(user.get("name")),
        manager_external_id=manager if manager and manager != userid else None,
        department=department.name if department is not None else "",
        title=_text(user.get("title")),
        timezone=None,
    )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


class _Reader:
    """The token, the calls, and DingTalk's refusals turned into waits, retries or DirectoryError."""

    def __init__(
        self, http: httpx.AsyncClient, settings: DingtalkSettings, sleep: Sleep, clock: Clock
    ) -> None:
        self._http = http
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._token = ""
        self._next_user_get = 0.0
        self.user_gets = 0  # user/get calls made

    async def departments(self) -> dict[int, _Department]:
        """dept_id -> name and parent for every department under the root, however deep (breadth-first)."""
        found: dict[int, _Department] = {}
        queue = deque([ROOT_DEPARTMENT])
        while queue:
            parent = queue.popleft()
            result = await self._oapi(DEPARTMENTS_PATH, {"dept_id": parent}, DEPARTMENT_SCOPES)
            for item in result if isinstance(result, list) else []:
                dept_id = item.get("dept_id") if isinstance(item, dict) else None
                # a department already seen would walk the same subtree again (or loop)
                if isinstance(dept_id, int) and dept_id not in found and dept_id != ROOT_DEPARTMENT:
                    # listsub lists the direct children of the department asked for: that one is the
                    # parent (the item's ``parent_id`` says the same)
                    found[dept_id] = _Department(_text(item.get("name")), parent)
                    queue.append(dept_id)
        return found

    async def users(self, department_id: int) -> AsyncIterator[list[Any]]:
        """Pages of the department's direct users."""
        cursor = 0
        while True:
            body = {
                "dept_id": department_id,
                "cursor": cursor,
                "size": PAGE_SIZE,
                # people whose profile is access-restricted are still employees: leaving them out would
                # deactivate them
                "contain_access_limit": True,
            }
            result = await self._oapi(USERS_PATH, body, USER_SCOPES)
            page = result if isinstance(result, dict) else {}
            yield list(page.get("list") or [])
            next_cursor = page.get("next_cursor")
            if not page.get("has_more") or not isinstance(next_cursor, int) or next_cursor == cursor:
                return
            cursor = next_cursor

    async def manager_of(self, userid: str) -> str:
        """The person's ``manager_userid`` from user/get ("" when none is set, or they just left)."""
        now = self._clock()
        if now < self._next_user_get:
            await self._sleep(self._next_user_get - now)
            now = self._next_user_get
        self._next_user_get = now + 1.0 / USER_GET_PER_S
        self.user_gets += 1
        result = await self._oapi(USER_PATH, {"userid": userid}, USER_GET_SCOPES, absent=NO_SUCH_USER)
        return _text(result.get("manager_userid")) if isinstance(result, dict) else ""

    async def _oapi(
        self,
        path: str,
        body: dict[str, Any],
        scopes: tuple[str, ...],
        *,
        absent: Iterable[int] = (),
    ) -> Any:
        """The ``result`` of an oapi call, after waiting out rate limits and renewing a refused token once;
        None when DingTalk answers one of the ``absent`` codes."""
        call = f"POST {path}"
        waits = 0
        renewed = False
        while True:
            if not self._token:
                self._token = await self._fetch_token()
            answer, status = await self._post(
                self._settings.oapi_url + path, body, call, params={"access_token": self._token}
            )
            code = _errcode(answer)
            if code == 0:
                return answer.get("result")
            if code is None and status == 429:
                code = 90002  # a gateway's "too many requests" before oapi itself answered
            if code is None:
                raise DirectoryError(
                    "bad_answer", platform=PLATFORM, call=call, status=status, msg=_snippet(answer)
                )
            if code in absent:
                return None
            sub_code = _int(answer.get("sub_code"))
            msg = _text(answer.get("errmsg")) or _text(answer.get("sub_msg"))
            if code in RETRY_LATER and waits < len(BACKOFF_S):
                wait = BACKOFF_S[waits]
                waits += 1
                log.info("DingTalk said %s to %s: waiting %.1f s (%d)", code, call, wait, waits)
                await self._sleep(wait)
                continue
            if (code in TOKEN_INVALID or sub_code in TOKEN_INVALID) and not renewed:
                renewed = True
                self._token = ""
                continue
            raise _error(call, code, sub_code, msg, answer, scopes, tries=waits + 1)

    async def _fetch_token(self) -> str:
        settings = self._settings
        body = {"appKey": settings.client_id, "appSecret": settings.client_secret}
        call = f"POST {TOKEN_PATH}"
        answer, status = await self._post(settings.api_url + TOKEN_PATH, body, call)
        token = answer.get("accessToken")
        if status == 200 and isinstance(token, str) and token:
            return token
        # the new API refuses with an HTTP error status and {"code": "invalidClientSecret", "message": …}
        detail = ": ".join(part for part in (_text(answer.get("code")), _text(answer.get("message"))) if part)
        if not detail:
            raise DirectoryError(
                "bad_answer", platform=PLATFORM, call=call, status=status, msg=_snippet(answer)
            )
        if 400 <= status < 500 and status != 429:
            raise DirectoryError(
                "auth", platform=PLATFORM, call=call, code=status, msg=detail, names=CREDENTIALS
            )
        raise DirectoryError("api", platform=PLATFORM, call=call, code=status, msg=detail, status=status)

    async def _post(
        self, url: str, body: dict[str, Any], call: str, *, params: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], int]:
        """The JSON object DingTalk answered (``{"_raw": text}`` when it was not one) and the HTTP status."""
        try:
            response = await self._http.post(url, json=body, params=params)
        except httpx.HTTPError as exc:
            raise DirectoryError("network", platform=PLATFORM, call=call, msg=_reason(exc)) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {"_raw": response.text[:200]}
        return answer, response.status_code


def _errcode(answer: dict[str, Any]) -> int | None:
    if "_raw" in answer:
        return None
    return _int(answer.get("errcode"))


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _error(
    call: str,
    code: int,
    sub_code: int | None,
    msg: str,
    answer: dict[str, Any],
    scopes: tuple[str, ...],
    *,
    tries: int,
) -> DirectoryError:
    if code in RATE_LIMITED:
        return DirectoryError("rate_limited", platform=PLATFORM, call=call, code=code, msg=msg, tries=tries)
    if code in QUOTA_EXHAUSTED:
        return DirectoryError("quota_exhausted", platform=PLATFORM, call=call, code=code, msg=msg)
    if _permission_denied(code, sub_code):
        named = _named_scopes(msg, _text(answer.get("sub_msg")))
        return DirectoryError(
            "permission", platform=PLATFORM, call=call, code=code, msg=msg, scopes=named or scopes
        )
    return DirectoryError("api", platform=PLATFORM, call=call, code=code, msg=msg)


def _permission_denied(code: int, sub_code: int | None) -> bool:
    # 88 only carries its reason in sub_code: 88 with 40014 is a refused token, not a permission
    if code == 88 and sub_code is not None:
        return sub_code in PERMISSION_DENIED
    return code in PERMISSION_DENIED or sub_code in PERMISSION_DENIED


def _named_scopes(*texts: str) -> tuple[str, ...]:
    """The permissions DingTalk's message names (``应用尚未开通所需的权限：[qyapi_get_member]``)."""
    return tuple(dict.fromkeys(name for text in texts for name in _SCOPE_NAMES.findall(text)))


def _snippet(answer: dict[str, Any]) -> str:
    return str(answer.get("_raw", answer))[:200]


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
