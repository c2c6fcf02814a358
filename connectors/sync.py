"""Run task sources against storage: cursors, page-at-a-time upserts, people, tombstones, failures.

Per source and scope (what one cursor covers):

1. ``since = hwm - overlap`` (None on the first run or ``--full``): the source re-reads a little,
   and an unchanged item re-read costs no write (its content hash matches).
2. Pages are written as they come, each in its own transaction with the page token, so a run that
   fails half-way restarts where it stopped instead of from the top.
3. The cursor advances only when the scope was read to the end: ``hwm = min(newest updated seen,
   run start - consistency lag)`` (Jira's search is eventually consistent).
4. A reconcile pass (daily, or ``--reconcile``) lists the ids still in the scope and asks the source
   about each stored one that is missing: deleted, out of scope or no longer readable: a tombstone.

A source that fails records why on its cursor and run; the other sources go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import Connector, Member, Scope
from connectors.http import SourceAuthError, SourceError, SourceRateLimited
from connectors.records import PersonRef, TaskRecord
from storage import sync_state, tasks
from storage.clock import utcnow
from storage.engine import Database

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # told the number of items read so far in this run
UNKNOWN_KEPT = 50  # unknown people named in a run's report (the count is kept whole)
# a source saying "wait this long" ends its run: the next scheduled run tries again
STOP_SOURCE_AFTER_S = 60.0
# the cursor row that remembers when the source was last asked about people it had no id of
PEOPLE_SCOPE = "people:lookup"
ANALYZE_AFTER = 1000  # items written in a run before PostgreSQL is asked to refresh its statistics


@dataclass(frozen=True)
class SyncOptions:
    full: bool = False  # ignore the cursors: read everything
    reconcile: bool | None = None  # True: now; False: never; None: when due
    reconcile_every: timedelta = timedelta(hours=24)
    consistency_lag: timedelta = timedelta(minutes=2)
    max_confirmations: int = 500  # per scope and run; the rest wait for the next reconcile


@dataclass
class RunReport:
    """What one source's run did (also stored as its ``SyncRun``)."""

    source: str
    tenant: str
    kind: str = "incremental"
    status: str = "ok"
    scopes: int = 0
    items_read: int = 0
    items_changed: int = 0
    items_deleted: int = 0
    requests: int = 0
    unknown_people: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown_count: int = 0
    errors: list[str] = field(default_factory=list)


class _Attribution:
    """Maps the source's users on items to people: stored identities first, then the item's email."""

    def __init__(self, identities: dict[str, int], emails: dict[str, int]) -> None:
        self.identities = identities
        self.emails = emails
        self.found: dict[int, str] = {}  # person id → source user id, learnt from items' emails

    def person_of(self, ref: PersonRef) -> int | None:
        person_id = self.identities.get(ref.source_user_id)
        if person_id is None and ref.email:
            person_id = self.emails.get(ref.email.lower())
            if person_id is not None and person_id not in self.found:
                self.found[person_id] = ref.source_user_id
                self.identities[ref.source_user_id] = person_id
        return person_id


