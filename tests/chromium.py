"""Debian's Chromium as the browser tests drive it: as root in a closed network, so no sandbox, no GPU and no
calls home (DESIGN.md section 7); Playwright never downloads a browser here."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
