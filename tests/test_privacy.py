"""Who may read whose answers, and the audit trail of every attempt."""

from __future__ import annotations

from conversations.i18n import t
from tests.harness import EMMA, LILEI, MANAGER, Chat

OTHER_MANAGER = "michael.brown@example.com"


async def _audit(chat: Chat, action: str) -> list[tuple[object, ...]]:
    return await chat.rows(
        "select a.detail, s.email from auditlog a left join person s on s.id = a.subject_id "
        "where a.action = :action order by a.id",
        action=action,
    )


async def test_an_employee_cannot_learn_whether_an_address_is_in_the_org(chat: Chat) -> None:
    known = await chat.say(EMMA, f"view {LILEI}")
    unknown = await chat.say(EMMA, "view nobody@example.com")
    refusal = t("cmd.not_allowed", "en", role=t("cmd.role_manager", "en"))
    assert refusal in known and refusal in unknown
    assert len(await _audit(chat, "record.read.refused")) == 2


async def test_a_manager_cannot_read_someone_elses_report_and_the_attempt_names_them(chat: Chat) -> None:
    shown = await chat.say(OTHER_MANAGER, f"view {EMMA}")
    assert t("cmd.not_your_report", "en", name="Emma Smith") in shown
    ((_, subject),) = await _audit(chat, "record.read.refused")
    assert subject == EMMA


async def test_a_manager_reads_their_report_and_the_read_is_audited(chat: Chat) -> None:
    assert "Emma Smith" in await chat.say(MANAGER, f"查看 {EMMA}")
    ((_, subject),) = await _audit(chat, "record.read")
    assert subject == EMMA
    assert t("cmd.unknown_person", "zh-CN", email="nobody@example.com") in await chat.say(
        MANAGER, "查看 nobody@example.com"
    )


async def test_a_reminder_shows_the_due_date_where_the_person_is(chat: Chat) -> None:
    # Lucy (HR, Los Angeles) sets the end of 2026-12-01 in Los Angeles: 2026-12-02 07:59 UTC,
    # 15:59 in Shanghai. Emma (Los Angeles) is due on the 1st, 李雷 (Shanghai) on the 2nd.
    await chat.say("lucy.chen@example.com", f"cycle start weekly --people {EMMA},{LILEI} --due 2026-12-01")
    await chat.say("lucy.chen@example.com", "cycle remind 1")
    assert "due 2026-12-01" in await chat.inbox(EMMA)
    assert "截止 2026-12-02" in await chat.inbox(LILEI)
