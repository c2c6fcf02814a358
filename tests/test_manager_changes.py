"""The manager's part of a quarterly assessment follows the subject's current manager."""

from __future__ import annotations

from pathlib import Path

from conversations.org_service import import_org_file
from tests.harness import EMMA, HR, MANAGER, SAMPLE_ORG, Chat

NEW_MANAGER = "michael.brown@example.com"
SELF_PART = [
    "Shipped the billing export",
    "2",
    "4",
    "Owned the release end to end",
    "Write design docs earlier",
    "Q1 ledger",
]


async def _submit_self_assessment(chat: Chat, email: str, first_answer: str) -> str:
    for said in [first_answer, *SELF_PART[1:]]:
        await chat.say(email, said)
    return await chat.say(email, "submit" if email == EMMA else "提交")


async def test_a_queued_assessment_goes_to_the_new_manager_after_a_reorg(chat: Chat, tmp_path: Path) -> None:
    assert chat.app is not None
    await chat.say(HR, f"cycle start quarterly --people {EMMA},{MANAGER}")
    await chat.inbox(MANAGER)
    await _submit_self_assessment(chat, EMMA, "Emma shipped the billing export")
    # Wang Fang is busy with her own self-assessment, so the assessment of Emma waits in her queue
    assert "Emma" in await chat.inbox(MANAGER)

    moved = tmp_path / "org.yaml"
    moved.write_text(
        SAMPLE_ORG.read_text(encoding="utf-8").replace(
            f"email: {EMMA}\n    name: Emma Smith\n    manager_email: {MANAGER}",
            f"email: {EMMA}\n    name: Emma Smith\n    manager_email: {NEW_MANAGER}",
        ),
        encoding="utf-8",
    )
    report = await import_org_file(chat.app.db, moved)
    assert EMMA in report.changed

    after_own = await _submit_self_assessment(chat, MANAGER, "完成了团队季度规划")
    assert "Emma shipped the billing export" not in after_own
    assert "Emma shipped the billing export" in await chat.inbox(NEW_MANAGER)
    parts = await chat.rows(
        "select p.email, a.status from assignment a join person p on p.id = a.person_id "
        "where a.part = 'manager' and a.subject_id = (select id from person where email = :e) order by a.id",
        e=EMMA,
    )
    assert parts == [(MANAGER, "expired"), (NEW_MANAGER, "active")]
