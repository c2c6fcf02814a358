"""The Jira connector against the Jira fake over real sockets: paging, time zones, fields, limits, people."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from connectors.base import Member, Page, Scope
from connectors.http import SourceAuthError, SourceError, SourceRateLimited
from connectors.jira import JiraConnector, check_response, jql_time, scope_id
from connectors.records import PersonRef, StatusCategory, TombstoneReason
from tests import jira_spec
from tests.fakes.jira import COMPANY_POINTS_FIELD, SPRINT_FIELD, TEAM_POINTS_FIELD, Call, JiraFake

FILTER = "project in (PAY, CORE)"
T0 = datetime(2026, 3, 2, 1, 0, 40, tzinfo=UTC)  # 09:00:40 in Shanghai


class Sleeps:
    """The injected sleep: records each wait instead of spending it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def fake() -> AsyncIterator[JiraFake]:
    async with JiraFake(time_zone="Asia/Shanghai") as server:
        server.add_project("PAY", "Payments")
        server.add_project("CORE", "Core", team_managed=True)
        server.add_user("712020:li-wei", "Li Wei", "li.wei@acme.example")
        server.add_user("712020:mia", "Mia Krystof", "mia@acme.example", hidden_email=True)
        yield server


Connect = Callable[..., JiraConnector]


@pytest.fixture
async def connector() -> AsyncIterator[Connect]:
    """Makes connectors to a fake (Basic on Cloud, a PAT on Data Center); closes them after the test."""
    made: list[JiraConnector] = []

    def connect(fake: JiraFake, *, sleep: Sleeps | None = None, **options: Any) -> JiraConnector:
        if fake.cloud:
            options.setdefault("email", fake.email)
            options.setdefault("api_token", fake.api_token)
        else:
            options.setdefault("bearer_token", next(iter(fake.bearer_tokens)))
        options.setdefault("jql", FILTER)
        jira = JiraConnector(
            base_url=fake.url, deployment=fake.deployment, sleep=sleep or Sleeps(), **options
        )
        made.append(jira)
        return jira

    yield connect
    for jira in made:
        await jira.close()


async def read(jira: JiraConnector, since: datetime | None = None, resume: str | None = None) -> list[Page]:
    scope = (await jira.scopes([]))[0]
    return [page async for page in jira.pages(scope, since, resume)]


def ids(pages: list[Page]) -> list[str]:
    return [record.external_id for page in pages for record in page.records]


def searches(fake: JiraFake) -> list[Call]:
    return [c for c in fake.calls if c.route.endswith(("/search/jql", "/search"))]


def make_issues(fake: JiraFake, count: int, *, start: datetime = T0, project: str = "PAY") -> list[str]:
    return [
        fake.add_issue(
            project, f"Item {n}", created=start + timedelta(minutes=n), updated=start + timedelta(minutes=n)
        )
        for n in range(count)
    ]


# ---- reading ---------------------------------------------------------------------------------------


