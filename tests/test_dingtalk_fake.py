"""The DingTalk fake against the real dingtalk-stream 0.24.3 SDK and plain httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import dingtalk_stream
import dingtalk_stream.card_replier as sdk_card_replier
import dingtalk_stream.chatbot as sdk_chatbot
import dingtalk_stream.stream as sdk_stream
import dingtalk_stream.utils as sdk_utils
import httpx
import pytest
import websockets
from dingtalk_stream import AckMessage, CallbackMessage, ChatbotMessage

from tests.fakes.dingtalk import BATCH_SEND, CARD_CALLBACK_TOPIC, DingTalkFake

CARD_UPDATE = "/v1.0/card/instances"
CREATE_AND_DELIVER = "/v1.0/card/instances/createAndDeliver"


# ---- pointing the SDK at the fake -------------------------------------------------------------------


def point_sdk_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """What ``DINGTALK_OPENAPI_ENDPOINT`` set before ``import dingtalk_stream`` would have done.

    ``utils.py`` reads the variable at import; ``stream``, ``chatbot`` and ``card_replier`` bind the
    value with ``from .utils import``; ``DingTalkStreamClient.OPEN_CONNECTION_API`` is computed at class
    creation. Each test's fake has its own port, so every binding is patched (and restored after).
    """
    for module in (sdk_utils, sdk_stream, sdk_chatbot, sdk_card_replier):
        monkeypatch.setattr(module, "DINGTALK_OPENAPI_ENDPOINT", url)
    monkeypatch.setattr(
        dingtalk_stream.DingTalkStreamClient, "OPEN_CONNECTION_API", url + "/v1.0/gateway/connections/open"
    )


class EchoBot(dingtalk_stream.ChatbotHandler):
    """Answers every text through its sessionWebhook (blocking ``requests``, as the SDK does)."""

    def __init__(self, *, reply: bool = True) -> None:
        super().__init__()
        self.reply = reply
        self.seen: list[ChatbotMessage] = []

    async def process(self, callback: CallbackMessage) -> tuple[int, str]:
        incoming = ChatbotMessage.from_dict(callback.data)
        self.seen.append(incoming)
        if self.reply:
            self.reply_text(f"echo: {incoming.text.content}", incoming)
        return AckMessage.STATUS_OK, "OK"


class ThreadedBot(dingtalk_stream.AsyncChatbotHandler):
    """Processes in the SDK's thread pool; the ack goes out at once."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.seen: list[ChatbotMessage] = []

    def process(self, callback: CallbackMessage) -> tuple[int, str]:
        incoming = ChatbotMessage.from_dict(callback.data)
        self.seen.append(incoming)
        self.reply_markdown("Hi", f"**{incoming.text.content}**", incoming)
        return AckMessage.STATUS_OK, "OK"


class CardAnswer(dingtalk_stream.CallbackHandler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dingtalk_stream.CardCallbackMessage] = []

    async def process(self, callback: CallbackMessage) -> tuple[int, dict[str, Any]]:
        message = dingtalk_stream.CardCallbackMessage.from_dict(callback.data)
        self.seen.append(message)
        params = message.content["cardPrivateData"]["params"]
        return AckMessage.STATUS_OK, {"cardData": {"cardParamMap": {"status": "done", **params}}}


class Sdk:
    """A real ``DingTalkStreamClient`` running ``start()`` as a task on the test's loop."""

    def __init__(self, fake: DingTalkFake, *handlers: tuple[str, dingtalk_stream.CallbackHandler]) -> None:
        self.client = dingtalk_stream.DingTalkStreamClient(
            dingtalk_stream.Credential(fake.client_id, fake.client_secret)
        )
        for topic, handler in handlers:
            self.client.register_callback_handler(topic, handler)
        self.handlers = [h for _, h in handlers]
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sdk:
        self.task = asyncio.create_task(self.client.start())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_sdk(self.client, self.task)
        for handler in self.handlers:
            if isinstance(handler, dingtalk_stream.AsyncChatbotHandler):
                handler.async_executor.shutdown(wait=True)


