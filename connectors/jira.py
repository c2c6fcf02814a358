"""Jira Cloud (REST v3, ``search/jql``) and Data Center (REST v2, ``search``) issues as TaskRecords.

Facts this module relies on are in ``shared/reference/task-sources.md`` §1, §2 and §6: JQL date
literals have minute resolution and are read in the searching user's profile time zone (so ``since``
is floored to the minute in the ``/myself`` zone); Cloud pages with opaque ``nextPageToken`` / ``isLast``
and answers only ``id`` unless fields are named; story points and sprint live in custom fields whose
ids differ per site and are found through ``/field``; e-mail addresses may be hidden.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from connectors.base import Member, Page, Scope
from connectors.http import Sleep, SourceAuthError, SourceError, SourceHttp, retry_after_header
from connectors.records import PersonRef, StatusCategory, TaskRecord, TombstoneReason

log = logging.getLogger(__name__)

Deployment = Literal["cloud", "datacenter"]

SPRINT_SCHEMA = "com.pyxis.greenhopper.jira:gh-sprint"
TEAM_POINTS_SCHEMA = "com.pyxis.greenhopper.jira:jsw-story-points"
FLOAT_SCHEMA = "com.atlassian.jira.plugin.system.customfieldtypes:float"
COMPANY_POINTS_NAME = "story points"

# what every search asks for besides the discovered custom fields: Cloud answers only ``id`` otherwise
BASE_FIELDS = (
    "summary",
    "status",
    "issuetype",
    "assignee",
    "project",
    "created",
    "updated",
    "resolutiondate",
    "statuscategorychangedate",
    "duedate",
    "labels",
)
CLOUD_PAGE_MAX = 100  # full-field pages (Cloud may answer fewer)
ID_PAGE_MAX = 5000  # id-only pages on Cloud ("It returns max 5000 issues")
DC_ID_PAGE = 1000  # Data Center caps pages by an admin setting, commonly 1000; it says what it used
MIN_OVERLAP = timedelta(minutes=10)
PEOPLE_CONCURRENCY = 8  # user search shares a tenant-wide limit: a few at a time, never all at once

_CATEGORY = {
    "new": StatusCategory.TODO,
    "indeterminate": StatusCategory.IN_PROGRESS,
    "done": StatusCategory.DONE,
}
# Data Center's legacy sprint value: "com.atlassian.greenhopper.service.sprint.Sprint@1a[id=3,name=S 7,...]"
_DC_SPRINT_NAME = re.compile(r"[\[,]name=(.*?),[A-Za-z]+=")


def jira_rate_limited(response: httpx.Response, body: Any) -> float | None:
    """Jira's "slow down": 429 (and 503 under load) with ``Retry-After`` or ``X-RateLimit-Reset``."""
    if response.status_code in (429, 503):
        return retry_after_header(response) or 0.0
    return None


def error_messages(body: Any) -> str:
    """Jira's ``ErrorCollection`` (``errorMessages`` plus per-field ``errors``) as one line."""
    if not isinstance(body, dict):
        return ""
    parts = [str(m) for m in body.get("errorMessages") or () if m]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts.extend(f"{k}: {v}" for k, v in errors.items())
    return "; ".join(parts)


def jql_time(since: datetime, zone: tzinfo | None) -> str:
    """``since`` as a JQL literal ``yyyy/MM/dd HH:mm``, floored to the minute, in the searcher's zone.

    Jira reads the literal in the API user's profile zone. Unknown zone: UTC minus a day (the literal
    might be read anywhere from UTC-12 to UTC+14). A wall time that a DST fall-back makes ambiguous is
    written an hour earlier, so whichever reading Jira picks lies at or before ``since``.
    """
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if zone is None:
        local = since.astimezone(UTC) - timedelta(hours=24)
    else:
        local = since.astimezone(zone)
        if local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset():
            local = (since - timedelta(hours=1)).astimezone(zone)
    return local.strftime("%Y/%m/%d %H:%M")


PREFETCH_TURNS = 5


