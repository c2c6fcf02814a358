"""An OpenAI-compatible chat-completions client, and the agenda topic rewriter built on it.

Off unless ``LLM_BASE_URL`` is set (any server that speaks ``POST {base}/chat/completions``: OpenAI,
Azure's compatible endpoint, a local vLLM or Ollama, a company proxy). The rewriter only rewords
the rule topics; any failure (network, timeout, status, an answer it cannot use) is logged and the
rule topics are kept, so agendas never depend on the model.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import httpx

from conversations.topic_rewriter import TopicText, accept

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 10.0
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_LANGUAGE = {"zh-CN": "Simplified Chinese", "en": "English"}


class LlmError(RuntimeError):
    """The model endpoint did not give a usable answer."""


class LlmClient:
    """``POST {base_url}/chat/completions`` with a bearer key, one client and a timeout per call."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=transport,
            # no proxy from the environment: the base URL setting is how a proxy is chosen
            trust_env=False,
        )

    async def complete(self, messages: list[dict[str, str]], *, temperature: float = 0.2) -> str:
        """The first choice's message content."""
        body = {"model": self.model, "messages": messages, "temperature": temperature}
        try:
            response = await self._http.post("chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise LlmError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise LlmError(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmError(f"unexpected answer: {response.text[:200]}") from exc
        if not isinstance(content, str):
            raise LlmError("the answer has no text content")
        return content

    async def close(self) -> None:
        await self._http.aclose()


def _prompt(topics: Sequence[TopicText], locale: str) -> list[dict[str, str]]:
    language = _LANGUAGE.get(locale, "English")
    system = (
        "You help a manager prepare a 1:1 meeting with one of their reports. You get suggested "
        "discussion topics, each with the reason it was chosen. Reword each topic as a short, warm, "
        f"specific discussion prompt in {language} (at most 80 characters), keeping its meaning and "
        "every fact from its reason; invent nothing. Answer with only a JSON array of exactly "
        f"{len(topics)} strings, in the same order."
    )
    user = json.dumps([{"topic": t.text, "reason": t.reason} for t in topics], ensure_ascii=False)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _strings(content: str) -> list[str]:
    parsed: Any = json.loads(_FENCE.sub("", content.strip()))
    if isinstance(parsed, dict):  # {"topics": [...]} is a common way of answering "a JSON array"
        parsed = next((v for v in parsed.values() if isinstance(v, list)), None)
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        raise LlmError("the answer is not a JSON array of strings")
    return parsed


class LlmTopicRewriter:
    """``conversations.topic_rewriter.TopicRewriter`` over an OpenAI-compatible endpoint."""

    def __init__(self, client: LlmClient) -> None:
        self.client = client

    async def rewrite(self, topics: Sequence[TopicText], locale: str) -> list[TopicText]:
        """The topics reworded, or as they were if the model fails (logged)."""
        if not topics:
            return []
        try:
            content = await self.client.complete(_prompt(topics, locale))
            rewritten = accept(topics, _strings(content))
        except (LlmError, ValueError) as exc:
            log.warning(
                "the language model could not reword the agenda topics (%s); keeping the rule topics", exc
            )
            return list(topics)
        if rewritten is None:
            log.warning("the language model's topics were not usable; keeping the rule topics")
            return list(topics)
        return rewritten

    async def close(self) -> None:
        await self.client.close()


def build_topic_rewriter(
    *, base_url: str, model: str, api_key: str = "", timeout: float = DEFAULT_TIMEOUT
) -> LlmTopicRewriter | None:
    """The rewriter the settings ask for; None when ``base_url`` is empty (the default: off)."""
    if not base_url.strip():
        return None
    client = LlmClient(base_url=base_url.strip(), model=model, api_key=api_key, timeout=timeout)
    return LlmTopicRewriter(client)
