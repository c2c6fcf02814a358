"""The DingTalk todo connector against the DingTalk fake over real sockets: reads, increments, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Member, Page, Scope
from connectors.dingtalk_todos import DingtalkTodosConnector
from connectors.http import SourceAuthError, SourceRateLimited
from connectors.records import PersonRef, StatusCategory, TombstoneReason, from_epoch_ms
from tests.fakes.dingtalk import TODO_QUERY, DingTalkFake

ALICE, BOB = "union-alice", "union-bob"
T0 = 1_700_000_000_000  # every seeded todo was last changed at this ms, long before "now"
DAY_MS = 86_400_000
PERMISSION_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"


class Clock:
    """Time the fake's rate limit and the connector's waits share: sleeping moves it on at once."""

    def __init__(self) -> None:
        self.now = 10_000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[DingTalkFake]:
    async with DingTalkFake(clock=clock) as server:
        yield server


Make = Callable[..., DingtalkTodosConnector]


@pytest.fixture
async def make(fake: DingTalkFake, clock: Clock) -> AsyncIterator[Make]:
    """Connectors pointed at the fake (no pacing, the shared clock), closed after the test."""
    made: list[DingtalkTodosConnector] = []

    def build(**overrides: Any) -> DingtalkTodosConnector:
        options: dict[str, Any] = {
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "api_url": fake.url,
            "oapi_url": fake.url,
            "tenant": fake.corp_id,
            "per_s": None,
            "sleep": clock.sleep,
            "clock": clock,
        }
        connector = DingtalkTodosConnector(**(options | overrides))
        made.append(connector)
        return connector

    yield build
    for connector in made:
        await connector.close()


def scope_of(union_id: str) -> Scope:
    return Scope(f"dingtalk:user:{union_id}", 1, union_id)


async def read(
    connector: DingtalkTodosConnector, union_id: str, since: datetime | None = None, resume: str | None = None
) -> list[Page]:
    return [page async for page in connector.pages(scope_of(union_id), since, resume)]


async def live(connector: DingtalkTodosConnector, union_id: str) -> set[str]:
    return {task for ids in [ids async for ids in connector.live_ids(scope_of(union_id))] for task in ids}


def seed(fake: DingTalkFake, *, open_todos: int = 30, done_todos: int = 15) -> dict[str, str]:
    """Alice's todos (subject → taskId), plus ones she only created or follows, which are not hers."""
    tasks = {}
    for n in range(open_todos):
        tasks[f"open {n}"] = fake.add_todo(ALICE, f"open {n}", created=T0 - DAY_MS, modified=T0)
    for n in range(done_todos):
        tasks[f"done {n}"] = fake.add_todo(ALICE, f"done {n}", done=True, created=T0 - DAY_MS, modified=T0)
    fake.add_todo(ALICE, "for bob", executors=[BOB], modified=T0)
    fake.add_todo(BOB, "bob's, alice follows", participants=[ALICE], modified=T0)
    return tasks


def detail_calls(fake: DingTalkFake) -> int:
    return sum(fake.todo_detail_gets.values())


# ---- reading ---------------------------------------------------------------------------------------


