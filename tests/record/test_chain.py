"""Tamper evidence: verify finds edited, deleted and inserted entries and names the first."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from ccm.record import MasterKey, Record
from ccm.record.chain import GENESIS, canonical, link_hash, message_body
from ccm.record.schema import chain, messages

from ._support import T0, entry, raw_sql


@pytest.fixture(params=["append", "append_many"])
def filled(open_record: Callable[..., Record], request: pytest.FixtureRequest) -> Record:
    """Two customers, three messages each, a few events; no archive (plain deletes allowed).

    Written one append at a time, or by the bulk path batch runs use: every
    tampering test runs against both.
    """
    rec = open_record(None)
    entries = [entry(cid, message_id=f"{cid}{i}", created_at=T0 + timedelta(hours=i))
               for i in range(3) for cid in ("A", "B")]
    if request.param == "append":
        for e in entries:
            rec.append(e)
    else:
        rec.append_many([{"entry": e} for e in entries])
    rec.add_event("A1", "opened", at=T0 + timedelta(days=1))
    rec.add_event("B2", "clicked", at=T0 + timedelta(days=1), data={"url": "https://x.example"})
    return rec


def _bad(rec: Record) -> str:
    report = rec.verify()
    assert not report.ok
    assert report.first_bad is not None
    return report.first_bad


def test_intact_record_verifies(filled: Record) -> None:
    """An untouched record verifies, counting every chain entry."""
    report = filled.verify()
    assert report.ok and report.first_bad is None and report.problems == []
    assert (report.checked, report.customers) == (8, 2)


def test_edited_message_is_found(filled: Record) -> None:
    """Changing a recorded field of a message names that message as edited."""
    raw_sql(filled, "UPDATE messages SET template = 'other' WHERE message_id = 'A1'")
    bad = _bad(filled)
    assert "'A' entry 2 (message A1)" in bad and "edited" in bad


def test_edited_status_is_found(filled: Record) -> None:
    """Turning a suppression into a send (or back) is an edit verify sees."""
    raw_sql(filled, "UPDATE messages SET status = 'suppressed', reason = 'x' "
                    "WHERE message_id = 'B0'")
    assert "message B0" in _bad(filled)


def test_edited_event_is_found(filled: Record) -> None:
    """Changing an event's data names that event."""
    raw_sql(filled, """UPDATE events SET data = '{"url":"https://evil.example"}' """
                    "WHERE message_id = 'B2'")
    bad = _bad(filled)
    assert "customer 'B'" in bad and "event" in bad and "edited" in bad


def test_edited_chain_time_is_found(filled: Record) -> None:
    """Moving a chain entry's time is an edit too."""
    raw_sql(filled, "UPDATE chain SET at = :at WHERE customer_id = 'A' AND seq = 1",
            at=T0 - timedelta(days=30))
    assert "'A' entry 1 (message A0)" in _bad(filled)


def test_deleted_entry_in_the_middle_is_found(filled: Record) -> None:
    """Deleting a message with its chain row leaves a gap verify names."""
    raw_sql(filled, "DELETE FROM messages WHERE message_id = 'A0'",
            "DELETE FROM chain WHERE customer_id = 'A' AND seq = 1")
    bad = _bad(filled)
    assert "customer 'A': entry 1 missing before entry 2" in bad


def test_deleted_message_row_is_found(filled: Record) -> None:
    """Deleting only the message row names the chain entry that lost its data."""
    raw_sql(filled, "DELETE FROM messages WHERE message_id = 'B1'")
    bad = _bad(filled)
    assert "'B' entry 2 (message B1)" in bad and "missing" in bad


def test_deleted_chain_row_is_found(filled: Record) -> None:
    """Deleting only a chain row leaves a gap and an unchained message."""
    raw_sql(filled, "DELETE FROM chain WHERE customer_id = 'B' AND seq = 2")
    report = filled.verify()
    assert report.first_bad == "customer 'B': entry 2 missing before entry 3 (deleted)"
    assert any("message B1" in p and "in no chain" in p for p in report.problems)


def test_inserted_message_is_found(filled: Record) -> None:
    """A message row added behind the record's back is in no chain."""
    raw_sql(filled, "INSERT INTO messages (message_id, idempotency_key, params_sha256, "
                    "customer_id, channel, template, created_at, status) VALUES "
                    "('FAKE', 'fake', 'p', 'A', 'email', 'offer', :at, 'generated')",
            at=T0)
    assert _bad(filled) == ("message FAKE of customer 'A' is in no chain "
                            "(inserted outside the record)")


