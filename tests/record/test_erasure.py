"""Erasure is all or nothing: readers, a running batch, pending erasures, unknown and repeated."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import ccm.record.connect as connect
from ccm.cli.record import record as record_group
from ccm.errors import AlreadyErased, ContentErased, CustomerNotFound, ErasurePending
from ccm.record import MasterKey, Record

from ._support import T0, append_forever, entry, raw_rows

SECRET = "Ms Ada Quill, 12 Lantern Row"
ROOT = Path(__file__).resolve().parents[2]


def _fill(rec: Record, customer: str = "GONE") -> tuple[bytes, list[bytes]]:
    """Archive three letters for ``customer`` (and one for someone else); their key and blobs."""
    for i in range(3):
        rec.append(entry(customer, message_id=f"{customer}-{i}", created_at=T0),
                   content=f"{SECRET} letter {i} ".encode() * 40,
                   archival=b"%PDF-1.7 " + SECRET.encode() * 30)
    rec.append(entry("KEPT", created_at=T0), content=b"kept")
    wrapped = next(bytes(r["wrapped"]) for r in raw_rows(rec, "data_keys")
                   if r["customer_id"] == customer)
    blobs = [bytes(r["blob"]) for r in raw_rows(rec, "archive") if r["customer_id"] == customer]
    return wrapped, blobs


def _snapshot_files(db: Path, into: Path) -> bytes:
    """Copy the .db, -wal and -shm files as they are now; all their bytes, freelist included."""
    into.mkdir()
    data = b""
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{db}{suffix}")
        if source.exists():
            shutil.copyfile(source, into / source.name)
            data += (into / source.name).read_bytes()
    return data


def _assert_gone(data: bytes, wrapped: bytes, blobs: list[bytes]) -> None:
    assert data, "nothing copied"
    assert wrapped not in data, "the wrapped data key survived"
    for blob in blobs:
        assert blob[12:44] not in data, "ciphertext survived"
        assert blob[-16:] not in data, "a GCM tag survived"
    assert SECRET.encode() not in data, "plaintext survived"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "record.db"


def _reader(db: Path) -> sqlite3.Connection:
    """A reader holding a snapshot taken before the erase (an export, a backup, a report)."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM archive").fetchone()
    return conn


def test_erase_waits_for_a_reader_then_leaves_no_byte(db: Path, tmp_path: Path) -> None:
    """A reader that finishes within the wait: erase waits, checkpoints, and no key, blob or
    plaintext byte of the customer is in the .db, -wal or -shm copied right after it returns."""
    rec = Record(db, master_key=MasterKey.generate(), erase_wait=60)
    wrapped, blobs = _fill(rec)
    reader = _reader(db)
    release = threading.Timer(0.3, reader.close)
    release.start()
    try:
        done = rec.erase("GONE")
        copied = _snapshot_files(db, tmp_path / "copy")
    finally:
        release.join()
    assert done.flushed and done.data_key_destroyed and done.blobs_deleted == 6
    _assert_gone(copied, wrapped, blobs)
    assert rec.pending_erasures() == {}
    assert rec.verify().ok
    rec.close()


