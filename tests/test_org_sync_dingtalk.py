"""`cadence org sync dingtalk` on SQLite and PostgreSQL: httpx reads the DingTalk fake's directory over
real sockets (token from the new API, departments and users from oapi); people are added, changed, linked
by email and deactivated, never deleted. Managers come from department leaders (user/list has ``leader``,
not ``manager_userid``), from ``manager_userid`` where a list item has it, or from user/get per person."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlmodel import col, select

from bot import settings as settings_module
from bot.cli import main
from bot.platforms.dingtalk_directory import USER_GET_PER_S, read_configured_directory, read_directory
from bot.settings import DingtalkSettings
from conversations.org_service import import_org_file
from conversations.org_sync import DirectoryError, SyncReport, format_sync_report, sync_directory
from storage.engine import Database
from storage.models import AuditLog, Identity, Person
from storage.org import get_person_by_email
from tests.cli_env import isolate
from tests.fakes.dingtalk import DingTalkFake
from tests.harness import write_file

CEO, MANAGER, LILEI, EMMA, HR = (
    "chen.jie@example.com",
    "wang.fang@example.com",
    "li.lei@example.com",
    "emma.smith@example.com",
    "zhao.min@example.com",
)
ROOT, EXEC, ENG, BACKEND, FRONTEND, PEOPLE = 1, 10, 20, 21, 22, 30
USER_LIST = "/topapi/v2/user/list"
USER_GET = "/topapi/v2/user/get"
LISTSUB = "/topapi/v2/department/listsub"


def build_org(fake: DingTalkFake) -> None:
    """Five people in four departments; Zhao Min has only an org email, Li Lei is in two departments.

    Chen Jie leads the company (the root) and Executive, Wang Fang leads Engineering; Backend and People
    have no leader. The console's direct managers (``manager``) agree with what the leaders give.
    """
    fake.add_department(EXEC, "Executive")
    fake.add_department(ENG, "Engineering")
    fake.add_department(BACKEND, "Backend", parent=ENG)
    fake.add_department(PEOPLE, "People")
    fake.add_user(
        "chen",
        name="陈杰",
        email="Chen.Jie@Example.com",
        departments=(EXEC, ROOT),
        leads=(EXEC, ROOT),
        title="首席执行官",
    )
    fake.add_user(
        "wang", name="王芳", email=MANAGER, departments=(ENG,), leads=(ENG,), manager="chen", title="工程经理"
    )
    fake.add_user("lilei", name="李雷", email=LILEI, departments=(BACKEND, ENG), manager="wang")
    fake.add_user(
        "emma", name="Emma Smith", email=EMMA, departments=(ENG,), manager="wang", title="Frontend Engineer"
    )
    fake.add_user("zhao", name="赵敏", org_email=HR, departments=(PEOPLE,), manager="chen")


def settings_for(fake: DingTalkFake, **changes: Any) -> DingtalkSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "api_url": fake.url,
        "oapi_url": fake.url,
    }
    return DingtalkSettings(**(values | changes))


async def no_sleep(seconds: float) -> None:
    """Rate-limit waits in tests take no time."""


async def sync(fake: DingTalkFake, db: Database) -> SyncReport:
    """Read the fake's directory and apply it, as the command does."""
    directory = await read_directory(settings_for(fake), sleep=no_sleep)
    return await sync_directory(
        db,
        platform="dingtalk",
        people=directory.people,
        source="dingtalk",
        default_timezone="Asia/Shanghai",
        default_locale="zh-CN",
    )


async def person(db: Database, email: str) -> Person:
    async with db.sessions() as s:
        found = await get_person_by_email(s, email=email)
    assert found is not None, email
    return found


async def dingtalk_ids(db: Database) -> dict[str, str]:
    """email -> DingTalk userid, for everyone who has one."""
    async with db.sessions() as s:
        rows = (
            await s.exec(
                select(Person.email, Identity.external_id)
                .join(Identity, col(Identity.person_id) == col(Person.id))
                .where(col(Identity.platform) == "dingtalk", col(Identity.tenant) == "")
            )
        ).all()
    return dict(rows)


