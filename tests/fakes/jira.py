"""A Jira server on 127.0.0.1 for ``connectors.jira``: Cloud (REST v3) or Data Center (REST v2).

Wire behaviour, from ``/work/shared/reference/task-sources.md`` §1, §2, §7 and Atlassian's Cloud
OpenAPI document (``shared/reference/specs``); sources are marked [VERIFIED: where], [S] (secondary:
another project's code or a community thread, as the reference file cites it) or GUESS:

* Cloud search ``GET|POST /rest/api/3/search/jql`` [VERIFIED: spec, SearchAndReconcileRequestBean /
  SearchAndReconcileResults]: body ``{jql, nextPageToken, maxResults, fields[], expand, properties[],
  fieldsByKeys, reconcileIssues[]}``; any other key → 400 (the bean has ``additionalProperties: false``;
  Jira's exact wording is a GUESS). Answer ``{issues, isLast, nextPageToken}``: no ``total``, the token
  only while more pages follow. ``fields`` defaults to ``id`` only [VERIFIED: spec default]; an id-only
  issue is ``{"id"}`` (GUESS: the shape when nothing else is asked for). ``maxResults`` defaults to 50;
  pages hold at most 100 issues with fields (GUESS: Atlassian says only "may be smaller"), 5000 with
  ids/keys only [VERIFIED: spec]. Page tokens are opaque (random, base64), point into a server-side
  snapshot of the matching ids taken at the first page, expire after 7 days [VERIFIED: spec] (or at
  ``expire_page_tokens``) and belong to their JQL: an unknown, expired or foreign token → 400 (GUESS:
  message). Issues are rendered as they are when their page is read (a deleted one is skipped).
* Bounded JQL [S: Adaptavist, RFC-61]: a query with no restriction (e.g. only ``ORDER BY``) → 400
  "Unbounded JQL queries are not allowed here. Please add a search restriction to your query." (GUESS:
  wording); at most 7 ORDER BY fields. The JQL subset understood: ``AND``/``OR``/``NOT``/parentheses;
  ``project``, ``key``, ``id``, ``assignee``, ``status``, ``issuetype``/``type``, ``labels`` with
  ``= != in (…) not in (…) is [not] EMPTY``; ``created``, ``updated``, ``resolved``/``resolutiondate``,
  ``due``/``duedate`` with ``= != > >= < <=`` and literals ``"yyyy/MM/dd HH:mm"``, ``"yyyy-MM-dd HH:mm"``,
  dates alone, or ``-5d``/``-2h``/``-30m``/``-1w`` [S: devlake, tap-jira]. Date literals are read in the
  ``/myself`` user's ``timeZone`` at minute resolution [S: tap-jira PR #15, devlake PR #4954]; anything
  else (seconds, say) → 400 "Date value … is invalid. Valid formats include: …" (GUESS: from memory).
  An unknown field → 400 "Field 'x' does not exist or you do not have permission to view it." (GUESS).
  ``ORDER BY created|updated|key|id|duedate [ASC|DESC]``; without one, newest key first (GUESS).
* ``reconcileIssues`` (≤ 50 ids) [VERIFIED: spec]: those issues are read as they are now, past the
  eventual-consistency ``lag`` every other search sees (changes reach search ``lag`` seconds late).
* ``/rest/api/3/search`` and ``/rest/api/2/search`` on Cloud → 410 ``{"errorMessages": ["The requested
  API has been removed. Please migrate to the /rest/api/3/search/jql API."]}`` [S: aaronshaf/ji#23,
  badoo/jira-client#30; the api/2 wording is a GUESS].
* Data Center ``GET|POST /rest/api/2/search`` [S: devlake]: ``jql, startAt, maxResults, fields, expand,
  validateQuery``; answer ``{expand, startAt, maxResults, total, issues}`` evaluated afresh per page
  (offsets, no snapshot); unbounded JQL allowed; ``fields`` defaults to all (``*navigable``); pages
  capped at ``dc_page_max`` (1000; GUESS: an admin setting) and the answer's ``maxResults`` says the
  cap used. Users are ``{name, key, emailAddress, displayName, active, timeZone}`` [G in the
  reference]; sprints are the legacy strings ``com.atlassian.greenhopper.service.sprint.Sprint@…[id=…,
  name=…,…]`` unless ``sprint_strings=False`` (GUESS: which DC versions still send strings).
* Issues [VERIFIED: spec IssueBean; field shapes from the reference's captured example]: ``{expand, id,
  self, key, fields}``; times ``2025-09-18T10:32:11.123+0800`` in the ``/myself`` zone; ``statusCategory``
  keys ``new``/``indeterminate``/``done`` with ids 2/4/3 [V]; requested fields without a value are
  ``null``; story points in ``TEAM_POINTS_FIELD`` (team-managed projects, ``jsw-story-points``) or
  ``COMPANY_POINTS_FIELD`` (float named "Story Points"), sprints in ``SPRINT_FIELD`` as objects with
  ``boardId`` [S: reference example; the agile API says ``originBoardId``].
* ``GET /myself`` → the authenticated user with ``timeZone`` [VERIFIED: spec User]; ``time_zone=None``
  leaves it out. ``GET /field`` → FieldDetails list [VERIFIED: spec] with the three fields above at
  non-default ids plus decoys (a float "Business Value", a text "Sprint Goal").
* ``GET /issue/{idOrKey}`` → the issue now; unknown → 404 "Issue does not exist or you do not have
  permission to see it." [S: widely quoted]; ``forbid_issue`` → 403 (GUESS: Jira often answers 404).
* ``GET /rest/api/3/user/search?query=`` [VERIFIED: spec text]: active users whose display-name word or
  e-mail starts with the query; a user hiding the address is found only by the exact full address, and
  their ``emailAddress`` is left out (``hidden_email_as_null=True``: ``null``; the spec says "may be
  returned as null", the reference flags absent as possible). No ``query`` → 400 (GUESS). Data Center
  ``/rest/api/2/user/search?username=`` matches username, display name or e-mail prefix.
* Auth: ``Authorization: Basic base64(email:api_token)`` or ``Bearer <token>`` (OAuth access token on
  Cloud, PAT on Data Center) [VERIFIED: spec securitySchemes; reference §1.7]; otherwise 401
  ``{"errorMessages": ["You are not authenticated. Authentication required to perform this operation."]}``
  (GUESS: wording).
* Rate limits: ``throttle(n)`` answers the next n calls 429 with ``Retry-After`` (seconds),
  ``X-RateLimit-Reset`` (``yyyy-MM-ddTHH:mmZ``), ``RateLimit-Reason``, ``X-RateLimit-Limit`` and
  ``X-RateLimit-Remaining: 0`` [VERIFIED: JRACLOUD-69262 quoting Atlassian's rate-limiting page].

For load (benchmarks): ``generate`` builds 100,000 issues for 1,000 people in about a second; issues
are slotted objects, rendered only when a page is read; the first page of a query costs one pass over
the issues (or over those updated since, through an index kept sorted by ``updated``), later pages
O(page). ``record_calls=False`` keeps no ``Call`` (``call_counts`` still counts per route).
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import json
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web

from tests.fakes.local_server import LocalServer

TEAM_POINTS_FIELD = "customfield_10123"
COMPANY_POINTS_FIELD = "customfield_10234"
SPRINT_FIELD = "customfield_10456"
PAGE_TOKEN_TTL = 7 * 24 * 3600.0
REMOVED_MESSAGE = "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."
UNBOUNDED_MESSAGE = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)
NOT_FOUND_MESSAGE = "Issue does not exist or you do not have permission to see it."
UNAUTHENTICATED_MESSAGE = "You are not authenticated. Authentication required to perform this operation."

_SEARCH_BEAN_KEYS = frozenset(
    {
        "jql",
        "nextPageToken",
        "maxResults",
        "fields",
        "expand",
        "properties",
        "fieldsByKeys",
        "reconcileIssues",
    }
)
_DC_SEARCH_KEYS = frozenset(
    {"jql", "startAt", "maxResults", "fields", "expand", "validateQuery", "properties", "fieldsByKeys"}
)
_ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"

# (id, name, category key); category ids and names are Jira's fixed ones
STATUSES: tuple[tuple[str, str, str], ...] = (
    ("10000", "To Do", "new"),
    ("3", "In Progress", "indeterminate"),
    ("10002", "In Review", "indeterminate"),
    ("10001", "Done", "done"),
    ("10003", "Won't Do", "done"),
)
_CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}


# ---- public records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request as Jira would have received it."""

    method: str
    path: str
    route: str  # the path with ids replaced ("/rest/api/3/issue/{id}"), as counted in call_counts
    query: dict[str, str]  # repeated parameters joined with ","
    body: Any  # parsed JSON, None without one
    headers: dict[str, str]  # names lower-cased


