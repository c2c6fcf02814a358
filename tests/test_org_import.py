"""Org import on SQLite and PostgreSQL: the sample org, re-imports, refusals that change nothing, the tree."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from conversations.org_import import OrgImportError, parse_org_file
from conversations.org_service import (
    ImportReport,
    format_problems,
    format_report,
    import_org_file,
    org_tree_text,
)
from storage.engine import Database
from storage.models import AuditLog, Identity, Person
from storage.org import get_person_by_email, list_people
from tests.harness import write_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE_YAML = EXAMPLES / "org.yaml"
SAMPLE_CSV = EXAMPLES / "org.csv"


def sample_people() -> list[dict[str, Any]]:
    """The sample org as plain dicts, to edit and write back."""
    data = yaml.safe_load(SAMPLE_YAML.read_text(encoding="utf-8"))
    return list(data["people"])


def write_yaml(tmp_path: Path, people: list[dict[str, Any]], name: str = "org.yaml") -> Path:
    return write_file(tmp_path, name, yaml.safe_dump({"people": people}, allow_unicode=True))


def edit(people: list[dict[str, Any]], email: str, **changes: Any) -> list[dict[str, Any]]:
    return [{**p, **changes} if p["email"] == email else p for p in people]


async def snapshot(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every column of every person and identity row, to prove a refused import wrote nothing."""
    async with db.sessions() as s:
        people = (await s.exec(select(Person).order_by(col(Person.id)))).all()
        identities = (await s.exec(select(Identity).order_by(col(Identity.id)))).all()
        return [p.model_dump() for p in people], [i.model_dump() for i in identities]


async def person(db: Database, email: str) -> Person:
    async with db.sessions() as s:
        found = await get_person_by_email(s, email=email)
    assert found is not None, email
    return found


async def test_sample_org_is_imported(db: Database) -> None:
    report = await import_org_file(db, SAMPLE_YAML)

    assert (report.total, len(report.added), report.changed, report.deactivated) == (20, 20, [], [])
    assert format_report(report, "en").startswith(
        "Imported org.yaml: 20 people — 20 added, 0 changed, 0 deactivated, 0 reactivated."
    )
    li_lei, wang_fang, zhao_min = [
        await person(db, e) for e in ("li.lei@example.com", "wang.fang@example.com", "zhao.min@example.com")
    ]
    assert (li_lei.name, li_lei.locale, li_lei.department, li_lei.manager_id) == (
        "李雷",
        "zh-CN",
        "Engineering",
        wang_fang.id,
    )
    assert wang_fang.roles == "employee,manager"
    assert (zhao_min.name, zhao_min.roles, zhao_min.locale) == ("赵敏", "employee,hr", "zh-CN")
    emma = await person(db, "emma.smith@example.com")
    assert (emma.locale, emma.timezone, emma.country, emma.manager_id) == (
        "en",
        "America/Los_Angeles",
        "US",
        wang_fang.id,
    )
    async with db.sessions() as s:
        audits = (await s.exec(select(AuditLog))).all()
    assert [(a.action, a.detail["added"], a.detail["total"]) for a in audits] == [("org.import", 20, 20)]


async def test_identities_are_stored(db: Database) -> None:
    await import_org_file(db, SAMPLE_YAML)
    li_lei = await person(db, "li.lei@example.com")
    async with db.sessions() as s:
        rows = (await s.exec(select(Identity).where(Identity.person_id == li_lei.id))).all()
    assert sorted((i.platform, i.tenant, i.external_id) for i in rows) == [
        ("feishu", "", "ou_4b6d8f0a2c4e6a8c0e2a4c6e8a0c2e04"),
        ("jira", "", "5f8a1b2c3d4e5f6a7b8c9d02"),
    ]


async def test_reimport_changes_nothing(db: Database) -> None:
    await import_org_file(db, SAMPLE_YAML)
    before = await snapshot(db)

    report = await import_org_file(db, SAMPLE_YAML)

    assert (report.added, report.changed, report.deactivated, report.reactivated) == ([], [], [], [])
    assert format_report(report, "en") == (
        "Imported org.yaml: 20 people, and everything was already up to date."
    )
    assert await snapshot(db) == before


