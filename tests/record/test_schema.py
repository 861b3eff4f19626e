"""Schema versioning: new records are versioned, older ones upgrade, newer ones are refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from ccm.errors import ConfigError, RecordSchemaError
from ccm.record import MasterKey, Record
from ccm.record.schema import SCHEMA_VERSION

from ._support import entry, raw_rows, raw_sql


def _meta(rec: Record) -> dict[str, str]:
    return {r["key"]: r["value"] for r in raw_rows(rec, "ccm_meta")}


def test_new_record_is_versioned(open_record: Callable[..., Record]) -> None:
    """A new record states its schema version and the ccm that made it."""
    import ccm

    meta = _meta(open_record())
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["ccm_version"] == ccm.__version__


def test_reopening_changes_nothing(open_record: Callable[..., Record]) -> None:
    """Opening an up-to-date record again keeps its rows and meta."""
    first = open_record()
    first.append(entry("C1"))
    before = _meta(first)
    again = open_record()
    assert _meta(again) == before
    assert again.count("C1", since=entry().created_at.replace(year=2000)) == 1


def test_newer_record_is_refused(open_record: Callable[..., Record]) -> None:
    """A record from a newer ccm raises RecordSchemaError saying which version is needed."""
    rec = open_record()
    raw_sql(rec, "UPDATE ccm_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RecordSchemaError) as info:
        open_record()
    message = str(info.value)
    assert "99" in message and "upgrade ccm" in message
    assert isinstance(info.value, ConfigError)


def test_v0_record_is_upgraded_in_place(open_record: Callable[..., Record],
                                        master_key: MasterKey) -> None:
    """An unversioned v0 record (no ccm_meta, messages without two columns) is upgraded.

    Its entries keep verifying: NULL fields are left out of the hashes.
    """
    from dataclasses import replace

    rec = open_record(master_key)
    old = [replace(entry(f"C{i % 2}"), sources_sha256=None) for i in range(4)]
    for e in old:
        rec.append(e, content=b"old")
    rec.add_event(old[0].message_id, "opened")
    rec.close()
    # Fake the v0 layout: no ccm_meta, and messages without sources_sha256 and segment.
    raw_sql(rec, "DROP TABLE ccm_meta", "ALTER TABLE messages DROP COLUMN sources_sha256",
            "ALTER TABLE messages DROP COLUMN segment")
    with rec.engine.connect() as conn:
        assert {"sources_sha256", "segment"}.isdisjoint(
            c["name"] for c in sa.inspect(conn).get_columns("messages"))

    upgraded = open_record(master_key)
    assert _meta(upgraded)["schema_version"] == str(SCHEMA_VERSION)
    assert upgraded.get(old[0].message_id).sources_sha256 is None
    assert upgraded.content(old[1].message_id) == b"old"
    report = upgraded.verify()
    assert report.ok, report.problems
    new = entry("C0", segment="gold")
    upgraded.append(new, content=b"new")
    assert upgraded.get(new.message_id).segment == "gold"
    assert upgraded.verify().ok


def test_each_open_of_a_fresh_database_creates_the_schema_once(
    open_record: Callable[..., Record],
) -> None:
    """Opening the same new database twice in a row creates the tables once."""
    a, b = open_record(), open_record()
    a.append(entry("C1"))
    b.append(entry("C1"))
    assert len(raw_rows(a, "ccm_meta")) >= 3
    assert a.verify().checked == 2
