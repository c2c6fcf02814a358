"""The 1:1 record (``1on1 @someone``) and key events (``note @someone …``) as transcripts, in English
(Michael Brown about Sarah Johnson) and Chinese (王芳 about 李雷), on both databases."""

from __future__ import annotations

import importlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.platforms.base import IncomingEvent
from conversations.action_items import DayProblem, LineProblem, parse_day, split_line
from conversations.i18n import LOCALES
from conversations.one_on_one_record import RITUAL_FILE, RITUAL_KEY
from conversations.ritual_loader import load_file
from storage import one_on_one_records as records
from storage.models import KeyEvent, OneOnOne, OneOnOnePair
from tests.harness import EMMA, HR, LILEI, MANAGER, QUARTERLY, Chat

BOSS = "michael.brown@example.com"  # en, Los Angeles, manages Sarah
SARAH = "sarah.johnson@example.com"
CEO = "chen.jie@example.com"  # above everyone: a manager up the chain

# answers no reading of "specific" could call vague (a task, a number, a date), and ones any would
STRENGTH = (
    "Ran the Q3 pricing research with 40 customer interviews and presented it to the exec team on Nov 12"
)
IMPROVEMENT = "Flag slipping deadlines in standup the same day: the Nov 3 release slipped 4 days unannounced"
RESOURCE = "A seat in the Reforge product strategy course in January (budget $2,000)"
ACTIONS = "Draft the Q1 pricing roadmap — Sarah — 2026-12-04\nBook the Reforge course — me — Dec 10"
VAGUE = "good job"
ZH_STRENGTH = "提前两天完成了计费系统迁移，11月20日上线，发票错误率从 3% 降到 0.5%"
ZH_IMPROVEMENT = "评审时先讲结论：11月15日的架构评审超时 40 分钟，下次先给出方案对比表"
ZH_RESOURCE = "参加 12 月的 Kubernetes 运维培训（预算 3000 元），并由张伟带两周值班"
ZH_VAGUE = "干得不错"


async def _record(chat: Chat, email: str, answers: list[str]) -> str:
    """``email`` answers each question in turn; returns what they were shown at the end."""
    shown = ""
    for said in answers:
        shown = await chat.say(email, said)
    return shown


async def _feedback(chat: Chat) -> list[tuple[Any, ...]]:
    rows = await chat.rows(
        "select f.kind, f.text, f.specific, f.nudged, f.kept_as_is from feedbackitem f order by f.id"
    )
    return [(k, t, bool(s), bool(n), bool(kept)) for k, t, s, n, kept in rows]


async def _audit(chat: Chat, action: str) -> list[tuple[Any, ...]]:
    return await chat.rows(
        "select a.actor_id, s.email from auditlog a left join person s on s.id = a.subject_id "
        "where a.action = :action order by a.id",
        action=action,
    )


async def _person_id(chat: Chat, email: str) -> int:
    return int(await chat.scalar("select id from person where email = :email", email=email))


# ---- whole records --------------------------------------------------------------------------------


async def test_a_manager_records_a_1on1_and_it_is_stored_with_the_report_told_their_items(chat: Chat) -> None:
    await chat.dialogue(
        BOSS,
        [
            ("1on1 @sarah", "Q1/4: What did Sarah Johnson do well?"),
            (STRENGTH, "Q2/4: What could Sarah Johnson do better?"),
            (IMPROVEMENT, "Q3/4: What resources or support does Sarah Johnson need?"),
            (RESOURCE, "Q4/4: What are the action items?"),
            (ACTIONS, "Draft the Q1 pricing roadmap — Sarah Johnson — 2026-12-04"),
        ],
    )
    done = await chat.say(BOSS, "submit")
    assert "Thank you! Your 1:1 record is submitted." in done
    assert "Recorded your 1:1 with Sarah Johnson." in done
    assert "action items: 2" in done
    assert "Sarah Johnson was sent the action items they own." in done
    assert await _feedback(chat) == [
        ("strength", STRENGTH, True, False, False),
        ("improvement", IMPROVEMENT, True, False, False),
        ("resource", RESOURCE, True, False, False),
    ]
    sarah, boss = await _person_id(chat, SARAH), await _person_id(chat, BOSS)
    assert await chat.rows(
        "select text, owner_id, report_id, cast(due_on as text), done_at from actionitem order by id"
    ) == [
        ("Draft the Q1 pricing roadmap", sarah, sarah, "2026-12-04", None),
        ("Book the Reforge course", boss, sarah, "2026-12-10", None),
    ]
    ((manager_id, report_id, recorded),) = await chat.rows(
        "select manager_id, report_id, recorded_at from oneonone"
    )
    assert (manager_id, report_id) == (boss, sarah) and recorded is not None
    told = await chat.inbox(SARAH)
    assert "Michael Brown recorded your 1:1 of 2026-11-27. These action items are yours:" in told
    assert "Draft the Q1 pricing roadmap: due 2026-12-04" in told
    assert "Book the Reforge course" not in told
    assert await _audit(chat, "oneonone.record") == [(boss, SARAH)]
    # a container, not a campaign: HR's open cycles do not list it
    assert "Sarah" not in await chat.say(HR, "周期 状态")


