"""Each person's consent for Cadence to read their Feishu tasks: the OAuth code flow and the stored grants.

Feishu's flow (checked against lark-oapi 1.7.5 ``core/access_token``, ``core/const.py`` and the
open platform's "obtain OAuth code" / "get user_access_token" pages):

1. The person opens ``{accounts}/open-apis/authen/v1/authorize?client_id&redirect_uri&scope&state``
   (``accounts.feishu.cn`` or ``accounts.larksuite.com``). After they agree, the browser goes to
   ``redirect_uri?code=…&state=…``; the code is good for 5 minutes, once.
2. ``POST {accounts}/oauth/v3/token`` (JSON) trades it: ``grant_type=authorization_code``, ``code``,
   ``redirect_uri``, ``client_id``, ``client_secret``. The answer is flat, not Feishu's usual
   envelope: ``access_token``, ``expires_in``, ``refresh_token``, ``refresh_token_expires_in``,
   ``scope``, ``token_type``; a refusal carries ``code``/``error``/``error_description``. The older
   ``/open-apis/authen/v2/oauth/token`` takes the same fields (``token_url`` can point at it).
3. A refresh token is given only when ``offline_access`` was asked for, and it works once: every
   refresh answers a new one (``grant_type=refresh_token``). Refused refreshes: 20026 invalid,
   20037 expired, 20064 revoked, 20073 already used; 20050 is a server error worth a retry.
4. ``GET /open-apis/authen/v1/user_info`` with the new user token tells whose it is (``open_id``).

The HTTP callback route and the chat command that sends the link live in ``bot/``: they call
``GrantStore.link`` (or ``new_state`` + ``FeishuOAuth.authorize_url``) and ``GrantStore.complete``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.feishu_tasks import FEISHU, LARK, SOURCE, USER_SCOPE_MISSING, UserGrant, feishu_rate_limited
from connectors.http import Sleep, SourceError, SourceHttp
from storage import grants as stored
from storage import people
from storage.clock import utcnow
from storage.engine import Database

log = logging.getLogger(__name__)

ACCOUNTS = {FEISHU: "https://accounts.feishu.cn", LARK: "https://accounts.larksuite.com"}
AUTHORIZE_PATH = "/open-apis/authen/v1/authorize"
TOKEN_PATH = "/oauth/v3/token"
USER_INFO_PATH = "/open-apis/authen/v1/user_info"
# reading the tasks one is related to needs task:task:read; offline_access brings the refresh token
USER_SCOPES = ("task:task:read", "offline_access")

REFRESH_SERVER_ERROR = 20050  # the only refusal the official CLI retries
DEFAULT_ACCESS_TTL = 7200.0  # seconds, when the answer names none (Feishu: about 2 hours)
# how long one process may take to refresh a grant before another may try (the call waits 30 s at most)
REFRESH_LEASE = timedelta(minutes=2)


class OAuthError(Exception):
    """The authorisation could not be completed or renewed."""


class OAuthStateError(OAuthError):
    """The link's ``state`` is unknown, used already, or expired: the person asks for a new link."""


class OAuthRefused(OAuthError):
    """Feishu's token endpoint said no. ``final``: the code or refresh token will never work again."""

    def __init__(self, message: str, *, code: int, error: str, status: int, final: bool) -> None:
        super().__init__(message)
        self.code, self.error, self.status, self.final = code, error, status, final


