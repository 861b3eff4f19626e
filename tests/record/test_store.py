"""The record store: append, idempotency, caps, archive, events, consent, erasure, durability."""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ccm.errors import (
    ConfigError,
    ContentErased,
    IdempotencyConflict,
    KeyConfigError,
    MessageNotFound,
    RecordError,
)
from ccm.record import Entry, MasterKey, Record
from ccm.record.policy import Cap

from ._support import EPOCH, T0, entry, raw_rows

WEEKLY = Cap(name="marketing-weekly", max=2, window_days=7, message_type="marketing")
ALL_BYTES = bytes(range(256)) * 4


# -- append and read back -------------------------------------------------------------


def test_append_stores_the_entry_and_returns_it(record: Record) -> None:
    """A generated entry is stored as given, with an archive reference and the content digest."""
    e = entry("C1", created_at=T0)
    result = record.append(e, content=b"hello")
    assert result.status == "generated" and result.reason is None
    stored = record.get(e.message_id)
    assert stored == result.entry
    assert stored.archive_ref is not None
    assert stored.content_sha256 == hashlib.sha256(b"hello").hexdigest()
    assert stored.created_at == T0 and stored.created_at.tzinfo is not None
    assert record.find_key(e.idempotency_key) == stored


def test_content_comes_back_byte_for_byte(record: Record) -> None:
    """Archived content and the archival copy are returned exactly, every byte value included."""
    e = entry("C1", channel="pdf")
    record.append(e, content=ALL_BYTES, archival=b"%PDF-1.7 archival\r\n\x00")
    assert record.content(e.message_id) == ALL_BYTES
    assert record.archival(e.message_id) == b"%PDF-1.7 archival\r\n\x00"


def test_archival_is_none_when_no_copy_was_made(record: Record) -> None:
    """A message archived without a PDF/A copy has no archival bytes."""
    e = entry("C1")
    record.append(e, content=b"x")
    assert record.archival(e.message_id) is None


def test_unknown_message_is_not_found(record: Record) -> None:
    """Asking for a message that is not there raises MessageNotFound (a LookupError)."""
    with pytest.raises(MessageNotFound) as info:
        record.get("nope")
    assert isinstance(info.value, LookupError)
    with pytest.raises(MessageNotFound):
        record.content("nope")
    with pytest.raises(MessageNotFound):
        record.add_event("nope", "opened")


def test_entry_time_must_be_aware(record: Record) -> None:
    """A naive created_at is refused before anything is written."""
    with pytest.raises(ValueError, match="timezone-aware"):
        record.append(entry("C1", created_at=datetime(2025, 1, 1)))


def test_given_digest_must_match_content(record: Record) -> None:
    """An entry whose content_sha256 contradicts the bytes is refused."""
    from dataclasses import replace

    e = replace(entry("C1"), content_sha256="0" * 64)
    with pytest.raises(ValueError, match="content_sha256"):
        record.append(e, content=b"other")


def test_non_string_versions_are_stored_as_text(record: Record) -> None:
    """A numeric template version is stored as text, so its hash survives the round trip."""
    from dataclasses import replace

    e = replace(entry("C1"), template_version=3)  # type: ignore[arg-type]
    assert record.append(e).entry.template_version == "3"
    assert record.verify().ok


def test_unsupported_url_is_a_config_error() -> None:
    """A URL for a database the record does not support is a configuration error."""
    with pytest.raises(ConfigError, match="unsupported record URL"):
        Record("mysql://u@h/db")


# -- exactly once --------------------------------------------------------------------------


def test_same_key_same_params_is_a_duplicate(record: Record) -> None:
    """Appending a recorded key again returns the earlier entry and adds nothing."""
    first = entry("C1", key="run-1:C1:email", params="a")
    record.append(first, content=b"one")
    again = entry("C1", key="run-1:C1:email", params="a")
    result = record.append(again, content=b"two")
    assert result.status == "duplicate"
    assert result.entry.message_id == first.message_id
    assert record.count("C1", since=EPOCH) == 1
    assert len(raw_rows(record, "chain")) == 1
    with pytest.raises(MessageNotFound):
        record.get(again.message_id)


