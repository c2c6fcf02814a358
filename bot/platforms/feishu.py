"""Feishu / Lark: events over lark-oapi's long connection (or webhooks), messages as JSON 2.0 cards.

Receiving. lark-oapi's WebSocket client runs ``start()`` forever on a module-level event loop that it
grabs at import (reference §2.1 item 9). It therefore runs here in a thread of its own with a new
loop put in that module variable, and its handlers, which the SDK calls synchronously, hand each event
to Cadence's loop (``run_coroutine_threadsafe``) and wait there, at most ``HANDLER_BUDGET``, until the
event is journaled. Only then does the handler return and the SDK acknowledge; a handler that fails
or runs out of time makes the SDK answer code 500, and Feishu pushes the event again (the journal
makes the second copy a no-op). Webhook mode (``bot.platforms.feishu_webhook``) calls the same
handlers after the SDK has checked the token, signature and encryption.

Card buttons and forms (``card.action.trigger``) are answered inside Feishu's 3 seconds: a toast
("recorded"), or a new card (the form, or the form again with what is wrong). The engine's reply
then updates the original card (PATCH) to show the saved answer.

Sending. ``POST /open-apis/im/v1/messages`` with the card and the outbox key as ``uuid``: Feishu sends
a message at most once per ``uuid`` within an hour, so a send whose outcome is unknown (a timeout, a
5xx) is simply sent again with the same ``uuid`` well inside that hour; no history search is needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from bot.platforms.base import EventHandler, IncomingEvent, Platform, SendError, hand_over
from bot.platforms.feishu_api import FeishuApi, FeishuApiError
from bot.platforms.feishu_cards import (
    ACTION_KEY,
    FORM_KEY,
    SUBMIT_KEY,
    card,
    content,
    form_answers,
    form_card,
)
from bot.settings import FeishuSettings
from conversations.i18n import t
from conversations.messages import Message

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# what a handler may spend before the SDK must acknowledge: Feishu's limit is 3 s
HANDLER_BUDGET = 2.5
# Feishu's uuid is at most 50 characters
_UUID_LIMIT = 50
# bot menu (application.bot.menu_v6) event keys → the command each runs; "start_<ritual>" starts a cycle
MENU_COMMANDS = {"my_checkins": "me", "team_status": "cycle status", "help": "help"}
_MENU_START = "start_"
# errors no retry will fix: user outside the app's availability range, user stopped the bot, bad card,
# message too long, bot not in the chat, no permission for this API
_PERMANENT = frozenset({230001, 230002, 230013, 230025, 230053, 230099, 99991672})
_SERVER_CODES = frozenset({1, 1000040343})


def message_uuid(key: str) -> str:
    """The ``uuid`` a message is sent with: the outbox key, hashed when longer than Feishu allows."""
    if len(key) <= _UUID_LIMIT:
        return key
    return "h" + hashlib.sha256(key.encode()).hexdigest()[: _UUID_LIMIT - 1]


def _toast(kind: str, key: str) -> dict[str, Any]:
    """A toast in both languages: Feishu shows the one matching the person's client."""
    return {
        "type": kind,
        "content": t(key, "zh-CN"),
        "i18n": {"zh_cn": t(key, "zh-CN"), "en_us": t(key, "en")},
    }


def text_of(message_type: str, raw: str) -> str | None:
    """A chat message's text: a text message's, or a rich-text (post) message's runs joined; else None."""
    try:
        body = json.loads(raw or "{}")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if message_type == "text":
        return str(body.get("text") or "")
    if message_type == "post":
        lines = []
        if body.get("title"):
            lines.append(str(body["title"]))
        for paragraph in body.get("content") or []:
            runs = [str(run.get("text", "")) for run in paragraph if isinstance(run, dict)]
            lines.append("".join(runs))
        return "\n".join(lines).strip()
    return None


