"""Twilio-shaped webhooks: the request signature, status callbacks and inbound keywords.

Twilio signs every webhook it sends with the account's auth token
(``X-Twilio-Signature``)::

    base64(HMAC-SHA1(auth_token, full URL + every POST parameter, sorted by
    name, as name + value))

:func:`check_signature` recomputes it in constant time; an unsigned or
wrongly signed request is refused before any of its fields is believed.

A status callback (``MessageSid``, ``MessageStatus``, ``ErrorCode``) is read
by :func:`status_event`; an inbound SMS (``From``, ``Body``) by
:func:`keyword`, which knows the keywords carriers and the CTIA guidelines
require: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT opt out; START,
UNSTOP (and YES) opt in again; HELP (and INFO) ask for help. The answers are
TwiML (:func:`twiml`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

__all__ = [
    "HELP_WORDS",
    "START_WORDS",
    "STOP_WORDS",
    "StatusEvent",
    "check_signature",
    "keyword",
    "normalise_phone",
    "sign",
    "status_event",
    "twiml",
]

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                        "REVOKE", "STOP ALL"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

#: Twilio error codes that mean the number can never receive SMS: unknown
#: destination (30005), a landline or unreachable carrier (30006), an invalid
#: 'To' number (21211), not a mobile number (21614). An ``undelivered`` with
#: one of these is a hard bounce; any other is soft.
HARD_ERROR_CODES = frozenset({"30005", "30006", "21211", "21614"})
#: 21610: the number replied STOP to this sender (the provider blocks it).
UNSUBSCRIBED_CODE = "21610"

_SPACE = re.compile(r"\s+")


def sign(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` of a POST of ``params`` to ``url``."""
    data = url + "".join(f"{k}{v}" for k, v in sorted(params, key=lambda kv: (kv[0], kv[1])))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def check_signature(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None
) -> bool:
    """Whether ``signature`` is Twilio's signature of this request (constant time)."""
    if not signature or not auth_token:
        return False
    expected = sign(auth_token, url, list(params))
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("ascii",
                                                                                 "replace"))


@dataclass(frozen=True)
class StatusEvent:
    """What a status callback means for the record: the event kind and its data."""

    provider_id: str
    status: str
    kind: Literal["delivered", "bounced", "failed"] | None
    error_code: str | None = None

    @property
    def hard(self) -> bool:
        """An ``undelivered`` whose error code says the number never works."""
        return self.kind == "bounced" and self.error_code in HARD_ERROR_CODES

    def to_data(self) -> dict[str, str]:
        """Event data: the provider, its id and status, and its error code (no number)."""
        data = {"provider": "twilio", "provider_id": self.provider_id,
                "provider_status": self.status, "channel": "sms"}
        if self.kind == "bounced":
            data["bounce"] = "hard" if self.hard else "soft"
        if self.error_code:
            data["error_code"] = self.error_code
        return data


_STATUS_KINDS: dict[str, Literal["delivered", "bounced", "failed"]] = {
    "delivered": "delivered",
    "undelivered": "bounced",
    "failed": "failed",
}
_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")


def status_event(params: Mapping[str, str]) -> StatusEvent | None:
    """The record event of a status callback, or ``None`` when the form is not one.

    ``kind`` is ``None`` for in-between states (``queued``, ``sending``,
    ``sent``, ``accepted``, ``read``...), which change nothing.
    """
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not _SID.fullmatch(sid) or not re.fullmatch(r"[a-z_-]{1,32}", status):
        return None
    code = (params.get("ErrorCode") or "").strip()
    return StatusEvent(sid, status, _STATUS_KINDS.get(status),
                       code if code.isdigit() and len(code) <= 6 else None)


def keyword(body: str) -> Literal["stop", "start", "help"] | None:
    """The keyword an inbound SMS is (the whole message, any case, spaces and
    punctuation around it ignored), or ``None`` for any other text."""
    word = _SPACE.sub(" ", body.strip().strip(".!?").upper())
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


def normalise_phone(number: str) -> str:
    """``+1 (415) 555-0100`` -> ``+14155550100``: ``+`` and digits only, for comparing."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return ("+" if number.strip().startswith("+") else "") + digits


def twiml(text: str | None) -> str:
    """A TwiML ``<Response>`` with one ``<Message>`` (or none, to answer nothing)."""
    body = f"<Message>{escape(text)}</Message>" if text else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'
