"""DingTalk's OpenAPI for the running service: the new API (api.dingtalk.com) and the older oapi.

One app token serves both: the new API takes it in the ``x-acs-dingtalk-access-token`` header, the
older one as the ``access_token`` query parameter. The new API answers a refusal with an HTTP error
status and ``{"code": "...", "message": "..."}``; the older one with HTTP 200 and ``{"errcode": n}``.
Both become ``DingtalkApiError`` with the code as a string.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.platforms.http_api import TokenApi

_TOKEN_PATH = "/v1.0/oauth2/accessToken"
# global per-API limit (90002), per-app or per-org QPS (90018, 90019) and the throttling codes the
# new API names in words
RATE_LIMITED = frozenset({"90002", "90018", "90019"})
_THROTTLE_WORDS = ("throttl", "qpslimit", "flowcontrol")
# the monthly quota of metered calls is used up: nothing more until the quota resets
QUOTA_EXHAUSTED = frozenset({"90020"})
_TOKEN_INVALID = frozenset({"40014", "42001", "InvalidAuthentication", "invalidAuthentication"})


class DingtalkApiError(RuntimeError):
    """DingTalk refused a call, or answered with something that is not its JSON.

    ``reached``: the request may have reached DingTalk (a timeout or broken connection after sending).
    """

    def __init__(self, message: str, *, code: str = "", status: int = 0, reached: bool = True) -> None:
        super().__init__(message)
        self.code, self.status, self.reached = code, status, reached

    @property
    def rate_limited(self) -> bool:
        """DingTalk said "too many calls" (its codes, or words, or HTTP 429)."""
        lowered = self.code.lower()
        return self.status == 429 or self.code in RATE_LIMITED or any(w in lowered for w in _THROTTLE_WORDS)

    @property
    def quota_exhausted(self) -> bool:
        """The app's monthly quota of metered calls is used up."""
        return self.code in QUOTA_EXHAUSTED

    @property
    def token_invalid(self) -> bool:
        """The token was refused: fetch a new one and try once more."""
        return self.status == 401 or self.code in _TOKEN_INVALID


class DingtalkApi(TokenApi):
    """Authenticated JSON calls to one DingTalk app: ``call`` (new API) and ``oapi`` (older API)."""

    # dingtalk-stream caches its token for expireIn - 300 s; the same here
    refresh_margin = 300.0

    def __init__(
        self,
        api_url: str,
        *,
        oapi_url: str,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] = time.monotonic,
        connections: int = 64,
    ) -> None:
        super().__init__(api_url, clock=clock, connections=connections)
        self.oapi_url = oapi_url.rstrip("/")
        self.client_id, self._client_secret = client_id, client_secret

    def _transport_error(self, message: str, *, reached: bool) -> Exception:
        return DingtalkApiError(f"DingTalk {message}", reached=reached)

    async def _fetch_token(self) -> tuple[str, float]:
        body = {"appKey": self.client_id, "appSecret": self._client_secret}
        answer = await self._send("POST", self.base_url + _TOKEN_PATH, json_body=body, headers={})
        token = answer.get("accessToken")
        if not isinstance(token, str) or not token:
            raise DingtalkApiError("DingTalk gave no accessToken")
        return token, float(answer.get("expireIn") or 0)

    async def call(
        self, method: str, path: str, *, json_body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The answer of a new-API call; a token DingTalk refuses is renewed once."""
        for renew in (False, True):
            headers = {"x-acs-dingtalk-access-token": await self.token(renew=renew)}
            try:
                return await self._send(method, self.base_url + path, json_body=json_body, headers=headers)
            except DingtalkApiError as exc:
                if renew or not exc.token_invalid:
                    raise
        raise AssertionError("unreachable")

    async def oapi(self, path: str, *, json_body: dict[str, Any]) -> dict[str, Any]:
        """The ``result`` of an older-API call (POST with ``access_token``); renews a refused token once."""
        for renew in (False, True):
            params = {"access_token": await self.token(renew=renew)}
            try:
                answer = await self._send("POST", self.oapi_url + path, json_body=json_body, params=params)
            except DingtalkApiError as exc:
                if renew or not exc.token_invalid:
                    raise
                continue
            result = answer.get("result")
            return result if isinstance(result, dict) else {"result": result}
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json_body: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await self._http_request(method, url, json=json_body, headers=headers, params=params)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        where = f"(HTTP {response.status_code}, {method} {httpx.URL(url).path})"
        if not isinstance(answer, dict):
            raise DingtalkApiError(f"DingTalk answered without its JSON {where}", status=response.status_code)
        errcode = answer.get("errcode")
        if response.status_code >= 400 or errcode not in (None, 0):
            code = str(answer.get("code") or errcode or response.status_code)
            said = answer.get("message") or answer.get("errmsg") or ""
            raise DingtalkApiError(
                f"DingTalk error {code}: {said} {where}", code=code, status=response.status_code
            )
        return answer
