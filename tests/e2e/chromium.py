"""Debian's headless Chromium driven by Selenium, for the tests that need a real browser
(test_browser.py, test_console.py). Without chromium or chromedriver they skip loudly; under
CI (env CI set) they fail instead, since .ci/run installs them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
DEADLINE_S = 20


def missing(what: str) -> None:
    message = f"{what}: the browser tests of tests/e2e cannot run"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: .ci/run installs it)", pytrace=False)
    print(f"\n\n*** SKIPPING BROWSER TESTS: {message} ***\n")
    pytest.skip(message)


def require_chromium() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing(
            f"{CHROMIUM} or {CHROMEDRIVER} not found (apt-get install chromium chromium-driver)"
        )


@contextmanager
def chromium(window_size: tuple[int, int] | None = None) -> Iterator[Any]:
    """A Chromium of its own profile, quit and removed afterwards."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="receiver-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if window_size is not None:
        options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(DEADLINE_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
