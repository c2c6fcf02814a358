"""`cadence org sync feishu` on SQLite and PostgreSQL: the real lark-oapi SDK reads the fake's directory
over real sockets; people are added, changed, linked by email and deactivated, never deleted."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlmodel import col, select

from bot import settings as settings_module
from bot.cli import main
from bot.platforms.feishu_directory import feishu_client, read_directory
from bot.settings import FeishuSettings
from conversations.org_service import import_org_file
from conversations.org_sync import (
    DirectoryError,
    DirectoryPerson,
    OrgSyncError,
    SyncReport,
    format_sync_refusal,
    format_sync_report,
    plan_rows,
    sync_directory,
)
from storage.engine import Database
from storage.models import AuditLog, Identity, Person
from storage.org import get_person_by_email
from tests.cli_env import isolate
from tests.fakes.feishu import FeishuFake
from tests.harness import write_file

CEO, MANAGER, LILEI, EMMA, HR = (
    "chen.jie@example.com",
    "wang.fang@example.com",
    "li.lei@example.com",
    "emma.smith@example.com",
    "zhao.min@example.com",
)
_APP_IDS = itertools.count(1)


def app_id() -> str:
    # lark-oapi caches tenant tokens process-wide by app id: each fake gets an app of its own
    return f"cli_orgsync{next(_APP_IDS):03d}{uuid.uuid4().hex[:6]}"


def build_org(fake: FeishuFake) -> None:
    """Five people in four departments; Li Lei gives no time zone, Zhao Min only an enterprise email."""
    fake.add_department("od-exec", "Executive")
    fake.add_department("od-eng", "Engineering", leader="ou_wang")
    fake.add_department("od-backend", "Backend", parent="od-eng")
    fake.add_department("od-people", "People")
    fake.add_user(
        "ou_chen",
        name="陈杰",
        email="Chen.Jie@Example.com",
        departments=("od-exec",),
        time_zone="Asia/Shanghai",
        job_title="首席执行官",
    )
    fake.add_user(
        "ou_wang",
        name="王芳",
        email=MANAGER,
        departments=("od-eng",),
        leader="ou_chen",
        time_zone="Asia/Shanghai",
        job_title="工程经理",
    )
    fake.add_user("ou_li", name="李雷", email=LILEI, departments=("od-backend", "od-eng"), leader="ou_wang")
    fake.add_user(
        "ou_emma",
        name="Emma Smith",
        email=EMMA,
        departments=("od-eng",),
        leader="ou_wang",
        time_zone="America/Los_Angeles",
        job_title="Frontend Engineer",
    )
    fake.add_user(
        "ou_zhao",
        name="赵敏",
        enterprise_email=HR,
        departments=("od-people",),
        leader="ou_chen",
        time_zone="Asia/Shanghai",
    )


def client_for(fake: FeishuFake) -> Any:
    return feishu_client(FeishuSettings(app_id=fake.app_id, app_secret=fake.app_secret, domain=fake.url))


async def sync(fake: FeishuFake, db: Database) -> SyncReport:
    """Read the fake's directory through the SDK and apply it, as the command does."""
    directory = await read_directory(client_for(fake))
    return await sync_directory(
        db,
        platform="feishu",
        people=directory.people,
        source="feishu",
        default_timezone="Asia/Shanghai",
        default_locale="zh-CN",
    )


async def person(db: Database, email: str) -> Person:
    async with db.sessions() as s:
        found = await get_person_by_email(s, email=email)
    assert found is not None, email
    return found


async def feishu_ids(db: Database) -> dict[str, str]:
    """email -> Feishu open_id, for everyone who has one."""
    async with db.sessions() as s:
        rows = (
            await s.exec(
                select(Person.email, Identity.external_id)
                .join(Identity, col(Identity.person_id) == col(Person.id))
                .where(col(Identity.platform) == "feishu", col(Identity.tenant) == "")
            )
        ).all()
    return dict(rows)