async def snapshot(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with db.sessions() as s:
        people = (await s.exec(select(Person).order_by(col(Person.id)))).all()
        identities = (await s.exec(select(Identity).order_by(col(Identity.id)))).all()
        return [p.model_dump() for p in people], [i.model_dump() for i in identities]


# --- syncing -------------------------------------------------------------------------------------


async def test_first_sync_adds_people_with_managers_departments_and_ids(db: Database) -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        report = await sync(fake, db)

    assert (report.total, sorted(report.added), report.changed, report.deactivated) == (
        5,
        sorted([CEO, MANAGER, LILEI, EMMA, HR]),
        [],
        [],
    )
    assert format_sync_report(report, "en").startswith(
        "Synced 5 people from DingTalk — 5 added, 0 changed, 0 deactivated, 0 reactivated."
    )
    chen, wang, li, emma, zhao = [await person(db, e) for e in (CEO, MANAGER, LILEI, EMMA, HR)]
    assert (chen.name, chen.department, chen.title, chen.manager_id, chen.roles) == (
        "陈杰",
        "Executive",
        "首席执行官",
        None,
        "employee,manager",
    )
    assert (wang.manager_id, wang.roles, wang.department, wang.title) == (
        chen.id,
        "employee,manager",
        "Engineering",
        "工程经理",
    )
    # in two departments: the first one listed; DingTalk gives no time zone: the defaults
    assert (li.department, li.manager_id, li.timezone, li.locale, li.roles) == (
        "Backend",
        wang.id,
        "Asia/Shanghai",
        "zh-CN",
        "employee",
    )
    assert (emma.title, emma.manager_id, emma.department) == ("Frontend Engineer", wang.id, "Engineering")
    # no personal email: the org email
    assert (zhao.email, zhao.name, zhao.department, zhao.manager_id) == (HR, "赵敏", "People", chen.id)
    assert await dingtalk_ids(db) == {CEO: "chen", MANAGER: "wang", LILEI: "lilei", EMMA: "emma", HR: "zhao"}
    async with db.sessions() as s:
        audits = (await s.exec(select(AuditLog))).all()
    assert [(a.action, a.detail["source"], a.detail["added"]) for a in audits] == [
        ("org.sync", "dingtalk", 5)
    ]


async def test_a_second_sync_reports_what_changed_in_dingtalk(db: Database) -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        await sync(fake, db)
        # to People, which has no leader: the company's leader is the manager now
        fake.update_user("lilei", name="李雷雷", departments=(PEOPLE,), manager="chen")
        fake.update_user("emma", title="Staff Engineer")
        report = await sync(fake, db)

    assert (report.added, report.deactivated, report.reactivated) == ([], [], [])
    assert report.changed_fields == {LILEI: ("name", "department", "manager"), EMMA: ("title",)}
    chen, li, emma = [await person(db, e) for e in (CEO, LILEI, EMMA)]
    assert (li.name, li.department, li.manager_id) == ("李雷雷", "People", chen.id)
    assert emma.title == "Staff Engineer"
    assert format_sync_report(report, "en") == "\n".join(
        [
            "Synced 5 people from DingTalk — 0 added, 2 changed, 0 deactivated, 0 reactivated.",
            "",
            "Changed (2):",  # in the order DingTalk lists them: Li Lei is in People now
            "• emma.smith@example.com (title)",
            "• li.lei@example.com (name, department, manager)",
        ]
    )


async def test_a_sync_with_nothing_changed_says_so_and_writes_nothing(db: Database) -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        await sync(fake, db)
        before = await snapshot(db)
        report = await sync(fake, db)

    assert report.nothing_changed
    assert format_sync_report(report, "en") == (
        "Synced 5 people from DingTalk, and everything was already up to date."
    )
    assert format_sync_report(report, "zh-CN") == "已从钉钉同步 5 人，数据已是最新，无需改动。"
    assert await snapshot(db) == before


ORG_CSV = """\
email,name,manager_email,department,title,timezone,country,locale,roles,dingtalk_id
zhao.min@example.com,赵敏,,People,人力资源总监,Asia/Shanghai,CN,zh-CN,hr,
lucy.chen@example.com,Lucy Chen,zhao.min@example.com,People,HR Business Partner,America/Los_Angeles,US,en,hr,
old.timer@example.com,Old Timer,,Sales,,Asia/Shanghai,CN,zh-CN,,oldtimer
"""


async def test_leavers_are_deactivated_while_people_only_in_the_org_file_stay(
    db: Database, tmp_path: Path
) -> None:
    await import_org_file(db, write_file(tmp_path, "org.csv", ORG_CSV))
    async with DingTalkFake() as fake:
        build_org(fake)
        first = await sync(fake, db)
        fake.remove_user("lilei")
        fake.remove_user("emma")
        second = await sync(fake, db)

    # Zhao Min came from the org file: the same email ties her DingTalk userid to her, her HR role stays
    assert HR not in first.added
    assert first.changed_fields[HR] == ("manager", "dingtalk_id")
    zhao = await person(db, HR)
    assert (zhao.roles, zhao.title, zhao.country, zhao.active) == ("employee,hr", "人力资源总监", "CN", True)
    assert (await dingtalk_ids(db))[HR] == "zhao"
    # Old Timer has a DingTalk id but is not in DingTalk: gone; Lucy Chen was never in DingTalk: left alone
    assert first.deactivated == ["old.timer@example.com"]
    lucy = await person(db, "lucy.chen@example.com")
    assert (lucy.active, lucy.manager_id, lucy.roles) == (True, zhao.id, "employee,hr")

    assert sorted(second.deactivated) == sorted([LILEI, EMMA])
    assert second.changed == [] and second.added == []
    for email in (LILEI, EMMA, "old.timer@example.com"):
        assert (await person(db, email)).active is False  # the row and its history are kept
    assert (await person(db, "lucy.chen@example.com")).active is True
    assert (await person(db, HR)).roles == "employee,hr"
    assert "Deactivated (2) — no longer in DingTalk; their history is kept:" in format_sync_report(
        second, "en"
    )
    assert "停用（2 人）——已不在钉钉通讯录中，历史记录仍会保留：" in format_sync_report(second, "zh-CN")


async def test_someone_back_in_dingtalk_is_reactivated(db: Database) -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        await sync(fake, db)
        fake.remove_user("emma")
        await sync(fake, db)
        fake.add_user("emma", name="Emma Smith", email=EMMA, departments=(ENG,), manager="wang")
        report = await sync(fake, db)

    assert (report.reactivated, report.added, report.deactivated) == ([EMMA], [], [])
    assert (await person(db, EMMA)).active is True


async def test_someone_who_has_not_activated_dingtalk_yet_is_still_synced(db: Database) -> None:
    # DingTalk's `active` says whether the person has logged in yet; people who leave are removed instead
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.add_user("newbie", name="新人", email="new.hire@example.com", departments=(ENG,), active=False)
        report = await sync(fake, db)

    assert "new.hire@example.com" in report.added
    assert (await person(db, "new.hire@example.com")).active is True


async def test_people_without_an_email_are_skipped_and_reported(db: Database) -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.add_user("noemail", name="无邮箱", departments=(ENG,), manager="wang")
        report = await sync(fake, db)

    assert report.total == 5
    assert report.skipped == ["无邮箱 (noemail)"]
    assert "noemail" not in (await dingtalk_ids(db)).values()
    assert format_sync_report(report, "en").endswith(
        "Skipped (1) — DingTalk gives no email for them, and email is what ties people together:\n"
        "• 无邮箱 (noemail)"
    )


# --- managers --------------------------------------------------------------------------------------


def build_tree(fake: DingTalkFake) -> None:
    """A deeper org whose console managers (``manager``) all point at "console": ignored when derived.

    Company (led by ceo; assistant) ├ Engineering (led by cto) │ ├ Backend (led by be1 and be2; dev;
    cto too) │ └ Frontend (no leader; fe) └ People (no leader; hr)
    """
    fake.add_department(ENG, "Engineering")
    fake.add_department(BACKEND, "Backend", parent=ENG)
    fake.add_department(FRONTEND, "Frontend", parent=ENG)
    fake.add_department(PEOPLE, "People")
    people: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = [
        ("ceo", (ROOT,), (ROOT,)),
        ("assistant", (ROOT,), ()),
        # listed in Backend first, but leads Engineering: found above the team they lead
        ("cto", (BACKEND, ENG), (ENG,)),
        ("be1", (BACKEND,), (BACKEND,)),  # added, so listed, before be2: the first leader of Backend
        ("be2", (BACKEND,), (BACKEND,)),
        ("dev", (BACKEND,), ()),
        ("fe", (FRONTEND,), ()),
        ("hr", (PEOPLE,), ()),
    ]
    for userid, departments, leads in people:
        fake.add_user(
            userid,
            name=userid,
            email=f"{userid}@example.com",
            departments=departments,
            leads=leads,
            manager="console",
        )


def managers_of(people: list[Any]) -> dict[str, str | None]:
    return {p.external_id: p.manager_external_id for p in people}


async def test_managers_are_derived_from_department_leaders_without_user_get() -> None:
    async with DingTalkFake() as fake:
        build_tree(fake)
        directory = await read_directory(settings_for(fake), sleep=no_sleep)
        user_gets = fake.calls_to(USER_GET)

    assert managers_of(directory.people) == {
        "ceo": None,  # the root's leader has none
        "assistant": "ceo",  # in the root itself: its leader
        "cto": "ceo",  # leads Engineering: the leader of the department above it
        "be1": "cto",  # a leader of Backend: Engineering's leader, not the other leader of Backend
        "be2": "cto",
        "dev": "be1",  # a report: their department's (first) leader
        "fe": "cto",  # Frontend has no leader: the one above it
        "hr": "ceo",  # People has no leader, the company has
    }
    assert {p.external_id: p.department for p in directory.people}["cto"] == "Backend"
    # asking user/get for each person would spend one call of the monthly quota per person
    assert user_gets == []


async def test_the_fake_says_leader_per_department_listing() -> None:
    async with DingTalkFake() as fake, httpx.AsyncClient(base_url=fake.url) as http:
        build_tree(fake)
        token = await http.get(
            "/gettoken", params={"appkey": fake.client_id, "appsecret": fake.client_secret}
        )
        params = {"access_token": token.json()["access_token"]}

        async def listed(dept_id: int) -> dict[str, Any]:
            answer = await http.post(
                USER_LIST, params=params, json={"dept_id": dept_id, "cursor": 0, "size": 100}
            )
            return {u["userid"]: u for u in answer.json()["result"]["list"]}

        backend, engineering = await listed(BACKEND), await listed(ENG)
        detail = (await http.post(USER_GET, params=params, json={"userid": "cto"})).json()["result"]

    assert {u: item["leader"] for u, item in backend.items()} == {
        "cto": False,
        "be1": True,
        "be2": True,
        "dev": False,
    }
    assert {u: item["leader"] for u, item in engineering.items()} == {"cto": True}
    assert not any("manager_userid" in item for item in backend.values())  # only user/get has it
    assert (detail["manager_userid"], detail["leader_in_dept"]) == (
        "console",
        [{"dept_id": BACKEND, "leader": False}, {"dept_id": ENG, "leader": True}],
    )


async def test_a_manager_userid_in_the_list_wins_over_the_leaders() -> None:
    async with DingTalkFake(list_has_manager=True) as fake:
        build_org(fake)
        fake.update_user("emma", manager="zhao")  # the console's direct manager, not Engineering's leader
        fake.update_user("lilei", manager=None)  # none set: derived
        fake.update_user("zhao", manager="zhao")  # never one's own manager: derived
        directory = await read_directory(settings_for(fake), sleep=no_sleep)

    assert managers_of(directory.people) == {
        "chen": None,
        "wang": "chen",
        "lilei": "wang",
        "emma": "zhao",
        "zhao": "chen",
    }


@dataclass
class FakeTime:
    """A clock that only moves when slept on, and the sleeps."""

    now: float = 1000.0

    def __post_init__(self) -> None:
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


async def test_direct_mode_reads_each_persons_manager_from_user_get_paced_with_progress() -> None:
    time = FakeTime()
    counts: list[int] = []
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.update_user("emma", manager="zhao")  # not Engineering's leader: only user/get knows
        fake.update_user("zhao", manager=None)  # no direct manager in the console: none, not derived
        directory = await read_directory(
            settings_for(fake),
            managers="direct",
            progress=counts.append,
            sleep=time.sleep,
            clock=time.clock,
        )
        user_gets = fake.calls_to(USER_GET)

    assert managers_of(directory.people) == {
        "chen": None,
        "wang": "chen",
        "lilei": "wang",
        "emma": "zhao",
        "zhao": None,
    }
    assert sorted(c.body["userid"] for c in user_gets) == ["chen", "emma", "lilei", "wang", "zhao"]
    assert time.waits == pytest.approx([1 / USER_GET_PER_S] * 4)  # evenly spaced, the first at once
    assert counts == [1, 2, 3, 4, 5]  # people whose manager is known; the listing alone counts nothing


async def test_direct_mode_says_which_permission_user_get_needs_and_skips_people_who_just_left() -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        # the first two looked up (in listing order: chen, wang) left after the listing
        fake.fail(USER_GET, code=60121, message="找不到该用户", times=2)
        directory = await read_directory(settings_for(fake), managers="direct", sleep=no_sleep)
        assert [c.body["userid"] for c in fake.calls_to(USER_GET)][:2] == ["chen", "wang"]
        assert managers_of(directory.people) == {
            "chen": None,
            "wang": None,
            "lilei": "wang",
            "emma": "wang",
            "zhao": "chen",
        }

        fake.fail(USER_GET, code=60011, message="没有调用该接口的权限")
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake), managers="direct", sleep=no_sleep)
    assert (refused.value.kind, refused.value.call, refused.value.scopes) == (
        "permission",
        f"POST {USER_GET}",
        ("qyapi_get_member",),
    )


