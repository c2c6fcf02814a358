"""benchmarks/sync.py at a tiny size on SQLite: the JSON line, the changed count, the requests ratio."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

# imported by name at run time: mypy checks benchmarks/sync.py as a script of its own
sync_benchmark = importlib.import_module("benchmarks.sync")
SCRIPT = Path(str(sync_benchmark.__file__)).resolve()
KEYS = (
    "benchmark",
    "source",
    "db",
    "issues",
    "full_issues_per_s",
    "incremental_changed",
    "incremental_requests",
    "full_requests",
    "peak_rss_mb",
)


def test_small_sqlite_run_reports_the_changes_in_few_requests() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--db", "sqlite", "--issues", "2000", "--people", "50"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (record,) = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert "error" not in record, record
    assert list(record)[: len(KEYS)] == list(KEYS)
    assert (record["benchmark"], record["source"], record["db"], record["issues"]) == (
        "sync",
        "jira",
        "sqlite",
        2000,
    )
    assert record["full_issues_per_s"] > 0 and record["peak_rss_mb"] > 0
    # 1% changed in the fake, and exactly that is what the incremental run reports as changed
    assert record["changed"] == 20
    assert record["incremental_changed"] == record["incremental"]["items_changed"] == 20
    assert record["edited_items_stored"] == 20 and record["stored_items"] == 2000
    # the full read: 20 pages of 100 plus /myself, /field and the look-ups of hidden e-mails
    assert record["search_requests"]["full"] == 20
    assert record["full_requests"] == sum(record["requests_by_route"]["full"].values())
    # the incremental one: /myself, /field and one page (the changes and the overlap's few)
    assert record["incremental_requests"] == sum(record["requests_by_route"]["incremental"].values()) <= 4
    assert record["incremental_ratio"] == round(record["incremental_requests"] / record["full_requests"], 4)
    assert record["incremental_ratio"] < 0.15
    # the changes lie after the cursor the full run left
    assert record["cursor"]["incremental_since"] < record["cursor"]["changes_at"]
    # the memory probe ran first (a fifth of the issues) in a process of its own
    assert record["rss_flat"]["issues"] == [400, 2000]


def test_rss_flat_bound() -> None:
    small = {"issues": 20_000, "peak_rss_mb": 90.0, "rss_mb": {"before_sync": 78.0}}
    flat = sync_benchmark.rss_flat(
        small, {"issues": 100_000, "peak_rss_mb": 95.0, "rss_mb": {"before_sync": 78.0}}
    )
    assert flat["flat"] and flat["growth_mb"] == 5.0 and flat["growth_mb_per_10k_issues"] == 0.62
    grown = sync_benchmark.rss_flat(
        small, {"issues": 100_000, "peak_rss_mb": 150.0, "rss_mb": {"before_sync": 78.0}}
    )
    assert not grown["flat"]
    assert "error" in sync_benchmark.rss_flat({"error": "boom"}, {"issues": 100_000, "peak_rss_mb": 1.0})
