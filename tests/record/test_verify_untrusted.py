"""Verify reads every stored value as untrusted: a wrong type is a reported problem, not a crash.

SQLite keeps whatever a tamperer writes into a column (text in ``seq``, a blob
in ``status``, ``'not a date'`` as a timestamp). Each tampering below is one
``UPDATE`` of the lowest-rowid row of a table, made with ``sqlite3`` as an
attacker would, plus one ordinary edit of customer C2's message: verify must
name the bad value's table, column, entry and what it holds, still find the
ordinary edit (it went on checking), and exit 1 like any failed verify.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ccm.cli import main
from ccm.errors import RecordSchemaError
from ccm.record import MasterKey, Record

from ._support import T0, entry, raw_sql

#: The ordinary edit every tampered copy also has, and what verify says about it.
OTHER_EDIT = "UPDATE messages SET template = 'other' WHERE message_id = 'm3'"
OTHER_FOUND = "customer 'C2' entry 1 (message m3): its data no longer matches its hash (edited)"


def _expected(name: str, record: Path) -> tuple[str, str]:
    """The tampering's SQL, and its problem text with the event's id filled in."""
    conn = sqlite3.connect(record)
    (event,) = conn.execute("SELECT event_id FROM events").fetchone()
    conn.close()
    sql, expected = TAMPERINGS[name]
    return sql, expected.format(event=event)


def _first(table: str, assignment: str, where: str = "") -> str:
    """``UPDATE`` the lowest-rowid row of ``table`` (optionally among those ``where``)."""
    among = f" WHERE {where}" if where else ""
    return (f"UPDATE {table} SET {assignment} WHERE rowid = "
            f"(SELECT min(rowid) FROM {table}{among})")


TAMPERINGS = {
    "chain.seq text": (
        _first("chain", "seq = 'abc'"),
        "customer 'C1' entry 'abc' (message m1): chain.seq holds text, not a whole number "
        "(edited)"),
    "chain.seq fraction": (
        _first("chain", "seq = 1.5"),
        "customer 'C1' entry 1.5 (message m1): chain.seq holds a fraction, not a whole number "
        "(edited)"),
    "chain.at not a date": (
        _first("chain", "at = 'not a date'"),
        "customer 'C1' entry 1 (message m1): chain.at holds text that is not a timestamp "
        "(edited)"),
    "chain.at a number": (
        _first("chain", "at = 12"),
        "customer 'C1' entry 1 (message m1): chain.at holds a whole number, not a timestamp "
        "(edited)"),
    "chain.hash bytes": (
        _first("chain", "hash = x'00'"),
        "customer 'C1' entry 1 (message m1): chain.hash holds bytes, not text (edited)"),
    "chain.detail bytes": (
        _first("chain", "detail = x'7b7d'"),
        "customer 'C1' entry 1 (message m1): chain.detail holds bytes, not text (edited)"),
    "chain.customer_id bytes": (
        _first("chain", "customer_id = x'4331'"),
        "customer \"b'C1'\" entry 1 (message m1): chain.customer_id holds bytes, not text "
        "(edited)"),
    "messages.status bytes": (
        _first("messages", "status = cast('generated' as blob)"),
        "customer 'C1' entry 1 (message m1): messages.status holds bytes, not text (edited)"),
    "messages.created_at not a date": (
        _first("messages", "created_at = 'garbage'"),
        "customer 'C1' entry 1 (message m1): messages.created_at holds text that is not a "
        "timestamp (edited)"),
    "events.at not a date": (
        _first("events", "at = 'yesterday'"),
        "customer 'C1' entry 3 (event {event}): events.at holds text that is not a timestamp "
        "(edited)"),
    "events.data bytes": (
        _first("events", "data = x'00'"),
        "customer 'C1' entry 3 (event {event}): events.data holds bytes, not text (edited)"),
    "data_keys.wrapped text": (
        _first("data_keys", "wrapped = 'x'"),
        "customer 'C1': its data key row is unreadable: data_keys.wrapped holds text, not "
        "bytes (tampered); 2 entries affected: entry 1 (message m1), entry 2 (message m2)"),
    "data_keys.key_id bytes": (
        _first("data_keys", "key_id = x'01'"),
        "customer 'C1': its data key row is unreadable: data_keys.key_id holds bytes, not "
        "text (tampered)"),
    "archive.blob empty": (
        _first("archive", "blob = x''"),
        "of message m1: archive.blob has 0 bytes, fewer than any sealed content (28) "
        "(truncated or replaced; tampered)"),
    "archive.blob text": (
        _first("archive", "blob = 'sealed, honestly'"),
        "of message m1: archive.blob holds text, not bytes (truncated or replaced; tampered)"),
    "ccm_meta.schema_version": (
        "UPDATE ccm_meta SET value = 'garbage' WHERE key = 'schema_version'",
        "ccm_meta schema_version: the value is not a whole number (edited or damaged)"),
    "ccm_meta.created_at": (
        "UPDATE ccm_meta SET value = 'garbage' WHERE key = 'created_at'",
        "ccm_meta created_at: the value is not a timestamp (edited or damaged)"),
    "ccm_meta.master_key_fingerprint": (
        "UPDATE ccm_meta SET value = 'garbage' WHERE key = 'master_key_fingerprint'",
        "ccm_meta master_key_fingerprint: the value is not a key fingerprint (16 hexadecimal "
        "digits) (edited or damaged)"),
    "ccm_meta.ccm_version bytes": (
        "UPDATE ccm_meta SET value = x'00' WHERE key = 'ccm_version'",
        "ccm_meta ccm_version: the value holds bytes, not text (edited or damaged)"),
}


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite record: C1 with two archived letters and an event, C2 with one message."""
    path = tmp_path_factory.mktemp("untrusted") / "record.db"
    with Record(path, master_key=MasterKey.generate()) as rec:
        rec.append(entry("C1", message_id="m1", created_at=T0), content=b"letter one")
        rec.append(entry("C1", message_id="m2", created_at=T0), content=b"letter two")
        rec.add_event("m1", "sent", at=T0)
        rec.append(entry("C2", message_id="m3", created_at=T0))
        assert rec.verify().ok
    return path


