"""The admin console (CONTRACT section 7) in Debian's headless Chromium against gunicorn on
Postgres: an admin signs in, maps a Signal Queue group with a rule made from it, watches its
backfill, reverts the rule, opens a lead the rule made and unlinks its anonymousId, and signs
out; a wrong token cannot sign in; and one account's console never shows another's data.

Each page is saved as a screenshot, at a laptop's width and at a phone's (where no page may
scroll sideways), into CONSOLE_SCREENSHOTS when set, else a temporary folder (printed): they
are for looking at."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.chromium import chromium
from tests.e2e.conftest import Server, create_account

LAPTOP, PHONE = (1280, 900), (390, 844)
WAIT_S = 20


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tempfile.mkdtemp(prefix="console-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(LAPTOP) as driver:
        yield driver


def send(server: Server, api_key: str, *events: dict[str, Any]) -> None:
    answer = requests.post(f"{server.url}/webhook/{api_key}", json=list(events), timeout=10)
    assert answer.status_code == 200, answer.text


def demo_request(email: str, company: str | None = None) -> dict[str, Any]:
    properties = {"email": email, "form": "demo"}
    if company is not None:
        properties["company"] = company
    return {
        "type": "track",
        "event": "Demo Requested",
        "anonymousId": f"anon-{uuid.uuid4()}",
        "messageId": f"msg-{uuid.uuid4()}",
        "properties": properties,
        "context": {"page": {"url": "https://example.com/demo", "title": "Book a demo"}},
        "timestamp": "2026-11-01T10:00:00.000Z",
    }


class Console:
    """The console in one browser, with what its tests do there."""

    def __init__(self, driver: Any, server: Server, shots: Path) -> None:
        self.driver, self.server, self.shots = driver, server, shots

    def open(self, path: str) -> None:
        self.driver.get(f"{self.server.url}{path}")

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return self.find("body").text

    def wait_for(self, css: str, text: str) -> None:
        """Until the page has css holding text: a page still being left or replaced, whose
        elements go from under the driver as it reads them, is waited past."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, WAIT_S, ignored_exceptions=(WebDriverException,)).until(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
        )

    def sign_in(self, token: str) -> None:
        """With the keyboard: the token typed into the focused field, then Enter."""
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        self.open("/console/")
        WebDriverWait(self.driver, WAIT_S).until(
            lambda driver: (
                driver.execute_script("return document.activeElement.id") == "admin_token"
            )
        )
        field = self.driver.switch_to.active_element
        field.clear()
        field.send_keys(token, Keys.ENTER)

    def tab_to_focus(self) -> dict[str, str]:
        """Press Tab once: what then has the focus, and the outline it is drawn with."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(self.driver).send_keys(Keys.TAB).perform()
        return self.driver.execute_script(
            "const el = document.activeElement, style = getComputedStyle(el);"
            "return {text: el.textContent.trim(), outline: style.outlineStyle,"
            " width: style.outlineWidth};"
        )

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))

    def full_shot(self, name: str) -> None:
        """The whole page, as tall as it is, at a laptop's width and at a phone's, where it
        must not scroll sideways."""
        for label, (width, height) in (("", LAPTOP), ("-phone", PHONE)):
            self.driver.set_window_size(width, height)
            if label:
                self.shot(f"{name}{label}-top")
            tall = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(width, min(tall + 140, 6000))
            self.shot(f"{name}{label}")
            overflow = self.driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways at {width}px by {overflow}px"
        self.driver.set_window_size(*LAPTOP)

    def accept_confirm(self) -> None:
        self.driver.switch_to.alert.accept()


def test_an_admin_maps_the_queue_and_reverts_in_the_console(
    server: Server, browser: Any, shots: Path
) -> None:
    account = create_account(server.database_url)
    send(
        server,
        account["api_key"],
        demo_request("ada@example.com", "Analytical Engines"),
        demo_request("grace@example.com", "Compilers Inc"),
        demo_request("alan@example.com"),
        {"type": "page", "name": "Pricing", "anonymousId": "anon-x", "messageId": "m-page"},
    )
    refused = requests.post(f"{server.url}/webhook/{account['api_key']}", data=b"{", timeout=10)
    assert refused.status_code == 400
    console = Console(browser, server, shots)

    console.sign_in("ra_1_not-a-real-token-of-anyone")
    console.wait_for("#sign-in-error", "not a live admin token")
    console.shot("01-sign-in-wrong-token")
    console.sign_in(account["admin_token"])
    console.wait_for("h1", "Signal Queue")
    assert "Demo Requested" in console.text()
    # The first Tab reaches the skip link, the next the console's name: focus shows on both.
    for expected in ("Skip to content", "receiver console"):
        focused = console.tab_to_focus()
        assert focused["text"] == expected and focused["outline"] == "solid", focused
    console.full_shot("02-queue")

    console.find(
        "a[href*='event_name=Demo+Requested'], a[href*='event_name=Demo%20Requested']"
    ).click()
    console.wait_for("#group-count", "3")
    # Every sampled signal has properties.email; two of the three have a company.
    assert "100%" in console.find("li:has(input[value='properties.email'])").text
    assert "67%" in console.find("li:has(input[value='properties.company'])").text
    console.full_shot("03-group")

    console.find("input[name=field][value='properties.form']").click()
    console.find("#create-rule").click()
    console.wait_for("h1", "New rule")
    assert console.find("input[name=field_path][value='properties.form']")
    console.wait_for("#preview-matches", "3")
    console.wait_for("#preview-leads", "3")
    console.full_shot("04-rule-editor-preview")
    console.find("#save-rule").click()
    console.wait_for(".notice", "Rule created")
    console.wait_for("#backfill-status", "done")
    console.wait_for("#backfill-mapped", "3")
    console.full_shot("05-rule-backfill-done")

    console.find("#priority").clear()
    console.find("#priority").send_keys("50")
    console.find("#save-rule").click()
    console.wait_for(".notice", "Rule saved")
    console.find("#version-1 button").click()
    console.wait_for(".notice", "Rule reverted")
    assert console.find("#priority").get_attribute("value") == "100"
    assert "Version 3" in console.text()
    console.wait_for("#preview", "Over the queue")
    console.full_shot("06-rule-versions-reverted")

    console.open("/console/leads")
    console.find("#email").send_keys("grace@example.com")
    console.find("form[role=search] button").click()
    console.wait_for("h1", "grace@example.com")
    assert "Demo Requested" in console.find("#timeline").text
    assert "Compilers Inc" in console.text()
    console.full_shot("07-lead")
    anonymous_id = console.find("#identifiers input[name=value]").get_attribute("value")
    console.find("#identifiers button").click()
    console.accept_confirm()
    console.wait_for(".notice", "Identifier unlinked")
    # Its one signal carries the lead's email too: it stays on the lead.
    assert "0 signals went back" in console.find("#unlink-moved").text
    assert "None but the email." in console.find("#ids-title").find_element("xpath", "..").text
    assert anonymous_id in console.find("#unlinked").text
    console.full_shot("07b-lead-unlinked")

    console.open("/console/deliveries")
    assert "POST /webhook/" in console.text()
    console.find("#deliveries details summary").click()
    console.full_shot("08-deliveries")
    console.find("a[href$='status=4xx']").click()
    console.wait_for("nav.actions [aria-current=page]", "4xx")
    answered = console.driver.find_elements(
        "css selector", "#deliveries > tbody > tr > td.num .status"
    )
    assert answered and {cell.text for cell in answered} == {"400"}
    console.open("/console/account")
    console.find("#create-key").click()
    console.wait_for("#new-key", "rk_")
    console.full_shot("09-usage-and-keys")

    console.find("header form button").click()
    console.wait_for("h1", "Sign in")
    console.shot("11-signed-out")
    console.open("/console/rules")
    console.wait_for("h1", "Sign in")


def test_one_accounts_console_never_shows_anothers_data(
    server: Server, browser: Any, shots: Path
) -> None:
    theirs, mine = create_account(server.database_url), create_account(server.database_url)
    send(server, theirs["api_key"], demo_request("secret@theirs.example", "Theirs Ltd"))
    rule = requests.post(
        f"{server.url}/admin/rules",
        json={
            "name": "Their rule",
            "event_name": "Demo Requested",
            "fields": {"email": "properties.email"},
        },
        headers={"Authorization": f"Bearer {theirs['admin_token']}"},
        timeout=10,
    ).json()
    console = Console(browser, server, shots)
    console.sign_in(mine["admin_token"])
    console.wait_for("h1", "Signal Queue")
    assert "Demo Requested" not in console.text()
    console.open("/console/rules")
    assert "Their rule" not in console.text()
    console.open(f"/console/rules/{rule['id']}")
    assert "No such rule" in console.text()
    console.shot("12-another-accounts-rule")
    console.open("/console/leads?email=secret%40theirs.example")
    assert "No lead has the email" in console.text()