async def stop_sdk(client: dingtalk_stream.DingTalkStreamClient, task: asyncio.Task[None] | None) -> None:
    """Stop ``client.start()``: 0.24.3 has no ``stop()`` and answers one cancel by sleeping 10 s in its
    ``except CancelledError`` (then looping), so cancel until it ends; then its keepalive tasks."""
    if task is not None:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
    stray = [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "")
        in ("DingTalkStreamClient.keepalive", "DingTalkStreamClient.background_task")
    ]
    for t in stray:
        t.cancel()
    await asyncio.gather(*stray, return_exceptions=True)
    if client.websocket is not None:
        await client.websocket.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DingTalkFake]:
    async with DingTalkFake() as server:
        point_sdk_at(monkeypatch, server.url)
        yield server


async def token(fake: DingTalkFake, client: httpx.AsyncClient) -> str:
    answer = await client.post(
        fake.url + "/v1.0/oauth2/accessToken",
        json={"appKey": fake.client_id, "appSecret": fake.client_secret},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["accessToken"])


async def api(
    fake: DingTalkFake, client: httpx.AsyncClient, verb: str, path: str, body: dict[str, Any]
) -> httpx.Response:
    headers = {"x-acs-dingtalk-access-token": await token(fake, client)}
    return await client.request(verb, fake.url + path, json=body, headers=headers)


def batch(fake: DingTalkFake, user_ids: list[str], text: str = "hi") -> dict[str, Any]:
    return {
        "robotCode": fake.robot_code,
        "userIds": user_ids,
        "msgKey": "sampleMarkdown",
        "msgParam": json.dumps({"title": "Cadence", "text": text}),
    }


def card_body(fake: DingTalkFake, userid: str, out_track_id: str, params: dict[str, str]) -> dict[str, Any]:
    return {
        "cardTemplateId": "tpl.schema",
        "outTrackId": out_track_id,
        "cardData": {"cardParamMap": params},
        "callbackType": "STREAM",
        "openSpaceId": f"dtv1.card//IM_ROBOT.{userid}",
        "imRobotOpenSpaceModel": {"supportForward": False},
        "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": fake.robot_code},
        "userIdType": 1,
    }


# ---- Stream mode with the real SDK ------------------------------------------------------------------


async def test_sdk_connects_with_a_single_use_ticket(fake: DingTalkFake) -> None:
    async with Sdk(fake, (ChatbotMessage.TOPIC, EchoBot())):
        await fake.wait_connected()
        assert (fake.tickets_issued, fake.connections_opened, fake.connections) == (1, 1, 1)
        (opened,) = fake.open_requests
        assert opened["clientId"] == fake.client_id
        assert {"type": "CALLBACK", "topic": ChatbotMessage.TOPIC} in opened["subscriptions"]
        assert opened["ua"].startswith("dingtalk-sdk-python/v0.24.3")

    # a ticket of our own: good once, then the handshake is refused with 401
    async with httpx.AsyncClient() as http:
        refused = await http.post(
            fake.url + "/v1.0/gateway/connections/open",
            json={"clientId": fake.client_id, "clientSecret": "no"},
        )
        assert (refused.status_code, refused.json()["code"]) == (401, "authFailed")
        opened = (
            await http.post(
                fake.url + "/v1.0/gateway/connections/open",
                json={"clientId": fake.client_id, "clientSecret": fake.client_secret, "subscriptions": []},
            )
        ).json()
    assert opened["endpoint"] == fake.url.replace("http", "ws") + "/connect"
    uri = f"{opened['endpoint']}?ticket={opened['ticket']}"
    async with websockets.connect(uri):
        await fake.wait_connected()
    with pytest.raises(websockets.exceptions.InvalidStatus) as second:
        async with websockets.connect(uri):
            pass
    assert second.value.response.status_code == 401