async def test_an_unknown_manager_mode_is_refused() -> None:
    settings = DingtalkSettings(client_id="id", client_secret="secret")
    with pytest.raises(ValueError, match="leaders, direct"):
        await read_directory(settings, managers="nearest")  # type: ignore[arg-type]


async def test_paging_over_more_than_a_hundred_people_in_one_department_reads_each_once() -> None:
    counts: list[int] = []
    async with DingTalkFake() as fake:
        fake.add_department(EXEC, "A")
        fake.add_department(ENG, "B", parent=EXEC)
        for n in range(250):
            departments = (ENG, EXEC) if n % 2 else (ENG,)
            fake.add_user(f"u{n:03d}", name=f"P{n}", email=f"p{n}@example.com", departments=departments)
        directory = await read_directory(settings_for(fake), progress=counts.append)
        calls = fake.calls_to(USER_LIST)

    assert len(directory.people) == 250
    assert len({p.external_id for p in directory.people}) == 250
    assert directory.departments == 2
    assert {p.department for p in directory.people} == {"B"}  # the first department each one lists
    # a page after each call: root (1), A (125 people: 2 pages), B (250 people: 3 pages)
    assert len(counts) == 6
    assert [(c.body["dept_id"], c.body["cursor"], c.body["size"]) for c in calls] == [
        (1, 0, 100),
        (EXEC, 0, 100),
        (EXEC, 100, 100),
        (ENG, 0, 100),
        (ENG, 100, 100),
        (ENG, 200, 100),
    ]
    assert counts == sorted(counts) and counts[-1] == 250