async def test_full_read_pages_open_then_done_and_maps_every_field(fake: DingTalkFake, make: Make) -> None:
    tasks = seed(fake)
    special = fake.add_todo(
        ALICE,
        "接入钉钉待办",
        executors=[ALICE, BOB],
        participants=[BOB],
        due=T0 + 3 * DAY_MS,
        start=T0 - DAY_MS,
        priority=40,
        description="what and why",
        biz_tag="todo_open_dingpay",
        created=T0 - 2 * DAY_MS,
        modified=T0,
    )
    fake.update_todo(special, done=True, modified=T0 + 5000)
    connector = make()

    pages = await read(connector, ALICE)

    # 30 open cards (two pages of 20), then 16 done ones (one page)
    assert [len(p.records) for p in pages] == [20, 10, 16]
    assert [p.resume for p in pages] == ["open:20", "done:0", None]
    records = {r.external_id: r for p in pages for r in p.records}
    assert set(records) == {*tasks.values(), special}
    assert detail_calls(fake) == 46 and set(fake.todo_detail_gets) == set(records)
    queries = fake.calls_to(TODO_QUERY)
    assert [(c.body["nextToken"], c.body["isDone"]) for c in queries] == [
        ("0", False),
        ("20", False),
        ("0", True),
    ]
    assert all(c.body["roleTypes"] == [["executor"]] for c in queries)
    assert all(c.headers["x-acs-dingtalk-access-token"] for c in queries)

    plain = records[tasks["open 3"]]
    assert plain.title == "open 3" and plain.status_category is StatusCategory.TODO
    assert plain.status_raw == "todo" and plain.completed_at is None and plain.due_at is None
    assert plain.assignees == (PersonRef(ALICE),)
    assert plain.source == "dingtalk_todo" and plain.tenant == fake.corp_id and plain.item_type == "todo"

    todo = records[special]
    assert todo.title == "接入钉钉待办"
    assert todo.status_category is StatusCategory.DONE and todo.is_completed and todo.status_raw == "done"
    assert todo.updated_at == datetime.fromtimestamp((T0 + 5000) / 1000, UTC)
    assert todo.created_at == from_epoch_ms(T0 - 2 * DAY_MS)
    assert todo.due_at == from_epoch_ms(T0 + 3 * DAY_MS)
    assert todo.completed_at == from_epoch_ms(T0 + 5000)
    assert todo.assignees == (PersonRef(ALICE), PersonRef(BOB))
    assert todo.url == f"https://todo.dingtalk.test/tasks/{special}"
    assert todo.container == "todo_open_dingpay"
    assert todo.raw["priority"] == 40 and todo.raw["description"] == "what and why"
    assert todo.raw["startTime"] == T0 - DAY_MS and todo.raw["participantIds"] == [BOB]
    assert "requestId" not in todo.raw and "detailUrl" not in todo.raw


async def test_incremental_read_fetches_details_only_for_changed_todos(
    fake: DingTalkFake, make: Make
) -> None:
    tasks = seed(fake)
    connector = make()
    await read(connector, ALICE)
    fake.todo_detail_gets.clear()
    fake.update_todo(tasks["open 7"], subject="open 7, renamed")
    fake.update_todo(tasks["open 25"], done=True)
    fresh = fake.add_todo(ALICE, "new today")
    on_the_edge = tasks["done 2"]
    fake.update_todo(on_the_edge, modified=T0 + DAY_MS)

    pages = await read(connector, ALICE, since=from_epoch_ms(T0 + DAY_MS))

    records = {r.external_id: r for p in pages for r in p.records}
    assert set(records) == {tasks["open 7"], tasks["open 25"], fresh, on_the_edge}
    # the listing is still read in full (no server-side filter), the details only for these four
    assert len(pages) == 3
    assert fake.todo_detail_gets == dict.fromkeys(records, 1)
    assert records[tasks["open 7"]].title == "open 7, renamed"
    completed = records[tasks["open 25"]]
    assert completed.is_completed and completed.completed_at == completed.updated_at


async def test_resume_continues_the_listing_where_it_stopped(fake: DingTalkFake, make: Make) -> None:
    tasks = seed(fake)
    connector = make()

    rest = await read(connector, ALICE, resume="open:20")
    done_only = await read(connector, ALICE, resume="done:0")
    garbled = await read(connector, ALICE, resume="???")

    assert [len(p.records) for p in rest] == [10, 15]
    assert {r.title for p in done_only for r in p.records} == {f"done {n}" for n in range(15)}
    assert {r.external_id for p in garbled for r in p.records} == set(tasks.values())


async def test_live_ids_list_both_phases_without_details(fake: DingTalkFake, make: Make) -> None:
    tasks = seed(fake, open_todos=41, done_todos=3)
    connector = make()

    assert await live(connector, ALICE) == set(tasks.values())
    assert detail_calls(fake) == 0
    assert await live(connector, "union-nobody") == set()


async def test_a_todo_deleted_between_listing_and_detail_is_skipped(fake: DingTalkFake, make: Make) -> None:
    tasks = seed(fake, open_todos=3, done_todos=0)
    fake.fail(f"/tasks/{tasks['open 1']}", code="todo.taskQuery.paramError", message="task not exist")
    connector = make()

    pages = await read(connector, ALICE)

    assert {r.title for p in pages for r in p.records} == {"open 0", "open 2"}