async def snapshot(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with db.sessions() as s:
        people = (await s.exec(select(Person).order_by(col(Person.id)))).all()
        identities = (await s.exec(select(Identity).order_by(col(Identity.id)))).all()
        return [p.model_dump() for p in people], [i.model_dump() for i in identities]


# --- syncing -------------------------------------------------------------------------------------


async def test_first_sync_adds_people_with_managers_departments_time_zones_and_ids(db: Database) -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        report = await sync(fake, db)

    assert (report.total, sorted(report.added), report.changed, report.deactivated) == (
        5,
        sorted([CEO, MANAGER, LILEI, EMMA, HR]),
        [],
        [],
    )
    assert format_sync_report(report, "en").startswith(
        "Synced 5 people from Feishu — 5 added, 0 changed, 0 deactivated, 0 reactivated."
    )
    chen, wang, li, emma, zhao = [await person(db, e) for e in (CEO, MANAGER, LILEI, EMMA, HR)]
    assert (chen.name, chen.department, chen.title, chen.manager_id, chen.roles) == (
        "陈杰",
        "Executive",
        "首席执行官",
        None,
        "employee,manager",
    )
    assert (wang.manager_id, wang.roles, wang.department) == (chen.id, "employee,manager", "Engineering")
    # in two departments: the first one listed; no time zone given: the defaults
    assert (li.department, li.manager_id, li.timezone, li.locale, li.roles) == (
        "Backend",
        wang.id,
        "Asia/Shanghai",
        "zh-CN",
        "employee",
    )
    assert (emma.timezone, emma.locale, emma.title, emma.manager_id) == (
        "America/Los_Angeles",
        "en",
        "Frontend Engineer",
        wang.id,
    )
    assert (zhao.email, zhao.locale, zhao.manager_id) == (HR, "zh-CN", chen.id)
    assert await feishu_ids(db) == {
        CEO: "ou_chen",
        MANAGER: "ou_wang",
        LILEI: "ou_li",
        EMMA: "ou_emma",
        HR: "ou_zhao",
    }
    async with db.sessions() as s:
        audits = (await s.exec(select(AuditLog))).all()
    assert [(a.action, a.detail["source"], a.detail["added"]) for a in audits] == [("org.sync", "feishu", 5)]


async def test_a_second_sync_reports_what_changed_in_feishu(db: Database) -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        await sync(fake, db)
        fake.update_user("ou_li", name="李雷雷", departments=("od-eng",), leader="ou_chen")
        fake.update_user("ou_emma", time_zone="Europe/London")
        report = await sync(fake, db)

    assert (report.added, report.deactivated, report.reactivated) == ([], [], [])
    assert report.changed_fields == {LILEI: ("name", "department", "manager"), EMMA: ("timezone",)}
    chen, li, emma = [await person(db, e) for e in (CEO, LILEI, EMMA)]
    assert (li.name, li.department, li.manager_id) == ("李雷雷", "Engineering", chen.id)
    # a new time zone does not change the language someone already reads
    assert (emma.timezone, emma.locale) == ("Europe/London", "en")
    assert format_sync_report(report, "en") == "\n".join(
        [
            "Synced 5 people from Feishu — 0 added, 2 changed, 0 deactivated, 0 reactivated.",
            "",
            "Changed (2):",
            "• li.lei@example.com (name, department, manager)",
            "• emma.smith@example.com (time zone)",
        ]
    )


async def test_a_sync_with_nothing_changed_says_so_and_writes_nothing(db: Database) -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        await sync(fake, db)
        before = await snapshot(db)
        report = await sync(fake, db)

    assert report.nothing_changed
    assert format_sync_report(report, "en") == (
        "Synced 5 people from Feishu, and everything was already up to date."
    )
    assert format_sync_report(report, "zh-CN") == "已从飞书同步 5 人，数据已是最新，无需改动。"
    assert await snapshot(db) == before


ORG_CSV = """\
email,name,manager_email,department,title,timezone,country,locale,roles,feishu_id
zhao.min@example.com,赵敏,,People,人力资源总监,Asia/Shanghai,CN,zh-CN,hr,
lucy.chen@example.com,Lucy Chen,zhao.min@example.com,People,HR Business Partner,America/Los_Angeles,US,en,hr,
old.timer@example.com,Old Timer,,Sales,,Asia/Shanghai,CN,zh-CN,,ou_old
"""


async def test_leavers_are_deactivated_while_people_only_in_the_org_file_stay(
    db: Database, tmp_path: Path
) -> None:
    await import_org_file(db, write_file(tmp_path, "org.csv", ORG_CSV))
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        first = await sync(fake, db)
        fake.resign_user("ou_li")
        fake.remove_user("ou_emma")
        second = await sync(fake, db)

    # Zhao Min came from the org file: the same email ties her Feishu id to her, her HR role stays
    assert HR not in first.added
    assert first.changed_fields[HR] == ("manager", "feishu_id")
    zhao = await person(db, HR)
    assert (zhao.roles, zhao.title, zhao.country, zhao.active) == ("employee,hr", "人力资源总监", "CN", True)
    assert (await feishu_ids(db))[HR] == "ou_zhao"
    # Old Timer has a Feishu id but is not in Feishu: gone; Lucy Chen was never in Feishu: left alone
    assert first.deactivated == ["old.timer@example.com"]
    lucy = await person(db, "lucy.chen@example.com")
    assert (lucy.active, lucy.manager_id, lucy.roles) == (True, zhao.id, "employee,hr")

    assert sorted(second.deactivated) == sorted([LILEI, EMMA])
    assert second.changed == [] and second.added == []
    for email in (LILEI, EMMA, "old.timer@example.com"):
        assert (await person(db, email)).active is False  # the row and its history are kept
    assert (await person(db, "lucy.chen@example.com")).active is True
    assert (await person(db, HR)).roles == "employee,hr"
    text = format_sync_report(second, "en")
    assert "Deactivated (2) — no longer in Feishu; their history is kept:" in text


async def test_someone_back_in_feishu_is_reactivated(db: Database) -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        await sync(fake, db)
        fake.remove_user("ou_emma")
        await sync(fake, db)
        fake.add_user("ou_emma", name="Emma Smith", email=EMMA, departments=("od-eng",), leader="ou_wang")
        report = await sync(fake, db)

    assert (report.reactivated, report.added, report.deactivated) == ([EMMA], [], [])
    assert (await person(db, EMMA)).active is True


async def test_people_without_an_email_are_skipped_and_reported(db: Database) -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        fake.add_user("ou_noemail", name="无邮箱", departments=("od-eng",), leader="ou_wang")
        report = await sync(fake, db)

    assert report.total == 5
    assert report.skipped == ["无邮箱 (ou_noemail)"]
    assert "ou_noemail" not in (await feishu_ids(db)).values()
    assert format_sync_report(report, "en").endswith(
        "Skipped (1) — Feishu gives no email for them, and email is what ties people together:\n"
        "• 无邮箱 (ou_noemail)"
    )
    assert "跳过（1 人）" in format_sync_report(report, "zh-CN")


async def test_someone_already_linked_is_kept_when_their_email_is_hidden(db: Database) -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        await sync(fake, db)
        # e.g. the email permission was withdrawn: the open_id still says who this is
        fake.update_user("ou_emma", email=None)
        report = await sync(fake, db)

    assert (report.deactivated, report.skipped) == ([], [])
    assert (await person(db, EMMA)).active is True


async def test_an_empty_directory_is_refused(db: Database) -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        await sync(fake, db)
        before = await snapshot(db)
        for open_id in ("ou_chen", "ou_wang", "ou_li", "ou_emma", "ou_zhao"):
            fake.remove_user(open_id)
        with pytest.raises(OrgSyncError) as refused:
            await sync(fake, db)

    assert await snapshot(db) == before
    assert format_sync_refusal(refused.value, "en") == (
        "Nothing was changed: the sync from Feishu was refused because of 1 problem(s):\n"
        "• Feishu listed no one with an email; syncing would deactivate everyone linked to Feishu"
    )


async def test_a_feishu_id_that_belongs_to_someone_else_refuses_the_sync(
    db: Database, tmp_path: Path
) -> None:
    org = "email,name,feishu_id\nsomeone.else@example.com,Someone Else,ou_emma\n"
    await import_org_file(db, write_file(tmp_path, "org.csv", org))
    before = await snapshot(db)
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        with pytest.raises(OrgSyncError) as refused:
            await sync(fake, db)

    assert await snapshot(db) == before
    assert "the Feishu id ou_emma of emma.smith@example.com already belongs to someone.else@example.com" in (
        format_sync_refusal(refused.value, "en")
    )


async def test_pages_are_followed_and_people_in_several_departments_read_once() -> None:
    counts: list[int] = []
    async with FeishuFake(app_id=app_id()) as fake:
        fake.add_department("od-a", "A")
        fake.add_department("od-b", "B")
        for n in range(120):
            departments = ("od-a", "od-b") if n % 2 else ("od-b",)
            fake.add_user(f"ou_{n:03d}", name=f"P{n}", email=f"p{n}@example.com", departments=departments)
        directory = await read_directory(client_for(fake), progress=counts.append)
        pages = len(fake.calls_to("/find_by_department"))

    assert len(directory.people) == 120
    assert len({p.external_id for p in directory.people}) == 120
    assert {p.department for p in directory.people if int(p.external_id[3:]) % 2} == {"A"}
    # root (1 page), A (60 people: 2 pages), B (120 people: 3 pages)
    assert pages == 6
    assert counts == sorted(counts) and counts[-1] == 120


# --- the API saying no -------------------------------------------------------------------------------


async def test_a_rate_limited_call_is_retried_after_the_reset() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        fake.fail("/find_by_department", code=99991400, status=429, times=2)
        directory = await read_directory(client_for(fake), sleep=sleep)
        assert len(directory.people) == 5
        assert waits == [1.0, 1.0]

        fake.fail("/children", code=99991400, status=429, times=10)
        with pytest.raises(DirectoryError) as refused:
            await read_directory(client_for(fake), sleep=sleep)
    assert refused.value.kind == "rate_limited"
    assert "after 6 tries" in str(refused.value)


async def test_a_missing_permission_names_the_call_and_what_to_grant() -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        fake.fail("/find_by_department", code=99991672, times=1)
        with pytest.raises(DirectoryError) as refused:
            await read_directory(client_for(fake))

    error = refused.value
    assert (error.kind, error.code, error.call) == (
        "permission",
        99991672,
        "GET /open-apis/contact/v3/users/find_by_department",
    )
    assert "contact:user.email:readonly" in error.scopes
    assert str(error).startswith(
        "Feishu refused GET /open-apis/contact/v3/users/find_by_department (code 99991672:"
    )


async def test_no_email_for_anyone_asks_for_the_email_permission() -> None:
    # Feishu leaves out the fields an app may not read rather than refusing the call
    async with FeishuFake(app_id=app_id()) as fake:
        fake.add_user("ou_a", name="甲")
        fake.add_user("ou_b", name="乙")
        with pytest.raises(DirectoryError) as refused:
            await read_directory(client_for(fake))

    assert (refused.value.kind, refused.value.scopes) == ("no_emails", ("contact:user.email:readonly",))
    assert str(refused.value) == (
        "Feishu listed 2 people but not one email: grant the app the permission "
        "contact:user.email:readonly, publish a new version of the app, and sync again."
    )


async def test_a_department_outside_the_apps_range_says_so() -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        build_org(fake)
        fake.fail("/find_by_department", code=40004)
        with pytest.raises(DirectoryError) as refused:
            await read_directory(client_for(fake))

    assert (refused.value.kind, refused.value.code) == ("data_range", 40004)
    assert "outside the app's contact data range" in str(refused.value)


async def test_wrong_credentials_are_an_auth_error() -> None:
    async with FeishuFake(app_id=app_id()) as fake:
        settings = FeishuSettings(app_id=fake.app_id, app_secret="not-the-secret", domain=fake.url)
        with pytest.raises(DirectoryError) as refused:
            await read_directory(feishu_client(settings))

    assert (refused.value.kind, refused.value.code) == ("auth", 10014)
    assert "check FEISHU_APP_ID, FEISHU_APP_SECRET" in str(refused.value)


# --- the rules, without a server -------------------------------------------------------------------


def test_duplicate_emails_keep_the_first_and_a_manager_loop_is_cut() -> None:
    people = [
        DirectoryPerson("ou_a", "a@example.com", "A", manager_external_id="ou_c"),
        DirectoryPerson("ou_b", "b@example.com", "B", manager_external_id="ou_a"),
        DirectoryPerson("ou_c", "c@example.com", "C", manager_external_id="ou_b"),
        DirectoryPerson("ou_a2", "A@example.com", "A2"),
        DirectoryPerson("ou_s", "s@example.com", "S", manager_external_id="ou_s"),
        DirectoryPerson("ou_x", "x@example.com", "X", manager_external_id="ou_not_in_directory"),
    ]
    plan = plan_rows(
        people, platform="feishu", stored={}, owners={}, default_timezone="UTC", default_locale="en"
    )

    managers = {r.email: r.manager_email for r in plan.rows}
    assert managers == {
        "a@example.com": "c@example.com",
        "b@example.com": None,  # walking from A: A → C → B → A, and B's link closes the loop
        "c@example.com": "b@example.com",
        "s@example.com": None,
        "x@example.com": None,
    }
    assert [(p.code, dict(p.params).get("email")) for p in plan.problems] == [
        ("duplicate_email", "a@example.com"),
        ("self_manager", "s@example.com"),
        ("manager_cycle", "b@example.com"),
    ]
    assert plan.problems[2].params["chain"] == "a@example.com → c@example.com → b@example.com → a@example.com"
    assert {r.email: r.roles for r in plan.rows}["b@example.com"] == ("employee", "manager")


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FeishuFake]:
    """A started fake for tests that run the (synchronous) command."""
    server = FeishuFake(app_id=app_id())
    asyncio.run(server.start())
    build_org(server)
    yield server
    asyncio.run(server.stop())


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    isolate(monkeypatch, tmp_path)
    yield tmp_path
    settings_module.get_settings.cache_clear()