def test_same_key_other_params_is_a_conflict(record: Record) -> None:
    """The same key with other parameters raises IdempotencyConflict naming the key, not data."""
    record.append(entry("C1", key="k-1", params="template v1"), content=b"secret body")
    with pytest.raises(IdempotencyConflict) as info:
        record.append(entry("C1", key="k-1", params="template v2"), content=b"secret body")
    message = str(info.value)
    assert "k-1" in message and "secret" not in message
    back = pickle.loads(pickle.dumps(info.value))
    assert type(back) is IdempotencyConflict and back.key == "k-1"  # type: ignore[attr-defined]
    assert record.count("C1", since=EPOCH) == 1


def test_append_many_keeps_order_and_isolates_conflicts(record: Record) -> None:
    """A bulk append answers per item, in order; a conflict takes only its own place."""
    record.append(entry("C1", key="taken", params="x"))
    items = [
        {"entry": entry("C1", key="a"), "content": b"a"},
        {"entry": entry("C2", key="taken", params="y")},
        {"entry": entry("C3", key="a")},
        {"entry": entry("C4", key="b"), "caps": [Cap("none", 0, 1)]},
    ]
    results = record.append_many(items)
    assert [getattr(r, "status", type(r).__name__) for r in results] == [
        "generated", "IdempotencyConflict", "duplicate", "suppressed",
    ]
    assert record.content(items[0]["entry"].message_id) == b"a"  # type: ignore[attr-defined]
    assert record.verify().ok


# -- caps -------------------------------------------------------------------------------


def test_cap_reached_stores_a_suppressed_entry_without_content(record: Record) -> None:
    """Once a cap is reached the entry is kept as suppressed, reason cap:<name>, no content."""
    for i in range(2):
        assert record.append(entry("C1", created_at=T0 + timedelta(hours=i)), content=b"x",
                             caps=[WEEKLY]).status == "generated"
    third = entry("C1", created_at=T0 + timedelta(hours=3))
    result = record.append(third, content=b"x", caps=[WEEKLY])
    assert (result.status, result.reason) == ("suppressed", "cap:marketing-weekly")
    stored = record.get(third.message_id)
    assert stored.status == "suppressed" and stored.reason == "cap:marketing-weekly"
    assert stored.archive_ref is None and stored.content_sha256 is None
    assert len(raw_rows(record, "archive")) == 2
    with pytest.raises(RecordError, match="suppressed"):
        record.content(third.message_id)


def test_cap_window_is_rolling(record: Record) -> None:
    """Messages older than the window no longer count against the cap."""
    record.append(entry("C1", created_at=T0), caps=[WEEKLY])
    record.append(entry("C1", created_at=T0 + timedelta(days=1)), caps=[WEEKLY])
    late = record.append(entry("C1", created_at=T0 + timedelta(days=7, seconds=1)), caps=[WEEKLY])
    assert late.status == "generated"
    blocked = record.append(entry("C1", created_at=T0 + timedelta(days=7, seconds=2)),
                            caps=[WEEKLY])
    assert blocked.status == "suppressed"


def test_operational_messages_do_not_count_against_marketing_caps(record: Record) -> None:
    """Operational messages never use up a marketing cap, and suppressed ones never count."""
    for _ in range(3):
        record.append(entry("C1", message_type="operational"))
    record.append(entry("C1", status="suppressed", reason="consent:email"))
    assert record.append(entry("C1"), caps=[WEEKLY]).status == "generated"


def test_a_cap_given_for_another_message_type_is_ignored(record: Record) -> None:
    """A marketing cap passed with an operational message never suppresses it."""
    for _ in range(2):
        record.append(entry("C1"), caps=[WEEKLY])
    op = record.append(entry("C1", message_type="operational", channel="pdf"), caps=[WEEKLY])
    assert (op.status, op.reason) == ("generated", None)
    assert record.append(entry("C1"), caps=[WEEKLY]).reason == "cap:marketing-weekly"
    bulk = record.append_many([
        {"entry": entry("C1", message_type="operational", channel="sms"), "caps": [WEEKLY]},
        {"entry": entry("C1"), "caps": [WEEKLY]},
    ])
    assert [(r.status, r.reason) for r in bulk] == [  # type: ignore[union-attr]
        ("generated", None), ("suppressed", "cap:marketing-weekly")]


