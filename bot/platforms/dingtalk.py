"""DingTalk: chatbot messages and card callbacks over Stream mode; robot 1:1 messages and cards out.

Receiving. dingtalk-stream 0.24.3's ``DingTalkStreamClient`` parses the frames, routes them to the
handlers and writes the acks; two parts of it are replaced here. Its ``open_connection`` posts with
blocking ``requests`` on the event loop, to a URL it reads from ``DINGTALK_OPENAPI_ENDPOINT`` once at
import; ``_open`` here posts with httpx to ``DINGTALK_API_URL``, so the SDK's import-time endpoint is
never used. Its ``start`` sleeps 10 s after every dropped connection and swallows cancellation;
``run`` here reconnects with a short, growing pause and stops when cancelled. websockets' own ping
(every 20 s, 20 s to answer) closes a connection that went silent, and ``run`` opens a new one.

A chatbot message in a 1:1 chat (``conversationType`` "1") becomes a text event; a card callback an
action. Each handler returns once the event is journaled, so the ack follows that; a re-pushed
message carries the same ``msgId`` and is a no-op in the journal.

Sending. Without a card template, messages are robot markdown (``oToMessages/batchSend``); sends of
identical content that arrive together (a cycle's opening questions, in each language) go out in one
call of up to 20 recipients. DingTalk reports per recipient: ``flowControlledStaffIdList`` is tried
again later, ``invalidStaffIdList`` is a person who cannot be reached (a permanent failure). With a
card template (``DINGTALK_CARD_TEMPLATE_ID``), prompts are interactive cards created with the outbox
key as ``outTrackId``, which DingTalk keeps unique, and updated in place after an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import random
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from bot.platforms.base import EventHandler, IncomingEvent, Platform, SendError, hand_over
from bot.platforms.dingtalk_api import DingtalkApi, DingtalkApiError
from bot.platforms.dingtalk_render import batch_key, callback_action, card_params, markdown
from bot.settings import DingtalkSettings
from conversations.messages import Message

log = logging.getLogger(__name__)
CHATBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
BATCH_LIMIT = 20  # userIds per oToMessages/batchSend call
# how long a send waits for others with the same content to join its call
BATCH_WINDOW = 0.02
# DingTalk's flow control names no time; a person flow-controlled now is tried again after this
FLOW_CONTROL_RETRY = 30.0
# the monthly quota of metered calls is used up: look again in an hour (HR sees the reason meanwhile)
QUOTA_RETRY = 3600.0
_OUT_TRACK_LIMIT = 64
_RECONNECT_MAX = 30.0


def out_track_id(key: str) -> str:
    """The card's ``outTrackId``: the outbox key, hashed when long."""
    if len(key) <= _OUT_TRACK_LIMIT:
        return key
    return "h" + hashlib.sha256(key.encode()).hexdigest()[: _OUT_TRACK_LIMIT - 1]


def text_of(data: dict[str, Any]) -> str:
    """A chatbot message's text: a text message's, or a rich-text message's runs; else ""."""
    if data.get("msgtype") == "text":
        return str((data.get("text") or {}).get("content") or "").strip()
    if data.get("msgtype") == "richText":
        runs = ((data.get("content") or {}).get("richText")) or []
        return "".join(str(run["text"]) for run in runs if isinstance(run, dict) and "text" in run).strip()
    return ""


