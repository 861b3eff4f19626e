"""The record's value objects: an entry per message, an event per thing that followed.

They are plain frozen dataclasses that the store returns and the views read;
neither imports the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from ccm._util import PHONE_NUMBER
from ccm.errors import MessageNotFound
from ccm.record.chain import utc
from ccm.record.schema import messages

__all__ = [
    "BLOCKED_PREFIX",
    "CONSENT_KINDS",
    "EVENT_KINDS",
    "OPT_IN_KINDS",
    "OPT_OUT_KINDS",
    "SUPPRESSION_KINDS",
    "AppendResult",
    "Entry",
    "Event",
    "entry_of",
    "event_of",
    "find_entry",
    "fold_consent",
    "get_entry",
    "personal_data_in",
]

#: Event kinds the record accepts. ``queued``, ``sending``, ``retry`` (back to queued after a
#: temporary failure), ``review`` and ``sent`` ... ``failed`` are the outbox's transitions
#: (:mod:`ccm.record.outbox`).
EVENT_KINDS = (
    "sent", "delivered", "bounced", "failed", "opened", "clicked", "opted_out", "complained",
    "queued", "sending", "retry", "review",
    "opted_in",
    # Events coming back (docs/events.md) and retrieval (docs/retrieval.md); ``keyword``:
    # an inbound SMS keyword, kept once per MessageSid (so that its replay is refused).
    "suppressed", "unsuppressed", "viewed", "keyword",
)
#: Event kinds that withdraw consent for the message's channel.
OPT_OUT_KINDS = ("opted_out", "complained")
#: Event kinds that give consent back (the latest opt-out or opt-in of a channel wins).
OPT_IN_KINDS = ("opted_in",)
#: Event kinds that block a channel for *every* message type (a hard bounce), and lift it.
SUPPRESSION_KINDS = ("suppressed", "unsuppressed")
#: Every event kind that changes what the contact policy allows, read in the order added.
CONSENT_KINDS = OPT_OUT_KINDS + OPT_IN_KINDS + SUPPRESSION_KINDS
#: Prefix of the consent-override keys that block a channel for every message
#: type (``{"blocked:email": False}`` after a hard bounce).
BLOCKED_PREFIX = "blocked:"

@dataclass(frozen=True)
class Entry:
    """One message in the record (generated or suppressed): ids, versions, digests, status.

    ``created_at`` is an aware datetime (stored as UTC). ``reason`` names the
    rule that suppressed it. ``archive_ref`` is filled in by the record when
    it archives content. ``segment`` is an optional coarse marketing segment
    label (e.g. ``retail``), never free text.
    """

    message_id: str
    idempotency_key: str
    params_sha256: str
    customer_id: str
    channel: str
    template: str
    template_version: str | None
    pack: str | None
    pack_version: str | None
    message_type: str | None
    journey: str | None
    locale: str | None
    created_at: datetime
    status: str
    reason: str | None
    content_sha256: str | None
    archival_sha256: str | None
    sources_sha256: str | None
    archive_ref: str | None
    segment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (``created_at`` as UTC ISO 8601)."""
        out = asdict(self)
        out["created_at"] = utc(self.created_at).isoformat()
        return out


_STR_FIELDS = tuple(f.name for f in fields(Entry) if f.name != "created_at")
_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))


@dataclass(frozen=True)
class AppendResult:
    """What :meth:`Record.append` did.

    ``status`` is ``generated``, ``suppressed`` (by the caller's policy, or
    by a cap re-checked under the lock: then ``reason`` is ``cap:<name>``) or
    ``duplicate`` (the key was recorded before: ``entry`` is that earlier entry).
    """

    status: Literal["generated", "suppressed", "duplicate"]
    entry: Entry
    reason: str | None = None


@dataclass(frozen=True)
class Event:
    """Something that happened to a message after it was made (sent, opened, ...)."""

    event_id: str
    message_id: str
    customer_id: str
    kind: str
    at: datetime
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "kind": self.kind,
                "at": utc(self.at).isoformat(), "data": self.data}


def fold_consent(rows: Iterable[tuple[str, Mapping[str, Any] | None, str]]) -> dict[str, bool]:
    """Consent overrides from ``(kind, data, message channel)`` rows in time order.

    * ``opted_out`` / ``complained``: ``{channel: False}`` (consent withdrawn;
      the contact policy refuses consent-required types, marketing by default).
      With ``data["scope"] == "all"`` (an SMS STOP) the channel is also blocked.
    * ``suppressed`` (a hard bounce): ``{"blocked:<channel>": False}`` -- the
      policy refuses every message type on that channel.
    * ``opted_in`` (START): ``{channel: True}`` (the latest opt-out or opt-in
      wins) and lifts the block; ``unsuppressed`` (the operator) lifts the block.

    ``channel`` is ``data["channel"]`` when given, else the message's channel.
    """
    out: dict[str, bool] = {}
    for kind, data, message_channel in rows:
        channel = str((data or {}).get("channel") or message_channel)
        blocked = BLOCKED_PREFIX + channel
        if kind in OPT_OUT_KINDS:
            out[channel] = False
            if (data or {}).get("scope") == "all":
                out[blocked] = False
        elif kind == "suppressed":
            out[blocked] = False
        elif kind in OPT_IN_KINDS:
            out[channel] = True
            out.pop(blocked, None)
        elif kind == "unsuppressed":
            out.pop(blocked, None)
    return dict(sorted(out.items()))


def entry_of(row: Any) -> Entry:
    """The :class:`Entry` of a ``messages`` row."""
    values = {name: row._mapping[name] for name in _ENTRY_FIELDS}
    values["created_at"] = utc(values["created_at"])
    return Entry(**values)


def event_of(row: Any) -> Event:
    """The :class:`Event` of an ``events`` row."""
    return Event(row.event_id, row.message_id, row.customer_id, row.kind, utc(row.at),
                 json.loads(row.data) if row.data is not None else None)


def find_entry(conn: sa.Connection, idempotency_key: str) -> Entry | None:
    """The entry recorded under ``idempotency_key``, or ``None``."""
    row = conn.execute(
        sa.select(messages).where(messages.c.idempotency_key == idempotency_key)
    ).first()
    return entry_of(row) if row is not None else None


def get_entry(conn: sa.Connection, message_id: str) -> Entry:
    """The entry of ``message_id``; :class:`MessageNotFound` when there is none."""
    row = conn.execute(sa.select(messages).where(messages.c.message_id == message_id)).first()
    if row is None:
        raise MessageNotFound(f"no message {message_id!r} in the record", message_id=message_id)
    return entry_of(row)


# The shapes of the personal data an event's clear ``data`` must not hold: an email address
# (with a dot in its domain: ids like ``<id@relay>`` are no address) and a phone number.
_ADDRESS = re.compile(r"[^\s<>\"(),;:]+@[^\s<>\"'(),;:]+\.[^\s<>\"'(),;:]+")
# Dates and times are not phone numbers: taken out before PHONE_NUMBER looks.
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")


def personal_data_in(data: Any, *, urls: bool = True, path: str = "$",
                     numbers: bool = True) -> list[str]:
    """Where ``data`` (an event's JSON data) holds an email address or a phone number.

    Event data is stored in clear and chained, so an erasure cannot remove
    it: ``["$.email: an email address", ...]``, never the value itself.
    ``urls=False`` leaves out a top-level ``url`` (a tracked click's link,
    checked by the lint's ``personal-data-in-link`` instead); in a ``url``
    only email addresses count (digits in a link are mostly ids).
    """
    found: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            if not urls and path == "$" and key == "url":
                continue
            name = str(key)
            if _ADDRESS.search(name) or PHONE_NUMBER.search(name):
                found.append(f"{path}: a key that is an email address or a phone number")
                here = f"{path}[…]"
            elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                here = f"{path}.{name}"
            else:
                here = f"{path}[{json.dumps(name)}]"
            found.extend(personal_data_in(value, path=here,
                                          numbers=numbers and name != "url"))
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            found.extend(personal_data_in(value, path=f"{path}[{index}]", numbers=numbers))
    elif isinstance(data, str):
        if _ADDRESS.search(data):
            found.append(f"{path}: an email address")
        elif numbers and PHONE_NUMBER.search(_MOMENT.sub(" ", data)):
            found.append(f"{path}: a phone number")
    return found