async def test_changed_title_and_manager_are_reported(db: Database, tmp_path: Path) -> None:
    await import_org_file(db, SAMPLE_YAML)
    people = edit(sample_people(), "li.lei@example.com", title="高级后端工程师")
    people = edit(people, "emma.smith@example.com", manager_email="michael.brown@example.com")

    report = await import_org_file(db, write_yaml(tmp_path, people))

    assert report.changed == ["li.lei@example.com", "emma.smith@example.com"]
    assert report.changed_fields == {
        "li.lei@example.com": ("title",),
        "emma.smith@example.com": ("manager",),
    }
    text = format_report(report, "en")
    assert "• li.lei@example.com (title)" in text
    assert "• emma.smith@example.com (manager)" in text
    assert "• li.lei@example.com（职位）" in format_report(report, "zh-CN")
    assert (await person(db, "li.lei@example.com")).title == "高级后端工程师"
    michael = await person(db, "michael.brown@example.com")
    assert (await person(db, "emma.smith@example.com")).manager_id == michael.id


async def test_removed_person_is_deactivated_then_reactivated(db: Database, tmp_path: Path) -> None:
    await import_org_file(db, SAMPLE_YAML)
    without_wu = [p for p in sample_people() if p["email"] != "wu.hao@example.com"]

    report = await import_org_file(db, write_yaml(tmp_path, without_wu))

    assert (report.deactivated, report.added, report.changed) == (["wu.hao@example.com"], [], [])
    assert (await person(db, "wu.hao@example.com")).active is False
    async with db.sessions() as s:
        assert len(await list_people(s)) == 19
        assert len(await list_people(s, active_only=False)) == 20
    tree = await org_tree_text(db, locale="en")
    assert tree.endswith(
        "Deactivated (1):\n• 吴昊 <wu.hao@example.com> — 数据工程师, Engineering, Asia/Shanghai"
    )

    back = await import_org_file(db, SAMPLE_YAML)

    assert (back.reactivated, back.added, back.changed, back.deactivated) == (
        ["wu.hao@example.com"],
        [],
        [],
        [],
    )
    assert (await person(db, "wu.hao@example.com")).active is True
    assert "Reactivated (1):\n• wu.hao@example.com" in format_report(back, "en")


async def test_preferred_locale_survives_reimport(db: Database, tmp_path: Path) -> None:
    await import_org_file(db, SAMPLE_YAML)
    async with db.sessions() as s, s.begin():
        li_lei = await get_person_by_email(s, email="li.lei@example.com")
        assert li_lei is not None
        li_lei.preferred_locale = "en"
    # the org file changes the org-wide locale; the person's own choice stays
    people = edit(sample_people(), "li.lei@example.com", locale="en")

    report = await import_org_file(db, write_yaml(tmp_path, people))

    assert report.changed_fields == {"li.lei@example.com": ("locale",)}
    stored = await person(db, "li.lei@example.com")
    assert (stored.locale, stored.preferred_locale) == ("en", "en")
    await import_org_file(db, SAMPLE_YAML)
    stored = await person(db, "li.lei@example.com")
    assert (stored.locale, stored.preferred_locale) == ("zh-CN", "en")


async def test_leave_in_the_org_file_is_stored_and_an_empty_cell_keeps_leave_told_in_chat(
    db: Database, tmp_path: Path
) -> None:
    await import_org_file(
        db, write_yaml(tmp_path, edit(sample_people(), "li.lei@example.com", away_until="2026-12-10"))
    )
    assert str((await person(db, "li.lei@example.com")).away_until) == "2026-12-10"

    report = await import_org_file(db, SAMPLE_YAML)  # no away_until column: leave is not cleared

    assert report.changed_fields == {}
    assert str((await person(db, "li.lei@example.com")).away_until) == "2026-12-10"


async def test_csv_and_yaml_give_the_same_people(db: Database) -> None:
    def without_lines(path: Path) -> list[Any]:
        return [dataclasses.replace(r, line=0) for r in parse_org_file(path)]

    assert without_lines(SAMPLE_CSV) == without_lines(SAMPLE_YAML)
    await import_org_file(db, SAMPLE_YAML)
    before = await snapshot(db)

    report = await import_org_file(db, SAMPLE_CSV)

    assert report.nothing_changed
    assert await snapshot(db) == before


async def test_csv_import_on_an_empty_database(db: Database) -> None:
    report = await import_org_file(db, SAMPLE_CSV)
    assert len(report.added) == 20
    zhao = await person(db, "zhao.min@example.com")
    assert (zhao.name, zhao.roles) == ("赵敏", "employee,hr")


