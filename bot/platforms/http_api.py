"""What Feishu's and DingTalk's REST APIs share here: one kept-alive connection pool, one cached token.

Both platforms authenticate an app with a token that lives two hours, fetched with the app's id and
secret. The token is fetched asynchronously (never a blocking request on the event loop), shared by
every call, and fetched again ``refresh_margin`` seconds before it ends, or at once when the platform
calls it invalid. One ``httpx.AsyncClient`` per platform keeps its connections alive: creating one per
call costs tens of milliseconds of CPU (the CA bundle is loaded each time).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import httpx

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class TokenApi(ABC):
    """An app's authenticated HTTP API at ``base_url``; subclasses say how a token is fetched."""

    refresh_margin = 600.0

    def __init__(
        self, base_url: str, *, clock: Callable[[], float] = time.monotonic, connections: int = 64
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._connections = connections
        self._client: httpx.AsyncClient | None = None
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    def http(self) -> httpx.AsyncClient:
        """The shared client (opened on first use, and again after ``close``)."""
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=TIMEOUT,
                limits=httpx.Limits(max_connections=self._connections, keepalive_expiry=15.0),
                # no proxy from the environment: the base URL setting is how a proxy is chosen
                trust_env=False,
            )
        return self._client

    async def close(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def token(self, *, renew: bool = False) -> str:
        """The app's token, fetched once and reused until ``refresh_margin`` before its end."""
        async with self._token_lock:
            if renew or self._token is None or self._clock() >= self._token_until:
                token, lifetime = await self._fetch_token()
                self._token = token
                self._token_until = self._clock() + max(lifetime - self.refresh_margin, 0.0)
                self.token_fetches += 1
            return self._token

    @abstractmethod
    async def _fetch_token(self) -> tuple[str, float]:
        """A new token and how many seconds it lives."""

    @abstractmethod
    def _transport_error(self, message: str, *, reached: bool) -> Exception:
        """The platform's error for a call that failed on the way (``reached``: it may have arrived)."""

    async def _http_request(self, method: str, url: str, **options: Any) -> httpx.Response:
        """One request on the shared pool; a failure on the way becomes ``_transport_error``.

        No connection made (refused, or none free in time) means nothing reached the platform; a
        timeout or a connection broken after sending leaves that unknown.
        """
        try:
            return await self.http().request(method, url, **options)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._transport_error(f"unreachable: {exc!r}", reached=False) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(f"call broke off: {exc!r}", reached=True) from exc