async def test_the_configured_directory_has_ids_and_managers_but_no_time_zones() -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.update_user("emma", manager="zhao")
        directory = await read_configured_directory(settings_for(fake))
        direct = await read_configured_directory(settings_for(fake), managers="direct")

    assert sorted(p.external_id for p in directory.people) == ["chen", "emma", "lilei", "wang", "zhao"]
    assert all(p.timezone is None for p in directory.people)
    assert (managers_of(directory.people)["emma"], managers_of(direct.people)["emma"]) == ("wang", "zhao")


# --- the API saying no -------------------------------------------------------------------------------


async def test_a_rate_limited_call_is_retried_after_a_short_backoff() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with DingTalkFake() as fake:
        build_org(fake)
        fake.fail(USER_LIST, code=90018, times=2)
        fake.fail(LISTSUB, code=90002, times=1)
        directory = await read_directory(settings_for(fake), sleep=sleep)
        assert len(directory.people) == 5
        assert waits == [1.0, 1.0, 2.0]

        waits.clear()
        fake.fail(LISTSUB, code=90019, times=10)
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake), sleep=sleep)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert (refused.value.kind, refused.value.code) == ("rate_limited", 90019)
    assert str(refused.value) == (
        f'DingTalk still answered POST {LISTSUB} with "too many requests" after 5 tries; try again later.'
    )


