"""HR's monthly quality sample of 1:1 records: draw it (seeded, reproducible), send the cards, take scores.

Each month a share (``QUALITY_SAMPLE_SHARE``, 10 %) of the month's 1:1 records is drawn and sent to
the HR admins, round-robin, as a card showing the record (manager, report, feedback items, action
items) with buttons 1–5. The draw is ``random.Random(f"{seed}:{month}")`` over the month's record ids
sorted, so the same seed (``QUALITY_SAMPLE_SEED``) and month always pick the same records from the
same records: an auditor can redraw it. It picks at least one record when the month has any.

A record's month is the month it was recorded in (``OneOnOne.recorded_at``), in its manager's time
zone: the manager wrote it on their day, as the figures (``conversations.hr_figures``) count it.

A sample is drawn once per month: ``QualityReview`` is unique on (record, month), and a month that has
review rows is not drawn again, so running the job twice (a restart, a second leader) is a no-op even
if records of the month were added in between.

Scoring: a click on a score stores it (score, scored_at, and reviewer_id becomes whoever scored it);
the card is updated to show it, and the next message the reviewer types within ``COMMENT_WINDOW`` is
the comment ("skip" leaves it empty). Where buttons don't exist, "#ID 4 comment" scores card #ID in
one message (a bare "4 comment" does when only one card waits). A second score finds one stored and
says so; anyone but an HR admin is refused, and the attempt is audited.

The model has no "waiting for a comment" column: a scored review whose comment is NULL, scored within
the window, is one. An empty comment ("") is "no comment, on purpose".
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.answers import small_number
from conversations.control import Control, parse_control
from conversations.i18n import t
from conversations.messages import Action, Button, Field_, Message, Tone
from conversations.outgoing import Outgoing, PersonContext, Replies, outbox_rows
from conversations.timing import ANYTIME, Timing
from storage import audit, outbox, people
from storage import quality_reviews as store
from storage.clock import utcnow
from storage.engine import Database
from storage.people import PersonRow
from storage.quality_reviews import RecordContent, Review

log = logging.getLogger(__name__)

DEFAULT_SHARE = 0.10
# the step a quality card's buttons carry (``Action.assignment_id`` is then the review's id): the router
# hands such a click to ``on_action`` instead of the ritual engine
ACTION_STEP = "quality_review"
SCORES = (1, 2, 3, 4, 5)
COMMENT_WINDOW = timedelta(hours=24)
MAX_COMMENT_CHARS = 2000
_INT32 = 2**31  # QualityReview.seed is an integer column
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# "#12 4 concrete examples", "# 12 4", "＃１２ ４": a score for card #12, with a comment or not (matched on
# the text as typed, not NFKC-normalised, so the comment keeps its full-width punctuation; ``\d`` and
# ``int`` take full-width digits as they are)
_TYPED = re.compile(r"^[#＃]\s*(\d{1,9})\s+(\d{1,3})(?:\s+(.*))?$", re.DOTALL)
# "4" or "4 concrete examples": a score for the one card waiting
_BARE = re.compile(r"^(\d)(?:\s+(.*))?$", re.DOTALL)
_KINDS = ("strength", "improvement", "resource")
_LISTED = 100  # "you have N cards waiting" counts this far
_WARNED: set[str] = set()  # months whose sample waits for an HR admin, already logged


def sample(records: list[int], *, month: str, share: float = DEFAULT_SHARE, seed: int) -> list[int]:
    """The records (ids) drawn for ``month``: ``share`` of them rounded up, at least one when there are
    any, the same ones for the same ids, seed and month. Sorted."""
    if not 0 < share <= 1:
        raise ValueError(f"the sample share must be above 0 and at most 1, not {share}")
    ids = sorted(set(records))
    if not ids:
        return []
    # rounded to 9 places first: 0.1 * 30 is 3.0000000000000004 in floating point, and 3 is meant
    wanted = min(len(ids), max(1, math.ceil(round(len(ids) * share, 9))))
    return sorted(random.Random(f"{seed}:{month}").sample(ids, wanted))


def month_days(month: str) -> tuple[date, date]:
    """The first day of ``month`` ("2026-11") and the first day after it."""
    match = _MONTH.match(month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"not a month (YYYY-MM): {month!r}")
    first = date(int(match.group(1)), int(match.group(2)), 1)
    return first, (first + timedelta(days=32)).replace(day=1)


def previous_month(day: date) -> str:
    """The month before the one ``day`` is in, as "YYYY-MM"."""
    last = day.replace(day=1) - timedelta(days=1)
    return f"{last.year}-{last.month:02d}"


def local_day(moment: datetime, timezone: str) -> date:
    """The day ``moment`` falls on in ``timezone`` (UTC for a zone nobody knows)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).date()


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def _reviewer_for(index: int, record: store.RecordedOneOnOne, reviewers: list[PersonRow]) -> PersonRow:
    """Round-robin, passing over a reviewer who is the record's manager or report (nobody scores a 1:1
    they were in) unless every reviewer was."""
    for step in range(len(reviewers)):
        candidate = reviewers[(index + step) % len(reviewers)]
        if candidate.id not in (record.manager_id, record.report_id):
            return candidate
    return reviewers[index % len(reviewers)]


