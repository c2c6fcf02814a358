"""The Feishu Task v2 connector and the per-person OAuth grants, against the Feishu fake over real sockets.

Grants live in a real database (SQLite and PostgreSQL); connector-only tests need none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.base import Member, Page, Scope
from connectors.feishu_oauth import (
    FeishuOAuth,
    GrantStore,
    OAuthRefused,
    OAuthStateError,
    OAuthSubjectMismatch,
)
from connectors.feishu_tasks import (
    RELATED_TASKS_PATH,
    FeishuTasksConnector,
    FeishuUserTokenInvalid,
    UserGrant,
)
from connectors.http import SourceAuthError, SourceRateLimited
from connectors.records import StatusCategory, TaskRecord, TombstoneReason, from_epoch_ms, to_epoch_ms
from storage import grants
from storage.clock import set_clock, utcnow
from storage.engine import Database
from storage.models import Identity, Person
from tests.fakes.feishu_tasks import FeishuTasksFake

CALLBACK = "https://cadence.example.com/oauth/feishu/callback"


@pytest.fixture
async def fake() -> AsyncIterator[FeishuTasksFake]:
    async with FeishuTasksFake() as server:
        yield server


class Sleeps:
    """An injected sleep: records what the connector asked to wait, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def build(
    fake: FeishuTasksFake,
    sleeps: Sleeps | None = None,
    grants_of: Sequence[UserGrant] = (),
    **options: object,
) -> FeishuTasksConnector:
    async def provide() -> Sequence[UserGrant]:
        return list(grants_of)

    return FeishuTasksConnector(
        app_id=fake.app_id,
        app_secret=fake.app_secret,
        base_url=fake.url,
        sleep=sleeps or Sleeps(),
        user_grants=provide,
        **options,  # type: ignore[arg-type]
    )


async def read_all(
    connector: FeishuTasksConnector, scope: Scope, since: datetime | None = None
) -> list[Page]:
    return [page async for page in connector.pages(scope, since, None)]


def records(pages: list[Page]) -> dict[str, TaskRecord]:
    return {r.external_id: r for page in pages for r in page.records}


# ---- the OAuth round trip --------------------------------------------------------------------------


async def add_person(db: Database, email: str, *, feishu_open_id: str | None = None) -> int:
    async with db.sessions() as session, session.begin():
        person = Person(email=email, name=email.split("@")[0])
        session.add(person)
        await session.flush()
        assert person.id is not None
        if feishu_open_id is not None:
            session.add(Identity(person_id=person.id, platform="feishu", external_id=feishu_open_id))
        return person.id


def grant_store(db: Database, fake: FeishuTasksFake) -> GrantStore:
    oauth = FeishuOAuth(
        app_id=fake.app_id, app_secret=fake.app_secret, base_url=fake.url, accounts_url=fake.url
    )
    return GrantStore(db, oauth, tenant=fake.app_id)


