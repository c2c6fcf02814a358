"""The `record` command: a person's record, permission-checked and audited."""

from __future__ import annotations

from conversations import mentions, permissions, record_view
from conversations.command_parser import Command
from conversations.commands_base import CommandContext
from conversations.i18n import t
from conversations.messages import Tone
from conversations.outgoing import Outgoing
from conversations.record_view import SECTIONS
from storage import record_data
from storage.clock import utcnow
from storage.people import PersonRow

_VIA = "record"


async def record(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    """``record`` (one's own) / ``record @person`` / ``档案 @张三``: the person's record, for them, their
    manager chain and HR; every read of someone else's record and every refusal is audited."""
    viewer = ctx.person
    if not cmd.args:
        return await _show(ctx, viewer)
    # "@Emma Smith" arrives as two words: a name may have a space in it
    asked = " ".join(cmd.args)
    found = await mentions.resolve(ctx.session, asked)
    if isinstance(found, PersonRow) and found.id == viewer.id:
        return await _show(ctx, found)
    if not (viewer.is_hr or await record_data.has_reports(ctx.session, manager_id=viewer.id)):
        # refused before saying whether the mention names anyone: who is in the org (and who has a
        # namesake) is not everyone's to learn from this command
        await permissions.audit_refused(
            ctx.session,
            viewer=viewer,
            subject=found if isinstance(found, PersonRow) else None,
            kinds=SECTIONS,
            via=_VIA,
            detail={"asked": asked[:80]},
        )
        return ctx.say("record.refused_unnamed", Tone.ERROR)
    if found is None:
        return ctx.say("record.unknown", Tone.ERROR, who=asked[:80])
    if isinstance(found, mentions.Ambiguous):
        names = t("record.name_separator", viewer.locale).join(found.names)
        return ctx.say("record.ambiguous", Tone.ERROR, who=found.token[:80], names=names)
    return await _show(ctx, found)


async def _show(ctx: CommandContext, subject: PersonRow) -> list[Outgoing]:
    """The record's sections the viewer may read, or the refusal; audited either way (but one's own)."""
    viewer = ctx.person
    chain = await permissions.chain_of(ctx.session, subject)
    kinds = permissions.readable(viewer, subject, SECTIONS, chain=chain)
    if not kinds:
        await permissions.audit_refused(ctx.session, viewer=viewer, subject=subject, kinds=SECTIONS, via=_VIA)
        return ctx.say("record.refused", Tone.ERROR, name=subject.name)
    shown = await record_view.build(
        ctx.session,
        engine=ctx.engine,
        sources=ctx.task_sources.enabled,
        viewer=viewer,
        subject=subject,
        kinds=kinds,
        now=utcnow(),
    )
    await permissions.audit_read(ctx.session, viewer=viewer, subject=subject, kinds=shown.kinds, via=_VIA)
    return [ctx.replies(shown.message)]