class SourceSync:
    """One run of one connector; ``run()`` never raises for the source's own failures."""

    def __init__(
        self,
        database: Database,
        connector: Connector,
        options: SyncOptions = SyncOptions(),
        *,
        progress: Progress | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.connector = connector
        self.options = options
        self.progress = progress
        self.now = now
        self.report = RunReport(source=connector.source, tenant=connector.tenant)
        self._unknown: set[str] = set()  # every unknown user id (the report names only some)
        self._analyzed = False

    @property
    def _key(self) -> dict[str, str]:
        return {"source": self.connector.source, "tenant": self.connector.tenant}

    async def run(self) -> RunReport:
        started = self.now()
        async with self.db.sessions() as session:
            read_before = await sync_state.has_read(session, **self._key)
        self.report.kind = "incremental" if read_before and not self.options.full else "full"
        async with self.db.sessions() as session, session.begin():
            run_id = await sync_state.start_run(session, kind=self.report.kind, now=started, **self._key)
        requests_before = self.connector.requests
        try:
            await self._run(started)
        except SourceError as exc:
            self._fail(f"{exc}")
        except Exception as exc:  # a bug or a malformed answer: recorded, and the other sources go on
            log.exception("sync of %s failed", self.connector.source)
            self._fail(f"{type(exc).__name__}: {exc}")
        self.report.requests = self.connector.requests - requests_before
        if self.report.errors and self.report.status == "ok":
            self.report.status = "partial"
        async with self.db.sessions() as session, session.begin():
            await sync_state.finish_run(
                session,
                run_id=run_id,
                kind=self.report.kind,
                finished_at=self.now(),
                status=self.report.status,
                items_read=self.report.items_read,
                items_changed=self.report.items_changed,
                items_deleted=self.report.items_deleted,
                requests=self.report.requests,
                unknown_people=list(self.report.unknown_people.values()),
                error="\n".join(self.report.errors)[:4000] or None,
            )
        return self.report

    def _fail(self, error: str) -> None:
        self.report.status = "failed"
        self.report.errors.append(error)

    async def _run(self, started: datetime) -> None:
        connector = self.connector
        await connector.prepare()
        async with self.db.sessions() as session:
            members = [Member(pid, email, ids) for pid, email, ids in await tasks.org_members(session)]
            attribution = _Attribution(
                await tasks.source_identities(session, source=connector.source),
                await tasks.emails_to_people(session),
            )
        lookup_due = await self._people_lookup_due()
        if connector.people_first and lookup_due:
            members = await self._find_people(members, attribution)
        scopes = await connector.scopes(members)
        self.report.scopes = len(scopes)
        for scope in scopes:
            # a scope read with a person's own grant says who they are at the source (Feishu: open_id)
            if scope.person_id is not None and scope.subject and scope.subject not in attribution.identities:
                attribution.identities[scope.subject] = scope.person_id
                attribution.found.setdefault(scope.person_id, scope.subject)
        any_incremental = False
        failed_before = len(self.report.errors)
        for scope in scopes:
            try:
                any_incremental |= await self._sync_scope(scope, started, attribution)
            except SourceAuthError as exc:
                await self._scope_failed(scope, exc)
                if getattr(exc, "person_id", None) is None:
                    raise  # the source's own credentials: every other scope would fail the same way
            except SourceRateLimited as exc:
                await self._scope_failed(scope, exc)
                if exc.retry_after > STOP_SOURCE_AFTER_S:
                    raise
            except SourceError as exc:
                await self._scope_failed(scope, exc)
        if scopes and len(self.report.errors) - failed_before == len(scopes):
            self.report.status = "failed"  # not one scope was read to the end
        if not any_incremental and scopes:
            self.report.kind = "full"
        # the people the items could not name: looked up (by email) when lookups are due
        if lookup_due and not connector.people_first and self.report.unknown_count:
            await self._find_people(members, attribution)
        await self._remember(attribution)
        if lookup_due:
            async with self.db.sessions() as session, session.begin():
                await sync_state.save_cursor(session, scope=PEOPLE_SCOPE, hwm=started, **self._key)

    async def _people_lookup_due(self) -> bool:
        """Whether to ask the source about members it has no id of: on a full or reconcile run, and
        otherwise once a ``reconcile_every`` (someone it does not know costs a call per run else)."""
        if self.options.full or self.options.reconcile:
            return True
        async with self.db.sessions() as session:
            last = (await sync_state.cursor(session, scope=PEOPLE_SCOPE, **self._key)).hwm
        return last is None or self.now() - last >= self.options.reconcile_every

    async def _find_people(self, members: list[Member], attribution: _Attribution) -> list[Member]:
        """Ask the source for members it has no mapping of; returns the members with their new ids."""
        source = self.connector.source
        mapped = set(attribution.identities.values())
        missing = [m for m in members if source not in m.ids and m.person_id not in mapped]
        if not missing:
            return members
        found = await self.connector.find_people(missing)
        for person_id, ref in found.items():
            attribution.identities.setdefault(ref.source_user_id, person_id)
            attribution.found.setdefault(person_id, ref.source_user_id)
        await self._remember(attribution)
        for ref in found.values():
            self._known(ref.source_user_id)
        return [
            Member(m.person_id, m.email, {**m.ids, source: found[m.person_id].source_user_id})
            if m.person_id in found
            else m
            for m in members
        ]

    async def _remember(self, attribution: _Attribution) -> None:
        """Store identities learnt this run (items already stored for them are attributed too)."""
        if not attribution.found:
            return
        async with self.db.sessions() as session, session.begin():
            added = await tasks.remember_source_identities(session, found=attribution.found, **self._key)
        if added:
            log.info(
                "%s: %d people mapped to their %s users", self.connector.source, added, self.connector.source
            )
        for ext in attribution.found.values():
            self._known(ext)
        attribution.found = {}

    def _known(self, source_user_id: str) -> None:
        if source_user_id in self._unknown:
            self._unknown.discard(source_user_id)
            self.report.unknown_people.pop(source_user_id, None)
            self.report.unknown_count -= 1

    async def _scope_failed(self, scope: Scope, exc: Exception) -> None:
        log.warning("%s: scope %s failed: %s", self.connector.source, scope.id, exc)
        self.report.errors.append(f"{scope.id}: {exc}")
        async with self.db.sessions() as session, session.begin():
            await sync_state.record_failure(session, scope=scope.id, error=str(exc), **self._key)

    async def _sync_scope(self, scope: Scope, started: datetime, attribution: _Attribution) -> bool:
        """Read one scope to the end; returns whether it was an incremental read."""
        async with self.db.sessions() as session:
            cursor = await sync_state.cursor(session, scope=scope.id, **self._key)
        since = None
        if not self.options.full and cursor.hwm is not None:
            since = cursor.hwm - self.connector.overlap
        resume = cursor.resume if cursor.resume and cursor.resume_since == since else None
        # a resumed read began when the stopped run did: what changed since may sit behind the token
        read_began = cursor.resume_started_at or started if resume else started
        newest: datetime | None = None
        async for page in self.connector.pages(scope, since, resume):
            changed = await self._write_page(scope, page.records, attribution, page.resume, since, read_began)
            self.report.items_read += len(page.records)
            self.report.items_changed += changed
            if not self._analyzed and self.report.items_changed >= ANALYZE_AFTER:
                await self._analyze()
            for record in page.records:
                if newest is None or record.updated_at > newest:
                    newest = record.updated_at
            if self.progress is not None:
                self.progress(self.report.items_read)
        ceiling = read_began - self.options.consistency_lag
        hwm = min(newest, ceiling) if newest is not None else (cursor.hwm or ceiling)
        if cursor.hwm is not None and hwm < cursor.hwm:
            hwm = cursor.hwm  # never move back: a quiet scope keeps its place
        values: dict[str, Any] = {
            "hwm": hwm,
            "resume": None,
            "resume_since": None,
            "resume_started_at": None,
            "last_success_at": self.now(),
            "consecutive_failures": 0,
            "last_error": None,
        }
        if self._reconcile_due(cursor, since):
            if since is not None:
                self.report.items_deleted += await self._reconcile(scope)
            values["last_reconcile_at"] = self.now()  # a full read saw everything: as good as one
        async with self.db.sessions() as session, session.begin():
            await sync_state.save_cursor(session, scope=scope.id, **self._key, **values)
        return since is not None

    def _reconcile_due(self, cursor: sync_state.Cursor, since: datetime | None) -> bool:
        if self.options.reconcile is not None:
            return self.options.reconcile or since is None
        if since is None or cursor.last_reconcile_at is None:
            return True
        return self.now() - cursor.last_reconcile_at >= self.options.reconcile_every

    async def _write_page(
        self,
        scope: Scope,
        records: Sequence[TaskRecord],
        attribution: _Attribution,
        resume: str | None,
        since: datetime | None,
        read_began: datetime,
    ) -> int:
        """Store what is new or changed on one page, with the page token; returns how many."""
        latest = {r.external_id: r for r in records}  # a page may repeat an item: the last one counts
        now = self.now()
        async with self.db.sessions() as session, session.begin():
            stored = await tasks.stored_items(session, external_ids=list(latest), **self._key)
            new_rows: list[dict[str, Any]] = []
            changed_rows: list[dict[str, Any]] = []
            people: dict[str, list[tasks.AssigneeRow]] = {}
            for ext, record in latest.items():
                digest = record.content_hash()
                before = stored.get(ext)
                if before is not None and before.content_hash == digest and not before.deleted:
                    continue
                row = _item_row(record, scope.id, digest)
                people[ext] = [self._assignee(ref, attribution) for ref in record.assignees]
                if before is None:
                    new_rows.append(row)
                else:
                    changed_rows.append({**row, "id": before.id})
            ids = await tasks.insert_items(session, rows=new_rows, now=now, **self._key)
            inserted = frozenset(ids.values())
            ids.update({row["external_id"]: row["id"] for row in changed_rows})
            await tasks.update_items(session, rows=changed_rows, now=now)
            await tasks.replace_assignees(
                session,
                assignees={ids[ext]: rows for ext, rows in people.items()},
                new_items=inserted,
                **self._key,
            )
            await sync_state.save_cursor(
                session,
                scope=scope.id,
                resume=resume,
                resume_since=since if resume else None,
                resume_started_at=read_began if resume else None,
                **self._key,
            )
        return len(new_rows) + len(changed_rows)

    async def _analyze(self) -> None:
        """Give PostgreSQL's planner statistics of the tables being filled, once per run.

        Without them (autovacuum off, or not yet run) the per-page lookup picks the scope index and
        scans every stored item of the source: the benchmark's 100,000-issue sync ran at 580 issues/s,
        and at 5,100/s after one ANALYZE at the first thousand.
        """
        self._analyzed = True
        async with self.db.sessions() as session, session.begin():
            await tasks.analyze(session)

    def _assignee(self, ref: PersonRef, attribution: _Attribution) -> tasks.AssigneeRow:
        person_id = attribution.person_of(ref)
        if person_id is None and ref.source_user_id not in self._unknown:
            self._unknown.add(ref.source_user_id)
            self.report.unknown_count += 1
            if len(self.report.unknown_people) < UNKNOWN_KEPT:
                self.report.unknown_people[ref.source_user_id] = {
                    "id": ref.source_user_id,
                    "name": ref.display_name,
                    "email": ref.email,
                }
        return tasks.AssigneeRow(ref.source_user_id, ref.display_name, ref.email, person_id)

    async def _reconcile(self, scope: Scope) -> int:
        """Tombstone stored items the source no longer lists in ``scope`` (after asking it about each)."""
        live: set[str] = set()
        async for ids in self.connector.live_ids(scope):
            live.update(ids)
        async with self.db.sessions() as session:
            stored = await tasks.live_ids_in_scope(session, scope=scope.id, **self._key)
        missing = sorted(stored - live)
        if len(missing) > self.options.max_confirmations:
            log.warning(
                "%s: %d items missing from %s; confirming %d now, the rest next time",
                self.connector.source,
                len(missing),
                scope.id,
                self.options.max_confirmations,
            )
            missing = missing[: self.options.max_confirmations]
        gone = 0
        for external_id in missing:
            reason = await self.connector.confirm_gone(scope, external_id)
            if reason is None:
                continue
            async with self.db.sessions() as session, session.begin():
                gone += await tasks.tombstone(
                    session, external_id=external_id, reason=reason.value, now=self.now(), **self._key
                )
        return gone


def _item_row(record: TaskRecord, scope: str, digest: str) -> dict[str, Any]:
    return {
        "external_id": record.external_id,
        "scope": scope,
        "external_key": record.external_key,
        "url": record.url[:1000] if record.url else None,
        "title": record.title[:1000],
        "item_type": record.item_type[:64],
        "status_raw": record.status_raw[:128] if record.status_raw else None,
        "status_category": record.status_category.value,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "due_at": record.due_at,
        "due_all_day": record.due_all_day,
        "completed_at": record.completed_at,
        "container": record.container[:256] if record.container else None,
        "estimate_points": record.estimate_points,
        "iteration": record.iteration[:256] if record.iteration else None,
        "labels": list(record.labels),
        "content_hash": digest,
        "raw": record.raw,
    }


async def sync_sources(
    database: Database,
    connectors: Sequence[Connector],
    options: SyncOptions = SyncOptions(),
    *,
    progress: Callable[[str], Progress | None] | None = None,
) -> list[RunReport]:
    """Run each source in turn; one failing source never stops the others."""
    reports = []
    for connector in connectors:
        sync = SourceSync(
            database, connector, options, progress=progress(connector.source) if progress else None
        )
        reports.append(await sync.run())
    return reports
