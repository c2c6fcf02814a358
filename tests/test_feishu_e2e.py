"""Feishu end to end: the real lark-oapi long connection against the fake, with a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.platforms.feishu import message_uuid
from tests.feishu_rig import FeishuRig, card_buttons, card_text
from tests.harness import EMMA, HR, LILEI, MANAGER


@pytest.fixture
async def feishu(db_url: str) -> AsyncIterator[FeishuRig]:
    rig = await FeishuRig(db_url).start()
    yield rig
    await rig.close()


async def _start_monthly_from_the_menu(feishu: FeishuRig, *, people: str = "") -> None:
    """HR picks "start a cycle → monthly review" in the bot menu (or types it, scoped to ``people``)."""
    if people:
        ack = await feishu.fake.push_text(feishu.users[HR], f"cycle start monthly --people {people}")
    else:
        ack = await feishu.fake.push_menu(feishu.users[HR], "start_monthly")
    assert ack.code == 200
    await feishu.settle(1)


def _button(card: dict[str, object], label_start: str) -> dict[str, object]:
    return next(value for label, value in card_buttons(card) if label.startswith(label_start))


async def test_hr_starts_a_monthly_review_from_the_bot_menu_and_everyone_gets_a_card(
    feishu: FeishuRig,
) -> None:
    await _start_monthly_from_the_menu(feishu)
    # HR is told the cycle started (and, being in scope too, gets the review like everyone)
    assert any("#1" in card_text(c) for c in feishu.cards_to(HR))
    for email in (EMMA, LILEI, MANAGER):
        (intro,) = [m for m in feishu.fake.messages_to(feishu.users[email]) if m.msg_type == "interactive"][
            -1:
        ]
        shown = card_text(intro.content)
        assert "这个月最重要的成果有哪些" in shown or "most important results this month" in shown, shown
        # cards can be updated later: Feishu needs update_multi on the original
        assert intro.content["config"]["update_multi"] is True
    # every message went out with its outbox key as uuid (Feishu's send-at-most-once key)
    keys = await feishu.rows("select idempotency_key from outbox where platform = 'feishu'")
    assert {message_uuid(str(k)) for (k,) in keys} == set(feishu.fake.delivered_uuids())
    assert all(n == 1 for n in feishu.fake.delivered_uuids().values())


async def test_answers_by_text_and_by_card_buttons_are_stored_and_the_card_shows_the_saved_answer(
    feishu: FeishuRig,
) -> None:
    await _start_monthly_from_the_menu(feishu, people=EMMA)
    await feishu.fake.push_text(feishu.users[EMMA], "Launched billing to 40 customers")
    await feishu.settle(2)
    question = feishu.fake.messages_to(feishu.users[EMMA])[-1]
    assert "On track" in card_text(question.content)
    ack = await feishu.fake.push_card_action(
        feishu.users[EMMA], _button(question.content, "On track"), open_message_id=question.message_id
    )
    # answered inside the 3 seconds with a toast in both languages
    assert ack.code == 200 and ack.data is not None
    assert ack.data["toast"]["type"] == "success" and "en_us" in ack.data["toast"]["i18n"]
    await feishu.settle(3)
    assert await feishu.stored(EMMA) == {
        "highlights": ["Launched billing to 40 customers"],
        "goal_status": "on_track",
    }
    # the question's card now shows the saved answer instead of the buttons
    updated = feishu.fake.message(question.message_id).updates
    assert updated and "Saved" in card_text(updated[-1]) and card_buttons(updated[-1]) == []
    rating = feishu.fake.messages_to(feishu.users[EMMA])[-1]
    await feishu.fake.push_card_action(
        feishu.users[EMMA], _button(rating.content, "4"), open_message_id=rating.message_id
    )
    await feishu.settle(4)
    assert (await feishu.stored(EMMA))["self_rating"] == 4


async def test_a_long_ritual_is_answered_in_a_card_form(feishu: FeishuRig) -> None:
    await _start_monthly_from_the_menu(feishu, people=EMMA)
    intro = feishu.fake.messages_to(feishu.users[EMMA])[-1]
    ack = await feishu.fake.push_card_action(
        feishu.users[EMMA], _button(intro.content, "Answer in a form"), open_message_id=intro.message_id
    )
    assert ack.data is not None and ack.data["card"]["type"] == "raw"
    form_card = ack.data["card"]["data"]
    (form,) = form_card["body"]["elements"]
    assert form["tag"] == "form"
    names = [e.get("name") for e in form["elements"] if e.get("name")]
    assert names[:3] == ["highlights", "goal_status", "self_rating"]
    submit = _button(form_card, "Save answers")

    # a required answer left out: the form comes back with the reason under it, nothing is stored
    refused = await feishu.fake.push_card_action(
        feishu.users[EMMA],
        submit,
        open_message_id=intro.message_id,
        form_value={"highlights": "Launched billing", "goal_status": "on_track"},
        name="submit",
    )
    assert refused.data is not None and refused.data["toast"]["type"] == "error"
    assert "❌" in card_text(refused.data["card"]["data"])
    assert await feishu.stored(EMMA) == {}

    saved = await feishu.fake.push_card_action(
        feishu.users[EMMA],
        submit,
        open_message_id=intro.message_id,
        form_value={
            "highlights": "Launched billing to 40 customers\nCut p99 latency by 30%",
            "goal_status": "on_track",
            "self_rating": "4",
            "learned": "Load testing with k6",
            "next_month": "Ledger migration",
        },
        name="submit",
    )
    assert saved.data is not None and saved.data["toast"]["type"] == "success"
    await feishu.settle(2)  # the menu command and the form: opening and refusing store nothing
    stored = await feishu.stored(EMMA)
    assert stored["highlights"] == ["Launched billing to 40 customers", "Cut p99 latency by 30%"]
    assert stored["self_rating"] == 4 and stored["learned"] == "Load testing with k6"


async def test_an_event_pushed_twice_is_stored_once_also_after_a_restart(feishu: FeishuRig) -> None:
    await _start_monthly_from_the_menu(feishu, people=LILEI)
    first = await feishu.fake.push_text(feishu.users[LILEI], "完成了登录模块重构", event_id="ev-repush-1")
    again = await feishu.fake.push_text(feishu.users[LILEI], "完成了登录模块重构", event_id="ev-repush-1")
    assert first.code == again.code == 200
    await feishu.settle(2)
    await feishu.restart()
    await feishu.fake.push_text(feishu.users[LILEI], "完成了登录模块重构", event_id="ev-repush-1")
    await feishu.settle(2)
    assert await feishu.stored(LILEI) == {"highlights": ["完成了登录模块重构"]}
    assert await feishu.rows("select count(*) from inboundevent") == [(2,)]
    # one reply per event: the re-pushes sent nothing
    assert all(n == 1 for n in feishu.fake.delivered_uuids().values())


async def test_the_menu_shows_my_check_ins_and_a_managers_team_status(feishu: FeishuRig) -> None:
    await _start_monthly_from_the_menu(feishu)
    await feishu.fake.push_menu(feishu.users[EMMA], "my_checkins")
    await feishu.fake.push_menu(feishu.users[MANAGER], "team_status")
    await feishu.settle(3)
    assert "Monthly review" in card_text(feishu.cards_to(EMMA)[-1]) or "月度复盘" in card_text(
        feishu.cards_to(EMMA)[-1]
    )
    assert "0/6" in card_text(feishu.cards_to(MANAGER)[-1])
    # an employee who asks for the team's status is told it is for managers
    await feishu.fake.push_menu(feishu.users[LILEI], "start_weekly")
    await feishu.settle(4)
    assert "HR" in card_text(feishu.cards_to(LILEI)[-1])


async def test_a_rate_limited_send_is_retried_later_and_arrives_once(feishu: FeishuRig) -> None:
    feishu.fake.fail("/open-apis/im/v1/messages", code=99991400, status=429, times=1)
    await feishu.fake.push_text(feishu.users[HR], "help")
    await feishu.settle(1)
    assert feishu.fake.messages_to(feishu.users[HR]) == []
    feishu.clock.advance(seconds=5)
    assert feishu.app is not None
    await feishu.app.delivery.drain()
    (shown,) = feishu.fake.messages_to(feishu.users[HR])
    assert "周期 开始" in card_text(shown.content)  # HR's help, in HR's language
    assert 'cadence_http_429_total{platform="feishu"} 1' in feishu.app.metrics.render(depth={})


async def test_an_expired_token_is_renewed_and_the_message_still_goes_out(feishu: FeishuRig) -> None:
    await feishu.fake.push_text(feishu.users[HR], "help")
    await feishu.settle(1)
    before = feishu.fake.token_requests
    feishu.fake.expire_tokens()
    await feishu.fake.push_text(feishu.users[HR], "me")
    await feishu.settle(2)
    assert len(feishu.fake.messages_to(feishu.users[HR])) == 2
    assert feishu.fake.token_requests == before + 1


async def test_someone_not_in_the_org_is_told_whom_to_ask(feishu: FeishuRig) -> None:
    feishu.fake.add_user("ou_stranger", name="Stranger", email="stranger@elsewhere.example")
    await feishu.fake.push_text("ou_stranger", "hello")
    await feishu.settle(1)
    (reply,) = feishu.fake.messages_to("ou_stranger")
    shown = card_text(reply.content)
    assert "Zhao" in shown or "zhao.min@example.com" in shown
    assert "HR" in shown or "人力" in shown or "请" in shown


async def test_a_chinese_command_and_a_dropped_connection_mid_conversation_lose_nothing(
    feishu: FeishuRig,
) -> None:
    await feishu.fake.push_text(feishu.users[HR], f"周期 开始 周报 --人员 {LILEI}")
    await feishu.settle(1)
    await feishu.fake.push_text(feishu.users[LILEI], "修复了三个线上问题")
    await feishu.settle(2)
    feishu.fake.drop_connections()
    await feishu.fake.wait_connected()
    assert feishu.fake.endpoint_calls >= 2  # the SDK asked for a new endpoint and reconnected
    await feishu.fake.push_text(feishu.users[LILEI], "4")
    await feishu.settle(3)
    assert await feishu.stored(LILEI) == {"wins": ["修复了三个线上问题"], "week_rating": 4}
