"""The employee record and its privacy: who may read which kind of record (the whole matrix), and
``record`` / ``record @person`` / ``档案 @张三`` end to end, with its audit trail."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

import pytest

from conversations.i18n import t
from conversations.permissions import READERS, RecordKind, Relation, can_read, readable, relations
from conversations.record_view import SECTIONS
from conversations.task_sources import TaskSources
from storage import people, record_data
from storage.clock import utcnow
from storage.models import ActionItem, KeyEvent, OneOnOne, PeerFeedback, Person
from storage.people import PersonRow
from storage.tasks import AssigneeRow, insert_items, replace_assignees
from tests.harness import EMMA, HR, LILEI, MANAGER, QUARTERLY, WEEKLY, Chat, json_value

# ---- the matrix: every role × every record kind × own / report / other ------------------------------
#
#   ceo ─┬─ mgr ─┬─ lead (a manager by the org data only: no "manager" role label) ─┬─ dev
#        │       │                                                                   └─ peer
#        │       └─ hr_in_team (HR, and mgr's report)
#        ├─ other_mgr ── outsider
#        └─ hr
#   gone (deactivated) ── orphan


def _person(pid: int, name: str, manager: int | None = None, *roles: str, active: bool = True) -> PersonRow:
    return PersonRow(
        id=pid,
        email=f"{name}@example.com",
        name=name,
        locale="en",
        timezone="UTC",
        roles=frozenset(roles or ("employee",)),
        manager_id=manager,
        active=active,
    )


CEO = _person(1, "ceo", None, "manager")
MGR = _person(2, "mgr", 1, "manager")
LEAD = _person(3, "lead", 2)
DEV = _person(4, "dev", 3)
PEER = _person(5, "peer", 3)
OTHER_MGR = _person(6, "other_mgr", 1, "manager")
OUTSIDER = _person(7, "outsider", 6)
HR_ADMIN = _person(8, "hr", 1, "hr")
HR_IN_TEAM = _person(9, "hr_in_team", 2, "hr")
GONE = _person(10, "gone", None, "manager", active=False)
ORPHAN = _person(11, "orphan", 10)
ORG = {p.id: p for p in (CEO, MGR, LEAD, DEV, PEER, OTHER_MGR, OUTSIDER, HR_ADMIN, HR_IN_TEAM, GONE, ORPHAN)}


def chain(subject: PersonRow) -> set[int]:
    """The subject's managers, walked up the fixture org (the test's own walk, not the code's)."""
    found: set[int] = set()
    boss = subject.manager_id
    while boss is not None:
        found.add(boss)
        boss = ORG[boss].manager_id
    return found