@dataclass(frozen=True)
class FakeUser:
    """A user of the site (``generate`` returns the people it made)."""

    account_id: str  # Cloud accountId; Data Center ``key``
    display_name: str
    email: str
    hidden_email: bool = False
    username: str = ""  # Data Center ``name``
    time_zone: str = "UTC"
    active: bool = True


@dataclass(frozen=True)
class Sprint:
    id: int
    name: str
    state: str  # "future" | "active" | "closed"
    board_id: int
    start: datetime | None = None
    end: datetime | None = None
    complete: datetime | None = None


@dataclass
class _Project:
    id: str
    key: str
    name: str
    team_managed: bool
    next_number: int = 1


@dataclass(slots=True, eq=False)
class _Issue:
    """One issue version, compact; updates replace it (``dataclasses.replace``) rather than mutate it,
    so a lagging search view can keep the old one."""

    id: int
    key: str
    project: str
    number: int
    summary: str
    issue_type: str
    status: int  # index into STATUSES
    assignee: str | None  # account id
    created: int  # epoch ms
    updated: int
    resolved: int | None
    cat_changed: int | None
    due: str | None  # "yyyy-MM-dd"
    points: float | None
    sprints: tuple[int, ...]
    labels: tuple[str, ...]


class JqlError(ValueError):
    """A query Jira would refuse with HTTP 400."""


@dataclass
class _Query:
    where: Callable[[_Issue], bool] | None
    order: list[tuple[str, bool]]  # (field, descending)
    updated_floor: int | None  # a top-level ``updated >=`` bound, for the index


@dataclass
class _Cursor:
    jql: str
    ids: list[int]
    fields: tuple[str, ...]
    expires: float


@dataclass
class _Throttle:
    left: int
    retry_after: float | None
    reset_in: float | None
    reason: str
    status: int
    route: str | None


# ---- the fake ---------------------------------------------------------------------------------------