async def test_chatbot_message_reaches_the_handler_and_is_acked_200(fake: DingTalkFake) -> None:
    fake.add_user("lilei", name="李雷")
    bot = EchoBot()
    async with Sdk(fake, (ChatbotMessage.TOPIC, bot)):
        ack = await fake.push_chatbot_message("lilei", "hello", msg_id="msg-1", message_id="frame-1")
        assert ack["code"] == 200
        assert ack["headers"]["messageId"] == "frame-1"
        assert ack["data"] == {"response": "OK"}
        (incoming,) = bot.seen
        assert (incoming.sender_staff_id, incoming.sender_nick, incoming.message_id) == (
            "lilei",
            "李雷",
            "msg-1",
        )
        assert incoming.conversation_type == "1"
        assert incoming.conversation_id == fake.conversation_id("lilei")
        assert incoming.sender_id.startswith("$:LWCP_v1:$")
        assert incoming.robot_code == fake.robot_code
        assert incoming.session_webhook_expired_time - int(incoming.create_at) == 90 * 60 * 1000
        # the sessionWebhook reply reached the person
        (reply,) = fake.session_replies
        assert reply["text"] == {"content": "echo: hello"}
        assert reply["at"] == {"atUserIds": ["lilei"]}
        (message,) = fake.messages_to("lilei")
        assert (message.kind, message.msg_key, message.content) == (
            "session",
            "text",
            {"content": "echo: hello"},
        )
        # a re-push carries the same ids; the same person keeps the same conversation
        await fake.push_chatbot_message("lilei", "hello", msg_id="msg-1", message_id="frame-1")
        assert [m.message_id for m in bot.seen] == ["msg-1", "msg-1"]
        assert bot.seen[1].conversation_id == incoming.conversation_id
        assert bot.seen[1].session_webhook != incoming.session_webhook


async def test_async_chatbot_handler_acks_at_once_and_replies_from_its_thread(fake: DingTalkFake) -> None:
    bot = ThreadedBot()
    async with Sdk(fake, (ChatbotMessage.TOPIC, bot)):
        ack = await fake.push_chatbot_message("newbie", "status")
        assert (ack["code"], ack["message"]) == (200, "ok")
        assert ack["data"]["text"] == {"content": "status"}  # AsyncChatbotHandler echoes the data
        (reply,) = await fake.wait_session_replies()
        assert reply["markdown"] == {"title": "Hi", "text": "**status**"}
        assert fake.messages_to("newbie")[0].kind == "session"


async def test_card_callback_answer_comes_back_in_the_ack(fake: DingTalkFake) -> None:
    cards = CardAnswer()
    async with Sdk(fake, (ChatbotMessage.TOPIC, EchoBot()), (CARD_CALLBACK_TOPIC, cards)):
        ack = await fake.push_card_callback("lilei", "card-1", {"rating": "4"}, action_ids=("rate",))
    assert ack["code"] == 200
    assert ack["data"] == {"response": {"cardData": {"cardParamMap": {"status": "done", "rating": "4"}}}}
    (seen,) = cards.seen
    assert (seen.card_instance_id, seen.user_id, seen.corp_id) == ("card-1", "lilei", fake.corp_id)
    assert seen.content == {"cardPrivateData": {"actionIds": ["rate"], "params": {"rating": "4"}}}


async def test_push_waits_for_a_connection_subscribed_to_the_topic(fake: DingTalkFake) -> None:
    async with Sdk(fake, (ChatbotMessage.TOPIC, EchoBot())):
        await fake.wait_connected()
        with pytest.raises(TimeoutError):
            await fake.push_card_callback("lilei", "card-1", {}, timeout=0.3)
        with pytest.raises(TimeoutError):  # EVENT needs register_all_event_handler
            await fake.push_event("user_add_org", {"userId": ["x"]}, timeout=0.3)


async def test_event_ack_echoes_the_data(fake: DingTalkFake) -> None:
    class Events(dingtalk_stream.EventHandler):
        async def process(self, event: dingtalk_stream.EventMessage) -> tuple[int, str]:
            assert event.headers.event_type == "user_add_org"
            return AckMessage.STATUS_OK, "OK"

    sdk = Sdk(fake)
    sdk.client.register_all_event_handler(Events())
    async with sdk:
        ack = await fake.push_event("user_add_org", {"userId": ["u1"]}, event_id="e-1")
    assert (ack["code"], ack["message"], ack["data"]) == (200, "OK", {"userId": ["u1"]})


async def test_system_ping_is_echoed(fake: DingTalkFake) -> None:
    async with Sdk(fake, (ChatbotMessage.TOPIC, EchoBot())):
        ack = await fake.send_ping("opaque-42")
    assert (ack["code"], ack["data"]) == (200, {"opaque": "opaque-42"})


