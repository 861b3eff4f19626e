"""A PDF an email carries is no contact of its own: the email's policy decides.

A customer who gives no consent to the PDF channel (``customer.consents``,
with a pack that asks consent for operational messages) still gets the
statement email with the statement attached. Before, the PDF channel's policy
stopped the carried document, and the email went out with an empty
``statement.pdf``.
"""

from __future__ import annotations

import email
import io
from email.message import Message as MimeMessage
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from ccm.record import MasterKey, Record
from ccm.render.engine import Engine
from tests.examples_helpers import copy_examples, daytime, sample


def _attachment(content: bytes) -> bytes:
    parsed: MimeMessage = email.message_from_bytes(content)
    (pdf,) = [p for p in parsed.walk() if p.get_content_type() == "application/pdf"]
    data = pdf.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Engine, Record, dict[str, Any]]:
    pack, templates = copy_examples(tmp_path)
    manifest = pack / "pack.yaml"
    manifest.write_text(manifest.read_text("utf-8").replace(
        "consent_required: [marketing]", "consent_required: [marketing, operational]"), "utf-8")
    record = Record(f"sqlite:///{tmp_path / 'record.db'}", master_key=MasterKey.generate())
    request = sample("monthly_statement")
    request["customer"]["consents"] = {"email": True, "pdf": False, "sms": False}
    return Engine(pack, templates, record=record, clock=daytime), record, request


def _statuses(record: Record, customer: str) -> dict[str, tuple[str, str | None]]:
    return {m.entry.channel: (m.entry.status, m.entry.reason)
            for m in record.timeline(customer).messages}


def _check_pdf(data: bytes, request: dict[str, Any]) -> None:
    reader = PdfReader(io.BytesIO(data))
    assert reader.is_encrypted and reader.decrypt(request["customer"]["document_code"])
    assert len(reader.pages) >= 1 and reader.pages[0].extract_text().strip()


def test_an_email_carries_its_pdf_when_the_pdf_channel_has_no_consent(
        setup: tuple[Engine, Record, dict[str, Any]]) -> None:
    engine, record, request = setup
    message = engine.render("monthly_statement", request, channel="email")
    assert message.status == "generated"
    _check_pdf(_attachment(message.content), request)
    # The carried document is recorded (the archived copy), not stopped by the PDF's policy.
    assert _statuses(record, message.customer_id) == {"pdf": ("generated", None),
                                                      "email": ("generated", None)}


def test_a_pdf_stopped_as_a_contact_of_its_own_is_still_attached(
        setup: tuple[Engine, Record, dict[str, Any]]) -> None:
    """Every channel asked for: the PDF as its own contact is suppressed (consent:pdf) and
    says so; the email carries the document all the same."""
    engine, record, request = setup
    made = {m.channel: m for m in engine.render("monthly_statement", request)}
    assert (made["pdf"].status, made["email"].status) == ("suppressed", "generated")
    _check_pdf(_attachment(made["email"].content), request)
    assert _statuses(record, made["email"].customer_id)["pdf"] == ("suppressed", "consent:pdf")


def test_render_many_attaches_the_pdf_too(
        setup: tuple[Engine, Record, dict[str, Any]]) -> None:
    engine, record, request = setup
    (message,) = engine.render_many("monthly_statement", [request], channel="email")
    assert message.status == "generated"
    _check_pdf(_attachment(message.content), request)
    assert _statuses(record, message.customer_id) == {"pdf": ("generated", None),
                                                      "email": ("generated", None)}


@pytest.mark.parametrize("many", [False, True])
def test_a_document_whose_email_is_stopped_is_not_made(
        setup: tuple[Engine, Record, dict[str, Any]], many: bool) -> None:
    """The carried PDF follows its email: no consent to email, no document made either (its
    entry gives the email's rule), however the PDF channel's own consent reads."""
    engine, record, request = setup
    request["customer"]["consents"] = {"email": False, "pdf": True}
    message = (engine.render_many("monthly_statement", [request], channel="email")[0] if many
               else engine.render("monthly_statement", request, channel="email"))
    assert (message.status, message.reason) == ("suppressed", "consent:email")
    assert _statuses(record, message.customer_id) == {
        "pdf": ("suppressed", "consent:email"), "email": ("suppressed", "consent:email")}
