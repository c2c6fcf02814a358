"""The context every chat command handler gets (its own module so command modules can share it)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.engine import Engine
from conversations.i18n import t
from conversations.messages import Message, Tone
from conversations.outgoing import Outgoing, PersonContext, Replies
from conversations.task_sources import TaskSources


@dataclass
class CommandContext:
    """Everything a command handler may use."""

    session: AsyncSession
    person: PersonContext
    replies: Replies
    engine: Engine
    # the task sources enabled and the authorisation links (None: the engine's, as the settings say)
    tasks: TaskSources | None = None

    @property
    def task_sources(self) -> TaskSources:
        """The task sources in force for this command."""
        return self.tasks if self.tasks is not None else self.engine.tasks

    def say(self, key: str, tone: Tone = Tone.PLAIN, **values: object) -> list[Outgoing]:
        """One reply in the person's language."""
        return [self.replies(Message(text=t(key, self.person.locale, **values), tone=tone))]
