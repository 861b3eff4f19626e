"""Events back into a real record: bounces, complaints, keywords and what the engine then does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.delivery.events import (
    PhoneDirectory,
    Refused,
    record_keyword,
    record_report_bytes,
    record_status,
    unsuppress,
)
from ccm.errors import InboundError, MessageNotFound
from ccm.record import Record
from tests.delivery._mail import arf, dsn
from tests.examples_helpers import PACKS, TEMPLATES, sample
from tests.record._support import entry

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, outside the SMS quiet hours
SID = "SM" + "a" * 32


@pytest.fixture
def setup(record_url: str) -> Iterator[tuple[Any, Record]]:
    """An engine over the acme pack writing into a fresh record (SQLite and PostgreSQL)."""
    rec = Record(record_url)
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=rec, clock=lambda: NOON)
    yield engine, rec
    rec.close()


def kinds(rec: Record, message_id: str) -> list[str]:
    return [e.kind for e in rec.events(message_id)]


def test_hard_bounce_suppresses_every_email_until_the_operator_lifts_it(
    setup: tuple[Any, Record],
) -> None:
    """A 5.x.x DSN bounces the message and suppresses every email type; unsuppress undoes it."""
    engine, rec = setup
    request = sample("payment_reminder")
    first = engine.render("payment_reminder", request, channel="email")
    outcome = record_report_bytes(rec, dsn(first.message_id), now=NOON)
    assert outcome.added == ("bounced", "suppressed")
    assert sorted(kinds(rec, first.message_id)) == ["bounced", "suppressed"]
    again = engine.render("payment_reminder", request, channel="email")
    assert (again.status, again.reason) == ("suppressed", "suppressed:email")
    assert engine.render("payment_reminder", request, channel="sms").status == "generated"
    summary = rec.timeline(first.customer_id).summary
    assert summary["suppressed_channels"] == ["email"] and summary["opted_out"] == []

    lifted = unsuppress(rec, first.customer_id, "email", now=NOON + timedelta(hours=1))
    assert lifted.added == ("unsuppressed",)
    assert engine.render("payment_reminder", request, channel="email").status == "generated"
    with pytest.raises(MessageNotFound):
        unsuppress(rec, first.customer_id, "email", now=NOON)


def test_soft_bounce_records_and_suppresses_nothing(setup: tuple[Any, Record]) -> None:
    """A 4.x.x DSN is a soft bounce on the timeline; the next email still goes out."""
    engine, rec = setup
    request = sample("payment_reminder")
    first = engine.render("payment_reminder", request, channel="email")
    raw = dsn(first.message_id, status="4.2.2", action="delayed")
    assert record_report_bytes(rec, raw, now=NOON).added == ("bounced",)
    assert record_report_bytes(rec, raw, now=NOON).added == ()  # read twice: nothing new
    assert rec.events(first.message_id)[0].data == {
        "action": "delayed", "bounce": "soft", "smtp_code": "550", "source": "dsn",
        "status": "4.2.2"}
    assert engine.render("payment_reminder", request, channel="email").status == "generated"


def test_complaint_unsubscribes_from_marketing_email_only(setup: tuple[Any, Record]) -> None:
    """An ARF abuse report withdraws marketing email consent; operational email still goes."""
    engine, rec = setup
    offer = engine.render("product_offer", sample("product_offer"), channel="email")
    assert record_report_bytes(rec, arf(offer.message_id), now=NOON).added == ("complained",)
    assert record_report_bytes(rec, arf(offer.message_id), now=NOON).added == ()
    again = engine.render("product_offer", sample("product_offer"), channel="email")
    assert (again.status, again.reason) == ("suppressed", "consent:email")
    reminder = dict(sample("payment_reminder"))
    reminder["customer"] = {**reminder["customer"], "id": offer.customer_id}
    assert engine.render("payment_reminder", reminder, channel="email").status == "generated"


def test_report_about_a_message_of_another_record_says_so(setup: tuple[Any, Record]) -> None:
    """A DSN naming a message this record does not hold raises MessageNotFound naming the file."""
    _, rec = setup
    with pytest.raises(MessageNotFound, match=r"bounces/1\.eml"):
        record_report_bytes(rec, dsn("f" * 32), now=NOON, source="bounces/1.eml")


def test_a_hard_bounce_read_again_does_not_undo_the_operators_unsuppress(
    setup: tuple[Any, Record],
) -> None:
    """The same DSN read after ``unsuppress`` (a maildir re-read by cron) adds nothing: the
    customer stays unblocked; another hard bounce of the same message does not block again."""
    engine, rec = setup
    request = sample("payment_reminder")
    first = engine.render("payment_reminder", request, channel="email")
    raw = dsn(first.message_id)
    assert record_report_bytes(rec, raw, now=NOON).added == ("bounced", "suppressed")
    for hour in (1, 3):
        unsuppress(rec, first.customer_id, "email", now=NOON + timedelta(hours=hour))
        again = record_report_bytes(rec, raw, now=NOON + timedelta(hours=hour + 1))
        assert again.added == () and again.note.endswith("(already recorded)")
        assert rec.consent_overrides(first.customer_id) == {}
        assert engine.render("payment_reminder", request, channel="email").status == "generated"
        if hour == 1:  # suppressed by something else in between, lifted again
            record_report_bytes(rec, dsn(engine.render("payment_reminder", request,
                                                       channel="email").message_id),
                                now=NOON + timedelta(hours=2))
    other_code = dsn(first.message_id, status="5.1.2")
    assert record_report_bytes(rec, other_code, now=NOON + timedelta(hours=5)).added == (
        "bounced",)
    assert rec.consent_overrides(first.customer_id) == {}


def test_reports_apply_only_to_a_generated_email(setup: tuple[Any, Record]) -> None:
    """A DSN or ARF naming an SMS, a PDF or a suppressed (never sent) email is ``unmatched``
    and adds nothing: no bounce, no block, no consent change."""
    engine, rec = setup
    request = sample("payment_reminder")
    sms = engine.render("payment_reminder", request, channel="sms")
    pdf = entry(sms.customer_id, channel="pdf", message_type="operational", created_at=NOON)
    rec.append(pdf)
    offer = engine.render("product_offer", sample("product_offer"), channel="email")
    record_report_bytes(rec, arf(offer.message_id), now=NOON)  # consent withdrawn: next held
    held = engine.render("product_offer", sample("product_offer"), channel="email")
    assert held.status == "suppressed"
    customer = sms.customer_id
    before = rec.consent_overrides(customer)
    for message in (sms, pdf, held):
        for raw in (dsn(message.message_id), arf(message.message_id)):
            with pytest.raises(InboundError, match=message.message_id) as caught:
                record_report_bytes(rec, raw, now=NOON, source="bounces/9.eml")
            assert caught.value.context["reason"] == "unmatched"
            assert str(caught.value).startswith("bounces/9.eml: report is about message")
        assert kinds(rec, message.message_id) == []
    assert rec.consent_overrides(customer) == before
    assert engine.render("payment_reminder", request, channel="sms").status == "generated"


def test_stop_blocks_every_sms_and_start_gives_it_back(
    setup: tuple[Any, Record], tmp_path: Path
) -> None:
    """STOP from the customer's phone suppresses all SMS (even operational); START restores them."""
    engine, rec = setup
    request = sample("payment_reminder")
    sms = engine.render("payment_reminder", request, channel="sms")
    people = tmp_path / "customers.jsonl"
    line = json.dumps({"customer": {"id": request["customer"]["id"], "phone": "+44 7700 900123"}})
    people.write_text(line + "\n", "utf-8")
    directory = PhoneDirectory.from_jsonl(people)
    stop = record_keyword(rec, directory, "+447700900123", "stop", now=NOON)
    assert (stop.message_id, stop.added) == (sms.message_id, ("opted_out",))
    assert record_keyword(rec, directory, "+447700900123", "stop", now=NOON).added == ()
    blocked = engine.render("payment_reminder", request, channel="sms")
    assert (blocked.status, blocked.reason) == ("suppressed", "suppressed:sms")
    start = record_keyword(rec, directory, "+447700900123", "start",
                           now=NOON + timedelta(minutes=5))
    assert start.added == ("opted_in",)
    assert engine.render("payment_reminder", request, channel="sms").status == "generated"
    assert record_keyword(rec, directory, "+15550000000", "stop", now=NOON).customer_id is None


