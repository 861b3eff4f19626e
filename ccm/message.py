"""The typed results: :class:`Message` (rendered), :class:`Outgoing` and :class:`Receipt` (sent)."""

from __future__ import annotations

import email.policy
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal

from ccm._util import unique_filename

__all__ = [
    "Channel", "Message", "Outgoing", "Receipt", "Request", "Status", "new_message_id",
    "output_filename",
]

Channel = Literal["pdf", "email", "sms"]
Status = Literal["generated", "suppressed", "duplicate"]
CHANNELS: tuple[Channel, ...] = ("pdf", "email", "sms")

#: How emails are written and parsed: SMTP line endings, source lines never refolded.
POLICY = email.policy.SMTP.clone(refold_source="none")

#: File suffix written for each channel's content.
SUFFIXES: dict[str, str] = {"pdf": ".pdf", "email": ".eml", "sms": ".sms.txt"}
MEDIA_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "email": "message/rfc822",
    "sms": "text/plain; charset=utf-8",
}


def new_message_id(at: datetime, noise: bytes | None = None) -> str:
    """A new message id: a UUID version 7 (RFC 9562) as 32 hex digits, ordered by ``at``.

    The first 48 bits are ``at`` in Unix milliseconds (the message's
    ``created_at``, from the engine's clock), the other 74 of the 122 free
    bits are random. New ids therefore land at the end of the record's
    indexes on message ids (the messages' primary key, the chain's ``ref``)
    instead of on a random page each, which keeps a record append's cost flat
    as the record grows. Ids stay unique without coordination (74 random bits
    per millisecond) and reveal nothing but the creation time, which the
    record and the email's ``Date`` hold anyway. A naive ``at`` counts as UTC.

    ``noise``: the 10 random bytes to use (from ``os.urandom``), for a caller that
    makes many ids and draws their randomness in one call; default: drawn here.
    """
    if noise is None:
        noise = os.urandom(10)
    elif len(noise) != 10:
        raise ValueError("a message id takes 10 random bytes")
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    ms = max(0, int(at.timestamp() * 1000)) & 0xFFFF_FFFF_FFFF
    raw = bytearray(ms.to_bytes(6, "big") + noise)
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    return raw.hex()


def output_filename(customer_id: str, template: str, locale: str, channel: str) -> str:
    """The file name a message's content is written under, by ``ccm render`` and ``ccm batch``.

    ``<customer>-<template>-<locale>-<digest><suffix>``, e.g.
    ``C1-payment_reminder-en_GB-1f0c2d3e4a5b.eml``: the readable part keeps
    letters and digits of every script (NFC) and turns anything else into
    ``_``; the 12 hex digits are a SHA-256 of the exact customer id, template
    and locale, so two customers never share a name even when their readable
    parts are equal (``C/1`` and ``C_1``). Names are portable (no device
    names, no trailing dots, at most 200 bytes of UTF-8); see docs/cli.md.
    """
    return unique_filename(customer_id, template, locale, suffix=SUFFIXES[channel])


