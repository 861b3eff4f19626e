"""Engine.render_many: many messages on one channel, recorded in few transactions."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.channels.email import parse_bytes
from ccm.record import MasterKey, Record
from tests.examples_helpers import PACKS, TEMPLATES, sample

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, outside the SMS quiet hours


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Record]:
    """A SQLite record that archives content."""
    record = Record(f"sqlite:///{tmp_path / 'record.db'}", master_key=MasterKey.generate())
    yield record
    record.close()


def _engine(record: Record | None, **kwargs: Any) -> ccm.Engine:
    return ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=lambda: NOON, **kwargs)


def _request(template: str, customer_id: str, **customer: Any) -> dict[str, Any]:
    request = copy.deepcopy(sample(template))
    request["customer"].update(id=customer_id, **customer)
    return request


def test_render_many_gives_what_render_gives_and_records_every_message(rec: Record) -> None:
    """Same content, subject and SMS arithmetic as render(), each message in the record."""
    engine = _engine(rec, run_id="many")
    requests = [_request("payment_reminder", f"R{i}") for i in range(5)]
    many = engine.render_many("payment_reminder", requests, "sms", chunk_size=2)
    alone = [_engine(None).render("payment_reminder", r, "sms") for r in requests]
    assert [m.status for m in many] == ["generated"] * 5
    assert [m.text for m in many] == [m.text for m in alone]
    assert [m.segments for m in many] == [m.segments for m in alone]
    for message in many:
        entry = rec.get(message.message_id)
        assert entry.content_sha256 == message.sha256
        assert entry.idempotency_key == f"many:payment_reminder:{message.customer_id}:sms"
        assert rec.content(message.message_id) == message.content
    assert rec.verify().ok


def test_render_many_email_parses_like_render(rec: Record) -> None:
    """The emails written in bulk carry the same parts as one rendered alone."""
    request = _request("payment_reminder", "E1")
    (bulk,) = _engine(rec).render_many("payment_reminder", [request], "email")
    alone = _engine(None).render("payment_reminder", request, "email")
    a, b = parse_bytes(bulk.content), parse_bytes(alone.content)
    assert a["Subject"] == b["Subject"] and a["To"] == b["To"]
    assert a.get_body(("plain",)).get_content() == b.get_body(("plain",)).get_content()
    assert bulk.email is not None and bulk.email["Subject"] == a["Subject"]


def test_render_many_keeps_caps_within_one_call(rec: Record) -> None:
    """The weekly marketing-SMS cap lets one offer through per customer, even within one chunk."""
    engine = _engine(rec)
    offers = [_request("product_offer", "C1"), _request("product_offer", "C1"),
              _request("product_offer", "C2")]
    made = engine.render_many("product_offer", offers, "sms")
    assert [(m.status, m.reason) for m in made] == [
        ("generated", None), ("suppressed", "cap:marketing-sms-weekly"), ("generated", None)]
    assert made[1].content == b""
    assert rec.get(made[1].message_id).status == "suppressed"


def test_render_many_rerun_adds_nothing(rec: Record) -> None:
    """With a run id, the same call again returns duplicates of the recorded messages."""
    requests = [_request("payment_reminder", f"D{i}") for i in range(3)]
    first = _engine(rec, run_id="r").render_many("payment_reminder", requests, "sms")
    again = _engine(rec, run_id="r").render_many("payment_reminder", requests, "sms")
    assert [m.status for m in again] == ["duplicate"] * 3
    assert [m.message_id for m in again] == [m.message_id for m in first]
    # The recorded bytes, as render() gives a duplicate (they came back empty).
    assert [m.content for m in again] == [m.content for m in first]
    assert all(m.content for m in first)
    alone = _engine(rec, run_id="r").render("payment_reminder", requests[0], "sms")
    assert (alone.status, alone.content) == ("duplicate", first[0].content)


def test_render_many_commits_before_listeners_see_messages(rec: Record) -> None:
    """A listener (a sender) finds each message already committed, read by another connection."""
    engine = _engine(rec)
    other = Record(rec.engine.url.render_as_string(hide_password=False))
    seen: list[str] = []
    engine.add_listener(lambda m: seen.append(other.get(m.message_id).status))
    engine.render_many("payment_reminder", [_request("payment_reminder", "L1"),
                                            _request("payment_reminder", "L2")], "sms")
    other.close()
    assert seen == ["generated", "generated"]


def test_render_many_checks_channel_and_withdrawn_consent(rec: Record) -> None:
    """An unknown channel is refused; an opted-out customer's message comes back suppressed."""
    engine = _engine(rec)
    with pytest.raises(ccm.errors.UnknownChannel):
        engine.render_many("payment_reminder", [_request("payment_reminder", "X")], "pdf")
    first = engine.render("product_offer", _request("product_offer", "O1"), channel="email")
    rec.add_event(first.message_id, "opted_out")
    (again,) = engine.render_many("product_offer", [_request("product_offer", "O1")], "email")
    assert (again.status, again.reason) == ("suppressed", "consent:email")


