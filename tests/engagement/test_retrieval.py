"""Retrieval in a real browser: the link in a rendered email opens the page served by uvicorn."""

from __future__ import annotations

import io
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from ccm.engagement.app import create_app
from ccm.engagement.retrieval import AttemptLimiter, RetrievalSettings
from ccm.engagement.tracking import TrackingKey
from ccm.record import MasterKey, Record
from ccm.render.security import PasswordRule
from tests.examples_helpers import PACKS, TEMPLATES, sample

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEY = TrackingKey(b"k" * 32)
RIGHT = "SUDKRUUP4B"  # the sample customer's document code (the acme rule)


@dataclass
class Clock:
    """A settable clock the app reads (tests move it; nothing reads the real time)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Live:
    url: str
    record: Record
    clock: Clock
    engine: Any


def _serve(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, port


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The app on an ephemeral port, and an engine whose pack links documents to it."""
    import ccm
    from ccm.render.options import RenderOptions

    monkeypatch.setenv("CCM_TRACKING_KEY", KEY.to_base64())
    rec = Record(f"sqlite:///{tmp_path / 'record.db'}", master_key=MasterKey.generate())
    clock = Clock(NOON + timedelta(hours=1))
    rule = PasswordRule.from_mapping({
        "field": "document_code", "hint": {"en_GB": "the document code in your welcome letter"}})
    settings = RetrievalSettings(hint_for=lambda loc: rule.hint_for(loc or "en_GB"),
                                 clock=clock, filename="statement.pdf")
    server, thread, port = _serve(create_app(rec, KEY, retrieval=settings))
    url = f"http://127.0.0.1:{port}"
    pack = tmp_path / "acme"
    shutil.copytree(PACKS / "acme", pack)
    with (pack / "pack.yaml").open("a", encoding="utf-8") as fh:
        fh.write(f"\ntracking:\n  base_url: {url}\n  pixel: false\n")
    engine = ccm.Engine(pack, TEMPLATES, record=rec, clock=lambda: NOON,
                        options=RenderOptions(document_delivery="link", web_version=True))
    try:
        yield Live(url, rec, clock, engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        rec.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless chromium."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield instance
        finally:
            instance.close()


def links(message: Any) -> dict[str, str]:
    """The document and web-version links in a rendered email's HTML."""
    part = message.email.get_body(("html",))
    hrefs = re.findall(r'href="([^"]+)"', part.get_content())
    return {"document": next(h for h in hrefs if "/d/" in h),
            "web": next(h for h in hrefs if "/w/" in h)}


def viewed(rec: Record, message_id: str) -> list[Any]:
    return [e.data for e in rec.events(message_id) if e.kind == "viewed"]


@pytest.mark.browser
def test_customer_downloads_the_statement_after_one_wrong_answer(live: Live, browser: Any,
                                                                 tmp_path: Path) -> None:
    """The email links instead of attaching; the page takes the password and serves the PDF."""
    from playwright.sync_api import expect

    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    assert [p for p in email.email.iter_attachments()] == []
    found = links(email)
    assert found["document"].startswith(live.url + "/d/")
    document_id = email.meta["document_id"]
    assert live.record.get(document_id).channel == "pdf"

    page = browser.new_page()
    page.goto(found["document"])
    expect(page.locator("h1")).to_have_text("Download your document")
    expect(page.locator(".hint")).to_have_text("the document code in your welcome letter")
    page.fill("#answer", "01011990")
    page.click("button[type=submit]")
    expect(page.locator(".note")).to_contain_text("not right")
    assert viewed(live.record, document_id) == []
    page.fill("#answer", RIGHT)
    with page.expect_download() as info:
        page.click("button[type=submit]")
    saved = tmp_path / "got.pdf"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "statement.pdf"
    reader = PdfReader(io.BytesIO(saved.read_bytes()))
    assert reader.is_encrypted and reader.decrypt(RIGHT)
    assert "Closing balance" in reader.pages[0].extract_text()
    assert viewed(live.record, document_id) == [{"via": "link"}]

    page.goto(found["web"])
    expect(page.locator("body")).to_contain_text("Closing balance")
    assert viewed(live.record, email.message_id) == [{"via": "web"}]


@pytest.mark.browser
def test_wrong_answers_are_rate_limited_per_message(live: Live, browser: Any) -> None:
    """After five wrong answers even the right one is refused until the window has passed."""
    from playwright.sync_api import expect

    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    page = browser.new_page()
    page.goto(links(email)["document"])
    for _ in range(5):
        page.fill("#answer", "00000000")
        page.click("button[type=submit]")
        expect(page.locator(".note")).to_be_visible()
    page.fill("#answer", RIGHT)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Too many attempts")
    assert RIGHT not in page.content()
    live.clock.now += timedelta(minutes=16)
    page.goto(links(email)["document"])
    page.fill("#answer", RIGHT)
    with page.expect_download():
        page.click("button[type=submit]")


@pytest.mark.browser
def test_expired_tampered_and_erased_links_say_so(live: Live, browser: Any) -> None:
    """Tampered, expired and erased links each say what is wrong and show no hint or name."""
    from playwright.sync_api import expect

    request = sample("monthly_statement")
    email = live.engine.render("monthly_statement", request, channel="email")
    link = links(email)["document"]
    page = browser.new_page()
    token = link.rsplit("/", 1)[1]
    tampered = link[: -len(token)] + token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    page.goto(tampered)
    expect(page.locator("h1")).to_have_text("This link is not valid")
    live.clock.now = NOON + timedelta(days=31)
    page.goto(link)
    expect(page.locator("h1")).to_have_text("This link has expired")
    live.clock.now = NOON + timedelta(hours=2)
    live.record.erase(email.customer_id)
    page.goto(link)
    expect(page.locator("h1")).to_have_text("This document is no longer available")
    text = page.content()
    assert "document code" not in text and request["customer"]["name"] not in text


def test_sms_carries_the_link_too(live: Live) -> None:
    """In link mode the statement SMS ends with the retrieval link and keeps the hint."""
    sms = live.engine.render("monthly_statement", sample("monthly_statement"), channel="sms")
    assert sms.status == "generated"
    assert f"{live.url}/d/" in sms.text
    assert sms.password_hint == "the document code in your welcome letter"


def test_limiter_counts_in_a_sliding_window() -> None:
    """Failures older than the window stop counting; reset forgets a key."""
    limiter = AttemptLimiter(2, timedelta(minutes=1))
    limiter.fail("m", NOON)
    assert limiter.fail("m", NOON + timedelta(seconds=30)) == 0
    assert limiter.blocked("m", NOON + timedelta(seconds=59))
    assert not limiter.blocked("m", NOON + timedelta(seconds=61))
    limiter.fail("m", NOON + timedelta(seconds=61))
    limiter.reset("m")
    assert not limiter.blocked("m", NOON + timedelta(seconds=62))
