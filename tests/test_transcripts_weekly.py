"""The weekly recap as transcripts, in English (Emma) and Chinese (李雷), and HR running its cycle."""

from __future__ import annotations

import pytest

from tests.harness import EMMA, HR, LILEI, WEEKLY, Answers, Chat, Exchange

# ---- whole runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "start", "first", "exchange", "answers"),
    [
        pytest.param(
            EMMA,
            f"cycle start weekly --people {EMMA}",
            ["5 questions", "Q1/5: What did you get done this week?"],
            [
                ("Shipped the login page\n- Fixed the flaky CI job", "Q2/5: How did the week go overall?"),
                ("4", "Saved: 4/5 · Good"),
                ("Waiting on API keys from the security team", "Q4/5"),
                ("1. Release 2.3\n2. Write the migration guide", "Q5/5"),
                ("yes", "Here is everything you wrote. Submit it, or change an answer first."),
                ("submit", "Thank you! Your Weekly recap is submitted."),
            ],
            {
                "wins": (["Shipped the login page", "Fixed the flaky CI job"], False),
                "week_rating": (4, False),
                "blockers": ("Waiting on API keys from the security team", False),
                "next_week": (["Release 2.3", "Write the migration guide"], False),
                "discuss_in_one_on_one": ("yes", False),
            },
            id="english",
        ),
        pytest.param(
            LILEI,
            "周期 开始 周报 --人员 li.lei@example.com",
            ["第 1/5 题：本周完成了哪些事情？"],
            [
                ("完成了登录模块重构\n修复了两个线上问题", "第 2/5 题：这一周整体进展如何？"),
                ("3", "已保存: 3/5 · 一般"),
                ("跳过", "第 4/5 题"),
                ("准备发布 2.3；编写迁移文档", "第 5/5 题"),
                ("否", "以下是你填写的全部内容"),
                ("提交", "谢谢！你的每周回顾已提交。"),
            ],
            {
                "wins": (["完成了登录模块重构", "修复了两个线上问题"], False),
                "week_rating": (3, False),
                "blockers": (None, True),
                "next_week": (["准备发布 2.3", "编写迁移文档"], False),
                "discuss_in_one_on_one": ("no", False),
            },
            id="chinese",
        ),
    ],
)
async def test_weekly_recap_runs_to_submission(
    chat: Chat, email: str, start: str, first: list[str], exchange: Exchange, answers: Answers
) -> None:
    await chat.start_and_converse(start, email, first, exchange)
    assert await chat.stored(email, WEEKLY) == answers
    assert (await chat.state(email, WEEKLY))[:2] == ("submitted", None)


async def test_weekly_recap_resumes_at_the_same_question_after_a_restart(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 3)
    await chat.restart()
    await chat.dialogue(
        EMMA,
        [
            ("me", "Weekly recap 2026-W48: in progress · question 3 of 5"),
            ("Blocked on the staging database", "Saved: Blocked on the staging database"),
        ],
    )
    assert (await chat.stored(EMMA, WEEKLY))["blockers"] == ("Blocked on the staging database", False)
    assert (await chat.state(EMMA, WEEKLY))[:2] == ("active", "next_week")


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
    await chat.at_question(WEEKLY, email, 2)
    assert shown in await chat.say(email, said)
    assert (await chat.stored(email, WEEKLY))["week_rating"] == (value, False)


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
    await chat.at_question(WEEKLY, email, 2)
    await chat.say_changing_nothing(email, said, reason, question)
    assert "week_rating" not in await chat.stored(email, WEEKLY)


@pytest.mark.parametrize(
    ("said", "value", "shown"), [("是", "yes", "已保存: 是"), ("否", "no", "已保存: 否")]
)
async def test_yes_no_in_chinese(chat: Chat, said: str, value: str, shown: str) -> None:
    await chat.at_question(WEEKLY, LILEI, 5)
    reply = await chat.say(LILEI, said)
    assert shown in reply
    assert "以下是你填写的全部内容" in reply
    assert (await chat.stored(LILEI, WEEKLY))["discuss_in_one_on_one"] == (value, False)


async def test_unclear_yes_no_is_asked_again(chat: Chat) -> None:
    await chat.at_question(WEEKLY, LILEI, 5)
    assert "请回答“是”或“否”。" in await chat.say(LILEI, "也许吧")
    assert "discuss_in_one_on_one" not in await chat.stored(LILEI, WEEKLY)


# ---- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "reason", "question"),
    [
        pytest.param(
            EMMA,
            "Fixed the build\n" + "x" * 301,
            "Item 2 is 301 characters; each item may have at most 300.",
            "Q1/5",
            id="item-over-300-characters",
        ),
        pytest.param(
            LILEI,
            "\n".join(f"事项 {n}" for n in range(1, 7)),
            "你写了 6 项，本题最多 5 项",
            "第 1/5 题",
            id="more-than-five-items",
        ),
    ],
)
async def test_a_list_over_the_limits_is_refused(
    chat: Chat, email: str, said: str, reason: str, question: str
) -> None:
    await chat.start_cycle(WEEKLY, email)
    reply = await chat.say(email, said)
    assert reason in reply
    assert question in reply
    assert await chat.stored(email, WEEKLY) == {}
    assert (await chat.state(email, WEEKLY))[1] == "wins"


