"""Verify checks every data key entries refer to; export and show call bad content "tampered"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccm.cli.record import record as record_group
from ccm.errors import ContentTampered
from ccm.record import MasterKey, Record

from ._support import T0, entry, raw_rows, raw_sql


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture(params=["append", "append_many"])
def filled(open_record: Callable[..., Record], key: MasterKey,
           request: pytest.FixtureRequest) -> Record:
    """Customers A (two archived letters) and B (one), each with a data key.

    Written one append at a time, or by the bulk path (every test runs on both).
    """
    rec = open_record(key)
    letters = [(entry(c, message_id=m, created_at=T0), f"letter {m}".encode())
               for c, m in (("A", "a1"), ("A", "a2"), ("B", "b1"))]
    if request.param == "append":
        for e, content in letters:
            rec.append(e, content=content)
    else:
        rec.append_many([{"entry": e, "content": content} for e, content in letters])
    assert rec.verify().ok
    return rec


def _wrapped(rec: Record, customer: str) -> bytes:
    return next(bytes(r["wrapped"]) for r in raw_rows(rec, "data_keys")
                if r["customer_id"] == customer)


def _problems(rec: Record) -> list[str]:
    report = rec.verify()
    assert not report.ok
    return report.problems


def _export_status(rec: Record, customer: str) -> set[str]:
    doc = rec.export(customer)
    return {m["content"]["status"] for m in doc["messages"]}


def test_deleted_key_row_is_tampering(filled: Record) -> None:
    """A key row deleted without an erasure names the customer and both affected entries."""
    raw_sql(filled, "DELETE FROM data_keys WHERE customer_id = 'A'")
    problem = next(p for p in _problems(filled) if "customer 'A'" in p)
    assert "data key row was deleted" in problem and "tampered" in problem
    assert "2 entries affected" in problem and "message a1" in problem and "message a2" in problem
    assert _export_status(filled, "A") == {"tampered"}
    with pytest.raises(ContentTampered):
        filled.content("a1")


def test_zeroed_key_row_is_tampering(filled: Record) -> None:
    """A key row overwritten with zeros is reported, and its content is 'tampered', not 'locked'."""
    raw_sql(filled, "UPDATE data_keys SET wrapped = :w WHERE customer_id = 'A'", w=bytes(60))
    assert any("customer 'A': its data key row was zeroed" in p for p in _problems(filled))
    filled._keys.clear()  # a fresh process would not have the key cached
    assert _export_status(filled, "A") == {"tampered"}


def test_truncated_key_row_is_tampering(filled: Record) -> None:
    """A key row cut short is reported with its length."""
    short = _wrapped(filled, "B")[:30]
    raw_sql(filled, "UPDATE data_keys SET wrapped = :w WHERE customer_id = 'B'", w=short)
    assert any("customer 'B': its data key row was truncated or altered (30 bytes"
               in p for p in _problems(filled))


def test_swapped_key_rows_are_tampering(filled: Record) -> None:
    """Two customers' wrapped keys swapped: both are reported, and neither content opens."""
    a, b = _wrapped(filled, "A"), _wrapped(filled, "B")
    raw_sql(filled, "UPDATE data_keys SET wrapped = :w WHERE customer_id = 'A'", w=b)
    raw_sql(filled, "UPDATE data_keys SET wrapped = :w WHERE customer_id = 'B'", w=a)
    problems = _problems(filled)
    for cid in ("A", "B"):
        assert any(f"customer '{cid}': its data key row is not the one its chain committed to"
                   in p for p in problems), problems
    filled._keys.clear()
    assert _export_status(filled, "A") == {"tampered"}
    assert _export_status(filled, "B") == {"tampered"}


def test_key_row_restored_after_erasure_is_tampering(filled: Record) -> None:
    """A key row put back after the customer's erasure is reported."""
    wrapped = _wrapped(filled, "B")
    row = next(r for r in raw_rows(filled, "data_keys") if r["customer_id"] == "B")
    filled.erase("B")
    assert filled.verify().ok
    raw_sql(filled, "INSERT INTO data_keys (customer_id, key_id, wrapped, created_at) "
                    "VALUES ('B', :k, :w, :t)", k=row["key_id"], w=wrapped, t=row["created_at"])
    assert any("customer 'B': a data key row exists after its erasure" in p
               for p in _problems(filled))


def test_altered_blob_is_tampered_in_export_and_show(filled: Record, record_url: str,
                                                     key: MasterKey, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A flipped ciphertext byte: export says 'tampered' and show --content fails naming it."""
    ref = filled.get("a1").archive_ref
    blob = bytearray(next(bytes(r["blob"]) for r in raw_rows(filled, "archive")
                          if r["ref"] == ref))
    blob[20] ^= 0xFF
    raw_sql(filled, "UPDATE archive SET blob = :b WHERE ref = :r", b=bytes(blob), r=ref)
    doc = filled.export("A")
    statuses = {m["message_id"]: m["content"]["status"] for m in doc["messages"]}
    assert statuses == {"a1": "tampered", "a2": "archived"}
    monkeypatch.setenv("CCM_MASTER_KEY", key.text())
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)
    out = tmp_path / "a1.eml"
    result = CliRunner().invoke(record_group, ["show", "a1", "--content", str(out),
                                               "--record", record_url])
    assert result.exit_code == 1
    assert "message a1 is tampered" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not out.exists()
    exported = CliRunner().invoke(record_group, ["export", "A", "--record", record_url])
    assert exported.exit_code == 0
    assert '"status": "tampered"' in exported.output
    assert "locked" not in exported.output and "not archived" not in exported.output


def test_a_message_in_two_chains_is_found(filled: Record) -> None:
    """A chain row copied into another customer's chain (same message twice) is reported."""
    row = next(r for r in raw_rows(filled, "chain") if r["ref"] == "b1")
    raw_sql(filled, "INSERT INTO chain (customer_id, seq, kind, ref, at, detail, prev_hash, hash) "
                    "VALUES ('A', 99, 'message', 'b1', :at, NULL, :p, :h)",
            at=row["at"], p=row["prev_hash"], h=row["hash"])
    assert any("message b1 appears more than once in the chains" in p
               for p in _problems(filled))


def test_verify_cli_reports_key_tampering_as_json(filled: Record, record_url: str) -> None:
    """`ccm record verify --json` on a deleted key lists the problem and exits 1."""
    raw_sql(filled, "DELETE FROM data_keys WHERE customer_id = 'B'")
    result = CliRunner().invoke(record_group, ["verify", "--json", "--record", record_url])
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert any("customer 'B'" in p and "message b1" in p for p in doc["problems"])


def test_a_blob_pointing_at_another_key_is_found(filled: Record) -> None:
    """A blob re-labelled with a key id that is not its customer's is reported."""
    ref = filled.get("b1").archive_ref
    raw_sql(filled, "UPDATE archive SET key_id = 'f00d' WHERE ref = :r", r=ref)
    assert any("customer 'B': archived content of message b1 refers to data key f00d" in p
               for p in _problems(filled))