def card_key(month: str, record_id: int) -> str:
    """The outbox key of a record's card (its updates add a suffix)."""
    return f"quality:{month}:{record_id}"


@dataclass(frozen=True)
class SampleResult:
    """What a monthly run found and did."""

    month: str
    seed: int
    share: float
    records: int  # 1:1 records of the month
    sampled: tuple[int, ...]  # the records drawn (ids), also when drawn by an earlier run
    created: int  # review rows (and cards) made by this run; 0 on a re-run
    reviewers: int


async def sample_month(
    session: AsyncSession,
    *,
    month: str,
    seed: int,
    share: float = DEFAULT_SHARE,
    reviewers: list[PersonRow] | None = None,
    timing: Timing = ANYTIME,
    now: datetime | None = None,
) -> tuple[SampleResult, list[Outgoing]]:
    """Draw ``month``'s sample in the caller's transaction: review rows and a card per record.

    ``reviewers``: the HR admins to send cards to (None: every active HR admin, by id).
    """
    if not -_INT32 <= seed < _INT32:
        raise ValueError(f"the sample seed must fit in 32 bits, not {seed}")
    now = now or utcnow()
    first, after = month_days(month)
    # a day either side holds every time zone's version of the month (UTC-12 to UTC+14)
    found = await store.recorded_between(
        session, start=_midnight(first - timedelta(days=1)), end=_midnight(after + timedelta(days=1))
    )
    records = {r.id: r for r in found if first <= local_day(r.recorded_at, r.manager_timezone) < after}
    if await store.month_sampled(session, month=month):
        drawn = tuple(r.one_on_one_id for r in await store.for_month(session, month=month))
        return SampleResult(month, seed, share, len(records), drawn, 0, 0), []
    picked = sample(list(records), month=month, share=share, seed=seed)
    team = list(reviewers) if reviewers is not None else await people.hr_admins(session)
    if not picked or not team:
        if picked and month not in _WARNED:  # the scheduler asks every tick: said once per process
            _WARNED.add(month)
            log.warning(
                "quality sample of %s: %d records to sample but no HR admin to review them",
                month,
                len(picked),
            )
        return SampleResult(month, seed, share, len(records), (), 0, len(team)), []
    assigned = {record: _reviewer_for(i, records[record], team) for i, record in enumerate(picked)}
    created = await store.create_reviews(
        session,
        month=month,
        seed=seed,
        picks=[(record, reviewer.id) for record, reviewer in assigned.items()],
        sent_at=now,
    )
    out: list[Outgoing] = []
    for record, review_id in sorted(created.items()):
        content = await store.record_content(session, one_on_one_id=record)
        reviewer = assigned[record]
        if content is None:  # written in this very transaction: cannot be gone
            continue
        message = card(content, review_id=review_id, month=month, reader=reviewer)
        due = timing.allowed_from(reviewer, now, workdays=True)
        out.append(Outgoing(reviewer.id, card_key(month, record), message, kind="quality_review", due_at=due))
        # the card shows the reviewer someone's 1:1 record: a read of another person's record
        await audit.write(
            session,
            actor_id=reviewer.id,
            action="record.read",
            subject_id=content.report_id,
            detail={"via": "quality_review", "kinds": ["one_on_one_notes"], "record": record, "month": month},
        )
    await audit.write(
        session,
        actor_id=None,
        action="quality.sample",
        detail={"month": month, "seed": seed, "share": share, "records": len(records), "sampled": picked},
    )
    result = SampleResult(month, seed, share, len(records), tuple(picked), len(created), len(team))
    return result, out


