"""The weekly recap as transcripts, in English (Emma) and Chinese (李雷), and HR running its cycle."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import EMMA, HR, LILEI, Chat

RITUAL = "weekly_recap"
# canned answers to questions 1-4, to reach a later question quickly
CANNED = {
    EMMA: ["Shipped the login page", "4", "Waiting on the design review", "Release 2.3"],
    LILEI: ["完成了登录模块重构", "4", "等待设计评审", "准备发布 2.3"],
}


def _json(raw: str | None) -> Any:
    """A JSON column selected as ``cast(... as text)``, which reads the same on both databases."""
    return None if raw is None else json.loads(raw)


async def start_weekly(chat: Chat, *emails: str) -> None:
    """HR starts the weekly recap for ``emails``; their first question is read from their inbox."""
    await chat.dialogue(HR, [(f"cycle start weekly --people {','.join(emails)}", "周期 #1")])
    for email in emails:
        await chat.inbox(email)


async def answer_until(chat: Chat, email: str, question: int) -> None:
    """Answer the questions before ``question`` with canned answers."""
    for said in CANNED[email][: question - 1]:
        await chat.say(email, said)


async def stored(chat: Chat, email: str) -> dict[str, tuple[Any, bool]]:
    """``{step: (value, skipped)}`` stored for the person's weekly recap."""
    rows = await chat.rows(
        "select a.step, cast(a.value as text), a.skipped from answer a "
        "join assignment s on s.id = a.assignment_id join person p on p.id = s.person_id "
        "join cycle c on c.id = s.cycle_id where p.email = :email and c.ritual_key = :ritual order by a.id",
        email=email,
        ritual=RITUAL,
    )
    return {step: (_json(value), bool(skipped)) for step, value, skipped in rows}


async def state(chat: Chat, email: str) -> tuple[str, str | None, int]:
    """``(status, current_step, version)`` of the person's weekly recap."""
    rows = await chat.rows(
        "select s.status, s.current_step, s.version from assignment s "
        "join person p on p.id = s.person_id join cycle c on c.id = s.cycle_id "
        "where p.email = :email and c.ritual_key = :ritual",
        email=email,
        ritual=RITUAL,
    )
    assert len(rows) == 1, rows
    return rows[0]


# ---- whole runs ---------------------------------------------------------------------------------


async def test_weekly_recap_in_english_runs_to_submission(chat: Chat) -> None:
    await chat.dialogue(HR, [(f"cycle start weekly --people {EMMA}", "周期 #1")])
    first = await chat.inbox(EMMA)
    assert "5 questions" in first
    assert "Q1/5: What did you get done this week?" in first
    await chat.dialogue(
        EMMA,
        [
            ("Shipped the login page\n- Fixed the flaky CI job", "Q2/5: How did the week go overall?"),
            ("4", "Saved: 4/5 · Good"),
            ("Waiting on API keys from the security team", "Q4/5"),
            ("1. Release 2.3\n2. Write the migration guide", "Q5/5"),
            ("yes", "Here is everything you wrote. Submit it, or change an answer first."),
            ("submit", "Thank you! Your Weekly recap is submitted."),
        ],
    )
    assert await stored(chat, EMMA) == {
        "wins": (["Shipped the login page", "Fixed the flaky CI job"], False),
        "week_rating": (4, False),
        "blockers": ("Waiting on API keys from the security team", False),
        "next_week": (["Release 2.3", "Write the migration guide"], False),
        "discuss_in_one_on_one": ("yes", False),
    }
    assert (await state(chat, EMMA))[:2] == ("submitted", None)


async def test_weekly_recap_in_chinese_runs_to_submission(chat: Chat) -> None:
    await chat.dialogue(HR, [("周期 开始 周报 --人员 li.lei@example.com", "周期 #1")])
    assert "第 1/5 题：本周完成了哪些事情？" in await chat.inbox(LILEI)
    await chat.dialogue(
        LILEI,
        [
            ("完成了登录模块重构\n修复了两个线上问题", "第 2/5 题：这一周整体进展如何？"),
            ("3", "已保存: 3/5 · 一般"),
            ("跳过", "第 4/5 题"),
            ("准备发布 2.3；编写迁移文档", "第 5/5 题"),
            ("否", "以下是你填写的全部内容"),
            ("提交", "谢谢！你的每周回顾已提交。"),
        ],
    )
    assert await stored(chat, LILEI) == {
        "wins": (["完成了登录模块重构", "修复了两个线上问题"], False),
        "week_rating": (3, False),
        "blockers": (None, True),
        "next_week": (["准备发布 2.3", "编写迁移文档"], False),
        "discuss_in_one_on_one": ("no", False),
    }
    assert (await state(chat, LILEI))[0] == "submitted"


