"""The master key: where it comes from, and wrapping per-customer data keys with it.

The master key never enters the record. It comes from ``CCM_MASTER_KEY``
(URL-safe base64 of 32 random bytes) or from the file named by
``CCM_MASTER_KEY_FILE`` (the same text). It only wraps data keys
(AES-256-GCM, the customer id as associated data, so a wrapped key moved to
another customer does not open); the content itself is encrypted under the
per-customer data key (see :mod:`ccm.record.archive`).

Key management: a deployment that keeps the master key in a KMS or a
secrets manager passes a *provider*, a callable that returns the key (a
:class:`MasterKey`, 32 raw bytes, or the base64 text), as ``master_key=``;
:func:`resolve_key` calls it once when the record opens. Rotation
(:meth:`ccm.record.Record.rotate_key`) re-wraps every live data key under a
new master key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccm.errors import KeyConfigError

__all__ = ["ENV_KEY", "ENV_KEY_FILE", "KeyProvider", "KeySource", "MasterKey", "resolve_key"]

logger = logging.getLogger("ccm.record")

ENV_KEY = "CCM_MASTER_KEY"
ENV_KEY_FILE = "CCM_MASTER_KEY_FILE"
_HOW = (
    f"set {ENV_KEY} to the URL-safe base64 of 32 random bytes "
    "(python -c \"import secrets, base64; "
    "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())\"), "
    f"or {ENV_KEY_FILE} to a file holding that text (MasterKey.generate_file makes one)"
)
_NONCE = 12
_WRAP_AAD = b"ccm/record/data-key/v1\x00"


class MasterKey:
    """A 32-byte AES key that wraps the record's per-customer data keys.

    ``repr`` shows only a short fingerprint, never the key.
    """

    __slots__ = ("_aead", "_fingerprint", "_key")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise KeyConfigError(f"a master key is exactly 32 bytes; {_HOW}")
        self._key = key
        self._aead = AESGCM(key)
        self._fingerprint = hmac.new(key, b"ccm/record/key-check/v1",
                                     hashlib.sha256).hexdigest()[:16]

    # -- where keys come from ------------------------------------------------

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random key in memory (tests, throwaway records)."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_text(cls, text: str, *, source: str = "key") -> MasterKey:
        """Decode the URL-safe base64 text form; ``source`` names where it came from."""
        cleaned = text.strip()
        try:
            raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            raise KeyConfigError(f"{source} is not a ccm master key (not URL-safe base64); "
                                 f"{_HOW}",
                                 source=source) from None
        if len(raw) != 32:
            raise KeyConfigError(
                f"{source} decodes to {len(raw)} bytes, not 32; {_HOW}", source=source
            )
        return cls(raw)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MasterKey:
        """From ``CCM_MASTER_KEY``, else the file named by ``CCM_MASTER_KEY_FILE``."""
        env = os.environ if env is None else env
        text = env.get(ENV_KEY)
        if text:
            return cls.from_text(text, source=ENV_KEY)
        path = env.get(ENV_KEY_FILE)
        if path:
            return cls.from_file(path)
        raise KeyConfigError(f"no master key: {_HOW}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MasterKey:
        """Read the base64 text form from ``path``; warns when others can read the file."""
        target = Path(path)
        try:
            text = target.read_text("ascii")
            mode = target.stat().st_mode
        except FileNotFoundError:
            raise KeyConfigError(f"master key file {target} does not exist; {_HOW}",
                                 path=str(target)) from None
        except UnicodeDecodeError:
            raise KeyConfigError(f"master key file {target} is not a ccm master key (it "
                                 f"holds more than base64 text); {_HOW}",
                                 path=str(target)) from None
        except OSError as exc:
            raise KeyConfigError(f"cannot read master key file {target}: "
                                 f"{exc.strerror or type(exc).__name__}",
                                 path=str(target)) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("master key file %s is readable by others; chmod 600 it", target)
        return cls.from_text(text, source=f"master key file {target}")

    @classmethod
    def generate_file(cls, path: str | os.PathLike[str]) -> MasterKey:
        """Create a new key file (mode 0600); refuses to overwrite an existing one.

        Overwriting a key file would make everything archived under it
        unreadable, so an existing file is an error, not a replacement.
        """
        target = Path(path)
        key = cls.generate()
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyConfigError(
                f"master key file {target} already exists; refusing to overwrite it "
                "(archived content would become unreadable)", path=str(target)
            ) from None
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key.text() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return key

    def __reduce__(self) -> tuple[type[MasterKey], tuple[bytes]]:
        # Pickled (handed to a worker process) as its 32 bytes; the cipher is remade there.
        return (MasterKey, (self._key,))

    def text(self) -> str:
        """The URL-safe base64 form (what ``CCM_MASTER_KEY`` holds). Handle with care."""
        return base64.urlsafe_b64encode(self._key).decode("ascii")

    # -- use -------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """A public check value (16 hex digits): tells keys apart, reveals nothing of them."""
        return self._fingerprint

    def wrap(self, data_key: bytes, *, customer_id: str, nonce: bytes | None = None) -> bytes:
        """Encrypt a data key for ``customer_id``: ``nonce || ciphertext+tag``.

        ``nonce`` (12 random bytes) lets a bulk caller draw many at once; by
        default a fresh one is drawn here.
        """
        if nonce is None:
            nonce = secrets.token_bytes(_NONCE)
        elif len(nonce) != _NONCE:
            raise ValueError("a wrapping nonce is 12 bytes")
        return nonce + self._aead.encrypt(nonce, data_key, _aad(customer_id))

    def wrap_many(self, data_keys: Iterable[bytes], customer_ids: Iterable[str],
                  nonces: Iterable[bytes]) -> list[bytes]:
        """:meth:`wrap` of many data keys with nonces drawn by the caller (bulk appends).

        ``wrap_many(keys, customers, nonces)[i] == wrap(keys[i], customer_id=customers[i],
        nonce=nonces[i])``; every nonce is 12 bytes.
        """
        nonces = list(nonces)
        if any(len(nonce) != _NONCE for nonce in nonces):
            raise ValueError("a wrapping nonce is 12 bytes")
        seal = self._aead.encrypt
        return [nonce + seal(nonce, key, _aad(customer))
                for key, customer, nonce in zip(data_keys, customer_ids, nonces, strict=True)]

    def unwrap(self, wrapped: bytes, *, customer_id: str) -> bytes:
        """Decrypt a wrapped data key; a wrong key or customer raises KeyConfigError."""
        try:
            return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _aad(customer_id))
        except InvalidTag:
            raise KeyConfigError(
                f"the master key (fingerprint {self.fingerprint}) does not open the data key "
                f"of customer {customer_id}: wrong master key, or the key row was altered",
                customer_id=customer_id,
            ) from None

    def __repr__(self) -> str:
        return f"MasterKey(fingerprint={self.fingerprint!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MasterKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.fingerprint)


#: A KMS-like callable that hands over the master key (object, raw bytes or base64 text).
KeyProvider: TypeAlias = Callable[[], "MasterKey | bytes | str"]
#: What ``master_key=`` accepts: a key, or a provider called once when the record opens.
KeySource: TypeAlias = "MasterKey | KeyProvider"


def resolve_key(source: KeySource | None) -> MasterKey | None:
    """The master key behind ``source``: the key itself, or what a provider returns.

    A provider that fails or returns something that is not a 32-byte key
    raises :class:`KeyConfigError` (its own message is not repeated: it may
    hold secrets).
    """
    if source is None or isinstance(source, MasterKey):
        return source
    if not callable(source):
        raise KeyConfigError("master_key must be a MasterKey or a callable that returns one")
    name = getattr(source, "__qualname__", type(source).__name__)
    try:
        value = source()
    except Exception as exc:  # a provider's own failure (network, permissions, ...)
        raise KeyConfigError(f"the master key provider {name} failed "
                             f"({type(exc).__name__})", provider=name) from None
    if isinstance(value, MasterKey):
        return value
    if isinstance(value, bytes):
        if len(value) != 32:
            raise KeyConfigError(f"the master key provider {name} returned {len(value)} "
                                 f"bytes, not 32; {_HOW}", provider=name)
        return MasterKey(value)
    if isinstance(value, str):
        return MasterKey.from_text(value, source=f"the master key provider {name}")
    raise KeyConfigError(f"the master key provider {name} returned "
                         f"{type(value).__name__}, not a key", provider=name)


def _aad(customer_id: str) -> bytes:
    return _WRAP_AAD + customer_id.encode("utf-8")
