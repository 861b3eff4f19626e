"""Reading delivery reports: RFC 3464 bounces (DSN) and RFC 5965 spam complaints (ARF).

Both arrive as ``multipart/report`` email, by a mailbox (``ccm events
bounce FILE...``, a maildir) or by a POST to the web app. :func:`parse_report`
reads the bytes with the standard library's :mod:`email` package and says
which message the report is about and what happened to it:

* a DSN (``report-type=delivery-status``) becomes a :class:`Bounce`: ``hard``
  when the recipient's ``Status`` is ``5.x.x`` (the address is bad: it will
  never work), ``soft`` when it is ``4.x.x`` (a full mailbox, a greylisting
  server: it may work later). Recipients whose ``Action`` is ``delivered``,
  ``relayed`` or ``expanded`` are not bounces.
* an ARF report (``report-type=feedback-report``) becomes a :class:`Complaint`
  with its ``Feedback-Type`` (``abuse`` is a spam complaint).

The message is found, in this order, by the per-message bounce address
(VERP, :func:`ccm.delivery.verp.message_id_from`) the report was delivered
to or names (``Original-Mail-From`` in ARF), the DSN's ``Original-Envelope-Id``,
and the ``X-CCM-Message-ID`` header of the returned original message. A
report that names no ccm message raises :class:`~ccm.errors.InboundError`
(``reason="unmatched"``); bytes that are not a report raise it with
``reason="not-a-report"``.

Nothing personal is kept: the recipient address and the diagnostic text
(which often repeats it) are read but never returned; only the status code,
the action and the SMTP reply code are.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message as EmailMessage
from email.parser import HeaderParser
from typing import Literal

from ccm.delivery.verp import message_id_from
from ccm.errors import InboundError

__all__ = ["MAX_REPORT_BYTES", "Bounce", "Complaint", "parse_report"]

#: Reports larger than this are refused unread (a DSN is a few kilobytes; the
#: returned original is often cut by the MTA anyway).
MAX_REPORT_BYTES = 2_000_000

_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")
_SMTP_CODE = re.compile(r"\b([245]\d\d)\b")
# Headers a mail server writes with the envelope recipient (here: our bounce address).
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_NOT_BOUNCES = ("delivered", "relayed", "expanded")


@dataclass(frozen=True)
class Bounce:
    """A DSN's verdict on one ccm message: ``hard`` (5.x.x) or ``soft`` (4.x.x)."""

    message_id: str
    kind: Literal["hard", "soft"]
    status: str
    action: str
    smtp_code: str | None = None

    def to_data(self) -> dict[str, str]:
        """The event data of a ``bounced`` event (no address, no diagnostic text)."""
        data = {"bounce": self.kind, "status": self.status, "action": self.action,
                "source": "dsn"}
        if self.smtp_code:
            data["smtp_code"] = self.smtp_code
        return data


@dataclass(frozen=True)
class Complaint:
    """An ARF feedback report about one ccm message (``feedback_type`` ``abuse`` = spam)."""

    message_id: str
    feedback_type: str

    def to_data(self) -> dict[str, str]:
        """The event data of a ``complained`` event."""
        return {"channel": "email", "feedback_type": self.feedback_type, "source": "arf"}


def _fail(text: str, reason: str, source: str | None) -> InboundError:
    where = f"{source}: " if source else ""
    return InboundError(f"{where}{text}", reason=reason, source=source)


def _parts(msg: EmailMessage, content_type: str) -> list[EmailMessage]:
    return [p for p in msg.walk() if p.get_content_type() == content_type]


def _field_blocks(part: EmailMessage) -> list[EmailMessage]:
    """The header blocks of a ``message/delivery-status`` or ``message/feedback-report`` part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, EmailMessage)]
    if isinstance(payload, str):  # a transfer-encoded part: parse its text as header blocks
        text = part.get_payload(decode=True)
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else payload
        return [HeaderParser().parsestr(block + "\n")
                for block in re.split(r"\r?\n\s*\r?\n", raw.strip()) if block.strip()]
    return []


def _original_headers(msg: EmailMessage) -> EmailMessage | None:
    """The returned original message's headers (``message/rfc822`` or ``text/rfc822-headers``)."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], EmailMessage):
                return payload[0]
        if kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    return None


def _value(block: EmailMessage, name: str) -> str:
    value = block.get(name)
    return str(value).strip() if value is not None else ""