async def test_weekly_recap_resumes_at_the_same_question_after_a_restart(chat: Chat) -> None:
    await start_weekly(chat, EMMA)
    await answer_until(chat, EMMA, 3)
    await chat.restart()
    await chat.dialogue(
        EMMA,
        [
            ("me", "Weekly recap 2026-W48: in progress · question 3 of 5"),
            ("Blocked on the staging database", "Saved: Blocked on the staging database"),
        ],
    )
    assert (await stored(chat, EMMA))["blockers"] == ("Blocked on the staging database", False)
    assert (await state(chat, EMMA))[:2] == ("active", "next_week")


# ---- ratings and yes/no ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "value", "shown"),
    [
        (EMMA, "Great", 5, "Saved: 5/5 · Great"),
        (EMMA, "below par", 2, "Saved: 2/5 · Below par"),
        (LILEI, "非常顺利", 5, "已保存: 5/5 · 非常顺利"),
        (LILEI, "４", 4, "已保存: 4/5 · 顺利"),
        (LILEI, "三", 3, "已保存: 3/5 · 一般"),
    ],
    ids=["en-label", "en-label-lowercase", "zh-label", "full-width-digit", "chinese-numeral"],
)
async def test_rating_is_understood_by_label_and_by_full_width_digit(
    chat: Chat, email: str, said: str, value: int, shown: str
) -> None:
    await start_weekly(chat, email)
    await answer_until(chat, email, 2)
    assert shown in await chat.say(email, said)
    assert (await stored(chat, email))["week_rating"] == (value, False)


@pytest.mark.parametrize(
    ("email", "said", "reason", "question"),
    [
        (EMMA, "6", "Please answer with a number from 1 to 5, or click one of the buttons.", "Q2/5"),
        (EMMA, "abc", "Please answer with a number from 1 to 5, or click one of the buttons.", "Q2/5"),
        (EMMA, "0", "Please answer with a number from 1 to 5, or click one of the buttons.", "Q2/5"),
        (LILEI, "6", "请回复 1 到 5 之间的数字，或点击下方按钮。", "第 2/5 题"),
        (LILEI, "还行吧", "请回复 1 到 5 之间的数字，或点击下方按钮。", "第 2/5 题"),
    ],
)
async def test_invalid_rating_is_asked_again_with_the_reason_and_nothing_is_stored(
    chat: Chat, email: str, said: str, reason: str, question: str
) -> None:
    await start_weekly(chat, email)
    await answer_until(chat, email, 2)
    before = await state(chat, email)
    reply = await chat.say(email, said)
    assert reason in reply
    assert question in reply
    assert "week_rating" not in await stored(chat, email)
    assert await state(chat, email) == before


@pytest.mark.parametrize(
    ("said", "value", "shown"), [("是", "yes", "已保存: 是"), ("否", "no", "已保存: 否")]
)
async def test_yes_no_in_chinese(chat: Chat, said: str, value: str, shown: str) -> None:
    await start_weekly(chat, LILEI)
    await answer_until(chat, LILEI, 5)
    reply = await chat.say(LILEI, said)
    assert shown in reply
    assert "以下是你填写的全部内容" in reply
    assert (await stored(chat, LILEI))["discuss_in_one_on_one"] == (value, False)


async def test_unclear_yes_no_is_asked_again(chat: Chat) -> None:
    await start_weekly(chat, LILEI)
    await answer_until(chat, LILEI, 5)
    assert "请回答“是”或“否”。" in await chat.say(LILEI, "也许吧")
    assert "discuss_in_one_on_one" not in await stored(chat, LILEI)


# ---- limits ---------------------------------------------------------------------------------------


async def test_list_item_over_300_characters_is_refused(chat: Chat) -> None:
    await start_weekly(chat, EMMA)
    reply = await chat.say(EMMA, "Fixed the build\n" + "x" * 301)
    assert "Item 2 is 301 characters; each item may have at most 300." in reply
    assert "Q1/5" in reply
    assert await stored(chat, EMMA) == {}
    assert (await state(chat, EMMA))[1] == "wins"


async def test_list_item_of_exactly_300_characters_is_accepted(chat: Chat) -> None:
    await start_weekly(chat, LILEI)
    assert "第 2/5 题" in await chat.say(LILEI, "做" * 300)
    assert (await stored(chat, LILEI))["wins"] == (["做" * 300], False)


async def test_more_than_five_items_are_refused(chat: Chat) -> None:
    await start_weekly(chat, LILEI)
    reply = await chat.say(LILEI, "\n".join(f"事项 {n}" for n in range(1, 7)))
    assert "你写了 6 项，本题最多 5 项" in reply
    assert await stored(chat, LILEI) == {}


async def test_blockers_over_1000_characters_are_refused(chat: Chat) -> None:
    await start_weekly(chat, LILEI)
    await answer_until(chat, LILEI, 3)
    reply = await chat.say(LILEI, "阻" * 1001)
    assert "这个回答有 1,001 个字符，本题最多 1,000 个字符，请精简一下。" in reply
    assert "第 3/5 题" in reply
    assert "blockers" not in await stored(chat, LILEI)
    assert (await state(chat, LILEI))[1] == "blockers"


