"""The quarterly assessment as transcripts: the self part, then the manager's part with it alongside."""

from __future__ import annotations

import pytest

from tests.harness import EMMA, HR, LILEI, MANAGER, QUARTERLY, Answers, Chat, Exchange


async def assignments(chat: Chat) -> list[tuple[str, str, str, str]]:
    """``(answering, about, part, status)`` of every quarterly assignment."""
    return await chat.rows(
        "select p.email, subj.email, s.part, s.status from assignment s "
        "join person p on p.id = s.person_id join person subj on subj.id = s.subject_id order by s.id"
    )


async def manager_part_for(chat: Chat, email: str) -> str:
    """HR starts the quarterly assessment for ``email``, who submits the self part with canned answers;
    returns what their manager is shown."""
    await chat.start_cycle(QUARTERLY, email)
    await chat.submit_canned(QUARTERLY, email)
    return await chat.inbox(MANAGER)


# ---- the self part ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "start", "first", "exchange", "answers"),
    [
        pytest.param(
            LILEI,
            f"周期 开始 季度 --人员 {LILEI}",
            ["请完成本季度的自我评估。", "第 1/6 题：本季度你最重要的成果是什么？"],
            [
                ("重构支付网关 延迟降低 40%\n上线新登录流程", "第 2/6 题：本季度目标的完成情况如何？"),
                ("1", "已保存: 超额完成"),
                ("超出期望", "已保存: 4/5 · 超出期望"),
                ("系统设计", "第 5/6 题"),
                ("带新人", "第 6/6 题"),
                ("完成数据库迁移", "以下是你填写的全部内容"),
                ("提交", "谢谢！你的季度评估已提交。"),
            ],
            {
                "achievements": (["重构支付网关 延迟降低 40%", "上线新登录流程"], False),
                "goals_met": ("exceeded", False),
                "self_rating": (4, False),
                "strengths": ("系统设计", False),
                "growth_areas": ("带新人", False),
                "next_quarter": (["完成数据库迁移"], False),
            },
            id="chinese",
        ),
        pytest.param(
            EMMA,
            f"cycle start quarterly --people {EMMA}",
            [
                "Please complete your self-assessment for this quarter.",
                "Q1/6: What were your most important achievements this quarter?",
            ],
            [
                (
                    "Cut p99 latency by 40%\nLaunched SSO",
                    "Q2/6: How did you do against this quarter's goals?",
                ),
                ("Partly met", "Saved: Partly met"),
                ("5", "Saved: 5/5 · Outstanding"),
                ("Debugging production incidents", "Q5/6"),
                ("Public speaking", "Q6/6"),
                ("Launch v2", "Here is everything you wrote"),
                ("submit", "Thank you! Your Quarterly assessment is submitted."),
            ],
            {
                "achievements": (["Cut p99 latency by 40%", "Launched SSO"], False),
                "goals_met": ("partly", False),
                "self_rating": (5, False),
                "strengths": ("Debugging production incidents", False),
                "growth_areas": ("Public speaking", False),
                "next_quarter": (["Launch v2"], False),
            },
            id="english",
        ),
    ],
)
async def test_self_assessment_runs_to_submission(
    chat: Chat, email: str, start: str, first: list[str], exchange: Exchange, answers: Answers
) -> None:
    await chat.start_and_converse(start, email, first, exchange)
    assert await chat.stored(email, QUARTERLY, "self") == answers
    assert await assignments(chat) == [
        (email, email, "self", "submitted"),
        (MANAGER, email, "manager", "active"),
    ]


async def test_self_assessment_resumes_at_the_same_question_after_a_restart(chat: Chat) -> None:
    await chat.at_question(QUARTERLY, LILEI, 5)
    await chat.restart()
    await chat.dialogue(
        LILEI,
        [("我", "季度评估 2026-Q4: 填写中 · 第 5/6 题"), ("多做技术分享", "已保存: 多做技术分享")],
    )
    assert (await chat.stored(LILEI, QUARTERLY, "self"))["growth_areas"] == ("多做技术分享", False)


async def test_manager_sees_nothing_before_the_self_part_is_submitted(chat: Chat) -> None:
    await chat.at_question(QUARTERLY, LILEI, 7)
    assert "李雷" not in await chat.inbox(MANAGER)
    assert await assignments(chat) == [(LILEI, LILEI, "self", "active")]


# ---- the manager's part -----------------------------------------------------------------------------


