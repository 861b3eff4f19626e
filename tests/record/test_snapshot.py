"""Reads see one snapshot: on PostgreSQL REPEATABLE READ, READ ONLY; reports use it too."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ccm.errors import RecordIOError
from ccm.record import Record

from ._support import T0, entry


def test_a_snapshot_does_not_see_later_writes(record: Record, open_record) -> None:  # type: ignore[no-untyped-def]
    """A write committed by another connection during a snapshot is not seen by it."""
    record.append(entry("C1", created_at=T0))
    other = open_record(None)
    count = sa.text("SELECT count(*) FROM messages")
    with record.snapshot() as conn:
        assert conn.execute(count).scalar_one() == 1
        other.append(entry("C2", created_at=T0))
        assert conn.execute(count).scalar_one() == 1
    assert record.timeline("C2").summary["generated"] == 1


@pytest.mark.postgres
def test_postgres_reads_are_repeatable_read_and_read_only(open_record, record_url: str) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL every read transaction (timeline, report) is REPEATABLE READ, READ ONLY."""
    if not record_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    rec = open_record(None)
    with rec.snapshot() as conn:
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar_one() == "repeatable read"
        assert conn.exec_driver_sql("SHOW transaction_read_only").scalar_one() == "on"
    with pytest.raises(RecordIOError, match="read-only"), rec.snapshot() as conn:
        conn.execute(sa.text("DELETE FROM messages"))
