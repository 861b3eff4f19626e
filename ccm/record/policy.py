"""Contact policy: consent, frequency caps and quiet hours -> a :class:`Decision`.

Pure: no database and no clock of its own. The caller (the engine) passes
``now``, a ``counter`` that answers "how many messages does this cap count in
its window?" (from the record), and the opt-outs the record holds. The record
re-checks caps atomically when it appends, so two writers cannot together
pass a cap (see :meth:`ccm.record.Record.append`).

Rules run in a fixed order and the first that says no decides:

0. ``suppressed:<channel>`` -- the record blocked the channel for every
   message type (a hard bounce on email, an SMS STOP): the override
   ``{"blocked:<channel>": False}``.
1. ``consent:<channel>`` -- a message type listed in ``consent_required``
   (default: marketing) needs the customer's consent on that channel, and no
   recorded opt-out.
2. ``cap:<name>`` -- the first cap (in pack order) that this message would
   exceed.
3. ``quiet_hours`` -- the local time in the customer's timezone is inside the
   window; ``defer`` says until when, ``suppress`` drops the message.

A suppression is a returned decision, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ccm.errors import DataError, PackError
from ccm.record.entries import BLOCKED_PREFIX

__all__ = ["Cap", "Decision", "Policy", "QuietHours"]

MESSAGE_TYPES = ("operational", "marketing")
CHANNELS = ("pdf", "email", "sms")
_UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Cap:
    """At most ``max`` messages per customer in a rolling ``window_days``.

    ``message_type`` and ``channel`` narrow what the cap applies to and what
    it counts; ``None`` means any. A marketing cap never counts operational
    messages, and the other way round.
    """

    name: str
    max: int
    window_days: float
    message_type: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a cap needs a name")
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 0:
            raise ValueError(f"cap {self.name!r}: max must be an integer >= 0")
        if not self.window_days > 0:
            raise ValueError(f"cap {self.name!r}: window_days must be > 0")
        if self.message_type not in (None, *MESSAGE_TYPES):
            raise ValueError(f"cap {self.name!r}: unknown message_type {self.message_type!r}")
        if self.channel not in (None, *CHANNELS):
            raise ValueError(f"cap {self.name!r}: unknown channel {self.channel!r}")

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    def applies_to(self, message_type: str, channel: str) -> bool:
        """Whether a message of this type on this channel counts against the cap."""
        return self.message_type in (None, message_type) and self.channel in (None, channel)

    def describe(self) -> str:
        """``"3 marketing sms message(s) per 7 days"``: the cap in words."""
        what = " ".join(x for x in (self.message_type, self.channel) if x)
        days = f"{self.window_days:g}"
        return f"{self.max} {what + ' ' if what else ''}message(s) per {days} day(s)"


@dataclass(frozen=True)
class QuietHours:
    """No messages on ``channels`` between ``start`` and ``end`` local time.

    The window may wrap midnight (``21:00``-``08:00``); ``start == end`` is an
    empty window. ``action`` is ``defer`` (send at the end of the window) or
    ``suppress``.
    """

    start: time
    end: time
    channels: tuple[str, ...] = ("sms",)
    action: Literal["suppress", "defer"] = "defer"

    def __post_init__(self) -> None:
        if self.action not in ("suppress", "defer"):
            raise ValueError(f"quiet hours action must be suppress or defer, not {self.action!r}")

    def contains(self, local: time) -> bool:
        """Whether the local wall-clock time falls inside the window."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def window_end(self, local_now: datetime) -> datetime:
        """The first moment after ``local_now`` (aware, local) at which the window ends."""
        tz = local_now.tzinfo
        candidate = datetime.combine(local_now.date(), self.end, tzinfo=tz)
        if candidate <= local_now:
            candidate = datetime.combine(local_now.date() + timedelta(days=1), self.end, tzinfo=tz)
        return candidate

    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Decision:
    """Whether a message may be made, and if not, which rule said no and why.

    ``rule`` is machine-readable (``consent:sms``, ``cap:marketing-weekly``,
    ``quiet_hours``); ``reason`` is a sentence for people; ``defer_until`` is
    set when quiet hours defer rather than suppress.
    """

    allowed: bool
    rule: str | None = None
    reason: str = "allowed"
    defer_until: datetime | None = None


