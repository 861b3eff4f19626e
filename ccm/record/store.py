"""The communication record: one code path over SQLite and PostgreSQL (SQLAlchemy Core).

:class:`Record` is the public face; its parts live in one module per idea:

=====================  ==========================================================
:mod:`.connect`        URLs, engines, transactions, locks, driver/I-O errors
:mod:`.appends`        appends (one or many), events, chain links
:mod:`.datakeys`       data keys: made, opened (content), re-wrapped, destroyed
:mod:`.erasure`        the SQLite WAL flush after an erasure, "erasure pending"
:mod:`.reads`          entries, events, consent, verify, checkpoints, views
=====================  ==========================================================

Guarantees (tested; see docs/record.md):

* An append is one transaction holding the customer's lock: idempotency
  check, cap re-check, message row, archive blobs, chain link. It is durable
  when :meth:`Record.append` returns, and a crash leaves all of it or none.
* Locks: SQLite writes start with ``BEGIN IMMEDIATE``; PostgreSQL takes
  ``pg_advisory_xact_lock`` on a hash of the customer id, so writers for
  different customers run side by side and two writers for one customer
  cannot both pass a cap.
* No personal data in clear beyond customer ids: content lives only in the
  ``archive`` table, AES-256-GCM under the customer's data key. Without a
  master key nothing is archived (``archive_ref`` stays NULL).

Logging (logger ``ccm.record``): DEBUG for each append and schema step,
INFO for schema creation, upgrades, rotations and erasures, WARNING for a
key file others can read or a deferred WAL checkpoint. Nothing logged ever
holds content or a key.
"""

from __future__ import annotations

import sqlalchemy as sa

from ccm.record.appends import Appends
from ccm.record.datakeys import Erasure
from ccm.record.entries import EVENT_KINDS, AppendResult, Entry, Event
from ccm.record.keys import KeySource
from ccm.record.reads import Reads

__all__ = ["EVENT_KINDS", "AppendResult", "Entry", "Erasure", "Event", "Record", "open_record"]


class Record(Reads, Appends):
    """The communication record at ``url``.

    ``url`` is ``sqlite:///path``, a plain file path (SQLite), ``sqlite://``
    (memory) or ``postgresql+psycopg://...``. Opening creates the schema, or
    upgrades an older one in place; ``create=False`` refuses a missing record
    instead, and ``read_only=True`` changes nothing at all (SQLite
    ``mode=ro``, PostgreSQL read-only transactions). ``master_key`` (a
    :class:`~ccm.record.MasterKey`, or a KMS-like callable returning one)
    encrypts archived content; without one the record keeps every entry but
    no content. ``erase_wait`` bounds, in seconds, how long an erasure waits
    for readers before it reports :class:`~ccm.errors.ErasurePending`;
    ``lock_timeout`` how long a write waits for another writer before
    :class:`~ccm.errors.RecordLocked`. Thread-safe; open one per process.
    """

    def __init__(self, url: str | sa.URL, *, master_key: KeySource | None = None,
                 create: bool = True, read_only: bool = False,
                 erase_wait: float = 30.0, lock_timeout: float = 30.0) -> None:
        super().__init__(url, master_key=master_key, create=create, read_only=read_only,
                         erase_wait=erase_wait, lock_timeout=lock_timeout)


def open_record(url: str, *, master_key: KeySource | None = None) -> Record:
    """Open (creating or upgrading) the record at ``url``."""
    return Record(url, master_key=master_key)
