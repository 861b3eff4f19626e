"""Events back into the record: bounces, complaints, provider callbacks, SMS keywords.

Each function takes a record and what came back, adds the events it means to
the message's timeline and returns an :class:`Outcome`. The contact policy
reads the consent-changing ones (:func:`ccm.record.entries.fold_consent`):

==========================  ==================================================
what came back              events added
==========================  ==================================================
DSN, soft (4.x.x)           ``bounced`` ``{"bounce": "soft", "status", ...}``
DSN, hard (5.x.x)           ``bounced`` (hard) and ``suppressed``
                            ``{"channel": "email", "reason": "hard_bounce"}``:
                            no more email of any type to the customer
ARF ``abuse`` complaint     ``complained`` ``{"channel": "email"}``: no more
                            marketing email (consent withdrawn)
status ``delivered``        ``delivered``
status ``undelivered``      ``bounced`` (hard for unknown/landline numbers:
                            then also ``suppressed`` for SMS)
status ``failed``           ``failed`` (with error 21610, the number sent STOP to
                            the provider: also ``opted_out`` as for STOP)
SMS STOP (and synonyms)     ``opted_out`` ``{"channel": "sms", "scope": "all"}``
SMS START / UNSTOP          ``opted_in`` ``{"channel": "sms"}``
SMS keyword with a sid      also one ``keyword`` (the inbound message, kept once)
``ccm record unsuppress``   ``unsuppressed`` ``{"channel": ..., "by": "operator"}``
==========================  ==================================================

A DSN or ARF report applies only to an email message ccm generated (status
``generated``): a report naming an SMS or PDF message, or an email the
policy suppressed (it never left), raises :class:`~ccm.errors.InboundError`
with ``reason="unmatched"`` and adds nothing. Reports need no ``sent``
event: an application may send the rendered ``.eml`` by its own transport.

Every handler is idempotent: the same report read twice, or a callback
delivered twice, adds nothing the second time (a replayed callback is
refused with :class:`Refused`); an SMS keyword delivered twice at the same
moment is taken once. A report already recorded for its message
adds nothing however often it is read again, even after an operator lifted
the suppression it caused (``ccm record unsuppress``); a message suppresses
its customer's email at most once for hard bounces. Event data never holds
an address, a phone number or diagnostic text.

Logging (``ccm.delivery.events``): INFO for each event added, WARNING for a
refused callback (with the reason, never a secret or a parameter value).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ccm.delivery.reports import Bounce, Complaint, parse_report
from ccm.delivery.twilio import UNSUBSCRIBED_CODE, StatusEvent, normalise_phone, status_event
from ccm.errors import DataError, InboundError, MessageNotFound
from ccm.record.entries import BLOCKED_PREFIX

__all__ = [
    "CALLBACK_MAX_AGE",
    "CustomerDirectory",
    "Outcome",
    "PhoneDirectory",
    "Refused",
    "message_for_provider_id",
    "record_keyword",
    "record_report",
    "record_report_bytes",
    "record_status",
    "unsuppress",
]

logger = logging.getLogger("ccm.delivery.events")
logger.addHandler(logging.NullHandler())

#: A status callback about a message sent longer ago than this is refused as
#: too old (providers call back within minutes; an old one is a replay).
CALLBACK_MAX_AGE = timedelta(days=7)


@dataclass(frozen=True)
class Outcome:
    """What a handler did: the message and customer, and the event kinds it added."""

    message_id: str | None
    customer_id: str | None
    added: tuple[str, ...] = ()
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Refused(Exception):
    """A callback that is not taken (``reason``: ``replay``, ``too-old``, ``unknown``...).

    Not an error of ccm's: the web app answers it with a 4xx and logs the reason.
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class CustomerDirectory(Protocol):
    """Who owns a phone number (the application's customer data; ccm keeps no numbers).

    A directory may also have ``customers_for_phone(phone) -> Sequence[str]``:
    every customer sharing the number (a family phone). :func:`record_keyword`
    uses it when present, so a STOP opts all of them out.
    """

    def customer_for_phone(self, phone: str) -> str | None: ...


def _owners(directory: CustomerDirectory, phone: str) -> list[str]:
    """Every customer of ``phone`` (``customers_for_phone`` when the directory has it)."""
    many = getattr(directory, "customers_for_phone", None)
    if callable(many):
        return list(dict.fromkeys(str(c) for c in many(phone)))
    one = directory.customer_for_phone(phone)
    return [] if one is None else [one]


def _kinds(record: Any, message_id: str) -> list[Any]:
    return list(record.events(message_id))


