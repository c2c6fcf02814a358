"""The text catalogs: every key in zh-CN and en, nothing empty, the same placeholders in both, and
every key the code asks for present."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import yaml

from conversations.i18n import LOCALES, CatalogError, catalog, normalize_locale, t
from conversations.org_import import Problem, describe

ROOT = Path(__file__).resolve().parents[1]
LOCALE_DIR = ROOT / "conversations" / "locales"
CODE_DIRS = ("bot", "conversations", "storage", "scheduler", "connectors")
CJK = re.compile(r"[\u4e00-\u9fff]")


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_every_area_has_a_file_in_each_language() -> None:
    areas: dict[str, set[str]] = {}
    for path in LOCALE_DIR.glob("*.yaml"):
        area, _, rest = path.name.partition(".")
        areas.setdefault(area, set()).add(rest.removesuffix(".yaml"))
    assert areas
    assert {area: locales for area, locales in areas.items() if locales != set(LOCALES)} == {}


def test_every_key_exists_in_both_languages() -> None:
    texts = catalog()
    assert set(texts) == set(LOCALES)
    assert set(texts["zh-CN"]) == set(texts["en"])
    assert len(texts["en"]) > 100


def test_no_text_is_empty() -> None:
    empty = [
        (loc, key) for loc, table in catalog().items() for key, value in table.items() if not value.strip()
    ]
    assert empty == []


def test_every_file_is_a_flat_mapping_of_strings() -> None:
    problems = []
    for path in sorted(LOCALE_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for key, value in data.items():
            if not isinstance(key, str) or not isinstance(value, str):
                problems.append(f"{path.name}: {key!r} → {type(value).__name__}")
    assert problems == []


def test_placeholders_are_the_same_in_both_languages() -> None:
    texts = catalog()
    different = {
        key: (placeholders(texts["zh-CN"][key]), placeholders(texts["en"][key]))
        for key in texts["en"]
        if placeholders(texts["zh-CN"][key]) != placeholders(texts["en"][key])
    }
    assert different == {}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_text_formats_with_its_own_placeholders(locale: str) -> None:
    """A stray brace would make ``str.format`` fail in front of a person."""
    failures = {}
    for key, template in catalog()[locale].items():
        try:
            template.format(**{name: "x" for name in placeholders(template)})
        except (KeyError, IndexError, ValueError) as exc:
            failures[key] = repr(exc)
    assert failures == {}


def test_chinese_texts_are_chinese_and_english_texts_are_english() -> None:
    texts = catalog()
    # product names (Slack, Jira) are the same in both languages; anything else Latin-only is untranslated
    untranslated = [
        key
        for key, value in texts["zh-CN"].items()
        if re.search(r"[A-Za-z]{4,}", re.sub(r"\{\w+\}", "", value))
        and not CJK.search(value)
        and value.strip() != texts["en"][key].strip()
    ]
    assert untranslated == []
    chinese_in_english = [
        key for key, value in texts["en"].items() if CJK.search(value) and not CJK.search(texts["zh-CN"][key])
    ]
    assert chinese_in_english == []


def _literal_keys() -> set[str]:
    """Catalog keys named literally in the code (t("…"), ctx.say("…"), CommandError("…"), key lists)."""
    called = re.compile(r'\b(?:t|say|CommandError)\(\s*"([a-z]+\.[a-z0-9_]+)"')
    # any literal in an area that holds only texts (org.* also names audit actions, so only calls count)
    bare = re.compile(r'"((?:chat|cli|cmd|router|status)\.[a-z0-9_]+)"')
    found: set[str] = set()
    for directory in CODE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            found |= set(called.findall(source)) | set(bare.findall(source))
    return found


def test_every_key_the_code_names_is_in_the_catalog() -> None:
    keys = _literal_keys()
    assert len(keys) > 80
    assert sorted(keys - set(catalog()["en"])) == []


def test_keys_built_at_run_time_exist() -> None:
    texts = catalog()["en"]
    built = (
        [f"status.state_{s}" for s in ("pending", "active", "snoozed", "paused", "submitted", "expired")]
        + [f"status.cycle_{s}" for s in ("open", "closed")]
        + [f"cmd.role_{r}" for r in ("employee", "manager", "hr")]
        + [f"org.platform_{p}" for p in ("slack", "feishu", "dingtalk", "jira")]
        + [
            f"org.field_{f}"
            for f in ("name", "department", "title", "timezone", "country", "locale", "roles", "manager")
        ]
        + [f"org.{k}" for k in ("report_added", "report_changed", "report_deactivated", "report_reactivated")]
    )
    assert [key for key in built if key not in texts] == []


def test_every_org_problem_code_the_importer_raises_has_a_text() -> None:
    source = (ROOT / "conversations" / "org_import.py").read_text(encoding="utf-8")
    codes = set(re.findall(r'Problem\(\s*"([a-z_]+)"', source))
    assert codes
    texts = catalog()["en"]
    assert sorted(c for c in codes if f"org.problem_{c}" not in texts) == []
    line = describe(Problem("bad_timezone", (3,), {"value": "Mars/Olympus"}), "zh-CN")
    assert line.startswith(t("org.at_line", "zh-CN", line=3, message="")[:3])


def test_t_fills_placeholders_in_each_language() -> None:
    assert t("router.unknown_user", "en", contact="赵敏 <zhao.min@example.com>").endswith(
        "Please ask 赵敏 <zhao.min@example.com> to add you."
    )
    assert "赵敏 <zhao.min@example.com>" in t(
        "router.unknown_user", "zh-CN", contact="赵敏 <zhao.min@example.com>"
    )
    assert t("chat.saved", "zh_CN") == t("chat.saved", "zh-CN")
    assert t("chat.saved", "en-US") == t("chat.saved", "en")


def test_an_unknown_key_is_an_error_not_a_blank() -> None:
    with pytest.raises(CatalogError):
        t("chat.no_such_text", "en")


@pytest.mark.parametrize(
    ("said", "locale"),
    [
        ("zh", "zh-CN"),
        ("zh_cn", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("中文", "zh-CN"),
        ("English", "en"),
        ("en-GB", "en"),
    ],
)
def test_locale_names_are_normalised(said: str, locale: str) -> None:
    assert normalize_locale(said) == locale
