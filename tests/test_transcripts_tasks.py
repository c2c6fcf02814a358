"""What a person's task systems show, in the rituals and in chat: the weekly recap and the monthly review
open with the period's done, in-progress and overdue items (with links) and ask what they miss;
``me tasks`` lists recent items; ``connect tasks`` hands out an authorisation link."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.forms import FormService
from bot.platforms import dingtalk_render, feishu_cards, slack_blocks
from bot.platforms.base import IncomingEvent
from bot.settings import SchedulerSettings
from conversations.messages import Field_, Message
from conversations.ritual_loader import RitualFileError, load_file
from conversations.task_evidence import EVIDENCE, Window, fields, sort_out
from conversations.task_sources import TaskSources
from storage.clock import utcnow
from storage.tasks import AssigneeRow, PersonTask, insert_items, replace_assignees, tombstone
from tests.harness import EMMA, HR, LILEI, MONTHLY, WEEKLY, Chat, write_file

JIRA, FEISHU, DINGTALK = "jira", "feishu_task", "dingtalk_todo"
BROWSE = "https://acme.atlassian.net/browse/"
FEISHU_LINK = "https://applink.feishu.cn/client/todo/detail?guid="
RAJ = "raj.patel@example.com"  # nothing in the task systems
AUTH_URL = "https://open.feishu.cn/open-apis/authen/v1/authorize?app_id=cli_demo&state=s-1"


def utc(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def item(
    external_id: str,
    title: str,
    status: str,
    updated: datetime,
    *,
    key: str | None = None,
    completed: datetime | None = None,
    due: datetime | None = None,
    all_day: bool = False,
    status_raw: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """One stored item, as a sync writes it."""
    return {
        "external_id": external_id,
        "scope": "test",
        "external_key": key,
        "url": url,
        "title": title,
        "item_type": "task",
        "status_raw": status_raw,
        "status_category": status,
        "created_at": updated,
        "updated_at": updated,
        "due_at": due,
        "due_all_day": all_day,
        "completed_at": completed,
        "container": None,
        "estimate_points": None,
        "iteration": None,
        "labels": [],
        "content_hash": external_id,
        "raw": {},
    }


async def add_items(chat: Chat, email: str, source: str, *items: dict[str, Any]) -> None:
    """Store ``items`` of ``source`` assigned to ``email``, as the sync would."""
    assert chat.app is not None
    person_id = await chat.scalar("select id from person where email = :e", e=email)
    async with chat.app.db.sessions() as session, session.begin():
        ids = await insert_items(session, source=source, tenant="t", rows=list(items), now=utcnow())
        who = AssigneeRow(
            source_user_id=f"{source}-{person_id}", display_name=email, email=email, person_id=person_id
        )
        await replace_assignees(
            session, source=source, tenant="t", assignees={i: [who] for i in ids.values()}
        )


async def remove_item(chat: Chat, source: str, external_id: str) -> None:
    """The item was deleted at the source: the sync tombstones it."""
    assert chat.app is not None
    async with chat.app.db.sessions() as session, session.begin():
        await tombstone(
            session, source=source, tenant="t", external_id=external_id, reason="deleted", now=utcnow()
        )


# Emma (Los Angeles) on Friday 27 November 2026, 08:00 UTC (00:00 her time): week 48 is 23–29 November
EMMA_JIRA = [
    item(
        "1",
        "Fix the login redirect",
        "done",
        utc(11, 25, 18),
        key="PAY-812",
        completed=utc(11, 25, 18),
        status_raw="Done",
        url=BROWSE + "PAY-812",
    ),
    item(
        "2",
        "Add SSO to the admin console",
        "in_progress",
        utc(11, 26, 10),
        key="PAY-820",
        status_raw="In Review",
        url=BROWSE + "PAY-820",
    ),
    # done last week: this month's, not this week's
    item(
        "3",
        "Migrate the invoices table",
        "done",
        utc(11, 18),
        key="PAY-700",
        completed=utc(11, 18),
        url=BROWSE + "PAY-700",
    ),
    # done in October: neither this week's nor this month's
    item(
        "4",
        "Archive the October reports",
        "done",
        utc(10, 28),
        key="PAY-600",
        completed=utc(10, 28),
        url=BROWSE + "PAY-600",
    ),
    # due (all day) today where Emma is: not overdue, though midnight in Shanghai has passed
    item(
        "5",
        "Prepare the demo",
        "todo",
        utc(10, 1),
        key="PAY-830",
        due=utc(11, 26, 16),
        all_day=True,
        url=BROWSE + "PAY-830",
    ),
    item("6", "Dropped idea", "cancelled", utc(11, 26), key="PAY-840", url=BROWSE + "PAY-840"),
    item(
        "7",
        "Deleted issue",
        "done",
        utc(11, 25),
        key="PAY-999",
        completed=utc(11, 25),
        url=BROWSE + "PAY-999",
    ),
]
EMMA_FEISHU = [
    # due all day on 25 November (midnight in Shanghai), untouched since: overdue
    item(
        "g1",
        "Write the Q4 plan",
        "todo",
        utc(11, 1),
        key="t104121",
        due=utc(11, 24, 16),
        all_day=True,
        status_raw="todo",
        url=FEISHU_LINK + "g1",
    ),
    # due at a moment an hour ago
    item(
        "g2",
        "Send the offer letter",
        "todo",
        utc(11, 20),
        key="t104122",
        due=utc(11, 27, 7),
        url=FEISHU_LINK + "g2",
    ),
]
LILEI_JIRA = [
    item(
        "11",
        "重构支付网关",
        "done",
        utc(11, 26, 3),
        key="PAY-555",
        completed=utc(11, 26, 3),
        url=BROWSE + "PAY-555",
    ),
    item(
        "12",
        "接入新的风控接口",
        "in_progress",
        utc(11, 26, 5),
        key="PAY-560",
        status_raw="进行中",
        url=BROWSE + "PAY-560",
    ),
]
NOT_SHOWN = ("PAY-700", "PAY-600", "PAY-830", "PAY-840", "PAY-999", "PAY-555", "Buy a cake")


class Links:
    """A stand-in for bot's authorisation link maker: records who asked."""

    def __init__(self, url: str | None = AUTH_URL, *, fails: bool = False) -> None:
        self.url, self.fails = url, fails
        self.asked: list[tuple[int, str]] = []

    async def link(self, person_id: int, locale: str, *, session: object = None) -> str | None:
        self.asked.append((person_id, locale))
        if self.fails:
            raise RuntimeError("the OAuth state table is locked")
        return self.url