class FeishuPlatform(Platform):
    """One Feishu (or Lark) self-built app."""

    name = "feishu"

    def __init__(
        self, settings: FeishuSettings, *, http_host: str = "127.0.0.1", http_port: int = 8080
    ) -> None:
        self.settings = settings
        self.http_host, self.http_port = http_host, http_port
        self.api = FeishuApi(settings.base_url, app_id=settings.app_id, app_secret=settings.app_secret)
        self._on_event: EventHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws_client: Any = None
        self._ws_loop: asyncio.AbstractEventLoop | None = None
        self._ws_thread: threading.Thread | None = None
        self._http: web.AppRunner | None = None
        self._emails: dict[str, str | None] = {}
        self._working: set[asyncio.Task[None]] = set()
        self.dispatcher: Any = None

    # ---- connecting -------------------------------------------------------------------------

    async def start(self, on_event: EventHandler) -> None:
        """Connect the long connection, or serve Feishu's webhook requests."""
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        # importing lark-oapi takes seconds (it loads every API's models): not on the event loop
        lark = await asyncio.to_thread(importlib.import_module, "lark_oapi")
        self.dispatcher = self._dispatcher(lark)
        try:
            if self.settings.connection == "webhook":
                from bot.platforms.feishu_webhook import start_webhook

                self._http = await start_webhook(
                    self.dispatcher, host=self.http_host, port=self.http_port, extra_routes=self.extra_routes
                )
            else:
                await self._start_long_connection(lark)
        except BaseException:
            await self.stop()
            raise

    def _dispatcher(self, lark: Any) -> Any:
        webhook = self.settings.connection == "webhook"
        builder = lark.EventDispatcherHandler.builder(
            self.settings.encrypt_key if webhook else "",
            self.settings.verification_token if webhook else "",
        )
        return (
            builder.register_p2_im_message_receive_v1(self._on_message)
            .register_p2_application_bot_menu_v6(self._on_menu)
            .register_p2_card_action_trigger(self._on_card_action)
            # read receipts and chat-entered events arrive too when subscribed; acknowledged, ignored
            .register_p2_im_message_message_read_v1(lambda _data: None)
            .register_p2_im_chat_access_event_bot_p2p_chat_entered_v1(lambda _data: None)
            .build()
        )

    async def _start_long_connection(self, lark: Any) -> None:
        connected = threading.Event()
        failed: list[BaseException] = []
        self._ws_thread = threading.Thread(
            target=self._run_long_connection, args=(lark, connected, failed), name="feishu-ws", daemon=True
        )
        self._ws_thread.start()
        # the first connection (or its failure) within a few seconds; after that the SDK reconnects
        await asyncio.to_thread(connected.wait, 15)
        if failed:
            raise failed[0]

    def _run_long_connection(
        self, lark: Any, connected: threading.Event, failed: list[BaseException]
    ) -> None:
        """The SDK's ``start()`` on a loop of this thread's own (reference §2.1 item 9).

        The client is built here too: its constructor schedules work on the current thread's loop.
        """
        ws_module = importlib.import_module("lark_oapi.ws.client")
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        orphan = ws_module.loop
        setattr(ws_module, "loop", loop)  # noqa: B010 (the SDK's module-level loop, see the docstring)
        if (
            isinstance(orphan, asyncio.AbstractEventLoop)
            and orphan is not self._loop
            and not orphan.is_running()
        ):
            # the loop the SDK made at import in a worker thread: unused, and it warns when collected
            orphan.close()
        self._ws_loop = loop
        try:
            client = self._ws_client = lark.ws.Client(
                self.settings.app_id,
                self.settings.app_secret,
                event_handler=self.dispatcher,
                domain=self.settings.base_url,
                log_level=lark.LogLevel.WARNING,
            )
            loop.call_soon(self._watch_connected, client, connected)
            client.start()
        except (asyncio.CancelledError, RuntimeError):
            pass  # stop() cancelled the loop's work
        except BaseException as exc:  # the SDK gave up (wrong credentials, too many connections)
            failed.append(exc)
            log.error("Feishu long connection failed: %s", exc)
        finally:
            connected.set()
            # let the cancelled tasks (ping loop, receive loop) finish before the loop closes
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _watch_connected(self, client: Any, connected: threading.Event) -> None:
        # start() connects before it enters its forever-wait; once a connection is there, say so
        if client._conn is not None:
            connected.set()
        elif self._ws_loop is not None and not self._ws_loop.is_closed():
            self._ws_loop.call_later(0.02, self._watch_connected, client, connected)

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where webhook mode listens (the real port when 0 was asked for); None on the long connection."""
        if self._http is None:
            return None
        from bot.http_runner import bound_port

        return (self.http_host, bound_port(self._http))

    async def stop(self) -> None:
        """Close the long connection (and its thread) or the webhook server, then the API's pool."""
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if self._ws_client is not None and self._ws_loop is not None and not self._ws_loop.is_closed():
            self._ws_client._auto_reconnect = False
            try:
                done = asyncio.run_coroutine_threadsafe(_shut_down(self._ws_client), self._ws_loop)
                await asyncio.wait_for(asyncio.wrap_future(done), 5)
            except (RuntimeError, TimeoutError, asyncio.CancelledError) as exc:
                log.warning("Feishu long connection did not close cleanly: %r", exc)
        if self._ws_thread is not None:
            await asyncio.to_thread(self._ws_thread.join, 5)
            self._ws_thread = None
        self._ws_client = None
        if self._working:
            await asyncio.gather(*self._working, return_exceptions=True)
        await self.api.close()

    # ---- receiving (these run on the SDK's thread, or a webhook worker thread) -----------------

    def _wait(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run ``work`` on Cadence's loop and wait for it, within the acknowledgement budget."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=HANDLER_BUDGET)

    def _on_message(self, data: Any) -> None:
        event, header = data.event, data.header
        message, sender = event.message, event.sender
        if message is None or sender is None or message.chat_type != "p2p" or sender.sender_type != "user":
            return  # group chats and other bots' messages are not conversations with Cadence
        open_id = sender.sender_id.open_id if sender.sender_id else None
        if not open_id:
            return
        text = text_of(message.message_type or "", message.content or "")
        if text is None:
            text = ""  # an image or a file: the conversation answers that it needs words
        event_id = header.event_id if header and header.event_id else f"msg:{message.message_id}"
        self._wait(self._emit(IncomingEvent("feishu", event_id, open_id, "text", text=text)))

    def _on_menu(self, data: Any) -> None:
        event, header = data.event, data.header
        operator = (
            event.operator.operator_id.open_id if event.operator and event.operator.operator_id else None
        )
        if not operator:
            return
        key = (event.event_key or "").strip()
        if key.startswith(_MENU_START):
            command = f"cycle start {key[len(_MENU_START) :]}"
        else:
            command = MENU_COMMANDS.get(key, "help")
        event_id = header.event_id if header and header.event_id else f"menu:{operator}:{event.timestamp}"
        self._wait(self._emit(IncomingEvent("feishu", event_id, operator, "text", text=command)))

    def _on_card_action(self, data: Any) -> Any:
        from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

        answer = self._wait(self._card_action(data.header, data.event))
        return P2CardActionTriggerResponse(answer)

    async def _card_action(self, header: Any, event: Any) -> dict[str, Any]:
        """What a click or a submitted form does, and the answer Feishu shows at once."""
        operator = event.operator.open_id if event.operator else None
        action = event.action
        value = action.value if action is not None and isinstance(action.value, dict) else {}
        if not operator:
            return {"toast": _toast("error", "feishu.not_understood")}
        message_id = event.context.open_message_id if event.context else ""
        event_id = header.event_id if header and header.event_id else f"card:{message_id}:{operator}:{value}"
        email = await self._email_of(operator)
        if FORM_KEY in value:
            return await self._open_form(operator, email, str(value[FORM_KEY]))
        if SUBMIT_KEY in value:
            return await self._submit_form(
                event_id, operator, email, str(value[SUBMIT_KEY]), form_answers(action.form_value)
            )
        if ACTION_KEY in value:
            await self._emit(
                IncomingEvent(
                    "feishu", event_id, operator, "action", action=str(value[ACTION_KEY]), email=email
                )
            )
            return {"toast": _toast("success", "feishu.recorded")}
        return {"toast": _toast("error", "feishu.not_understood")}

    async def _open_form(self, operator: str, email: str | None, assignment: str) -> dict[str, Any]:
        form = None
        if self.forms is not None and assignment.isdigit():
            form = await self.forms.form(
                platform="feishu", user_id=operator, email=email, assignment_id=int(assignment)
            )
        if form is None:
            return {"toast": _toast("warning", "feishu.form_closed")}
        return {"card": {"type": "raw", "data": form_card(form)}}

    async def _submit_form(
        self, event_id: str, operator: str, email: str | None, submitted: str, answers: dict[str, str]
    ) -> dict[str, Any]:
        assignment, _, _version = submitted.partition("|")
        problems = None
        if self.forms is not None and assignment.isdigit():
            problems = await self.forms.check(
                platform="feishu",
                user_id=operator,
                email=email,
                assignment_id=int(assignment),
                answers=answers,
            )
        if problems is None:
            return {"toast": _toast("warning", "feishu.form_closed")}
        if problems:
            # the form stays, each problem under its question; nothing is stored
            form = await self.forms.form(
                platform="feishu", user_id=operator, email=email, assignment_id=int(assignment)
            )
            answer: dict[str, Any] = {"toast": _toast("error", "feishu.form_problems")}
            if form is not None:
                answer["card"] = {"type": "raw", "data": form_card(form, problems)}
            return answer
        form_json = json.dumps({"assignment_id": int(assignment), "answers": answers}, ensure_ascii=False)
        await self._emit(IncomingEvent("feishu", event_id, operator, "form", text=form_json, email=email))
        return {"toast": _toast("success", "feishu.form_saved")}

    async def _emit(self, event: IncomingEvent) -> None:
        """Hand ``event`` to Cadence; return once it is journaled (the acknowledgement follows)."""
        assert self._on_event is not None
        if event.email is None and event.kind == "text":
            event = IncomingEvent(
                event.platform,
                event.event_id,
                event.user_id,
                event.kind,
                text=event.text,
                email=await self._email_of(event.user_id),
            )
        await hand_over(self._on_event, event, working=self._working, metrics=self.metrics)

    async def _email_of(self, open_id: str) -> str | None:
        """The person's email as Feishu has it (cached): how a Feishu user is matched to the org.

        Needs ``contact:user.email:readonly``; any failure means "unknown for now" (not cached).
        """
        if open_id not in self._emails:
            try:
                data = await asyncio.wait_for(
                    self.api.call(
                        "GET", f"/open-apis/contact/v3/users/{open_id}", params={"user_id_type": "open_id"}
                    ),
                    1.0,
                )
            except (FeishuApiError, TimeoutError) as exc:
                log.warning("Feishu user %s unreadable: %s", open_id, exc)
                return None
            user = data.get("user") or {}
            email = user.get("email") or user.get("enterprise_email")
            self._emails[open_id] = str(email).lower() if email else None
        return self._emails[open_id]

    # ---- sending ------------------------------------------------------------------------------

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Send a card to the person (by open_id); returns Feishu's message id."""
        body: dict[str, Any] = {
            "receive_id": recipient,
            "msg_type": "interactive",
            "content": content(card(message)),
        }
        if key:
            body["uuid"] = message_uuid(key)
        data = await self._call(
            "POST", "/open-apis/im/v1/messages", params={"receive_id_type": "open_id"}, json_body=body
        )
        message_id = data.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise SendError("Feishu accepted the message but gave no message_id", in_doubt=True)
        return message_id

    async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None:
        """Replace a card sent earlier (both old and new have ``update_multi``, as Feishu requires)."""
        await self._call(
            "PATCH", f"/open-apis/im/v1/messages/{message_id}", json_body={"content": content(card(message))}
        )

    async def lookup(self, email: str) -> str | None:
        """The open_id Feishu has for ``email`` (contact batch_get_id), or None."""
        data = await self._call(
            "POST",
            "/open-apis/contact/v3/users/batch_get_id",
            params={"user_id_type": "open_id"},
            json_body={"emails": [email], "include_resigned": False},
        )
        for user in data.get("user_list") or []:
            if isinstance(user, dict) and user.get("user_id"):
                return str(user["user_id"])
        return None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            return await self.api.call(method, path, params=params, json_body=json_body)
        except FeishuApiError as exc:
            raise self._send_error(exc) from exc

    def _send_error(self, exc: FeishuApiError) -> SendError:
        """A Feishu failure as delivery understands it: when to retry, never, or "maybe it went out"."""
        if exc.rate_limited:
            if self.metrics is not None:
                self.metrics.rate_limited(self.name)
            return SendError(f"Feishu rate limit: {exc}", retry_after=exc.retry_after or 1.0)
        if exc.code in _PERMANENT:
            return SendError(str(exc), permanent=True)
        server_side = exc.status >= 500 or exc.code in _SERVER_CODES or exc.status == 0
        return SendError(str(exc), in_doubt=exc.reached and server_side)


async def _shut_down(client: Any) -> None:
    """On the SDK's loop: stop its work (receive loop, ping loop, ``start()``), then close the socket.

    Not the SDK's ``_disconnect``: its receive loop, seeing the socket close, runs ``_disconnect``
    too, and the second one releases a lock it does not hold.
    """
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    # start()'s forever-wait goes last: once it ends, the thread closes this loop
    waiting = [task for task in tasks if getattr(task.get_coro(), "__name__", "") == "_select"]
    others = [task for task in tasks if task not in waiting]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    conn, client._conn = client._conn, None
    if conn is not None:
        await conn.close()
    for task in waiting:
        task.cancel()