async def test_a_manager_records_a_1on1_in_chinese_and_a_vague_strength_is_improved(chat: Chat) -> None:
    await chat.dialogue(
        MANAGER,
        [
            ("一对一 @李雷", "第 1/4 题：李雷 哪些地方做得好？"),
            (ZH_VAGUE, "“干得不错”没有说清楚哪里做得好：“不错”放在谁身上都成立。能补充一个具体的例子吗？"),
            (ZH_STRENGTH, "已更新: " + ZH_STRENGTH),
            (ZH_IMPROVEMENT, "第 3/4 题"),
            (ZH_RESOURCE, "第 4/4 题"),
            ("整理迁移复盘文档 — 李雷 — 下周五\n申请培训预算 — 我 — 12月4日", "以下是你填写的全部内容"),
            ("提交", "已记录你与 李雷 的 1:1 面谈。"),
        ],
    )
    assert (await _feedback(chat))[0] == ("strength", ZH_STRENGTH, True, True, False)
    told = await chat.inbox(LILEI)
    assert "王芳 记录了你们 2026-11-27 的 1:1 面谈。以下行动项由你负责：" in told
    # the clock is Friday 27 Nov in Shanghai: "下周五" is the Friday of next week
    assert "整理迁移复盘文档: 截止 2026-12-04" in told


# ---- required fields, vague items --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("skip", "At least one strength is needed: what did Sarah Johnson do well?"),
        ("   ", "That was empty. Please type your answer."),
    ],
    ids=["skip", "empty"],
)
async def test_a_missing_strength_is_asked_for_again(chat: Chat, said: str, shown: str) -> None:
    await chat.say(BOSS, "1on1 @sarah")
    reply = await chat.say(BOSS, said)
    assert shown in reply
    assert "Q1/4: What did Sarah Johnson do well?" in reply
    assert (await chat.state(BOSS, RITUAL_KEY))[:2] == ("active", "strengths")
    assert "strengths" not in await chat.stored(BOSS, RITUAL_KEY)


async def test_missing_improvement_and_resource_are_asked_for_again_in_chinese(chat: Chat) -> None:
    await chat.dialogue(
        MANAGER,
        [
            ("一对一 @李雷", "第 1/4 题"),
            (ZH_STRENGTH, "第 2/4 题"),
            ("跳过", "至少需要写一项改进建议：李雷 可以在哪些方面改进？"),
            (ZH_IMPROVEMENT, "第 3/4 题"),
            ("跳过", "至少需要写一项资源需求：什么能帮到 李雷？"),
        ],
    )
    assert (await chat.state(MANAGER, RITUAL_KEY))[1] == "resources"


async def test_a_vague_item_kept_as_is_is_stored_as_not_specific(chat: Chat) -> None:
    await chat.dialogue(
        BOSS,
        [
            ("1on1 @sarah", "Q1/4"),
            (f"{STRENGTH}\n{VAGUE}", "“good job” doesn't say what went well: it names no task, result"),
            ("keep", "Kept as is: good job"),
        ],
    )
    assert (await chat.state(BOSS, RITUAL_KEY))[1] == "improvements"
    await _record(chat, BOSS, [IMPROVEMENT, RESOURCE, "skip", "submit"])
    assert await _feedback(chat) == [
        ("strength", STRENGTH, True, False, False),
        ("strength", VAGUE, False, True, True),
        ("improvement", IMPROVEMENT, True, False, False),
        ("resource", RESOURCE, True, False, False),
    ]


