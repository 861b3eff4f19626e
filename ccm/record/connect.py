"""Opening a record: URLs, engines with the record's settings, transactions and locks.

:class:`Connected` is the base every part of :class:`~ccm.record.Record`
builds on: it owns the SQLAlchemy engine, the read and write transactions
(with the customer locks), and the translation of driver failures into ccm
errors at this one boundary.

* URLs: ``sqlite:///path``, ``sqlite://`` (memory), ``postgresql+psycopg://...``;
  a plain path (``record.db``) means a SQLite file.
* Locks: SQLite writes start with ``BEGIN IMMEDIATE`` (one writer at a
  time, the others wait up to the busy timeout); PostgreSQL takes
  ``pg_advisory_xact_lock`` on a hash of each customer id (sorted).
* Page size: a new SQLite file gets :data:`NEW_PAGE_SIZE` (16 KiB), set before
  WAL; an existing record keeps its own.
* Read-only: a record opened with ``read_only=True`` is opened by SQLite in
  ``mode=ro`` (nothing is created, not even an empty file) and on
  PostgreSQL with ``default_transaction_read_only``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.pool import StaticPool

from ccm.errors import (
    ConfigError,
    KeyConfigError,
    NotARecord,
    RecordError,
    RecordIOError,
    RecordLocked,
    RecordNotFound,
    RecordSchemaError,
)
from ccm.record.keys import KeySource, MasterKey, resolve_key
from ccm.record.schema import (
    SCHEMA_VERSION,
    check_version,
    ensure_schema,
    has_layout,
    meta_value,
    read_version,
)

__all__ = ["BUSY_MS", "NEW_PAGE_SIZE", "Connected", "lock_id", "record_url", "slices", "where"]

logger = logging.getLogger("ccm.record")

BUSY_MS = 30_000
#: The SQLite page size of a NEW record file, set before WAL (WAL fixes it for good; an
#: existing record keeps the page size it was made with, 4096 before this). Measured
#: against 4096 (benchmarks/page_size_bench.py, 7 December 2026, medians of differences
#: paired by round): an email's record append -29 µs CPU (sys -26; 15 of 15 rounds
#: lower), a whole email batch -26 µs (18 of 21 lower), with 6.4 write calls instead of
#: 22.9 and 7% more bytes; SMS no difference (-0.6 µs; 0.8 calls instead of 2.2, 32%
#: more bytes: 7.9 KiB, more bytes per dirty page); reads (verify, timeline, export) the
#: same bytes in a quarter of the calls. 65536 saves 13 µs more per email but writes
#: 1.4x (email) to 1.8x (SMS) the bytes of 16384 and reads 2.6x: SQLite's default 2 MB
#: page cache holds too few pages of that size.
NEW_PAGE_SIZE = 16_384
_RETRIES = 3
_KEY_CACHE = 4096
T = TypeVar("T")


def slices(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """``values`` in slices small enough for one ``IN (...)`` on every backend."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


#: Query parameters of a record URL that may hold a secret (libpq takes ``password`` and
#: ``sslpassword`` there as well as in the ``user:password@`` part).
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "key")


def where(url: sa.URL) -> str:
    """The URL as it may be shown: no password, in the ``user:password@`` part or in the
    query (``?password=``, ``?sslpassword=``, anything naming a secret or key)."""
    hidden = {name: "***" for name in url.query
              if any(word in name.lower() for word in _SECRET_WORDS)}
    if hidden:
        url = url.update_query_dict(hidden)
    return url.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def lock_id(customer_id: str) -> int:
    """A stable signed 64-bit advisory lock id for a customer (collisions only serialise)."""
    digest = hashlib.sha256(b"ccm/record/customer\x00" + customer_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


SETUP_LOCK = lock_id("\x00schema")


def record_url(value: str | os.PathLike[str] | sa.URL) -> sa.URL:
    """Parse a record URL; a plain path (no ``scheme://``) is a SQLite file.

    A malformed URL is a :class:`~ccm.errors.ConfigError` that says what a
    record URL looks like.
    """
    if isinstance(value, sa.URL):
        return value
    text = os.fspath(value)
    if "://" not in text:
        if not text.strip():
            raise ConfigError("the record URL is empty: give sqlite:///path/to/record.db "
                              "or postgresql+psycopg://user@host/db")
        return sa.make_url("sqlite:///" + str(Path(text).expanduser()))
    try:
        return sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError):
        scheme = text.split("://", 1)[0]
        raise ConfigError(
            f"not a record URL ({scheme}://...): use sqlite:///path/to/record.db, a plain "
            "file path, or postgresql+psycopg://user@host/db", scheme=scheme,
        ) from None


