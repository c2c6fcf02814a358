"""Small helpers for the aiohttp servers Cadence runs (Slack HTTP mode, health and metrics)."""

from __future__ import annotations

from aiohttp import web


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port ``runner`` listens on (useful after asking for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the HTTP runner is not listening on a TCP port")
