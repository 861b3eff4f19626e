"""The communication record: one code path over SQLite and PostgreSQL (SQLAlchemy Core).

Guarantees (tested; see docs/record.md):

* An append is one transaction holding the customer's lock: idempotency
  check, cap re-check, message row, archive blobs, chain link. It is durable
  when :meth:`Record.append` returns (SQLite WAL + ``synchronous=FULL``;
  PostgreSQL ``synchronous_commit=on``), and a crash leaves all of it or none.
* Locks: SQLite writes start with ``BEGIN IMMEDIATE`` (one writer at a time,
  the others wait up to the busy timeout); PostgreSQL takes
  ``pg_advisory_xact_lock`` on a hash of the customer id, so writers for
  different customers run side by side and two writers for one customer
  cannot both pass a cap.
* No personal data in clear beyond customer ids: content lives only in the
  ``archive`` table, AES-256-GCM under the customer's data key. Without a
  master key nothing is archived (``archive_ref`` stays NULL).

Logging (logger ``ccm.record``): DEBUG for each append and schema step,
INFO for schema creation, upgrades and erasures, WARNING for a key file
others can read. Nothing logged ever holds content or a key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.pool import StaticPool

from ccm.errors import (
    ConfigError,
    ContentErased,
    IdempotencyConflict,
    KeyConfigError,
    MessageNotFound,
    RecordError,
)
from ccm.record import checkpoint as checkpoints
from ccm.record import views
from ccm.record.archive import new_data_key, open_blob, seal_blob
from ccm.record.chain import (
    GENESIS,
    VerifyReport,
    canonical,
    event_body,
    link_hash,
    message_body,
    report,
    scan,
    utc,
)
from ccm.record.entries import (
    _ENTRY_FIELDS,
    _STR_FIELDS,
    EVENT_KINDS,
    OPT_OUT_KINDS,
    AppendResult,
    Entry,
    Event,
)
from ccm.record.keys import MasterKey
from ccm.record.policy import Cap
from ccm.record.schema import (
    SCHEMA_VERSION,
    archive,
    chain,
    check_version,
    data_keys,
    ensure_schema,
    events,
    messages,
    meta_value,
    read_version,
    set_meta,
)

__all__ = ["EVENT_KINDS", "AppendResult", "Entry", "Event", "Record", "open_record"]


logger = logging.getLogger("ccm.record")

_BUSY_MS = 30_000
_RETRIES = 3
#: Customers locked by one bulk transaction (PostgreSQL's lock table is finite).
_BULK_CUSTOMERS = 200
_KEY_CACHE = 4096


def _slices(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """``values`` in slices small enough for one ``IN (...)`` on every backend."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def open_record(url: str, *, master_key: MasterKey | None = None) -> Record:
    """Open (creating or upgrading) the record at ``url``."""
    return Record(url, master_key=master_key)


def parse_url(url: str | os.PathLike[str]) -> sa.URL:
    """The record's URL; a plain path (no ``scheme://``) means a SQLite file there."""
    text = os.fspath(url)
    if "://" not in text and text != "sqlite://":
        if not text.strip():
            raise ConfigError("the record URL is empty: give sqlite:///path/to/record.db, "
                              "a file path, or postgresql+psycopg://user@host/db", url="")
        return sa.URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        return sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError):
        shown = text.split("@")[-1]  # never a password
        raise ConfigError(
            f"record URL {shown!r} cannot be read: use sqlite:///path/to/record.db, a file "
            "path, or postgresql+psycopg://user@host/db", url=shown) from None


