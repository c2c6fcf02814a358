"""The sync engine with the real Jira connector and fake: cursors, changes only, people, tombstones."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from connectors.jira import JiraConnector, scope_id
from connectors.sync import SourceSync, SyncOptions, sync_sources
from conversations.org_service import import_org_file
from storage import sync_state, tasks
from storage.engine import Database
from storage.models import SyncRun
from tests.fakes.jira import JiraFake
from tests.harness import SAMPLE_ORG

FILTER = "project in (PAY, CORE)"
LI_LEI, EMMA = "5f8a1b2c3d4e5f6a7b8c9d02", "5f8a1b2c3d4e5f6a7b8c9d03"
HAN, GHOST = "712020:han", "712020:ghost"
DAYS_AGO = datetime.now(UTC) - timedelta(days=3)


class Sleeps:
    """The connector's sleep: records each wait instead of spending it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def org(db: Database) -> Database:
    await import_org_file(db, SAMPLE_ORG)
    return db


@pytest.fixture
async def jira() -> AsyncIterator[JiraFake]:
    async with JiraFake(time_zone="Asia/Shanghai") as fake:
        fake.add_project("PAY", "Payments")
        fake.add_project("CORE", "Core")
        # Li Lei and Emma carry their Jira account ids in the org file (examples/org.yaml)
        fake.add_user(LI_LEI, "Li Lei", "li.lei@example.com")
        fake.add_user(EMMA, "Emma Smith", "emma.smith@example.com", hidden_email=True)
        # Han Meimei has none there and hides her email: only an exact search by it finds her
        fake.add_user(HAN, "Han Meimei", "han.meimei@example.com", hidden_email=True)
        fake.add_user(GHOST, "Guest Contractor", "guest@contractor.example")
        yield fake


Connect = Callable[..., JiraConnector]


@pytest.fixture
async def connect(jira: JiraFake) -> AsyncIterator[Connect]:
    made: list[JiraConnector] = []

    def build(**options: Any) -> JiraConnector:
        settings: dict[str, Any] = {
            "base_url": jira.url,
            "email": jira.email,
            "api_token": jira.api_token,
            "jql": FILTER,
            "sleep": Sleeps(),
        } | options
        connector = JiraConnector(**settings)
        made.append(connector)
        return connector

    yield build
    for connector in made:
        await connector.close()


def seed(jira: JiraFake) -> dict[str, str]:
    """Six issues from three days ago, an hour apart: Li Lei's two, Emma's, Han's, the contractor's,
    and an unassigned one (the newest)."""
    at = [DAYS_AGO + timedelta(hours=n) for n in range(6)]
    return {
        "done": jira.add_issue(
            "PAY", "Retry webhooks on 5xx", status="Done", assignee=LI_LEI, created=at[0], updated=at[0]
        ),
        "doing": jira.add_issue(
            "PAY", "Refund export", status="In Progress", assignee=LI_LEI, created=at[1], updated=at[1]
        ),
        "emma": jira.add_issue("CORE", "Audit log", assignee=EMMA, created=at[2], updated=at[2]),
        "han": jira.add_issue("CORE", "Design review", assignee=HAN, created=at[3], updated=at[3]),
        "ghost": jira.add_issue("CORE", "Load test", assignee=GHOST, created=at[4], updated=at[4]),
        "nobody": jira.add_issue("PAY", "Triage backlog", created=at[5], updated=at[5]),
    }


async def person_id(db: Database, email: str) -> int:
    async with db.sessions() as session:
        return int(
            (await session.execute(text("SELECT id FROM person WHERE email = :e"), {"e": email})).scalar_one()
        )


async def titles_of(db: Database, email: str) -> list[str]:
    async with db.sessions() as session:
        items = await tasks.person_tasks(
            session, person_id=await person_id(db, email), active_since=datetime(2000, 1, 1, tzinfo=UTC)
        )
    return sorted(item.title for item in items)


async def stored(db: Database) -> dict[str, tuple[str, str | None]]:
    """external id → (title, tombstone reason)."""
    async with db.sessions() as session:
        rows = await session.execute(text("SELECT external_id, title, tombstone_reason FROM taskitem"))
        return {ext: (title, reason) for ext, title, reason in rows}