# ---- people and scopes -----------------------------------------------------------------------------


async def test_find_people_reads_unionids_from_user_get(fake: DingTalkFake, make: Make) -> None:
    fake.add_user("u-alice", name="Alice", email="alice@example.com")
    fake.set_unionid("u-alice", ALICE)
    fake.add_user("u-bob", name="Bob", org_email="bob@corp.example.com", unionid=BOB)
    fake.add_user("u-carol", name="Carol")
    members = [
        Member(1, "alice@example.com", {"dingtalk": "u-alice"}),
        Member(2, "bob@example.com", {"dingtalk": "u-bob", "slack": "U2"}),
        Member(3, "carol@example.com", {"dingtalk": "u-carol"}),
        Member(4, "ghost@example.com", {"dingtalk": "u-left-last-year"}),
        Member(5, "dave@example.com", {"slack": "U5"}),
    ]
    connector = make()

    found = await connector.find_people(members)

    assert found[1] == PersonRef(ALICE, "Alice", "alice@example.com")
    assert found[2] == PersonRef(BOB, "Bob", "bob@corp.example.com")
    assert found[3].email is None and found[3].source_user_id.startswith("union")
    assert set(found) == {1, 2, 3}
    calls = fake.calls_to("/topapi/v2/user/get")
    assert sorted(c.body["userid"] for c in calls) == ["u-alice", "u-bob", "u-carol", "u-left-last-year"]
    assert all(c.query["access_token"] for c in calls)


async def test_scopes_one_per_member_with_a_unionid(make: Make) -> None:
    members = [
        Member(1, "alice@example.com", {"dingtalk": "u-alice", "dingtalk_todo": ALICE}),
        Member(2, "bob@example.com", {"dingtalk": "u-bob"}),
        Member(3, "bob2@example.com", {"dingtalk_todo": BOB}),
    ]

    scopes = await make().scopes(members)

    assert scopes == [Scope(f"dingtalk:user:{ALICE}", 1, ALICE), Scope(f"dingtalk:user:{BOB}", 3, BOB)]


# ---- limits ----------------------------------------------------------------------------------------


async def test_a_qps_storm_is_waited_out(fake: DingTalkFake, make: Make, clock: Clock) -> None:
    tasks = seed(fake)
    fake.qps_storm(TODO_QUERY, times=3)
    fake.add_user("u-alice", name="Alice", unionid=ALICE)
    fake.qps_storm("/topapi/v2/user/get", times=2)  # the oapi's errcode 90018
    connector = make()

    pages = await read(connector, ALICE)
    people = await connector.find_people([Member(1, "alice@example.com", {"dingtalk": "u-alice"})])

    assert {r.external_id for p in pages for r in p.records} == set(tasks.values())
    assert people == {1: PersonRef(ALICE, "Alice", None)}
    # no Retry-After from DingTalk: backoff from 1 s, doubling, with jitter
    assert len(clock.waits) == 5
    for wait, base in zip(clock.waits, (1, 2, 4, 1, 2), strict=True):
        assert 0.8 * base <= wait <= 1.2 * base
    assert connector.waited == pytest.approx(sum(clock.waits))


async def test_the_fakes_rate_limit_is_survived_on_a_long_listing(
    fake: DingTalkFake, make: Make, clock: Clock
) -> None:
    tasks = seed(fake, open_todos=120, done_todos=0)
    fake.limit(per_app_per_s=1, per_api=TODO_QUERY)
    connector = make()

    records = [r for p in await read(connector, ALICE) for r in p.records]

    assert {r.external_id for r in records} == set(tasks.values())
    stats = fake.limit_stats()
    assert stats.admitted == 7 and stats.refused > 0 and clock.waits


async def test_a_storm_past_the_wait_budget_ends_the_run(fake: DingTalkFake, make: Make) -> None:
    seed(fake, open_todos=2, done_todos=0)
    fake.qps_storm(TODO_QUERY, times=100)
    connector = make(max_wait=10)

    with pytest.raises(SourceRateLimited):
        await read(connector, ALICE)


