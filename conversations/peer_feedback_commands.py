"""Chat command ``feedback`` (``反馈``): give a colleague feedback, ask colleagues for some, read yours.

    feedback @bob clear demo on Tuesday; the release notes could be shorter   (1–3 items: ";" or lines)
    feedback anonymous @bob …     反馈 匿名 @张三 …      (匿名 may also follow the name)
    feedback ask @a @b @c [anonymous]     反馈 请求 @甲 @乙 [匿名]       (up to 5 colleagues)
    feedback      what I received        feedback given      what I gave        feedback help

The command's words are read from the text as typed (``Command.raw``): items keep their line breaks,
quotes and semicolons, which the shared tokenizer does not. ``--anonymous`` / ``--anon`` / ``--匿名`` are
read too (before or right after the name, or at the end), but today ``command_parser`` refuses any
``--word`` it does not know before this handler runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from conversations import peer_feedback
from conversations.command_parser import Command
from conversations.commands_base import CommandContext
from conversations.i18n import t
from conversations.mentions import Ambiguous, is_mention, resolve
from conversations.messages import Message, Tone
from conversations.outgoing import Outgoing
from storage.people import PersonRow

_LEADS = frozenset({"/cadence", "cadence", "/节拍"})
# words that are the command and something more, for when the parser learns them ("请求反馈 @甲")
_COMPOUND = {"请求反馈": "ask", "索要反馈": "ask", "征求反馈": "ask", "匿名反馈": "anonymous"}
_ASK = frozenset({"ask", "request", "请求", "邀请", "征求", "索要"})
_GIVEN = frozenset({"given", "gave", "sent", "已给出", "给出的", "我给出的", "我给的", "已发出"})
_HELP = frozenset({"help", "?", "？", "帮助", "用法"})
_FLAGS = frozenset({"--anonymous", "--anon", "--匿名", "anonymous", "anon", "匿名"})
# after the name only unmistakable flags: "feedback @bob anonymous surveys were a great idea" is an item
_FLAGS_AFTER_NAME = frozenset({"--anonymous", "--anon", "--匿名", "匿名"})
_TRAILING_FLAG = re.compile(r"\s+(?:--anonymous|--anon|--匿名)\s*$", re.IGNORECASE)
_CONNECTORS = frozenset({"and", "&", "和", "与", "及", "以及"})
_SEPARATORS = re.compile(r"[,，、]+")
_WORD = re.compile(r"\S+")
# more mentions than this in one ask is not a list to resolve one by one, it is a refusal
_MAX_MENTIONS = 12


@dataclass
class _Head:
    """The command's words before any item: what it is for, the flag, and where the rest starts."""

    mode: str = "give"  # give | ask | given | help
    anonymous: bool = False
    words: list[tuple[str, int]] = field(default_factory=list)  # (word, offset in raw) after the head


def _head(raw: str) -> _Head:
    words = [(m.group(), m.start()) for m in _WORD.finditer(raw)]
    i = 1 if words and words[0][0].lower() in _LEADS else 0
    head = _Head()
    if i < len(words):
        compound = _COMPOUND.get(words[i][0].lstrip("/"))
        if compound == "ask":
            head.mode = "ask"
        elif compound == "anonymous":
            head.anonymous = True
        i += 1  # the command word itself
    while i < len(words):
        low = words[i][0].lower()
        if low in _FLAGS:
            head.anonymous = True
        elif head.mode == "give" and low in _ASK:
            head.mode = "ask"
        elif head.mode == "give" and low in _GIVEN:
            head.mode = "given"
        elif head.mode == "give" and low in _HELP:
            head.mode = "help"
        else:
            break
        i += 1
    head.words = words[i:]
    return head


