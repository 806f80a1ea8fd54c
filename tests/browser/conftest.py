"""The headless Chromium both browser tests drive (Playwright), and where their screenshots go."""

from __future__ import annotations

import os

import pytest

from coursetools.paths import BUILD

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = BUILD / "browser"


@pytest.fixture(scope="module")
def browser():
    """A Chromium browser, or the test skipped when Playwright or Chromium is missing (never failed)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (run `make env`)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Chromium not found at {CHROMIUM}: `make env` installs Debian's chromium "
                    "only as root with apt-get (or set CHROMIUM=/path/to/chromium)")
    with sync_api.sync_playwright() as p:
        # launch() gives the browser a fresh, temporary user-data-dir.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                              chromium_sandbox=False, timeout=60_000)
        try:
            yield b
        finally:
            b.close()
