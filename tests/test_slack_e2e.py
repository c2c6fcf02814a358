"""Slack end to end: the real slack-bolt over Socket Mode against the fake, with a real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from tests.harness import EMMA, HR, LILEI, MANAGER
from tests.slack_rig import SlackRig

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
async def slack(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackRig]:
    # slack_sdk takes proxies from the environment and ignores NO_PROXY: the fake is on loopback
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    rig = await SlackRig(db_url).start()
    yield rig
    await rig.close()


async def _stored(rig: SlackRig, email: str) -> dict[str, object]:
    assert rig.app is not None
    rows = await _rows(
        rig,
        "select a.step, a.value from answer a join assignment s on s.id = a.assignment_id "
        "join person p on p.id = s.person_id where p.email = :email",
        email=email,
    )
    return {str(step): json.loads(value) if isinstance(value, str) else value for step, value in rows}


async def _rows(rig: SlackRig, sql: str, **params: object) -> list[tuple[object, ...]]:
    assert rig.app is not None
    async with rig.app.db.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


async def _start_weekly(slack: SlackRig) -> None:
    command = slack.fake.slash_command(slack.users[HR], "cycle start weekly --dept Engineering")
    ack = await slack.envelope("slash_commands", command, accepts_response_payload=True)
    assert ack["envelope_id"]
    await slack.settle(1)


async def test_hr_starts_a_cycle_with_the_slash_command_and_everyone_in_scope_gets_a_dm(
    slack: SlackRig,
) -> None:
    await _start_weekly(slack)
    for email in ENGINEERS:
        texts = [m.get("text", "") for m in slack.fake.messages_to(slack.users[email])]
        assert any("Q1/5" in t or "第 1/5 题" in t for t in texts), (email, texts)
    # the command's answer is for HR's eyes only: sent to the response_url, not into a DM
    assert slack.fake.messages_to(slack.users[HR]) == []
    ((_, reply),) = slack.fake.responses
    assert reply["response_type"] == "ephemeral" and "周期 #1" in reply["text"]
    # DMs were opened form-encoded, messages posted as JSON, as the real SDK does
    assert all(call.form_encoded for call in slack.fake.calls_to("conversations.open"))
    assert not any(call.form_encoded for call in slack.fake.calls_to("chat.postMessage"))


async def test_a_person_answers_by_button_and_by_text_and_the_question_is_updated(slack: SlackRig) -> None:
    await _start_weekly(slack)
    await slack.envelope(
        "events_api", slack.fake.message_event(slack.users[EMMA], "Shipped the billing export")
    )
    await slack.settle(2)
    rating = slack.last_message(EMMA)
    assert "Q2/5" in rating["text"]
    four = next(b for b in slack.buttons(rating) if b["text"]["text"].startswith("4"))
    click = slack.fake.block_action(
        slack.users[EMMA], four["value"], action_id=four["action_id"], message_ts=rating["ts"]
    )
    await slack.envelope("interactive", click)
    await slack.settle(3)
    assert await _stored(slack, EMMA) == {"wins": ["Shipped the billing export"], "week_rating": 4}
    updated = [c.body for c in slack.fake.calls_to("chat.update")]
    assert any("Saved" in str(body.get("text")) and body.get("ts") == rating["ts"] for body in updated)
    assert "Q3/5" in slack.last_message(EMMA)["text"]


async def test_a_redelivered_event_is_stored_once(slack: SlackRig) -> None:
    await _start_weekly(slack)
    event = slack.fake.message_event(slack.users[LILEI], "完成了登录模块重构")
    await slack.envelope("events_api", event)
    await slack.envelope("events_api", event, retry_attempt=1)
    await slack.settle(2)
    assert await _stored(slack, LILEI) == {"wins": ["完成了登录模块重构"]}
    journal = await _rows(slack, "select count(*) from inboundevent")
    assert journal == [(2,)]


async def test_a_disconnect_in_the_middle_of_a_conversation_loses_nothing(slack: SlackRig) -> None:
    await _start_weekly(slack)
    await slack.envelope("events_api", slack.fake.message_event(slack.users[LILEI], "修复了三个线上问题"))
    await slack.settle(2)
    await slack.fake.disconnect()
    await slack.fake.wait_connected()
    assert slack.fake.connections_opened >= 2
    await slack.envelope("events_api", slack.fake.message_event(slack.users[LILEI], "4"))
    await slack.settle(3)
    assert await _stored(slack, LILEI) == {"wins": ["修复了三个线上问题"], "week_rating": 4}


async def test_a_rate_limited_post_arrives_later_exactly_once(slack: SlackRig) -> None:
    slack.fake.rate_limit("chat.postMessage", times=1, retry_after=20)
    await slack.envelope("events_api", slack.fake.message_event(slack.users[HR], "help"))
    await slack.settle(1)
    assert slack.fake.messages_to(slack.users[HR]) == []
    slack.clock.advance(seconds=21)
    assert slack.app is not None
    await slack.app.delivery.drain()
    shown = slack.fake.messages_to(slack.users[HR])
    assert len(shown) == 1 and "节拍" in shown[0]["text"]


async def test_the_manager_sees_the_answers_given_in_slack(slack: SlackRig) -> None:
    await _start_weekly(slack)
    for n, said in enumerate(["Shipped the billing export", "4", "skip", "Plan Q1", "no", "submit"], start=2):
        await slack.envelope("events_api", slack.fake.message_event(slack.users[EMMA], said))
        await slack.settle(n)
    assert "submitted" in slack.last_message(EMMA)["text"]
    await slack.envelope("events_api", slack.fake.message_event(slack.users[MANAGER], f"view {EMMA}"))
    await slack.settle(8)
    assert "Shipped the billing export" in slack.last_message(MANAGER)["text"]


def _home_opened(slack: SlackRig, email: str) -> dict[str, object]:
    payload = slack.fake.message_event(slack.users[email], "")
    payload["event"] = {
        "type": "app_home_opened",
        "user": slack.users[email],
        "tab": "home",
        "event_ts": "1.0",
    }
    return payload


async def test_app_home_shows_my_check_in_with_a_button_to_continue_it(slack: SlackRig) -> None:
    await _start_weekly(slack)
    await slack.envelope(
        "events_api", slack.fake.message_event(slack.users[EMMA], "Shipped the billing export")
    )
    await slack.settle(2)
    await slack.envelope("events_api", _home_opened(slack, EMMA))
    await slack.settle(3)
    (published,) = slack.fake.views_published
    assert published["user_id"] == slack.users[EMMA]
    view = published["view"]
    assert "question 2 of 5" in json.dumps(view)
    (resume,) = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    await slack.envelope(
        "interactive", slack.fake.block_action(slack.users[EMMA], resume["value"], action_id="a0")
    )
    await slack.settle(4)
    assert "Q2/5" in slack.last_message(EMMA)["text"]


async def test_app_home_shows_a_manager_their_teams_completion(slack: SlackRig) -> None:
    await _start_weekly(slack)
    await slack.envelope("events_api", _home_opened(slack, MANAGER))
    await slack.settle(2)
    (published,) = slack.fake.views_published
    assert "0/6" in json.dumps(published["view"], ensure_ascii=False)
