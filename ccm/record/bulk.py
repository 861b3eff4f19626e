"""The bulk append behind :meth:`Record.append_many`: a chunk of messages in a few statements.

Same checks and the same stored bytes as one :meth:`~ccm.record.Record.append`
per message (tested against it), at a cost close to a plain insert loop:

* a first pass checks every entry and turns it into its row once (no
  dataclass copies, timestamps converted once);
* one read per chunk each for the recorded idempotency keys, the chain
  heads, the data keys (and, only when caps are given, the customers'
  recent messages); new customers' data keys are made from one
  ``os.urandom`` call and inserted with one statement;
* the chain hash is computed from canonical JSON assembled with ``json``'s
  own string encoder (:func:`~ccm.record.chain.message_link_hash`, byte for
  byte :func:`~ccm.record.chain.canonical`), AES-GCM objects are made once
  per key;
* one ``executemany`` per table through the driver (``exec_driver_sql``),
  with the timestamps in the text form SQLAlchemy stores on SQLite, so rows
  read back exactly as those written by the single append.

Everything runs inside the caller's locked write transaction, so check and
insert stay atomic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ccm.errors import IdempotencyConflict, KeyConfigError
from ccm.record.archive import aad, aead
from ccm.record.chain import GENESIS, message_bodies, message_link_hashes
from ccm.record.connect import slices
from ccm.record.entries import _ENTRY_FIELDS, _STR_FIELDS, AppendResult, Entry, entry_of
from ccm.record.outbox import Queue, enqueue
from ccm.record.schema import messages, meta_value, metadata, set_meta

if TYPE_CHECKING:  # pragma: no cover
    from ccm.record.datakeys import DataKeys

__all__ = ["Digested", "Prepared", "append_bulk", "data_keys_of", "entry_from", "prepare"]

#: One checked item: its row values (``created_at`` an aware UTC datetime), the
#: ISO text of ``created_at``, content, archival, caps, queue.
Prepared = tuple[dict[str, Any], str, bytes | None, bytes | None, Sequence[Any], Queue | None]


#: The message row's columns as the bulk inserts list them: ``created_at`` last.
_MESSAGE_COLUMNS = (*(name for name in _ENTRY_FIELDS if name != "created_at"), "created_at")
_row_but_created = itemgetter(*_MESSAGE_COLUMNS[:-1])


def _make_entry(values: dict[str, Any]) -> Entry:
    """An :class:`Entry` from a complete row dict, without the frozen ``__init__``'s cost."""
    entry = object.__new__(Entry)
    entry.__dict__.update(values)
    return entry


_ENTRY_KEYS = frozenset(_ENTRY_FIELDS)


def entry_from(fields: dict[str, Any]) -> Entry:
    """``Entry(**fields)``, cheaper where ``fields`` names every field of :class:`Entry`
    (what a batch worker sends): the frozen ``__init__`` sets twenty attributes one by one.
    Anything else (a field missing or unknown) goes to ``Entry(**fields)``, which says so."""
    if fields.keys() == _ENTRY_KEYS:
        return _make_entry(fields)
    return Entry(**fields)


class Digested(tuple[bytes, str]):
    """Bytes and their SHA-256 (hex), computed from them when this is made; immutable.

    An :meth:`~ccm.record.Record.append_many` item may carry its content's as
    ``"content_digest"`` (its archival copy's as ``"archival_digest"``): when it holds
    the very ``bytes`` object given as ``"content"``, the entry's digest is checked
    against it instead of hashing the content a second time; anything else
    (other bytes, equal or not) is hashed as before.
    """

    __slots__ = ()

    def __new__(cls, data: bytes) -> Digested:
        return tuple.__new__(cls, (data, hashlib.sha256(data).hexdigest()))

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return Digested, (self[0],)  # made again (hashed) where it is unpickled

    @property
    def data(self) -> bytes:
        return self[0]

    @property
    def sha256(self) -> str:
        return self[1]