async def test_list_item_of_exactly_300_characters_is_accepted(chat: Chat) -> None:
    await chat.start_cycle(WEEKLY, LILEI)
    assert "第 2/5 题" in await chat.say(LILEI, "做" * 300)
    assert (await chat.stored(LILEI, WEEKLY))["wins"] == (["做" * 300], False)


async def test_blockers_over_1000_characters_are_refused(chat: Chat) -> None:
    await chat.at_question(WEEKLY, LILEI, 3)
    reply = await chat.say(LILEI, "阻" * 1001)
    assert "这个回答有 1,001 个字符，本题最多 1,000 个字符，请精简一下。" in reply
    assert "第 3/5 题" in reply
    assert "blockers" not in await chat.stored(LILEI, WEEKLY)
    assert (await chat.state(LILEI, WEEKLY))[1] == "blockers"


@pytest.mark.parametrize(
    ("email", "letter", "reason", "first_answer", "following"),
    [
        pytest.param(
            EMMA,
            "x",
            "That message is 102,400 characters; I can take at most 20,000. Nothing was saved.",
            "Shipped the login page",
            "Q2/5",
            id="english",
        ),
        pytest.param(
            LILEI,
            "长",
            "这条消息有 102,400 个字符，最多只能接收 20,000 个字符，未保存任何内容。",
            "完成了登录模块重构",
            "第 2/5 题",
            id="chinese",
        ),
    ],
)
async def test_a_100_kb_message_is_refused_naming_both_sizes(
    chat: Chat, email: str, letter: str, reason: str, first_answer: str, following: str
) -> None:
    await chat.start_cycle(WEEKLY, email)
    await chat.say_changing_nothing(email, letter * 102_400, reason)
    assert await chat.stored(email, WEEKLY) == {}
    assert following in await chat.say(email, first_answer)


# ---- what people write is kept as written ----------------------------------------------------------


async def test_emoji_and_mixed_scripts_are_stored_exactly(chat: Chat) -> None:
    win = "修复了 login bug 🐛 in 支付 module ✅"
    blocker = "等 API key 🔑 from 安全团队 👩🏽‍💻 — ETA 周五"
    await chat.start_cycle(WEEKLY, LILEI)
    await chat.dialogue(LILEI, [(win, f"已保存: {win}"), ("4", "第 3/5 题"), (blocker, f"已保存: {blocker}")])
    answers = await chat.stored(LILEI, WEEKLY)
    assert answers["wins"] == ([win], False)
    assert answers["blockers"] == (blocker, False)


async def test_chinese_full_width_punctuation_is_stored_exactly(chat: Chat) -> None:
    blocker = "需要后端支持：接口文档（v2）还没定，能否本周确认？"
    await chat.at_question(WEEKLY, LILEI, 3)
    reply = await chat.say(LILEI, blocker)
    assert (await chat.stored(LILEI, WEEKLY))["blockers"] == (blocker, False)
    assert f"已保存: {blocker}" in reply


# ---- HR runs the cycle ------------------------------------------------------------------------------


async def test_cycle_status_shows_completion_and_who_is_waiting(chat: Chat) -> None:
    await chat.start_cycle(WEEKLY, EMMA, LILEI)
    await chat.submit_canned(WEEKLY, EMMA)
    reply = await chat.say(HR, "cycle status 1")
    assert "#1 每周回顾 2026-W48" in reply
    assert "进行中 · 已提交 1/2（50%）" in reply
    assert "李雷 <li.lei@example.com>: 填写中" in reply
    assert EMMA not in reply
    assert await chat.scalar("select count(*) from auditlog where action = 'cycle.status'") == 1


async def test_cycle_remind_reaches_only_people_who_have_not_submitted(chat: Chat) -> None:
    await chat.start_cycle(WEEKLY, EMMA, LILEI)
    await chat.submit_canned(WEEKLY, EMMA)
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
    await chat.start_cycle(WEEKLY, EMMA, LILEI)
    await chat.submit_canned(WEEKLY, EMMA)
    await chat.answer_until(WEEKLY, LILEI, 3)
    await chat.dialogue(HR, [("cycle close 1", "周期 #1 已关闭：2 人中 1 人已提交。")])
    assert (await chat.state(EMMA, WEEKLY))[0] == "submitted"
    assert (await chat.state(LILEI, WEEKLY))[0] == "expired"
    assert await chat.scalar("select status from cycle where id = 1") == "closed"
    await chat.dialogue(
        HR, [("cycle close 1", "周期 #1 已经关闭。"), ("cycle remind 1", "周期 #1 已经关闭。")]
    )
    assert await chat.scalar("select count(*) from auditlog where action = 'cycle.close'") == 1
