"""Per-person OAuth grants to read a task source as them, and the one-use states of pending links."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import OAuthGrant, OAuthState
from storage.prepared import dialect_insert

G = OAuthGrant.__table__  # type: ignore[attr-defined]
S = OAuthState.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class GrantRow:
    """A stored grant; the tokens are secrets: never logged (kept out of ``repr``)."""

    id: int
    person_id: int
    source: str
    tenant: str
    subject: str
    access_token: str = field(repr=False)
    access_expires_at: datetime
    refresh_token: str | None = field(repr=False)
    refresh_expires_at: datetime | None
    scope: str
    revoked_at: datetime | None
    updated_at: datetime


_GRANT_COLUMNS = (
    G.c.id,
    G.c.person_id,
    G.c.source,
    G.c.tenant,
    G.c.subject,
    G.c.access_token,
    G.c.access_expires_at,
    G.c.refresh_token,
    G.c.refresh_expires_at,
    G.c.scope,
    G.c.revoked_at,
    G.c.updated_at,
)


def _grant(row: Any) -> GrantRow:
    return GrantRow(*tuple(row))


@dataclass(frozen=True)
class StateRow:
    """A consumed state: whose link it was and until when it was good."""

    person_id: int
    source: str
    expires_at: datetime


async def add_state(
    session: AsyncSession, *, state: str, person_id: int, source: str, expires_at: datetime
) -> None:
    """Remember the ``state`` of a link just sent to a person."""
    await session.execute(
        S.insert().values(state=state, person_id=person_id, source=source, expires_at=expires_at)
    )


async def take_state(session: AsyncSession, *, state: str) -> StateRow | None:
    """Consume a state: it is deleted whether or not it is still good, so it works once at most.

    None when no such state is stored (unknown, or used already); the caller checks ``expires_at``.
    """
    stmt = delete(S).where(S.c.state == state).returning(S.c.person_id, S.c.source, S.c.expires_at)
    row = (await session.execute(stmt)).first()
    return StateRow(row[0], row[1], row[2]) if row else None


async def purge_states(session: AsyncSession, *, before: datetime) -> int:
    """Forget links that expired before ``before`` (nobody followed them); returns how many."""
    result = await session.execute(delete(S).where(S.c.expires_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def save_grant(
    session: AsyncSession,
    *,
    person_id: int,
    source: str,
    tenant: str,
    subject: str,
    access_token: str,
    access_expires_at: datetime,
    refresh_token: str | None,
    refresh_expires_at: datetime | None,
    scope: str,
) -> int:
    """Store a person's fresh authorisation, replacing (and un-revoking) an earlier one; returns its id."""
    now = utcnow()
    values = {
        "subject": subject,
        "access_token": access_token,
        "access_expires_at": access_expires_at,
        "refresh_token": refresh_token,
        "refresh_expires_at": refresh_expires_at,
        "scope": scope[:1000],
        "updated_at": now,
        "revoked_at": None,
    }
    insert = dialect_insert(session.bind.dialect.name if session.bind else "sqlite", G).values(
        person_id=person_id, source=source, tenant=tenant, created_at=now, **values
    )
    stmt = insert.on_conflict_do_update(index_elements=["person_id", "source", "tenant"], set_=values)
    await session.execute(stmt)
    found = await grant_of(session, person_id=person_id, source=source, tenant=tenant)
    assert found is not None  # just written in this transaction
    return found.id


async def grant_of(session: AsyncSession, *, person_id: int, source: str, tenant: str) -> GrantRow | None:
    """A person's grant for a source (revoked or not), if any."""
    stmt = select(*_GRANT_COLUMNS).where(
        G.c.person_id == person_id, G.c.source == source, G.c.tenant == tenant
    )
    row = (await session.execute(stmt)).first()
    return _grant(row) if row else None


async def active_grants(session: AsyncSession, *, source: str, tenant: str) -> list[GrantRow]:
    """Every grant of a source that is not revoked, by person."""
    stmt = (
        select(*_GRANT_COLUMNS)
        .where(G.c.source == source, G.c.tenant == tenant, G.c.revoked_at.is_(None))
        .order_by(G.c.person_id)
    )
    return [_grant(r) for r in (await session.execute(stmt)).all()]


