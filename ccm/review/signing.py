"""Ed25519 keys that sign proof manifests: made, loaded and fingerprinted.

The private key lives outside the repository (``--key FILE`` or
``CCM_PROOF_KEY_FILE``); :func:`load_private_key` refuses one inside a
folder it is told to avoid (the packs, the templates, the proof, the repo).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccm.errors import KeyConfigError

__all__ = [
    "KEY_FILE_ENV",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "public_key_fingerprint",
]

#: Environment variable naming the Ed25519 private key file that signs proofs.
KEY_FILE_ENV = "CCM_PROOF_KEY_FILE"


def generate_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Create a new Ed25519 signing key at ``path`` (PEM, mode 0600) and ``path.pub``.

    Never overwrites: an existing file raises :class:`KeyConfigError`.
    """
    target = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyConfigError(f"{target}: already exists; not overwriting a key",
                             path=str(target)) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key()
    pub_path = target.with_name(target.name + ".pub")
    pub_path.write_bytes(_public_pem(public))
    return public


def _public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_fingerprint(public: Ed25519PublicKey) -> str:
    """``sha256:<base64>`` of the raw public key (short enough to read out on a call)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def load_private_key(
    path: str | os.PathLike[str] | None = None, *, forbidden: Sequence[Path] = ()
) -> Ed25519PrivateKey:
    """Load the signing key from ``path``, else ``$CCM_PROOF_KEY_FILE``.

    Refuses a key readable by group or others, and a key inside any of the
    ``forbidden`` folders (the packs, templates, output, or the repository
    holding them): a key that travels with the sources proves nothing.
    """
    given = path if path is not None else os.environ.get(KEY_FILE_ENV)
    if not given:
        raise KeyConfigError(
            f"no proof signing key: pass --key FILE or set {KEY_FILE_ENV} "
            "(create one with: ccm proof --generate-key FILE, outside the repository)"
        )
    target = Path(given).expanduser().resolve()
    for folder in forbidden:
        if target.is_relative_to(folder.resolve()):
            raise KeyConfigError(
                f"{target}: the signing key is inside {folder}; keep it outside the repository",
                path=str(target),
            )
    try:
        mode = target.stat().st_mode
        data = target.read_bytes()
    except OSError as exc:
        raise KeyConfigError(f"{target}: cannot read the signing key: {exc.strerror}",
                             path=str(target)) from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyConfigError(
            f"{target}: the signing key is readable by others; run: chmod 600 {target}",
            path=str(target),
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyConfigError(f"{target}: not an unencrypted PEM private key",
                             path=str(target)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyConfigError(f"{target}: not an Ed25519 key", path=str(target))
    return key


def load_public_key(source: Ed25519PublicKey | bytes | str | os.PathLike[str]) -> Ed25519PublicKey:
    """A public key from a key object, PEM bytes, 32 raw bytes, or a PEM file's path."""
    if isinstance(source, Ed25519PublicKey):
        return source
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        if len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyConfigError("not an Ed25519 public key (PEM or 32 raw bytes)") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyConfigError("not an Ed25519 public key")
    return key


