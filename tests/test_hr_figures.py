"""HR's figures of a cycle: completion, on-time rate and share of specific feedback per team and manager,
checked against hand-computed fixture data; ``stats`` in chat for HR, for a manager (their own team
only) and refused to an employee; ``cadence report`` as CSV (exact) and XLSX (read back), on each
database.

The fixture: monthly review cycle #1 for October 2026, deadline 31 October 23:59 in Shanghai.

Assignments, by their subject's team and direct manager (S = submitted on time, L = submitted late,
P = pending, X = expired):

    Engineering / 王芳:  李雷 S, Emma L, 张伟 S, 韩梅梅 P, and 王芳's manager part about 李雷 S
    Engineering / 陈杰:  王芳 S
    Product / Michael:   Sarah S, 徐静 X
    Product / 陈杰:      Michael P

1:1 records (items / specific), counted when written in October on the manager's calendar and about
someone in the cycle:

    王芳 → 李雷 10 Oct 3/2 · 王芳 → Emma 20 Oct 2/0 · 王芳 → 韩梅梅 1 Oct 00:30 Shanghai (30 Sep in UTC) 1/0
    Michael → Sarah 15 Oct 4/3 · Michael → Sarah 31 Oct 20:00 Los Angeles (1 Nov in UTC) 2/1
    陈杰 → 王芳 5 Oct 1/1
    not counted: 王芳 → 张伟 1 Nov 01:00 Shanghai (31 Oct in UTC) 5/5; James → Olivia (not in the
    cycle) 2/2; 王芳 → Raj (not in the cycle) 1/1; 王芳 → 张伟 never recorded 1/1

So:

    level    name         assigned submitted on time  items specific
    total    everyone        9        6        5       13     7      66.7% · 83.3% · 53.8%
    team     Engineering     6        5        4        7     3      83.3% · 80%   · 42.9%
    team     Product         3        1        1        6     4      33.3% · 100%  · 66.7%
    manager  Michael Brown   2        1        1        6     4      50%   · 100%  · 66.7%
    manager  王芳            5        4        3        6     2      80%   · 75%   · 33.3%
    manager  陈杰            2        1        1        1     1      50%   · 100%  · 100%
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner, Result

from bot import settings as settings_module
from bot.cli import main
from conversations import hr_figures
from conversations.hr_figures import Counts, Level, Ratio, period_window
from conversations.org_service import import_org_file
from conversations.ritual_loader import digest, load_catalog
from storage import audit, cycles, people
from storage.engine import Database
from storage.models import Assignment, Cycle, FeedbackItem, OneOnOne, Person
from tests.cli_env import isolate
from tests.harness import EMMA, HR, LILEI, MANAGER, SAMPLE_ORG, Chat

CEO = "chen.jie@example.com"
PM = "michael.brown@example.com"
DUE = datetime(2026, 10, 31, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
ON_TIME = datetime(2026, 10, 30, 3, 0, tzinfo=UTC)
LATE = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


def _at(day: int, hour: int = 4, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


async def seed_cycle(db: Database) -> int:
    """The cycle and records of the module docstring (the sample org already imported); the cycle's id."""
    ritual = load_catalog(None).get("monthly_review")
    async with db.sessions() as session, session.begin():
        rows = (await session.execute(Person.__table__.select())).mappings().all()  # type: ignore[attr-defined]
        ids = {r["email"]: r["id"] for r in rows}
        ritual_id = await cycles.ensure_ritual_definition(
            session, key=ritual.key, digest=digest(ritual), body=ritual.model_dump(mode="json", by_alias=True)
        )
        cycle, _ = await cycles.find_or_create_cycle(
            session,
            ritual_key=ritual.key,
            ritual_id=ritual_id,
            period="2026-10",
            scope={},
            due_at=DUE,
            started_by_id=ids[HR],
        )
        assert cycle.id is not None
        work = [
            (LILEI, LILEI, "self", ON_TIME),
            (EMMA, EMMA, "self", LATE),
            ("zhang.wei@example.com", "zhang.wei@example.com", "self", ON_TIME),
            ("han.meimei@example.com", "han.meimei@example.com", "self", None),
            (MANAGER, LILEI, "manager", ON_TIME),
            (MANAGER, MANAGER, "self", ON_TIME),
            ("sarah.johnson@example.com", "sarah.johnson@example.com", "self", ON_TIME),
            ("xu.jing@example.com", "xu.jing@example.com", "self", "expired"),
            (PM, PM, "self", None),
        ]
        for person, subject, part, done in work:
            status = "submitted" if isinstance(done, datetime) else (done or "pending")
            session.add(
                Assignment(
                    cycle_id=cycle.id,
                    person_id=ids[person],
                    subject_id=ids[subject],
                    part=part,
                    status=status,
                    submitted_at=done if isinstance(done, datetime) else None,
                )
            )
        records = [
            (MANAGER, LILEI, _at(10), 3, 2),
            (MANAGER, EMMA, _at(20), 2, 0),
            (MANAGER, "han.meimei@example.com", datetime(2026, 9, 30, 16, 30, tzinfo=UTC), 1, 0),
            (PM, "sarah.johnson@example.com", _at(15), 4, 3),
            (PM, "sarah.johnson@example.com", datetime(2026, 11, 1, 3, 0, tzinfo=UTC), 2, 1),
            (CEO, MANAGER, _at(5), 1, 1),
            (MANAGER, "zhang.wei@example.com", datetime(2026, 10, 31, 17, 0, tzinfo=UTC), 5, 5),
            ("james.wilson@example.com", "olivia.jones@example.com", _at(12), 2, 2),
            (MANAGER, "raj.patel@example.com", _at(12), 1, 1),
            (MANAGER, "zhang.wei@example.com", None, 1, 1),
        ]
        for manager, report, recorded, items, specific in records:
            record = OneOnOne(
                manager_id=ids[manager],
                report_id=ids[report],
                scheduled_at=recorded or _at(25),
                recorded_at=recorded,
            )
            session.add(record)
            await session.flush()
            assert record.id is not None
            for n in range(items):
                session.add(
                    FeedbackItem(
                        one_on_one_id=record.id, kind="strength", text=f"item {n}", specific=n < specific
                    )
                )
        return cycle.id