async def test_disconnect_makes_the_sdk_reconnect_with_a_new_ticket(fake: DingTalkFake) -> None:
    bot = EchoBot(reply=False)
    async with Sdk(fake, (ChatbotMessage.TOPIC, bot)):
        await fake.wait_connected()
        started = asyncio.get_running_loop().time()
        await fake.send_disconnect()
        assert fake.connections == 0
        await fake.wait_connected(timeout=3)
        assert asyncio.get_running_loop().time() - started < 1.5  # no SDK sleep on a normal close
        assert (fake.connections_opened, fake.tickets_issued) == (2, 2)
        ack = await fake.push_chatbot_message("lilei", "after")
        assert ack["code"] == 200
        assert bot.seen[-1].text.content == "after"


async def test_a_push_to_several_clients_goes_to_one(fake: DingTalkFake) -> None:
    first, second = EchoBot(reply=False), EchoBot(reply=False)
    async with Sdk(fake, (ChatbotMessage.TOPIC, first)), Sdk(fake, (ChatbotMessage.TOPIC, second)):
        await fake.wait_connected(2)
        for n in range(10):
            await fake.push_chatbot_message("lilei", f"m{n}")
    assert len(first.seen) + len(second.seen) == 10


async def test_a_ticket_is_good_for_90_seconds() -> None:
    clock = Clock()
    async with DingTalkFake(clock=clock) as fake, httpx.AsyncClient() as http:
        body = {"clientId": fake.client_id, "clientSecret": fake.client_secret, "subscriptions": []}
        opened = (await http.post(fake.url + "/v1.0/gateway/connections/open", json=body)).json()
        clock.now += 91
        with pytest.raises(websockets.exceptions.InvalidStatus) as stale:
            async with websockets.connect(f"{opened['endpoint']}?ticket={opened['ticket']}"):
                pass
        assert stale.value.response.status_code == 401
        assert fake.connections_opened == 0


# ---- tokens ------------------------------------------------------------------------------------------


async def test_both_token_endpoints_hand_out_the_same_token(fake: DingTalkFake) -> None:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        new = (
            await http.post(
                "/v1.0/oauth2/accessToken", json={"appKey": fake.client_id, "appSecret": fake.client_secret}
            )
        ).json()
        old = (
            await http.get("/gettoken", params={"appkey": fake.client_id, "appsecret": fake.client_secret})
        ).json()
        assert new["expireIn"] == 7200 and old["expires_in"] == 7200 and old["errcode"] == 0
        assert new["accessToken"] == old["access_token"]
        bad = await http.post("/v1.0/oauth2/accessToken", json={"appKey": fake.client_id, "appSecret": "x"})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalidClientSecret")
        bad_old = await http.get("/gettoken", params={"appkey": fake.client_id, "appsecret": "x"})
        assert (bad_old.status_code, bad_old.json()["errcode"]) == (200, 40089)
    assert fake.token_requests == 2


async def test_the_sdk_gets_its_token_from_the_fake(fake: DingTalkFake) -> None:
    client = dingtalk_stream.DingTalkStreamClient(
        dingtalk_stream.Credential(fake.client_id, fake.client_secret)
    )
    assert await asyncio.to_thread(client.get_access_token)
    assert fake.token_requests == 1


async def test_expired_tokens_are_refused_in_both_styles(fake: DingTalkFake) -> None:
    fake.add_user("lilei", name="李雷")
    async with httpx.AsyncClient(base_url=fake.url) as http:
        old = await token(fake, http)
        fake.expire_tokens()
        refused = await http.post(
            BATCH_SEND, json=batch(fake, ["lilei"]), headers={"x-acs-dingtalk-access-token": old}
        )
        assert refused.status_code == 400
        assert refused.json()["code"] == "InvalidAuthentication"
        assert refused.json()["message"] == "不合法的access_token"
        legacy = await http.post(
            "/topapi/v2/user/get", params={"access_token": old}, json={"userid": "lilei"}
        )
        assert (legacy.status_code, legacy.json()["errcode"]) == (200, 40014)
        missing = await http.post(BATCH_SEND, json=batch(fake, ["lilei"]))
        assert missing.status_code == 400
        new = await token(fake, http)
        assert new != old
        ok = await http.post(
            BATCH_SEND, json=batch(fake, ["lilei"]), headers={"x-acs-dingtalk-access-token": new}
        )
        assert ok.status_code == 200
    assert len(fake.batch_sends) == 1


