"""360 micro-feedback: the rules for giving and asking, who is told, and who may read what.

Anyone gives a colleague 1–3 items of at most 280 characters, named or anonymous, or asks up to 5
colleagues for some. The recipient, their manager chain and HR read it (``conversations.permissions``
decides, as for every part of a record). Anonymous feedback never shows who gave it, and shows
nothing at all before at least ``ANONYMOUS_THRESHOLD`` different people have given the recipient
anonymous feedback: with fewer, the recipient could tell who said what. Once shown, anonymous items
are ordered by their text, never by time or giver, so the order gives nobody away. The giver always
sees what they gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conversations import mentions, permissions, vagueness
from conversations.i18n import t
from conversations.messages import Message, Tone
from conversations.outgoing import Outgoing
from conversations.periods import local_date
from conversations.timing import Timing
from storage import peer_feedback as store
from storage import people
from storage.clock import utcnow
from storage.people import PersonRow

MAX_ITEMS = 3
MAX_ITEM_CHARS = 280
MAX_ASKED = 5
ANONYMOUS_THRESHOLD = 3
# how much of a long history a view reads and shows (items are short; a screen is not)
_READ_LIMIT = 200
_SHOWN_NAMED = 20
_SHOWN_ANONYMOUS = 30

# "- item", "• item", "1. item", "2) item", "3、item", "(4) item": a list marker, not the item's text
# ("-5% latency" and "3.5x faster" keep theirs: a marker is followed by a space or is Chinese)
_BULLET = re.compile(r"^\s*(?:[-*]\s+|[•·●▪]\s*|\d{1,2}[.)．]\s+|\d{1,2}、\s*|[（(]\d{1,2}[)）]\s*)")
_SEMICOLON = re.compile(r"[;；]")


def split_items(body: str) -> list[str]:
    """The items of a feedback text: one per line, or (on one line) separated by ``;`` / ``；``."""
    lines = [line for line in body.splitlines() if line.strip()]
    parts = _SEMICOLON.split(lines[0]) if len(lines) == 1 else lines
    items = [_BULLET.sub("", part, count=1).strip() for part in parts]
    return [item for item in items if item]


@dataclass(frozen=True)
class ItemsProblem:
    """Why items cannot be stored: an i18n key and the values it names."""

    key: str
    values: dict[str, object]


def items_problem(items: list[str]) -> ItemsProblem | None:
    """What breaks the rules (none, more than 3, one longer than 280 characters), or None."""
    if not items:
        return ItemsProblem("peerfb.no_items", {})
    if len(items) > MAX_ITEMS:
        return ItemsProblem("peerfb.too_many", {"count": len(items), "limit": MAX_ITEMS})
    for index, item in enumerate(items, start=1):
        if len(item) > MAX_ITEM_CHARS:
            return ItemsProblem(
                "peerfb.too_long", {"index": index, "length": len(item), "limit": MAX_ITEM_CHARS}
            )
    return None


# ---- giving ---------------------------------------------------------------------------------------


@dataclass
class Given:
    """What giving feedback did: the row, the request it answered, who to tell, what to say."""

    feedback: store.FeedbackRow
    request: store.RequestRow | None
    vague: list[int]  # 1-based numbers of the items that read as general
    anonymous_visible: bool  # anonymous, and the recipient can read it now
    anonymous_by_request: bool  # anonymous because the request asked for it
    out: list[Outgoing] = field(default_factory=list)


async def give(
    session: AsyncSession,
    *,
    giver: PersonRow,
    recipient: PersonRow,
    items: list[str],
    anonymous: bool,
    timing: Timing,
) -> Given:
    """Store valid items (``items_problem`` returned None) and queue what the recipient is told.

    An open request from the recipient to the giver is answered by it; a request for anonymous
    feedback makes the answer anonymous. Named feedback tells the recipient at once (in their working
    hours); anonymous feedback tells them only once the threshold is met.
    """
    request = (await store.open_requests(session, requester_id=recipient.id, asked_ids=[giver.id])).get(
        giver.id
    )
    by_request = request is not None and request.anonymous and not anonymous
    anonymous = anonymous or by_request
    verdicts = [vagueness.assess(item) for item in items]
    stored = [{"text": item, "specific": v.specific} for item, v in zip(items, verdicts, strict=True)]
    new_giver = anonymous and not await store.gave_anonymously(
        session, giver_id=giver.id, recipient_id=recipient.id
    )
    row = await store.add_feedback(
        session,
        giver_id=giver.id,
        recipient_id=recipient.id,
        items=stored,
        anonymous=anonymous,
        request_id=request.id if request else None,
    )
    if request is not None:
        await store.answer_request(session, request_id=request.id)
    given = Given(
        feedback=row,
        request=request,
        vague=[i for i, v in enumerate(verdicts, start=1) if not v.specific],
        anonymous_visible=False,
        anonymous_by_request=by_request,
    )
    due_at = timing.allowed_from(recipient, utcnow(), workdays=True)
    if not anonymous:
        text = t("peerfb.notify_named", recipient.locale, giver=giver.name, items=_bullets(items))
        message = Message(text=text, hint=t("peerfb.notify_hint", recipient.locale), tone=Tone.PLAIN)
        given.out.append(
            Outgoing(recipient.id, f"pfb{row.id}:recipient", message, kind="notice", due_at=due_at)
        )
        return given
    givers = await store.anonymous_givers(session, recipient_id=recipient.id)
    given.anonymous_visible = givers >= ANONYMOUS_THRESHOLD
    if not given.anonymous_visible:
        return given
    if new_giver and givers == ANONYMOUS_THRESHOLD:
        # the moment it becomes readable: once per recipient, whichever giver tips it over
        key, text_key = f"pfb:r{recipient.id}:anonymous-ready", "peerfb.notify_anonymous_ready"
    else:
        # later anonymous feedback: at most one notice a day, so its timing points at nobody in particular
        key = f"pfb:r{recipient.id}:anonymous:{local_date(due_at, recipient.timezone)}"
        text_key = "peerfb.notify_anonymous_new"
    text = t(text_key, recipient.locale, threshold=ANONYMOUS_THRESHOLD)
    given.out.append(Outgoing(recipient.id, key, Message(text=text), kind="notice", due_at=due_at))
    return given


def _bullets(items: list[str]) -> str:
    return "\n".join(f"• {item}" for item in items)


# ---- asking ---------------------------------------------------------------------------------------


@dataclass
class Asked:
    """What asking did: the new requests, the people not asked again, the messages to send.

    ``already_waiting``: everyone in ``already`` has an open request and no anonymous request is
    involved, so the reply may say it still waits for them; otherwise it says only that they were
    asked before (whether they answered an anonymous request is not the requester's to learn).
    """

    made: list[tuple[PersonRow, store.RequestRow]] = field(default_factory=list)
    already: list[PersonRow] = field(default_factory=list)
    already_waiting: bool = True
    out: list[Outgoing] = field(default_factory=list)


async def ask(
    session: AsyncSession,
    *,
    requester: PersonRow,
    asked: list[PersonRow],
    anonymous: bool,
    timing: Timing,
) -> Asked:
    """Ask each of ``asked`` (distinct, at most ``MAX_ASKED``, not the requester) for feedback.

    Someone already asked and not yet answering is not asked again (nor messaged twice). Whether
    someone answered an anonymous request must not show, so nobody the requester ever asked
    anonymously is asked again, and an anonymous request goes to nobody asked before at all
    (answered or not): who is asked anew then depends on earlier requests only, never on answers.
    """
    result = Asked()
    ids = [p.id for p in asked]
    waiting = await store.open_requests(session, requester_id=requester.id, asked_ids=ids)
    earlier = await _asked_before(session, requester_id=requester.id, asked_ids=ids)

    def repeated(person: PersonRow) -> bool:
        if person.id in waiting:
            return True
        return person.id in earlier and (anonymous or earlier[person.id])

    fresh = [p for p in asked if not repeated(p)]
    result.already = [p for p in asked if repeated(p)]
    result.already_waiting = not anonymous and not any(earlier.get(p.id) for p in result.already)
    made = await store.add_requests(
        session, requester_id=requester.id, asked_ids=[p.id for p in fresh], anonymous=anonymous
    )
    handle = await mention_for(session, requester) if fresh else ""
    now = utcnow()
    for person, request in zip(fresh, made, strict=True):
        result.made.append((person, request))
        locale = person.locale
        text = t(
            "peerfb.ask_message",
            locale,
            name=requester.name,
            items=MAX_ITEMS,
            chars=MAX_ITEM_CHARS,
            example=t("peerfb.ask_example", locale, handle=handle),
        )
        if anonymous:
            text += "\n" + t(
                "peerfb.ask_anonymous", locale, name=requester.name, threshold=ANONYMOUS_THRESHOLD
            )
        message = Message(title=t("peerfb.ask_title", locale), text=text, tone=Tone.PROMPT)
        due_at = timing.allowed_from(person, now, workdays=True)
        result.out.append(
            Outgoing(person.id, f"fbreq{request.id}:ask", message, kind="notice", due_at=due_at)
        )
    return result


async def _asked_before(session: AsyncSession, *, requester_id: int, asked_ids: list[int]) -> dict[int, bool]:
    """Each of ``asked_ids`` that ``requester_id`` ever asked (answered or not): whether anonymously
    at least once."""
    if not asked_ids:
        return {}
    r = store.R
    stmt = (
        select(r.c.asked_id, r.c.anonymous)
        .where(r.c.requester_id == requester_id, r.c.asked_id.in_(sorted(set(asked_ids))))
        .distinct()
    )
    found: dict[int, bool] = {}
    for asked_id, was_anonymous in (await session.execute(stmt)).all():
        found[asked_id] = found.get(asked_id, False) or bool(was_anonymous)
    return found


async def mention_for(session: AsyncSession, person: PersonRow) -> str:
    """The shortest ``@…`` that names ``person`` alone: their name, their email's local part, or the email."""
    candidates = [person.name] if person.name and not any(c.isspace() for c in person.name) else []
    candidates.append(person.email.split("@", 1)[0])
    for word in candidates:
        found = await mentions.resolve(session, f"@{word}")
        if isinstance(found, PersonRow) and found.id == person.id:
            return f"@{word}"
    return f"@{person.email}"


# ---- reading --------------------------------------------------------------------------------------


class Access(StrEnum):
    """Why a viewer sees what ``received_for`` returns."""

    RECIPIENT = "recipient"  # their own feedback
    MANAGER_CHAIN = "manager_chain"  # the recipient's manager, that manager's manager, …
    HR = "hr"
    GIVER = "giver"  # nobody of the above, but gave the recipient feedback: sees only their own
    NONE = "none"  # nothing to see


@dataclass(frozen=True)
class ShownItem:
    """One item as a viewer sees it; ``mine``: the viewer gave it."""

    text: str
    specific: bool
    mine: bool = False


@dataclass(frozen=True)
class ShownFeedback:
    """One piece of named feedback: who gave it, on what day (the viewer's), its items."""

    giver: str
    given_on: str
    items: tuple[ShownItem, ...]
    mine: bool = False


@dataclass(frozen=True)
class ReceivedFeedback:
    """The feedback a person received, as one viewer may see it.

    ``named``: newest first, with giver and date. ``anonymous``: without names or dates, ordered by
    text; empty until at least ``ANONYMOUS_THRESHOLD`` people gave anonymous feedback (except what
    the viewer gave), and ``waiting`` counts the items held back until then. ``besides_viewer``: the
    viewer gave anonymous feedback too, so the threshold counts the others only. ``text``: all of it
    written out in the locale asked for ("" when there is nothing the viewer may see).
    """

    recipient_id: int
    access: Access
    named: tuple[ShownFeedback, ...] = ()
    anonymous: tuple[ShownItem, ...] = ()
    waiting: int = 0
    text: str = ""
    besides_viewer: bool = False

    @property
    def allowed(self) -> bool:
        """Whether the viewer may read this person's feedback (not only what they gave themself)."""
        return self.access in (Access.RECIPIENT, Access.MANAGER_CHAIN, Access.HR)

    @property
    def empty(self) -> bool:
        """Nothing to show, not even a waiting line."""
        return not (self.named or self.anonymous or self.waiting)


async def received_for(
    session: AsyncSession, *, recipient_id: int, viewer_id: int, locale: str
) -> ReceivedFeedback:
    """The feedback ``recipient_id`` received, as ``viewer_id`` may see it, written in ``locale``.

    The recipient, their manager chain and HR see all named feedback and the anonymous feedback
    under the threshold rule (a viewer who gave anonymous feedback too is not counted: the others'
    items need ``ANONYMOUS_THRESHOLD`` givers besides them); anyone else sees only what they gave the
    recipient (``Access.GIVER``) or nothing (``Access.NONE``). Reading is not audited here: the record
    view audits reads of someone else's record, and ``feedback`` only ever shows a person their own.
    """
    viewer = await people.by_id(session, person_id=viewer_id)
    subject = await people.by_id(session, person_id=recipient_id)
    if viewer is None or subject is None or not viewer.active:
        return ReceivedFeedback(recipient_id, Access.NONE)
    access = await _access(session, viewer, subject)
    rows = await store.received(session, recipient_id=recipient_id, limit=_READ_LIMIT)
    if access is Access.NONE:
        if not any(r.giver_id == viewer.id for r in rows):
            return ReceivedFeedback(recipient_id, Access.NONE)
        access = Access.GIVER
    besides_viewer = False
    if access is Access.GIVER:
        rows = [r for r in rows if r.giver_id == viewer.id]
        threshold_met = True  # what they gave themself hides nobody from them
    else:
        # a reader who gave anonymous feedback themself (a manager, HR) knows their own items: the
        # others' hide among enough people only when the threshold is met without them
        counted = await store.anonymous_givers(session, recipient_id=recipient_id)
        besides_viewer = await store.gave_anonymously(session, giver_id=viewer.id, recipient_id=recipient_id)
        threshold_met = counted - (1 if besides_viewer else 0) >= ANONYMOUS_THRESHOLD
    names = {p.id: p.name for p in await people.by_ids(session, person_ids=[r.giver_id for r in rows])}
    named: list[ShownFeedback] = []
    anonymous: list[ShownItem] = []
    waiting = 0
    for row in rows:
        mine = row.giver_id == viewer.id
        items = tuple(_shown(item, mine) for item in row.items)
        if not row.anonymous:
            day = local_date(row.created_at, viewer.timezone)
            named.append(ShownFeedback(names.get(row.giver_id, "?"), day, items, mine))
        elif threshold_met or mine:
            anonymous.extend(items)
        else:
            waiting += len(items)
    # by text, so neither the time nor the giver can be read from where an item stands
    anonymous.sort(key=lambda item: (item.text.casefold(), item.text))
    shown = ReceivedFeedback(
        recipient_id, access, tuple(named), tuple(anonymous), waiting, besides_viewer=besides_viewer
    )
    return replace(shown, text=render(shown, locale, subject.name))


async def _access(session: AsyncSession, viewer: PersonRow, subject: PersonRow) -> Access:
    if viewer.id == subject.id:
        return Access.RECIPIENT
    chain = await permissions.chain_of(session, subject)
    if not permissions.can_read(viewer, subject, permissions.RecordKind.PEER_FEEDBACK, chain=chain):
        return Access.NONE
    # both above them and HR: the manager chain is the closer reason
    return Access.MANAGER_CHAIN if viewer.id in chain else Access.HR


def _shown(item: object, mine: bool) -> ShownItem:
    if isinstance(item, dict):
        return ShownItem(str(item.get("text", "")), bool(item.get("specific", False)), mine)
    return ShownItem(str(item), False, mine)  # a bare string: not what we store, but readable


def render(received: ReceivedFeedback, locale: str, recipient_name: str) -> str:
    """The feedback written out: named pieces with giver and date, then anonymous items, then what waits."""
    if received.access is Access.NONE or received.empty:
        return ""
    lines: list[str] = []
    if received.access is Access.GIVER:
        lines.append(t("peerfb.own_only", locale, name=recipient_name))
    for piece in received.named[:_SHOWN_NAMED]:
        giver = t("peerfb.you", locale) if piece.mine else piece.giver
        lines.append(t("peerfb.from_line", locale, giver=giver, date=piece.given_on))
        lines.extend(_item_line(item, locale) for item in piece.items)
    if len(received.named) > _SHOWN_NAMED:
        lines.append(t("peerfb.more_named", locale, count=len(received.named) - _SHOWN_NAMED))
    if received.anonymous:
        lines.append(t("peerfb.anonymous_head", locale))
        lines.extend(_item_line(item, locale) for item in received.anonymous[:_SHOWN_ANONYMOUS])
        if len(received.anonymous) > _SHOWN_ANONYMOUS:
            lines.append(t("peerfb.more_anonymous", locale, count=len(received.anonymous) - _SHOWN_ANONYMOUS))
    if received.waiting:
        if received.besides_viewer:
            one, many = "peerfb.waiting_one_besides_you", "peerfb.waiting_many_besides_you"
        else:
            one, many = "peerfb.waiting_one", "peerfb.waiting_many"
        key = one if received.waiting == 1 else many
        lines.append(t(key, locale, count=received.waiting, threshold=ANONYMOUS_THRESHOLD))
    return "\n".join(lines)


def _item_line(item: ShownItem, locale: str) -> str:
    return f"  • {item.text}" + (f" {t('peerfb.yours', locale)}" if item.mine else "")


async def given_by(session: AsyncSession, *, giver: PersonRow, locale: str) -> str:
    """What ``giver`` gave, newest first, written out ("" when nothing)."""
    rows = await store.given(session, giver_id=giver.id, limit=_SHOWN_NAMED)
    names = {p.id: p.name for p in await people.by_ids(session, person_ids=[r.recipient_id for r in rows])}
    lines: list[str] = []
    for row in rows:
        key = "peerfb.given_line_anonymous" if row.anonymous else "peerfb.given_line"
        day = local_date(row.created_at, giver.timezone)
        lines.append(t(key, locale, name=names.get(row.recipient_id, "?"), date=day))
        lines.extend(_item_line(_shown(item, False), locale) for item in row.items)
    return "\n".join(lines)