def cadence(*args: str, url: str, locale: str, fake: FeishuFake | None = None) -> Result:
    """Run ``cadence ARGS`` as a fresh process would, pointed at ``fake``."""
    settings_module.get_settings.cache_clear()
    env = {"DATABASE_URL": url, "DEFAULT_LOCALE": locale, "DEFAULT_TIMEZONE": "Asia/Shanghai"}
    if fake is not None:
        env |= {"FEISHU_APP_ID": fake.app_id, "FEISHU_APP_SECRET": fake.app_secret, "FEISHU_DOMAIN": fake.url}
    return CliRunner().invoke(main, list(args), env=env)


def test_the_command_syncs_and_speaks_english_and_chinese(
    db_url: str, fake: FeishuFake, isolated: Path
) -> None:
    first = cadence("org", "sync", "feishu", url=db_url, locale="en", fake=fake)
    fake.update_user("ou_emma", job_title="Staff Engineer")
    second = cadence("org", "sync", "feishu", url=db_url, locale="zh-CN", fake=fake)

    assert first.exit_code == 0, first.output
    assert first.stderr == "Reading the Feishu directory…\nRead 5 people from Feishu\n"
    assert first.stdout.startswith(
        "Synced 5 people from Feishu — 5 added, 0 changed, 0 deactivated, 0 reactivated.\n\nAdded (5):\n"
    )
    assert "• li.lei@example.com\n" in first.stdout
    assert second.exit_code == 0, second.output
    assert second.stderr == "正在读取飞书通讯录……\n已从飞书读取 5 人\n"
    assert second.stdout == (
        "已从飞书同步 5 人——新增 0 人，变更 1 人，停用 0 人，重新启用 0 人。\n\n"
        "变更（1 人）：\n"
        "• emma.smith@example.com（职位）\n"
    )


