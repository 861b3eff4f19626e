"""The sender: take due messages from the outbox and hand each to its channel's transport.

::

    from ccm.delivery import Sender, load_config
    from ccm.record import MasterKey, Record

    record = Record("sqlite:///ccm-record.db", master_key=MasterKey.from_env())
    with Sender(record, load_config("delivery.yaml")) as sender:
        report = sender.send_due()          # everything due now, then return
        # sender.run(stop_event)            # or keep going until stop_event is set

At most once, nothing lost:

* a message is committed as ``sending`` (with this sender's id) *before*
  the transport sees it, and as ``sent`` after; a crash in between leaves it
  in ``sending``;
* a starting sender (and a running one, every ``reconcile_every`` seconds)
  looks for messages left in ``sending`` by senders that are gone: a
  transport that can tell (:class:`~ccm.delivery.transport.Checkable`, the
  folder) settles them as ``sent`` or puts them back in the queue; for the
  others they go to ``review`` -- never resent blindly;
* SQLite: one sender per record, held by an exclusive lock on
  ``<record file>.sender.lock`` (released by the kernel when the process
  dies, even by SIGKILL); a second one raises :class:`~ccm.errors.SenderBusy`.
* PostgreSQL: any number of senders; each holds a session advisory lock
  on its own id while it lives, so "gone" means "its lock is free", and
  claims use ``FOR UPDATE SKIP LOCKED``.

Retries: a temporary failure puts the message back in the queue with a due
time ``Retry.delay(attempt)`` later (exponential, with jitter), until the
route's ``max_attempts``; then it fails. A permanent failure fails it at
once. Rates are per route and per sender process.

Stops: what is not the message's fault never fails it nor uses up one of
its attempts. A :class:`~ccm.errors.ConfigError` met while preparing or
sending a message (no master key, a refused login) and a
:class:`~ccm.errors.TransportUnavailable` (the relay or API cannot be
reached, the folder cannot be written) put the message back untouched
(``queued``, same due time, attempt not counted) and stop the run with that
error; :meth:`Sender.run` waits and tries again on the latter instead. So does
anything else raised before the transport is handed the message -- an interrupt
(Ctrl-C) while waiting for the rate limit, a route that cannot be built --
which is raised again; once the transport holds the message, an unexpected
error or an interrupt sends it to ``review`` instead.

Logging (logger ``ccm.delivery.sender``): INFO per outcome (message id,
state, transport), WARNING for review and reconciliation, never a recipient,
content or secret.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ccm._util import checked_clock
from ccm.delivery.config import DeliveryConfig, Route
from ccm.delivery.transport import Checkable, RateLimiter, Retry, Transport, scrub
from ccm.errors import (
    ConfigError,
    DeliveryUncertain,
    PermanentDeliveryError,
    RecordError,
    SenderBusy,
    TemporaryDeliveryError,
    TransportUnavailable,
)
from ccm.message import CHANNELS, Outgoing, Receipt
from ccm.record import Record
from ccm.record.outbox import Claimed, Outbox, OutboxItem

__all__ = ["SendReport", "Sender", "Sent"]

logger = logging.getLogger("ccm.delivery.sender")
logger.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Sent:
    """What happened to one message in this run: its new state and why."""

    message_id: str
    channel: str
    state: str
    detail: str | None = None
    provider_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "channel": self.channel, "state": self.state,
                "detail": self.detail, "provider_id": self.provider_id}


@dataclass
class SendReport:
    """Counts by outcome (``sent``, ``retry``, ``failed``, ``review``, ``reconciled``), and
    each message's :class:`Sent`."""

    results: list[Sent] = field(default_factory=list)

    def add(self, result: Sent) -> None:
        self.results.append(result)

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("sent", "retry", "failed", "review", "reconciled"), 0)
        for r in self.results:
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "messages": [r.to_dict() for r in self.results]}


@dataclass
class _Lane:
    """A route at run time: its transport, retry policy and rate limiter."""

    transport: Transport
    retry: Retry
    limiter: RateLimiter


