"""``Record.has_key_prefix``: whether a batch run is known to the record, in one probe."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ccm.record import Entry, Record


def _entry(key: str, message_id: str) -> Entry:
    return Entry(
        message_id=message_id, idempotency_key=key, params_sha256="0" * 64, customer_id="C1",
        channel="sms", template="t", template_version="1", pack="p", pack_version="1",
        message_type="service", journey=None, locale="en_GB",
        created_at=datetime(2025, 1, 1, tzinfo=UTC), status="generated", reason=None,
        content_sha256=None, archival_sha256=None, sources_sha256=None, archive_ref=None,
        segment=None,
    )


def test_has_key_prefix_finds_a_run_and_nothing_else(tmp_path: Path) -> None:
    """A prefix matches keys that start with it exactly; neighbours in sort order do not."""
    with Record(f"sqlite:///{tmp_path / 'r.db'}") as record:
        assert not record.has_key_prefix("run-1:t:")
        assert not record.has_any_entry()
        record.append(_entry("run-1:t:C1:sms", "a" * 32))
        assert record.has_key_prefix("run-1:t:")
        assert record.has_key_prefix("run-1:")
        assert not record.has_key_prefix("run-1:u:")
        assert not record.has_key_prefix("run-10:t:")
        assert not record.has_key_prefix("run-:")
        assert record.has_any_entry()
