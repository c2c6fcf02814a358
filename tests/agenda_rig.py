"""Fixture data for 1:1 agenda tests: submitted (or missed) check-ins, task items, action items, key
events and past 1:1s, written the way the product writes them, into a running ``Chat``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import update

from conversations import agenda_service
from conversations.agenda import AgendaSettings
from conversations.ritual_loader import digest
from storage import people
from storage.clock import utcnow
from storage.cycles import ensure_ritual_definition
from storage.models import ActionItem, Answer, Assignment, Cycle, KeyEvent, OneOnOne, Person
from storage.tasks import AssigneeRow, insert_items, replace_assignees
from tests.harness import Chat

BROWSE = "https://acme.atlassian.net/browse/"
# the harness's clock starts on Friday 27 November 2026, 08:00 UTC
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
# ISO week → its Friday (the recap's due day) in 2026
WEEKS = {f"2026-W{w}": datetime(2026, 1, 2, 12, tzinfo=UTC) + timedelta(weeks=w - 1) for w in range(40, 53)}


def utc(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def person_id(chat: Chat, email: str) -> int:
    return int(await chat.scalar("select id from person where email = :e", e=email))


async def add_checkin(
    chat: Chat,
    email: str,
    ritual_key: str,
    period: str,
    answers: dict[str, Any],
    *,
    due: datetime,
    submitted: bool = True,
) -> None:
    """``email``'s own part of ``ritual_key`` for ``period``: submitted with ``answers``, or missed."""
    assert chat.app is not None
    ritual = chat.app.catalog.get(ritual_key)
    pid = await person_id(chat, email)
    async with chat.app.db.sessions() as session, session.begin():
        ritual_id = await ensure_ritual_definition(
            session, key=ritual.key, digest=digest(ritual), body=ritual.model_dump(mode="json", by_alias=True)
        )
        opened = due - timedelta(days=3)
        cycle = Cycle(
            ritual_key=ritual_key,
            ritual_id=ritual_id,
            period=period,
            status="closed" if due < utcnow() else "open",
            due_at=due,
            created_at=opened,
        )
        session.add(cycle)
        await session.flush()
        assert cycle.id is not None
        assignment = Assignment(
            cycle_id=cycle.id,
            person_id=pid,
            subject_id=pid,
            part="self",
            status="submitted" if submitted else "expired",
            created_at=opened,
            submitted_at=due - timedelta(hours=2) if submitted else None,
        )
        session.add(assignment)
        await session.flush()
        assert assignment.id is not None
        for step, value in answers.items():
            session.add(Answer(assignment_id=assignment.id, step=step, value=value, answered_at=opened))


async def add_weekly(chat: Chat, email: str, period: str, **answers: Any) -> None:
    await add_checkin(chat, email, "weekly_recap", period, answers, due=WEEKS[period])


async def miss_weekly(chat: Chat, email: str, period: str) -> None:
    await add_checkin(chat, email, "weekly_recap", period, {}, due=WEEKS[period], submitted=False)


def item(
    external_id: str,
    title: str,
    status: str,
    updated: datetime,
    *,
    key: str | None = None,
    completed: datetime | None = None,
    due: datetime | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """One stored item, as a sync writes it (Jira's project key is its container)."""
    return {
        "external_id": external_id,
        "scope": "test",
        "external_key": key,
        "url": BROWSE + key if key else None,
        "title": title,
        "item_type": "task",
        "status_raw": {"done": "Done", "in_progress": "In Progress"}.get(status, "To Do"),
        "status_category": status,
        "created_at": updated,
        "updated_at": updated,
        "due_at": due,
        "due_all_day": due is not None,
        "completed_at": completed,
        "container": project or (key.rsplit("-", 1)[0] if key else None),
        "estimate_points": None,
        "iteration": None,
        "labels": [],
        "content_hash": external_id,
        "raw": {},
    }


async def add_items(chat: Chat, email: str, *items: dict[str, Any], source: str = "jira") -> None:
    """Store ``items`` of ``source`` assigned to ``email``, as the sync would."""
    assert chat.app is not None
    pid = await person_id(chat, email)
    async with chat.app.db.sessions() as session, session.begin():
        ids = await insert_items(session, source=source, tenant="t", rows=list(items), now=utcnow())
        who = AssigneeRow(source_user_id=f"{source}-{pid}", display_name=email, email=email, person_id=pid)
        await replace_assignees(
            session, source=source, tenant="t", assignees={i: [who] for i in ids.values()}
        )


async def add_meeting(
    chat: Chat,
    manager: str,
    report: str,
    at: datetime,
    *,
    topics: tuple[str, ...] = (),
    recorded: bool = True,
) -> int:
    """A past 1:1 of the pair (its agenda suggested ``topics``), as recorded."""
    assert chat.app is not None
    mid, rid = await person_id(chat, manager), await person_id(chat, report)
    async with chat.app.db.sessions() as session, session.begin():
        meeting = OneOnOne(
            manager_id=mid,
            report_id=rid,
            scheduled_at=at,
            agenda={"topics": [{"rule": t, "topic": t} for t in topics]},
            recorded_at=at + timedelta(hours=1) if recorded else None,
            created_at=at,
        )
        session.add(meeting)
        await session.flush()
        assert meeting.id is not None
        return meeting.id


async def add_action(
    chat: Chat,
    manager: str,
    report: str,
    text: str,
    *,
    due: date | None,
    owner: str | None = None,
    done: bool = False,
) -> None:
    """An action item from a past 1:1 of the pair (one meeting row per item: the rows do not matter)."""
    assert chat.app is not None
    meeting = await add_meeting(chat, manager, report, utc(11, 1))
    oid = await person_id(chat, owner or report)
    async with chat.app.db.sessions() as session, session.begin():
        session.add(
            ActionItem(
                one_on_one_id=meeting,
                report_id=await person_id(chat, report),
                owner_id=oid,
                text=text,
                due_on=due,
                done_at=utc(11, 10) if done else None,
                created_at=utc(11, 1),
            )
        )


async def add_event(chat: Chat, subject: str, author: str, text: str, at: datetime) -> None:
    assert chat.app is not None
    sid, aid = await person_id(chat, subject), await person_id(chat, author)
    async with chat.app.db.sessions() as session, session.begin():
        session.add(KeyEvent(subject_id=sid, author_id=aid, text=text, created_at=at))


async def joined(chat: Chat, email: str, at: datetime) -> None:
    """``email`` entered the org data at ``at``."""
    assert chat.app is not None
    table = Person.__table__  # type: ignore[attr-defined]
    async with chat.app.db.sessions() as session, session.begin():
        await session.execute(update(table).where(table.c.email == email).values(created_at=at))


async def prepared(
    chat: Chat, email: str, *, sources: tuple[str, ...] = ("jira",), settings: AgendaSettings | None = None
) -> agenda_service.Prepared:
    """The agenda about ``email`` at the clock's time, for their manager."""
    assert chat.app is not None
    async with chat.app.db.sessions() as session:
        person = await people.by_email(session, email=email)
        assert person is not None
        found = await agenda_service.prepare(
            session, person=person, now=utcnow(), sources=sources, settings=settings or AgendaSettings()
        )
    assert found is not None
    return found


async def topics(chat: Chat, email: str, locale: str, **kwargs: Any) -> list[tuple[str, str]]:
    """(topic, reason) of the agenda about ``email``, worded in ``locale``."""
    agenda = await prepared(chat, email, **kwargs)
    return [(t.text, t.reason) for t in agenda.texts(locale)]
