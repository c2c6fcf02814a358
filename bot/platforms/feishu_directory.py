"""Read the Feishu / Lark directory (departments, then each department's users) for the org sync.

Uses lark-oapi's REST client. Its async methods fetch the tenant token with a blocking request on the
caller's event loop, so the token is fetched in a worker thread first (the SDK caches it per app id,
process-wide) and the async calls then find it cached. IDs: departments as ``open_department_id``,
users (and ``leader_user_id``) as ``open_id``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import lark_oapi as lark
import requests
from lark_oapi.api.contact.v3 import ChildrenDepartmentRequest, FindByDepartmentUserRequest
from lark_oapi.core.exception import ObtainAccessTokenException
from lark_oapi.core.token.manager import TokenManager

from bot.settings import FeishuSettings, Settings, is_placeholder
from conversations.org_sync import Directory, DirectoryError, DirectoryPerson

__all__ = [
    "PLATFORM",
    "Directory",
    "DirectoryError",
    "feishu_client",
    "read_configured_directory",
    "read_directory",
]

log = logging.getLogger(__name__)

PLATFORM = "feishu"
ROOT_DEPARTMENT = "0"
PAGE_SIZE = 50  # the most both list calls allow
TIMEOUT_S = 30.0
# Feishu's "too many requests": HTTP 429 with code 99991400 (some older APIs answer 400)
RATE_LIMITED = frozenset({99991400, 99991402})
MAX_RATE_LIMIT_RETRIES = 5
MAX_WAIT_S = 60.0
# the app lacks an API scope ("Access denied. One of the following scopes is required: [...]")
PERMISSION_DENIED = frozenset({99991672, 99991679})
# the department is outside the app's contact data range ("no dept authority error")
NO_DEPARTMENT_AUTHORITY = frozenset({40004})
# the token was refused: fetch a new one and try once more
TOKEN_INVALID = frozenset({99991661, 99991663, 99991664, 99991665, 99991668})
# what to grant when Feishu's answer does not say: the call's own scope and the fields the sync reads
DEPARTMENT_SCOPES = ("contact:contact.base:readonly", "contact:department.base:readonly")
USER_SCOPES = (
    "contact:contact.base:readonly",
    "contact:user.base:readonly",
    "contact:user.email:readonly",
    "contact:user.department:readonly",
    "contact:user.employee:readonly",
)
EMAIL_SCOPES = ("contact:user.email:readonly",)
_SCOPE_LIST = re.compile(r"\[([^\]]*)\]")

Sleep = Callable[[float], Awaitable[None]]
Progress = Callable[[int], None]


def feishu_client(
    settings: FeishuSettings, *, log_level: lark.LogLevel = lark.LogLevel.WARNING, timeout: float = TIMEOUT_S
) -> lark.Client:
    """A lark-oapi REST client for the app in ``settings``; raises ValueError for a bad domain."""
    return (
        lark.Client.builder()
        .app_id(settings.app_id)
        .app_secret(settings.app_secret)
        .domain(settings.base_url)
        .timeout(timeout)
        .log_level(log_level)
        .build()
    )


async def read_configured_directory(settings: Settings, *, progress: Progress | None = None) -> Directory:
    """The directory of the Feishu app the settings name; DirectoryError when it is not configured."""
    feishu = settings.feishu
    missing = [
        f"FEISHU_{name.upper()}" for name in ("app_id", "app_secret") if is_placeholder(getattr(feishu, name))
    ]
    if missing:
        raise DirectoryError("not_configured", platform=PLATFORM, names=missing)
    try:
        client = feishu_client(feishu)
    except ValueError:
        raise DirectoryError("bad_domain", platform=PLATFORM, msg=feishu.domain) from None
    return await read_directory(client, progress=progress)


async def read_directory(
    client: lark.Client, *, progress: Progress | None = None, sleep: Sleep = asyncio.sleep
) -> Directory:
    """Every active user of every department the app may see, each once.

    ``progress(n)`` is called with the number of people read so far after each page of users.
    A user in several departments gets the first of their departments' names. Raises DirectoryError.
    """
    reader = _Reader(client, sleep)
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
        # Feishu leaves out fields the app may not read instead of refusing the call
        raise DirectoryError("no_emails", platform=PLATFORM, scopes=EMAIL_SCOPES, count=len(people))
    return Directory(people=list(people.values()), departments=len(departments))


def _person(user: Any, found_in: str, departments: dict[str, str]) -> DirectoryPerson | None:
    status = user.status
    # resigned people may still be listed (with their status saying so): they have left
    if not user.open_id or (status is not None and (status.is_resigned or status.is_exited)):
        return None
    listed = [d for d in (user.department_ids or []) if d in departments or d == ROOT_DEPARTMENT]
    department = departments.get(listed[0] if listed else found_in, "")
    return DirectoryPerson(
        external_id=user.open_id,
        email=(user.email or user.enterprise_email or "").strip(),
        name=(user.name or user.en_name or "").strip(),
        manager_external_id=user.leader_user_id or None,
        department=department,
        title=(user.job_title or "").strip(),
        timezone=(user.time_zone or "").strip() or None,
        country=_country(user.country),
    )


def _country(value: str | None) -> str:
    # Feishu's country is meant to be a region code; anything else would be a wrong holiday calendar
    code = (value or "").strip().upper()
    return code if re.fullmatch(r"[A-Z]{2}", code) else ""


class _Reader:
    """The two paged list calls, with rate-limit waits and errors turned into DirectoryError."""

    def __init__(self, client: lark.Client, sleep: Sleep) -> None:
        self._client = client
        self._sleep = sleep

    async def departments(self) -> dict[str, str]:
        """open_department_id -> name for every department under the root, however deep."""
        names: dict[str, str] = {}
        token = ""
        while True:
            builder = (
                ChildrenDepartmentRequest.builder()
                .department_id(ROOT_DEPARTMENT)
                .department_id_type("open_department_id")
                .user_id_type("open_id")
                .fetch_child(True)
                .page_size(PAGE_SIZE)
            )
            request = (builder.page_token(token) if token else builder).build()
            data = await self._call(request, self._client.contact.v3.department.achildren, DEPARTMENT_SCOPES)
            for item in data.items or []:
                key = item.open_department_id or item.department_id
                if key and not (item.status is not None and item.status.is_deleted):
                    names[key] = (item.name or "").strip()
            token = data.page_token or ""
            if not data.has_more or not token:
                return names

    async def users(self, department_id: str) -> AsyncIterator[list[Any]]:
        """Pages of the department's direct users."""
        token = ""
        while True:
            builder = (
                FindByDepartmentUserRequest.builder()
                .department_id(department_id)
                .department_id_type("open_department_id")
                .user_id_type("open_id")
                .page_size(PAGE_SIZE)
            )
            request = (builder.page_token(token) if token else builder).build()
            data = await self._call(request, self._client.contact.v3.user.afind_by_department, USER_SCOPES)
            yield list(data.items or [])
            token = data.page_token or ""
            if not data.has_more or not token:
                return

    async def _call(
        self, request: Any, method: Callable[[Any], Awaitable[Any]], scopes: tuple[str, ...]
    ) -> Any:
        call = _call_name(request)
        waits = 0
        renewed = False
        while True:
            await self._token(call)
            try:
                response = await method(request)
            except httpx.HTTPError as exc:
                raise DirectoryError("network", platform=PLATFORM, call=call, msg=_reason(exc)) from exc
            except ValueError as exc:  # the body was not JSON (a proxy's error page, say)
                raise DirectoryError("bad_answer", platform=PLATFORM, call=call, msg=str(exc)) from exc
            if response.success():
                return response.data
            code, status = response.code, response.raw.status_code if response.raw else None
            if (status == 429 or code in RATE_LIMITED) and waits < MAX_RATE_LIMIT_RETRIES:
                waits += 1
                wait = _reset_seconds(response)
                log.info("Feishu rate limit on %s: waiting %.1f s (%d)", call, wait, waits)
                await self._sleep(wait)
                continue
            if code in TOKEN_INVALID and not renewed:
                renewed = True
                self._forget_token()
                continue
            raise _error(call, response, scopes, tries=waits + 1)

    async def _token(self, call: str) -> None:
        config = self._client._config  # the SDK offers no public way to fetch its token ahead
        try:
            await asyncio.to_thread(TokenManager.get_self_tenant_token, config)
        except ObtainAccessTokenException as exc:
            raise DirectoryError(
                "auth",
                platform=PLATFORM,
                call=call,
                code=exc.code,
                msg=exc.msg,
                names=("FEISHU_APP_ID", "FEISHU_APP_SECRET"),
            ) from exc
        except requests.RequestException as exc:
            raise DirectoryError("network", platform=PLATFORM, call=call, msg=_reason(exc)) from exc
        except ValueError as exc:
            raise DirectoryError("bad_answer", platform=PLATFORM, call=call, msg=str(exc)) from exc

    def _forget_token(self) -> None:
        # an expiry in the past makes the SDK's cache drop the token and fetch a new one
        TokenManager.cache.set(f"self_tenant_token:{self._client._config.app_id}", "", 0)


