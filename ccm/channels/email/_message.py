"""One email as bytes (``build_email_bytes``) or as an ``EmailMessage`` (``build_email``)."""

from __future__ import annotations

import binascii
import email.policy
import re
import secrets
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses
from functools import lru_cache
from types import MappingProxyType

from ccm.channels.email._headers import (
    _ADDRESS_HEADERS,
    _BIDI_CONTROLS,
    _FORBIDDEN,
    _HEADER_NAME,
    _MAX_LINE,
    AddressValue,
    _address_pair,
    _check_line_breaks,
    _folded,
    safe_header,
)
from ccm.errors import HeaderError, RenderError
from ccm.message import POLICY

_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


@dataclass(frozen=True)
class Attachment:
    """A file attached to an email; the name is checked like a header value."""

    filename: str
    content: bytes
    media_type: str = "application/octet-stream"

    def __post_init__(self) -> None:
        if not isinstance(self.content, bytes):
            raise TypeError(f"attachment content must be bytes, not {type(self.content).__name__}")
        if not _MEDIA_TYPE.fullmatch(self.media_type) or self.media_type.lower().startswith(
            ("multipart/", "message/")
        ):
            raise HeaderError(f"invalid attachment media type {self.media_type!r}",
                              header="Content-Type")
        name = self.filename
        if (
            not name.strip()
            or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name)
            or any(ch in _FORBIDDEN or ch in _BIDI_CONTROLS for ch in name)
            or "/" in name
            or "\\" in name
        ):
            # Bidi overrides are refused, not dropped: "invoice\u202efdp.exe" spoofing.
            raise HeaderError("invalid attachment file name", header="Content-Disposition")
        _check_line_breaks("Content-Disposition", name)


#: Headers build_email sets itself, plus Cc/Bcc: a message has exactly one recipient.
_RESERVED = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
     "sender", "content-type", "content-transfer-encoding", "content-disposition"}
)
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@lru_cache(maxsize=256)
def _sender_domain(sender: str) -> str:
    return getaddresses([sender])[0][1].rpartition("@")[2]


