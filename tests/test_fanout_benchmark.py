"""benchmarks/fanout.py: DingTalk's run at a small size, and how it tells a duplicate or a loss."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# imported by name at run time: mypy checks benchmarks/fanout.py as a script of its own
fanout = importlib.import_module("benchmarks.fanout")
SCRIPT = Path(str(fanout.__file__)).resolve()


def dingtalk_case(people: int) -> Any:
    return fanout.Case(
        platform="dingtalk",
        mode="unlimited",
        db="sqlite",
        people=people,
        limit_per_s=None,
        per_recipient_limit=None,
        concurrency=None,
        rate_per_s=None,
        per_recipient_per_s=None,
        identities="known",
        profile=None,
    )


def test_dingtalk_run_reaches_everyone_once_in_few_calls() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--platform", "dingtalk", "--dbs", "sqlite", "--people", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (record,) = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert record["platform"] == "dingtalk" and record["people"] == 60
    assert "error" not in record
    assert (record["lost"], record["duplicates"], record["unexpected_keys"]) == (0, 0, 0)
    assert record["outbox"] == {"sent": 60}
    # two locales, one identical prompt each: batchSends of up to 20 people
    calls = record["api_calls"]
    assert calls["batch_send"] == calls["delivery"] >= 60 / 20
    assert record["calls_per_prompt"] == round(calls["delivery"] / 60, 4) <= 0.5


def test_dingtalk_pairs_seen_twice_are_duplicates_and_missing_ones_lost() -> None:
    digest = fanout.content_digest("sampleMarkdown", {"title": "Weekly recap", "text": "How was it?"})
    pairs = {f"k{n}": f"u{n}:{digest}" for n in range(3)}
    outbox = [(n, f"k{n}", "intro", "sent") for n in range(3)]
    # u0 twice (one prompt delivered twice), u1 once, u2 never; another text to u1 is unexpected
    delivered = Counter({f"u0:{digest}": 2, f"u1:{digest}": 1, "u1:other": 1})
    checked = fanout.verify(dingtalk_case(3), outbox, delivered, {}, pairs)
    assert (checked["duplicates"], checked["lost"], checked["unexpected_keys"]) == (1, 1, 1)


def test_content_digest_ignores_key_order_but_not_content() -> None:
    a = fanout.content_digest("sampleMarkdown", {"title": "t", "text": "x"})
    assert a == fanout.content_digest("sampleMarkdown", {"text": "x", "title": "t"})
    assert a != fanout.content_digest("sampleMarkdown", {"title": "t", "text": "y"})
    assert a != fanout.content_digest("sampleText", {"title": "t", "text": "x"})