async def run_monthly(
    db: Database,
    *,
    month: str,
    seed: int,
    share: float = DEFAULT_SHARE,
    reviewers: list[PersonRow] | None = None,
    platform: str,
    timing: Timing = ANYTIME,
    now: datetime | None = None,
) -> SampleResult:
    """Draw ``month``'s sample and queue its cards on ``platform``, in one transaction."""
    async with db.sessions() as session, session.begin():
        result, out = await sample_month(
            session, month=month, seed=seed, share=share, reviewers=reviewers, timing=timing, now=now
        )
        await outbox.enqueue(session, rows=outbox_rows(out, platform=platform))
    if result.created:
        log.info(
            "quality sample of %s: %d of %d records sent to %d reviewers",
            month, result.created, result.records, result.reviewers,
        )  # fmt: skip
    return result


def _weekday(day: date) -> bool:
    return day.weekday() < 5


def first_workday(day: date, is_workday: Callable[[date], bool] = _weekday) -> date:
    """The first workday of ``day``'s month (its first day, for a month without one)."""
    first = day.replace(day=1)
    for offset in range(31):
        candidate = first + timedelta(days=offset)
        if candidate.month != first.month:
            break
        if is_workday(candidate):
            return candidate
    return first


async def monthly_sampling_due(
    db: Database,
    now: datetime,
    *,
    seed: int,
    share: float = DEFAULT_SHARE,
    company_timezone: str,
    platform: str,
    is_workday: Callable[[date], bool] = _weekday,
    timing: Timing = ANYTIME,
) -> SampleResult | None:
    """The scheduler's job: from the first workday of a month (in the company's time zone and
    calendar), draw the previous month's sample once. None when it is not due or was drawn already.

    Cheap when there is nothing to do (one look-up along the review table's primary key), so it may
    run on every tick; a process that was down on the first workday draws the sample when it is back.
    """
    today = local_day(now, company_timezone)
    if today < first_workday(today, is_workday):
        return None
    month = previous_month(today)
    async with db.sessions() as session:
        if await store.month_sampled(session, month=month):
            return None
    result = await run_monthly(
        db, month=month, seed=seed, share=share, platform=platform, timing=timing, now=now
    )
    return result if result.created else None


# ---- the card ---------------------------------------------------------------------------------------


def _item_label(kind: str, specific: bool, locale: str) -> str:
    name = t(f"hr.kind_{kind}" if kind in _KINDS else "hr.kind_other", locale)
    return f"{name} · {t('hr.item_specific' if specific else 'hr.item_vague', locale)}"


def _action_value(action: store.Action, locale: str, timezone: str) -> str:
    if action.done_at is not None:
        return f"{action.text} ({t('hr.action_done', locale, date=local_day(action.done_at, timezone))})"
    if action.due_on is not None:
        return f"{action.text} ({t('hr.action_due', locale, date=action.due_on.isoformat())})"
    return action.text


