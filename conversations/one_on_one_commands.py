"""Chat commands of the 1:1 assistant: ``1on1 @someone`` (record a 1:1) and ``note @someone …``.

Who may: a 1:1 is recorded by the person's manager (direct or higher up the chain; HR as such may
not); a key event is noted by the person's managers and by HR. Every refusal is written to the audit
log, and so is every note and record written about someone.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from conversations import mentions, one_on_one_record, vagueness
from conversations.command_parser import Command
from conversations.commands_base import CommandContext
from conversations.i18n import t
from conversations.messages import Message, Tone
from conversations.outgoing import Outgoing
from storage import audit
from storage import one_on_one_records as records
from storage.people import PersonRow

MAX_NOTE_CHARS = 1000
# "1on1 @alice every 2 weeks" / "一对一 @张三 每2周" / "1on1 @alice next 12-03 15:00" set the pair's
# schedule, in a module of its own (imported when needed; without it, these words say so)
_SCHEDULE_MODULE = "conversations.one_on_one_schedule"
_SCHEDULE_WORDS = frozenset({"every", "each", "next"})
_SCHEDULE_PREFIXES = ("每", "下次", "下一次")
# the command as typed: an optional "/cadence" or "cadence" (or a "/" glued on), the command word,
# the mention, and the free text after it
_MENTION_AND_TEXT = re.compile(
    r"^(?:(?:/cadence|/节拍|cadence)\s+)?/?\S+\s+(\S+)(?:\s+(.*))?$", re.DOTALL | re.IGNORECASE
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」"}


async def oneonone(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    """``1on1 @alice``: record the 1:1 just had with a report, as a conversation (and a form where
    the platform has forms). With ``every``/``next``: the pair's schedule, handled elsewhere."""
    if not cmd.args:
        return ctx.say("oneonone.usage", Tone.ERROR)
    schedule = _schedule_module()
    if schedule is not None and schedule.is_schedule_command(cmd):
        out: list[Outgoing] = await schedule.set_cadence(ctx, cmd)
        return out
    if schedule is None and any(
        a.lower() in _SCHEDULE_WORDS or a.startswith(_SCHEDULE_PREFIXES) for a in cmd.args[1:]
    ):
        return ctx.say("oneonone.schedule_unavailable", Tone.WARNING)
    if not await records.has_reports(ctx.session, manager_id=ctx.person.id):
        # refused before the lookup: a 1:1 record is a manager's, about one of their people
        await _refused(ctx, "oneonone.record", None, cmd.args[0])
        return ctx.say("oneonone.not_a_manager", Tone.ERROR)
    found = await _subject(ctx, cmd.args[0], rest=" ".join(cmd.args[1:]))
    if not isinstance(found, tuple):
        return found
    subject, rest = found
    if rest:
        return ctx.say("oneonone.usage", Tone.ERROR)
    if not await records.manages(ctx.session, manager_id=ctx.person.id, report_id=subject.id):
        await _refused(ctx, "oneonone.record", subject, cmd.args[0])
        return ctx.say("oneonone.not_your_report", Tone.ERROR, name=subject.name)
    return await one_on_one_record.start(
        ctx.session, engine=ctx.engine, manager=ctx.person, subject=subject, replies=ctx.replies
    )


def _schedule_module() -> Any | None:
    """``conversations.one_on_one_schedule`` (``is_schedule_command``, ``set_cadence``), if present."""
    try:
        return importlib.import_module(_SCHEDULE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _SCHEDULE_MODULE:
            raise
        return None


async def note(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    """``note @alice shipped the billing migration two days early`` / ``记录 @张三 …``: a key event
    for the next 1:1 agenda and the quarterly assessment, by the person's managers or HR."""
    match = _MENTION_AND_TEXT.match(cmd.raw)
    if match is None or not mentions.is_mention(match.group(1).strip("\"'“”")):
        return ctx.say("oneonone.note_usage", Tone.ERROR)
    token = match.group(1).strip("\"'“”")
    if not ctx.person.is_hr and not await records.has_reports(ctx.session, manager_id=ctx.person.id):
        await _refused(ctx, "note.write", None, token)
        return ctx.say("oneonone.note_not_allowed_unnamed", Tone.ERROR)
    found = await _subject(ctx, token, rest=(match.group(2) or "").strip())
    if not isinstance(found, tuple):
        return found
    subject, text = found
    text = _unquoted(text)
    if not text:
        return ctx.say("oneonone.note_usage", Tone.ERROR)
    if not ctx.person.is_hr and not await records.manages(
        ctx.session, manager_id=ctx.person.id, report_id=subject.id
    ):
        await _refused(ctx, "note.write", subject, token)
        return ctx.say("oneonone.note_not_allowed", Tone.ERROR, name=subject.name)
    if len(text) > MAX_NOTE_CHARS:
        return ctx.say(
            "oneonone.note_too_long", Tone.ERROR, length=f"{len(text):,}", limit=f"{MAX_NOTE_CHARS:,}"
        )
    verdict = vagueness.assess(text)
    event_id = await records.add_key_event(
        ctx.session, subject_id=subject.id, author_id=ctx.person.id, text=text, specific=verdict.specific
    )
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="note.write",
        subject_id=subject.id,
        detail={"key_event": event_id, "specific": verdict.specific},
    )
    locale = ctx.person.locale
    saved = t("oneonone.note_saved", locale, name=subject.name, text=text)
    hint = None if verdict.specific else t("oneonone.note_tip", locale)
    return [ctx.replies(Message(text=saved, hint=hint, tone=Tone.SUCCESS))]


async def _subject(ctx: CommandContext, token: str, *, rest: str) -> tuple[PersonRow, str] | list[Outgoing]:
    """The person ``token`` names, with ``rest`` (what followed the mention) less the rest of their
    name ("@Emma Smith shipped …" names Emma Smith, not Emma and "Smith shipped …"); or the reply
    saying why nobody is meant."""
    found = await mentions.resolve(ctx.session, token)
    if isinstance(found, mentions.Ambiguous):
        names = t("oneonone.name_separator", ctx.person.locale).join(found.names)
        return ctx.say("oneonone.ambiguous", Tone.ERROR, who=token[:40], names=names)
    if found is None:
        return ctx.say("oneonone.unknown_person", Tone.ERROR, who=token[:40])
    first, _, more = found.name.partition(" ")
    word = token.strip().removeprefix("@")
    if more and word.lower() == first.lower() and (rest + " ").lower().startswith(more.lower() + " "):
        rest = rest[len(more) :].strip()
    return found, rest


def _unquoted(text: str) -> str:
    """The text without one pair of quotes around all of it."""
    text = text.strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        return text[1:-1].strip()
    return text


async def _refused(ctx: CommandContext, action: str, subject: PersonRow | None, token: str) -> None:
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action=f"{action}.refused",
        subject_id=subject.id if subject is not None else None,
        detail={"mention": token[:200]},
    )