async def test_a_100_kb_message_is_refused_naming_both_sizes(chat: Chat) -> None:
    await start_weekly(chat, EMMA)
    before = await state(chat, EMMA)
    reply = await chat.say(EMMA, "x" * 102_400)
    assert "That message is 102,400 characters; I can take at most 20,000. Nothing was saved." in reply
    assert await stored(chat, EMMA) == {}
    assert await state(chat, EMMA) == before
    assert "Q2/5" in await chat.say(EMMA, "Shipped the login page")


async def test_a_100_kb_message_is_refused_in_chinese(chat: Chat) -> None:
    await start_weekly(chat, LILEI)
    before = await state(chat, LILEI)
    reply = await chat.say(LILEI, "长" * 102_400)
    assert "这条消息有 102,400 个字符，最多只能接收 20,000 个字符，未保存任何内容。" in reply
    assert await stored(chat, LILEI) == {}
    assert await state(chat, LILEI) == before


# ---- what people write is kept as written ----------------------------------------------------------


async def test_emoji_and_mixed_scripts_are_stored_exactly(chat: Chat) -> None:
    win = "修复了 login bug 🐛 in 支付 module ✅"
    blocker = "等 API key 🔑 from 安全团队 👩🏽‍💻 — ETA 周五"
    await start_weekly(chat, LILEI)
    await chat.dialogue(LILEI, [(win, f"已保存: {win}"), ("4", "第 3/5 题"), (blocker, f"已保存: {blocker}")])
    answers = await stored(chat, LILEI)
    assert answers["wins"] == ([win], False)
    assert answers["blockers"] == (blocker, False)


async def test_chinese_full_width_punctuation_is_stored_exactly(chat: Chat) -> None:
    blocker = "需要后端支持：接口文档（v2）还没定，能否本周确认？"
    await start_weekly(chat, LILEI)
    await answer_until(chat, LILEI, 3)
    reply = await chat.say(LILEI, blocker)
    assert (await stored(chat, LILEI))["blockers"] == (blocker, False)
    assert f"已保存: {blocker}" in reply


# ---- HR runs the cycle ------------------------------------------------------------------------------


async def submit_canned(chat: Chat, email: str) -> None:
    """Answer every question with canned answers and submit."""
    await answer_until(chat, email, 5)
    await chat.say(email, "no" if email == EMMA else "否")
    await chat.dialogue(email, [("submit", "Thank you!") if email == EMMA else ("提交", "已提交")])


async def test_cycle_status_shows_completion_and_who_is_waiting(chat: Chat) -> None:
    await start_weekly(chat, EMMA, LILEI)
    await submit_canned(chat, EMMA)
    reply = await chat.say(HR, "cycle status 1")
    assert "#1 每周回顾 2026-W48" in reply
    assert "进行中 · 已提交 1/2（50%）" in reply
    assert "李雷 <li.lei@example.com>: 填写中" in reply
    assert EMMA not in reply
    assert await chat.scalar("select count(*) from auditlog where action = 'cycle.status'") == 1


async def test_cycle_remind_reaches_only_people_who_have_not_submitted(chat: Chat) -> None:
    await start_weekly(chat, EMMA, LILEI)
    await submit_canned(chat, EMMA)
    await chat.dialogue(HR, [("cycle remind 1", "已为周期 #1 发送 1 条提醒。")])
    assert "提醒：你的每周回顾还没有完成（截止 2026-11-30）。" in await chat.inbox(LILEI)
    assert "Reminder" not in await chat.inbox(EMMA)
    reminded = await chat.rows(
        "select p.email, s.reminders_sent from assignment s "
        "join person p on p.id = s.person_id order by p.email"
    )
    assert reminded == [(EMMA, 0), (LILEI, 1)]
    assert await chat.scalar("select count(*) from auditlog where action = 'cycle.remind'") == 1


async def test_cycle_close_expires_open_assignments(chat: Chat) -> None:
    await start_weekly(chat, EMMA, LILEI)
    await submit_canned(chat, EMMA)
    await answer_until(chat, LILEI, 3)
    await chat.dialogue(HR, [("cycle close 1", "周期 #1 已关闭：2 人中 1 人已提交。")])
    assert (await state(chat, EMMA))[0] == "submitted"
    assert (await state(chat, LILEI))[0] == "expired"
    assert await chat.scalar("select status from cycle where id = 1") == "closed"
    await chat.dialogue(
        HR, [("cycle close 1", "周期 #1 已经关闭。"), ("cycle remind 1", "周期 #1 已经关闭。")]
    )
    assert await chat.scalar("select count(*) from auditlog where action = 'cycle.close'") == 1