async def test_keep_as_is_by_its_button_and_an_old_click_changes_nothing(chat: Chat) -> None:
    await chat.say(BOSS, "1on1 @sarah")
    await chat.say(BOSS, VAGUE)
    ((label, keep),) = chat.last_buttons(BOSS)
    assert label == "Keep as is"
    assert "Q2/4" in await chat.click(BOSS, keep)
    assert "already been answered" in await chat.click(BOSS, keep)
    assert (await chat.state(BOSS, RITUAL_KEY))[1] == "improvements"
    stored = await chat.stored(BOSS, RITUAL_KEY)
    assert stored["strengths"] == ([VAGUE], False)
    assert stored["__quality_strengths__"][0] == [
        {"text": VAGUE, "specific": False, "nudged": True, "kept_as_is": True}
    ]


async def test_a_vague_item_improved_is_stored_improved_and_asked_about_once(chat: Chat) -> None:
    await chat.dialogue(
        BOSS,
        [
            ("1on1 @sarah", "Q1/4"),
            (STRENGTH, "Q2/4"),
            ("communicate more", "“communicate more” doesn't say what to do differently"),
            (IMPROVEMENT, "Updated: " + IMPROVEMENT),
            ("training", "“training” doesn't say what exactly Sarah Johnson needs"),
            # the one request was made: a still vague rewrite is taken as it is
            ("more training", "Q4/4"),
        ],
    )
    await _record(chat, BOSS, ["skip", "submit"])
    assert await _feedback(chat) == [
        ("strength", STRENGTH, True, False, False),
        ("improvement", IMPROVEMENT, True, True, False),
        ("resource", "more training", False, True, False),
    ]


async def test_an_unchanged_item_is_not_asked_about_again_after_an_edit(chat: Chat) -> None:
    await chat.say(BOSS, "1on1 @sarah")
    await _record(chat, BOSS, [VAGUE, "keep", IMPROVEMENT, RESOURCE, "skip"])
    await chat.say(BOSS, "edit 1")
    reply = await chat.say(BOSS, f"{VAGUE}\n{STRENGTH}")
    assert "Here is everything you wrote" in reply
    assert "doesn't say" not in reply


# ---- action items -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ("Draft the roadmap", "Action item 1 (“Draft the roadmap”) needs an owner and a date"),
        ("Draft the roadmap — me", "Action item 1 (“Draft the roadmap — me”) needs a date"),
        ("Draft the roadmap — Friday", "needs an owner"),
        ("Draft the roadmap — @nobody.here — Friday", "Action item 1: I don't know who “@nobody.here” is."),
        ("Draft the roadmap — me — someday", "Action item 1: “someday” is not a date I can read."),
        ("Draft the roadmap — me — 2025-01-10", "Action item 1: 2025-01-10 is already past."),
        ("Book the course — me — Dec 10\nDraft — them — 31 Feb", "Action item 2: “31 Feb” is not a date"),
    ],
    ids=["nothing", "no-date", "no-owner", "unknown-owner", "unreadable-date", "past-date", "second-item"],
)
async def test_an_action_item_that_cannot_be_read_is_refused_naming_what_is_wrong(
    chat: Chat, said: str, reason: str
) -> None:
    await chat.say(BOSS, "1on1 @sarah")
    await _record(chat, BOSS, [STRENGTH, IMPROVEMENT, RESOURCE])
    reply = await chat.say(BOSS, said)
    assert reason in reply
    assert "Q4/4" in reply
    assert "action_items" not in await chat.stored(BOSS, RITUAL_KEY)


async def test_action_item_owners_by_mention_name_and_me_and_dates_in_words(chat: Chat) -> None:
    await chat.say(MANAGER, "面谈 @li.lei")
    await _record(chat, MANAGER, [ZH_STRENGTH, ZH_IMPROVEMENT, ZH_RESOURCE])
    reply = await chat.say(
        MANAGER, "带李雷熟悉值班 — @zhang.wei — 明天\n评审设计文档 — 我 — 周三\n写迁移复盘 — TA — 2026/12/8"
    )
    assert "带李雷熟悉值班 — 张伟 — 2026-11-28" in reply
    assert "评审设计文档 — 王芳 — 2026-12-02" in reply
    assert "写迁移复盘 — 李雷 — 2026-12-08" in reply
    await chat.say(MANAGER, "提交")
    owners = await chat.rows(
        "select p.email from actionitem a join person p on p.id = a.owner_id order by a.id"
    )
    assert owners == [("zhang.wei@example.com",), (MANAGER,), (LILEI,)]
    # only the report is told (the others' items are the manager's to pass on)
    assert "写迁移复盘" in await chat.inbox(LILEI)
    assert await chat.inbox("zhang.wei@example.com") == ""


def test_dates_and_lines_are_read_in_both_languages() -> None:
    friday = date(2026, 11, 27)
    assert parse_day("tomorrow", today=friday) == date(2026, 11, 28)
    assert parse_day("by Friday", today=friday) == date(2026, 12, 4)
    assert parse_day("next tue", today=friday) == date(2026, 12, 1)
    assert parse_day("in 2 weeks", today=friday) == date(2026, 12, 11)
    assert parse_day("两周后", today=friday) == date(2026, 12, 11)
    assert parse_day("下周五", today=friday) == date(2026, 12, 4)
    assert parse_day("周一前", today=friday) == date(2026, 11, 30)
    assert parse_day("月底", today=friday) == date(2026, 11, 30)
    assert parse_day("１２月５日", today=friday) == date(2026, 12, 5)
    assert parse_day("Jan 5", today=friday) == date(2027, 1, 5)
    assert parse_day("2026-11-01", today=friday) is DayProblem.PAST
    assert parse_day("soon", today=friday) is DayProblem.UNREADABLE
    line = split_line("Follow-up with the design — team — sync — me — Dec 1", today=friday)
    assert not isinstance(line, LineProblem)
    assert (line.text, line.owner, line.day) == ("Follow-up with the design — team — sync", "me", "Dec 1")
    assert split_line("整理文档——我——周五", today=friday) == split_line("整理文档 — 我 — 周五", today=friday)


# ---- who may ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "shown", "subject"),
    [
        pytest.param(LILEI, "一对一 @emma.smith", "只有经理可以记录与下属的 1:1 面谈。", None, id="employee"),
        pytest.param(HR, "一对一 @li.lei", "只有经理可以记录与下属的 1:1 面谈。", None, id="hr"),
        pytest.param(
            BOSS,
            "1on1 @li.lei",
            "李雷 does not report to you, so a 1:1 with them is not yours to record.",
            LILEI,
            id="another-team's-manager",
        ),
    ],
)
async def test_only_the_reports_managers_may_record_a_1on1(
    chat: Chat, email: str, said: str, shown: str, subject: str | None
) -> None:
    await chat.say_changing_nothing(email, said, shown)
    assert await chat.scalar("select count(*) from oneonone") == 0
    assert await _audit(chat, "oneonone.record.refused") == [(await _person_id(chat, email), subject)]


async def test_a_manager_up_the_chain_may_record_a_1on1(chat: Chat) -> None:
    assert "第 1/4 题：李雷 哪些地方做得好？" in await chat.say(CEO, "一对一 @李雷")


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("1on1", 'Usage: right after a 1:1, send "1on1 @name"'),
        ("1on1 @nobody.here", 'I don\'t know who "@nobody.here" is.'),
    ],
)
async def test_1on1_without_someone_it_knows_says_how(chat: Chat, said: str, shown: str) -> None:
    await chat.say_changing_nothing(BOSS, said, shown)


async def test_schedule_words_go_to_the_schedule(chat: Chat) -> None:
    await chat.say(BOSS, "1on1 @sarah every 2 weeks")
    assert await chat.rows("select every_days from oneononepair") == [(14,)]
    assert await chat.scalar("select count(*) from assignment") == 0


