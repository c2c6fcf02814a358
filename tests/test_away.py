"""Telling Cadence about leave in chat, in both languages; nothing stored on a date it cannot read."""

from __future__ import annotations

from datetime import date

import pytest

from conversations.i18n import t
from tests.harness import EMMA, LILEI, Chat


async def _away_until(chat: Chat, email: str) -> object:
    return await chat.scalar("select away_until from person where email = :e", e=email)


@pytest.mark.parametrize(
    ("email", "said", "until"),
    [
        (LILEI, "请假到 12月10日", date(2026, 12, 10)),
        (LILEI, "请假到12月10号", date(2026, 12, 10)),
        (LILEI, "休假至 2027-01-04", date(2027, 1, 4)),
        (EMMA, "away until Dec 10", date(2026, 12, 10)),
        (EMMA, "away until 2026-12-24", date(2026, 12, 24)),
    ],
)
async def test_leave_is_recorded_until_the_day_given(chat: Chat, email: str, said: str, until: date) -> None:
    locale = "zh-CN" if email == LILEI else "en"
    assert t("cmd.away_set", locale, date=until.isoformat()) in await chat.say(email, said)
    stored = await _away_until(chat, email)
    assert str(stored)[:10] == until.isoformat()


async def test_a_date_that_cannot_be_read_changes_nothing(chat: Chat) -> None:
    await chat.say(EMMA, "away until Dec 10")
    shown = await chat.say(EMMA, "away until someday")
    assert t("cmd.away_usage", "en", value="until someday") in shown
    assert str(await _away_until(chat, EMMA))[:10] == "2026-12-10"


@pytest.mark.parametrize(("email", "said"), [(LILEI, "销假"), (EMMA, "away off")])
async def test_coming_back_clears_the_leave(chat: Chat, email: str, said: str) -> None:
    await chat.say(email, "away until Dec 10" if email == EMMA else "请假到 12月10日")
    locale = "zh-CN" if email == LILEI else "en"
    assert t("cmd.away_cleared", locale) in await chat.say(email, said)
    assert await _away_until(chat, email) is None
