"""What ``verify`` checks about data keys: every key the entries refer to is the one committed.

Every message sealed with a customer's data key commits, in its chain
row's ``detail``, to the key id and the SHA-256 of the wrapped bytes; a
rotation's ``key`` entry commits to the new wrapping the same way. Verify
(no master key needed) then requires, for every customer whose chain committed
to a key after its last erasure, that the
``data_keys`` row is there, is a whole wrapped key (60 bytes, not zeroed)
and is exactly the committed one; and that every archive blob refers to its
customer's live key. A key row deleted, zeroed, truncated, swapped with
another customer's or replaced is reported as tampering, naming the customer
and the entries whose content it makes unreadable.

Records written before key entries existed have no commitments: for them
verify still finds a missing, zeroed or truncated key, not a swapped one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Container
from dataclasses import dataclass, field

import sqlalchemy as sa

from ccm.record import stored
from ccm.record.schema import archive, data_keys

__all__ = ["WRAPPED_LEN", "KeyWatch"]

#: A wrapped data key: 12-byte nonce, 32-byte key, 16-byte tag.
WRAPPED_LEN = 60
_SHOWN = 5


@dataclass
class KeyWatch:
    """Per customer, while the chains are walked: the key committed to and the sealed entries."""

    committed: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    sealed: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def key(self, customer_id: str, key_id: str | None, detail: str | None) -> bool:
        """A commitment to a key (a ``key`` entry, or a sealed message's detail).

        False when ``detail`` is not a commitment.
        """
        try:
            doc = json.loads(detail or "")
            digest = doc["wrapped_sha256"]
        except (ValueError, KeyError, TypeError):
            return False
        self.committed[customer_id] = (str(doc.get("key_id", key_id)), str(digest))
        return True

    def erasure(self, customer_id: str) -> None:
        self.committed[customer_id] = None
        self.sealed[customer_id] = []

    def message(self, customer_id: str, seq: int, message_id: str) -> None:
        self.sealed.setdefault(customer_id, []).append((seq, message_id))

    def _affected(self, customer_id: str) -> str:
        items = self.sealed.get(customer_id) or []
        if not items:
            return "no archived entry affected"
        shown = ", ".join(f"entry {seq} (message {mid})" for seq, mid in items[:_SHOWN])
        more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
        return f"{len(items)} entr{'y' if len(items) == 1 else 'ies'} affected: {shown}{more}"

    def check(self, conn: sa.Connection, chained: Container[str],
              add: Callable[[str], None]) -> None:
        """Compare the ``data_keys`` rows with the commitments; ``add`` each problem.

        ``chained``: the customers with entries. Values are read raw and checked
        for their type (:mod:`ccm.record.stored`): a key row holding text where its
        wrapped bytes should be is reported, not a crash.
        """
        rows: dict[str, tuple[str, int, bool, str] | str] = {}
        for raw_cid, raw_key_id, raw_wrapped in conn.execution_options(yield_per=2000).execute(
            sa.select(stored.raw(data_keys.c.customer_id, "customer_id"),
                      stored.raw(data_keys.c.key_id, "key_id"),
                      stored.raw(data_keys.c.wrapped, "wrapped"))
        ):
            cid = raw_cid if isinstance(raw_cid, str) else str(raw_cid)
            try:
                key_id = stored.text(raw_key_id)
            except stored.Unreadable as exc:
                rows[cid] = f"its data key row is unreadable: data_keys.key_id {exc}"
                continue
            try:
                raw = stored.blob(raw_wrapped)
            except stored.Unreadable as exc:
                rows[cid] = f"its data key row is unreadable: data_keys.wrapped {exc}"
                continue
            rows[cid] = (key_id, len(raw), not raw.strip(b"\x00"),
                         hashlib.sha256(raw).hexdigest())
        reported: set[str] = set()
        for cid in sorted(set(rows) | {c for c, v in self.committed.items() if v}):
            problem = self._problem(cid, rows.get(cid), self.committed.get(cid, "legacy"),
                                    cid in chained)
            if problem:
                add(f"customer {cid!r}: {problem} (tampered); {self._affected(cid)}")
                reported.add(cid)
        orphans = (
            sa.select(archive.c.customer_id, archive.c.message_id, archive.c.key_id)
            .select_from(archive.outerjoin(data_keys, sa.and_(
                data_keys.c.customer_id == archive.c.customer_id,
                data_keys.c.key_id == archive.c.key_id)))
            .where(data_keys.c.customer_id.is_(None))
            .order_by(archive.c.customer_id, archive.c.message_id)
        )
        for cid, message_id, key_id in conn.execute(orphans):
            if cid not in reported:
                add(f"customer {cid!r}: archived content of message {message_id} refers to "
                    f"data key {key_id}, which is not the customer's key (deleted or swapped; "
                    "tampered)")

    @staticmethod
    def _problem(cid: str, row: tuple[str, int, bool, str] | str | None,
                 committed: tuple[str, str] | str | None, in_chain: bool) -> str | None:
        if row is None:
            if isinstance(committed, tuple):
                return "its data key row was deleted, but its chain has no erasure"
            return None
        if isinstance(row, str):
            return row
        key_id, length, zeroed, digest = row
        if zeroed:
            return "its data key row was zeroed"
        if length != WRAPPED_LEN:
            return (f"its data key row was truncated or altered ({length} bytes; a wrapped "
                    f"key has {WRAPPED_LEN})")
        if committed is None:
            return "a data key row exists after its erasure (inserted, or restored from a copy)"
        if committed == "legacy":
            return None if in_chain else "a data key row exists for a customer with no entries"
        assert isinstance(committed, tuple)
        if committed[0] != key_id or committed[1] != digest:
            return ("its data key row is not the one its chain committed to (swapped with "
                    "another customer's, or replaced)")
        return None

