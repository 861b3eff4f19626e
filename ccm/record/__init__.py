"""The communication record: what each customer was sent, on which channel, and what followed.

SQLite (default, one file) or PostgreSQL, by URL::

    from ccm.record import MasterKey, Record

    record = Record("sqlite:///ccm-record.db", master_key=MasterKey.from_env())
    record.timeline("C-1001").to_dict()

See docs/record.md (schema, guarantees, verify) and docs/privacy.md (keys,
erasure, export).
"""

from __future__ import annotations

from ccm.record.chain import VerifyReport as VerifyReport
from ccm.record.entries import AppendResult as AppendResult
from ccm.record.entries import Entry as Entry
from ccm.record.entries import Event as Event
from ccm.record.keys import MasterKey as MasterKey
from ccm.record.outbox import Outbox as Outbox
from ccm.record.outbox import OutboxItem as OutboxItem
from ccm.record.outbox import Queue as Queue
from ccm.record.policy import Cap as Cap
from ccm.record.store import Erasure as Erasure
from ccm.record.store import Record as Record
from ccm.record.store import open_record as open_record
from ccm.record.views import Timeline as Timeline

__all__ = [
    "AppendResult",
    "Cap",
    "Entry",
    "Erasure",
    "Event",
    "MasterKey",
    "Outbox",
    "OutboxItem",
    "Queue",
    "Record",
    "Timeline",
    "VerifyReport",
    "open_record",
]