class JiraFake(LocalServer):
    """Jira's search, field, user and issue endpoints on 127.0.0.1, port 0 (Cloud or Data Center)."""

    client_max_size = 8 * 1024 * 1024  # bulk request bodies (reconcileIssues) stay well under this

    def __init__(
        self,
        *,
        deployment: Literal["cloud", "datacenter"] = "cloud",
        time_zone: str | None = "UTC",
        email: str = "cadence-bot@acme.example",
        api_token: str = "fake-api-token",
        bearer_tokens: Iterable[str] = ("fake-bearer-token",),
        account_id: str = "557058:cadence-bot",
        lag: float = 0.0,
        clock: Callable[[], float] = time.time,
        record_calls: bool = True,
        cloud_page_max: int = 100,
        id_page_max: int = 5000,
        dc_page_max: int = 1000,
        sprint_strings: bool | None = None,
        hidden_email_as_null: bool = False,
    ) -> None:
        """``time_zone``: the API user's profile zone (None: /myself names none); ``lag``: seconds before
        a change shows in search; ``clock``: epoch seconds, for default ``updated`` times, page-token
        expiry and the lag."""
        self.deployment = deployment
        self.cloud = deployment == "cloud"
        self.api = "/rest/api/3" if self.cloud else "/rest/api/2"
        self.email, self.api_token = email, api_token
        self.bearer_tokens = set(bearer_tokens)
        self.account_id = account_id
        self.lag, self.clock, self.record_calls = lag, clock, record_calls
        self.cloud_page_max, self.id_page_max, self.dc_page_max = cloud_page_max, id_page_max, dc_page_max
        self.sprint_strings = (not self.cloud) if sprint_strings is None else sprint_strings
        self.hidden_email_as_null = hidden_email_as_null
        self.auth_refused = False  # every call answers 401 while set
        self.calls: list[Call] = []
        self.call_counts: Counter[str] = Counter()  # route -> calls received (also when not recorded)
        self.http_429 = 0
        self._zone_name = time_zone
        self._zone = ZoneInfo(time_zone) if time_zone else UTC
        self._projects: dict[str, _Project] = {}
        self._users: dict[str, FakeUser] = {}
        self._user_json: dict[str, dict[str, Any]] = {}
        self._emails: list[tuple[str, str]] = []  # (lower-cased visible e-mail, account id), sorted
        self._names: list[tuple[str, str]] = []  # (lower-cased display-name word, account id), sorted
        self._hidden: dict[
            str, list[str]
        ] = {}  # hidden e-mail, lower-cased -> account ids (exact match only)
        self._sprints: dict[int, Sprint] = {}
        self._sprint_json: dict[int, Any] = {}
        self._issue_types: dict[str, dict[str, Any]] = {}
        self._truth: dict[int, _Issue] = {}
        self._search: dict[int, _Issue] = self._truth if lag <= 0 else {}
        self._pending: deque[tuple[float, int, _Issue | None]] = deque()
        self._by_key: dict[str, int] = {}
        self._by_updated: list[tuple[int, int]] = []
        self._index_dirty = False
        self._version = 0  # bumped whenever search would see a change
        self._dc_cache: dict[str, tuple[int, list[int]]] = {}
        self._forbidden: dict[int, int] = {}  # issue id -> HTTP status its reads get
        self._cursors: dict[str, tuple[_Cursor, int]] = {}  # page token -> (snapshot, position)
        self._throttles: list[_Throttle] = []
        self._next_id = 10000
        self._status_json = [self._render_status(i) for i in range(len(STATUSES))]
        self._status_by_name = {name.lower(): i for i, (_, name, _) in enumerate(STATUSES)}
        self.searches: list[str] = []  # every JQL received by a search endpoint, in order

    # ---- lifecycle ------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    @property
    def url(self) -> str:
        return self.base

    # ---- site data ------------------------------------------------------------------------------

    @property
    def time_zone(self) -> str | None:
        return self._zone_name

    def add_project(self, key: str, name: str | None = None, *, team_managed: bool = False) -> None:
        key = key.upper()
        if key not in self._projects:
            self._projects[key] = _Project(str(10000 + len(self._projects)), key, name or key, team_managed)

    def add_user(
        self,
        account_id: str,
        name: str,
        email: str,
        *,
        hidden_email: bool = False,
        username: str | None = None,
        time_zone: str = "UTC",
        active: bool = True,
    ) -> FakeUser:
        user = FakeUser(
            account_id, name, email, hidden_email, username or email.split("@")[0], time_zone, active
        )
        self._users[account_id] = user
        self._user_json.pop(account_id, None)
        if hidden_email:
            self._hidden.setdefault(email.lower(), []).append(account_id)
        else:
            bisect.insort(self._emails, (email.lower(), account_id))
        for word in name.lower().split():
            bisect.insort(self._names, (word, account_id))
        return user

    def add_sprint(
        self,
        name: str,
        *,
        state: str = "active",
        board_id: int = 1,
        start: datetime | None = None,
        end: datetime | None = None,
        complete: datetime | None = None,
    ) -> int:
        sprint_id = len(self._sprints) + 1
        self._sprints[sprint_id] = Sprint(sprint_id, name, state, board_id, start, end, complete)
        return sprint_id

    def add_issue(
        self,
        project: str,
        summary: str,
        *,
        issue_type: str = "Task",
        status: str = "To Do",
        assignee: str | None = None,
        created: datetime | None = None,
        updated: datetime | None = None,
        resolved: datetime | None = None,
        due: date | str | None = None,
        points: float | None = None,
        sprints: Sequence[int | str] = (),
        labels: Sequence[str] = (),
    ) -> str:
        """A new issue; returns its id. ``sprints``: sprint ids or names (made on first use)."""
        self.add_project(project)
        proj = self._projects[project.upper()]
        now = self._now_ms()
        created_ms = _ms(created) if created else now
        updated_ms = _ms(updated) if updated else max(created_ms, now if not created else created_ms)
        status_index = self._status_index(status)
        done = STATUSES[status_index][2] == "done"
        issue = _Issue(
            id=self._next_id,
            key=f"{proj.key}-{proj.next_number}",
            project=proj.key,
            number=proj.next_number,
            summary=summary,
            issue_type=issue_type,
            status=status_index,
            assignee=assignee,
            created=created_ms,
            updated=updated_ms,
            resolved=(_ms(resolved) if resolved else updated_ms) if done else None,
            cat_changed=updated_ms if STATUSES[status_index][2] != "new" else None,
            due=due.isoformat() if isinstance(due, date) else due,
            points=points,
            sprints=tuple(self._sprint_id(s) for s in sprints),
            labels=tuple(labels),
        )
        self._next_id += 1
        proj.next_number += 1
        self._put(issue)
        return str(issue.id)

    def update_issue(self, issue_id: str | int, *, updated: datetime | None = None, **changes: Any) -> None:
        """Change an issue as an edit in Jira would (``updated`` defaults to now). Changes: ``summary``,
        ``status`` (moving into done sets the resolution), ``assignee``, ``project`` (a move: new key),
        ``issue_type``, ``due``, ``points``, ``sprints``, ``labels``, ``resolved``."""
        old = self._truth[int(issue_id)]
        values: dict[str, Any] = {"updated": _ms(updated) if updated else max(self._now_ms(), old.updated)}
        for name, value in changes.items():
            if name == "status":
                index = self._status_index(value)
                values["status"] = index
                category, before = STATUSES[index][2], STATUSES[old.status][2]
                if category != before:
                    values["cat_changed"] = values["updated"]
                if category == "done" and before != "done":
                    values["resolved"] = values["updated"]
                elif category != "done":
                    values["resolved"] = None
            elif name == "project":
                self.add_project(value)
                proj = self._projects[value.upper()]
                values.update(project=proj.key, number=proj.next_number, key=f"{proj.key}-{proj.next_number}")
                proj.next_number += 1
            elif name == "sprints":
                values["sprints"] = tuple(self._sprint_id(s) for s in value)
            elif name == "due":
                values["due"] = value.isoformat() if isinstance(value, date) else value
            elif name == "resolved":
                values["resolved"] = _ms(value) if value else None
            elif name in ("summary", "assignee", "issue_type", "points", "labels"):
                values[name] = tuple(value) if name == "labels" else value
            else:
                raise TypeError(f"update_issue: unknown change {name!r}")
        issue = dataclasses.replace(old, **values)
        if issue.key != old.key:
            self._by_key.pop(old.key, None)
        self._put(issue)

    def delete_issue(self, issue_id: str | int) -> None:
        issue = self._truth.pop(int(issue_id))
        self._by_key.pop(issue.key, None)
        self._publish(issue.id, None)

    def forbid_issue(self, issue_id: str | int, status: int = 403) -> None:
        """The API user loses access to one issue: search leaves it out, reading it answers ``status``."""
        self._forbidden[int(issue_id)] = status
        self._version += 1

    def issue_json(self, issue_id: str | int) -> dict[str, Any]:
        """The issue as ``GET /issue/{id}`` shows it now (all fields)."""
        return self._render(self._truth[int(issue_id)], None)

    def issue_ids(self) -> list[str]:
        return [str(i) for i in self._truth]

    @property
    def users(self) -> list[FakeUser]:
        return list(self._users.values())

    def generate(
        self,
        *,
        issues: int = 100_000,
        people: int = 1_000,
        projects: Sequence[str] = ("PAY", "CORE", "WEB", "OPS"),
        start: datetime | None = None,
        days: int = 90,
        hidden_email_share: float = 0.2,
        domain: str = "acme.example",
        seed: int = 7,
    ) -> list[FakeUser]:
        """Bulk data for the benchmark: ``people`` users (``user0001@domain``…, a share hiding their
        address) and ``issues`` issues spread over ``projects`` (the first team-managed), created over
        ``days`` days before ``start`` (default: now) and updated since. About 10% are unassigned, ~40%
        done, most have points and a sprint, a third a due date. Returns the users made."""
        rng = random.Random(seed)
        end_ms = _ms(start) if start else self._now_ms()
        span = days * 86_400_000
        made = [
            self.add_user(
                f"712020:{i:08x}-fake",
                f"User {i:04d}",
                f"user{i:04d}@{domain}",
                hidden_email=rng.random() < hidden_email_share,
                username=f"user{i:04d}",
            )
            for i in range(1, people + 1)
        ]
        account_ids = [u.account_id for u in made]
        for index, key in enumerate(projects):
            self.add_project(key, team_managed=index == 0)
        project_objs = [self._projects[k.upper()] for k in projects]
        sprints = {
            p.key: [
                self.add_sprint(f"{p.key} Sprint {n}", state="closed" if n < 6 else "active", board_id=b)
                for n in range(1, 7)
            ]
            for b, p in enumerate(project_objs, start=1)
        }
        types = ("Story", "Task", "Bug", "Story", "Task")
        point_values = (1.0, 2.0, 3.0, 5.0, 8.0, None)
        label_sets = ((), ("backend",), ("frontend",), ("backend", "payments"), ())
        day = date.fromtimestamp(end_ms / 1000)
        dues = [(day + timedelta(days=d)).isoformat() for d in range(-days, 30)]
        truth, by_key = self._truth, self._by_key
        next_id = self._next_id
        random_ = rng.random
        for n in range(issues):
            proj = project_objs[n % len(project_objs)]
            created = end_ms - span + int(random_() * span)
            updated = created + int(random_() * (end_ms - created))
            roll = random_()
            status = 3 if roll < 0.4 else 0 if roll < 0.65 else 1 if roll < 0.9 else 2
            number = proj.next_number
            proj.next_number += 1
            issue = _Issue(
                id=next_id,
                key=f"{proj.key}-{number}",
                project=proj.key,
                number=number,
                summary=f"Generated work item {n}",
                issue_type=types[n % 5],
                status=status,
                assignee=None if random_() < 0.1 else account_ids[int(random_() * len(account_ids))],
                created=created,
                updated=updated,
                resolved=updated if status == 3 else None,
                cat_changed=updated if status else None,
                due=dues[int(random_() * len(dues))] if random_() < 0.33 else None,
                points=point_values[n % 6],
                sprints=(sprints[proj.key][n % 6],) if n % 7 else (),
                labels=label_sets[n % 5],
            )
            truth[next_id] = issue
            by_key[issue.key] = next_id
            next_id += 1
        self._next_id = next_id
        if self._search is not truth:
            self._search.update(truth)
        self._index_dirty = True
        self._version += 1
        return made

    # ---- misbehaviour ---------------------------------------------------------------------------

    def throttle(
        self,
        n_requests: int,
        *,
        retry_after: float | None = 1.0,
        reset_in: float | None = 60.0,
        reason: str = "jira-quota-based",
        status: int = 429,
        route: str | None = None,
    ) -> None:
        """Answer the next ``n_requests`` calls (to ``route`` only, when given) with ``status`` and
        Jira's rate-limit headers; ``retry_after=None`` leaves ``Retry-After`` out, ``reset_in=None``
        ``X-RateLimit-Reset``."""
        self._throttles.append(_Throttle(n_requests, retry_after, reset_in, reason, status, route))

    def expire_page_tokens(self) -> None:
        self._cursors.clear()

    def set_time_zone(self, name: str | None) -> None:
        self._zone_name = name
        self._zone = ZoneInfo(name) if name else UTC

    # ---- internals: storage ---------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _status_index(self, name: str) -> int:
        try:
            return self._status_by_name[name.lower()]
        except KeyError:
            raise ValueError(f"unknown status {name!r}; known: {[s[1] for s in STATUSES]}") from None

    def _sprint_id(self, sprint: int | str) -> int:
        if isinstance(sprint, int):
            return sprint
        for existing in self._sprints.values():
            if existing.name == sprint:
                return existing.id
        return self.add_sprint(sprint)

    def _put(self, issue: _Issue) -> None:
        self._truth[issue.id] = issue
        self._by_key[issue.key] = issue.id
        self._publish(issue.id, issue)

    def _publish(self, issue_id: int, issue: _Issue | None) -> None:
        """Make a change visible to search, now or ``lag`` seconds later."""
        if self._search is self._truth:
            self._index_dirty = True
            self._version += 1
        else:
            self._pending.append((self.clock() + self.lag, issue_id, issue))

    def _search_view(self) -> dict[int, _Issue]:
        now = self.clock()
        while self._pending and self._pending[0][0] <= now:
            _, issue_id, issue = self._pending.popleft()
            if issue is None:
                self._search.pop(issue_id, None)
            else:
                self._search[issue_id] = issue
            self._index_dirty = True
            self._version += 1
        return self._search

    def _select(self, query: _Query, reconcile: Iterable[int] = ()) -> list[int]:
        view = self._search_view()
        where = query.where
        if query.updated_floor is not None:
            if self._index_dirty:
                self._by_updated = sorted((i.updated, i.id) for i in view.values())
                self._index_dirty = False
            start = bisect.bisect_left(self._by_updated, (query.updated_floor, -1))
            candidates: Iterable[_Issue] = (view[i] for _, i in self._by_updated[start:])
        else:
            candidates = view.values()
        forbidden = self._forbidden
        found = {i.id: i for i in candidates if (where is None or where(i)) and i.id not in forbidden}
        for issue_id in reconcile:  # read-after-write: these as they are now
            found.pop(issue_id, None)
            now = self._truth.get(issue_id)
            if now is not None and issue_id not in forbidden and (where is None or where(now)):
                found[issue_id] = now
        issues = list(found.values())
        order = query.order or [("key", True)]
        for name, descending in reversed(order):
            issues.sort(key=_SORT_KEYS[name], reverse=descending)
        return [i.id for i in issues]

    # ---- internals: HTTP ------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        route = re.sub(r"/issue/[^/]+$", "/issue/{id}", path)
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "Unexpected character: the body is not JSON.")
        query = {k: ",".join(request.query.getall(k)) for k in request.query}
        self.call_counts[route] += 1
        if self.record_calls:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.calls.append(Call(request.method, path, route, query, body, headers))
        limited = self._throttled(route)
        if limited is not None:
            return limited
        if not self._authenticated(request.headers.get("Authorization", "")):
            return _error(401, UNAUTHENTICATED_MESSAGE)
        handler = self._handler(request.method, route)
        if handler is None:
            return _error(404, f"No route for {request.method} {path}")
        try:
            return handler(request, path, query, body)
        except JqlError as exc:
            return _error(400, str(exc))

    def _handler(self, method: str, route: str) -> Callable[..., web.Response] | None:
        removed = {"/rest/api/3/search", "/rest/api/2/search"} if self.cloud else {"/rest/api/3/search"}
        if route in removed and method in ("GET", "POST"):
            return self._removed if self.cloud else None
        api = self.api
        table: dict[tuple[str, str], Callable[..., web.Response]] = {
            ("GET", f"{api}/myself"): self._myself,
            ("GET", f"{api}/field"): self._fields,
            ("GET", f"{api}/issue/{{id}}"): self._issue,
            ("GET", f"{api}/user/search"): self._user_search,
        }
        if self.cloud:
            table[("GET", f"{api}/search/jql")] = self._search_jql
            table[("POST", f"{api}/search/jql")] = self._search_jql
        else:
            table[("GET", f"{api}/search")] = self._dc_search
            table[("POST", f"{api}/search")] = self._dc_search
        return table.get((method, route))

    def _authenticated(self, header: str) -> bool:
        if self.auth_refused:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() in self.bearer_tokens
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(value.strip()).decode()
            except ValueError:
                return False
            return pair == f"{self.email}:{self.api_token}"
        return False

    def _throttled(self, route: str) -> web.Response | None:
        for rule in self._throttles:
            if rule.left > 0 and (rule.route is None or rule.route == route):
                rule.left -= 1
                self.http_429 += rule.status == 429
                headers = {
                    "X-RateLimit-Limit": "100",
                    "X-RateLimit-Remaining": "0",
                    "RateLimit-Reason": rule.reason,
                }
                if rule.retry_after is not None:
                    headers["Retry-After"] = f"{rule.retry_after:g}"
                if rule.reset_in is not None:
                    reset = datetime.fromtimestamp(self.clock() + rule.reset_in, UTC)
                    headers["X-RateLimit-Reset"] = reset.strftime("%Y-%m-%dT%H:%MZ")
                return web.json_response(
                    {"errorMessages": ["Rate limit exceeded."]}, status=rule.status, headers=headers
                )
        self._throttles = [r for r in self._throttles if r.left > 0]
        return None

    def _removed(self, request: web.Request, path: str, query: dict[str, str], body: Any) -> web.Response:
        message = REMOVED_MESSAGE if path.startswith("/rest/api/3") else REMOVED_MESSAGE.replace("/3/", "/2/")
        return _error(410, message)

    def _myself(self, request: web.Request, path: str, query: dict[str, str], body: Any) -> web.Response:
        me: dict[str, Any] = {
            "self": f"{self.url}{self.api}/user?accountId={self.account_id}",
            "emailAddress": self.email,
            "displayName": "Cadence Bot",
            "active": True,
            "locale": "en_US",
        }
        if self.cloud:
            me.update(accountId=self.account_id, accountType="atlassian")
        else:
            me.update(name=self.email.split("@")[0], key=self.account_id)
        if self._zone_name:
            me["timeZone"] = self._zone_name
        return web.json_response(me)

    def _fields(self, request: web.Request, path: str, query: dict[str, str], body: Any) -> web.Response:
        return web.json_response(self.field_list())

    def field_list(self) -> list[dict[str, Any]]:
        def system(fid: str, name: str, kind: str, items: str | None = None) -> dict[str, Any]:
            schema: dict[str, Any] = {"type": kind, "system": fid}
            if items:
                schema["items"] = items
            return {
                "id": fid,
                "key": fid,
                "name": name,
                "custom": False,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [fid],
                "schema": schema,
            }

        def custom(fid: str, name: str, kind: str, plugin: str, items: str | None = None) -> dict[str, Any]:
            number = int(fid.rsplit("_", 1)[1])
            schema: dict[str, Any] = {"type": kind, "custom": plugin, "customId": number}
            if items:
                schema["items"] = items
            return {
                "id": fid,
                "key": fid,
                "name": name,
                "custom": True,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [f"cf[{number}]", name],
                "schema": schema,
            }

        return [
            system("summary", "Summary", "string"),
            system("status", "Status", "status"),
            system("issuetype", "Issue Type", "issuetype"),
            system("assignee", "Assignee", "user"),
            system("project", "Project", "project"),
            system("created", "Created", "datetime"),
            system("updated", "Updated", "datetime"),
            system("resolutiondate", "Resolved", "datetime"),
            system("statuscategorychangedate", "Status Category Changed", "datetime"),
            system("duedate", "Due date", "date"),
            system("labels", "Labels", "array", "string"),
            custom(
                "customfield_10010",
                "Business Value",
                "number",
                "com.atlassian.jira.plugin.system.customfieldtypes:float",
            ),
            custom(
                "customfield_10011",
                "Sprint Goal",
                "string",
                "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
            ),
            custom(
                TEAM_POINTS_FIELD,
                "Story point estimate",
                "number",
                "com.pyxis.greenhopper.jira:jsw-story-points",
            ),
            custom(
                COMPANY_POINTS_FIELD,
                "Story Points",
                "number",
                "com.atlassian.jira.plugin.system.customfieldtypes:float",
            ),
            custom(SPRINT_FIELD, "Sprint", "array", "com.pyxis.greenhopper.jira:gh-sprint", "json"),
        ]

    def _issue(self, request: web.Request, path: str, query: dict[str, str], body: Any) -> web.Response:
        ident = path.rsplit("/", 1)[1]
        issue_id = int(ident) if ident.isdigit() else self._by_key.get(ident.upper())
        issue = self._truth.get(issue_id) if issue_id is not None else None
        if issue is None:
            return _error(404, NOT_FOUND_MESSAGE)
        if issue.id in self._forbidden:
            status = self._forbidden[issue.id]
            message = (
                NOT_FOUND_MESSAGE
                if status == 404
                else "You do not have the permission to see the specified issue."
            )
            return _error(status, message)
        fields = _field_list(query.get("fields", "*all"))
        return web.json_response(self._render(issue, _field_set(fields)))

    def _user_search(self, request: web.Request, path: str, query: dict[str, str], body: Any) -> web.Response:
        text = (query.get("query") if self.cloud else query.get("username") or query.get("query")) or ""
        text = text.strip().lower()
        if not text:
            need = "query" if self.cloud else "username"
            return _error(400, f"The '{need}' query parameter is required.")
        start = int(query.get("startAt") or 0)
        limit = int(query.get("maxResults") or 50)
        hits: dict[str, None] = {}
        hits.update(dict.fromkeys(self._hidden.get(text, ())))
        for index in (self._emails, self._names):
            position = bisect.bisect_left(index, (text, ""))
            while position < len(index) and index[position][0].startswith(text):
                hits[index[position][1]] = None
                position += 1
        if not self.cloud:
            hits.update(
                dict.fromkeys(
                    u.account_id for u in self._users.values() if u.username.lower().startswith(text)
                )
            )
        users = [self._user(a) for a in hits if self._users[a].active]
        return web.json_response(users[start : start + limit])

    def _search_jql(self, request: web.Request, path: str, query: dict[str, str], body: Any) -> web.Response:
        if request.method == "POST":
            if not isinstance(body, dict):
                return _error(400, "The request body must be a JSON object.")
            unknown = sorted(set(body) - _SEARCH_BEAN_KEYS)
            if unknown:
                return _error(400, f'Unrecognized field "{unknown[0]}".')
            params = body
        else:
            params = dict(query)
            if "fields" in params:
                params["fields"] = params["fields"].split(",")
            try:
                if "reconcileIssues" in params:
                    params["reconcileIssues"] = [int(x) for x in params["reconcileIssues"].split(",") if x]
                if "maxResults" in params:
                    params["maxResults"] = int(params["maxResults"])
            except ValueError:
                return _error(400, "maxResults and reconcileIssues take integers.")
        jql = str(params.get("jql") or "")
        self.searches.append(jql)
        max_results = params.get("maxResults", 50)
        if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 0:
            return _error(400, "maxResults must be a non-negative integer.")
        fields = tuple(_field_list(params.get("fields") or ["id"]))
        id_only = set(fields) <= {"id", "key"}
        size = min(max_results, self.id_page_max if id_only else self.cloud_page_max)
        token = params.get("nextPageToken")
        now = self.clock()
        if token:
            entry = self._cursors.get(str(token))
            if entry is None or entry[0].expires < now:
                return _error(400, "The provided next page token is invalid or expired.")
            cursor, position = entry
            if cursor.jql != jql:
                return _error(400, "The provided next page token does not belong to this query.")
            view = self._search_view()
        else:
            parsed = self.parse_jql(jql, bounded=True)
            reconcile = list(params.get("reconcileIssues") or ())
            if len(reconcile) > 50:
                return _error(400, "reconcileIssues accepts at most 50 issue ids.")
            ids = self._select(parsed, reconcile)
            cursor, position = _Cursor(jql, ids, fields, now + PAGE_TOKEN_TTL), 0
            view = self._search_view()
            if reconcile:  # those few as they are now, the rest as search sees them
                view = {**view, **{i: self._truth[i] for i in reconcile if i in self._truth}}
        chosen = cursor.ids[position : position + size]
        wanted = None if id_only else _field_set(fields)
        issues = []
        for issue_id in chosen:
            issue = view.get(issue_id)
            if issue is None or issue_id in self._forbidden:
                continue
            if id_only:
                issues.append(
                    {"id": str(issue_id), "key": issue.key} if "key" in fields else {"id": str(issue_id)}
                )
            else:
                issues.append(self._render(issue, wanted))
        answer: dict[str, Any] = {"issues": issues}
        after = position + len(chosen)
        if after < len(cursor.ids):
            next_token = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode().rstrip("=")
            self._cursors[next_token] = (cursor, after)
            answer["nextPageToken"] = next_token
            answer["isLast"] = False
        else:
            answer["isLast"] = True
        return _json(answer)

    def _dc_search(self, request: web.Request, path: str, query: dict[str, str], body: Any) -> web.Response:
        if request.method == "POST":
            if not isinstance(body, dict):
                return _error(400, "The request body must be a JSON object.")
            unknown = sorted(set(body) - _DC_SEARCH_KEYS)
            if unknown:
                return _error(400, f'Unrecognized field "{unknown[0]}".')
            params = body
        else:
            params = dict(query)
            if "fields" in params:
                params["fields"] = params["fields"].split(",")
        jql = str(params.get("jql") or "")
        self.searches.append(jql)
        try:
            start = int(params.get("startAt") or 0)
            max_results = int(params.get("maxResults", 50))
        except (TypeError, ValueError):
            return _error(400, "startAt and maxResults must be integers.")
        size = max(0, min(max_results, self.dc_page_max))
        fields = _field_list(params.get("fields") or ["*navigable"])
        view = self._search_view()
        cached = self._dc_cache.get(jql)
        if cached is None or cached[0] != self._version:
            cached = (self._version, self._select(self.parse_jql(jql, bounded=False)))
            self._dc_cache[jql] = cached
        ids = cached[1]
        wanted = _field_set(fields)
        issues = [self._render(view[i], wanted) for i in ids[max(0, start) : max(0, start) + size]]
        return _json(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(ids),
                "issues": issues,
            }
        )

    # ---- internals: rendering -------------------------------------------------------------------

    def _render_status(self, index: int) -> dict[str, Any]:
        status_id, name, category = STATUSES[index]
        return {
            "self": f"{{base}}/status/{status_id}",
            "id": status_id,
            "name": name,
            "statusCategory": dict(_CATEGORIES[category]),
        }

    def _time(self, ms: int | None) -> str | None:
        if ms is None:
            return None
        # isoformat is ~3x faster than strftime: "2025-09-18T10:32:11+08:00" → "…11.123+0800"
        text = datetime.fromtimestamp(ms // 1000, self._zone).isoformat()
        return f"{text[:19]}.{ms % 1000:03d}{text[19:22]}{text[23:]}"

    def _user(self, account_id: str) -> dict[str, Any]:
        cached = self._user_json.get(account_id)
        if cached is not None:
            return cached
        user = self._users.get(account_id)
        if user is None:  # an id no longer on the site: Jira shows a placeholder
            user = FakeUser(account_id, "Former user", "", hidden_email=True)
        rendered: dict[str, Any] = {"self": f"{self.url}{self.api}/user?accountId={account_id}"}
        if self.cloud:
            rendered.update(accountId=account_id, accountType="atlassian")
        else:
            rendered.update(name=user.username, key=account_id)
        if not user.hidden_email:
            rendered["emailAddress"] = user.email
        elif self.hidden_email_as_null:
            rendered["emailAddress"] = None
        rendered.update(displayName=user.display_name, active=user.active, timeZone=user.time_zone)
        self._user_json[account_id] = rendered
        return rendered

    def _sprint(self, sprint_id: int) -> Any:
        cached = self._sprint_json.get(sprint_id)
        if cached is not None:
            return cached
        sprint = self._sprints[sprint_id]
        times = {
            "startDate": sprint.start,
            "endDate": sprint.end,
            "completeDate": sprint.complete,
        }
        stamps = {k: v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z") for k, v in times.items() if v}
        rendered: Any
        if self.sprint_strings:
            parts = [
                f"id={sprint.id}",
                f"rapidViewId={sprint.board_id}",
                f"state={sprint.state.upper()}",
                f"name={sprint.name}",
                *(f"{k}={v}" for k, v in stamps.items()),
                f"sequence={sprint.id}",
                "goal=",
            ]
            rendered = f"com.atlassian.greenhopper.service.sprint.Sprint@{sprint.id:x}[{','.join(parts)}]"
        else:
            rendered = {
                "id": sprint.id,
                "name": sprint.name,
                "state": sprint.state,
                "boardId": sprint.board_id,
                "goal": "",
                **stamps,
            }
        self._sprint_json[sprint_id] = rendered
        return rendered

    def _issue_type(self, name: str) -> dict[str, Any]:
        cached = self._issue_types.get(name)
        if cached is None:
            type_id = str(10001 + len(self._issue_types))
            cached = {
                "self": f"{self.url}{self.api}/issuetype/{type_id}",
                "id": type_id,
                "name": name,
                "subtask": False,
            }
            self._issue_types[name] = cached
        return cached

    def _render(self, issue: _Issue, wanted: frozenset[str] | None) -> dict[str, Any]:
        """An IssueBean with the ``wanted`` fields (None: all of them)."""
        base = self.url + self.api
        proj = self._projects[issue.project]
        team = proj.team_managed
        status = dict(self._status_json[issue.status], self=f"{base}/status/{STATUSES[issue.status][0]}")
        values: dict[str, Callable[[], Any]] = {
            "summary": lambda: issue.summary,
            "status": lambda: status,
            "issuetype": lambda: self._issue_type(issue.issue_type),
            "assignee": lambda: self._user(issue.assignee) if issue.assignee else None,
            "project": lambda: {
                "self": f"{base}/project/{proj.id}",
                "id": proj.id,
                "key": proj.key,
                "name": proj.name,
                "projectTypeKey": "software",
                "simplified": team,
            },
            "created": lambda: self._time(issue.created),
            "updated": lambda: self._time(issue.updated),
            "resolutiondate": lambda: self._time(issue.resolved),
            "statuscategorychangedate": lambda: self._time(issue.cat_changed),
            "duedate": lambda: issue.due,
            "labels": lambda: list(issue.labels),
            TEAM_POINTS_FIELD: lambda: issue.points if team else None,
            COMPANY_POINTS_FIELD: lambda: None if team else issue.points,
            SPRINT_FIELD: lambda: [self._sprint(s) for s in issue.sprints] if issue.sprints else None,
        }
        names = values.keys() if wanted is None else [n for n in values if n in wanted]
        return {
            "expand": _ISSUE_EXPAND,
            "id": str(issue.id),
            "self": f"{base}/issue/{issue.id}",
            "key": issue.key,
            "fields": {name: values[name]() for name in names},
        }

    # ---- JQL ------------------------------------------------------------------------------------

    def parse_jql(self, jql: str, *, bounded: bool) -> _Query:
        """The subset of JQL the connector (and a typical filter) uses; JqlError where Jira says 400."""
        return _JqlParser(self, jql).parse(bounded=bounded)

    def jql_time(self, literal: str, field_name: str) -> int:
        """A JQL date literal → epoch ms, read in the API user's zone at minute resolution."""
        text = literal.strip()
        relative = re.fullmatch(r"([-+]?)(\d+)([wdhm])", text)
        if relative:
            sign = -1 if relative.group(1) == "-" else 1
            unit = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000}[relative.group(3)]
            return self._now_ms() + sign * int(relative.group(2)) * unit
        match = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?: (\d{1,2}):(\d{2}))?", text)
        if not match:
            raise JqlError(
                f"Date value '{literal}' for field '{field_name}' is invalid. Valid formats include: "
                "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
                "e.g. '-5d', '4w 2d'."
            )
        year, month, day, hour, minute = (int(g) if g else 0 for g in match.groups())
        try:
            local = datetime(year, month, day, hour, minute, tzinfo=self._zone)
        except ValueError as exc:
            raise JqlError(f"Date value '{literal}' for field '{field_name}' is invalid.") from exc
        return _ms(local)

    def user_matches(self, issue_user: str | None, value: str) -> bool:
        if issue_user is None:
            return False
        if issue_user == value:
            return True
        user = self._users.get(issue_user)
        return user is not None and not self.cloud and user.username == value


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _field_list(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def _field_set(fields: Iterable[str]) -> frozenset[str] | None:
    chosen = frozenset(fields)
    return None if chosen & {"*all", "*navigable"} else chosen


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"errorMessages": [message], "errors": {}}, status=status)


