"""Tracking events: verified tokens become ``clicked``, ``opened`` and ``opted_out`` events.

The tokens themselves are made at render time by :mod:`ccm.render.links`,
re-exported here so that engagement code has one place to import from.

Anyone holding a link can load it again and again, and the record is
append-only: so a repeat is not recorded. A message gets at most one
``opened``, and one ``clicked`` per link (URL), per :data:`REPEAT_WINDOW`
(an hour); an ``opted_out`` only once. The visitor's answer is the same
either way (:attr:`TrackedEvent.added` says whether an event was added).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ccm.render.links import (
    KEY_ENV,
    KEY_FILE_ENV,
    UNSUBSCRIBE_TTL_DAYS,
    Kind,
    TokenData,
    TrackingKey,
    _now,
    instrument_html,
    sign,
    unsubscribe_url,
    verify,
)

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "REPEAT_WINDOW",
    "UNSUBSCRIBE_TTL_DAYS",
    "EventSink",
    "Kind",
    "TokenData",
    "TrackedEvent",
    "TrackingKey",
    "has_event",
    "instrument_html",
    "record_event",
    "record_verified",
    "sign",
    "unsubscribe_url",
    "verify",
]

#: The record event each token kind stands for.
_EVENT_KINDS: dict[str, str] = {"click": "clicked", "open": "opened", "unsub": "opted_out"}

#: A repeated open, click (same link) or web view of a message within this
#: long after the recorded one adds no event: reloads and floods do not grow the record.
REPEAT_WINDOW = timedelta(hours=1)


# --- recording ---------------------------------------------------------------


class EventSink(Protocol):
    """The part of :class:`ccm.record.Record` that tracking needs."""

    def get(self, message_id: str) -> Any: ...

    def add_event(
        self,
        message_id: str,
        kind: str,
        *,
        at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Any: ...

    def add_event_once(
        self,
        message_id: str,
        kind: str,
        *,
        at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
        within: timedelta | None = None,
        same_data: bool = False,
    ) -> Any: ...

    def has_event(self, message_id: str, kind: str) -> bool: ...


@dataclass(frozen=True)
class TrackedEvent:
    """The outcome of :func:`record_event`: the token's data and whether an event was added."""

    token: TokenData
    event: str
    added: bool
    data: dict[str, Any] = field(default_factory=dict)


def has_event(record: EventSink, message_id: str, event: str) -> bool:
    """Whether the record holds an ``event`` (e.g. ``opted_out``) for ``message_id``."""
    return bool(record.has_event(message_id, event))


def record_verified(
    record: EventSink, data: TokenData, *, at: datetime | None = None
) -> TrackedEvent:
    """Add the event a verified token stands for (see :func:`record_event`)."""
    entry = record.get(data.message_id)
    event = _EVENT_KINDS[data.kind]
    payload: dict[str, Any]
    if data.kind == "click":
        payload = {"url": data.target}
    elif data.kind == "unsub":
        # Once per message, checked and added atomically: repeated or racing POSTs add one.
        payload = {"channel": entry.channel}
        added = record.add_event_once(data.message_id, event, at=_now(at), data=payload)
        return TrackedEvent(data, event, added=added is not None, data=payload)
    else:
        payload = {}
    # One per message (and link) per window, checked and added atomically: a reload,
    # a mail client fetching the pixel again or a flood of requests adds nothing more.
    added = record.add_event_once(data.message_id, event, at=_now(at), data=payload or None,
                                  within=REPEAT_WINDOW, same_data=True)
    return TrackedEvent(data, event, added=added is not None, data=payload)


def record_event(
    record: EventSink,
    token: str,
    kind: Kind,
    *,
    key: TrackingKey,
    now: datetime | None = None,
) -> TrackedEvent:
    """Verify ``token`` and add its event (``clicked``, ``opened`` or ``opted_out``).

    A click records ``{"url": target}``, an unsubscribe ``{"channel": ...}``
    and only once per message: a second call adds nothing and reports
    ``added=False``. A second open, or a second click on the same link, less
    than :data:`REPEAT_WINDOW` after the recorded one adds nothing either
    (``added=False``). Raises :class:`~ccm.errors.TokenError` for a bad token
    and :class:`~ccm.errors.MessageNotFound` for an unknown message.
    """
    moment = _now(now)
    return record_verified(record, verify(token, kind, key=key, now=moment), at=moment)