async def claim_refresh(
    session: AsyncSession, *, grant_id: int, seen_updated_at: datetime, lease: timedelta
) -> bool:
    """Take the turn to refresh a grant, if nobody changed it since it was read; False: someone did.

    Refresh tokens work once, so two processes must not spend the same one. The claim moves
    ``updated_at`` into the future, to the end of the lease: whoever reads the grant meanwhile sees
    a refresh in flight and uses what its holder stores. Storing the result (``replace_tokens``),
    ``release_claim`` or the lease running out (a crashed holder) ends it.
    """
    now = utcnow()
    stmt = (
        update(G)
        .where(
            G.c.id == grant_id,
            G.c.updated_at == seen_updated_at,
            G.c.updated_at <= now,
            G.c.revoked_at.is_(None),
        )
        .values(updated_at=now + lease)
    )
    return int((await session.execute(stmt)).rowcount) == 1  # type: ignore[attr-defined]


async def release_claim(session: AsyncSession, *, grant_id: int) -> None:
    """Give up a refresh turn without a result (it failed for now): others may try at once."""
    now = utcnow()
    await session.execute(update(G).where(G.c.id == grant_id, G.c.updated_at > now).values(updated_at=now))


async def replace_tokens(
    session: AsyncSession,
    *,
    grant_id: int,
    used_refresh_token: str | None,
    access_token: str,
    access_expires_at: datetime,
    refresh_token: str | None,
    refresh_expires_at: datetime | None,
    scope: str,
) -> bool:
    """Store a refresh's result, only if the grant still holds the refresh token that was spent.

    Refresh tokens work once: when two processes refresh the same grant, the second write would
    store a token the source has already replaced. False means another refresh won; read the grant
    again instead.
    """
    stmt = (
        update(G)
        .where(G.c.id == grant_id, G.c.revoked_at.is_(None))
        .values(
            access_token=access_token,
            access_expires_at=access_expires_at,
            refresh_token=refresh_token,
            refresh_expires_at=refresh_expires_at,
            scope=scope[:1000],
            updated_at=utcnow(),
        )
    )
    stmt = stmt.where(
        G.c.refresh_token.is_(None) if used_refresh_token is None else G.c.refresh_token == used_refresh_token
    )
    return int((await session.execute(stmt)).rowcount) == 1  # type: ignore[attr-defined]


async def expire_access(session: AsyncSession, *, person_id: int, source: str, tenant: str) -> bool:
    """The source refused the access token before its time: mark it expired, so the next use refreshes.

    ``updated_at`` is left alone: it may hold a refresh's claim (see ``claim_refresh``).
    """
    stmt = (
        update(G)
        .where(
            G.c.person_id == person_id, G.c.source == source, G.c.tenant == tenant, G.c.revoked_at.is_(None)
        )
        .values(access_expires_at=utcnow())
    )
    return int((await session.execute(stmt)).rowcount) == 1  # type: ignore[attr-defined]


async def revoke(
    session: AsyncSession,
    *,
    person_id: int,
    source: str,
    tenant: str,
    spent_refresh_token: str | None = None,
    only_if_unchanged: bool = False,
) -> bool:
    """Mark a grant revoked and drop its tokens (the person authorises again to restore it).

    With ``only_if_unchanged``, only while the grant still holds ``spent_refresh_token``: a refused
    refresh must not revoke a grant another process has just refreshed. True when a grant was revoked.
    """
    now = utcnow()
    stmt = (
        update(G)
        .where(
            G.c.person_id == person_id, G.c.source == source, G.c.tenant == tenant, G.c.revoked_at.is_(None)
        )
        .values(access_token="", refresh_token=None, revoked_at=now, updated_at=now)
    )
    if only_if_unchanged:
        stmt = stmt.where(
            G.c.refresh_token.is_(None)
            if spent_refresh_token is None
            else G.c.refresh_token == spent_refresh_token
        )
    return int((await session.execute(stmt)).rowcount) == 1  # type: ignore[attr-defined]