# ---- the computation ----------------------------------------------------------------------------------


def test_ratios_round_half_up_to_one_decimal() -> None:
    assert [Ratio(p, w).text for p, w in ((2, 3), (5, 6), (1, 8), (4, 5), (0, 5), (6, 11), (1, 1))] == [
        "66.7%",
        "83.3%",
        "12.5%",
        "80%",
        "0%",
        "54.5%",
        "100%",
    ]
    assert Ratio(1, 0).text is None and Ratio(1, 0).value is None
    assert Ratio(1, 40).text == "2.5%" and Ratio(1, 16).text == "6.3%"  # 6.25 rounds up, not to even


def test_cycle_periods() -> None:
    assert period_window("2026-W48") == (datetime(2026, 11, 23).date(), datetime(2026, 11, 30).date())
    assert period_window("2026-11") == (datetime(2026, 11, 1).date(), datetime(2026, 12, 1).date())
    assert period_window("2026-Q4") == (datetime(2026, 10, 1).date(), datetime(2027, 1, 1).date())
    assert period_window("2026-Q1") == (datetime(2026, 1, 1).date(), datetime(2026, 4, 1).date())
    assert period_window("2026-W60") is None and period_window("2026-13") is None
    assert period_window("spring") is None


def _flat(figures: hr_figures.Figures) -> list[tuple[str, str, tuple[int, ...]]]:
    return [
        (
            r.level.value,
            r.name,
            (r.counts.assigned, r.counts.submitted, r.counts.on_time, r.counts.items, r.counts.specific),
        )
        for r in (figures.total, *figures.teams, *figures.managers)
    ]