async def test_full_read_pages_through_tokens_and_maps_every_field(
    fake: JiraFake, connector: Connect
) -> None:
    made = make_issues(fake, 230)
    sprint_old = fake.add_sprint("PAY Sprint 6", state="closed", board_id=3)
    sprint_new = fake.add_sprint("PAY Sprint 7", state="active", board_id=3)
    detailed = fake.add_issue(
        "PAY",
        "Retry webhook delivery on 5xx",
        issue_type="Story",
        status="Done",
        assignee="712020:li-wei",
        created=datetime(2025, 9, 10, 0, 1, 44, 120000, tzinfo=UTC),
        updated=datetime(2025, 9, 18, 2, 32, 11, 123000, tzinfo=UTC),
        resolved=datetime(2025, 9, 18, 2, 32, 10, 987000, tzinfo=UTC),
        due="2025-09-20",
        points=5.0,
        sprints=[sprint_old, sprint_new],
        labels=["payments"],
    )
    fake.add_issue("OPS", "not in the filter", created=T0)
    jira = connector(fake, page_size=100)
    await jira.prepare()

    pages = await read(jira)

    assert ids(pages) == [detailed, *made]  # ORDER BY created ASC; the OPS issue is outside the filter
    assert [len(p.records) for p in pages] == [100, 100, 31]
    assert all(p.resume for p in pages[:-1]) and pages[-1].resume is None
    sent = searches(fake)
    assert len(sent) == 3 and all(c.method == "POST" for c in sent)
    assert sent[0].body["jql"] == f"({FILTER}) ORDER BY created ASC"
    assert sent[0].body["maxResults"] == 100 and "nextPageToken" not in sent[0].body
    assert [c.body["nextPageToken"] for c in sent[1:]] == [p.resume for p in pages[:2]]
    assert jira.requests == 2 + 3  # /myself, /field, three pages

    record = pages[0].records[0]
    assert record.source == "jira" and record.tenant == fake.url
    assert (record.external_id, record.external_key) == (detailed, "PAY-231")
    assert record.url == f"{fake.url}/browse/PAY-231"
    assert (record.title, record.item_type, record.status_raw) == (
        "Retry webhook delivery on 5xx",
        "Story",
        "Done",
    )
    assert record.status_category is StatusCategory.DONE
    assert record.created_at == datetime(2025, 9, 10, 0, 1, 44, 120000, tzinfo=UTC)
    assert record.updated_at == datetime(2025, 9, 18, 2, 32, 11, 123000, tzinfo=UTC)
    assert record.completed_at == datetime(2025, 9, 18, 2, 32, 10, 987000, tzinfo=UTC)
    # a due date is a day: midnight where the API user is (Shanghai), in UTC the evening before
    assert record.due_at == datetime(2025, 9, 19, 16, 0, tzinfo=UTC) and record.due_all_day
    assert record.assignees == (PersonRef("712020:li-wei", "Li Wei", "li.wei@acme.example"),)
    assert (record.container, record.estimate_points, record.iteration) == ("PAY", 5.0, "PAY Sprint 7")
    assert record.labels == ("payments",)
    assert record.updated_at.tzinfo is UTC
    assert len(json.dumps(record.raw)) < 400 and record.raw["sprint"]["board"] == 3
    assert pages[0].records[1].due_at is None and not pages[0].records[1].due_all_day


async def test_story_points_and_sprint_come_from_discovered_field_ids(
    fake: JiraFake, connector: Connect
) -> None:
    company = fake.add_issue("PAY", "company-managed", points=3.0, sprints=["PAY Sprint 1"], created=T0)
    team = fake.add_issue("CORE", "team-managed", points=8.0, created=T0 + timedelta(seconds=1))
    none = fake.add_issue("PAY", "no estimate", created=T0 + timedelta(seconds=2))
    jira = connector(fake)
    await jira.prepare()

    assert jira.fields is not None
    assert jira.fields.points == [TEAM_POINTS_FIELD, COMPANY_POINTS_FIELD]  # not "Business Value"
    assert jira.fields.sprint == [SPRINT_FIELD]  # not the "Sprint Goal" text field
    by_id = {r.external_id: r for p in await read(jira) for r in p.records}
    assert (by_id[company].estimate_points, by_id[company].iteration) == (3.0, "PAY Sprint 1")
    assert (by_id[team].estimate_points, by_id[team].iteration) == (8.0, None)
    assert by_id[none].estimate_points is None
    requested = searches(fake)[0].body["fields"]
    assert {TEAM_POINTS_FIELD, COMPANY_POINTS_FIELD, SPRINT_FIELD, "summary", "status"} <= set(requested)
    assert not {"customfield_10010", "customfield_10011"} & set(requested)


async def test_status_categories_and_when_done(fake: JiraFake, connector: Connect) -> None:
    at = T0
    todo = fake.add_issue("PAY", "a", status="To Do", created=at)
    doing = fake.add_issue("PAY", "b", status="In Progress", created=at + timedelta(seconds=1))
    review = fake.add_issue("PAY", "c", status="In Review", created=at + timedelta(seconds=2))
    done = fake.add_issue(
        "PAY", "d", status="Done", created=at + timedelta(seconds=3), updated=at + timedelta(hours=1)
    )
    wont = fake.add_issue("PAY", "e", status="Won't Do", created=at + timedelta(seconds=4))
    # a workflow that sets no resolution: completed_at falls back to the category change
    no_resolution = fake.add_issue("PAY", "f", created=at + timedelta(seconds=5))
    fake.update_issue(no_resolution, status="Done", updated=at + timedelta(hours=2))
    fake.update_issue(no_resolution, resolved=None, updated=at + timedelta(hours=3))
    jira = connector(fake)

    by_id = {r.external_id: r for p in await read(jira) for r in p.records}

    assert by_id[todo].status_category is StatusCategory.TODO and by_id[todo].completed_at is None
    assert by_id[doing].status_category is StatusCategory.IN_PROGRESS and by_id[doing].completed_at is None
    assert by_id[review].status_category is StatusCategory.IN_PROGRESS
    assert by_id[done].status_category is StatusCategory.DONE
    assert by_id[done].completed_at == at + timedelta(hours=1)
    assert by_id[wont].status_category is StatusCategory.DONE and by_id[wont].status_raw == "Won't Do"
    assert by_id[no_resolution].completed_at == at + timedelta(hours=2)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/Los_Angeles", "UTC"])
