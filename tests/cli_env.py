"""A clean environment for running the ``cadence`` command in a test, as a fresh process would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot import settings as settings_module

PROXY_ENV_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


def isolate(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    """No .env, no Cadence or proxy settings from the machine, settings read anew; cwd is ``workdir``."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(("SLACK_", "FEISHU_", "DINGTALK_", "JIRA_")) or upper in (
            "DATABASE_URL",
            "DEFAULT_LOCALE",
            "RITUALS_DIR",
        ):
            monkeypatch.delenv(name)
    # slack_sdk takes proxies from the environment and ignores NO_PROXY: fakes are on loopback
    for name in PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(workdir)
    settings_module.get_settings.cache_clear()
