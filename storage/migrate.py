"""Apply Alembic migrations programmatically (``cadence db upgrade``, and at start of run/demo)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

_HERE = Path(__file__).resolve().parent


def alembic_config(url: str = "") -> Config:
    """The Alembic config shipped inside the package."""
    config = Config(str(_HERE / "alembic.ini"))
    config.set_main_option("script_location", str(_HERE / "migrations"))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection, config: Config) -> list[str]:
    script = ScriptDirectory.from_config(config)
    before = MigrationContext.configure(connection).get_current_revision()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    pending = []
    for rev in script.iterate_revisions("head", before):
        pending.append(rev.revision)
    return list(reversed(pending))


async def upgrade(engine: AsyncEngine) -> list[str]:
    """Bring the database to the newest schema; returns the revisions applied (oldest first)."""
    config = alembic_config()
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade, config)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    async with engine.connect() as connection:
        return await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def revisions() -> list[str]:
    """Every revision shipped, oldest first (what ``cadence db upgrade`` applies to an empty database)."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]
