"""Ritual files: the shipped ones are complete in both languages; a broken file is refused with its
name, the line and the problem; an override directory replaces a ritual by key; a broken override
stops the process before it touches the database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import text
from sqlmodel import SQLModel

from bot.app import App
from conversations.ritual_loader import BUILTIN_DIR, RitualFileError, load_catalog, load_file
from conversations.ritual_model import LocalText, Ritual, StepType
from storage.engine import Database
from tests.harness import test_settings as settings_for
from tests.harness import write_file

CJK = re.compile(r"[\u4e00-\u9fff]")
PLACEHOLDER = re.compile(r"\{\w+\}")

# A small valid ritual; the numbers on the right are the line numbers the tests refer to.
VALID = """\
key: demo
version: 1
period: week
title: {zh-CN: 演示, en: Demo}
steps:
  - id: wins
    type: text
    prompt:
      zh-CN: 本周完成了什么
      en: What got done this week
  - id: mood
    type: rating
    prompt: {zh-CN: 这周怎么样, en: How was the week}
    labels:
      1: {zh-CN: 很差, en: Rough}
      2: {zh-CN: 不太好, en: Below par}
      3: {zh-CN: 一般, en: Okay}
      4: {zh-CN: 好, en: Good}
      5: {zh-CN: 很好, en: Great}
"""
# line:  1 key / 4 title / 5 steps / 6 - id: wins / 7 type: text / 8 prompt / 9 zh-CN / 10 en /
#       11 - id: mood / 12 type: rating / 13 prompt / 14 labels / 15..19 labels 1..5
CHOICE_WITH_ONE_OPTION = """\
  - id: pick
    type: choice
    prompt: {zh-CN: 选一个, en: Pick one}
    options:
      - {id: only, label: {zh-CN: 唯一, en: Only}}
