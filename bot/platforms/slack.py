"""Slack through slack-bolt's asyncio app, over Socket Mode.

Events, clicks and slash commands are acknowledged first (Bolt acks events itself; clicks and
commands call ``ack()`` before anything else) and then handed to Cadence, which journals them.
Sending posts Block Kit to the person's DM; an answered question is edited in place.
Every posted message carries its outbox key as message metadata, so that a send whose outcome is
unknown can be looked up (``find_sent``) instead of repeated: Slack has no idempotency key.

Every Web API call of a started platform (its own, Bolt's, Socket Mode's apps.connections.open and
response_url posts) goes through one aiohttp session opened in ``start`` and closed in ``stop``: its
connections are kept alive and reused. Without it slack_sdk opens a session, so a TCP connection
(and against Slack a TLS handshake), for every call: twice the CPU per message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientSession,
    ClientTimeout,
    ConnectionTimeoutError,
    TCPConnector,
    web,
)
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.http_runner import bound_port
from bot.platforms.base import EventHandler, IncomingEvent, Platform, SendError, hand_over
from bot.platforms.slack_blocks import (
    FORM_ACTION,
    FORM_CALLBACK,
    blocks,
    fallback_text,
    modal,
    submitted_answers,
)
from bot.platforms.slack_http import start_http
from bot.settings import SlackSettings
from conversations.messages import Message

log = logging.getLogger(__name__)
# Slack errors that no retry will fix (the person left, the app may not DM them, the blocks are bad)
_PERMANENT = frozenset(
    {
        "account_inactive",
        "cannot_dm_bot",
        "channel_not_found",
        "invalid_blocks",
        "is_archived",
        "msg_too_long",
        "not_in_channel",
        "user_disabled",
        "user_not_found",
        "users_not_found",
    }
)
_TIMEOUT = 10
# the shared session's connections: well above the delivery senders' default (4) and usual settings,
# and a bound on what a burst of events and sends can open at once. A call that finds them all busy
# waits for one, within _CONNECT_TIMEOUT: failing then (ConnectionTimeoutError) sent nothing.
_CONNECTIONS = 64
_CONNECT_TIMEOUT = 5
# what aiohttp closes an idle connection after (its default): shorter than the server's idle timeout
# (aiohttp's server, the fake: 75 s; Slack's is longer), so a kept-alive connection is rarely found
# closed by the other side when reused; if it is, a POST is not repeated by aiohttp (only idempotent
# methods are) and the failure is an ordinary in-doubt one.
_KEEPALIVE = 15
# errors that mean no connection was made, so nothing reached Slack
_NOT_SENT = (ClientConnectorError, ConnectionTimeoutError)
# the metadata event every posted message carries: {"event_type": OUTBOX_EVENT, "event_payload": {"key": …}}
OUTBOX_EVENT = "cadence_outbox"
# how far back find_sent looks in the DM: an in-doubt message is at most a lease old, and a DM with
# Cadence gets a few messages a day. (Slack caps limit at 15, and the method at 1 call a minute, for
# commercially distributed non-Marketplace apps; a self-hosted app is internal: Tier 3, 50+ a minute.)
_HISTORY_LIMIT = 50
_T = TypeVar("_T")


class _ConnectionRetry(AsyncConnectionErrorRetryHandler):
    """slack_sdk's one retry after a connection error, but never one that could post a message twice.

    The SDK's default handler repeats any request once after a dropped or reset connection, also
    when the first one had reached Slack: for chat.postMessage that is a second copy of the message.
    chat.postMessage is repeated here only when no connection was made (refused, or none free in time);
    otherwise its ``SendError`` is ``in_doubt`` and delivery can ask ``find_sent``.
    """

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if request.url.endswith("/chat.postMessage") and not isinstance(error, _NOT_SENT):
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


def outbox_metadata(key: str) -> dict[str, Any] | None:
    """The message metadata that marks a message as the outbox row ``key`` (None without a key)."""
    return {"event_type": OUTBOX_EVENT, "event_payload": {"key": key}} if key else None


class SlackPlatform(Platform):
    """One Slack workspace (Socket Mode, the default)."""

    name = "slack"

    def __init__(
        self, settings: SlackSettings, *, http_host: str = "127.0.0.1", http_port: int = 8080
    ) -> None:
        self.settings = settings
        self.http_host, self.http_port = http_host, http_port
        self._http: web.AppRunner | None = None
        # until start() opens the shared session, slack_sdk opens one per call (nothing to close)
        self._session: ClientSession | None = None
        self.client = AsyncWebClient(
            token=settings.bot_token,
            base_url=settings.api_url,
            timeout=_TIMEOUT,
            retry_handlers=[_ConnectionRetry()],
        )
        self._app: AsyncApp | None = None
        self._handler: AsyncSocketModeHandler | None = None
        self._on_event: EventHandler | None = None
        self._dm: dict[str, str] = {}  # user id -> their DM with the app (D…), once Slack has said
        self._emails: dict[str, str | None] = {}
        self._working: set[asyncio.Task[None]] = set()

    # ---- receiving ----------------------------------------------------------------------------

    def build_app(self, on_event: EventHandler) -> AsyncApp:
        """The Bolt app with Cadence's listeners (HTTP mode and Socket Mode share it)."""
        self._on_event = on_event
        app = AsyncApp(
            client=self.client,
            signing_secret=self.settings.signing_secret or None,
            request_verification_enabled=bool(self.settings.signing_secret),
            # the listener returns once the event is journaled; only then does Slack get its ack
            process_before_response=True,
        )
        app.event("message")(self._message)
        app.event("app_home_opened")(self._home_opened)
        app.action(re.compile(".*"))(self._action)
        app.command(self.settings.command)(self._command)
        app.view(FORM_CALLBACK)(self._form_submitted)
        self._app = app
        return app

    async def start(self, on_event: EventHandler) -> None:
        """Connect over Socket Mode, or serve Slack's HTTP requests when only a signing secret is set."""
        self._open_session()
        try:
            app = self.build_app(on_event)
            if self.settings.http_mode:
                self._http = await start_http(
                    app,
                    host=self.http_host,
                    port=self.http_port,
                    signing_secret=self.settings.signing_secret,
                    extra_routes=self.extra_routes,
                )
                return
            # Socket Mode's client calls apps.connections.open with the app's client (this session);
            # its WebSocket has a session of its own, which it closes in close_async
            self._handler = AsyncSocketModeHandler(app, self.settings.app_token)
            await self._handler.connect_async()
        except BaseException:
            await self.stop()
            raise

    def _open_session(self) -> None:
        """One session for every Web API call from now on, on the running loop.

        slack_sdk 3.48 uses a passed session as it is: its retry handlers still run, but the client's
        ``timeout`` only applies to the sessions it opens itself, so the timeout is the session's.
        Bolt builds a client per request from ``self.client``'s attributes, session included.
        """
        if self._session is None or self._session.closed:
            self._session = ClientSession(
                connector=TCPConnector(limit=_CONNECTIONS, keepalive_timeout=_KEEPALIVE),
                timeout=ClientTimeout(total=_TIMEOUT, connect=_CONNECT_TIMEOUT),
            )
        self.client.session = self._session

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where HTTP mode listens (the real port when 0 was asked for); None in Socket Mode."""
        return (self.http_host, bound_port(self._http)) if self._http is not None else None

    async def stop(self) -> None:
        """Disconnect, then close the session (a call made after this opens one of its own)."""
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if self._handler is not None:
            await self._handler.close_async()
            self._handler = None
        if self._session is not None:
            self.client.session = None
            await self._session.close()
            self._session = None

    async def _emit(self, event: IncomingEvent) -> None:
        """Hand ``event`` to Cadence and return once it is journaled (Bolt acknowledges on return).

        The app runs with ``process_before_response``: Slack hears the acknowledgement only after
        the listener returns, so an acknowledged event is always journaled.
        """
        assert self._on_event is not None
        await hand_over(self._on_event, event, working=self._working, metrics=self.metrics)

    async def _email_of(self, user: str) -> str | None:
        """The person's email as Slack has it (cached): how a Slack user is matched to the org.

        Any failure means "unknown for now" (not cached): the event must still reach the journal.
        """
        if user not in self._emails:
            try:
                info = await self.client.users_info(user=user)
                self._emails[user] = ((info.get("user") or {}).get("profile") or {}).get("email")
            except Exception as exc:  # a Slack error, an HTML error page, a timeout: all the same here
                log.warning("users.info for %s failed: %s", user, exc)
                return None
        return self._emails[user]

    async def _message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        # only people's own messages in the app's DM; edits, joins and bot messages have a subtype
        if (
            event.get("channel_type") != "im"
            or event.get("subtype")
            or event.get("bot_id")
            or "user" not in event
        ):
            return
        user = event["user"]
        await self._emit(
            IncomingEvent(
                "slack",
                str(body.get("event_id") or f"msg:{event.get('channel')}:{event.get('ts')}"),
                user,
                "text",
                text=event.get("text") or "",
                email=await self._email_of(user),
            )
        )

    async def _home_opened(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab") != "home" or "user" not in event:
            return
        user = event["user"]
        event_id = str(body.get("event_id") or f"home:{user}:{event.get('event_ts', '')}")
        await self._emit(IncomingEvent("slack", event_id, user, "home", email=await self._email_of(user)))

    async def _action(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = body["user"]["id"]
        if action.get("action_id") == FORM_ACTION:
            await self._open_form(user, body.get("trigger_id", ""), action.get("value") or "")
            return
        message_ts = (body.get("container") or {}).get("message_ts", "")
        # a re-delivered click carries the same action_ts and message: the journal makes it a no-op
        event_id = f"act:{action.get('action_ts', '')}:{message_ts}:{action.get('action_id', '')}"
        await self._emit(
            IncomingEvent(
                "slack",
                event_id,
                user,
                "action",
                action=action.get("value") or "",
                email=await self._email_of(user),
            )
        )

    async def _open_form(self, user: str, trigger_id: str, assignment: str) -> None:
        """Open the modal now: Slack's trigger_id is good for 3 seconds (the chat is the fallback)."""
        if self.forms is None or not assignment.isdigit():
            return
        email = await self._email_of(user)
        form = await self.forms.form(
            platform="slack", user_id=user, email=email, assignment_id=int(assignment)
        )
        if form is None:
            return  # not theirs, or already done: the chat says so when they answer there
        try:
            await self.client.views_open(trigger_id=trigger_id, view=modal(form))
        except SlackApiError as exc:
            log.warning("views.open failed: %s", slack_error(exc))

    async def _form_submitted(self, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        assignment, _, _version = str(view.get("private_metadata") or "").partition("|")
        answers = submitted_answers(view)
        email = await self._email_of(user)
        problems = None
        if self.forms is not None and assignment.isdigit():
            problems = await self.forms.check(
                platform="slack", user_id=user, email=email, assignment_id=int(assignment), answers=answers
            )
        if problems:
            # shown under each input; the modal stays open and nothing is stored
            await ack(response_action="errors", errors=problems)
            return
        await ack()
        if problems is None:
            return  # the assignment is not theirs to answer any more
        await self._emit(
            IncomingEvent(
                "slack",
                f"form:{view.get('id', '')}:{view.get('hash', '')}",
                user,
                "form",
                text=json.dumps({"assignment_id": int(assignment), "answers": answers}, ensure_ascii=False),
                email=email,
            )
        )

    async def _command(self, ack: Any, command: dict[str, Any]) -> None:
        await ack()
        user = command["user_id"]
        await self._emit(
            IncomingEvent(
                "slack",
                f"cmd:{command.get('trigger_id') or command.get('command_ts', '')}",
                user,
                "text",
                text=(command.get("text") or "").strip() or "help",
                email=await self._email_of(user),
                reply_to=command.get("response_url") or "",
            )
        )

    # ---- sending ------------------------------------------------------------------------------

    async def _channel(self, user: str) -> str:
        """The person's DM with the app (conversations.open, once per person and process)."""
        if user not in self._dm:
            opened = await self.client.conversations_open(users=user)
            self._dm[user] = opened["channel"]["id"]
        return self._dm[user]

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Post to the person's DM; returns ``channel|ts`` to update it later.

        The message carries ``key`` as metadata (``outbox_metadata``), for ``find_sent``. A reply to
        a slash command goes to its response_url, seen only by that person; if that URL has expired
        (30 minutes, 5 uses) the reply goes to the DM instead.
        """
        reply_to = message.meta.get("reply_to") if message.ephemeral else None
        if reply_to and await self._respond(reply_to, message):
            return "ephemeral"
        if message.meta.get("surface") == "home":
            return await self._publish_home(recipient, message)
        # A person's id as the channel posts into the app's DM with them, and the answer names that DM
        # (D…), which chat.update and conversations.history need: no conversations.open (Tier 3,
        # ~50 a minute) before a first message, which would make a first fan-out to thousands take hours.
        posted = await self._call(
            self.client.chat_postMessage(
                channel=self._dm.get(recipient, recipient),
                text=fallback_text(message),
                blocks=blocks(message),
                metadata=outbox_metadata(key),
            ),
            in_doubt=True,
        )
        channel = posted.get("channel")
        if not isinstance(channel, str) or not channel:
            channel = recipient  # Slack did not say (never seen): update opens the DM when it must
        elif channel != recipient:
            self._dm[recipient] = channel
        return f"{channel}|{posted['ts']}"

    async def find_sent(self, recipient: str, key: str) -> str | None:
        """``channel|ts`` of the message posted for ``key`` in the person's DM, if it is there.

        Reads the DM's newest messages (conversations.history, scope ``im:history``) with their
        metadata and looks for ``outbox_metadata(key)``. A message sent another way (the home tab,
        a response_url) is not found: those are safe to send again.
        """
        if not key:
            return None
        channel = await self._call(self._channel(recipient))
        history = await self._call(
            self.client.conversations_history(
                channel=channel, limit=_HISTORY_LIMIT, include_all_metadata=True
            )
        )
        for found in history.get("messages") or []:
            metadata = found.get("metadata") or {}
            if (
                metadata.get("event_type") == OUTBOX_EVENT
                and (metadata.get("event_payload") or {}).get("key") == key
            ):
                return f"{channel}|{found['ts']}"
        return None

    async def _publish_home(self, user: str, message: Message) -> str:
        await self._call(
            self.client.views_publish(user_id=user, view={"type": "home", "blocks": blocks(message)})
        )
        return "home"

    async def _respond(self, url: str, message: Message) -> bool:
        try:
            response = await AsyncWebhookClient(url, timeout=_TIMEOUT, session=self._session).send(
                text=fallback_text(message), blocks=blocks(message), response_type="ephemeral"
            )
        except (ClientError, TimeoutError) as exc:
            log.info("response_url unusable (%s); replying in the DM", exc)
            return False
        return response.status_code == 200

    async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None:
        """Edit a message posted earlier (a question, now showing the saved answer).

        The metadata is left out: Slack keeps a message's metadata when an update does not name it.
        """
        channel, _, ts = message_id.partition("|")
        if channel[:1] in ("U", "W"):  # a person's id: chat.update wants their DM's (D…)
            channel = await self._call(self._channel(recipient))
        await self._call(
            self.client.chat_update(
                channel=channel, ts=ts, text=fallback_text(message), blocks=blocks(message)
            )
        )

    async def _call(self, call: Awaitable[_T], *, in_doubt: bool = False) -> _T:
        """``call``'s result, or its failure as a ``SendError``.

        ``in_doubt``: the call posts something, so a failure after the request may have reached Slack
        (a dropped connection, a timeout, a 5xx) leaves its outcome unknown.
        """
        try:
            return await call
        except SlackApiError as exc:
            raise self._send_error(exc, in_doubt=in_doubt) from exc
        except _NOT_SENT as exc:  # no connection was made: nothing reached Slack
            raise SendError(f"Slack unreachable: {exc}") from exc
        except (ClientError, TimeoutError) as exc:
            raise SendError(f"Slack unreachable: {exc!r}", in_doubt=in_doubt) from exc

    def _send_error(self, exc: SlackApiError, *, in_doubt: bool = False) -> SendError:
        if http_status(exc) == 429 and self.metrics is not None:
            self.metrics.rate_limited(self.name)
        return send_error(exc, in_doubt=in_doubt)

    async def lookup(self, email: str) -> str | None:
        """The Slack user id for an email (users.lookupByEmail), or None if Slack has no such user."""
        try:
            found = await self.client.users_lookupByEmail(email=email)
        except SlackApiError as exc:
            if slack_error(exc) == "users_not_found":
                return None
            raise self._send_error(exc) from exc
        return str(found["user"]["id"])


def http_status(exc: SlackApiError) -> int:
    """The HTTP status of a failed call.

    ``exc.response`` is normally the SDK's response, but when a body claiming to be JSON is not
    (a proxy's error page), slack_sdk 3.48 puts aiohttp's raw ``ClientResponse`` there: ``status``
    and no ``data``.
    """
    response = exc.response
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(response, "status", 0)
    return int(status or 0)


def slack_error(exc: SlackApiError) -> str:
    """The ``error`` Slack named, or the HTTP status when the answer was not Slack's JSON at all."""
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {http_status(exc)}"


def _retry_after(exc: SlackApiError) -> float:
    """Slack's Retry-After (whole seconds); 30 when it is missing or not a number."""
    headers = getattr(exc.response, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", 30)))
    except (TypeError, ValueError):
        return 30.0


def send_error(exc: SlackApiError, *, in_doubt: bool = False) -> SendError:
    """A Slack API error as the delivery worker understands it: when to retry, or never.

    A 5xx (Slack's JSON ``internal_error``/``fatal_error``, or a load balancer's HTML page, which the
    SDK turns into an error with empty data) is never permanent, and ``in_doubt`` for a call that
    posts: Slack documents ``fatal_error`` as possibly having partly succeeded.
    """
    error, status = slack_error(exc), http_status(exc)
    if status == 429:
        return SendError(f"Slack rate limit: {error}", retry_after=_retry_after(exc))
    if status >= 500 or not status:
        named = "" if error.startswith("HTTP ") else f" (HTTP {status})"
        return SendError(f"Slack server error: {error}{named}", in_doubt=in_doubt)
    if error == "missing_scope":
        data = getattr(exc.response, "data", None) or {}
        needed = data.get("needed", "?") if isinstance(data, dict) else "?"
        return SendError(
            f"Slack error: missing_scope: the bot token lacks {needed}; add it to the Slack app "
            "(bot/platforms/slack_manifest.yaml lists every scope) and reinstall it"
        )
    return SendError(f"Slack error: {error}", permanent=error in _PERMANENT)