def enable(chat: Chat, *sources: str, links: Links | None = None) -> None:
    """Switch task sources on, as the composition root would from the settings."""
    assert chat.app is not None
    chat.app.engine.tasks = TaskSources(enabled=sources, auth_links=links)


@pytest.fixture
async def tasks(chat: Chat) -> Chat:
    """The sample org with Emma's and Li Lei's items stored, Jira and Feishu tasks switched on."""
    await add_items(chat, EMMA, JIRA, *EMMA_JIRA)
    await add_items(chat, EMMA, FEISHU, *EMMA_FEISHU)
    await add_items(
        chat, EMMA, DINGTALK, item("d1", "Buy a cake", "done", utc(11, 26), completed=utc(11, 26))
    )
    await add_items(chat, LILEI, JIRA, *LILEI_JIRA)
    await remove_item(chat, JIRA, "7")
    enable(chat, JIRA, FEISHU)
    return chat


def absent(shown: str, *words: str) -> None:
    for word in words:
        assert word not in shown, f"{word!r} should not be shown:\n{shown}"


async def evidence_record(chat: Chat, email: str, ritual: str) -> dict[str, Any]:
    stored = await chat.stored(email, ritual)
    value, skipped = stored[EVIDENCE]
    assert not skipped
    assert isinstance(value, dict)
    return value