def scope_id(jql: str) -> str:
    return "jira:jql:" + hashlib.sha1(jql.strip().encode()).hexdigest()[:12]


def _auth_header(email: str | None, api_token: str | None, bearer_token: str | None) -> tuple[str, str]:
    """The Authorization value and the settings to name when it is refused."""
    if email and api_token:
        pair = base64.b64encode(f"{email}:{api_token}".encode()).decode()
        return f"Basic {pair}", "JIRA_EMAIL and JIRA_API_TOKEN (an API token of that Atlassian account)"
    if bearer_token:
        return (
            f"Bearer {bearer_token}",
            "JIRA_BEARER_TOKEN (an OAuth access token on Cloud, a personal access token on Data Center)",
        )
    raise ValueError("Jira needs email + api_token (Basic) or bearer_token (OAuth access token or PAT)")


class _Fields:
    """Custom field ids of one site, found by schema and name (they differ per site)."""

    def __init__(self, fields: Any) -> None:
        self.sprint: list[str] = []
        team_points: list[str] = []
        company_points: list[str] = []
        for item in fields if isinstance(fields, list) else ():
            if not isinstance(item, dict) or not item.get("id"):
                continue
            schema = item.get("schema") or {}
            custom = schema.get("custom") if isinstance(schema, dict) else None
            if custom == SPRINT_SCHEMA:
                self.sprint.append(str(item["id"]))
            elif custom == TEAM_POINTS_SCHEMA:
                team_points.append(str(item["id"]))
            elif custom == FLOAT_SCHEMA and str(item.get("name", "")).strip().lower() == COMPANY_POINTS_NAME:
                company_points.append(str(item["id"]))
        # an issue carries one of them (team-managed vs company-managed projects); the first set wins
        self.points: list[str] = team_points + company_points

    def request_list(self) -> list[str]:
        return [*BASE_FIELDS, *self.points, *self.sprint]


class _Mapper:
    """Issue JSON → TaskRecord, with everything per-site worked out once (it runs per issue)."""

    def __init__(
        self, *, tenant: str, site_url: str, zone: tzinfo | None, fields: _Fields, cloud: bool
    ) -> None:
        self.tenant = tenant
        self.browse = site_url.rstrip("/") + "/browse/"
        self.zone = zone or UTC
        self.points = tuple(fields.points)
        self.sprint = tuple(fields.sprint)
        self.cloud = cloud
        self._due: dict[str, datetime | None] = {}  # many issues share a due date

    def due(self, value: str) -> datetime | None:
        """A due date (a day, no time) as the start of that day in the API user's zone."""
        if value in self._due:
            return self._due[value]
        try:
            moment: datetime | None = datetime.combine(date.fromisoformat(value[:10]), time(0), self.zone)
        except ValueError:
            moment = None
        self._due[value] = moment = moment.astimezone(UTC) if moment else None
        return moment

    def person(self, user: Any) -> PersonRef | None:
        if not isinstance(user, dict):
            return None
        ident = user.get("accountId") if self.cloud else (user.get("key") or user.get("name"))
        if not ident:
            return None
        return PersonRef(str(ident), user.get("displayName") or "", user.get("emailAddress") or None)

    def record(self, issue: dict[str, Any]) -> TaskRecord:
        f = issue.get("fields") or {}
        key = issue.get("key") or ""
        status = f.get("status") or {}
        category_key = (status.get("statusCategory") or {}).get("key")
        category = _CATEGORY.get(category_key or "", StatusCategory.UNKNOWN)
        updated_raw = f.get("updated")
        created = _ts(f.get("created"))
        updated = _ts(updated_raw) or created or datetime.now(UTC)
        completed = None
        if category is StatusCategory.DONE:
            completed = _ts(f.get("resolutiondate")) or _ts(f.get("statuscategorychangedate"))
        due_raw = f.get("duedate")
        assignee = self.person(f.get("assignee"))
        project = f.get("project")
        container = project.get("key") if isinstance(project, dict) else None
        if not container and "-" in key:
            container = key.rsplit("-", 1)[0]
        points = None
        for field_id in self.points:
            value = f.get(field_id)
            if value is not None:
                points = _number(value)
                break
        sprint_name = sprint_ref = None
        for field_id in self.sprint:
            sprints = f.get(field_id)
            if sprints:
                sprint_name, sprint_ref = _last_sprint(sprints)
                break
        issue_type = f.get("issuetype") or {}
        raw: dict[str, Any] = {"key": key, "updated": updated_raw}
        if status:
            raw["status"] = [status.get("id"), status.get("name"), category_key]
        for name in ("resolutiondate", "statuscategorychangedate", "duedate"):
            if f.get(name):
                raw[name] = f[name]
        if sprint_ref:
            raw["sprint"] = sprint_ref
        return TaskRecord(
            source="jira",
            tenant=self.tenant,
            external_id=str(issue.get("id")),
            external_key=key or None,
            url=self.browse + key if key else None,
            title=f.get("summary") or "",
            item_type=issue_type.get("name") or "task",
            status_raw=status.get("name"),
            status_category=category,
            created_at=created,
            updated_at=updated,
            due_at=self.due(due_raw) if due_raw else None,
            due_all_day=bool(due_raw),
            completed_at=completed,
            assignees=(assignee,) if assignee else (),
            container=container,
            estimate_points=points,
            iteration=sprint_name,
            labels=tuple(f.get("labels") or ()),
            raw=raw,
        )