async def test_ids_may_move_between_people_in_one_import(db: Database, tmp_path: Path) -> None:
    await import_org_file(db, SAMPLE_YAML)
    people = edit(sample_people(), "emma.smith@example.com", ids={"slack": "U01RAJPATEL"})
    people = edit(people, "raj.patel@example.com", ids={"slack": "U01EMMASMITH"})

    report = await import_org_file(db, write_yaml(tmp_path, people))

    assert report.changed_fields == {
        "emma.smith@example.com": ("slack_id",),
        "raj.patel@example.com": ("slack_id",),
    }
    emma = await person(db, "emma.smith@example.com")
    async with db.sessions() as s:
        slack = (await s.exec(select(Identity).where(Identity.platform == "slack"))).all()
    assert {i.external_id for i in slack if i.person_id == emma.id} == {"U01RAJPATEL"}


# --- refusals: every problem named by line, and the database left exactly as it was ----------------

CYCLE = """\
people:
  - email: a@example.com
    name: A
    manager_email: c@example.com
  - email: b@example.com
    name: B
    manager_email: a@example.com
  - email: c@example.com
    name: C
    manager_email: b@example.com
"""
SELF_MANAGER = """\
- email: a@example.com
  name: A
- email: b@example.com
  name: B
  manager_email: B@Example.com
"""
UNKNOWN_MANAGER = """\
- email: a@example.com
  name: A
  manager_email: nobody@example.com
"""
DUPLICATE_EMAIL = """\
email,name
a@example.com,A
b@example.com,B
 A@example.com ,A again
"""
BAD_TIMEZONE = """\
email,name,timezone
a@example.com,A,Asia/Shanghai
b@example.com,B,Asia/Beijing
"""
UNKNOWN_ROLE = """\
- email: a@example.com
  name: A
  roles: [manager, boss]
"""
BROKEN_YAML = """\
people:
  - email: a@example.com
    name: A
  - email: b@example.com
     name: B
"""
CSV_WITHOUT_NAME = """\
email,manager_email
a@example.com,
"""
CSV_ROLE_STRING = """\
email,name,roles
a@example.com,A,manager|hr
b@example.com,B,employee;admin
"""

REFUSALS = [
    pytest.param(
        "org.yaml",
        CYCLE,
        "Lines 2, 8, 5: the manager chain goes round in a circle: "
        "a@example.com → c@example.com → b@example.com → a@example.com",
        id="cycle",
    ),
    pytest.param(
        "org.yaml", SELF_MANAGER, "Line 3: b@example.com is listed as their own manager", id="self-manager"
    ),
    pytest.param(
        "org.yml",
        UNKNOWN_MANAGER,
        "Line 1: the manager_email nobody@example.com is not anyone in this file",
        id="unknown-manager",
    ),
    pytest.param(
        "org.csv",
        DUPLICATE_EMAIL,
        "Lines 2, 4: the email a@example.com appears in more than one row",
        id="duplicate-email",
    ),
    pytest.param(
        "org.csv",
        BAD_TIMEZONE,
        "Line 3: Asia/Beijing is not an IANA time zone (for example Asia/Shanghai or America/Los_Angeles)",
        id="bad-timezone",
    ),
    pytest.param(
        "org.yaml",
        "people:\n  - {email: a@example.com, name: A, away_until: 2026-13-01}\n",
        "Line 2: away_until: 2026-13-01 is not a date like 2026-12-10",
        id="bad-away-date",
    ),
    pytest.param(
        "org.yaml",
        UNKNOWN_ROLE,
        "Line 1: unknown role boss (roles are employee, manager and hr)",
        id="unknown-role",
    ),
    pytest.param(
        "org.csv",
        CSV_ROLE_STRING,
        "Line 3: unknown role admin (roles are employee, manager and hr)",
        id="unknown-role-csv",
    ),
    pytest.param(
        "org.yaml",
        BROKEN_YAML,
        "Line 5: the YAML is broken here: mapping values are not allowed here",
        id="broken-yaml",
    ),
    pytest.param(
        "org.csv",
        CSV_WITHOUT_NAME,
        "Line 1: the header row lacks the required column(s) name",
        id="csv-missing-header",
    ),
    pytest.param(
        "org.yaml",
        "",
        "the file lists no one; importing it would deactivate everybody, so it was refused",
        id="empty-file",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), REFUSALS)
async def test_refused_file_names_the_rows_and_writes_nothing(
    db: Database, tmp_path: Path, name: str, text: str, message: str
) -> None:
    await import_org_file(db, SAMPLE_YAML)
    before = await snapshot(db)

    with pytest.raises(OrgImportError) as refused:
        await import_org_file(db, write_file(tmp_path, name, text))

    shown = format_problems(refused.value, "en")
    assert shown.splitlines() == [
        "The org file was not imported and nothing was changed. "
        "Please fix these 1 problem(s) and import it again:",
        f"• {message}",
    ]
    assert await snapshot(db) == before


