"""The seam for an optional language model that rewords an agenda's suggested topics.

The rules (``agenda_rules``) choose the topics and say why; a rewriter may only make a topic's
wording read better in the manager's language. It never changes which topics there are or their
reasons, and whatever goes wrong (no answer, a wrong number of topics) leaves the rule topics as
they were. ``bot/llm.py`` implements it over an OpenAI-compatible endpoint; without one, nothing
is rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TopicText:
    """One suggested topic as the manager reads it: the rule that chose it, its wording, its reason."""

    rule: str
    text: str
    reason: str


class TopicRewriter(Protocol):
    """Rewords topics; returns them in the same order, the same number, the reasons untouched."""

    async def rewrite(self, topics: Sequence[TopicText], locale: str) -> list[TopicText]:
        """``topics`` reworded for ``locale``, or ``topics`` themselves when anything fails."""
        ...


def accept(
    original: Sequence[TopicText], rewritten: Sequence[str], *, limit: int = 120
) -> list[TopicText] | None:
    """The topics with their new wording if the rewrite is usable (one non-empty line per topic, not
    too long), else None: the caller keeps the originals (a rewrite never costs a topic)."""
    cleaned = [" ".join(str(text).split()) for text in rewritten]
    if len(cleaned) != len(original) or any(not c or len(c) > limit for c in cleaned):
        return None
    return [TopicText(o.rule, c, o.reason) for o, c in zip(original, cleaned, strict=True)]