@dataclass(frozen=True)
class Request:
    """One render request: who it is for and the data the template needs."""

    customer: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def customer_id(self) -> str:
        return str(self.customer.get("id", ""))

    @classmethod
    def from_dict(cls, obj: Any) -> Request:
        """Build from ``{"customer": {...}, "data": {...}}`` (JSON), checking its shape."""
        from ccm.errors import DataError

        if not isinstance(obj, dict):
            raise DataError("request must be a JSON object", path="$", rule="type")
        customer = obj.get("customer")
        if not isinstance(customer, dict):
            raise DataError("request needs a 'customer' object", path="$.customer", rule="required")
        if "id" not in customer or customer["id"] in (None, ""):
            raise DataError("customer needs an 'id'", path="$.customer.id", rule="required")
        data = obj.get("data", {})
        if not isinstance(data, dict):
            raise DataError("'data' must be an object", path="$.data", rule="type")
        extra = set(obj) - {"customer", "data"}
        if extra:
            raise DataError(
                f"unknown request keys: {', '.join(sorted(extra))}", path="$",
                rule="additionalProperties",
            )
        return cls(customer=dict(customer), data=dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {"customer": self.customer, "data": self.data}


class _LazyEmail:
    """``Message.email``: set as usual, or parsed from ``content`` on first read.

    The engine writes an email's bytes directly (fast) and does not build the
    :class:`~email.message.EmailMessage` unless someone reads it: assigning
    :data:`PARSE_CONTENT` defers the parse to the first access.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, obj: Any, objtype: Any = None) -> EmailMessage | None:
        if obj is None:
            return None  # the dataclass default
        value = obj.__dict__.get(self._slot)
        if value is PARSE_CONTENT:
            value = BytesParser(policy=POLICY).parsebytes(obj.content) if obj.content else None
            obj.__dict__[self._slot] = value
        return value  # type: ignore[no-any-return]

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value


class _ParseContent:
    def __repr__(self) -> str:
        return "PARSE_CONTENT"

    def __reduce__(self) -> str:
        return "PARSE_CONTENT"  # pickled by name: the same sentinel in a worker process


#: Assign to :attr:`Message.email` to have it parsed from ``content`` when first read.
PARSE_CONTENT: Any = _ParseContent()


@dataclass
class Message:
    """One rendered message on one channel.

    ``content`` is exactly what is delivered: the (encrypted) PDF bytes, the
    serialised .eml (CRLF), or the SMS text as UTF-8. ``archival`` holds the
    unencrypted PDF/A-3b copy when the pack archives confidential PDFs; it is
    never delivered, only kept in the encrypted archive.
    """

    message_id: str
    customer_id: str
    template: str
    template_version: str
    pack: str
    pack_version: str
    channel: Channel
    locale: str
    message_type: str
    journey: str
    content: bytes
    status: Status = "generated"
    reason: str | None = None
    subject: str | None = None
    encrypted: bool = False
    password_hint: str | None = None
    archival: bytes | None = None
    email: EmailMessage | None = _LazyEmail()  # type: ignore[assignment]
    text: str | None = None
    encoding: str | None = None
    segments: int | None = None
    idempotency_key: str | None = None
    sources_sha256: str | None = None
    created_at: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """SHA-256 of the delivered content, hex."""
        return hashlib.sha256(self.content).hexdigest()

    @property
    def archival_sha256(self) -> str | None:
        return hashlib.sha256(self.archival).hexdigest() if self.archival is not None else None

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.channel]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.channel]

    @property
    def filename(self) -> str:
        """The file name of :attr:`content` (see :func:`output_filename`)."""
        return output_filename(self.customer_id, self.template, self.locale, self.channel)

    def summary(self, *, sha256: str | None = None) -> dict[str, Any]:
        """The JSON-friendly fields the CLI prints (no content, no personal data).

        ``sha256``: the content's digest, when the caller has just computed it from
        :attr:`content` (not computed again).
        """
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "customer_id": self.customer_id,
            "template": self.template,
            "template_version": self.template_version,
            "pack": self.pack,
            "pack_version": self.pack_version,
            "channel": self.channel,
            "locale": self.locale,
            "status": self.status,
            "sha256": (sha256 or self.sha256) if self.content else None,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.channel == "sms":
            out["encoding"] = self.encoding
            out["segments"] = self.segments
        if self.channel == "pdf":
            out["encrypted"] = self.encrypted
            if self.archival is not None:
                out["archival_sha256"] = self.archival_sha256
        if self.password_hint:
            out["password_hint"] = self.password_hint
        return out


@dataclass(frozen=True)
class Outgoing:
    """One queued message as a transport sees it: where it goes and the exact bytes.

    ``content`` is what was recorded (the .eml with CRLF line endings, the SMS
    text as UTF-8, the PDF bytes). ``recipient`` is the address (email), the
    number in E.164 (SMS), or ``None`` (PDF). ``attempt`` counts from 1.
    ``repr()`` shows neither recipient nor content: they are personal data.
    """

    message_id: str
    customer_id: str
    channel: str
    recipient: str | None = field(repr=False)
    content: bytes = field(repr=False)
    idempotency_key: str | None = None
    template: str | None = None
    message_type: str | None = None
    attempt: int = 1

    @property
    def text(self) -> str:
        """The content as text (SMS)."""
        return self.content.decode("utf-8")


@dataclass(frozen=True)
class Receipt:
    """What a transport answered when it took a message.

    ``provider_id`` is the provider's handle for the message (an SMTP queue
    id from the server's reply, a Twilio ``SM...`` sid, a file name), used to
    match later status callbacks; ``status`` is the provider's word for the
    state (``accepted``, ``queued``, ``sent``, ...). ``detail`` is a short,
    personal-data-free note (an SMTP reply code and text).
    """

    transport: str
    provider_id: str | None = None
    status: str = "accepted"
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transport": self.transport, "status": self.status}
        if self.provider_id is not None:
            out["provider_id"] = self.provider_id
        if self.detail is not None:
            out["detail"] = self.detail
        return out
