"""The hash chains that make the record tamper evident, and the check that walks them.

One chain per customer. Every message, event and erasure of a customer is a
row of ``chain`` with the next ``seq`` (1, 2, 3, ...), the previous row's
hash, and its own hash::

    hash = SHA-256(canonical JSON of {v, customer_id, seq, kind, ref, at,
                                      detail, prev, body})

where ``body`` is the message's or event's row (every column except nothing:
ids, versions, digests, status, reason, archive_ref, ...). Canonical JSON:
sorted keys, no spaces, UTF-8, timestamps as UTC ISO 8601 with microseconds,
and fields that are NULL left out -- so a later schema version that adds a
nullable column leaves every old hash valid.

Why one chain per customer, not one global chain: appending needs the
previous hash, so a global chain would make every writer wait for every
other writer (one hot row). Per customer, the lock an append holds is that
customer's only (PostgreSQL advisory lock; SQLite serialises writers anyway),
for the few statements of the insert. Writers for different customers never
wait on each other, and the customer lock is the one that caps need anyway.

What :func:`scan` proves: every chain is unbroken (seq 1..n, each row names
its predecessor's hash), every row's data still hashes to what was stored,
every message and event is in exactly one chain, and every archive blob
belongs to its message. Every value is read as untrusted
(:mod:`ccm.record.stored`): one of the wrong type is a problem of its row,
not an exception that ends the walk. It cannot see rows removed from the
*end* of a chain together with their data, or a whole record swapped for an
older copy, or a chain rewritten by someone who recomputes the hashes -- a hash chain has no
secret. Signed checkpoints (:mod:`ccm.record.checkpoint`) close the first two.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from ccm.record import stored
from ccm.record.archive import SEALED_MIN
from ccm.record.keycheck import KeyWatch
from ccm.record.schema import archive, chain, events, messages

__all__ = [
    "GENESIS",
    "MESSAGE_FIELDS",
    "Scan",
    "VerifyReport",
    "canonical",
    "event_body",
    "head",
    "iso",
    "link",
    "link_hash",
    "message_bodies",
    "message_body",
    "message_body_json",
    "message_link_hash",
    "message_link_hashes",
    "scan",
    "utc",
]

#: The ``prev_hash`` of every chain's first row.
GENESIS = "0" * 64
_HASH_VERSION = 1
#: Problems listed in a report beyond the first (the count is always exact).
MAX_PROBLEMS = 100

MESSAGE_FIELDS = (
    "message_id", "idempotency_key", "params_sha256", "customer_id", "channel", "template",
    "template_version", "pack", "pack_version", "message_type", "journey", "locale",
    "created_at", "status", "reason", "content_sha256", "archival_sha256", "sources_sha256",
    "archive_ref", "segment",
)
EVENT_FIELDS = ("event_id", "message_id", "customer_id", "kind", "at", "data")


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """The one text form of a timestamp used in hashes and exports."""
    return utc(value).isoformat(timespec="microseconds")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Sorted-key compact UTF-8 JSON with NULL fields left out: the bytes that get hashed."""
    return json.dumps(
        _plain(dict(obj)), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


#: ``json``'s own string encoder (with ``ensure_ascii=False``): the fast canonical forms
#: below quote every string with it, so they give the bytes :func:`canonical` gives.
_quote: Any = json.encoder.encode_basestring
_BODY_KEYS = tuple((name, f'"{name}":') for name in sorted(MESSAGE_FIELDS))
_BODY_CREATED = [name for name, _ in _BODY_KEYS].index("created_at")


def message_body_json(row: Mapping[str, Any], created_at: str) -> str:
    """``canonical(message_body(row))`` as text, fast (bulk appends; proven equal by tests).

    Every field of a message row is a string or NULL except ``created_at``,
    which the caller gives as :func:`iso` text. Keys sorted, NULLs left out.
    """
    parts = []
    for name, key in _BODY_KEYS:
        value = created_at if name == "created_at" else row.get(name)
        if value is not None:
            parts.append(key + _quote(value))
    return "{" + ",".join(parts) + "}"


def message_link_hash(*, customer_id: str, seq: int, ref: str, at: str, detail: str | None,
                      prev: str, body_json: str) -> str:
    """:func:`link_hash` of a ``message`` row from :func:`message_body_json` and ``iso(at)``.

    The canonical document has the keys at, body, customer_id, detail, kind,
    prev, ref, seq, v (sorted); ``detail`` is left out when NULL.
    """
    text = ('{"at":' + _quote(at) + ',"body":' + body_json + ',"customer_id":'
            + _quote(customer_id)
            + ("" if detail is None else ',"detail":' + _quote(detail))
            + ',"kind":"message","prev":' + _quote(prev) + ',"ref":' + _quote(ref)
            + f',"seq":{int(seq)},"v":{_HASH_VERSION}}}')
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_DETAIL = ',"detail":'
_body_values = itemgetter(*(name for name, _ in _BODY_KEYS))


def message_bodies(rows: Sequence[Mapping[str, Any]], created_at: Sequence[str]) -> list[str]:
    """:func:`message_body_json` of many rows at once (bulk appends; proven equal by tests).

    Each row holds every one of :data:`MESSAGE_FIELDS` (a string or NULL);
    ``created_at`` is each row's :func:`iso` text. Built column by column: a
    value that every row shares (a template, a channel, a status, NULL) is
    quoted once for all of them.
    """
    count = len(rows)
    if not count:
        return []
    columns = list(zip(*map(_body_values, rows), strict=True))
    columns[_BODY_CREATED] = tuple(created_at)
    pieces: list[Any] = []  # per column: one text for every row, or a list of texts
    shared = ""  # the next columns' text, where every row has the same
    for (_, key), values in zip(_BODY_KEYS, columns, strict=True):
        first = values[0]
        if values.count(first) == count:
            if first is not None:
                shared += "," + key + _quote(first)
            continue
        if shared:
            pieces.append(repeat(shared, count))
            shared = ""
        comma_key = "," + key
        pieces.append([comma_key + _quote(value) if value is not None else ""
                       for value in values])
    if shared:
        pieces.append(repeat(shared, count))
    # Every piece starts with a comma: the first one's becomes the opening brace.
    return ["{" + "".join(parts)[1:] + "}" for parts in zip(*pieces, strict=True)]


def message_link_hashes(links: Iterable[tuple[str, int, str, str | None, str, str]],
                        at: str) -> list[str]:
    """:func:`message_link_hash` of many ``message`` rows of one moment ``at`` (iso text).

    ``links`` holds ``(customer_id, seq, ref, detail, prev, body_json)`` per row.
    """
    head = '{"at":' + _quote(at) + ',"body":'
    tail = f',"v":{_HASH_VERSION}}}'
    sha256 = hashlib.sha256
    quote = _quote
    return [sha256((
        f'{head}{body},"customer_id":{quote(customer)}'
        f'{"" if detail is None else _DETAIL + quote(detail)}'
        f',"kind":"message","prev":{quote(prev)},"ref":{quote(ref)},"seq":{int(seq)}{tail}'
    ).encode()).hexdigest() for customer, seq, ref, detail, prev, body in links]


def message_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a message row commits to."""
    return {name: row.get(name) for name in MESSAGE_FIELDS}


def event_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """What an event row commits to (``data`` as stored: canonical JSON text)."""
    return {name: row.get(name) for name in EVENT_FIELDS}


def link_hash(
    *,
    customer_id: str,
    seq: int,
    kind: str,
    ref: str | None,
    at: datetime,
    detail: str | None,
    prev: str,
    body: Mapping[str, Any] | None,
) -> str:
    """The hash of one chain row."""
    doc = {
        "v": _HASH_VERSION, "customer_id": customer_id, "seq": seq, "kind": kind, "ref": ref,
        "at": at, "detail": detail, "prev": prev, "body": dict(body) if body else None,
    }
    return hashlib.sha256(canonical(doc)).hexdigest()


def head(conn: sa.Connection, customer_id: str) -> tuple[int, str]:
    """The customer's newest chain row as ``(seq, hash)``; ``(0, GENESIS)`` for none."""
    last = conn.execute(
        sa.select(chain.c.seq, chain.c.hash)
        .where(chain.c.customer_id == customer_id)
        .order_by(chain.c.seq.desc())
        .limit(1)
    ).first()
    return (int(last.seq), last.hash) if last is not None else (0, GENESIS)


def link(conn: sa.Connection, customer_id: str, kind: str, ref: str | None,
         body: Mapping[str, Any] | None, detail: str | None = None) -> tuple[int, str]:
    """Add one row to the customer's chain, after its newest row (inside the caller's lock)."""
    seq, prev = head(conn, customer_id)
    seq += 1
    at = datetime.now(UTC)
    digest = link_hash(customer_id=customer_id, seq=seq, kind=kind, ref=ref, at=at,
                       detail=detail, prev=prev, body=body)
    conn.execute(chain.insert(), {
        "customer_id": customer_id, "seq": seq, "kind": kind, "ref": ref, "at": at,
        "detail": detail, "prev_hash": prev, "hash": digest,
    })
    return seq, digest


@dataclass(frozen=True)
class VerifyReport:
    """The result of :meth:`ccm.record.Record.verify`.

    ``first_bad`` names the first bad entry and why (chain order: customer,
    then seq); ``problems`` lists up to 100 problems, ``problem_count`` has
    them all. ``erasures_pending`` lists the customers whose erasure is not
    finished (old pages may still hold their data key and content: run
    ``ccm record erase --pending``); that is no tampering, ``ok`` stays true.
    """

    ok: bool
    checked: int
    first_bad: str | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    customers: int = 0
    checkpoint: str | None = None
    erasures_pending: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "checked": self.checked, "customers": self.customers,
            "first_bad": self.first_bad, "problems": list(self.problems),
            "problem_count": self.problem_count, "checkpoint": self.checkpoint,
            "erasures_pending": list(self.erasures_pending),
        }