def _digest(data: bytes, known: Any) -> str:
    """SHA-256 of ``data``: from ``known`` when it is a :class:`Digested` of this object."""
    if type(known) is Digested and known[0] is data and type(data) is bytes:
        return known[1]
    return hashlib.sha256(data).hexdigest()


def _check_digest(values: dict[str, Any], changed: dict[str, Any] | None, part: str,
                  data: bytes, known: Any) -> dict[str, Any] | None:
    """Check (or fill in) the entry's digest of ``data``; the row's changes so far, or new."""
    digest = _digest(data, known)
    given = (values if changed is None else changed)[part + "_sha256"]
    if given is None:
        changed = dict(values) if changed is None else changed
        changed[part + "_sha256"] = digest
    elif given != digest:
        raise ValueError(f"Entry.{part}_sha256 does not match the {part} bytes given")
    return changed


_NONE = type(None)
#: The types a text column's value may have without a conversion.
_PLAIN = frozenset((str, _NONE))
_texts_of = itemgetter(*_STR_FIELDS)


def prepare(item: Mapping[str, Any]) -> Prepared:
    """Check one ``append_many`` item as :meth:`Appends._prepare` does; return its row.

    The row is the entry's own ``__dict__`` when nothing in it needs normalising
    (the usual case: text fields, a UTC ``created_at``, digests given); it is never
    changed afterwards, only copied.
    """
    entry = item["entry"]
    get = item.get
    content, archival = get("content"), get("archival")
    values: dict[str, Any] = entry.__dict__
    if values["status"] not in ("generated", "suppressed"):
        raise ValueError(
            f"an appended entry is generated or suppressed, not {values['status']!r}")
    created = values["created_at"]
    if not isinstance(created, datetime) or created.tzinfo is None:
        raise ValueError("Entry.created_at must be a timezone-aware datetime")
    if not values["customer_id"] or not values["message_id"] or not values["idempotency_key"]:
        raise ValueError("an entry needs a message_id, an idempotency_key and a customer_id")
    changed: dict[str, Any] | None = None
    if not _PLAIN.issuperset(map(type, _texts_of(values))):
        changed = dict(values)
        for name in _STR_FIELDS:
            value = changed[name]
            if value is not None and type(value) is not str:
                changed[name] = str(value)
    if created.tzinfo is not UTC:
        created = created.astimezone(UTC)
        changed = dict(values) if changed is None else changed
        changed["created_at"] = created
    if values["archive_ref"] is not None:
        changed = dict(values) if changed is None else changed
        changed["archive_ref"] = None
    if content is not None:
        changed = _check_digest(values, changed, "content", content, get("content_digest"))
    if archival is not None:
        changed = _check_digest(values, changed, "archival", archival, get("archival_digest"))
    # isoformat(timespec="microseconds") of a UTC time, without its keyword's cost.
    text = created.isoformat()
    return (values if changed is None else changed,
            text if created.microsecond else f"{text[:19]}.000000{text[19:]}", content,
            archival, get("caps") or (), get("queue"))


def _db_time(iso_text: str, backend: str, value: datetime) -> Any:
    """A timestamp as the driver gets it: SQLAlchemy's SQLite text form, else the datetime."""
    if backend == "sqlite":
        return iso_text[:10] + " " + iso_text[11:26]
    return value


#: Each bulk-inserted table's columns and their PostgreSQL types.
_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "messages": tuple((name, "timestamptz" if name == "created_at" else "text")
                      for name in _MESSAGE_COLUMNS),
    "archive": (("ref", "text"), ("part", "text"), ("message_id", "text"),
                ("customer_id", "text"), ("key_id", "text"), ("blob", "bytea")),
    "chain": (("customer_id", "text"), ("seq", "bigint"), ("kind", "text"), ("ref", "text"),
              ("at", "timestamptz"), ("detail", "text"), ("prev_hash", "text"),
              ("hash", "text")),
    "data_keys": (("customer_id", "text"), ("key_id", "text"), ("wrapped", "bytea"),
                  ("created_at", "timestamptz")),
}