async def test_incremental_read_floors_since_to_the_minute_in_the_users_zone(
    zone: str, connector: Connect
) -> None:
    async with JiraFake(time_zone=zone) as fake:
        since = T0  # 01:00:40 UTC
        just_after = fake.add_issue(
            "PAY", "30 s after", created=T0 - timedelta(days=3), updated=since + timedelta(seconds=30)
        )
        same_minute = fake.add_issue(
            "PAY", "20 s before", created=T0 - timedelta(days=2), updated=since - timedelta(seconds=20)
        )
        fake.add_issue(
            "PAY", "5 min before", created=T0 - timedelta(days=1), updated=since - timedelta(minutes=5)
        )
        fake.add_issue("OPS", "elsewhere", created=T0, updated=since + timedelta(minutes=1))
        later = fake.add_issue("PAY", "an hour after", created=T0, updated=since + timedelta(hours=1))
        jira = connector(fake)

        got = ids(await read(jira, since))

        assert got == [just_after, same_minute, later]
        local = since.astimezone(ZoneInfo(zone)).strftime("%Y/%m/%d %H:%M")
        assert searches(fake)[-1].body["jql"] == f'({FILTER}) AND updated >= "{local}" ORDER BY created ASC'
        assert jira.time_zone == zone


async def test_unknown_user_zone_reads_a_day_back_in_utc(connector: Connect) -> None:
    async with JiraFake(time_zone=None) as fake:
        day_before = fake.add_issue("PAY", "23 h before", created=T0, updated=T0 - timedelta(hours=23))
        fake.add_issue("PAY", "25 h before", created=T0, updated=T0 - timedelta(hours=25))
        jira = connector(fake)

        assert ids(await read(jira, T0)) == [day_before]
        assert jira.zone is None
        assert '"2026/03/01 01:00"' in searches(fake)[-1].body["jql"]


def test_jql_time_in_an_ambiguous_dst_hour_errs_early() -> None:
    new_york = ZoneInfo("America/New_York")
    # 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST; 01:30 happens twice
    first = datetime(2026, 11, 1, 5, 30, 20, tzinfo=UTC)  # 01:30 EDT
    second = datetime(2026, 11, 1, 6, 30, 20, tzinfo=UTC)  # 01:30 EST
    for since in (first, second):
        literal = jql_time(since, new_york)
        wall = datetime.strptime(literal, "%Y/%m/%d %H:%M")
        readings = [wall.replace(tzinfo=new_york, fold=fold) for fold in (0, 1)]
        assert all(reading <= since for reading in readings), (since, literal)
    assert (
        jql_time(datetime(2026, 3, 2, 1, 0, 59, tzinfo=UTC), ZoneInfo("Asia/Shanghai")) == "2026/03/02 09:00"
    )


async def test_empty_filter_is_still_bounded(fake: JiraFake, connector: Connect) -> None:
    made = make_issues(fake, 3) + make_issues(fake, 2, project="OPS", start=T0 + timedelta(hours=1))
    async with httpx.AsyncClient(base_url=fake.url, auth=(fake.email, fake.api_token)) as raw:
        refused = await raw.post("/rest/api/3/search/jql", json={"jql": "ORDER BY created ASC"})
    assert refused.status_code == 400 and "Unbounded" in refused.json()["errorMessages"][0]
    jira = connector(fake, jql="")

    assert ids(await read(jira)) == made
    assert ids(await read(jira, T0 + timedelta(hours=1))) == made[3:]
    assert [c.body["jql"] for c in searches(fake)[1:]] == [
        'created >= "1970/01/01" ORDER BY created ASC',
        'updated >= "2026/03/02 10:00" ORDER BY created ASC',
    ]
    assert (await jira.scopes([]))[0].id == scope_id("")


