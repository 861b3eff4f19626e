"""The standard library's way of building an email: the oracle ccm's ``.eml`` writer is
compared with (``email.message.EmailMessage`` parts, ``email.generator`` output)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from types import MappingProxyType

from ccm.channels.email._headers import AddressValue, _set_header
from ccm.channels.email._message import _RESERVED, Attachment, _lines, _message_id
from ccm.errors import HeaderError
from ccm.message import POLICY


def stdlib_build_email(
    *,
    subject: str,
    html: str,
    text: str,
    from_: AddressValue,
    to: AddressValue,
    reply_to: AddressValue | None = None,
    headers: Mapping[str, str] = MappingProxyType({}),
    attachments: Sequence[Attachment] = (),
    message_id_domain: str | None = None,
    date: datetime,
) -> EmailMessage:
    """The message the standard library builds from the same arguments (the oracle)."""
    msg = EmailMessage(policy=POLICY)
    sender = _set_header(msg, "From", from_)
    _set_header(msg, "To", to)
    if reply_to is not None:
        _set_header(msg, "Reply-To", reply_to)
    _set_header(msg, "Subject", subject)
    when = date
    if when.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    _set_header(msg, "Date", format_datetime(when))
    _set_header(msg, "Message-ID", _message_id(sender, message_id_domain))
    _set_header(msg, "MIME-Version", "1.0")
    for name, value in headers.items():
        if name.lower() in _RESERVED:
            raise HeaderError(f"{name} cannot be set through headers", header=name)
        _set_header(msg, name, value)
    msg.set_content(_lines(text), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(_lines(html), subtype="html", charset="utf-8", cte="quoted-printable")
    for attachment in attachments:
        maintype, _, subtype = attachment.media_type.partition("/")
        msg.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    for part in msg.walk():
        if part is not msg:
            # Parts added as EmailMessage get their own MIME-Version; it belongs on top only.
            del part["MIME-Version"]
    return msg