async def test_a_first_sync_reads_everything_and_maps_people(
    org: Database, jira: JiraFake, connect: Connect
) -> None:
    ids = seed(jira)

    report = await SourceSync(org, connect()).run()

    assert (report.kind, report.status, report.items_read, report.items_changed) == ("full", "ok", 6, 6)
    assert {ext: title for ext, (title, _) in (await stored(org)).items()} == {
        ids["done"]: "Retry webhooks on 5xx",
        ids["doing"]: "Refund export",
        ids["emma"]: "Audit log",
        ids["han"]: "Design review",
        ids["ghost"]: "Load test",
        ids["nobody"]: "Triage backlog",
    }
    # Li Lei and Emma by the org file's ids; Han (email hidden) by an exact search after the pages
    assert await titles_of(org, "li.lei@example.com") == ["Refund export", "Retry webhooks on 5xx"]
    assert await titles_of(org, "emma.smith@example.com") == ["Audit log"]
    assert await titles_of(org, "han.meimei@example.com") == ["Design review"]
    # the contractor is in Jira but not in the org: reported, by name and email
    assert report.unknown_count == 1
    assert list(report.unknown_people.values()) == [
        {"id": "712020:ghost", "name": "Guest Contractor", "email": "guest@contractor.example"}
    ]
    async with org.sessions() as session:
        run = (await session.execute(select(SyncRun))).scalars().one()
        found = await session.execute(text("SELECT external_id FROM identity WHERE platform = 'jira'"))
        identities = set(found.scalars().all())
    assert (run.status, run.items_read, run.items_changed, run.unknown_people) == (
        "ok",
        6,
        6,
        [{"id": "712020:ghost", "name": "Guest Contractor", "email": "guest@contractor.example"}],
    )
    # the search's find is remembered next to the org file's ids
    assert set(identities) >= {LI_LEI, EMMA, HAN}


async def test_the_next_sync_reads_and_writes_only_what_changed(
    org: Database, jira: JiraFake, connect: Connect
) -> None:
    ids = seed(jira)
    await SourceSync(org, connect()).run()
    searches_before = len(jira.searches)

    jira.update_issue(ids["doing"], status="Done")
    connector = connect()
    report = await SourceSync(org, connector).run()

    # the changed issue, and the newest one again (the cursor's overlap re-reads it, unchanged)
    assert (report.kind, report.items_read, report.items_changed) == ("incremental", 2, 1)
    # one search from the cursor (minus the overlap), in the API user's zone at minute resolution
    new_searches = jira.searches[searches_before:]
    assert len(new_searches) == 1 and 'updated >= "' in new_searches[0]
    # myself, field discovery and one page: nothing per person
    assert report.requests == 3
    async with org.sessions() as session:
        items = await tasks.person_tasks(
            session,
            person_id=await person_id(org, "li.lei@example.com"),
            active_since=datetime(2000, 1, 1, tzinfo=UTC),
        )
    assert {(i.title, i.status_category) for i in items} == {
        ("Refund export", "done"),
        ("Retry webhooks on 5xx", "done"),
    }


async def test_a_re_read_in_the_overlap_writes_nothing(
    org: Database, jira: JiraFake, connect: Connect
) -> None:
    recent = datetime.now(UTC) - timedelta(minutes=30)
    jira.add_issue("PAY", "Fresh", assignee=LI_LEI, created=recent, updated=recent)
    await SourceSync(org, connect()).run()

    # 30 minutes ago is inside the cursor's overlap window: read again, but unchanged
    report = await SourceSync(org, connect(), SyncOptions(reconcile=False)).run()

    assert (report.items_read, report.items_changed) == (1, 0)


async def test_a_deleted_or_moved_issue_becomes_a_tombstone_and_leaves_the_record(
    org: Database, jira: JiraFake, connect: Connect
) -> None:
    ids = seed(jira)
    await SourceSync(org, connect()).run()

    jira.delete_issue(ids["done"])
    jira.update_issue(ids["emma"], project="WEB")  # moved out of the filter
    report = await SourceSync(org, connect(), SyncOptions(reconcile=True)).run()

    assert report.items_deleted == 2, report.errors
    rows = await stored(org)
    assert rows[ids["done"]] == ("Retry webhooks on 5xx", "deleted")
    assert rows[ids["emma"]] == ("Audit log", "out_of_scope")
    assert rows[ids["doing"]] == ("Refund export", None)
    assert await titles_of(org, "li.lei@example.com") == ["Refund export"]
    assert await titles_of(org, "emma.smith@example.com") == []
    assert await titles_of(org, "han.meimei@example.com") == ["Design review"]


async def test_a_429_storm_is_waited_out(org: Database, jira: JiraFake, connect: Connect) -> None:
    for n in range(250):
        jira.add_issue("PAY", f"Issue {n}", assignee=LI_LEI, created=DAYS_AGO, updated=DAYS_AGO)
    sleeps = Sleeps()
    jira.throttle(6, retry_after=7)

    report = await SourceSync(org, connect(sleep=sleeps)).run()

    assert (report.status, report.items_read, report.items_changed) == ("ok", 250, 250)
    assert sleeps.waits[:6] == [7, 7, 7, 7, 7, 7]
    assert jira.http_429 == 6
    assert len(await stored(org)) == 250


