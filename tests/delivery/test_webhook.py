"""The webhook transport posts signed JSON to a real local HTTP server."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ccm.delivery.webhook import WebhookSettings, WebhookTransport, verify_signature
from ccm.errors import PermanentDeliveryError, TemporaryDeliveryError
from ccm.message import Outgoing

SECRET = b"0123456789abcdef-shared"
NOW = 1_767_000_000.0


@contextmanager
def receiver(answers: list[int]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An endpoint that checks the signature as docs/delivery.md tells receivers to."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify_signature(SECRET, self.headers["X-CCM-Timestamp"], body,
                                  self.headers["X-CCM-Signature"], now=NOW)
            status = answers.pop(0) if answers else 200
            if not ok:
                status = 401
            elif status == 200:
                got.append({"doc": json.loads(body), "key": self.headers["Idempotency-Key"]})
            data = json.dumps({"id": f"r-{len(got)}"}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()


def message() -> Outgoing:
    return Outgoing(message_id=uuid.uuid4().hex, customer_id="C-1", channel="email",
                    recipient="bob@example.com", content=b"Subject: hi\r\n\r\nhello\r\n")


def test_a_signed_post_arrives_with_the_content_and_an_idempotency_key() -> None:
    """The receiver verifies the HMAC, reads the message id and content, and its id becomes
    the receipt."""
    with receiver([]) as (url, got):
        t = WebhookTransport(WebhookSettings(url, SECRET), clock=lambda: NOW)
        m = message()
        receipt = t.send(m)
        t.close()
    doc = got[0]["doc"]
    assert got[0]["key"] == m.message_id == doc["message_id"]
    assert base64.b64decode(doc["content_base64"]) == m.content
    assert receipt.provider_id == "r-1"


def test_a_wrong_secret_or_an_old_timestamp_is_refused() -> None:
    """A signature under another secret, or one older than five minutes, does not verify, and
    the sender sees a permanent failure."""
    with receiver([]) as (url, got):
        wrong = WebhookTransport(WebhookSettings(url, b"another-secret-123456"),
                                 clock=lambda: NOW)
        with pytest.raises(PermanentDeliveryError, match="401"):
            wrong.send(message())
        stale = WebhookTransport(WebhookSettings(url, SECRET), clock=lambda: NOW - 301)
        with pytest.raises(PermanentDeliveryError):
            stale.send(message())
        wrong.close()
        stale.close()
    assert got == []


@pytest.mark.parametrize("signature", ["v1=\u00e9", "v1=" + "\u0661" * 64, "\x00", ""])
def test_a_signature_of_any_characters_is_refused_not_an_error(signature: str) -> None:
    """A receiver built on verify_signature answers a forged header with False: compare_digest
    raised TypeError on a non-ASCII str, which a receiver would turn into a 500."""
    from ccm.delivery.webhook import sign

    stamp = str(int(NOW))
    assert verify_signature(SECRET, stamp, b"{}", sign(SECRET, int(NOW), b"{}"), now=NOW)
    assert verify_signature(SECRET, stamp, b"{}", signature, now=NOW) is False


def test_server_errors_are_temporary_and_client_errors_permanent() -> None:
    """503 and 429 are retried, 422 is not."""
    with receiver([503, 429, 422]) as (url, _):
        t = WebhookTransport(WebhookSettings(url, SECRET), clock=lambda: NOW)
        for error in (TemporaryDeliveryError, TemporaryDeliveryError, PermanentDeliveryError):
            with pytest.raises(error):
                t.send(message())
        t.close()


def test_a_short_secret_is_refused() -> None:
    """Secrets under 16 bytes are too weak to sign with."""
    with pytest.raises(ValueError, match="16 bytes"):
        WebhookSettings("https://example.com/hook", b"short")
