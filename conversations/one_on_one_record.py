"""The manager's record of a 1:1 as a conversation: the engine's steps, plus rules of their own.

The question set is ``rituals/commands/one_on_one_record.yaml`` (strengths, improvements, resource
needs, action items), run by the engine like any ritual: the state row is an ``Assignment`` (the
manager's, about the report), updated in the same transaction as each answer, so it survives a
restart, holds the manager's one conversation slot, and its buttons name the assignment and step.
``RecordTurn`` adds:

- every strength, improvement and resource need is checked with ``vagueness.assess``; a vague one
  gets one friendly request for a concrete example, which the manager answers with better text or
  keeps as is. The sub-state ("asking about item n of step s") is an answer row beside the others
  (``NUDGE``), the state row stays at that step; each item's verdict is kept too (``quality_key``);
- action items are read as "text — owner — date" (owner: me, the report, @someone);
- on submit the record is stored (``storage.one_on_one_records.save_record``), linked to the pair's
  scheduled meeting around now if there is one; the manager gets a summary, the report their items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from conversations import mentions, prompts, vagueness
from conversations.action_items import (
    ME_WORDS,
    REPORT_WORDS,
    ActionLine,
    DayProblem,
    owner_word,
    parse_day,
    split_line,
)
from conversations.answers import Accepted, form_problems, normalize, parse_answer
from conversations.control import Control, ControlWord
from conversations.engine import Engine, Turn
from conversations.i18n import t
from conversations.messages import Action, Button, Field_, Message, Tone
from conversations.outgoing import Outgoing, Replies
from conversations.prompts import RESUME, SUMMARY
from conversations.ritual_loader import digest, load_file
from conversations.ritual_model import Ritual, Step
from storage import assignments as store
from storage import audit, cycles, people
from storage import one_on_one_records as records
from storage.clock import utcnow
from storage.people import PersonRow

RITUAL_KEY = "one_on_one_record"
RITUAL_FILE = Path(__file__).resolve().parent / "rituals" / "commands" / f"{RITUAL_KEY}.yaml"
# step → the kind its items are stored as
FEEDBACK = {"strengths": "strength", "improvements": "improvement", "resources": "resource"}
ACTIONS = "action_items"
# answer rows beside the steps' own: the pending request for an example, each step's item verdicts,
# and the action items as read (owner ids and dates)
NUDGE = "__nudge__"
ACTIONS_READ = "__action_items__"
KEEP = "keep"
_KEEP_WORDS = frozenset(
    {
        "keep",
        "keep it",
        "keep as is",
        "keep it as is",
        "as is",
        "1",
        "保留",
        "保留原样",
        "保持原样",
        "不改",
        "就这样",
    }
)
_NONE_WORDS = frozenset({"none", "no", "nothing", "n/a", "na", "无", "没有", "暂无", "没"})


def quality_key(step_id: str) -> str:
    """The answer row holding one step's items with their verdicts."""
    return f"__quality_{step_id}__"


@cache
def record_ritual() -> Ritual:
    """The 1:1 record's question set (validated like every ritual file)."""
    return load_file(RITUAL_FILE)


@dataclass(frozen=True)
class Nudge:
    """The one request for an example in progress: item ``index`` of ``step``, asked at ``version``
    in the message keyed ``key``; ``returning``: the summary comes next once none is left (kept here,
    as ``later`` and ``stop`` do not keep it on the state row)."""

    step: str
    index: int
    version: int
    key: str
    returning: bool


@dataclass(frozen=True)
class ReadAction:
    """An action item as understood: its text, owner and due day."""

    text: str
    owner_id: int
    owner_name: str
    due_on: date

    def shown(self, locale: str) -> str:
        return t("oneonone.action_line", locale, text=self.text, owner=self.owner_name, date=self.due_on)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "owner_id": self.owner_id,
            "owner": self.owner_name,
            "due_on": str(self.due_on),
        }