def _check_arguments(record: Any, routes: Any) -> Mapping[str, Route | Transport]:
    """The routes of a :class:`Sender` whose arguments are of the types it takes; else a
    :class:`ConfigError` naming the argument (not an ``AttributeError`` in the first send,
    or an unknown channel's messages silently left queued)."""
    if not isinstance(record, Record):
        raise ConfigError("Sender(record=...): give a ccm.record.Record (with its master key: "
                          f"the outbox content is encrypted); got {type(record).__name__}")
    if isinstance(routes, DeliveryConfig):
        return routes.routes
    if not isinstance(routes, Mapping):
        raise ConfigError("Sender(routes=...): give a DeliveryConfig (load_config) or a "
                          "mapping of channel to Route or transport, e.g. "
                          f"{{'email': FolderTransport(folder)}}; got {type(routes).__name__}")
    for channel, route in routes.items():
        if channel not in CHANNELS:
            raise ConfigError(f"Sender(routes=...): no channel {channel!r}; "
                              f"the channels are {', '.join(sorted(CHANNELS))}")
        if not isinstance(route, Route) and not callable(getattr(route, "send", None)):
            raise ConfigError(f"Sender(routes=...): the route for {channel!r} must be a Route "
                              "or a transport (an object with send(), e.g. "
                              f"FolderTransport(folder)); got {type(route).__name__}")
    return routes