def card(
    content: RecordContent,
    *,
    review_id: int,
    month: str,
    reader: PersonRow,
    scored: Review | None = None,
    scorer: str = "",
) -> Message:
    """The card for one sampled record: its content and, until scored, the score buttons; once scored,
    the score (by ``scorer``) and the comment instead."""
    locale, tz = reader.locale, reader.timezone
    fields = [Field_(label=_item_label(i.kind, i.specific, locale), value=i.text) for i in content.items]
    if not content.items:
        fields.append(Field_(label=t("hr.items_none_label", locale), value=t("hr.items_none", locale)))
    fields += [
        Field_(label=t("hr.action_label", locale, owner=a.owner), value=_action_value(a, locale, tz))
        for a in content.actions
    ]
    recorded = content.recorded_at or content.scheduled_at
    text = t("hr.card_text", locale, month=month, date=local_day(recorded, tz).isoformat())
    title = t("hr.card_title", locale, manager=content.manager, report=content.report)
    if scored is not None and scored.score is not None:
        # the score first: where an update shows only its first line (the console), it is what changed
        verdict = [
            Field_(
                label=t("hr.score_field", locale),
                value=t("hr.score_value", locale, score=scored.score, name=scorer),
            )
        ]
        if scored.comment:
            verdict.append(Field_(label=t("hr.comment_field", locale), value=scored.comment))
        return Message(
            title=title,
            text=text,
            fields=(*verdict, *fields),
            tone=Tone.SUCCESS,
            replaces=card_key(month, content.id),
        )
    buttons = tuple(
        Button(
            label=t(f"hr.score_{n}", locale),
            action=Action(assignment_id=review_id, step=ACTION_STEP, version=0, value=str(n)),
        )
        for n in SCORES
    )
    return Message(
        title=title,
        text=text,
        fields=tuple(fields),
        buttons=buttons,
        hint=t("hr.card_hint", locale, id=review_id),
        tone=Tone.PROMPT,
    )


# ---- scoring ----------------------------------------------------------------------------------------


def _reply(replies: Replies, key: str, locale: str, tone: Tone = Tone.PLAIN, **values: object) -> Outgoing:
    return replies(Message(text=t(key, locale, **values), tone=tone))


async def _card_update(session: AsyncSession, review_id: int, suffix: str) -> Outgoing | None:
    """The card as it stands now (score, comment), replacing the one its reviewer was sent: called only
    when whoever scored it is whom it was sent to (``reviewer_id`` is the scorer from then on)."""
    review = await store.get(session, review_id=review_id)
    if review is None:
        return None
    content = await store.record_content(session, one_on_one_id=review.one_on_one_id)
    scorer = await people.by_id(session, person_id=review.reviewer_id)
    if content is None or scorer is None:
        return None
    message = card(
        content, review_id=review.id, month=review.month, reader=scorer, scored=review, scorer=scorer.name
    )
    key = f"{card_key(review.month, review.one_on_one_id)}:{suffix}"
    return Outgoing(scorer.id, key, message, kind="update")


async def _score(
    session: AsyncSession,
    person: PersonContext,
    review: Review,
    score: int,
    comment: str | None,
    replies: Replies,
    now: datetime,
) -> list[Outgoing]:
    locale = person.locale
    content = await store.record_content(session, one_on_one_id=review.one_on_one_id)
    if content is not None and person.id in (content.manager_id, content.report_id):
        # a reviewer who was in the meeting does not score it (the draw never sends it to them)
        await audit.write(
            session,
            actor_id=person.id,
            action="quality.score.refused",
            subject_id=content.report_id,
            detail={"review": review.id, "why": "took part"},
        )
        return [_reply(replies, "hr.score_own_meeting", locale, Tone.ERROR)]
    if not await store.score(
        session, review_id=review.id, scorer_id=person.id, score=score, comment=comment, at=now
    ):
        stored = await store.get(session, review_id=review.id)
        scorer = await people.by_id(session, person_id=stored.reviewer_id) if stored else None
        name = scorer.name if scorer else "—"
        shown = stored.score if stored else "—"
        return [_reply(replies, "hr.already_scored", locale, Tone.WARNING, score=shown, name=name)]
    await audit.write(
        session,
        actor_id=person.id,
        action="quality.score",
        subject_id=content.report_id if content else None,
        detail={"review": review.id, "record": review.one_on_one_id, "month": review.month, "score": score},
    )
    out: list[Outgoing] = []
    if review.reviewer_id == person.id:  # the card in front of them now shows the score
        update = await _card_update(session, review.id, "scored")
        out += [update] if update else []
    names = (
        {"manager": content.manager, "report": content.report} if content else {"manager": "—", "report": "—"}
    )
    key = "hr.scored_ask_comment" if comment is None else "hr.scored_with_comment"
    return [*out, _reply(replies, key, locale, Tone.SUCCESS, score=score, **names)]


