"""What a task source must offer ``connectors.sync``: scopes, pages of records, live ids, people.

A connector knows one source's JSON and nothing of storage; the sync engine knows storage and
nothing of JSON. Between them: ``Scope`` (what one cursor covers), ``Page`` (records plus the token
to resume after it), ``Member`` (a person Cadence knows, to map onto the source's user ids).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from connectors.records import PersonRef, TaskRecord, TombstoneReason


@dataclass(frozen=True)
class Scope:
    """What one cursor covers: ``jira:jql:<sha1>``, ``feishu:tasklist:<guid>``, ``dingtalk:user:<unionId>``.

    ``person_id``: the person a per-person scope reads for (their own tasks), else None.
    ``token``: a credential for this scope only (a Feishu user's access token), never logged.
    """

    id: str
    person_id: int | None = None
    subject: str = ""  # the source's id of whom the scope reads for (unionId, open_id)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Page:
    """One page of a scope's items; ``resume``: where the next page starts (None after the last)."""

    records: Sequence[TaskRecord]
    resume: str | None = None


@dataclass(frozen=True)
class Member:
    """A person Cadence knows, with the ids they have on chat platforms and sources (platform → id)."""

    person_id: int
    email: str
    ids: Mapping[str, str]


class Connector(Protocol):
    """One task source for one tenant (a Jira site, a Feishu app, a DingTalk org)."""

    source: str  # "jira", "feishu_task", "dingtalk_todo": identities of its users are stored under it
    tenant: str
    # re-read this much before the cursor: the source's clock, minute-rounded filters, late writes
    overlap: timedelta
    # True when scopes are per person and need the source's id of each (DingTalk's unionId): the
    # engine then asks ``find_people`` for members without one before ``scopes``; False (Jira): it
    # asks only on full or reconcile runs, for the people the items could not name
    people_first: bool

    @property
    def requests(self) -> int:
        """HTTP requests made so far (for ``cadence sync status`` and the benchmark)."""
        ...

    async def prepare(self) -> None:
        """Once per run, before any scope: discover what the source needs (time zone, field ids)."""
        ...

    async def scopes(self, members: Sequence[Member]) -> list[Scope]:
        """The scopes to read this run (members carry the ids per-person scopes need)."""
        ...

    def pages(self, scope: Scope, since: datetime | None, resume: str | None) -> AsyncIterator[Page]:
        """Items of ``scope`` updated at or after ``since`` (all of them when None), page by page.

        ``resume``: a ``Page.resume`` a failed run stored; the connector restarts there when it can.
        """
        ...

    def live_ids(self, scope: Scope) -> AsyncIterator[Sequence[str]]:
        """Every id the scope holds now, cheaply (for the reconcile pass that finds deletions)."""
        ...

    async def confirm_gone(self, scope: Scope, external_id: str) -> TombstoneReason | None:
        """Why a stored item no longer shows in ``scope``; None when it is still there after all."""
        ...

    async def find_people(self, members: Sequence[Member]) -> dict[int, PersonRef]:
        """The source's user for each member it can find (person id → their ref), for items to name."""
        ...

    async def close(self) -> None: ...
