"""Chat commands of the 1:1 assistant: agenda (being built)."""

from __future__ import annotations

from conversations.command_parser import Command
from conversations.commands_base import CommandContext
from conversations.outgoing import Outgoing


async def agenda(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    return ctx.say("cmd.unknown", word=cmd.name)
