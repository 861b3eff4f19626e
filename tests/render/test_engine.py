"""The engine end to end on the example packs: open what was made and check it."""

from __future__ import annotations

import copy
import email
import email.policy
import re
from io import BytesIO

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

import ccm
from ccm.errors import (
    AssetError,
    DataError,
    PasswordRuleError,
    UnknownChannel,
    UnknownLocale,
    UnknownTemplate,
)
from tests.examples_helpers import (
    copy_examples,
    daytime,
    engine,
    pdf_text,
    sample,
    sample_for_locale,
)


def pdf_password(customer: dict[str, str]) -> str:
    """The example packs' PDF password: the customer's document code."""
    return customer["document_code"]


def test_statement_renders_every_channel() -> None:
    """Without a channel, render returns one message per channel of the template, pdf first."""
    messages = engine("acme").render("monthly_statement", sample("monthly_statement"))
    assert [m.channel for m in messages] == ["pdf", "email", "sms"]
    assert all(m.status == "generated" and m.content for m in messages)
    assert len({m.message_id for m in messages}) == 3


def test_confidential_pdf_opens_with_the_rule_password_only() -> None:
    """The statement PDF is AES-256 encrypted; the date-of-birth password opens it as a user."""
    req = sample("monthly_statement")
    msg = engine("acme").render("monthly_statement", req, channel="pdf")
    assert msg.encrypted
    reader = PdfReader(BytesIO(msg.content))
    assert reader.is_encrypted
    assert reader.trailer["/Encrypt"]["/V"] == 5 and reader.trailer["/Encrypt"]["/R"] == 6
    assert reader.decrypt("wrong") == 0
    password = pdf_password(req["customer"])
    assert reader.decrypt(password).name == "USER_PASSWORD"
    text = pdf_text(msg.content, password)
    assert req["customer"]["name"].split()[0] in text
    assert len(reader.pages) >= 2, "the first sample has enough transactions for two pages"
    assert "2" in text.split("Page")[-1] if "Page" in text else True


def test_pdf_metadata_and_archival_copy_are_linked() -> None:
    """Title/author metadata is set, and the PDF/A-3b copy's SHA-256 is in the delivery PDF."""
    req = sample("monthly_statement")
    msg = engine("acme").render("monthly_statement", req, channel="pdf")
    assert msg.archival is not None
    archival = PdfReader(BytesIO(msg.archival))
    assert not archival.is_encrypted
    assert "request.json" in archival.attachments
    xmp = archival.xmp_metadata
    assert xmp is not None and "pdfaid" in xmp.stream.get_data().decode("utf-8", "replace")
    reader = PdfReader(BytesIO(msg.content))
    reader.decrypt(pdf_password(req["customer"]))
    meta = reader.metadata
    assert meta is not None
    assert meta.get("/Author") == engine("acme").pack.name
    assert meta.title
    assert meta.get("/ccm:archival-sha256") == msg.archival_sha256


def test_archival_copy_can_be_turned_off() -> None:
    """RenderOptions(archival=False) writes only the encrypted delivery PDF (what previews use)."""
    from tests.examples_helpers import PACKS, TEMPLATES

    req = sample("monthly_statement")
    quick = ccm.Engine(PACKS / "acme", TEMPLATES, record=None,
                       options=ccm.RenderOptions(archival=False))
    msg = quick.render("monthly_statement", req, channel="pdf")
    assert msg.archival is None and msg.encrypted
    reader = PdfReader(BytesIO(msg.content))
    reader.decrypt(pdf_password(req["customer"]))
    assert reader.metadata is not None and "/ccm:archival-sha256" not in reader.metadata