def test_channel_cap_counts_only_its_channel(record: Record) -> None:
    """A per-channel cap counts that channel only."""
    sms = Cap(name="marketing-sms", max=1, window_days=7, message_type="marketing", channel="sms")
    record.append(entry("C1", channel="email"))
    assert record.append(entry("C1", channel="sms"), caps=[sms]).status == "generated"
    assert record.append(entry("C1", channel="sms"), caps=[sms]).reason == "cap:marketing-sms"


def test_caps_are_per_customer(record: Record) -> None:
    """One customer's messages do not use up another's cap."""
    for _ in range(2):
        record.append(entry("C1"), caps=[WEEKLY])
    assert record.append(entry("C2"), caps=[WEEKLY]).status == "generated"


def test_policy_suppressed_entry_is_recorded_with_its_reason(record: Record) -> None:
    """An entry suppressed by the caller's policy is stored with its rule and no content."""
    e = entry("C1", status="suppressed", reason="consent:sms", channel="sms")
    result = record.append(e, content=b"never sent", caps=[WEEKLY])
    assert (result.status, result.reason) == ("suppressed", "consent:sms")
    assert record.get(e.message_id).archive_ref is None


def test_count_filters(record: Record) -> None:
    """count() filters by time, message type, channel and status."""
    record.append(entry("C1", channel="sms", created_at=T0))
    record.append(entry("C1", channel="email", created_at=T0 + timedelta(days=2)))
    record.append(entry("C1", channel="email", message_type="operational", created_at=T0))
    record.append(entry("C1", status="suppressed", reason="quiet_hours", created_at=T0))
    assert record.count("C1", since=T0) == 3
    assert record.count("C1", since=T0 + timedelta(days=1)) == 1
    assert record.count("C1", since=T0, message_type="marketing") == 2
    assert record.count("C1", since=T0, channel="email") == 2
    assert record.count("C1", since=T0, status="suppressed") == 1
    assert record.count("C2", since=T0) == 0
    with pytest.raises(ValueError):
        record.count("C1", since=datetime(2025, 1, 1))


# -- no master key, wrong master key -------------------------------------------------------


def test_without_a_master_key_no_content_is_kept(open_record: Callable[..., Record]) -> None:
    """Without a master key the entry is recorded but nothing is archived."""
    rec = open_record(None)
    e = entry("C1")
    result = rec.append(e, content=b"hello")
    assert result.status == "generated"
    assert result.entry.archive_ref is None
    assert result.entry.content_sha256 == hashlib.sha256(b"hello").hexdigest()
    assert raw_rows(rec, "archive") == [] and raw_rows(rec, "data_keys") == []
    with pytest.raises(RecordError, match="without a master key"):
        rec.content(e.message_id)


def test_reading_content_needs_the_master_key(open_record: Callable[..., Record],
                                              master_key: MasterKey) -> None:
    """Archived content opened without a key raises KeyConfigError saying what to set."""
    e = entry("C1")
    open_record(master_key).append(e, content=b"hello")
    with pytest.raises(KeyConfigError, match="CCM_MASTER_KEY"):
        open_record(None).content(e.message_id)


def test_a_different_master_key_is_refused(open_record: Callable[..., Record],
                                           master_key: MasterKey) -> None:
    """A record opened with another master key than its content's is refused at once."""
    open_record(master_key).append(entry("C1"), content=b"hello")
    with pytest.raises(KeyConfigError, match="fingerprint"):
        open_record(MasterKey.generate())


# -- events and consent ----------------------------------------------------------------


def test_events_attach_in_time_order(record: Record) -> None:
    """Events come back with their message, oldest first, data as given."""
    e = entry("C1")
    record.append(e)
    record.add_event(e.message_id, "opened", at=T0 + timedelta(hours=2))
    sent = record.add_event(e.message_id, "sent", at=T0, data={"provider": "ses", "n": 1})
    assert sent.data == {"provider": "ses", "n": 1} and sent.customer_id == "C1"
    kinds = [(ev.kind, ev.at) for ev in record.events(e.message_id)]
    assert kinds == [("sent", T0), ("opened", T0 + timedelta(hours=2))]
    assert record.has_event(e.message_id, "opened")
    assert not record.has_event(e.message_id, "clicked")
    assert record.verify().checked == 3