async def test_the_monthly_quota_ends_the_run_without_retrying(
    fake: DingTalkFake, make: Make, clock: Clock
) -> None:
    seed(fake, open_todos=2, done_todos=0)
    fake.add_user("u-alice", name="Alice", unionid=ALICE)
    connector = make()
    await connector.prepare()
    fake.exhaust_quota()

    with pytest.raises(SourceRateLimited) as listing:
        await read(connector, ALICE)
    with pytest.raises(SourceRateLimited) as people:
        await connector.find_people([Member(1, "alice@example.com", {"dingtalk": "u-alice"})])

    for raised in (listing.value, people.value):
        assert "monthly quota" in str(raised) and raised.retry_after >= 3600
    assert "ApiCountLimitForOrg" in str(listing.value) and "90020" in str(people.value)
    assert clock.waits == []
    assert len(fake.calls_to(TODO_QUERY)) == 1
    fake.exhaust_quota(False)
    assert len(await read(connector, ALICE)) == 2


# ---- tombstones ------------------------------------------------------------------------------------


async def test_confirm_gone_tells_deleted_reassigned_hidden_and_present(
    fake: DingTalkFake, make: Make
) -> None:
    tasks = seed(fake, open_todos=4, done_todos=0)
    deleted, reassigned, hidden, present = (tasks[f"open {n}"] for n in range(4))
    fake.delete_todo(deleted)
    fake.update_todo(reassigned, executors=[BOB])
    fake.fail(f"/tasks/{hidden}", code=PERMISSION_DENIED, status=403, message="没有调用该接口的权限")
    connector = make()
    scope = scope_of(ALICE)

    assert await live(connector, ALICE) == {hidden, present}
    assert await connector.confirm_gone(scope, deleted) is TombstoneReason.DELETED
    assert await connector.confirm_gone(scope, reassigned) is TombstoneReason.OUT_OF_SCOPE
    assert await connector.confirm_gone(scope, hidden) is TombstoneReason.PERMISSION_LOST
    assert await connector.confirm_gone(scope, present) is None


# ---- tokens and credentials ------------------------------------------------------------------------


async def test_a_refused_token_is_renewed_once(fake: DingTalkFake, make: Make) -> None:
    seed(fake, open_todos=3, done_todos=0)
    fake.add_user("u-alice", name="Alice", unionid=ALICE)
    connector = make()
    await read(connector, ALICE)

    fake.expire_tokens()
    pages = await read(connector, ALICE)
    fake.expire_tokens()
    people = await connector.find_people([Member(1, "alice@example.com", {"dingtalk": "u-alice"})])

    assert len([r for p in pages for r in p.records]) == 3 and people[1].source_user_id == ALICE
    assert connector.token.fetches == 3 and fake.token_requests == 3


async def test_the_token_is_renewed_before_it_expires(fake: DingTalkFake, make: Make, clock: Clock) -> None:
    seed(fake, open_todos=1, done_todos=0)
    connector = make()
    await read(connector, ALICE)
    clock.now += 7200 - 400
    await read(connector, ALICE)
    assert connector.token.fetches == 1
    clock.now += 200  # within DingTalk's 300 s margin of the 2-hour lifetime
    await read(connector, ALICE)
    assert connector.token.fetches == 2


async def test_wrong_credentials_name_the_settings(make: Make) -> None:
    connector = make(client_secret="not-the-secret")

    with pytest.raises(SourceAuthError) as raised:
        await connector.prepare()

    assert "DINGTALK_CLIENT_SECRET" in str(raised.value) and "invalidClientSecret" in str(raised.value)


async def test_a_missing_todo_permission_is_an_auth_error(fake: DingTalkFake, make: Make) -> None:
    seed(fake, open_todos=1, done_todos=0)
    fake.fail(TODO_QUERY, code=PERMISSION_DENIED, status=403, message="没有调用该接口的权限")

    with pytest.raises(SourceAuthError) as raised:
        await read(make(), ALICE)

    assert "permission" in str(raised.value) and "DINGTALK_CLIENT_ID" in str(raised.value)


def test_overlap_and_tenant_defaults() -> None:
    connector = DingtalkTodosConnector(client_id="ding-app", client_secret="s")
    assert connector.tenant == "ding-app" and connector.overlap == timedelta(minutes=5)
    assert connector.source == "dingtalk_todo" and connector.requests == 0
    assert connector.people_first  # the engine learns unionIds before it asks for scopes
