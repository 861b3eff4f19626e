"""Master keys: where they come from, what errors say, and that they never show."""

from __future__ import annotations

import base64
import pickle
import stat
from pathlib import Path

import pytest

from ccm.errors import KeyConfigError, RecordError
from ccm.record import MasterKey
from ccm.record.archive import new_data_key, open_blob, seal_blob

KEY = bytes(range(32))
TEXT = base64.urlsafe_b64encode(KEY).decode()


def test_from_env_reads_the_variable() -> None:
    """CCM_MASTER_KEY holds the URL-safe base64 of 32 bytes."""
    assert MasterKey.from_env({"CCM_MASTER_KEY": TEXT}) == MasterKey(KEY)


def test_from_env_reads_the_file(tmp_path: Path) -> None:
    """CCM_MASTER_KEY_FILE names a file holding the same text."""
    path = tmp_path / "master.key"
    path.write_text(TEXT + "\n")
    path.chmod(0o600)
    assert MasterKey.from_env({"CCM_MASTER_KEY_FILE": str(path)}) == MasterKey(KEY)


def test_missing_key_says_what_to_set() -> None:
    """With neither variable set the error names both and how to make a key."""
    with pytest.raises(KeyConfigError) as info:
        MasterKey.from_env({})
    message = str(info.value)
    assert "CCM_MASTER_KEY" in message and "CCM_MASTER_KEY_FILE" in message
    assert "base64" in message


@pytest.mark.parametrize("text", ["not base64 !!", base64.urlsafe_b64encode(b"short").decode()])
def test_malformed_key_is_refused(text: str) -> None:
    """A key that is not base64, or not 32 bytes, is a KeyConfigError naming its source."""
    with pytest.raises(KeyConfigError, match="CCM_MASTER_KEY"):
        MasterKey.from_env({"CCM_MASTER_KEY": text})


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    """A key file that does not exist is named in the error."""
    with pytest.raises(KeyConfigError, match=r"nope\.key"):
        MasterKey.from_file(tmp_path / "nope.key")


def test_generate_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    """generate_file writes a 0600 file that loads back, and refuses to replace one."""
    path = tmp_path / "master.key"
    key = MasterKey.generate_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert MasterKey.from_file(path) == key
    with pytest.raises(KeyConfigError, match="refusing to overwrite"):
        MasterKey.generate_file(path)
    assert MasterKey.from_file(path) == key


def test_readable_key_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A key file others can read still loads, with a warning."""
    path = tmp_path / "master.key"
    path.write_text(TEXT)
    path.chmod(0o644)
    MasterKey.from_file(path)
    assert "chmod 600" in caplog.text


def test_repr_never_shows_the_key() -> None:
    """repr and str show a fingerprint, never the key or its base64."""
    key = MasterKey(KEY)
    for shown in (repr(key), str(key)):
        assert TEXT not in shown and KEY.hex() not in shown
        assert key.fingerprint in shown


def test_key_survives_pickling() -> None:
    """A master key can be handed to a worker process."""
    key = MasterKey.generate()
    assert pickle.loads(pickle.dumps(key)) == key


def test_wrapped_data_key_is_bound_to_its_customer() -> None:
    """A wrapped data key opens for its customer only, and under its master key only."""
    master, data = MasterKey.generate(), new_data_key()
    wrapped = master.wrap(data, customer_id="C1")
    assert master.unwrap(wrapped, customer_id="C1") == data
    with pytest.raises(KeyConfigError, match="C2"):
        master.unwrap(wrapped, customer_id="C2")
    with pytest.raises(KeyConfigError):
        MasterKey.generate().unwrap(wrapped, customer_id="C1")


def test_blobs_are_bound_to_message_part_and_customer() -> None:
    """An archive blob moved to another message, part or customer fails authentication."""
    key = new_data_key()
    blob = seal_blob(key, b"content", message_id="m1", part="content", customer_id="C1")
    assert open_blob(key, blob, message_id="m1", part="content", customer_id="C1") == b"content"
    for where in ({"message_id": "m2"}, {"part": "archival"}, {"customer_id": "C2"}):
        args = {"message_id": "m1", "part": "content", "customer_id": "C1", **where}
        with pytest.raises(RecordError, match="failed authentication"):
            open_blob(key, blob, **args)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(RecordError):
        open_blob(key, tampered, message_id="m1", part="content", customer_id="C1")
