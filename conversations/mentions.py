"""Who ``@someone`` in a command means: an email, its local part, a platform user id, or a name.

Platforms deliver mentions differently: Slack puts ``<@U0123>`` in the text, the others a name. The
forms, in order: ``<@ID>`` / ``@ID`` matching an identity on any platform; an email (with or without
``@`` in front); an email's local part (``@li.lei``); a person's name (``@李雷``, ``@Emma``). A name
that fits several people is ambiguous, and the reply lists them rather than guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import people
from storage.models import Identity, Person
from storage.people import PersonRow

_SLACK_FORM = re.compile(r"^<@([A-Za-z0-9_.-]+)(?:\|[^>]*)?>$")


@dataclass(frozen=True)
class Ambiguous:
    """Several people fit the mention (by name): their names, to ask which one."""

    token: str
    names: tuple[str, ...]


def is_mention(token: str) -> bool:
    return token.startswith("@") or bool(_SLACK_FORM.match(token)) or "@" in token[1:]


async def resolve(session: AsyncSession, token: str) -> PersonRow | Ambiguous | None:
    """The active person ``token`` names, Ambiguous when several do, None when nobody does."""
    raw = token.strip().strip(",，:：")
    slack = _SLACK_FORM.match(raw)
    word = (slack.group(1) if slack else raw.removeprefix("@")).strip()
    if not word:
        return None
    found = await _by_identity(session, word)
    if found is None and "@" in word:
        found = await people.by_email(session, email=word.lower())
    if found is not None:
        return found if found.active else None
    return await _by_local_part_or_name(session, word)


async def _by_identity(session: AsyncSession, external_id: str) -> PersonRow | None:
    ids = Identity.__table__  # type: ignore[attr-defined]
    person_id = (
        await session.execute(select(ids.c.person_id).where(ids.c.external_id == external_id).limit(1))
    ).scalar_one_or_none()
    return None if person_id is None else await people.by_id(session, person_id=person_id)


async def _by_local_part_or_name(session: AsyncSession, word: str) -> PersonRow | Ambiguous | None:
    table = Person.__table__  # type: ignore[attr-defined]
    low = word.lower()
    rows = (
        await session.execute(
            select(table.c.id, table.c.name)
            .where(
                table.c.active.is_(True),
                or_(
                    func.lower(table.c.email).like(f"{_escape(low)}@%", escape="\\"),
                    func.lower(table.c.name) == low,
                    func.lower(table.c.name).like(f"{_escape(low)} %", escape="\\"),
                ),
            )
            .order_by(table.c.id)
            .limit(6)
        )
    ).all()
    if not rows:
        return None
    if len(rows) > 1:
        return Ambiguous(word, tuple(name for _, name in rows))
    return await people.by_id(session, person_id=rows[0][0])


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
