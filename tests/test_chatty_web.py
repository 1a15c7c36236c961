"""Chatty's web page in a real headless browser (Debian's chromium, driven by Selenium).

Two pages on two chat nodes chat; one node is SIGKILLed; its page fails over to the
other node's web port and shows what it missed, once. Skipped only where chromium,
its driver or selenium is not installed (CI installs them: see .ci/run).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .test_chatty_gateway import Gateways, _cluster, node  # noqa: F401  (a fixture)
from .test_chatty_service import HOST, TAG, WAIT

pytestmark = pytest.mark.timeout(180)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install selenium)")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _web_addresses(svc: Gateways) -> list[str]:
    return [p.expect(r"chatty web http://(\S+)/").group(1) for p in svc.node_procs]


async def _listed(address: str, nick: str) -> list[str]:
    """The web gateways a page connecting to `address` is told of."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://{address}/ws") as ws:
        await ws.send_str(json.dumps({"line": f"HELLO {nick}"}))
        listed: list[str] = []
        while not listed:
            batch = json.loads((await ws.receive(timeout=WAIT)).data)
            for m in batch:
                if m["type"] == "GATEWAYS":
                    listed = m["addresses"]
                elif m["type"] == "ERROR":
                    raise AssertionError(m)
        await ws.send_str(json.dumps({"line": "/quit"}))
        return listed


@pytest.fixture
def web() -> Iterator[tuple[Gateways, list[str]]]:
    for svc in _cluster(2, "--web", "0"):
        addresses = _web_addresses(svc)
        deadline = time.monotonic() + WAIT
        probes = 0
        for address in addresses:  # until each lists both (pg spreads them asynchronously)
            while True:
                probes += 1
                if sorted(asyncio.run(_listed(address, f"probe{probes}"))) == sorted(addresses):
                    break
                assert time.monotonic() < deadline, "the web gateways never listed each other"
        yield svc, addresses


@pytest.fixture
def browsers() -> Iterator[list[Any]]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    started: list[Any] = []

    def start() -> Any:
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1000,640"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        started.append(driver)
        return driver

    try:
        yield [start(), start()]
    finally:
        for driver in started:
            driver.quit()


def log_text(page: Any) -> str:
    return str(page.find_element(By.ID, "log").text)


def wait_for(page: Any, what: str, cond: Any) -> None:
    try:
        WebDriverWait(page, WAIT).until(lambda d: cond(d))
    except Exception as e:
        raise AssertionError(f"the page never showed {what}; its log:\n{log_text(page)}\n"
                             f"status: {page.find_element(By.ID, 'status').text}") from e


def login(page: Any, address: str, nick: str) -> None:
    page.get(f"http://{address}/")
    page.find_element(By.ID, "nick").send_keys(nick)
    page.find_element(By.ID, "go").click()
    wait_for(page, "the chat", lambda d: d.find_element(By.ID, "main").is_displayed())


def type_line(page: Any, line: str) -> None:
    page.find_element(By.ID, "input").send_keys(line + Keys.ENTER)


def test_two_pages_chat_and_one_fails_over_when_its_node_is_killed(
        web: tuple[Gateways, list[str]], browsers: list[Any]) -> None:
    svc, addresses = web
    wanda, xena = browsers
    login(wanda, addresses[0], "wanda")
    login(xena, addresses[1], "xena")
    type_line(wanda, "/join lobby")
    wait_for(wanda, "its join", lambda d: "wanda joined" in log_text(d))
    type_line(wanda, "hello from the browser")
    type_line(xena, "/join lobby")
    wait_for(xena, "the history on join", lambda d: "hello from the browser" in log_text(d))
    type_line(xena, "hi wanda")
    wait_for(wanda, "xena's message", lambda d: "hi wanda" in log_text(d))
    # likes, DMs, who, nick, kick
    xena.find_elements(By.CSS_SELECTOR, "#log .like")[0].click()
    wait_for(wanda, "the like", lambda d: "xena likes #" in log_text(d))
    type_line(xena, "/msg wanda psst")
    wait_for(wanda, "the DM", lambda d: "[DM from xena] psst" in log_text(d))
    wait_for(wanda, "who is there",
             lambda d: "xena" in d.find_element(By.ID, "who").text)
    if os.environ.get("CHATTY_SCREENSHOT"):
        wanda.save_screenshot(os.environ["CHATTY_SCREENSHOT"])

    svc.node_procs[0].proc.send_signal(signal.SIGKILL)
    wait_for(wanda, "that it lost its node",
             lambda d: "disconnected" in d.find_element(By.ID, "status").text
             or "reconnected" in d.find_element(By.ID, "status").text)
    missed = [f"while you were away {i}" for i in range(3)]
    for text in missed:
        type_line(xena, text)
    wait_for(wanda, "that it reconnected", lambda d: re.search(
        rf"reconnected through gw2t{TAG}@{re.escape(HOST)}",
        d.find_element(By.ID, "status").text))
    type_line(xena, "welcome back")
    wait_for(wanda, "what it missed", lambda d: "welcome back" in log_text(d))
    text = log_text(wanda)
    for line in ["hello from the browser", "hi wanda", *missed, "welcome back"]:
        assert text.count(line) == 1, f"{line!r} shown {text.count(line)} times:\n{text}"
    assert [text.index(m) for m in missed] == sorted(text.index(m) for m in missed)
    # and it is still wanda, with her rights: she still owns lobby, and kicks
    type_line(wanda, "/kick xena")
    wait_for(wanda, "the kick", lambda d: "xena was kicked by wanda" in log_text(d))
    wait_for(xena, "that it was kicked",
             lambda d: "you were kicked from #lobby by wanda" in log_text(d))