# (viewer's role, viewer, subject, what the subject is to the viewer, may the viewer read the record?)
# The rule: the person themself, their manager chain (at any depth) and HR admins read every kind;
# nobody else reads any kind; a deactivated person reads nothing.
MATRIX: list[tuple[str, PersonRow, PersonRow, str, bool]] = [
    ("employee", DEV, DEV, "own", True),
    ("employee", DEV, OUTSIDER, "other", False),
    ("employee", DEV, LEAD, "own manager", False),
    ("employee", DEV, CEO, "skip-level manager", False),
    ("peer", PEER, DEV, "other (same manager)", False),
    ("manager", LEAD, LEAD, "own", True),
    ("manager", LEAD, DEV, "direct report", True),
    ("manager", LEAD, OUTSIDER, "other", False),
    ("manager", LEAD, MGR, "own manager", False),
    ("manager", LEAD, HR_IN_TEAM, "other (HR, a peer's report)", False),
    ("manager", OTHER_MGR, DEV, "other (another team)", False),
    ("manager", OTHER_MGR, OUTSIDER, "direct report", True),
    ("skip-level manager", MGR, MGR, "own", True),
    ("skip-level manager", MGR, LEAD, "direct report", True),
    ("skip-level manager", MGR, DEV, "indirect report", True),
    ("skip-level manager", MGR, HR_IN_TEAM, "direct report (HR)", True),
    ("skip-level manager", MGR, OUTSIDER, "other", False),
    ("skip-level manager", CEO, DEV, "indirect report (3 levels)", True),
    ("skip-level manager", CEO, OUTSIDER, "indirect report", True),
    ("HR", HR_ADMIN, HR_ADMIN, "own", True),
    ("HR", HR_ADMIN, DEV, "other", True),
    ("HR", HR_ADMIN, HR_IN_TEAM, "other (HR)", True),
    ("HR", HR_ADMIN, CEO, "own manager", True),
    ("HR", HR_ADMIN, ORPHAN, "other (manager deactivated)", True),
    ("HR who is the subject's report", HR_IN_TEAM, MGR, "own manager", True),
    ("HR who is the subject's report", HR_IN_TEAM, CEO, "skip-level manager", True),
    ("HR who is the subject's report", HR_IN_TEAM, DEV, "other", True),
    ("HR who is the subject's report", HR_IN_TEAM, HR_IN_TEAM, "own", True),
    ("deactivated manager", GONE, ORPHAN, "direct report", False),
    ("deactivated manager", GONE, GONE, "own", False),
    ("employee whose manager left", ORPHAN, ORPHAN, "own", True),
    ("employee whose manager left", ORPHAN, GONE, "own manager (deactivated)", False),
]


@pytest.mark.parametrize(
    ("role", "viewer", "subject", "relation", "allowed", "kind"),
    [(*case, kind) for case, kind in itertools.product(MATRIX, RecordKind)],
    ids=[
        f"{role}-{relation}-{kind}".replace(" ", "_")
        for (role, _, _, relation, _), kind in itertools.product(MATRIX, RecordKind)
    ],
)
def test_the_permission_matrix(
    role: str, viewer: PersonRow, subject: PersonRow, relation: str, allowed: bool, kind: RecordKind
) -> None:
    assert can_read(viewer, subject, kind, chain=chain(subject)) is allowed, (role, relation, kind)


# every role against each relation it can have to a record: own, report (direct, indirect), other
_COVERED = {
    ("employee", "own"),
    ("employee", "other"),
    ("peer", "other (same manager)"),
    ("manager", "own"),
    ("manager", "direct report"),
    ("manager", "other"),
    ("skip-level manager", "own"),
    ("skip-level manager", "direct report"),
    ("skip-level manager", "indirect report"),
    ("skip-level manager", "other"),
    ("HR", "own"),
    ("HR", "other"),
    ("HR who is the subject's report", "own"),
    ("HR who is the subject's report", "own manager"),
    ("HR who is the subject's report", "other"),
}


def test_the_matrix_covers_every_role_and_relation_and_the_rule_is_the_same_for_every_kind() -> None:
    assert {(role, relation) for role, _, _, relation, _ in MATRIX} >= _COVERED
    # one rule for every kind: the person, their manager chain, HR (see conversations/permissions.py)
    assert set(READERS) == set(RecordKind)
    assert all(
        readers == {Relation.SELF, Relation.MANAGER_CHAIN, Relation.HR} for readers in READERS.values()
    )


def test_readable_is_all_or_nothing_and_relations_say_why() -> None:
    assert readable(LEAD, DEV, SECTIONS, chain=chain(DEV)) == SECTIONS
    assert readable(PEER, DEV, list(RecordKind), chain=chain(DEV)) == ()
    assert relations(HR_IN_TEAM, MGR, chain=chain(MGR)) == {Relation.HR}
    assert relations(MGR, HR_IN_TEAM, chain=chain(HR_IN_TEAM)) == {Relation.MANAGER_CHAIN}
    assert relations(HR_ADMIN, HR_ADMIN, chain=chain(HR_ADMIN)) == {Relation.SELF, Relation.HR}
    assert relations(GONE, ORPHAN, chain=chain(ORPHAN)) == frozenset()
    # the role label grants nothing: a "manager" of another team is nobody to this record
    assert "manager" in OTHER_MGR.roles and relations(OTHER_MGR, DEV, chain=chain(DEV)) == frozenset()
    # and a manager by the org data needs no label
    assert "manager" not in LEAD.roles and relations(LEAD, DEV, chain=chain(DEV)) == {Relation.MANAGER_CHAIN}