# ---- batchSend ---------------------------------------------------------------------------------------


async def test_batch_send_delivers_and_lists_invalid_and_flow_controlled(fake: DingTalkFake) -> None:
    for userid in ("a", "b", "c", "d"):
        fake.add_user(userid, name=userid.upper())
    fake.set_invalid("b")
    fake.flow_control("c", times=1)
    async with httpx.AsyncClient() as http:
        answer = await api(fake, http, "POST", BATCH_SEND, batch(fake, ["a", "b", "c", "ghost", "d"], "Q1"))
        assert answer.status_code == 200
        body = answer.json()
        assert body["invalidStaffIdList"] == ["b", "ghost"]
        assert body["flowControlledStaffIdList"] == ["c"]
        assert body["processQueryKey"]
        again = (await api(fake, http, "POST", BATCH_SEND, batch(fake, ["c"], "Q2"))).json()
        assert again["flowControlledStaffIdList"] == []  # flow control was for one send
        too_many = await api(fake, http, "POST", BATCH_SEND, batch(fake, [f"u{n}" for n in range(21)]))
        assert too_many.status_code == 400
        none = await api(fake, http, "POST", BATCH_SEND, batch(fake, []))
        assert none.status_code == 400
        wrong_robot = await api(fake, http, "POST", BATCH_SEND, {**batch(fake, ["a"]), "robotCode": "other"})
        assert wrong_robot.status_code == 400
    first, second = fake.batch_sends
    assert (
        first.delivered == ["a", "d"] and first.invalid == ["b", "ghost"] and first.flow_controlled == ["c"]
    )
    assert first.msg_param == {"title": "Cadence", "text": "Q1"} and first.msg_key == "sampleMarkdown"
    assert second.delivered == ["c"]
    assert [m.content["text"] for m in fake.messages_to("c")] == ["Q2"]
    assert fake.messages_to("b") == []
    (to_a,) = fake.messages_to("a")
    assert (to_a.kind, to_a.process_query_key) == ("batch", first.process_query_key)


# ---- cards -------------------------------------------------------------------------------------------


async def test_create_and_deliver_then_update(fake: DingTalkFake) -> None:
    fake.add_user("lilei", name="李雷")
    async with httpx.AsyncClient() as http:
        created = await api(
            fake, http, "POST", CREATE_AND_DELIVER, card_body(fake, "lilei", "t-1", {"q": "Q2"})
        )
        assert created.status_code == 200
        assert created.json() == {
            "success": True,
            "result": {
                "outTrackId": "t-1",
                "deliverResults": [
                    {"spaceType": "IM_ROBOT", "spaceId": "lilei", "success": True, "carrierId": "t-1"}
                ],
            },
        }
        update = {
            "outTrackId": "t-1",
            "cardData": {"cardParamMap": {"status": "done"}},
            "cardUpdateOptions": {"updateCardDataByKey": True},
        }
        assert (await api(fake, http, "PUT", CARD_UPDATE, update)).json() == {"success": True, "result": True}
        unknown = await api(fake, http, "PUT", CARD_UPDATE, {**update, "outTrackId": "nope"})
        assert unknown.status_code == 400
    card = fake.cards["t-1"]
    assert (card.user_id, card.template_id, card.callback_type) == ("lilei", "tpl.schema", "STREAM")
    assert card.card_data == {"cardParamMap": {"q": "Q2", "status": "done"}}
    assert card.updates == [{"cardParamMap": {"status": "done"}}]
    (message,) = fake.messages_to("lilei")
    assert (message.kind, message.out_track_id, message.content) == ("card", "t-1", card.card_data)