async def test_manager_receives_the_assessment_with_the_self_assessment_alongside(chat: Chat) -> None:
    inbox = await manager_part_for(chat, LILEI)
    assert "【季度评估 · 李雷】" in inbox
    assert "请对 李雷 本季度的表现进行评估，对方的自评附在下方。" in inbox
    assert "重构支付网关 延迟降低 40%; 上线新登录流程" in inbox
    assert "系统设计" in inbox
    assert "第 1/4 题：你对 李雷 本季度的整体评分是？" in inbox


async def test_manager_answers_the_assessment_to_submission(chat: Chat) -> None:
    await manager_part_for(chat, LILEI)
    await chat.dialogue(
        MANAGER,
        [
            ("4", "第 2/4 题：李雷 本季度最突出的优势是什么？请举一个具体例子。"),
            ("主导了支付网关重构", "第 3/4 题：李雷 下个季度最值得提升的一点是什么？"),
            ("多写设计文档", "第 4/4 题"),
            ("跳过", "以下是你填写的全部内容"),
            ("提交", "谢谢！你的季度评估已提交。"),
        ],
    )
    assert await chat.stored(MANAGER, QUARTERLY, "manager") == {
        "manager_rating": (4, False),
        "manager_strengths": ("主导了支付网关重构", False),
        "manager_improvements": ("多写设计文档", False),
        "manager_comments": (None, True),
    }
    assert await assignments(chat) == [
        (LILEI, LILEI, "self", "submitted"),
        (MANAGER, LILEI, "manager", "submitted"),
    ]


async def test_the_manager_reading_the_self_assessment_is_audited(chat: Chat) -> None:
    await manager_part_for(chat, LILEI)
    reads = await chat.rows(
        "select actor.email, subj.email from auditlog l "
        "join person actor on actor.id = l.actor_id join person subj on subj.id = l.subject_id "
        "where l.action = 'record.read'"
    )
    assert reads == [(MANAGER, LILEI)]


async def test_manager_part_in_english_after_the_manager_switches_language(chat: Chat) -> None:
    await chat.dialogue(MANAGER, [("lang en", "Done: I'll write to you in English from now on.")])
    inbox = await manager_part_for(chat, EMMA)
    assert "【Quarterly assessment · Emma Smith】" in inbox
    assert "Please assess Emma Smith's quarter; their self-assessment is shown alongside." in inbox
    assert "Cut p99 latency by 40%; Launched SSO" in inbox
    assert "Q1/4: What overall rating do you give Emma Smith for the quarter?" in inbox
    await chat.dialogue(
        MANAGER,
        [
            ("Exceeds expectations", "Saved: 4/5 · Exceeds expectations"),
            ("Led the latency work end to end", "Q3/4"),
            ("Delegate more", "Q4/4: Any other comments?"),
            ("Great quarter 🎉", "Here is everything you wrote"),
            ("submit", "Thank you! Your Quarterly assessment is submitted."),
        ],
    )
    manager_part = await chat.stored(MANAGER, QUARTERLY, "manager")
    assert manager_part["manager_comments"] == ("Great quarter 🎉", False)


async def test_manager_part_resumes_at_the_same_question_after_a_restart(chat: Chat) -> None:
    await manager_part_for(chat, LILEI)
    await chat.dialogue(MANAGER, [("3", "第 2/4 题")])
    await chat.restart()
    await chat.dialogue(MANAGER, [("把复杂问题讲清楚", "第 3/4 题")])
    assert await chat.stored(MANAGER, QUARTERLY, "manager") == {
        "manager_rating": (3, False),
        "manager_strengths": ("把复杂问题讲清楚", False),
    }


async def test_a_busy_manager_gets_the_assessment_queued_and_it_starts_after_their_own(chat: Chat) -> None:
    await chat.dialogue(HR, [(f"cycle start quarterly --people {LILEI},{MANAGER}", "周期 #1")])
    await chat.inbox(LILEI)
    assert "第 1/6 题" in await chat.inbox(MANAGER)
    await chat.submit_canned(QUARTERLY, LILEI)
    assert "李雷 已提交季度评估，你对 TA 的评估已排入你的待办队列。" in await chat.inbox(MANAGER)
    assert (MANAGER, LILEI, "manager", "pending") in await assignments(chat)
    for said in ["带领团队完成迁移", "2", "3", "技术决策", "沟通", "招聘"]:
        await chat.say(MANAGER, said)
    reply = await chat.say(MANAGER, "提交")
    assert "谢谢！你的季度评估已提交。" in reply
    assert "【季度评估 · 李雷】" in reply
    assert "重构支付网关 延迟降低 40%" in reply
    assert (MANAGER, LILEI, "manager", "active") in await assignments(chat)
