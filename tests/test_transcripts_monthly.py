"""The monthly review as transcripts: choices, the summary and its edits, a review queued behind a recap."""

from __future__ import annotations

import pytest

from tests.harness import EMMA, HR, LILEI, MONTHLY, WEEKLY, Answers, Chat, Exchange

# ---- whole runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "start", "first", "exchange", "answers"),
    [
        pytest.param(
            EMMA,
            f"cycle start monthly --people {EMMA}",
            ["7 questions", "Q1/7: What were your most important results this month?"],
            [
                (
                    "Launched billing v2\nHired two engineers",
                    "Q2/7: Where do your goals for the month stand?",
                ),
                ("On track", "Saved: On track"),
                ("Above expectations", "Saved: 4/5 · Above expectations"),
                ("Profiling PostgreSQL queries", "Q5/7"),
                ("skip", "Q6/7"),
                ("Ship SSO\nOnboard the new hire", "Q7/7"),
                ("More time with the designers", "Here is everything you wrote"),
                ("submit", "Thank you! Your Monthly review is submitted."),
            ],
            {
                "highlights": (["Launched billing v2", "Hired two engineers"], False),
                "goal_status": ("on_track", False),
                "self_rating": (4, False),
                "learned": ("Profiling PostgreSQL queries", False),
                "challenges": (None, True),
                "next_month": (["Ship SSO", "Onboard the new hire"], False),
                "support_needed": ("More time with the designers", False),
            },
            id="english",
        ),
        pytest.param(
            LILEI,
            "周期 开始 月报 --人员 li.lei@example.com",
            ["第 1/7 题：这个月最重要的成果有哪些？"],
            [
                ("上线了新版计费\n招聘了两名工程师", "第 2/7 题：你的月度目标目前处于什么状态？"),
                ("有风险", "已保存: 有风险"),
                ("符合预期", "已保存: 3/5 · 符合预期"),
                ("学会了性能分析", "第 5/7 题"),
                ("跨团队协作比较慢", "第 6/7 题"),
                ("完成单点登录\n带新同事熟悉代码", "第 7/7 题"),
                ("跳过", "以下是你填写的全部内容"),
                ("提交", "谢谢！你的月度复盘已提交。"),
            ],
            {
                "highlights": (["上线了新版计费", "招聘了两名工程师"], False),
                "goal_status": ("at_risk", False),
                "self_rating": (3, False),
                "learned": ("学会了性能分析", False),
                "challenges": ("跨团队协作比较慢", False),
                "next_month": (["完成单点登录", "带新同事熟悉代码"], False),
                "support_needed": (None, True),
            },
            id="chinese",
        ),
    ],
)
async def test_monthly_review_runs_to_submission(
    chat: Chat, email: str, start: str, first: list[str], exchange: Exchange, answers: Answers
) -> None:
    await chat.start_and_converse(start, email, first, exchange)
    assert await chat.stored(email, MONTHLY) == answers
    assert (await chat.state(email, MONTHLY))[:2] == ("submitted", None)


async def test_monthly_review_resumes_at_the_same_question_after_a_restart(chat: Chat) -> None:
    await chat.at_question(MONTHLY, LILEI, 4)
    await chat.restart()
    await chat.dialogue(
        LILEI,
        [
            ("我", "月度复盘 2026-11: 填写中 · 第 4/7 题"),
            ("学会了写迁移脚本", "已保存: 学会了写迁移脚本"),
        ],
    )
    assert (await chat.stored(LILEI, MONTHLY))["learned"] == ("学会了写迁移脚本", False)
    assert (await chat.state(LILEI, MONTHLY))[:2] == ("active", "challenges")


# ---- choices and text limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "value", "shown"),
    [
        (EMMA, "3", "at_risk", "Saved: At risk"),
        (EMMA, "off track", "off_track", "Saved: Off track"),
        (LILEI, "１", "done", "已保存: 已完成"),
        (LILEI, "已落后", "off_track", "已保存: 已落后"),
    ],
    ids=["en-number", "en-label", "zh-full-width-number", "zh-label"],
)
async def test_choice_by_number_and_by_label(
    chat: Chat, email: str, said: str, value: str, shown: str
) -> None:
    await chat.at_question(MONTHLY, email, 2)
    reply = await chat.say(email, said)
    assert shown in reply
    assert (await chat.stored(email, MONTHLY))["goal_status"] == (value, False)