def test_email_attaches_the_encrypted_pdf_and_states_the_hint() -> None:
    """The statement email parses back, carries the encrypted PDF and the password hint."""
    req = sample("monthly_statement")
    eng = engine("acme")
    msg = eng.render("monthly_statement", req, channel="email")
    assert b"\r\n" in msg.content and b"\n" not in msg.content.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(msg.content, policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == req["customer"]["email"]
    assert len(parsed["To"].addresses) == 1
    assert "acme" in parsed["From"].addresses[0].domain
    parts = [p.get_content_type() for p in parsed.walk()]
    assert parts.index("text/plain") < parts.index("text/html")
    attachments = list(parsed.iter_attachments())
    assert len(attachments) == 1
    pdf = attachments[0].get_content()
    assert PdfReader(BytesIO(pdf)).is_encrypted
    hint = eng.password_hint(msg.locale)
    body = parsed.get_body(("plain",)).get_content()
    assert hint and hint in " ".join(body.split())
    assert "List-Unsubscribe" not in parsed  # operational


def test_email_date_is_the_message_time_from_the_engine_clock() -> None:
    """The Date header is the message's created_at (the injected clock), not the machine's
    time: an email made "as of" a moment says so, and is the same at any hour."""
    from datetime import UTC, datetime

    when = datetime(2026, 3, 2, 15, 0, 1, tzinfo=UTC)
    eng = ccm.Engine("brand_packs/acme", "templates", clock=lambda: when)
    made = [eng.render("payment_reminder", sample("payment_reminder"), channel="email")
            for _ in range(2)]
    for msg in made:
        parsed = email.message_from_bytes(msg.content, policy=email.policy.default)
        assert parsed["Date"].datetime == when
        assert msg.created_at is not None and datetime.fromisoformat(msg.created_at) == when


def test_sms_counts_segments_and_states_the_hint() -> None:
    """The statement SMS is GSM-7 in English, within the pack limit, and mentions the hint."""
    req = sample("monthly_statement")
    eng = engine("acme")
    msg = eng.render("monthly_statement", req, channel="sms")
    assert msg.encoding == "GSM-7"
    assert 1 <= (msg.segments or 0) <= 3
    assert msg.text is not None and msg.content == msg.text.encode()
    assert eng.password_hint(msg.locale) in " ".join(msg.text.split())


def test_marketing_email_has_one_click_unsubscribe_and_sms_opt_out() -> None:
    """product_offer (marketing) gets List-Unsubscribe + One-Click and the SMS opt-out line."""
    req = sample("product_offer")
    eng = engine("acme")
    mail = eng.render("product_offer", req, channel="email")
    parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://" in parsed["List-Unsubscribe"]
    sms = eng.render("product_offer", req, channel="sms")
    opt_out = eng.pack.raw["senders"]["sms"]["opt_out"][sms.locale]
    assert opt_out in (sms.text or "")


def test_german_statement_is_translated() -> None:
    """The acme statement in de_DE is in German, numbers formatted the German way."""
    req = sample_for_locale("monthly_statement", "de")
    eng = engine("acme")
    msg = eng.render("monthly_statement", req, channel="pdf")
    assert msg.locale == "de_DE"
    text = pdf_text(msg.content, pdf_password(req["customer"]))
    assert "Seite" in text
    assert "€" in text
    english = pdf_text(
        eng.render("monthly_statement", req, channel="pdf", locale="en_GB").content,
        pdf_password(req["customer"]),
    )
    assert "Page" in english and "Seite" not in english


def test_arabic_statement_is_right_to_left() -> None:
    """The globex statement in ar is laid out right to left in PDF and email."""
    req = sample_for_locale("monthly_statement", "ar")
    eng = engine("globex")
    msgs = eng.render("monthly_statement", req)
    pdf = next(m for m in msgs if m.channel == "pdf")
    mail = next(m for m in msgs if m.channel == "email")
    assert pdf.locale == "ar"
    password = pdf_password(req["customer"])
    text = pdf_text(pdf.content, password)
    assert any("\u0600" <= ch <= "\u06ff" for ch in text)
    parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    assert 'dir="rtl"' in html and 'lang="ar"' in html


def test_a_brand_change_reaches_every_channel(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Changing the palette and legal text in pack.yaml changes PDF, email and SMS-free channels."""
    pack_dir, templates = copy_examples(tmp_path)
    manifest = pack_dir / "pack.yaml"
    raw = yaml.safe_load(manifest.read_text())
    raw["palette"]["primary"] = "#123456"
    raw["legal"]["en_GB"] = "Rebranded Legal Text Ltd, registered in Nowhere."
    manifest.write_text(yaml.safe_dump(raw, allow_unicode=True))
    eng = ccm.Engine(pack_dir, templates, record=None, clock=daytime)
    for template in ("monthly_statement", "payment_reminder", "welcome", "product_offer"):
        req = sample(template)
        req["customer"]["locale"] = "en_GB"
        for msg in eng.render(template, req):
            if msg.channel == "email":
                parsed = email.message_from_bytes(msg.content, policy=email.policy.default)
                html = parsed.get_body(("html",)).get_content()
                assert "#123456" in html.lower(), template
                assert "Rebranded Legal Text" in html, template
            elif msg.channel == "pdf":
                pw = pdf_password(req["customer"]) if msg.encrypted else None
                assert "Rebranded Legal Text" in " ".join(pdf_text(msg.content, pw).split())


def test_an_engine_renders_the_sources_it_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Editing a template on disk does not change what a running engine renders (its record
    digests stay true); a new engine picks the edit up, with a new sources digest."""
    pack_dir, templates = copy_examples(tmp_path)
    req = sample("payment_reminder")
    running = ccm.Engine(pack_dir, templates, record=None, clock=daytime)
    before = running.render("payment_reminder", req, channel="sms")
    source = templates / "payment_reminder" / "sms.txt.j2"
    source.write_text("Edited on disk. " + source.read_text("utf-8"), "utf-8")
    again = running.render("payment_reminder", req, channel="sms")
    assert b"Edited on disk" not in again.content
    assert again.sources_sha256 == before.sources_sha256
    fresh = ccm.Engine(pack_dir, templates, record=None, clock=daytime).render(
        "payment_reminder", req, channel="sms")
    assert b"Edited on disk" in fresh.content
    assert fresh.sources_sha256 != before.sources_sha256


def test_unknown_names_list_what_exists() -> None:
    """Unknown template, channel and locale errors list what is available."""
    eng = engine("acme")
    with pytest.raises(UnknownTemplate, match="monthly_statement"):
        eng.render("nope", sample("monthly_statement"))
    with pytest.raises(UnknownChannel, match="email"):
        eng.render("payment_reminder", sample("payment_reminder"), channel="pdf")
    with pytest.raises(UnknownLocale, match="de_DE"):
        eng.render("payment_reminder", sample("payment_reminder"), locale="fr_FR")


def test_invalid_data_names_the_json_path() -> None:
    """A contract violation names the JSON path and the rule, and is a MessageError."""
    req = copy.deepcopy(sample("monthly_statement"))
    req["data"]["transactions"][1]["amount"] = "lots"
    with pytest.raises(DataError) as info:
        engine("acme").render("monthly_statement", req, channel="sms")
    assert info.value.path == "$.data.transactions[1].amount"  # type: ignore[attr-defined]
    assert isinstance(info.value, ccm.MessageError)


def test_missing_password_field_is_a_clear_error() -> None:
    """A confidential PDF for a customer without a document code fails naming the field."""
    req = copy.deepcopy(sample("monthly_statement"))
    del req["customer"]["document_code"]
    with pytest.raises(PasswordRuleError, match="document_code"):
        engine("acme").render("monthly_statement", req, channel="pdf")


def test_missing_logo_fails_the_render(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A statement is never produced without its logo: the missing asset is named."""
    pack_dir, templates = copy_examples(tmp_path)
    eng = ccm.Engine(pack_dir, templates, record=None, clock=daytime)
    logo = pack_dir / eng.pack.raw["logo"]
    logo.unlink()
    with pytest.raises(AssetError, match=logo.name):
        eng.render("welcome", sample("welcome"), channel="pdf")


def test_pathological_table_fails_alone() -> None:
    """A request with 10,000 transaction rows fails with a clear error instead of hanging."""
    req = copy.deepcopy(sample("monthly_statement"))
    row = req["data"]["transactions"][0]
    req["data"]["transactions"] = [row] * 10_000
    with pytest.raises(ccm.MessageError):
        engine("acme").render("monthly_statement", req, channel="pdf")


def test_deeply_nested_request_is_refused() -> None:
    """Deeply nested data is refused before rendering."""
    req = copy.deepcopy(sample("payment_reminder"))
    nested: dict[str, object] = {}
    cur = nested
    for _ in range(200):
        cur["x"] = {}
        cur = cur["x"]  # type: ignore[assignment]
    req["data"]["extra"] = nested
    with pytest.raises(DataError, match="nested"):
        engine("acme").render("payment_reminder", req, channel="sms")


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names)
def test_any_customer_name_keeps_email_safe(name: str) -> None:
    """Property: any name yields one recipient, CRLF only, escaped HTML — or a clear error."""
    req = copy.deepcopy(sample("payment_reminder"))
    req["customer"]["name"] = name
    try:
        msg = engine("acme").render("payment_reminder", req, channel="email")
    except ccm.MessageError:
        return
    assert b"\n" not in msg.content.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(msg.content, policy=email.policy.default)
    assert len(parsed["To"].addresses) == 1
    html = parsed.get_body(("html",)).get_content()
    if re.search(r"<[A-Za-z/!?]", name):  # could start a tag: it must arrive escaped
        assert name not in html


@settings(max_examples=25, deadline=None)
@given(name=names)
def test_any_customer_name_keeps_sms_arithmetic(name: str) -> None:
    """Property: any name gives an SMS whose segment count matches its encoding's arithmetic."""
    from ccm.channels.sms import measure

    req = copy.deepcopy(sample("payment_reminder"))
    req["customer"]["name"] = name
    try:
        msg = engine("acme").render("payment_reminder", req, channel="sms")
    except ccm.MessageError:
        return
    again = measure(msg.text or "")
    assert (again.encoding, again.segments) == (msg.encoding, msg.segments)
    assert not any(ord(c) < 32 and c != "\n" for c in msg.text or "")


def test_delivery_pdf_is_the_archival_copy_without_pdfa_parts() -> None:
    """The confidential delivery PDF has the archival copy's pages and text, but no request."""
    import hashlib

    req = sample("monthly_statement")
    msg = engine("acme").render("monthly_statement", req, channel="pdf")
    assert msg.archival is not None
    password = pdf_password(req["customer"])
    reader = PdfReader(BytesIO(msg.content))
    assert reader.decrypt(password).name == "USER_PASSWORD"
    root = reader.trailer["/Root"]
    for key in ("/AF", "/Names", "/Metadata", "/OutputIntents"):
        assert key not in root
    assert "/StructTreeRoot" in root and reader.attachments == {}
    assert reader.metadata is not None
    assert reader.metadata["/ccm:archival-sha256"] == hashlib.sha256(msg.archival).hexdigest()
    archival = PdfReader(BytesIO(msg.archival))
    assert [p.extract_text() for p in reader.pages] == [p.extract_text() for p in archival.pages]