def test_status_callback_maps_the_provider_id_and_refuses_replays(
    setup: tuple[Any, Record],
) -> None:
    """A delivered callback lands on the message whose sent event has the MessageSid, once."""
    engine, rec = setup
    sms = engine.render("payment_reminder", sample("payment_reminder"), channel="sms")
    rec.add_event(sms.message_id, "sent", at=NOON, data={"provider_id": SID})
    params = {"MessageSid": SID, "MessageStatus": "delivered", "To": "+447700900123"}
    done = record_status(rec, params, now=NOON + timedelta(minutes=1))
    assert (done.message_id, done.added) == (sms.message_id, ("delivered",))
    with pytest.raises(Refused) as replay:
        record_status(rec, params, now=NOON + timedelta(minutes=2))
    assert replay.value.reason == "replay"
    with pytest.raises(Refused) as old:
        record_status(rec, {**params, "MessageStatus": "failed"}, now=NOON + timedelta(days=8))
    assert old.value.reason == "too-old"
    with pytest.raises(Refused) as unknown:
        record_status(rec, {**params, "MessageSid": "SM" + "b" * 32}, now=NOON)
    assert unknown.value.reason == "unknown"
    assert kinds(rec, sms.message_id) == ["sent", "delivered"]


def test_undelivered_to_an_unknown_number_is_a_hard_sms_bounce(
    setup: tuple[Any, Record],
) -> None:
    """``undelivered`` with error 30005 (unknown number) bounces hard and suppresses SMS."""
    engine, rec = setup
    request = sample("payment_reminder")
    sms = engine.render("payment_reminder", request, channel="sms")
    rec.add_event(sms.message_id, "sent", at=NOON, data={"provider_id": SID})
    out = record_status(rec, {"MessageSid": SID, "MessageStatus": "undelivered",
                              "ErrorCode": "30005"}, now=NOON)
    assert out.added == ("bounced", "suppressed")
    assert next(e for e in rec.events(sms.message_id) if e.kind == "bounced").data == {
        "bounce": "hard", "channel": "sms", "error_code": "30005", "provider": "twilio",
        "provider_id": SID, "provider_status": "undelivered"}
    assert engine.render("payment_reminder", request, channel="sms").reason == "suppressed:sms"


def test_provider_unsubscribed_error_opts_the_number_out(setup: tuple[Any, Record]) -> None:
    """A ``failed`` callback with error 21610 (the number sent STOP to the provider) blocks SMS."""
    engine, rec = setup
    request = sample("payment_reminder")
    sms = engine.render("payment_reminder", request, channel="sms")
    rec.add_event(sms.message_id, "sent", at=NOON, data={"provider_id": SID})
    out = record_status(rec, {"MessageSid": SID, "MessageStatus": "failed",
                              "ErrorCode": "21610"}, now=NOON)
    assert out.added == ("failed", "opted_out")
    assert engine.render("payment_reminder", request, channel="sms").reason == "suppressed:sms"