def test_a_permission_error_exits_non_zero_with_the_reason(
    db_url: str, fake: FeishuFake, isolated: Path
) -> None:
    fake.fail("/children", code=99991672, times=2)
    english = cadence("org", "sync", "feishu", url=db_url, locale="en", fake=fake)
    chinese = cadence("org", "sync", "feishu", url=db_url, locale="zh-CN", fake=fake)

    assert english.exit_code == 1
    assert english.stdout == ""
    assert (
        "Feishu refused GET /open-apis/contact/v3/departments/0/children (code 99991672: "
        "injected failure 99991672). Grant the app these permissions in the developer console, "
        "publish a new version of the app, and sync again: "
        "contact:contact.base:readonly, contact:department.base:readonly"
    ) in english.stderr
    assert chinese.exit_code == 1
    assert "飞书拒绝了 GET /open-apis/contact/v3/departments/0/children（错误码 99991672" in chinese.stderr
    assert "contact:department.base:readonly" in chinese.stderr


def test_the_command_refuses_when_feishu_is_not_configured(isolated: Path) -> None:
    url = f"sqlite:///{isolated / 'cli.db'}"
    english = cadence("org", "sync", "feishu", url=url, locale="en")
    chinese = cadence("org", "sync", "feishu", url=url, locale="zh-CN")

    assert english.exit_code == 1
    assert "Feishu is not configured: set FEISHU_APP_ID, FEISHU_APP_SECRET." in english.stderr
    assert chinese.exit_code == 1
    assert "尚未配置飞书：请设置 FEISHU_APP_ID、FEISHU_APP_SECRET。" in chinese.stderr


def test_an_unknown_source_is_a_usage_error(isolated: Path) -> None:
    result = cadence("org", "sync", "workday", url=f"sqlite:///{isolated / 'cli.db'}", locale="en")
    assert result.exit_code == 2
    assert "Invalid value for 'SOURCE': 'workday' is not one of" in result.output
