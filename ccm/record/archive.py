"""Archive encryption: AES-256-GCM blobs under a per-customer data key.

Each customer gets one random 256-bit data key, stored only wrapped by the
master key (:class:`~ccm.record.keys.MasterKey`). Each blob is
``nonce (12 bytes) || ciphertext || tag`` with associated data binding it to
its message id, its part (``content`` or ``archival``) and its customer, so
a blob copied onto another message, part or customer fails to open.

Destroying the data key (:meth:`ccm.record.Record.erase`) makes every blob of
that customer unreadable even where a copy of the blob survives (a backup,
an old WAL frame): crypto-shredding.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccm.errors import RecordError

__all__ = ["PARTS", "SEALED_MIN", "aad", "aead", "new_data_key", "open_blob", "seal_blob"]

PARTS = ("content", "archival")
_NONCE = 12
#: The fewest bytes a sealed blob has: its nonce and its 16-byte tag (empty content).
SEALED_MIN = _NONCE + 16
_AAD = b"ccm/record/archive/v1\x00"


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return AESGCM.generate_key(bit_length=256)


def aad(message_id: str, part: str, customer_id: str) -> bytes:
    """The associated data that binds a blob to its message, part and customer."""
    return _AAD + f"{message_id}\x00{part}\x00{customer_id}".encode()


_aad = aad


def aead(data_key: bytes) -> AESGCM:
    """The AES-256-GCM cipher of a data key, to seal many blobs with (bulk appends).

    A blob sealed with it is ``nonce (12 random bytes) || encrypt(nonce, data, aad(...))``,
    exactly what :func:`seal_blob` makes.
    """
    if len(data_key) != 32:
        raise ValueError("a data key is 32 bytes (AES-256)")
    return AESGCM(data_key)


def seal_blob(data_key: bytes, plaintext: bytes, *, message_id: str, part: str,
              customer_id: str) -> bytes:
    """Encrypt one archived part of one message."""
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, _aad(message_id, part, customer_id))


def open_blob(data_key: bytes, blob: bytes, *, message_id: str, part: str,
              customer_id: str) -> bytes:
    """Decrypt a blob; an altered or misplaced blob raises :class:`RecordError`."""
    try:
        return AESGCM(data_key).decrypt(
            blob[:_NONCE], blob[_NONCE:], _aad(message_id, part, customer_id)
        )
    except InvalidTag:
        raise RecordError(
            f"archived {part} of message {message_id} failed authentication "
            "(altered, or moved from another message)",
            message_id=message_id,
        ) from None