# ---- the weekly recap ---------------------------------------------------------------------------------


async def test_weekly_recap_opens_with_the_weeks_tasks_and_stores_the_confirmation_and_additions(
    tasks: Chat,
) -> None:
    await tasks.dialogue(HR, [(f"cycle start weekly --people {EMMA}", "周期 #1")])
    opening = await tasks.inbox(EMMA)

    assert (
        "Your task systems (Jira, Feishu Tasks) show for 2026-11-23 – 2026-11-29: "
        "1 done, 1 in progress, 2 overdue.\n"
        "Q1/5: What else did you get done this week that the list below misses?"
    ) in opening
    assert f"• Done · Jira PAY-812: Fix the login redirect <{BROWSE}PAY-812>" in opening
    assert (
        f"• In progress · Jira PAY-820: Add SSO to the admin console · In Review <{BROWSE}PAY-820>" in opening
    )
    assert (
        f"• Overdue · Feishu Tasks t104121: Write the Q4 plan · due 2026-11-25 <{FEISHU_LINK}g1>" in opening
    )
    # a due moment is shown in Emma's time: 07:00 UTC is 23:00 the day before in Los Angeles
    assert (
        f"• Overdue · Feishu Tasks t104122: Send the offer letter · due 2026-11-26 23:00 <{FEISHU_LINK}g2>"
        in opening
    )
    assert opening.index("t104121") < opening.index("t104122")  # the longest overdue first
    assert "[1] Confirm the list" in opening
    absent(opening, *NOT_SHOWN)

    await tasks.dialogue(
        EMMA,
        [
            (
                "Reviewed the billing RFC\n- Mentored the new hire",
                "Saved: PAY-812 Fix the login redirect; Reviewed the billing RFC; Mentored the new hire",
            ),
            ("4", "Q3/5"),
            ("skip", "Q4/5"),
            ("Release 2.3", "Q5/5"),
            ("no", "Here is everything you wrote"),
            ("submit", "Thank you! Your Weekly recap is submitted."),
        ],
    )
    stored = await tasks.stored(EMMA, WEEKLY)
    assert stored["wins"] == (
        ["PAY-812 Fix the login redirect", "Reviewed the billing RFC", "Mentored the new hire"],
        False,
    )
    record = await evidence_record(tasks, EMMA, WEEKLY)
    assert record["sources"] == [JIRA, FEISHU]
    assert (record["from"], record["until"]) == ("2026-11-23", "2026-11-29")
    assert record["done"] == [
        {
            "source": JIRA,
            "key": "PAY-812",
            "title": "Fix the login redirect",
            "url": BROWSE + "PAY-812",
            "status": "Done",
            "due": None,
        }
    ]
    assert [(i["key"], i["url"]) for i in record["in_progress"]] == [("PAY-820", BROWSE + "PAY-820")]
    assert [(i["key"], i["due"]) for i in record["overdue"]] == [
        ("t104121", "2026-11-25"),
        ("t104122", "2026-11-27T07:00:00+00:00"),
    ]
    assert record["counted"] == ["PAY-812 Fix the login redirect"]
    assert record["added"] == ["Reviewed the billing RFC", "Mentored the new hire"]
    assert record["confirmed_at"] == "2026-11-27T08:00:00+00:00"
    assert (await tasks.state(EMMA, WEEKLY))[:2] == ("submitted", None)


