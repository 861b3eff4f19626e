"""Per-message bounce addresses (VERP): a bounce names the message it is about.

The envelope sender of each email is ``<local>+<message id>@<domain>`` for a
configured bounce address ``<local>@<domain>``; a delivery status
notification comes back to that address, and :func:`message_id_from` reads
the message id out of it. Message ids are 32 lowercase hex digits.
"""

from __future__ import annotations

import re

__all__ = ["bounce_address", "message_id_from"]

_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")


def bounce_address(base: str, message_id: str) -> str:
    """``bounces@example.com`` + id -> ``bounces+<id>@example.com``."""
    local, sep, domain = base.rpartition("@")
    if not sep or not local or not domain or "+" in local:
        raise ValueError(f"bounce address {base!r} must be local@domain without a '+'")
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError("message ids in bounce addresses are 32 lowercase hex digits")
    return f"{local}+{message_id}@{domain}"


def message_id_from(address: str) -> str | None:
    """The message id in a VERP address (angle brackets allowed), or ``None``."""
    addr = address.strip().strip("<>")
    local, sep, _domain = addr.rpartition("@")
    if not sep or "+" not in local:
        return None
    tag = local.rsplit("+", 1)[1].lower()
    return tag if _MESSAGE_ID.fullmatch(tag) else None