def _message_id(sender: str, domain: str | None) -> str:
    if domain is None:
        domain = _sender_domain(sender)
    if not _DOMAIN.fullmatch(domain):
        domain = "ccm.invalid"
    # Random rather than make_msgid(): no host name lookup, no pid or clock in the id.
    return f"<{secrets.token_hex(16)}@{domain}>"


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def build_email(
    *,
    subject: str,
    html: str,
    text: str,
    from_: AddressValue,
    to: AddressValue,
    reply_to: AddressValue | None = None,
    headers: Mapping[str, str] = _NO_HEADERS,
    attachments: Sequence[Attachment] = (),
    message_id_domain: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """Assemble one email to exactly one recipient, every header through :func:`safe_header`.

    The body is ``multipart/alternative`` (``text/plain`` first, ``text/html``
    last, both quoted-printable); with attachments that becomes the first part
    of a ``multipart/mixed``. Addresses are header text (``"Name <a@b.example>"``)
    or a ``(name, address)`` pair; prefer the pair for customer names, which
    then reach the recipient exactly as given. ``headers`` adds extra headers
    but cannot set the ones built here nor Cc/Bcc. The Message-ID domain
    defaults to the sender's.

    The message is :func:`build_email_bytes`'s, parsed: ccm has one ``.eml`` writer.
    """
    data = build_email_bytes(
        subject=subject, html=html, text=text, from_=from_, to=to, reply_to=reply_to,
        headers=headers, attachments=attachments, message_id_domain=message_id_domain,
        date=date)
    msg = BytesParser(policy=POLICY).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


# --- the message, written directly -------------------------------------------------
#
# The one writer of every .eml ccm makes (``build_email`` parses its bytes). Kept over the
# standard library's generator (tests/channels/_stdlib_email.py, the tests' oracle) because
# it measured 390 µs against 3,338 µs per payment reminder
# (``python benchmarks/library_bench.py``, figure ``f-eml``, 2 shared cores).

_CRLF = b"\r\n"


@lru_cache(maxsize=256)
def _constant_header(name: str, value: AddressValue) -> bytes:
    """One header line for a value that repeats (pack senders), checked and folded once."""
    safe = _address_pair(name, value) if isinstance(value, tuple) else safe_header(name, value)
    return _header_line(name, safe)


def _header_line(name: str, safe: str) -> bytes:
    # What POLICY writes for a set_raw value: "Name: " + folded lines joined by CRLF.
    return (f"{name}: " + _folded(name, safe).replace("\n", "\r\n") + "\r\n").encode("ascii")


#: A value :func:`safe_header` gives back unchanged and :func:`_folded` keeps on one line
#: (when it fits): printable ASCII words between single spaces.
_ONE_LINE = re.compile(r"[!-~]+(?: [!-~]+)*")


def _header(name: str, value: str) -> bytes:
    """``_header_line(name, safe_header(name, value))``; a short plain value written directly.

    Such a value (``Date``, ``Message-ID``, ``X-CCM-Message-ID``) has nothing to
    check or clean: no control, line break, encoded word or run of spaces, and
    it needs no folding.
    """
    if (type(value) is str and len(name) + 2 + len(value) <= _MAX_LINE
            and _ONE_LINE.fullmatch(value)
            and "=?" not in value and _HEADER_NAME.fullmatch(name)
            and name.lower() not in _ADDRESS_HEADERS):
        return f"{name}: {value}\r\n".encode("ascii")
    return _header_line(name, safe_header(name, value))


@lru_cache(maxsize=256)
def _sender_address(sender: AddressValue) -> str:
    return _address_pair("From", sender) if isinstance(sender, tuple) else safe_header(
        "From", sender)


def _qp_body(text: str) -> bytes:
    """``text`` as the quoted-printable body :meth:`EmailMessage.set_content` makes.

    The same lines (``bytes.splitlines`` of the UTF-8), each ending in CRLF, but
    encoded by :func:`binascii.b2a_qp` (C) instead of :mod:`email.quoprimime`;
    both are valid quoted-printable of the same bytes, so the decoded content is equal.
    """
    # After _lines() the text holds no CR, so b2a_qp's output holds none either (it
    # passes CR through raw only as part of CRLF) and every LF becomes CRLF here: the
    # body is CRLF-only without a check over its bytes.
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    return binascii.b2a_qp(data, istext=True).replace(b"\n", _CRLF)


class ShapedHTML(str):
    """HTML whose quoted-printable body was already made from its parts (``qp_body``).

    :func:`build_email_bytes` uses ``qp_body`` instead of encoding the HTML again;
    it equals ``_qp_body(_lines(html))`` (see :func:`qp_segments`).
    """

    qp_body: bytes


def _qp_window(segment: bytes, column: int, newline_next: bool) -> tuple[bytes, int]:
    """``segment`` as :func:`binascii.b2a_qp` encodes it inside a longer text.

    The encoder's decisions depend on the column (``column``, 0-75), the byte
    and whether the next byte is a line feed, so the segment is encoded
    behind ``column`` plain letters and before a line feed or a letter, and
    those are cut off again. Returns the segment's output and the column after it.
    """
    out = binascii.b2a_qp(b"a" * column + segment + (b"\n" if newline_next else b"a"),
                          istext=True)[column:]
    # Cut the line feed or letter after, and the soft line break the letter needed.
    out = out[:-1] if newline_next or not out.endswith(b"=\na") else out[:-3]
    line = out.rfind(b"\n")
    return out, (len(out) - line - 1 if line >= 0 else column + len(out))


#: Encodings one compiled shape keeps (a piece at a column): bounds its memory to about
#: this many times its longest piece, whatever the values do to the columns.
QP_MEMO = 256

#: The bytes :func:`binascii.b2a_qp` writes as they are wherever they stand (printable
#: ASCII but ``=``, and the space, which only the end of a line or of the data changes).
_QP_PLAIN = bytes(range(32, 127)).replace(b"=", b"")
#: The last column a plain segment may reach without a soft line break inside it.
_QP_LAST = 75


def _plain_lines(segment: bytes, column: int, newline_next: bool,
                 soft: bytes = b"=\n") -> tuple[bytes, int]:
    """A segment without bytes to escape as :func:`binascii.b2a_qp` writes it from ``column``.

    b2a_qp breaks a line (``=`` and a line feed) before a byte that would reach
    column 75, unless a line feed follows that byte (``newline_next`` for the
    segment's last); the segment is not the text's last (a trailing space there
    would be escaped). ``soft`` is the soft line break written. Returns the
    output and the column after it.
    """
    out: list[bytes] = []
    size = len(segment)
    at = 0
    while True:
        room = max(_QP_LAST - column, 0)
        if size - at <= room:
            out.append(segment[at:])
            return b"".join(out), column + size - at
        out.append(segment[at:at + room])
        at += room
        column += room
        if at == size - 1 and newline_next:  # the last byte, right before a line feed
            out.append(segment[at:])
            return b"".join(out), column + 1
        out.append(soft)
        column = 0


def qp_segments(segments: Sequence[bytes],
                memo: dict[tuple[int, int, bool, bool], tuple[bytes, int]] | None = None,
                static: Sequence[bool] = (), *, crlf: bool = False) -> bytes:
    """``binascii.b2a_qp(b"".join(segments), istext=True)``, made segment by segment.

    The joined text must hold no CR and end with a line feed. Segments marked
    ``static`` (by index) are remembered in ``memo`` by index, column and next
    byte: a compiled shape's fixed HTML is encoded once per position it occurs at.
    With ``crlf`` every line feed of the result is CRLF (each piece is
    converted once, not the whole body per message).
    """
    out: list[bytes] = []
    column = 0
    present = [(index, segment) for index, segment in enumerate(segments) if segment]
    last = present[-1][0] if present else -1
    # Whether the next non-empty segment starts with a line feed (10).
    nexts = [segment[0] == 10 for _, segment in present]
    nexts.append(False)
    for (index, segment), newline_next in zip(present, nexts[1:], strict=True):
        if segment[0] == 10:
            # A line feed starts a new line whatever the column (which may be 76 or
            # more just before one: b2a_qp breaks no line right before a line feed).
            column = 0
        if memo is not None and index < len(static) and static[index]:
            key = (index, column, newline_next, crlf)
            done = memo.get(key)
            if done is None:
                done = _qp_window(segment, column, newline_next)
                if crlf:
                    done = (done[0].replace(b"\n", _CRLF), done[1])
                if len(memo) < QP_MEMO:
                    memo[key] = done
            encoded, column = done
        elif (index != last and not segment.translate(None, _QP_PLAIN)
                and (column or segment[:1] != b".")
                and not (newline_next and segment[-1:] == b" ")):
            # No byte to escape, no "." starting a line, no space before a line feed:
            # written as it is, with b2a_qp's soft line breaks where it makes them.
            if column + len(segment) <= _QP_LAST:
                encoded = segment
                column += len(segment)
            else:
                encoded, column = _plain_lines(segment, column, newline_next,
                                               b"=\r\n" if crlf else b"=\n")
        else:
            encoded, column = _qp_window(segment, column, newline_next)
            if crlf:
                encoded = encoded.replace(b"\n", _CRLF)
        out.append(encoded)
    return b"".join(out)


def _boundary() -> bytes:
    # The stdlib's shape; "=" never occurs in quoted-printable or base64 text
    # except as "=XX" escapes and final padding, so it cannot collide with a body.
    return b"===============%019d==" % secrets.randbelow(sys.maxsize)


def _attachment_part(attachment: Attachment) -> bytes:
    """An attachment part exactly as :meth:`EmailMessage.add_attachment` writes it."""
    part = EmailMessage(policy=POLICY)
    maintype, _, subtype = attachment.media_type.partition("/")
    part.set_content(attachment.content, maintype=maintype, subtype=subtype,
                     disposition="attachment", filename=attachment.filename)
    del part["MIME-Version"]
    return part.as_bytes(policy=POLICY)


def build_email_bytes(
    *,
    subject: str,
    html: str,
    text: str,
    from_: AddressValue,
    to: AddressValue,
    reply_to: AddressValue | None = None,
    headers: Mapping[str, str] = _NO_HEADERS,
    attachments: Sequence[Attachment] = (),
    message_id_domain: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """:func:`to_bytes` of :func:`build_email` with the same arguments, written directly.

    Same headers, checked the same way (:func:`safe_header`), in the same
    order; the same MIME structure and part headers; quoted-printable bodies
    that decode to the same text. Parsing the result gives a message equal to
    :func:`build_email`'s part by part, in a tenth of the time: the standard
    library's ``email`` package builds an object tree and encodes with pure
    Python, which is most of what an email costs to make. The pack's senders
    are checked once and remembered.
    """
    out = [_constant_header("From", from_)]
    sender = _sender_address(from_)
    out.append(_header_line("To", _address_pair("To", to) if isinstance(to, tuple)
                            else safe_header("To", to)))
    if reply_to is not None:
        out.append(_constant_header("Reply-To", reply_to))
    out.append(_header("Subject", subject))
    when = date if date is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    out.append(_header("Date", format_datetime(when)))
    out.append(_header("Message-ID", _message_id(sender, message_id_domain)))
    out.append(b"MIME-Version: 1.0\r\n")
    for name, value in headers.items():
        if name.lower() in _RESERVED:
            raise HeaderError(f"{name} cannot be set through headers", header=name)
        out.append(_header(name, value))
    _crlf_only(b"".join(out))  # the headers; the bodies below are CRLF-only by construction
    inner = _boundary()
    alternative = [
        b"Content-Type: multipart/alternative;\r\n boundary=\"" + inner + b"\"\r\n\r\n",
        b"--" + inner + b"\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        _qp_body(_lines(text)),
        b"\r\n--" + inner + b"\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        html.qp_body if isinstance(html, ShapedHTML) else _qp_body(_lines(html)),
        b"\r\n--" + inner + b"--\r\n",
    ]
    if attachments:
        outer = _boundary()
        out.append(b"Content-Type: multipart/mixed; boundary=\"" + outer + b"\"\r\n\r\n")
        out.append(b"--" + outer + b"\r\n")
        out.extend(alternative)
        for attachment in attachments:
            out.append(b"\r\n--" + outer + b"\r\n")
            out.append(_crlf_only(_attachment_part(attachment)))
        out.append(b"\r\n--" + outer + b"--\r\n")
    else:
        out.extend(alternative)
    return b"".join(out)


def to_bytes(msg: EmailMessage) -> bytes:
    """Serialise as an ``.eml`` with CRLF line endings only."""
    return _crlf_only(msg.as_bytes(policy=POLICY))


def _crlf_only(data: bytes) -> bytes:
    """``data`` unchanged, or :class:`RenderError` when a line ends in anything but CRLF."""
    rest = data.replace(_CRLF, b"")
    if b"\n" in rest or b"\r" in rest:
        raise RenderError("serialised email has a bare line feed or carriage return",
                          channel="email")
    return data


def parse_bytes(data: bytes) -> EmailMessage:
    """Parse an ``.eml`` back (``email.policy.default``) for checks and round trips."""
    return BytesParser(policy=email.policy.default).parsebytes(data)