async def test_every_problem_is_reported_in_line_order(db: Database, tmp_path: Path) -> None:
    text = """\
email,name,manager_email,timezone,locale,roles
a@example.com,A,,Mars/Olympus,fr,
not-an-email,B,a@example.com,,,
c@example.com,,ghost@example.com,,,hr
a@example.com,A twice,,,,
"""
    with pytest.raises(OrgImportError) as refused:
        await import_org_file(db, write_file(tmp_path, "org.csv", text))

    assert str(refused.value).splitlines() == [
        "Line 2: Mars/Olympus is not an IANA time zone (for example Asia/Shanghai or America/Los_Angeles)",
        "Line 2: unknown locale fr (use zh-CN or en)",
        "Lines 2, 5: the email a@example.com appears in more than one row",
        "Line 3: email not-an-email is not a valid email address",
        "Line 4: name is empty",
        "Line 4: the manager_email ghost@example.com is not anyone in this file",
    ]
    assert await snapshot(db) == ([], [])


async def test_platform_id_owned_by_someone_else_is_refused(db: Database, tmp_path: Path) -> None:
    await import_org_file(db, SAMPLE_YAML)
    before = await snapshot(db)
    newcomer = {"email": "new.hire@example.com", "name": "New Hire", "ids": {"slack": "U01EMMASMITH"}}
    # Emma stays, with no ids in the file: she keeps the Slack id the database gives her
    people = [{k: v for k, v in p.items() if k != "ids"} for p in sample_people()]
    path = write_yaml(tmp_path, [*people, newcomer])
    line = path.read_text(encoding="utf-8").splitlines().index("- email: new.hire@example.com") + 1

    with pytest.raises(OrgImportError) as refused:
        await import_org_file(db, path)

    assert (
        str(refused.value)
        == f"Line {line}: the Slack id U01EMMASMITH already belongs to emma.smith@example.com"
    )
    assert await snapshot(db) == before


async def test_problems_read_naturally_in_chinese(db: Database, tmp_path: Path) -> None:
    with pytest.raises(OrgImportError) as refused:
        await import_org_file(db, write_file(tmp_path, "org.csv", BAD_TIMEZONE + "a@example.com,A,UTC\n"))

    assert format_problems(refused.value, "zh-CN").splitlines() == [
        "组织架构文件没有导入，数据未作任何改动。请修正以下 2 个问题后重新导入：",
        "• 第 2、4 行：邮箱 a@example.com 出现在多行中",
        "• 第 3 行：Asia/Beijing 不是有效的 IANA 时区（例如 Asia/Shanghai 或 America/Los_Angeles）",
    ]


# --- the tree --------------------------------------------------------------------------------------


async def test_org_tree_shows_managers_and_reports(db: Database) -> None:
    await import_org_file(db, SAMPLE_YAML)

    lines = (await org_tree_text(db, locale="en")).splitlines()

    assert lines[0] == "Org chart (20 active people)"
    assert lines[1] == "陈杰 <chen.jie@example.com> — 首席执行官, Executive, Asia/Shanghai"
    engineering = lines.index("├─ 王芳 <wang.fang@example.com> — 工程经理, Engineering, Asia/Shanghai")
    reports = lines[engineering + 1 : engineering + 7]
    assert "│  ├─ 李雷 <li.lei@example.com> — 后端工程师, Engineering, Asia/Shanghai" in reports
    assert (
        "│  ├─ Emma Smith <emma.smith@example.com> — Software Engineer, Engineering, America/Los_Angeles"
        in reports
    )
    assert "Deactivated" not in "\n".join(lines)
    zh = await org_tree_text(db, locale="zh-CN")
    assert zh.startswith(
        "组织架构（在职 20 人）\n陈杰 <chen.jie@example.com> — 首席执行官，Executive，Asia/Shanghai"
    )


async def test_empty_org_tree(db: Database) -> None:
    assert await org_tree_text(db, locale="zh-CN") == "组织里还没有人员，请先导入组织架构文件。"


def test_report_lists_are_capped() -> None:
    report = ImportReport(source="big.csv", total=50, added=[f"p{i}@example.com" for i in range(50)])
    text = format_report(report, "en")
    assert "• p19@example.com" in text
    assert "• p20@example.com" not in text
    assert text.endswith("… and 30 more")
