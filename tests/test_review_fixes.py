"""Fixes a review found: text that would run as a spreadsheet formula, control characters in answers."""

from __future__ import annotations

from bot.report_cli import csv_text
from conversations.answers import normalize


def test_a_name_starting_like_a_formula_is_exported_as_text() -> None:
    exported = csv_text(["Manager", "Team"], [['=HYPERLINK("http://x","hi")', "-Sales"], ["王芳", "Eng"]])

    rows = exported.splitlines()
    assert rows[1] == '"\'=HYPERLINK(""http://x"",""hi"")",\'-Sales'
    assert rows[2] == "王芳,Eng"


def test_control_characters_are_dropped_but_line_breaks_kept() -> None:
    assert normalize("shipped\x00 PAY-1\x07\n\tnext: PAY-2 ") == "shipped PAY-1\n\tnext: PAY-2"
    assert normalize("ＰＡＹ－８１２") == "PAY-812"
