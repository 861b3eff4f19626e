"""The SQLite side of erasure: flushing the WAL, and the "erasure pending" mark.

Destroying a data key is one transaction (:meth:`ccm.record.Record.erase`).
On a SQLite file in WAL mode the old pages that held the key and the blobs
stay in the ``-wal`` file until a checkpoint copies the new pages into the
database and truncates the log. A checkpoint cannot finish while a reader
holds an older snapshot (an export, a report, a backup, a preview), so the
erase waits for readers, bounded by ``Record(erase_wait=...)`` seconds, then
either completes ``wal_checkpoint(TRUNCATE)`` or raises
:class:`~ccm.errors.ErasurePending` naming the processes that hold the
files. ``secure_delete=ON`` (set on every connection) zeroes freed cells and
pages, so once the checkpoint is done no byte of the key, blob or content is
left in the ``.db``, ``-wal`` or ``-shm`` file, freelist included
(``tests/record/test_erasure.py`` copies the three files and greps them).

The mark: an erase on a SQLite file writes ``erasure_pending:<hash>`` into
``ccm_meta`` in the erase transaction, and removes it once the checkpoint
completed. A crash or a busy reader in between leaves the mark, and
``ccm record erase --pending`` (:meth:`Record.finish_erasures`) finishes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ccm.errors import ErasurePending
from ccm.record.chain import utc
from ccm.record.schema import ERASURE_PENDING, ccm_meta, set_meta

if TYPE_CHECKING:
    from ccm.record.connect import Connected

__all__ = ["flush", "holders", "mark_pending", "named", "needs_flush", "pending"]

logger = logging.getLogger("ccm.record")

_PREFIX = ERASURE_PENDING
_POLL = 0.05


def named(customer_id: str) -> str:
    """A customer id for an error message: as it is, or quoted with escapes (``'X\\nY'``)
    when it holds a line break or a character a terminal would act on, so that an id
    typed (or stored) with them cannot fake a line of output."""
    return customer_id if customer_id.isprintable() else repr(customer_id)


def needs_flush(rec: Connected) -> bool:
    """Whether erasing on this record has a WAL to flush (a SQLite file)."""
    return rec.backend == "sqlite" and not rec._memory


def _mark_key(customer_id: str) -> str:
    return _PREFIX + hashlib.sha256(customer_id.encode("utf-8")).hexdigest()[:40]


def mark_pending(conn: sa.Connection, customer_id: str) -> None:
    """Mark the customer "erasure pending" (inside the erase transaction)."""
    value = json.dumps({"customer_id": customer_id, "at": datetime.now(UTC).isoformat()})
    set_meta(conn, **{_mark_key(customer_id): value})


def _marks(conn: sa.Connection) -> dict[str, tuple[str, datetime]]:
    """``{ccm_meta key: (customer_id, erased_at)}`` of every mark that can be read.

    A mark edited or damaged outside ccm is left out (with a warning): ``ccm
    record verify`` reports it, and it must not stop erasures from finishing.
    """
    out: dict[str, tuple[str, datetime]] = {}
    for key, value in conn.execute(
        sa.select(ccm_meta.c.key, ccm_meta.c.value).where(ccm_meta.c.key.startswith(_PREFIX))
    ):
        try:
            doc = json.loads(value)
            customer = doc["customer_id"]
            if not isinstance(customer, str):
                raise TypeError(customer)
            out[str(key)] = (customer, utc(datetime.fromisoformat(doc["at"])))
        except (ValueError, KeyError, TypeError):
            logger.warning("ccm_meta holds an erasure-pending mark that is not one ccm wrote; "
                           "left for `ccm record verify` to report")
    return out


def pending(conn: sa.Connection) -> dict[str, datetime]:
    """``{customer_id: erased_at}`` of every erasure whose flush is pending."""
    return dict(sorted(_marks(conn).values()))


def holders(path: Path) -> list[str]:
    """The processes that have the database, its ``-wal`` or ``-shm`` open (Linux ``/proc``)."""
    targets = set()
    for suffix in ("", "-wal", "-shm"):
        try:
            targets.add(os.path.realpath(f"{path}{suffix}"))
        except OSError:  # pragma: no cover - realpath of a plain path does not fail
            continue
    found: list[str] = []
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # another user's process, or gone
            continue
        open_files = set()
        for fd in fds:
            try:
                open_files.add(os.readlink(fd))
            except OSError:  # closed meanwhile (the listing's own descriptor)
                continue
        if open_files & targets:
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                name = "?"
            mine = " (this process)" if int(entry.name) == os.getpid() else ""
            found.append(f"process {entry.name} ({name}){mine}")
    return found


def _checkpoint(rec: Connected, wait: float) -> bool:
    """``wal_checkpoint(TRUNCATE)``, waiting up to ``wait`` seconds; True when it completed."""
    deadline = time.monotonic() + wait
    with rec._errors(), rec.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                raw.execute(f"PRAGMA busy_timeout = {int(remaining * 1000)}")
                try:
                    busy, _log, _done = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.OperationalError:
                    busy = 1
                if busy == 0:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL)
        finally:
            raw.execute(f"PRAGMA busy_timeout = {rec._busy_ms}")


def flush(rec: Connected, *, required: bool = False) -> bool:
    """Checkpoint and truncate the WAL, then clear every "erasure pending" mark.

    ``required``: raise :class:`ErasurePending` when readers hold the database
    past ``rec.erase_wait``; otherwise only log it. Returns whether it completed.
    """
    if not needs_flush(rec):
        return True
    if not _checkpoint(rec, rec.erase_wait):
        path = Path(str(rec._url.database)).expanduser()
        with rec._tx(write=False) as conn:
            waiting = pending(conn)
        held = holders(path)
        if not required:
            logger.warning("WAL checkpoint of %s deferred: readers hold it (%s)",
                           rec.where, ", ".join(held) or "unknown")
            return False
        names = ", ".join(map(named, waiting)) or "(none)"
        raise ErasurePending(
            f"erasure pending for customer(s) {names}: the data key is destroyed, but "
            f"readers held {path} for more than {rec.erase_wait:g} s, so old pages may "
            f"still be in {path.name} and {path.name}-wal; held by "
            f"{', '.join(held) or 'an unknown reader'}. "
            "When they are done, run: ccm record erase --pending",
            customers=list(waiting), holders=held, url=rec.where,
        )
    with rec._tx(write=True) as conn:
        marks = list(_marks(conn))
        if marks:
            conn.execute(ccm_meta.delete().where(ccm_meta.c.key.in_(marks)))
    # The mark's removal left a few frames of the ccm_meta page: fold them in too.
    _checkpoint(rec, 0)
    return True