def test_event_ids_and_archive_refs_are_time_ordered(record: Record) -> None:
    """Event ids are UUIDs version 7 of the event's time; a single append's archive ref is one
    of the message's created_at (both land at the end of their indexes, as message ids do)."""
    import uuid

    e = entry("C1", created_at=T0)
    stored = record.append(e, content=b"hello").entry
    ref = stored.archive_ref
    assert ref is not None and uuid.UUID(hex=ref).version == 7
    assert int(ref[:12], 16) == int(T0.timestamp() * 1000)
    events = [record.add_event(e.message_id, kind, at=T0 + timedelta(seconds=n))
              for n, kind in enumerate(("sent", "delivered", "opened"), start=1)]
    for n, event in enumerate(events, start=1):
        parsed = uuid.UUID(hex=event.event_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert int(event.event_id[:12], 16) == int(T0.timestamp() * 1000) + 1000 * n
    assert [ev.event_id for ev in events] == sorted(ev.event_id for ev in events)
    assert record.verify().ok


def test_event_kinds_and_data_are_checked(record: Record) -> None:
    """Unknown kinds, naive times and non-JSON data are refused."""
    e = entry("C1")
    record.append(e)
    with pytest.raises(ValueError, match="unknown event kind"):
        record.add_event(e.message_id, "liked")
    with pytest.raises(ValueError, match="timezone-aware"):
        record.add_event(e.message_id, "sent", at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="plain JSON"):
        record.add_event(e.message_id, "sent", data={"when": object()})


def test_opt_out_withdraws_consent_for_the_channel(record: Record) -> None:
    """An opted_out event makes consent_overrides say False for that message's channel."""
    mail, sms = entry("C1", channel="email"), entry("C1", channel="sms")
    record.append(mail)
    record.append(sms)
    assert record.consent_overrides("C1") == {}
    record.add_event(mail.message_id, "opted_out")
    assert record.consent_overrides("C1") == {"email": False}
    record.add_event(mail.message_id, "complained", data={"channel": "sms"})
    assert record.consent_overrides("C1") == {"email": False, "sms": False}
    assert record.consent_overrides("C2") == {}


# -- erasure ---------------------------------------------------------------------------------


def test_erase_shreds_content_and_keeps_the_audit_trail(record: Record) -> None:
    """After erase the content is unreadable, entries and events stay, verify passes."""
    a, b, other = entry("C1", channel="pdf"), entry("C1"), entry("C2")
    record.append(a, content=b"statement", archival=b"pdfa")
    record.append(b, content=b"offer")
    record.append(other, content=b"someone else")
    record.add_event(b.message_id, "opened")
    record.erase("C1")
    for mid in (a.message_id, b.message_id):
        with pytest.raises(ContentErased):
            record.content(mid)
    with pytest.raises(ContentErased):
        record.archival(a.message_id)
    assert record.get(a.message_id).archive_ref is not None  # the entry is unchanged
    assert [ev.kind for ev in record.events(b.message_id)] == ["opened"]
    assert record.content(other.message_id) == b"someone else"
    assert [r["customer_id"] for r in raw_rows(record, "data_keys")] == ["C2"]
    assert {r["customer_id"] for r in raw_rows(record, "archive")} == {"C2"}
    kinds = [r["kind"] for r in raw_rows(record, "chain") if r["customer_id"] == "C1"]
    assert kinds[-1] == "erasure"
    report = record.verify()
    assert report.ok, report.problems
    assert record.timeline("C1").summary["erased_at"] is not None


def test_messages_after_an_erasure_get_a_new_key(record: Record) -> None:
    """A customer erased and then written to again gets a fresh data key that works."""
    old = entry("C1")
    record.append(old, content=b"old")
    record.erase("C1")
    new = entry("C1")
    record.append(new, content=b"new")
    assert record.content(new.message_id) == b"new"
    with pytest.raises(ContentErased):
        record.content(old.message_id)
    assert record.verify().ok


def test_erased_key_bytes_leave_the_sqlite_file(tmp_path: Path, master_key: MasterKey) -> None:
    """With secure_delete and a WAL checkpoint, the wrapped key and blobs are gone from disk."""
    path = tmp_path / "r.db"
    rec = Record(f"sqlite:///{path}", master_key=master_key)
    for i in range(3):
        rec.append(entry("C1", message_id=f"m{i}"), content=f"letter {i}".encode() * 50)
    rec.append(entry("C2"), content=b"kept")
    wrapped = next(r["wrapped"] for r in raw_rows(rec, "data_keys") if r["customer_id"] == "C1")
    blobs = [r["blob"] for r in raw_rows(rec, "archive") if r["customer_id"] == "C1"]
    rec.erase("C1")
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("r.db"))
    assert bytes(wrapped) not in on_disk
    for blob in blobs:
        assert bytes(blob)[12:40] not in on_disk
    rec.close()


