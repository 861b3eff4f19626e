"""The communication record: what each customer was sent, on which channel, and what followed.

SQLite (default, one file) or PostgreSQL, by URL::

    from ccm.record import MasterKey, Record

    record = Record("sqlite:///ccm-record.db", master_key=MasterKey.from_env())
    record.timeline("C-1001").to_dict()

See docs/record.md (schema, guarantees, verify) and docs/privacy.md (keys,
erasure, export).
"""

from __future__ import annotations

from ..policy import Cap as Cap
from .chain import VerifyReport as VerifyReport
from .keys import MasterKey as MasterKey
from .store import AppendResult as AppendResult
from .store import Entry as Entry
from .store import Event as Event
from .store import Record as Record
from .store import open_record as open_record
from .views import Timeline as Timeline

__all__ = [
    "AppendResult",
    "Cap",
    "Entry",
    "Event",
    "MasterKey",
    "Record",
    "Timeline",
    "VerifyReport",
    "open_record",
]
