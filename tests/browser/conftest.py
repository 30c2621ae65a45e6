"""A real vpngw server on a socket and Debian's chromium driven by Playwright (no download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.components import require_or_skip

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots of the main pages, for reviewers (CI keeps this folder as an artifact).
SCREENSHOTS = Path(os.environ.get("VPNGW_SCREENSHOTS", "artifacts/screenshots"))


def _chromium_installed() -> bool:
    return Path(CHROMIUM).exists() and shutil.which("chromium") is not None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_or_skip(_chromium_installed(), f"{CHROMIUM} missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Any]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def take(page: Any, name: str) -> None:
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take