async def test_without_the_schedule_module_schedule_words_say_so(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def without_schedule(name: str, *args: Any) -> Any:
        if name == "conversations.one_on_one_schedule":
            raise ModuleNotFoundError(name=name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_schedule)
    reply = await chat.say_changing_nothing(BOSS, "1on1 @sarah every 2 weeks", "not available yet")
    assert "Q1/4" not in reply


# ---- one conversation at a time, restarts, forms -------------------------------------------------------


async def test_a_restart_in_the_middle_resumes_where_it_was(chat: Chat) -> None:
    await chat.say(BOSS, "1on1 @sarah")
    await chat.say(BOSS, STRENGTH)
    await chat.say(BOSS, "training")  # Q2, vague: the request for an example is out
    await chat.restart()
    await chat.dialogue(
        BOSS,
        [
            ("me", "1:1 record 2026-11-27: in progress · question 2 of 4"),
            ("1on1 @sarah", "“training” doesn't say what to do differently"),
            (IMPROVEMENT, "Q3/4"),
        ],
    )
    await chat.restart()
    await _record(chat, BOSS, [RESOURCE, "skip", "submit"])
    assert [kind for kind, *_ in await _feedback(chat)] == ["strength", "improvement", "resource"]
    assert (await _feedback(chat))[1] == ("improvement", IMPROVEMENT, True, True, False)


async def test_another_conversation_in_progress_comes_first(chat: Chat) -> None:
    await chat.dialogue(HR, [(f"cycle start weekly --people {MANAGER}", "周期 #1")])
    await chat.inbox(MANAGER)
    reply = await chat.say_changing_nothing(MANAGER, "一对一 @李雷", "你正在填写每周回顾。")
    assert "稍后" in reply
    await chat.say(MANAGER, "稍后")
    assert "第 1/4 题：李雷 哪些地方做得好？" in await chat.say(MANAGER, "一对一 @李雷")
    assert "请先完成" in await chat.say(MANAGER, "一对一 @张伟")


async def test_a_second_record_the_same_day_is_its_own(chat: Chat) -> None:
    for _ in range(2):
        await chat.say(BOSS, "1on1 @sarah")
        await _record(chat, BOSS, [STRENGTH, IMPROVEMENT, RESOURCE, "none", "submit"])
    assert await chat.scalar("select count(*) from oneonone where recorded_at is not null") == 2
    assert await chat.scalar("select count(*) from actionitem") == 0


async def test_the_record_links_the_meeting_planned_around_now_and_shows_open_items(chat: Chat) -> None:
    boss, sarah = await _person_id(chat, BOSS), await _person_id(chat, SARAH)
    now = chat.clock.now
    assert chat.app is not None
    async with chat.app.db.sessions() as session, session.begin():
        pair = OneOnOnePair(manager_id=boss, report_id=sarah, created_at=now)
        session.add(pair)
        await session.flush()
        for at in (now - timedelta(hours=2), now + timedelta(days=14)):
            session.add(
                OneOnOne(pair_id=pair.id, manager_id=boss, report_id=sarah, scheduled_at=at, created_at=now)
            )
    await chat.say(BOSS, "1on1 @sarah")
    done = await _record(chat, BOSS, [STRENGTH, IMPROVEMENT, RESOURCE, ACTIONS, "submit"])
    assert "It is the record of the 1:1 planned for 2026-11-26 22:00." in done
    rows = await chat.rows(
        "select scheduled_at > recorded_at, recorded_at is not null from oneonone order by id"
    )
    assert [bool(recorded) for _, recorded in rows] == [True, False]
    # the next record starts with what is still open
    assert "Still open from an earlier 1:1: Draft the Q1 pricing roadmap — Sarah Johnson — 2026-12-04" in (
        await chat.say(BOSS, "1on1 @sarah")
    )


async def test_a_form_with_a_missing_field_stores_nothing_then_asks_about_a_vague_item(chat: Chat) -> None:
    assert chat.app is not None
    await chat.say(BOSS, "1on1 @sarah")
    assignment = await chat.scalar("select id from assignment")

    async def send(answers: dict[str, str]) -> str:
        body = json.dumps({"assignment_id": assignment, "answers": answers})
        event = IncomingEvent("console", uuid.uuid4().hex, BOSS, "form", text=body, email=BOSS)
        await chat.app.router.receive(event)  # type: ignore[union-attr]
        return await chat.inbox(BOSS)

    full = {"strengths": STRENGTH, "improvements": "", "resources": "training", "action_items": ACTIONS}
    reply = await send(full)
    assert "2. At least one improvement is needed: what could Sarah Johnson do better?" in reply
    assert "strengths" not in await chat.stored(BOSS, RITUAL_KEY)
    reply = await send({**full, "improvements": IMPROVEMENT})
    assert "“training” doesn't say what exactly Sarah Johnson needs" in reply
    assert "Here is everything you wrote" in await chat.say(BOSS, "keep")
    await chat.say(BOSS, "submit")
    assert (await _feedback(chat))[-1] == ("resource", "training", False, True, True)
    assert await chat.scalar("select count(*) from actionitem") == 2


# ---- key events ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "subject", "text", "shown"),
    [
        pytest.param(
            BOSS,
            "note @sarah didn't miss a single deadline this quarter: 4 releases on time",
            SARAH,
            "didn't miss a single deadline this quarter: 4 releases on time",
            "Noted for Sarah Johnson: “didn't miss a single deadline this quarter: 4 releases on time”.",
            id="english-apostrophe",
        ),
        pytest.param(
            MANAGER,
            "记录 @李雷 提前两天完成了计费迁移，11月20日上线",
            LILEI,
            "提前两天完成了计费迁移,11月20日上线",
            "已为 李雷 记下：",
            id="chinese",
        ),
        pytest.param(
            HR,
            "记录 @emma.smith 在 11 月的客户大会上做了 30 分钟的主题演讲",
            EMMA,
            "在 11 月的客户大会上做了 30 分钟的主题演讲",
            "它会出现在下一次面谈的议程和季度评估中",
            id="hr",
        ),
        pytest.param(
            BOSS,
            "note @Sarah Johnson shipped the Q4 pricing page on Nov 20, two days early",
            SARAH,
            "shipped the Q4 pricing page on Nov 20, two days early",
            "Noted for Sarah Johnson",
            id="full-name",
        ),
    ],
)
async def test_a_note_is_stored_for_the_agenda_and_assessment(
    chat: Chat, email: str, said: str, subject: str, text: str, shown: str
) -> None:
    reply = await chat.say(email, said)
    assert shown in reply
    assert "Tip:" not in reply and "小提示" not in reply
    rows = await chat.rows(
        "select s.email, a.email, k.text, k.specific from keyevent k "
        "join person s on s.id = k.subject_id join person a on a.id = k.author_id"
    )
    assert rows == [(subject, email, text, True)]
    assert [e for _, e in await _audit(chat, "note.write")] == [subject]