# ---- starting -----------------------------------------------------------------------------------


async def start(
    session: AsyncSession, *, engine: Engine, manager: PersonRow, subject: PersonRow, replies: Replies
) -> list[Outgoing]:
    """Open the manager's record of a 1:1 with ``subject`` (or pick up the one in progress).

    It starts at once, never queued: the manager asked for it now. Something else they are answering
    right now comes first (they are told to finish it or set it aside); one set aside (later, stop)
    stays where it is.
    """
    holding = await store.holding_conversation(session, person_id=manager.id)
    if holding is not None and holding.status == "active":
        ritual = await engine.ritual(session, holding.ritual_id)
        if ritual.key == RITUAL_KEY and holding.subject_id == subject.id:
            return await _resume(session, engine, manager, holding.id, replies)
        if ritual.key == RITUAL_KEY:
            other = await people.by_id(session, person_id=holding.subject_id)
            name = other.name if other else t("chat.someone", manager.locale)
            return [
                replies(Message(text=t("oneonone.busy_record", manager.locale, name=name), tone=Tone.WARNING))
            ]
        title = ritual.title.get(manager.locale)
        return [replies(Message(text=t("oneonone.busy", manager.locale, title=title), tone=Tone.WARNING))]
    existing = await records.open_record_conversation(
        session, ritual_key=RITUAL_KEY, manager_id=manager.id, report_id=subject.id
    )
    if existing is not None:
        return await _resume(session, engine, manager, existing, replies)
    ritual = record_ritual()
    ritual_id = await cycles.ensure_ritual_definition(
        session, key=ritual.key, digest=digest(ritual), body=ritual.model_dump(mode="json", by_alias=True)
    )
    today = utcnow().astimezone(ZoneInfo(manager.timezone)).date().isoformat()
    created: int | None = None
    # one container a day; a second record of the same pair that day goes into "<day> #2", …
    for n in range(1, 100):
        period = today if n == 1 else f"{today} #{n}"
        cycle_id = await records.record_cycle(
            session, ritual_key=ritual.key, ritual_id=ritual_id, period=period, started_by_id=manager.id
        )
        created = await store.create_assignment(
            session, cycle_id=cycle_id, person_id=manager.id, subject_id=subject.id, part=ritual.parts[0].id
        )
        if created is not None:
            break
    assert created is not None, f"no room for another 1:1 record of {manager.id} with {subject.id} today"
    conv = await store.get_conversation(session, assignment_id=created)
    assert conv is not None
    stored = await engine.ritual(session, conv.ritual_id)
    return await RecordTurn(engine, session, conv, manager, stored, subject.name, replies).begin()


async def _resume(
    session: AsyncSession, engine: Engine, manager: PersonRow, assignment_id: int, replies: Replies
) -> list[Outgoing]:
    """The question the record in progress is at, shown again (as the home screen's "continue")."""
    action = Action(assignment_id=assignment_id, step=RESUME, version=0, value="resume")
    return await engine.on_action(session, person=manager, action=action, replies=replies)


# ---- the conversation ---------------------------------------------------------------------------


