"""1:1 agendas from fixture data: the three suggested topics and their reasons are exactly what the rule
table says (ranked, one per topic, always three), in English and Chinese; the card renders natively on
Slack, Feishu, DingTalk and the console within each one's limits; ``agenda @person`` is for the
person's managers and HR only, and every read and refusal is audited."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

from bot.platforms import console, dingtalk_render, feishu_cards, slack_blocks
from conversations.agenda import AgendaSettings
from conversations.agenda_rules import RULES, repeated_phrase
from conversations.messages import Message
from conversations.task_sources import TaskSources
from storage import people
from storage.models import Person
from tests.agenda_rig import (
    BROWSE,
    add_action,
    add_checkin,
    add_event,
    add_items,
    add_meeting,
    add_weekly,
    item,
    joined,
    miss_weekly,
    person_id,
    prepared,
    topics,
    utc,
)
from tests.harness import EMMA, HR, LILEI, MANAGER, Chat

MICHAEL = "michael.brown@example.com"  # Head of Product, Los Angeles, en; manages Sarah and David
SARAH = "sarah.johnson@example.com"
DAVID = "david.lee@example.com"  # Sarah's peer: no reports
JAMES = "james.wilson@example.com"  # another department's manager
CEO = "chen.jie@example.com"  # everyone's manager, at the top


async def sarah_struggles(chat: Chat) -> None:
    """Sarah: week ratings falling, the same blocker twice, three items overdue in PAY and one in CORE."""
    await add_weekly(chat, SARAH, "2026-W44", wins=["Pricing draft"], week_rating=4, next_week=["Spec"])
    await add_weekly(chat, SARAH, "2026-W45", wins=["Interviews"], week_rating=4, next_week=["Spec"])
    await add_weekly(
        chat,
        SARAH,
        "2026-W46",
        wins=["Spec v1"],
        week_rating=3,
        blockers="Blocked on review for the pricing spec",
        next_week=["Spec v2"],
    )
    await add_weekly(
        chat,
        SARAH,
        "2026-W47",
        wins=["Spec v2 sent"],
        week_rating=2,
        blockers="Still blocked on review, pinged Legal twice",
        next_week=["Launch plan"],
        discuss_in_one_on_one="no",
    )
    await add_items(
        chat,
        SARAH,
        item("1", "Pricing page copy", "todo", utc(11, 10), key="PAY-801", due=utc(11, 18, 0)),
        item("2", "Discount rules", "in_progress", utc(11, 25), key="PAY-802", due=utc(11, 20, 0)),
        item("3", "Invoice template", "todo", utc(11, 12), key="PAY-803", due=utc(11, 24, 0)),
        item("4", "Core API review", "todo", utc(11, 12), key="CORE-17", due=utc(11, 10, 0)),
        item("5", "Ship the pricing FAQ", "done", utc(11, 23), key="PAY-790", completed=utc(11, 23)),
        item("6", "Later work", "todo", utc(11, 23), key="PAY-900", due=utc(12, 20, 0)),
    )


# ---- the rules, scenario by scenario -----------------------------------------------------------


async def test_a_blocker_said_twice_falling_ratings_and_overdue_work_in_one_project(chat: Chat) -> None:
    await sarah_struggles(chat)
    assert await topics(chat, SARAH, "en") == [
        ("Clearing a recurring blocker", "said “blocked on review” twice (2026-W46, 2026-W47)"),
        ("How the weeks are going", "week rating went 4 → 4 → 3 → 2 over the last 4 recaps"),
        ("Overdue work in PAY", "3 items overdue in PAY (oldest: PAY-801, 9 days late)"),
    ]
    assert await topics(chat, SARAH, "zh-CN") == [
        ("解决反复出现的阻碍", "两次提到“blocked on review”（2026-W46、2026-W47）"),
        ("最近几周的状态", "最近 4 次回顾的每周评分变化为 4 → 4 → 3 → 2"),
        ("PAY 中的逾期工作", "PAY 中有 3 项逾期（最早：PAY-801，逾期 9 天）"),
    ]


async def test_late_action_items_stalled_work_and_a_key_event(chat: Chat) -> None:
    await add_weekly(chat, LILEI, "2026-W46", wins=["支付网关"], week_rating=4)
    await miss_weekly(chat, LILEI, "2026-W47")  # one missed recap is not yet a topic
    await add_action(chat, MANAGER, LILEI, "写完支付网关的设计文档", due=date(2026, 11, 20))
    await add_action(chat, MANAGER, LILEI, "约安全团队做评审", due=date(2026, 11, 25), owner=MANAGER)
    await add_action(chat, MANAGER, LILEI, "下个月的事", due=date(2026, 12, 20))
    await add_action(chat, MANAGER, LILEI, "已经做完的事", due=date(2026, 11, 1), done=True)
    await add_items(
        chat,
        LILEI,
        item("10", "迁移订单表", "in_progress", utc(11, 15), key="PAY-830"),
        item("11", "修复退款回调", "in_progress", utc(11, 25), key="PAY-831"),
    )
    await add_event(chat, LILEI, MANAGER, "主导了 11 月 18 日的故障复盘", utc(11, 19))
    assert await topics(chat, LILEI, "zh-CN") == [
        ("跟进行动项", "2 个行动项已过期（最早：“写完支付网关的设计文档”，截止 2026-11-20）"),
        ("推动停滞的工作", "1 项进行中的工作超过 7 天未更新（PAY-830：11 天）"),
        ("认可近期的表现", "2026-11-19 的关键事件：“主导了 11 月 18 日的故障复盘”"),
    ]
    # the same data, with stalled meaning "more than 14 days": the key event moves up, growth comes in
    assert await topics(chat, LILEI, "en", settings=AgendaSettings(stuck_days=14)) == [
        (
            "Follow up on action items",
            "2 action items past due (oldest: “写完支付网关的设计文档”, due 2026-11-20)",
        ),
        ("Recognise a recent moment", "key event on 2026-11-19: “主导了 11 月 18 日的故障复盘”"),
        # the action items came from four 1:1s, none of whose agendas had growth on it
        ("Career growth", "no growth topic in the last 3 1:1s"),
    ]


async def test_two_missed_recaps_in_a_row_are_a_topic(chat: Chat) -> None:
    await add_weekly(chat, LILEI, "2026-W45", wins=["登录模块"], week_rating=4)
    await miss_weekly(chat, LILEI, "2026-W46")
    await miss_weekly(chat, LILEI, "2026-W47")
    assert (await topics(chat, LILEI, "zh-CN"))[0] == (
        "回顾已经中断",
        "连续 2 次每周回顾未提交（2026-W46、2026-W47）",
    )
    assert (await topics(chat, LILEI, "en"))[0] == (
        "Check-ins have gone quiet",
        "2 weekly recaps in a row not answered (2026-W46, 2026-W47)",
    )


async def test_their_own_topic_the_support_they_asked_for_and_goals_at_risk(chat: Chat) -> None:
    await add_weekly(chat, SARAH, "2026-W47", wins=["Spec"], week_rating=4, discuss_in_one_on_one="yes")
    await add_checkin(
        chat,
        SARAH,
        "monthly_review",
        "2026-10",
        {
            "highlights": ["Pricing launch"],
            "goal_status": "at_risk",
            "self_rating": 3,
            "learned": "SQL",
            "next_month": ["Launch"],
            "support_needed": "More time with the data team\nand a design review slot",
        },
        due=utc(11, 5),
    )
    await add_event(chat, SARAH, MICHAEL, "Ran the pricing workshop", utc(11, 20))
    assert await topics(chat, SARAH, "en") == [
        (
            "What they want to bring up",
            "answered yes to “something to bring up at your 1:1” in the 2026-W47 recap",
        ),
        (
            "The support they asked for",
            "asked for “More time with the data team and a design review slot” in the 2026-10 review",
        ),
        ("Getting goals back on track", "marked their goals at risk in the 2026-10 review"),
    ]


async def test_with_nothing_to_go_on_the_fallbacks_still_make_three(chat: Chat) -> None:
    assert await topics(chat, DAVID, "en", sources=()) == [
        ("Career growth", "no 1:1 agenda has had a growth topic yet"),
        ("Check in on workload", "a regular check: nothing in the data points elsewhere"),
        ("Priorities until the next 1:1", "a regular check: agree what matters most until you next meet"),
    ]
    assert await topics(chat, DAVID, "zh-CN") == [
        ("职业发展", "以往的一对一议程中还没有职业发展话题"),
        ("了解工作量", "进行中 0 项，逾期 0 项"),
        ("到下次一对一前的优先事项", "例行确认：约定到下次见面前最重要的事"),
    ]


async def test_career_growth_comes_back_only_after_the_last_three_1on1s_went_without_it(chat: Chat) -> None:
    await add_meeting(chat, MICHAEL, DAVID, utc(10, 1), topics=("growth", "workload", "feedback"))
    await add_meeting(chat, MICHAEL, DAVID, utc(10, 15), topics=("overdue", "workload", "priorities"))
    await add_meeting(chat, MICHAEL, DAVID, utc(10, 29), topics=("overdue", "workload", "priorities"))
    await add_weekly(
        chat, DAVID, "2026-W47", wins=["Dashboards"], week_rating=4, next_week=["Churn model", "Q1"]
    )
    # growth was on an agenda within the last three 1:1s: the last fallback takes its place
    assert await topics(chat, DAVID, "en", sources=()) == [
        ("Check in on workload", "a regular check: nothing in the data points elsewhere"),
        ("Priorities until the next 1:1", "their next priority: “Churn model” (2026-W47)"),
        ("Feedback, both ways", "a regular check: ask what would help, and share one observation"),
    ]
    await add_meeting(chat, MICHAEL, DAVID, utc(11, 12), topics=("overdue", "workload", "priorities"))
    assert (await topics(chat, DAVID, "en", sources=()))[0] == (
        "Career growth",
        "no growth topic in the last 3 1:1s",
    )


async def test_a_manager_of_people_who_is_new_in_the_role(chat: Chat) -> None:
    # the org data began in January; Wang Fang (who leads six engineers) joined it on 2 November
    await joined(chat, CEO, utc(1, 5))
    await joined(chat, MANAGER, utc(11, 2, 8))
    assert await topics(chat, MANAGER, "en", sources=()) == [
        ("How the new role is going", "joined as 工程经理 on 2026-11-02 (25 days ago)"),
        ("Their team: who needs support", "leads 6 people directly"),
        ("Career growth", "no 1:1 agenda has had a growth topic yet"),
    ]
    # people who came with the org data's first import are not new, however recent it was
    await joined(chat, LILEI, utc(1, 9))
    assert (await topics(chat, LILEI, "en", sources=()))[0][0] == "Career growth"


async def test_many_done_items_are_worth_recognising_and_one_overdue_item_is_still_a_topic(
    chat: Chat,
) -> None:
    done = [
        item(
            str(n), f"Chart {n}", "done", utc(11, 20 + n % 5), key=f"DASH-{n}", completed=utc(11, 20 + n % 5)
        )
        for n in range(1, 7)
    ]
    await add_items(
        chat, DAVID, *done, item("9", "Old query", "todo", utc(11, 1), key="DATA-3", due=utc(11, 25, 0))
    )
    assert await topics(chat, DAVID, "en") == [
        ("Overdue work in DATA", "1 item overdue in DATA (DATA-3, 2 days late)"),
        ("Recognise recent delivery", "6 items done in the last 14 days, most in DASH"),
        ("Career growth", "no 1:1 agenda has had a growth topic yet"),
    ]


def test_the_rule_table_is_ordered_named_and_ends_with_three_that_always_hold() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    assert [r.score for r in RULES] == sorted((r.score for r in RULES), reverse=True)
    assert [r.id for r in RULES[-3:]] == ["workload", "priorities", "feedback"]


def test_a_repeated_phrase_is_the_longest_said_in_more_than_one_check_in() -> None:
    said = [
        ("W47", "Still waiting on the design review from platform"),
        ("W46", "waiting on the design review again"),
        ("W45", "None"),
        ("W44", "none"),
    ]
    assert repeated_phrase(said) == ("waiting on the design review", ["W46", "W47"])
    assert repeated_phrase([("W47", "等待设计评审"), ("W46", "还在等待设计评审，进度慢")]) == (
        "等待设计评审",
        ["W46", "W47"],
    )
    # saying there was nothing in the way, twice, is not a blocker
    assert repeated_phrase([("W47", "没有"), ("W46", "没有")]) is None
    assert repeated_phrase([("W47", "no blockers"), ("W46", "No blockers!")]) is None
    assert repeated_phrase([("W47", "Blocked on review"), ("W46", "Blocked on QA")]) is None


# ---- the card on every platform ----------------------------------------------------------------


async def sarah_card(chat: Chat, locale: str = "en") -> tuple[Message, list[tuple[str, str]]]:
    """Sarah's agenda as her manager Michael sees it (in ``locale``), and its (topic, reason) pairs."""
    agenda = await prepared(chat, SARAH)
    assert chat.app is not None
    async with chat.app.db.sessions() as session:
        reader = await people.by_email(session, email=MICHAEL)
    assert reader is not None
    texts = agenda.texts(locale)
    return agenda.card(texts, reader=replace(reader, locale=locale)), [(t.text, t.reason) for t in texts]


