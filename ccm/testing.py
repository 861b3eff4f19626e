"""Fakes for applications' own tests: an in-memory record and message capture.

::

    from ccm.testing import capture_messages, memory_record

    engine = ccm.Engine("brand_packs/acme", "templates", record=memory_record())
    with capture_messages(engine) as sent:
        my_app.on_invoice(engine, event)
    assert [m.channel for m in sent] == ["email"]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccm.message import Message
    from ccm.record import Record
    from ccm.render.engine import Engine

__all__ = ["capture_messages", "memory_record"]


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