async def test_resume_after_a_page_and_restart_when_the_token_is_refused(
    fake: JiraFake, connector: Connect
) -> None:
    made = make_issues(fake, 250)
    first = connector(fake)
    scope = (await first.scopes([]))[0]
    assert scope == Scope(id=scope_id(FILTER))
    iterator = first.pages(scope, None, None)
    page = await anext(iterator)
    await iterator.aclose()  # a run that died after storing its first page
    assert page.resume

    rest = await read(connector(fake), None, page.resume)
    assert ids([page, *rest]) == made

    fake.expire_page_tokens()
    again = connector(fake)
    assert ids(await read(again, None, page.resume)) == made  # from the start, not a failure
    assert searches(fake)[-3].body.get("nextPageToken") is None


async def test_a_page_fetch_still_running_when_the_reader_stops_is_cancelled_quietly(
    fake: JiraFake, connector: Connect
) -> None:
    make_issues(fake, 250)
    jira = connector(fake)
    async for _page in jira.pages((await jira.scopes([]))[0], None, None):
        break  # the prefetch of page 2 is in flight; leaving must not leak it or its errors
    await jira.close()


async def test_fake_search_jql_by_get_defaults_to_ids_and_caps_pages() -> None:
    async with JiraFake(cloud_page_max=2, id_page_max=3) as fake:
        made = make_issues(fake, 5)
        fake.throttle(1, retry_after=4, reset_in=60)
        async with httpx.AsyncClient(base_url=fake.url, auth=(fake.email, fake.api_token)) as raw:
            limited = await raw.get("/rest/api/3/search/jql", params={"jql": "project = PAY"})
            ids_only = (
                await raw.get("/rest/api/3/search/jql", params={"jql": "project = PAY", "maxResults": 50})
            ).json()
            full = await raw.get(
                "/rest/api/3/search/jql",
                params={
                    "jql": "project = PAY ORDER BY created DESC",
                    "fields": "summary,status",
                    "maxResults": 50,
                },
            )
            second = await raw.get(
                "/rest/api/3/search/jql",
                params={
                    "jql": "project = PAY ORDER BY created DESC",
                    "fields": "summary,status",
                    "nextPageToken": full.json()["nextPageToken"],
                },
            )
            foreign = await raw.get(
                "/rest/api/3/search/jql",
                params={"jql": "project = CORE", "nextPageToken": full.json()["nextPageToken"]},
            )
            seconds = await raw.get(
                "/rest/api/3/search/jql", params={"jql": 'updated >= "2026/03/02 09:00:30"'}
            )
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "4" and limited.headers["RateLimit-Reason"] == "jira-quota-based"
    assert (
        limited.headers["X-RateLimit-Reset"].endswith("Z") and len(limited.headers["X-RateLimit-Reset"]) == 17
    )
    assert ids_only == {
        "issues": [{"id": i} for i in made[::-1][:3]],
        "nextPageToken": ids_only["nextPageToken"],
        "isLast": False,
    }
    page = full.json()
    assert [i["id"] for i in page["issues"]] == made[::-1][:2] and "total" not in page
    assert set(page["issues"][0]["fields"]) == {"summary", "status"}
    assert [i["key"] for i in second.json()["issues"]] == ["PAY-3", "PAY-2"]
    assert foreign.status_code == 400
    assert seconds.status_code == 400 and "Valid formats include" in seconds.json()["errorMessages"][0]


async def test_a_failed_next_page_surfaces_after_the_page_before_it(
    fake: JiraFake, connector: Connect
) -> None:
    make_issues(fake, 250)
    jira = connector(fake)
    pages = jira.pages((await jira.scopes([]))[0], None, None)
    first = await anext(pages)
    fake.auth_refused = True  # before the prefetch of page 2 reaches the fake
    with pytest.raises(SourceAuthError):
        await anext(pages)
    assert len(first.records) == 100 and first.resume


# ---- Data Center ------------------------------------------------------------------------------------


