"""Migrations on SQLite and PostgreSQL: an empty database reaches the head, a second run does nothing,
and the schema they build is exactly the one the models describe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (the tables on SQLModel.metadata)
from storage.engine import async_url, create_engine
from storage.migrate import alembic_config, current_revision, upgrade

# PostgreSQL runs in a schema of its own so the shared test database's tables are left alone
SCHEMA = "cadence_migration_test"


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def all_revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions("base", "heads")))]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for each backend (PostgreSQL's shared test server, reached the way conftest does)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("postgres_ready")
    return url


@pytest.fixture
async def empty(backend_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database (or PostgreSQL schema) with nothing in it."""
    if backend_url.startswith("sqlite"):
        engine = create_engine(backend_url)
        yield engine
        await engine.dispose()
        return
    admin = create_async_engine(async_url(backend_url))
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine = create_async_engine(
        async_url(backend_url), connect_args={"server_settings": {"search_path": SCHEMA}}
    )
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await admin.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, SQLModel.metadata))


async def test_an_empty_database_is_migrated_to_the_head(empty: AsyncEngine) -> None:
    assert await current_revision(empty) is None
    assert await table_names(empty) == set()

    applied = await upgrade(empty)

    assert applied == all_revisions()
    assert await current_revision(empty) == head()
    expected = {t.name for t in SQLModel.metadata.sorted_tables}
    assert await table_names(empty) == expected | {"alembic_version"}


async def test_upgrading_twice_is_a_no_op(empty: AsyncEngine) -> None:
    await upgrade(empty)
    tables = await table_names(empty)

    assert await upgrade(empty) == []
    assert await current_revision(empty) == head()
    assert await table_names(empty) == tables


async def test_the_migrated_schema_matches_the_models(empty: AsyncEngine) -> None:
    await upgrade(empty)
    async with empty.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []


async def test_migrated_data_survives_a_second_upgrade(empty: AsyncEngine) -> None:
    await upgrade(empty)
    async with empty.begin() as conn:
        await conn.execute(
            text(
                "insert into person (email, name, department, title, timezone, country, locale, roles, "
                "active, created_at, updated_at) values ('li.lei@example.com', '李雷', 'Engineering', '', "
                "'Asia/Shanghai', 'CN', 'zh-CN', 'employee', true, '2026-11-27 08:00:00', "
                "'2026-11-27 08:00:00')"
            )
        )
    await upgrade(empty)
    async with empty.connect() as conn:
        names = (await conn.execute(text("select name from person"))).scalars().all()
    assert names == ["李雷"]


async def test_downgrade_to_base_removes_every_table(empty: AsyncEngine) -> None:
    await upgrade(empty)

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    async with empty.begin() as conn:
        await conn.run_sync(downgrade)

    assert await table_names(empty) <= {"alembic_version"}
    assert await current_revision(empty) is None
    # and it can come back up
    await upgrade(empty)
    assert await current_revision(empty) == head()
