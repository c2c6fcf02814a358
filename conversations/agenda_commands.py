"""Chat commands of the 1:1 assistant: ``agenda @person``, the 1:1 agenda on demand.

Allowed to the person's managers (the whole chain above them) and HR; every read and every refusal
is written to the audit log, as ``view`` does. The on-demand agenda answers at once with the rule
topics: a language model's rewording is for the scheduled card, made outside any transaction.
"""

from __future__ import annotations

from conversations import agenda_service, mentions
from conversations.agenda import settings_for
from conversations.command_parser import Command
from conversations.commands_base import CommandContext
from conversations.messages import Tone
from conversations.outgoing import Outgoing
from storage import audit, people
from storage.clock import utcnow
from storage.people import PersonRow


async def resolve_person(ctx: CommandContext, token: str) -> PersonRow | list[Outgoing]:
    """The active person a mention names, or the reply saying nobody or several do."""
    return _named(ctx, token, await mentions.resolve(ctx.session, token))


def _named(
    ctx: CommandContext, token: str, found: PersonRow | mentions.Ambiguous | None
) -> PersonRow | list[Outgoing]:
    if isinstance(found, mentions.Ambiguous):
        names = "、".join(found.names) if ctx.person.locale == "zh-CN" else ", ".join(found.names)
        return ctx.say("agenda.ambiguous", Tone.ERROR, who=found.token[:60], names=names)
    if found is None:
        return ctx.say("agenda.unknown_person", Tone.ERROR, who=token[:60])
    return found


async def resolve_words(ctx: CommandContext, words: list[str], *, usage: str) -> PersonRow | list[Outgoing]:
    """The active person a mention of one or more words names ("@Emma Smith" arrives as two), or the
    reply saying why nobody is meant (``usage`` when words follow a name that are not part of it)."""
    if len(words) == 1:
        return await resolve_person(ctx, words[0])
    if any(mentions.is_mention(w) for w in words[1:]):
        return ctx.say(usage, Tone.ERROR)  # two people, not one name
    joined = " ".join(words)
    found = await mentions.resolve(ctx.session, joined)
    if found is not None:
        return _named(ctx, joined, found)
    alone = await mentions.resolve(ctx.session, words[0])
    if isinstance(alone, PersonRow):
        return ctx.say(usage, Tone.ERROR)  # a name and then something else
    return _named(ctx, words[0], alone) if alone is not None else _named(ctx, joined, None)


async def agenda(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    """``agenda @person``: the person's 1:1 agenda, for their managers and HR (``@Emma Smith``: a
    name with a space in it)."""
    if not cmd.args or any(mentions.is_mention(a) for a in cmd.args[1:]):
        return ctx.say("agenda.usage", Tone.ERROR)
    token = " ".join(cmd.args)
    reports = await people.reports_of(ctx.session, manager_id=ctx.person.id)
    if not (ctx.person.is_hr or reports):
        # refused before the lookup: whether a name is in the org is not everyone's to learn
        await audit.write(
            ctx.session,
            actor_id=ctx.person.id,
            action="record.read.refused",
            detail={"via": "agenda", "mention": token[:200]},
        )
        return ctx.say("agenda.not_manager", Tone.ERROR)
    subject = await resolve_words(ctx, list(cmd.args), usage="agenda.usage")
    if isinstance(subject, list):
        return subject
    if not (ctx.person.is_hr or subject.id in reports):
        await audit.write(
            ctx.session,
            actor_id=ctx.person.id,
            action="record.read.refused",
            subject_id=subject.id,
            detail={"via": "agenda"},
        )
        return ctx.say("agenda.not_allowed", Tone.ERROR, name=subject.name)
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="record.read",
        subject_id=subject.id,
        detail={"via": "agenda"},
    )
    prepared = await agenda_service.prepare(
        ctx.session,
        person=subject,
        now=utcnow(),
        sources=ctx.task_sources.enabled,
        settings=settings_for(ctx.engine),
    )
    if prepared is None:  # deactivated between the lookup and now
        return ctx.say("agenda.unknown_person", Tone.ERROR, who=token[:60])
    return [ctx.replies(prepared.card(prepared.texts(ctx.person.locale), reader=ctx.person))]