def _json(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), content_type="application/json")


_SORT_KEYS: dict[str, Callable[[_Issue], Any]] = {
    "created": lambda i: (i.created, i.id),
    "updated": lambda i: (i.updated, i.id),
    "key": lambda i: (i.project, i.number),
    "id": lambda i: i.id,
    "duedate": lambda i: (i.due or "9999", i.id),
}


# ---- JQL parsing ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>>=|<=|!=|!~|=|>|<|~)"""
    r"""|(?P<punct>[(),])|(?P<word>[^\s(),=<>!~"']+))"""
)
_DATE_FIELDS = {
    "created": "created",
    "createddate": "created",
    "updated": "updated",
    "updateddate": "updated",
    "resolved": "resolved",
    "resolutiondate": "resolved",
}
_VALUE_FIELDS = (
    "project",
    "key",
    "issuekey",
    "issue",
    "id",
    "assignee",
    "status",
    "issuetype",
    "type",
    "labels",
)
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}


class _JqlParser:
    def __init__(self, fake: JiraFake, jql: str) -> None:
        self.fake = fake
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = jql.rstrip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise JqlError(f"Error in the JQL Query: cannot read '{text[position:]}'.")
            kind = match.lastgroup or ""
            value = match.group(kind)
            if kind == "str":
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            self.tokens.append((kind, value))
            position = match.end()
        self.at = 0

    def peek_word(self) -> str:
        if self.at < len(self.tokens) and self.tokens[self.at][0] == "word":
            return self.tokens[self.at][1].lower()
        return ""

    def take(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise JqlError("Error in the JQL Query: the query ends too early.")
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, value: str) -> None:
        _, got = self.take()
        if got.lower() != value:
            raise JqlError(f"Error in the JQL Query: expecting '{value}' but got '{got}'.")

    def parse(self, *, bounded: bool) -> _Query:
        where = None
        floor = None
        if self.at < len(self.tokens) and self.peek_word() != "order":
            where, floor = self.expression(top=True)
        order: list[tuple[str, bool]] = []
        if self.peek_word() == "order":
            self.take()
            self.expect("by")
            while True:
                _, name = self.take()
                name = name.lower()
                if name not in _SORT_KEYS:
                    raise JqlError(f"Error in the JQL Query: cannot order by '{name}'.")
                descending = False
                if self.peek_word() in ("asc", "desc"):
                    descending = self.take()[1].lower() == "desc"
                order.append((name, descending))
                if self.at < len(self.tokens) and self.tokens[self.at] == ("punct", ","):
                    self.take()
                    continue
                break
            if len(order) > 7 and self.fake.cloud:
                raise JqlError("Error in the JQL Query: at most 7 fields can be used in ORDER BY.")
        if self.at != len(self.tokens):
            raise JqlError(f"Error in the JQL Query: unexpected '{self.tokens[self.at][1]}'.")
        if where is None and bounded:
            raise JqlError(UNBOUNDED_MESSAGE)
        return _Query(where, order, floor)

    def expression(self, *, top: bool = False) -> tuple[Callable[[_Issue], bool], int | None]:
        parts = [self.conjunction(top=top)]
        while self.peek_word() == "or":
            self.take()
            parts.append(self.conjunction(top=False))
        if len(parts) == 1:
            return parts[0]
        preds = [p for p, _ in parts]
        return (lambda i: any(p(i) for p in preds)), None

    def conjunction(self, *, top: bool) -> tuple[Callable[[_Issue], bool], int | None]:
        preds: list[Callable[[_Issue], bool]] = []
        floor: int | None = None
        while True:
            pred, clause_floor = self.factor()
            preds.append(pred)
            if top and clause_floor is not None:
                floor = clause_floor if floor is None else max(floor, clause_floor)
            if self.peek_word() != "and":
                break
            self.take()
        if len(preds) == 1:
            return preds[0], floor
        return (lambda i: all(p(i) for p in preds)), floor

    def factor(self) -> tuple[Callable[[_Issue], bool], int | None]:
        if self.peek_word() == "not":
            self.take()
            inner, _ = self.factor()
            return (lambda i: not inner(i)), None
        if self.at < len(self.tokens) and self.tokens[self.at] == ("punct", "("):
            self.take()
            result = self.expression(top=False)
            if self.take() != ("punct", ")"):
                raise JqlError("Error in the JQL Query: expecting ')'.")
            # a parenthesised AND of the filter can still bound by updated, but the connector's bound
            # is outside the parentheses: no floor needed from inside
            return result[0], None
        return self.clause()

    def values(self) -> list[str]:
        if self.take() != ("punct", "("):
            raise JqlError("Error in the JQL Query: expecting '(' after IN.")
        found = []
        while True:
            kind, value = self.take()
            if kind not in ("word", "str"):
                raise JqlError(f"Error in the JQL Query: unexpected '{value}' in a list.")
            found.append(value)
            kind, value = self.take()
            if (kind, value) == ("punct", ")"):
                return found
            if (kind, value) != ("punct", ","):
                raise JqlError("Error in the JQL Query: expecting ',' or ')'.")

    def clause(self) -> tuple[Callable[[_Issue], bool], int | None]:
        kind, name = self.take()
        field_name = name.lower()
        if kind not in ("word", "str") or field_name in _KEYWORDS:
            raise JqlError(f"Error in the JQL Query: expecting a field name but got '{name}'.")
        if (
            field_name not in _DATE_FIELDS
            and field_name not in ("due", "duedate")
            and field_name not in _VALUE_FIELDS
        ):
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        # operator
        if self.peek_word() == "is":
            self.take()
            negate = self.peek_word() == "not"
            if negate:
                self.take()
            if self.take()[1].lower() not in ("empty", "null"):
                raise JqlError("Error in the JQL Query: expecting EMPTY after IS.")
            getter = self._getter(field_name)
            return (lambda i: (getter(i) in (None, ())) != negate), None
        negate_in = False
        if self.peek_word() == "not":
            self.take()
            negate_in = True
            if self.peek_word() != "in":
                raise JqlError("Error in the JQL Query: expecting IN after NOT.")
        if self.peek_word() == "in":
            self.take()
            raw_values = self.values()
            op = "not in" if negate_in else "in"
        else:
            op_kind, op = self.take()
            if op_kind != "op" or op in ("~", "!~"):
                raise JqlError(f"Error in the JQL Query: operator '{op}' is not supported here.")
            value_kind, value = self.take()
            if value_kind not in ("word", "str"):
                raise JqlError(f"Error in the JQL Query: expecting a value but got '{value}'.")
            raw_values = [value]
        if field_name in _DATE_FIELDS or field_name in ("due", "duedate"):
            return self._date_clause(field_name, op, raw_values)
        return self._value_clause(field_name, op, raw_values), None

    def _getter(self, name: str) -> Callable[[_Issue], Any]:
        fake = self.fake
        date_attr = _DATE_FIELDS.get(name)
        if date_attr:
            return lambda i: getattr(i, date_attr)
        if name in ("due", "duedate"):
            return lambda i: fake.jql_time(i.due, "due") if i.due else None
        return {
            "project": lambda i: i.project,
            "key": lambda i: i.key,
            "issuekey": lambda i: i.key,
            "issue": lambda i: i.key,
            "id": lambda i: i.id,
            "assignee": lambda i: i.assignee,
            "status": lambda i: STATUSES[i.status][1].lower(),
            "issuetype": lambda i: i.issue_type.lower(),
            "type": lambda i: i.issue_type.lower(),
            "labels": lambda i: i.labels,
        }[name]

    def _date_clause(self, name: str, op: str, raw: list[str]) -> tuple[Callable[[_Issue], bool], int | None]:
        if op in ("in", "not in"):
            raise JqlError(f"Error in the JQL Query: '{op}' cannot be used with '{name}'.")
        bound = self.fake.jql_time(raw[0], name)
        getter = self._getter(name)
        compare: dict[str, Callable[[int, int], bool]] = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
        }
        test = compare[op]

        def pred(issue: _Issue) -> bool:
            value = getter(issue)
            return value is not None and test(value, bound)

        floor = bound if name in ("updated", "updateddate") and op in (">=", ">") else None
        return pred, floor

    def _value_clause(self, name: str, op: str, raw: list[str]) -> Callable[[_Issue], bool]:
        if op not in ("=", "!=", "in", "not in"):
            raise JqlError(f"Error in the JQL Query: operator '{op}' cannot be used with '{name}'.")
        negate = op in ("!=", "not in")
        if name == "id":
            try:
                wanted_ids = {int(v) for v in raw}
            except ValueError as exc:
                raise JqlError("Error in the JQL Query: an issue id must be a number.") from exc
            return lambda i: (i.id in wanted_ids) != negate
        if name == "assignee":
            fake = self.fake
            return lambda i: any(fake.user_matches(i.assignee, v) for v in raw) != negate
        if name == "labels":
            wanted_labels = set(raw)
            return lambda i: bool(wanted_labels.intersection(i.labels)) != negate
        if name in ("project", "key", "issuekey", "issue"):
            wanted = {v.upper() for v in raw}
        else:
            wanted = {v.lower() for v in raw}
        getter = self._getter(name)
        return lambda i: (getter(i) in wanted) != negate