async def test_a_used_up_monthly_quota_says_so() -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.fail(USER_LIST, code=90020, message="api调用次数超过限额", times=10)
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake), sleep=no_sleep)

    assert (refused.value.kind, refused.value.code) == ("quota_exhausted", 90020)
    assert str(refused.value).startswith(
        f"DingTalk refused POST {USER_LIST} (code 90020: api调用次数超过限额): the organization's monthly "
        "quota of API calls is used up."
    )


async def test_a_refused_token_is_renewed_once() -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.fail(USER_LIST, code=40014, message="不合法的access_token", times=1)
        directory = await read_directory(settings_for(fake))
        assert len(directory.people) == 5

        fake.fail(USER_LIST, code=40014, message="不合法的access_token", times=2)
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake))
    assert (refused.value.kind, refused.value.code) == ("api", 40014)


async def test_errcode_88_for_a_refused_token_is_not_a_missing_permission() -> None:
    # 88 is a wrapper: its sub_code says why; 40014 is a refused token, renewed once like a bare 40014
    message = "ding talk error[subcode=40014,submsg=不合法的access_token]"
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.fail(USER_LIST, code=88, sub_code=40014, message=message, times=1)
        directory = await read_directory(settings_for(fake), sleep=no_sleep)
        assert len(directory.people) == 5

        fake.fail(USER_LIST, code=88, sub_code=40014, message=message, times=2)
        tokens = fake.token_requests
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake), sleep=no_sleep)
        assert fake.token_requests == tokens + 2  # the first token, and the renewal after the refusal

        # the same wrapper with 60011 is one
        fake.fail(USER_LIST, code=88, sub_code=60011, message="ding talk error[subcode=60011]", times=2)
        with pytest.raises(DirectoryError) as denied:
            await read_directory(settings_for(fake), sleep=no_sleep)

    assert (refused.value.kind, refused.value.code) == ("api", 88)
    assert "Grant the app" not in str(refused.value)
    assert (denied.value.kind, denied.value.code, denied.value.scopes) == (
        "permission",
        88,
        ("qyapi_get_department_member",),
    )


