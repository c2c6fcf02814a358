"""Defects a review found in the 1:1 assistant, each held fixed by a test (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from conversations.command_parser import Command, looks_like_command, parse_command
from conversations.i18n import t
from conversations.one_on_one_schedule import is_schedule_command
from conversations.peer_feedback import received_for
from tests.harness import EMMA, MANAGER, Chat

RAJ = "raj.patel@example.com"
ZHANG = "zhang.wei@example.com"
HAN = "han.meimei@example.com"
MICHAEL = "michael.brown@example.com"
SARAH = "sarah.johnson@example.com"


async def _id(chat: Chat, email: str) -> int:
    return int(await chat.scalar("select id from person where email = :e", e=email))


# ---- anonymity: asking again tells the requester who answered an anonymous request ----------------


async def test_asking_again_does_not_reveal_who_answered_an_anonymous_request(chat: Chat) -> None:
    await chat.say(EMMA, "feedback ask @raj.patel @zhang.wei anonymous")
    await chat.say(RAJ, "feedback @emma.smith The rollback plan for billing in sprint 14 saved us an outage")
    # Emma asks the same two again: whoever is "already asked" has not answered, so the other one did
    reply = await chat.say(EMMA, "feedback ask @raj.patel @zhang.wei anonymous")
    lines = [line for line in reply.splitlines() if "Raj Patel" in line or "张伟" in line]
    assert all("Raj Patel" in line and "张伟" in line for line in lines), (
        "the reply treats the one who answered differently from the one who did not:\n" + reply
    )


# ---- anonymity: a manager who gave anonymous feedback counts towards the threshold they read with ----


async def test_a_giver_in_the_chain_needs_three_other_givers_before_reading_anonymous_items(
    chat: Chat,
) -> None:
    await chat.say(MANAGER, "反馈 匿名 @emma.smith 周二的计费演示讲得很清楚，客户当场确认了方案")
    await chat.say(
        RAJ, "feedback anonymous @emma.smith Zero-downtime migration plan for billing in sprint 14"
    )
    await chat.say(ZHANG, "反馈 匿名 @emma.smith 帮我排查了 CI 里不稳定的测试")
    assert chat.app is not None
    async with chat.app.db.sessions() as session:
        seen = await received_for(
            session, recipient_id=await _id(chat, EMMA), viewer_id=await _id(chat, MANAGER), locale="en"
        )
    others = [i.text for i in seen.anonymous if not i.mine]
    # the manager knows their own item: the two others' items are then attributable between two people
    assert others == [], f"with only 2 other anonymous givers, the manager reads: {others}"


# ---- nothing lost: an answer that starts with a command word is taken as a command ------------------


@pytest.mark.parametrize(
    "answer",
    ["Feedback given to the two new hires on their first PRs", "Stats dashboard shipped", "Record revenue"],
)
async def test_an_answer_starting_with_a_command_word_is_stored_as_the_answer(
    chat: Chat, answer: str
) -> None:
    await chat.start_cycle("weekly_recap", EMMA)
    await chat.say(EMMA, answer)
    stored = await chat.stored(EMMA, "weekly_recap")
    assert "wins" in stored, f"{answer!r} was run as a command, not stored as the answer"


# ---- audit: the scheduled agenda card is a read of the report's record ----------------------------


async def test_the_scheduled_agenda_card_is_audited_as_a_read(db_url: str) -> None:
    from tests.test_one_on_one_schedule import agendas_to, start

    chat = await start(db_url)
    try:
        await chat.tick()
        meeting = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # Monday 10:00 in Los Angeles
        chat.clock.now = meeting - timedelta(hours=2)
        await chat.tick()
        assert await agendas_to(chat, MICHAEL) == ["1:1 with Sarah Johnson — 2026-11-30"]
        audited = await chat.scalar(
            "select count(*) from auditlog"
            " where action = 'record.read' and actor_id = :a and subject_id = :s",
            a=await _id(chat, MICHAEL),
            s=await _id(chat, SARAH),
        )
        assert audited >= 1, "the agenda card showed Sarah's check-ins and tasks to Michael unaudited"
    finally:
        await chat.close()


# ---- least privilege: "1on1 @x every/next" tells anyone who is in the org ---------------------------


async def test_a_non_manager_setting_a_cadence_learns_nothing_about_the_mention(chat: Chat) -> None:
    unknown = await chat.say(EMMA, "1on1 @nobody.here every 14")
    known = await chat.say(EMMA, "1on1 @sarah.johnson every 14")
    # "agenda", "record" and "1on1 @x" (recording) refuse a non-manager before the lookup; this does not
    assert "Sarah Johnson" not in known
    assert unknown.split("“")[0] == known.split("“")[0] or "nobody" not in unknown


async def test_a_refused_cadence_is_audited_with_the_mention_as_typed(chat: Chat) -> None:
    await chat.say(EMMA, "1on1 @Raj Patel every 14")
    rows = await chat.rows(
        "select subject_id, cast(detail as text) from auditlog where action = 'one_on_one.cadence.refused'"
    )
    assert [(subject, json.loads(detail)) for subject, detail in rows] == [(None, {"mention": "@Raj Patel"})]
    assert await chat.scalar("select count(*) from oneononepair") == 0


# ---- anonymity: a named request after an anonymous one tells no more --------------------------------


async def test_a_named_request_after_an_anonymous_one_does_not_reveal_who_answered(chat: Chat) -> None:
    await chat.say(EMMA, "feedback ask @raj.patel @zhang.wei anonymous")
    await chat.say(RAJ, "feedback @emma.smith The rollback plan for billing in sprint 14 saved us an outage")
    await chat.inbox(RAJ)
    reply = await chat.say(EMMA, "feedback ask @raj.patel @zhang.wei")
    assert t("peerfb.already_asked_before", "en", names="Raj Patel and 张伟") in reply
    assert await chat.scalar("select count(*) from feedbackrequest") == 2  # nobody asked again
    assert await chat.inbox(RAJ) == ""


async def test_a_giver_in_the_chain_reads_the_others_once_three_besides_them_gave(chat: Chat) -> None:
    await chat.say(MANAGER, "反馈 匿名 @emma.smith 周二的计费演示讲得很清楚，客户当场确认了方案")
    await chat.say(
        RAJ, "feedback anonymous @emma.smith Zero-downtime migration plan for billing in sprint 14"
    )
    await chat.say(ZHANG, "反馈 匿名 @emma.smith 帮我排查了 CI 里不稳定的测试")
    assert chat.app is not None
    recipient, manager = await _id(chat, EMMA), await _id(chat, MANAGER)
    async with chat.app.db.sessions() as session:
        seen = await received_for(session, recipient_id=recipient, viewer_id=manager, locale="en")
    assert [i.mine for i in seen.anonymous] == [True]  # their own only
    assert seen.waiting == 2 and t("peerfb.waiting_many_besides_you", "en", count=2, threshold=3) in seen.text
    await chat.say(HAN, "反馈 匿名 @emma.smith 周会纪要写得及时，行动项都有负责人和日期")
    async with chat.app.db.sessions() as session:
        seen = await received_for(session, recipient_id=recipient, viewer_id=manager, locale="en")
    assert len(seen.anonymous) == 4 and seen.waiting == 0
    # Emma gave none: for her, three givers are enough
    async with chat.app.db.sessions() as session:
        own = await received_for(session, recipient_id=recipient, viewer_id=recipient, locale="en")
    assert len(own.anonymous) == 4


# ---- names with a space: "agenda @Emma Smith", "1on1 @Emma Smith every 14" --------------------------


async def test_agenda_takes_a_name_with_a_space(chat: Chat) -> None:
    assert looks_like_command("agenda @Emma Smith")
    reply = await chat.say(MANAGER, "agenda @Emma Smith")
    assert "【与 Emma Smith 的一对一 — " in reply
    assert t("agenda.usage", "zh-CN") in await chat.say(MANAGER, "agenda @emma.smith tomorrow")
    audited = await chat.rows("select action, subject_id from auditlog where action like 'record.read%'")
    assert audited == [("record.read", await _id(chat, EMMA))]


async def test_a_cadence_for_a_name_with_a_space_reaches_the_schedule(chat: Chat) -> None:
    for typed in (
        "1on1 @Emma Smith every 14",
        "一对一 @Emma Smith 每2周",
        "1on1 @Emma Smith next 2026-12-03 15:00",
    ):
        parsed = parse_command(typed)
        assert isinstance(parsed, Command) and is_schedule_command(parsed), typed
    assert not is_schedule_command(cast(Command, parse_command("1on1 @Emma Smith")))
    reply = await chat.say(MANAGER, "1on1 @Emma Smith every 14")
    assert "Emma Smith 每 14 天" in reply
    pair = await chat.rows(
        "select p.every_days from oneononepair p join person r on r.id = p.report_id where r.email = :e",
        e=EMMA,
    )
    assert pair == [(14,)]
