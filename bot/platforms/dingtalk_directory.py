"""Read the DingTalk directory (departments breadth-first, then each department's users) for the org sync.

Plain httpx against DingTalk's older OpenAPI (``oapi``): dingtalk-stream has no directory calls. One app
token from the new API (``POST /v1.0/oauth2/accessToken``) is also good as oapi's ``access_token``.
oapi answers HTTP 200 with ``errcode`` ≠ 0 when it refuses. IDs: a person is their ``userid`` (the
``senderStaffId`` of robot messages, and what robot sends and cards address); ``manager_userid`` is one
too. DingTalk knows no time zone per person.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from bot.settings import DingtalkSettings, Settings
from conversations.org_sync import Directory, DirectoryError, DirectoryPerson

__all__ = [
    "PLATFORM",
    "Directory",
    "DirectoryError",
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
# DingTalk leaves out ``email`` / ``org_email`` when the app may not read them; the console's name for it
EMAIL_SCOPES = ("邮箱等个人信息",)
CREDENTIALS = ("DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET")
_SCOPE_NAMES = re.compile(r"\bqyapi_[A-Za-z0-9_]+")

Sleep = Callable[[float], Awaitable[None]]
Progress = Callable[[int], None]


async def read_configured_directory(
    settings: Settings | DingtalkSettings, *, progress: Progress | None = None
) -> Directory:
    """The directory of the DingTalk app the settings name; DirectoryError when it is not configured."""
    dingtalk = settings.dingtalk if isinstance(settings, Settings) else settings
    missing = [f"DINGTALK_{name.upper()}" for name in dingtalk.missing_secrets()]
    if missing:
        raise DirectoryError("not_configured", platform=PLATFORM, names=missing)
    return await read_directory(dingtalk, progress=progress)


async def read_directory(
    settings: DingtalkSettings, *, progress: Progress | None = None, sleep: Sleep = asyncio.sleep
) -> Directory:
    """Every user of every department the app may see, each once.

    ``progress(n)`` is called with the number of people read so far after each page of users.
    A user in several departments gets the name of the first one DingTalk lists for them (none for the
    root department, whose name is the company's). Raises DirectoryError.
    """
    # proxies are a deployment's business through the base URLs, as for the other DingTalk calls
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as http:
        reader = _Reader(http, settings, sleep)
        departments = await reader.departments()
        people: dict[str, DirectoryPerson] = {}
        for department_id in (ROOT_DEPARTMENT, *departments):
            async for users in reader.users(department_id):
                for user in users:
                    person = _person(user, department_id, departments)
                    if person is not None and person.external_id not in people:
                        people[person.external_id] = person
                if progress is not None:
                    progress(len(people))
    if people and not any(p.email for p in people.values()):
        raise DirectoryError("no_emails", platform=PLATFORM, scopes=EMAIL_SCOPES, count=len(people))
    return Directory(people=list(people.values()), departments=len(departments))


def _person(user: Any, found_in: int, departments: dict[int, str]) -> DirectoryPerson | None:
    if not isinstance(user, dict):
        return None
    userid = _text(user.get("userid"))
    if not userid:
        return None
    # ``active`` false means "has not activated DingTalk yet", not "left": people who leave are removed
    # from the directory, so everyone listed is kept
    listed = [d for d in user.get("dept_id_list") or [] if d in departments or d == ROOT_DEPARTMENT]
    department = departments.get(listed[0] if listed else found_in, "")
    return DirectoryPerson(
        external_id=userid,
        email=_text(user.get("email")) or _text(user.get("org_email")),
        name=_text(user.get("name")),
        # documented for topapi/v2/user/get and set only when the admin console has a direct manager
        manager_external_id=_text(user.get("manager_userid")) or None,
        department=department,
        title=_text(user.get("title")),
        timezone=None,
    )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


class _Reader:
    """The token, the two list calls, and DingTalk's refusals turned into waits, retries or DirectoryError."""

    def __init__(self, http: httpx.AsyncClient, settings: DingtalkSettings, sleep: Sleep) -> None:
        self._http = http
        self._settings = settings
        self._sleep = sleep
        self._token = ""

    async def departments(self) -> dict[int, str]:
        """dept_id -> name for every department under the root, however deep (breadth-first)."""
        names: dict[int, str] = {}
        queue = deque([ROOT_DEPARTMENT])
        while queue:
            parent = queue.popleft()
            result = await self._oapi(DEPARTMENTS_PATH, {"dept_id": parent}, DEPARTMENT_SCOPES)
            for item in result if isinstance(result, list) else []:
                dept_id = item.get("dept_id") if isinstance(item, dict) else None
                # a department already seen would walk the same subtree again (or loop)
                if isinstance(dept_id, int) and dept_id not in names and dept_id != ROOT_DEPARTMENT:
                    names[dept_id] = _text(item.get("name"))
                    queue.append(dept_id)
        return names

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

    async def _oapi(self, path: str, body: dict[str, Any], scopes: tuple[str, ...]) -> Any:
        """The ``result`` of an oapi call, after waiting out rate limits and renewing a refused token once."""
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
