"""The engine writes the record: every message, suppressions with their rule, exactly once.

These render the example templates with the example acme pack into a real
record and then read the record back, the way a compliance user would.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.cli import main as ccm_main
from ccm.errors import IdempotencyConflict
from ccm.record import MasterKey, Record

from ..examples_helpers import PACKS, TEMPLATES, sample

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, outside the SMS quiet hours


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Record]:
    """A SQLite record that archives content."""
    record = Record(f"sqlite:///{tmp_path / 'record.db'}", master_key=MasterKey.generate())
    yield record
    record.close()


def engine_for(record: Record, *, clock: datetime = NOON, pack: Path = PACKS / "acme",
               **kwargs: Any) -> ccm.Engine:
    return ccm.Engine(pack, TEMPLATES, record=record, clock=lambda: clock, **kwargs)


def offer(**customer: Any) -> dict[str, Any]:
    """The UK product offer sample with customer fields replaced."""
    request = copy.deepcopy(sample("product_offer"))
    request["customer"].update(customer)
    return request


def test_every_channel_is_recorded_with_its_versions_digests_and_content(rec: Record) -> None:
    """A three-channel statement leaves three entries whose digests, sources and archived bytes
    match what the engine returned, the archival PDF/A copy included."""
    engine = engine_for(rec)
    request = sample("monthly_statement")
    made = engine.render("monthly_statement", request)
    assert [m.channel for m in made] == ["pdf", "email", "sms"]
    tpl = engine.template("monthly_statement")
    for message in made:
        entry = rec.get(message.message_id)
        assert entry.status == "generated" and entry.reason is None
        assert (entry.customer_id, entry.channel, entry.template, entry.template_version) == (
            request["customer"]["id"], message.channel, "monthly_statement", tpl.version)
        assert (entry.pack, entry.pack_version) == ("acme", engine.pack.version)
        assert (entry.message_type, entry.journey, entry.locale) == (
            tpl.message_type, tpl.journey, message.locale)
        assert entry.sources_sha256 == engine.sources_sha256(tpl)
        assert entry.content_sha256 == hashlib.sha256(message.content).hexdigest()
        assert entry.archive_ref is not None
        assert rec.content(message.message_id) == message.content
        assert entry.idempotency_key == f"msg:{message.message_id}"
    pdf = made[0]
    assert pdf.archival is not None and rec.archival(pdf.message_id) == pdf.archival
    assert rec.get(pdf.message_id).archival_sha256 == hashlib.sha256(pdf.archival).hexdigest()
    assert rec.verify().checked == 3


def test_suppressed_messages_are_recorded_with_the_rule(rec: Record) -> None:
    """A marketing SMS without SMS consent is not rendered, but recorded as suppressed with
    rule consent:sms and no content."""
    engine = engine_for(rec)
    message = engine.render("product_offer", offer(consents={"email": True, "sms": False}),
                            channel="sms")
    assert (message.status, message.reason, message.content) == ("suppressed", "consent:sms", b"")
    assert "withheld" in message.meta["explanation"]
    entry = rec.get(message.message_id)
    assert (entry.status, entry.reason, entry.content_sha256, entry.archive_ref) == (
        "suppressed", "consent:sms", None, None)
    assert rec.timeline(entry.customer_id).summary["suppressed_by_reason"] == {"consent:sms": 1}


def test_caps_are_counted_from_the_record(rec: Record) -> None:
    """The pack's one-marketing-SMS-a-week cap lets the first offer SMS through and stops the
    second (cap:marketing-sms-weekly); an operational SMS still goes out."""
    engine = engine_for(rec)
    first = engine.render("product_offer", offer(), channel="sms")
    second = engine.render("product_offer", offer(), channel="sms")
    assert first.status == "generated"
    assert (second.status, second.reason) == ("suppressed", "cap:marketing-sms-weekly")
    week_later = engine_for(rec, clock=NOON + timedelta(days=7, seconds=1))
    assert week_later.render("product_offer", offer(), channel="sms").status == "generated"
    reminder = {"customer": offer()["customer"], "data": sample("payment_reminder")["data"]}
    assert engine.render("payment_reminder", reminder, channel="sms").status == "generated"


def test_quiet_hours_defer_in_the_customers_timezone(rec: Record) -> None:
    """At 22:30 in London an SMS is deferred to 08:00 local; the same moment is 16:30 in Chicago,
    where it goes out."""
    late = engine_for(rec, clock=datetime(2026, 3, 2, 22, 30, tzinfo=UTC))
    london = late.render("product_offer", offer(), channel="sms")
    assert (london.status, london.reason) == ("suppressed", "quiet_hours")
    assert london.meta["defer_until"] == "2026-03-03T08:00:00+00:00"
    assert rec.get(london.message_id).reason == "quiet_hours"
    chicago = late.render("product_offer", offer(id="C-CHI", timezone="America/Chicago"),
                          channel="sms")
    assert chicago.status == "generated"


def test_a_deferred_message_is_sent_on_retry_with_the_same_key(rec: Record) -> None:
    """The deferral is recorded, but it does not hold the caller's key: the retry at 08:00
    with the same idempotency key sends the SMS, and a third call is a duplicate of that."""
    late = engine_for(rec, clock=datetime(2026, 3, 2, 22, 30, tzinfo=UTC))
    deferred = late.render("product_offer", offer(), channel="sms", idempotency_key="offer-42")
    assert deferred.status == "suppressed" and "defer_until" in deferred.meta
    morning = engine_for(rec, clock=datetime(2026, 3, 3, 8, 0, 1, tzinfo=UTC))
    sent = morning.render("product_offer", offer(), channel="sms", idempotency_key="offer-42")
    assert sent.status == "generated"
    again = morning.render("product_offer", offer(), channel="sms", idempotency_key="offer-42")
    assert (again.status, again.message_id) == ("duplicate", sent.message_id)
    statuses = [m["status"] for m in rec.timeline(sent.customer_id).to_dict()["messages"]]
    assert statuses == ["suppressed", "generated"]


def test_quiet_hours_can_suppress(rec: Record, tmp_path: Path) -> None:
    """A pack whose quiet hours say suppress drops the message without a defer time."""
    pack = tmp_path / "acme"
    shutil.copytree(PACKS / "acme", pack)
    text = (pack / "pack.yaml").read_text("utf-8").replace("action: defer", "action: suppress")
    (pack / "pack.yaml").write_text(text, "utf-8")
    late = engine_for(rec, clock=datetime(2026, 3, 2, 22, 30, tzinfo=UTC), pack=pack)
    message = late.render("product_offer", offer(), channel="sms")
    assert (message.status, message.reason) == ("suppressed", "quiet_hours")
    assert "defer_until" not in message.meta and "suppressed" in message.meta["explanation"]


def test_a_callers_key_is_kept_once_per_channel(rec: Record) -> None:
    """Rendering twice with one key adds nothing the second time and returns the earlier ids;
    each channel is stored under key:channel."""
    engine = engine_for(rec)
    first = engine.render("product_offer", offer(), idempotency_key="offer-42")
    again = engine.render("product_offer", offer(), idempotency_key="offer-42")
    assert [m.status for m in first] == ["generated", "generated"]
    assert [m.status for m in again] == ["duplicate", "duplicate"]
    assert [m.message_id for m in again] == [m.message_id for m in first]
    assert {rec.get(m.message_id).idempotency_key for m in first} == {
        "offer-42:email", "offer-42:sms"}
    assert rec.timeline(offer()["customer"]["id"]).summary["messages"] == 2


def test_a_duplicate_carries_the_recorded_bytes(rec: Record) -> None:
    """A retried call gets the exact bytes generated the first time (to re-send them), the
    statement PDF still encrypted; after erasure the duplicate comes back without content."""
    engine = engine_for(rec)
    statement = sample("monthly_statement")
    first = engine.render("monthly_statement", statement, idempotency_key="stmt-10")
    again = engine.render("monthly_statement", statement, idempotency_key="stmt-10")
    assert [m.status for m in again] == ["duplicate"] * len(first)
    for made, dup in zip(first, again, strict=True):
        assert dup.content == made.content and dup.sha256 == made.sha256, made.channel
        assert dup.archival == made.archival
        assert dup.encrypted == made.encrypted
    rec.erase(statement["customer"]["id"])
    erased = engine.render("monthly_statement", statement, channel="sms",
                           idempotency_key="stmt-10")
    assert erased.status == "duplicate" and erased.content == b""


def test_same_key_other_parameters_is_a_conflict(rec: Record) -> None:
    """The same key with other data is refused, naming the key and the earlier message."""
    engine = engine_for(rec)
    first = engine.render("product_offer", offer(), channel="email", idempotency_key="k")
    changed = offer()
    changed["data"]["rate"] = 0.05
    with pytest.raises(IdempotencyConflict, match=first.message_id) as caught:
        engine.render("product_offer", changed, channel="email", idempotency_key="k")
    assert caught.value.key == "k:email"  # type: ignore[attr-defined]
    assert len(rec.timeline(first.customer_id).messages) == 1


def test_a_run_id_derives_the_key_so_a_rerun_adds_nothing(rec: Record) -> None:
    """With a run id the key is run:template:customer:channel, so rerunning the run adds nothing."""
    customer = offer()["customer"]["id"]
    made = engine_for(rec, run_id="run-7").render("product_offer", offer(), channel="email")
    assert rec.get(made.message_id).idempotency_key == f"run-7:product_offer:{customer}:email"
    rerun = engine_for(rec, run_id="run-7").render("product_offer", offer(), channel="email")
    assert (rerun.status, rerun.message_id) == ("duplicate", made.message_id)


def test_the_entry_is_committed_before_anyone_sees_the_message(rec: Record, tmp_path: Path,
                                                               ) -> None:
    """A listener (a sender) finds the message already in the record, read by another connection."""
    engine = engine_for(rec)
    seen: list[str] = []
    other = Record(rec.engine.url.render_as_string(hide_password=False))

    def sender(message: Any) -> None:
        seen.append(other.get(message.message_id).status)

    engine.add_listener(sender)
    engine.render("product_offer", offer(), channel="email")
    other.close()
    assert seen == ["generated"]


def test_no_personal_data_reaches_the_records_tables(rec: Record) -> None:
    """Name, email, phone, address, date of birth and document code appear in no table, only
    inside the archive (encrypted)."""
    engine = engine_for(rec)
    request = sample("monthly_statement")
    engine.render("monthly_statement", request)
    with rec.engine.connect() as conn:
        text = repr([list(conn.exec_driver_sql(f"SELECT * FROM {t}")) for t in
                     ("messages", "events", "chain", "data_keys", "archive", "ccm_meta")])
    customer = request["customer"]
    for value in (customer["name"], customer["email"], customer["phone"],
                  customer["address"]["lines"][-1], customer["date_of_birth"],
                  customer["document_code"]):
        assert value not in text
    assert customer["id"] in text


def test_engine_records_by_default_into_ccm_record_url(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without record=, the engine writes $CCM_RECORD_URL; record=False on a call skips it."""
    url = f"sqlite:///{tmp_path / 'default.db'}"
    monkeypatch.setenv("CCM_RECORD_URL", url)
    monkeypatch.delenv("CCM_MASTER_KEY", raising=False)
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, clock=lambda: NOON)
    kept = engine.render("product_offer", offer(), channel="email")
    skipped = engine.render("product_offer", offer(), channel="sms", record=False)
    assert engine.record is not None
    engine.record.close()
    with Record(url) as reopened:
        assert reopened.get(kept.message_id).archive_ref is None  # no master key: no content
        assert [i.entry.message_id for i in reopened.timeline(kept.customer_id).messages] == [
            kept.message_id]
    assert skipped.status == "generated"