async def test_a_vague_note_is_kept_with_a_tip(chat: Chat) -> None:
    reply = await chat.say(BOSS, "note @sarah great work")
    assert "Noted for Sarah Johnson: “great work”." in reply
    assert "Tip: a concrete detail" in reply
    assert await chat.rows("select text, specific from keyevent") == [("great work", False)]


@pytest.mark.parametrize(
    ("email", "said", "shown"),
    [
        pytest.param(
            EMMA, "note @li.lei didn't review my PR", "Only managers (about their people) and HR", id="peer"
        ),
        pytest.param(
            BOSS, "note @li.lei shipped it", "Only 李雷's managers and HR can note events", id="other-team"
        ),
        pytest.param(BOSS, "note @sarah " + "x" * 1001, "That note is 1,001 characters", id="too-long"),
        pytest.param(BOSS, "note @sarah " + "x" * 102_400, "I can take at most 20,000", id="100-kb"),
        pytest.param(BOSS, "note @sarah", "Usage: note @name what happened", id="empty"),
    ],
)
async def test_a_note_that_cannot_be_taken_stores_nothing(
    chat: Chat, email: str, said: str, shown: str
) -> None:
    assert shown in await chat.say(email, said)
    assert await chat.scalar("select count(*) from keyevent") == 0


async def test_refused_notes_are_audited(chat: Chat) -> None:
    await chat.say(EMMA, "note @li.lei didn't review my PR")
    await chat.say(BOSS, "note @li.lei shipped it")
    assert await _audit(chat, "note.write.refused") == [
        (await _person_id(chat, EMMA), None),
        (await _person_id(chat, BOSS), LILEI),
    ]


