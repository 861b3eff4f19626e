"""The outbox: messages waiting to be sent, and the delivery state of each one.

A generated message is *queued* in the same transaction that records it
(:meth:`ccm.record.Record.append` with ``queue=Queue(...)``), so a message
is never recorded without being queued, nor queued without being recorded.
Senders (:class:`ccm.delivery.Sender`) then move it along::

    queued ──▶ sending ──▶ sent ──▶ delivered ──▶ (bounced: a late DSN)
      ▲           │          ├────▶ bounced
      └── retry ──┤          └────▶ failed     (the provider gave up: undelivered)
                  ├──▶ failed                  (permanent, or out of attempts)
                  └──▶ review ──▶ sent / failed / queued / delivered / bounced

    failed ──▶ queued    (a person sends it again: Outbox.resolve; attempts restart)

Every transition is one transaction under the customer's lock: a
compare-and-set on the state and an event of the same name on the
timeline (``retry`` for sending → queued), chained like every event. A
message found in ``sending`` whose sender is gone (killed) is never put
back blindly: the sender reconciles it with the transport when it can
(:meth:`Outbox.settle`), else moves it to ``review`` for a person to decide
(:meth:`Outbox.resolve`).

Claiming (:meth:`Outbox.claim`) takes the oldest due message with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several senders share the
queue without taking the same message; SQLite serialises writers and
allows one sender (the sender enforces that).

No personal data in clear: the recipient (address or number) is stored
encrypted under the customer's data key (so queueing needs a master key),
the content is the archived copy, and ``error`` holds scrubbed provider
replies. Erasing the customer makes a queued message unsendable: the
erasure marks it failed in its own transaction (and a sender fails one an
earlier ccm left queued).

For the inbound side (bounces, provider callbacks): find a message by the
provider's id with :meth:`Outbox.find_provider_id`, and move it with
:meth:`Outbox.transition` (``sent`` → ``delivered`` / ``bounced`` /
``failed``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ccm.errors import ContentErased, DataError, KeyConfigError, MessageNotFound, RecordError
from ccm.message import Outgoing, new_message_id
from ccm.record.archive import open_blob, seal_blob
from ccm.record.chain import canonical, event_body, link, utc
from ccm.record.entries import get_entry, personal_data_in
from ccm.record.schema import events, messages, outbox

if TYPE_CHECKING:
    from ccm.record.datakeys import DataKeys
    from ccm.record.entries import Entry
    from ccm.record.store import Record

__all__ = ["STATES", "TRANSITIONS", "Claimed", "Outbox", "OutboxItem", "Queue"]

logger = logging.getLogger("ccm.record.outbox")

#: The delivery states, in the order a message moves through them.
STATES = ("queued", "sending", "sent", "delivered", "bounced", "failed", "review")
#: Terminal states: nothing automatic moves a message out of them (a person may send a
#: failed message again, :meth:`Outbox.resolve`).
FINAL = ("bounced", "failed")
#: Which state may follow which.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("sending", "failed"),
    "sending": ("sent", "queued", "failed", "review"),
    "sent": ("delivered", "bounced", "failed"),
    "delivered": ("bounced",),
    "review": ("sent", "queued", "failed", "delivered", "bounced"),
    "bounced": (),
    "failed": ("queued",),  # only a person's decision (Outbox.resolve)
}
_PART = "recipient"
#: The ``error`` of a message failed because its customer was erased.
ERASED = "the customer was erased"


@dataclass(frozen=True)
class Queue:
    """Queue the appended message for delivery to ``recipient`` at ``due_at`` (aware).

    ``consent``: whether the pack's contact policy required the customer's
    consent for this message when it was made (its type is in
    ``policy.consent_required``). It is kept in the ``queued`` event, and the
    sender refuses the message if that consent was withdrawn since. ``None``
    (the default, and every message queued before ccm kept it): only a
    marketing message needs consent.
    """

    recipient: str | None
    due_at: datetime
    consent: bool | None = None

    def __post_init__(self) -> None:
        if self.due_at.tzinfo is None:
            raise ValueError("due_at must be timezone-aware")


@dataclass(frozen=True)
class OutboxItem:
    """One message's delivery state (no recipient, no content)."""

    message_id: str
    customer_id: str
    channel: str
    state: str
    due_at: datetime
    attempts: int
    updated_at: datetime
    sender: str | None = None
    transport: str | None = None
    provider_id: str | None = None
    error: str | None = None
    template: str | None = None
    message_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id, "customer_id": self.customer_id,
            "channel": self.channel, "state": self.state,
            "due_at": utc(self.due_at).isoformat(), "attempts": self.attempts,
            "updated_at": utc(self.updated_at).isoformat(), "sender": self.sender,
            "transport": self.transport, "provider_id": self.provider_id, "error": self.error,
            "template": self.template, "message_type": self.message_type,
        }


