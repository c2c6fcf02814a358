"""Concurrent messages are journaled and processed in batches: nothing lost, nothing twice, in order."""

from __future__ import annotations

import asyncio
import json

from bot.platforms.base import IncomingEvent
from conversations.i18n import t
from storage.models import RitualDefinition
from tests.harness import EMMA, HR, LILEI, Chat

ENGINEERS = [
    "emma.smith@example.com",
    "li.lei@example.com",
    "zhang.wei@example.com",
    "han.meimei@example.com",
]


async def _stored(chat: Chat, email: str) -> dict[str, object]:
    rows = await chat.rows(
        "select a.step, a.value from answer a join assignment s on s.id = a.assignment_id "
        "join person p on p.id = s.person_id where p.email = :email",
        email=email,
    )
    return {step: json.loads(value) if isinstance(value, str) else value for step, value in rows}


async def test_people_answering_at_the_same_moment_all_have_their_answers_stored(chat: Chat) -> None:
    await chat.say(HR, "cycle start weekly --dept Engineering")
    await asyncio.gather(*(chat.console.say(email, f"shipped {email}") for email in ENGINEERS))
    await chat.deliver()
    for email in ENGINEERS:
        assert await _stored(chat, email) == {"wins": [f"shipped {email}"]}
        shown = await chat.inbox(email)
        assert "Q2/5" in shown or "第 2/5 题" in shown
    journal_rows = await chat.scalar("select count(*) from inboundevent where processed_at is not null")
    assert journal_rows == 1 + len(ENGINEERS)


async def test_two_messages_from_one_person_at_once_are_applied_in_order(chat: Chat) -> None:
    await chat.say(HR, "cycle start weekly --dept Engineering")
    first = chat.console.say(LILEI, "完成了登录模块重构", event_id="a")
    second = chat.console.say(LILEI, "4", event_id="b")
    await asyncio.gather(first, second)
    assert await _stored(chat, LILEI) == {"wins": ["完成了登录模块重构"], "week_rating": 4}
    step = await chat.scalar(
        "select current_step from assignment where person_id = (select id from person where email = :e)",
        e=LILEI,
    )
    assert step == "blockers"


async def test_the_same_event_twice_at_once_is_processed_once(chat: Chat) -> None:
    assert chat.app is not None
    await chat.say(HR, "cycle start weekly --dept Engineering")
    event = IncomingEvent("console", "dup-1", EMMA, "text", text="Shipped the export", email=EMMA)
    results = await asyncio.gather(chat.app.router.receive(event), chat.app.router.receive(event))
    assert sorted(results) == [False, True]
    assert await _stored(chat, EMMA) == {"wins": ["Shipped the export"]}


async def test_one_failing_message_does_not_cost_the_others_in_its_batch(chat: Chat) -> None:
    await chat.say(HR, "cycle start weekly --people li.lei@example.com")
    await chat.say(HR, "cycle start monthly --people emma.smith@example.com")
    # damage the monthly question set only, then restart so nothing is cached
    assert chat.app is not None
    async with chat.app.db.engine.begin() as conn:
        table = RitualDefinition.__table__  # type: ignore[attr-defined]
        await conn.execute(
            table.update().where(table.c.key == "monthly_review").values(body={"broken": True})
        )
    await chat.restart()

    await asyncio.gather(
        chat.console.say(LILEI, "修复 3 个线上问题"), chat.console.say(EMMA, "Launched billing")
    )
    await chat.deliver()

    assert await _stored(chat, LILEI) == {"wins": ["修复 3 个线上问题"]}
    assert "第 2/5 题" in await chat.inbox(LILEI)
    assert await _stored(chat, EMMA) == {}
    assert t("router.failed", "en") in await chat.inbox(EMMA)
    errors = await chat.rows("select error from inboundevent where error is not null")
    assert len(errors) == 1


async def test_the_platform_is_acknowledged_once_the_event_is_journaled(chat: Chat) -> None:
    assert chat.app is not None
    await chat.say(HR, "cycle start weekly --dept Engineering")
    seen_at_ack: list[int] = []

    async def acknowledge() -> None:
        seen_at_ack.append(await chat.scalar("select count(*) from inboundevent where event_id = 'ack-1'"))

    event = IncomingEvent("console", "ack-1", EMMA, "text", text="Shipped the export", email=EMMA)
    assert await chat.app.router.receive(event, acknowledge=acknowledge)
    assert seen_at_ack == [1]
    assert await _stored(chat, EMMA) == {"wins": ["Shipped the export"]}


async def test_a_failed_acknowledgement_does_not_lose_the_event(chat: Chat) -> None:
    assert chat.app is not None
    await chat.say(HR, "cycle start weekly --dept Engineering")

    async def acknowledge() -> None:
        raise ConnectionError("socket closed before the ack went out")

    event = IncomingEvent("console", "ack-2", EMMA, "text", text="Shipped the export", email=EMMA)
    assert await chat.app.router.receive(event, acknowledge=acknowledge)
    assert await _stored(chat, EMMA) == {"wins": ["Shipped the export"]}


async def test_a_lone_surrogate_in_a_message_costs_nobody_their_answer(chat: Chat) -> None:
    await chat.say(HR, "cycle start weekly --dept Engineering")
    # legal in a platform's JSON, not in UTF-8: kept as U+FFFD instead of failing the whole batch
    await asyncio.gather(
        chat.console.say(LILEI, "修复登录 \ud83d"), chat.console.say(EMMA, "Shipped the export")
    )
    await chat.deliver()
    assert await _stored(chat, LILEI) == {"wins": ["修复登录 \ufffd"]}
    assert await _stored(chat, EMMA) == {"wins": ["Shipped the export"]}
    assert "第 2/5 题" in await chat.inbox(LILEI)
