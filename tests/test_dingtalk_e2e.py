"""DingTalk end to end: Stream mode against the fake (the real dingtalk-stream parsing and acks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.dingtalk_rig import DingtalkRig
from tests.harness import EMMA, HR, LILEI

ENGINEERS = [
    "emma.smith@example.com",
    "li.lei@example.com",
    "zhang.wei@example.com",
    "han.meimei@example.com",
    "raj.patel@example.com",
    "wu.hao@example.com",
    "wang.fang@example.com",
]


@pytest.fixture
async def dingtalk(db_url: str) -> AsyncIterator[DingtalkRig]:
    rig = await DingtalkRig(db_url).start()
    yield rig
    await rig.close()


@pytest.fixture
async def dingtalk_cards(db_url: str) -> AsyncIterator[DingtalkRig]:
    rig = await DingtalkRig(db_url, card_template_id="tpl-cadence.schema").start()
    yield rig
    await rig.close()


async def _start_weekly(rig: DingtalkRig, scope: str = "--dept Engineering") -> None:
    ack = await rig.fake.push_chatbot_message(rig.users[HR], f"cycle start weekly {scope}")
    assert ack["code"] == 200
    await rig.settle(1)


async def test_hr_starts_a_weekly_cycle_by_text_and_identical_messages_go_out_together(
    dingtalk: DingtalkRig,
) -> None:
    await _start_weekly(dingtalk)
    for email in ENGINEERS:
        assert any("Q1/5" in t or "第 1/5 题" in t for t in dingtalk.texts_to(email)), email
    sends = dingtalk.fake.batch_sends
    opening = [s for s in sends if len(s.user_ids) > 1]
    # one call per language, not one per person: the opening question is the same for everyone
    assert opening, [s.user_ids for s in sends]
    assert sum(len(s.user_ids) for s in sends) == len(ENGINEERS) + 1  # and HR's own reply
    assert len(sends) < len(ENGINEERS)
    assert all(s.msg_key == "sampleMarkdown" for s in sends)


async def test_answers_by_text_are_stored_with_numbered_choices(dingtalk: DingtalkRig) -> None:
    await _start_weekly(dingtalk, f"--people {EMMA}")
    await dingtalk.fake.push_chatbot_message(dingtalk.users[EMMA], "Shipped the billing export")
    await dingtalk.settle(2)
    rating = dingtalk.texts_to(EMMA)[-1]
    assert "Q2/5" in rating and "\n4. " in rating  # choices as numbered lines
    await dingtalk.fake.push_chatbot_message(dingtalk.users[EMMA], "4")
    await dingtalk.settle(3)
    assert await dingtalk.stored(EMMA) == {"wins": ["Shipped the billing export"], "week_rating": 4}


async def test_answers_by_card_are_stored_and_the_card_is_updated(dingtalk_cards: DingtalkRig) -> None:
    rig = dingtalk_cards
    await _start_weekly(rig, f"--people {EMMA}")
    await rig.fake.push_chatbot_message(rig.users[EMMA], "Shipped the billing export")
    await rig.settle(2)
    (card,) = [c for c in rig.fake.cards.values() if c.user_id == rig.users[EMMA]]
    import json

    buttons = json.loads(card.card_data["cardParamMap"]["buttons"])
    four = next(b for b in buttons if b["text"].startswith("4"))
    ack = await rig.fake.push_card_callback(rig.users[EMMA], card.out_track_id, {"action": four["action"]})
    assert ack["code"] == 200
    await rig.settle(3)
    assert await rig.stored(EMMA) == {"wins": ["Shipped the billing export"], "week_rating": 4}
    # the card now shows the saved answer and no buttons
    assert card.updates and card.updates[-1]["cardParamMap"]["status"] == "done"
    assert "Saved" in card.updates[-1]["cardParamMap"]["markdown"]


async def test_a_repushed_message_is_stored_once_also_after_a_restart(dingtalk: DingtalkRig) -> None:
    await _start_weekly(dingtalk, f"--people {LILEI}")
    for _ in range(2):
        await dingtalk.fake.push_chatbot_message(
            dingtalk.users[LILEI], "完成了登录模块重构", msg_id="msg-repush-1"
        )
    await dingtalk.settle(2)
    await dingtalk.restart()
    await dingtalk.fake.push_chatbot_message(
        dingtalk.users[LILEI], "完成了登录模块重构", msg_id="msg-repush-1"
    )
    await dingtalk.settle(2)
    assert await dingtalk.stored(LILEI) == {"wins": ["完成了登录模块重构"]}
    assert await dingtalk.rows("select count(*) from inboundevent") == [(2,)]


async def test_a_disconnect_mid_conversation_loses_nothing(dingtalk: DingtalkRig) -> None:
    await _start_weekly(dingtalk, f"--people {LILEI}")
    await dingtalk.fake.push_chatbot_message(dingtalk.users[LILEI], "修复了三个线上问题")
    await dingtalk.settle(2)
    await dingtalk.fake.send_disconnect()
    await dingtalk.fake.wait_connected()
    assert dingtalk.fake.connections_opened >= 2  # a new ticket, a new connection
    await dingtalk.fake.push_chatbot_message(dingtalk.users[LILEI], "4")
    await dingtalk.settle(3)
    assert await dingtalk.stored(LILEI) == {"wins": ["修复了三个线上问题"], "week_rating": 4}


async def test_a_flow_controlled_person_gets_the_message_later_exactly_once(dingtalk: DingtalkRig) -> None:
    dingtalk.fake.flow_control(dingtalk.users[LILEI], times=1)
    await _start_weekly(dingtalk)
    assert not any("第 1/5 题" in t or "Q1/5" in t for t in dingtalk.texts_to(LILEI))
    assert any("Q1/5" in t or "第 1/5 题" in t for t in dingtalk.texts_to(EMMA))
    dingtalk.clock.advance(seconds=31)
    assert dingtalk.app is not None
    await dingtalk.app.delivery.drain()
    assert sum("第 1/5 题" in t or "Q1/5" in t for t in dingtalk.texts_to(LILEI)) == 1


async def test_an_invalid_person_is_not_retried_and_the_others_are_reached(dingtalk: DingtalkRig) -> None:
    dingtalk.fake.set_invalid(dingtalk.users[LILEI])
    await _start_weekly(dingtalk)
    dead = await dingtalk.rows(
        "select o.last_error from outbox o join person p on p.id = o.person_id "
        "where p.email = :email and o.status = 'dead'",
        email=LILEI,
    )
    assert dead and "invalidStaffIdList" in str(dead[0][0])
    assert any("Q1/5" in t or "第 1/5 题" in t for t in dingtalk.texts_to(EMMA))


async def test_a_used_up_quota_pauses_delivery_without_a_crash_loop(dingtalk: DingtalkRig) -> None:
    dingtalk.fake.fail("/v1.0/robot/oToMessages/batchSend", code="90020", status=403, times=50)
    await dingtalk.fake.push_chatbot_message(dingtalk.users[HR], "help")
    await dingtalk.settle(1)
    waiting = await dingtalk.rows("select status, attempts, last_error from outbox")
    assert [(status, attempts) for status, attempts, _ in waiting] == [("pending", 1)]
    assert "quota" in str(waiting[0][2])
    calls = len(dingtalk.fake.calls_to("/batchSend"))
    assert dingtalk.app is not None
    await dingtalk.app.delivery.drain()  # nothing is due: no second call within the hour
    assert len(dingtalk.fake.calls_to("/batchSend")) == calls