@dataclass(frozen=True)
class Claimed:
    """A message a sender now holds in ``sending``: its state and what to hand the transport."""

    item: OutboxItem
    outgoing: Outgoing


_COLUMNS = (outbox.c.message_id, outbox.c.customer_id, outbox.c.channel, outbox.c.state,
            outbox.c.due_at, outbox.c.attempts, outbox.c.updated_at, outbox.c.sender,
            outbox.c.transport, outbox.c.provider_id, outbox.c.error,
            messages.c.template, messages.c.message_type)


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        message_id=row.message_id, customer_id=row.customer_id, channel=row.channel,
        state=row.state, due_at=utc(row.due_at), attempts=int(row.attempts),
        updated_at=utc(row.updated_at), sender=row.sender, transport=row.transport,
        provider_id=row.provider_id, error=row.error, template=row.template,
        message_type=row.message_type,
    )


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).select_from(
        outbox.join(messages, messages.c.message_id == outbox.c.message_id))


def _aware(moment: datetime, name: str = "now") -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return utc(moment)


def enqueue(record: DataKeys, conn: sa.Connection, entry: Entry, queue: Queue, *,
            at: datetime | None = None) -> None:
    """Insert the outbox row and its ``queued`` event (inside the append's transaction).

    The event is dated ``at``, by default the message's ``created_at`` (the
    renderer's clock).
    """
    when = utc(at or entry.created_at)
    key_id, sealed = None, None
    if queue.recipient is not None:
        if record.master_key is None:
            raise KeyConfigError(
                "queueing a message for delivery needs a master key: the outbox keeps the "
                "recipient encrypted; set CCM_MASTER_KEY or CCM_MASTER_KEY_FILE",
                message_id=entry.message_id)
        key_id, key, _commitment = record._data_key(conn, entry.customer_id)
        sealed = seal_blob(key, queue.recipient.encode("utf-8"), message_id=entry.message_id,
                           part=_PART, customer_id=entry.customer_id)
    if entry.archive_ref is None:
        raise KeyConfigError(
            "queueing a message for delivery needs a master key: the sender reads the content "
            "from the encrypted archive; set CCM_MASTER_KEY or CCM_MASTER_KEY_FILE",
            message_id=entry.message_id)
    conn.execute(outbox.insert(), {
        "message_id": entry.message_id, "customer_id": entry.customer_id,
        "channel": entry.channel, "state": "queued", "due_at": utc(queue.due_at),
        "attempts": 0, "updated_at": when, "key_id": key_id, "recipient": sealed,
    })
    detail: dict[str, Any] = {"due_at": utc(queue.due_at).isoformat()}
    if queue.consent is not None:
        detail["consent"] = queue.consent
    _event(conn, entry.message_id, entry.customer_id, "queued", when, detail)


def _event(conn: sa.Connection, message_id: str, customer_id: str, kind: str, at: datetime,
           data: Mapping[str, Any] | None) -> None:
    event_id = new_message_id(at)  # time-ordered as message ids are: same index locality
    row = {"event_id": event_id, "message_id": message_id, "customer_id": customer_id,
           "kind": kind, "at": at,
           "data": canonical(dict(data)).decode("utf-8") if data is not None else None}
    conn.execute(events.insert(), row)
    link(conn, customer_id, "event", event_id, event_body(row))