"""


def refused(tmp_path: Path, body: str, name: str = "demo.yaml") -> RitualFileError:
    path = write_file(tmp_path, name, body)
    with pytest.raises(RitualFileError) as caught:
        load_file(path)
    error = caught.value
    assert error.path == path
    assert str(error).startswith(f"{path}:{error.line}: ")
    return error


def local_texts(node: Any, where: str = "") -> Iterator[tuple[str, LocalText]]:
    """Every bilingual string in a ritual, with where it sits."""
    if isinstance(node, LocalText):
        yield where, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from local_texts(getattr(node, name), f"{where}.{name}")
    elif isinstance(node, tuple | list):
        for i, item in enumerate(node):
            yield from local_texts(item, f"{where}[{i}]")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from local_texts(item, f"{where}[{key}]")


def test_the_valid_sample_loads(tmp_path: Path) -> None:
    ritual = load_file(write_file(tmp_path, "demo.yaml", VALID))
    assert [s.id for s in ritual.parts[0].steps] == ["wins", "mood"]


def test_the_shipped_rituals_load_with_every_string_in_both_languages() -> None:
    catalog = load_catalog()

    assert sorted(catalog.rituals) == ["monthly_review", "quarterly_assessment", "weekly_recap"]
    for key, ritual in catalog.rituals.items():
        texts = list(local_texts(ritual))
        assert len(texts) > 5, key
        for where, text_ in texts:
            assert text_.zh.strip() and CJK.search(text_.zh), f"{key}{where}: no Chinese text"
            assert text_.en.strip() and not CJK.search(text_.en), f"{key}{where}: no English text"
            assert set(PLACEHOLDER.findall(text_.zh)) == set(PLACEHOLDER.findall(text_.en)), f"{key}{where}"
        for part in ritual.parts:
            for step in part.steps:
                if step.type is StepType.RATING:
                    assert sorted(step.labels) == [1, 2, 3, 4, 5]
    assert catalog.find("周报") is catalog.get("weekly_recap")
    assert catalog.find("Quarterly assessment") is catalog.get("quarterly_assessment")
    assert [p.audience for p in catalog.get("quarterly_assessment").parts] == ["self", "manager"]


@pytest.mark.parametrize(
    ("broken", "lines", "problem"),
    [
        pytest.param(
            VALID.replace("    type: text\n", "    type: text: long\n"),
            [7],
            ["not valid YAML"],
            id="yaml-syntax-error",
        ),
        pytest.param(
            VALID.replace("    type: rating\n", "    type: [rating\n"),
            [12, 13],
            ["not valid YAML"],
            id="unclosed-bracket",
        ),
        pytest.param("- just\n- a list\n", [1], ["expected a mapping"], id="not-a-mapping"),
        pytest.param(
            VALID.replace("      en: What got done this week\n", ""),
            [8, 9],
            ["steps.0.prompt.en", "required"],
            id="missing-english-text",
        ),
        pytest.param(
            VALID.replace("title: {zh-CN: 演示, en: Demo}", "title: {zh-CN: '', en: Demo}"),
            [4],
            ["title.zh-CN"],
            id="empty-chinese-title",
        ),
        pytest.param(
            VALID.replace("      5: {zh-CN: 很好, en: Great}\n", ""),
            [11, 14, 15],
            ["a rating step needs labels for exactly 1, 2, 3, 4 and 5", "steps.1"],
            id="rating-without-five-labels",
        ),
        pytest.param(
            VALID + CHOICE_WITH_ONE_OPTION,
            [20, 23, 24],
            ["a choice step needs at least two options"],
            id="choice-with-one-option",
        ),
        pytest.param(
            VALID.replace("type: text", "type: essay"),
            [7],
            ["steps.0.type", "'text', 'choice', 'rating', 'yes_no' or 'list'"],
            id="unknown-step-type",
        ),
        pytest.param(
            VALID.replace("    type: text\n", "    type: text\n    requried: false\n"),
            [8],
            ["steps.0.requried", "Extra inputs are not permitted"],
            id="extra-unknown-key",
        ),
        # the duplicate id is on line 11
        pytest.param(
            VALID.replace("id: mood", "id: wins"),
            [11],
            ["step id 'wins' is used twice"],
            id="duplicate-step-id",
        ),
    ],
)
def test_a_broken_file_is_refused_at_its_line_naming_its_one_problem(
    tmp_path: Path, broken: str, lines: list[int], problem: list[str]
) -> None:
    error = refused(tmp_path, broken)
    assert error.line in lines, f"points at line {error.line}, the problem is on line(s) {lines}"
    for expected in problem:
        assert expected in error.problem
    assert "more problem" not in error.problem, error.problem


def test_a_problem_in_a_later_part_points_into_that_part(tmp_path: Path) -> None:
    shipped = (BUILTIN_DIR / "quarterly_assessment.yaml").read_text(encoding="utf-8")
    lines = shipped.splitlines(keepends=True)
    manager_part = next(i for i, line in enumerate(lines) if line.strip() == "audience: manager")
    typo = next(i for i in range(manager_part, len(lines)) if lines[i].strip().startswith("type:"))
    indent = lines[typo][: len(lines[typo]) - len(lines[typo].lstrip())]
    lines.insert(typo + 1, f"{indent}requierd: false\n")

    error = refused(tmp_path, "".join(lines), name="quarterly_assessment.yaml")

    assert error.line == typo + 2
    assert "parts.1.steps." in error.problem
    assert "requierd" in error.problem


def test_an_override_directory_replaces_a_shipped_ritual_by_key(tmp_path: Path) -> None:
    shipped = (BUILTIN_DIR / "weekly_recap.yaml").read_text(encoding="utf-8")
    override = shipped.replace("en: Weekly recap", "en: Friday check-in").replace("version: 1", "version: 2")
    write_file(tmp_path / "rituals", "our_weekly.yaml", override)
    write_file(tmp_path / "rituals", "demo.yaml", VALID)

    catalog = load_catalog(tmp_path / "rituals")

    assert sorted(catalog.rituals) == ["demo", "monthly_review", "quarterly_assessment", "weekly_recap"]
    weekly = catalog.get("weekly_recap")
    assert (weekly.title.en, weekly.version) == ("Friday check-in", 2)
    assert catalog.find("friday check-in") is weekly
    assert catalog.get("monthly_review") == load_file(BUILTIN_DIR / "monthly_review.yaml")


def test_a_missing_override_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RitualFileError) as caught:
        load_catalog(tmp_path / "no-such-dir")
    assert caught.value.path == tmp_path / "no-such-dir"
    assert "does not exist" in str(caught.value)


def test_a_broken_override_is_refused_even_when_the_shipped_ones_are_fine(tmp_path: Path) -> None:
    write_file(tmp_path / "rituals", "weekly.yml", VALID.replace("type: text", "type: essay"))
    with pytest.raises(RitualFileError) as caught:
        load_catalog(tmp_path / "rituals")
    assert caught.value.path == tmp_path / "rituals" / "weekly.yml"
    assert caught.value.line == 7


def test_the_app_does_not_start_on_a_broken_rituals_dir_and_creates_no_database(tmp_path: Path) -> None:
    broken = write_file(tmp_path / "rituals", "weekly.yaml", VALID.replace("id: mood", "id: wins"))
    database = tmp_path / "never.db"

    with pytest.raises(RitualFileError) as caught:
        App(settings_for(f"sqlite:///{database}", rituals_dir=broken.parent), platforms={})

    assert caught.value.path == broken
    assert not database.exists()


async def test_the_app_does_not_start_on_a_broken_rituals_dir_and_writes_nothing(
    db_url: str, tmp_path: Path
) -> None:
    broken = write_file(tmp_path / "rituals", "weekly.yaml", VALID + CHOICE_WITH_ONE_OPTION)
    database = Database(db_url)
    try:
        before = await _row_counts(database)

        with pytest.raises(RitualFileError):
            App(settings_for(db_url, rituals_dir=broken.parent), platforms={})

        assert await _row_counts(database) == before
        assert set(before.values()) == {0}
    finally:
        await database.dispose()


async def _row_counts(database: Database) -> dict[str, int]:
    async with database.engine.connect() as conn:
        return {
            table.name: (await conn.execute(text(f'select count(*) from "{table.name}"'))).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }


def test_shipped_ritual_keys_match_their_file_names() -> None:
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        ritual: Ritual = load_file(path)
        assert ritual.key == path.stem
