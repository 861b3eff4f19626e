"""Signed checkpoints: what the chain alone cannot see (truncation, rollback) becomes visible."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from ccm.errors import KeyConfigError
from ccm.record import Record
from ccm.record import checkpoint as checkpoints
from ccm.record.chain import GENESIS, link_hash, message_body
from ccm.record.schema import chain, messages

from ._support import entry, raw_sql

KEY = b"checkpoint-key-for-tests-0123456789"


def _fill(rec: Record, n: int, customers: tuple[str, ...] = ("A", "B")) -> None:
    for _ in range(n):
        for cid in customers:
            rec.append(entry(cid))


def _snapshot(rec: Record, where: Path) -> Callable[[], None]:
    """Copy the whole database now; the returned function puts the copy back (a rollback)."""
    if rec.backend == "sqlite":
        copy = where / "older-copy.db"
        with rec.engine.connect() as conn:
            conn.connection.dbapi_connection.execute(f"VACUUM INTO '{copy}'")  # type: ignore[union-attr]
        live = Path(str(rec.engine.url.database))

        def restore_sqlite() -> None:
            rec.engine.dispose()
            for suffix in ("-wal", "-shm"):
                Path(f"{live}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(copy, live)

        return restore_sqlite
    schema = str(rec.engine.url.query["options"]).split("=", 1)[1]
    older = f"{schema}_older"
    admin = sa.create_engine(rec.engine.url.difference_update_query(["options"]),
                             poolclass=NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{older}"')
        for table in ("ccm_meta", "messages", "events", "chain", "data_keys", "archive"):
            conn.exec_driver_sql(
                f'CREATE TABLE "{older}".{table} (LIKE "{schema}".{table} INCLUDING ALL)')
            conn.exec_driver_sql(
                f'INSERT INTO "{older}".{table} SELECT * FROM "{schema}".{table}')

    def restore_pg() -> None:
        rec.engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            conn.exec_driver_sql(f'ALTER SCHEMA "{older}" RENAME TO "{schema}"')
        admin.dispose()

    return restore_pg


def test_checkpoint_then_more_appends_still_verifies(record: Record, tmp_path: Path) -> None:
    """A record that only grew since its checkpoint verifies against it."""
    _fill(record, 2)
    path = record.checkpoint(tmp_path / "cp.json", KEY)
    doc = json.loads(path.read_text())
    assert doc["counts"]["chain"] == 4 and set(doc["heads"]) == {"A", "B"}
    _fill(record, 2, ("A", "C"))
    report = record.verify(checkpoint=path, key=KEY)
    assert report.ok, report.problems


def test_truncation_needs_the_checkpoint(record: Record, tmp_path: Path) -> None:
    """Cutting a chain's newest entry passes the chain check but not the checkpoint."""
    _fill(record, 3)
    path = record.checkpoint(tmp_path / "cp.json", KEY)
    newest = max((e for e in (record.timeline("A").messages)), key=lambda i: i.entry.created_at)
    raw_sql(record, "DELETE FROM chain WHERE customer_id = 'A' AND seq = 3",
            "DELETE FROM messages WHERE message_id = :mid", mid=newest.entry.message_id)
    assert record.verify().ok  # the limit of a hash chain on its own
    report = record.verify(checkpoint=path, key=KEY)
    assert not report.ok
    assert report.first_bad is not None
    assert "customer 'A' entry 3" in report.first_bad and "truncated" in report.first_bad
    assert any("fewer than" in p for p in report.problems)


def test_rollback_to_an_older_copy_needs_the_checkpoint(
    open_record: Callable[..., Record], tmp_path: Path,
) -> None:
    """Replacing the whole database by an older copy passes the chain check, not the checkpoint."""
    rec = open_record()
    _fill(rec, 2)
    restore = _snapshot(rec, tmp_path)
    _fill(rec, 2)
    path = rec.checkpoint(tmp_path / "cp.json", KEY)
    restore()
    older = open_record()
    assert older.verify().ok
    report = older.verify(checkpoint=path, key=KEY)
    assert not report.ok
    assert report.first_bad == (
        f"customer 'A' entry 4, pinned by the checkpoint of "
        f"{json.loads(path.read_text())['created_at']}, is gone (the chain was truncated, "
        "or the record rolled back to an older copy)"
    )


def test_tail_rewrite_needs_the_checkpoint(record: Record, tmp_path: Path) -> None:
    """Editing the newest entry and recomputing its hash is caught by the pinned head."""
    _fill(record, 1, ("A",))
    path = record.checkpoint(tmp_path / "cp.json", KEY)
    raw_sql(record, "UPDATE messages SET template = 'forged'")
    with record.engine.connect() as conn:
        row = conn.execute(sa.select(messages)).one()
        at = conn.execute(sa.select(chain.c.at)).scalar_one()
    forged = link_hash(customer_id="A", seq=1, kind="message", ref=row.message_id, at=at,
                       detail=None, prev=GENESIS, body=message_body(row._mapping))
    raw_sql(record, "UPDATE chain SET hash = :h", h=forged)
    assert record.verify().ok
    report = record.verify(checkpoint=path, key=KEY)
    assert "differs from the checkpoint" in (report.first_bad or "")


def test_wrong_key_or_edited_checkpoint_is_reported(record: Record, tmp_path: Path) -> None:
    """A checkpoint checked with another key, or edited, fails on its signature."""
    _fill(record, 1)
    path = record.checkpoint(tmp_path / "cp.json", KEY)
    report = record.verify(checkpoint=path, key=b"another-key-of-enough-length-000")
    assert not report.ok and "signature" in (report.first_bad or "")
    doc = json.loads(path.read_text())
    doc["counts"]["chain"] = 1
    path.write_text(json.dumps(doc))
    assert "signature" in (record.verify(checkpoint=path, key=KEY).first_bad or "")


def test_checkpoint_without_key_is_a_key_error(record: Record, tmp_path: Path) -> None:
    """Checking a checkpoint without its key is a configuration error, not a pass."""
    path = record.checkpoint(tmp_path / "cp.json", KEY)
    with pytest.raises(KeyConfigError, match="CCM_CHECKPOINT_KEY"):
        record.verify(checkpoint=path)


def test_not_a_checkpoint_is_refused(record: Record, tmp_path: Path) -> None:
    """A file that is not a checkpoint raises ValueError naming it."""
    path = tmp_path / "other.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a ccm record checkpoint"):
        record.verify(checkpoint=path, key=KEY)


def test_checkpoint_key_sources(tmp_path: Path) -> None:
    """The key comes from a key file or CCM_CHECKPOINT_KEY; short or missing keys are refused."""
    path = tmp_path / "cp.key"
    path.write_text("a-file-key-that-is-long-enough-123\n")
    assert checkpoints.load_key(path, env={}) == b"a-file-key-that-is-long-enough-123"
    assert checkpoints.load_key(env={"CCM_CHECKPOINT_KEY": "x" * 32}) == b"x" * 32
    with pytest.raises(KeyConfigError, match="CCM_CHECKPOINT_KEY"):
        checkpoints.load_key(env={})
    with pytest.raises(KeyConfigError, match="too short"):
        checkpoints.load_key(env={"CCM_CHECKPOINT_KEY": "short"})