def _typed(value: str) -> str:
    """``rfc822; bounces+id@x`` -> ``bounces+id@x`` (DSN address fields carry a type)."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _find_message(
    msg: EmailMessage,
    *,
    candidates: list[str],
    envelope_id: str,
    envelope_to: str | None,
) -> str | None:
    for address in ([envelope_to] if envelope_to else []) + candidates:
        found = message_id_from(_typed(address))
        if found:
            return found
    for header in _ENVELOPE_HEADERS:
        for value in msg.get_all(header) or ():
            found = message_id_from(str(value))
            if found:
                return found
    if _MESSAGE_ID.fullmatch(envelope_id.lower()):
        return envelope_id.lower()
    original = _original_headers(msg)
    if original is not None:
        mine = _value(original, "X-CCM-Message-ID").lower()
        if _MESSAGE_ID.fullmatch(mine):
            return mine
        found = message_id_from(_value(original, "Return-Path"))
        if found:
            return found
    return None


def parse_report(
    raw: bytes, *, envelope_to: str | None = None, source: str | None = None
) -> Bounce | Complaint | None:
    """What the report in ``raw`` says: a :class:`Bounce`, a :class:`Complaint`, or ``None``
    for a DSN that reports no failure (``Action: delivered``) or an ARF report
    of another feedback type than ``abuse``/``fraud``/``virus``.

    ``envelope_to`` is the address the report was delivered to, when the
    caller knows it (an MTA pipe, a webhook); ``source`` names the file in
    errors. Raises :class:`~ccm.errors.InboundError`.
    """
    if len(raw) > MAX_REPORT_BYTES:
        raise _fail(f"report is larger than {MAX_REPORT_BYTES} bytes", "too-large", source)
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        raise _fail("not a delivery report (expected Content-Type multipart/report)",
                    "not-a-report", source)
    report_type = (msg.get_param("report-type") or "")
    report_type = report_type.lower() if isinstance(report_type, str) else ""
    if report_type == "delivery-status":
        return _bounce(msg, envelope_to=envelope_to, source=source)
    if report_type == "feedback-report":
        return _complaint(msg, envelope_to=envelope_to, source=source)
    raise _fail(f"unsupported report-type {report_type or '(none)'!r}; expected "
                "delivery-status (RFC 3464) or feedback-report (RFC 5965)", "not-a-report", source)


def _bounce(msg: EmailMessage, *, envelope_to: str | None, source: str | None) -> Bounce | None:
    parts = _parts(msg, "message/delivery-status")
    if not parts:
        raise _fail("DSN has no message/delivery-status part", "malformed", source)
    blocks = _field_blocks(parts[0])
    if len(blocks) < 2:
        raise _fail("DSN has no per-recipient fields (Action, Status)", "malformed", source)
    per_message, recipients = blocks[0], blocks[1:]
    verdict: tuple[str, str, str | None] | None = None
    for block in recipients:
        action = _value(block, "Action").lower()
        status = _STATUS.search(_value(block, "Status"))
        if not action or status is None:
            raise _fail("DSN recipient without a valid Action and Status", "malformed", source)
        if action in _NOT_BOUNCES:
            continue
        code = _SMTP_CODE.search(_typed(_value(block, "Diagnostic-Code")))
        verdict = (action, status.group(0), code.group(1) if code else None)
        if status.group(1) == "5":
            break  # a permanent failure outweighs a delay for another recipient
    message_id = _find_message(
        msg,
        candidates=[],  # Original-Recipient is the customer, not our bounce address
        envelope_id=_value(per_message, "Original-Envelope-Id"),
        envelope_to=envelope_to,
    )
    if message_id is None:
        raise _fail("DSN names no ccm message (no VERP address, Original-Envelope-Id or "
                    "X-CCM-Message-ID)", "unmatched", source)
    if verdict is None:
        return None
    action, found, smtp = verdict
    if found.startswith("2"):
        return None
    kind: Literal["hard", "soft"] = "hard" if found.startswith("5") else "soft"
    return Bounce(message_id, kind, found, action, smtp)


def _complaint(
    msg: EmailMessage, *, envelope_to: str | None, source: str | None
) -> Complaint | None:
    parts = _parts(msg, "message/feedback-report")
    if not parts:
        raise _fail("ARF report has no message/feedback-report part", "malformed", source)
    blocks = _field_blocks(parts[0])
    if not blocks:
        raise _fail("ARF report has no fields", "malformed", source)
    fields = blocks[0]
    feedback = _value(fields, "Feedback-Type").lower()
    if not feedback:
        raise _fail("ARF report without Feedback-Type", "malformed", source)
    message_id = _find_message(
        msg,
        candidates=[_value(fields, "Original-Mail-From")],
        envelope_id="",
        envelope_to=envelope_to,
    )
    if message_id is None:
        raise _fail("ARF report names no ccm message (no VERP Original-Mail-From or "
                    "X-CCM-Message-ID)", "unmatched", source)
    if feedback not in ("abuse", "fraud", "virus"):
        return None
    return Complaint(message_id, feedback)