@pytest.mark.parametrize("confirm", ["button", "确认", "跳过", "1"])
async def test_confirming_the_list_makes_its_done_items_the_answer(tasks: Chat, confirm: str) -> None:
    await tasks.dialogue(HR, [(f"cycle start weekly --people {LILEI}", "周期 #1")])
    opening = await tasks.inbox(LILEI)
    assert (
        "任务系统（Jira、飞书任务）中你在 2026-11-23 至 2026-11-29 的事项："
        "已完成 1 项，进行中 1 项，逾期 0 项。\n"
        "第 1/5 题：本周还完成了哪些下方清单里没有的事情？"
    ) in opening
    assert f"• 已完成 · Jira PAY-555: 重构支付网关 <{BROWSE}PAY-555>" in opening
    assert f"• 进行中 · Jira PAY-560: 接入新的风控接口 · 进行中 <{BROWSE}PAY-560>" in opening
    assert "[1] 确认清单" in opening
    absent(opening, "PAY-812", "Write the Q4 plan", "Buy a cake")

    if confirm == "button":
        [(label, action)] = tasks.last_buttons(LILEI)
        assert label == "确认清单"
        reply = await tasks.click(LILEI, action)
    else:
        reply = await tasks.say(LILEI, confirm)
    assert "已保存: PAY-555 重构支付网关" in reply
    assert "第 2/5 题" in reply
    assert (await tasks.stored(LILEI, WEEKLY))["wins"] == (["PAY-555 重构支付网关"], False)
    record = await evidence_record(tasks, LILEI, WEEKLY)
    assert (record["counted"], record["added"]) == (["PAY-555 重构支付网关"], [])


async def test_what_was_shown_is_shown_again_and_counted_even_after_the_sources_change(tasks: Chat) -> None:
    await tasks.start_cycle(WEEKLY, EMMA)
    await tasks.dialogue(EMMA, [("Reviewed the billing RFC", "Q2/5")])
    # a sync meanwhile: a new done item, and the shown one deleted at the source
    await add_items(
        tasks,
        EMMA,
        JIRA,
        item("8", "Late arrival", "done", utc(11, 27, 7), key="PAY-850", completed=utc(11, 27, 7)),
    )
    await remove_item(tasks, JIRA, "1")
    await tasks.restart()
    enable(tasks, JIRA, FEISHU)

    back = await tasks.say(EMMA, "back")
    assert "Q1/5: What else did you get done this week that the list below misses?" in back
    assert f"• Done · Jira PAY-812: Fix the login redirect <{BROWSE}PAY-812>" in back
    assert "• Current answer: PAY-812 Fix the login redirect; Reviewed the billing RFC" in back
    absent(back, "PAY-850")
    assert "Saved: PAY-812 Fix the login redirect; Shipped the beta" in await tasks.say(
        EMMA, "Shipped the beta"
    )
    assert (await tasks.stored(EMMA, WEEKLY))["wins"] == (
        ["PAY-812 Fix the login redirect", "Shipped the beta"],
        False,
    )


async def test_an_addition_that_repeats_a_listed_item_is_not_counted_twice(tasks: Chat) -> None:
    await tasks.start_cycle(WEEKLY, EMMA)
    await tasks.say(EMMA, "PAY-812 Fix the login redirect\nWrote the runbook")
    assert (await tasks.stored(EMMA, WEEKLY))["wins"] == (
        ["PAY-812 Fix the login redirect", "Wrote the runbook"],
        False,
    )


async def test_with_no_task_source_enabled_the_recap_is_asked_as_written(tasks: Chat) -> None:
    enable(tasks)
    await tasks.start_cycle(WEEKLY, EMMA)
    opening = "\n".join(s.text for s in tasks.console.transcript if s.recipient == EMMA)
    assert "Q1/5: What did you get done this week?" in opening
    absent(opening, "task systems", "PAY-812", "Confirm the list", "misses")
    await tasks.say(EMMA, "Shipped the login page")
    assert await tasks.stored(EMMA, WEEKLY) == {"wins": (["Shipped the login page"], False)}