async def test_data_center_with_a_pat_pages_by_start_at(connector: Connect) -> None:
    async with JiraFake(deployment="datacenter", time_zone="Europe/Berlin", dc_page_max=40) as fake:
        fake.add_user("JIRAUSER10100", "Li Wei", "li.wei@acme.example", username="liwei")
        sprint = fake.add_sprint("CORE Sprint 2, the big one", state="closed", board_id=5)
        made = [
            fake.add_issue(
                "CORE",
                f"Item {n}",
                assignee="JIRAUSER10100",
                points=2.0,
                sprints=[sprint],
                created=T0 + timedelta(minutes=n),
            )
            for n in range(90)
        ]
        jira = connector(fake)

        pages = await read(jira)

        assert ids(pages) == made
        assert [p.resume for p in pages] == ["40", "80", None]
        sent = searches(fake)
        assert [c.body["startAt"] for c in sent] == [0, 40, 80]
        assert all(c.path == "/rest/api/2/search" for c in sent)
        assert all(c.headers["authorization"] == "Bearer fake-bearer-token" for c in fake.calls)
        assert jira.time_zone == "Europe/Berlin"
        record = pages[0].records[0]
        assert record.assignees == (PersonRef("JIRAUSER10100", "Li Wei", "li.wei@acme.example"),)
        assert (record.estimate_points, record.iteration) == (2.0, "CORE Sprint 2, the big one")

        assert ids(await read(jira, None, "80")) == made[80:]
        assert [i for batch in [b async for b in jira.live_ids(Scope("s"))] for i in batch] == made
        fake.delete_issue(made[0])
        assert await jira.confirm_gone(Scope("s"), made[0]) is TombstoneReason.DELETED
        assert await jira.confirm_gone(Scope("s"), made[1]) is None
        people = await jira.find_people([Member(1, "li.wei@acme.example", {})])
        assert people == {1: PersonRef("JIRAUSER10100", "Li Wei", "li.wei@acme.example")}
        assert fake.call_counts["/rest/api/2/user/search"] == 1
        assert fake.calls[-1].query == {"username": "li.wei@acme.example"}


# ---- limits and errors ------------------------------------------------------------------------------


async def test_a_429_storm_is_waited_out_as_jira_asks(fake: JiraFake, connector: Connect) -> None:
    made = make_issues(fake, 150)
    sleeps = Sleeps()
    jira = connector(fake, sleep=sleeps)
    await jira.prepare()
    fake.throttle(3, retry_after=7, route="/rest/api/3/search/jql")

    assert ids(await read(jira)) == made
    assert sleeps.waits == [7, 7, 7] and jira.waited == 21
    assert fake.http_429 == 3 and jira.requests == 2 + 3 + 2

    # no Retry-After: X-RateLimit-Reset (an ISO minute) says until when
    fake.throttle(1, retry_after=None, reset_in=150)
    assert ids(await read(jira)) == made
    assert 90 <= sleeps.waits[-1] <= 150

    fake.throttle(100, retry_after=200)
    with pytest.raises(SourceRateLimited) as limited:
        await read(jira)
    assert limited.value.retry_after == 200


async def test_refused_credentials_name_the_setting(fake: JiraFake, connector: Connect) -> None:
    with pytest.raises(SourceAuthError) as refused:
        await connector(fake, api_token="wrong").prepare()
    assert refused.value.status == 401 and "JIRA_API_TOKEN" in str(refused.value)

    jira = connector(fake, email=None, api_token=None, bearer_token="expired-oauth-token")
    with pytest.raises(SourceAuthError, match="JIRA_BEARER_TOKEN"):
        await jira.prepare()

    working = connector(fake)
    await working.prepare()
    fake.auth_refused = True
    with pytest.raises(SourceAuthError):
        await read(working)
    with pytest.raises(SourceAuthError):  # the error itself, not an ExceptionGroup of the look-ups
        await working.find_people([Member(n, f"p{n}@acme.example", {}) for n in range(20)])
    with pytest.raises(ValueError, match="api_token"):
        JiraConnector(base_url=fake.url, email="x@acme.example")
    with pytest.raises(ValueError, match="overlap"):
        connector(fake, overlap=timedelta(minutes=5))