def _blocked(record: Any, customer_id: str, channel: str) -> bool:
    return record.consent_overrides(customer_id).get(BLOCKED_PREFIX + channel) is False


def _suppress(record: Any, message_id: str, customer_id: str, channel: str, reason: str,
              now: datetime, added: list[str]) -> None:
    if not _blocked(record, customer_id, channel):
        record.add_event(message_id, "suppressed", at=now,
                         data={"channel": channel, "reason": reason})
        added.append("suppressed")


def _reportable(entry: Any, source: str | None) -> None:
    """Refuse a report about a message that is not an email that was generated."""
    if entry.channel == "email" and entry.status == "generated":
        return
    why = (f"was {entry.status}, never sent" if entry.channel == "email"
           else f"is {entry.channel}, not email")
    where = f"{source}: " if source else ""
    raise InboundError(
        f"{where}report is about message {entry.message_id}, which {why}; a DSN or ARF "
        "report applies only to an email that was generated",
        reason="unmatched", source=source, message_id=entry.message_id,
    )


def record_report(record: Any, report: Bounce | Complaint, *, now: datetime,
                  source: str | None = None) -> Outcome:
    """Add the events a parsed DSN or ARF report means (see the module table).

    Raises :class:`~ccm.errors.MessageNotFound` for a message not in the
    record and :class:`~ccm.errors.InboundError` (``unmatched``) for one that
    is not a generated email. A report already recorded adds nothing.
    """
    entry = record.get(report.message_id)  # MessageNotFound for a message not in the record
    _reportable(entry, source)
    data = report.to_data()
    added: list[str] = []
    if isinstance(report, Complaint):
        if record.add_event_once(report.message_id, "complained", at=now, data=data):
            added.append("complained")
        return Outcome(entry.message_id, entry.customer_id, tuple(added),
                       "complaint" if added else "complaint already recorded", data)
    bounces = [e for e in _kinds(record, report.message_id) if e.kind == "bounced"]
    note = f"{report.kind} bounce {report.status}"
    # Once per message and report, checked and added in one transaction: a report read
    # before (or by another reader at the same moment) adds nothing again, not even the
    # suppression an operator may have lifted since.
    if record.add_event_once(report.message_id, "bounced", at=now, data=data,
                             same_data=True) is None:
        return Outcome(entry.message_id, entry.customer_id, (), note + " (already recorded)",
                       data)
    added.append("bounced")
    if report.kind == "hard" and not any((e.data or {}).get("bounce") == "hard"
                                         for e in bounces):
        _suppress(record, report.message_id, entry.customer_id, entry.channel, "hard_bounce",
                  now, added)
    return Outcome(entry.message_id, entry.customer_id, tuple(added), note, data)


def record_report_bytes(
    record: Any,
    raw: bytes,
    *,
    now: datetime,
    envelope_to: str | None = None,
    source: str | None = None,
) -> Outcome:
    """:func:`parse_report` then :func:`record_report`; a report that changes nothing
    (a delivered DSN, a non-abuse ARF) adds no event.

    Raises :class:`~ccm.errors.InboundError` and :class:`~ccm.errors.MessageNotFound`.
    """
    report = parse_report(raw, envelope_to=envelope_to, source=source)
    if report is None:
        return Outcome(None, None, (), "report changes nothing (no failure, no abuse)")
    try:
        return record_report(record, report, now=now, source=source)
    except MessageNotFound as exc:
        raise MessageNotFound(
            f"{source + ': ' if source else ''}report is about message {report.message_id}, "
            "which is not in this record", message_id=report.message_id,
        ) from exc


def message_for_provider_id(record: Any, provider_id: str) -> tuple[str, datetime] | None:
    """The message (and when it was sent) whose ``sent`` event has this ``provider_id``."""
    found = record.find_events("sent", "provider_id", provider_id)
    return (found[0].message_id, found[0].at) if found else None