async def test_with_sources_but_nothing_for_the_person_one_line_says_so(tasks: Chat) -> None:
    await tasks.start_cycle(WEEKLY, RAJ)
    opening = "\n".join(s.text for s in tasks.console.transcript if s.recipient == RAJ)
    assert (
        "Your task systems (Jira, Feishu Tasks) show nothing of yours for 2026-11-23 – 2026-11-29.\n"
        "Q1/5: What did you get done this week?"
    ) in opening
    absent(opening, "Confirm the list", "PAY-")
    assert "Q2/5" in await tasks.say(RAJ, "Closed the sprint")
    stored = await tasks.stored(RAJ, WEEKLY)
    assert stored["wins"] == (["Closed the sprint"], False)
    assert stored[EVIDENCE][0]["done"] == [] and stored[EVIDENCE][0]["counted"] == []


async def test_a_source_switched_off_is_not_shown(tasks: Chat) -> None:
    enable(tasks, FEISHU)
    await tasks.start_cycle(WEEKLY, EMMA)
    opening = "\n".join(s.text for s in tasks.console.transcript if s.recipient == EMMA)
    assert (
        "Your task systems (Feishu Tasks) show for 2026-11-23 – 2026-11-29: 0 done, 0 in progress, 2 overdue."
        in opening
    )
    # no done item listed: the question is the one written, and nothing to confirm
    assert "Q1/5: What did you get done this week?" in opening
    absent(opening, "Jira", "PAY-812", "Confirm the list")


# ---- the monthly review --------------------------------------------------------------------------------


async def test_monthly_review_shows_the_months_items_and_not_older_ones(tasks: Chat) -> None:
    await tasks.dialogue(HR, [(f"cycle start monthly --people {EMMA}", "周期 #1")])
    opening = await tasks.inbox(EMMA)
    assert (
        "Your task systems (Jira, Feishu Tasks) show for 2026-11-01 – 2026-11-30: "
        "2 done, 1 in progress, 2 overdue.\n"
        "Q1/7: Which important results this month does the list below miss?"
    ) in opening
    assert f"• Done · Jira PAY-812: Fix the login redirect <{BROWSE}PAY-812>" in opening
    assert f"• Done · Jira PAY-700: Migrate the invoices table <{BROWSE}PAY-700>" in opening
    absent(opening, "PAY-600", "October", "PAY-999", "PAY-555")
    assert "Q2/7" in await tasks.say(EMMA, "confirm")
    assert (await tasks.stored(EMMA, MONTHLY))["highlights"] == (
        ["PAY-812 Fix the login redirect", "PAY-700 Migrate the invoices table"],
        False,
    )


async def test_the_monthly_form_asks_only_for_what_the_list_misses(tasks: Chat) -> None:
    assert tasks.app is not None
    await tasks.start_cycle(MONTHLY, EMMA)
    assignment = int(await tasks.scalar("select id from assignment"))
    service = FormService(tasks.app.db, tasks.app.engine)
    form = await service.form(platform="console", user_id=EMMA, email=EMMA, assignment_id=assignment)
    assert form is not None
    highlights = form.fields[0]
    assert (highlights.step, highlights.required, highlights.initial) == ("highlights", False, None)
    assert highlights.hint == "The 2 done items your task systems show count already; add anything they miss."
    answers = {
        "highlights": "",
        "goal_status": "on_track",
        "self_rating": "4",
        "learned": "Profiling",
        "next_month": "SSO",
    }
    assert (
        await service.check(
            platform="console", user_id=EMMA, email=EMMA, assignment_id=assignment, answers=answers
        )
        == {}
    )

    form_event = json.dumps(
        {"assignment_id": assignment, "answers": {**answers, "highlights": "Led the incident review"}}
    )
    await tasks.app.on_event(
        IncomingEvent("console", uuid.uuid4().hex, EMMA, "form", text=form_event, email=EMMA)
    )
    assert "Here is everything you wrote" in await tasks.inbox(EMMA)
    stored = await tasks.stored(EMMA, MONTHLY)
    assert stored["highlights"] == (
        ["PAY-812 Fix the login redirect", "PAY-700 Migrate the invoices table", "Led the incident review"],
        False,
    )
    assert stored[EVIDENCE][0]["added"] == ["Led the incident review"]
    again = await service.form(platform="console", user_id=EMMA, email=EMMA, assignment_id=assignment)
    assert again is not None and again.fields[0].initial == "Led the incident review"


