"""The neutral shape every task source's items take: ``TaskRecord`` and the people on it.

A connector turns its API's JSON into these; ``connectors.sync`` stores them. Fields follow the
normalised schema of ``shared/reference/task-sources.md`` §6.1, trimmed to what Cadence shows and
attributes (the raw item is kept, trimmed, for re-derivation).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class StatusCategory(StrEnum):
    """Where an item stands, whatever the source calls its statuses."""

    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class TombstoneReason(StrEnum):
    """Why a stored item is no longer live (it is kept, marked, for the record's history)."""

    DELETED = "deleted"
    OUT_OF_SCOPE = "out_of_scope"
    PERMISSION_LOST = "permission_lost"


@dataclass(frozen=True)
class PersonRef:
    """Someone on an item, as the source names them; ``email`` when the source shows it."""

    source_user_id: str
    display_name: str = ""
    email: str | None = None


@dataclass(frozen=True)
class TaskRecord:
    """One item of one source (a Jira issue, a Feishu task, a DingTalk todo), normalised.

    ``external_id`` is the source's immutable id (Jira ``issue.id``, not the key, which changes when an
    issue moves). Times are aware UTC datetimes.
    """

    source: str
    tenant: str
    external_id: str
    title: str
    updated_at: datetime
    status_category: StatusCategory
    external_key: str | None = None
    url: str | None = None
    item_type: str = "task"
    status_raw: str | None = None
    created_at: datetime | None = None
    due_at: datetime | None = None
    due_all_day: bool = False
    completed_at: datetime | None = None
    assignees: tuple[PersonRef, ...] = ()
    container: str | None = None  # project key, tasklist name, todo source
    estimate_points: float | None = None
    iteration: str | None = None  # the sprint the item is in (its last one)
    labels: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_completed(self) -> bool:
        return self.status_category is StatusCategory.DONE

    def content_hash(self) -> str:
        """A digest of everything stored, so an unchanged item re-read in an overlap is not rewritten."""
        body = {
            "key": self.external_key,
            "url": self.url,
            "title": self.title,
            "type": self.item_type,
            "status": [self.status_raw, self.status_category.value],
            "times": [_iso(t) for t in (self.created_at, self.updated_at, self.due_at, self.completed_at)],
            "all_day": self.due_all_day,
            "people": [[p.source_user_id, p.display_name, p.email] for p in self.assignees],
            "container": self.container,
            "points": self.estimate_points,
            "iteration": self.iteration,
            "labels": list(self.labels),
        }
        encoded = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()[:32]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="milliseconds")


def from_epoch_ms(value: int | str | None) -> datetime | None:
    """Milliseconds since 1970 (an int, or a string as Feishu sends them) → UTC; 0 or empty → None."""
    if value is None or value == "":
        return None
    ms = int(value)
    if ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
