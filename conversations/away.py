"""Reading "away until 2026-12-10" / "请假到 12月10日": the last day a person is on leave."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from conversations.periods import MAX_YEARS_AHEAD

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_LEAD = re.compile(
    r"(?:\b(?:away|off|out|on\s+leave|on\s+holiday|on\s+vacation)\s+(?:until|till|through)\b"
    r"|(?:请假|休假)\s*(?:到|至|直到))\s*:?\s*"
)
_ISO = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_CHINESE = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})(?!\d)\s*[日号]?")
_MONTH_DAY = re.compile(r"([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?!\d)(?:,?\s+(\d{4})(?!\d))?")
_DAY_MONTH = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]+)\b\.?(?:,?\s+(\d{4})(?!\d))?")


def parse_away(text: str, *, today: date) -> date | None:
    """The last day away in ``away until 2026-12-10`` / ``Dec 10`` / ``请假到 12月10日`` / ``休假至 …``.

    A date without a year is the next such date from ``today``. Anything else, an impossible date, a
    date already past or one more than a couple of years ahead (a typo) gives None.
    """
    # NFKC turns full-width digits and spaces (１２月１０日, common in Chinese input methods) into ASCII
    normal = unicodedata.normalize("NFKC", text).lower()
    lead = _LEAD.search(normal)
    if lead is None:
        return None
    rest = normal[lead.end() :]
    year: str | None
    if (match := _ISO.match(rest)) or (match := _CHINESE.match(rest)):
        year, month, day = match.group(1), int(match.group(2)), int(match.group(3))
    elif (match := _MONTH_DAY.match(rest)) and match.group(1) in _MONTHS:
        year, month, day = match.group(3), _MONTHS[match.group(1)], int(match.group(2))
    elif (match := _DAY_MONTH.match(rest)) and match.group(2) in _MONTHS:
        year, month, day = match.group(3), _MONTHS[match.group(2)], int(match.group(1))
    else:
        return None
    return _checked(year, month, day, today=today)


def _checked(year: str | None, month: int, day: int, *, today: date) -> date | None:
    # yearless: this year's date unless already past (or 29 Feb in a common year), else next year's
    years = [int(year)] if year else [today.year, today.year + 1]
    for candidate_year in years:
        try:
            candidate = date(candidate_year, month, day)
        except ValueError:
            continue
        if today <= candidate and candidate.year <= today.year + MAX_YEARS_AHEAD:
            return candidate
    return None
