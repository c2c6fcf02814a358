"""Odd input gets a specific reply in the person's language and changes nothing stored."""

from __future__ import annotations

import pytest

from conversations.i18n import t
from tests.harness import EMMA, HR, LILEI, Chat

FAILED_EN = t("router.failed", "en")


async def _weekly_for_emma(chat: Chat) -> None:
    await chat.say(HR, "cycle start weekly --people emma.smith@example.com")
    await chat.inbox(EMMA)


async def _emma_step(chat: Chat) -> tuple[str, int]:
    person = "(select id from person where email = :e)"
    rows = await chat.rows(f"select current_step, version from assignment where person_id = {person}", e=EMMA)
    return rows[0]


# ("²" reads as 2 after NFKC, like "４": that one is a rating)
@pytest.mark.parametrize("number", ["፩", "4" * 5000, "-3", "4.5"])
async def test_a_number_no_one_means_is_refused_as_a_rating(chat: Chat, number: str) -> None:
    await _weekly_for_emma(chat)
    await chat.say(EMMA, "Shipped the export")
    before = await _emma_step(chat)
    shown = await chat.say(EMMA, number)
    assert t("chat.bad_rating", "en") in shown
    assert FAILED_EN not in shown
    assert await _emma_step(chat) == before


@pytest.mark.parametrize("argument", ["፩", "99999999999999999999", "#", "one"])
async def test_cycle_status_with_an_unusable_id_says_which_cycle_is_needed(chat: Chat, argument: str) -> None:
    shown = await chat.say(HR, f"cycle status {argument}")
    assert t("cmd.needs_cycle_id", "zh-CN", sub="status") in shown


async def test_editing_answer_number_five_thousand_digits_long_is_refused(chat: Chat) -> None:
    await _weekly_for_emma(chat)
    for said in ("Shipped", "4", "skip", "Plan", "no", "edit"):
        await chat.say(EMMA, said)
    before = await _emma_step(chat)
    shown = await chat.say(EMMA, "9" * 5000)
    assert t("chat.edit_number", "en", count=5) in shown
    assert await _emma_step(chat) == before


@pytest.mark.parametrize("due", ["9999-12-31", "2026-02-30", "someday"])
async def test_a_due_date_that_cannot_be_meant_starts_nothing(chat: Chat, due: str) -> None:
    shown = await chat.say(HR, f"cycle start weekly --due {due}")
    assert t("cmd.bad_due", "zh-CN", value=due) in shown
    assert await chat.scalar("select count(*) from cycle") == 0


async def test_a_closed_cycle_is_not_started_again_for_the_same_period(chat: Chat) -> None:
    await chat.say(HR, "cycle start weekly --people emma.smith@example.com")
    await chat.say(HR, "cycle close 1")
    shown = await chat.say(HR, "cycle start weekly --people li.lei@example.com")
    assert "#1" in shown and "已经关闭" in shown
    assert await chat.scalar("select count(*) from assignment") == 1
    assert await chat.inbox(LILEI) == ""


async def test_after_stop_a_stray_message_is_not_taken_as_an_answer(chat: Chat) -> None:
    await _weekly_for_emma(chat)
    await chat.dialogue(EMMA, [("Shipped", "Q2/5"), ("4", "Q3/5"), ("stop", "Paused")])
    shown = await chat.say(EMMA, "thanks bye")
    assert "paused; nothing was saved" in shown
    assert await chat.scalar("select count(*) from answer where step = 'blockers'") == 0
    assert await chat.scalar("select status from assignment") == "paused"
    assert "Q3/5" in await chat.say(EMMA, "resume")
