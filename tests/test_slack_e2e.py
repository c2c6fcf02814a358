"""Slack end to end: the real slack-bolt over Socket Mode against the fake, with a real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from tests.harness import EMMA, HR, LILEI, MANAGER, json_value
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
        "select a.step, cast(a.value as text) from answer a join assignment s on s.id = a.assignment_id "
        "join person p on p.id = s.person_id where p.email = :email",
        email=email,
    )
    return {str(step): json_value(value) for step, value in rows}  # type: ignore[arg-type]


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
    # messages posted as JSON, as the real SDK does, to each person's id: no DM had to be opened
    assert not any(call.form_encoded for call in slack.fake.calls_to("chat.postMessage"))
    assert slack.fake.calls_to("conversations.open") == []


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
    # and /metrics tells the operator about it
    scraped = slack.app.metrics.render(depth={})
    assert 'cadence_http_429_total{platform="slack"} 1' in scraped
    assert 'cadence_sends_total{platform="slack",outcome="retry"} 1' in scraped
    assert 'cadence_sends_total{platform="slack",outcome="sent"} 1' in scraped
    assert "cadence_ack_latency_seconds_count 1" in scraped


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


def _view_submission(
    slack: SlackRig, email: str, view: dict[str, object], answers: dict[str, str]
) -> dict[str, object]:
    """What Slack sends when the person presses the modal's submit button."""
    values: dict[str, object] = {}
    for block in view["blocks"]:  # type: ignore[attr-defined]
        element = block["element"]
        if element["type"] == "static_select":
            chosen = answers.get(block["block_id"])
            values[block["block_id"]] = {
                "v": {"type": "static_select", "selected_option": {"value": chosen} if chosen else None}
            }
        else:
            values[block["block_id"]] = {
                "v": {"type": "plain_text_input", "value": answers.get(block["block_id"])}
            }
    return {
        "type": "view_submission",
        "team": {"id": slack.fake.team_id},
        "user": {"id": slack.users[email], "team_id": slack.fake.team_id},
        "api_app_id": "A0CADENCE",
        "view": {**view, "id": "V0FORM", "hash": "1700000000.abc", "state": {"values": values}},
    }


async def test_a_long_ritual_is_answered_in_a_modal(slack: SlackRig) -> None:
    command = slack.fake.slash_command(slack.users[HR], f"cycle start monthly --people {EMMA}")
    await slack.envelope("slash_commands", command)
    await slack.settle(1)
    intro = next(m for m in slack.fake.messages_to(slack.users[EMMA]) if "Answer in a form" in json.dumps(m))
    form_button = next(b for b in slack.buttons(intro) if b["action_id"] == "open_form")
    click = slack.fake.block_action(
        slack.users[EMMA], form_button["value"], action_id="open_form", message_ts=intro["ts"]
    )
    await slack.envelope("interactive", click)
    assert slack.fake.views_opened, "the form button opened no modal"
    view = slack.fake.views_opened[-1]["view"]
    assert [b["block_id"] for b in view["blocks"]][:3] == ["highlights", "goal_status", "self_rating"]

    # a required answer left empty: the modal says so and nothing is stored
    incomplete = _view_submission(
        slack, EMMA, view, {"highlights": "Launched billing", "goal_status": "on_track"}
    )
    ack = await slack.envelope("interactive", incomplete)
    assert ack["payload"]["response_action"] == "errors"
    assert set(ack["payload"]["errors"]) == {"self_rating", "learned", "next_month"}
    assert await _stored(slack, EMMA) == {}

    complete = _view_submission(
        slack,
        EMMA,
        view,
        {
            "highlights": "Launched billing to 40 customers\nCut p99 latency by 30%",
            "goal_status": "on_track",
            "self_rating": "4",
            "learned": "Load testing with k6",
            "next_month": "Ledger migration",
        },
    )
    ack = await slack.envelope("interactive", complete)
    assert "payload" not in ack or not ack["payload"]
    await slack.settle(2)  # the command and the submitted form: opening and refusing store nothing
    stored = await _stored(slack, EMMA)
    assert stored["highlights"] == ["Launched billing to 40 customers", "Cut p99 latency by 30%"]
    assert stored["self_rating"] == 4 and stored["challenges"] is None
    assert "Submit" in json.dumps(slack.last_message(EMMA))


async def test_an_acknowledged_message_is_journaled_even_when_slack_cannot_say_who_sent_it(
    slack: SlackRig,
) -> None:
    await _start_weekly(slack)
    # users.info fails (Slack having a bad minute); Emma is known by the Slack id in the org file
    slack.fake.fail("users.info", "internal_error", times=5, status=500)
    ack = await slack.envelope(
        "events_api", slack.fake.message_event(slack.users[EMMA], "Shipped the billing export")
    )
    assert ack["envelope_id"]
    await slack.settle(2)
    assert await _stored(slack, EMMA) == {"wins": ["Shipped the billing export"]}