def record_status(
    record: Any,
    params: Mapping[str, str],
    *,
    now: datetime,
    message_id: str | None = None,
    max_age: timedelta = CALLBACK_MAX_AGE,
) -> Outcome:
    """Add the event of a (signature-checked) status callback to its message.

    The message is ``message_id`` when the callback URL named it (it is part of
    the signed URL), else the one whose ``sent`` event recorded the provider's
    ``MessageSid``. Raises :class:`Refused` for a form that is not a callback
    (``malformed``), an unknown message (``unknown``), a message sent longer
    than ``max_age`` ago (``too-old``) and a status already recorded
    (``replay``).
    """
    status = status_event(params)
    if status is None:
        raise Refused("malformed", "not a status callback (MessageSid, MessageStatus)")
    sent_at: datetime | None = None
    found = message_for_provider_id(record, status.provider_id)
    if found is not None:
        if message_id is not None and found[0] != message_id:
            raise Refused("unknown", "the callback's message and provider id disagree")
        message_id, sent_at = found
    if message_id is None:
        raise Refused("unknown", "no message was sent with this provider id")
    try:
        entry = record.get(message_id)
    except MessageNotFound as exc:
        raise Refused("unknown", "the callback names a message not in the record") from exc
    since = sent_at or entry.created_at
    if now - since > max_age:
        raise Refused("too-old", f"the message was sent more than {max_age.days} days ago")
    if status.kind is None:
        return Outcome(entry.message_id, entry.customer_id, (),
                       f"status {status.status} changes nothing")
    return _apply_status(record, entry, status, now)


def _apply_status(record: Any, entry: Any, status: StatusEvent, now: datetime) -> Outcome:
    data = status.to_data()
    assert status.kind is not None
    if any(e.kind == status.kind and (e.data or {}).get("provider_id") == status.provider_id
           and (e.data or {}).get("provider_status") == status.status
           for e in _kinds(record, entry.message_id)):
        raise Refused("replay", f"status {status.status} of this message is already recorded")
    # Checked again and added in one transaction (add_event_once): of copies of one callback
    # arriving at the same moment, all past the read above, exactly one is recorded.
    if record.add_event_once(entry.message_id, status.kind, at=now, data=data,
                             same_data=True) is None:
        raise Refused("replay", f"status {status.status} of this message is already recorded")
    added: list[str] = [status.kind]
    if status.hard:
        _suppress(record, entry.message_id, entry.customer_id, "sms", "hard_bounce", now, added)
    elif status.error_code == UNSUBSCRIBED_CODE:
        # The provider refused: the number texted STOP to it (not to us). Same effect.
        record.add_event(entry.message_id, "opted_out", at=now,
                         data={"channel": "sms", "scope": "all", "source": "provider"})
        added.append("opted_out")
    logger.info("recorded %s for message %s", status.kind, entry.message_id)
    return Outcome(entry.message_id, entry.customer_id, tuple(added),
                   f"status {status.status}", data)


def _latest_message(record: Any, customer_id: str, channel: str) -> str | None:
    items = record.timeline(customer_id).messages
    on_channel = [i for i in items if i.entry.channel == channel]
    chosen = (on_channel or list(items))[-1:] if items else []
    return chosen[0].entry.message_id if chosen else None


def record_keyword(
    record: Any,
    directory: CustomerDirectory,
    phone: str,
    word: str,
    *,
    now: datetime,
    provider_id: str | None = None,
) -> Outcome:
    """Change SMS consent for every customer who owns ``phone`` (``word``: stop/start).

    A number shared by several customers (a family phone) changes each of
    them: STOP opts every one out, START every one back in. Each event goes
    on that customer's latest SMS message (their latest message of any
    channel when there is none). A number nobody owns, or customers without
    any message, change nothing (``note`` says so). The returned
    :class:`Outcome` names the first customer changed (or found);
    ``data["customers"]`` counts them.

    ``provider_id`` is the inbound message's id (Twilio's ``MessageSid``):
    it is kept in the events' data, and the inbound message itself is kept
    once as a ``keyword`` event on the first customer's message (whether or
    not it changed anything). A keyword whose ``provider_id`` is already in
    the record raises :class:`Refused` (``replay``) and changes nothing; so
    does the loser of two deliveries of one keyword at the same moment
    (each event is added with the record's ``add_event_once``, which checks
    and adds in one transaction under the customer's lock).
    """
    if word not in ("stop", "start"):
        raise ValueError(f"keyword must be 'stop' or 'start', not {word!r}")
    kind = "opted_out" if word == "stop" else "opted_in"
    if provider_id and any(record.find_events(k, "provider_id", provider_id)
                           for k in ("opted_out", "opted_in", "keyword")):
        raise Refused("replay", f"inbound {word} with this MessageSid is already recorded")
    customers = _owners(directory, normalise_phone(phone))
    if not customers:
        return Outcome(None, None, (), "the number belongs to no known customer")
    data: dict[str, Any] = ({"channel": "sms", "scope": "all", "source": "keyword"}
                            if word == "stop" else {"channel": "sms", "source": "keyword"})
    if provider_id:
        data["provider_id"] = provider_id
    first: tuple[str | None, str | None] = (None, None)
    receipt: str | None = None  # where the keyword event goes: the same for every copy
    changed = 0
    added: list[str] = []
    for customer_id in customers:
        message_id = _latest_message(record, customer_id, "sms")
        if message_id is None:
            continue
        if first[0] is None:
            first = (message_id, customer_id)
            receipt = message_id
        overrides = record.consent_overrides(customer_id)
        blocked = BLOCKED_PREFIX + "sms"
        if word == "stop":
            wanted = overrides.get("sms") is not False or overrides.get(blocked) is not False
        else:
            wanted = "sms" in overrides or blocked in overrides
        if not wanted:
            continue
        if provider_id:
            # Once per message and sid, checked and added atomically: a copy of this
            # keyword racing us has added it already, or adds nothing after us.
            if record.add_event_once(message_id, kind, at=now, data=data,
                                     same_data=True) is None:
                continue
        else:
            record.add_event(message_id, kind, at=now, data=data)
        if changed == 0:
            first = (message_id, customer_id)
            added.append(kind)
        changed += 1
    if receipt is None:
        return Outcome(None, customers[0], (), "the customer has no message in the record")
    # The inbound message itself, once per sid: of two deliveries of one keyword at the
    # same moment (both past the check above) exactly one adds it, the other is a replay.
    # Kept whether or not it changed anything, so a START replayed after a later STOP
    # is refused rather than re-subscribing.
    if provider_id and record.add_event_once(
            receipt, "keyword", at=now, same_data=True,
            data={"channel": "sms", "keyword": word, "source": "keyword",
                  "provider_id": provider_id}) is None:
        raise Refused("replay", f"inbound {word} with this MessageSid is already recorded")
    note = f"{word}" + (f" ({changed} customers)" if changed > 1 else "" if changed
                        else " (no change)")
    return Outcome(first[0], first[1], tuple(added), note, {**data, "customers": changed})


