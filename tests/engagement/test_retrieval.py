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


def test_repeated_web_views_and_downloads_are_recorded_once_an_hour(live: Live) -> None:
    """Fifty loads of the web version all show it, and three right answers all download the
    PDF, but the record holds one ``viewed`` of each per hour, by the app's clock."""
    import httpx

    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    found = links(email)
    document = email.meta["document_id"]
    with httpx.Client(timeout=60) as client:
        pages = [client.get(found["web"]) for _ in range(50)]
        assert {(p.status_code, p.text) for p in pages} == {(200, pages[0].text)}
        assert "text/html" in pages[0].headers["content-type"]
        pdfs = [client.post(found["document"], data={"answer": RIGHT}) for _ in range(3)]
        assert {(p.status_code, p.headers["content-type"]) for p in pdfs} == {
            (200, "application/pdf")}
        assert viewed(live.record, email.message_id) == [{"via": "web"}]
        assert viewed(live.record, document) == [{"via": "link"}]
        live.clock.now += timedelta(hours=1)
        assert client.get(found["web"]).status_code == 200
        assert client.post(found["document"], data={"answer": RIGHT}).status_code == 200
    assert viewed(live.record, email.message_id) == [{"via": "web"}] * 2
    assert viewed(live.record, document) == [{"via": "link"}] * 2
    assert live.record.verify().ok


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


def test_limiter_reserves_a_try_before_the_answer_is_checked() -> None:
    """Reserve takes a try only while one is left; release gives one back, once."""
    limiter = AttemptLimiter(2, timedelta(minutes=1))
    assert limiter.reserve("m", NOON) and limiter.reserve("m", NOON)
    assert not limiter.reserve("m", NOON) and limiter.left("m", NOON) == 0
    limiter.release("m", NOON)
    assert limiter.left("m", NOON) == 1
    limiter.release("m", NOON + timedelta(seconds=1))  # nothing taken then: nothing given back
    assert limiter.left("m", NOON) == 1
    assert limiter.reserve("m", NOON) and not limiter.reserve("m", NOON)
    assert limiter.reserve("m", NOON + timedelta(minutes=1))
    limiter.release("other", NOON)


def test_limiter_holds_only_the_keys_of_the_last_window() -> None:
    """Memory follows the window, not every client ever seen: a right answer's given-back try
    leaves no key, a key whose tries left the window is dropped when next read and by the
    periodic sweep, and reads of unknown keys add none. (Every client address that ever
    answered stayed in memory until the process ended.)"""
    limiter = AttemptLimiter(5, timedelta(minutes=15))
    for n in range(3000):  # right answers: the try is taken, then given back
        client = f"10.0.{n // 256}.{n % 256}"
        assert limiter.reserve(client, NOON)
        limiter.release(client, NOON)
    assert len(limiter) == 0
    for n in range(3000):  # wrong answers and reads of keys never seen
        limiter.fail(f"wrong-{n}", NOON)
        assert not limiter.blocked(f"read-{n}", NOON) and limiter.left(f"read-{n}", NOON) == 5
    assert len(limiter) == 3000
    later = NOON + timedelta(minutes=15)
    assert not limiter.blocked("wrong-7", later) and len(limiter) == 2999
    for _ in range(AttemptLimiter.SWEEP_EVERY):
        limiter.blocked("someone", later)
    assert len(limiter) == 0
    assert limiter.fail("wrong-8", later) == 4  # counting starts again after the window


def _burst(url: str, answers: list[str], *, app: Any = None) -> list[int]:
    """POST every answer at once (over the network, or to ``app`` in process); the statuses."""
    import asyncio

    import httpx

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app) if app is not None else None
        async with httpx.AsyncClient(transport=transport, timeout=60,
                                     limits=httpx.Limits(max_connections=len(answers))) as c:
            got = await asyncio.gather(*[c.post(url, data={"answer": a}) for a in answers])
        return [r.status_code for r in got]

    return asyncio.run(run())


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every answer the page checks against the PDF (each check made slow, to widen any race)."""
    from ccm.render.security import decrypt_pdf

    seen: list[str] = []

    def slow_check(pdf: bytes, answer: str) -> bytes:
        seen.append(answer)
        time.sleep(0.02)
        return decrypt_pdf(pdf, answer)

    monkeypatch.setattr("ccm.engagement.retrieval.decrypt_pdf", slow_check)
    return seen


def test_a_burst_of_wrong_answers_gets_no_more_tries_than_the_limit(
        live: Live, checked: list[str]) -> None:
    """Forty simultaneous wrong answers: five are checked, 35 refused, then the right one too."""
    import httpx

    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    link = links(email)["document"]
    statuses = _burst(link, [f"WRONG{i:03d}" for i in range(40)])
    assert sorted(statuses) == [403] * 5 + [429] * 35
    assert len(checked) == 5
    late = httpx.post(link, data={"answer": RIGHT}, timeout=60)
    assert late.status_code == 429 and late.headers["content-type"].startswith("text/html")
    assert len(checked) == 5
    assert viewed(live.record, email.meta["document_id"]) == []


def test_a_burst_from_one_client_gets_no_more_tries_than_its_limit(
        live: Live, checked: list[str]) -> None:
    """The per-client limit holds under concurrency too, and the right answer is then refused."""
    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    link = links(email)["document"]
    app = create_app(live.record, KEY, retrieval=RetrievalSettings(
        max_failures_per_message=100, max_failures_per_client=3, clock=live.clock))
    answers = [f"WRONG{i:03d}" for i in range(30)]
    assert sorted(_burst(link, answers, app=app)) == [403] * 3 + [429] * 27
    assert _burst(link, [RIGHT], app=app) == [429]
    assert len(checked) == 3


def test_right_answers_use_up_no_tries(live: Live) -> None:
    """A right answer gives back the try it took; it also clears the message's count."""
    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    link = links(email)["document"]
    app = create_app(live.record, KEY, retrieval=RetrievalSettings(
        max_failures_per_message=2, max_failures_per_client=2, clock=live.clock))
    assert _burst(link, ["WRONG"], app=app) == [403]
    for _ in range(3):
        assert _burst(link, [RIGHT], app=app) == [200]
    # The right answers cleared the message's count; the client still has one try left.
    assert sorted(_burst(link, ["WRONG", "WRONG"], app=app)) == [403, 429]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_answer_is_refused_unread(live: Live, checked: list[str],
                                               declared: bool) -> None:
    """A huge POST to the page answers 413 after at most 4 KB and one chunk; it costs no try."""
    from tests.engagement._bodies import Endless, post_in_process

    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    path = links(email)["document"].removeprefix(live.url)
    app = create_app(live.record, KEY, retrieval=RetrievalSettings(
        max_failures_per_message=1, clock=live.clock))
    body = Endless(1_500_000_000)
    headers = {"Content-Length": str(body.total)} if declared else {}
    response = post_in_process(app, path, body, headers)
    assert response.status_code == 413 and "too large" in response.text
    assert body.sent == 0 if declared else body.sent <= 4096 + 65_536
    assert checked == []
    assert _burst(live.url + path, [RIGHT], app=app) == [200]


def test_the_server_answers_a_huge_declared_body_without_waiting_for_it(live: Live) -> None:
    """Through uvicorn: headers announcing 1.5 GB get 413 at once, before any body is sent."""
    import socket

    email = live.engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    link = links(email)["document"]
    host, port = live.url.removeprefix("http://").split(":")
    path = link.removeprefix(live.url)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: 1500000000\r\n\r\n".encode("ascii"))
        status_line = sock.makefile("rb").readline()
    assert status_line.startswith(b"HTTP/1.1 413 ")