async def test_the_card_renders_natively_on_every_platform_with_the_topics_and_linked_tasks(
    chat: Chat,
) -> None:
    await sarah_struggles(chat)
    await add_action(chat, MICHAEL, SARAH, "Share the pricing spec with Legal", due=date(2026, 12, 4))
    await add_event(chat, SARAH, MICHAEL, "Presented pricing to the board", utc(11, 24))
    message, chosen = await sarah_card(chat)
    assert message.title == "1:1 with Sarah Johnson — 2026-11-27"
    assert [f.label for f in message.fields if f.label.startswith("—")] == [
        "— Latest check-ins —",
        "— Work (Jira) —",
        "— Open action items —",
        "— Key events (last 30 days) —",
        "— Suggested topics —",
    ]
    assert message.fields[-3:][0].label == "1. Clearing a recurring blocker"
    assert message.fields[-1].value == "3 items overdue in PAY (oldest: PAY-801, 9 days late)"
    by_label = {f.label: f for f in message.fields}
    assert by_label["Week ratings (last 4)"].value == "4/5 → 4/5 → 3/5 → 2/5"
    assert by_label["Overdue · CORE-17 · 17 days late"].url == BROWSE + "CORE-17"

    blocks = slack_blocks.blocks(message)
    slack = json.dumps(blocks, ensure_ascii=False)
    card = feishu_cards.card(message)
    feishu = feishu_cards.content(card)
    ding = dingtalk_render.markdown(message)
    text = console.render(message)
    for topic, reason in chosen:
        for rendered in (slack, feishu, ding["text"], text):
            assert topic in rendered and reason in rendered
    assert f"<{BROWSE}PAY-801|Pricing page copy>" in slack
    assert f"[Pricing page copy]({BROWSE}PAY-801)" in feishu
    assert f"[Pricing page copy]({BROWSE}PAY-801)" in ding["text"]
    assert f"Pricing page copy <{BROWSE}PAY-801>" in text
    # each within its platform's limits, nothing cut
    assert len(blocks) <= 50 and all(len(b.get("fields", [])) <= 10 for b in blocks)
    assert len(feishu.encode()) < feishu_cards.CARD_LIMIT
    assert len(ding["text"]) < 5_000 and not ding["text"].endswith("…")
    assert ding["title"] == "1:1 with Sarah Johnson — 2026-11-27"


