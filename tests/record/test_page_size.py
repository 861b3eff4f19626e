"""The SQLite page size: a new record file gets NEW_PAGE_SIZE, an existing one keeps its own."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

import ccm.record.connect as connect
from ccm.record import MasterKey, Record
from ccm.record.connect import NEW_PAGE_SIZE

from ._support import T0, entry

BLOB = bytes(range(256)) * 80  # 20 KB, about an email's content: overflow pages


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def _fill(rec: Record, customers: range, *, tag: str, minutes: int = 0) -> None:
    for i in customers:
        rec.append(entry(f"C{i}", message_id=f"{tag}-{i}", params=tag,
                         created_at=T0 + timedelta(minutes=minutes + i)), content=BLOB)
        rec.append(entry(f"C{i}", message_id=f"{tag}-sms-{i}", params=tag, channel="sms",
                         created_at=T0 + timedelta(minutes=minutes + i, seconds=1)),
                   content=b"short")


def test_the_new_page_size_is_one_sqlite_accepts() -> None:
    assert 4096 < NEW_PAGE_SIZE <= 65536
    assert NEW_PAGE_SIZE & (NEW_PAGE_SIZE - 1) == 0


def test_a_new_record_file_has_the_new_page_size_and_wal(tmp_path: Path,
                                                          master_key: MasterKey) -> None:
    db = tmp_path / "record.db"
    with Record(sqlite_url(db), master_key=master_key) as rec:
        _fill(rec, range(3), tag="a")
        assert rec.verify().ok
    assert _page_size(db) == NEW_PAGE_SIZE
    assert _journal_mode(db) == "wal"


def test_an_empty_file_is_a_new_record(tmp_path: Path, master_key: MasterKey) -> None:
    db = tmp_path / "record.db"
    db.touch()
    with Record(sqlite_url(db), master_key=master_key) as rec:
        _fill(rec, range(1), tag="a")
    assert _page_size(db) == NEW_PAGE_SIZE


def test_an_existing_record_keeps_its_page_size_and_works(
        tmp_path: Path, master_key: MasterKey, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "old.db"
    with monkeypatch.context() as m:  # a record made before: SQLite's default 4096
        m.setattr(connect, "NEW_PAGE_SIZE", 4096)
        with Record(sqlite_url(db), master_key=master_key) as rec:
            _fill(rec, range(5), tag="old")
    assert _page_size(db) == 4096

    with Record(sqlite_url(db), master_key=master_key) as rec:
        _fill(rec, range(3, 8), tag="new", minutes=60)
        report = rec.verify()
        assert report.ok, report
        assert rec.content("old-1") == BLOB
        assert rec.content("new-7") == BLOB
        assert rec.content("new-sms-3") == b"short"
        assert [m.entry.message_id for m in rec.timeline("C4").messages] == [
            "old-4", "old-sms-4", "new-4", "new-sms-4"]
        erased = rec.erase("C4")
        assert erased is not None
        assert rec.verify().ok
    assert _page_size(db) == 4096
    assert _journal_mode(db) == "wal"

    with Record(sqlite_url(db), master_key=master_key, read_only=True) as rec:
        assert rec.content("old-2") == BLOB
        assert rec.verify().ok
    assert _page_size(db) == 4096


def test_a_read_only_or_memory_record_sets_no_page_size(tmp_path: Path,
                                                        master_key: MasterKey) -> None:
    db = tmp_path / "record.db"
    with Record(sqlite_url(db), master_key=master_key) as rec:
        _fill(rec, range(2), tag="a")
    with Record(sqlite_url(db), master_key=master_key, read_only=True) as rec:
        assert rec.content("a-1") == BLOB
    assert _page_size(db) == NEW_PAGE_SIZE
    with Record("sqlite://", master_key=master_key) as rec:  # memory: SQLite's own default
        _fill(rec, range(2), tag="m")
        assert rec.content("m-1") == BLOB
        with rec.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 4096