@pytest.fixture
def tampered(original: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A copy of the record with ``sql`` and :data:`OTHER_EDIT` applied, as sqlite3 would."""

    def _make(sql: str) -> Path:
        copy = tmp_path / "t.db"
        copy.write_bytes(original.read_bytes())
        conn = sqlite3.connect(copy)
        with conn:
            assert conn.execute(sql).rowcount == 1
            conn.execute(OTHER_EDIT)
        conn.close()
        return copy

    return _make


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CCM_RECORD_URL", "CCM_MASTER_KEY", "CCM_MASTER_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_cli_reports_a_wrong_value_and_goes_on(name: str, original: Path,
                                               tampered: Callable[[str], Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm record verify` exits 1 with FAILED, naming the bad value, and still finds C2's edit."""
    sql, expected = _expected(name, original)
    copy = tampered(sql)
    code = main(["record", "verify", "--record", str(copy)])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert out.startswith("FAILED: "), out
    assert expected in out
    assert OTHER_FOUND in out
    assert "Traceback" not in out + err and "internal error" not in err
    assert "ccm: error" not in err


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_api_reports_a_wrong_value(name: str, original: Path,
                                   tampered: Callable[[str], Path]) -> None:
    """`Record.verify` returns the problem (not an exception), and the other edit too."""
    sql, expected = _expected(name, original)
    with Record(tampered(sql), create=False, read_only=True) as rec:
        report = rec.verify()
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems
    assert OTHER_FOUND in report.problems
    assert report.problem_count == len(report.problems)


def test_verify_json_has_the_problem(tampered: Callable[[str], Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` carries the same problems and ok false, exit 1."""
    copy = tampered(TAMPERINGS["chain.at not a date"][0])
    code = main(["record", "verify", "--json", "--record", str(copy)])
    out = capsys.readouterr().out
    assert code == 1
    assert '"ok": false' in out and "chain.at holds text that is not a timestamp" in out


def test_an_unreadable_schema_version_is_not_written_to(tampered: Callable[[str], Path],
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """Only reading is done on a guessed layout: a writer is refused, naming the record."""
    copy = tampered(TAMPERINGS["ccm_meta.schema_version"][0])
    before = copy.read_bytes()
    with pytest.raises(RecordSchemaError, match=r"schema_version in its ccm_meta table is "
                       r"not a whole number \(edited or damaged\)") as caught:
        Record(copy)
    assert str(copy) in str(caught.value)
    code = main(["record", "event", "m1", "opened", "--record", str(copy)])
    err = capsys.readouterr().err
    assert code == 1
    assert "ccm: error: the record at" in err and "Traceback" not in err
    assert copy.read_bytes() == before


def test_a_short_blob_is_found_on_every_backend(open_record: Callable[..., Record],
                                                master_key: MasterKey) -> None:
    """An archive blob cut below a nonce and tag is reported without the key (SQLite, PG)."""
    rec = open_record(master_key)
    rec.append(entry("C1", message_id="m1", created_at=T0), content=b"letter")
    raw_sql(rec, "UPDATE archive SET blob = :cut", cut=b"\x00" * 27)
    report = open_record().verify()
    assert not report.ok
    assert report.problems == [
        f"archive blob {rec.get('m1').archive_ref}/content of message m1: archive.blob has "
        "27 bytes, fewer than any sealed content (28) (truncated or replaced; tampered)"]


@pytest.mark.parametrize(("sql", "expected"), [
    (TAMPERINGS["chain.seq text"][0],
     "the newest chain entry of customer 'C1' is unreadable (chain.seq holds text, not a whole "
     "number; edited): run `ccm record verify`"),
    ("UPDATE chain SET hash = x'00' WHERE customer_id = 'C2'",
     "customer 'C2' is unreadable (chain.hash holds bytes, not text; edited)"),
    ("UPDATE chain SET customer_id = x'4332' WHERE customer_id = 'C2'",
     "chain.customer_id holds bytes, not text; edited"),
], ids=["seq", "hash", "customer_id"])
def test_checkpoint_refuses_an_unreadable_head(sql: str, expected: str,
                                               tampered: Callable[[str], Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm record checkpoint` will not sign around a head it cannot read: exit 1, no file."""
    monkeypatch.setenv("CCM_CHECKPOINT_KEY", "untrusted-checkpoint-key-0123456789abcdef")
    copy = tampered(sql)
    out = tmp_path / "r.ckpt"
    code = main(["record", "checkpoint", "--record", str(copy), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("ccm: error: cannot sign a checkpoint: ") and expected in err
    assert not out.exists()