@dataclass
class Scan:
    """What one pass over the record found (used by verify and checkpoint checks)."""

    checked: int = 0
    customers: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    pinned: dict[str, str] = field(default_factory=dict)

    def add(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def _describe(customer_id: str, seq: object, kind: object, ref: object) -> str:
    what = f"{kind} {ref}" if ref else f"{kind}"
    number = seq if isinstance(seq, int) else repr(seq)
    return f"customer {customer_id!r} entry {number} ({what})"


_Reader = Callable[[object], Any]
_CHAIN_COLUMNS: tuple[tuple[str, _Reader], ...] = (
    ("customer_id", stored.text), ("seq", stored.whole), ("kind", stored.text),
    ("ref", stored.optional_text), ("at", stored.moment), ("detail", stored.optional_text),
    ("prev_hash", stored.text), ("hash", stored.text),
)
_MESSAGE_COLUMNS: tuple[tuple[str, _Reader], ...] = tuple(
    (c.name, stored.moment if c.name == "created_at" else stored.optional_text)
    for c in messages.c
)
_EVENT_COLUMNS: tuple[tuple[str, _Reader], ...] = tuple(
    (c.name, stored.moment if c.name == "at" else stored.optional_text) for c in events.c
)


def _read(row: sa.RowMapping, table: str, columns: Iterable[tuple[str, _Reader]],
          prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """The row's values by column, and what is wrong with those that cannot be read."""
    values: dict[str, Any] = {}
    bad: list[str] = []
    for name, read in columns:
        try:
            values[name] = read(row[prefix + name])
        except stored.Unreadable as exc:
            bad.append(f"{table}.{name} {exc}")
    return values, bad


def scan(conn: sa.Connection, *, pins: Mapping[str, int] | None = None,
         batch: int = 2000) -> Scan:
    """Walk every chain and cross-check messages, events and archive blobs.

    ``pins`` maps customer -> seq whose stored hash should be reported back
    in :attr:`Scan.pinned` (a checkpoint's heads).

    Every value is read raw and checked for its type (:mod:`ccm.record.stored`):
    a value of the wrong type is reported as an edit of its row, that row's
    hash is not recomputed, and the walk goes on. A row whose ``seq`` is not
    a whole number has no place in its chain: the rows around it are checked
    as if it were not there.
    """
    pins = pins or {}
    result = Scan()
    m_cols = [stored.raw(c, f"m_{c.name}") for c in messages.c]
    e_cols = [stored.raw(c, f"e_{c.name}") for c in events.c]
    query = (
        sa.select(*(stored.raw(c, c.name) for c in chain.c), *m_cols, *e_cols)
        .select_from(
            chain.outerjoin(
                messages, sa.and_(chain.c.kind == "message", messages.c.message_id == chain.c.ref)
            ).outerjoin(events, sa.and_(chain.c.kind == "event", events.c.event_id == chain.c.ref))
        )
        .order_by(chain.c.customer_id, chain.c.seq)
    )
    keys = KeyWatch()
    seen: set[str] = set()
    customer: str | None = None
    expected = 1
    prev: str | None = GENESIS
    for row in conn.execution_options(yield_per=batch).execute(query).mappings():
        result.checked += 1
        values, bad = _read(row, "chain", _CHAIN_COLUMNS)
        cid = row["customer_id"] if isinstance(row["customer_id"], str) else str(row["customer_id"])
        if cid != customer:
            customer, expected, prev = cid, 1, GENESIS
            result.customers += 1
        seen.add(cid)
        where = _describe(cid, row["seq"], row["kind"], row["ref"])
        for problem in bad:
            result.add(f"{where}: {problem} (edited)")
        seq: int | None = values.get("seq")
        if seq is None:
            continue
        kind, ref, detail = values.get("kind"), values.get("ref"), values.get("detail")
        detail_ok = "detail" in values
        if seq != expected:
            missing = (f"entry {expected}" if seq == expected + 1
                       else f"entries {expected}-{seq - 1}")
            result.add(f"customer {cid!r}: {missing} missing before entry {seq} (deleted)")
        elif prev is not None and "prev_hash" in values and values["prev_hash"] != prev:
            result.add(f"{where}: does not follow the entry before it "
                       "(an entry was inserted, deleted or rewritten before it)")
        body: dict[str, Any] | None = None
        body_ok = True
        if kind == "message":
            if row["m_message_id"] is None:
                result.add(f"{where}: the message row is missing (deleted)")
            else:
                fields, unreadable = _read(row, "messages", _MESSAGE_COLUMNS, "m_")
                for problem in unreadable:
                    result.add(f"{where}: {problem} (edited)")
                body_ok = not unreadable
                body = message_body(fields)
                if fields.get("archive_ref") is not None:
                    keys.message(cid, seq, str(ref))
                    if (detail_ok and detail is not None
                            and not keys.key(cid, None, detail)):
                        result.add(f"{where}: its key commitment is not readable (edited)")
        elif kind == "event":
            if row["e_event_id"] is None:
                result.add(f"{where}: the event row is missing (deleted)")
            else:
                fields, unreadable = _read(row, "events", _EVENT_COLUMNS, "e_")
                for problem in unreadable:
                    result.add(f"{where}: {problem} (edited)")
                body_ok = not unreadable
                body = event_body(fields)
        elif kind == "erasure":
            keys.erasure(cid)
        elif kind == "key":
            if detail_ok and not keys.key(cid, ref, detail):
                result.add(f"{where}: its key commitment is not readable (edited)")
        elif kind is not None:
            result.add(f"{where}: unknown entry kind")
        if not bad and body_ok and (body is not None or kind in ("erasure", "key")):
            computed = link_hash(
                customer_id=cid, seq=seq, kind=str(kind), ref=ref, at=values["at"],
                detail=detail, prev=values["prev_hash"], body=body,
            )
            if computed != values["hash"]:
                result.add(f"{where}: its data no longer matches its hash (edited)")
        digest: str | None = values.get("hash")
        if pins.get(cid) == seq:
            result.pinned[cid] = digest or ""
        result.heads[cid] = (seq, digest or "")
        expected, prev = seq + 1, digest
    _cross_checks(conn, result)
    keys.check(conn, seen, result.add)
    return result


def _cross_checks(conn: sa.Connection, result: Scan) -> None:
    """Rows outside every chain, rows in two places, blobs without their message."""
    for table, kind, key in ((messages, "message", "message_id"), (events, "event", "event_id")):
        chained = sa.select(chain.c.ref).where(chain.c.kind == kind, chain.c.ref == table.c[key])
        query = (
            sa.select(table.c[key], table.c.customer_id)
            .where(~sa.exists(chained))
            .order_by(table.c.customer_id, table.c[key])
        )
        for ident, cid in conn.execute(query):
            result.add(f"{kind} {ident} of customer {cid!r} is in no chain "
                       "(inserted outside the record)")
        twice = (
            sa.select(chain.c.ref)
            .where(chain.c.kind == kind)
            .group_by(chain.c.ref)
            .having(sa.func.count() > 1)
        )
        for (ident,) in conn.execute(twice):
            result.add(f"{kind} {ident} appears more than once in the chains")
    owner = messages.alias("owner")
    orphans = (
        sa.select(archive.c.ref, archive.c.part, archive.c.message_id)
        .select_from(archive.outerjoin(owner, owner.c.message_id == archive.c.message_id))
        .where(sa.or_(owner.c.message_id.is_(None), owner.c.archive_ref.is_(None),
                      owner.c.archive_ref != archive.c.ref))
        .order_by(archive.c.ref)
    )
    for ref, part, message_id in conn.execute(orphans):
        result.add(f"archive blob {ref}/{part} does not belong to message {message_id} "
                   "(inserted, or its message was deleted or edited)")
    _short_blobs(conn, result)
    link = chain.alias("link")
    erasure = chain.alias("erasure")
    missing = (
        sa.select(messages.c.message_id, messages.c.customer_id)
        .where(
            messages.c.archive_ref.is_not(None),
            ~sa.exists(sa.select(archive.c.ref).where(archive.c.ref == messages.c.archive_ref)),
            ~sa.exists(
                sa.select(erasure.c.seq).where(
                    erasure.c.customer_id == messages.c.customer_id,
                    erasure.c.kind == "erasure",
                    erasure.c.seq > sa.select(link.c.seq).where(
                        link.c.kind == "message", link.c.ref == messages.c.message_id
                    ).correlate(messages).scalar_subquery(),
                ).correlate(messages)
            ),
        )
        .order_by(messages.c.customer_id, messages.c.message_id)
    )
    for message_id, cid in conn.execute(missing):
        result.add(f"message {message_id} of customer {cid!r}: its archived content is missing "
                   "but the customer was never erased (deleted)")


def _short_blobs(conn: sa.Connection, result: Scan) -> None:
    """Blobs too short to be sealed content, or not bytes at all (SQLite keeps any type).

    Verify does not decrypt; this is the part of a blob's integrity it can see
    without the key, from the database's own length, without reading the blobs.
    """
    size = sa.func.length(archive.c.blob)
    held: sa.ColumnElement[str] = sa.literal("blob")
    bad = size < SEALED_MIN
    if conn.dialect.name == "sqlite":
        held = sa.func.typeof(archive.c.blob)
        bad = sa.or_(bad, held != "blob")
    query = (
        sa.select(archive.c.ref, archive.c.part, archive.c.message_id, size, held)
        .where(bad)
        .order_by(archive.c.ref, archive.c.part)
    )
    for ref, part, message_id, length, kind in conn.execute(query):
        what = (f"holds {'text' if kind == 'text' else kind}, not bytes" if kind != "blob"
                else f"has {length} bytes, fewer than any sealed content ({SEALED_MIN})")
        result.add(f"archive blob {ref}/{part} of message {message_id}: archive.blob {what} "
                   "(truncated or replaced; tampered)")


def report(
    result: Scan, extra: Iterable[str] = (), *, checkpoint: str | None = None,
    erasures_pending: Iterable[str] = (),
) -> VerifyReport:
    """Turn a scan (plus checkpoint problems) into a :class:`VerifyReport`."""
    for problem in extra:
        result.add(problem)
    return VerifyReport(
        ok=result.problem_count == 0,
        checked=result.checked,
        first_bad=result.problems[0] if result.problems else None,
        problems=list(result.problems),
        problem_count=result.problem_count,
        customers=result.customers,
        checkpoint=checkpoint,
        erasures_pending=list(erasures_pending),
    )