#: Columns whose value, when all rows of a statement share it, SQLite gets written into the
#: statement instead of bound once per row (the cost of binding that ``executemany`` pays per
#: row and column): what a batch's messages have in common. Not ids, digests or timestamps,
#: which change from one chunk to the next: SQLite compiles a statement for each new text.
_INLINED: dict[str, frozenset[str]] = {
    "messages": frozenset((
        "channel", "template", "template_version", "pack", "pack_version", "message_type",
        "journey", "locale", "status", "reason", "archival_sha256", "sources_sha256",
        "segment")),
    "chain": frozenset(("seq", "kind", "prev_hash")),
    "archive": frozenset(("part",)),
}
#: Fewer rows than this are bound as they are: the binding saved would not pay for compiling.
_INLINE_FROM = 16


def _literal(value: Any) -> str | None:
    """``value`` as an SQL literal SQLite stores exactly as it stores the value bound;
    ``None`` for values better left bound (bytes, non-ASCII or unprintable text, ...)."""
    if value is None:
        return "NULL"
    if type(value) is str and value.isascii() and value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    if type(value) is int:
        return str(value)
    return None


def _inlined(table: str, insert: str, rows: list[tuple[Any, ...]],
             ) -> tuple[str, list[tuple[Any, ...]]]:
    """``insert`` and ``rows`` with the values every row shares (in :data:`_INLINED` columns)
    written into the statement, and the rows cut down to the other columns."""
    count = len(rows)
    columns = list(zip(*rows, strict=True))
    inlined = _INLINED[table]
    values: list[str] = []
    bound: list[tuple[Any, ...]] = []
    for (name, _), column in zip(_COLUMNS[table], columns, strict=True):
        first = column[0]
        literal = (_literal(first) if name in inlined and column.count(first) == count
                   else None)
        if literal is None:
            values.append("?")
            bound.append(column)
        else:
            values.append(literal)
    if not bound or len(bound) == len(columns):
        return insert, rows
    head = insert[:insert.index(" VALUES (")]
    return f"{head} VALUES ({', '.join(values)})", list(zip(*bound, strict=True))


