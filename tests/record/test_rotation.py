"""Key management: a KMS-like provider gives the master key; rotate-key re-wraps every data key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ccm.cli.record import record as record_group
from ccm.errors import KeyConfigError
from ccm.record import MasterKey, Record

from ._support import T0, entry, raw_rows


@pytest.fixture
def old() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def filled(record_url: str, old: MasterKey) -> Record:
    """Customers A and B with archived letters, C erased (no key left to re-wrap)."""
    rec = Record(record_url, master_key=old)
    rec.append(entry("A", message_id="a1", created_at=T0), content=b"letter a1")
    rec.append(entry("B", message_id="b1", created_at=T0), content=b"letter b1",
               archival=b"%PDF-1.7 b1")
    rec.append(entry("C", message_id="c1", created_at=T0), content=b"letter c1")
    rec.erase("C")
    yield rec
    rec.close()


def test_rotation_rewraps_every_live_key_and_the_old_key_opens_nothing(
    filled: Record, record_url: str, old: MasterKey
) -> None:
    """After rotate_key, every wrapped key opens under the new key only, content reads back
    unchanged, verify passes, and opening the record with the old key is refused."""
    new = MasterKey.generate()
    assert filled.rotate_key(new) == 2
    rows = raw_rows(filled, "data_keys")
    assert {r["customer_id"] for r in rows} == {"A", "B"}
    for row in rows:
        with pytest.raises(KeyConfigError):
            old.unwrap(bytes(row["wrapped"]), customer_id=row["customer_id"])
        assert len(new.unwrap(bytes(row["wrapped"]), customer_id=row["customer_id"])) == 32
    assert filled.content("a1") == b"letter a1" and filled.archival("b1") == b"%PDF-1.7 b1"
    assert filled.verify().ok
    with pytest.raises(KeyConfigError, match=new.fingerprint):
        Record(record_url, master_key=old)
    again = Record(record_url, master_key=new)
    assert again.content("b1") == b"letter b1"
    again.append(entry("A", message_id="a2"), content=b"after rotation")
    assert again.content("a2") == b"after rotation" and again.verify().ok
    again.close()


def test_an_interrupted_rotation_is_finished_by_running_it_again(
    filled: Record, old: MasterKey
) -> None:
    """A rotation rerun with the same keys skips what is done and completes the rest."""
    new = MasterKey.generate()
    filled.rotate_key(new)
    filled.master_key = old  # as a rerun that starts from the old key would
    assert filled.rotate_key(new) == 0
    assert filled.content("a1") == b"letter a1"


def test_rotating_to_the_same_key_is_refused(filled: Record, old: MasterKey) -> None:
    """The new key must differ from the current one."""
    with pytest.raises(KeyConfigError, match="is the current one"):
        filled.rotate_key(old)


def test_master_key_from_a_provider(filled: Record, record_url: str, old: MasterKey) -> None:
    """A KMS-like callable returning the key (object, bytes or text) opens the record."""
    for provider in (lambda: old, lambda: old.text(), lambda: old._key):
        rec = Record(record_url, master_key=provider)
        assert rec.content("a1") == b"letter a1"
        rec.close()


def test_a_failing_provider_is_a_key_error_that_does_not_echo_it(record_url: str) -> None:
    """A provider that fails or returns junk is a KeyConfigError naming the provider only."""
    def kms() -> str:
        raise RuntimeError("token s3cr3t expired")

    with pytest.raises(KeyConfigError) as info:
        Record(record_url, master_key=kms)
    assert "kms" in str(info.value) and "s3cr3t" not in str(info.value)
    with pytest.raises(KeyConfigError, match="returned 3 bytes"):
        Record(record_url, master_key=lambda: b"abc")


def test_rotate_key_command(filled: Record, record_url: str, old: MasterKey,
                            tmp_path: Path) -> None:
    """`ccm record rotate-key --new-key-file` re-wraps; the old key then reads nothing."""
    new_file = tmp_path / "new.key"
    new = MasterKey.generate_file(new_file)
    runner = CliRunner()
    result = runner.invoke(record_group, ["rotate-key", "--new-key-file", str(new_file),
                                          "--record", record_url],
                           env={"CCM_MASTER_KEY": old.text(), "CCM_MASTER_KEY_FILE": ""})
    assert result.exit_code == 0, result.output
    assert f"re-wrapped 2 data key(s) under master key {new.fingerprint}" in result.output
    out = tmp_path / "a1.eml"
    stale = runner.invoke(record_group, ["show", "a1", "--content", str(out),
                                         "--record", record_url],
                          env={"CCM_MASTER_KEY": old.text(), "CCM_MASTER_KEY_FILE": ""})
    assert stale.exit_code == 1 and new.fingerprint in stale.output and not out.exists()
    fresh = runner.invoke(record_group, ["show", "a1", "--content", str(out),
                                         "--record", record_url],
                          env={"CCM_MASTER_KEY": "", "CCM_MASTER_KEY_FILE": str(new_file)})
    assert fresh.exit_code == 0, fresh.output
    assert out.read_bytes() == b"letter a1"


def test_rotate_key_needs_the_current_key(filled: Record, record_url: str,
                                          tmp_path: Path) -> None:
    """Without the current master key, rotate-key is a one-line error (exit 1)."""
    new_file = tmp_path / "new.key"
    MasterKey.generate_file(new_file)
    result = CliRunner().invoke(record_group, ["rotate-key", "--new-key-file", str(new_file),
                                               "--record", record_url],
                                env={"CCM_MASTER_KEY": "", "CCM_MASTER_KEY_FILE": ""})
    assert result.exit_code == 1
    assert "rotating needs the current master key" in result.output
