"""Read an org file (CSV or YAML) into validated rows, collecting every problem with its line number."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conversations.i18n import normalize_locale, t
from storage.org import ID_PLATFORMS, ROLE_ORDER, OrgRow

REQUIRED_COLUMNS = ("email", "name")
TEXT_COLUMNS = (
    "email",
    "name",
    "manager_email",
    "department",
    "title",
    "timezone",
    "country",
    "locale",
    "away_until",
)
ID_COLUMNS = tuple(f"{platform}_id" for platform in ID_PLATFORMS)
COLUMNS = (*TEXT_COLUMNS, "roles", *ID_COLUMNS)
# the database column sizes; checked here so an over-long value is a line-numbered problem, not a crash
LIMITS = {"email": 320, "manager_email": 320, "name": 200, "department": 200, "title": 200, "country": 8}
ID_LIMIT = 256
_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;.]+")
_ROLE_SPLIT = re.compile(r"[;,|]")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an org file: an i18n code, the lines it concerns, and the values to show."""

    code: str
    lines: tuple[int, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)


def describe(problem: Problem, locale: str) -> str:
    """One problem as a sentence in ``locale``, led by its line number(s)."""
    params = dict(problem.params)
    if "platform" in params:
        params["platform"] = t(f"org.platform_{params['platform']}", locale)
    message = t(f"org.problem_{problem.code}", locale, **params)
    if not problem.lines:
        return message
    if len(problem.lines) == 1:
        return t("org.at_line", locale, line=problem.lines[0], message=message)
    lines = t("org.list_sep", locale).join(str(n) for n in problem.lines)
    return t("org.at_lines", locale, lines=lines, message=message)


class OrgImportError(Exception):
    """The org file was refused; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.lines[:1] or (0,))
        super().__init__("\n".join(describe(p, "en") for p in self.problems))


@dataclass
class RawRow:
    """One person as written in the file: trimmed text per column, before any checking."""

    line: int
    values: dict[str, str] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)


# --- reading files ---------------------------------------------------------------------------------


def parse_org_file(path: Path) -> list[OrgRow]:
    """The validated rows of the org file at ``path`` (.csv, .yaml or .yml); raises OrgImportError."""
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("csv", "yaml", "yml"):
        raise OrgImportError([Problem("unknown_format", params={"path": path.name})])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OrgImportError([_unreadable(path, exc.strerror or str(exc))]) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if kind != "csv":
            raise OrgImportError([_unreadable(path, str(exc))]) from exc
        # Excel on Chinese Windows saves "CSV" as GB18030; YAML is UTF-8 by definition
        text = data.decode("gb18030", errors="strict")
    return parse_org_text(text, kind="csv" if kind == "csv" else "yaml")


def parse_org_text(text: str, *, kind: str) -> list[OrgRow]:
    """The validated rows of an org file's text; ``kind`` is ``csv`` or ``yaml``; raises OrgImportError."""
    raw, problems = read_csv(text) if kind == "csv" else read_yaml(text)
    if not raw and not problems:
        problems = [Problem("empty")]
    rows = [check_row(r, problems) for r in raw]
    problems += check_org(rows)
    if problems:
        raise OrgImportError(problems)
    return rows


def _unreadable(path: Path, reason: str) -> Problem:
    return Problem("unreadable", params={"path": path.name, "reason": reason})


def _known() -> str:
    return ", ".join(COLUMNS)


def read_csv(text: str) -> tuple[list[RawRow], list[Problem]]:
    """Raw rows of a CSV whose first line is the header; line numbers are the file's."""
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            return [], []
        columns = [h.strip().lower() for h in header]
        problems += _check_header(columns, reader.line_num)
        if any(p.code == "missing_columns" for p in problems):
            return [], problems
        rows = []
        start = reader.line_num + 1
        for cells in reader:
            row = _csv_row(columns, cells, start, problems)
            if row is not None:
                rows.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        return [], [*problems, Problem("csv_syntax", (reader.line_num,), {"reason": str(exc)})]
    return rows, problems


def _delimiter(text: str) -> str:
    # spreadsheets in many locales export with ";" or tabs; only the header line decides
    first = text.split("\n", 1)[0]
    if "," not in first:
        for candidate in ("\t", ";"):
            if candidate in first:
                return candidate
    return ","


def _check_header(columns: list[str], line: int) -> list[Problem]:
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        problems.append(Problem("missing_columns", (line,), {"columns": ", ".join(missing)}))
    seen: set[str] = set()
    for name in columns:
        if name and name not in COLUMNS:
            problems.append(Problem("unknown_field", (line,), {"field": name, "known": _known()}))
        elif name in seen:
            problems.append(Problem("duplicate_column", (line,), {"field": name}))
        seen.add(name)
    return problems


