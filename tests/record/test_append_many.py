"""Bulk appends (``Record.append_many``): the same outcomes as one ``append`` per message."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from ccm.errors import IdempotencyConflict
from ccm.record import MasterKey, Record
from ccm.record.policy import Cap

from ._support import EPOCH, T0, entry

DAILY = Cap(name="daily", max=2, window_days=1)
SMS_WEEKLY = Cap(name="sms-weekly", max=1, window_days=7, channel="sms")


def _outcome(result: Any) -> tuple[str, str | None]:
    if isinstance(result, IdempotencyConflict):
        return ("conflict", None)
    return (result.status, result.reason)


def _items(seed: int) -> list[dict[str, Any]]:
    """A mix of customers, channels, repeated keys and caps, some past the caps."""
    rng = random.Random(seed)
    items = []
    for i in range(120):
        customer = f"C{rng.randint(1, 12)}"
        key = f"k{rng.randint(1, 90)}"
        item: dict[str, Any] = {
            "entry": entry(customer, key=key, params=rng.choice("pq"),
                           channel=rng.choice(("sms", "email")),
                           message_type=rng.choice(("marketing", "operational")),
                           created_at=T0 + timedelta(hours=i)),
            "content": f"content {i}".encode(),
            "caps": rng.choice(([], [DAILY], [DAILY, SMS_WEEKLY])),
        }
        items.append(item)
    return items


def test_append_many_answers_as_appends_one_by_one(
    record: Record, open_record: Callable[..., Record], master_key: MasterKey, tmp_path: Path
) -> None:
    """Duplicates, conflicts and caps (counting earlier items of one call) come out the same."""
    reference = open_record(master_key, f"sqlite:///{tmp_path / 'one-by-one.db'}")
    for seed in range(3):
        items = _items(seed)
        expected = []
        for item in items:
            try:
                expected.append(_outcome(reference.append(
                    item["entry"], content=item["content"], caps=item["caps"])))
            except IdempotencyConflict as exc:
                expected.append(_outcome(exc))
        got = [_outcome(r) for r in record.append_many(items)]
        assert got == expected
        assert any(status == "suppressed" for status, _ in got)
        assert any(status == "conflict" for status, _ in got)
        assert any(status == "duplicate" for status, _ in got)
    assert record.verify().ok
    assert record.count("C1", since=EPOCH) == reference.count("C1", since=EPOCH)


def test_append_many_continues_each_customers_chain_and_archives(record: Record) -> None:
    """Entries appended in bulk after single appends extend the chains; content reads back."""
    record.append(entry("C1", created_at=T0), content=b"first")
    items = [{"entry": entry(f"C{i % 3}", created_at=T0 + timedelta(minutes=i)),
              "content": f"bulk {i}".encode()} for i in range(9)]
    results = record.append_many(items)
    assert all(_outcome(r) == ("generated", None) for r in results)
    for item in items:
        assert record.content(item["entry"].message_id) == item["content"]
    timeline = record.timeline("C1")
    assert len(timeline.messages) == 4
    assert record.verify().ok


def test_append_many_rerun_is_all_duplicates(record: Record) -> None:
    """Appending the same batch again (a resumed run) adds nothing."""
    items = [{"entry": entry(f"C{i}", key=f"run:{i}"), "content": b"x", "caps": [DAILY]}
             for i in range(5)]
    record.append_many(items)
    again = [{**item, "entry": entry(item["entry"].customer_id, key=item["entry"].idempotency_key)}
             for item in items]
    assert [_outcome(r)[0] for r in record.append_many(again)] == ["duplicate"] * 5
    assert sum(record.count(f"C{i}", since=EPOCH) for i in range(5)) == 5


def test_new_customers_data_keys_are_made_in_one_statement(
    record: Record, master_key: MasterKey
) -> None:
    """A bulk append for many new customers inserts all their data keys with one statement."""
    import sqlalchemy as sa

    inserts: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DATA_KEYS"):
            # SQLite: one executemany; PostgreSQL: one INSERT ... unnest of column arrays.
            if executemany:
                inserts.append(len(parameters))
            else:
                first = parameters[0] if isinstance(parameters, tuple | list) else None
                inserts.append(len(first) if isinstance(first, list) else 1)

    items = [{"entry": entry(f"N{i}", key=f"new-{i}"), "content": f"body {i}".encode()}
             for i in range(40)]
    sa.event.listen(record.engine, "before_cursor_execute", count)
    try:
        results = record.append_many(items)
    finally:
        sa.event.remove(record.engine, "before_cursor_execute", count)
    assert [r.status for r in results] == ["generated"] * 40  # type: ignore[union-attr]
    assert inserts == [40]
    assert record.content(results[7].entry.message_id) == b"body 7"  # type: ignore[union-attr]
    assert record.verify().ok


def test_a_content_digest_is_taken_only_for_the_very_bytes_it_was_made_from(
    record: Record, monkeypatch: Any,
) -> None:
    """``content_digest`` saves the second hash of the same bytes object, and nothing else:
    a digest of other bytes (equal or not) never vouches for the content given."""
    import dataclasses
    import hashlib
    import pickle

    import pytest

    from ccm.record import bulk
    from ccm.record.bulk import Digested

    content = b"the content " * 100
    other = Digested(b"other bytes")
    equal = Digested(bytes(bytearray(content)))  # equal bytes, another object
    assert equal.data == content and equal.data is not content
    vouched = Digested(content)
    assert vouched.sha256 == hashlib.sha256(content).hexdigest()
    assert pickle.loads(pickle.dumps(vouched)) == vouched

    # A wrong entry digest is refused whatever digest comes with the content.
    wrong = dataclasses.replace(entry("C1"), content_sha256=other.sha256)
    for digest in (other, vouched, equal, None):
        with pytest.raises(ValueError, match="does not match"):
            record.append_many([{"entry": wrong, "content": content, "content_digest": digest}])
    # A digest of other bytes is not taken for the content's: the entry's own is checked.
    claimed = dataclasses.replace(entry("C1"), content_sha256=other.sha256)
    with pytest.raises(ValueError, match="does not match"):
        record.append_many([{"entry": claimed, "content": content, "content_digest": other}])
    # Nor for bytes that can change after they were hashed.
    mutable = bytearray(content)
    before = Digested(mutable)  # type: ignore[arg-type]
    mutable[:3] = b"THE"
    changed = dataclasses.replace(entry("C1"), content_sha256=before.sha256)
    with pytest.raises(ValueError, match="does not match"):
        record.append_many([{"entry": changed, "content": mutable, "content_digest": before}])

    hashed: list[int] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(bulk.hashlib, "sha256", counting)
    good = dataclasses.replace(entry("C1"), content_sha256=vouched.sha256)
    [result] = record.append_many([{"entry": good, "content": content,
                                    "content_digest": vouched}])
    assert result.status == "generated" and len(content) not in hashed
    again = dataclasses.replace(entry("C2"), content_sha256=vouched.sha256)
    [result] = record.append_many([{"entry": again, "content": content,
                                    "content_digest": equal}])
    assert result.status == "generated" and len(content) in hashed  # not its bytes: hashed
    monkeypatch.undo()
    assert record.content(good.message_id) == content
    assert record.verify().ok


def test_caps_count_messages_recorded_before_at_the_window_edge(record: Record) -> None:
    """Caps count what earlier calls recorded, inside the window to the microsecond
    (entries in another time zone are compared in UTC), and not what is older."""
    from datetime import timezone

    paris = timezone(timedelta(hours=1))
    record.append(entry("C1", created_at=T0), content=b"one")
    record.append_many([{"entry": entry("C1", created_at=T0 + timedelta(minutes=1)),
                         "content": b"two"}])
    record.append(entry("C2", created_at=T0 - timedelta(days=1, microseconds=1)),
                  content=b"old")
    edge = (T0 + timedelta(days=1)).astimezone(paris)
    results = record.append_many([
        {"entry": entry("C1", created_at=edge), "content": b"x", "caps": [DAILY]},
        {"entry": entry("C1", created_at=edge + timedelta(microseconds=1)), "content": b"x",
         "caps": [DAILY]},
        {"entry": entry("C2", created_at=T0.astimezone(paris)), "content": b"x",
         "caps": [DAILY]},
    ])
    assert [_outcome(r) for r in results] == [
        ("suppressed", "cap:daily"), ("generated", None), ("generated", None)]
    assert record.verify().ok


def test_only_archived_items_get_a_data_key(
    record: Record, open_record: Callable[..., Record], master_key: MasterKey, tmp_path: Path
) -> None:
    """An item answered as a duplicate or a conflict of a key another customer used earlier in
    the same call, or suppressed, gets no data key (as with one append per item): a key of a
    customer without entries would fail verify as tampered."""
    from ._support import raw_rows

    items: list[dict[str, Any]] = [
        {"entry": entry("A", key="k1", params="p"), "content": b"a"},
        {"entry": entry("B", key="k1", params="p"), "content": b"b"},  # duplicate of A's
        {"entry": entry("C", key="k1", params="q"), "content": b"c"},  # conflict
        {"entry": entry("D", status="suppressed", reason="quiet-hours"), "content": b"d"},
        {"entry": entry("E", created_at=T0), "content": b"e1", "caps": [DAILY]},
        {"entry": entry("E", created_at=T0), "content": b"e2", "caps": [DAILY]},
        {"entry": entry("F", created_at=T0), "content": b"f1"},
        {"entry": entry("F", created_at=T0), "content": b"f2", "caps": [DAILY]},
        {"entry": entry("F", created_at=T0), "content": b"f3", "caps": [DAILY]},  # capped
    ]
    reference = open_record(master_key, f"sqlite:///{tmp_path / 'one-by-one.db'}")
    for item in items:
        with contextlib.suppress(IdempotencyConflict):  # C's: the record keeps A's
            reference.append(item["entry"], content=item["content"], caps=item.get("caps", ()))
    got = [_outcome(r) for r in record.append_many(items)]
    assert got == [("generated", None), ("duplicate", None), ("conflict", None),
                   ("suppressed", "quiet-hours"), ("generated", None), ("generated", None),
                   ("generated", None), ("generated", None), ("suppressed", "cap:daily")]

    def holders(rec: Record) -> list[str]:
        return sorted(row["customer_id"] for row in raw_rows(rec, "data_keys"))

    assert holders(record) == holders(reference) == ["A", "E", "F"]
    report = record.verify()
    assert report.ok, report.problems