async def test_the_manager_chain_is_the_inverse_of_reports_of(chat: Chat) -> None:
    assert chat.app is not None
    async with chat.app.db.sessions() as session:
        everyone = await people.audience(session)
        below = {p.id: await people.reports_of(session, manager_id=p.id) for p in everyone}
        for person in everyone:
            above = await record_data.manager_chain(session, person_id=person.id)
            assert above == {m for m, reports in below.items() if person.id in reports}, person.email
        wang = await people.by_email(session, email=MANAGER)
        emma = await people.by_email(session, email=EMMA)
        ceo = await people.by_email(session, email="chen.jie@example.com")
        assert wang and emma and ceo
        assert await record_data.manager_chain(session, person_id=emma.id) == {wang.id, ceo.id}
        assert await record_data.has_reports(session, manager_id=wang.id)
        assert not await record_data.has_reports(session, manager_id=emma.id)


# ---- the command, end to end (SQLite and PostgreSQL) -------------------------------------------------

RAJ = "raj.patel@example.com"  # Emma's peer: same manager
CEO_EMAIL = "chen.jie@example.com"  # Emma's manager's manager
OTHER_MANAGER = "michael.brown@example.com"
LUCY = "lucy.chen@example.com"  # HR, writes in English
ALL_SECTIONS = [str(k) for k in SECTIONS]