def _lock_key(sender_id: str) -> int:
    digest = hashlib.sha256(b"ccm/delivery/sender\x00" + sender_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Sender:
    """Send due messages of ``record`` through ``routes`` (a :class:`DeliveryConfig`, or a
    mapping of channel to :class:`Route` or to a ready :class:`Transport`).

    ``clock`` gives "now" (aware; due times, events); ``rng`` draws retry
    jitter; ``sleep`` waits between polls and for rate limits. Use as a
    context manager or call :meth:`close`: that releases the sender lock
    and closes the transports.
    """

    def __init__(
        self,
        record: Record,
        routes: DeliveryConfig | Mapping[str, Route | Transport],
        *,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        sender_id: str | None = None,
        reconcile_every: float = 30.0,
    ) -> None:
        given = _check_arguments(record, routes)
        self.record = record
        self.outbox = Outbox(record)
        self._clock: Callable[[], datetime] = (
            checked_clock(clock, "Sender") if clock is not None else lambda: datetime.now(UTC))
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.reconcile_every = reconcile_every
        self.sender_id = sender_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._routes = dict(given)
        self._lanes: dict[str, _Lane] = {}
        self._lock_file: Any = None
        self._lock_conn: sa.Connection | None = None
        self._acquire()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def channels(self) -> list[str]:
        """The channels this sender has a route for (others stay queued)."""
        return sorted(self._routes)

    # -- the one-sender lock -------------------------------------------------------

    def _acquire(self) -> None:
        record = self.record
        if record.backend == "postgresql":
            conn = record.engine.connect()
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key(self.sender_id)})
            conn.commit()
            self._lock_conn = conn
            return
        database = record.engine.url.database
        if database in (None, "", ":memory:"):
            return  # one process by construction
        import fcntl

        path = Path(str(database)).expanduser()
        lock_path = path.with_name(path.name + ".sender.lock")
        handle = lock_path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SenderBusy(
                f"another sender is running on the record at {record.where} (SQLite allows "
                f"one; it holds {lock_path.name}); stop it, or use PostgreSQL for several",
                url=record.where) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{self.sender_id}\n")
        handle.flush()
        self._lock_file = handle

    def close(self) -> None:
        """Close the transports and release the sender lock."""
        for lane in self._lanes.values():
            try:
                lane.transport.close()
            except Exception:  # closing must not hide the reason we are closing
                logger.debug("closing a transport failed", exc_info=True)
        self._lanes.clear()
        if self._lock_conn is not None:
            try:
                self._lock_conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                self._lock_conn.commit()
            finally:
                self._lock_conn.close()
                self._lock_conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- routes --------------------------------------------------------------------

    def _lane(self, channel: str) -> _Lane:
        lane = self._lanes.get(channel)
        if lane is None:
            route = self._routes[channel]
            if isinstance(route, Route):
                lane = _Lane(route.open(), route.retry, RateLimiter(route.rate, sleep=self._sleep))
            else:
                lane = _Lane(route, Retry(), RateLimiter(None))
            self._lanes[channel] = lane
        return lane

    # -- crash recovery ------------------------------------------------------------

    def _gone(self, senders: list[str]) -> list[str]:
        """Which of ``senders`` no longer run (their lock is free)."""
        if self.record.backend != "postgresql":
            # SQLite: we hold the only sender lock, so anyone else's claim is a dead one's.
            return [s for s in senders if s != self.sender_id]
        gone = []
        with self.record.engine.connect() as conn:
            for sender in senders:
                if sender == self.sender_id:
                    continue
                key = _lock_key(sender)
                if conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    gone.append(sender)
            conn.commit()
        return gone

    def reconcile(self) -> SendReport:
        """Settle messages left in ``sending`` by senders that died: check, or review."""
        report = SendReport()
        dead = self._gone(self.outbox.senders_holding())
        if not dead:
            return report
        for item in self.outbox.stuck(senders=dead):
            try:
                report.add(self._settle(item))
            except RecordError as exc:
                now = self.outbox.get(item.message_id)
                if now is None or now.state == "sending":
                    raise
                logger.debug("message %s was settled by another sender: %s",  # a race
                             item.message_id, exc)
        return report

    def _settle(self, item: OutboxItem) -> Sent:
        now = self._clock()
        lane = self._lane(item.channel) if item.channel in self._routes else None
        if lane is not None and isinstance(lane.transport, Checkable):
            try:
                outgoing = self.outbox.outgoing(item.message_id)
                receipt = lane.transport.check(outgoing)
            except Exception as exc:  # cannot check: a person decides
                logger.warning("cannot check %s after a crash: %s", item.message_id,
                               type(exc).__name__)
                receipt, outgoing = None, None
            if outgoing is not None:
                if receipt is not None:
                    self._move(item, "sent", at=now,
                               data={"reconciled": True, **receipt.to_dict()},
                               transport=receipt.transport, provider_id=receipt.provider_id)
                    logger.warning("message %s was delivered before a crash: settled as sent",
                                   item.message_id)
                    return Sent(item.message_id, item.channel, "reconciled", "found: sent",
                                receipt.provider_id)
                self._move(item, "queued", at=now,
                           data={"reconciled": True, "note": "not found at the transport"},
                           due_at=now)
                return Sent(item.message_id, item.channel, "reconciled", "not found: queued")
        detail = (f"sender {item.sender} stopped while sending; the transport cannot say "
                  "whether it took the message")
        self._move(item, "review", at=now,
                   data={"reason": "sender stopped while sending"}, error=detail)
        logger.warning("message %s needs review: %s", item.message_id, detail)
        return Sent(item.message_id, item.channel, "review", detail)

    # -- sending -------------------------------------------------------------------

    def _move(self, item: OutboxItem, to: str, *, at: datetime | None = None,
              **changes: Any) -> OutboxItem:
        """Move a message this sender holds in ``sending`` to ``to`` (with its event)."""
        return self.outbox.transition(item.message_id, to, at=at or self._clock(),
                                      expect=("sending",), customer_id=item.customer_id,
                                      **changes)

    def send_due(self, *, limit: int | None = None, stop: threading.Event | None = None,
                 on_result: Callable[[Sent], None] | None = None) -> SendReport:
        """Reconcile, then send every message that is due now (at most ``limit``); return.

        Messages that become due while this runs (a quick retry) are sent
        too, as long as ``limit`` allows; ``stop`` ends the run after the
        current message. ``on_result`` sees each outcome as it happens (the
        run may still end with a :class:`~ccm.errors.ConfigError` or
        :class:`~ccm.errors.TransportUnavailable`: the message in hand was
        put back untouched).
        """
        report = self.reconcile()
        if on_result:
            for settled in report.results:
                on_result(settled)
        handled = 0
        while (limit is None or handled < limit) and not (stop is not None and stop.is_set()):
            outcome = self.send_one()
            if outcome is None:
                break
            report.add(outcome)
            if on_result:
                on_result(outcome)
            handled += 1
        return report

    def send_one(self) -> Sent | None:
        """Claim and send the oldest due message; ``None`` when nothing is due.

        A :class:`~ccm.errors.ConfigError` while claiming (no master key to
        read the recipient) leaves the message queued, untouched, and is
        raised.
        """
        claimed = self.outbox.claim(now=self._clock(), sender=self.sender_id,
                                    channels=self.channels)
        if claimed is None:
            return None
        if isinstance(claimed, OutboxItem):  # erased before it could go
            return Sent(claimed.message_id, claimed.channel, "failed", claimed.error)
        return self._deliver(claimed)

    def _put_back(self, item: OutboxItem, name: str, reason: str, exc: BaseException) -> None:
        """Back to the queue as it was before the claim: same due time, attempt not counted."""
        self._move(item, "queued", due_at=item.due_at, attempts=max(0, item.attempts - 1),
                   data={"transport": name, "reason": reason},
                   error=scrub(str(exc) or type(exc).__name__, 400))
        logger.warning("message %s put back (%s): %s", item.message_id, reason,
                       type(exc).__name__)

    def _deliver(self, claimed: Claimed) -> Sent:
        item, outgoing = claimed.item, claimed.outgoing
        try:
            lane = self._lane(item.channel)
            lane.limiter.wait()
        except BaseException as exc:
            # The route could not be opened, or the wait for the rate limit was interrupted
            # (Ctrl-C, a second SIGTERM): nothing was handed over, so the message goes back
            # untouched rather than being left in `sending` for the next run to review.
            reason = ("configuration" if isinstance(exc, ConfigError) else
                      "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else
                      "sender error")
            self._put_back(item, item.channel, reason, exc)
            raise
        name = getattr(lane.transport, "name", type(lane.transport).__name__)
        try:
            receipt = lane.transport.send(outgoing)
        except TransportUnavailable as exc:
            # Nothing was handed over, and nothing will be until the transport is back: not
            # this message's fault, so no attempt used up. Back to the queue, and stop.
            self._put_back(item, name, "unavailable", exc)
            raise
        except TemporaryDeliveryError as exc:
            return self._temporary(item, outgoing, lane, name, exc)
        except PermanentDeliveryError as exc:
            return self._fail(item, name, exc)
        except DeliveryUncertain as exc:
            now = self._clock()
            text = scrub(str(exc), 400)
            self._move(item, "review", at=now,
                       data={"transport": name, "reason": "uncertain"},
                       transport=name, error=text)
            logger.warning("message %s needs review: %s", item.message_id, text)
            return Sent(item.message_id, item.channel, "review", text)
        except ConfigError as exc:
            # Nothing was handed over (the setup is wrong): back to the queue, and stop.
            self._put_back(item, name, "configuration", exc)
            raise
        except BaseException:
            # A bug, or an interrupt, while the transport held it: a person decides.
            self._move(item, "review",
                       data={"transport": name, "reason": "sender error"},
                       transport=name, error="the sender failed while sending")
            raise
        return self._sent(item, name, receipt)

    def _sent(self, item: OutboxItem, name: str, receipt: Receipt) -> Sent:
        self._move(item, "sent",
                   data=receipt.to_dict(), transport=receipt.transport or name,
                   provider_id=receipt.provider_id, error=None)
        logger.info("sent %s via %s", item.message_id, name)
        return Sent(item.message_id, item.channel, "sent", receipt.detail, receipt.provider_id)

    def _temporary(self, item: OutboxItem, outgoing: Outgoing, lane: _Lane, name: str,
                   exc: TemporaryDeliveryError) -> Sent:
        if outgoing.attempt >= lane.retry.max_attempts:
            return self._fail(item, name, exc, note=f"gave up after {outgoing.attempt} attempts")
        now = self._clock()
        delay = lane.retry.delay(outgoing.attempt, self._rng)
        due = now + timedelta(seconds=delay)
        text = scrub(str(exc), 400)
        self._move(item, "queued", at=now, due_at=due, transport=name,
                   error=text, data={"transport": name, "attempt": outgoing.attempt,
                   "code": getattr(exc, "code", None), "due_at": due.isoformat()})
        logger.info("retry %s via %s in %.0fs (attempt %d)", item.message_id, name, delay,
                    outgoing.attempt)
        return Sent(item.message_id, item.channel, "retry", text)

    def _fail(self, item: OutboxItem, name: str, exc: Exception, note: str | None = None
              ) -> Sent:
        text = scrub(str(exc), 400)
        data: dict[str, Any] = {"transport": name, "code": getattr(exc, "code", None)}
        if note:
            data["note"] = note
        self._move(item, "failed",
                   data=data, transport=name, error=text)
        logger.info("failed %s via %s", item.message_id, name)
        return Sent(item.message_id, item.channel, "failed", text)

    def run(self, stop: threading.Event, *, poll: float = 1.0,
            on_result: Callable[[Sent], None] | None = None,
            on_unavailable: Callable[[TransportUnavailable, float], None] | None = None,
            max_wait: float = 60.0) -> SendReport:
        """Keep sending until ``stop`` is set (``ccm send --follow``); finish the message in hand.

        Sleeps ``poll`` seconds when nothing is due; reconciles every
        ``reconcile_every`` seconds (another sender may have died). When a
        transport cannot be reached (:class:`~ccm.errors.TransportUnavailable`;
        the message was put back untouched) it waits ``poll`` seconds, then
        twice that after each further failure, up to ``max_wait``, and tries
        again; ``on_unavailable`` hears the error and the wait.
        """
        report = SendReport()
        last = float("-inf")
        outages = 0
        while not stop.is_set():
            if time.monotonic() - last >= self.reconcile_every:
                for result in self.reconcile().results:
                    report.add(result)
                    if on_result:
                        on_result(result)
                last = time.monotonic()
            try:
                outcome = self.send_one()
            except TransportUnavailable as exc:
                outages += 1
                wait = min(max_wait, poll * 2 ** (outages - 1))
                if on_unavailable:
                    on_unavailable(exc, wait)
                stop.wait(wait)
                continue
            if outcome is None:
                stop.wait(poll)
                continue
            outages = 0
            report.add(outcome)
            if on_result:
                on_result(outcome)
        return report
