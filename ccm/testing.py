"""Fakes for applications' own tests: an in-memory record, message capture, a capture transport.

::

    from ccm.testing import capture_messages, memory_record

    engine = ccm.Engine("brand_packs/acme", "templates", record=memory_record())
    with capture_messages(engine) as sent:
        my_app.on_invoice(engine, event)
    assert [m.channel for m in sent] == ["email"]

:class:`CaptureTransport` stands in for SMTP or the SMS provider behind a
real :class:`ccm.delivery.Sender`, so a test sees what would have gone out
(and can make the next sends fail)::

    transport = CaptureTransport()
    with Sender(record, {"email": transport, "sms": transport}) as sender:
        sender.send_due()
    assert [m.recipient for m in transport.sent] == ["alice@example.com"]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ccm.errors import DeliveryError
from ccm.message import Outgoing, Receipt

if TYPE_CHECKING:
    from ccm.message import Message
    from ccm.record import Record
    from ccm.render.engine import Engine

__all__ = ["CaptureTransport", "capture_messages", "memory_record"]


def memory_record(*, with_archive: bool = True) -> Record:
    """A complete :class:`~ccm.record.Record` in memory (SQLite ``:memory:``), with a throwaway key.

    Same code path as the real store, so tests see real idempotency, caps and
    tamper evidence; nothing touches the disk.
    """
    from ccm.record import MasterKey, Record

    key = MasterKey.generate() if with_archive else None
    return Record("sqlite://", master_key=key)


@contextmanager
def capture_messages(engine: Engine) -> Iterator[list[Message]]:
    """Collect every message ``engine`` renders inside the block.

    That is what the engine hands to its listeners: generated messages, and
    any a frequency cap stopped at the last moment (``status="suppressed"``,
    content dropped). Messages the contact policy stopped before rendering,
    and duplicates, never reach a sender and are not captured: the record
    holds them (``record.timeline(customer_id)``).
    """
    captured: list[Message] = []
    remove = engine.add_listener(captured.append)
    try:
        yield captured
    finally:
        remove()


class CaptureTransport:
    """A transport that keeps what it is handed (``sent``) instead of delivering it.

    ``fail_next(error)`` makes the next sends raise ``error`` (for example
    ``TemporaryDeliveryError("busy", code=451)``), one per queued error, so
    tests can drive retries, failures and review. Thread-safe; ``check``
    makes it :class:`~ccm.delivery.transport.Checkable` (it knows what it holds).
    """

    name = "capture"

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self._errors: list[DeliveryError] = []
        self._lock = threading.Lock()
        self.closed = False

    def fail_next(self, *errors: DeliveryError) -> None:
        """Raise these errors from the next ``send`` calls, in order."""
        with self._lock:
            self._errors.extend(errors)

    def send(self, message: Outgoing) -> Receipt:
        with self._lock:
            if self._errors:
                raise self._errors.pop(0)
            self.sent.append(message)
            return Receipt(self.name, provider_id=f"capture-{len(self.sent)}")

    def check(self, message: Outgoing) -> Receipt | None:
        with self._lock:
            for i, held in enumerate(self.sent, 1):
                if held.message_id == message.message_id:
                    return Receipt(self.name, provider_id=f"capture-{i}")
        return None

    def close(self) -> None:
        self.closed = True
