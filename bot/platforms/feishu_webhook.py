"""Feishu's webhook mode: events and card callbacks POSTed to ``/feishu/events``, checked by lark-oapi.

lark-oapi's ``EventDispatcherHandler.do`` does the checks (reference §2.9): it decrypts an
``{"encrypt": …}`` body with the encrypt key (AES-256-CBC, key = SHA-256 of the encrypt key), compares
the verification token in constant time, checks ``X-Lark-Signature`` =
sha256(timestamp + nonce + encrypt key + body) when an encrypt key is set, and answers the
``url_verification`` challenge. It answers every refusal with HTTP 500 and the reason; here a refusal
becomes what it is (401 for a wrong token or signature, 400 for a body that is not Feishu's), so
Feishu's console shows the right error and a forged request is not taken for a server fault worth
retrying. The handlers it calls wait for Cadence's loop, so ``do`` runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PATH = "/feishu/events"
# Feishu's events and card callbacks are a few kB; a card form with long answers stays far below this
MAX_BODY_BYTES = 1_000_000
SHUTDOWN_TIMEOUT = 5.0
# the SDK's refusal messages, and what each is
_REFUSALS = (
    ("invalid verification_token", 401, "wrong verification token"),
    ("signature verification failed", 401, "bad signature"),
    ("encrypt_key not found", 400, "encrypted body but no FEISHU_ENCRYPT_KEY set"),
    ("processor not found", 200, ""),  # an event Cadence does not subscribe to: accepted, ignored
)


class _QuietRefusals(logging.Filter):
    """Drop lark-oapi's traceback for a refused request; ``handle`` logs one line for it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("handle event failed")


def _refusal(status: int, body: bytes) -> tuple[int, str]:
    """The HTTP status and reason for the SDK's answer (200 and "" when it accepted the request)."""
    if status == 200:
        return 200, ""
    try:
        message = str(json.loads(body or b"{}").get("msg", ""))
    except ValueError:
        message = ""
    for needle, code, reason in _REFUSALS:
        if needle in message:
            return code, reason
    if any(word in message for word in ("decrypt", "padding", "Incorrect", "base64", "Expecting", "JSON")):
        return 400, "body is neither Feishu's JSON nor decryptable with the encrypt key"
    return 500, message or "handler failed"


def webhook_handler(dispatcher: Any) -> Callable[[web.Request], Any]:
    """The aiohttp handler for ``PATH``."""
    from lark_oapi.core.model import RawRequest

    async def handle(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.json_response({"msg": "payload too large"}, status=413)
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return web.json_response({"msg": "payload too large"}, status=413)
        raw = RawRequest()
        raw.uri = request.path
        raw.body = body
        raw.headers = request.headers  # case-insensitive: Feishu's header names in any case
        try:
            answer = await asyncio.to_thread(dispatcher.do, raw)
        except Exception:
            log.exception("Feishu webhook request failed")
            return web.json_response({"msg": "handler failed"}, status=500)
        status, reason = _refusal(answer.status_code, answer.content or b"")
        if status == 200 and reason == "" and answer.status_code != 200:
            return web.json_response({"msg": "success"})
        if status != 200:
            log.warning("Feishu webhook refused (%s) from %s", reason, request.remote)
            return web.json_response({"msg": reason}, status=status)
        return web.Response(body=answer.content or b"{}", content_type="application/json")

    return handle


async def start_webhook(
    dispatcher: Any, *, host: str, port: int, extra_routes: Callable[[web.Application], None] | None = None
) -> web.AppRunner:
    """Serve ``PATH`` (plus the health routes) on ``host:port``."""
    logging.getLogger("Lark").addFilter(_QuietRefusals())
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(PATH, webhook_handler(dispatcher))
    if extra_routes is not None:
        extra_routes(app)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
