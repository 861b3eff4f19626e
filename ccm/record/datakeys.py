"""Per-customer data keys: made on first use, opened to read content, re-wrapped, destroyed.

:class:`DataKeys` is the part of :class:`~ccm.record.Record` that holds the
keys' life cycle:

* made: the first archived message of a customer creates a random data key
  and stores it wrapped by the master key; every message sealed with it
  commits to the key id and the wrapped bytes' digest in its chain row
  (``detail``), so ``verify`` notices a key row that was deleted, zeroed,
  swapped or truncated;
* opened: :meth:`content` and :meth:`archival` unwrap it and decrypt a blob;
  a key or blob that fails its integrity check raises
  :class:`~ccm.errors.ContentTampered`, never "locked" or "not archived";
* re-wrapped: :meth:`rotate_key` moves every live data key under a new
  master key (resumable; the old key opens nothing afterwards);
* destroyed: :meth:`erase` crypto-shreds a customer, all or nothing (see
  :mod:`ccm.record.erasure` for the SQLite WAL side).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from ccm.errors import (
    AlreadyErased,
    ContentErased,
    ContentTampered,
    CustomerNotFound,
    KeyConfigError,
    RecordError,
)
from ccm.record import erasure as wal
from ccm.record.archive import open_blob
from ccm.record.chain import canonical, link, utc
from ccm.record.connect import Connected, slices
from ccm.record.entries import Entry, get_entry
from ccm.record.keys import KeySource, MasterKey, resolve_key
from ccm.record.schema import (
    archive,
    chain,
    data_keys,
    messages,
    meta_value,
    outbox,
    set_meta,
)

__all__ = ["WRAPPED_LEN", "DataKeys", "Erasure", "key_detail"]

logger = logging.getLogger("ccm.record")

_HEX = re.compile(r"[0-9a-f]*")
#: A wrapped data key: 12-byte nonce, 32-byte key, 16-byte tag.
WRAPPED_LEN = 60
#: Customers re-wrapped per transaction by a rotation (PostgreSQL's lock table is finite).
_ROTATE_CHUNK = 200


def key_detail(key_id: str, wrapped: bytes, master: MasterKey) -> str:
    """A chain row's commitment to a data key: its id, the wrapped bytes' digest, the master."""
    if not _HEX.fullmatch(key_id):  # ids this record made are hex; anything else, canonically
        return canonical({"key_id": key_id, "master": master.fingerprint,
                          "wrapped_sha256": hashlib.sha256(wrapped).hexdigest()}).decode("utf-8")
    # canonical() of the same three hex strings, assembled directly (tested equal).
    return (f'{{"key_id":"{key_id}","master":"{master.fingerprint}",'
            f'"wrapped_sha256":"{hashlib.sha256(wrapped).hexdigest()}"}}')


@dataclass(frozen=True)
class Erasure:
    """What :meth:`Record.erase` did: the key destroyed, blobs deleted, bytes flushed.

    ``flushed`` is true when no old page can remain in the SQLite WAL (always
    true on PostgreSQL and in memory: see docs/privacy.md for what they keep).
    ``unsendable`` counts the customer's messages that were waiting in the
    outbox (``queued``): their content and recipient can no longer be read, so
    the erasure marked them ``failed`` ("the customer was erased") in its own
    transaction. ``in_review`` counts those in ``review`` (a send whose outcome
    is unknown): they stay for a person to resolve. ``finished_pending`` is
    true when the customer had been erased before and this call only finished
    that erasure's flush (``at`` is then the earlier erasure's time).
    """

    customer_id: str
    at: datetime
    data_key_destroyed: bool
    blobs_deleted: int
    flushed: bool = True
    unsendable: int = 0
    in_review: int = 0
    finished_pending: bool = False


class DataKeys(Connected):
    """Data keys, reading archived content, key rotation and erasure."""

    # -- keys ---------------------------------------------------------------------

    def _data_key(self, conn: sa.Connection, customer_id: str) -> tuple[str, bytes, str]:
        """The customer's data key (made and wrapped on first use), inside the write lock.

        Returns ``(key_id, key, commitment)``: the commitment (:func:`key_detail`)
        goes into the chain row of the message sealed with it.
        """
        return self._data_keys(conn, [customer_id])[customer_id]

    def _data_keys(
        self, conn: sa.Connection, customer_ids: Iterable[str]
    ) -> dict[str, tuple[str, bytes, str]]:
        """:meth:`_data_key` of many customers, inside the write lock, in few statements.

        One read per slice of customers finds the keys that exist; the keys of
        new customers are made and inserted in one statement (batch runs: a
        chunk of new customers costs one ``executemany``, not three statements
        per customer).
        """
        from ccm.record.bulk import data_keys_of

        return data_keys_of(self, conn, list(customer_ids))

    @staticmethod
    def _erased(conn: sa.Connection, customer_id: str) -> datetime | None:
        at = conn.execute(
            sa.select(sa.func.max(chain.c.at))
            .where(chain.c.customer_id == customer_id, chain.c.kind == "erasure")
        ).scalar_one_or_none()
        if isinstance(at, str):  # SQLite loses the type of an aggregate
            at = datetime.fromisoformat(at)
        return utc(at) if at is not None else None

    # -- reading content ------------------------------------------------------------

    def _part(self, conn: sa.Connection, entry: Entry, part: str) -> bytes | None:
        """Decrypt one archived part; ``None`` when that part was never archived."""
        digest = entry.content_sha256 if part == "content" else entry.archival_sha256
        if entry.archive_ref is None:
            if part == "archival":
                return None
            raise RecordError(
                f"message {entry.message_id} has no archived content "
                + ("(it was suppressed)" if entry.status != "generated"
                   else "(the record was written without a master key)"),
                message_id=entry.message_id,
            )
        blob = conn.execute(
            sa.select(archive.c.blob, archive.c.key_id)
            .where(archive.c.ref == entry.archive_ref, archive.c.part == part)
        ).first()
        erased = self._erased(conn, entry.customer_id)
        if blob is None:
            if part == "archival" and digest is None:
                return None
            if erased is not None:
                raise ContentErased(
                    f"the {part} of message {entry.message_id} was erased with customer "
                    f"{entry.customer_id}'s data key on {erased.date().isoformat()}",
                    message_id=entry.message_id, customer_id=entry.customer_id,
                )
            raise ContentTampered(
                f"the archived {part} of message {entry.message_id} is missing although "
                f"customer {entry.customer_id} was never erased: tampered (run ccm record "
                "verify)", message_id=entry.message_id, customer_id=entry.customer_id)
        if self.master_key is None:
            raise KeyConfigError(
                "this record archives content: set CCM_MASTER_KEY or CCM_MASTER_KEY_FILE "
                "(or pass master_key=) to read it", message_id=entry.message_id,
            )
        key_row = conn.execute(
            sa.select(data_keys.c.key_id, data_keys.c.wrapped)
            .where(data_keys.c.customer_id == entry.customer_id)
        ).first()
        if key_row is None or key_row.key_id != blob.key_id:
            what = "is missing" if key_row is None else "is not the one its content was sealed with"
            raise ContentTampered(
                f"the data key of customer {entry.customer_id} {what}: message "
                f"{entry.message_id} is tampered and cannot be opened (run ccm record verify)",
                message_id=entry.message_id, customer_id=entry.customer_id)
        key = self._keys.get(key_row.key_id)
        if key is None:
            try:
                key = self._cache(key_row.key_id, self.master_key.unwrap(
                    bytes(key_row.wrapped), customer_id=entry.customer_id))
            except KeyConfigError:
                raise ContentTampered(
                    f"the data key of customer {entry.customer_id} fails its integrity check "
                    f"under this record's master key: message {entry.message_id} is tampered "
                    "and cannot be opened (run ccm record verify)",
                    message_id=entry.message_id, customer_id=entry.customer_id) from None
        try:
            return open_blob(key, bytes(blob.blob), message_id=entry.message_id, part=part,
                             customer_id=entry.customer_id)
        except RecordError:
            raise ContentTampered(
                f"the archived {part} of message {entry.message_id} is tampered: it fails "
                "authentication (altered, or moved from another message; run ccm record verify)",
                message_id=entry.message_id, customer_id=entry.customer_id) from None

    def content(self, message_id: str) -> bytes:
        """The exact bytes generated for ``message_id`` (:class:`ContentErased` after erase).

        :class:`~ccm.errors.ContentTampered` when its key or blob fails the integrity check.
        """
        with self._tx(write=False) as conn:
            data = self._part(conn, get_entry(conn, message_id), "content")
        assert data is not None  # _part raises rather than return None for content
        return data

    def archival(self, message_id: str) -> bytes | None:
        """The archival copy (PDF/A) of ``message_id``, or ``None`` when none was made."""
        with self._tx(write=False) as conn:
            return self._part(conn, get_entry(conn, message_id), "archival")

    # -- rotation -------------------------------------------------------------------

    def rotate_key(self, new_key: KeySource) -> int:
        """Re-wrap every live data key under ``new_key``; returns how many were re-wrapped.

        The data keys themselves (and so every archived blob) stay as they
        are; only their wrapping changes, and each re-wrap is committed to the
        customer's chain. Afterwards the record's fingerprint is the new key's:
        the old master key opens nothing (opening the record with it is a
        :class:`~ccm.errors.KeyConfigError`). Runs in chunks of customers; an
        interrupted rotation is finished by running it again with the same
        keys. Writers should be stopped, or given the new key, meanwhile.
        """
        old = self.master_key
        new = resolve_key(new_key)
        if old is None or new is None:
            raise KeyConfigError("rotating needs the current master key (CCM_MASTER_KEY or "
                                 "CCM_MASTER_KEY_FILE) and the new one")
        if new == old:
            raise KeyConfigError("the new master key is the current one: make a new key "
                                 "(MasterKey.generate_file) and rotate to that")
        with self._tx(write=True, setup=True) as conn:
            known = meta_value(conn, "master_key_fingerprint")
            if known not in (None, old.fingerprint, new.fingerprint):
                raise KeyConfigError(f"the record's master key has fingerprint {known}, not "
                                     f"{old.fingerprint}: rotate with the record's key")
            set_meta(conn, master_key_rotating=new.fingerprint)
            customers = [c for (c,) in conn.execute(
                sa.select(data_keys.c.customer_id).order_by(data_keys.c.customer_id))]
        done = 0
        for part in slices(customers, _ROTATE_CHUNK):
            def work(conn: sa.Connection, p: Sequence[str] = part) -> int:
                return self._rewrap(conn, p, old, new)

            done += self._retrying(part, work)
        with self._tx(write=True, setup=True) as conn:
            set_meta(conn, master_key_fingerprint=new.fingerprint,
                     master_key_rotated_at=datetime.now(UTC).isoformat())
            conn.execute(sa.text("DELETE FROM ccm_meta WHERE key = 'master_key_rotating'"))
        self.master_key = new
        self._keys.clear()
        logger.info("re-wrapped %d data key(s) under master key %s", done, new.fingerprint)
        wal.flush(self)
        return done

    @staticmethod
    def _rewrap(conn: sa.Connection, customers: Sequence[str], old: MasterKey,
                new: MasterKey) -> int:
        done = 0
        for customer_id in customers:
            row = conn.execute(
                sa.select(data_keys.c.key_id, data_keys.c.wrapped)
                .where(data_keys.c.customer_id == customer_id)
            ).first()
            if row is None:  # erased meanwhile
                continue
            wrapped = bytes(row.wrapped)
            try:
                key = old.unwrap(wrapped, customer_id=customer_id)
            except KeyConfigError:
                new.unwrap(wrapped, customer_id=customer_id)  # done by an interrupted run?
                continue
            rewrapped = new.wrap(key, customer_id=customer_id)
            conn.execute(data_keys.update().where(data_keys.c.customer_id == customer_id)
                         .values(wrapped=rewrapped))
            link(conn, customer_id, "key", row.key_id, None,
                 key_detail(row.key_id, rewrapped, new))
            done += 1
        return done

    # -- erasure ----------------------------------------------------------------------

    def erase(self, customer_id: str) -> Erasure:
        """Crypto-shred a customer: destroy the data key and the blobs; the audit trail stays.

        All or nothing, and it says which:

        * the wrapped key is overwritten, then deleted, the blobs deleted, and
          an ``erasure`` entry appended to the customer's chain, in one
          transaction (verify still passes; the timeline shows when);
        * on a SQLite file the WAL is then checkpointed and truncated
          (``secure_delete`` zeroes the freed pages), waiting up to
          ``erase_wait`` seconds for readers; if they hold the database
          longer, :class:`~ccm.errors.ErasurePending` names them and the
          customer stays marked "erasure pending" until the next erase (or
          :meth:`finish_erasures`) completes the checkpoint.

        An unknown customer raises :class:`~ccm.errors.CustomerNotFound`; a
        customer erased before with nothing archived since raises
        :class:`~ccm.errors.AlreadyErased` (``erased_at``), unless that
        erasure is still pending: then this finishes it. New messages after
        an erasure get a new data key.
        """
        destroyed: list[str] = []
        done: dict[str, object] = {}
        pending_mark = wal.needs_flush(self)

        def work(conn: sa.Connection) -> None:
            known = conn.execute(
                sa.select(sa.exists().where(chain.c.customer_id == customer_id))
            ).scalar_one() or conn.execute(
                sa.select(sa.exists().where(messages.c.customer_id == customer_id))
            ).scalar_one()
            if not known:
                raise CustomerNotFound(
                    f"customer {wal.named(customer_id)} has no entry in the record at "
                    f"{self.where}: nothing to erase (check the id)", customer_id=customer_id)
            row = conn.execute(
                sa.select(data_keys.c.key_id, data_keys.c.wrapped)
                .where(data_keys.c.customer_id == customer_id)
            ).first()
            has_blobs = conn.execute(
                sa.select(sa.exists().where(archive.c.customer_id == customer_id))
            ).scalar_one()
            erased = self._erased(conn, customer_id)
            if row is None and not has_blobs and erased is not None:
                done["already"] = erased
                return
            if row is not None:
                conn.execute(data_keys.update().where(data_keys.c.customer_id == customer_id)
                             .values(wrapped=bytes(len(row.wrapped)), key_id="0" * 32))
                conn.execute(data_keys.delete().where(data_keys.c.customer_id == customer_id))
                destroyed.append(row.key_id)
            blobs = conn.execute(archive.delete().where(archive.c.customer_id == customer_id))
            count = int(blobs.rowcount or 0)
            detail = canonical({"data_key_destroyed": row is not None,
                                "blobs_deleted": count}).decode("utf-8")
            link(conn, customer_id, "erasure", None, None, detail)
            if pending_mark:
                wal.mark_pending(conn, customer_id)
            waiting = conn.execute(
                sa.select(outbox.c.message_id, outbox.c.state)
                .where(outbox.c.customer_id == customer_id,
                       outbox.c.state.in_(("queued", "review")))
                .order_by(outbox.c.message_id)
            ).all()
            # What waits to be sent can no longer be (its content and recipient were under
            # the key): failed here, in the erasure's transaction, as a sender would fail it,
            # so nothing of this customer is due afterwards. A message in review may have
            # been sent: a person decides (Outbox.resolve), as before.
            from ccm.record.outbox import ERASED, fail_queued

            moment = datetime.now(UTC)
            for message_id, state in waiting:
                if state == "queued":
                    fail_queued(conn, message_id, customer_id, moment, ERASED)
            done.update(destroyed=row is not None, blobs=count,
                        unsendable=sum(state == "queued" for _, state in waiting),
                        in_review=sum(state == "review" for _, state in waiting))

        self._retrying([customer_id], work)
        for key_id in destroyed:
            self._keys.pop(key_id, None)
        already = done.get("already")
        if isinstance(already, datetime):
            if pending_mark and customer_id in self.pending_erasures():
                wal.flush(self, required=True)
                return Erasure(customer_id, already, True, 0, True, finished_pending=True)
            raise AlreadyErased(
                f"customer {wal.named(customer_id)} was already erased on {already.isoformat()}; "
                "nothing was archived for them since", customer_id=customer_id,
                erased_at=already.isoformat())
        logger.info("erased customer %s (data key destroyed: %s)", customer_id, bool(destroyed))
        at = datetime.now(UTC)
        wal.flush(self, required=pending_mark)
        return Erasure(customer_id, at, bool(done.get("destroyed")),
                       int(str(done.get("blobs", 0))), True,
                       unsendable=int(str(done.get("unsendable", 0))),
                       in_review=int(str(done.get("in_review", 0))))

    def pending_erasures(self) -> dict[str, datetime]:
        """Customers whose erasure is pending (old bytes may be in the WAL), and since when."""
        with self._tx(write=False) as conn:
            return wal.pending(conn)

    def finish_erasures(self) -> list[str]:
        """Complete every pending erasure's checkpoint; returns the customers finished.

        Raises :class:`~ccm.errors.ErasurePending` when readers still hold the database.
        """
        waiting = sorted(self.pending_erasures())
        if waiting:
            wal.flush(self, required=True)
        return waiting