async def test_figures_from_the_fixture(db: Database) -> None:
    await import_org_file(db, SAMPLE_ORG)
    cycle_id = await seed_cycle(db)
    async with db.sessions() as session:
        cycle = await cycles.get_cycle(session, cycle_id=cycle_id)
        assert cycle is not None
        figures = await hr_figures.load(session, cycle)
    assert _flat(figures) == [
        ("total", "", (9, 6, 5, 13, 7)),
        ("team", "Engineering", (6, 5, 4, 7, 3)),
        ("team", "Product", (3, 1, 1, 6, 4)),
        ("manager", "Michael Brown", (2, 1, 1, 6, 4)),
        ("manager", "王芳", (5, 4, 3, 6, 2)),
        ("manager", "陈杰", (2, 1, 1, 1, 1)),
    ]
    total = figures.total.counts
    assert (total.completion.text, total.on_time_rate.text, total.specific_share.text) == (
        "66.7%",
        "83.3%",
        "53.8%",
    )
    assert figures.managers[1].email == MANAGER
    # a manager's view: themself and the managers below them (王芳 has none), no teams
    async with db.sessions() as session:
        wang = await people.by_email(session, email=MANAGER)
        assert wang is not None and cycle is not None
        reports = await people.reports_of(session, manager_id=wang.id)
        mine = await hr_figures.load(session, cycle, managers={wang.id, *reports})
    assert _flat(mine) == [("total", "", (5, 4, 3, 6, 2)), ("manager", "王芳", (5, 4, 3, 6, 2))]


def test_a_cycle_without_a_deadline_has_no_on_time_figures() -> None:
    cycle = Cycle(id=3, ritual_key="weekly_recap", ritual_id=1, period="2026-W48", due_at=None)
    rows = [hr_figures.AssignmentCounts("Sales", 7, 2, 1, 1)]
    figures = hr_figures.compute(cycle, rows, [], people={})
    assert figures.total.counts == Counts(assigned=2, submitted=1, on_time=0)
    assert figures.managers[0].level is Level.MANAGER and figures.managers[0].name == ""  # 7: unknown now
    _, table = hr_figures.table(figures, "en")
    assert table[0][8:10] == [None, None]
    assert hr_figures.row_name(figures.managers[0], "en") == "(no manager)"


# ---- stats in chat ------------------------------------------------------------------------------------


async def test_stats_for_hr_shows_every_team_and_manager(chat: Chat) -> None:
    assert chat.app is not None
    cycle_id = await seed_cycle(chat.app.db)
    reply = await chat.say(HR, "统计")
    assert f"【统计 · #{cycle_id} 月度复盘 2026-10】" in reply
    assert "周期内所有人：完成率 66.7%，按时率 83.3%，具体反馈占比 53.8% · 截止 2026-10-31" in reply
    assert "已提交 6/9（66.7%）· 按时 5/6（83.3%）· 具体 7/13（53.8%）" in reply
    for line in (
        "  • — 按团队 —: ",
        "  • Engineering: 已提交 5/6（83.3%）· 按时 4/5（80%）· 具体 3/7（42.9%）",
        "  • Product: 已提交 1/3（33.3%）· 按时 1/1（100%）· 具体 4/6（66.7%）",
        "  • — 按经理 —: ",
        "  • Michael Brown: 已提交 1/2（50%）· 按时 1/1（100%）· 具体 4/6（66.7%）",
        "  • 王芳: 已提交 4/5（80%）· 按时 3/4（75%）· 具体 2/6（33.3%）",
        "  • 陈杰: 已提交 1/2（50%）· 按时 1/1（100%）· 具体 1/1（100%）",
    ):
        assert line in reply.splitlines(), f"{line!r} not in:\n{reply}"
    # the same for a cycle named by number, in English for an English-speaking HR admin
    english = await chat.say("lucy.chen@example.com", f"stats #{cycle_id}")
    assert "Everyone in the cycle: completion 66.7%, on time 83.3%, specific feedback 53.8%" in english
    assert "  • Engineering: done 5/6 (83.3%) · on time 4/5 (80%) · specific 3/7 (42.9%)" in english
    audit = await chat.rows("select detail from auditlog where action = 'stats' order by id")
    assert len(audit) == 2


