"""Benchmark the vague-feedback detector (``conversations/vagueness.py``) on a labelled set of statements.

Run as ``python benchmarks/vagueness.py``. It prints one JSON line::

    {"benchmark": "vagueness", "n": 382, "precision": ..., "recall": ..., "f1": ..., "n_vague": ...,
     "by_split": {"dev": {...}, "test": {...}}, "by_lang": {"en": {...}, "zh": {...}, "mixed": {...}},
     "by_kind": {...}, "errors_sample": [...]}

The positive class is *vague*: a statement the detector flags (``assess(text).specific`` is false).
precision = flagged statements labelled vague / flagged statements; recall = statements labelled vague
that were flagged / statements labelled vague. ``n``, ``precision``, ``recall`` and ``f1`` are over the
whole set; ``by_split``, ``by_lang`` and ``by_kind`` give the same figures per part. The rules were tuned
on the ``dev`` rows only: ``by_split.test`` is the held-out figure.

``--data`` reads another file of the same shape (``tests/data/feedback_statements.yaml``: a mapping with
``statements``, each with ``text``, ``lang``, ``label`` (``vague`` or ``specific``), ``kind`` and
``split``); ``--split`` measures one split only; ``--errors N`` lists up to N misclassified statements
(``errors_sample``: text, label, the reasons given). ``--min F`` makes the exit code non-zero when
precision or recall (overall or held-out) is below F.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from conversations.vagueness import assess  # noqa: E402

DEFAULT_DATA = ROOT / "tests" / "data" / "feedback_statements.yaml"
LABELS = ("vague", "specific")


def load(path: Path) -> list[dict[str, str]]:
    """The statements in ``path``, each checked for the fields the benchmark needs."""
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))["statements"]
    for row in rows:
        missing = {"text", "lang", "label", "kind", "split"} - row.keys()
        if missing or row["label"] not in LABELS:
            raise ValueError(f"bad row (missing {sorted(missing)} or label not in {LABELS}): {row}")
    return [{key: str(value) for key, value in row.items()} for row in rows]


def scores(pairs: Iterable[tuple[str, bool]]) -> dict[str, Any]:
    """Precision, recall and F1 with *vague* as the positive class, from (label, flagged) pairs."""
    tp = fp = fn = n = n_vague = 0
    for label, flagged in pairs:
        n += 1
        vague = label == "vague"
        n_vague += vague
        tp += vague and flagged
        fp += flagged and not vague
        fn += vague and not flagged
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": n,
        "n_vague": n_vague,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def evaluate(rows: list[dict[str, str]], errors: int = 10) -> dict[str, Any]:
    """The benchmark record for ``rows``: overall scores, the same per split, language and kind, errors."""
    judged = [(row, assess(row["text"])) for row in rows]

    def part(field: str) -> dict[str, Any]:
        groups: dict[str, list[tuple[str, bool]]] = {}
        for row, verdict in judged:
            groups.setdefault(row[field], []).append((row["label"], not verdict.specific))
        return {key: scores(pairs) for key, pairs in sorted(groups.items())}

    wrong = [
        {"text": row["text"], "label": row["label"], "split": row["split"], "reasons": list(verdict.reasons)}
        for row, verdict in judged
        if (row["label"] == "vague") == verdict.specific
    ]
    return {
        "benchmark": "vagueness",
        **scores((row["label"], not verdict.specific) for row, verdict in judged),
        "positive_class": "vague",
        "by_split": part("split"),
        "by_lang": part("lang"),
        "by_kind": part("kind"),
        "n_errors": len(wrong),
        "errors_sample": wrong[:errors],
    }


def below(record: Mapping[str, Any], minimum: float) -> list[str]:
    """Which of overall and held-out precision and recall are below ``minimum``."""
    parts = {"overall": record, **{f"split {k}": v for k, v in record["by_split"].items() if k == "test"}}
    return [
        f"{name} {metric} {figures[metric]} < {minimum}"
        for name, figures in parts.items()
        for metric in ("precision", "recall")
        if figures[metric] < minimum
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure the detector on the labelled statements and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled statements (YAML)")
    parser.add_argument("--split", choices=("dev", "test"), help="measure one split only")
    parser.add_argument("--errors", type=int, default=10, help="misclassified statements to list")
    parser.add_argument("--min", type=float, help="exit 1 if precision or recall is below this")
    args = parser.parse_args(argv)
    rows = load(args.data)
    if args.split:
        rows = [row for row in rows if row["split"] == args.split]
    record = evaluate(rows, errors=args.errors)
    failures = below(record, args.min) if args.min is not None else []
    if failures:
        record["error"] = "; ".join(failures)
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