async def test_a_crowded_card_drops_detail_lines_never_the_topics(chat: Chat) -> None:
    await sarah_struggles(chat)
    long = "x" * 400
    overdue = [
        item(str(100 + n), f"{long} {n}", "todo", utc(11, 1), key=f"BIG-{n}", due=utc(11, 2, 0))
        for n in range(40)
    ]
    await add_items(chat, SARAH, *overdue)
    for n in range(12):
        await add_action(chat, MICHAEL, SARAH, f"{long} action {n}", due=date(2026, 11, 3))
        await add_event(chat, SARAH, MICHAEL, f"{long} event {n}", utc(11, 20))
    message, chosen = await sarah_card(chat)
    ding = dingtalk_render.markdown(message)
    blocks = slack_blocks.blocks(message)
    for topic, reason in chosen:
        assert topic in ding["text"] and reason in ding["text"]
        assert reason in json.dumps(blocks, ensure_ascii=False)
    assert len(ding["text"]) < 5_000 and len(blocks) <= 50
    assert "BIG-0" in ding["text"]  # the longest overdue are shown; lines further down went first


async def test_the_chinese_card(chat: Chat) -> None:
    await sarah_struggles(chat)
    message, _ = await sarah_card(chat, "zh-CN")
    assert message.title == "与 Sarah Johnson 的一对一 — 2026-11-27"
    text = console.render(message)
    assert (
        "— 建议话题 —" in text
        and "3. PAY 中的逾期工作: PAY 中有 3 项逾期（最早：PAY-801，逾期 9 天）" in text
    )


