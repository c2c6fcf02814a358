"""``cadence demo``: the sample org in a throw-away SQLite file, interactive or scripted.

The scripted session is a transcript that checks itself: HR starts a weekly cycle, Emma answers in
English, 李雷 answers in Chinese and stops halfway, the process restarts, 李雷 resumes and submits,
their manager looks at the team, and a monthly review follows. Exit 0 only if every check passed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.app import App
from bot.console_chat import ConsoleSession, repl
from bot.platforms.console import ConsolePlatform
from bot.settings import (
    DingtalkSettings,
    FeishuSettings,
    JiraSettings,
    QuietSettings,
    Settings,
    SlackSettings,
)
from conversations.i18n import t
from conversations.org_service import import_org_file
from storage import assignments, audit, cycles, people

SAMPLE_ORG = Path(__file__).resolve().parents[1] / "examples" / "org.yaml"
HR, EMMA, LILEI, MANAGER = (
    "zhao.min@example.com",
    "emma.smith@example.com",
    "li.lei@example.com",
    "wang.fang@example.com",
)


@dataclass(frozen=True)
class Line:
    """One thing said in the script and a piece of what the speaker must get back."""

    who: str
    said: str
    expect: str


RESTART = Line("", "", "")
SCRIPT: tuple[Line, ...] = (
    Line(HR, "cycle start weekly --dept Engineering", "#1"),
    Line(EMMA, "Shipped the billing export 🚀\nReviewed 3 PRs", "Q2/5"),
    Line(EMMA, "9", "1 to 5"),
    Line(EMMA, "4", "Q3/5"),
    Line(EMMA, "skip", "Q4/5"),
    Line(EMMA, "back", "Q3/5"),
    Line(EMMA, "Waiting on the design review", "Q4/5"),
    Line(EMMA, "Finish the onboarding guide", "Q5/5"),
    Line(EMMA, "no", "Submit"),
    Line(EMMA, "submit", "submitted"),
    Line(EMMA, "frobnicate", "don't know the command"),
    Line(LILEI, "完成了登录模块重构\n修复 3 个线上问题 ✅", "第 2/5 题"),
    Line(LILEI, "4", "第 3/5 题"),
    Line(LILEI, "暂停", "已暂停"),
    RESTART,
    Line(LILEI, "继续", "第 3/5 题"),
    Line(LILEI, "等待测试环境", "第 4/5 题"),
    Line(LILEI, "准备发布 v2.1", "第 5/5 题"),
    Line(LILEI, "是", "提交"),
    Line(LILEI, "提交", "已提交"),
    Line(EMMA, "cycle status", "only a manager"),
    Line(MANAGER, "周期 状态 1", "已提交"),
    Line(MANAGER, "查看 li.lei@example.com", "完成了登录模块重构"),
    Line(HR, "cycle start monthly --people emma.smith@example.com,li.lei@example.com", "#2"),
    Line(EMMA, "Launched the billing export to 40 customers", "Q2/7"),
    Line(EMMA, "2", "Q3/7"),
    Line(EMMA, "4", "Q4/7"),
    Line(EMMA, "Learned to run load tests with k6", "Q5/7"),
    Line(EMMA, "skip", "Q6/7"),
    Line(EMMA, "Migrate invoices to the new ledger", "Q7/7"),
    Line(EMMA, "skip", "Submit"),
    Line(EMMA, "submit", "submitted"),
    Line(HR, "cycle close 1", "#1"),
)


def demo_settings(folder: Path) -> Settings:
    """Settings of the demo alone: its own SQLite file, no platform, whatever the environment says."""
    return Settings(
        _env_file=None,
        database_url=f"sqlite:///{folder / 'demo.db'}",
        slack=SlackSettings(),
        feishu=FeishuSettings(),
        dingtalk=DingtalkSettings(),
        jira=JiraSettings(),
        # the sample org spans Shanghai and Los Angeles, whose daytimes never overlap: with quiet
        # hours on, half the demo's people would get their check-in tomorrow
        quiet=QuietSettings(enabled=False),
    )


async def _boot(settings: Settings, locale: str, *, show_others: bool = True) -> tuple[App, ConsoleSession]:
    console = ConsolePlatform()
    app = App(settings, platforms={"console": console})
    await app.start()
    return app, ConsoleSession(app, console, locale=locale, show_others=show_others)


async def _stored_checks(app: App) -> list[str]:
    """What must be in the database after the script; the problems found (none when it worked)."""
    async with app.db.sessions() as session:
        weekly = await cycles.completion(session, cycle_id=1)
        monthly = await cycles.completion(session, cycle_id=2)
        first = await cycles.get_cycle(session, cycle_id=1)
        lilei = await people.by_email(session, email=LILEI)
        assert lilei is not None
        his = await assignments.for_person(session, person_id=lilei.id, statuses=("submitted",))
        his_answers = [await assignments.answers_for(session, assignment_id=a.id) for a in his]
        hr_actions = [e for e in await audit.entries(session) if e.action.startswith("cycle.")]
    checks = [
        ("submitted weekly recaps", sum(r.status == "submitted" for r in weekly), 2),
        ("submitted monthly reviews", sum(r.status == "submitted" for r in monthly), 1),
        ("Chinese answers stored", sum("登录模块" in str(a.get("wins")) for a in his_answers), 1),
        ("closed cycles", int(first is not None and first.status == "closed"), 1),
        ("HR actions audited", len(hr_actions), 3),
    ]
    return [f"{what}: expected at least {want}, found {got}" for what, got, want in checks if got < want]


async def _scripted(settings: Settings, locale: str) -> int:
    started = time.monotonic()
    app, session = await _boot(settings, locale, show_others=False)
    await import_org_file(app.db, SAMPLE_ORG)
    checks = 0
    try:
        for line in SCRIPT:
            if line is RESTART:
                await app.stop()
                print("\n======== the process restarts ========")
                app, session = await _boot(settings, locale, show_others=False)
                continue
            print(f"\n{line.who}> {line.said}")
            got = "\n".join(s.text for s in await session.say(line.who, line.said))
            if line.expect not in got:
                print(
                    t(
                        "cli.scripted_failed",
                        locale,
                        problem=f"{line.who} said {line.said!r}, expected {line.expect!r}",
                    )
                )
                return 1
            checks += 1
        problems = await _stored_checks(app)
    finally:
        await app.stop()
    if problems:
        print(t("cli.scripted_failed", locale, problem="; ".join(problems)))
        return 1
    seconds = f"{time.monotonic() - started:.1f}"
    print("\n" + t("cli.scripted_ok", locale, checks=checks + 5, seconds=seconds))
    return 0


async def _interactive(settings: Settings, locale: str, folder: Path) -> int:
    app, session = await _boot(settings, locale)
    try:
        await import_org_file(app.db, SAMPLE_ORG)
        print(t("cli.demo_title", locale, path=folder))
        print(t("cli.demo_steps", locale))
        await repl(session, HR)
    finally:
        await app.stop()
    return 0


async def run_demo(*, scripted: bool, keep: bool, locale: str = "zh-CN") -> int:
    """Run the demo in a fresh temporary folder; returns the process exit code."""
    folder = Path(tempfile.mkdtemp(prefix="cadence-demo-"))
    settings = demo_settings(folder)
    try:
        if scripted:
            return await _scripted(settings, locale)
        return await _interactive(settings, locale, folder)
    finally:
        if keep:
            print(t("cli.demo_done", locale, path=folder))
        else:
            shutil.rmtree(folder, ignore_errors=True)
