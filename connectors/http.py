"""One HTTP path for every task source: a pooled httpx client, pacing, and waiting out rate limits.

Each source says how it signals "slow down" (``RateLimitRule``): Jira with 429/503 and
``Retry-After`` (seconds) or ``X-RateLimit-Reset`` (ISO time); Feishu with 429 plus
``x-ogw-ratelimit-reset`` or code 99991400 in the body; DingTalk with 90002/90018/90019 or
``Forbidden.AccessDenied.QpsLimitForApi``. The client waits and retries up to ``max_wait`` seconds in
all per call, then raises ``SourceRateLimited`` so one source's storm ends its own run only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# (response, parsed JSON body or None) → seconds to wait before retrying, or None when not limited;
# 0 means "limited, but the source named no wait": the client backs off exponentially from 1 s
RateLimitRule = Callable[[httpx.Response, Any], float | None]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
TRANSIENT_STATUS = frozenset({502, 503, 504})


class SourceError(Exception):
    """A source refused or failed a call; ``status`` is the HTTP status (0 when none came back)."""

    def __init__(self, source: str, message: str, *, status: int = 0, code: str | None = None) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.status = status
        self.code = code


class SourceAuthError(SourceError):
    """The credentials were refused (401/403, an invalid token): no retry helps until someone fixes them."""


class SourceRateLimited(SourceError):
    """The source kept saying "slow down" past the wait budget; ``retry_after``: its last word."""

    def __init__(self, source: str, message: str, *, retry_after: float, status: int = 429) -> None:
        super().__init__(source, message, status=status)
        self.retry_after = retry_after


def retry_after_header(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (or as an HTTP date), or ``X-RateLimit-Reset`` (ISO-8601), if given."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            from email.utils import parsedate_to_datetime

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            pass
    reset = response.headers.get("x-ratelimit-reset")
    if reset:
        try:
            moment = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return None


class Pacer:
    """At most ``per_s`` calls a second (evenly spaced), shared by every call of one source."""

    def __init__(self, per_s: float | None, sleep: Sleep) -> None:
        self._interval = 1.0 / per_s if per_s else 0.0
        self._next = 0.0
        self._sleep = sleep

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)


class SourceHttp:
    """The client a connector calls through; counts requests, paces, retries what may be retried.

    URLs are relative to ``base_url``, or absolute (a source on two hosts: DingTalk's new API and oapi).
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        rate_limited: RateLimitRule,
        per_s: float | None = None,
        max_wait: float = 300.0,
        attempts: int = 8,
        sleep: Sleep = asyncio.sleep,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.source = source
        self.requests = 0
        self.waited = 0.0  # seconds spent waiting out rate limits (reported by the sync run)
        self._rule = rate_limited
        self._max_wait = max_wait
        self._attempts = attempts
        self._sleep = sleep
        self._pacer = Pacer(per_s, sleep)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        )

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, Any]:
        """Send, waiting out rate limits and transient failures; returns the response and its JSON.

        A 4xx other than a rate limit comes back as is, for the connector to read; the JSON is None
        when the body is not JSON.
        """
        waited = 0.0
        for attempt in range(1, self._attempts + 1):
            await self._pacer.wait()
            self.requests += 1
            try:
                response = await self._client.request(
                    method, url, headers=headers, params=params, json=json, data=data
                )
            except httpx.TransportError as exc:
                delay = _backoff(attempt)
                if attempt == self._attempts or waited + delay > self._max_wait:
                    raise SourceError(self.source, f"{method} {url}: {type(exc).__name__}: {exc}") from exc
                log.warning("%s: %s %s failed (%s), retrying in %.1fs", self.source, method, url, exc, delay)
                waited += delay
                await self._sleep(delay)
                continue
            body = _json_or_none(response)
            delay_or_none = self._rule(response, body)
            if delay_or_none is None and response.status_code in TRANSIENT_STATUS:
                delay_or_none = retry_after_header(response) or _backoff(attempt)
            if delay_or_none is None:
                return response, body
            delay = delay_or_none if delay_or_none > 0 else _backoff(attempt)
            if attempt == self._attempts or waited + delay > self._max_wait:
                raise SourceRateLimited(
                    self.source,
                    f"{method} {url}: still limited after {waited:.0f}s (HTTP {response.status_code})",
                    retry_after=delay,
                    status=response.status_code,
                )
            log.info("%s: %s %s rate limited, waiting %.1fs", self.source, method, url, delay)
            waited += delay
            self.waited += delay
            await self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _backoff(attempt: int) -> float:
    """Exponential from 1 s with jitter, capped at 60 s (for sources that give no wait)."""
    return min(60.0, 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