async def test_stats_for_a_manager_shows_their_own_team_only(chat: Chat) -> None:
    assert chat.app is not None
    cycle_id = await seed_cycle(chat.app.db)
    reply = await chat.say(MANAGER, f"统计 {cycle_id}")
    assert "你的团队：完成率 80%，按时率 75%，具体反馈占比 33.3%" in reply
    assert "  • 王芳: 已提交 4/5（80%）· 按时 3/4（75%）· 具体 2/6（33.3%）" in reply.splitlines()
    for other in ("Engineering", "Product", "Michael Brown", "陈杰"):
        assert other not in reply
    # the product manager sees only theirs
    product = await chat.say(PM, "stats")
    assert "Your team: completion 50%, on time 100%, specific feedback 66.7%" in product
    assert "王芳" not in product and "Engineering" not in product


async def test_stats_refused_to_an_employee_and_wrong_cycles(chat: Chat) -> None:
    assert chat.app is not None
    await chat.dialogue(EMMA, [("stats", "figures are for HR admins, and for managers about their own team")])
    refused = await chat.rows("select detail from auditlog where action = 'stats.refused'")
    assert len(refused) == 1
    await chat.dialogue(HR, [("统计", "目前没有进行中的周期"), ("统计 42", "没有编号为 #42 的周期")])
    await chat.dialogue("lucy.chen@example.com", [("stats abc", 'Write "stats" for the latest open cycle')])


# ---- cadence report ------------------------------------------------------------------------------------


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    isolate(monkeypatch, tmp_path)
    yield tmp_path
    settings_module.get_settings.cache_clear()


