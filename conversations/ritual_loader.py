"""Load ritual YAML files: the shipped ones, then any overrides from a directory setting.

A broken file is refused with its name, the line, and what is wrong, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conversations.ritual_model import Ritual

BUILTIN_DIR = Path(__file__).resolve().parent / "rituals"


class RitualFileError(ValueError):
    """A ritual file cannot be used; the message names file, line and problem."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


def node_at(node: yaml.Node, loc: Iterable[Any]) -> yaml.Node:
    """The deepest YAML node along a pydantic error location (for its line number)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node


def describe_error(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


def real_errors(exc: ValidationError) -> list[Any]:
    """The errors worth reporting: an error on a list whose item already failed says nothing new."""
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    return [
        e
        for e, loc in zip(errors, locs, strict=True)
        if not any(o != loc and o[: len(loc)] == loc for o in locs)
    ]


def _duplicate_step(root: yaml.Node) -> tuple[int, str] | None:
    """The line and id of a step id used a second time in one list of steps."""
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == "steps" and isinstance(value, yaml.SequenceNode):
                    seen: set[str] = set()
                    for item in value.value:
                        ids = [v for k, v in getattr(item, "value", []) if getattr(k, "value", None) == "id"]
                        if ids and isinstance(ids[0], yaml.ScalarNode):
                            if ids[0].value in seen:
                                return ids[0].start_mark.line + 1, ids[0].value
                            seen.add(ids[0].value)
                pending.append(value)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return None


def parse_ritual(text: str, path: Path) -> Ritual:
    """Validate one file's text; raises RitualFileError pointing at the offending line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RitualFileError(path, mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    if root is None or not isinstance(data, dict):
        raise RitualFileError(path, 1, "expected a mapping with key, version, period, title and steps")
    duplicate = _duplicate_step(root)
    if duplicate is not None:
        raise RitualFileError(path, duplicate[0], f"step id {duplicate[1]!r} is used twice")
    shorthand = "steps" in data and "parts" not in data
    if shorthand:
        steps = data.pop("steps")
        data["parts"] = [{"id": "self", "audience": "self", "steps": steps}]
    try:
        return Ritual.model_validate(data)
    except ValidationError as exc:
        errors = real_errors(exc)
        first = errors[0]
        loc = list(first["loc"])
        if shorthand and loc[:2] == ["parts", 0]:
            loc = loc[2:]
        node = node_at(root, loc)
        problem = describe_error({**first, "loc": loc})
        more = len(errors) - 1
        if more:
            problem += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise RitualFileError(path, node.start_mark.line + 1, problem) from None


def load_file(path: Path) -> Ritual:
    """Read and validate one ritual file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RitualFileError(path, None, f"cannot read: {exc}") from None
    return parse_ritual(text, path)


def digest(ritual: Ritual) -> str:
    """A stable fingerprint of a question set, so a changed file is stored as a new definition."""
    body = json.dumps(ritual.model_dump(mode="json", by_alias=True), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class RitualCatalog:
    """The rituals in force, by key, with the words people use for them."""

    rituals: dict[str, Ritual]

    def get(self, key: str) -> Ritual:
        """The ritual with ``key``."""
        return self.rituals[key]

    def find(self, word: str) -> Ritual | None:
        """The ritual a person means by ``word`` (key, alias or title, any language)."""
        w = word.strip().lower()
        for ritual in self.rituals.values():
            names = {
                ritual.key,
                *(a.lower() for a in ritual.aliases),
                ritual.title.en.lower(),
                ritual.title.zh,
            }
            if w in names:
                return ritual
        return None


def load_catalog(override_dir: Path | None = None) -> RitualCatalog:
    """The built-in rituals, replaced or extended by ``*.yaml`` files in ``override_dir``."""
    found: dict[str, Ritual] = {}
    dirs = [BUILTIN_DIR] + ([override_dir] if override_dir else [])
    for directory in dirs:
        if not directory.is_dir():
            raise RitualFileError(directory, None, "rituals directory does not exist")
        for path in sorted(directory.glob("*.y*ml")):
            ritual = load_file(path)
            found[ritual.key] = ritual
    return RitualCatalog(found)