def _recorded(record: Record, customer_id: str) -> list[tuple[Any, ...]]:
    """What the record holds for one customer, without the parts that differ per run
    (by channel: entries made at the same instant of the fixed clock have no order)."""
    return sorted((item.entry.channel, item.entry.status, item.entry.idempotency_key,
                   item.entry.template, item.entry.archive_ref is not None)
                  for item in record.timeline(customer_id).messages)


def test_render_many_records_the_attached_pdf_as_render_does(tmp_path: Path) -> None:
    """The statement an email attaches is recorded and archived by render_many as by render."""
    key = MasterKey.generate()
    one = Record(f"sqlite:///{tmp_path / 'one.db'}", master_key=key)
    many = Record(f"sqlite:///{tmp_path / 'many.db'}", master_key=key)
    request = _request("monthly_statement", "S1")
    alone = _engine(one, run_id="run").render("monthly_statement", request, "email")
    (bulk,) = _engine(many, run_id="run").render_many("monthly_statement", [request], "email")
    try:
        assert _recorded(many, "S1") == _recorded(one, "S1")
        assert [e[0] for e in _recorded(many, "S1")] == ["email", "pdf"]
        (pdf,) = [i.entry for i in many.timeline("S1").messages if i.entry.channel == "pdf"]
        assert pdf.idempotency_key == "run:monthly_statement:S1:pdf"
        attached = [part for part in parse_bytes(bulk.content).iter_attachments()]
        assert [a.get_filename() for a in attached] == ["statement.pdf"]
        # The archive holds the very bytes the email carries.
        assert many.content(pdf.message_id) == attached[0].get_content()
        assert pdf.content_sha256 == bulk.meta["attachment_sha256"]
        assert alone.meta["attachment_sha256"]  # render() attached one too
        # Not queued on its own, and the chain is intact (checked by the CLI too).
        assert many.verify().ok
    finally:
        one.close()
        many.close()
    from ccm.cli import main

    assert main(["record", "verify", "--record", f"sqlite:///{tmp_path / 'many.db'}"]) == 0


def test_render_many_rerun_adds_no_second_attached_pdf(rec: Record) -> None:
    """A rerun with the run id adds nothing: neither the email nor the PDF it attaches."""
    requests = [_request("monthly_statement", f"T{i}") for i in range(2)]
    _engine(rec, run_id="r").render_many("monthly_statement", requests, "email")
    before = [_recorded(rec, f"T{i}") for i in range(2)]
    again = _engine(rec, run_id="r").render_many("monthly_statement", requests, "email")
    assert [m.status for m in again] == ["duplicate"] * 2
    assert [_recorded(rec, f"T{i}") for i in range(2)] == before


def test_render_many_attaches_the_pdf_already_recorded_for_the_run(rec: Record) -> None:
    """A PDF recorded under the run's key (a run stopped before the email) is attached as
    recorded, the very bytes, not made and recorded a second time."""
    request = _request("monthly_statement", "U1")
    pdf = _engine(rec, run_id="r").render("monthly_statement", request, "pdf")
    (email,) = _engine(rec, run_id="r").render_many("monthly_statement", [request], "email")
    (attached,) = parse_bytes(email.content).iter_attachments()
    assert attached.get_content() == pdf.content == rec.content(pdf.message_id)
    assert sorted(e[0] for e in _recorded(rec, "U1")) == ["email", "pdf"]
