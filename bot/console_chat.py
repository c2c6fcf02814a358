"""Chat with Cadence in a terminal: the console platform plus a small line-reading loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.app import App
from bot.platforms.console import ConsolePlatform, Said
from bot.settings import Settings
from conversations.i18n import t
from storage import people
from storage.org import list_people

ReadLine = Callable[[str], Awaitable[str | None]]


async def read_stdin(prompt: str) -> str | None:
    """One line from the terminal without blocking the event loop; None at end of input."""
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


class NotInOrgError(LookupError):
    """The person to chat as is not in the org data."""


class ConsoleSession:
    """Shows each person what was sent to them, as they would see it in their DM."""

    def __init__(
        self,
        app: App,
        console: ConsolePlatform,
        *,
        locale: str,
        write: Callable[[str], None] = print,
        show_others: bool = True,
    ) -> None:
        self.app, self.console, self.write, self.locale = app, console, write, locale
        self.show_others = show_others
        self.seen: dict[str, int] = {}

    def _unseen(self, email: str) -> list[Said]:
        mine = [s for s in self.console.transcript if s.recipient == email]
        new = mine[self.seen.get(email, 0) :]
        self.seen[email] = len(mine)
        return new

    def show(self, email: str) -> list[Said]:
        """Print what ``email`` has not seen yet, and say how much waits for others."""
        new = self._unseen(email)
        for said in new:
            prefix = "  ↳ " if said.updated else "  "
            self.write(prefix + said.text.replace("\n", "\n    "))
        counts: dict[str, int] = {}
        for said in self.console.transcript:
            counts[said.recipient] = counts.get(said.recipient, 0) + 1
        waiting = {who: n - self.seen.get(who, 0) for who, n in counts.items() if who != email}
        waiting = {who: n for who, n in waiting.items() if n > 0}
        if waiting and self.show_others:
            self.write(
                "  "
                + t("cli.others_waiting", self.locale, messages=sum(waiting.values()), people=len(waiting))
            )
        return new

    async def say(self, email: str, text: str) -> list[Said]:
        """``email`` types ``text``; returns (and prints) what they got back."""
        await self.console.say(email, text)
        await self.app.delivery.drain()
        return self.show(email)


async def repl(session: ConsoleSession, as_email: str, *, read_line: ReadLine = read_stdin) -> None:
    """Read lines until ``:quit`` or end of input; ``:as EMAIL`` switches who is typing."""
    current = as_email
    while True:
        line = await read_line(f"{current}> ")
        if line is None or line.strip() in (":quit", ":q", ":exit"):
            return
        line = line.strip()
        if not line:
            continue
        if line.startswith(":as "):
            current = line[4:].strip().lower()
            session.show(current)
            continue
        if line == ":who":
            async with session.app.db.sessions() as s:
                for p in await list_people(s):
                    session.write(f"  {p.email:32} {p.name} · {p.department} · {p.locale}")
            continue
        await session.say(current, line)


async def chat(settings: Settings, as_email: str) -> None:
    """``cadence run --as EMAIL``: chat on the configured database in the terminal."""
    console = ConsolePlatform()
    app = App(settings, platforms={"console": console})
    await app.start()
    try:
        async with app.db.sessions() as s:
            person = await people.by_email(s, email=as_email)
        if person is None:
            raise NotInOrgError(t("cli.not_in_org", settings.default_locale, email=as_email))
        print(t("cli.chat_intro", person.locale, name=person.name, email=person.email))
        await repl(ConsoleSession(app, console, locale=person.locale), person.email)
    finally:
        await app.stop()
