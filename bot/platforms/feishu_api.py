"""Feishu's Open Platform REST API for the running service: one kept-alive connection pool, one token.

lark-oapi's async transport opens a new ``httpx.AsyncClient`` for every call (measured: 43 ms of CPU
each, most of it loading the CA bundle) and fetches the tenant token with a blocking request on the
caller's event loop. Fine for a command-line sync; not for a service that sends 50 messages a second
and must acknowledge events within 3 seconds. So the service's calls go through here
(``bot.platforms.http_api.TokenApi``): the tenant token is refreshed ten minutes before it expires
(Feishu's tokens live two hours; asking with less than 30 minutes left returns a new one while the
old stays valid, so refreshing early never breaks a call).

Every answer is Feishu's JSON ``{"code", "msg", "data"}``; a non-zero code becomes ``FeishuApiError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.platforms.http_api import TokenApi

_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
# codes that mean "this token is not (or no longer) valid": fetch a new one and try once more
TOKEN_INVALID = frozenset({99991661, 99991663, 99991664, 99991665, 99991668})
# "too many requests": the app's limit (99991400, with HTTP 429), a user's or chat's (230020), and
# the codes lark-oapi's channel layer also counts as rate limits
RATE_LIMITED = frozenset({99991400, 99991402, 230020, 11020, 11021, 11232})


class FeishuApiError(RuntimeError):
    """Feishu refused a call (``code`` ≠ 0), or answered with something that is not its JSON.

    ``status`` is the HTTP status; ``retry_after`` comes from ``x-ogw-ratelimit-reset`` when given.
    ``reached``: the request may have reached Feishu (a timeout or broken connection after sending).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int = -1,
        status: int = 0,
        retry_after: float | None = None,
        reached: bool = True,
    ) -> None:
        super().__init__(message)
        self.code, self.status, self.retry_after, self.reached = code, status, retry_after, reached

    @property
    def rate_limited(self) -> bool:
        """Feishu said "too many requests" (the app's, a user's or a chat's limit)."""
        return self.status == 429 or self.code in RATE_LIMITED


class FeishuApi(TokenApi):
    """Authenticated JSON calls to one app's Open Platform (``base_url``: e.g. https://open.feishu.cn)."""

    def __init__(
        self,
        base_url: str,
        *,
        app_id: str,
        app_secret: str,
        clock: Callable[[], float] = time.monotonic,
        connections: int = 64,
    ) -> None:
        super().__init__(base_url, clock=clock, connections=connections)
        self.app_id, self._app_secret = app_id, app_secret

    def _transport_error(self, message: str, *, reached: bool) -> Exception:
        return FeishuApiError(f"Feishu {message}", reached=reached)

    async def _fetch_token(self) -> tuple[str, float]:
        body = {"app_id": self.app_id, "app_secret": self._app_secret}
        answer = await self._request("POST", _TOKEN_PATH, json_body=body, token=None)
        token = answer.get("tenant_access_token")
        if not isinstance(token, str) or not token:
            raise FeishuApiError("Feishu gave no tenant_access_token", code=-1)
        return token, float(answer.get("expire") or 0)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ``data`` of a successful call; a token Feishu calls invalid is renewed once."""
        token = await self.token()
        try:
            answer = await self._request(method, path, params=params, json_body=json_body, token=token)
        except FeishuApiError as exc:
            if exc.code not in TOKEN_INVALID:
                raise
            token = await self.token(renew=True)
            answer = await self._request(method, path, params=params, json_body=json_body, token=token)
        data = answer.get("data")
        return data if isinstance(data, dict) else {}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self._http_request(method, path, params=params, json=json_body, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise FeishuApiError(
                f"Feishu answered HTTP {response.status_code} without its JSON", status=response.status_code
            )
        code = answer.get("code", 0)
        if response.status_code >= 400 or code:
            raise FeishuApiError(
                f"Feishu error {code}: {answer.get('msg', '')} "
                f"(HTTP {response.status_code}, {method} {path})",
                code=int(code) if isinstance(code, int) else -1,
                status=response.status_code,
                retry_after=_reset(response.headers),
            )
        return answer


def _reset(headers: httpx.Headers) -> float | None:
    """Seconds until the limit resets (``x-ogw-ratelimit-reset``), when Feishu says."""
    raw = headers.get("x-ogw-ratelimit-reset")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None