ALLOWED = Decision(allowed=True)


@dataclass(frozen=True)
class Policy:
    """A brand pack's contact policy (the ``policy:`` section of ``pack.yaml``)."""

    consent_required: tuple[str, ...] = ("marketing",)
    caps: tuple[Cap, ...] = ()
    quiet_hours: QuietHours | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> Policy:
        """Build from the ``policy:`` mapping (see ``pack.schema.json``); ``None`` = defaults.

        The defaults are the schema's: marketing needs consent, no caps, no
        quiet hours. Raises :class:`~ccm.errors.PackError` naming the key.
        """
        raw = dict(raw or {})
        unknown = set(raw) - {"consent_required", "caps", "quiet_hours"}
        if unknown:
            raise PackError(f"policy: unknown key(s) {', '.join(sorted(unknown))}",
                            key=f"policy.{sorted(unknown)[0]}")
        required = raw.get("consent_required", ["marketing"])
        if not isinstance(required, Sequence) or isinstance(required, str) or any(
            t not in MESSAGE_TYPES for t in required
        ):
            raise PackError("policy.consent_required must list operational and/or marketing",
                            key="policy.consent_required")
        caps: list[Cap] = []
        for i, item in enumerate(raw.get("caps") or ()):
            key = f"policy.caps[{i}]"
            if not isinstance(item, Mapping):
                raise PackError(f"{key} must be a mapping", key=key)
            extra = set(item) - {"name", "max", "window_days", "message_type", "channel"}
            if extra:
                raise PackError(f"{key}: unknown key(s) {', '.join(sorted(extra))}", key=key)
            try:
                cap = Cap(
                    name=str(item["name"]),
                    max=item["max"],
                    window_days=float(item["window_days"]),
                    message_type=item.get("message_type"),
                    channel=item.get("channel"),
                )
            except KeyError as exc:
                missing = exc.args[0]
                raise PackError(f"{key} needs {missing!r}", key=f"{key}.{missing}") from None
            except (TypeError, ValueError) as exc:
                raise PackError(f"{key}: {exc}", key=key) from None
            if any(c.name == cap.name for c in caps):
                raise PackError(f"{key}: duplicate cap name {cap.name!r}", key=f"{key}.name")
            caps.append(cap)
        quiet = raw.get("quiet_hours")
        return cls(
            consent_required=tuple(dict.fromkeys(required)),
            caps=tuple(caps),
            quiet_hours=_quiet_hours(quiet) if quiet else None,
        )

    def caps_for(self, message_type: str, channel: str) -> list[Cap]:
        """The caps a message of this type on this channel counts against (pack order)."""
        return [c for c in self.caps if c.applies_to(message_type, channel)]

    def evaluate(
        self,
        *,
        customer: Mapping[str, Any],
        message_type: str,
        channel: str,
        now: datetime,
        counter: Callable[[Cap], int],
        consent_overrides: Mapping[str, bool] | None = None,
    ) -> Decision:
        """Decide whether this message may be made now; the first failing rule explains why.

        ``customer["consents"]`` maps channel -> bool; ``consent_overrides``
        (from the record: opt-outs) win over it. ``counter(cap)`` returns how
        many messages the cap already counts in its window ending at ``now``.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        decision = self._consent(customer, message_type, channel, consent_overrides or {})
        if decision is not None:
            return decision
        for cap in self.caps_for(message_type, channel):
            sent = counter(cap)
            if sent >= cap.max:
                return Decision(
                    allowed=False,
                    rule=f"cap:{cap.name}",
                    reason=(
                        f"frequency cap {cap.name!r} allows {cap.describe()}; "
                        f"{sent} already made in that window"
                    ),
                )
        return self._quiet(customer, channel, now) or ALLOWED

    def _consent(
        self,
        customer: Mapping[str, Any],
        message_type: str,
        channel: str,
        overrides: Mapping[str, bool],
    ) -> Decision | None:
        if overrides.get(BLOCKED_PREFIX + channel) is False:
            return Decision(
                allowed=False,
                rule=f"suppressed:{channel}",
                reason=(f"the customer's {channel} address is suppressed for every message "
                        "(a hard bounce or STOP recorded in the record)"),
            )
        if message_type not in self.consent_required:
            return None
        consents = customer.get("consents") or {}
        if not isinstance(consents, Mapping):
            raise DataError("customer.consents must be an object of channel: true/false",
                            path="$.customer.consents", rule="type")
        if overrides.get(channel) is False:
            return Decision(
                allowed=False,
                rule=f"consent:{channel}",
                reason=f"the customer opted out of {channel} (opt-out recorded in the record)",
            )
        given = overrides.get(channel, consents.get(channel))
        if given is True:
            return None
        state = "withheld" if given is False else "not given"
        return Decision(
            allowed=False,
            rule=f"consent:{channel}",
            reason=f"{message_type} messages by {channel} need consent, and it is {state}",
        )

    def _quiet(self, customer: Mapping[str, Any], channel: str, now: datetime) -> Decision | None:
        quiet = self.quiet_hours
        if quiet is None or channel not in quiet.channels:
            return None
        zone, zone_name = _zone(customer.get("timezone"))
        local = now.astimezone(zone)
        if not quiet.contains(local.time().replace(tzinfo=None)):
            return None
        where = f"{quiet.label()} in {zone_name}"
        if quiet.action == "suppress":
            return Decision(
                allowed=False, rule="quiet_hours",
                reason=f"{channel} quiet hours {where}: suppressed",
            )
        until = quiet.window_end(local)
        return Decision(
            allowed=False, rule="quiet_hours",
            reason=f"{channel} quiet hours {where}: deferred until {until.isoformat()}",
            defer_until=until,
        )


def _zone(name: object) -> tuple[tzinfo, str]:
    """The customer's zone; no timezone means UTC, an unknown one is a data error."""
    if name in (None, ""):
        return _UTC, "UTC (customer has no timezone)"
    if not isinstance(name, str):
        raise DataError("customer.timezone must be an IANA zone name",
                        path="$.customer.timezone", rule="type")
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
        raise DataError(f"unknown timezone {name!r} (expected an IANA name like Europe/Berlin)",
                        path="$.customer.timezone", rule="format") from None


