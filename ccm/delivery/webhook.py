"""A signed HTTPS webhook transport: POST each message as JSON to a URL of yours (httpx).

The request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <message id>
    X-CCM-Timestamp: <unix seconds>
    X-CCM-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"message_id": ..., "customer_id": ..., "channel": ..., "recipient": ...,
     "template": ..., "message_type": ..., "attempt": 1,
     "content_base64": ...}

The receiver checks the signature with :func:`verify_signature` (or the
same three lines in its own language), refuses a timestamp older than a few
minutes (replay), and answers 2xx once it holds the message (a JSON
``{"id": ...}`` becomes the receipt's ``provider_id``). 408, 429 and 5xx are
retried; other 4xx fail the message. A receiver that deduplicates on
``Idempotency-Key`` makes a resend harmless; ccm still never resends a
message whose outcome it did not see (see docs/delivery.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ccm.delivery.transport import scrub
from ccm.errors import (
    DeliveryUncertain,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportUnavailable,
)
from ccm.message import Outgoing, Receipt

if TYPE_CHECKING:
    import httpx

__all__ = ["WebhookSettings", "WebhookTransport", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-CCM-Signature"
TIMESTAMP_HEADER = "X-CCM-Timestamp"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value: ``v1=`` + hex HMAC-SHA256 over ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str, *,
                     now: float, tolerance: float = 300.0) -> bool:
    """Whether ``signature`` is ours over ``body`` and ``timestamp`` is within ``tolerance``.

    Constant-time comparison; ``now`` is the receiver's clock (unix seconds).
    """
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs(now - stamp) > tolerance:
        return False
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not False).
    given = signature.strip().encode("ascii", "replace")
    return hmac.compare_digest(sign(secret, stamp, body).encode("ascii"), given)


@dataclass(frozen=True)
class WebhookSettings:
    """The endpoint and the shared secret (bytes; from the environment, never in the config)."""

    url: str
    secret: bytes = field(repr=False)
    timeout: float = 15.0

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("https", "http"):
            raise ValueError("url must be an http(s) URL")
        if len(self.secret) < 16:
            raise ValueError("the webhook secret must be at least 16 bytes")


class WebhookTransport:
    """POST every message to one endpoint, signed (needs httpx: ``ccm-engine[delivery]``).

    httpx is imported here, not by the module: a receiver checking signatures
    with :func:`verify_signature` needs only the core install.
    """

    name = "webhook"

    def __init__(self, settings: WebhookSettings, *, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        import httpx

        self.settings = settings
        self._client = client or httpx.Client(timeout=settings.timeout)
        self._clock = clock

    def send(self, message: Outgoing) -> Receipt:
        doc: dict[str, Any] = {
            "message_id": message.message_id,
            "customer_id": message.customer_id,
            "channel": message.channel,
            "recipient": message.recipient,
            "template": message.template,
            "message_type": message.message_type,
            "attempt": message.attempt,
            "content_base64": base64.b64encode(message.content).decode("ascii"),
        }
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")
        stamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.message_id,
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(self.settings.secret, stamp, body),
        }
        import httpx

        host = urlsplit(self.settings.url).netloc
        try:
            response = self._client.post(self.settings.url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransportUnavailable(
                f"webhook {host} cannot be reached: {type(exc).__name__}",
                transport=self.name, message_id=message.message_id, code=None,
                where=host) from None
        except httpx.TransportError as exc:
            raise DeliveryUncertain(
                f"webhook {host}: {type(exc).__name__} after message {message.message_id} was "
                "posted; the receiver may hold it", transport=self.name,
                message_id=message.message_id, code=None) from None
        status = response.status_code
        if 200 <= status < 300:
            provider_id = None
            try:
                answer = response.json()
                if isinstance(answer, dict) and isinstance(answer.get("id"), str):
                    provider_id = answer["id"][:200]
            except ValueError:
                pass
            return Receipt(self.name, provider_id=provider_id, status="accepted",
                           detail=str(status))
        what = (f"webhook {host} answered {status} for message {message.message_id}: "
                f"{scrub(response.text, 120)}")
        if status in (408, 425, 429) or status >= 500:
            raise TemporaryDeliveryError(what, transport=self.name,
                                         message_id=message.message_id, code=status)
        raise PermanentDeliveryError(what, transport=self.name, message_id=message.message_id,
                                     code=status)

    def close(self) -> None:
        self._client.close()