async def test_a_missing_permission_names_the_call_and_what_to_grant() -> None:
    async with DingTalkFake() as fake:
        build_org(fake)
        fake.fail(USER_LIST, code=60011, message="没有调用该接口的权限")
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake))
        error = refused.value
        assert (error.kind, error.code, error.call, error.scopes) == (
            "permission",
            60011,
            f"POST {USER_LIST}",
            ("qyapi_get_department_member",),
        )
        assert str(error) == (
            f"DingTalk refused POST {USER_LIST} (code 60011: 没有调用该接口的权限). Grant the app these "
            "permissions in the developer console, publish a new version of the app, and sync again: "
            "qyapi_get_department_member"
        )

        # errcode 88 with the permission named in the message: that name, not the default
        fake.fail(
            LISTSUB,
            code=88,
            message="ding talk error[subcode=60011,submsg=应用尚未开通所需的权限：[qyapi_get_member]]",
        )
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake))
    assert (refused.value.kind, refused.value.code, refused.value.scopes) == (
        "permission",
        88,
        ("qyapi_get_member",),
    )


async def test_no_email_for_anyone_asks_for_the_email_permission() -> None:
    # DingTalk leaves out the fields an app may not read rather than refusing the call
    async with DingTalkFake() as fake:
        fake.add_user("a", name="甲")
        fake.add_user("b", name="乙")
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake))

    assert (refused.value.kind, refused.value.count) == ("no_emails", 2)
    assert "邮箱等个人信息" in str(refused.value)


async def test_wrong_credentials_are_an_auth_error() -> None:
    async with DingTalkFake() as fake:
        with pytest.raises(DirectoryError) as refused:
            await read_directory(settings_for(fake, client_secret="not-the-secret"))

    assert refused.value.kind == "auth"
    assert "check DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET" in str(refused.value)


async def test_an_unreachable_dingtalk_is_a_network_error() -> None:
    async with DingTalkFake() as fake:
        url = fake.url
    with pytest.raises(DirectoryError) as refused:
        await read_directory(
            DingtalkSettings(client_id="id", client_secret="secret", api_url=url, oapi_url=url)
        )

    assert (refused.value.kind, refused.value.call) == ("network", "POST /v1.0/oauth2/accessToken")


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[DingTalkFake]:
    """A started fake for tests that run the (synchronous) command."""
    server = DingTalkFake()
    asyncio.run(server.start())
    build_org(server)
    yield server
    asyncio.run(server.stop())


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    isolate(monkeypatch, tmp_path)
    yield tmp_path
    settings_module.get_settings.cache_clear()