async def test_a_repeated_out_track_id_creates_no_second_card(fake: DingTalkFake) -> None:
    fake.add_user("lilei", name="李雷")
    async with httpx.AsyncClient() as http:
        await api(fake, http, "POST", CREATE_AND_DELIVER, card_body(fake, "lilei", "t-1", {"q": "first"}))
        again = await api(
            fake, http, "POST", CREATE_AND_DELIVER, card_body(fake, "lilei", "t-1", {"q": "second"})
        )
    assert again.status_code == 200 and again.json()["success"] is True
    assert fake.duplicate_out_track_ids == 1
    assert fake.cards["t-1"].card_data == {"cardParamMap": {"q": "first"}}
    assert len(fake.messages_to("lilei")) == 1


async def test_the_sdk_card_replier_talks_to_the_fake(fake: DingTalkFake) -> None:
    """``CardReplier.create_and_deliver_card`` / ``put_card_data`` (blocking requests) for a 1:1 chat."""
    fake.add_user("lilei", name="李雷")
    client = dingtalk_stream.DingTalkStreamClient(
        dingtalk_stream.Credential(fake.client_id, fake.client_secret)
    )
    incoming = ChatbotMessage.from_dict(fake.chatbot_data("lilei", "hi"))
    replier = dingtalk_stream.CardReplier(client, incoming)

    def send() -> str:
        out_track_id: str = replier.create_and_deliver_card("tpl.schema", {"markdown": "Q1"})
        replier.put_card_data(out_track_id, {"markdown": "Saved"})
        return out_track_id

    out_track_id = await asyncio.to_thread(send)
    card = fake.cards[out_track_id]
    assert card.user_id == "lilei"
    assert card.card_data["cardParamMap"] == {"markdown": "Saved"}
    assert fake.messages_to("lilei")[0].content is card.card_data


# ---- directory ---------------------------------------------------------------------------------------


def org(fake: DingTalkFake) -> None:
    fake.add_department(20, "Engineering")
    fake.add_department(21, "Backend", parent=20)
    fake.add_user("wang", name="王芳", email="wang@example.com", departments=(20,), title="工程经理")
    fake.add_user(
        "lilei",
        name="李雷",
        org_email="lilei@corp.example.com",
        departments=(21, 20),
        manager="wang",
        unionid="u-li",
    )
    for n in range(5):
        fake.add_user(f"p{n}", name=f"P{n}", departments=(21,), manager="wang", active=n != 4)