@pytest.mark.parametrize(
    ("email", "said", "reason"),
    [
        (EMMA, "5", "Please pick one of the options: a number from 1 to 4, or its name."),
        (EMMA, "maybe", "Please pick one of the options: a number from 1 to 4, or its name."),
        (LILEI, "还可以", "请从选项中选择：回复 1 到 4 之间的数字或选项名称。"),
    ],
)
async def test_invalid_choice_is_asked_again_and_nothing_is_stored(
    chat: Chat, email: str, said: str, reason: str
) -> None:
    await chat.at_question(MONTHLY, email, 2)
    await chat.say_changing_nothing(email, said, reason)
    assert "goal_status" not in await chat.stored(email, MONTHLY)


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        pytest.param("a", "Please write a little more: at least 2 characters.", id="too-short"),
        pytest.param(
            "y" * 1501,
            "That answer is 1,501 characters; this question takes at most 1,500. Please shorten it.",
            id="over-1500-characters",
        ),
    ],
)
async def test_a_text_answer_outside_the_length_limits_is_refused(chat: Chat, said: str, reason: str) -> None:
    await chat.at_question(MONTHLY, EMMA, 4)
    reply = await chat.say(EMMA, said)
    assert reason in reply
    assert "Q4/7" in reply
    assert "learned" not in await chat.stored(EMMA, MONTHLY)


async def test_switching_language_mid_review_changes_the_next_question(chat: Chat) -> None:
    await chat.at_question(MONTHLY, EMMA, 2)
    await chat.dialogue(
        EMMA,
        [
            ("语言 中文", "好的，之后我会用中文和你交流。"),
            ("2", "第 3/7 题：你如何评价自己这个月的表现？"),
            ("lang en", "Done: I'll write to you in English from now on."),
            ("4", "Q4/7"),
        ],
    )
    assert await chat.scalar("select preferred_locale from person where email = :e", e=EMMA) == "en"


# ---- the summary ----------------------------------------------------------------------------------


async def test_edit_from_the_summary_changes_one_answer_and_returns_to_the_summary(chat: Chat) -> None:
    await chat.at_question(MONTHLY, EMMA, 8)
    before = await chat.stored(EMMA, MONTHLY)
    await chat.dialogue(
        EMMA,
        [
            ("edit 2", "Current answer: On track"),
            ("at risk", "Here is everything you wrote"),
        ],
    )
    after = await chat.stored(EMMA, MONTHLY)
    assert after["goal_status"] == ("at_risk", False)
    assert {k: v for k, v in after.items() if k != "goal_status"} == {
        k: v for k, v in before.items() if k != "goal_status"
    }
    assert (await chat.state(EMMA, MONTHLY))[:2] == ("active", "__summary__")
    assert "Thank you! Your Monthly review is submitted." in await chat.say(EMMA, "submit")
    assert (await chat.state(EMMA, MONTHLY))[0] == "submitted"


async def test_edit_in_chinese_shows_the_new_answer_in_the_summary(chat: Chat) -> None:
    await chat.at_question(MONTHLY, LILEI, 8)
    await chat.dialogue(
        LILEI,
        [
            ("修改 4", "当前回答: 学会了性能分析"),
            ("学会了写单元测试", "4. 这个月你学到了什么，或者哪方面有成长？: 学会了写单元测试"),
            ("提交", "谢谢！你的月度复盘已提交。"),
        ],
    )
    assert (await chat.stored(LILEI, MONTHLY))["learned"] == ("学会了写单元测试", False)


async def test_edit_with_a_number_out_of_range_is_refused(chat: Chat) -> None:
    await chat.at_question(MONTHLY, EMMA, 8)
    await chat.say_changing_nothing(EMMA, "edit 9", "Please reply with a number from 1 to 7")


async def test_submit_by_clicking_the_summary_button(chat: Chat) -> None:
    await chat.at_question(MONTHLY, EMMA, 8)
    buttons = dict(chat.last_buttons(EMMA))
    assert "Thank you! Your Monthly review is submitted." in await chat.click(EMMA, buttons["Submit"])
    assert (await chat.state(EMMA, MONTHLY))[0] == "submitted"
    assert "already been answered" in await chat.click(EMMA, buttons["Submit"])


# ---- a review queued behind a weekly recap --------------------------------------------------------


async def test_monthly_review_waits_behind_the_weekly_recap_and_starts_after_it(chat: Chat) -> None:
    await chat.dialogue(
        HR,
        [
            (f"cycle start weekly --people {EMMA}", "1 人立即收到"),
            (f"cycle start monthly --people {EMMA}", "0 人立即收到，1 人在完成手头的填写后收到"),
        ],
    )
    inbox = await chat.inbox(EMMA)
    assert "Q1/5: What did you get done this week?" in inbox
    assert "A new Monthly review is waiting for you; it starts as soon as you finish your current" in inbox
    assert "Q1/7" not in inbox
    assert (await chat.state(EMMA, MONTHLY))[0] == "pending"
    await chat.dialogue(
        EMMA,
        [("Shipped login", "Q2/5"), ("4", "Q3/5"), ("skip", "Q4/5"), ("Release", "Q5/5"), ("no", "Submit")],
    )
    reply = await chat.say(EMMA, "submit")
    assert "Thank you! Your Weekly recap is submitted." in reply
    assert "Q1/7: What were your most important results this month?" in reply
    assert (await chat.state(EMMA, WEEKLY))[0] == "submitted"
    assert (await chat.state(EMMA, MONTHLY))[:2] == ("active", "highlights")
