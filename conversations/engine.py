"""The conversation engine: a persisted state machine per assignment.

Each handler reads the state row, decides, and writes the answer, the new state and the messages
that follow in the caller's transaction. The state row carries a version: an update made against
an old version fails, so a double click or a second process cannot corrupt a conversation.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from conversations import prompts, task_evidence
from conversations.answers import Accepted, form_problems, normalize, parse_answer, small_number
from conversations.control import Control, ControlWord, parse_control, snooze_until
from conversations.i18n import t
from conversations.messages import Action, Field_, Message, Tone
from conversations.outgoing import Outgoing, PersonContext, Replies
from conversations.prompts import EDIT, RESUME, SUMMARY
from conversations.ritual_loader import RitualCatalog
from conversations.ritual_model import Part, Ritual, Step
from conversations.task_evidence import EVIDENCE, Evidence
from conversations.task_sources import NO_TASK_SOURCES, TaskSources
from conversations.timing import ANYTIME, Timing
from storage import assignments as store
from storage import audit, cycles, people, task_views
from storage.assignments import ConversationRow
from storage.clock import utcnow
from storage.cycles import ritual_body


class Engine:
    """Runs ritual conversations; platform-free, stateless between calls except for caches."""

    def __init__(
        self,
        catalog: RitualCatalog,
        *,
        snooze_minutes: int = 120,
        timing: Timing = ANYTIME,
        tasks: TaskSources = NO_TASK_SOURCES,
    ) -> None:
        self.catalog = catalog
        self.snooze_minutes = snooze_minutes
        # quiet hours, calendars and leave: supplied by the scheduler through the composition root
        self.timing = timing
        # the task sources the settings enable (none: the rituals show no task list)
        self.tasks = tasks
        self._rituals: dict[int, Ritual] = {}
        self._periods: dict[int, str] = {}

    async def ritual(self, session: AsyncSession, ritual_id: int) -> Ritual:
        """The question set a cycle runs on (stored with the cycle; cached, it never changes)."""
        if ritual_id not in self._rituals:
            self._rituals[ritual_id] = Ritual.model_validate(await ritual_body(session, ritual_id=ritual_id))
        return self._rituals[ritual_id]

    async def period(self, session: AsyncSession, cycle_id: int) -> str:
        """A cycle's period label (cached: it never changes)."""
        if cycle_id not in self._periods:
            cycle = await cycles.get_cycle(session, cycle_id=cycle_id)
            self._periods[cycle_id] = cycle.period if cycle is not None else ""
        return self._periods[cycle_id]

    async def evidence(
        self, session: AsyncSession, step: Step, convs: list[tuple[ConversationRow, PersonContext]]
    ) -> dict[int, Evidence]:
        """What the task systems show each person for their assignment's period (by assignment id),
        kept with its answers; nothing when ``step`` shows none or no source is enabled."""
        if step.evidence is None or not self.tasks.enabled or not convs:
            return {}
        now = utcnow()
        wanted = {
            conv.id: (
                person.id,
                person.timezone,
                task_evidence.period_window(
                    step.evidence,
                    await self.period(session, conv.cycle_id),
                    timezone=person.timezone,
                    now=now,
                ),
            )
            for conv, person in convs
        }
        found = await task_evidence.gather(session, wanted=wanted, sources=self.tasks.enabled, now=now)
        await task_views.keep_shown(session, step=EVIDENCE, shown={a: e.to_json() for a, e in found.items()})
        return found

    # ---- entry points -------------------------------------------------------------------------

    async def on_text(
        self,
        session: AsyncSession,
        *,
        person: PersonContext,
        text: str,
        replies: Replies,
        conv: ConversationRow | None = None,
    ) -> list[Outgoing]:
        """A typed message from someone with a conversation in progress (or not).

        ``conv`` is the conversation in progress when the caller has just read it.
        """
        conv = conv or await store.holding_conversation(session, person_id=person.id)
        if conv is None:
            return [replies(Message(text=t("chat.nothing_open", person.locale), tone=Tone.PLAIN))]
        turn = await self._turn(session, conv, person, replies)
        control = parse_control(text)
        if conv.status != "active":
            if control is not None and control.control in (Control.STOP, Control.LATER):
                return await turn.control(control)
            resuming = control is not None and control.control is Control.RESUME
            if conv.status == "paused" and not resuming:
                # "stop" meant stop: a stray message does not restart it (a snooze, by contrast,
                # ends when the person answers the reminder)
                title = turn.ritual.title.get(person.locale)
                return [
                    replies(Message(text=t("chat.still_paused", person.locale, title=title), tone=Tone.PLAIN))
                ]
            await turn.reactivate()
            if control is not None and control.control is Control.RESUME:
                return await turn.ask()
        return await turn.handle_text(text, control)

    async def on_action(
        self, session: AsyncSession, *, person: PersonContext, action: Action, replies: Replies
    ) -> list[Outgoing]:
        """A button click; ``action`` names the assignment, step and version it was made for."""
        conv = await store.get_conversation(session, assignment_id=action.assignment_id)
        resuming = action.step == RESUME
        stale = (
            conv is None
            or conv.person_id != person.id
            or conv.status not in store.HOLDING
            or (conv.current_step != action.step and not resuming)
        )
        if stale or conv is None:
            return [
                replies(
                    Message(text=t("chat.already_answered", person.locale), tone=Tone.WARNING, ephemeral=True)
                )
            ]
        turn = await self._turn(session, conv, person, replies)
        if conv.status != "active":
            await turn.reactivate()
            if resuming:
                return await turn.ask()
        if resuming:
            return await turn.ask(again=True)
        return await turn.handle_text(action.value, None, clicked=True)

    async def on_form(
        self,
        session: AsyncSession,
        *,
        person: PersonContext,
        assignment_id: int,
        answers: dict[str, str],
        replies: Replies,
    ) -> list[Outgoing]:
        """A whole part answered in one form (checked when submitted): store it, then show the summary."""
        conv = await store.get_conversation(session, assignment_id=assignment_id)
        if conv is None or conv.person_id != person.id or conv.status not in store.HOLDING:
            message = Message(text=t("chat.already_answered", person.locale), tone=Tone.WARNING)
            return [replies(message)]
        turn = await self._turn(session, conv, person, replies)
        if conv.status != "active":
            await turn.reactivate()
        return await turn.apply_form(answers)

    async def start_next(
        self, session: AsyncSession, *, person: PersonContext, key_prefix: str
    ) -> list[Outgoing]:
        """Start the person's next queued ritual if nothing else is in progress."""
        out: list[Outgoing] = []
        while (conv := await store.next_pending(session, person_id=person.id)) is not None:
            if conv.subject_id != conv.person_id:
                manager = await people.manager_of(session, person_id=conv.subject_id)
                if manager is None or manager.id != person.id:
                    out.extend(await self._hand_over(session, conv, manager, key_prefix))
                    continue
            turn = await self._turn(session, conv, person, Replies(key_prefix, person.id))
            return out + await turn.begin()
        return out

    async def open_many(
        self, session: AsyncSession, *, people: list[PersonContext], key_prefix: str
    ) -> tuple[list[Outgoing], set[int]]:
        """``start_next`` for many people at once (the scheduler's fan-out): a few statements per
        batch instead of a few per person. Returns what to send and who was started.

        Everyone's own parts are opened together; anything else (a manager's part, which may hand
        over) goes through ``start_next`` one by one.
        """
        by_id = {p.id: p for p in people}
        due = await store.next_pending_many(session, person_ids=list(by_id), now=utcnow())
        out: list[Outgoing] = []
        started: set[int] = set()
        groups: dict[tuple[int, str], list[ConversationRow]] = {}
        for conv in due.values():
            if conv.subject_id != conv.person_id:
                one = await self.start_next(session, person=by_id[conv.person_id], key_prefix=key_prefix)
                out.extend(one)
                started.update(o.person_id for o in one if o.assignment_id is not None and o.person_id)
                continue
            groups.setdefault((conv.ritual_id, conv.part), []).append(conv)
        for (ritual_id, part_id), convs in groups.items():
            ritual = await self.ritual(session, ritual_id)
            part = ritual.part(part_id)
            versions = await store.open_many(
                session, assignment_ids=[c.id for c in convs], first_step=part.steps[0].id, now=utcnow()
            )
            # started meanwhile by the person's own event: left alone
            opened = [(c, by_id[c.person_id]) for c in convs if c.id in versions]
            shown = await self.evidence(session, part.steps[0], opened)
            for conv, person in opened:
                key, message = prompts.first_prompt(
                    ritual,
                    part,
                    assignment_id=conv.id,
                    version=versions[conv.id],
                    locale=person.locale,
                    subject=person.name,
                    evidence=shown.get(conv.id),
                    timezone=person.timezone,
                )
                version = versions[conv.id]
                out.append(
                    Outgoing(
                        person.id,
                        key,
                        message,
                        kind="intro",
                        assignment_id=conv.id,
                        assignment_version=version,
                    )
                )
                started.add(person.id)
        return out, started

    async def _hand_over(
        self, session: AsyncSession, conv: ConversationRow, manager: PersonContext | None, key_prefix: str
    ) -> list[Outgoing]:
        """A manager's part queued for someone who is no longer the subject's manager moves on.

        It would show them the subject's self-assessment, which is now their new manager's to see.
        """
        await store.move(
            session, assignment_id=conv.id, expected_version=conv.version, status="expired", current_step=None
        )
        if manager is None:
            return []
        created = await store.create_assignment(
            session, cycle_id=conv.cycle_id, person_id=manager.id, subject_id=conv.subject_id, part=conv.part
        )
        if created is None:
            return []
        return await self.start_next(session, person=manager, key_prefix=f"{key_prefix}:to{manager.id}")

    async def _turn(
        self, session: AsyncSession, conv: ConversationRow, person: PersonContext, replies: Replies
    ) -> Turn:
        ritual = await self.ritual(session, conv.ritual_id)
        subject = person.name
        if conv.subject_id != conv.person_id:
            found = await people.by_id(session, person_id=conv.subject_id)
            subject = found.name if found else t("chat.someone", person.locale)
        return turn_class(ritual.key)(self, session, conv, person, ritual, subject, replies)


