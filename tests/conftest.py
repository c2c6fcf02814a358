"""Shared fixtures: a migrated database on SQLite and on PostgreSQL for every storage-touching test."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from storage.engine import Database
from storage.migrate import upgrade
from tests.harness import Chat

# what "the server is not there" looks like; any other error fails the run instead of skipping it
_UNREACHABLE = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)

POSTGRES_URL = os.environ.get("CADENCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _migrate(url: str, *, fresh_schema: bool) -> None:
    database = Database(url, pool_size=1)
    try:
        if fresh_schema:
            async with database.engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        await upgrade(database.engine)
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating every time would be slow)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite:///{path}", fresh_schema=False))
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> str:
    """The test PostgreSQL, migrated once per run; in CI an unreachable server fails the run."""
    try:
        asyncio.run(_migrate(POSTGRES_URL, fresh_schema=True))
    except _UNREACHABLE as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI and unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable here: {exc}")
    return POSTGRES_URL


async def _truncate_all(database: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    async with database.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database of each kind."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "cadence.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_ready")
    database = Database(url, pool_size=1)

    async def clean() -> None:
        await _truncate_all(database)
        await database.dispose()

    asyncio.run(clean())
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """An open Database on an empty, migrated schema."""
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def chat(db_url: str) -> AsyncIterator[Chat]:
    """A running Cadence process with the sample org imported, on each database."""
    session = await Chat(db_url).start()
    yield session
    await session.close()