def fail_queued(conn: sa.Connection, message_id: str, customer_id: str, at: datetime,
                reason: str) -> None:
    """Fail a ``queued`` message that can no longer be sent (``reason`` in ``error`` and in
    its ``failed`` event), inside the caller's transaction: a sender's claim, an erasure."""
    conn.execute(outbox.update().where(outbox.c.message_id == message_id,
                                       outbox.c.state == "queued").values(
        state="failed", updated_at=at, error=reason, sender=None))
    _event(conn, message_id, customer_id, "failed", at, {"from": "queued", "error": reason})


class _Withdrawn(RecordError):
    """The customer withdrew consent for the channel after the message was queued."""


class Outbox:
    """The outbox of one :class:`~ccm.record.Record` (thread-safe, like the record)."""

    def __init__(self, record: Record) -> None:
        self.record = record

    # -- reading ----------------------------------------------------------------

    def get(self, message_id: str) -> OutboxItem | None:
        """The delivery state of ``message_id``, or ``None`` when it was never queued."""
        with self.record._tx(write=False) as conn:
            row = conn.execute(_select().where(outbox.c.message_id == message_id)).first()
        return _item(row) if row is not None else None

    def items(self, *, states: Iterable[str] | None = None, channels: Iterable[str] | None = None,
              due_by: datetime | None = None, limit: int | None = None) -> list[OutboxItem]:
        """Messages in ``states`` (all by default), oldest due first; ``due_by``: only due ones."""
        query = _select().order_by(outbox.c.due_at, outbox.c.message_id)
        if states is not None:
            wanted = list(states)
            for state in wanted:
                if state not in STATES:
                    raise ValueError(f"unknown outbox state {state!r}; one of {', '.join(STATES)}")
            query = query.where(outbox.c.state.in_(wanted))
        if channels is not None:
            query = query.where(outbox.c.channel.in_(list(channels)))
        if due_by is not None:
            query = query.where(outbox.c.due_at <= _aware(due_by, "due_by"))
        if limit is not None:
            query = query.limit(limit)
        with self.record._tx(write=False) as conn:
            return [_item(r) for r in conn.execute(query)]

    def due(self, *, now: datetime, channels: Iterable[str] | None = None,
            limit: int | None = None) -> list[OutboxItem]:
        """Queued messages whose due time has come (what ``ccm send --dry-run`` shows)."""
        return self.items(states=("queued",), channels=channels, due_by=now, limit=limit)

    def counts(self) -> dict[str, int]:
        """How many messages are in each state (every state present, 0 when empty)."""
        out = dict.fromkeys(STATES, 0)
        with self.record._tx(write=False) as conn:
            for state, n in conn.execute(
                sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)
            ):
                out[state] = int(n)
        return out

    def find_provider_id(self, provider_id: str, *, transport: str | None = None
                         ) -> OutboxItem | None:
        """The message a provider knows as ``provider_id`` (a Twilio sid), for callbacks."""
        query = _select().where(outbox.c.provider_id == provider_id)
        if transport is not None:
            query = query.where(outbox.c.transport == transport)
        with self.record._tx(write=False) as conn:
            row = conn.execute(query).first()
        return _item(row) if row is not None else None

    # -- moving -------------------------------------------------------------------

    def transition(self, message_id: str, to: str, *, at: datetime,
                   expect: Sequence[str] | None = None, data: Mapping[str, Any] | None = None,
                   customer_id: str | None = None, **changes: Any) -> OutboxItem:
        """Move a message to state ``to`` with an event; refuse a move :data:`TRANSITIONS` forbids.

        ``expect`` narrows the states it may come from (a compare-and-set);
        ``changes`` sets columns (``provider_id``, ``transport``, ``error``,
        ``due_at``, ``sender``). ``data`` goes into the event (plain JSON, no
        personal data). ``customer_id``, when the caller knows it, saves a
        read. A message that is not in an allowed state raises
        :class:`~ccm.errors.RecordError` naming its state; one never queued
        raises :class:`~ccm.errors.MessageNotFound`.
        """
        if to not in STATES:
            raise ValueError(f"unknown outbox state {to!r}; one of {', '.join(STATES)}")
        when = _aware(at, "at")
        allowed = [s for s, nxt in TRANSITIONS.items() if to in nxt]
        if expect is not None:
            allowed = [s for s in allowed if s in expect]
        customer = customer_id or self._customer(message_id)
        result: list[OutboxItem] = []

        def work(conn: sa.Connection) -> None:
            row = conn.execute(sa.select(outbox.c.state).where(
                outbox.c.message_id == message_id, outbox.c.customer_id == customer)).first()
            if row is None or row.state not in allowed:
                state = row.state if row is not None else "(not queued)"
                raise RecordError(
                    f"message {message_id} is {state}; it cannot become {to} "
                    f"(only from {', '.join(allowed) or 'nowhere'})",
                    message_id=message_id, state=state, to=to)
            values = dict(changes)
            values.update(state=to, updated_at=when)
            if "due_at" in values:
                values["due_at"] = _aware(values["due_at"], "due_at")
            if to != "sending":
                values.setdefault("sender", None)
            conn.execute(outbox.update().where(outbox.c.message_id == message_id,
                                               outbox.c.state == row.state).values(**values))
            kind = "retry" if (row.state, to) == ("sending", "queued") else to
            detail = {"from": row.state, **(data or {})}
            _event(conn, message_id, customer, kind, when, detail)
            found = conn.execute(_select().where(outbox.c.message_id == message_id)).first()
            result.append(_item(found))

        self.record._retrying([customer], work)
        logger.debug("message %s -> %s", message_id, to)
        return result[0]

    def _customer(self, message_id: str) -> str:
        with self.record._tx(write=False) as conn:
            row = conn.execute(sa.select(outbox.c.customer_id)
                               .where(outbox.c.message_id == message_id)).first()
        if row is None:
            raise MessageNotFound(f"message {message_id!r} was never queued",
                                  message_id=message_id)
        return str(row.customer_id)

    def claim(self, *, now: datetime, sender: str, channels: Iterable[str],
              ) -> Claimed | OutboxItem | None:
        """Take the oldest due message on ``channels`` into ``sending`` for ``sender``.

        Returns a :class:`Claimed` (send it now), an :class:`OutboxItem`
        that was failed instead because its content or recipient is gone
        (the customer was erased), or ``None`` when nothing is due. The
        message, content and recipient are read in the same transaction
        that commits ``sending``: once this returns, the only step left is
        the transport.
        """
        moment = _aware(now)
        wanted = list(channels)
        if not wanted:
            return None
        record = self.record
        out: list[Claimed | OutboxItem | None] = []

        def work(conn: sa.Connection) -> None:
            query = (sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.attempts)
                     .where(outbox.c.state == "queued", outbox.c.due_at <= moment,
                            outbox.c.channel.in_(wanted))
                     .order_by(outbox.c.due_at, outbox.c.message_id).limit(1))
            if record.backend == "postgresql":
                query = query.with_for_update(skip_locked=True, of=outbox)
            row = conn.execute(query).first()
            if row is None:
                out.append(None)
                return
            message_id, customer = row.message_id, row.customer_id
            if record.backend == "postgresql":
                from ccm.record.connect import lock_id

                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": lock_id(customer)})
            try:
                self._still_wanted(conn, message_id, customer)
                outgoing = self._outgoing(conn, message_id)
            except (ContentErased, RecordError) as exc:
                # A KeyConfigError (no master key, or the wrong one) is the setup's fault, not
                # the message's: it propagates, the transaction rolls back, the message stays
                # queued untouched.
                reason = (ERASED if isinstance(exc, ContentErased)
                          else str(exc) if isinstance(exc, _Withdrawn)
                          else type(exc).__name__)
                fail_queued(conn, message_id, customer, moment, reason)
                out.append(_item(conn.execute(
                    _select().where(outbox.c.message_id == message_id)).first()))
                return
            attempt = int(row.attempts) + 1
            conn.execute(outbox.update().where(outbox.c.message_id == message_id,
                                               outbox.c.state == "queued").values(
                state="sending", sender=sender, attempts=attempt, updated_at=moment))
            _event(conn, message_id, customer, "sending", moment,
                   {"from": "queued", "attempt": attempt, "sender": sender})
            item = _item(conn.execute(_select().where(outbox.c.message_id == message_id)).first())
            out.append(Claimed(item, Outgoing(
                message_id=outgoing.message_id, customer_id=outgoing.customer_id,
                channel=outgoing.channel, recipient=outgoing.recipient,
                content=outgoing.content, idempotency_key=outgoing.idempotency_key,
                template=outgoing.template, message_type=outgoing.message_type,
                attempt=attempt)))

        with record._tx(write=True) as conn:
            work(conn)
        return out[0]

    def _still_wanted(self, conn: sa.Connection, message_id: str, customer: str) -> None:
        """Refuse a message whose channel the customer left after it was queued.

        A STOP or an unsubscribe recorded since (``opted_out`` / ``complained``)
        stops a queued message that needed consent on that channel: the rule
        the contact policy applied when it was made, kept in its ``queued``
        event (:attr:`Queue.consent`); for a message queued without it, a
        marketing message. A block (``blocked:<channel>``: a hard bounce, STOP
        for everything) stops every message type. Other messages still go.
        """
        row = conn.execute(sa.select(messages.c.channel, messages.c.message_type)
                           .where(messages.c.message_id == message_id)).one()
        overrides = self.record._overrides(conn, customer)
        if overrides.get(f"blocked:{row.channel}") is False:
            raise _Withdrawn(f"{row.channel} is blocked for this customer since it was queued")
        if overrides.get(row.channel) is False and self._needs_consent(
                conn, message_id, row.message_type):
            raise _Withdrawn(f"consent for {row.channel} was withdrawn after it was queued")

    @staticmethod
    def _needs_consent(conn: sa.Connection, message_id: str, message_type: str) -> bool:
        """Whether the policy required consent for the message when it was queued."""
        for (text,) in conn.execute(sa.select(events.c.data).where(
                events.c.message_id == message_id, events.c.kind == "queued")):
            needed = json.loads(text).get("consent") if text else None
            if isinstance(needed, bool):
                return needed
        return message_type == "marketing"

    def outgoing(self, message_id: str) -> Outgoing:
        """What a transport would be handed for ``message_id`` (reconciling after a crash)."""
        with self.record._tx(write=False) as conn:
            return self._outgoing(conn, message_id)

    def _outgoing(self, conn: sa.Connection, message_id: str) -> Outgoing:
        record = self.record
        entry = get_entry(conn, message_id)
        content = record._part(conn, entry, "content")
        assert content is not None  # _part raises rather than return None for content
        row = conn.execute(sa.select(outbox.c.key_id, outbox.c.recipient, outbox.c.attempts)
                           .where(outbox.c.message_id == message_id)).one()
        recipient = None
        if row.recipient is not None:
            recipient = self._open_recipient(conn, entry, row.key_id, bytes(row.recipient))
        return Outgoing(message_id=message_id, customer_id=entry.customer_id,
                        channel=entry.channel, recipient=recipient, content=content,
                        idempotency_key=entry.idempotency_key, template=entry.template,
                        message_type=entry.message_type, attempt=int(row.attempts))

    def _open_recipient(self, conn: sa.Connection, entry: Entry, key_id: str,
                        blob: bytes) -> str:
        from ccm.record.schema import data_keys

        record = self.record
        if record.master_key is None:
            raise KeyConfigError("sending needs the record's master key (the recipient is "
                                 "encrypted): set CCM_MASTER_KEY or CCM_MASTER_KEY_FILE",
                                 message_id=entry.message_id)
        key_row = conn.execute(sa.select(data_keys.c.key_id, data_keys.c.wrapped)
                               .where(data_keys.c.customer_id == entry.customer_id)).first()
        if key_row is None or key_row.key_id != key_id:
            raise ContentErased(f"the data key of customer {entry.customer_id} was destroyed; "
                                f"message {entry.message_id} cannot be sent",
                                message_id=entry.message_id, customer_id=entry.customer_id)
        key = record._keys.get(key_id) or record._cache(key_id, record.master_key.unwrap(
            bytes(key_row.wrapped), customer_id=entry.customer_id))
        return open_blob(key, blob, message_id=entry.message_id, part=_PART,
                         customer_id=entry.customer_id).decode("utf-8")

    def stuck(self, *, senders: Iterable[str] | None = None) -> list[OutboxItem]:
        """Messages in ``sending`` (held by ``senders`` when given): a crash left them there."""
        query = _select().where(outbox.c.state == "sending").order_by(outbox.c.updated_at)
        if senders is not None:
            query = query.where(outbox.c.sender.in_(list(senders)))
        with self.record._tx(write=False) as conn:
            return [_item(r) for r in conn.execute(query)]

    def senders_holding(self) -> list[str]:
        """The distinct senders that hold messages in ``sending``."""
        with self.record._tx(write=False) as conn:
            return sorted(str(s) for (s,) in conn.execute(
                sa.select(outbox.c.sender).where(outbox.c.state == "sending",
                                                 outbox.c.sender.is_not(None)).distinct()))

    def resolve(self, message_id: str, to: str, *, at: datetime, note: str | None = None
                ) -> OutboxItem:
        """A person's decision on a message in ``review``: ``sent``, ``failed`` or ``queued``;
        or on a ``failed`` one: ``queued``.

        ``queued`` sends it again (when the operator checked it never
        arrived, or fixed what made it fail); from ``failed`` its attempts
        count starts again at 0, and a message that can no longer be sent
        (the customer was erased, the content is gone, consent was withdrawn
        or the channel blocked since) is refused with the reason
        (:class:`~ccm.errors.RecordError`; that needs the master key, to
        read the recipient). ``note`` is kept in the event, in clear, where
        an erasure cannot remove it: one that holds an email address or a
        phone number is refused (:class:`~ccm.errors.DataError`, the value
        not repeated) before anything changes.
        """
        if to not in ("sent", "failed", "queued"):
            raise ValueError("a reviewed message becomes sent, failed or queued")
        data: dict[str, Any] = {"resolved": True}
        if note:
            data["note"] = note[:200]
            found = personal_data_in({"note": note})
            if found:
                raise DataError(
                    f"the note must not hold personal data ({'; '.join(found)}): it is kept "
                    "in clear with the decision, and erasing the customer cannot remove it; "
                    "nothing was changed", path="$.note", message_id=message_id)
        changes: dict[str, Any] = {"due_at": at} if to == "queued" else {}
        expect: tuple[str, ...] = ("review",)
        current = self.get(message_id)
        if to == "queued" and current is not None and current.state == "failed":
            self._sendable(message_id, current.customer_id)
            expect = ("failed",)
            changes["attempts"] = 0
            changes["error"] = None
        return self.transition(message_id, to, at=at, expect=expect, data=data, **changes)

    def _sendable(self, message_id: str, customer: str) -> None:
        """Raise a :class:`~ccm.errors.RecordError` saying why ``message_id`` cannot be sent."""
        try:
            with self.record._tx(write=False) as conn:
                self._still_wanted(conn, message_id, customer)
                self._outgoing(conn, message_id)
        except ContentErased as exc:
            raise RecordError(f"message {message_id} cannot be sent again: the customer was "
                              "erased", message_id=message_id, state="failed") from exc
        except RecordError as exc:
            raise RecordError(f"message {message_id} cannot be sent again: {exc}",
                              message_id=message_id, state="failed") from exc
