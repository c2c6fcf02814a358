"""conversations/vagueness.py: the issue's examples, each signal, the hard cases, and the labelled set.

Precision and recall have *vague* (flagged) as the positive class, as in benchmarks/vagueness.py.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conversations.vagueness import Verdict, assess

# imported by name at run time: mypy checks benchmarks/vagueness.py as a script of its own
bench = importlib.import_module("benchmarks.vagueness")
SCRIPT = Path(str(bench.__file__)).resolve()
MIN = 0.85


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("还不错", "还不错"),
        ("继续努力", "继续努力"),
        ("表现良好", "表现良好"),
        ("good job", "good job"),
        ("keep it up", "keep it up"),
        ("nice work", "nice work"),
        ("Good job!", "good job"),
        ("Keep it up.", "keep it up"),
        ("Nice work :)", "nice work"),
        ("很棒，辛苦了", "很棒"),
        ("加油！", "加油"),
        ("有待提高", "有待提高"),
        ("需要更主动", "需要更主动"),
        ("Great work, well done.", "great work"),
        ("Needs to improve.", "needs to improve"),
        ("Be more proactive.", "be more proactive"),
    ],
)
def test_the_issues_phrases_are_vague_and_named(text: str, phrase: str) -> None:
    verdict = assess(text)
    assert verdict == Verdict(specific=False, reasons=verdict.reasons)
    assert f"vague_phrase:{phrase}" in verdict.reasons


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("Latency is now 120 ms", "number"),
        ("Conversion went from 2% to 3.5%", "number"),
        ("Saved $3k a month", "number"),
        ("把审批时间缩短到半天", "number"),
        ("用了两天", "number"),
        ("It took two weeks", "number"),
        ("See you Friday", "date"),
        ("上周三的会", "date"),
        ("3月的目标", "date"),
        ("Q3 goals", "date"),
        ("PAY-812", "ticket"),
        ("这个sprint把PAY-812和PAY-815都close了", "ticket"),
        ("See #4521", "ticket"),
        ("Thanks for helping Priya", "name"),
        ("谢谢Tom", "name"),
        ("「报销审批」", "name"),
        ("《用户增长》", "name"),
        ("the `sync_cursor` thing", "name"),
        ("需要看PRD", "name"),
        ("Thanks for the migration", "work_item"),
        ("谢谢你做的迁移", "work_item"),
        ("给某银行客户的", "work_item"),
        ("Be more proactive, for example in standup", "example"),
        ("需要更主动，比如站会", "example"),
        ("在支付网关切换时，她连夜写了对账脚本", "example"),
        ("shipped it", "outcome"),
        ("修复了", "outcome"),
        ("Latency halved", "outcome"),
    ],
)
def test_each_signal_makes_a_statement_specific_and_is_named(text: str, signal: str) -> None:
    verdict = assess(text)
    assert verdict.specific, verdict
    assert signal in verdict.reasons


@pytest.mark.parametrize(
    ("text", "specific"),
    [
        # long but vague; short but specific
        ("她在各方面都表现得非常好，团队合作也很不错，希望继续保持", False),
        (
            "He did a fantastic job across the board and the team really appreciates everything he "
            "brings this quarter; I hope he keeps this up going forward.",
            False,
        ),
        ("PAY-812 提前两天上线", True),
        ("Fixed INC-2041.", True),
        # a stock phrase with something concrete is specific
        ("good job on the billing migration — cut p99 from 800ms to 120ms", True),
        ("还不错，尤其是这次灰度发布方案，分了三批上线", True),
        ("Not just 'good job': the rollback plan you wrote for the DB upgrade saved Sunday.", True),
        # negations, hyperbole, a bare period or year: still vague
        ("Not bad at all.", False),
        ("表现得不算差，但也没有特别亮眼的地方。", False),
        ("She gives 110% every day.", False),
        ("100分！", False),
        ("666", False),
        ("Good job last week.", False),
        ("Keep up the great work in 2025!", False),
        ("大家都辛苦了，下个月继续加油！", False),
        ("新的一年再接再厉！", False),
        # mixed zh/en
        ("Good job，辛苦了！", False),
        ("这个sprint表现不错，keep it up！", False),
        ("Good job，上周三的 incident 处理得很快，20分钟就 rollback 了。", True),
        # a customer only counts as a particular one
        ("His customers love him.", False),
        ("客户都很喜欢他。", False),
        ("Handled the escalation from Contoso calmly.", True),
    ],
)
def test_hard_cases(text: str, specific: bool) -> None:
    assert assess(text).specific is specific, assess(text)


def test_weak_hints_are_reported_but_do_not_decide() -> None:
    assert assess("Good job last week.").reasons == ("vague_phrase:good job", "weak:relative_date")
    assert assess("Keep up the great work in 2025!").reasons[-1] == "weak:year"
    assert assess("Discussed career goals.").reasons == ("no_concrete_content",)
    assert assess("  ").reasons == ("no_concrete_content",)


def test_full_width_input_is_read_like_half_width() -> None:
    # a ticket's digits are the ticket, not also a number
    assert assess("ＰＡＹ－８１２ 已上线").reasons == ("ticket", "work_item", "outcome")
    assert assess("延迟降到１２０ｍｓ").specific


def test_scores_take_vague_as_the_positive_class() -> None:
    # (label, flagged): 2 vague flagged, 1 vague missed, 1 specific flagged, 1 specific passed
    pairs = [("vague", True), ("vague", True), ("vague", False), ("specific", True), ("specific", False)]
    assert bench.scores(pairs) == {"n": 5, "n_vague": 3, "precision": 0.6667, "recall": 0.6667, "f1": 0.6667}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return list(bench.load(bench.DEFAULT_DATA))


def test_the_labelled_set_is_large_balanced_and_split(rows: list[dict[str, str]]) -> None:
    assert len(rows) >= 300
    assert len({row["text"] for row in rows}) == len(rows)
    langs = Counter(row["lang"] for row in rows)
    assert set(langs) <= {"zh", "en", "mixed"} and abs(langs["zh"] - langs["en"]) <= len(rows) * 0.1
    labels = Counter(row["label"] for row in rows)
    assert 0.4 <= labels["vague"] / len(rows) <= 0.6
    assert set(Counter(row["kind"] for row in rows)) == {
        "strength",
        "improvement",
        "resource",
        "peer",
        "note",
    }
    splits = Counter(row["split"] for row in rows)
    assert set(splits) == {"dev", "test"} and 0.35 <= splits["test"] / len(rows) <= 0.45


def test_precision_and_recall_hold_on_the_held_out_split_and_overall(rows: list[dict[str, str]]) -> None:
    record = bench.evaluate(rows)
    held_out = record["by_split"]["test"]
    assert held_out["n"] >= 120
    for name, figures in (("overall", record), ("held-out", held_out)):
        assert figures["precision"] >= MIN, (name, figures, record["errors_sample"])
        assert figures["recall"] >= MIN, (name, figures, record["errors_sample"])
    assert bench.below(record, MIN) == []


def test_the_benchmark_prints_one_json_line() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--min", str(MIN), "--errors", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (record,) = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert record["benchmark"] == "vagueness" and record["n"] >= 300
    assert record["positive_class"] == "vague"
    assert record["precision"] >= MIN and record["recall"] >= MIN
    assert {"f1", "n_vague", "by_split", "by_lang", "errors_sample"} <= record.keys()
    assert len(record["errors_sample"]) <= 3