def unsuppress(record: Any, customer_id: str, channel: str, *, now: datetime,
               by: str = "operator") -> Outcome:
    """Lift a suppression (a hard bounce) of ``channel`` for ``customer_id`` (operator's call).

    Raises :class:`~ccm.errors.MessageNotFound` when the customer has no
    suppression on that channel to lift.
    """
    items = record.timeline(customer_id).messages
    if not _blocked(record, customer_id, channel) or not items:
        raise MessageNotFound(
            f"customer {customer_id} has no suppression on {channel} to lift",
            customer_id=customer_id, channel=channel,
        )
    suppressed = [ev for i in items for ev in i.events if ev.kind == "suppressed"
                  and str((ev.data or {}).get("channel") or i.entry.channel) == channel]
    message_id = suppressed[-1].message_id if suppressed else items[-1].entry.message_id
    data = {"channel": channel, "by": by}
    record.add_event(message_id, "unsuppressed", at=now, data=data)
    return Outcome(message_id, customer_id, ("unsuppressed",), f"{channel} unsuppressed", data)


class PhoneDirectory:
    """A :class:`CustomerDirectory` over the customers of request files (JSON Lines of
    ``{"customer": {"id", "phone", ...}, ...}``, the files ``ccm batch`` reads)."""

    def __init__(self, phones: Mapping[str, str | Sequence[str]]) -> None:
        self._phones: dict[str, list[str]] = {}
        for p, owners in phones.items():
            number = normalise_phone(p)
            if number:
                known = self._phones.setdefault(number, [])
                for c in [owners] if isinstance(owners, str) else owners:
                    if c not in known:
                        known.append(c)

    def __len__(self) -> int:
        return len(self._phones)

    def customers_for_phone(self, phone: str) -> tuple[str, ...]:
        """Every customer with this number, in file order (a family may share one)."""
        return tuple(self._phones.get(normalise_phone(phone), ()))

    def customer_for_phone(self, phone: str) -> str | None:
        """The first customer with this number (see :meth:`customers_for_phone`)."""
        owners = self._phones.get(normalise_phone(phone))
        return owners[0] if owners else None

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> PhoneDirectory:
        """Read a request file; lines without a phone are skipped, a bad line is an error
        naming the file and line (never its content)."""
        phones: dict[str, list[str]] = {}
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    customer = json.loads(line)["customer"]
                    phone, cid = customer.get("phone"), customer["id"]
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise DataError(f"{path}:{number}: not a request with customer.id",
                                    path="$.customer.id", rule="required") from exc
                if isinstance(phone, str) and phone.strip():
                    phones.setdefault(phone, []).append(str(cid))
        return cls(phones)
