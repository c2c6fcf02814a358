"""The Slack fake against the real slack_sdk / slack_bolt, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import PROXY_ENV_VARS, SlackFake

EMMA, EMMA_EMAIL = "U01EMMA", "emma.smith@example.com"
BUTTONS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "How was your week?"}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "a0",
                "text": {"type": "plain_text", "text": "Good"},
                "value": "good",
            },
            {
                "type": "button",
                "action_id": "a1",
                "text": {"type": "plain_text", "text": "Bad"},
                "value": "bad",
            },
        ],
    },
]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    async with SlackFake(users={EMMA_EMAIL: EMMA}) as server:
        yield server


@pytest.fixture
def client(fake: SlackFake) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=fake.base_url)


@pytest.fixture
async def app(fake: SlackFake, client: AsyncWebClient) -> AsyncIterator[AsyncApp]:
    """A Bolt app connected over Socket Mode; listeners are added by each test."""
    bolt = AsyncApp(client=client)
    handler = AsyncSocketModeHandler(bolt, "xapp-1-test")
    await handler.connect_async()
    try:
        await fake.wait_connected()
        yield bolt
    finally:
        await handler.close_async()


async def _refusal(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


# ---- Web API ------------------------------------------------------------------------------------


async def test_auth_test_names_the_bot_and_its_scopes(fake: SlackFake, client: AsyncWebClient) -> None:
    answer = await client.auth_test()

    assert (answer["user_id"], answer["team_id"], answer["bot_id"]) == ("UBOT", "T0CADENCE", "BBOT")
    assert "chat:write" in answer.headers["x-oauth-scopes"].split(",")
    (call,) = fake.calls_to("auth.test")
    assert call.headers["authorization"] == "Bearer xoxb-test"


@pytest.mark.parametrize(
    ("token", "error"),
    [(None, "not_authed"), ("xapp-1-test", "not_allowed_token_type"), ("nonsense", "invalid_auth")],
)
async def test_web_api_wants_the_bot_token(fake: SlackFake, token: str | None, error: str) -> None:
    refused = await _refusal(AsyncWebClient(token=token, base_url=fake.base_url).auth_test())

    assert refused.response["error"] == error
    assert len(fake.calls_to("auth.test")) == 1  # refused calls are recorded too


async def test_unknown_method(fake: SlackFake, client: AsyncWebClient) -> None:
    refused = await _refusal(client.api_call("chat.teleport", json={"channel": "D1"}))

    assert refused.response["error"] == "unknown_method"
    assert fake.calls[-1].method == "chat.teleport"


async def test_conversations_open_is_form_encoded_and_gives_the_dm(
    fake: SlackFake, client: AsyncWebClient
) -> None:
    opened = await client.conversations_open(users=EMMA)
    again = await client.conversations_open(users=EMMA)

    assert opened["channel"]["id"] == fake.dm_channel(EMMA) == "DU01EMMA"
    assert again["already_open"] is True
    call = fake.calls_to("conversations.open")[0]
    # AsyncWebClient sends params= as the query string of a form-encoded POST
    assert (call.verb, call.form_encoded, call.body, call.query) == (
        "POST",
        True,
        {"users": EMMA},
        {"users": EMMA},
    )
    refused = await _refusal(client.conversations_open(users="U0NOBODY"))
    assert refused.response["error"] == "user_not_found"


async def test_post_message_is_json_stored_and_updated_in_place(
    fake: SlackFake, client: AsyncWebClient
) -> None:
    channel = (await client.conversations_open(users=EMMA))["channel"]["id"]

    first = await client.chat_postMessage(channel=channel, text="How was your week?", blocks=BUTTONS)
    second = await client.chat_postMessage(channel=channel, text="Reminder")
    await client.chat_update(channel=channel, ts=first["ts"], text="Saved: good", blocks=[])

    call = fake.calls_to("chat.postMessage")[0]
    assert not call.form_encoded and call.headers["content-type"].startswith("application/json")
    assert call.body == {"channel": channel, "text": "How was your week?", "blocks": BUTTONS}
    assert first["channel"] == channel and first["message"]["blocks"] == BUTTONS
    assert float(first["ts"]) < float(second["ts"])
    texts = [(m["text"], m["blocks"]) for m in fake.messages_to(EMMA)]
    assert texts == [("Saved: good", []), ("Reminder", [])]
    assert fake.messages[(channel, first["ts"])]["edited"]["user"] == "UBOT"


async def test_post_message_refusals(fake: SlackFake, client: AsyncWebClient) -> None:
    not_open = await _refusal(client.chat_postMessage(channel="D0NEVER", text="hi"))
    too_many = await _refusal(
        client.chat_postMessage(channel=EMMA, text="x", blocks=[{"type": "divider"}] * 51)
    )
    missing = await _refusal(client.chat_update(channel=fake.dm_channel(EMMA), ts="1.000100", text="x"))

    assert not_open.response["error"] == "channel_not_found"
    assert too_many.response["error"] == "invalid_blocks"  # a user id as channel is the DM: it got that far
    assert missing.response["error"] == "message_not_found"
    assert fake.messages == {}


async def test_rate_limit_is_429_with_retry_after(fake: SlackFake, client: AsyncWebClient) -> None:
    channel = (await client.conversations_open(users=EMMA))["channel"]["id"]
    fake.rate_limit("chat.postMessage", retry_after=7)

    refused = await _refusal(client.chat_postMessage(channel=channel, text="hi"))
    await client.chat_postMessage(channel=channel, text="hi")

    assert refused.response.status_code == 429
    assert refused.response["error"] == "ratelimited"
    assert refused.response.headers["Retry-After"] == "7"
    assert len(fake.calls_to("chat.postMessage")) == 2 and len(fake.messages_to(EMMA)) == 1


async def test_injected_failure(fake: SlackFake, client: AsyncWebClient) -> None:
    fake.fail("chat.postMessage", "account_inactive")

    refused = await _refusal(client.chat_postMessage(channel=EMMA, text="hi"))

    assert refused.response["error"] == "account_inactive"
    assert (await client.chat_postMessage(channel=EMMA, text="hi"))["ok"]


METADATA = {"event_type": "cadence_outbox", "event_payload": {"key": "c1:a1:wins"}}


async def test_metadata_is_stored_checked_and_kept_by_updates(
    fake: SlackFake, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel=EMMA, text="Q1", metadata=METADATA)
    kept = await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="Saved")
    key = (posted["channel"], posted["ts"])
    assert fake.messages[key]["metadata"] == METADATA == kept["message"]["metadata"]
    await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="Saved", metadata={})
    assert "metadata" not in fake.messages[key]  # an empty object removes it

    not_object = await _refusal(
        client.chat_postMessage(channel=EMMA, text="x", metadata={"event_type": "t", "event_payload": "k"})
    )
    no_type = await _refusal(client.chat_postMessage(channel=EMMA, text="x", metadata={"event_payload": {}}))
    dotted = await client.chat_postMessage(
        channel=EMMA, text="x", metadata={"event_type": "cadence.outbox", "event_payload": {"key": "k"}}
    )

    assert not_object.response["error"] == no_type.response["error"] == "invalid_metadata_format"
    # an event_type Slack does not accept is a warning: the message is posted, without its metadata
    assert dotted["warning"] == "invalid_metadata_schema"
    assert dotted["response_metadata"]["warnings"] == ["invalid_metadata_schema"]
    assert "metadata" not in fake.messages[(dotted["channel"], dotted["ts"])]
    assert len(fake.messages_to(EMMA)) == 2


async def test_conversations_history_is_newest_first_and_pages(
    fake: SlackFake, client: AsyncWebClient
) -> None:
    channel = (await client.conversations_open(users=EMMA))["channel"]["id"]
    stamps = [
        (await client.chat_postMessage(channel=channel, text=f"m{n}", metadata=METADATA))["ts"]
        for n in range(5)
    ]

    page = await client.conversations_history(channel=channel, limit=2, include_all_metadata=True)
    rest = await client.conversations_history(
        channel=channel, cursor=page["response_metadata"]["next_cursor"], include_all_metadata=True
    )
    plain = await client.conversations_history(channel=channel)
    between = await client.conversations_history(channel=channel, oldest=stamps[1], latest=stamps[3])

    assert [m["ts"] for m in page["messages"]] == stamps[:-3:-1] and page["has_more"] is True
    assert [m["text"] for m in rest["messages"]] == ["m2", "m1", "m0"] and rest["has_more"] is False
    assert rest["response_metadata"]["next_cursor"] == ""
    assert all(m["metadata"] == METADATA and m["bot_id"] == "BBOT" for m in page["messages"])
    # metadata only when asked for
    assert [m["text"] for m in plain["messages"]] == ["m4", "m3", "m2", "m1", "m0"]
    assert not any("metadata" in m for m in plain["messages"])
    assert [m["text"] for m in between["messages"]] == ["m2"]
    unknown = await _refusal(client.conversations_history(channel="D0NEVER"))
    assert unknown.response["error"] == "channel_not_found"


async def test_conversations_history_of_a_dm_needs_im_history() -> None:
    async with SlackFake(users={EMMA_EMAIL: EMMA}, scopes=("chat:write", "im:write")) as narrow:
        limited = AsyncWebClient(token="xoxb-test", base_url=narrow.base_url)
        channel = (await limited.conversations_open(users=EMMA))["channel"]["id"]
        refused = await _refusal(limited.conversations_history(channel=channel))

    assert (refused.response["error"], refused.response["needed"]) == ("missing_scope", "im:history")


async def test_a_lost_answer_still_posted_the_message(fake: SlackFake, client: AsyncWebClient) -> None:
    fake.lose_response("chat.postMessage", how="fatal_error")

    refused = await _refusal(client.chat_postMessage(channel=EMMA, text="hi", metadata=METADATA))

    assert (refused.response.status_code, refused.response["error"]) == (500, "fatal_error")
    assert fake.delivered_keys() == {"c1:a1:wins": 1} and fake.http_500 == 1


async def test_chaos_and_limits_touch_only_their_methods(fake: SlackFake, client: AsyncWebClient) -> None:
    fake.chaos(1.0, 0.0, retry_after=3)
    fake.limit(0.5, None, methods=("users.info",))

    throttled = await _refusal(client.chat_postMessage(channel=EMMA, text="hi"))
    await client.users_info(user=EMMA)
    limited = await _refusal(client.users_info(user=EMMA))
    await client.conversations_open(users=EMMA)

    assert throttled.response.headers["Retry-After"] == "3"
    assert limited.response.status_code == 429 and limited.response.headers["Retry-After"] == "2"
    assert (fake.http_429, fake.limit_stats.admitted, fake.limit_stats.refused) == (2, 1, 1)
    fake.chaos(0, 0)
    assert (await client.chat_postMessage(channel=EMMA, text="hi"))["ok"]
    with pytest.raises(ValueError):
        fake.chaos(0.7, 0.5)


async def test_without_recording_calls_are_still_counted() -> None:
    async with SlackFake(users={EMMA_EMAIL: EMMA}, record_calls=False) as quiet:
        client = AsyncWebClient(token="xoxb-test", base_url=quiet.base_url)
        for n in range(3):
            await client.chat_postMessage(channel=EMMA, text=f"m{n}", metadata=METADATA)
        await quiet.wait_calls("chat.postMessage", 3)

    assert quiet.calls == [] and quiet.call_counts["chat.postMessage"] == 3
    assert quiet.posted == {quiet.dm_channel(EMMA): 3}
    assert quiet.delivered_keys() == {"c1:a1:wins": 3}  # the same key three times: duplicates


async def test_users_by_email_and_by_id(fake: SlackFake, client: AsyncWebClient) -> None:
    found = await client.users_lookupByEmail(email="Emma.Smith@example.com")
    missing = await _refusal(client.users_lookupByEmail(email="nobody@example.com"))
    info = await client.users_info(user=EMMA)

    assert found["user"]["id"] == EMMA
    assert missing.response["error"] == "users_not_found"
    assert info["user"]["profile"]["email"] == EMMA_EMAIL
    call = fake.calls_to("users.lookupByEmail")[0]
    assert (call.verb, call.body) == ("GET", {"email": "Emma.Smith@example.com"})


async def test_email_needs_its_scope(client: AsyncWebClient) -> None:
    async with SlackFake(users={EMMA_EMAIL: EMMA}, scopes=("chat:write", "users:read")) as narrow:
        limited = AsyncWebClient(token="xoxb-test", base_url=narrow.base_url)
        refused = await _refusal(limited.users_lookupByEmail(email=EMMA_EMAIL))
        info = await limited.users_info(user=EMMA)

    assert (refused.response["error"], refused.response["needed"]) == ("missing_scope", "users:read.email")
    assert "email" not in info["user"]["profile"]


async def test_views(fake: SlackFake, client: AsyncWebClient) -> None:
    trigger = fake.slash_command(EMMA, "")["trigger_id"]
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Form"}, "blocks": []}

    opened = await client.views_open(trigger_id=trigger, view=modal)
    reused = await _refusal(client.views_open(trigger_id=trigger, view=modal))
    unknown = await _refusal(client.views_open(trigger_id="1.2.3", view=modal))
    await client.views_publish(user_id=EMMA, view={"type": "home", "blocks": []})

    assert opened["view"]["id"].startswith("V") and opened["view"]["title"]["text"] == "Form"
    assert (reused.response["error"], unknown.response["error"]) == (
        "exchanged_trigger_id",
        "invalid_trigger_id",
    )
    assert fake.views_opened == [{"trigger_id": trigger, "view": modal}]
    assert fake.views_published == [{"user_id": EMMA, "view": {"type": "home", "blocks": []}}]


async def test_app_token_is_required_for_socket_mode(fake: SlackFake, client: AsyncWebClient) -> None:
    refused = await _refusal(client.apps_connections_open(app_token="xoxb-test"))
    opened = await client.apps_connections_open(app_token="xapp-1-test")

    assert refused.response["error"] == "not_allowed_token_type"
    assert opened["url"].startswith(fake.url.replace("http://", "ws://") + "/link/?ticket=")
    assert fake.calls_to("apps.connections.open")[1].headers["authorization"] == "Bearer xapp-1-test"
    assert fake.connections_opened == 1


# ---- Socket Mode through Bolt ---------------------------------------------------------------------


async def test_message_event_reaches_the_listener_and_is_acked(fake: SlackFake, app: AsyncApp) -> None:
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        await seen.put(body)

    payload = fake.message_event(EMMA, "hello")
    envelope_id = await fake.send_envelope("events_api", payload)

    body = await asyncio.wait_for(seen.get(), 5)
    assert body["event"]["text"] == "hello" and body["event"]["channel"] == "DU01EMMA"
    assert body["event"]["channel_type"] == "im" and body["event_id"] == payload["event_id"]
    assert await fake.wait_ack(envelope_id) == {"envelope_id": envelope_id}
    assert fake.ack_latency[envelope_id] > 0
    assert fake.envelopes[0]["accepts_response_payload"] is False
    assert len(fake.calls_to("auth.test")) == 1  # AsyncApp authorizes lazily, on the first request


async def test_block_action_reaches_the_action_listener(
    fake: SlackFake, client: AsyncWebClient, app: AsyncApp
) -> None:
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.action("a1")
    async def on_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await seen.put({"body": body, "action": action})

    posted = await client.chat_postMessage(channel=EMMA, text="How was your week?", blocks=BUTTONS)
    envelope_id = await fake.send_envelope("interactive", fake.block_action(EMMA, "bad", action_id="a1"))

    assert await fake.wait_ack(envelope_id) == {"envelope_id": envelope_id}
    got = await asyncio.wait_for(seen.get(), 5)
    assert (got["action"]["value"], got["action"]["text"]["text"]) == ("bad", "Bad")
    assert got["body"]["container"]["message_ts"] == posted["ts"]
    assert got["body"]["message"]["blocks"] == BUTTONS
    assert got["body"]["channel"]["id"] == got["body"]["container"]["channel_id"] == "DU01EMMA"


async def test_slash_command_ack_payload_and_respond(fake: SlackFake, app: AsyncApp) -> None:
    done = asyncio.Event()

    @app.command("/cadence")
    async def on_command(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any]) -> None:
        await ack("working")
        await respond(f"done: {command['text']}")
        done.set()

    payload = fake.slash_command(EMMA, "status")
    envelope_id = await fake.send_envelope("slash_commands", payload)

    assert await fake.wait_ack(envelope_id) == {"envelope_id": envelope_id, "payload": {"text": "working"}}
    await asyncio.wait_for(done.wait(), 5)
    ((path, body),) = fake.responses
    assert payload["response_url"].endswith(path) and body["text"] == "done: status"
    assert fake.envelopes[0]["accepts_response_payload"] is True


async def test_respond_can_replace_the_clicked_message(
    fake: SlackFake, client: AsyncWebClient, app: AsyncApp
) -> None:
    @app.action("a0")
    async def on_click(ack: AsyncAck, respond: AsyncRespond) -> None:
        await ack()
        await respond("Saved", replace_original=True)

    await client.chat_postMessage(channel=EMMA, text="How was your week?", blocks=BUTTONS)
    await fake.send_envelope("interactive", fake.block_action(EMMA, "good"))

    await fake.wait_responses()
    assert [m["text"] for m in fake.messages_to(EMMA)] == ["Saved"]


async def test_disconnect_makes_the_client_reconnect(fake: SlackFake, app: AsyncApp) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        await seen.put(event["text"])

    await fake.disconnect()
    await fake.wait_connected()
    envelope_id = await fake.send_envelope("events_api", fake.message_event(EMMA, "after the move"))

    assert await asyncio.wait_for(seen.get(), 5) == "after the move"
    await fake.wait_ack(envelope_id)
    assert fake.connections_opened == 2 == len(fake.calls_to("apps.connections.open"))
    assert fake.connections_accepted == 2


async def test_a_dropped_socket_is_replaced(fake: SlackFake, client: AsyncWebClient) -> None:
    bolt = AsyncApp(client=client)
    seen: asyncio.Queue[str] = asyncio.Queue()

    @bolt.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        await seen.put(event["text"])

    # the SDK notices a dead socket on its monitor tick, every ping_interval seconds
    handler = AsyncSocketModeHandler(bolt, "xapp-1-test", ping_interval=0.2)
    await handler.connect_async()
    try:
        await fake.wait_connected()
        await fake.drop_socket()
        await fake.wait_connected()
        await fake.send_envelope("events_api", fake.message_event(EMMA, "still here"))
        assert await asyncio.wait_for(seen.get(), 5) == "still here"
        assert fake.connections_opened == 2
    finally:
        await handler.close_async()