# ---- agenda @person: who may see it ------------------------------------------------------------


async def audit_rows(chat: Chat) -> list[tuple[str, int | None, int | None, str]]:
    rows = await chat.rows(
        "select action, actor_id, subject_id, cast(detail as text) from auditlog order by id"
    )
    return [(a, actor, subject, detail) for a, actor, subject, detail in rows if "record.read" in a]


async def test_the_manager_gets_the_agenda_on_demand_and_the_read_is_audited(chat: Chat) -> None:
    assert chat.app is not None
    chat.app.engine.tasks = TaskSources(enabled=("jira",))
    await sarah_struggles(chat)
    reply = await chat.say(MICHAEL, "agenda @sarah.johnson")
    assert "【1:1 with Sarah Johnson — 2026-11-27】" in reply
    assert "1. Clearing a recurring blocker: said “blocked on review” twice (2026-W46, 2026-W47)" in reply
    assert "3. Overdue work in PAY: 3 items overdue in PAY (oldest: PAY-801, 9 days late)" in reply
    michael, sarah = await person_id(chat, MICHAEL), await person_id(chat, SARAH)
    assert await audit_rows(chat) == [("record.read", michael, sarah, json.dumps({"via": "agenda"}))]


async def test_the_whole_chain_above_and_hr_may_see_it(chat: Chat) -> None:
    assert "【与 Sarah Johnson 的一对一 — 2026-11-27】" in await chat.say(CEO, "议程 @sarah.johnson")
    assert "建议话题" in await chat.say(HR, "agenda sarah.johnson@example.com")
    # Slack puts the user id in a mention: it names the person too
    assert "1:1 with Sarah Johnson" in await chat.say(MICHAEL, "agenda <@U01SJOHNSON>")
    assert [a for a, *_ in await audit_rows(chat)] == ["record.read"] * 3