@pytest.mark.parametrize("page_size", [4096, 65536])
def test_erase_leaves_no_byte_whatever_the_page_size(db: Path, tmp_path: Path, page_size: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """secure_delete zeroes freed pages of any size: a record made with SQLite's old default
    (4096, every record before NEW_PAGE_SIZE) and one with the largest page (65536)."""
    monkeypatch.setattr(connect, "NEW_PAGE_SIZE", page_size)
    rec = Record(db, master_key=MasterKey.generate(), erase_wait=60)
    wrapped, blobs = _fill(rec)
    done = rec.erase("GONE")
    copied = _snapshot_files(db, tmp_path / "copy")
    assert done.flushed and done.data_key_destroyed and done.blobs_deleted == 6
    _assert_gone(copied, wrapped, blobs)
    assert rec.verify().ok
    rec.close()
    page = sqlite3.connect(db)
    assert page.execute("PRAGMA page_size").fetchone()[0] == page_size
    page.close()


def test_a_reader_held_too_long_leaves_the_erasure_pending(db: Path, tmp_path: Path) -> None:
    """A reader held past the wait: erase raises ErasurePending naming who holds the files, the
    customer stays marked, and `erase --pending` finishes it once the reader is gone."""
    rec = Record(db, master_key=MasterKey.generate(), erase_wait=0.2)
    wrapped, blobs = _fill(rec)
    reader = _reader(db)
    with pytest.raises(ErasurePending) as info:
        rec.erase("GONE")
    message = str(info.value)
    assert "GONE" in message and "erase --pending" in message
    assert "(this process)" in message  # the reader lives in this test's process
    assert SECRET not in message
    assert list(rec.pending_erasures()) == ["GONE"]
    with pytest.raises(ContentErased):  # the key itself is gone already
        rec.content("GONE-0")
    held = _snapshot_files(db, tmp_path / "held")
    assert wrapped in held, "the old page is still there while the reader holds it"
    assert f"{db.name} and {db.name}-wal" in message
    reader.close()
    result = CliRunner().invoke(record_group, ["erase", "--pending", "--record", str(db)])
    assert result.exit_code == 0, result.output
    assert "finished 1 pending erasure(s): GONE" in result.output
    _assert_gone(_snapshot_files(db, tmp_path / "copy"), wrapped, blobs)
    assert rec.pending_erasures() == {}
    rec.close()


def test_erasing_again_finishes_a_pending_erasure(db: Path, tmp_path: Path) -> None:
    """The next erase of a pending customer completes the flush instead of saying 'already'."""
    rec = Record(db, master_key=MasterKey.generate(), erase_wait=0.1)
    wrapped, blobs = _fill(rec)
    reader = _reader(db)
    with pytest.raises(ErasurePending):
        rec.erase("GONE")
    reader.close()
    assert rec.erase("GONE").flushed
    _assert_gone(_snapshot_files(db, tmp_path / "copy"), wrapped, blobs)
    with pytest.raises(AlreadyErased):
        rec.erase("GONE")
    rec.close()


def test_cli_erase_held_by_a_reader_exits_conflict(db: Path) -> None:
    """`ccm record erase` with a reader held past --wait exits 4 with one line, no traceback."""
    rec = Record(db, master_key=MasterKey.generate())
    _fill(rec)
    rec.close()
    reader = _reader(db)
    try:
        result = CliRunner().invoke(record_group, ["erase", "GONE", "--yes", "--wait", "0.1",
                                                   "--record", str(db)])
    finally:
        reader.close()
    assert result.exit_code == 4, result.output
    assert result.output.startswith("ccm: error: erasure pending for customer(s) GONE")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_erase_during_a_running_batch_leaves_no_byte(db: Path, tmp_path: Path) -> None:
    """While another process keeps appending (a batch), an erase completes and the files
    copied the moment it returns hold nothing of the erased customer."""
    key = MasterKey.generate()
    rec = Record(db, master_key=key, erase_wait=60)
    wrapped, blobs = _fill(rec)
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Value("i", 0)
    worker = ctx.Process(target=append_forever, args=(f"sqlite:///{db}", key.text(), started))
    worker.start()
    try:
        while started.value < 20 and worker.is_alive():
            threading.Event().wait(0.02)
        assert worker.is_alive()
        done = rec.erase("GONE")
        copied = _snapshot_files(db, tmp_path / "copy")
        assert worker.is_alive(), "the batch kept running through the erase"
    finally:
        worker.kill()
        worker.join()
    assert done.flushed
    _assert_gone(copied, wrapped, blobs)
    assert rec.verify().ok
    rec.close()


def test_erasing_an_unknown_customer_is_not_found(record_url: str) -> None:
    """An id the record never saw is CustomerNotFound, starts no chain; the CLI exits 3."""
    rec = Record(record_url, master_key=MasterKey.generate())
    rec.append(entry("C1"), content=b"x")
    with pytest.raises(CustomerNotFound, match="NOBODY"):
        rec.erase("NOBODY")
    assert {r["customer_id"] for r in raw_rows(rec, "chain")} == {"C1"}
    result = CliRunner().invoke(record_group, ["erase", "NOBODY", "--yes",
                                               "--record", record_url])
    assert result.exit_code == 3, result.output
    assert "customer NOBODY has no entry" in result.output
    rec.close()


def test_erasing_twice_says_when(record_url: str) -> None:
    """A second erase with nothing archived since says it was already erased, and when."""
    rec = Record(record_url, master_key=MasterKey.generate())
    rec.append(entry("C1"), content=b"x")
    first = rec.erase("C1")
    with pytest.raises(AlreadyErased) as info:
        rec.erase("C1")
    assert info.value.erased_at[:10] == first.at.date().isoformat()
    result = CliRunner().invoke(record_group, ["erase", "C1", "--yes", "--record", record_url])
    assert result.exit_code == 4, result.output
    assert "customer C1 was already erased on" in result.output
    rec.append(entry("C1"), content=b"new letter")  # a new key: erasable again
    assert rec.erase("C1").data_key_destroyed
    rec.close()


def test_erase_and_pending_are_exclusive_on_the_command_line(db: Path) -> None:
    """`erase` needs a customer or --pending, not both and not neither (usage errors)."""
    Record(db).close()
    assert CliRunner().invoke(record_group, ["erase", "--record", str(db)]).exit_code == 2
    both = CliRunner().invoke(record_group, ["erase", "C1", "--pending", "--record", str(db)])
    assert both.exit_code == 2


def _marked(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        return bool(conn.execute("SELECT count(*) FROM ccm_meta WHERE key LIKE "
                                 "'erasure_pending:%'").fetchone()[0])
    finally:
        conn.close()


def test_an_erase_killed_before_its_flush_is_shown_by_verify_and_finished(
        db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ccm record erase` SIGKILLed while it waits for a reader: verify still passes but says on
    stderr that the erasure is pending (and --json lists it); erasing again says it finished
    that erasure, and then no byte of the key or content is left and verify says nothing."""
    key = MasterKey.generate()
    rec = Record(db, master_key=key)
    wrapped, blobs = _fill(rec)
    rec.close()
    reader = _reader(db)
    env = {**os.environ, "CCM_MASTER_KEY": key.text(), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "ccm", "record", "erase", "GONE", "--yes",
                              "--wait", "600", "--record", str(db)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):  # the erase committed: the mark is there, the flush waits
            if _marked(db):
                break
            assert child.poll() is None, "the erase ended before it was killed"
            time.sleep(0.01)
        else:
            pytest.fail("the erase never committed")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        # The old page is the database file's own, written there when the record was closed
        # (the WAL holds the new one): ErasurePending names both files.
        old_page_left = wrapped in db.read_bytes()
        reader.close()
    assert old_page_left and _marked(db)
    monkeypatch.setenv("CCM_MASTER_KEY", key.text())
    runner = CliRunner()
    verify = runner.invoke(record_group, ["verify", "--record", str(db)])
    assert verify.exit_code == 0 and verify.stdout.startswith("ok: ")
    assert verify.stderr.startswith("erasure pending for 1 customer(s): GONE: ")
    assert "ccm record erase --pending" in verify.stderr
    as_json = runner.invoke(record_group, ["verify", "--json", "--record", str(db)])
    assert json.loads(as_json.stdout)["erasures_pending"] == ["GONE"]
    again = runner.invoke(record_group, ["erase", "GONE", "--yes", "--record", str(db)])
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("finished the pending erasure of customer GONE (erased ")
    _assert_gone(_snapshot_files(db, tmp_path / "copy"), wrapped, blobs)
    verify = runner.invoke(record_group, ["verify", "--record", str(db)])
    assert verify.exit_code == 0 and verify.stderr == ""
    assert json.loads(runner.invoke(record_group, ["verify", "--json", "--record", str(db)]
                                    ).stdout)["erasures_pending"] == []


def test_cli_erase_errors_cannot_fake_lines(db: Path) -> None:
    """A customer id with a line break or an escape sequence, unknown or erased already, is
    quoted with escapes in the one-line error: it cannot print a fake 'erased' line."""
    odd = "B\x1b[2J\nerased customer B: data key destroyed"
    rec = Record(db, master_key=MasterKey.generate())
    rec.append(entry(odd, created_at=T0), content=b"letter")
    rec.erase(odd)
    rec.close()
    runner = CliRunner()
    for customer, code in ((odd, 4), ("X\nerased customer X: data key destroyed", 3)):
        result = runner.invoke(record_group, ["erase", customer, "--yes", "--record", str(db)])
        assert result.exit_code == code, result.output
        assert len(result.stderr.splitlines()) == 1 and "\x1b" not in result.stderr
        assert repr(customer) in result.stderr


def test_a_garbled_pending_mark_does_not_stop_erasures(db: Path, tmp_path: Path) -> None:
    """A pending-erasure mark edited outside ccm (not JSON) used to make every later erase fail
    after its commit ("values changed outside ccm", exit 1, the customer left pending) and
    `erase --pending` fail too; now the erase finishes, says so, and verify names the mark."""
    rec = Record(db, master_key=MasterKey.generate())
    wrapped, blobs = _fill(rec)
    rec.close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO ccm_meta (key, value) VALUES ('erasure_pending:zz', 'garbage')")
    conn.close()
    runner = CliRunner()
    done = runner.invoke(record_group, ["erase", "GONE", "--yes", "--record", str(db)])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("erased customer GONE: data key destroyed, 6 archived part(s)")
    _assert_gone(_snapshot_files(db, tmp_path / "copy"), wrapped, blobs)
    assert runner.invoke(record_group, ["erase", "--pending", "--record", str(db)]).exit_code == 0
    verify = runner.invoke(record_group, ["verify", "--record", str(db)])
    assert verify.exit_code == 1
    assert "ccm_meta erasure_pending:zz: the value is not a pending erasure's note" in verify.stdout
    assert "erasure pending for" not in verify.stderr
