"""The chat page (GET / of a room) in a real browser against `dohost serve`: Debian's
chromium, headless, driven by Playwright for Python through the system binary (no browser
download). Two pages join one room; what one sends, the other shows. Screenshots are kept
in build/artifacts/ (their paths are printed: `pytest -s` shows them)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "samples" / "chat-room" / "chat-room.wasm"
ARTIFACTS = ROOT / "build" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 20_000  # upper bound of each wait for the page (CI machines are shared)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (tools/install_toolchains.sh installs it)",
)


@contextmanager
def chat_server(tmp_path: Path) -> Iterator[tuple[Any, str, str]]:
    """`dohost serve` with the chat-room class, a welcome message in room lobby, and the
    page's URL as `make run` prints it: (server, tenant token, page URL)."""
    sys.path.insert(0, str(ROOT / "tests" / "server"))
    from api_helpers import ServerProcess

    server = ServerProcess(tmp_path / "data")
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            r = c.put("/v1/classes/chat-room", content=WASM.read_bytes())
            assert r.status_code == 201, r.text
            r = c.post(
                "/v1/classes/chat-room/objects/lobby/messages",
                json={"author": "bot", "text": "welcome"},
            )
            assert r.status_code == 201
            # As `make run` makes its link: a token limited to this class's object routes.
            r = c.post("/v1/tokens", json={"classes": ["chat-room"], "objects_only": True})
            assert r.status_code == 201, r.text
            link_token = r.json()["token"]
        # As a user opens it (`make run` prints this URL): a page load cannot carry an
        # Authorization header, so the scoped token rides in the URL and the page passes
        # it on to its WebSocket.
        yield (
            server,
            token,
            (f"{server.url}/v1/classes/chat-room/objects/lobby/?access_token={link_token}"),
        )
    finally:
        assert server.stop() == 0


def test_two_pages_chat_through_the_room(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM is not None
    with chat_server(tmp_path) as (server, token, page_url):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 640, "height": 480})
            context.set_default_timeout(WAIT_MS)
            ann, bob = context.new_page(), context.new_page()
            for page, name in ((ann, "ann"), (bob, "bob")):
                page.goto(page_url)
                expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)
                expect(page.locator("#room")).to_have_text("lobby")
                # The history arrived first.
                expect(page.locator("#log li", has_text="welcome")).to_have_count(1)
                page.fill("#name", name)

            ann.fill("#text", "hello from ann")
            ann.press("#text", "Enter")
            for page in (bob, ann):  # the sender sees its own message come back too
                line = page.locator("#log li", has_text="hello from ann")
                expect(line).to_have_count(1, timeout=WAIT_MS)
                expect(line.locator(".author")).to_have_text("ann")
            bob.fill("#text", "hi ann <b>not bold</b>")
            bob.click("button")
            expect(ann.locator("#log li", has_text="hi ann <b>not bold</b>")).to_have_count(1)
            assert ann.locator("#log b").count() == 0  # text, never markup

            shots = []
            for page, name in ((ann, "ann"), (bob, "bob")):
                path = ARTIFACTS / f"chat-room-{name}.png"
                page.screenshot(path=str(path))
                shots.append(path)
            browser.close()
        for path in shots:
            assert path.stat().st_size > 1000
            print(f"screenshot: {path}")
        # The page's messages went through the room's store like any other.
        with server.client(token) as c:
            r = c.get("/v1/classes/chat-room/objects/lobby/messages")
            texts = [m["text"] for m in r.json()["messages"]]
            assert texts == ["welcome", "hello from ann", "hi ann <b>not bold</b>"]


def test_the_page_works_at_phone_width(tmp_path: Path) -> None:
    """390 px wide (a phone): the whole form fits, the Send button is inside the window
    and sends."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM is not None
    with chat_server(tmp_path) as (_server, _token, page_url), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        page.goto(page_url)
        expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)
        for sel in ("#name", "#text", "button"):
            box = page.locator(sel).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
        button = page.locator("button").bounding_box()
        assert button is not None and button["width"] >= 40  # not squeezed to nothing
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
        page.fill("#name", "pat")
        page.fill("#text", "from a phone")
        page.click("button")
        expect(page.locator("#log li", has_text="from a phone")).to_have_count(1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "chat-room-390px.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        browser.close()