async def test_jira_errors_are_reported_in_its_own_words(fake: JiraFake, connector: Connect) -> None:
    with pytest.raises(SourceError, match="Field 'projekt' does not exist") as bad:
        await read(connector(fake, jql="projekt = PAY"))
    assert bad.value.status == 400

    async with httpx.AsyncClient(base_url=fake.url, auth=(fake.email, fake.api_token)) as raw:
        removed = await raw.get("/rest/api/3/search", params={"jql": "project = PAY"})
    assert removed.status_code == 410
    with pytest.raises(SourceError, match=r"removed this API \(HTTP 410\).*search/jql"):
        check_response(removed, removed.json(), what="searching")


# ---- deletions -----------------------------------------------------------------------------------------


async def test_live_ids_and_why_an_issue_is_gone(connector: Connect) -> None:
    clock = Clock(T0)
    async with JiraFake(clock=clock, lag=60) as fake:
        kept, deleted, moved, hidden = (fake.add_issue("PAY", f"issue {n}", created=T0) for n in range(4))
        fake.add_issue("OPS", "never in scope", created=T0)
        clock.advance(61)
        jira = connector(fake)
        scope = (await jira.scopes([]))[0]

        batches = [batch async for batch in jira.live_ids(scope)]

        assert batches == [[kept, deleted, moved, hidden]]
        listing = searches(fake)[-1].body
        assert listing == {"jql": f"({FILTER}) ORDER BY created ASC", "fields": ["id"], "maxResults": 5000}

        fake.delete_issue(deleted)
        fake.update_issue(moved, project="OPS")
        fake.forbid_issue(hidden)
        # search still shows the move for a minute (eventual consistency); reconcileIssues does not
        assert moved in [i for b in [b async for b in jira.live_ids(scope)] for i in b]
        assert await jira.confirm_gone(scope, deleted) is TombstoneReason.DELETED
        assert await jira.confirm_gone(scope, moved) is TombstoneReason.OUT_OF_SCOPE
        assert await jira.confirm_gone(scope, hidden) is TombstoneReason.PERMISSION_LOST
        assert await jira.confirm_gone(scope, kept) is None
        assert searches(fake)[-1].body["reconcileIssues"] == [int(kept)]


async def test_search_lags_behind_changes_until_the_lag_passes(connector: Connect) -> None:
    clock = Clock(T0)
    async with JiraFake(clock=clock, lag=120) as fake:
        issue = fake.add_issue(
            "PAY", "old title", created=T0 - timedelta(days=1), updated=T0 - timedelta(days=1)
        )
        clock.advance(121)
        jira = connector(fake)
        fake.update_issue(issue, summary="new title")
        assert ids(await read(jira, T0)) == []
        clock.advance(121)
        assert [r.title for p in await read(jira, T0) for r in p.records] == ["new title"]


# ---- people -----------------------------------------------------------------------------------------


async def test_find_people_by_exact_email_also_when_hidden(fake: JiraFake, connector: Connect) -> None:
    fake.add_user("712020:mia-other", "Mia Other", "mia@acme.example.org")  # starts like Mia's address
    async with httpx.AsyncClient(base_url=fake.url, auth=(fake.email, fake.api_token)) as raw:
        partial = (await raw.get("/rest/api/3/user/search", params={"query": "mia@acme"})).json()
        exact = (await raw.get("/rest/api/3/user/search", params={"query": "mia@acme.example"})).json()
    assert [u["accountId"] for u in partial] == ["712020:mia-other"]  # the hidden address is not searchable
    assert sorted(u["accountId"] for u in exact) == ["712020:mia", "712020:mia-other"]
    assert "emailAddress" not in next(u for u in exact if u["accountId"] == "712020:mia")
    jira = connector(fake)
    members = [
        Member(1, "li.wei@acme.example", {}),
        Member(2, "Mia@acme.example", {}),
        Member(3, "nobody@acme.example", {}),
        Member(4, "ops@acme.example", {"jira": "712020:mapped-by-hr"}),
        Member(5, "", {}),
    ]

    found = await jira.find_people(members)

    assert found == {
        1: PersonRef("712020:li-wei", "Li Wei", "li.wei@acme.example"),
        2: PersonRef("712020:mia", "Mia Krystof", "Mia@acme.example"),
        4: PersonRef("712020:mapped-by-hr", "", "ops@acme.example"),
    }
    assert fake.call_counts["/rest/api/3/user/search"] == 2 + 3  # the mapped and the address-less: no call