# ---- the scheduler's fan-out ------------------------------------------------------------------------------


@pytest.fixture
async def scheduled(db_url: str, tmp_path: Path) -> AsyncIterator[Chat]:
    """The sample org with the weekly recap scheduled for Li Lei and Emma, Friday 16:00 their time."""
    schedules = write_file(
        tmp_path,
        "schedules.yaml",
        'schedules:\n  - ritual: weekly_recap\n    when: last_workday_of_week\n    at: "16:00"\n'
        f"    audience: {{people: [{LILEI}, {EMMA}]}}\n",
    )
    chat = Chat(db_url, scheduler=SchedulerSettings(file=schedules))
    chat.clock.now = utc(11, 27, 7)
    await chat.start()
    await add_items(chat, EMMA, JIRA, *EMMA_JIRA)
    await add_items(chat, LILEI, JIRA, *LILEI_JIRA)
    enable(chat, JIRA)
    yield chat
    await chat.close()


async def test_scheduled_recaps_open_with_each_persons_own_tasks(scheduled: Chat) -> None:
    await scheduled.tick()
    scheduled.clock.now = utc(11, 27, 8)  # 16:00 in Shanghai
    await scheduled.tick()
    his = await scheduled.inbox(LILEI)
    assert (
        "任务系统（Jira）中你在 2026-11-23 至 2026-11-29 的事项：已完成 1 项，进行中 1 项，逾期 0 项。" in his
    )
    assert f"• 已完成 · Jira PAY-555: 重构支付网关 <{BROWSE}PAY-555>" in his
    absent(his, "PAY-812")
    scheduled.clock.now = utc(11, 28, 0)  # 16:00 in Los Angeles
    await scheduled.tick()
    hers = await scheduled.inbox(EMMA)
    assert f"• Done · Jira PAY-812: Fix the login redirect <{BROWSE}PAY-812>" in hers
    absent(hers, "PAY-555", "Feishu")
    assert [r[0] for r in await scheduled.rows(f"select step from answer where step = '{EVIDENCE}'")] == [
        EVIDENCE
    ] * 2
    assert "已保存: PAY-555 重构支付网关" in await scheduled.say(LILEI, "确认")


# ---- me tasks ------------------------------------------------------------------------------------------


async def test_me_tasks_lists_the_last_two_weeks_and_anything_overdue(tasks: Chat) -> None:
    shown = await tasks.say(EMMA, "me tasks")
    assert "【Your tasks】" in shown
    assert (
        "Your task systems (Jira, Feishu Tasks) show for the last 14 days (2026-11-14 – 2026-11-27), "
        "and anything overdue: 2 done, 1 in progress, 2 overdue."
    ) in shown
    assert f"• Done · Jira PAY-812: Fix the login redirect <{BROWSE}PAY-812>" in shown
    assert f"• Done · Jira PAY-700: Migrate the invoices table <{BROWSE}PAY-700>" in shown
    assert f"• Overdue · Feishu Tasks t104121: Write the Q4 plan · due 2026-11-25 <{FEISHU_LINK}g1>" in shown
    absent(shown, "PAY-600", "PAY-830", "PAY-840", "PAY-999", "PAY-555", "Buy a cake")


async def test_me_tasks_in_chinese(tasks: Chat) -> None:
    shown = await tasks.say(LILEI, "我的任务")
    assert "【我的任务】" in shown
    assert (
        "任务系统（Jira、飞书任务）中你最近 14 天（2026-11-14 至 2026-11-27）的事项及所有逾期事项："
        "已完成 1 项，进行中 1 项，逾期 0 项。" in shown
    )
    assert f"• 已完成 · Jira PAY-555: 重构支付网关 <{BROWSE}PAY-555>" in shown
    assert f"• 进行中 · Jira PAY-560: 接入新的风控接口 · 进行中 <{BROWSE}PAY-560>" in shown
    absent(shown, "PAY-812", "Write the Q4 plan")
    assert shown == await tasks.say(LILEI, "/cadence 我的 任务")