async def test_a_run_that_fails_half_way_resumes_from_its_page(
    org: Database, jira: JiraFake, connect: Connect
) -> None:
    for n in range(250):
        jira.add_issue("PAY", f"Issue {n}", assignee=LI_LEI, created=DAYS_AGO, updated=DAYS_AGO)

    def after_the_first_page(read: int) -> None:
        # from now on Jira asks for a wait longer than the connector will spend: the run stops
        if read == 100:
            jira.throttle(1, retry_after=30, route="/rest/api/3/search/jql")

    failed = await SourceSync(org, connect(max_wait=10), progress=after_the_first_page).run()

    # the next page may have been fetched while the first was stored: one or two pages are in
    assert failed.status == "failed" and failed.items_read in (100, 200)
    assert "still limited" in failed.errors[0]
    async with org.sessions() as session:
        cursor = await sync_state.cursor(session, source="jira", tenant=jira.url, scope=scope_id(FILTER))
    assert cursor.resume is not None and cursor.hwm is None and cursor.consecutive_failures == 1
    assert len(await stored(org)) == failed.items_read

    searches_before = len(jira.searches)
    resumed = await SourceSync(org, connect()).run()

    # it goes on from the stored page token: the rest is read once, nothing twice
    assert resumed.status == "ok"
    assert (resumed.items_read, resumed.items_changed) == (250 - failed.items_read,) * 2
    assert len(jira.searches) - searches_before == (250 - failed.items_read + 99) // 100
    assert len(await stored(org)) == 250
    async with org.sessions() as session:
        cursor = await sync_state.cursor(session, source="jira", tenant=jira.url, scope=scope_id(FILTER))
    assert (cursor.resume, cursor.consecutive_failures, cursor.last_error) == (None, 0, None)
    assert cursor.hwm is not None


async def test_one_failing_source_does_not_stop_the_others(
    org: Database, jira: JiraFake, connect: Connect
) -> None:
    seed(jira)
    refused = connect(api_token="revoked-token")
    working = connect()

    reports = await sync_sources(org, [refused, working])

    assert [r.status for r in reports] == ["failed", "ok"]
    assert "JIRA_EMAIL" in reports[0].errors[0]
    assert reports[1].items_read == 6
    async with org.sessions() as session:
        runs = (await session.execute(text("SELECT status FROM syncrun ORDER BY id"))).scalars().all()
    assert runs == ["failed", "ok"]


async def test_dingtalk_todos_are_read_per_person_once_their_union_id_is_known(org: Database) -> None:
    from connectors.dingtalk_todos import DingtalkTodosConnector
    from tests.fakes.dingtalk import DingTalkFake

    week_ago = int((datetime.now(UTC) - timedelta(days=7)).timestamp() * 1000)
    async with DingTalkFake() as fake:
        # 张伟's DingTalk userid is in the org file; his unionId is learnt from the directory once
        fake.add_user("0411283457", name="张伟", unionid="union-zhang-wei")
        fake.add_todo("union-zhang-wei", "接入钉钉待办", done=True, created=week_ago, modified=week_ago)
        fake.add_todo("union-zhang-wei", "整理周报模板", created=week_ago, modified=week_ago)
        connector = DingtalkTodosConnector(
            client_id=fake.client_id,
            client_secret=fake.client_secret,
            api_url=fake.url,
            oapi_url=fake.url,
            per_s=None,
        )
        try:
            first = await SourceSync(org, connector).run()
            lookups = fake.call_counts["/topapi/v2/user/get"]
            fake.add_todo("union-zhang-wei", "评审绩效表单")
            second = await SourceSync(org, connector).run()
        finally:
            await connector.close()

    assert (first.status, first.kind, first.items_read, first.items_changed) == ("ok", "full", 2, 2)
    assert (second.status, second.kind, second.items_changed) == ("ok", "incremental", 1)
    # the unionId is remembered: the second run asks the directory nothing
    assert fake.call_counts["/topapi/v2/user/get"] == lookups
    assert await titles_of(org, "zhang.wei@example.com") == ["接入钉钉待办", "整理周报模板", "评审绩效表单"]


async def test_someone_unknown_on_many_issues_counts_once(
    org: Database, jira: JiraFake, connect: Connect
) -> None:
    for n in range(3):
        jira.add_issue("PAY", f"Contract work {n}", assignee=GHOST, created=DAYS_AGO, updated=DAYS_AGO)

    report = await SourceSync(org, connect()).run()

    assert (report.items_read, report.unknown_count, list(report.unknown_people)) == (3, 1, [GHOST])