def _seeded(url: str) -> int:
    async def run() -> int:
        database = Database(url, pool_size=1)
        try:
            await import_org_file(database, SAMPLE_ORG)
            return await seed_cycle(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def cadence(*args: str, url: str, locale: str = "en") -> Result:
    settings_module.get_settings.cache_clear()
    return CliRunner().invoke(main, ["report", *args], env={"DATABASE_URL": url, "DEFAULT_LOCALE": locale})


EXPECTED_CSV = (
    "Cycle,Period,Level,Team / manager,Manager email,Assigned,Submitted,Completion rate,Submitted on time,"
    "On-time rate,Feedback items,Specific items,Specific share\r\n"
    "1,2026-10,Total,Everyone,,9,6,66.7%,5,83.3%,13,7,53.8%\r\n"
    "1,2026-10,Team,Engineering,,6,5,83.3%,4,80%,7,3,42.9%\r\n"
    "1,2026-10,Team,Product,,3,1,33.3%,1,100%,6,4,66.7%\r\n"
    "1,2026-10,Manager,Michael Brown,michael.brown@example.com,2,1,50%,1,100%,6,4,66.7%\r\n"
    "1,2026-10,Manager,王芳,wang.fang@example.com,5,4,80%,3,75%,6,2,33.3%\r\n"
    "1,2026-10,Manager,陈杰,chen.jie@example.com,2,1,50%,1,100%,1,1,100%\r\n"
)


def test_report_csv(db_url: str, isolated: Path) -> None:
    assert _seeded(db_url) == 1
    result = cadence("--cycle", "1", "--format", "csv", "--output", "figures.csv", url=db_url)
    assert result.exit_code == 0, result.output
    assert "Wrote figures.csv: cycle #1 (2026-10), 2 teams and 3 managers." in result.output
    raw = (isolated / "figures.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    assert raw[3:].decode("utf-8") == EXPECTED_CSV
    audit = asyncio.run(_audit(db_url))
    assert audit == [{"cycle": 1, "format": "csv", "output": "figures.csv"}]


async def _audit(url: str) -> list[object]:
    database = Database(url, pool_size=1)
    try:
        async with database.sessions() as session:
            return [entry.detail for entry in await audit.entries(session, action="report.export")]
    finally:
        await database.dispose()


def test_report_csv_in_chinese_with_the_default_file_name(db_url: str, isolated: Path) -> None:
    _seeded(db_url)
    result = cadence("--cycle", "#1", url=db_url, locale="zh-CN")
    assert result.exit_code == 0, result.output
    assert "已写入 cadence-cycle-1.csv：周期 #1（2026-10），2 个团队、3 位经理。" in result.output
    lines = (isolated / "cadence-cycle-1.csv").read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == (
        "周期,期间,层级,团队 / 经理,经理邮箱,应提交,已提交,完成率,"
        "按时提交,按时率,反馈条目,具体条目,具体反馈占比"
    )
    assert lines[1] == "1,2026-10,合计,全部,,9,6,66.7%,5,83.3%,13,7,53.8%"
    assert lines[5] == "1,2026-10,经理,王芳,wang.fang@example.com,5,4,80%,3,75%,6,2,33.3%"


def test_report_xlsx_reads_back_with_the_same_numbers(db_url: str, isolated: Path) -> None:
    _seeded(db_url)
    result = cadence("--cycle", "1", "--format", "xlsx", "--output", "figures.xlsx", url=db_url)
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(isolated / "figures.xlsx")
    sheet = book.active
    assert sheet is not None and sheet.title == "Cycle 1"
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0][:6] == ["Cycle", "Period", "Level", "Team / manager", "Manager email", "Assigned"]
    expected: list[list[str | int | float | None]] = [
        ["Total", "Everyone", None, 9, 6, 6 / 9, 5, 5 / 6, 13, 7, 7 / 13],
        ["Team", "Engineering", None, 6, 5, 5 / 6, 4, 4 / 5, 7, 3, 3 / 7],
        ["Team", "Product", None, 3, 1, 1 / 3, 1, 1.0, 6, 4, 4 / 6],
        ["Manager", "Michael Brown", "michael.brown@example.com", 2, 1, 1 / 2, 1, 1.0, 6, 4, 4 / 6],
        ["Manager", "王芳", "wang.fang@example.com", 5, 4, 4 / 5, 3, 3 / 4, 6, 2, 2 / 6],
        ["Manager", "陈杰", "chen.jie@example.com", 2, 1, 1 / 2, 1, 1.0, 1, 1, 1.0],
    ]
    assert len(rows) == 1 + len(expected)
    for got, want in zip(rows[1:], expected, strict=True):
        assert got[:2] == [1, "2026-10"]
        assert got[2:] == [pytest.approx(w) if isinstance(w, float) else w for w in want]
    # the rates are numbers shown as percentages: Excel can sum and chart them
    assert sheet.cell(row=2, column=8).number_format == "0.0%"
    # and the CSV of the same cycle says the same
    cadence("--cycle", "1", "--output", "figures.csv", url=db_url)
    csv_rows = [
        line.split(",") for line in (isolated / "figures.csv").read_text(encoding="utf-8-sig").splitlines()
    ]
    for got, line in zip(rows[1:], csv_rows[1:], strict=True):
        assert [str(v) for v in got[5:7]] == line[5:7]
        assert Ratio(int(line[6]), int(line[5])).text == line[7]


def test_report_of_an_unknown_cycle_names_it(db_url: str, isolated: Path) -> None:
    _seeded(db_url)
    result = cadence("--cycle", "99", "--format", "xlsx", url=db_url)
    assert result.exit_code == 1
    assert "There is no cycle #99." in result.output
    assert not (isolated / "cadence-cycle-99.xlsx").exists()
    bad = cadence("--cycle", "abc", url=db_url)
    assert bad.exit_code == 2 and '"abc" is not a cycle number' in bad.output
    chinese = cadence("--cycle", "99", url=db_url, locale="zh-CN")
    assert chinese.exit_code == 1 and "没有编号为 #99 的周期" in chinese.output