# -- privacy and durability -----------------------------------------------------------


def test_no_personal_data_in_clear(record: Record) -> None:
    """Names, addresses and content never appear in any table: only the customer id does."""
    body = b"Dear Eleanor Whitfield, 27 Kingsway, eleanor@example.co.uk"
    e = entry("D-1001")
    record.append(e, content=body, archival=body)
    record.add_event(e.message_id, "opened", data={"url": "https://acme.example/offer"})
    text = repr([raw_rows(record, t) for t in
                 ("messages", "events", "chain", "data_keys", "archive", "ccm_meta")])
    for needle in ("Eleanor", "Whitfield", "Kingsway", "eleanor@"):
        assert needle not in text
    assert "D-1001" in text


def test_durability_settings(record: Record) -> None:
    """SQLite: WAL, synchronous=FULL, secure_delete, foreign keys, busy timeout; PG: sync commit."""
    with record.engine.connect() as conn:
        if record.backend == "sqlite":
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "synchronous", "secure_delete",
                                   "foreign_keys", "busy_timeout")}
            assert pragma == {"journal_mode": "wal", "synchronous": 2, "secure_delete": 1,
                              "foreign_keys": 1, "busy_timeout": 30000}
        else:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_writes_take_the_lock_first(record: Record) -> None:
    """Appends begin with BEGIN IMMEDIATE (SQLite) or the customer's advisory lock (PostgreSQL)."""
    seen: list[str] = []

    def capture(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement.strip())

    sa.event.listen(record.engine, "before_cursor_execute", capture)
    try:
        record.append(entry("C1"))
    finally:
        sa.event.remove(record.engine, "before_cursor_execute", capture)
    first_write = next(i for i, s in enumerate(seen) if s.startswith("INSERT"))
    if record.backend == "sqlite":
        assert "BEGIN IMMEDIATE" in seen[:first_write]
    else:
        assert any("pg_advisory_xact_lock" in s for s in seen[:first_write])


def test_memory_record_is_safe_across_threads() -> None:
    """An in-memory record serves several threads (as the tracking app's pool does)."""
    rec = Record("sqlite://", master_key=MasterKey.generate())
    ids = []
    for i in range(5):
        e = entry(f"C{i}")
        rec.append(e, content=b"x")
        ids.append(e.message_id)
    barrier = threading.Barrier(5)

    def work(mid: str) -> None:
        barrier.wait()
        for _ in range(10):
            rec.add_event(mid, "opened")
            rec.timeline("C1")

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(work, ids))
    assert sum(len(rec.events(m)) for m in ids) == 50
    assert rec.verify().ok
    rec.close()


def test_entry_to_dict_is_json_friendly() -> None:
    """Entry.to_dict gives ISO times and plain values."""
    e = entry("C1", created_at=T0)
    d = e.to_dict()
    assert d["created_at"] == "2025-03-03T12:00:00+00:00"
    assert set(d) == {f for f in Entry.__dataclass_fields__}


def test_created_at_keeps_microseconds_and_zone(record: Record) -> None:
    """Times in other zones come back as the same instant in UTC, to the microsecond."""
    from zoneinfo import ZoneInfo

    when = datetime(2025, 6, 1, 9, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    e = entry("C1", created_at=when)
    record.append(e)
    back = record.get(e.message_id).created_at
    assert back == when and back.tzinfo == UTC


def test_add_event_once_adds_one_event_even_from_racing_threads(record: Record) -> None:
    """Eight threads adding the same kind of event once to one message leave exactly one."""
    e = entry("C1")
    record.append(e)
    barrier = threading.Barrier(8)

    def work() -> bool:
        barrier.wait()
        return record.add_event_once(e.message_id, "opted_out", data={"channel": "email"}) \
            is not None

    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(lambda _: work(), range(8)))
    assert added.count(True) == 1
    assert [ev.kind for ev in record.events(e.message_id)] == ["opted_out"]
    assert record.add_event_once(e.message_id, "opened") is not None
    assert record.verify().ok


