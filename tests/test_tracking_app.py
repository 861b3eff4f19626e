"""The tracking web app: redirects, the pixel and unsubscribe, against a real record."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ccm.tracking import TrackingKey, sign, unsubscribe_url
from ccm.tracking_app import PIXEL_GIF, create_app

with warnings.catch_warnings():
    # starlette's TestClient warns that plain httpx is deprecated in favour of httpx2.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from ccm.errors import MessageNotFound


# TEMPORARY fake until ccm.record exists; replaced by the real Record on SQLite.
class _Entry:
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.events: list[dict[str, Any]] = []


class _Fake:
    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def get(self, message_id: str) -> _Entry:
        try:
            return self.entries[message_id]
        except KeyError:
            raise MessageNotFound(message_id) from None

    def add_event(self, message_id: str, kind: str, at: Any = None, data: Any = None) -> None:
        self.get(message_id).events.append({"kind": kind, "at": at, "data": data})


def open_record(tmp_path: Any) -> Any:
    return _Fake()


def add_message(record: Any, message_id: str, *, channel: str) -> None:
    record.entries[message_id] = _Entry(channel)


def events_of(record: Any, message_id: str) -> list[tuple[str, Any]]:
    return [(e["kind"], e["data"]) for e in record.get(message_id).events]


KEY = TrackingKey(b"t" * 32)
BASE = "https://t.example.com"


@pytest.fixture
def record(tmp_path: Any) -> Iterator[Any]:
    store = open_record(tmp_path)
    add_message(store, "m-1", channel="email")
    yield store


@pytest.fixture
def client(record: Any) -> Iterator[TestClient]:
    with TestClient(create_app(record, KEY), follow_redirects=False) as test_client:
        yield test_client


def click_token(target: str = "https://shop.example/offer?x=1", message_id: str = "m-1") -> str:
    return sign("click", message_id, key=KEY, target=target)


def unsub_path(message_id: str = "m-1") -> str:
    return unsubscribe_url(BASE, message_id, KEY).removeprefix(BASE)


def test_click_redirects_to_the_signed_target_and_records_it(
    client: TestClient, record: Any
) -> None:
    """GET /c/{token} answers 302 to the target and records a click with the URL."""
    response = client.get(f"/c/{click_token()}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/offer?x=1"
    assert "no-store" in response.headers["cache-control"]
    assert events_of(record, "m-1") == [("clicked", {"url": "https://shop.example/offer?x=1"})]


def test_head_on_a_click_records_nothing(client: TestClient, record: Any) -> None:
    """A HEAD (link checkers) gets the redirect but adds no click."""
    response = client.head(f"/c/{click_token()}")
    assert response.status_code == 302
    assert events_of(record, "m-1") == []


def test_pixel_is_a_transparent_gif_and_records_an_open(client: TestClient, record: Any) -> None:
    """GET /o/{token} serves the uncached 1x1 GIF and records an open."""
    response = client.get("/o/" + sign("open", "m-1", key=KEY))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL_GIF
    assert response.content.startswith(b"GIF89a\x01\x00\x01\x00")
    assert "no-store" in response.headers["cache-control"]
    assert events_of(record, "m-1") == [("opened", None)]


def test_get_on_unsubscribe_never_unsubscribes(client: TestClient, record: Any) -> None:
    """GET /u/{token} shows a confirmation form posting back to itself, and records nothing."""
    path = unsub_path()
    for _ in range(3):
        response = client.get(path)
        assert response.status_code == 200
        assert "method=post" in response.text
        assert f'action="{path}"' in response.text
    assert events_of(record, "m-1") == []


def test_post_unsubscribes_once(client: TestClient, record: Any) -> None:
    """POST /u/{token} records one opt-out with its channel; a second adds nothing, still 200."""
    path = unsub_path()
    first = client.post(path, data={"List-Unsubscribe": "One-Click"})
    second = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert "unsubscribed" in second.text
    assert events_of(record, "m-1") == [("opted_out", {"channel": "email"})]
    page = client.get(path)
    assert page.status_code == 200 and "method=post" not in page.text


def test_rfc8058_one_click_post(client: TestClient, record: Any) -> None:
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
    client: TestClient, record: Any, route: str, token: str, status: int, method: str
) -> None:
    """Forged, junk and wrong-kind tokens get 400, expired ones 410; nothing is recorded."""
    if method == "POST" and route != "u":
        assert client.post(f"/{route}/{token}").status_code == 405
        return
    response = client.request(method, f"/{route}/{token}")
    assert response.status_code == status
    assert "location" not in response.headers
    assert events_of(record, "m-1") == []


def test_valid_token_for_an_unknown_message(client: TestClient, record: Any) -> None:
    """For an unknown message a click still redirects, the pixel loads, unsubscribe is 404."""
    assert client.get(f"/c/{click_token(message_id='ghost')}").status_code == 302
    assert client.get("/o/" + sign("open", "ghost", key=KEY)).status_code == 200
    assert client.post(unsub_path("ghost")).status_code == 404
    assert events_of(record, "m-1") == []


def test_record_failure_keeps_the_visitor_moving(
    client: TestClient, record: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the record fails, a click still redirects, but an unsubscribe says 503 (not done)."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database is down")

    monkeypatch.setattr(record, "add_event", broken)
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