def _sqlite_path(url: sa.URL) -> Path | None:
    if url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database)).expanduser()


def _check_sqlite_file(url: sa.URL, shown: str, *, must_exist: bool) -> None:
    """Refuse a SQLite path that is missing (read-only, or not creating) or not a file."""
    path = _sqlite_path(url)
    if path is None:
        return
    if path.exists() and not path.is_file():
        raise NotARecord(f"{path} is not a ccm record (it is not a regular file)", url=shown)
    if must_exist and not path.is_file():
        raise RecordNotFound(f"no record at {shown}: ccm render and ccm batch create one; "
                             "check --record or CCM_RECORD_URL", url=shown)
    if path.is_file():
        try:
            with path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError:
            return  # the driver names the problem (permissions...)
        # An empty file is no record where one must exist (SQLite would write into it);
        # a file that is not SQLite at all is never opened.
        if not head and must_exist:
            raise RecordNotFound(f"no record at {shown}: the file is empty; ccm render and "
                                 "ccm batch create one; check --record or CCM_RECORD_URL",
                                 url=shown)
        if head and head != _SQLITE_MAGIC:
            raise NotARecord(f"{path} is not a ccm record (not a SQLite database)", url=shown)


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _create_engine(url: sa.URL, *, read_only: bool, busy_ms: int) -> tuple[sa.Engine, bool]:
    """An engine with the record's durability settings; returns ``(engine, in_memory)``."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(url)
        memory = path is None
        if memory:
            engine = sa.create_engine(url, poolclass=StaticPool,
                                      connect_args={"check_same_thread": False})
        elif read_only:
            assert path is not None
            # mode=ro: SQLite never creates or converts the file it is pointed at. On a
            # read-only file system nobody can write it, and SQLite cannot make the -shm
            # it needs for WAL: read it as immutable.
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            if _read_only_fs(path):
                uri += "&immutable=1"
            engine = sa.create_engine(
                "sqlite://", creator=lambda: sqlite3.connect(
                    uri, uri=True, timeout=busy_ms / 1000, check_same_thread=False))
        else:
            engine = sa.create_engine(url, connect_args={"timeout": busy_ms / 1000})

        @sa_event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take BEGIN away from the sqlite3 module: we emit our own (below).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if not memory and not read_only:
                if cursor.execute("PRAGMA page_count").fetchone()[0] == 0:
                    # A new (empty) file: its page size, before WAL fixes it.
                    cursor.execute(f"PRAGMA page_size = {NEW_PAGE_SIZE}")
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
        try:
            engine = sa.create_engine(url, pool_pre_ping=True)
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL driver for {where(url)} is not installed ({exc.name}): "
                "pip install 'ccm-engine[postgres]'", url=where(url),
            ) from None
        except sa.exc.ArgumentError:
            raise ConfigError(
                f"no PostgreSQL driver {url.drivername!r} for {where(url)}: use "
                "postgresql+psycopg://... and pip install 'ccm-engine[postgres]'", url=where(url),
            ) from None

        @sa_event.listens_for(engine, "connect")
        def _pg_connect(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("SET synchronous_commit TO on")
            cursor.execute(f"SET lock_timeout TO {busy_ms}")
            if read_only:
                cursor.execute("SET default_transaction_read_only TO on")
            cursor.close()
            dbapi_conn.commit()  # a SET inside a rolled-back transaction would be undone

        return engine, False
    raise ConfigError(
        f"unsupported record URL {where(url)}: use sqlite:///path/to/record.db or "
        "postgresql+psycopg://user@host/db",
        url=where(url),
    )


def translate(exc: BaseException, shown: str) -> RecordError | None:
    """The ccm error for a driver or I/O failure on the record at ``shown`` (or ``None``).

    Most specific first: a file that is not a database, locked past the
    timeout, disk full, read-only file system, permissions, then any other
    failure to reach the database.
    """
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    text = detail.lower()
    if isinstance(orig, OSError) and not isinstance(orig, sqlite3.Error):
        code = orig.errno
        if code == errno.ENOSPC:
            return RecordIOError(f"record at {shown}: the disk is full; free space and "
                                 "run the command again", url=shown, reason="disk full")
        if code == errno.EROFS:
            return RecordIOError(f"record at {shown}: the file system is read-only",
                                 url=shown, reason="read-only")
        if code in (errno.EACCES, errno.EPERM):
            return RecordIOError(f"record at {shown}: permission denied", url=shown,
                                 reason="permission")
        return RecordIOError(f"record at {shown}: {orig.strerror or detail}", url=shown,
                             reason="io")
    if "file is not a database" in text or "database disk image is malformed" in text:
        what = "corrupt" if "malformed" in text else "not a SQLite database"
        return NotARecord(f"{shown} is not a ccm record ({what})", url=shown)
    if "locked" in text or "busy" in text or "lock timeout" in text:
        return RecordLocked(
            f"record at {shown} is locked by another process past the timeout: another "
            "writer (a batch, an erase) holds it; try again when it is done", url=shown)
    if "disk is full" in text or "no space left" in text:
        return RecordIOError(f"record at {shown}: the disk is full; free space and run "
                             "the command again", url=shown, reason="disk full")
    if "readonly" in text or "read-only" in text or "read only" in text:
        return RecordIOError(
            f"record at {shown} is read-only here (read-only file system or file, or a "
            "read-only transaction): this command writes", url=shown, reason="read-only")
    if "disk i/o" in text:
        # Mid-run this is a write the file system refused (a file size limit, a full or
        # failing device), not a path problem.
        return RecordIOError(
            f"record at {shown}: the file system failed a read or write (disk I/O error): "
            "check free space, the file size limit (ulimit -f) and the device, then run the "
            "command again", url=shown, reason="io")
    if "unable to open" in text or "permission denied" in text:
        return RecordIOError(
            f"record at {shown} cannot be opened ({detail}): check the path, its folder and "
            "their permissions", url=shown, reason="open")
    if isinstance(exc, sa.exc.DBAPIError | sqlite3.Error):
        return RecordIOError(f"record at {shown}: {detail}", url=shown, reason="database")
    return None


class Connected:
    """The engine, the transactions and the locks every part of the record uses.

    Opening creates the schema, or upgrades an older one in place, unless
    ``create`` is false (then a missing record is an error) or ``read_only``
    (nothing is created or changed; every write fails).
    """

    def __init__(self, url: str | os.PathLike[str] | sa.URL, *, master_key: KeySource | None = None,
                 create: bool = True, read_only: bool = False,
                 erase_wait: float = 30.0, lock_timeout: float = BUSY_MS / 1000) -> None:
        self._url = record_url(url)
        self.where = where(self._url)
        self.backend = self._url.get_backend_name()
        self.read_only = read_only
        #: True when opening this made the record (a new schema where there was none): a
        #: command says so, since a mistyped URL would otherwise start an empty record quietly.
        self.created = False
        if erase_wait < 0:
            raise ValueError("erase_wait is seconds to wait for readers, 0 or more")
        if lock_timeout <= 0:
            raise ValueError("lock_timeout is seconds to wait for another writer, more than 0")
        self._busy_ms = max(1, int(lock_timeout * 1000))
        self.erase_wait = float(erase_wait)
        self._create = create and not read_only
        if self.backend == "sqlite":
            with self._errors():  # a folder we may not look into: permission denied
                _check_sqlite_file(self._url, self.where, must_exist=not self._create)
                path = _sqlite_path(self._url)
                if self._create and path is not None:
                    # A writer's record may start in a folder of its own (out/record.db).
                    path.parent.mkdir(parents=True, exist_ok=True)
        self.master_key: MasterKey | None = resolve_key(master_key)
        self.engine, self._memory = _create_engine(self._url, read_only=read_only,
                                                   busy_ms=self._busy_ms)
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

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    # -- transactions -----------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate driver and I/O failures (down, locked, full, read-only) at the boundary."""
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.DatabaseError, sa.exc.InterfaceError,
                OSError, sqlite3.Error) as exc:
            if isinstance(exc, sa.exc.IntegrityError):
                raise
            mapped = translate(exc, self.where)
            if mapped is None:  # pragma: no cover - translate maps every DBAPI error
                raise
            path = _sqlite_path(self._url) if self.backend == "sqlite" else None
            if (isinstance(mapped, RecordIOError) and getattr(mapped, "reason", "") == "open"
                    and path is not None and _read_only_fs(path)):
                mapped = RecordIOError(
                    f"record at {self.where} is on a read-only file system: this command "
                    "writes (reading commands still work)", url=self.where, reason="read-only")
            raise mapped from exc

    @contextmanager
    def _tx(self, *, write: bool, customers: Iterable[str] = (),
            setup: bool = False) -> Iterator[sa.Connection]:
        """One transaction; a write one holds the customers' locks (or the setup lock).

        A read transaction on PostgreSQL is ``REPEATABLE READ, READ ONLY``: every
        query in it sees one snapshot.
        """
        serial: AbstractContextManager[Any] = self._serial or nullcontext()
        with serial, self._errors(), self.engine.connect() as conn:
            if self.backend == "sqlite":
                if write:
                    conn.execution_options(ccm_write=True)
            elif not write:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if self.backend == "postgresql":
                    if write:
                        ids = [SETUP_LOCK] if setup else sorted({lock_id(c) for c in customers})
                        if len(ids) == 1:
                            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (ids[0],))
                        elif ids:
                            # One round trip for many customers; unnest yields the sorted
                            # ids in order, so every writer locks in the same order.
                            conn.exec_driver_sql(
                                "SELECT count(pg_advisory_xact_lock(k)) FROM "
                                "unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n)", (ids,))
                    else:
                        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn

    @contextmanager
    def snapshot(self) -> Iterator[sa.Connection]:
        """A read-only connection on one consistent snapshot (reports, audits).

        PostgreSQL: ``REPEATABLE READ, READ ONLY``; SQLite: one read transaction.
        """
        with self._tx(write=False) as conn:
            yield conn

    def _retrying(self, customers: Iterable[str], work: Callable[[sa.Connection], T]) -> T:
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

    def _cache(self, key_id: str, key: bytes) -> bytes:
        self._keys[key_id] = key
        self._keys.move_to_end(key_id)
        while len(self._keys) > _KEY_CACHE:
            self._keys.popitem(last=False)
        return key

    def _cache_many(self, keys: Iterable[tuple[str, bytes]]) -> None:
        """:meth:`_cache` of many ``(key_id, key)`` in turn: the same cache at the end."""
        cache = self._keys
        for key_id, key in keys:
            cache[key_id] = key
            cache.move_to_end(key_id)
        while len(cache) > _KEY_CACHE:
            cache.popitem(last=False)

    def _open(self) -> None:
        with self._tx(write=False) as conn:
            try:
                version = read_version(conn, where=self.where)
            except RecordSchemaError:
                # Unreadable: only reading a record whose tables are this layout's is safe
                # (verify then reports the value); never migrate or write on a guess.
                if not (self.read_only and has_layout(conn)):
                    raise
                logger.warning("the record at %s has an unreadable schema_version; reading "
                               "it as version %d, the layout its tables have (run ccm record "
                               "verify)", self.where, SCHEMA_VERSION)
                version = SCHEMA_VERSION
            if version is None and not self._create:
                path = _sqlite_path(self._url) if self.backend == "sqlite" else None
                if path is not None and path.stat().st_size > 0:
                    raise NotARecord(f"{path} is a SQLite database but not a ccm record",
                                     url=self.where)
                raise RecordNotFound(f"no record at {self.where}: ccm render and ccm batch "
                                     "create one; check --record or CCM_RECORD_URL",
                                     url=self.where)
            check_version(version, where=self.where)
            fingerprint = meta_value(conn, "master_key_fingerprint") if version else None
        if version != SCHEMA_VERSION:
            if self.read_only:
                raise RecordError(
                    f"the record at {self.where} has schema version {version} and needs an "
                    f"upgrade to {SCHEMA_VERSION}: open it once read-write (ccm record verify "
                    "opens read-only and changes nothing)", url=self.where)
            with self._tx(write=True, setup=True) as conn:
                before = ensure_schema(conn, where=self.where)
            if before < 0:
                self.created = True
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
