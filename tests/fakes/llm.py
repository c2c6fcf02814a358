"""An OpenAI-compatible chat-completions server on 127.0.0.1 for ``bot.llm``.

``POST {url}/chat/completions`` with ``{"model", "messages", ...}`` answers ``{"id", "object":
"chat.completion", "model", "choices": [{"index": 0, "message": {"role": "assistant", "content"},
"finish_reason": "stop"}], "usage"}``, the shape OpenAI's API reference gives. What the content is:
``answer`` when set, else a JSON array rewording each topic of the request's last (user) message as
"Talk about: <topic>". ``fail_with(status)`` answers that status (OpenAI's error shape); ``hang()``
holds requests until the server stops (a client's timeout is what ends them). Every request is kept
in ``calls`` (its Authorization header and JSON body).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.local_server import LocalServer


@dataclass(frozen=True)
class Call:
    """One request as the fake saw it."""

    path: str
    authorization: str | None
    body: dict[str, Any]


class LlmFake(LocalServer):
    """A tiny OpenAI-compatible server; ``url`` is the base URL to give the client."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.answer: str | None = None
        self._status = 200
        self._hang = False
        self._released = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._completions)

    async def stop(self) -> None:
        self._released.set()
        await super().stop()

    @property
    def url(self) -> str:
        return self.base + "/v1"

    def fail_with(self, status: int) -> None:
        """Answer every request with ``status``."""
        self._status = status

    def hang(self) -> None:
        """Hold every request until the server stops."""
        self._hang = True

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls.append(Call(request.path, request.headers.get("Authorization"), body))
        if self._hang:
            await self._released.wait()
        if self._status != 200:
            error = {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
            }
            return web.json_response({"error": error}, status=self._status)
        content = self.answer
        if content is None:
            topics = json.loads(body["messages"][-1]["content"])
            content = json.dumps([f"Talk about: {t['topic']}" for t in topics], ensure_ascii=False)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.calls)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )
