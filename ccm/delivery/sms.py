"""SMS through a provider with Twilio's Messages API (httpx, ``ccm-engine[delivery]``).

One form-encoded ``POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json``
with HTTP Basic auth (account SID, auth token) per message: ``To``,
``From`` (or ``MessagingServiceSid``), ``Body`` and ``StatusCallback``
(where the provider reports delivered / undelivered / failed; the message
id rides along as ``?m=<message id>``, which the web app's ``/twilio/status``
reads). A 201 answer carries the message ``sid`` (``SM...``) and
``status``; the sid is the receipt's ``provider_id``.

How an answer maps to the delivery errors (Twilio's documented codes):

=====================================  ==========================================
answer                                 raised
=====================================  ==========================================
201 / 200                              (a :class:`~ccm.message.Receipt`)
401, 403, error 20003                  :class:`DeliveryConfigError` (stop)
429, 5xx, error 20429                  :class:`TemporaryDeliveryError`
other 4xx (21211 invalid To, 21610     :class:`PermanentDeliveryError`
unsubscribed, 21614 not a mobile...)
cannot connect                         :class:`TemporaryDeliveryError`
timeout / broken after the request     :class:`DeliveryUncertain` (review)
=====================================  ==========================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from ccm.delivery.transport import scrub
from ccm.errors import (
    DeliveryConfigError,
    DeliveryUncertain,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportUnavailable,
)
from ccm.message import Outgoing, Receipt

__all__ = ["PERMANENT_CODES", "TwilioSettings", "TwilioTransport"]

logger = logging.getLogger("ccm.delivery.sms")
logger.addHandler(logging.NullHandler())

#: Twilio error codes that mean "this recipient will not get it" (never retried).
PERMANENT_CODES = {
    21211: "invalid 'To' phone number",
    21212: "invalid 'From' phone number",
    21408: "permission to send to this region not enabled",
    21610: "the recipient replied STOP (unsubscribed)",
    21612: "the 'To' number cannot be reached from this 'From'",
    21614: "'To' is not a mobile number",
    21617: "the body exceeds the 1600 character limit",
    30003: "unreachable destination handset",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "carrier violation (filtered)",
}


@dataclass(frozen=True)
class TwilioSettings:
    """An account and a sender: ``from_`` (E.164 or alphanumeric) or ``messaging_service_sid``."""

    account_sid: str
    auth_token: str = field(repr=False)
    from_: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    api_base: str = "https://api.twilio.com"
    timeout: float = 15.0

    def __post_init__(self) -> None:
        if not self.account_sid.startswith("AC"):
            raise ValueError("account_sid is the account's SID, starting with AC")
        if not self.auth_token:
            raise ValueError("auth_token is empty")
        if (self.from_ is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of from and messaging_service_sid")
        for name in ("api_base", "status_callback"):
            value = getattr(self, name)
            if value is not None and urlsplit(value).scheme not in ("https", "http"):
                raise ValueError(f"{name} must be an http(s) URL")

    @property
    def messages_url(self) -> str:
        return f"{self.api_base.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"


class TwilioTransport:
    """Send SMS with one keep-alive HTTP client (thread-safe, as httpx.Client is)."""

    name = "twilio"

    def __init__(self, settings: TwilioSettings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.Client(timeout=settings.timeout)

    def _callback(self, message_id: str) -> str | None:
        base = self.settings.status_callback
        if not base:
            return None
        parts = urlsplit(base)
        query = (parts.query + "&" if parts.query else "") + urlencode({"m": message_id})
        return urlunsplit(parts._replace(query=query))

    def send(self, message: Outgoing) -> Receipt:
        if not message.recipient:
            raise PermanentDeliveryError(f"message {message.message_id} has no phone number",
                                         transport=self.name, message_id=message.message_id,
                                         code=None)
        s = self.settings
        form: dict[str, str] = {"To": message.recipient, "Body": message.text}
        if s.from_ is not None:
            form["From"] = s.from_
        else:
            form["MessagingServiceSid"] = str(s.messaging_service_sid)
        callback = self._callback(message.message_id)
        if callback:
            form["StatusCallback"] = callback
        try:
            response = self._client.post(s.messages_url, data=form,
                                         auth=(s.account_sid, s.auth_token))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransportUnavailable(
                f"SMS provider at {_host(s.api_base)} cannot be reached: {type(exc).__name__}",
                transport=self.name, message_id=message.message_id, code=None,
                where=_host(s.api_base)) from None
        except httpx.TransportError as exc:
            raise DeliveryUncertain(
                f"SMS provider at {_host(s.api_base)}: {type(exc).__name__} after the request "
                f"for message {message.message_id} was sent; it may have been accepted",
                transport=self.name, message_id=message.message_id, code=None) from None
        return self._answer(response, message)

    def _answer(self, response: httpx.Response, message: Outgoing) -> Receipt:
        body = _json(response)
        status = response.status_code
        if status in (200, 201) and isinstance(body.get("sid"), str):
            logger.debug("sent %s as %s (%s)", message.message_id, body["sid"], body.get("status"))
            return Receipt(self.name, provider_id=body["sid"],
                           status=str(body.get("status") or "queued"))
        code = body.get("code") if isinstance(body.get("code"), int) else None
        text = scrub(str(body.get("message") or response.reason_phrase or ""))
        what = f"SMS provider answered {status}" + (f" (error {code})" if code else "") + \
            f" for message {message.message_id}: {PERMANENT_CODES.get(code or 0, text)}"
        if status in (401, 403) or code == 20003:
            raise DeliveryConfigError(
                f"SMS provider refused the credentials ({status}); check account_sid and the "
                "variable named by auth_token_env", key="auth_token_env")
        if status == 429 or code == 20429 or status >= 500:
            raise TemporaryDeliveryError(what, transport=self.name,
                                         message_id=message.message_id, code=code or status)
        if status in (200, 201):
            raise DeliveryUncertain(what + " (no sid in the answer)", transport=self.name,
                                    message_id=message.message_id, code=None)
        raise PermanentDeliveryError(what, transport=self.name, message_id=message.message_id,
                                     code=code or status)

    def close(self) -> None:
        self._client.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _host(url: str) -> str:
    return urlsplit(url).netloc
