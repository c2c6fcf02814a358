"""Steering a conversation (skip, back, later, stop, resume), buttons, and commands around it."""

from __future__ import annotations

import pytest

from tests.harness import EMMA, HR, LILEI, WEEKLY, Chat, json_value

# ---- skip -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "shown", "following"),
    [(EMMA, "skip", "Saved: (skipped)", "Q4/5"), (LILEI, "跳过", "已保存: （已跳过）", "第 4/5 题")],
)
async def test_skip_on_an_optional_question_is_stored_as_skipped(
    chat: Chat, email: str, said: str, shown: str, following: str
) -> None:
    await chat.at_question(WEEKLY, email, 3)
    reply = await chat.say(email, said)
    assert shown in reply
    assert following in reply
    assert (await chat.stored(email))["blockers"] == (None, True)
    assert (await chat.state(email))[:2] == ("active", "next_week")


@pytest.mark.parametrize(
    ("email", "said", "reason", "question"),
    [
        (EMMA, "skip", "This question needs an answer; it can't be skipped.", "Q2/5"),
        (LILEI, "跳过", "这道题是必答题，不能跳过。", "第 2/5 题"),
    ],
)
async def test_skip_on_a_required_question_is_refused_with_the_reason(
    chat: Chat, email: str, said: str, reason: str, question: str
) -> None:
    await chat.at_question(WEEKLY, email, 2)
    await chat.say_changing_nothing(email, said, reason, question)
    assert "week_rating" not in await chat.stored(email)


# ---- back -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "question", "current", "again", "saved"),
    [
        (EMMA, "back", "Q2/5", "Current answer: 4/5 · Good", "2", "Saved: 2/5 · Below par"),
        (LILEI, "上一步", "第 2/5 题", "当前回答: 4/5 · 顺利", "2", "已保存: 2/5 · 不太顺利"),
    ],
)
async def test_back_shows_the_previous_answer_and_answering_again_replaces_it(
    chat: Chat, email: str, said: str, question: str, current: str, again: str, saved: str
) -> None:
    await chat.at_question(WEEKLY, email, 3)
    reply = await chat.say(email, said)
    assert question in reply
    assert current in reply
    assert saved in await chat.say(email, again)
    assert (await chat.stored(email))["week_rating"] == (2, False)
    assert await chat.scalar("select count(*) from answer where step = 'week_rating'") == 1, (
        "re-answering replaces the answer"
    )
    assert (await chat.state(email))[1] == "blockers"


async def test_back_at_the_first_question_says_so(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 1)
    reply = await chat.say(EMMA, "back")
    assert "This is already the first question." in reply
    assert "Q1/5" in reply


# ---- later ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said", "reply", "reminder", "following"),
    [
        (
            EMMA,
            "later 2h",
            "OK, I'll remind you at 11-27 02:00 (your time). Your answers so far are saved.",
            "Time to pick up your Weekly recap where you left off.",
            "Q3/5",
        ),
        (
            LILEI,
            "稍后 2小时",
            "好的，我会在 11-27 18:00（你的当地时间）提醒你。已填写的内容都已保存。",
            "该继续填写你的每周回顾了，我们从上次停下的地方接着来。",
            "第 3/5 题",
        ),
    ],
)
async def test_later_snoozes_and_reminds_when_the_time_has_come(
    chat: Chat, email: str, said: str, reply: str, reminder: str, following: str
) -> None:
    await chat.at_question(WEEKLY, email, 2)
    assert reply in await chat.say(email, said)
    assert (await chat.state(email))[:2] == ("snoozed", "week_rating")
    chat.clock.advance(hours=1)
    assert reminder not in await chat.inbox(email)
    chat.clock.advance(hours=2)
    assert reminder in await chat.inbox(email)
    assert following in await chat.say(email, "4")
    assert (await chat.state(email))[:2] == ("active", "blockers")
    assert (await chat.stored(email))["week_rating"] == (4, False)


async def test_later_without_a_duration_snoozes_for_two_hours(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 2)
    assert "I'll remind you at 11-27 02:00" in await chat.say(EMMA, "later")
    assert (await chat.state(EMMA))[0] == "snoozed"


async def test_later_tomorrow_means_nine_in_the_morning_local_time(chat: Chat) -> None:
    await chat.at_question(WEEKLY, LILEI, 2)
    assert "好的，我会在 11-28 09:00（你的当地时间）提醒你" in await chat.say(LILEI, "稍后 明天")


async def test_a_snooze_reminder_survives_a_restart(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 2)
    await chat.say(EMMA, "later 2h")
    await chat.restart()
    chat.clock.advance(hours=3)
    assert "Time to pick up your Weekly recap where you left off." in await chat.inbox(EMMA)


async def test_answering_before_the_snooze_is_over_cancels_the_reminder(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 2)
    await chat.say(EMMA, "later 2h")
    assert "Q3/5" in await chat.say(EMMA, "4")
    chat.clock.advance(hours=3)
    assert "Time to pick up" not in await chat.inbox(EMMA)
    assert (await chat.state(EMMA))[:2] == ("active", "blockers")


@pytest.mark.parametrize(
    ("email", "said", "reason"),
    [
        (EMMA, "later 30 days", "I didn't understand when to remind you."),
        (EMMA, "later 0m", "I didn't understand when to remind you."),
        (LILEI, "稍后 99天", "没能理解提醒时间。"),
    ],
)
async def test_later_with_a_bad_duration_keeps_the_state(
    chat: Chat, email: str, said: str, reason: str
) -> None:
    await chat.at_question(WEEKLY, email, 2)
    await chat.say_changing_nothing(email, said, reason)
    assert await chat.scalar("select count(*) from outbox where kind = 'reminder'") == 0
    assert "week_rating" not in await chat.stored(email)