def _call_name(request: Any) -> str:
    """``GET /open-apis/...`` with the path's parameters filled, for messages."""
    uri = str(request.uri)
    for key, value in (request.paths or {}).items():
        uri = uri.replace(f":{key}", str(value))
    return f"{request.http_method.name} {uri}"


def _reset_seconds(response: Any) -> float:
    headers = {k.lower(): v for k, v in (response.raw.headers or {}).items()} if response.raw else {}
    try:
        wait = float(headers.get("x-ogw-ratelimit-reset", "1"))
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.0), MAX_WAIT_S)


def _error(call: str, response: Any, scopes: tuple[str, ...], *, tries: int) -> DirectoryError:
    code, msg = response.code, response.msg or ""
    status = response.raw.status_code if response.raw else None
    if status == 429 or code in RATE_LIMITED:
        return DirectoryError("rate_limited", platform=PLATFORM, call=call, code=code, msg=msg, tries=tries)
    if code in NO_DEPARTMENT_AUTHORITY:
        return DirectoryError("data_range", platform=PLATFORM, call=call, code=code, msg=msg, status=status)
    if code in PERMISSION_DENIED:
        named = _named_scopes(response)
        return DirectoryError(
            "permission",
            platform=PLATFORM,
            call=call,
            code=code,
            msg=msg,
            status=status,
            scopes=named or scopes,
        )
    if code is None:
        body = bytes(response.raw.content or b"")[:200].decode("utf-8", "replace") if response.raw else ""
        return DirectoryError("bad_answer", platform=PLATFORM, call=call, status=status, msg=body)
    return DirectoryError("api", platform=PLATFORM, call=call, code=code, msg=msg, status=status)


def _named_scopes(response: Any) -> tuple[str, ...]:
    """The scopes Feishu's answer names: ``permission_violations``, else the ``[...]`` in its message."""
    named: list[str] = []
    violations = getattr(response.error, "permission_violations", None) or []
    named += [v.subject for v in violations if getattr(v, "subject", None)]
    match = _SCOPE_LIST.search(response.msg or "")
    if match:
        named += [s.strip() for s in match.group(1).split(",") if s.strip()]
    return tuple(dict.fromkeys(named))


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