def _csv_row(columns: list[str], cells: list[str], line: int, problems: list[Problem]) -> RawRow | None:
    if not any(c.strip() for c in cells):
        return None  # blank lines between people are harmless
    if any(c.strip() for c in cells[len(columns) :]):
        problems.append(Problem("extra_values", (line,)))
    row = RawRow(line)
    for name, cell in zip(columns, cells, strict=False):
        _put(row, name, cell.strip())
    row.roles = [r for r in _ROLE_SPLIT.split(row.values.pop("roles", "")) if r.strip()]
    return row


def _put(row: RawRow, name: str, value: str) -> None:
    if name in ID_COLUMNS:
        if value:
            row.ids[name.removesuffix("_id")] = value
    elif name in COLUMNS:
        row.values[name] = value


def read_yaml(text: str) -> tuple[list[RawRow], list[Problem]]:
    """Raw rows of a YAML list of people (or ``people:`` holding one); line numbers from the nodes."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return [], [_yaml_syntax(exc)]
    if root is None:
        return [], []
    items = _people_node(root)
    if items is None:
        return [], [Problem("yaml_shape", (_line(root),))]
    problems: list[Problem] = []
    rows = [_yaml_row(item, problems) for item in items.value]
    return [r for r in rows if r is not None], problems


def _yaml_syntax(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    reason = getattr(exc, "problem", None) or str(exc)
    return Problem("yaml_syntax", (mark.line + 1,) if mark else (), {"reason": str(reason)})


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _people_node(root: Node) -> SequenceNode | None:
    if isinstance(root, SequenceNode):
        return root
    if isinstance(root, MappingNode):
        for key, value in root.value:
            if isinstance(key, ScalarNode) and key.value == "people" and isinstance(value, SequenceNode):
                return value
    return None


def _yaml_row(item: Node, problems: list[Problem]) -> RawRow | None:
    if not isinstance(item, MappingNode):
        problems.append(Problem("not_mapping", (_line(item),)))
        return None
    row = RawRow(_line(item))
    seen: set[str] = set()
    for key_node, value in item.value:
        key = str(key_node.value).strip().lower() if isinstance(key_node, ScalarNode) else "?"
        if key in seen:
            problems.append(Problem("duplicate_key", (_line(key_node),), {"field": key}))
        seen.add(key)
        _yaml_field(row, key, value, problems)
    return row


def _yaml_field(row: RawRow, key: str, value: Node, problems: list[Problem]) -> None:
    if key == "ids":
        _yaml_ids(row, value, problems)
    elif key == "roles" and isinstance(value, SequenceNode):
        row.roles = [_scalar(v, "roles", problems) for v in value.value]
    elif key == "roles":
        row.roles = [r for r in _ROLE_SPLIT.split(_scalar(value, key, problems)) if r.strip()]
    elif key in COLUMNS:
        _put_checked(row, key, _scalar(value, key, problems), problems)
    else:
        problems.append(
            Problem("unknown_field", (_line(value),), {"field": key, "known": _known() + ", ids"})
        )


def _yaml_ids(row: RawRow, node: Node, problems: list[Problem]) -> None:
    if not isinstance(node, MappingNode):
        problems.append(Problem("ids_not_mapping", (_line(node),)))
        return
    for key_node, value in node.value:
        platform = str(key_node.value).strip().lower()
        if platform not in ID_PLATFORMS:
            known = ", ".join(ID_PLATFORMS)
            problems.append(
                Problem("unknown_field", (_line(key_node),), {"field": f"ids.{platform}", "known": known})
            )
            continue
        _put_checked(row, f"{platform}_id", _scalar(value, f"ids.{platform}", problems), problems)


def _put_checked(row: RawRow, name: str, value: str, problems: list[Problem]) -> None:
    # the same id may come as `slack_id:` and under `ids:`; two different values are a mistake
    platform = name.removesuffix("_id")
    old = row.ids.get(platform) if name in ID_COLUMNS else None
    if old and value and old != value:
        params = {"platform": platform, "first": old, "second": value}
        problems.append(Problem("conflicting_id", (row.line,), params))
    _put(row, name, value)


def _scalar(node: Node, key: str, problems: list[Problem]) -> str:
    # the raw text, not the YAML 1.1 value: country NO stays "NO", an id 0123 keeps its leading zero
    if not isinstance(node, ScalarNode):
        problems.append(Problem("not_scalar", (_line(node),), {"field": key}))
        return ""
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return str(node.value).strip()


# --- checking rows ---------------------------------------------------------------------------------


def check_row(raw: RawRow, problems: list[Problem]) -> OrgRow:
    """The row as an OrgRow; anything wrong with it alone is appended to ``problems``."""
    v = raw.values
    line = (raw.line,)
    email = v.get("email", "").lower()
    manager = v.get("manager_email", "").lower()
    _require_email("email", email, line, problems, required=True)
    _require_email("manager_email", manager, line, problems, required=False)
    if not v.get("name"):
        problems.append(Problem("missing_field", line, {"field": "name"}))
    for name, limit in LIMITS.items():
        if len(v.get(name, "")) > limit:
            problems.append(Problem("too_long", line, {"field": name, "limit": str(limit)}))
    for platform, value in raw.ids.items():
        if len(value) > ID_LIMIT:
            problems.append(Problem("too_long", line, {"field": f"{platform}_id", "limit": str(ID_LIMIT)}))
    return OrgRow(
        email=email,
        name=v.get("name", ""),
        manager_email=manager or None,
        department=v.get("department", ""),
        title=v.get("title", ""),
        timezone=_timezone(v.get("timezone", ""), line, problems),
        country=v.get("country", "").upper(),
        locale=_locale(v.get("locale", ""), line, problems),
        roles=_roles(raw.roles, line, problems),
        ids=dict(raw.ids),
        line=raw.line,
        away_until=_day(v.get("away_until", ""), line, problems),
    )


def _day(value: str, line: tuple[int, ...], problems: list[Problem]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(Problem("bad_date", line, {"field": "away_until", "value": value}))
        return None


def _require_email(
    name: str, value: str, line: tuple[int, ...], problems: list[Problem], *, required: bool
) -> None:
    if not value:
        if required:
            problems.append(Problem("missing_field", line, {"field": name}))
    elif not _EMAIL.fullmatch(value):
        problems.append(Problem("bad_email", line, {"field": name, "value": value}))


def _timezone(value: str, line: tuple[int, ...], problems: list[Problem]) -> str:
    if not value:
        return "UTC"
    # "localtime" names whatever zone the server happens to be in, which is no one's zone
    if value != "localtime":
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    problems.append(Problem("bad_timezone", line, {"value": value}))
    return value


def _locale(value: str, line: tuple[int, ...], problems: list[Problem]) -> str:
    if not value:
        return "en"
    locale = normalize_locale(value, default="")
    if not locale:
        problems.append(Problem("unknown_locale", line, {"value": value}))
    return locale or value


def _roles(values: Iterable[str], line: tuple[int, ...], problems: list[Problem]) -> tuple[str, ...]:
    wanted = {"employee"}
    for value in values:
        role = value.strip().lower()
        if role in ROLE_ORDER:
            wanted.add(role)
        elif role:
            problems.append(Problem("unknown_role", line, {"value": value.strip()}))
    return tuple(r for r in ROLE_ORDER if r in wanted)


# --- checking the org as a whole -------------------------------------------------------------------


def check_org(rows: Sequence[OrgRow]) -> list[Problem]:
    """Problems between rows: duplicates, managers missing from the file, circular manager chains."""
    problems = _duplicate_emails(rows) + _duplicate_ids(rows)
    first: dict[str, OrgRow] = {}
    for row in rows:
        if row.email:
            first.setdefault(row.email, row)
    for row in rows:
        if row.manager_email and row.manager_email not in first and _EMAIL.fullmatch(row.manager_email):
            problems.append(Problem("unknown_manager", (row.line,), {"value": row.manager_email}))
    return problems + _cycles(first)


def _duplicate_emails(rows: Sequence[OrgRow]) -> list[Problem]:
    lines: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row.email:
            lines[row.email].append(row.line)
    return [Problem("duplicate_email", tuple(ls), {"email": e}) for e, ls in lines.items() if len(ls) > 1]


def _duplicate_ids(rows: Sequence[OrgRow]) -> list[Problem]:
    lines: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        for platform, value in row.ids.items():
            lines[(platform, value)].append(row.line)
    return [
        Problem("duplicate_id", tuple(ls), {"platform": p, "value": v})
        for (p, v), ls in lines.items()
        if len(ls) > 1
    ]


def _cycles(people: Mapping[str, OrgRow]) -> list[Problem]:
    """Each manager loop once, in chain order; walks every chain once, so it is linear in people."""
    problems = []
    done: set[str] = set()
    for start in people:
        path: list[str] = []
        email: str | None = start
        while email is not None and email in people and email not in done and email not in path:
            path.append(email)
            email = people[email].manager_email
        if email is not None and email in path:
            problems.append(_cycle_problem([people[e] for e in path[path.index(email) :]]))
        done.update(path)
    return problems


def _cycle_problem(loop: list[OrgRow]) -> Problem:
    if len(loop) == 1:
        return Problem("self_manager", (loop[0].line,), {"email": loop[0].email})
    chain = " → ".join(r.email for r in [*loop, loop[0]])
    return Problem("manager_cycle", tuple(r.line for r in loop), {"chain": chain})