class RecordTurn(Turn):
    """One step of a 1:1 record conversation (see the module docstring for what it adds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # whether the conversation returns to the summary after this step (kept through requests
        # for examples, which move the state row without leaving the step)
        self._returning = self.conv.return_to_summary

    async def _answers(self) -> dict[str, tuple[Any, bool]]:
        return await store.answers_for(self.session, assignment_id=self.conv.id)

    async def _pending(self) -> Nudge | None:
        value = (await self._answers()).get(NUDGE, (None, True))[0]
        if not isinstance(value, dict) or value.get("step") != self.step_id:
            return None
        return Nudge(
            str(value["step"]),
            int(value["index"]),
            int(value["version"]),
            str(value["key"]),
            bool(value.get("returning")),
        )

    # ---- what is shown --------------------------------------------------------------------------

    async def _current(self, *, reason: str | None, current: Any) -> tuple[str, Message]:
        nudge = await self._pending()
        if nudge is None:
            return await super()._current(reason=reason, current=current)
        key = f"{prompts.prompt_key(self.conv.id, self.version, nudge.step)}:nudge{nudge.index}"
        return key, await self._nudge_message(nudge, reason)

    async def _nudge_message(self, nudge: Nudge, reason: str | None) -> Message:
        items = _items(await self._answers(), nudge.step)
        item = items[nudge.index]["text"] if nudge.index < len(items) else ""
        why = why_vague(item, self.locale)
        text = t(f"oneonone.nudge_{FEEDBACK[nudge.step]}", self.locale, item=item, name=self.subject, why=why)
        keep = Action(
            assignment_id=self.conv.id, step=nudge.step, version=self.version, value=f"{KEEP}:{nudge.version}"
        )
        return Message(
            title=self.ritual.title.get(self.locale),
            text=f"{reason}\n{text}" if reason else text,
            hint=t("oneonone.nudge_hint", self.locale),
            tone=Tone.WARNING if reason else Tone.PROMPT,
            buttons=(Button(label=t("oneonone.keep", self.locale), action=keep),),
            meta={"assignment": str(self.conv.id), "step": nudge.step},
        )

    async def _alongside(self) -> tuple[Field_, ...]:
        """What is still open from earlier 1:1s of the two, shown with the first question."""
        items = await records.open_action_items(
            self.session, report_id=self.conv.subject_id, manager_id=self.person.id, limit=10
        )
        owners = {
            p.id: p.name for p in await people.by_ids(self.session, person_ids=[i.owner_id for i in items])
        }
        if items:
            # what is open for the report is part of their record: shown to their manager, audited
            await audit.write(
                self.session,
                actor_id=self.person.id,
                action="record.read",
                subject_id=self.conv.subject_id,
                detail={"via": "1on1", "kinds": ["action_items"]},
            )
        return tuple(
            Field_(
                label=t("oneonone.open_before", self.locale),
                value=t(
                    "oneonone.action_line",
                    self.locale,
                    text=i.text,
                    owner=owners.get(i.owner_id, "—"),
                    date=i.due_on or "—",
                ),
            )
            for i in items
        )

    # ---- what the manager said ------------------------------------------------------------------

    async def handle_text(
        self, text: str, control: ControlWord | None, *, clicked: bool = False
    ) -> list[Outgoing]:
        nudge = await self._pending()
        if nudge is not None:
            self._returning = self._returning or nudge.returning
            return await self._at_nudge(nudge, text, control, clicked)
        if clicked and text.startswith(f"{KEEP}:"):
            return self._stale()
        return await super().handle_text(text, control, clicked=clicked)

    def _stale(self) -> list[Outgoing]:
        message = Message(text=t("chat.already_answered", self.locale), tone=Tone.WARNING, ephemeral=True)
        return [*self.out, self.replies(message)]

    async def _answer(self, text: str) -> list[Outgoing]:
        step = self._step()
        if step.id != ACTIONS:
            return await super()._answer(text)
        if normalize(text).lower().rstrip("!.。！") in _NONE_WORDS:
            return await self._skip()
        result = parse_answer(step, text, self.locale)
        if not isinstance(result, Accepted):
            return await self.ask(reason=result.reason)
        read = await self._read_actions(result.value)
        if isinstance(read, str):
            return await self.ask(reason=read)
        await self._keep_actions(read)
        return await self._store_and_advance(step, [a.shown(self.locale) for a in read], skipped=False)

    async def _skip(self) -> list[Outgoing]:
        step = self._step()
        if step.id in FEEDBACK:
            reason = t(f"oneonone.need_{FEEDBACK[step.id]}", self.locale, name=self.subject)
            return await self.ask(reason=reason)
        if step.id == ACTIONS:
            await self._keep_actions(None)
        return await super()._skip()

    async def _store_and_advance(self, step: Step, value: Any, *, skipped: bool) -> list[Outgoing]:
        if step.id not in FEEDBACK or not value:
            return await super()._store_and_advance(step, value, skipped=skipped)
        await self._keep_items(step.id, await self._assessed(step.id, value))
        vague = _first_vague(await self._answers(), [step.id])
        if vague is None:
            return await super()._store_and_advance(step, value, skipped=skipped)
        asked = prompts.prompt_key(self.conv.id, self.version, step.id)
        saved = prompts.saved(step, value, locale=self.locale, subject=self.subject, replaces=asked)
        self._emit(f"{asked}:saved", saved, kind="update", tied=False)
        return await self._nudge(*vague)

    async def apply_form(self, answers: dict[str, str]) -> list[Outgoing]:
        """A whole record from a form: checked (action items too), stored, then a request for an
        example for each vague item, one at a time, before the summary."""
        problems = form_problems(self.part, answers, self.locale)
        for step_id, kind in FEEDBACK.items():
            if step_id in problems and not (answers.get(step_id) or "").strip():
                problems[step_id] = t(f"oneonone.need_{kind}", self.locale, name=self.subject)
        given: dict[str, Any] = {}
        for step in self.part.steps:
            raw = (answers.get(step.id) or "").strip()
            result = parse_answer(step, raw, self.locale) if raw and step.id not in problems else None
            given[step.id] = result.value if isinstance(result, Accepted) else None
        read: list[ReadAction] | None = None
        if given[ACTIONS] and normalize("\n".join(given[ACTIONS])).lower() not in _NONE_WORDS:
            found = await self._read_actions(given[ACTIONS])
            if isinstance(found, str):
                problems[ACTIONS] = found
            else:
                read = found
        if problems:
            lines = [
                f"{self.part.steps.index(s) + 1}. {problems[s.id]}"
                for s in self.part.steps
                if s.id in problems
            ]
            return self._reply("\n".join(lines), Tone.WARNING)
        for step_id in FEEDBACK:
            await self._keep_items(step_id, await self._assessed(step_id, given[step_id]))
        await self._keep_actions(read)
        shown = [a.shown(self.locale) for a in read] if read else None
        await store.save_answer(
            self.session, assignment_id=self.conv.id, step=ACTIONS, value=shown, skipped=shown is None
        )
        self._returning = True
        vague = _first_vague(await self._answers(), list(FEEDBACK))
        if vague is not None:
            return await self._nudge(*vague)
        await self._clear_nudge()
        await self._move("active", SUMMARY)
        return await self.ask()

    # ---- a request for an example ---------------------------------------------------------------

    async def _nudge(self, step_id: str, index: int) -> list[Outgoing]:
        """Ask once for a concrete example for item ``index`` of ``step_id``."""
        await self._move("active", step_id, return_to_summary=self._returning)
        key = f"{prompts.prompt_key(self.conv.id, self.version, step_id)}:nudge{index}"
        nudge = Nudge(step_id, index, self.version, key, self._returning)
        await store.save_answer(
            self.session,
            assignment_id=self.conv.id,
            step=NUDGE,
            value={
                "step": step_id,
                "index": index,
                "version": self.version,
                "key": key,
                "returning": self._returning,
            },
        )
        self._emit(key, await self._nudge_message(nudge, None), kind="prompt")
        return self.out

    async def _at_nudge(
        self, nudge: Nudge, text: str, control: ControlWord | None, clicked: bool
    ) -> list[Outgoing]:
        if clicked:
            return await self._settle(nudge, None) if text == f"{KEEP}:{nudge.version}" else self._stale()
        word = normalize(text).lower().rstrip("!.。！")
        if word in _KEEP_WORDS or (control is not None and control.control is Control.SKIP):
            return await self._settle(nudge, None)
        if control is not None and control.control is Control.BACK:
            # back to the question itself, to rewrite the list
            await self._clear_nudge()
            await self._move("active", nudge.step, return_to_summary=self._returning)
            return await self.ask(current=(await self._answers()).get(nudge.step, (None, True))[0])
        if control is not None and control.control in (Control.LATER, Control.STOP, Control.RESUME):
            return await self.control(control)
        if control is not None:
            return await self.ask(reason=t("oneonone.nudge_expected", self.locale))
        improved = " ".join(text.split())
        step = self._step()
        if not improved:
            return await self.ask(reason=t("chat.empty_answer", self.locale))
        if len(improved) > step.max_length:
            reason = t(
                "chat.too_long", self.locale, length=f"{len(improved):,}", limit=f"{step.max_length:,}"
            )
            return await self.ask(reason=reason)
        return await self._settle(nudge, improved)

    async def _settle(self, nudge: Nudge, improved: str | None) -> list[Outgoing]:
        """The manager kept the item (``improved`` None) or rewrote it: stored, then on."""
        items = _items(await self._answers(), nudge.step)
        if nudge.index < len(items):
            item = items[nudge.index]
            if improved is None:
                item.update(nudged=True, kept_as_is=True)
            else:
                item.update(
                    text=improved, specific=vagueness.assess(improved).specific, nudged=True, kept_as_is=False
                )
            await self._keep_items(nudge.step, items)
            label = t("oneonone.kept" if improved is None else "oneonone.improved", self.locale)
            done = Message(
                text=t(f"oneonone.field_{nudge.step}", self.locale),
                fields=(Field_(label=label, value=item["text"]),),
                tone=Tone.SUCCESS,
                replaces=nudge.key,
            )
            self._emit(f"{nudge.key}:done", done, kind="update", tied=False)
        steps = list(FEEDBACK) if self._returning else [nudge.step]
        vague = _first_vague(await self._answers(), steps)
        if vague is not None:
            return await self._nudge(*vague)
        await self._clear_nudge()
        following = self.part.next_step(nudge.step)
        target = SUMMARY if self._returning or following is None else following.id
        await self._move("active", target)
        return await self.ask()

    async def _clear_nudge(self) -> None:
        await store.save_answer(
            self.session, assignment_id=self.conv.id, step=NUDGE, value=None, skipped=True
        )

    # ---- items --------------------------------------------------------------------------------

    async def _assessed(self, step_id: str, texts: list[str] | None) -> list[dict[str, Any]]:
        """Each item with its verdict; an item unchanged since the last answer keeps its own (and is
        not asked about twice)."""
        before = {i["text"]: i for i in _items(await self._answers(), step_id)}
        return [
            dict(before[text])
            if text in before
            else {
                "text": text,
                "specific": vagueness.assess(text).specific,
                "nudged": False,
                "kept_as_is": False,
            }
            for text in texts or []
        ]

    async def _keep_items(self, step_id: str, items: list[dict[str, Any]]) -> None:
        texts = [i["text"] for i in items] or None
        await store.save_answer(
            self.session, assignment_id=self.conv.id, step=step_id, value=texts, skipped=texts is None
        )
        await store.save_answer(
            self.session, assignment_id=self.conv.id, step=quality_key(step_id), value=items
        )

    async def _keep_actions(self, read: list[ReadAction] | None) -> None:
        value = [a.to_json() for a in read] if read else None
        await store.save_answer(self.session, assignment_id=self.conv.id, step=ACTIONS_READ, value=value)

    async def _read_actions(self, lines: list[str]) -> list[ReadAction] | str:
        """The action items as understood, or what is wrong with the first one that is not."""
        today = utcnow().astimezone(ZoneInfo(self.person.timezone)).date()
        subject = await people.by_id(self.session, person_id=self.conv.subject_id)
        found = []
        for n, line in enumerate(lines, start=1):
            parts = split_line(line, today=today)
            if not isinstance(parts, ActionLine):
                return t(f"oneonone.action_{parts}", self.locale, n=n, item=line[:80])
            owner = await self._owner(n, parts.owner, subject)
            if isinstance(owner, str):
                return owner
            day = parse_day(parts.day, today=today)
            if isinstance(day, DayProblem):
                return t(f"oneonone.date_{day}", self.locale, n=n, value=parts.day[:40])
            found.append(ReadAction(parts.text, owner.id, owner.name, day))
        return found

    async def _owner(self, n: int, typed: str, subject: PersonRow | None) -> PersonRow | str:
        """Who an action item's owner as typed is: me, the report (by name, email or "them"), or
        anyone active in the org by @mention."""
        word = owner_word(typed)
        if word in ME_WORDS or word == self.person.name.lower():
            return self.person
        if subject is not None and (
            word in REPORT_WORDS
            or word in (subject.name.lower(), subject.email, subject.email.split("@")[0])
            or word == subject.name.lower().split(" ")[0]
        ):
            return subject
        found = await mentions.resolve(self.session, typed)
        if isinstance(found, mentions.Ambiguous):
            names = t("oneonone.name_separator", self.locale).join(found.names)
            return t("oneonone.owner_ambiguous", self.locale, n=n, who=typed[:40], names=names)
        if found is None:
            name = subject.name if subject is not None else t("chat.someone", self.locale)
            return t("oneonone.owner_unknown", self.locale, n=n, who=typed[:40], name=name)
        return found

    # ---- submitted ----------------------------------------------------------------------------

    async def _after_submit(self) -> None:
        """Store the record, and tell the manager what it holds and the report what they own."""
        answers = await self._answers()
        feedback = [
            records.FeedbackDraft(
                kind=kind,
                text=str(item["text"]),
                specific=bool(item["specific"]),
                nudged=bool(item["nudged"]),
                kept_as_is=bool(item["kept_as_is"]),
            )
            for step_id, kind in FEEDBACK.items()
            for item in _items(answers, step_id)
        ]
        read = answers.get(ACTIONS_READ, (None, True))[0] if answers.get(ACTIONS, (None, True))[0] else None
        actions = [
            records.ActionDraft(
                text=str(a["text"]), owner_id=int(a["owner_id"]), due_on=date.fromisoformat(a["due_on"])
            )
            for a in read or []
        ]
        now = utcnow()
        manager_id, report_id = self.person.id, self.conv.subject_id
        meeting = await records.meeting_around(
            self.session, manager_id=manager_id, report_id=report_id, moment=now
        )
        record_id = await records.save_record(
            self.session,
            manager_id=manager_id,
            report_id=report_id,
            recorded_at=now,
            meeting_id=meeting.id if meeting is not None else None,
            feedback=feedback,
            actions=actions,
        )
        await audit.write(
            self.session,
            actor_id=manager_id,
            action="oneonone.record",
            subject_id=report_id,
            detail={"one_on_one": record_id, "items": len(feedback), "actions": len(actions)},
        )
        report = await people.by_id(self.session, person_id=report_id)
        owned = [a for a in read or [] if int(a["owner_id"]) == report_id]
        planned_at = meeting.scheduled_at if meeting is not None else None
        self.out.append(
            self._summary(feedback, read or [], planned_at, told=bool(owned) and report is not None)
        )
        if owned and report is not None:
            self.out.append(self._for_report(report, owned, now))

    def _summary(
        self,
        feedback: list[records.FeedbackDraft],
        read: list[dict[str, Any]],
        planned_at: datetime | None,
        *,
        told: bool,
    ) -> Outgoing:
        locale = self.locale
        count = {kind: sum(1 for f in feedback if f.kind == kind) for kind in FEEDBACK.values()}
        lines = [
            t(
                "oneonone.recorded",
                locale,
                name=self.subject,
                strengths=count["strength"],
                improvements=count["improvement"],
                resources=count["resource"],
                actions=len(read),
            )
        ]
        if planned_at is not None:
            local = planned_at.astimezone(ZoneInfo(self.person.timezone)).strftime("%Y-%m-%d %H:%M")
            lines.append(t("oneonone.recorded_meeting", locale, date=local))
        vague = sum(1 for f in feedback if not f.specific)
        if vague:
            lines.append(t("oneonone.recorded_vague", locale, count=vague))
        if told:
            lines.append(t("oneonone.recorded_told", locale, name=self.subject))
        separator = t("oneonone.item_separator", locale)
        fields = [
            Field_(
                label=t(f"oneonone.field_{step_id}", locale),
                value=separator.join(f.text for f in feedback if f.kind == kind),
            )
            for step_id, kind in FEEDBACK.items()
        ]
        if read:
            shown = [
                t("oneonone.action_line", locale, text=a["text"], owner=a["owner"], date=a["due_on"])
                for a in read
            ]
            fields.append(Field_(label=t("oneonone.field_actions", locale), value=separator.join(shown)))
        message = Message(
            title=t("oneonone.recorded_title", locale, name=self.subject),
            text="\n".join(lines),
            fields=tuple(fields),
            tone=Tone.SUCCESS,
        )
        return Outgoing(self.person.id, f"a{self.conv.id}:recorded", message, kind="notice")

    def _for_report(self, report: PersonRow, owned: list[dict[str, Any]], now: datetime) -> Outgoing:
        locale = report.locale
        day = now.astimezone(ZoneInfo(report.timezone)).strftime("%Y-%m-%d")
        message = Message(
            title=t("oneonone.report_title", locale, manager=self.person.name),
            text=t("oneonone.report_actions", locale, manager=self.person.name, date=day),
            fields=tuple(
                Field_(label=str(a["text"]), value=t("oneonone.action_due", locale, date=a["due_on"]))
                for a in owned
            ),
        )
        # the report's quiet hours and leave hold it back, as for every message not asked for
        due_at = self.engine.timing.allowed_from(report, now, workdays=False)
        return Outgoing(report.id, f"a{self.conv.id}:actions", message, kind="notice", due_at=due_at)


def why_vague(text: str, locale: str) -> str:
    """Why ``text`` reads as vague, in one sentence, from what ``vagueness.assess`` found: a stock
    phrase in it ("“good job” could be said about anyone"), a time without an event, or nothing
    concrete at all."""
    reasons = vagueness.assess(text).reasons
    phrases = [r.partition(":")[2] for r in reasons if r.startswith("vague_phrase:")]
    # a stock phrase that is the whole item says nothing new: say what it lacks instead
    phrases = [p for p in phrases if p.strip().lower() != text.strip().lower()]
    if phrases:
        return t("oneonone.why_phrase", locale, phrase=phrases[0])
    if "weak:relative_date" in reasons:
        return t("oneonone.why_when", locale)
    if "weak:long" in reasons:
        return t("oneonone.why_long", locale)
    return t("oneonone.why_nothing", locale)


def _items(answers: dict[str, tuple[Any, bool]], step_id: str) -> list[dict[str, Any]]:
    """One step's items with their verdicts, as stored (assessed now if they were stored without)."""
    stored = answers.get(quality_key(step_id), (None, True))[0]
    if isinstance(stored, list):
        return [dict(i) for i in stored]
    texts = answers.get(step_id, (None, True))[0] or []
    return [
        {"text": text, "specific": vagueness.assess(text).specific, "nudged": False, "kept_as_is": False}
        for text in texts
    ]


def _first_vague(answers: dict[str, tuple[Any, bool]], steps: list[str]) -> tuple[str, int] | None:
    """The first item of ``steps`` that is vague and was not asked about yet."""
    for step_id in steps:
        for index, item in enumerate(_items(answers, step_id)):
            if not item["specific"] and not item["nudged"]:
                return step_id, index
    return None
