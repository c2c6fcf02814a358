"""PostgreSQL session-level advisory locks on a dedicated connection: name → key, take, check, release."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.engine import async_url

# The server's side of a lock connection. PostgreSQL defers TCP keepalives to the OS (2 hours on
# Linux), so a lock held by a host that vanished (power loss, partition) would outlive it for hours.
# With these the server probes an idle client after 10 s, every 5 s, gives up after 3 misses, and
# drops a connection whose sent data stays unacknowledged for 25 s: the session, and with it the
# lock, ends within ~25 s. A process that merely dies needs none of this: its kernel closes the
# socket and the server releases the lock at once. (asyncpg sets no client-side keepalive; the
# client side is covered by a timeout on every statement instead.)
_SERVER_SETTINGS = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "25000",
}

# fixed forever: changing it would let an old and a new release both lead during an upgrade
_KEY_PERSON = b"cadence-lock"

_THIS_DATABASE = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
# pg_locks shows a bigint advisory key as its high and low 32 bits (classid, objid) with objsubid 1
_THIS_KEY = "locktype = 'advisory' AND classid::int8 = :hi AND objid::int8 = :lo AND objsubid = 1"


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name``: the same in every process, release and platform."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=_KEY_PERSON).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_engine(url: str, *, timeout: float = 5.0, application_name: str = "cadence-lock") -> AsyncEngine:
    """An engine for connections that hold session-level locks: each one fresh, never pooled.

    A session-level lock lives as long as the connection that took it. Taken on a pooled connection it
    would outlive its holder's interest and travel to whichever code borrows that connection next.
    """
    return create_async_engine(
        async_url(url),
        poolclass=NullPool,
        # each statement is its own transaction, so the lock session never sits "idle in transaction",
        # where a server's idle_in_transaction_session_timeout would end it and the lock with it
        isolation_level="AUTOCOMMIT",
        connect_args={
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {**_SERVER_SETTINGS, "application_name": application_name},
        },
    )


def _halves(key: int) -> dict[str, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return {"hi": unsigned >> 32, "lo": unsigned & 0xFFFF_FFFF}


async def try_lock(conn: AsyncConnection, *, key: int) -> bool:
    """Take the session-level lock ``key`` if no other session holds it; never waits.

    Re-entrant: a session that already holds it gets it again and must unlock it as many times.
    """
    result = await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
    return bool(result.scalar_one())


async def unlock(conn: AsyncConnection, *, key: int) -> bool:
    """Release one hold of ``key``; False if this session did not hold it."""
    result = await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    return bool(result.scalar_one())


async def still_held(conn: AsyncConnection, *, key: int) -> bool:
    """Whether this session still holds ``key``, in one round trip that also proves the session lives.

    Asked of the server rather than assumed: besides a dead connection (which raises), a session can
    lose a lock it took to ``pg_advisory_unlock_all()`` or a stray unlock.
    """
    result = await conn.execute(
        text(
            f"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE {_THIS_KEY} AND pid = pg_backend_pid() AND granted)"
        ),
        _halves(key),
    )
    return bool(result.scalar_one())


async def holder(conn: AsyncConnection, *, key: int) -> int | None:
    """The backend pid of the session holding ``key`` in this database, or None: who leads, for operators."""
    result = await conn.execute(
        text(f"SELECT pid FROM pg_locks WHERE {_THIS_KEY} AND {_THIS_DATABASE} AND granted LIMIT 1"),
        _halves(key),
    )
    pid = result.scalar_one_or_none()
    return None if pid is None else int(pid)