async def oapi(
    fake: DingTalkFake, http: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    tok = (
        await http.get(
            fake.url + "/gettoken", params={"appkey": fake.client_id, "appsecret": fake.client_secret}
        )
    ).json()
    answer = await http.post(fake.url + path, params={"access_token": tok["access_token"]}, json=body)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


async def test_department_tree_and_user_pages(fake: DingTalkFake) -> None:
    org(fake)
    async with httpx.AsyncClient() as http:
        root = await oapi(fake, http, "/topapi/v2/department/listsub", {"dept_id": 1})
        assert [(d["dept_id"], d["name"], d["parent_id"]) for d in root["result"]] == [(20, "Engineering", 1)]
        eng = await oapi(fake, http, "/topapi/v2/department/listsub", {"dept_id": 20})
        assert [d["dept_id"] for d in eng["result"]] == [21]
        assert (await oapi(fake, http, "/topapi/v2/department/listsub", {"dept_id": 99}))["errcode"] == 60003

        seen: list[str] = []
        cursor = 0
        while True:
            page = await oapi(
                fake, http, "/topapi/v2/user/list", {"dept_id": 21, "cursor": cursor, "size": 4}
            )
            assert page["errcode"] == 0
            seen += [u["userid"] for u in page["result"]["list"]]
            if not page["result"]["has_more"]:
                assert "next_cursor" not in page["result"]
                break
            cursor = page["result"]["next_cursor"]
        assert seen == ["lilei", "p0", "p1", "p2", "p3", "p4"]
        in_eng = (await oapi(fake, http, "/topapi/v2/user/list", {"dept_id": 20, "cursor": 0, "size": 100}))[
            "result"
        ]
        lilei = next(u for u in in_eng["list"] if u["userid"] == "lilei")  # in two departments: in both lists
        assert lilei == {
            "userid": "lilei",
            "unionid": "u-li",
            "name": "李雷",
            "title": "",
            "dept_id_list": [21, 20],
            "active": True,
            "admin": False,
            "boss": False,
            "leader": False,
            "hide_mobile": False,
            "job_number": "",
            "avatar": "",
            "org_email": "lilei@corp.example.com",
        }  # no manager_userid in list items: only user/get has it
        too_big = await oapi(fake, http, "/topapi/v2/user/list", {"dept_id": 20, "cursor": 0, "size": 101})
        assert too_big["errcode"] == 40035

        wang = (await oapi(fake, http, "/topapi/v2/user/get", {"userid": "wang"}))["result"]
        li = (await oapi(fake, http, "/topapi/v2/user/get", {"userid": "lilei"}))["result"]
        assert (li["manager_userid"], li["leader_in_dept"]) == (
            "wang",
            [{"dept_id": 21, "leader": False}, {"dept_id": 20, "leader": False}],
        )
        assert (wang["email"], wang["title"], wang["dept_id_list"]) == ("wang@example.com", "工程经理", [20])
        fake.remove_user("p0")
        fake.update_user("p1", name="P-one", departments=(20,))
        gone = await oapi(fake, http, "/topapi/v2/user/get", {"userid": "p0"})
        assert (gone["errcode"], gone["errmsg"]) == (60121, "找不到该用户")
        backend = (await oapi(fake, http, "/topapi/v2/user/list", {"dept_id": 21, "cursor": 0, "size": 100}))[
            "result"
        ]
        assert [u["userid"] for u in backend["list"]] == ["lilei", "p2", "p3", "p4"]
        assert backend["list"][-1]["active"] is False
        unknown_api = await oapi(fake, http, "/topapi/v2/user/nope", {})
        assert unknown_api["errcode"] == 22


# ---- limits and failures -----------------------------------------------------------------------------


async def test_limit_refuses_batch_send_over_the_rate_with_403() -> None:
    clock = Clock()
    async with DingTalkFake(clock=clock) as fake, httpx.AsyncClient() as http:
        fake.add_user("a", name="A")
        fake.limit(per_app_per_s=2)
        statuses = [
            (await api(fake, http, "POST", BATCH_SEND, batch(fake, ["a"]))).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 403]
        refused = await api(fake, http, "POST", BATCH_SEND, batch(fake, ["a"]))
        assert refused.json()["code"] == "Forbidden.AccessDenied.QpsLimitForApi"
        assert refused.json()["message"].startswith("请求过于频繁")
        clock.now += 0.5
        assert (await api(fake, http, "POST", BATCH_SEND, batch(fake, ["a"]))).status_code == 200
        stats = fake.limit_stats()
        assert (stats.admitted, stats.refused) == (3, 2)
        assert stats.achieved_per_s() == pytest.approx(4.0)  # (3 - 1) / 0.5 s: the burst of 2 plus refill
        # other APIs are not limited; the refused calls delivered nothing
        assert len(fake.messages_to("a")) == 3
        fake.limit(per_app_per_s=None)
        assert fake.limit_stats().admitted == 0


async def test_fail_answers_in_the_style_of_each_api(fake: DingTalkFake) -> None:
    fake.add_user("a", name="A")
    fake.fail(BATCH_SEND, code="90020", status=403, message="api调用次数超过限额", times=2)
    fake.fail("/topapi/v2/user/list", code=90018)
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            answer = await api(fake, http, "POST", BATCH_SEND, batch(fake, ["a"]))
            assert answer.status_code == 403
            assert answer.json()["code"] == "90020" and answer.json()["message"] == "api调用次数超过限额"
            assert answer.json()["requestid"]
        assert (await api(fake, http, "POST", BATCH_SEND, batch(fake, ["a"]))).status_code == 200
        legacy = await oapi(fake, http, "/topapi/v2/user/list", {"dept_id": 1, "cursor": 0, "size": 10})
        assert (legacy["errcode"], legacy["errmsg"]) == (90018, "injected")
        again = await oapi(fake, http, "/topapi/v2/user/list", {"dept_id": 1, "cursor": 0, "size": 10})
        assert again["errcode"] == 0 and [u["userid"] for u in again["result"]["list"]] == ["a"]
    assert len(fake.batch_sends) == 1
    assert len(fake.calls_to(BATCH_SEND)) == 3