class _Sql:
    """The statements of the bulk path in the driver's own parameter style.

    SQLite gets one ``executemany`` per table. PostgreSQL gets one ``INSERT ...
    SELECT FROM unnest(...)`` per table with one array per column: one round trip
    and no per-row work in the driver.
    """

    def __init__(self, backend: str, driver: str = "") -> None:
        self.backend = backend
        # Binary arrays (%b) are psycopg 3's; any other PostgreSQL driver gets Core inserts.
        self.core = backend != "sqlite" and driver != "psycopg"
        self.insert: dict[str, str] = {}
        for table, columns in _COLUMNS.items():
            names = ", ".join(name for name, _ in columns)
            if backend == "sqlite":
                marks = ", ".join("?" * len(columns))
                self.insert[table] = f"INSERT INTO {table} ({names}) VALUES ({marks})"
            else:
                # %b: arrays go in binary (no quoting of every element in text form).
                arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
                self.insert[table] = (f"INSERT INTO {table} ({names}) "
                                      f"SELECT * FROM unnest({arrays})")

    def write(self, conn: sa.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (tuples in :data:`_COLUMNS` order) into ``table`` in one statement."""
        if not rows:
            return
        if self.backend == "sqlite":
            if len(rows) >= _INLINE_FROM and table in _INLINED:
                conn.exec_driver_sql(*_inlined(table, self.insert[table], rows))
            else:
                conn.exec_driver_sql(self.insert[table], rows)
        elif self.core:
            names = [name for name, _ in _COLUMNS[table]]
            conn.execute(metadata.tables[table].insert(),
                         [dict(zip(names, row, strict=True)) for row in rows])
        else:
            columns = tuple(list(column) for column in zip(*rows, strict=True))
            conn.exec_driver_sql(self.insert[table], columns)

    def meta(self, conn: sa.Connection, key: str) -> str | None:
        """:func:`~ccm.record.schema.meta_value` through the driver (a Core select cost
        about 1 µs per message of a chunk of 256)."""
        if self.core:
            return meta_value(conn, key)
        mark = "?" if self.backend == "sqlite" else "%s"
        value = conn.exec_driver_sql(
            f"SELECT value FROM ccm_meta WHERE key = {mark}", (key,)).scalar_one_or_none()
        return None if value is None else str(value)

    def among(self, column: str, values: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """``column IN (...)`` (SQLite) or ``column = ANY(%s)`` (PostgreSQL), with parameters."""
        if self.backend == "sqlite":
            return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)
        return f"{column} = ANY(%s)", (list(values),)


_SQL: dict[tuple[str, str], _Sql] = {}


def _sql(conn: sa.Connection) -> _Sql:
    dialect = conn.dialect
    name = (dialect.name, str(dialect.driver))
    found = _SQL.get(name)
    if found is None:
        found = _SQL[name] = _Sql(*name)
    return found


def _known(conn: sa.Connection, sql: _Sql, keys: Sequence[str]) -> dict[str, Entry]:
    """The entries already recorded under any of ``keys`` (usually none: one cheap read)."""
    hits: list[str] = []
    for part in slices(keys):
        where, params = sql.among("idempotency_key", part)
        hits += [k for (k,) in conn.exec_driver_sql(
            f"SELECT idempotency_key FROM messages WHERE {where}", params)]
    known: dict[str, Entry] = {}
    for part in slices(sorted(hits)):
        for row in conn.execute(sa.select(messages).where(messages.c.idempotency_key.in_(part))):
            found = entry_of(row)
            known[found.idempotency_key] = found
    return known


def _heads(conn: sa.Connection, sql: _Sql, customers: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Each customer's newest chain row ``(seq, hash)``, in one read per slice."""
    heads: dict[str, tuple[int, str]] = {}
    for part in slices(customers):
        where, params = sql.among("customer_id", part)
        for cid, seq, digest in conn.exec_driver_sql(
            "SELECT c.customer_id, c.seq, c.hash FROM chain c JOIN (SELECT customer_id, "
            f"MAX(seq) AS top FROM chain WHERE {where} GROUP BY customer_id) t "
            "ON c.customer_id = t.customer_id AND c.seq = t.top", params,
        ):
            heads[cid] = (int(seq), digest)
    return heads


def _recent(conn: sa.Connection, sql: _Sql,
            capped: list[tuple[dict[str, Any], Sequence[Any]]],
            ) -> dict[str, list[tuple[datetime, str | None, str]]]:
    """Generated messages of the capped customers inside the widest cap window.

    Through the driver, as :func:`_known` reads (a Core ``IN`` of a chunk's customers
    cost more than the read): on SQLite the bound time and the stored ones are the text
    SQLAlchemy writes (compared as text, as SQLAlchemy compares them), read back as UTC.
    """
    from ccm.record.chain import utc

    recent: dict[str, list[tuple[datetime, str | None, str]]] = {}
    if not capped:
        return recent
    # The widest window of each set of caps (a batch passes the same few sets every time).
    widest: dict[int, timedelta] = {}
    oldest = None
    for values, caps in capped:
        window = widest.get(id(caps))
        if window is None:
            window = widest[id(caps)] = max(cap.window for cap in caps)
        since = values["created_at"] - window
        if oldest is None or since < oldest:
            oldest = since
    assert oldest is not None
    since = _db_time(oldest.astimezone(UTC).isoformat(timespec="microseconds"), sql.backend,
                     oldest)
    mark = "?" if sql.backend == "sqlite" else "%s"
    for part in slices(sorted({v["customer_id"] for v, _ in capped})):
        where, params = sql.among("customer_id", part)
        for customer, created, kind, channel in conn.exec_driver_sql(
            "SELECT customer_id, created_at, message_type, channel FROM messages "
            f"WHERE {where} AND status = 'generated' AND created_at >= {mark}",
            (*params, since),
        ):
            if type(created) is str:
                created = datetime.fromisoformat(created)
            recent.setdefault(customer, []).append((utc(created), kind, channel))
    return recent


def data_keys_of(rec: DataKeys, conn: sa.Connection, customer_ids: Sequence[str],
              ) -> dict[str, tuple[str, bytes, str]]:
    """``customer -> (key_id, key, commitment)``; new customers' keys made in one statement."""
    from ccm.record.datakeys import key_detail

    master = rec.master_key
    if master is None:  # pragma: no cover - callers check
        raise KeyConfigError("no master key")
    sql = _sql(conn)
    wanted = sorted(set(customer_ids))
    out: dict[str, tuple[str, bytes, str]] = {}
    for part in slices(wanted):
        where, params = sql.among("customer_id", part)
        for cid, key_id, wrapped in conn.exec_driver_sql(
            f"SELECT customer_id, key_id, wrapped FROM data_keys WHERE {where}", params
        ):
            wrapped = bytes(wrapped)
            key = rec._keys.get(key_id)
            if key is None:
                key = rec._cache(key_id, master.unwrap(wrapped, customer_id=cid))
            out[cid] = (key_id, key, key_detail(key_id, wrapped, master))
    missing = [c for c in wanted if c not in out]
    if not missing:
        return out
    known = sql.meta(conn, "master_key_fingerprint")
    if known is None:
        set_meta(conn, master_key_fingerprint=master.fingerprint)
    elif known != master.fingerprint:
        raise KeyConfigError(
            f"the record archives content under master key fingerprint {known}, not "
            f"{master.fingerprint}", url=rec.where,
        )
    now = datetime.now(UTC)
    stamp = _db_time(now.isoformat(timespec="microseconds"), rec.backend, now)
    # 32 key bytes, 16 id bytes and a 12-byte nonce per customer, from one call.
    noise = os.urandom(60 * len(missing))
    at = range(0, 60 * len(missing), 60)
    keys = [noise[i:i + 32] for i in at]
    key_ids = [noise[i + 32:i + 48].hex() for i in at]
    wrapped = master.wrap_many(keys, missing, [noise[i + 48:i + 60] for i in at])
    details = [key_detail(key_id, sealed, master)
               for key_id, sealed in zip(key_ids, wrapped, strict=True)]
    rec._cache_many(zip(key_ids, keys, strict=True))
    out.update(zip(missing, zip(key_ids, keys, details, strict=True), strict=True))
    sql.write(conn, "data_keys", list(zip(missing, key_ids, wrapped, repeat(stamp))))
    return out


def append_bulk(rec: DataKeys, conn: sa.Connection, chunk: Sequence[Prepared],
                ) -> list[AppendResult | IdempotencyConflict]:
    """Append a chunk of prepared items inside the caller's locked write transaction.

    First what becomes of each item (duplicate, conflict, cap), in order; then each
    step over all the items recorded, one after the other: archive refs and blobs,
    rows, canonical JSON and chain links, entries and results.
    """
    sql = _sql(conn)
    backend = rec.backend
    count = len(chunk)
    idem_keys = [values["idempotency_key"] for values, *_ in chunk]
    customers = [values["customer_id"] for values, *_ in chunk]
    known = _known(conn, sql, sorted(set(idem_keys)))
    heads = _heads(conn, sql, sorted(set(customers)))
    capped = [(values, caps) for values, _, _, _, caps, _ in chunk
              if caps and values["status"] == "generated"]
    recent = _recent(conn, sql, capped)
    archiving = rec.master_key is not None

    out: list[Any] = [None] * count
    #: The items recorded, by their index in the chunk, with their status and reason.
    taken: list[int]
    statuses: list[str]
    reasons: list[str | None]
    #: Items that repeat an idempotency key recorded earlier in this chunk: (index, earlier).
    repeats: list[tuple[int, int]] = []
    if not known and not capped and len(set(idem_keys)) == count:
        # Nothing recorded before, no caps, no key twice: every item as it comes.
        taken = list(range(count))
        statuses = [values["status"] for values, *_ in chunk]
        reasons = [values["reason"] for values, *_ in chunk]
    else:
        taken, statuses, reasons = [], [], []
        first_of: dict[str, int] = {}
        #: The caps of a set that apply to a message type and channel, with their windows.
        applying: dict[tuple[int, str | None, str], list[tuple[Any, timedelta]]] = {}
        for index, (values, _, _, _, caps, _) in enumerate(chunk):
            key = idem_keys[index]
            earlier_at = first_of.get(key)
            earlier = known.get(key)
            if earlier_at is not None or earlier is not None:
                # Recorded before this call (earlier), or earlier in this chunk (earlier_at).
                earlier_id, earlier_params = (
                    (earlier.message_id, earlier.params_sha256) if earlier is not None else
                    itemgetter("message_id", "params_sha256")(chunk[earlier_at or 0][0]))
                if earlier_params != values["params_sha256"]:
                    out[index] = IdempotencyConflict(
                        f"idempotency key {key!r} is recorded for other parameters (message "
                        f"{earlier_id}); use a new key to send a different message",
                        key=key, message_id=earlier_id, customer_id=values["customer_id"],
                    )
                elif earlier is not None:
                    out[index] = AppendResult("duplicate", earlier, earlier.reason)
                else:  # its entry is made below, with the others
                    repeats.append((index, earlier_at or 0))
                continue
            first_of[key] = index
            status = "generated" if values["status"] == "generated" else "suppressed"
            reason = values["reason"]
            if status == "generated":
                customer = customers[index]
                if caps:
                    kind_of = (id(caps), values["message_type"], values["channel"])
                    rules = applying.get(kind_of)
                    if rules is None:  # as in _append: a cap only stops what it counts
                        rules = applying[kind_of] = [
                            (cap, cap.window) for cap in caps
                            if cap.applies_to(values["message_type"] or "", values["channel"])]
                    created = values["created_at"]
                    history = recent.get(customer, ())
                    for cap, window in rules:
                        since = created - window
                        made = sum(
                            1 for at, kind, channel in history
                            if at >= since
                            and (cap.message_type is None or kind == cap.message_type)
                            and (cap.channel is None or channel == cap.channel)
                        ) if history else 0
                        if made >= cap.max:
                            status, reason = "suppressed", f"cap:{cap.name}"
                            break
                if status == "generated":
                    recent.setdefault(customer, []).append(
                        (values["created_at"], values["message_type"], values["channel"]))
            taken.append(index)
            statuses.append(status)
            reasons.append(reason)

    # Data keys only for what is archived, as Record.append makes them: none for a duplicate,
    # a conflict or a suppressed item (a key of a customer without entries fails verify).
    keys_of = data_keys_of(rec, conn, [
        customers[index] for index, status in zip(taken, statuses, strict=True)
        if status == "generated" and (chunk[index][2] is not None or chunk[index][3] is not None)
    ]) if archiving else {}
    now = datetime.now(UTC)
    at_iso = now.isoformat(timespec="microseconds")
    at_db = _db_time(at_iso, backend, now)
    # Archive refs (32 hex digits) start with the time in ms and the item's index and end
    # with 68 random bits: new refs land at the end of the archive's primary key instead
    # of on a random page each (pages a commit must write).
    stamp_ms = f"{int(now.timestamp() * 1000):011x}"
    # A 16-byte archive ref and two 12-byte nonces per item, from one call.
    noise = os.urandom(40 * count) if archiving else b""
    noise_hex = noise.hex()  # an archive ref's random digits: noise[at + 7:at + 16].hex()[:17]

    # The stored rows: the item's values, with what this append decided.
    rows: list[dict[str, Any]] = []
    archive_rows: list[tuple[Any, ...]] = []
    details: list[str | None] = []
    sealers: dict[str, Any] = {}
    entries: list[Entry] = []
    new = object.__new__
    for index, status, reason in zip(taken, statuses, reasons, strict=True):
        values, _, content, archival, _, _ = chunk[index]
        # The stored entry, made without the frozen __init__; its __dict__ is the row.
        stored = new(Entry)
        entries.append(stored)
        row = stored.__dict__
        row.update(values)
        if status != "generated":
            content = archival = None
            row["content_sha256"] = row["archival_sha256"] = None
        row["status"], row["reason"] = status, reason
        rows.append(row)
        if not archiving or (content is None and archival is None):
            details.append(None)
            continue
        at = 40 * index
        ref = f"{stamp_ms}{index & 0xFFFF:04x}{noise_hex[2 * at + 14:2 * at + 31]}"
        row["archive_ref"] = ref
        customer, message_id = row["customer_id"], row["message_id"]
        key_id, data_key, commitment = keys_of[customer]
        details.append(commitment)
        sealer = sealers.get(key_id)
        if sealer is None:
            sealer = sealers[key_id] = aead(data_key).encrypt
        if content is not None:
            nonce = noise[at + 16:at + 28]
            archive_rows.append((ref, "content", message_id, customer, key_id, nonce + sealer(
                nonce, content, aad(message_id, "content", customer))))
        if archival is not None:
            nonce = noise[at + 28:at + 40]
            archive_rows.append((ref, "archival", message_id, customer, key_id, nonce + sealer(
                nonce, archival, aad(message_id, "archival", customer))))

    created_isos = [chunk[index][1] for index in taken]
    if backend == "sqlite":
        created_db: list[Any] = [text[:10] + " " + text[11:26] for text in created_isos]
    else:
        created_db = [row["created_at"] for row in rows]
    message_rows = [(*_row_but_created(row), stamp)
                    for row, stamp in zip(rows, created_db, strict=True)]

    # The chain: each customer's next seq after its head (or the one before it in this chunk).
    bodies = message_bodies(rows, created_isos)
    links: list[tuple[str, int, str, str | None, str, str]] = []
    if len(set(customers)) == count:  # one message per customer: every link after its head
        new_chain = (0, GENESIS)
        for row, detail, body in zip(rows, details, bodies, strict=True):
            customer = row["customer_id"]
            seq, prev = heads.get(customer, new_chain)
            links.append((customer, seq + 1, row["message_id"], detail, prev, body))
        digests = message_link_hashes(links, at_iso)
    else:
        digests = []
        for row, detail, body in zip(rows, details, bodies, strict=True):
            customer = row["customer_id"]
            seq, prev = heads.get(customer, (0, GENESIS))
            link = (customer, seq + 1, row["message_id"], detail, prev, body)
            links.append(link)
            digests += message_link_hashes((link,), at_iso)
            heads[customer] = (seq + 1, digests[-1])
    chain_rows = [(customer, seq, "message", ref, at_db, detail, prev, digest)
                  for (customer, seq, ref, detail, prev, _), digest
                  in zip(links, digests, strict=True)]

    # The entries and results.
    for index, stored, status, reason in zip(taken, entries, statuses, reasons, strict=True):
        result = out[index] = new(AppendResult)  # without the frozen __init__, as entries
        result.__dict__.update(status=status, entry=stored, reason=reason)
    for index, earlier_at in repeats:
        earlier_entry = out[earlier_at].entry
        out[index] = AppendResult("duplicate", earlier_entry, earlier_entry.reason)
    sql.write(conn, "messages", message_rows)
    sql.write(conn, "archive", archive_rows)
    sql.write(conn, "chain", chain_rows)
    for index, stored, status in zip(taken, entries, statuses, strict=True):
        queue = chunk[index][5]
        if queue is not None and status == "generated":
            enqueue(rec, conn, stored, queue)
    return out