class OAuthSubjectMismatch(OAuthError):
    """Someone other than the link's person authorised (a forwarded link): nothing is stored."""


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint gave: a user token, and the refresh token that renews it (if any)."""

    access_token: str = field(repr=False)
    expires_at: datetime
    refresh_token: str | None = field(repr=False)
    refresh_expires_at: datetime | None
    scope: str


@dataclass(frozen=True)
class FeishuUser:
    """Whose a user token is."""

    open_id: str
    union_id: str = ""
    name: str = ""
    email: str = ""


def accounts_url_for(base_url: str) -> str:
    """The accounts domain that goes with an open-platform domain; others must be configured."""
    known = ACCOUNTS.get(base_url.rstrip("/"))
    if known is None:
        raise ValueError(
            f"no accounts domain is known for {base_url!r}; set the Feishu accounts URL "
            "(e.g. https://accounts.feishu.cn) explicitly"
        )
    return known


class FeishuOAuth:
    """Feishu's user authorisation endpoints for one app."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        base_url: str = FEISHU,
        accounts_url: str | None = None,
        token_url: str | None = None,
        scopes: tuple[str, ...] = USER_SCOPES,
        sleep: Sleep = asyncio.sleep,
        client: httpx.AsyncClient | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.app_id = app_id
        self.accounts_url = (accounts_url or accounts_url_for(base_url)).rstrip("/")
        self.token_url = token_url or self.accounts_url + TOKEN_PATH
        self.scopes = scopes
        self._app_secret = app_secret
        self._now = now
        # a short wait budget: a person may be waiting on the callback page
        self._http = SourceHttp(
            "feishu_oauth",
            base_url,
            rate_limited=feishu_rate_limited,
            max_wait=30,
            sleep=sleep,
            client=client,
        )

    async def close(self) -> None:
        await self._http.close()

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        """The page where the person agrees; Feishu then sends their browser to ``redirect_uri``."""
        query = urlencode(
            {
                "client_id": self.app_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
            },
            quote_via=quote,
        )
        return f"{self.accounts_url}{AUTHORIZE_PATH}?{query}"

    async def exchange(self, code: str, redirect_uri: str) -> TokenSet:
        """Trade the code the callback received for the person's tokens."""
        return await self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}, "exchange"
        )

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Renew a user token; the answer's refresh token replaces the one spent (store it at once)."""
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token}, "refresh")

    async def _token(self, body: dict[str, str], what: str) -> TokenSet:
        payload = {**body, "client_id": self.app_id, "client_secret": self._app_secret}
        response, answer = await self._http.request("POST", self.token_url, json=payload)
        answer = answer if isinstance(answer, dict) else {}
        try:
            code = int(answer.get("code") or 0)
        except (TypeError, ValueError):
            code = -1
        error = str(answer.get("error") or "")
        access = answer.get("access_token")
        if response.status_code != 200 or code != 0 or error or not access:
            description = answer.get("error_description") or answer.get("msg") or "no access_token"
            transient = code == REFRESH_SERVER_ERROR or response.status_code >= 500
            raise OAuthRefused(
                f"Feishu refused the token {what} (HTTP {response.status_code}, code {code}, {error or '-'}: "
                f"{description})",
                code=code,
                error=error,
                status=response.status_code,
                final=not transient,
            )
        now = self._now()
        expires_in = _seconds(answer.get("expires_in")) or DEFAULT_ACCESS_TTL
        refresh = answer.get("refresh_token") or None
        refresh_in = _seconds(answer.get("refresh_token_expires_in"))
        return TokenSet(
            access_token=str(access),
            expires_at=now + timedelta(seconds=expires_in),
            refresh_token=str(refresh) if refresh else None,
            refresh_expires_at=now + timedelta(seconds=refresh_in) if refresh and refresh_in else None,
            scope=str(answer.get("scope") or ""),
        )

    async def user_info(self, access_token: str) -> FeishuUser:
        """Whose ``access_token`` is."""
        response, answer = await self._http.request(
            "GET", USER_INFO_PATH, headers={"Authorization": f"Bearer {access_token}"}
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or answer.get("code") != 0 or not isinstance(data, dict):
            code = answer.get("code") if isinstance(answer, dict) else None
            raise OAuthError(
                f"Feishu would not say whose the new user token is (HTTP {response.status_code}, code {code})"
            )
        if not data.get("open_id"):
            raise OAuthError("Feishu's user_info named no open_id")
        return FeishuUser(
            open_id=str(data["open_id"]),
            union_id=str(data.get("union_id") or ""),
            name=str(data.get("name") or ""),
            email=str(data.get("email") or data.get("enterprise_email") or ""),
        )


def _seconds(value: Any) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0


class GrantStore:
    """People's Feishu grants in the database: links out, codes in, tokens kept fresh.

    ``identity_platform``/``identity_tenant``: where the person's Feishu open_id from the chat org sync
    is stored; when one is known, a grant by a different Feishu user is refused (a forwarded link).
    ``None`` turns the check off (the task app is not the chat app, so open_ids differ).
    """

    def __init__(
        self,
        db: Database,
        oauth: FeishuOAuth,
        *,
        tenant: str,
        source: str = SOURCE,
        state_ttl: timedelta = timedelta(minutes=10),
        refresh_margin: timedelta = timedelta(minutes=5),
        identity_platform: str | None = "feishu",
        identity_tenant: str = "",
        concurrency: int = 8,
    ) -> None:
        self.oauth = oauth
        self.tenant, self.source = tenant, source
        self._sessions = db.sessions
        self._state_ttl, self._margin = state_ttl, refresh_margin
        self._identity = (identity_platform, identity_tenant)
        self._gate = asyncio.Semaphore(max(1, concurrency))

    async def new_state(self, person_id: int, *, session: AsyncSession | None = None) -> str:
        """A fresh ``state`` for one person's link, good for ``state_ttl`` and one use; written in
        ``session`` (committed with the caller's transaction) when given, else in its own."""
        state = secrets.token_urlsafe(32)
        if session is not None:
            async with session.begin_nested():
                await self._add_state(session, state, person_id)
            return state
        async with self._sessions() as own, own.begin():
            await self._add_state(own, state, person_id)
        return state

    async def _add_state(self, session: AsyncSession, state: str, person_id: int) -> None:
        now = utcnow()
        await stored.purge_states(session, before=now)
        await stored.add_state(
            session, state=state, person_id=person_id, source=self.source, expires_at=now + self._state_ttl
        )

    async def link(self, person_id: int, redirect_uri: str, *, session: AsyncSession | None = None) -> str:
        """The authorisation link to send a person (a new state each time)."""
        return self.oauth.authorize_url(await self.new_state(person_id, session=session), redirect_uri)

    async def complete(self, state: str, code: str, redirect_uri: str) -> int:
        """Finish a person's authorisation from the callback's ``state`` and ``code``; returns whose it was.

        The state is spent first, in its own transaction, so a replayed callback is refused even if
        this one fails later. Raises ``OAuthStateError``, ``OAuthRefused``, ``OAuthSubjectMismatch``
        or ``OAuthError``; nothing is stored then.
        """
        async with self._sessions() as session, session.begin():
            taken = await stored.take_state(session, state=state)
        if taken is None or taken.source != self.source:
            raise OAuthStateError("this authorisation link is unknown or was used already; ask for a new one")
        if taken.expires_at <= utcnow():
            raise OAuthStateError("this authorisation link has expired; ask for a new one")
        tokens = await self.oauth.exchange(code, redirect_uri)
        user = await self.oauth.user_info(tokens.access_token)
        platform, identity_tenant = self._identity
        async with self._sessions() as session, session.begin():
            if platform is not None:
                known = await people.external_id(
                    session, person_id=taken.person_id, platform=platform, tenant=identity_tenant
                )
                if known is not None and known != user.open_id:
                    log.warning(
                        "feishu grant for person %s refused: authorised by another Feishu user",
                        taken.person_id,
                    )
                    raise OAuthSubjectMismatch(
                        "this link was opened by a different Feishu user than the one it was sent to"
                    )
            await stored.save_grant(
                session,
                person_id=taken.person_id,
                source=self.source,
                tenant=self.tenant,
                subject=user.open_id,
                access_token=tokens.access_token,
                access_expires_at=tokens.expires_at,
                refresh_token=tokens.refresh_token,
                refresh_expires_at=tokens.refresh_expires_at,
                scope=tokens.scope,
            )
        if tokens.refresh_token is None:
            log.warning(
                "feishu grant for person %s has no refresh token (offline_access not granted): it lasts "
                "until the user token expires",
                taken.person_id,
            )
        log.info("feishu grant stored for person %s", taken.person_id)
        return taken.person_id

    async def fresh_grants(self) -> list[UserGrant]:
        """Every grant usable now, refreshing those that expire within the margin.

        A refresh Feishu refuses for good revokes the grant (the person must authorise again; logged);
        one that fails for now leaves the grant for the next run and uses the old token while it lasts.
        """
        async with self._sessions() as session:
            rows = await stored.active_grants(session, source=self.source, tenant=self.tenant)
        usable = await asyncio.gather(*(self._fresh(row) for row in rows))
        return [grant for grant in usable if grant is not None]

    async def _fresh(self, row: stored.GrantRow) -> UserGrant | None:
        now = utcnow()
        if row.access_expires_at > now + self._margin:
            return UserGrant(row.person_id, row.subject, row.access_token)
        if row.refresh_token is None or (
            row.refresh_expires_at is not None and row.refresh_expires_at <= now
        ):
            if row.access_expires_at > now:
                return UserGrant(row.person_id, row.subject, row.access_token)  # its last minutes
            await self._revoke(row, "its user token expired and there is no usable refresh token")
            return None
        if row.updated_at > now:
            return await self._stored(row, now)  # another process holds the refresh: use what it stores
        async with self._sessions() as session, session.begin():
            claimed = await stored.claim_refresh(
                session, grant_id=row.id, seen_updated_at=row.updated_at, lease=REFRESH_LEASE
            )
        if not claimed:
            return await self._stored(row, now)  # someone changed it since we read it: use theirs
        try:
            async with self._gate:
                tokens = await self.oauth.refresh(row.refresh_token)
        except OAuthRefused as exc:
            if not exc.final:
                return await self._not_now(row, now, exc)
            async with self._sessions() as session, session.begin():
                revoked = await stored.revoke(
                    session,
                    person_id=row.person_id,
                    source=self.source,
                    tenant=self.tenant,
                    spent_refresh_token=row.refresh_token,
                    only_if_unchanged=True,
                )
            if revoked:
                log.warning(
                    "feishu grant of person %s revoked: %s; they must authorise again", row.person_id, exc
                )
            return None
        except (OAuthError, SourceError) as exc:
            return await self._not_now(row, now, exc)
        async with self._sessions() as session, session.begin():
            won = await stored.replace_tokens(
                session,
                grant_id=row.id,
                used_refresh_token=row.refresh_token,
                access_token=tokens.access_token,
                access_expires_at=tokens.expires_at,
                # a refresh without a new refresh token keeps the old one (and its expiry)
                refresh_token=tokens.refresh_token or row.refresh_token,
                refresh_expires_at=tokens.refresh_expires_at
                if tokens.refresh_token
                else row.refresh_expires_at,
                scope=tokens.scope or row.scope,
            )
        if won:
            return UserGrant(row.person_id, row.subject, tokens.access_token)
        return await self._stored(row, now)  # revoked or replaced meanwhile

    async def _stored(self, row: stored.GrantRow, now: datetime) -> UserGrant | None:
        """The grant as stored now, if it is still usable."""
        async with self._sessions() as session:
            current = await stored.grant_of(
                session, person_id=row.person_id, source=self.source, tenant=self.tenant
            )
        if current is not None and current.revoked_at is None and current.access_expires_at > now:
            return UserGrant(current.person_id, current.subject, current.access_token)
        return None

    async def _not_now(self, row: stored.GrantRow, now: datetime, exc: Exception) -> UserGrant | None:
        """A refresh failed for now: free the turn, and use the old token while it lasts."""
        log.warning("feishu grant of person %s not refreshed this time: %s", row.person_id, exc)
        async with self._sessions() as session, session.begin():
            await stored.release_claim(session, grant_id=row.id)
        if row.access_expires_at <= now:
            return None
        return UserGrant(row.person_id, row.subject, row.access_token)

    async def _revoke(self, row: stored.GrantRow, why: str) -> None:
        async with self._sessions() as session, session.begin():
            await stored.revoke(session, person_id=row.person_id, source=self.source, tenant=self.tenant)
        log.warning("feishu grant of person %s revoked: %s; they must authorise again", row.person_id, why)

    async def access_refused(self, person_id: int, *, code: int | None = None) -> None:
        """Feishu refused a person's user token (``FeishuUserTokenInvalid``; pass its ``code``).

        The next ``fresh_grants`` refreshes it, and revokes the grant if the refresh is refused too. A
        token lacking a scope the person never granted (99991679) cannot be fixed by refreshing: the
        grant is revoked at once, so the person is asked to authorise again.
        """
        async with self._sessions() as session, session.begin():
            if code == USER_SCOPE_MISSING:
                await stored.revoke(session, person_id=person_id, source=self.source, tenant=self.tenant)
                log.warning("feishu grant of person %s revoked: it lacks a needed scope", person_id)
            else:
                await stored.expire_access(
                    session, person_id=person_id, source=self.source, tenant=self.tenant
                )

    async def revoke(self, person_id: int) -> bool:
        """Forget a person's grant (they withdrew consent, or left); True when there was one to revoke."""
        async with self._sessions() as session, session.begin():
            done = await stored.revoke(session, person_id=person_id, source=self.source, tenant=self.tenant)
        if done:
            log.info("feishu grant of person %s revoked on request", person_id)
        return done
