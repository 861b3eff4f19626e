"""The fast bulk path writes what the single append writes, and reads what older code wrote."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccm.record import Entry, MasterKey, Record
from ccm.record.bulk import entry_from
from ccm.record.chain import (
    MESSAGE_FIELDS,
    canonical,
    iso,
    link_hash,
    message_bodies,
    message_body,
    message_body_json,
    message_link_hash,
    message_link_hashes,
)
from ccm.record.datakeys import key_detail

from ..strategies import HOSTILE
from ._support import EPOCH, T0, entry, raw_rows

DATA = Path(__file__).parent / "data"
#: The master key of tests/record/data/record-before-recfast.sql (a test key, nothing else).
FIXTURE_KEY = "q0Fh2vBq3B6wJXhZk9cQ1sW9R5d6T0u3yq8m3M1qk3A="

_texts = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.lists(st.sampled_from(HOSTILE), max_size=6).map("".join),
)
_maybe = st.one_of(st.none(), _texts)
_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                               timezone(timedelta(hours=-8))]),
)


@st.composite
def _rows(draw: st.DrawFn) -> dict[str, Any]:
    """A messages row as the bulk path holds it: strings or NULL, created_at aware."""
    row: dict[str, Any] = {name: draw(_maybe) for name in MESSAGE_FIELDS}
    for name in ("message_id", "idempotency_key", "customer_id", "channel", "template",
                 "status", "params_sha256"):
        row[name] = draw(_texts)
    row["created_at"] = draw(_times)
    return row


@settings(max_examples=300, deadline=None)
@given(row=_rows(), seq=st.integers(1, 2**62), at=_times, detail=_maybe, prev=_texts)
def test_fast_canonical_hash_is_byte_identical(row: dict[str, Any], seq: int, at: datetime,
                                                detail: str | None, prev: str) -> None:
    """The assembled canonical JSON hashes exactly as canonical()/link_hash() of the same row."""
    body_json = message_body_json(row, iso(row["created_at"]))
    assert body_json.encode("utf-8") == canonical(message_body(row))
    fast = message_link_hash(customer_id=row["customer_id"], seq=seq, ref=row["message_id"],
                             at=iso(at), detail=detail, prev=prev, body_json=body_json)
    slow = link_hash(customer_id=row["customer_id"], seq=seq, kind="message",
                     ref=row["message_id"], at=at, detail=detail, prev=prev,
                     body=message_body(row))
    assert fast == slow


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(_rows(), min_size=1, max_size=6), shared=st.data(), at=_times,
       links=st.data())
def test_bodies_and_links_of_a_chunk_are_byte_identical(rows: list[dict[str, Any]],
                                                        shared: st.DataObject, at: datetime,
                                                        links: st.DataObject) -> None:
    """message_bodies/message_link_hashes (column by column, values shared by every row
    quoted once) give canonical() and link_hash() of each row, NULLs and hostile text too."""
    # Some columns the same in every row (as a chunk's template, channel or NULLs are).
    for name in shared.draw(st.sets(st.sampled_from(MESSAGE_FIELDS))):
        for row in rows[1:]:
            row[name] = rows[0][name]
    created = [iso(row["created_at"]) for row in rows]
    bodies = message_bodies(rows, created)
    assert [body.encode("utf-8") for body in bodies] == [
        canonical(message_body(row)) for row in rows]
    drawn = [(row["customer_id"], links.draw(st.integers(1, 2**62)), row["message_id"],
              links.draw(_maybe), links.draw(_texts), body)
             for row, body in zip(rows, bodies, strict=True)]
    assert message_link_hashes(drawn, iso(at)) == [
        link_hash(customer_id=customer, seq=seq, kind="message", ref=ref, at=at,
                  detail=detail, prev=prev, body=message_body(row))
        for (customer, seq, ref, detail, prev, _), row in zip(drawn, rows, strict=True)]


@given(keys=st.lists(st.binary(min_size=32, max_size=32), max_size=4), customer=_texts)
def test_wrap_many_is_wrap_of_each(keys: list[bytes], customer: str) -> None:
    """MasterKey.wrap_many wraps each data key as wrap() does with the same nonce."""
    master = MasterKey(b"k" * 32)
    nonces = [bytes([n]) * 12 for n in range(len(keys))]
    customers = [customer + str(n) for n in range(len(keys))]
    assert master.wrap_many(keys, customers, nonces) == [
        master.wrap(key, customer_id=who, nonce=nonce)
        for key, who, nonce in zip(keys, customers, nonces, strict=True)]
    with pytest.raises(ValueError, match="12 bytes"):
        master.wrap_many([b"k" * 32], ["C1"], [b"short"])


@given(key_id=st.one_of(st.text(alphabet="0123456789abcdef", max_size=40), _texts),
       wrapped=st.binary(max_size=80))
def test_key_commitment_is_canonical_json(key_id: str, wrapped: bytes) -> None:
    """A key commitment is canonical() of its three fields, whatever the key id."""
    master = MasterKey(b"k" * 32)
    assert key_detail(key_id, wrapped, master) == canonical({
        "key_id": key_id, "master": master.fingerprint,
        "wrapped_sha256": hashlib.sha256(wrapped).hexdigest()}).decode("utf-8")


def _same_entries(i: int, customer: str) -> list[dict[str, Any]]:
    return [{"entry": entry(customer, message_id=f"{customer}-m{i}-{n}", key=f"{customer}:{i}:{n}",
                            created_at=T0 + timedelta(minutes=n), segment="retail" if n else None),
             "content": f"letter {n} für {customer}".encode()} for n in range(3)]


def test_bulk_rows_are_stored_as_single_appends_store_them(
    open_record: Callable[..., Record], master_key: MasterKey, tmp_path: Path
) -> None:
    """Message rows read back identical from both paths; chain rows differ only in time and hash."""
    one = open_record(master_key, f"sqlite:///{tmp_path / 'one.db'}")
    bulk = open_record(master_key, f"sqlite:///{tmp_path / 'bulk.db'}")
    items = [item for c in ("A", "B") for item in _same_entries(0, c)]
    for item in items:
        one.append(item["entry"], content=item["content"])
    bulk.append_many(items)

    def rows(rec: Record, table: str, drop: tuple[str, ...]) -> list[dict[str, Any]]:
        out = [{k: v for k, v in r.items() if k not in drop} for r in raw_rows(rec, table)]
        return sorted(out, key=lambda r: sorted((k, str(v)) for k, v in r.items()))

    assert rows(one, "messages", ("archive_ref",)) == rows(bulk, "messages", ("archive_ref",))
    chain_drop = ("at", "hash", "detail", "prev_hash")  # time, and keys drawn at random
    assert rows(one, "chain", chain_drop) == rows(bulk, "chain", chain_drop)
    for rec in (one, bulk):
        for item in items:
            got = rec.get(item["entry"].message_id)
            assert got.created_at == item["entry"].created_at
            assert rec.content(got.message_id) == item["content"]
        assert rec.verify().ok
    # The text SQLite holds for a timestamp is the same from both paths.
    for path in ("one.db", "bulk.db"):
        with sqlite3.connect(tmp_path / path) as conn:
            stamps = {r[0] for r in conn.execute("SELECT created_at FROM messages")}
            assert stamps == {(T0 + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M:%S.%f")
                              for n in range(3)}
            ats = [r[0] for r in conn.execute("SELECT at FROM chain")]
            assert all(len(a) == 26 and a[10] == " " for a in ats)


@pytest.mark.parametrize("shared", ["it's 2.0", "1.0'); DROP TABLE messages; --", "für",
                                    "tab\tand\nnewline", "", None])
def test_values_a_chunk_shares_are_stored_as_bound_ones(
    open_record: Callable[..., Record], master_key: MasterKey, tmp_path: Path,
    shared: str | None,
) -> None:
    """Values every row of a chunk shares (written into SQLite's statement) are stored as
    single appends store them: the same text or NULL, of the same type, quotes and all."""
    one = open_record(master_key, f"sqlite:///{tmp_path / 'one.db'}")
    bulk = open_record(master_key, f"sqlite:///{tmp_path / 'bulk.db'}")
    items: list[dict[str, Any]] = [
        {"entry": dataclasses.replace(
            entry(f"S{n:02d}", created_at=T0 + timedelta(minutes=n), segment=shared,
                  pack_version=shared or "1.0.0"),
            template_version=shared, journey=shared, reason=None),
         "content": b"the same text"} for n in range(20)]
    for item in items:
        one.append(item["entry"], content=item["content"])
    bulk.append_many(items)

    def stored(path: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(tmp_path / path) as conn:
            return conn.execute(
                "SELECT message_id, pack_version, typeof(pack_version), journey, "
                "typeof(journey), segment, typeof(segment), template_version, reason, "
                "typeof(reason), channel, status, created_at FROM messages "
                "ORDER BY message_id").fetchall()

    assert stored("bulk.db") == stored("one.db")
    assert len(stored("bulk.db")) == 20
    assert bulk.verify().ok


def _old_record(tmp_path: Path) -> Path:
    """The record tests/record/data/record-before-recfast.sql describes, as a SQLite file.

    It was written (single appends, the old bulk path, an event, an erasure)
    by the code before the bulk path changed; see its first lines.
    """
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "record-before-recfast.sql").read_text("utf-8"))
    return path


def test_a_record_written_before_the_change_still_verifies_and_grows(tmp_path: Path) -> None:
    """Old rows verify and open; bulk appends after them extend the old chains and verify."""
    path = _old_record(tmp_path)
    key = MasterKey.from_text(FIXTURE_KEY)
    with Record(path, master_key=key) as rec:
        report = rec.verify()
        assert report.ok and report.checked == 13  # 11 messages, an event, an erasure
        first = hashlib.sha256(b"C-1:0").hexdigest()[:32]  # ids as the fixture made them
        assert rec.content(first) == (
            'Grüße, Zoë: ünïcode "quoted" \\ and\nnew line'.encode())
        before = {c: rec.count(c, since=EPOCH) for c in ("C-0", "C-1", "C-2", "C-3")}
        items = [item for c in ("C-0", "C-1", "C-2", "C-3", "NEW") for item in
                 _same_entries(1, c)]
        results = rec.append_many(items)
        assert [r.status for r in results] == ["generated"] * len(items)  # type: ignore[union-attr]
        assert rec.verify().ok
        for c, n in before.items():
            assert rec.count(c, since=EPOCH) == n + 3
        for item in items:
            assert rec.content(item["entry"].message_id) == item["content"]
    # And the other way round: code reading as the old one did sees the same verified record.
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    with Record(copy, read_only=True) as rec:
        assert rec.verify().ok


@pytest.mark.parametrize("mode", ["append", "append_many"])
def test_erasing_a_bulk_written_customer_leaves_no_plaintext(tmp_path: Path, mode: str) -> None:
    """After erase, no plaintext, wrapped key or ciphertext of the customer is in any file."""
    from .test_erasure import _assert_gone, _snapshot_files

    secret = "Ms Ada Quill, 12 Lantern Row"
    db = tmp_path / "record.db"
    rec = Record(db, master_key=MasterKey.generate())
    items: list[dict[str, Any]] = [
        {"entry": entry("GONE", created_at=T0), "content": f"{secret} {i} ".encode() * 40,
         "archival": b"%PDF-1.7 " + secret.encode() * 30} for i in range(3)]
    items.append({"entry": entry("KEPT", created_at=T0), "content": b"kept"})
    if mode == "append":
        for item in items:
            rec.append(item["entry"], content=item["content"], archival=item.get("archival"))
    else:
        rec.append_many(items)
    wrapped = next(bytes(r["wrapped"]) for r in raw_rows(rec, "data_keys")
                   if r["customer_id"] == "GONE")
    blobs = [bytes(r["blob"]) for r in raw_rows(rec, "archive") if r["customer_id"] == "GONE"]
    assert len(blobs) == 6
    done = rec.erase("GONE")
    assert done.flushed and done.blobs_deleted == 6
    _assert_gone(_snapshot_files(db, tmp_path / "copy"), wrapped, blobs)
    assert rec.verify().ok
    rec.close()


@pytest.mark.parametrize("driver", ["native", "other"])
def test_bulk_inserts_store_the_same_rows_whatever_the_driver(
    record: Record, driver: str
) -> None:
    """The driver's own statements and the SQLAlchemy Core fallback write identical rows."""
    from ccm.record.bulk import _Sql

    now = datetime(2026, 1, 5, 9, 30, 1, 123456, tzinfo=UTC)
    stamp: Any = "2026-01-05 09:30:01.123456" if record.backend == "sqlite" else now
    with record._tx(write=True, customers=["X1", "X2"]) as conn:
        sql = _Sql(conn.dialect.name, str(conn.dialect.driver) if driver == "native" else "x")
        sql.write(conn, "data_keys", [("X1", "k1", b"\x00wrapped", stamp),
                                      ("X2", "k2", b"\xffwrapped", stamp)])
    rows = sorted(raw_rows(record, "data_keys"), key=lambda r: r["customer_id"])
    assert [(r["customer_id"], r["key_id"], bytes(r["wrapped"])) for r in rows] == [
        ("X1", "k1", b"\x00wrapped"), ("X2", "k2", b"\xffwrapped")]
    with record.snapshot() as conn:
        import sqlalchemy as sa

        from ccm.record.schema import data_keys
        got = conn.execute(sa.select(data_keys.c.created_at)).scalars().all()
    assert [value.replace(tzinfo=UTC) if value.tzinfo is None else value
            for value in got] == [now, now]


def test_entry_from_is_entry_of_the_same_fields() -> None:
    """entry_from gives the Entry that Entry(**fields) gives, frozen, and refuses what
    Entry refuses (a field missing or unknown)."""
    fields = dataclasses.asdict(entry("C1", segment="retail"))
    made = entry_from(dict(fields))
    assert made == Entry(**fields)
    assert dataclasses.asdict(made) == fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.status = "suppressed"  # type: ignore[misc]
    for broken in ({k: v for k, v in fields.items() if k != "segment"} | {"x": 1},
                   {k: v for k, v in fields.items() if k != "reason"}):
        with pytest.raises(TypeError):
            entry_from(broken)