async def follow_link(link: str) -> tuple[str, str]:
    """What the person's browser does: open the link, be sent back to the callback (not followed)."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(link)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    return query["code"][0], query["state"][0]


async def stored_grant(db: Database, person_id: int, tenant: str) -> grants.GrantRow:
    async with db.sessions() as session:
        found = await grants.grant_of(session, person_id=person_id, source="feishu_task", tenant=tenant)
    assert found is not None
    return found


async def test_oauth_round_trip_stores_a_grant_and_refreshes_it_before_expiry(db: Database) -> None:
    # user tokens live 2 minutes here: inside the 5-minute margin, so the first fresh_grants refreshes
    async with FeishuTasksFake(user_token_ttl=120) as fake:
        li = fake.add_user("Li Lei", email="li.lei@example.com")
        person = await add_person(db, "li.lei@example.com", feishu_open_id=li)
        fake.add_task("Draft Q4 OKR review", creator=li, assignees=[li])
        store = grant_store(db, fake)
        try:
            link = await store.link(person, CALLBACK)
            assert link.startswith(f"{fake.url}/open-apis/authen/v1/authorize?")
            query = parse_qs(urlsplit(link).query)
            assert query["client_id"] == [fake.app_id]
            assert query["redirect_uri"] == [CALLBACK]
            assert query["scope"] == ["task:task:read offline_access"]

            fake.sign_in(li)
            code, state = await follow_link(link)
            assert await store.complete(state, code, CALLBACK) == person

            first = await stored_grant(db, person, fake.app_id)
            assert first.subject == li
            assert first.refresh_token and first.revoked_at is None
            assert "task:task:read" in first.scope.split()
            exchange = fake.calls_to("/oauth/v3/token")[0].body
            assert exchange["grant_type"] == "authorization_code" and exchange["redirect_uri"] == CALLBACK

            # the state works once, whatever happens after
            with pytest.raises(OAuthStateError, match="used already"):
                await store.complete(state, code, CALLBACK)

            fresh = await store.fresh_grants()
            second = await stored_grant(db, person, fake.app_id)
            assert [(g.person_id, g.open_id) for g in fresh] == [(person, li)]
            assert fresh[0].access_token == second.access_token != first.access_token
            # the refresh token rotated: the spent one is dead at Feishu, the new one is stored
            assert second.refresh_token != first.refresh_token
            assert fake.refresh_tokens_of(li) == {first.refresh_token: "used", second.refresh_token: "live"}
            assert len(fake.calls_to("/oauth/v3/token")) == 2

            # the refreshed token reads the person's tasks
            connector = build(fake, grants_of=fresh)
            try:
                [scope] = [s for s in await connector.scopes([]) if s.person_id == person]
                assert [r.title for r in records(await read_all(connector, scope)).values()] == [
                    "Draft Q4 OKR review"
                ]
            finally:
                await connector.close()
        finally:
            await store.oauth.close()


async def test_oauth_refuses_unknown_expired_and_forwarded_links(db: Database, fake: FeishuTasksFake) -> None:
    li = fake.add_user("Li Lei", email="li.lei@example.com")
    wang = fake.add_user("Wang Fang", email="wang.fang@example.com")
    person = await add_person(db, "li.lei@example.com", feishu_open_id=li)
    store = grant_store(db, fake)
    try:
        with pytest.raises(OAuthStateError, match="unknown"):
            await store.complete("no-such-state", "code", CALLBACK)

        link = await store.link(person, CALLBACK)
        fake.sign_in(li)
        code, state = await follow_link(link)
        later = utcnow() + timedelta(minutes=11)
        set_clock(lambda: later)
        try:
            with pytest.raises(OAuthStateError, match="expired"):
                await store.complete(state, code, CALLBACK)
        finally:
            set_clock(None)

        # Li's link forwarded to Wang, who opens it: nothing is stored for Li
        fake.sign_in(wang)
        code, state = await follow_link(await store.link(person, CALLBACK))
        with pytest.raises(OAuthSubjectMismatch):
            await store.complete(state, code, CALLBACK)

        # a code Feishu does not know (or a redirect_uri that differs) is refused at the token endpoint
        fake.sign_in(li)
        code, state = await follow_link(await store.link(person, CALLBACK))
        with pytest.raises(OAuthRefused) as refused:
            await store.complete(state, code, CALLBACK + "/elsewhere")
        assert refused.value.final and refused.value.error == "invalid_grant"

        async with db.sessions() as session:
            assert (
                await grants.grant_of(session, person_id=person, source="feishu_task", tenant=fake.app_id)
                is None
            )
    finally:
        await store.oauth.close()


async def authorise(db: Database, fake: FeishuTasksFake, store: GrantStore, email: str) -> tuple[int, str]:
    open_id = fake.add_user(email.split("@")[0], email=email)
    person = await add_person(db, email, feishu_open_id=open_id)
    fake.sign_in(open_id)
    code, state = await follow_link(await store.link(person, CALLBACK))
    await store.complete(state, code, CALLBACK)
    return person, open_id


async def test_a_refused_refresh_revokes_the_grant(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    async with FeishuTasksFake(user_token_ttl=120) as fake:
        store = grant_store(db, fake)
        try:
            person, open_id = await authorise(db, fake, store, "li.lei@example.com")
            kept, _ = await authorise(db, fake, store, "emma.smith@example.com")
            fake.revoke_user(open_id)  # Li withdrew consent in Feishu
            with caplog.at_level(logging.WARNING, logger="connectors.feishu_oauth"):
                fresh = await store.fresh_grants()
            assert [g.person_id for g in fresh] == [kept]
            gone = await stored_grant(db, person, fake.app_id)
            assert gone.revoked_at is not None and gone.refresh_token is None and gone.access_token == ""
            assert f"person {person} revoked" in caplog.text and "must authorise again" in caplog.text

            # authorising again restores it
            fake.sign_in(open_id)
            code, state = await follow_link(await store.link(person, CALLBACK))
            await store.complete(state, code, CALLBACK)
            assert (await stored_grant(db, person, fake.app_id)).revoked_at is None
        finally:
            await store.oauth.close()


async def test_two_processes_refreshing_one_grant_spend_its_refresh_token_once(db: Database) -> None:
    async with FeishuTasksFake(user_token_ttl=120) as fake:
        first, second = grant_store(db, fake), grant_store(db, fake)
        try:
            person, open_id = await authorise(db, fake, first, "li.lei@example.com")
            fake.user_token_ttl = 7200  # what the refresh gives is not due for refreshing again
            a, b = await asyncio.gather(first.fresh_grants(), second.fresh_grants())
            refreshes = [
                c for c in fake.calls_to("/oauth/v3/token") if c.body["grant_type"] == "refresh_token"
            ]
            assert len(refreshes) == 1
            assert [g.person_id for g in a] == [g.person_id for g in b] == [person]
            assert (await stored_grant(db, person, fake.app_id)).revoked_at is None
            assert list(fake.refresh_tokens_of(open_id).values()).count("live") == 1
        finally:
            await first.oauth.close()
            await second.oauth.close()


async def test_a_refused_user_token_is_refreshed_next_time(db: Database) -> None:
    async with FeishuTasksFake() as fake:
        store = grant_store(db, fake)
        try:
            person, open_id = await authorise(db, fake, store, "li.lei@example.com")
            [grant] = await store.fresh_grants()
            fake.expire_user_token(open_id)
            connector = build(fake, grants_of=[grant])
            try:
                [scope] = [s for s in await connector.scopes([]) if s.person_id == person]
                with pytest.raises(FeishuUserTokenInvalid) as refused:
                    await read_all(connector, scope)
                assert refused.value.person_id == person and refused.value.open_id == open_id
            finally:
                await connector.close()
            await store.access_refused(person, code=int(refused.value.code or 0))
            [renewed] = await store.fresh_grants()
            assert renewed.access_token != grant.access_token
            assert await store.revoke(person) is True
            assert await store.fresh_grants() == []
        finally:
            await store.oauth.close()


# ---- a person's tasks (user scope) ------------------------------------------------------------------


async def test_user_scope_reads_everything_then_only_what_changed(fake: FeishuTasksFake) -> None:
    li, emma = fake.add_user("Li Lei"), fake.add_user("Emma")
    okr = fake.add_tasklist("Q4 OKRs", members=[li])
    due = 1_790_000_000_000
    open_task = fake.add_task("Draft Q4 OKR review", creator=emma, assignees=[li], due_ms=due, all_day=True)
    done_task = fake.add_task("Ship the recap", creator=li, assignees=[emma], completed=True, tasklist=okr)
    followed = fake.add_task("Review the budget", creator=emma, followers=[li])
    fake.add_task("Emma's own", creator=emma, assignees=[emma])
    bulk = [fake.add_task(f"chore {n}", creator=li) for n in range(105)]
    token = fake.issue_user_token(li)
    connector = build(fake, grants_of=[UserGrant(7, li, token)])
    try:
        scopes = await connector.scopes([Member(7, "li.lei@example.com", {"feishu": li})])
        [scope] = [s for s in scopes if s.person_id == 7]
        assert scope.id == f"feishu:user:{li}" and scope.subject == li and scope.token == token

        pages = await read_all(connector, scope)
        assert [len(p.records) for p in pages] == [100, 8]
        assert pages[0].resume is not None and pages[-1].resume is None
        found = records(pages)
        assert set(found) == {open_task, done_task, followed, *bulk}
        first_call = fake.calls_to(RELATED_TASKS_PATH)[0]
        assert first_call.headers["authorization"] == f"Bearer {token}"
        assert first_call.query == {"page_size": "100", "user_id_type": "open_id"}

        todo = found[open_task]
        assert todo.status_category is StatusCategory.TODO and not todo.is_completed
        assert todo.raw["completed_at"] == "0" and todo.completed_at is None
        assert todo.assignees[0].source_user_id == li and todo.title == "Draft Q4 OKR review"
        assert todo.due_at == from_epoch_ms(due) and todo.due_all_day
        assert todo.external_key and todo.external_key.startswith("t") and todo.url and open_task in todo.url
        assert todo.source == "feishu_task" and todo.tenant == fake.app_id and todo.container is None

        done = found[done_task]
        assert done.status_category is StatusCategory.DONE and done.status_raw == "done"
        assert done.completed_at is not None and done.container == "Q4 OKRs"

        # later: one edit, one new task; the read starts at the cursor and sees only those two
        fake.advance(60)
        since = datetime.fromtimestamp(fake.now(), tz=UTC)
        fake.advance(1)
        fake.update_task(open_task, completed=True)
        new_task = fake.add_task("Plan the offsite", creator=emma, assignees=[li])
        before = len(fake.calls_to(RELATED_TASKS_PATH))
        changed = records(await read_all(connector, scope, since))
        assert set(changed) == {open_task, new_task}
        assert changed[open_task].is_completed
        assert fake.calls_to(RELATED_TASKS_PATH)[before].query["page_token"] == str(to_epoch_ms(since) * 1000)
    finally:
        await connector.close()


async def test_grants_of_people_not_among_members_are_not_used(fake: FeishuTasksFake) -> None:
    li, gone = fake.add_user("Li Lei"), fake.add_user("Left")
    grants_of = [UserGrant(1, li, fake.issue_user_token(li)), UserGrant(2, gone, fake.issue_user_token(gone))]
    connector = build(fake, grants_of=grants_of)
    try:
        scopes = await connector.scopes([Member(1, "li.lei@example.com", {})])
        assert [s.person_id for s in scopes] == [1]
        assert {s.person_id for s in await connector.scopes([])} == {1, 2}
    finally:
        await connector.close()


async def test_user_token_problems_surface_as_their_own_errors(fake: FeishuTasksFake) -> None:
    li = fake.add_user("Li Lei")
    connector = build(fake)
    try:
        await connector.prepare()
        # the app's tenant token where only a person's token will do: a wiring mistake, said plainly
        tenant_scope = Scope(f"feishu:user:{li}", person_id=3, subject=li, token=fake.tenant_token())
        with pytest.raises(SourceAuthError) as wrong:
            await read_all(connector, tenant_scope)
        assert not isinstance(wrong.value, FeishuUserTokenInvalid)
        assert "accepts only a person's user access token" in str(wrong.value)

        # an expired token: the grant needs refreshing
        token = fake.issue_user_token(li)
        fake.expire_user_token(li)
        with pytest.raises(FeishuUserTokenInvalid) as expired:
            await read_all(connector, Scope(f"feishu:user:{li}", person_id=3, subject=li, token=token))
        assert expired.value.person_id == 3 and expired.value.code == "99991677"

        # a token without task:task:read: the person must authorise again with it
        narrow = fake.issue_user_token(li, scopes=("contact:user.base:readonly",))
        with pytest.raises(FeishuUserTokenInvalid) as unscoped:
            await read_all(connector, Scope(f"feishu:user:{li}", person_id=3, subject=li, token=narrow))
        assert unscoped.value.code == "99991679"
    finally:
        await connector.close()


# ---- tasklists the app reads ------------------------------------------------------------------------


async def test_tasklist_scope_fetches_details_then_only_what_may_have_changed(fake: FeishuTasksFake) -> None:
    li = fake.add_user("Li Lei")
    team = fake.add_tasklist("Team board")
    fake.add_tasklist("Private list", app_can_read=False)
    open_a = fake.add_task("Open A", tasklist=team, assignees=[li])
    open_b = fake.add_task("Open B", tasklist=team, assignees=[li])
    done_long_ago = fake.add_task("Done long ago", tasklist=team, completed=True)
    sleeps = Sleeps()
    connector = build(fake, sleeps, per_s=None)
    try:
        scopes = await connector.scopes([])
        assert [s.id for s in scopes] == [f"feishu:tasklist:{team}"]
        [scope] = scopes
        full = records(await read_all(connector, scope))
        assert set(full) == {open_a, open_b, done_long_ago}
        assert full[open_a].container == "Team board" and full[open_a].updated_at is not None
        assert full[done_long_ago].is_completed and not full[open_a].is_completed
        assert len(fake.calls_to(f"/tasks/{open_a}")) == 1
        assert all(c.headers["authorization"].startswith("Bearer t-") for c in fake.calls_to("/tasks"))
        # three detail GETs at 10 a second: the second and third wait their turn
        assert len([w for w in sleeps.waits if w > 0.05]) >= 2

        fake.advance(120)
        since = datetime.fromtimestamp(fake.now(), tz=UTC)
        fake.advance(1)
        fake.update_task(open_a, completed=True)
        details_before = len([c for c in fake.calls if "/task/v2/tasks/" in c.path])
        changed = records(await read_all(connector, scope, since))
        assert set(changed) == {open_a} and changed[open_a].is_completed
        # the unchanged open task and the task done before the cursor cost no detail call
        assert len([c for c in fake.calls if "/task/v2/tasks/" in c.path]) == details_before + 1

        # a process that just started has no memo: every open task (and the newly done) is fetched
        fresh = build(fake, per_s=None)
        try:
            await fresh.scopes([])
            assert set(records(await read_all(fresh, scope, since))) == {open_a, open_b}
        finally:
            await fresh.close()
    finally:
        await connector.close()


async def test_tenant_token_is_renewed_once_when_refused(fake: FeishuTasksFake) -> None:
    fake.add_tasklist("Team board")
    connector = build(fake)
    try:
        await connector.prepare()
        fake.expire_tenant_tokens()
        assert len(await connector.scopes([])) == 1
        assert len(fake.calls_to("/tenant_access_token/internal")) == 2
    finally:
        await connector.close()
    wrong = FeishuTasksConnector(app_id=fake.app_id, app_secret="not-the-secret", base_url=fake.url)
    try:
        with pytest.raises(SourceAuthError, match="FEISHU_APP_ID and FEISHU_APP_SECRET"):
            await wrong.prepare()
    finally:
        await wrong.close()


# ---- rate limits ------------------------------------------------------------------------------------


async def test_a_429_storm_is_waited_out_as_feishu_says(fake: FeishuTasksFake) -> None:
    li = fake.add_user("Li Lei")
    fake.add_task("Draft Q4 OKR review", creator=li)
    sleeps = Sleeps()
    connector = build(fake, sleeps, per_s=None)
    scope = Scope(f"feishu:user:{li}", person_id=1, subject=li, token=fake.issue_user_token(li))
    try:
        fake.throttle(RELATED_TASKS_PATH, times=3, reset=2)
        fake.throttle(RELATED_TASKS_PATH, times=1, reset=5, status=400)  # older APIs say it with a 400
        assert len(records(await read_all(connector, scope))) == 1
        assert sleeps.waits == [2.0, 2.0, 2.0, 5.0]
        assert fake.http_429 == 3

        fake.throttle(RELATED_TASKS_PATH, times=50, reset=60)
        with pytest.raises(SourceRateLimited):
            await read_all(connector, scope)
    finally:
        await connector.close()


# ---- reconcile --------------------------------------------------------------------------------------


async def test_live_ids_and_confirm_gone(fake: FeishuTasksFake) -> None:
    li, emma = fake.add_user("Li Lei"), fake.add_user("Emma")
    team, other = fake.add_tasklist("Team board"), fake.add_tasklist("Other board")
    hidden = fake.add_tasklist("Hidden", app_can_read=False)
    stays = fake.add_task("Stays", tasklist=team, assignees=[li])
    deleted = fake.add_task("Deleted", tasklist=team, assignees=[li])
    moved = fake.add_task("Moved", tasklist=team, assignees=[li])
    hidden_now = fake.add_task("Hidden now", tasklist=team, assignees=[li])
    unassigned = fake.add_task("Unassigned", creator=emma, assignees=[li])
    connector = build(fake)
    list_scope = Scope(f"feishu:tasklist:{team}")
    user_scope = Scope(f"feishu:user:{li}", person_id=1, subject=li, token=fake.issue_user_token(li))
    try:
        live = [guid async for page in connector.live_ids(list_scope) for guid in page]
        assert sorted(live) == sorted([stays, deleted, moved, hidden_now])
        live_user = {guid async for page in connector.live_ids(user_scope) for guid in page}
        assert live_user == {stays, deleted, moved, hidden_now, unassigned}

        fake.delete_task(deleted)
        fake.update_task(moved, tasklist=other)
        fake.update_task(hidden_now, tasklist=hidden)
        fake.update_task(unassigned, assignees=[emma])
        assert await connector.confirm_gone(list_scope, stays) is None
        assert await connector.confirm_gone(list_scope, deleted) is TombstoneReason.DELETED
        assert await connector.confirm_gone(list_scope, moved) is TombstoneReason.OUT_OF_SCOPE
        assert await connector.confirm_gone(list_scope, hidden_now) is TombstoneReason.PERMISSION_LOST
        assert await connector.confirm_gone(user_scope, stays) is None
        assert await connector.confirm_gone(user_scope, deleted) is TombstoneReason.DELETED
        assert await connector.confirm_gone(user_scope, unassigned) is TombstoneReason.PERMISSION_LOST
    finally:
        await connector.close()


# ---- people -----------------------------------------------------------------------------------------


async def test_find_people_uses_known_open_ids_then_batch_get_id(fake: FeishuTasksFake) -> None:
    known = fake.add_user("Known", email="known@example.com")
    people = {n: fake.add_user(f"P{n}", email=f"p{n}@example.com") for n in range(60)}
    fake.resign_user(people[59])
    members = [Member(1000, "known@example.com", {"feishu": known})]
    members += [Member(n, f"P{n}@Example.com", {}) for n in range(60)]
    members.append(Member(2000, "stranger@example.com", {}))
    connector = build(fake)
    try:
        found = await connector.find_people(members)
        assert found[1000].source_user_id == known
        assert {n: found[n].source_user_id for n in range(59)} == {n: people[n] for n in range(59)}
        assert 59 not in found and 2000 not in found  # resigned, unknown
        calls = fake.calls_to("/contact/v3/users/batch_get_id")
        assert [len(c.body["emails"]) for c in calls] == [50, 11]
        assert "known@example.com" not in [e for c in calls for e in c.body["emails"]]
        assert all(c.query["user_id_type"] == "open_id" for c in calls)
    finally:
        await connector.close()

    other_app = build(fake, reuse_chat_ids=False)
    try:
        found = await other_app.find_people(members[:1])
        assert found[1000].source_user_id == known
        assert fake.calls_to("/contact/v3/users/batch_get_id")[-1].body["emails"] == ["known@example.com"]
    finally:
        await other_app.close()
