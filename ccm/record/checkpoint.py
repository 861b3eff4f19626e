"""Signed checkpoints: pin every chain's head so truncation and rollback show.

A hash chain proves that nothing in the middle changed; it cannot tell that
its newest entries were cut off, or that the whole database was replaced by
an older copy. A checkpoint records, at one moment, every customer's head
(seq and hash) and the row counts, signed with HMAC-SHA256 under a key kept
outside the record (``CCM_CHECKPOINT_KEY`` or a key file). The operator keeps
the file elsewhere (another machine, object storage with retention).

``verify --checkpoint`` then requires every pinned head to be present with
the same hash, and no count to have shrunk. Entries appended after the
checkpoint are fine; anything removed or rewritten up to it is not.

File format (JSON, one object)::

    {"format": "ccm-record-checkpoint/1", "created_at": "...",
     "schema_version": 1, "counts": {"chain": n, "messages": n, "events": n,
     "customers": n}, "heads": {"<customer>": [seq, "<hash>"], ...},
     "mac": "<hex HMAC-SHA256 of the canonical JSON of everything else>"}

About 100 bytes per customer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ccm._util import atomic_write
from ccm.errors import KeyConfigError, RecordError
from ccm.record import stored
from ccm.record.chain import canonical, iso
from ccm.record.schema import SCHEMA_VERSION, chain, events, messages

__all__ = [
    "ENV_CHECKPOINT_KEY",
    "FORMAT",
    "build",
    "check_key",
    "compare",
    "counts",
    "heads",
    "load_key",
    "pins",
    "read",
    "write",
]

FORMAT = "ccm-record-checkpoint/1"
ENV_CHECKPOINT_KEY = "CCM_CHECKPOINT_KEY"
_MIN_KEY = 16
_HOW = (
    f"set {ENV_CHECKPOINT_KEY} or pass a key file holding a secret of at least 32 characters "
    "(python -c \"import secrets; print(secrets.token_urlsafe(32))\"); keep it away from the record"
)


def load_key(key_file: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None) -> bytes:
    """The checkpoint key from ``key_file``, else ``CCM_CHECKPOINT_KEY``."""
    env = os.environ if env is None else env
    if key_file is not None:
        try:
            text = Path(key_file).read_text("utf-8").strip()
        except OSError as exc:
            raise KeyConfigError(f"cannot read checkpoint key file {key_file}: {exc.strerror}",
                                 path=str(key_file)) from None
    else:
        text = (env.get(ENV_CHECKPOINT_KEY) or "").strip()
        if not text:
            raise KeyConfigError(f"no checkpoint key: {_HOW}")
    return check_key(text.encode("utf-8"))


def check_key(key: bytes) -> bytes:
    """Refuse keys too short to sign with."""
    if len(key) < _MIN_KEY:
        raise KeyConfigError(f"the checkpoint key is too short ({len(key)} bytes); {_HOW}")
    return key


def counts(conn: sa.Connection) -> dict[str, int]:
    """Row counts a checkpoint pins."""
    def n(query: Any) -> int:
        return int(conn.execute(query).scalar_one())

    return {
        "chain": n(sa.select(sa.func.count()).select_from(chain)),
        "messages": n(sa.select(sa.func.count()).select_from(messages)),
        "events": n(sa.select(sa.func.count()).select_from(events)),
        "customers": n(sa.select(sa.func.count(sa.distinct(chain.c.customer_id)))),
    }


def heads(conn: sa.Connection) -> dict[str, tuple[int, str]]:
    """Every customer's newest chain entry: ``{customer: (seq, hash)}``.

    Read as untrusted (:mod:`ccm.record.stored`): a head whose customer, seq or
    hash is of the wrong type raises :class:`RecordError` naming it.
    """
    last = (
        sa.select(chain.c.customer_id, sa.func.max(chain.c.seq).label("seq"))
        .group_by(chain.c.customer_id)
        .subquery()
    )
    query = sa.select(
        stored.raw(chain.c.customer_id, "customer_id"), stored.raw(chain.c.seq, "seq"),
        stored.raw(chain.c.hash, "hash"),
    ).join(
        last, sa.and_(chain.c.customer_id == last.c.customer_id, chain.c.seq == last.c.seq)
    )
    out: dict[str, tuple[int, str]] = {}
    for cid, seq, digest in conn.execute(query):
        column = "customer_id"
        try:
            cid = stored.text(cid)
            column = "seq"
            seq = stored.whole(seq)
            column = "hash"
            out[cid] = (seq, stored.text(digest))
        except stored.Unreadable as exc:
            # A head that cannot be read cannot be pinned: signing around it would
            # vouch for a record verify calls tampered.
            raise RecordError(
                f"cannot sign a checkpoint: the newest chain entry of customer {cid!r} is "
                f"unreadable (chain.{column} {exc}; edited): run `ccm record verify`",
            ) from None
    return out


def _mac(doc: Mapping[str, Any], key: bytes) -> str:
    body = {k: v for k, v in doc.items() if k != "mac"}
    return hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


def build(conn: sa.Connection, key: bytes) -> dict[str, Any]:
    """A signed checkpoint of the record as ``conn`` sees it (one snapshot)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "created_at": iso(datetime.now(UTC)),
        "schema_version": SCHEMA_VERSION,
        "counts": counts(conn),
        "heads": {cid: [seq, digest] for cid, (seq, digest) in sorted(heads(conn).items())},
    }
    doc["mac"] = _mac(doc, check_key(key))
    return doc


def write(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> Path:
    """Write the checkpoint atomically."""
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write(path, text.encode("utf-8"))


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file; a file that is not one raises ValueError."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint {path} is not JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ccm record checkpoint ({FORMAT})")
    return doc


def pins(doc: Mapping[str, Any]) -> dict[str, int]:
    """``{customer: seq}`` of the heads a checkpoint pins."""
    return {str(cid): int(head[0]) for cid, head in (doc.get("heads") or {}).items()}


def compare(doc: Mapping[str, Any], key: bytes, *, pinned: Mapping[str, str],
            now_counts: Mapping[str, int]) -> list[str]:
    """Problems between a checkpoint and the record (empty: the record still holds it).

    ``pinned`` is what the scan found at each pinned ``(customer, seq)``.
    """
    if not hmac.compare_digest(str(doc.get("mac", "")), _mac(doc, check_key(key))):
        return ["the checkpoint's signature does not match: wrong key, or the checkpoint "
                "file was edited"]
    problems: list[str] = []
    when = doc.get("created_at", "?")
    for cid, head in sorted((doc.get("heads") or {}).items()):
        seq, digest = int(head[0]), str(head[1])
        found = pinned.get(cid)
        if found is None:
            problems.append(
                f"customer {cid!r} entry {seq}, pinned by the checkpoint of {when}, is gone "
                "(the chain was truncated, or the record rolled back to an older copy)"
            )
        elif found != digest:
            problems.append(
                f"customer {cid!r} entry {seq} differs from the checkpoint of {when} "
                "(rewritten since)"
            )
    for name, then in sorted((doc.get("counts") or {}).items()):
        now = now_counts.get(name, 0)
        if now < int(then):
            problems.append(
                f"the record has {now} {name} rows, fewer than the {then} in the checkpoint "
                f"of {when} (truncated, or rolled back to an older copy)"
            )
    return problems