# ---- stop and resume --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "stop", "paused", "resume", "question"),
    [
        (EMMA, "stop", "Paused. Your Weekly recap answers so far are saved", "resume", "Q2/5"),
        (LILEI, "暂停", "已暂停。你的每周回顾已填写的内容都已保存", "继续", "第 2/5 题"),
    ],
)
async def test_stop_then_resume_continues_at_the_same_question(
    chat: Chat, email: str, stop: str, paused: str, resume: str, question: str
) -> None:
    await chat.at_question(WEEKLY, email, 2)
    assert paused in await chat.say(email, stop)
    assert (await chat.state(email))[:2] == ("paused", "week_rating")
    assert question in await chat.say(email, resume)
    assert (await chat.state(email))[:2] == ("active", "week_rating")


async def test_resume_while_a_question_is_open_shows_it_again(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 2)
    before = await chat.state(EMMA)
    assert "Q2/5: How did the week go overall?" in await chat.say(EMMA, "resume")
    assert (await chat.state(EMMA))[:2] == before[:2]


async def test_resume_after_a_restart_shows_the_current_question(chat: Chat) -> None:
    await chat.at_question(WEEKLY, LILEI, 3)
    await chat.restart()
    assert "第 3/5 题" in await chat.say(LILEI, "继续")


# ---- buttons --------------------------------------------------------------------------------------


async def test_an_old_button_after_a_typed_answer_is_already_answered(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 2)
    buttons = dict(chat.last_buttons(EMMA))
    assert "Q3/5" in await chat.say(EMMA, "4")
    before = await chat.state(EMMA)
    reply = await chat.click(EMMA, buttons["1 · Rough"])
    assert "That question has already been answered; nothing was changed." in reply
    assert (await chat.stored(EMMA))["week_rating"] == (4, False)
    assert await chat.state(EMMA) == before


async def test_a_double_click_stores_once(chat: Chat) -> None:
    await chat.at_question(WEEKLY, LILEI, 2)
    buttons = dict(chat.last_buttons(LILEI))
    first = await chat.click(LILEI, buttons["3 · 一般"])
    assert "已保存: 3/5 · 一般" in first
    assert "第 3/5 题" in first
    after_first = await chat.state(LILEI)
    assert "这道题已经回答过了，没有做任何更改。" in await chat.click(LILEI, buttons["3 · 一般"])
    assert await chat.state(LILEI) == after_first
    assert await chat.stored(LILEI) == {"wins": (["完成了登录模块重构"], False), "week_rating": (3, False)}


# ---- commands -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "reply"),
    [
        (EMMA, 'I don\'t know the command "frobnicate". Reply "help" to see the commands.'),
        (LILEI, "我不认识命令“frobnicate”。回复“帮助”查看可用命令。"),
    ],
)
async def test_an_unknown_command_with_no_conversation_open(chat: Chat, email: str, reply: str) -> None:
    assert reply in await chat.say(email, "frobnicate")


@pytest.mark.parametrize(
    ("email", "command", "reply"),
    [
        (EMMA, "me", "Weekly recap 2026-W48: in progress · question 2 of 5"),
        (EMMA, "help", "Cadence: what I can do"),
        (LILEI, "我", "每周回顾 2026-W48: 填写中 · 第 2/5 题"),
        (LILEI, "帮助", "节拍：我能做什么"),
    ],
)
async def test_a_command_mid_conversation_is_answered_without_moving_it(
    chat: Chat, email: str, command: str, reply: str
) -> None:
    await chat.at_question(WEEKLY, email, 2)
    await chat.say_changing_nothing(email, command, reply)
    assert list(await chat.stored(email)) == ["wins"]
    assert "3/5" in await chat.say(email, "4")


async def test_an_answer_that_starts_with_the_word_cycle_is_an_answer(chat: Chat) -> None:
    await chat.at_question(WEEKLY, EMMA, 1)
    reply = await chat.say(EMMA, "Cycle time dropped by 20%")
    assert "Q2/5" in reply
    assert (await chat.stored(EMMA))["wins"] == (["Cycle time dropped by 20%"], False)


@pytest.mark.parametrize(
    ("command", "refused"),
    [
        ("cycle start weekly", "cycle.start.refused"),
        ("cycle close 1", "cycle.close.refused"),
        ("cycle remind 1", "cycle.remind.refused"),
    ],
)
async def test_an_hr_command_from_someone_who_is_not_hr_is_refused(
    chat: Chat, command: str, refused: str
) -> None:
    await chat.dialogue(HR, [(f"cycle start monthly --people {LILEI}", "周期 #1")])
    assert "Sorry, only a HR admin can do that. Nothing was changed." in await chat.say(EMMA, command)
    assert await chat.rows("select id, ritual_key, status from cycle") == [(1, "monthly_review", "open")]
    assert await chat.rows("select status, reminders_sent from assignment") == [("active", 0)]
    assert await chat.scalar("select count(*) from outbox where kind = 'reminder'") == 0
    audit = await chat.rows(
        "select p.email, cast(l.detail as text) from auditlog l "
        "join person p on p.id = l.actor_id where l.action = :a",
        a=refused,
    )
    assert [(email, json_value(detail)) for email, detail in audit] == [(EMMA, {"needed": "hr"})]


async def test_an_hr_command_in_chinese_from_someone_who_is_not_hr_is_refused(chat: Chat) -> None:
    assert "抱歉，只有HR 管理员可以执行这个操作，未做任何更改。" in await chat.say(LILEI, "周期 开始 周报")
    assert await chat.scalar("select count(*) from cycle") == 0
    assert await chat.scalar("select count(*) from auditlog where action = 'cycle.start.refused'") == 1