def test_render_cli_reports_generated_duplicate_and_suppressed(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               ) -> None:
    """ccm render --record URL --idempotency-key: generated, then duplicate with the earlier id;
    a suppressed message carries its rule as reason; --no-record writes nothing."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    data = tmp_path / "offer.json"
    data.write_text(json.dumps(offer(consents={"email": True, "sms": False})), "utf-8")
    args = ["render", "product_offer", "--pack", str(PACKS / "acme"), "--templates",
            str(TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"), "--json",
            "--as-of", "2026-06-01T12:00:00+00:00"]
    run: Callable[..., list[dict[str, Any]]] = lambda *extra: (  # noqa: E731
        ccm_main([*args, *extra]),
        [json.loads(line) for line in capsys.readouterr().out.splitlines()],
    )[1]
    first = run("--record", url, "--idempotency-key", "cli-1")
    assert [(m["channel"], m["status"], m.get("reason")) for m in first] == [
        ("email", "generated", None), ("sms", "suppressed", "consent:sms")]
    again = run("--record", url, "--idempotency-key", "cli-1")
    assert [m["status"] for m in again] == ["duplicate", "duplicate"]
    assert [m["message_id"] for m in again] == [m["message_id"] for m in first]
    run("--no-record")
    with Record(url) as rec:
        assert rec.timeline(first[0]["customer_id"]).summary["messages"] == 2


def test_the_customers_segment_is_recorded_for_reports(rec: Record) -> None:
    """customer.segment reaches the record, so the report counts volume per segment."""
    from ccm.engagement.reports import collect_report

    made = engine_for(rec).render("product_offer", offer(segment="premier"), channel="email")
    assert rec.get(made.message_id).segment == "premier"
    assert collect_report(rec).by_segment == [("premier", 1)]
