"""Parse chat commands once for every platform: English words and their Chinese aliases."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from conversations.answers import normalize
from conversations.mentions import is_mention

# canonical command → words people type for it
COMMANDS: dict[str, tuple[str, ...]] = {
    "help": ("help", "?", "帮助", "菜单"),
    "cycle": ("cycle", "cycles", "周期"),
    "me": ("me", "my", "我", "我的"),
    "lang": ("lang", "language", "语言"),
    "view": ("view", "show", "查看"),
    "away": ("away", "请假到", "休假到", "请假至", "休假至", "请假", "休假"),
    "returned": ("销假",),
    "connect": ("connect", "authorize", "authorise", "授权", "连接"),
    # the 1:1 assistant
    "agenda": ("agenda", "议程"),
    "oneonone": ("1on1", "1:1", "one-on-one", "oneonone", "一对一", "面谈"),
    "note": ("note", "记录"),
    "feedback": ("feedback", "反馈"),
    "stats": ("stats", "statistics", "统计"),
    "record": ("record", "档案"),
}
# commands whose words after the mention are free text ("note @alice didn't miss a deadline")
FREE_TEXT = frozenset({"note", "feedback", "oneonone"})
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "start": ("start", "open", "开始", "发起", "启动"),
    "status": ("status", "progress", "状态", "进度"),
    "remind": ("remind", "nudge", "提醒", "催办"),
    "close": ("close", "end", "关闭", "结束"),
}
# what "me" and "connect" may be about: "me tasks", "connect tasks"
ABOUT: dict[str, tuple[str, ...]] = {"tasks": ("tasks", "task", "todos", "任务", "待办")}
# whole words that stand for a command and its subject (Chinese needs no space between them)
PHRASES: dict[str, tuple[str, str]] = {
    "我的任务": ("me", "tasks"),
    "我的待办": ("me", "tasks"),
    "授权任务": ("connect", "tasks"),
    "连接任务": ("connect", "tasks"),
    "请求反馈": ("feedback", "请求"),
    "匿名反馈": ("feedback", "匿名"),
}
OPTIONS: dict[str, tuple[str, ...]] = {
    "dept": ("--dept", "--department", "--部门"),
    "people": ("--people", "--person", "--人员"),
    "due": ("--due", "--截止"),
}
_GLUED = ("请假到", "休假到", "请假至", "休假至")
_FIRST_WORDS = frozenset(w for words in COMMANDS.values() for w in words) | {"cadence", *PHRASES}
_PREFIXES = ("/cadence", "/节拍", "cadence", "/")
# parse errors that mean "this was never a command" rather than "a command, typed wrong"
_NOT_COMMANDS = (
    "cmd.unknown",
    "cmd.unbalanced_quote",
    "cmd.unknown_sub",
    "cmd.cycle_needs_sub",
    "cmd.connect_what",
)


@dataclass(frozen=True)
class Command:
    """A parsed command: its canonical name, sub-command, positional words and options."""

    name: str
    sub: str | None = None
    args: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    raw: str = ""  # as typed, for commands that read a phrase ("away until Dec 10")


@dataclass(frozen=True)
class CommandError:
    """Why a command could not be parsed: an i18n key and the values it names."""

    key: str
    values: dict[str, str] = field(default_factory=dict)


def _lookup(word: str, table: dict[str, tuple[str, ...]]) -> str | None:
    w = word.lower()
    return next((name for name, words in table.items() if w in words), None)


def _tokens(text: str) -> list[str] | CommandError:
    cleaned = normalize(text).replace("—", "--").replace("“", '"').replace("”", '"')
    for prefix in _PREFIXES:
        if cleaned.lower().startswith(prefix) and (
            prefix == "/" or cleaned[len(prefix) : len(prefix) + 1] in ("", " ")
        ):
            cleaned = cleaned[len(prefix) :].strip()
            break
    try:
        return shlex.split(cleaned)
    except ValueError:
        words = cleaned.split()
        # free text may hold an apostrophe ("didn't"): split on spaces, the handler reads ``raw``
        if words and _lookup(words[0], COMMANDS) in FREE_TEXT:
            return words
        return CommandError("cmd.unbalanced_quote")


def looks_like_command(text: str) -> bool:
    """Whether ``text`` is meant as a command rather than an answer to a question.

    "me and Bob shipped it" is an answer, so a command word only counts with the arguments its
    command takes; anything starting with "/" is always a command.
    """
    cleaned = normalize(text)
    if cleaned.startswith("/"):
        return True
    first = cleaned.split(maxsplit=1)[0].lower() if cleaned else ""
    if first not in _FIRST_WORDS and not first.startswith(_GLUED):  # most messages are answers
        return False
    parsed = parse_command(text)
    if isinstance(parsed, CommandError):
        # "Cycle time dropped 20%" is an answer: only a known sub-command makes "cycle" a command
        return parsed.key not in _NOT_COMMANDS
    arity = {
        "help": (0, 0),
        "me": (0, 0),
        "lang": (1, 1),
        "view": (1, 2),
        "cycle": (0, 9),
        "away": (1, 4),
        "returned": (0, 0),
        "connect": (0, 0),
        "agenda": (1, 3),  # "@Emma Smith" arrives as two words
        "oneonone": (1, 6),
        "note": (2, 500),
        "feedback": (1, 500),
        "stats": (0, 2),
        "record": (0, 3),
    }
    low, high = arity[parsed.name]
    needs_mention = ("view", "agenda", "oneonone", "note", "feedback")
    # answers may start with these words ("Feedback given to the new hires…", "Stats dashboard
    # shipped", "Record revenue"): they are commands only in the shapes nothing else takes
    if parsed.name == "feedback" and len(parsed.args) <= 1:
        return not parsed.args or parsed.args[0].lower() in ("given", "help", "收到")
    if parsed.name == "stats":
        return not parsed.args or (len(parsed.args) == 1 and parsed.args[0].lstrip("#").isdigit())
    if parsed.name == "record" and parsed.args and not is_mention(parsed.args[0]):
        return False
    if parsed.name in needs_mention and not any(is_mention(a) for a in parsed.args[:6]):
        return False  # "note that the build is green" is an answer, not a command
    return low <= len(parsed.args) <= high


def parse_command(text: str) -> Command | CommandError:
    """A command, or what is wrong with it."""
    tokens = _tokens(text)
    if isinstance(tokens, CommandError):
        return tokens
    if not tokens:
        return Command("help")
    name = _lookup(tokens[0], COMMANDS)
    glued = next((w for w in _GLUED if tokens[0].startswith(w) and tokens[0] != w), None)
    if name is None and glued is not None:
        # Chinese needs no space: "请假到12月10日" is the command and its date
        tokens = [glued, tokens[0][len(glued) :], *tokens[1:]]
        name = _lookup(glued, COMMANDS)
    if name is None and tokens[0].lower() in PHRASES:
        name, about = PHRASES[tokens[0].lower()]
        tokens = [name, about, *tokens[1:]]
    if name is None:
        return CommandError("cmd.unknown", {"word": tokens[0][:40]})
    rest = tokens[1:]
    sub = None
    if name in ("me", "connect") and rest and _lookup(rest[0], ABOUT) is not None:
        sub, rest = _lookup(rest[0], ABOUT), rest[1:]
    elif name == "connect":
        return CommandError("cmd.connect_what")
    if name == "cycle":
        if not rest:
            return CommandError("cmd.cycle_needs_sub")
        sub = _lookup(rest[0], SUBCOMMANDS)
        if sub is None:
            return CommandError("cmd.unknown_sub", {"word": rest[0][:40]})
        rest = rest[1:]
    if name in FREE_TEXT:
        # free text keeps its dashes ("—" reads as "--"); the handler reads its own flags
        return Command(name, sub, tuple(rest), {}, raw=normalize(text))
    args: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("--"):
            key, _, inline = token.partition("=")
            option = _lookup(key, OPTIONS)
            if option is None:
                return CommandError("cmd.unknown_option", {"option": key[:40]})
            if inline:
                options[option] = inline
            elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                options[option] = rest[i + 1]
                i += 1
            else:
                return CommandError("cmd.option_needs_value", {"option": key})
        else:
            args.append(token)
        i += 1
    return Command(name, sub, tuple(args), options, raw=normalize(text))
