"""The Feishu fake against the real lark-oapi SDK: long connection, IM, contact, limits, webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import lark_oapi as lark
import lark_oapi.ws.client as lark_ws_client
import pytest
from lark_oapi.api.application.v6 import P2ApplicationBotMenuV6
from lark_oapi.api.contact.v3 import (
    BatchGetIdUserRequest,
    BatchGetIdUserRequestBody,
    ChildrenDepartmentRequest,
    FindByDepartmentUserRequest,
    GetUserRequest,
)
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    CreateMessageResponse,
    GetMessageRequest,
    P2ImMessageReceiveV1,
    PatchMessageRequest,
    PatchMessageRequestBody,
    PatchMessageResponse,
)
from lark_oapi.core.model import RawRequest
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)
from lark_oapi.event.dispatcher_handler import EventDispatcherHandler, EventDispatcherHandlerBuilder
from lark_oapi.ws.exception import ClientException

from tests.fakes.feishu import FeishuFake

Handlers = Callable[[EventDispatcherHandlerBuilder], EventDispatcherHandlerBuilder]


class _PerThreadLoop:
    """Stands in for ``lark_oapi.ws.client.loop`` (one module-level loop for every client, which the SDK
    reads at each ``loop.create_task``): each SDK thread sees its own loop, so several clients can run."""

    def __init__(self) -> None:
        self._local = threading.local()

    def set(self, loop: asyncio.AbstractEventLoop) -> None:
        self._local.loop = loop

    def __getattr__(self, name: str) -> Any:
        loop = getattr(self._local, "loop", None) or asyncio.get_event_loop_policy().get_event_loop()
        return getattr(loop, name)


_LOOPS = _PerThreadLoop()


class SdkLongConnection:
    """A real ``lark.ws.Client`` running ``start()`` in a daemon thread with its own event loop.

    The client is built inside that thread: its constructor schedules a cache-cleaning task on the
    current thread's loop. ``stop`` turns reconnecting off, disconnects on the client's loop, stops it,
    joins the thread and closes the loop.
    """

    def __init__(self, fake: FeishuFake, handlers: Handlers = lambda b: b, *, secret: str | None = None):
        self.fake, self.handlers = fake, handlers
        self.secret = fake.app_secret if secret is None else secret
        self.client: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.loop_errors: list[dict[str, Any]] = []
        self._built = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _, context: self.loop_errors.append(context))
        asyncio.set_event_loop(loop)
        _LOOPS.set(loop)
        self.loop = loop
        try:
            handler = self.handlers(EventDispatcherHandler.builder("", "")).build()
            self.client = lark.ws.Client(
                self.fake.app_id,
                self.secret,
                event_handler=handler,
                domain=self.fake.url,
                log_level=lark.LogLevel.ERROR,
            )
            self._built.set()
            self.client.start()
        except RuntimeError as exc:  # stop(): "Event loop stopped before Future completed."
            if "stopped" not in str(exc):
                self.error = exc
        except BaseException as exc:
            self.error = exc
        finally:
            self._built.set()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def start(self) -> SdkLongConnection:
        original = lark_ws_client.loop
        if original is not _LOOPS:
            # the loop lark_oapi.ws.client made at import: closed here, or its GC warns (unclosed loop)
            if isinstance(original, asyncio.AbstractEventLoop) and not original.is_running():
                original.close()
            lark_ws_client.loop = _LOOPS
        self._thread.start()
        await asyncio.to_thread(self._built.wait, 5)
        return self

    async def stop(self) -> None:
        loop, client = self.loop, self.client
        if loop is not None and client is not None and self._thread.is_alive():
            client._auto_reconnect = False
            try:
                done = asyncio.run_coroutine_threadsafe(client._disconnect(), loop)
                await asyncio.wait_for(asyncio.wrap_future(done), 5)
            except (RuntimeError, asyncio.CancelledError):  # start() failed: the loop is closing
                pass
            finally:
                with contextlib.suppress(RuntimeError):  # already closed
                    loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        assert not self._thread.is_alive()

    async def __aenter__(self) -> SdkLongConnection:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FeishuFake]:
    # a fresh app_id per test: lark-oapi caches tenant tokens process-wide by app_id
    async with FeishuFake(app_id=f"cli_{uuid.uuid4().hex[:16]}") as server:
        yield server


def rest(fake: FeishuFake) -> lark.Client:
    return (
        lark.Client.builder()
        .app_id(fake.app_id)
        .app_secret(fake.app_secret)
        .domain(fake.url)
        .log_level(lark.LogLevel.ERROR)
        .build()
    )


async def send(
    client: lark.Client,
    receive_id: str,
    content: dict[str, Any],
    *,
    msg_type: str = "text",
    receive_id_type: str = "open_id",
    key: str | None = None,
) -> CreateMessageResponse:
    body = CreateMessageRequestBody.builder().receive_id(receive_id).msg_type(msg_type)
    body = body.content(json.dumps(content))
    if key is not None:
        body = body.uuid(key)
    request = (
        CreateMessageRequest.builder().receive_id_type(receive_id_type).request_body(body.build()).build()
    )
    response: CreateMessageResponse = await client.im.v1.message.acreate(request)
    return response


async def patch(client: lark.Client, message_id: str, card: dict[str, Any]) -> PatchMessageResponse:
    body = PatchMessageRequestBody.builder().content(json.dumps(card)).build()
    request = PatchMessageRequest.builder().message_id(message_id).request_body(body).build()
    response: PatchMessageResponse = await client.im.v1.message.apatch(request)
    return response


def shared_card(title: str) -> dict[str, Any]:
    return {
        "config": {"update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": title}},
        "elements": [],
    }


# ---- long connection ---------------------------------------------------------------------------------


async def test_endpoint_connect_and_ping_pong_apply_the_client_config() -> None:
    async with FeishuFake(app_id=f"cli_{uuid.uuid4().hex[:16]}", ping_interval=0.1) as fake:
        async with SdkLongConnection(fake) as sdk:
            await fake.wait_connected()
            # a ping on connect, then every PingInterval (0.1 s, from the endpoint's ClientConfig)
            await fake._wait(lambda: fake.pings >= 3, 5, "three pings")
            assert fake.endpoint_calls == 1
            (call,) = fake.calls_to("/callback/ws/endpoint")
            assert call.body == {"AppID": fake.app_id, "AppSecret": fake.app_secret}
            assert call.headers["locale"] == "zh"
            assert sdk.client._ping_interval == 0.1 and sdk.client._reconnect_nonce == 0
            assert fake.connections == 1
        assert sdk.error is None


async def test_wrong_secret_at_the_endpoint_is_a_fatal_client_exception(fake: FeishuFake) -> None:
    sdk = await SdkLongConnection(fake, secret="wrong").start()
    await sdk.stop()
    assert isinstance(sdk.error, ClientException)
    assert sdk.error.code == 1000040344
    assert fake.endpoint_calls == 0 and fake.connections == 0


async def test_text_event_reaches_the_handler_and_is_acked_200(fake: FeishuFake) -> None:
    seen: list[P2ImMessageReceiveV1] = []
    async with SdkLongConnection(fake, lambda b: b.register_p2_im_message_receive_v1(seen.append)):
        await fake.wait_connected()
        ack = await fake.push_text("ou_alice", "/status", event_id="ev-1", message_id="om_in1")
    assert ack.code == 200 and ack.data is None
    assert ack.headers["type"] == "event" and "biz_rt" in ack.headers
    (event,) = seen
    assert event.header.event_id == "ev-1" and event.header.event_type == "im.message.receive_v1"
    assert event.event.sender.sender_id.open_id == "ou_alice"
    assert event.event.sender.sender_id.user_id == "u_alice"
    assert event.event.sender.sender_type == "user"
    message = event.event.message
    assert (message.message_id, message.chat_type, message.message_type) == ("om_in1", "p2p", "text")
    assert message.chat_id == fake.chat_id("ou_alice") and message.chat_id.startswith("oc_")
    assert json.loads(message.content) == {"text": "/status"}
    assert fake.acks["ev-1"] == ack and fake.events[0]["header"]["event_id"] == "ev-1"


async def test_card_action_answer_comes_back_in_the_ack(fake: FeishuFake) -> None:
    seen: list[P2CardActionTrigger] = []

    def on_click(event: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        seen.append(event)
        return P2CardActionTriggerResponse(
            {
                "toast": {"type": "success", "content": "recorded"},
                "card": {"type": "raw", "data": shared_card("thanks")},
            }
        )

    async with SdkLongConnection(fake, lambda b: b.register_p2_card_action_trigger(on_click)):
        await fake.wait_connected()
        ack = await fake.push_card_action(
            "ou_bob",
            {"answer": "yes"},
            open_message_id="om_card1",
            form_value={"note": "fine"},
            name="submit",
        )
    assert ack.code == 200
    assert ack.data == {
        "toast": {"type": "success", "content": "recorded"},
        "card": {"type": "raw", "data": shared_card("thanks")},
    }
    (event,) = seen
    action = event.event.action
    assert (action.value, action.form_value, action.name, action.tag) == (
        {"answer": "yes"},
        {"note": "fine"},
        "submit",
        "button",
    )
    assert event.event.operator.open_id == "ou_bob"
    assert event.event.context.open_message_id == "om_card1"
    assert event.event.context.open_chat_id == fake.chat_id("ou_bob")


async def test_unregistered_event_type_is_acked_500_and_a_menu_handler_gets_200(fake: FeishuFake) -> None:
    menus: list[P2ApplicationBotMenuV6] = []
    async with SdkLongConnection(fake, lambda b: b.register_p2_im_message_receive_v1(lambda _: None)):
        await fake.wait_connected()
        assert (await fake.push_menu("ou_carol", "checkin")).code == 500
    async with SdkLongConnection(fake, lambda b: b.register_p2_application_bot_menu_v6(menus.append)):
        await fake.wait_connected()
        assert (await fake.push_menu("ou_carol", "checkin")).code == 200
    (menu,) = menus
    assert menu.event.event_key == "checkin"
    assert menu.event.operator.operator_id.open_id == "ou_carol"


async def test_handler_exception_is_acked_500(fake: FeishuFake) -> None:
    def boom(_: P2ImMessageReceiveV1) -> None:
        raise ValueError("handler failed")

    async with SdkLongConnection(fake, lambda b: b.register_p2_im_message_receive_v1(boom)):
        await fake.wait_connected()
        assert (await fake.push_text("ou_dan", "hi")).code == 500


async def test_drop_connections_makes_the_sdk_reconnect_through_a_new_endpoint_call(
    fake: FeishuFake,
) -> None:
    seen: list[P2ImMessageReceiveV1] = []
    async with SdkLongConnection(fake, lambda b: b.register_p2_im_message_receive_v1(seen.append)):
        await fake.wait_connected()
        fake.drop_connections()
        assert fake.connections == 0
        await fake.wait_endpoint_calls(2)
        await fake.wait_connected()
        assert fake.endpoint_calls == 2
        assert (await fake.push_text("ou_erin", "back")).code == 200
    assert len(seen) == 1


async def test_cluster_mode_sends_each_event_to_one_connection() -> None:
    async with FeishuFake(app_id=f"cli_{uuid.uuid4().hex[:16]}", seed=7) as fake:
        first: list[P2ImMessageReceiveV1] = []
        second: list[P2ImMessageReceiveV1] = []
        async with (
            SdkLongConnection(fake, lambda b: b.register_p2_im_message_receive_v1(first.append)),
            SdkLongConnection(fake, lambda b: b.register_p2_im_message_receive_v1(second.append)),
        ):
            await fake.wait_connected(2)
            acks = await asyncio.gather(*(fake.push_text("ou_fay", f"m{i}") for i in range(20)))
        assert all(ack.code == 200 for ack in acks)
        assert len(first) + len(second) == 20 and first and second


# ---- messages ------------------------------------------------------------------------------------


async def test_create_message_answer_and_storage(fake: FeishuFake) -> None:
    fake.add_user("ou_gus", name="Gus", email="gus@example.com")
    client = rest(fake)
    response = await send(client, "ou_gus", {"text": "hello"})
    assert response.success(), response.msg
    assert response.data.message_id.startswith("om_")
    assert response.data.chat_id == fake.chat_id("ou_gus")
    assert response.data.msg_type == "text"
    assert response.raw.headers["x-tt-logid"]  # httpx lower-cases names: get_log_id() misses it
    by_email = await send(client, "GUS@example.com", {"text": "again"}, receive_id_type="email")
    assert by_email.success()
    for kind, receive_id in (
        ("user_id", "u_gus"),
        ("union_id", "on_gus"),
        ("chat_id", fake.chat_id("ou_gus")),
    ):
        assert (await send(client, receive_id, {"text": kind}, receive_id_type=kind)).success()
    sent = await fake.wait_messages("ou_gus", 5)
    assert [m.content["text"] for m in sent] == ["hello", "again", "user_id", "union_id", "chat_id"]
    assert sent[1].receive_id_type == "email" and sent[1].open_id == "ou_gus"
    assert fake.message(response.data.message_id) is sent[0]
    (token_call,) = fake.calls_to("tenant_access_token/internal")
    assert token_call.body == {"app_id": fake.app_id, "app_secret": fake.app_secret}
    assert fake.token_requests == 1  # the SDK reuses its cached token
    fetched = await client.im.v1.message.aget(
        GetMessageRequest.builder().message_id(sent[0].message_id).build()
    )
    assert json.loads(fetched.data.items[0].body.content) == {"text": "hello"}


async def test_create_message_refusals(fake: FeishuFake) -> None:
    fake.add_user("ou_hal", name="Hal")
    client = rest(fake)
    assert (await send(client, "ou_nobody", {"text": "x"})).code == 230013
    fake.resign_user("ou_hal")
    assert (await send(client, "ou_hal", {"text": "x"})).code == 230013
    fake.add_user("ou_ida", name="Ida")
    assert (await send(client, "ou_ida", {"nope": 1})).code == 230001
    assert (await send(client, "ou_ida", {"text": "x"}, key="k" * 51)).code == 230001
    huge = {"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": "x" * 31_000}]}}
    assert (await send(client, "ou_ida", huge, msg_type="interactive")).code == 230025
    assert fake.messages == []


async def test_repeated_uuid_returns_the_original_and_stores_nothing(fake: FeishuFake) -> None:
    fake.add_user("ou_jo", name="Jo")
    client = rest(fake)
    first = await send(client, "ou_jo", {"text": "once"}, key="evt-123")
    again = await send(client, "ou_jo", {"text": "twice?"}, key="evt-123")
    assert first.success() and again.success()
    assert again.data.message_id == first.data.message_id
    assert json.loads(again.data.body.content) == {"text": "once"}
    assert len(fake.messages_to("ou_jo")) == 1
    assert fake.delivered_uuids() == {"evt-123": 1}
    assert fake.messages[0].uuid == "evt-123"


async def test_patch_rules(fake: FeishuFake) -> None:
    fake.add_user("ou_kim", name="Kim")
    client = rest(fake)
    shared = (await send(client, "ou_kim", shared_card("v1"), msg_type="interactive")).data.message_id
    assert (await patch(client, shared, shared_card("v2"))).success()
    assert fake.message(shared).updates == [shared_card("v2")]
    not_shared = {"header": {"title": {"tag": "plain_text", "content": "v3"}}, "elements": []}
    refused = await patch(client, shared, not_shared)
    assert refused.code == 230099 and "new card" in refused.msg
    one_point_oh = (await send(client, "ou_kim", not_shared, msg_type="interactive")).data.message_id
    refused = await patch(client, one_point_oh, shared_card("v2"))
    assert refused.code == 230099 and "sent card" in refused.msg
    # card JSON 2.0 is always shared (update_multi defaults to true)
    v2 = {"schema": "2.0", "body": {"elements": []}}
    two = (await send(client, "ou_kim", v2, msg_type="interactive")).data.message_id
    assert (
        await patch(client, two, {**v2, "header": {"title": {"tag": "plain_text", "content": "x"}}})
    ).success()
    text = (await send(client, "ou_kim", {"text": "plain"})).data.message_id
    assert (await patch(client, text, shared_card("v2"))).code == 230001
    assert (await patch(client, "om_unknown", shared_card("v2"))).code == 230011
    assert fake.message(shared).updates == [shared_card("v2")] and fake.message(one_point_oh).updates == []


async def test_expired_tokens_are_refused_99991663(fake: FeishuFake) -> None:
    fake.add_user("ou_lee", name="Lee")
    client = rest(fake)
    assert (await send(client, "ou_lee", {"text": "ok"})).success()
    fake.expire_tokens()
    refused = await send(client, "ou_lee", {"text": "late"})
    assert refused.code == 99991663 and refused.raw.status_code == 400
    assert "Invalid access token" in refused.msg
    assert len(fake.messages) == 1 and fake.token_requests == 1


async def test_fail_injects_the_next_answers(fake: FeishuFake) -> None:
    fake.add_user("ou_max", name="Max")
    client = rest(fake)
    fake.fail("/im/v1/messages", code=230053, times=2)
    assert (await send(client, "ou_max", {"text": "1"})).code == 230053
    assert (await send(client, "ou_max", {"text": "2"})).code == 230053
    assert (await send(client, "ou_max", {"text": "3"})).success()
    assert [m.content["text"] for m in fake.messages] == ["3"]


# ---- limits --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_per_app_limit_answers_429_with_ogw_headers() -> None:
    clock = Clock()
    async with FeishuFake(app_id=f"cli_{uuid.uuid4().hex[:16]}", clock=clock) as fake:
        for name in ("ou_a", "ou_b", "ou_c"):
            fake.add_user(name, name=name)
        fake.limit(per_app_per_s=2, per_user_per_s=None)
        client = rest(fake)
        assert (await send(client, "ou_a", {"text": "1"})).success()
        assert (await send(client, "ou_b", {"text": "2"})).success()
        refused = await send(client, "ou_c", {"text": "3"})
        assert refused.raw.status_code == 429 and refused.code == 99991400
        assert refused.msg == "request trigger frequency limit"
        assert refused.raw.headers["x-ogw-ratelimit-limit"] == "2"
        assert refused.raw.headers["x-ogw-ratelimit-reset"] == "1"
        clock.now += 0.5
        assert (await send(client, "ou_c", {"text": "3"})).success()
        stats = fake.limit_stats()
        assert (stats.admitted, stats.refused, stats.refused_app) == (3, 1, 1)
        assert stats.achieved_per_s() == pytest.approx(4.0)
        assert stats.per_user == {"ou_a": 1, "ou_b": 1, "ou_c": 1}
        assert len(fake.messages) == 3 and fake.http_429 == 1


async def test_per_user_limit_answers_230020() -> None:
    clock = Clock()
    async with FeishuFake(app_id=f"cli_{uuid.uuid4().hex[:16]}", clock=clock) as fake:
        fake.add_user("ou_a", name="A")
        fake.add_user("ou_b", name="B")
        fake.limit(per_app_per_s=None, per_user_per_s=1)
        client = rest(fake)
        assert (await send(client, "ou_a", {"text": "1"})).success()
        refused = await send(client, "ou_a", {"text": "2"})
        assert refused.raw.status_code == 400 and refused.code == 230020
        assert "x-ogw-ratelimit-reset" not in refused.raw.headers
        assert (await send(client, "ou_b", {"text": "1"})).success()
        clock.now += 1
        assert (await send(client, "ou_a", {"text": "2"})).success()
        stats = fake.limit_stats()
        assert (stats.admitted, stats.refused_user) == (3, 1)
        assert [m.content["text"] for m in fake.messages_to("ou_a")] == ["1", "2"]
        fake.limit(per_app_per_s=None, per_user_per_s=None)
        assert fake.limit_stats().admitted == 0


# ---- contact -------------------------------------------------------------------------------------


def org(fake: FeishuFake) -> None:
    fake.add_user("ou_boss", name="Boss", email="boss@example.com", departments=("od-eng",))
    fake.add_department("od-eng", "Engineering", leader="ou_boss")
    fake.add_department("od-web", "Web", parent="od-eng")
    fake.add_department("od-ops", "Ops")
    for i in range(23):
        fake.add_user(
            f"ou_w{i:02d}",
            name=f"Worker {i}",
            email=f"w{i}@example.com",
            enterprise_email=f"w{i}@corp.example.com",
            departments=("od-web",) if i % 2 else ("od-web", "od-ops"),
            leader="ou_boss",
            time_zone="Asia/Shanghai",
            job_title="engineer",
        )


async def test_get_user_with_leader_in_the_requested_id_type(fake: FeishuFake) -> None:
    org(fake)
    client = rest(fake)
    response = await client.contact.v3.user.aget(
        GetUserRequest.builder().user_id("ou_w01").user_id_type("open_id").build()
    )
    user = response.data.user
    assert (user.name, user.email, user.enterprise_email, user.time_zone) == (
        "Worker 1",
        "w1@example.com",
        "w1@corp.example.com",
        "Asia/Shanghai",
    )
    assert (user.open_id, user.user_id, user.union_id, user.leader_user_id) == (
        "ou_w01",
        "u_w01",
        "on_w01",
        "ou_boss",
    )
    assert user.department_ids == ["od-web"] and user.status.is_resigned is False
    by_user_id = await client.contact.v3.user.aget(
        GetUserRequest.builder().user_id("u_w01").user_id_type("user_id").build()
    )
    assert by_user_id.data.user.leader_user_id == "u_boss"
    fake.update_user("ou_w01", leader=None, job_title="lead")
    fake.resign_user("ou_w02")
    fake.remove_user("ou_w03")
    changed = await client.contact.v3.user.aget(GetUserRequest.builder().user_id("ou_w01").build())
    assert changed.data.user.leader_user_id is None and changed.data.user.job_title == "lead"
    resigned = await client.contact.v3.user.aget(GetUserRequest.builder().user_id("ou_w02").build())
    assert resigned.data.user.status.is_resigned is True
    gone = await client.contact.v3.user.aget(GetUserRequest.builder().user_id("ou_w03").build())
    assert gone.code == 41050


async def test_find_by_department_pages_and_leaves_out_resigned(fake: FeishuFake) -> None:
    org(fake)
    fake.resign_user("ou_w04")
    client = rest(fake)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        builder = (
            FindByDepartmentUserRequest.builder()
            .department_id("od-web")
            .department_id_type("open_department_id")
            .user_id_type("open_id")
            .page_size(10)
        )
        if token:
            builder = builder.page_token(token)
        response = await client.contact.v3.user.afind_by_department(builder.build())
        assert response.success(), response.msg
        pages += 1
        seen += [u.open_id for u in response.data.items]
        if not response.data.has_more:
            break
        token = response.data.page_token
    assert pages == 3 and len(seen) == 22 and "ou_w04" not in seen
    ops = await client.contact.v3.user.afind_by_department(
        FindByDepartmentUserRequest.builder().department_id("od-ops").page_size(50).build()
    )
    assert [u.open_id for u in ops.data.items] == [f"ou_w{i:02d}" for i in range(0, 23, 2) if i != 4]
    too_big = await client.contact.v3.user.afind_by_department(
        FindByDepartmentUserRequest.builder().department_id("od-ops").page_size(51).build()
    )
    assert too_big.code == 99992402
    unknown = await client.contact.v3.user.afind_by_department(
        FindByDepartmentUserRequest.builder().department_id("od-nope").build()
    )
    assert unknown.code == 40004


async def test_department_children(fake: FeishuFake) -> None:
    org(fake)
    client = rest(fake)
    top = await client.contact.v3.department.achildren(
        ChildrenDepartmentRequest.builder().department_id("0").user_id_type("user_id").build()
    )
    assert [d.open_department_id for d in top.data.items] == ["od-eng", "od-ops"]
    eng = top.data.items[0]
    assert (eng.name, eng.parent_department_id, eng.leader_user_id, eng.status.is_deleted) == (
        "Engineering",
        "0",
        "u_boss",
        False,
    )
    first = await client.contact.v3.department.achildren(
        ChildrenDepartmentRequest.builder().department_id("0").fetch_child(True).page_size(2).build()
    )
    assert first.data.has_more and [d.open_department_id for d in first.data.items] == ["od-eng", "od-ops"]
    rest_page = await client.contact.v3.department.achildren(
        ChildrenDepartmentRequest.builder()
        .department_id("0")
        .fetch_child(True)
        .page_size(2)
        .page_token(first.data.page_token)
        .build()
    )
    assert not rest_page.data.has_more
    assert [(d.open_department_id, d.parent_department_id) for d in rest_page.data.items] == [
        ("od-web", "od-eng")
    ]


async def test_batch_get_id_by_email(fake: FeishuFake) -> None:
    org(fake)
    fake.resign_user("ou_w05")
    client = rest(fake)
    body = BatchGetIdUserRequestBody.builder().emails(
        ["w1@example.com", "nobody@example.com", "w5@example.com"]
    )
    response = await client.contact.v3.user.abatch_get_id(
        BatchGetIdUserRequest.builder().user_id_type("open_id").request_body(body.build()).build()
    )
    assert [(u.email, u.user_id) for u in response.data.user_list] == [
        ("w1@example.com", "ou_w01"),
        ("nobody@example.com", None),
        ("w5@example.com", None),
    ]


# ---- webhook mode --------------------------------------------------------------------------------


def dispatch(fake: FeishuFake, headers: dict[str, str], body: bytes, seen: list[Any]) -> tuple[int, Any]:
    handler = (
        EventDispatcherHandler.builder(fake.encrypt_key, fake.verification_token)
        .register_p2_im_message_receive_v1(seen.append)
        .build()
    )
    request = RawRequest()
    request.uri, request.headers, request.body = "/webhook", headers, body
    response = handler.do(request)
    return response.status_code, json.loads(response.content)


def test_webhook_body_is_accepted_by_the_sdk_dispatcher() -> None:
    fake = FeishuFake()
    seen: list[P2ImMessageReceiveV1] = []
    headers, body = fake.webhook_body(*fake.text_event("ou_nia", "hi"), event_id="ev-w1")
    assert set(json.loads(body)) == {"encrypt"}
    assert dispatch(fake, headers, body, seen) == (200, {"msg": "success"})
    assert seen[0].header.event_id == "ev-w1" and json.loads(seen[0].event.message.content) == {"text": "hi"}
    plain_headers, plain = fake.webhook_body(*fake.text_event("ou_nia", "plain"), encrypt=False)
    assert dispatch(fake, plain_headers, plain, seen)[0] == 200 and len(seen) == 2
    wrong_headers, wrong = fake.webhook_body(*fake.text_event("ou_nia", "x"), token="not-the-token")
    assert dispatch(fake, wrong_headers, wrong, seen) == (500, {"msg": "invalid verification_token"})
    bad_sign = {**headers, "X-Lark-Signature": "0" * 64}
    assert dispatch(fake, bad_sign, body, seen) == (500, {"msg": "signature verification failed"})
    assert len(seen) == 2
    challenge_headers, challenge = fake.url_verification_body("c-123")
    assert dispatch(fake, challenge_headers, challenge, seen) == (200, {"challenge": "c-123"})