async def test_the_quarters_notes_are_shown_beside_the_managers_assessment(chat: Chat) -> None:
    assert chat.app is not None
    await chat.say(MANAGER, "记录 @李雷 11月20日提前两天上线计费迁移")
    async with chat.app.db.sessions() as session, session.begin():
        # noted last quarter: not this assessment's
        session.add(
            KeyEvent(
                subject_id=await _person_id(chat, LILEI),
                author_id=await _person_id(chat, MANAGER),
                text="9月修复了支付回调超时",
                specific=True,
                created_at=datetime(2026, 9, 10, tzinfo=UTC),
            )
        )
    await chat.start_cycle(QUARTERLY, LILEI)
    await chat.submit_canned(QUARTERLY, LILEI)
    shown = await chat.inbox(MANAGER)
    assert "王芳 于 2026-11-27 记录: 11月20日提前两天上线计费迁移" in shown
    assert "支付回调" not in shown
    reads = await chat.rows(
        "select cast(detail as text) from auditlog where action = 'record.read' order by id"
    )
    assert any("key_events" in d for (d,) in reads)


# ---- what other modules read ----------------------------------------------------------------------------


async def test_storage_reads_records_open_items_and_key_events(chat: Chat) -> None:
    assert chat.app is not None
    await chat.say(BOSS, "note @sarah shipped the Q4 pricing page on Nov 20, two days early")
    await chat.say(BOSS, "1on1 @sarah")
    await _record(chat, BOSS, [f"{STRENGTH}\n{VAGUE}", "keep", IMPROVEMENT, RESOURCE, ACTIONS, "submit"])
    sarah, boss = await _person_id(chat, SARAH), await _person_id(chat, BOSS)
    async with chat.app.db.sessions() as session, session.begin():
        (found,) = await records.records_of(session, report_id=sarah)
        assert [(f.kind, f.specific, f.kept_as_is) for f in found.feedback] == [
            ("strength", True, False),
            ("strength", False, True),
            ("improvement", True, False),
            ("resource", True, False),
        ]
        assert found.manager_id == boss and found.recorded_at.tzinfo is not None
        assert await records.record(session, one_on_one_id=found.id) == found
        open_items = await records.open_action_items(session, report_id=sarah)
        assert [(i.text, i.due_on) for i in open_items] == [
            ("Draft the Q1 pricing roadmap", date(2026, 12, 4)),
            ("Book the Reforge course", date(2026, 12, 10)),
        ]
        assert await records.open_action_items(session, report_id=sarah, manager_id=sarah) == []
        assert await records.mark_action_item_done(
            session, action_item_id=open_items[0].id, at=datetime(2026, 12, 1, tzinfo=UTC)
        )
        assert len(await records.open_action_items(session, report_id=sarah)) == 1
        (event,) = await records.key_events(
            session, subject_id=sarah, since=chat.clock.now - timedelta(days=1)
        )
        assert (event.author_name, event.specific) == ("Michael Brown", True)
        assert (
            await records.key_events(session, subject_id=sarah, since=chat.clock.now + timedelta(days=1))
            == []
        )


def test_the_record_question_set_has_every_text_in_both_languages_and_stays_out_of_the_catalog() -> None:
    ritual = load_file(RITUAL_FILE)
    assert ritual.key == RITUAL_KEY == Path(RITUAL_FILE).stem
    texts = [ritual.title, ritual.description] + [
        x for s in ritual.parts[0].steps for x in (s.prompt, s.hint) if x is not None
    ]
    for text_ in texts:
        assert text_ is not None
        assert all(text_.get(loc).strip() for loc in LOCALES)
    from conversations.ritual_loader import load_catalog

    assert load_catalog().find("one_on_one_record") is None


def test_the_texts_named_at_run_time_exist_in_both_languages() -> None:
    from conversations.i18n import catalog
    from conversations.one_on_one_record import FEEDBACK

    built = (
        [f"oneonone.action_{p}" for p in LineProblem]
        + [f"oneonone.date_{p}" for p in DayProblem]
        + [f"oneonone.{k}_{kind}" for kind in FEEDBACK.values() for k in ("need", "nudge")]
        + [f"oneonone.field_{step}" for step in FEEDBACK]
    )
    for locale in LOCALES:
        assert [key for key in built if key not in catalog()[locale]] == []