async def _audit(chat: Chat, action: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(actor, subject, detail) of the ``action`` entries ``record`` wrote, oldest first."""
    rows = await chat.rows(
        "select actor.email, subj.email, cast(a.detail as text) from auditlog a "
        "join person actor on actor.id = a.actor_id left join person subj on subj.id = a.subject_id "
        "where a.action = :action order by a.id",
        action=action,
    )
    found = [(actor, subject, json_value(detail)) for actor, subject, detail in rows]
    return [entry for entry in found if entry[2].get("via") == "record"]


async def test_ones_own_record_is_shown_and_not_audited(chat: Chat) -> None:
    shown = await chat.say(EMMA, "record")
    assert t("record.title", "en", name="Emma Smith") in shown
    assert t("record.intro_own", "en") in shown
    for kind in SECTIONS:
        assert t(f"record.section_{kind}", "en", days=90 if kind == "key_events" else 30) in shown
    # naming oneself is the same as no name
    assert t("record.title", "en", name="Emma Smith") in await chat.say(EMMA, "record @emma.smith")
    assert await _audit(chat, "record.read") == []
    assert await _audit(chat, "record.read.refused") == []


async def test_a_manager_reads_a_reports_record_and_the_read_is_audited_with_the_kinds(chat: Chat) -> None:
    shown = await chat.say(MANAGER, "档案 @Emma")
    assert t("record.title", "zh-CN", name="Emma Smith") in shown
    assert t("record.intro_other", "zh-CN", name="Emma Smith") in shown
    assert t("record.section_key_events", "zh-CN", days=90) in shown
    assert t("record.none_key_events", "zh-CN") in shown
    assert t("record.no_task_sources", "zh-CN") in shown
    assert await _audit(chat, "record.read") == [
        (MANAGER, EMMA, {"via": "record", "kinds": ALL_SECTIONS}),
    ]


async def test_a_skip_level_manager_reads_the_record_and_the_read_is_audited(chat: Chat) -> None:
    shown = await chat.say(CEO_EMAIL, "档案 @emma.smith@example.com")
    assert t("record.title", "zh-CN", name="Emma Smith") in shown
    assert await _audit(chat, "record.read") == [(CEO_EMAIL, EMMA, {"via": "record", "kinds": ALL_SECTIONS})]


async def test_a_peer_is_refused_the_refusal_says_so_and_is_audited(chat: Chat) -> None:
    shown = await chat.say(RAJ, "record @Emma Smith")
    assert t("record.refused_unnamed", "en") in shown
    assert "Emma Smith" not in shown
    assert await _audit(chat, "record.read.refused") == [
        (RAJ, EMMA, {"via": "record", "kinds": ALL_SECTIONS, "asked": "@Emma Smith"}),
    ]
    assert await _audit(chat, "record.read") == []


async def test_an_employee_cannot_read_their_managers_record(chat: Chat) -> None:
    assert t("record.refused_unnamed", "en") in await chat.say(EMMA, "record @wang.fang")
    ((actor, subject, _),) = await _audit(chat, "record.read.refused")
    assert (actor, subject) == (EMMA, MANAGER)


async def test_a_manager_of_another_team_is_refused_by_name(chat: Chat) -> None:
    shown = await chat.say(OTHER_MANAGER, "record @Emma Smith")
    assert t("record.refused", "en", name="Emma Smith") in shown
    assert t("record.title", "en", name="Emma Smith") not in shown
    assert await _audit(chat, "record.read.refused") == [
        (OTHER_MANAGER, EMMA, {"via": "record", "kinds": ALL_SECTIONS}),
    ]


async def test_hr_reads_anyones_record_including_their_own_managers(chat: Chat) -> None:
    assert t("record.title", "en", name="李雷") in await chat.say(LUCY, "record @李雷")
    assert t("record.title", "zh-CN", name="陈杰") in await chat.say(HR, "档案 @陈杰")
    assert await _audit(chat, "record.read") == [
        (LUCY, LILEI, {"via": "record", "kinds": ALL_SECTIONS}),
        (HR, CEO_EMAIL, {"via": "record", "kinds": ALL_SECTIONS}),
    ]


async def test_unknown_and_ambiguous_mentions(chat: Chat) -> None:
    assert chat.app is not None
    async with chat.app.db.sessions() as session, session.begin():
        session.add(Person(email="emma.watson@example.com", name="Emma Watson", locale="en"))
    # someone who may read others' records is told who is unknown, and who is meant twice
    assert t("record.unknown", "zh-CN", who="@nobody") in await chat.say(MANAGER, "档案 @nobody")
    names = t("record.name_separator", "zh-CN").join(["Emma Smith", "Emma Watson"])
    assert t("record.ambiguous", "zh-CN", who="Emma", names=names) in await chat.say(MANAGER, "档案 @Emma")
    # an employee learns neither: whoever they name, the answer is the same refusal
    for asked in ("@nobody", "@Emma"):
        assert t("record.refused_unnamed", "en") in await chat.say(RAJ, f"record {asked}")
    refused = await _audit(chat, "record.read.refused")
    assert [(actor, subject, detail.get("asked")) for actor, subject, detail in refused] == [
        (RAJ, None, "@nobody"),
        (RAJ, None, "@Emma"),
    ]
    assert await _audit(chat, "record.read") == []


async def test_view_is_decided_by_the_same_rule(chat: Chat) -> None:
    assert t("cmd.not_your_report", "en", name="Emma Smith") in await chat.say(OTHER_MANAGER, f"view {EMMA}")
    assert "Emma Smith" in await chat.say(CEO_EMAIL, f"查看 {EMMA}")  # a skip-level manager, too
    reads = await chat.rows(
        "select cast(detail as text) from auditlog where action = 'record.read' order by id",
    )
    assert [json_value(d) for (d,) in reads] == [{"via": "view", "kinds": ["ritual_answers"]}]


# ---- what the record shows, of each kind ------------------------------------------------------------


def _utc(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def _task(external_id: str, title: str, status: str, updated: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "scope": "test",
        "external_key": f"PAY-{external_id}",
        "url": f"https://acme.atlassian.net/browse/PAY-{external_id}",
        "title": title,
        "item_type": "task",
        "status_raw": None,
        "status_category": status,
        "created_at": updated,
        "updated_at": updated,
        "due_at": extra.get("due"),
        "due_all_day": extra.get("due") is not None,
        "completed_at": extra.get("completed"),
        "container": None,
        "estimate_points": None,
        "iteration": None,
        "labels": [],
        "content_hash": external_id,
        "raw": {},
    }


async def _emma_on_record(chat: Chat) -> None:
    """Emma's quarterly assessment (hers and her manager's), a weekly recap, tasks, key events, a 1:1
    with action items and peer feedback; the clock stands at 2026-11-27 08:00 UTC."""
    assert chat.app is not None
    await chat.start_cycle(QUARTERLY, EMMA)
    await chat.submit_canned(QUARTERLY, EMMA)
    await chat.inbox(MANAGER)
    await chat.dialogue(
        MANAGER,
        [("4", "第 2/4 题"), ("主导了 SSO 上线", "第 3/4 题"), ("多写设计文档", "第 4/4 题")],
    )
    await chat.dialogue(MANAGER, [("跳过", "以下是你填写的全部内容"), ("提交", "已提交")])
    await chat.dialogue(HR, [(f"cycle start weekly --people {EMMA}", "周期 #2")])
    await chat.inbox(EMMA)
    await chat.submit_canned(WEEKLY, EMMA)
    ids = dict(await chat.rows("select email, id from person"))
    emma, wang, raj = ids[EMMA], ids[MANAGER], ids[RAJ]
    async with chat.app.db.sessions() as session, session.begin():
        tasks = [
            _task("1", "Fix the login redirect", "done", _utc(11, 25), completed=_utc(11, 25)),
            _task("2", "Rotate the API keys", "todo", _utc(10, 1), due=_utc(11, 10)),
            _task("3", "Archive the September reports", "done", _utc(10, 1), completed=_utc(10, 1)),
        ]
        stored = await insert_items(session, source="jira", tenant="t", rows=tasks, now=utcnow())
        who = AssigneeRow(source_user_id="jira-emma", display_name="Emma", email=EMMA, person_id=emma)
        await replace_assignees(
            session, source="jira", tenant="t", assignees={i: [who] for i in stored.values()}
        )
        session.add(
            KeyEvent(
                subject_id=emma, author_id=wang, text="Ran the SSO launch review", created_at=_utc(11, 20)
            )
        )
        session.add(
            KeyEvent(subject_id=emma, author_id=wang, text="Summer hackathon win", created_at=_utc(8, 1))
        )
        meeting = OneOnOne(manager_id=wang, report_id=emma, scheduled_at=_utc(11, 13))
        session.add(meeting)
        await session.flush()
        assert meeting.id is not None
        for owner, text, due, done in [
            (emma, "Write the SSO runbook", date(2026, 11, 20), None),
            (wang, "Ask for a second on-call engineer", date(2026, 12, 4), None),
            (wang, "Book the design review", None, _utc(11, 20)),
            (emma, "Old item done in September", None, _utc(9, 1)),
        ]:
            session.add(
                ActionItem(
                    one_on_one_id=meeting.id,
                    report_id=emma,
                    owner_id=owner,
                    text=text,
                    due_on=due,
                    done_at=done,
                )
            )
        session.add(
            PeerFeedback(
                giver_id=raj,
                recipient_id=emma,
                items=[{"text": "Your SSO rollout plan kept the launch calm", "specific": True}],
                created_at=_utc(11, 26, 3),  # the 26th in Shanghai, still the 25th in Los Angeles
            )
        )
    chat.app.engine.tasks = TaskSources(enabled=("jira",))


async def test_the_record_shows_every_kind_from_the_stored_data(chat: Chat) -> None:
    await _emma_on_record(chat)
    shown = await chat.say(LUCY, "record @Emma Smith")
    period = await chat.scalar("select period from cycle where id = 1")
    en = "en"
    expected = [
        # recent check-ins: the latest of each ritual, its first answers
        "Weekly recap",
        "What did you get done this week?: Shipped the login page",
        t("record.answers_more", en, count=3, email=EMMA),
        "Quarterly assessment",
        "What were your most important achievements this quarter?: Cut p99 latency by 40%; Launched SSO",
        # task systems: done in the last 30 days and overdue, with links
        "Fix the login redirect <https://acme.atlassian.net/browse/PAY-1>",
        "Rotate the API keys",
        t(
            "record.tasks_head",
            en,
            sources="Jira",
            period="2026-10-29 – 2026-11-27",
            done=1,
            progress=0,
            overdue=1,
        ),
        # key events of the last 90 days
        t("record.event_label", en, date="2026-11-20", author="王芳") + ": Ran the SSO launch review",
        # feedback received
        "Your SSO rollout plan kept the launch calm",
        # 1:1 action items: open (the overdue one says so), then done lately
        t("record.action_open", en, owner="Emma Smith")
        + " · "
        + t("record.action_overdue", en, date="2026-11-20")
        + ": Write the SSO runbook",
        t("record.action_open", en, owner="王芳") + " · " + t("record.action_due", en, date="2026-12-04"),
        t("record.action_done", en, date="2026-11-20", owner="王芳") + ": Book the design review",
        # assessment ratings: the person's and the manager's
        f"Quarterly assessment {period}: "
        + t("record.rating_self", en, rating="3/5 · Meets expectations")
        + "; "
        + t("record.rating_manager", en, rating="4/5 · Exceeds expectations"),
    ]
    for piece in expected:
        assert piece in shown, f"expected {piece!r} in:\n{shown}"
    for old in ("Archive the September reports", "Summer hackathon win", "Old item done in September"):
        assert old not in shown
    ((_, _, detail),) = await _audit(chat, "record.read")
    assert detail == {"via": "record", "kinds": ALL_SECTIONS}


async def test_the_record_in_chinese_for_a_manager_and_for_the_person_themself(chat: Chat) -> None:
    await _emma_on_record(chat)
    shown = await chat.say(MANAGER, "档案 @Emma")
    for piece in [
        t("record.title", "zh-CN", name="Emma Smith"),
        t("record.section_ritual_answers", "zh-CN"),
        "每周回顾",
        t("record.section_task_evidence", "zh-CN", days=30),
        "已完成 · Jira PAY-1: Fix the login redirect",
        t("record.event_label", "zh-CN", date="2026-11-20", author="王芳") + ": Ran the SSO launch review",
        t("record.feedback_from", "zh-CN", giver="Raj Patel", date="2026-11-26"),
        t("record.action_done", "zh-CN", date="2026-11-20", owner="王芳"),
        t("record.rating_self", "zh-CN", rating="3/5 · 达到期望")
        + "；"
        + t("record.rating_manager", "zh-CN", rating="4/5 · 超出期望"),
    ]:
        assert piece in shown, f"expected {piece!r} in:\n{shown}"
    # the person sees the same record of themself, in their language and time zone, unaudited
    own = await chat.say(EMMA, "record")
    assert t("record.intro_own", "en") in own
    assert t("record.rating_manager", "en", rating="4/5 · Exceeds expectations") in own
    assert t("record.feedback_from", "en", giver="Raj Patel", date="2026-11-25") in own  # Los Angeles
    assert [actor for actor, *_ in await _audit(chat, "record.read")] == [MANAGER]


async def test_each_section_is_capped_with_and_n_more(chat: Chat) -> None:
    assert chat.app is not None
    ids = dict(await chat.rows("select email, id from person"))
    async with chat.app.db.sessions() as session, session.begin():
        for day in range(1, 9):
            session.add(
                KeyEvent(
                    subject_id=ids[EMMA],
                    author_id=ids[MANAGER],
                    text=f"event {day}",
                    created_at=_utc(11, day),
                )
            )
    shown = await chat.say(EMMA, "record")
    assert "event 8" in shown and "event 4" in shown and "event 3" not in shown
    assert t("record.more", "en", count=3) in shown