def test_inserted_chain_entry_is_found(filled: Record) -> None:
    """An entry appended with a made-up hash, or spliced in, breaks the chain there."""
    raw_sql(filled, "INSERT INTO messages (message_id, idempotency_key, params_sha256, "
                    "customer_id, channel, template, created_at, status) VALUES "
                    "('FAKE', 'fake', 'p', 'A', 'email', 'offer', :at, 'generated')",
            "INSERT INTO chain (customer_id, seq, kind, ref, at, prev_hash, hash) VALUES "
            "('A', 5, 'message', 'FAKE', :at, :prev, :hash)",
            at=T0, prev="f" * 64, hash="e" * 64)
    bad = _bad(filled)
    assert "'A' entry 5 (message FAKE)" in bad and "does not follow" in bad


def test_rewritten_entry_with_its_hash_breaks_the_next_link(filled: Record) -> None:
    """Recomputing an edited entry's own hash still breaks the link of the entry after it."""
    raw_sql(filled, "UPDATE messages SET template = 'other' WHERE message_id = 'A0'")
    with filled.engine.connect() as conn:  # typed reads, as the record makes them
        row = conn.execute(sa.select(messages).where(messages.c.message_id == "A0")).one()
        at = conn.execute(sa.select(chain.c.at).where(chain.c.ref == "A0")).scalar_one()
    forged = link_hash(customer_id="A", seq=1, kind="message", ref="A0", at=at, detail=None,
                       prev=GENESIS, body=message_body(row._mapping))
    raw_sql(filled, "UPDATE chain SET hash = :h WHERE customer_id = 'A' AND seq = 1", h=forged)
    bad = _bad(filled)
    assert "'A' entry 2 (message A1)" in bad and "does not follow" in bad


def test_first_bad_is_the_earliest_in_chain_order(filled: Record) -> None:
    """With several problems, first_bad is the first in chain order and all are listed."""
    raw_sql(filled, "UPDATE messages SET locale = 'xx' WHERE message_id IN ('B2', 'A2')")
    report = filled.verify()
    assert "message A2" in (report.first_bad or "")
    assert report.problem_count == 2 and "message B2" in report.problems[1]


def test_archive_tampering_is_found(open_record: Callable[..., Record]) -> None:
    """A blob deleted without an erasure, or added for no message, is reported."""
    rec = open_record(MasterKey.generate())
    a, b = entry("A"), entry("A")
    rec.append(a, content=b"one")
    rec.append(b, content=b"two")
    ref = rec.get(a.message_id).archive_ref
    raw_sql(rec, "DELETE FROM archive WHERE ref = :ref", ref=ref)
    assert f"message {a.message_id} of customer 'A': its archived content is missing" in _bad(rec)
    raw_sql(rec, "INSERT INTO archive (ref, part, message_id, customer_id, key_id, blob) "
                 "VALUES ('orphan', 'content', :mid, 'A', 'k', :blob)",
            mid=b.message_id, blob=b"\x00" * 40)
    assert any("archive blob orphan/content" in p for p in rec.verify().problems)


def test_canonical_json_leaves_out_nulls_and_sorts() -> None:
    """The hashed form is sorted, compact, UTF-8, and has no null fields."""
    hashed = canonical({"b": 1, "a": None, "c": {"y": None, "x": "é"}})
    assert hashed == '{"b":1,"c":{"x":"é"}}'.encode()


def test_deleted_event_row_is_found(filled: Record) -> None:
    """Deleting an event row names the chain entry that lost its data."""
    raw_sql(filled, "DELETE FROM events WHERE message_id = 'A1'")
    bad = _bad(filled)
    assert "customer 'A'" in bad and "the event row is missing (deleted)" in bad


def test_inserted_event_is_found(filled: Record) -> None:
    """An event row added behind the record's back is in no chain."""
    raw_sql(filled, "INSERT INTO events (event_id, message_id, customer_id, kind, at) VALUES "
                    "('FAKE-EV', 'A2', 'A', 'clicked', :at)", at=T0)
    assert any("event FAKE-EV of customer 'A' is in no chain" in p
               for p in filled.verify().problems)
