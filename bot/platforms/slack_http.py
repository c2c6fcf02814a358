"""Slack over HTTP: the Events API, interactivity and slash commands served by aiohttp for a Bolt app.

Every request is checked here before Bolt sees it (Bolt's own verification may stay on as well):

1. a ``Content-Length`` above ``max_body`` is refused with 413 before any of the body is read;
2. ``X-Slack-Request-Timestamp`` must be whole seconds within 300 s of now, else 401 (checked before
   the body is read too);
3. the body is read up to ``max_body`` + 1 bytes (so a chunked body cannot grow past the limit: 413),
   within ``BODY_TIMEOUT`` seconds (a body that trickles in is refused with 408);
4. ``X-Slack-Signature`` must equal ``"v0=" + hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body))``,
   compared with ``hmac.compare_digest``, else 401.

Each refusal is logged at WARNING with the reason, the path and the remote address, never the body or
the secret. Accepted requests go to ``app.async_dispatch`` as an ``AsyncBoltRequest``; Bolt answers
``url_verification`` challenges and ``ssl_check`` itself, and acknowledges before the listeners finish
(``process_before_response`` is off), so Slack gets its answer within its 3 seconds. Re-deliveries
(``X-Slack-Retry-Num`` / ``X-Slack-Retry-Reason``) are passed through untouched in the request headers
and answered like any other request: Cadence's journal makes them no-ops.

slack_bolt's own aiohttp adapter (``slack_bolt.adapter.aiohttp.to_bolt_request``) reads the whole body
with ``request.text()`` and keeps one value per header name, so the request is built here; its
``to_aiohttp_response`` is reused for the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Sequence

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

log = logging.getLogger(__name__)

# Slack's payloads are a few kB (a modal submission with every field filled stays well under 100 kB);
# 1 MB leaves room for anything Slack sends while keeping a hostile body from filling memory.
MAX_BODY_BYTES = 1_000_000
# Slack's window for the request timestamp (slack_sdk.signature: |now - timestamp| > 300 s fails)
MAX_CLOCK_SKEW = 300
# Slack sends the whole body at once; a body still arriving after this many seconds is refused (408)
BODY_TIMEOUT = 10.0
# what start_http's runner waits for in-flight requests on cleanup; Bolt answers within 3 s
SHUTDOWN_TIMEOUT = 5.0

PATHS = ("/slack/events", "/slack/interactions", "/slack/commands")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# what the sender is told; the reason itself goes to the log only
_TELL = {400: "bad request", 401: "unauthorized", 408: "request timeout", 413: "payload too large"}


def signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request: what ``X-Slack-Signature`` must say."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def _refuse(request: web.Request, status: int, reason: str) -> web.Response:
    log.warning(
        "Slack HTTP request refused (%d): %s; path=%s remote=%s",
        status,
        reason,
        request.path,
        request.remote,
    )
    response = web.Response(status=status, text=_TELL[status])
    response.force_close()  # do not keep talking to whoever sent it
    return response


async def _read_body(request: web.Request, max_body: int) -> bytes:
    """At most ``max_body`` + 1 bytes of the body (one more than allowed is enough to refuse it)."""
    body = bytearray()
    while len(body) <= max_body:
        chunk = await request.content.read(max_body + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _headers(request: web.Request) -> dict[str, str | Sequence[str]]:
    """Every header, every value (Bolt wants lower-case names and lists: a list, not a tuple)."""
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return dict(headers)


def slack_routes(
    app: AsyncApp,
    *,
    signing_secret: str,
    max_body: int = MAX_BODY_BYTES,
    now: Callable[[], float] = time.time,
) -> web.Application:
    """An aiohttp application serving ``app`` on /slack/events, /slack/interactions, /slack/commands."""
    if not signing_secret or not signing_secret.strip():
        raise ValueError("Slack HTTP mode needs a signing secret")
    if max_body < 1:
        raise ValueError("max_body must be positive")

    async def handle(request: web.Request) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body:
            return _refuse(request, 413, f"Content-Length {length} is over the {max_body}-byte limit")

        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        if timestamp is None:
            return _refuse(request, 401, "no X-Slack-Request-Timestamp")
        if not _TIMESTAMP.fullmatch(timestamp):
            return _refuse(request, 401, "X-Slack-Request-Timestamp is not a number of seconds")
        skew = now() - int(timestamp)
        if abs(skew) > MAX_CLOCK_SKEW:
            return _refuse(request, 401, f"X-Slack-Request-Timestamp is {skew:+.0f} s from now")
        given = request.headers.get("X-Slack-Signature")
        if given is None:
            return _refuse(request, 401, "no X-Slack-Signature")

        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                raw = await _read_body(request, max_body)
        except TimeoutError:
            return _refuse(request, 408, f"body not received within {BODY_TIMEOUT:g} s")
        if len(raw) > max_body:
            return _refuse(request, 413, f"body is over the {max_body}-byte limit")

        expected = signature(signing_secret, timestamp, raw)
        if not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace")):
            return _refuse(request, 401, "X-Slack-Signature does not match")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse(request, 400, "signed body is not UTF-8")

        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=_headers(request))
        bolt_response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    web_app = web.Application(client_max_size=max_body)
    for path in PATHS:
        web_app.router.add_post(path, handle)
    return web_app


async def start_http(
    app: AsyncApp,
    *,
    host: str,
    port: int,
    signing_secret: str,
    max_body: int = MAX_BODY_BYTES,
    extra_routes: Callable[[web.Application], None] | None = None,
) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (0 picks a free port: see ``bound_port``); ``cleanup()`` stops it.

    ``extra_routes`` adds Cadence's own routes (/healthz, /metrics) to the same port.
    """
    routes = slack_routes(app, signing_secret=signing_secret, max_body=max_body)
    if extra_routes is not None:
        extra_routes(routes)
    runner = web.AppRunner(routes, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("Slack HTTP mode listening on %s", ", ".join(f"{h}:{p}" for h, p, *_ in runner.addresses))
    return runner