class Turn:
    """One step of one conversation: the state read at the start and what the step produces."""

    def __init__(
        self,
        engine: Engine,
        session: AsyncSession,
        conv: ConversationRow,
        person: PersonContext,
        ritual: Ritual,
        subject: str,
        replies: Replies,
    ) -> None:
        self.engine, self.session, self.conv, self.person = engine, session, conv, person
        self.ritual, self.part, self.subject, self.replies = ritual, ritual.part(conv.part), subject, replies
        self.locale = person.locale
        self.version = conv.version
        self.step_id = conv.current_step
        self.out: list[Outgoing] = []

    # ---- state changes ------------------------------------------------------------------------

    async def _move(self, status: str, step: str | None, **kwargs: Any) -> None:
        self.version = await store.move(
            self.session,
            assignment_id=self.conv.id,
            expected_version=self.version,
            status=status,
            current_step=step,
            **kwargs,
        )
        self.step_id = step

    async def reactivate(self) -> None:
        """Back from ``later`` or ``stop``: the conversation continues where it was."""
        await self._move("active", self.step_id, started=True)

    async def begin(self) -> list[Outgoing]:
        """Open a pending assignment: the intro, then the first question."""
        first = self.part.steps[0]
        await self._move("active", first.id, started=True)
        key, message = prompts.first_prompt(
            self.ritual,
            self.part,
            assignment_id=self.conv.id,
            version=self.version,
            locale=self.locale,
            subject=self.subject,
            alongside=await self._alongside(),
            evidence=await self._evidence(first),
            timezone=self.person.timezone,
        )
        self._emit(key, message, kind="intro")
        return self.out

    async def _alongside(self) -> tuple[Field_, ...]:
        """For a manager's part, the subject's own answers to the first part, shown beside it."""
        if self.part.audience != "manager":
            return ()
        own = await store.find_assignment(
            self.session,
            cycle_id=self.conv.cycle_id,
            person_id=self.conv.subject_id,
            subject_id=self.conv.subject_id,
            part=self.ritual.parts[0].id,
        )
        if own is None:
            return ()
        answers = await store.answers_for(self.session, assignment_id=own)
        await audit.write(
            self.session,
            actor_id=self.person.id,
            action="record.read",
            subject_id=self.conv.subject_id,
            detail={"assignment": own, "why": "manager assessment"},
        )
        return prompts.answer_fields(self.ritual.parts[0], answers, self.locale, self.subject)

    async def _evidence(self, step: Step, *, gather: bool = True) -> Evidence | None:
        """What the task systems showed at ``step``: as first shown (kept with the answers), or
        gathered now when it was not shown yet (and ``gather``)."""
        if step.evidence is None or not self.engine.tasks.enabled:
            return None  # no source enabled: the ritual is asked as written
        found = task_evidence.stored(await store.answers_for(self.session, assignment_id=self.conv.id))
        if found is not None or not gather:
            return found
        return (await self.engine.evidence(self.session, step, [(self.conv, self.person)])).get(self.conv.id)

    # ---- messages -----------------------------------------------------------------------------

    def _emit(self, key: str, message: Message, *, kind: str, tied: bool = True, due_at: Any = None) -> None:
        self.out.append(
            Outgoing(
                self.person.id,
                key,
                message,
                kind=kind,
                assignment_id=self.conv.id if tied else None,
                assignment_version=self.version if tied else None,
                due_at=due_at,
            )
        )

    def _reply(self, text: str, tone: Tone = Tone.PLAIN) -> list[Outgoing]:
        return [*self.out, self.replies(Message(text=text, tone=tone))]

    def _step(self) -> Step:
        step = self.part.step(self.step_id or "")
        assert step is not None, f"assignment {self.conv.id} is at unknown step {self.step_id!r}"
        return step

    async def ask(
        self, *, reason: str | None = None, current: Any = None, again: bool = False
    ) -> list[Outgoing]:
        """Show what the conversation is at: a question, the summary or the edit chooser.

        A new state's question is queued under the state's key. A re-ask (after a refused answer,
        with ``reason``; or on "resume", ``again``) is a reply: the state did not move, and its key
        was used already.
        """
        key, message = await self._current(reason=reason, current=current)
        if reason or again:
            return [*self.out, self.replies(message)]
        self._emit(key, message, kind="prompt")
        return self.out

    async def _current(self, *, reason: str | None, current: Any) -> tuple[str, Message]:
        key = prompts.prompt_key(self.conv.id, self.version, self.step_id or "")
        if self.step_id == SUMMARY:
            answers = await store.answers_for(self.session, assignment_id=self.conv.id)
            message = prompts.summary(
                self.ritual,
                self.part,
                answers,
                assignment_id=self.conv.id,
                version=self.version,
                locale=self.locale,
                subject=self.subject,
                reason=reason,
            )
            return key, message
        if self.step_id == EDIT:
            message = prompts.edit_chooser(
                self.part,
                assignment_id=self.conv.id,
                version=self.version,
                locale=self.locale,
                subject=self.subject,
            )
            return key, message
        step = self._step()
        message = prompts.question(
            self.ritual,
            self.part,
            step,
            assignment_id=self.conv.id,
            version=self.version,
            locale=self.locale,
            subject=self.subject,
            current=current,
            reason=reason,
            evidence=await self._evidence(step),
            timezone=self.person.timezone,
        )
        return key, message

    # ---- what the person said -----------------------------------------------------------------

    async def handle_text(
        self, text: str, control: ControlWord | None, *, clicked: bool = False
    ) -> list[Outgoing]:
        """Route one message or click at the current state."""
        if self.step_id == SUMMARY:
            return await self._at_summary(text, control, clicked)
        if self.step_id == EDIT:
            return await self._at_edit(text, control)
        if control is not None and control.control not in (Control.SUBMIT, Control.EDIT):
            return await self.control(control)
        return await self._answer(text)

    async def control(self, word: ControlWord) -> list[Outgoing]:
        """skip, back, later, stop, resume at a question."""
        handlers = {
            Control.SKIP: self._skip,
            Control.BACK: self._back,
            Control.LATER: lambda: self._later(word.argument),
            Control.STOP: self._stop,
            Control.RESUME: self._resume,
        }
        return await handlers[word.control]()

    async def _answer(self, text: str) -> list[Outgoing]:
        step = self._step()
        evidence = await self._evidence(step, gather=False)
        if evidence is not None and evidence.done and task_evidence.is_confirmation(text):
            return await self._take_evidence(step, evidence, [])
        result = parse_answer(step, text, self.locale)
        if not isinstance(result, Accepted):
            return await self.ask(reason=result.reason)
        if evidence is not None:
            return await self._take_evidence(step, evidence, result.value)
        return await self._store_and_advance(step, result.value, skipped=False)

    async def _take_evidence(self, step: Step, evidence: Evidence, additions: list[str]) -> list[Outgoing]:
        """Answer a step that showed the task list; on to the next step."""
        value = await self._counted(step, evidence, additions)
        return await self._store_and_advance(step, value, skipped=False)

    async def _counted(self, step: Step, evidence: Evidence, additions: list[str]) -> list[str]:
        """The answer to a step that showed the task list: its done items, then what the person added.
        The record of what was shown now also says what was counted and when."""
        value = evidence.answer(additions, limit=step.max_length)
        confirmed = evidence.confirmed(value, at=utcnow(), limit=step.max_length)
        await store.save_answer(
            self.session, assignment_id=self.conv.id, step=EVIDENCE, value=confirmed.to_json()
        )
        return value

    async def apply_form(self, answers: dict[str, str]) -> list[Outgoing]:
        """Store every answer of a form (re-checked here: the form may have changed hands), then summary."""
        shows = next((s for s in self.part.steps if s.evidence is not None), None)
        evidence = await self._evidence(shows, gather=False) if shows is not None else None
        wrong = form_problems(task_evidence.form_part(self.part, evidence), answers, self.locale)
        if wrong:
            lines = [
                f"{self.part.steps.index(s) + 1}. {wrong[s.id]}" for s in self.part.steps if s.id in wrong
            ]
            return self._reply("\n".join(lines), Tone.WARNING)
        for step in self.part.steps:
            given = (answers.get(step.id) or "").strip()
            result = parse_answer(step, given, self.locale) if given else None
            value = result.value if isinstance(result, Accepted) else None
            if step.evidence is not None and evidence is not None and (value is not None or evidence.done):
                value = await self._counted(step, evidence, value or [])
            await store.save_answer(
                self.session, assignment_id=self.conv.id, step=step.id, value=value, skipped=value is None
            )
        await self._move("active", SUMMARY)
        return await self.ask()

    async def _store_and_advance(self, step: Step, value: Any, *, skipped: bool) -> list[Outgoing]:
        asked_key = prompts.prompt_key(self.conv.id, self.version, step.id)
        await store.save_answer(
            self.session, assignment_id=self.conv.id, step=step.id, value=value, skipped=skipped
        )
        following = self.part.next_step(step.id)
        target = SUMMARY if self.conv.return_to_summary or following is None else following.id
        await self._move("active", target)
        saved = prompts.saved(step, value, locale=self.locale, subject=self.subject, replaces=asked_key)
        self._emit(f"{asked_key}:saved", saved, kind="update", tied=False)
        return await self.ask()

    async def _skip(self) -> list[Outgoing]:
        step = self._step()
        evidence = await self._evidence(step, gather=False)
        if evidence is not None and evidence.done:
            # nothing to add to the listed done items: they are the answer
            return await self._take_evidence(step, evidence, [])
        if step.required:
            return await self.ask(reason=t("chat.required", self.locale))
        return await self._store_and_advance(step, None, skipped=True)

    async def _back(self) -> list[Outgoing]:
        previous = self.part.previous_step(self._step().id)
        if previous is None:
            return await self.ask(reason=t("chat.at_first", self.locale))
        await self._move("active", previous.id)
        answers = await store.answers_for(self.session, assignment_id=self.conv.id)
        return await self.ask(current=answers.get(previous.id, (None, True))[0])

    async def _later(self, argument: str) -> list[Outgoing]:
        until = snooze_until(
            argument, now=utcnow(), timezone=self.person.timezone, default_minutes=self.engine.snooze_minutes
        )
        if until is None:
            return self._reply(t("chat.bad_duration", self.locale), Tone.WARNING)
        await self._move("snoozed", self.step_id, snoozed_until=until)
        local = until.astimezone(ZoneInfo(self.person.timezone)).strftime("%m-%d %H:%M")
        reminder = Message(
            text=t("chat.snooze_over", self.locale, title=self.ritual.title.get(self.locale)),
            hint=t("chat.resume_hint", self.locale),
            tone=Tone.PROMPT,
        )
        self._emit(f"a{self.conv.id}:v{self.version}:snooze", reminder, kind="reminder", due_at=until)
        return self._reply(t("chat.snoozed", self.locale, when=local))

    async def _stop(self) -> list[Outgoing]:
        await self._move("paused", self.step_id)
        return self._reply(t("chat.paused", self.locale, title=self.ritual.title.get(self.locale)))

    async def _resume(self) -> list[Outgoing]:
        return await self.ask(again=True)

    async def _at_summary(self, text: str, control: ControlWord | None, clicked: bool) -> list[Outgoing]:
        raw = text.strip().lower()
        if (control is not None and control.control is Control.SUBMIT) or raw in ("submit", "1"):
            return await self._submit()
        if control is not None and control.control is Control.EDIT and control.argument:
            return await self._edit_step(int(control.argument))
        if (control is not None and control.control is Control.EDIT) or raw in ("edit", "2"):
            await self._move("active", EDIT)
            return await self.ask()
        if control is not None and control.control in (
            Control.BACK,
            Control.LATER,
            Control.STOP,
            Control.RESUME,
        ):
            if control.control is Control.BACK:
                await self._move("active", self.part.steps[-1].id)
                return await self.ask()
            return await self.control(control)
        return await self.ask(reason=t("chat.summary_expected", self.locale))

    async def _at_edit(self, text: str, control: ControlWord | None) -> list[Outgoing]:
        raw = normalize(text)
        if self.part.step(raw) is not None:
            return await self._edit_step([s.id for s in self.part.steps].index(raw) + 1)
        number = small_number(raw, digits=3)
        if number is not None:
            return await self._edit_step(number)
        if control is not None and control.control is Control.EDIT and control.argument:
            return await self._edit_step(int(control.argument))
        if control is not None and control.control in (Control.BACK, Control.STOP, Control.LATER):
            if control.control is Control.BACK:
                await self._move("active", SUMMARY)
                return await self.ask()
            return await self.control(control)
        return self._reply(t("chat.edit_number", self.locale, count=len(self.part.steps)), Tone.WARNING)

    async def _edit_step(self, number: int) -> list[Outgoing]:
        if not 1 <= number <= len(self.part.steps):
            return self._reply(t("chat.edit_number", self.locale, count=len(self.part.steps)), Tone.WARNING)
        step = self.part.steps[number - 1]
        await self._move("active", step.id, return_to_summary=True)
        answers = await store.answers_for(self.session, assignment_id=self.conv.id)
        return await self.ask(current=answers.get(step.id, (None, True))[0])

    async def _submit(self) -> list[Outgoing]:
        missing = await self._missing_required()
        if missing:
            step = self.part.steps[missing[0]]
            await self._move("active", step.id, return_to_summary=True)
            return await self.ask(reason=t("chat.missing_required", self.locale, n=missing[0] + 1))
        summary_key = prompts.prompt_key(self.conv.id, self.version, SUMMARY)
        await self._move("submitted", None, submitted=True)
        done = Message(
            title=prompts._title(self.ritual, self.part, self.locale, self.subject),
            text=t("chat.submitted", self.locale, title=self.ritual.title.get(self.locale)),
            tone=Tone.SUCCESS,
            replaces=summary_key,
        )
        self._emit(f"a{self.conv.id}:submitted", done, kind="update", tied=False)
        await self._after_submit()
        return self.out + await self.engine.start_next(
            self.session, person=self.person, key_prefix=f"a{self.conv.id}:next"
        )

    async def _missing_required(self) -> list[int]:
        answers = await store.answers_for(self.session, assignment_id=self.conv.id)
        return [
            i
            for i, step in enumerate(self.part.steps)
            if step.required and (step.id not in answers or answers[step.id][1])
        ]

    async def _after_submit(self) -> None:
        """A submitted self-part opens the manager's part, about this person, for their manager."""
        index = [p.id for p in self.ritual.parts].index(self.part.id)
        if self.part.audience != "self" or index + 1 >= len(self.ritual.parts):
            return
        following: Part = self.ritual.parts[index + 1]
        manager = await people.manager_of(self.session, person_id=self.conv.subject_id)
        if manager is None:
            return
        created = await store.create_assignment(
            self.session,
            cycle_id=self.conv.cycle_id,
            person_id=manager.id,
            subject_id=self.conv.subject_id,
            part=following.id,
        )
        if created is None:
            return
        started = await self.engine.start_next(
            self.session, person=manager, key_prefix=f"a{self.conv.id}:mgr"
        )
        if started:
            self.out.extend(started)
            return
        queued = t(
            "chat.manager_part_queued",
            manager.locale,
            name=self.subject,
            title=self.ritual.title.get(manager.locale),
        )
        self.out.append(
            Outgoing(manager.id, f"a{self.conv.id}:mgr:queued", Message(text=queued), kind="notice")
        )


# rituals whose conversations add rules of their own to the generic steps: key → "module:Class" of a
# Turn subclass (imported on first use: those modules build on this one)
SPECIAL_TURNS: dict[str, str] = {
    # vague feedback asked once for an example, action items read as "text — owner — date", and the
    # record stored when submitted
    "one_on_one_record": "conversations.one_on_one_record:RecordTurn",
    # the manager's part shows the key events noted about the person in the quarter
    "quarterly_assessment": "conversations.assessment_turn:AssessmentTurn",
}


@cache
def turn_class(ritual_key: str) -> type[Turn]:
    """The Turn that runs conversations of the ritual ``ritual_key``."""
    target = SPECIAL_TURNS.get(ritual_key)
    if target is None:
        return Turn
    module, _, name = target.partition(":")
    found: type[Turn] = getattr(importlib.import_module(module), name)
    return found