def _where(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _lock_id(customer_id: str) -> int:
    """A stable signed 64-bit advisory lock id for a customer (collisions only serialise)."""
    digest = hashlib.sha256(b"ccm/record/customer\x00" + customer_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_SETUP_LOCK = _lock_id("\x00schema")


def _must_exist(url: sa.URL, where: str) -> None:
    """Refuse a SQLite file that is not there (opening would create an empty record)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not Path(str(url.database)).expanduser().is_file():
        raise RecordError(f"no record at {where}: ccm render and ccm batch create one; "
                          "check --record or CCM_RECORD_URL", url=where)
    _sqlite_file(url, where, empty_ok=False)


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_file(url: sa.URL, where: str, *, empty_ok: bool) -> None:
    """Refuse a file that is not a SQLite database (SQLite would write into an empty one)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = Path(str(url.database)).expanduser()
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return  # absent (created next), or the driver names the problem
    if head == _SQLITE_MAGIC or (not head and empty_ok):
        return
    what = "an empty file" if not head else "not a SQLite database"
    raise RecordError(f"{where}: {what}, so not a ccm record; check --record or "
                      "CCM_RECORD_URL (a new record needs a path where no file is)", url=where)


def _create_engine(url: sa.URL) -> tuple[sa.Engine, bool]:
    """An engine with the record's durability settings; returns ``(engine, in_memory)``."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        memory = url.database in (None, "", ":memory:")
        if memory:
            engine = sa.create_engine(url, poolclass=StaticPool,
                                      connect_args={"check_same_thread": False})
        else:
            Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": _BUSY_MS / 1000})

        @sa_event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take BEGIN away from the sqlite3 module: we emit our own (below).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA secure_delete = ON")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @sa_event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            # Writers take the write lock up front: no read-then-upgrade deadlocks,
            # and the cap check and the insert see the same database.
            immediate = conn.get_execution_options().get("ccm_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine, memory
    if backend == "postgresql":
        engine = sa.create_engine(url, pool_pre_ping=True)

        @sa_event.listens_for(engine, "connect")
        def _pg_connect(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("SET synchronous_commit TO on")
            cursor.close()
            dbapi_conn.commit()  # a SET inside a rolled-back transaction would be undone

        return engine, False
    raise ConfigError(
        f"unsupported record URL {_where(url)}: use sqlite:///path/to/record.db or "
        "postgresql+psycopg://user@host/db",
        url=_where(url),
    )


class Record:
    """The communication record at ``url`` (``sqlite:///path``, a plain file path, or
    ``postgresql+psycopg://...``).

    Opening creates the schema, or upgrades an older one in place.
    ``master_key`` encrypts archived content; without one the record keeps
    every entry but no content. Thread-safe; open one per process.
    """

    def __init__(self, url: str | os.PathLike[str], *, master_key: MasterKey | None = None,
                 create: bool = True) -> None:
        self._url = parse_url(url)
        self.where = _where(self._url)
        if not create:
            _must_exist(self._url, self.where)
        else:
            _sqlite_file(self._url, self.where, empty_ok=True)
        self.master_key = master_key
        self._create = create
        self.engine, self._memory = _create_engine(self._url)
        self.backend = self._url.get_backend_name()
        # One shared connection in memory: serialise its users.
        self._serial: threading.RLock | None = threading.RLock() if self._memory else None
        self._keys: OrderedDict[str, bytes] = OrderedDict()
        try:
            self._open()
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Record({self.where!r})"

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    # -- transactions -----------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate driver failures (database down, locked too long) at the boundary."""
        try:
            yield
        except sa.exc.OperationalError as exc:
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise RecordError(f"record at {self.where}: {detail}", url=self.where) from exc

    @contextmanager
    def _tx(self, *, write: bool, customers: Iterable[str] = (),
            setup: bool = False) -> Iterator[sa.Connection]:
        """One transaction; a write one holds the customers' locks (or the setup lock)."""
        serial: AbstractContextManager[Any] = self._serial or nullcontext()
        with serial, self._errors(), self.engine.connect() as conn:
            if self.backend == "sqlite":
                if write:
                    conn.execution_options(ccm_write=True)
            elif not write:
                # Reads that span several queries (verify, export) see one snapshot.
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if write and self.backend == "postgresql":
                    ids = [_SETUP_LOCK] if setup else sorted({_lock_id(c) for c in customers})
                    for lock in ids:
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
                yield conn

    def _open(self) -> None:
        with self._tx(write=False) as conn:
            version = read_version(conn)
            if version is None and not self._create:
                raise RecordError(f"no record at {self.where}: ccm render and ccm batch "
                                  "create one; check --record or CCM_RECORD_URL", url=self.where)
            check_version(version, where=self.where)
            fingerprint = meta_value(conn, "master_key_fingerprint") if version else None
        if version != SCHEMA_VERSION:
            with self._tx(write=True, setup=True) as conn:
                before = ensure_schema(conn, where=self.where)
            if before < 0:
                logger.info("created record schema v%d at %s", SCHEMA_VERSION, self.where)
            elif before != SCHEMA_VERSION:
                logger.info("upgraded record at %s from schema v%d to v%d",
                            self.where, before, SCHEMA_VERSION)
        if (self.master_key is not None and fingerprint
                and fingerprint != self.master_key.fingerprint):
            raise KeyConfigError(
                f"the record at {self.where} archives content under master key fingerprint "
                f"{fingerprint}, but the key given has fingerprint "
                f"{self.master_key.fingerprint}: use the record's key",
                url=self.where,
            )

    # -- reading entries --------------------------------------------------------

    @staticmethod
    def _entry(row: Any) -> Entry:
        values = {name: row._mapping[name] for name in (f.name for f in fields(Entry))}
        values["created_at"] = utc(values["created_at"])
        return Entry(**values)

    def _find(self, conn: sa.Connection, idempotency_key: str) -> Entry | None:
        row = conn.execute(
            sa.select(messages).where(messages.c.idempotency_key == idempotency_key)
        ).first()
        return self._entry(row) if row is not None else None

    def _get(self, conn: sa.Connection, message_id: str) -> Entry:
        row = conn.execute(sa.select(messages).where(messages.c.message_id == message_id)).first()
        if row is None:
            raise MessageNotFound(f"no message {message_id!r} in the record",
                                  message_id=message_id)
        return self._entry(row)

    def find_key(self, idempotency_key: str) -> Entry | None:
        """The entry recorded under ``idempotency_key``, or ``None``."""
        with self._tx(write=False) as conn:
            return self._find(conn, idempotency_key)

    def find_keys(self, idempotency_keys: Iterable[str]) -> dict[str, Entry]:
        """The entries recorded under any of ``idempotency_keys`` (one read; batch resume).

        Keys with no entry are absent from the result.
        """
        keys = sorted(set(idempotency_keys))
        found: dict[str, Entry] = {}
        with self._tx(write=False) as conn:
            for part in _slices(keys):
                for row in conn.execute(
                    sa.select(messages).where(messages.c.idempotency_key.in_(part))
                ):
                    entry = self._entry(row)
                    found[entry.idempotency_key] = entry
        return found

    def get(self, message_id: str) -> Entry:
        """The entry of ``message_id``; :class:`MessageNotFound` when there is none."""
        with self._tx(write=False) as conn:
            return self._get(conn, message_id)

    def count(
        self,
        customer_id: str,
        *,
        since: datetime,
        message_type: str | None = None,
        channel: str | None = None,
        status: str = "generated",
    ) -> int:
        """How many of the customer's messages were created at or after ``since``."""
        with self._tx(write=False) as conn:
            return self._count(conn, customer_id, since=since, message_type=message_type,
                               channel=channel, status=status)

    @staticmethod
    def _count(conn: sa.Connection, customer_id: str, *, since: datetime,
               message_type: str | None, channel: str | None, status: str) -> int:
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        query = sa.select(sa.func.count()).select_from(messages).where(
            messages.c.customer_id == customer_id,
            messages.c.status == status,
            messages.c.created_at >= utc(since),
        )
        if message_type is not None:
            query = query.where(messages.c.message_type == message_type)
        if channel is not None:
            query = query.where(messages.c.channel == channel)
        return int(conn.execute(query).scalar_one())

    # -- appending --------------------------------------------------------------

    def append(
        self,
        entry: Entry,
        *,
        content: bytes | None = None,
        archival: bytes | None = None,
        caps: Sequence[Cap] = (),
    ) -> AppendResult:
        """Record one message atomically; see :class:`AppendResult` for the outcomes.

        Under the customer's lock, in one transaction: a recorded
        ``idempotency_key`` returns ``duplicate`` (same ``params_sha256``) or
        raises :class:`IdempotencyConflict`; ``caps`` are re-counted and a
        reached cap stores the entry as suppressed (``cap:<name>``, no
        content); otherwise the entry, its encrypted content and its chain
        link are committed before this returns.
        """
        item = self._prepare(entry, content, archival)
        result: AppendResult = self._retrying(
            [entry.customer_id], lambda conn: self._append(conn, item, content, archival, caps)
        )
        return result

    def append_many(
        self, items: Sequence[Mapping[str, Any]]
    ) -> list[AppendResult | IdempotencyConflict]:
        """Append many messages in few transactions (batch runs): one result per item, in order.

        Each item is ``{"entry": Entry, "content": bytes | None, "archival":
        bytes | None, "caps": [Cap, ...]}``. An idempotency conflict is
        returned in that item's place rather than raised, so one bad row does
        not lose the others. Same guarantees as :meth:`append`.
        """
        prepared = [
            (self._prepare(i["entry"], i.get("content"), i.get("archival")), i) for i in items
        ]
        results: list[AppendResult | IdempotencyConflict] = []
        start = 0
        while start < len(prepared):
            customers: set[str] = set()
            end = start
            while end < len(prepared) and (
                len(customers) < _BULK_CUSTOMERS or prepared[end][0].customer_id in customers
            ):
                customers.add(prepared[end][0].customer_id)
                end += 1
            chunk = prepared[start:end]

            def run(conn: sa.Connection,
                    chunk: list[tuple[Entry, Mapping[str, Any]]] = chunk,
                    ) -> list[AppendResult | IdempotencyConflict]:
                return self._append_bulk(conn, chunk)

            results.extend(self._retrying(customers, run))
            start = end
        return results

    def _append_bulk(
        self, conn: sa.Connection, chunk: Sequence[tuple[Entry, Mapping[str, Any]]]
    ) -> list[AppendResult | IdempotencyConflict]:
        """:meth:`_append` for many entries at once, with the same checks, in a few statements.

        One query finds the recorded idempotency keys, one the chain heads, one
        the customers' recent generated messages (for caps); each cap is then
        counted in Python, including what this chunk adds before it, and all
        rows are inserted with one ``executemany`` per table. Runs inside the
        caller's locked write transaction, so check and insert stay atomic.
        """
        keys = sorted({entry.idempotency_key for entry, _ in chunk})
        customers = sorted({entry.customer_id for entry, _ in chunk})
        known: dict[str, Entry] = {}
        for part in _slices(keys):
            for row in conn.execute(
                sa.select(messages).where(messages.c.idempotency_key.in_(part))
            ):
                found = self._entry(row)
                known[found.idempotency_key] = found
        heads: dict[str, tuple[int, str]] = {}
        for part in _slices(customers):
            top = (sa.select(chain.c.customer_id, sa.func.max(chain.c.seq).label("top"))
                   .where(chain.c.customer_id.in_(part)).group_by(chain.c.customer_id)
                   .subquery())
            for row in conn.execute(
                sa.select(chain.c.customer_id, chain.c.seq, chain.c.hash).join(
                    top, sa.and_(chain.c.customer_id == top.c.customer_id,
                                 chain.c.seq == top.c.top))
            ):
                heads[row.customer_id] = (int(row.seq), row.hash)
        capped = [(e, raw["caps"]) for e, raw in chunk
                  if e.status == "generated" and raw.get("caps")]
        recent: dict[str, list[tuple[datetime, str | None, str]]] = {}
        if capped:
            oldest = utc(min(e.created_at - cap.window for e, caps in capped for cap in caps))
            for part in _slices(sorted({e.customer_id for e, _ in capped})):
                for row in conn.execute(
                    sa.select(messages.c.customer_id, messages.c.created_at,
                              messages.c.message_type, messages.c.channel)
                    .where(messages.c.customer_id.in_(part),
                           messages.c.status == "generated",
                           messages.c.created_at >= oldest)
                ):
                    recent.setdefault(row.customer_id, []).append(
                        (utc(row.created_at), row.message_type, row.channel))

        out: list[AppendResult | IdempotencyConflict] = []
        message_rows: list[dict[str, Any]] = []
        archive_rows: list[dict[str, Any]] = []
        chain_rows: list[dict[str, Any]] = []
        for entry, raw in chunk:
            earlier = known.get(entry.idempotency_key)
            if earlier is not None:
                if earlier.params_sha256 == entry.params_sha256:
                    out.append(AppendResult("duplicate", earlier, earlier.reason))
                else:
                    out.append(IdempotencyConflict(
                        f"idempotency key {entry.idempotency_key!r} is recorded for other "
                        f"parameters (message {earlier.message_id}); use a new key to send a "
                        "different message",
                        key=entry.idempotency_key, message_id=earlier.message_id,
                        customer_id=entry.customer_id,
                    ))
                continue
            customer = entry.customer_id
            status: Literal["generated", "suppressed"] = (
                "generated" if entry.status == "generated" else "suppressed"
            )
            reason = entry.reason
            if status == "generated":
                for cap in raw.get("caps") or ():
                    if not cap.applies_to(entry.message_type or "", entry.channel):
                        continue  # as in _append: a cap only stops what it counts
                    since = entry.created_at - cap.window
                    made = sum(
                        1 for at, kind, channel in recent.get(customer, ())
                        if at >= since
                        and (cap.message_type is None or kind == cap.message_type)
                        and (cap.channel is None or channel == cap.channel)
                    )
                    if made >= cap.max:
                        status, reason = "suppressed", f"cap:{cap.name}"
                        break
            content, archival = raw.get("content"), raw.get("archival")
            if status != "generated":
                content = archival = None
                entry = replace(entry, content_sha256=None, archival_sha256=None)
            parts = [(p, d) for p, d in (("content", content), ("archival", archival))
                     if d is not None]
            ref = uuid.uuid4().hex if parts and self.master_key is not None else None
            stored = replace(entry, status=status, reason=reason, archive_ref=ref)
            values = {name: getattr(stored, name) for name in _ENTRY_FIELDS}
            message_rows.append(values)
            if ref is not None:
                key_id, key = self._data_key(conn, customer)
                archive_rows.extend(
                    {"ref": ref, "part": part, "message_id": stored.message_id,
                     "customer_id": customer, "key_id": key_id,
                     "blob": seal_blob(key, data, message_id=stored.message_id, part=part,
                                       customer_id=customer)}
                    for part, data in parts
                )
            seq, prev = heads.get(customer, (0, GENESIS))
            seq += 1
            at = datetime.now(UTC)
            digest = link_hash(customer_id=customer, seq=seq, kind="message",
                               ref=stored.message_id, at=at, detail=None, prev=prev,
                               body=message_body(values))
            chain_rows.append({"customer_id": customer, "seq": seq, "kind": "message",
                               "ref": stored.message_id, "at": at, "detail": None,
                               "prev_hash": prev, "hash": digest})
            heads[customer] = (seq, digest)
            known[stored.idempotency_key] = stored
            if status == "generated":
                recent.setdefault(customer, []).append(
                    (stored.created_at, stored.message_type, stored.channel))
            out.append(AppendResult(status, stored, reason))
        if message_rows:
            conn.execute(messages.insert(), message_rows)
        if archive_rows:
            conn.execute(archive.insert(), archive_rows)
        if chain_rows:
            conn.execute(chain.insert(), chain_rows)
        logger.debug("appended %d message(s) in one statement per table", len(message_rows))
        return out

    def _retrying(self, customers: Iterable[str], work: Any) -> Any:
        """Run ``work(conn)`` in a locked write transaction, again after a unique-key race.

        The customer lock rules out races for one customer; an idempotency key
        reused across customers can still collide at the unique index, and
        the retry then sees the other writer's row and answers from it.
        """
        customers = list(customers)
        for attempt in range(_RETRIES):
            try:
                with self._tx(write=True, customers=customers) as conn:
                    return work(conn)
            except sa.exc.IntegrityError as exc:
                if attempt == _RETRIES - 1:
                    raise RecordError(
                        "the record refused the entry: a message id or idempotency key "
                        "is already recorded",
                    ) from exc
                logger.debug("unique-key race; retrying (%d)", attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _prepare(entry: Entry, content: bytes | None, archival: bytes | None) -> Entry:
        """Check an entry and normalise it to what the database gives back."""
        if entry.status not in ("generated", "suppressed"):
            raise ValueError(f"an appended entry is generated or suppressed, not {entry.status!r}")
        if not isinstance(entry.created_at, datetime) or entry.created_at.tzinfo is None:
            raise ValueError("Entry.created_at must be a timezone-aware datetime")
        if not entry.customer_id or not entry.message_id or not entry.idempotency_key:
            raise ValueError("an entry needs a message_id, an idempotency_key and a customer_id")
        changes: dict[str, Any] = {
            name: str(getattr(entry, name))
            for name in _STR_FIELDS
            if getattr(entry, name) is not None and not isinstance(getattr(entry, name), str)
        }
        changes["created_at"] = utc(entry.created_at)
        changes["archive_ref"] = None
        for part, data in (("content", content), ("archival", archival)):
            if data is None:
                continue
            digest = hashlib.sha256(data).hexdigest()
            given = getattr(entry, f"{part}_sha256")
            if given is None:
                changes[f"{part}_sha256"] = digest
            elif given != digest:
                raise ValueError(f"Entry.{part}_sha256 does not match the {part} bytes given")
        return replace(entry, **changes)

    def _append(self, conn: sa.Connection, entry: Entry, content: bytes | None,
                archival: bytes | None, caps: Sequence[Cap]) -> AppendResult:
        earlier = self._find(conn, entry.idempotency_key)
        if earlier is not None:
            if earlier.params_sha256 == entry.params_sha256:
                return AppendResult("duplicate", earlier, earlier.reason)
            raise IdempotencyConflict(
                f"idempotency key {entry.idempotency_key!r} is recorded for other parameters "
                f"(message {earlier.message_id}); use a new key to send a different message",
                key=entry.idempotency_key,
                message_id=earlier.message_id,
                customer_id=entry.customer_id,
            )
        status: Literal["generated", "suppressed"] = (
            "generated" if entry.status == "generated" else "suppressed"
        )
        reason = entry.reason
        if status == "generated":
            for cap in caps:
                if not cap.applies_to(entry.message_type or "", entry.channel):
                    continue  # a marketing cap never stops an operational message
                made = self._count(conn, entry.customer_id, since=entry.created_at - cap.window,
                                   message_type=cap.message_type, channel=cap.channel,
                                   status="generated")
                if made >= cap.max:
                    status, reason = "suppressed", f"cap:{cap.name}"
                    break
        if status != "generated":
            # Nothing that was not sent is archived, and a suppressed entry has no content.
            content = archival = None
            entry = replace(entry, content_sha256=None, archival_sha256=None)
        parts = [(p, d) for p, d in (("content", content), ("archival", archival)) if d is not None]
        ref = uuid.uuid4().hex if parts and self.master_key is not None else None
        stored = replace(entry, status=status, reason=reason, archive_ref=ref)
        row = {f.name: getattr(stored, f.name) for f in fields(Entry)}
        conn.execute(messages.insert(), row)
        if ref is not None:
            key_id, key = self._data_key(conn, stored.customer_id)
            conn.execute(archive.insert(), [
                {"ref": ref, "part": part, "message_id": stored.message_id,
                 "customer_id": stored.customer_id, "key_id": key_id,
                 "blob": seal_blob(key, data, message_id=stored.message_id, part=part,
                                   customer_id=stored.customer_id)}
                for part, data in parts
            ])
        self._link(conn, stored.customer_id, "message", stored.message_id, message_body(row))
        logger.debug("appended %s (%s) for customer %s", stored.message_id, status,
                     stored.customer_id)
        return AppendResult(status, stored, reason)

    @staticmethod
    def _link(conn: sa.Connection, customer_id: str, kind: str, ref: str | None,
              body: Mapping[str, Any] | None, detail: str | None = None) -> tuple[int, str]:
        """Add one row to the customer's chain, after its newest row."""
        last = conn.execute(
            sa.select(chain.c.seq, chain.c.hash)
            .where(chain.c.customer_id == customer_id)
            .order_by(chain.c.seq.desc())
            .limit(1)
        ).first()
        seq = int(last.seq) + 1 if last is not None else 1
        prev = last.hash if last is not None else GENESIS
        at = datetime.now(UTC)
        digest = link_hash(customer_id=customer_id, seq=seq, kind=kind, ref=ref, at=at,
                           detail=detail, prev=prev, body=body)
        conn.execute(chain.insert(), {
            "customer_id": customer_id, "seq": seq, "kind": kind, "ref": ref, "at": at,
            "detail": detail, "prev_hash": prev, "hash": digest,
        })
        return seq, digest

    # -- keys and archive -------------------------------------------------------

    def _cache(self, key_id: str, key: bytes) -> bytes:
        self._keys[key_id] = key
        self._keys.move_to_end(key_id)
        while len(self._keys) > _KEY_CACHE:
            self._keys.popitem(last=False)
        return key

    def _data_key(self, conn: sa.Connection, customer_id: str) -> tuple[str, bytes]:
        """The customer's data key (made and wrapped on first use), inside the write lock."""
        master = self.master_key
        if master is None:  # pragma: no cover - callers check
            raise KeyConfigError("no master key")
        row = conn.execute(
            sa.select(data_keys.c.key_id, data_keys.c.wrapped)
            .where(data_keys.c.customer_id == customer_id)
        ).first()
        if row is not None:
            cached = self._keys.get(row.key_id)
            if cached is not None:
                return row.key_id, cached
            return row.key_id, self._cache(
                row.key_id, master.unwrap(bytes(row.wrapped), customer_id=customer_id)
            )
        known = meta_value(conn, "master_key_fingerprint")
        if known is None:
            set_meta(conn, master_key_fingerprint=master.fingerprint)
        elif known != master.fingerprint:
            raise KeyConfigError(
                f"the record archives content under master key fingerprint {known}, not "
                f"{master.fingerprint}", url=self.where,
            )
        key, key_id = new_data_key(), uuid.uuid4().hex
        conn.execute(data_keys.insert(), {
            "customer_id": customer_id, "key_id": key_id,
            "wrapped": master.wrap(key, customer_id=customer_id), "created_at": datetime.now(UTC),
        })
        return key_id, self._cache(key_id, key)

    def _erased(self, conn: sa.Connection, customer_id: str) -> datetime | None:
        at = conn.execute(
            sa.select(sa.func.max(chain.c.at))
            .where(chain.c.customer_id == customer_id, chain.c.kind == "erasure")
        ).scalar_one_or_none()
        if isinstance(at, str):  # SQLite loses the type of an aggregate
            at = datetime.fromisoformat(at)
        return utc(at) if at is not None else None

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
            raise RecordError(f"the archived {part} of message {entry.message_id} is missing",
                              message_id=entry.message_id)
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
            if erased is not None:
                raise ContentErased(
                    f"the data key of customer {entry.customer_id} was destroyed on "
                    f"{erased.date().isoformat()}; message {entry.message_id} is unreadable",
                    message_id=entry.message_id, customer_id=entry.customer_id,
                )
            raise RecordError(f"the data key for message {entry.message_id} is missing",
                              message_id=entry.message_id)
        key = self._keys.get(key_row.key_id) or self._cache(
            key_row.key_id,
            self.master_key.unwrap(bytes(key_row.wrapped), customer_id=entry.customer_id),
        )
        return open_blob(key, bytes(blob.blob), message_id=entry.message_id, part=part,
                         customer_id=entry.customer_id)

    def content(self, message_id: str) -> bytes:
        """The exact bytes generated for ``message_id`` (:class:`ContentErased` after erase)."""
        with self._tx(write=False) as conn:
            data = self._part(conn, self._get(conn, message_id), "content")
        assert data is not None  # _part raises rather than return None for content
        return data

    def archival(self, message_id: str) -> bytes | None:
        """The archival copy (PDF/A) of ``message_id``, or ``None`` when none was made."""
        with self._tx(write=False) as conn:
            return self._part(conn, self._get(conn, message_id), "archival")

    # -- events and consent -----------------------------------------------------

    def add_event(
        self,
        message_id: str,
        kind: str,
        *,
        at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """Attach an event (one of :data:`EVENT_KINDS`) to a message, chained like it.

        ``data`` is a small JSON object (a clicked URL, a bounce code) and must
        not hold personal data: it is stored in clear. An ``opted_out`` (or
        ``complained``) event withdraws consent for the message's channel, or
        for ``data["channel"]`` when given (see :meth:`consent_overrides`).
        """
        added = self._add_event(message_id, kind, at=at, data=data, once=False)
        assert added is not None  # only once=True can find one already there
        return added

    def add_event_once(
        self,
        message_id: str,
        kind: str,
        *,
        at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event | None:
        """:meth:`add_event` unless the message already has an event of ``kind``; then ``None``.

        The check and the insert happen in one transaction under the
        customer's lock, so two callers at once (a repeated unsubscribe POST)
        add exactly one event.
        """
        return self._add_event(message_id, kind, at=at, data=data, once=True)

    def _add_event(self, message_id: str, kind: str, *, at: datetime | None,
                   data: Mapping[str, Any] | None, once: bool) -> Event | None:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; one of {', '.join(EVENT_KINDS)}")
        if at is not None and at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        when = utc(at or datetime.now(UTC))
        text = None
        if data is not None:
            if not isinstance(data, Mapping):
                raise ValueError("event data must be a JSON object")
            try:
                text = canonical(data).decode("utf-8")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"event data must be plain JSON: {exc}") from None
        customer_id = self.get(message_id).customer_id
        event_id = uuid.uuid4().hex
        row = {"event_id": event_id, "message_id": message_id, "customer_id": customer_id,
               "kind": kind, "at": when, "data": text}

        def work(conn: sa.Connection) -> bool:
            if once and conn.execute(
                sa.select(sa.exists().where(events.c.message_id == message_id,
                                            events.c.kind == kind))
            ).scalar_one():
                return False
            conn.execute(events.insert(), row)
            self._link(conn, customer_id, "event", event_id, event_body(row))
            return True

        if not self._retrying([customer_id], work):
            return None
        return Event(event_id, message_id, customer_id, kind, when,
                     json.loads(text) if text is not None else None)

    @staticmethod
    def _event(row: Any) -> Event:
        return Event(row.event_id, row.message_id, row.customer_id, row.kind, utc(row.at),
                     json.loads(row.data) if row.data is not None else None)

    def events(self, message_id: str) -> list[Event]:
        """The message's events in time order (``[]`` for a message without any)."""
        with self._tx(write=False) as conn:
            self._get(conn, message_id)
            rows = conn.execute(
                sa.select(events).where(events.c.message_id == message_id)
                .order_by(events.c.at, events.c.event_id)
            )
            return [self._event(r) for r in rows]

    def has_event(self, message_id: str, kind: str) -> bool:
        """Whether the message has at least one event of ``kind``."""
        with self._tx(write=False) as conn:
            return conn.execute(
                sa.select(sa.exists().where(events.c.message_id == message_id,
                                            events.c.kind == kind))
            ).scalar_one() is True

    @staticmethod
    def _overrides(conn: sa.Connection, customer_id: str) -> dict[str, bool]:
        rows = conn.execute(
            sa.select(events.c.data, messages.c.channel)
            .select_from(events.join(messages, events.c.message_id == messages.c.message_id))
            .where(events.c.customer_id == customer_id, events.c.kind.in_(OPT_OUT_KINDS))
        )
        out: dict[str, bool] = {}
        for data, channel in rows:
            named = json.loads(data).get("channel") if data else None
            out[str(named or channel)] = False
        return dict(sorted(out.items()))

    def consent_overrides(self, customer_id: str) -> dict[str, bool]:
        """``{channel: False}`` for every channel the customer opted out of (or complained on)."""
        with self._tx(write=False) as conn:
            return self._overrides(conn, customer_id)

    def consent_overrides_many(self, customer_ids: Iterable[str]) -> dict[str, dict[str, bool]]:
        """:meth:`consent_overrides` of many customers in one read (batch runs).

        Every customer asked about is in the result (``{}`` when nothing is withdrawn).
        """
        ids = sorted(set(customer_ids))
        out: dict[str, dict[str, bool]] = {cid: {} for cid in ids}
        with self._tx(write=False) as conn:
            for part in _slices(ids):
                rows = conn.execute(
                    sa.select(events.c.customer_id, events.c.data, messages.c.channel)
                    .select_from(events.join(messages,
                                             events.c.message_id == messages.c.message_id))
                    .where(events.c.customer_id.in_(part), events.c.kind.in_(OPT_OUT_KINDS))
                )
                for customer_id, data, channel in rows:
                    named = json.loads(data).get("channel") if data else None
                    out[customer_id][str(named or channel)] = False
        return {cid: dict(sorted(found.items())) for cid, found in out.items()}

    # -- erasure ----------------------------------------------------------------

    def erase(self, customer_id: str) -> None:
        """Crypto-shred a customer: destroy the data key and the blobs; the audit trail stays.

        The wrapped key is overwritten, then deleted (SQLite ``secure_delete``
        zeroes the freed space; the WAL is checkpointed and truncated after).
        The erasure is appended to the customer's chain, so verify still
        passes and the timeline shows when it happened. New messages after
        an erasure get a new data key.
        """
        destroyed: list[str] = []

        def work(conn: sa.Connection) -> None:
            row = conn.execute(
                sa.select(data_keys.c.key_id, data_keys.c.wrapped)
                .where(data_keys.c.customer_id == customer_id)
            ).first()
            if row is not None:
                conn.execute(data_keys.update().where(data_keys.c.customer_id == customer_id)
                             .values(wrapped=bytes(len(row.wrapped)), key_id="0" * 32))
                conn.execute(data_keys.delete().where(data_keys.c.customer_id == customer_id))
                destroyed.append(row.key_id)
            blobs = conn.execute(archive.delete().where(archive.c.customer_id == customer_id))
            detail = canonical({"data_key_destroyed": row is not None,
                                "blobs_deleted": int(blobs.rowcount or 0)}).decode("utf-8")
            self._link(conn, customer_id, "erasure", None, None, detail)

        self._retrying([customer_id], work)
        for key_id in destroyed:
            self._keys.pop(key_id, None)
        logger.info("erased customer %s (data key destroyed: %s)", customer_id, bool(destroyed))
        self._flush_wal()

    def _flush_wal(self) -> None:
        """Fold the WAL into the database and truncate it, so erased pages leave the WAL."""
        if self.backend != "sqlite" or self._memory:
            return
        try:
            with self.engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                if raw is not None:
                    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sa.exc.DBAPIError:  # readers still open: the next checkpoint does it
            logger.debug("WAL checkpoint after erase deferred (readers active)")

    # -- tamper evidence ----------------------------------------------------------

    def verify(self, *, checkpoint: Path | str | None = None,
               key: bytes | None = None) -> VerifyReport:
        """Recompute every chain and cross-check rows and blobs; with a checkpoint, also
        require every head it pinned and no shrunken counts (truncation, rollback).

        ``key`` is the checkpoint's HMAC key.
        """
        doc = None
        if checkpoint is not None:
            if key is None:
                raise KeyConfigError("checking a checkpoint needs its key: set "
                                     f"{checkpoints.ENV_CHECKPOINT_KEY} or pass a key file")
            doc = checkpoints.read(checkpoint)
        with self._tx(write=False) as conn:
            found = scan(conn, pins=checkpoints.pins(doc) if doc else None)
            extra = []
            if doc is not None and key is not None:
                extra = checkpoints.compare(doc, key, pinned=found.pinned,
                                            now_counts=checkpoints.counts(conn))
        return report(found, extra, checkpoint=str(checkpoint) if checkpoint else None)

    def checkpoint(self, path: Path | str, key: bytes) -> Path:
        """Write a signed checkpoint of every chain head to ``path`` (keep it elsewhere)."""
        with self._tx(write=False) as conn:
            doc = checkpoints.build(conn, key)
        return checkpoints.write(path, doc)

    # -- the single view ----------------------------------------------------------

    def _timeline(self, conn: sa.Connection, customer_id: str) -> views.Timeline:
        entries = [self._entry(r) for r in conn.execute(
            sa.select(messages).where(messages.c.customer_id == customer_id)
            .order_by(messages.c.created_at, messages.c.message_id)
        )]
        evs = [self._event(r) for r in conn.execute(
            sa.select(events).where(events.c.customer_id == customer_id)
            .order_by(events.c.at, events.c.event_id)
        )]
        erasures = [utc(at) if not isinstance(at, str) else utc(datetime.fromisoformat(at))
                    for (at,) in conn.execute(
                        sa.select(chain.c.at)
                        .where(chain.c.customer_id == customer_id, chain.c.kind == "erasure")
                        .order_by(chain.c.seq))]
        return views.build_timeline(customer_id, entries, evs,
                                    overrides=self._overrides(conn, customer_id),
                                    erasures=erasures)

    def timeline(self, customer_id: str) -> views.Timeline:
        """Every message to the customer across channels in time order, with events and summary."""
        with self._tx(write=False) as conn:
            return self._timeline(conn, customer_id)

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything the record holds about a customer, as JSON (a subject access request).

        The timeline, every event, and the decrypted archived content where it
        was not erased (text for email and SMS, base64 for PDF).
        """
        with self._tx(write=False) as conn:
            timeline = self._timeline(conn, customer_id)
            contents: dict[str, dict[str, Any]] = {}
            for item in timeline.messages:
                contents[item.entry.message_id] = {
                    part: self._export_part(conn, item.entry, part)
                    for part in ("content", "archival")
                }
        return views.build_export(timeline, contents)

    def _export_part(self, conn: sa.Connection, entry: Entry, part: str) -> dict[str, Any] | None:
        try:
            data = self._part(conn, entry, part)
        except ContentErased:
            return {"status": "erased"}
        except KeyConfigError:
            return {"status": "locked", "note": "no master key given; content not decrypted"}
        except RecordError:
            return {"status": "not archived"}
        if data is None:
            return None
        return views.encode_content(entry.channel, part, data)

    def features(self, *, now: datetime | None = None) -> Iterator[dict[str, Any]]:
        """One row per customer of engagement features (see :data:`views.FEATURE_COLUMNS`)."""
        moment = utc(now or datetime.now(UTC))
        with self._tx(write=False) as conn:
            rows = views.feature_query_rows(conn)
        return views.feature_rows(rows, now=moment)