# ---- the OpenAPI document ------------------------------------------------------------------------------


@pytest.mark.skipif(
    not jira_spec.available(), reason="Atlassian's OpenAPI documents are not in shared/reference"
)
async def test_fake_answers_and_connector_requests_match_the_cloud_openapi_document(
    fake: JiraFake, connector: Connect
) -> None:
    fake.add_issue(
        "PAY",
        "with everything",
        assignee="712020:mia",
        status="Done",
        due="2026-03-09",
        points=2.0,
        sprints=["PAY Sprint 1"],
        labels=["x"],
        created=T0,
    )
    fake.add_issue("CORE", "bare", assignee="712020:li-wei", created=T0 + timedelta(seconds=1))
    jira = connector(fake, page_size=1)
    await read(jira, T0 - timedelta(days=1))
    [i async for i in jira.live_ids(Scope("s"))]
    await jira.confirm_gone(Scope("s"), fake.issue_ids()[0])
    bodies = [c.body for c in searches(fake)]
    assert len(bodies) >= 4
    for body in bodies:
        assert jira_spec.problems(body, "SearchAndReconcileRequestBean") == []
    assert jira_spec.problems({"jql": "x", "startAt": 0}, "SearchAndReconcileRequestBean")  # it does check

    assert jira_spec.operation_schema("/rest/api/3/search/jql", "post") == {
        "$ref": "#/components/schemas/SearchAndReconcileResults"
    }
    async with httpx.AsyncClient(base_url=fake.url, auth=(fake.email, fake.api_token)) as raw:
        answers = [(await raw.post("/rest/api/3/search/jql", json=body)).json() for body in bodies[:3]]
        fields = (await raw.get("/rest/api/3/field")).json()
        me = (await raw.get("/rest/api/3/myself")).json()
        users = (await raw.get("/rest/api/3/user/search", params={"query": "mia@acme.example"})).json()
        users += (await raw.get("/rest/api/3/user/search", params={"query": "li"})).json()
        issue = (await raw.get(f"/rest/api/3/issue/{fake.issue_ids()[0]}")).json()
    assert any(a["issues"] and "fields" in a["issues"][0] for a in answers)
    for answer in answers:
        assert jira_spec.problems(answer, "SearchAndReconcileResults") == []
    assert jira_spec.problems(fields, "FieldDetails", array=True) == []
    assert jira_spec.problems(me, "User") == [] and "timeZone" in me
    assert len(users) == 2 and jira_spec.problems(users, "User", array=True) == []
    assert jira_spec.problems(issue, "IssueBean") == []
    assert jira_spec.problems(issue["fields"]["assignee"], "User") == []
    # the agile API names the board originBoardId; inside an issue's Sprint field Jira says boardId
    for sprint in issue["fields"][SPRINT_FIELD]:
        bean = {("originBoardId" if k == "boardId" else k): v for k, v in sprint.items()}
        assert jira_spec.problems(bean, "SprintBean", spec=jira_spec.SOFTWARE) == []


# ---- load ---------------------------------------------------------------------------------------------


async def test_generated_site_reads_whole_and_maps_its_people(connector: Connect) -> None:
    async with JiraFake(time_zone="Asia/Shanghai", record_calls=False) as fake:
        people = fake.generate(issues=3000, people=60, projects=("PAY", "CORE", "OPS"))
        jira = connector(fake, jql="project in (PAY, CORE, OPS)")
        pages = await read(jira)
        records = [r for p in pages for r in p.records]
        assert len(records) == 3000 and len({r.external_id for r in records}) == 3000
        assert fake.call_counts["/rest/api/3/search/jql"] == 30
        known = {u.account_id for u in people}
        assert all(a.source_user_id in known for r in records for a in r.assignees)
        assert {r.status_category for r in records} == {
            StatusCategory.TODO,
            StatusCategory.IN_PROGRESS,
            StatusCategory.DONE,
        }
        assert any(r.estimate_points for r in records) and any(r.iteration for r in records)
        found = await jira.find_people([Member(n, u.email, {}) for n, u in enumerate(people)])
        assert len(found) == 60 and any(u.hidden_email for u in people)
        assert {ref.source_user_id for ref in found.values()} == known
