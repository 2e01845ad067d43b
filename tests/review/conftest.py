"""The review tests' fixtures: Debian's chromium driven by Playwright (``STILLHOUSE_CHROMIUM``
names another Chromium), a page per test, the folder that keeps screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def chromium_path() -> str:
    return os.environ.get("STILLHOUSE_CHROMIUM") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the session (Debian's; Playwright's download cannot work here)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    assert Path(executable).is_file(), (
        f"no chromium at {executable}: `make browser` installs Debian's (as root), or set "
        "STILLHOUSE_CHROMIUM to a Chromium binary"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.errors = errors
    yield opened
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots are kept after the run: $STILLHOUSE_TEST_ARTIFACTS or tmp/artifacts."""
    folder = Path(
        os.environ.get(
            "STILLHOUSE_TEST_ARTIFACTS",
            Path(__file__).resolve().parents[2] / "tmp" / "artifacts" / "review",
        )
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder
