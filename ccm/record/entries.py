"""The record's value objects: an entry per message, an event per thing that followed.

They are plain frozen dataclasses that the store returns and the views read;
neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

from ccm.record.chain import utc

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
    "fold_consent",
]

#: Event kinds the record accepts.
EVENT_KINDS = (
    "sent", "delivered", "bounced", "failed", "opened", "clicked", "opted_out", "complained",
    # Events coming back (docs/events.md) and retrieval (docs/retrieval.md).
    "opted_in", "suppressed", "unsuppressed", "viewed",
)
#: Event kinds that withdraw consent for the message's channel.
OPT_OUT_KINDS = ("opted_out", "complained")
#: Event kinds that give back what an opt-out or a suppression took (STOP -> START).
OPT_IN_KINDS = ("opted_in", "unsuppressed")
#: Event kinds that block a channel for *every* message type (a hard bounce).
SUPPRESSION_KINDS = ("suppressed",)
#: Every event kind that changes what the contact policy allows, read in time order.
CONSENT_KINDS = OPT_OUT_KINDS + SUPPRESSION_KINDS + OPT_IN_KINDS
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
    * ``opted_in`` (START) lifts both; ``unsuppressed`` (the operator) lifts the block.

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
        elif kind in SUPPRESSION_KINDS:
            out[blocked] = False
        elif kind == "opted_in":
            out.pop(channel, None)
            out.pop(blocked, None)
        elif kind == "unsuppressed":
            out.pop(blocked, None)
    return dict(sorted(out.items()))