async def on_action(
    session: AsyncSession,
    *,
    person: PersonContext,
    action: Action,
    replies: Replies,
    now: datetime | None = None,
) -> list[Outgoing]:
    """A click on a card's score (``action.step == ACTION_STEP``; ``assignment_id`` is the review)."""
    locale = person.locale
    if not person.is_hr:
        await audit.write(
            session,
            actor_id=person.id,
            action="quality.score.refused",
            detail={"needed": "hr", "review": action.assignment_id},
        )
        return [_reply(replies, "hr.not_hr", locale, Tone.ERROR)]
    review = await store.get(session, review_id=action.assignment_id)
    score = small_number(action.value, digits=1) or 0
    if review is None or score not in SCORES:
        return [_reply(replies, "hr.review_gone", locale, Tone.WARNING, id=action.assignment_id)]
    return await _score(session, person, review, score, None, replies, now or utcnow())


async def on_text(
    session: AsyncSession,
    *,
    person: PersonContext,
    text: str,
    replies: Replies,
    now: datetime | None = None,
) -> list[Outgoing] | None:
    """A typed message from someone with no ritual conversation in progress: a score ("#12 4 comment",
    or "4 comment" with one card waiting) or the comment asked for after a score. None when it is
    neither (the caller goes on to the commands)."""
    if not person.is_hr:
        return None  # only HR admins get cards: nothing typed by anyone else is meant for one
    now = now or utcnow()
    locale = person.locale
    cleaned = text.strip()
    typed = _TYPED.match(cleaned)
    if typed is not None:
        review_id, score = int(typed.group(1)), int(typed.group(2))
        review = await store.get(session, review_id=review_id)
        if review is None:
            return [_reply(replies, "hr.review_gone", locale, Tone.WARNING, id=review_id)]
        if score not in SCORES:
            return [_reply(replies, "hr.score_range", locale, Tone.ERROR, id=review_id)]
        return await _score(session, person, review, score, _comment(typed.group(3)), replies, now)
    waiting = await store.awaiting_comment(session, reviewer_id=person.id, since=now - COMMENT_WINDOW)
    if waiting is not None:
        return await _comment_on(session, person, waiting, cleaned, replies)
    bare = _BARE.match(cleaned)
    if bare is None or int(bare.group(1)) not in SCORES:
        return None
    open_reviews = await store.unscored_for(session, reviewer_id=person.id, limit=_LISTED)
    if not open_reviews:
        return None
    if len(open_reviews) > 1:
        count = f"{len(open_reviews)}+" if len(open_reviews) == _LISTED else str(len(open_reviews))
        return [_reply(replies, "hr.which_card", locale, count=count, id=open_reviews[0].id)]
    return await _score(
        session, person, open_reviews[0], int(bare.group(1)), _comment(bare.group(2)), replies, now
    )


def _comment(raw: str | None) -> str | None:
    cleaned = (raw or "").strip()
    return cleaned[:MAX_COMMENT_CHARS] if cleaned else None


async def _comment_on(
    session: AsyncSession, person: PersonContext, review: Review, text: str, replies: Replies
) -> list[Outgoing]:
    control = parse_control(text)
    skipped = control is not None and control.control is Control.SKIP
    comment = "" if skipped else text[:MAX_COMMENT_CHARS]
    content = await store.record_content(session, one_on_one_id=review.one_on_one_id)
    names = (
        {"manager": content.manager, "report": content.report} if content else {"manager": "—", "report": "—"}
    )
    if not await store.set_comment(session, review_id=review.id, comment=comment):
        return [
            _reply(
                replies,
                "hr.already_scored",
                person.locale,
                Tone.WARNING,
                score=review.score,
                name=person.name,
            )
        ]
    if skipped:
        return [_reply(replies, "hr.comment_skipped", person.locale, Tone.SUCCESS, score=review.score)]
    await audit.write(
        session,
        actor_id=person.id,
        action="quality.comment",
        subject_id=content.report_id if content else None,
        detail={"review": review.id, "record": review.one_on_one_id, "month": review.month},
    )
    # the card is not updated again: it may have gone to another HR admin than the one who scored it
    return [_reply(replies, "hr.comment_saved", person.locale, Tone.SUCCESS, **names)]
