"""Per-person authorisation for Feishu tasks: the link ``connect tasks`` sends, and its callback page.

The callback is served on ``cadence run``'s HTTP port (with the health routes); ``PUBLIC_URL`` says
where browsers reach it, and that URL must be registered as a redirect URL in the Feishu app.
"""

from __future__ import annotations

import html
import logging

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.feishu_oauth import (
    GrantStore,
    OAuthError,
    OAuthRefused,
    OAuthStateError,
    OAuthSubjectMismatch,
)
from conversations.i18n import t

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth/feishu/callback"
PAGE_LOCALES = ("zh-CN", "en")  # the page is for whoever opens it: both languages, Chinese first


def redirect_uri(public_base_url: str) -> str:
    return public_base_url.rstrip("/") + CALLBACK_PATH


class FeishuTaskLinks:
    """``TaskAuthLinks`` for Feishu tasks: a one-time link to Feishu's consent page."""

    def __init__(self, store: GrantStore, *, public_base_url: str) -> None:
        self.store = store
        self.redirect_uri = redirect_uri(public_base_url)

    async def link(self, person_id: int, locale: str, *, session: AsyncSession) -> str | None:
        return await self.store.link(person_id, self.redirect_uri, session=session)


def add_callback_route(web_app: web.Application, links: FeishuTaskLinks) -> None:
    """Serve GET ``CALLBACK_PATH``: store the grant, then say in both languages how it went."""

    async def callback(request: web.Request) -> web.Response:
        state, code = request.query.get("state", ""), request.query.get("code", "")
        if not code:  # the person pressed "refuse" (Feishu sends an error instead of a code)
            return _page("declined", status=200)
        try:
            person_id = await links.store.complete(state, code, links.redirect_uri)
        except OAuthStateError:
            return _page("stale", status=400)
        except OAuthSubjectMismatch:
            return _page("someone_else", status=403)
        except OAuthRefused as exc:
            log.warning("Feishu refused an authorisation code: %s", exc)
            return _page("refused", status=502, error=str(exc)[:200])
        except OAuthError as exc:
            log.warning("Feishu authorisation failed: %s", exc)
            return _page("refused", status=502, error=str(exc)[:200])
        log.info("person %d authorised Cadence to read their Feishu tasks", person_id)
        return _page("done", status=200)

    web_app.router.add_get(CALLBACK_PATH, callback)


def _page(key: str, *, status: int, **values: object) -> web.Response:
    paragraphs = "".join(f"<p>{html.escape(t(f'oauth.{key}', loc, **values))}</p>" for loc in PAGE_LOCALES)
    title = html.escape(t("oauth.title", "zh-CN"))
    body = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body>{paragraphs}</body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