async def test_me_tasks_says_when_nothing_is_found_or_no_source_is_set_up(tasks: Chat) -> None:
    enable(tasks, JIRA, FEISHU, links=Links())
    nothing = await tasks.say(RAJ, "my tasks")
    assert (
        "Your task systems (Jira, Feishu Tasks) show nothing of yours for the last 14 days, "
        "and nothing overdue." in nothing
    )
    assert 'Tasks in Feishu? Reply "connect tasks" to let Cadence read them.' in nothing
    enable(tasks)
    assert "No task source (Jira, Feishu Tasks, DingTalk to-dos) is set up here" in await tasks.say(
        EMMA, "me tasks"
    )
    assert "这里还没有配置任务来源" in await tasks.say(LILEI, "我的任务")


async def test_me_tasks_in_the_middle_of_a_recap_changes_nothing(tasks: Chat) -> None:
    await tasks.start_cycle(WEEKLY, EMMA)
    await tasks.say_changing_nothing(EMMA, "me tasks", "【Your tasks】", "PAY-812")
    # "my tasks are all done" is an answer, not a command
    reply = await tasks.say(EMMA, "my tasks are all done")
    assert "Saved: PAY-812 Fix the login redirect; my tasks are all done" in reply
    assert "Q2/5" in reply


# ---- connect tasks ---------------------------------------------------------------------------------------


async def test_connect_tasks_replies_with_the_providers_link(tasks: Chat) -> None:
    links = Links()
    enable(tasks, JIRA, FEISHU, links=links)
    reply = await tasks.say(EMMA, "connect tasks")
    assert "【Connect your tasks】" in reply
    assert "Open the link below to let Cadence read your Feishu Tasks" in reply
    assert f"• Feishu Tasks: Authorise Cadence <{AUTH_URL}>" in reply
    emma = await tasks.scalar("select id from person where email = :e", e=EMMA)
    assert links.asked == [(emma, "en")]
    zh = await tasks.say(LILEI, "授权任务")
    assert f"• 飞书任务: 授权节拍 <{AUTH_URL}>" in zh
    assert links.asked[-1][1] == "zh-CN"
    sent = tasks.console.transcript[-1].message
    assert sent.fields == (Field_(label="飞书任务", value="授权节拍", url=AUTH_URL),)


@pytest.mark.parametrize(
    ("sources", "links", "said", "expected"),
    [
        ((JIRA, FEISHU), None, "connect tasks", "Connecting your Feishu Tasks is not available right now"),
        (
            (JIRA, FEISHU),
            Links(url=None),
            "connect tasks",
            "Connecting your Feishu Tasks is not available right now",
        ),
        ((JIRA, FEISHU), Links(fails=True), "connect tasks", "I couldn't make your link just now"),
        (
            (JIRA, DINGTALK),
            Links(),
            "connect tasks",
            "Jira, DingTalk to-dos: read without your authorisation",
        ),
        ((), Links(), "connect tasks", "No task source is set up here, so there is nothing to connect."),
        ((JIRA, FEISHU), Links(), "connect", 'Connect what? Write "connect tasks"'),
    ],
    ids=["no-provider", "provider-has-no-link", "provider-fails", "not-needed", "no-source", "connect-what"],
)
async def test_connect_tasks_explains_when_there_is_no_link(
    tasks: Chat, sources: tuple[str, ...], links: Links | None, said: str, expected: str
) -> None:
    enable(tasks, *sources, links=links)
    reply = await tasks.say(EMMA, said)
    assert expected in reply
    assert "http" not in reply


