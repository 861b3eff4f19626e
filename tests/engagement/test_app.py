"""The tracking web app: redirects, the pixel and unsubscribe, against a real record."""

from __future__ import annotations

import html
import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ccm.engagement.app import PIXEL_GIF, create_app
from ccm.engagement.nps import latest_score, nps_scores, score_from_url
from ccm.engagement.tracking import TrackingKey, sign, unsubscribe_url, verify

with warnings.catch_warnings():
    # starlette's TestClient warns that plain httpx is deprecated in favour of httpx2.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from ccm.record import MasterKey, Record
from tests.examples_helpers import PACKS, TEMPLATES, sample
from tests.record._support import entry


def open_record(tmp_path: Path) -> Record:
    return Record(f"sqlite:///{tmp_path / 'record.db'}")


def add_message(record: Record, message_id: str, *, channel: str) -> None:
    record.append(entry("C1", message_id=message_id, channel=channel))


def events_of(record: Record, message_id: str) -> list[tuple[str, Any]]:
    return [(e.kind, e.data) for e in record.events(message_id)]


KEY = TrackingKey(b"t" * 32)
BASE = "https://t.example.com"


@pytest.fixture
def record(tmp_path: Path) -> Iterator[Record]:
    """A SQLite record holding one marketing email ``m-1`` for customer C1."""
    store = open_record(tmp_path)
    add_message(store, "m-1", channel="email")
    yield store
    store.close()


@pytest.fixture
def client(record: Record) -> Iterator[TestClient]:
    with TestClient(create_app(record, KEY), follow_redirects=False) as test_client:
        yield test_client


def click_token(target: str = "https://shop.example/offer?x=1", message_id: str = "m-1") -> str:
    return sign("click", message_id, key=KEY, target=target)


def unsub_path(message_id: str = "m-1") -> str:
    return unsubscribe_url(BASE, message_id, KEY).removeprefix(BASE)