async def feedback(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    """``feedback``: give, ask, or read feedback (see the module docstring for the forms)."""
    raw = cmd.raw or " ".join((cmd.name, *cmd.args))
    head = _head(raw)
    if head.mode == "help":
        return _help(ctx)
    if head.mode == "given":
        return await _given(ctx)
    if head.mode == "ask":
        return await _ask(ctx, head)
    if not head.words:
        return await _received(ctx)
    return await _give(ctx, head, raw)


def _help(ctx: CommandContext, tone: Tone = Tone.PLAIN) -> list[Outgoing]:
    locale = ctx.person.locale
    return [
        ctx.replies(Message(title=t("peerfb.help_title", locale), text=t("peerfb.help", locale), tone=tone))
    ]


async def _received(ctx: CommandContext) -> list[Outgoing]:
    locale = ctx.person.locale
    shown = await peer_feedback.received_for(
        ctx.session, recipient_id=ctx.person.id, viewer_id=ctx.person.id, locale=locale
    )
    if shown.empty:
        return _help(ctx)
    message = Message(
        title=t("peerfb.view_title", locale), text=shown.text, hint=t("peerfb.view_hint", locale)
    )
    return [ctx.replies(message)]


async def _given(ctx: CommandContext) -> list[Outgoing]:
    locale = ctx.person.locale
    text = await peer_feedback.given_by(ctx.session, giver=ctx.person, locale=locale)
    if not text:
        return ctx.say("peerfb.given_empty")
    return [ctx.replies(Message(title=t("peerfb.given_title", locale), text=text))]


# ---- giving ---------------------------------------------------------------------------------------


async def _give(ctx: CommandContext, head: _Head, raw: str) -> list[Outgoing]:
    words = [w for w, _ in head.words]
    if not is_mention(words[0]):
        return ctx.say("peerfb.needs_mention", Tone.ERROR)
    found, after = await _person_at(ctx, words, 0)
    if not isinstance(found, PersonRow):
        return _who(ctx, words[0], found)
    if found.id == ctx.person.id:
        return ctx.say("peerfb.not_self", Tone.ERROR)
    anonymous = head.anonymous
    while after < len(words) and words[after].lower() in _FLAGS_AFTER_NAME:
        anonymous, after = True, after + 1
    body = raw[head.words[after][1] :] if after < len(words) else ""
    if _TRAILING_FLAG.search(body):
        anonymous, body = True, _TRAILING_FLAG.sub("", body)
    first = body.split(maxsplit=1)[0] if body.strip() else ""
    if first.startswith(("@", "<@")):  # a second name right after the first: not an item
        return ctx.say("peerfb.one_at_a_time", Tone.ERROR, mention=first[:80])
    items = peer_feedback.split_items(body)
    problem = peer_feedback.items_problem(items)
    if problem is not None:
        mention = await peer_feedback.mention_for(ctx.session, found)
        return ctx.say(problem.key, Tone.ERROR, name=found.name, mention=mention, **problem.values)
    given = await peer_feedback.give(
        ctx.session,
        giver=ctx.person,
        recipient=found,
        items=items,
        anonymous=anonymous,
        timing=ctx.engine.timing,
    )
    return [*given.out, ctx.replies(_confirmation(ctx.person.locale, found, items, given))]


def _confirmation(locale: str, recipient: PersonRow, items: list[str], given: peer_feedback.Given) -> Message:
    count = t("peerfb.items_one" if len(items) == 1 else "peerfb.items_many", locale, count=len(items))
    values = {"name": recipient.name, "items": count, "threshold": peer_feedback.ANONYMOUS_THRESHOLD}
    if not given.feedback.anonymous:
        key = "peerfb.saved"
    elif given.anonymous_visible:
        key = "peerfb.saved_anonymous_visible"
    else:
        key = "peerfb.saved_anonymous_waiting"
    lines = [t(key, locale, **values)]
    if given.request is not None:
        lines.append(t("peerfb.answered_request", locale, name=recipient.name))
    if given.anonymous_by_request:
        lines.append(t("peerfb.anonymous_as_asked", locale, name=recipient.name))
    hint = None
    if given.vague:
        which = _listed([str(n) for n in given.vague], locale)
        hint = t(
            "peerfb.tip_vague_one" if len(given.vague) == 1 else "peerfb.tip_vague_many", locale, which=which
        )
    return Message(text="\n".join(lines), hint=hint, tone=Tone.SUCCESS)


def _listed(words: list[str], locale: str) -> str:
    joiner = t("peerfb.list_and", locale)
    if locale.startswith("zh") or len(words) < 2:
        return joiner.join(words)
    return ", ".join(words[:-1]) + joiner + words[-1]


# ---- asking ---------------------------------------------------------------------------------------


async def _ask(ctx: CommandContext, head: _Head) -> list[Outgoing]:
    words = [piece for w, _ in head.words for piece in _SEPARATORS.split(w) if piece]
    anonymous = head.anonymous
    mention_count = sum(1 for w in words if is_mention(w))
    if mention_count == 0:
        return ctx.say("peerfb.ask_usage", Tone.ERROR)
    if mention_count > _MAX_MENTIONS:
        return ctx.say("peerfb.ask_too_many", Tone.ERROR, limit=peer_feedback.MAX_ASKED, count=mention_count)
    asked: dict[int, PersonRow] = {}
    unknown: list[tuple[str, PersonRow | Ambiguous | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.lower() in _FLAGS:
            anonymous, i = True, i + 1
            continue
        if word.lower() in _CONNECTORS:
            i += 1
            continue
        if not is_mention(word):
            return ctx.say("peerfb.ask_not_a_name", Tone.ERROR, word=word[:40])
        found, i = await _person_at(ctx, words, i)
        if isinstance(found, PersonRow):
            asked.setdefault(found.id, found)  # named twice (or two ways): asked once
        else:
            unknown.append((word, found))
    named = len(asked) + len(unknown)
    if named > peer_feedback.MAX_ASKED:
        return ctx.say("peerfb.ask_too_many", Tone.ERROR, limit=peer_feedback.MAX_ASKED, count=named)
    if unknown:
        return _who(ctx, *unknown[0])
    if ctx.person.id in asked:
        return ctx.say("peerfb.ask_self", Tone.ERROR)
    result = await peer_feedback.ask(
        ctx.session,
        requester=ctx.person,
        asked=list(asked.values()),
        anonymous=anonymous,
        timing=ctx.engine.timing,
    )
    locale = ctx.person.locale
    lines: list[str] = []
    if result.made:
        people = [p for p, _ in result.made]
        key = "peerfb.asked_anonymous" if anonymous else "peerfb.asked"
        count = t(
            "peerfb.people_one" if len(people) == 1 else "peerfb.people_many", locale, count=len(people)
        )
        names = _listed([p.name for p in people], locale)
        lines.append(t(key, locale, count=count, names=names, threshold=peer_feedback.ANONYMOUS_THRESHOLD))
    if result.already:
        key = "peerfb.already_asked" if result.already_waiting else "peerfb.already_asked_before"
        lines.append(t(key, locale, names=_listed([p.name for p in result.already], locale)))
    tone = Tone.SUCCESS if result.made else Tone.PLAIN
    return [*result.out, ctx.replies(Message(text="\n".join(lines), tone=tone))]


# ---- who --------------------------------------------------------------------------------------------


async def _person_at(
    ctx: CommandContext, words: list[str], i: int
) -> tuple[PersonRow | Ambiguous | None, int]:
    """The person the mention at ``words[i]`` names, and the index of the first word after it.

    A name with a space may arrive as two words ("@Emma Smith"): when the first alone names nobody
    or several, it is tried with the next words; when it names someone, the rest of their name is
    skipped if it follows.
    """
    found = await resolve(ctx.session, words[i])
    if not isinstance(found, PersonRow):
        for extra in (1, 2):
            if i + extra >= len(words) or is_mention(words[i + extra]):
                break
            longer = await resolve(ctx.session, " ".join(words[i : i + extra + 1]))
            if isinstance(longer, PersonRow):
                return longer, i + extra + 1
        return found, i + 1
    typed = words[i].strip().removeprefix("@").casefold()
    name = found.name.split()
    rest = [w.casefold() for w in name[1:]]
    following = [w.casefold() for w in words[i + 1 : i + 1 + len(rest)]]
    if rest and name[0].casefold() == typed and following == rest:
        return found, i + 1 + len(rest)
    return found, i + 1


def _who(ctx: CommandContext, mention: str, found: PersonRow | Ambiguous | None) -> list[Outgoing]:
    if isinstance(found, Ambiguous):
        names = _listed(list(found.names), ctx.person.locale)
        return ctx.say("peerfb.who_ambiguous", Tone.ERROR, mention=mention[:80], names=names)
    return ctx.say("peerfb.who_unknown", Tone.ERROR, mention=mention[:80])