async def test_a_peer_and_another_teams_manager_are_refused_and_it_is_audited(chat: Chat) -> None:
    peer = await chat.say(DAVID, "agenda @sarah.johnson")
    assert "Only a manager (for their own people) or HR can see a 1:1 agenda" in peer
    assert "Sarah" not in peer and "blocked" not in peer
    other = await chat.say(JAMES, "agenda @sarah.johnson")
    assert "Only Sarah Johnson's managers or HR can see Sarah Johnson's 1:1 agenda" in other
    # a manager asking about themself is not their own manager
    assert "Only Michael Brown's managers or HR" in await chat.say(MICHAEL, "agenda @michael.brown")
    david, james, michael, sarah = [await person_id(chat, e) for e in (DAVID, JAMES, MICHAEL, SARAH)]
    assert await audit_rows(chat) == [
        ("record.read.refused", david, None, json.dumps({"via": "agenda", "mention": "@sarah.johnson"})),
        ("record.read.refused", james, sarah, json.dumps({"via": "agenda"})),
        ("record.read.refused", michael, michael, json.dumps({"via": "agenda"})),
    ]


async def test_an_unknown_or_ambiguous_mention_gets_a_clear_reply(chat: Chat) -> None:
    assert chat.app is not None
    async with chat.app.db.sessions() as session, session.begin():
        session.add(Person(email="sarah.connor@example.com", name="Sarah Connor", manager_id=None))
    assert "I can't find “@nobody” among active people" in await chat.say(MICHAEL, "agenda @nobody")
    reply = await chat.say(MICHAEL, "agenda @Sarah")
    assert "“Sarah” could be several people: Sarah Johnson, Sarah Connor" in reply
    assert "Usage: agenda @name" in await chat.say(MICHAEL, "agenda @sarah.johnson @david.lee")
    assert "在在职人员中找不到“@无名氏”" in await chat.say(MANAGER, "议程 @无名氏")
    assert await audit_rows(chat) == []


async def test_emma_in_english_for_a_chinese_manager(chat: Chat) -> None:
    await add_weekly(chat, EMMA, "2026-W47", wins=["Login page"], week_rating=5, blockers="Waiting on design")
    reply = await chat.say(MANAGER, "agenda @emma.smith")
    assert "【与 Emma Smith 的一对一 — 2026-11-27】" in reply
    assert "完成 · 每周回顾 2026-W47: Login page" in reply
    assert "阻碍 · 每周回顾 2026-W47: Waiting on design" in reply