def test_add_event_once_within_a_window_per_data(record: Record) -> None:
    """With ``within`` and ``same_data``: one event per kind and data per window. A repeat
    inside the window adds nothing; other data, or the same an hour later, is added."""
    e = entry("C1")
    record.append(e)
    hour = timedelta(hours=1)
    a, b = {"url": "https://a.example/"}, {"url": "https://b.example/"}

    def click(at: datetime, data: dict[str, str] = a) -> bool:
        return record.add_event_once(e.message_id, "clicked", at=at, data=data, within=hour,
                                     same_data=True) is not None

    def open_(at: datetime) -> bool:
        return record.add_event_once(e.message_id, "opened", at=at, within=hour,
                                     same_data=True) is not None

    assert click(T0) and not click(T0) and not click(T0 + hour - timedelta(microseconds=1))
    assert click(T0 + timedelta(minutes=5), b)  # another link
    assert open_(T0) and not open_(T0 + timedelta(minutes=30))  # no data: NULL matches NULL
    assert click(T0 + hour) and open_(T0 + hour)  # the window has passed
    assert not click(T0 + hour + timedelta(minutes=59))
    kinds = [(ev.kind, ev.data) for ev in record.events(e.message_id)]
    assert kinds.count(("clicked", a)) == 2 and kinds.count(("clicked", b)) == 1
    assert kinds.count(("opened", None)) == 2 and len(kinds) == 5
    with pytest.raises(ValueError, match="within"):
        record.add_event_once(e.message_id, "opened", at=T0, within=timedelta(0))
    assert record.verify().ok


def test_add_event_once_within_a_window_adds_one_from_racing_threads(record: Record) -> None:
    """Sixteen threads recording the same click at (nearly) the same time leave exactly one."""
    e = entry("C1")
    record.append(e)
    barrier = threading.Barrier(16)

    def work(i: int) -> bool:
        barrier.wait()
        return record.add_event_once(
            e.message_id, "clicked", at=T0 + timedelta(milliseconds=i),
            data={"url": "https://a.example/"}, within=timedelta(hours=1), same_data=True,
        ) is not None

    with ThreadPoolExecutor(16) as pool:
        added = list(pool.map(work, range(16)))
    assert added.count(True) == 1
    assert [ev.kind for ev in record.events(e.message_id)] == ["clicked"]
    assert record.verify().ok


# Kinds added at one instant, in causal order: a uuid7 event id sorts them randomly
# within the millisecond, so eight of them pass by luck once in 40320 tries.
SAME_INSTANT = ("queued", "sending", "sent", "delivered", "opened", "clicked", "bounced",
                "suppressed")


@pytest.mark.parametrize("attempt", range(5))
def test_events_at_the_same_instant_keep_the_order_they_were_added(record: Record,
                                                                   attempt: int) -> None:
    """Events with the same time come back in the order they were added -- by events(),
    timeline() and find_events() -- not by their random-suffixed ids."""
    e = entry("C1")
    record.append(e)
    for kind in SAME_INSTANT:
        record.add_event(e.message_id, kind, at=T0, data={"provider_id": "P-1"})
    assert [ev.kind for ev in record.events(e.message_id)] == list(SAME_INSTANT)
    (item,) = record.timeline("C1").messages
    assert [ev.kind for ev in item.events] == list(SAME_INSTANT)
    found = [ev for kind in ("sent", "queued") for ev in record.find_events(kind, "provider_id",
                                                                             "P-1")]
    assert [ev.kind for ev in found] == ["sent", "queued"]
    # An earlier event added later still comes first: time decides, then insertion order.
    record.add_event(e.message_id, "queued", at=T0 - timedelta(seconds=1))
    assert [ev.kind for ev in record.events(e.message_id)] == ["queued", *SAME_INSTANT]
