"""Who may read which part of a person's record: the one place that decides, and its audit entries.

The rule (DESIGN.md, "Least privilege"; roles come from the org data, never from a command):

- the person themself reads their whole record;
- everyone in their manager chain (their manager, that manager's manager, … : ``chain``) reads it;
- an HR admin reads everyone's;
- nobody else reads any of it, whatever their role label says (a "manager" of another team is
  nobody here), and a deactivated person reads nothing.

The rule is the same for every kind of record, on purpose, including ``one_on_one_notes`` (the
manager's record of a 1:1: strengths, improvements, resource needs). Those are the feedback the
person was given in the meeting, not a manager's private diary: HR samples them for quality reviews,
and the person seeing what was written about them is the point of the issue's "visible to the person".
A kind-specific rule would go in ``READERS`` below, and the matrix test in
``tests/test_record_permissions.py`` would have to change with it.

What each reader is shown of a kind (e.g. who gave anonymous peer feedback) is the showing module's
business; this module only says whether the kind may be read at all. Every read of someone else's
record is audited (``record.read``); every refusal too (``record.read.refused``); a person reading
their own record is not (the issue: "every read of someone else's record").
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, record_data
from storage.people import PersonRow


class RecordKind(StrEnum):
    """The kinds of data an employee record holds (the names stored in audit entries)."""

    RITUAL_ANSWERS = "ritual_answers"
    TASK_EVIDENCE = "task_evidence"
    KEY_EVENTS = "key_events"
    PEER_FEEDBACK = "peer_feedback"
    ACTION_ITEMS = "action_items"
    ASSESSMENT_RATINGS = "assessment_ratings"
    ONE_ON_ONE_NOTES = "one_on_one_notes"


class Relation(StrEnum):
    """What a viewer is to the person whose record it is."""

    SELF = "self"
    MANAGER_CHAIN = "manager_chain"
    HR = "hr"


_EVERYONE_ENTITLED = frozenset(Relation)
# per kind, the relations that may read it (see the module docstring for why they are all the same)
READERS: dict[RecordKind, frozenset[Relation]] = {kind: _EVERYONE_ENTITLED for kind in RecordKind}


def relations(viewer: PersonRow, subject: PersonRow, *, chain: set[int]) -> frozenset[Relation]:
    """Every relation the viewer has to the subject (none: a stranger to this record).

    ``chain`` is the subject's manager chain (``storage.record_data.manager_chain``).
    """
    if not viewer.active:
        return frozenset()
    found = set()
    if viewer.id == subject.id:
        found.add(Relation.SELF)
    if viewer.id in chain:
        found.add(Relation.MANAGER_CHAIN)
    if viewer.is_hr:
        found.add(Relation.HR)
    return frozenset(found)


def can_read(viewer: PersonRow, subject: PersonRow, kind: RecordKind, *, chain: set[int]) -> bool:
    """Whether ``viewer`` may read the ``kind`` part of ``subject``'s record (``chain``: the subject's
    manager chain)."""
    return bool(relations(viewer, subject, chain=chain) & READERS[kind])


def readable(
    viewer: PersonRow, subject: PersonRow, kinds: Iterable[RecordKind], *, chain: set[int]
) -> tuple[RecordKind, ...]:
    """The kinds, of ``kinds``, that ``viewer`` may read of ``subject``'s record, in the order given."""
    return tuple(k for k in kinds if can_read(viewer, subject, k, chain=chain))


async def chain_of(session: AsyncSession, subject: PersonRow) -> set[int]:
    """The subject's manager chain, as ``can_read`` needs it."""
    return await record_data.manager_chain(session, person_id=subject.id)


async def may_read(session: AsyncSession, *, viewer: PersonRow, subject: PersonRow, kind: RecordKind) -> bool:
    """``can_read`` with the chain read from the database (for a caller about to read one kind)."""
    if viewer.id == subject.id or viewer.is_hr:  # decided without the chain: spare the queries
        return can_read(viewer, subject, kind, chain=set())
    return can_read(viewer, subject, kind, chain=await chain_of(session, subject))


async def audit_read(
    session: AsyncSession, *, viewer: PersonRow, subject: PersonRow, kinds: Iterable[RecordKind], via: str
) -> None:
    """Write ``record.read`` for a read of someone else's record (the kinds shown, and by which
    command); a read of one's own record is not written."""
    if viewer.id == subject.id:
        return
    await audit.write(
        session,
        actor_id=viewer.id,
        action="record.read",
        subject_id=subject.id,
        detail={"via": via, "kinds": [str(k) for k in kinds]},
    )


async def audit_refused(
    session: AsyncSession,
    *,
    viewer: PersonRow,
    subject: PersonRow | None,
    kinds: Iterable[RecordKind],
    via: str,
    detail: dict[str, object] | None = None,
) -> None:
    """Write ``record.read.refused``: who tried to read what of whom (``subject`` None: refused before
    anyone was looked up; ``detail`` then says what was asked for)."""
    await audit.write(
        session,
        actor_id=viewer.id,
        action="record.read.refused",
        subject_id=subject.id if subject is not None else None,
        detail={"via": via, "kinds": [str(k) for k in kinds], **(detail or {})},
    )
