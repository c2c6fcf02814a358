"""Which task sources a deployment reads, and who makes per-person authorisation links: given to
conversations by the composition root (conversations may not import ``bot`` or ``connectors``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

# sources (as ``TaskItem.source`` names them: "jira", "feishu_task", "dingtalk_todo") read as each
# person, who must first let Cadence do so (Feishu: a user access token)
PER_PERSON_AUTH = frozenset({"feishu_task"})


class TaskAuthLinks(Protocol):
    """Makes the link a person opens to let Cadence read their tasks (implemented in ``bot``)."""

    async def link(self, person_id: int, locale: str, *, session: AsyncSession) -> str | None:
        """A one-time authorisation URL for the person, in their language; None when none can be made.
        ``session``: the caller's transaction, for what must be stored with the link."""
        ...


@dataclass(frozen=True)
class TaskSources:
    """The enabled sources, in the order they are named to people, and the authorisation link maker."""

    enabled: tuple[str, ...] = ()
    auth_links: TaskAuthLinks | None = None

    @property
    def needing_auth(self) -> tuple[str, ...]:
        """The enabled sources each person must authorise."""
        return tuple(s for s in self.enabled if s in PER_PERSON_AUTH)


NO_TASK_SOURCES = TaskSources()