def _clock(value: object, key: str) -> time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise PackError(f"{key} must be HH:MM", key=key)
    try:
        hours, minutes = int(value[:2]), int(value[3:])
        return time(hours, minutes)
    except ValueError:
        raise PackError(f"{key} must be a time of day HH:MM (00:00-23:59), not {value!r}",
                        key=key) from None


def _quiet_hours(raw: object) -> QuietHours:
    key = "policy.quiet_hours"
    if not isinstance(raw, Mapping):
        raise PackError(f"{key} must be a mapping", key=key)
    extra = set(raw) - {"channels", "start", "end", "action"}
    if extra:
        raise PackError(f"{key}: unknown key(s) {', '.join(sorted(extra))}", key=key)
    if "start" not in raw or "end" not in raw:
        raise PackError(f"{key} needs start and end", key=key)
    channels = raw.get("channels", ["sms"])
    if isinstance(channels, str) or not isinstance(channels, Sequence) or any(
        c not in CHANNELS for c in channels
    ):
        raise PackError(f"{key}.channels must list channels", key=f"{key}.channels")
    action = raw.get("action", "defer")
    if action not in ("suppress", "defer"):
        raise PackError(f"{key}.action must be suppress or defer", key=f"{key}.action")
    return QuietHours(
        start=_clock(raw["start"], f"{key}.start"),
        end=_clock(raw["end"], f"{key}.end"),
        channels=tuple(channels),
        action=action,
    )