def cadence(*args: str, url: str, locale: str, fake: DingTalkFake | None = None) -> Result:
    """Run ``cadence ARGS`` as a fresh process would, pointed at ``fake``."""
    settings_module.get_settings.cache_clear()
    env = {"DATABASE_URL": url, "DEFAULT_LOCALE": locale, "DEFAULT_TIMEZONE": "Asia/Shanghai"}
    if fake is not None:
        env |= {
            "DINGTALK_CLIENT_ID": fake.client_id,
            "DINGTALK_CLIENT_SECRET": fake.client_secret,
            "DINGTALK_API_URL": fake.url,
            "DINGTALK_OAPI_URL": fake.url,
        }
    return CliRunner().invoke(main, list(args), env=env)


def test_the_command_syncs_and_speaks_english_and_chinese(
    db_url: str, fake: DingTalkFake, isolated: Path
) -> None:
    first = cadence("org", "sync", "dingtalk", url=db_url, locale="en", fake=fake)
    fake.update_user("emma", title="Staff Engineer")
    fake.remove_user("lilei")
    second = cadence("org", "sync", "dingtalk", url=db_url, locale="zh-CN", fake=fake)

    assert first.exit_code == 0, first.output
    assert first.stderr == "Reading the DingTalk directory…\nRead 5 people from DingTalk\n"
    assert first.stdout.startswith(
        "Synced 5 people from DingTalk — 5 added, 0 changed, 0 deactivated, 0 reactivated.\n\nAdded (5):\n"
    )
    assert "• li.lei@example.com\n" in first.stdout
    assert second.exit_code == 0, second.output
    assert second.stderr == "正在读取钉钉通讯录……\n已从钉钉读取 4 人\n"
    assert second.stdout == (
        "已从钉钉同步 4 人——新增 0 人，变更 1 人，停用 1 人，重新启用 0 人。\n\n"
        "变更（1 人）：\n"
        "• emma.smith@example.com（职位）\n\n"
        "停用（1 人）——已不在钉钉通讯录中，历史记录仍会保留：\n"
        "• li.lei@example.com\n"
    )


def test_a_permission_error_exits_non_zero_with_the_reason(
    db_url: str, fake: DingTalkFake, isolated: Path
) -> None:
    fake.fail(LISTSUB, code=60011, message="没有调用该接口的权限", times=2)
    english = cadence("org", "sync", "dingtalk", url=db_url, locale="en", fake=fake)
    chinese = cadence("org", "sync", "dingtalk", url=db_url, locale="zh-CN", fake=fake)

    assert english.exit_code == 1
    assert english.stdout == ""
    assert (
        f"DingTalk refused POST {LISTSUB} (code 60011: 没有调用该接口的权限). Grant the app these "
        "permissions in the developer console, publish a new version of the app, and sync again: "
        "qyapi_get_department_list"
    ) in english.stderr
    assert chinese.exit_code == 1
    assert chinese.stdout == ""
    assert (
        f"钉钉拒绝了 POST {LISTSUB}（错误码 60011：没有调用该接口的权限）。请在开发者后台为应用开通以下权限，"
        "发布新版本后重新同步：qyapi_get_department_list"
    ) in chinese.stderr


def test_the_command_refuses_when_dingtalk_is_not_configured(isolated: Path) -> None:
    url = f"sqlite:///{isolated / 'cli.db'}"
    english = cadence("org", "sync", "dingtalk", url=url, locale="en")
    chinese = cadence("org", "sync", "dingtalk", url=url, locale="zh-CN")

    assert english.exit_code == 1
    assert "DingTalk is not configured: set DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET." in english.stderr
    assert chinese.exit_code == 1
    assert "尚未配置钉钉：请设置 DINGTALK_CLIENT_ID、DINGTALK_CLIENT_SECRET。" in chinese.stderr


def test_dingtalk_is_one_of_the_sources(isolated: Path) -> None:
    result = cadence("org", "sync", "workday", url=f"sqlite:///{isolated / 'cli.db'}", locale="en")
    assert result.exit_code == 2
    assert "Invalid value for 'SOURCE': 'workday' is not one of 'dingtalk', 'feishu'." in result.output
