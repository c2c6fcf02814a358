"""Database URLs, async engines and the session factory; the driver is chosen here, not by the user."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import sqlite_inline

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class DatabaseUrlError(ValueError):
    """DATABASE_URL names a database Cadence does not support."""


def async_url(url: str) -> str:
    """Map ``sqlite:///x`` / ``postgresql://...`` to the async driver Cadence uses for it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError(
            f"DATABASE_URL {url!r} is not a database URL; use sqlite:///path/to/file.db or "
            "postgresql://user@host:5432/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise DatabaseUrlError(
            f"DATABASE_URL must start with sqlite:/// or postgresql://, not {parsed.drivername}://"
        )
    return parsed.set(drivername=_ASYNC_DRIVERS[backend]).render_as_string(hide_password=False)


def backend_name(url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return "sqlite" if make_url(url).get_backend_name() == "sqlite" else "postgresql"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL is durable across process crashes in WAL mode.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _json(value: Any) -> str:
    # keep Chinese readable in the database (and searchable with LIKE) instead of \uXXXX escapes
    return json.dumps(value, ensure_ascii=False)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url`` with the settings each backend needs."""
    target = async_url(url)
    if backend_name(url) == "sqlite":
        database = make_url(url).database or ":memory:"
        engine = create_async_engine(
            target,
            async_creator=sqlite_inline.creator(database),
            # one connection: coroutines queue for it instead of meeting in SQLite's lock
            pool_size=1,
            max_overflow=0,
            json_serializer=_json,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        target, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, json_serializer=_json
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


class Database:
    """An engine and its session factory, built once in the composition root."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.backend = backend_name(url)
        self.engine = create_engine(url, pool_size=pool_size)
        self.sessions = session_factory(self.engine)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
