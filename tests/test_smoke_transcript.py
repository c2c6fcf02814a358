"""A first whole-ritual transcript, in Chinese, with a restart in the middle."""

from __future__ import annotations

from tests.harness import HR, LILEI, Chat


async def test_weekly_recap_in_chinese_survives_a_restart(chat: Chat) -> None:
    await chat.dialogue(HR, [("周期 开始 周报 --部门 Engineering", "周期 #1")])
    assert "第 1/5 题" in await chat.inbox(LILEI)
    await chat.dialogue(LILEI, [("完成了登录模块重构 🚀", "第 2/5 题"), ("4", "第 3/5 题")])
    await chat.restart()
    await chat.dialogue(
        LILEI,
        [("等待评审", "第 4/5 题"), ("准备发布", "第 5/5 题"), ("否", "提交"), ("提交", "已提交")],
    )
    stored = await chat.rows(
        "select a.step, a.value from answer a join assignment s on s.id = a.assignment_id "
        "join person p on p.id = s.person_id where p.email = :email order by a.id",
        email=LILEI,
    )
    assert [step for step, _ in stored] == [
        "wins",
        "week_rating",
        "blockers",
        "next_week",
        "discuss_in_one_on_one",
    ]
    assert (
        await chat.scalar(
            "select status from assignment where person_id = (select id from person where email = :e)",
            e=LILEI,
        )
        == "submitted"
    )