async def test_help_mentions_the_task_commands(tasks: Chat) -> None:
    assert "me tasks" in await tasks.say(EMMA, "help")
    assert "connect tasks" in await tasks.say(EMMA, "help")
    shown = await tasks.say(LILEI, "帮助")
    assert "我的任务" in shown and "授权任务" in shown


# ---- without a database: caps, dates, the renderers, the ritual file -------------------------------------


def test_each_bucket_is_capped_with_and_n_more() -> None:
    week = Window(
        utc(11, 23, 8), utc(11, 30, 8), datetime(2026, 11, 23).date(), datetime(2026, 11, 29).date()
    )
    done = [
        PersonTask(
            JIRA,
            f"PAY-{n}",
            f"Item {n}",
            f"{BROWSE}PAY-{n}",
            "done",
            "Done",
            utc(11, 25, n),
            None,
            False,
            utc(11, 25, n),
            None,
        )
        for n in range(12)
    ]
    odd = PersonTask(
        JIRA,
        "PAY-X",
        "Odd link",
        "javascript:alert(1)",
        "in_progress",
        None,
        utc(11, 25),
        None,
        False,
        None,
        None,
    )
    evidence = sort_out(
        [*done, odd], window=week, now=utc(11, 27, 8), timezone="Asia/Shanghai", sources=[JIRA]
    )
    shown = fields(evidence, "en", "Asia/Shanghai")
    assert [f.label for f in shown][:2] == ["Done · Jira PAY-11", "Done · Jira PAY-10"]  # newest first
    assert shown[10] == Field_(label="Done", value="and 2 more")
    assert shown[11] == Field_(label="In progress · Jira PAY-X", value="Odd link", url=None)
    assert evidence.total("done") == 12


def test_a_link_is_native_on_every_platform() -> None:
    message = Message(
        text="x",
        fields=(Field_(label="Done · Jira PAY-1", value="Fix <b> & (it)", url=BROWSE + "PAY-1?a=1&b=(2)"),),
    )
    slack = json.dumps(slack_blocks.blocks(message))
    assert "<https://acme.atlassian.net/browse/PAY-1?a=1&amp;b=(2)|Fix &lt;b&gt; &amp; (it)>" in slack
    feishu = feishu_cards.content(feishu_cards.card(message))
    assert "[Fix &lt;b&gt; &amp; (it)](https://acme.atlassian.net/browse/PAY-1?a=1&b=%282%29)" in feishu
    dingtalk = dingtalk_render.markdown(message)["text"]
    assert "[Fix <b> & (it)](https://acme.atlassian.net/browse/PAY-1?a=1&b=%282%29)" in dingtalk
    assert message.plain_text().endswith(f"Fix <b> & (it) <{BROWSE}PAY-1?a=1&b=(2)>")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("    type: rating\n", "    type: rating\n    evidence: week\n"),
            "evidence is only allowed on list steps",
        ),
        (
            ("    evidence: week\n", "    evidence: month\n"),
            "shows evidence for a month, but the ritual's period is a week",
        ),
        (("    evidence: week\n", "    evidence: quarter\n"), "evidence"),
        (
            (
                "    evidence_prompt:\n      zh-CN: 本周还完成了哪些下方清单里没有的事情？\n"
                "      en: What else did you get done this week that the list below misses?\n",
                "",
            ),
            "needs an evidence_prompt",
        ),
    ],
    ids=["not-a-list", "wrong-period", "unknown-period", "no-prompt"],
)
def test_a_ritual_file_with_a_wrong_evidence_field_is_refused(
    tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    shipped = (
        Path(__file__).resolve().parents[1] / "conversations" / "rituals" / "weekly_recap.yaml"
    ).read_text("utf-8")
    assert change[0] in shipped
    path = write_file(tmp_path, "weekly.yaml", shipped.replace(change[0], change[1], 1))
    with pytest.raises(RitualFileError) as caught:
        load_file(path)
    assert problem in caught.value.problem
