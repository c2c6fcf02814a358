"""Every string a person reads, in zh-CN and en, from ``locales/<area>.<locale>.yaml``.

Catalogs are split by area so each module owns its own file; all are merged at first use and a key
missing from either language is an error at load, not a blank in front of a user.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LOCALES = ("zh-CN", "en")
_DIR = Path(__file__).resolve().parent / "locales"


class CatalogError(RuntimeError):
    """A locale catalog is broken or incomplete."""


def normalize_locale(value: str | None, default: str = "en") -> str:
    """Map zh, zh_cn, zh-Hans, 中文, en-US, English... to ``zh-CN`` or ``en``."""
    if not value:
        return default
    v = value.strip().lower().replace("_", "-")
    if v.startswith("zh") or v in {"中文", "汉语", "简体中文", "cn", "chinese"}:
        return "zh-CN"
    if v.startswith("en") or v in {"英文", "英语", "english"}:
        return "en"
    return default


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, str]]:
    """``{locale: {key: template}}`` merged from every catalog file; checked for completeness."""
    merged: dict[str, dict[str, str]] = {loc: {} for loc in LOCALES}
    for path in sorted(_DIR.glob("*.yaml")):
        area, _, rest = path.name.partition(".")
        locale = rest.removesuffix(".yaml")
        if locale not in LOCALES:
            raise CatalogError(f"{path.name}: unknown locale {locale!r}")
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise CatalogError(f"{path.name}: expected a mapping of key: text")
        for key, value in data.items():
            full = f"{area}.{key}"
            if full in merged[locale]:
                raise CatalogError(f"{path.name}: duplicate key {full}")
            merged[locale][full] = str(value)
    for a, b in ((LOCALES[0], LOCALES[1]), (LOCALES[1], LOCALES[0])):
        missing = sorted(set(merged[a]) - set(merged[b]))
        if missing:
            raise CatalogError(f"keys in {a} missing from {b}: {', '.join(missing[:10])}")
    return merged


def t(key: str, locale: str, /, **values: Any) -> str:
    """The text for ``key`` (``area.name``) in ``locale``, with ``{placeholders}`` filled."""
    table = catalog()[normalize_locale(locale)]
    try:
        template = table[key]
    except KeyError:
        raise CatalogError(f"no text for {key!r}") from None
    return template.format(**values) if values else template