def test_click_redirects_to_the_signed_target_and_records_it(
    client: TestClient, record: Record
) -> None:
    """GET /c/{token} answers 302 to the target and records a click with the URL."""
    response = client.get(f"/c/{click_token()}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/offer?x=1"
    assert "no-store" in response.headers["cache-control"]
    assert events_of(record, "m-1") == [("clicked", {"url": "https://shop.example/offer?x=1"})]


def test_head_on_a_click_records_nothing(client: TestClient, record: Record) -> None:
    """A HEAD (link checkers) gets the redirect but adds no click."""
    response = client.head(f"/c/{click_token()}")
    assert response.status_code == 302
    assert events_of(record, "m-1") == []


def test_pixel_is_a_transparent_gif_and_records_an_open(client: TestClient, record: Record) -> None:
    """GET /o/{token} serves the uncached 1x1 GIF and records an open."""
    response = client.get("/o/" + sign("open", "m-1", key=KEY))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL_GIF
    assert response.content.startswith(b"GIF89a\x01\x00\x01\x00")
    assert "no-store" in response.headers["cache-control"]
    assert events_of(record, "m-1") == [("opened", None)]


@dataclass
class Clock:
    """A settable clock the app reads (tests move it; nothing reads the real time)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_a_flood_of_opens_and_clicks_adds_one_event_per_message_and_link(
    record: Record,
) -> None:
    """A hundred pixel loads and clicks on one link all get the GIF and the redirect, but the
    record holds one open and one click (a second link's click too) per hour, by the app's
    clock: repeats within the hour add nothing, the first ones after it are recorded."""
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    clock = Clock(start)
    pixel = "/o/" + sign("open", "m-1", key=KEY, now=start)
    offer, other = "https://shop.example/offer?x=1", "https://shop.example/other"
    link = f"/c/{sign('click', 'm-1', key=KEY, target=offer, now=start)}"
    second = f"/c/{sign('click', 'm-1', key=KEY, target=other, now=start)}"

    def flood(app: TestClient, times: int) -> None:
        for _ in range(times):
            loaded = app.get(pixel)
            assert (loaded.status_code, loaded.content) == (200, PIXEL_GIF)
            clicked = app.get(link)
            assert (clicked.status_code, clicked.headers["location"]) == (302, offer)

    with TestClient(create_app(record, KEY, clock=clock), follow_redirects=False) as app:
        flood(app, 100)
        assert app.get(second).headers["location"] == other
        once = [("opened", None), ("clicked", {"url": offer}), ("clicked", {"url": other})]
        assert events_of(record, "m-1") == once
        clock.now = start + timedelta(minutes=59, seconds=59)
        flood(app, 10)
        assert events_of(record, "m-1") == once
        clock.now = start + timedelta(hours=1)
        flood(app, 10)
    assert events_of(record, "m-1") == [*once, ("opened", None), ("clicked", {"url": offer})]
    assert [e.at for e in record.events("m-1")] == [start] * 3 + [start + timedelta(hours=1)] * 2
    assert record.verify().ok


def test_get_on_unsubscribe_never_unsubscribes(client: TestClient, record: Record) -> None:
    """GET /u/{token} shows a confirmation form posting back to itself, and records nothing."""
    path = unsub_path()
    for _ in range(3):
        response = client.get(path)
        assert response.status_code == 200
        assert "method=post" in response.text
        assert f'action="{path}"' in response.text
    assert events_of(record, "m-1") == []


def test_post_unsubscribes_once(client: TestClient, record: Record) -> None:
    """POST /u/{token} records one opt-out with its channel; a second adds nothing, still 200."""
    path = unsub_path()
    first = client.post(path, data={"List-Unsubscribe": "One-Click"})
    second = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert "unsubscribed" in second.text
    assert events_of(record, "m-1") == [("opted_out", {"channel": "email"})]
    page = client.get(path)
    assert page.status_code == 200 and "method=post" not in page.text


def test_rfc8058_one_click_post(client: TestClient, record: Record) -> None:
    """A mailbox provider's one-click POST (urlencoded body, no cookies) unsubscribes."""
    response = client.post(
        unsub_path(),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert [kind for kind, _ in events_of(record, "m-1")] == ["opted_out"]


def _bad_tokens() -> list[tuple[str, str, int]]:
    past = datetime.now(UTC) - timedelta(days=10)
    evil = "https://evil.example/"
    other = TrackingKey(b"x" * 32)
    forged_click = sign("click", "m-1", key=other, target=evil)
    return [
        ("c", forged_click, 400),
        ("c", "not-a-token", 400),
        ("c", sign("open", "m-1", key=KEY), 400),
        ("c", sign("click", "m-1", key=KEY, target=evil, ttl_days=1, now=past), 410),
        ("o", sign("open", "m-1", key=other), 400),
        ("o", sign("click", "m-1", key=KEY, target=evil), 400),
        ("o", sign("open", "m-1", key=KEY, ttl_days=1, now=past), 410),
        ("u", sign("unsub", "m-1", key=other), 400),
        ("u", sign("open", "m-1", key=KEY), 400),
        ("u", sign("unsub", "m-1", key=KEY, ttl_days=1, now=past), 410),
    ]


@pytest.mark.parametrize(("route", "token", "status"), _bad_tokens())
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_tokens_get_4xx_and_record_nothing(
    client: TestClient, record: Record, route: str, token: str, status: int, method: str
) -> None:
    """Forged, junk and wrong-kind tokens get 400, expired ones 410; nothing is recorded."""
    if method == "POST" and route != "u":
        assert client.post(f"/{route}/{token}").status_code == 405
        return
    response = client.request(method, f"/{route}/{token}")
    assert response.status_code == status
    assert "location" not in response.headers
    assert events_of(record, "m-1") == []


def test_valid_token_for_an_unknown_message(client: TestClient, record: Record) -> None:
    """For an unknown message a click still redirects, the pixel loads, unsubscribe is 404."""
    assert client.get(f"/c/{click_token(message_id='ghost')}").status_code == 302
    assert client.get("/o/" + sign("open", "ghost", key=KEY)).status_code == 200
    assert client.post(unsub_path("ghost")).status_code == 404
    assert events_of(record, "m-1") == []


def test_record_failure_keeps_the_visitor_moving(
    client: TestClient, record: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the record fails, a click still redirects, but an unsubscribe says 503 (not done)."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database is down")

    monkeypatch.setattr(record, "add_event", broken)
    monkeypatch.setattr(record, "add_event_once", broken)
    assert client.get(f"/c/{click_token()}").status_code == 302
    response = client.post(unsub_path())
    assert response.status_code == 503
    assert "not unsubscribed" in response.text


def test_pages_are_locked_down(client: TestClient) -> None:
    """HTML pages forbid scripts and framing, and are never cached."""
    response = client.get(unsub_path())
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "no-store" in response.headers["cache-control"]


def test_health(client: TestClient) -> None:
    """GET /healthz answers ok."""
    assert client.get("/healthz").text == "ok"


# --- end to end: engine -> tracked email -> app -> record -> engine ----------------------

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, outside the SMS quiet hours


def tracked_pack(tmp_path: Path) -> Path:
    """The example acme pack with tracking switched on."""
    pack = tmp_path / "acme"
    shutil.copytree(PACKS / "acme", pack)
    with (pack / "pack.yaml").open("a", encoding="utf-8") as fh:
        fh.write(f"\ntracking:\n  base_url: {BASE}\n  pixel: true\n")
    return pack


def html_links(message: Any) -> list[str]:
    """Every href in the HTML part of a rendered email."""
    part = message.email.get_body(("html",))
    return re.findall(r'href="([^"]+)"', part.get_content())


@pytest.fixture
def tracked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Record]]:
    """An engine on the tracked acme pack writing into a real SQLite record."""
    import ccm

    monkeypatch.setenv("CCM_TRACKING_KEY", KEY.to_base64())
    rec = Record(f"sqlite:///{tmp_path / 'e2e.db'}", master_key=MasterKey.generate())
    engine = ccm.Engine(tracked_pack(tmp_path), TEMPLATES, record=rec, clock=lambda: NOON)
    yield engine, rec
    rec.close()


def test_unsubscribe_through_the_app_suppresses_the_next_marketing_email(
    tracked: tuple[Any, Record],
) -> None:
    """A one-click POST on a marketing email's unsubscribe link makes the engine suppress the next
    marketing email to that customer (rule consent:email), while SMS consent is untouched."""
    engine, rec = tracked
    request = sample("product_offer")
    first = engine.render("product_offer", request, channel="email")
    assert first.status == "generated"
    unsubscribe = first.meta["unsubscribe_url"]
    assert unsubscribe.startswith(f"{BASE}/u/")
    assert f"<{unsubscribe}>" in first.email["List-Unsubscribe"]
    assert any(link.startswith(f"{BASE}/c/") for link in html_links(first))

    with TestClient(create_app(rec, KEY), follow_redirects=False) as client:
        assert client.get(unsubscribe.removeprefix(BASE)).status_code == 200  # a scanner: no-op
        assert engine.render("product_offer", request, channel="email").status == "generated"
        response = client.post(unsubscribe.removeprefix(BASE),
                               content=b"List-Unsubscribe=One-Click",
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200

    customer = request["customer"]["id"]
    assert rec.consent_overrides(customer) == {"email": False}
    after = engine.render("product_offer", request, channel="email")
    assert (after.status, after.reason) == ("suppressed", "consent:email")
    assert "opted out" in after.meta["explanation"]
    stored = rec.get(after.message_id)
    assert (stored.status, stored.reason, stored.archive_ref) == (
        "suppressed", "consent:email", None)
    assert engine.render("product_offer", request, channel="sms").status == "generated"
    welcome_request = {"customer": request["customer"], "data": sample("welcome")["data"]}
    welcome = engine.render("welcome", welcome_request, channel="email")
    assert welcome.status == "generated"  # operational mail needs no marketing consent
    summary = rec.timeline(customer).summary
    assert summary["opted_out"] == ["email"]
    assert summary["suppressed_by_reason"] == {"consent:email": 1}
    assert rec.verify().ok


def test_opt_out_event_from_the_api_suppresses_marketing_without_tracking(
    tmp_path: Path,
) -> None:
    """Without tracking, an opted_out event added through the record API withdraws consent too."""
    import ccm

    rec = Record(f"sqlite:///{tmp_path / 'plain.db'}")
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=rec, clock=lambda: NOON)
    request = sample("product_offer")
    sms = engine.render("product_offer", request, channel="sms")
    assert sms.status == "generated"
    rec.add_event(sms.message_id, "opted_out", at=NOON)
    again = engine.render("product_offer", request, channel="sms")
    assert (again.status, again.reason) == ("suppressed", "consent:sms")
    assert engine.render("product_offer", request, channel="email").status == "generated"
    rec.close()


def test_survey_click_through_the_app_becomes_the_customers_score(
    tracked: tuple[Any, Record],
) -> None:
    """Clicking the 9 in a tracked nps_survey email records a click the record reads as score 9."""
    engine, rec = tracked
    request = sample("nps_survey")
    survey = engine.render("nps_survey", request, channel="email")
    targets = {}
    for link in html_links(survey):
        if link.startswith(f"{BASE}/c/"):
            data = verify(html.unescape(link).removeprefix(f"{BASE}/c/"), "click", key=KEY)
            assert data.message_id == survey.message_id
            targets[data.target] = html.unescape(link).removeprefix(BASE)
    by_score: dict[int, str] = {}
    for target, path in targets.items():
        score = score_from_url(target)
        if score is not None:
            by_score[score] = path
    assert sorted(by_score) == list(range(11))

    with TestClient(create_app(rec, KEY), follow_redirects=False) as client:
        assert client.get(by_score[3]).status_code == 302
        response = client.get(by_score[9])
        assert response.status_code == 302 and response.headers["location"].endswith("score=9")

    customer = request["customer"]["id"]
    assert latest_score(rec, customer) == 9
    assert rec.timeline(customer).summary["nps_score"] == 9
    assert nps_scores(rec)["overall"]["promoters"] == 1