@dataclass
class _Batch:
    """Sends of the same markdown waiting to go out in one call."""

    msg_key: str
    param: dict[str, str]
    waiting: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class DingtalkPlatform(Platform):
    """One DingTalk internal app with a robot."""

    name = "dingtalk"
    batch_limit = BATCH_LIMIT

    def __init__(self, settings: DingtalkSettings) -> None:
        self.settings = settings
        self.api = DingtalkApi(
            settings.api_url,
            oapi_url=settings.oapi_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
        )
        self._on_event: EventHandler | None = None
        self._stream: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._working: set[asyncio.Task[None]] = set()
        self._emails: dict[str, str | None] = {}
        self._batches: dict[str, _Batch] = {}
        self._flushing: set[asyncio.Task[None]] = set()
        self.connections_opened = 0

    # ---- connecting -------------------------------------------------------------------------

    async def start(self, on_event: EventHandler) -> None:
        """Open the stream; returns once connected (or after 15 s, reconnecting in the background)."""
        self._on_event = on_event
        stream_module = await asyncio.to_thread(importlib.import_module, "dingtalk_stream")
        self._stream = _stream_client(stream_module, self)
        self._runner = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 15)

    async def stop(self) -> None:
        """Close the stream, wait for the events in hand, then close the API's pool."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._working:
            await asyncio.gather(*self._working, return_exceptions=True)
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.api.close()

    async def _run(self) -> None:
        """Connect, read frames until the connection ends, connect again; until cancelled."""
        websockets = importlib.import_module("websockets")
        pause = 0.2
        while True:
            try:
                ticket = await self._open()
                uri = f"{ticket['endpoint']}?ticket={quote_plus(ticket['ticket'])}"
                async with websockets.connect(uri, proxy=None) as socket_:
                    self._stream.websocket = socket_
                    self.connections_opened += 1
                    self._connected.set()
                    pause = 0.2
                    async for raw in socket_:
                        self._track(self._stream.background_task(json.loads(raw)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a refused open, a broken socket, a bad frame: connect again
                log.warning("DingTalk stream connection ended: %r", exc)
            self._stream.websocket = None
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, _RECONNECT_MAX)

    async def _open(self) -> dict[str, str]:
        """A single-use ticket for the stream (``POST /v1.0/gateway/connections/open``)."""
        body = {
            "clientId": self.settings.client_id,
            "clientSecret": self.settings.client_secret,
            "subscriptions": [
                {"type": "CALLBACK", "topic": CHATBOT_TOPIC},
                {"type": "CALLBACK", "topic": CARD_TOPIC},
            ],
            "ua": "cadence (dingtalk-stream 0.24.3)",
            "localIp": _local_ip(),
        }
        response = await self.api.http().post("/v1.0/gateway/connections/open", json=body)
        answer = response.json()
        if response.status_code >= 400 or not answer.get("endpoint") or not answer.get("ticket"):
            raise DingtalkApiError(f"DingTalk refused the stream: HTTP {response.status_code} {answer}")
        return {"endpoint": str(answer["endpoint"]), "ticket": str(answer["ticket"])}

    def _track(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._working.add(task)
        task.add_done_callback(self._working.discard)

    # ---- receiving ----------------------------------------------------------------------------

    async def on_chatbot_message(self, data: dict[str, Any], message_id: str) -> None:
        """A message to the robot: in a 1:1 chat, the person's turn (group chats are not Cadence's)."""
        if str(data.get("conversationType")) != "1":
            return
        user = str(data.get("senderStaffId") or "")
        if not user:
            return
        event_id = f"msg:{data.get('msgId') or message_id}"
        event = IncomingEvent(
            "dingtalk", event_id, user, "text", text=text_of(data), email=await self._email_of(user)
        )
        await self._emit(event)

    async def on_card_callback(self, data: dict[str, Any], message_id: str) -> None:
        """A button on a card: the action it carries."""
        user = str(data.get("userId") or "")
        action = callback_action(data.get("content"))
        if not user or action is None:
            return
        event_id = f"card:{data.get('outTrackId', '')}:{message_id}"
        await self._emit(IncomingEvent("dingtalk", event_id, user, "action", action=action))

    async def _emit(self, event: IncomingEvent) -> None:
        assert self._on_event is not None
        await hand_over(self._on_event, event, working=self._working, metrics=self.metrics)

    async def _email_of(self, user: str) -> str | None:
        """The person's email (or org email) from the directory, cached: how DingTalk users meet the org."""
        if user not in self._emails:
            try:
                found = await asyncio.wait_for(
                    self.api.oapi("/topapi/v2/user/get", json_body={"userid": user}), 1.0
                )
            except (DingtalkApiError, TimeoutError) as exc:
                log.warning("DingTalk user %s unreadable: %s", user, exc)
                return None
            email = found.get("email") or found.get("org_email")
            self._emails[user] = str(email).lower() if email else None
        return self._emails[user]

    # ---- sending ------------------------------------------------------------------------------

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """A card (with a template configured and something to click), else a markdown message."""
        if self.settings.card_template_id and message.buttons:
            return await self._send_card(recipient, message, key)
        return await self._send_markdown(recipient, message)

    async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None:
        """Update a card in place; a markdown message cannot be edited (the chat shows the reply)."""
        kind, _, track = message_id.partition("|")
        if kind != "card":
            return
        body = {
            "outTrackId": track,
            "cardData": {"cardParamMap": card_params(message)},
            "cardUpdateOptions": {"updateCardDataByKey": True},
        }
        await self._call("PUT", "/v1.0/card/instances", body)

    async def _send_card(self, recipient: str, message: Message, key: str) -> str:
        track = out_track_id(key)
        body = {
            "cardTemplateId": self.settings.card_template_id,
            "outTrackId": track,
            "cardData": {"cardParamMap": card_params(message)},
            "callbackType": "STREAM",
            "openSpaceId": f"dtv1.card//IM_ROBOT.{recipient}",
            "imRobotOpenSpaceModel": {"supportForward": False},
            "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": self.settings.robot},
            "userIdType": 1,
        }
        try:
            await self.api.call("POST", "/v1.0/card/instances/createAndDeliver", json_body=body)
        except DingtalkApiError as exc:
            if "outtrackid" not in exc.code.lower():
                raise self._send_error(exc) from exc
            # DingTalk keeps outTrackId unique: this card exists, so an earlier send reached it
        return f"card|{track}"

    async def _send_markdown(self, recipient: str, message: Message) -> str:
        """Join (or open) the call for this content; resolves with this recipient's own outcome."""
        param = markdown(message)
        content = batch_key("sampleMarkdown", param)
        batch = self._batches.get(content)
        if batch is None or recipient in batch.waiting:
            batch = self._batches[content] = _Batch("sampleMarkdown", param)
            batch.timer = asyncio.get_running_loop().call_later(BATCH_WINDOW, self._flush, content, batch)
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        batch.waiting[recipient] = outcome
        if len(batch.waiting) >= BATCH_LIMIT:
            self._flush(content, batch)
        return await outcome

    def _flush(self, content: str, batch: _Batch) -> None:
        if self._batches.get(content) is batch:
            del self._batches[content]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if batch.waiting:
            task = asyncio.create_task(self._send_batch(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send_batch(self, batch: _Batch) -> None:
        waiting, batch.waiting = batch.waiting, {}
        body = {
            "robotCode": self.settings.robot,
            "userIds": list(waiting),
            "msgKey": batch.msg_key,
            "msgParam": json.dumps(batch.param, ensure_ascii=False),
        }
        try:
            answer = await self._call("POST", "/v1.0/robot/oToMessages/batchSend", body)
        except SendError as exc:
            for outcome in waiting.values():
                if not outcome.done():
                    outcome.set_exception(exc)
            return
        invalid = set(answer.get("invalidStaffIdList") or [])
        throttled = set(answer.get("flowControlledStaffIdList") or [])
        sent_as = f"batch|{answer.get('processQueryKey', '')}"
        for user, outcome in waiting.items():
            if outcome.done():
                continue
            if user in invalid:
                outcome.set_exception(
                    SendError(f"DingTalk cannot reach {user} (invalidStaffIdList)", unreachable=True)
                )
            elif user in throttled:
                outcome.set_exception(
                    SendError(f"DingTalk flow control for {user}", retry_after=FLOW_CONTROL_RETRY)
                )
            else:
                outcome.set_result(sent_as)

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.api.call(method, path, json_body=body)
        except DingtalkApiError as exc:
            raise self._send_error(exc) from exc

    def _send_error(self, exc: DingtalkApiError) -> SendError:
        """A DingTalk refusal as delivery understands it: later, much later, never, or maybe sent."""
        if exc.rate_limited:
            if self.metrics is not None:
                self.metrics.rate_limited(self.name)
            return SendError(f"DingTalk rate limit: {exc}", retry_after=1.0 + random.random())
        if exc.quota_exhausted:
            return SendError(
                f"DingTalk's monthly API quota is used up: {exc}", retry_after=QUOTA_RETRY, reason="quota"
            )
        server_side = exc.status >= 500 or exc.status == 0
        permanent = 400 <= exc.status < 500 and not exc.token_invalid
        return SendError(str(exc), permanent=permanent, in_doubt=exc.reached and server_side)


def _local_ip() -> str:
    """This machine's address as DingTalk's connection record shows it (informational only)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return ""


def _stream_client(stream_module: Any, platform: DingtalkPlatform) -> Any:
    """The SDK's client with Cadence's two handlers registered (it parses frames and writes acks)."""
    ok = stream_module.AckMessage.STATUS_OK

    class ChatbotHandler(stream_module.CallbackHandler):
        async def process(self, message: Any) -> tuple[int, str]:
            await platform.on_chatbot_message(message.data or {}, message.headers.message_id or "")
            return ok, "OK"

    class CardHandler(stream_module.CallbackHandler):
        async def process(self, message: Any) -> tuple[int, dict[str, Any]]:
            await platform.on_card_callback(message.data or {}, message.headers.message_id or "")
            return ok, {}

    client = stream_module.DingTalkStreamClient(
        stream_module.Credential(platform.settings.client_id, platform.settings.client_secret),
        logger=logging.getLogger("dingtalk_stream.client"),
    )
    client.register_callback_handler(CHATBOT_TOPIC, ChatbotHandler())
    client.register_callback_handler(CARD_TOPIC, CardHandler())
    client.pre_start()
    return client