def _ts(value: Any) -> datetime | None:
    """``2025-09-18T10:32:11.123+0800`` → aware UTC (3.11's fromisoformat reads ``+0800``; ~15x strptime)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _last_sprint(sprints: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The name of the issue's last sprint (the newest), and a small ref for ``raw``."""
    last = sprints[-1] if isinstance(sprints, list) else sprints
    if isinstance(last, dict):
        board = last.get("boardId", last.get("originBoardId"))
        ref = {"id": last.get("id"), "state": last.get("state"), "board": board}
        return last.get("name"), ref
    if isinstance(last, str):
        match = _DC_SPRINT_NAME.search(last + ",end=")
        return (match.group(1) if match else None), None
    return None, None


class JiraConnector:
    """One Jira site, read through one JQL filter, as the Connector ``connectors.sync`` runs."""

    source = "jira"
    # one scope for the whole site: people are looked up only for assignees the items cannot name
    people_first = False

    def __init__(
        self,
        *,
        base_url: str,
        deployment: Deployment = "cloud",
        email: str | None = None,
        api_token: str | None = None,
        bearer_token: str | None = None,
        jql: str = "",
        tenant: str | None = None,
        site_url: str | None = None,
        per_s: float | None = None,
        page_size: int = 100,
        overlap: timedelta = timedelta(minutes=15),
        max_wait: float = 300.0,
        sleep: Sleep = asyncio.sleep,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``site_url``: where people open issues (``/browse/KEY``) when ``base_url`` is an API gateway
        (OAuth calls go to ``https://api.atlassian.com/ex/jira/<cloudid>``); defaults to ``base_url``."""
        if deployment not in ("cloud", "datacenter"):
            raise ValueError(f"deployment must be 'cloud' or 'datacenter' (got {deployment!r})")
        if overlap < MIN_OVERLAP:
            raise ValueError(f"overlap must be at least {MIN_OVERLAP} (JQL has minute resolution)")
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self.base_url = base_url.rstrip("/")
        self.deployment: Deployment = deployment
        self.tenant = tenant or self.base_url
        self.site_url = (site_url or self.base_url).rstrip("/")
        self.jql = jql.strip()
        self.overlap = overlap
        self.page_size = page_size
        self._cloud = deployment == "cloud"
        self._api = f"{self.base_url}/rest/api/{3 if self._cloud else 2}"
        authorization, self._credential_hint = _auth_header(email, api_token, bearer_token)
        self._headers = {"Authorization": authorization, "Accept": "application/json"}
        self._http = SourceHttp(
            "jira",
            self.base_url,
            rate_limited=jira_rate_limited,
            per_s=per_s,
            max_wait=max_wait,
            sleep=sleep,
            client=client,
        )
        self.time_zone: str | None = None  # the API user's profile zone, as /myself names it
        self.zone: tzinfo | None = None
        self.fields: _Fields | None = None
        self._mapper: _Mapper | None = None
        self._request_fields: list[str] = list(BASE_FIELDS)

    # ---- Connector ------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return self._http.requests

    @property
    def waited(self) -> float:
        """Seconds spent waiting out Jira's rate limits."""
        return self._http.waited

    async def prepare(self) -> None:
        me = await self._get("/myself", what="reading the API user (/myself)")
        self.time_zone = me.get("timeZone") if isinstance(me, dict) else None
        self.zone = _zone(self.time_zone)
        if self.zone is None:
            log.warning(
                "jira: /myself names no usable time zone (%r): reading a day back in UTC", self.time_zone
            )
        self.fields = _Fields(await self._get("/field", what="listing fields (/field)"))
        self._request_fields = self.fields.request_list()
        self._mapper = _Mapper(
            tenant=self.tenant, site_url=self.site_url, zone=self.zone, fields=self.fields, cloud=self._cloud
        )

    async def scopes(self, members: Sequence[Member]) -> list[Scope]:
        return [Scope(id=scope_id(self.jql))]

    async def pages(
        self, scope: Scope, since: datetime | None, resume: str | None
    ) -> AsyncGenerator[Page, None]:
        mapper = await self._ready()
        jql = self.search_jql(since)
        fetch = self._cloud_page if self._cloud else self._dc_page
        first = await self._first_page(fetch, jql, resume)
        pending: asyncio.Future[tuple[list[Any], str | None]] | None = None
        try:
            issues, after = first
            while True:
                # ask for the next page while the caller stores this one (the token is all it needs)
                pending = asyncio.ensure_future(fetch(jql, after)) if after else None
                if pending is not None:
                    # SQLite's writes run inline and never hand the loop back: give the next
                    # request the turns it needs to go out before this page is written (measured:
                    # 5 turns cut the wait for pages from 5 s to 1.5 s per 100,000 issues)
                    for _ in range(PREFETCH_TURNS):
                        await asyncio.sleep(0)
                yield Page([mapper.record(issue) for issue in issues], after)
                if pending is None:
                    return
                fetching, pending = pending, None
                issues, after = await fetching
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, SourceError):
                    await pending

    async def live_ids(self, scope: Scope) -> AsyncGenerator[Sequence[str], None]:
        jql = f"{self._bounded_filter()} ORDER BY created ASC"
        if self._cloud:
            token: str | None = None
            while True:
                body = await self._cloud_search(jql, token, ["id"], ID_PAGE_MAX)
                yield [str(issue["id"]) for issue in body.get("issues") or ()]
                token = body.get("nextPageToken")
                if body.get("isLast", token is None) or not token:
                    return
        else:
            start = 0
            while True:
                body = await self._dc_search(jql, start, ["id"], DC_ID_PAGE)
                issues = body.get("issues") or []
                yield [str(issue["id"]) for issue in issues]
                start += len(issues)
                if not issues or start >= int(body.get("total") or 0):
                    return

    async def confirm_gone(self, scope: Scope, external_id: str) -> TombstoneReason | None:
        response, body = await self._http.request(
            "GET", f"{self._api}/issue/{external_id}", headers=self._headers, params={"fields": "id"}
        )
        status = response.status_code
        if status == 404:
            # also what Jira answers when the issue exists but we may no longer browse it
            return TombstoneReason.DELETED
        if status == 403:
            return TombstoneReason.PERMISSION_LOST
        if status == 401:
            # the credential itself is refused: not a fact about this issue, so tombstone nothing
            raise SourceAuthError("jira", self._auth_message(status, body), status=status)
        check_response(response, body, what=f"reading issue {external_id}")
        if not self.jql:
            return None  # the scope is everything the user can see, and it can see this one
        found = await self._in_filter(external_id)
        return None if found else TombstoneReason.OUT_OF_SCOPE

    async def find_people(self, members: Sequence[Member]) -> dict[int, PersonRef]:
        found: dict[int, PersonRef] = {}
        limit = asyncio.Semaphore(PEOPLE_CONCURRENCY)

        async def look_up(member: Member) -> None:
            known = member.ids.get("jira")
            if known:  # an admin's mapping (org import ``jira_id``) wins over any search
                found[member.person_id] = PersonRef(known, "", member.email or None)
                return
            async with limit:
                ref = await self._search_user(member.email.strip())
            if ref is not None:
                found[member.person_id] = ref

        try:
            # a TaskGroup, not gather: a refused credential stops the other look-ups too
            async with asyncio.TaskGroup() as group:
                for member in members:
                    if member.email.strip() or member.ids.get("jira"):
                        group.create_task(look_up(member))
        except* SourceError as failed:
            raise failed.exceptions[0] from None
        return found

    async def close(self) -> None:
        await self._http.close()

    # ---- JQL ------------------------------------------------------------------------------------

    def search_jql(self, since: datetime | None) -> str:
        """The JQL one incremental read sends: bounded (Cloud refuses unbounded JQL), oldest first.

        ``ORDER BY created`` rather than ``updated``: an issue edited mid-read would jump pages.
        """
        if since is None:
            return f"{self._bounded_filter()} ORDER BY created ASC"
        window = f'updated >= "{jql_time(since, self.zone)}"'
        where = f"({self.jql}) AND {window}" if self.jql else window
        return f"{where} ORDER BY created ASC"

    def _bounded_filter(self) -> str:
        # a restriction every issue passes, for a site-wide scope
        return f"({self.jql})" if self.jql else 'created >= "1970/01/01"'

    # ---- paging ---------------------------------------------------------------------------------

    async def _first_page(
        self,
        fetch: Callable[[str, str | None], Any],
        jql: str,
        resume: str | None,
    ) -> tuple[list[Any], str | None]:
        if resume:
            try:
                result: tuple[list[Any], str | None] = await fetch(jql, resume)
                return result
            except _TokenRefused as exc:
                log.warning("jira: resume token refused (%s); reading the window again from its start", exc)
        result = await fetch(jql, None)
        return result

    async def _cloud_page(self, jql: str, token: str | None) -> tuple[list[Any], str | None]:
        body = await self._cloud_search(jql, token, self._request_fields, min(self.page_size, CLOUD_PAGE_MAX))
        after = body.get("nextPageToken")
        if body.get("isLast") or not after:
            after = None
        return body.get("issues") or [], after

    async def _dc_page(self, jql: str, token: str | None) -> tuple[list[Any], str | None]:
        start = 0
        if token:
            try:
                start = max(0, int(token))
            except ValueError as exc:
                raise _TokenRefused(f"not a startAt: {token!r}") from exc
        body = await self._dc_search(jql, start, self._request_fields, self.page_size)
        issues = body.get("issues") or []
        after = start + len(issues)
        more = bool(issues) and after < int(body.get("total") or 0)
        return issues, str(after) if more else None

    async def _cloud_search(
        self,
        jql: str,
        token: str | None,
        fields: list[str],
        max_results: int,
        reconcile: Iterable[int] = (),
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": max_results}
        if token:
            request["nextPageToken"] = token
        reconcile = list(reconcile)
        if reconcile:
            request["reconcileIssues"] = reconcile
        response, body = await self._http.request(
            "POST", f"{self._api}/search/jql", headers=self._headers, json=request
        )
        if response.status_code == 400 and token:
            raise _TokenRefused(error_messages(body) or "HTTP 400")
        self._check_search(response, body)
        return body if isinstance(body, dict) else {}

    async def _dc_search(self, jql: str, start: int, fields: list[str], max_results: int) -> dict[str, Any]:
        request = {"jql": jql, "startAt": start, "maxResults": max_results, "fields": fields}
        response, body = await self._http.request(
            "POST", f"{self._api}/search", headers=self._headers, json=request
        )
        self._check_search(response, body)
        return body if isinstance(body, dict) else {}

    def _check_search(self, response: httpx.Response, body: Any) -> None:
        if response.status_code in (401, 403):
            raise SourceAuthError(
                "jira", self._auth_message(response.status_code, body), status=response.status_code
            )
        check_response(response, body, what="searching issues")

    async def _in_filter(self, external_id: str) -> bool:
        """Whether the issue matches the scope's filter now (read-after-write where Jira offers it)."""
        if not external_id.isdigit():
            return False
        jql = f"({self.jql}) AND id = {external_id}"
        if self._cloud:
            body = await self._cloud_search(jql, None, ["id"], 1, reconcile=[int(external_id)])
        else:
            body = await self._dc_search(jql, 0, ["id"], 1)
        return any(str(issue.get("id")) == external_id for issue in body.get("issues") or ())

    # ---- people ---------------------------------------------------------------------------------

    async def _search_user(self, email: str) -> PersonRef | None:
        """The one user with exactly this e-mail; a user who hides it is found only by the full address."""
        params = {"query": email} if self._cloud else {"username": email}
        response, body = await self._http.request(
            "GET", f"{self._api}/user/search", headers=self._headers, params=params
        )
        if response.status_code in (401, 403):
            raise SourceAuthError(
                "jira", self._auth_message(response.status_code, body), status=response.status_code
            )
        if response.status_code >= 400:
            log.warning(
                "jira: user search for one member failed: HTTP %s %s",
                response.status_code,
                error_messages(body),
            )
            return None
        users = [u for u in body if isinstance(u, dict)] if isinstance(body, list) else []
        wanted = email.lower()
        exact = [u for u in users if str(u.get("emailAddress") or "").lower() == wanted]
        if not exact:
            # Jira finds a user who hides the address only by the exact full address: the one hit
            # without an address is them (others in the answer merely start with the query)
            exact = [u for u in users if not u.get("emailAddress")]
        if len(exact) != 1:
            return None
        user = exact[0]
        ident = user.get("accountId") if self._cloud else (user.get("key") or user.get("name"))
        if not ident:
            return None
        return PersonRef(str(ident), user.get("displayName") or "", user.get("emailAddress") or email)

    # ---- plumbing -------------------------------------------------------------------------------

    async def _ready(self) -> _Mapper:
        if self._mapper is None:
            await self.prepare()
        assert self._mapper is not None
        return self._mapper

    async def _get(self, path: str, *, what: str) -> Any:
        response, body = await self._http.request("GET", self._api + path, headers=self._headers)
        if response.status_code in (401, 403):
            raise SourceAuthError(
                "jira", self._auth_message(response.status_code, body), status=response.status_code
            )
        check_response(response, body, what=what)
        return body

    def _auth_message(self, status: int, body: Any) -> str:
        detail = error_messages(body)
        return (
            f"{self.base_url} refused the credentials (HTTP {status}{': ' + detail if detail else ''}); "
            f"check {self._credential_hint}"
        )


class _TokenRefused(SourceError):
    """A page token Jira would not take (they expire after 7 days, and belong to one query)."""

    def __init__(self, message: str) -> None:
        super().__init__("jira", f"page token refused: {message}", status=400)


def _zone(name: Any) -> tzinfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def check_response(response: httpx.Response, body: Any, *, what: str) -> None:
    """Nothing for a 2xx; otherwise a SourceError carrying Jira's own words."""
    status = response.status_code
    if status < 400:
        return
    detail = error_messages(body) or response.text[:300]
    if status == 410:
        raise SourceError(
            "jira",
            f"{what}: Jira removed this API (HTTP 410): {detail} — Cadence reads /rest/api/3/search/jql; "
            "check that JIRA_BASE_URL points at the site and no proxy rewrites the path",
            status=status,
        )
    raise SourceError("jira", f"{what}: HTTP {status}: {detail}", status=status)
