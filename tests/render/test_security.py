"""PDF encryption (AES-256 R6, user rights) and the pack's password rule.

The plaintext PDF is made by WeasyPrint through the PDF channel in a tmp pack
folder; encrypted output is opened with pypdf and poppler's pdftotext.
"""

from __future__ import annotations

import io
import logging
import pickle
import shutil
import subprocess
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from pypdf.constants import UserAccessPermissions as Perm
from pypdf.errors import FileNotDecryptedError
from pypdf.generic import ArrayObject

from ccm.channels.pdf import PackFetcher, render_document, write_pdf
from ccm.errors import PackError, PasswordRuleError
from ccm.render.security import (
    DATE_FORMATS,
    PasswordRule,
    decrypt_pdf,
    encrypt_pdf,
    entropy_bits,
    password_for,
)

PASSWORD = "17051990"


@pytest.fixture(scope="module")
def plain_pdf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A two-page tagged statement-like PDF made by WeasyPrint."""
    root = tmp_path_factory.mktemp("pack")
    rows = "".join(f"<p>Transaction {i}: 12.{i:02d} EUR</p>" for i in range(50))
    html = (
        '<!doctype html><html lang="de"><head><title>Kontoauszug</title></head>'
        f"<body><h1>Kontoauszug</h1>{rows}</body></html>"
    )
    document = render_document(html, base_url=root.as_uri() + "/", fetcher=PackFetcher([root]))
    return write_pdf(document, title="Kontoauszug", author="Acme Bank", lang="de-DE")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def encrypted(plain_pdf: bytes) -> bytes:
    return encrypt_pdf(plain_pdf, PASSWORD)


def texts(reader: PdfReader) -> list[str]:
    return [page.extract_text() for page in reader.pages]


def opened(pdf: bytes, password: str | None = None) -> PdfReader:
    reader = PdfReader(io.BytesIO(pdf))
    if password is not None:
        reader.decrypt(password)
    return reader


# --- encryption ---------------------------------------------------------------


def test_aes256_r6(encrypted: bytes) -> None:
    """The Standard handler with V 5 / R 6 and AESV3 streams and strings -- never RC4."""
    reader = opened(encrypted)
    assert reader.is_encrypted
    entry = reader.trailer["/Encrypt"].get_object()
    assert entry["/Filter"] == "/Standard"
    assert (entry["/V"], entry["/R"], entry["/Length"]) == (5, 6, 256)
    assert entry["/CF"]["/StdCF"]["/CFM"] == "/AESV3"
    assert entry["/StmF"] == entry["/StrF"] == "/StdCF"


def test_user_password_gives_user_rights(encrypted: bytes) -> None:
    """The customer's password opens as USER, so the random owner password differs from it."""
    reader = PdfReader(io.BytesIO(encrypted))
    assert reader.decrypt(PASSWORD).name == "USER_PASSWORD"


def test_owner_password_is_random_per_file(plain_pdf: bytes) -> None:
    """Two encryptions of the same PDF have different owner entries (/O)."""
    first = opened(encrypt_pdf(plain_pdf, PASSWORD)).trailer["/Encrypt"]["/O"]
    second = opened(encrypt_pdf(plain_pdf, PASSWORD)).trailer["/Encrypt"]["/O"]
    assert first != second


def test_explicit_owner_password(plain_pdf: bytes) -> None:
    """A given owner password opens as OWNER; one equal to the user password is refused."""
    pdf = encrypt_pdf(plain_pdf, PASSWORD, owner_password="owner-secret-42")
    assert PdfReader(io.BytesIO(pdf)).decrypt("owner-secret-42").name == "OWNER_PASSWORD"
    with pytest.raises(ValueError, match="differ"):
        encrypt_pdf(plain_pdf, PASSWORD, owner_password=PASSWORD)


def test_permissions_print_only(encrypted: bytes) -> None:
    """Print (and high-quality print) and accessibility extraction on; change and copy off."""
    reader = opened(encrypted, PASSWORD)
    flags = Perm(reader.trailer["/Encrypt"]["/P"] & 0xFFFFFFFF)
    for allowed in (Perm.PRINT, Perm.PRINT_TO_REPRESENTATION, Perm.EXTRACT_TEXT_AND_GRAPHICS):
        assert allowed in flags
    for denied in (Perm.MODIFY, Perm.EXTRACT, Perm.ADD_OR_MODIFY, Perm.FILL_FORM_FIELDS,
                   Perm.ASSEMBLE_DOC, Perm.R1, Perm.R2):
        assert denied not in flags
    assert reader.are_permissions_valid  # /Perms agrees with /P


def test_text_metadata_and_tags_survive(plain_pdf: bytes, encrypted: bytes) -> None:
    """Decrypted text equals the plaintext's; title, author, language and tagging are kept."""
    reader = opened(encrypted, PASSWORD)
    assert texts(reader) == texts(opened(plain_pdf))
    assert len(reader.pages) == 2
    assert reader.metadata is not None
    assert (reader.metadata.title, reader.metadata.author) == ("Kontoauszug", "Acme Bank")
    root = reader.trailer["/Root"]
    assert root["/Lang"] == "de-DE"
    assert "/StructTreeRoot" in root and "/MarkInfo" in root


def test_wrong_password_fails(encrypted: bytes) -> None:
    """A wrong password does not decrypt and the pages stay unreadable."""
    reader = PdfReader(io.BytesIO(encrypted))
    assert reader.decrypt("01011990").name == "NOT_DECRYPTED"
    with pytest.raises(FileNotDecryptedError):
        reader.pages[0].extract_text()


def test_pdftotext_reads_with_the_user_password(encrypted: bytes) -> None:
    """poppler opens the file with -upw and not without it."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (apt-get install poppler-utils)")
    ok = subprocess.run(["pdftotext", "-upw", PASSWORD, "-", "-"], input=encrypted,
                        capture_output=True, check=True)
    assert "Transaction 49" in ok.stdout.decode()
    refused = subprocess.run(["pdftotext", "-", "-"], input=encrypted, capture_output=True)
    assert refused.returncode != 0


@pytest.mark.parametrize("bad", ["", " ", "\u00ad", "\u200b\u00ad"])
def test_empty_password_refused(plain_pdf: bytes, bad: str) -> None:
    """An empty password -- also one that SASLprep maps to nothing -- is refused."""
    with pytest.raises(ValueError, match="password"):
        encrypt_pdf(plain_pdf, bad)


@pytest.mark.parametrize("bad", ["abc\u0007def", "abc\ue000def", "abcمرحبا"])
def test_unusable_password_refused_without_quoting_it(
    plain_pdf: bytes, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SASLprep-prohibited passwords raise a ValueError that quotes nothing and chains nothing."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError) as info:
        encrypt_pdf(plain_pdf, bad)
    assert bad not in str(info.value) and "U+" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert not any(bad in record.getMessage() for record in caplog.records)


def test_already_encrypted_refused(encrypted: bytes) -> None:
    """Encrypting twice is a mistake, not a second layer."""
    with pytest.raises(ValueError, match="already encrypted"):
        encrypt_pdf(encrypted, PASSWORD)


@pytest.mark.parametrize(
    "password", ["a", "Grüße-2024", "пароль", "كلمةالسر", "密码123", "x" * 64, "p@ss w0rd!"]
)
def test_unicode_passwords_round_trip(plain_pdf: bytes, password: str) -> None:
    """Ordinary passwords in many scripts open the file as USER."""
    reader = PdfReader(io.BytesIO(encrypt_pdf(plain_pdf, password)))
    assert reader.decrypt(password).name == "USER_PASSWORD"


@pytest.fixture(scope="module")
def small_pdf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("small")
    document = render_document(
        '<html lang="en"><body><p>Hello reader</p></body></html>',
        base_url=root.as_uri() + "/", fetcher=PackFetcher([root]),
    )
    return write_pdf(document, title="t", author="a", lang="en")  # type: ignore[no-any-return]


printable = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
)


#: What encrypt_pdf says when it refuses a password: the same words for every password.
_PASSWORD_REFUSALS = {
    f"{which} password {what}" for which in ("user", "owner") for what in (
        "must be a non-empty string",
        "has characters PDF encryption cannot use (SASLprep)",
        "is blank once prepared (SASLprep)")}


@settings(max_examples=30, deadline=None)
@given(password=st.text(printable, min_size=1, max_size=64))
def test_encryption_round_trips(small_pdf: bytes, password: str) -> None:
    """Any printable password either round-trips (same text) or is refused without being quoted."""
    try:
        pdf = encrypt_pdf(small_pdf, password)
    except ValueError as exc:
        # One of the fixed refusals, so it cannot quote the password (a password like " "
        # or "a" is found in any text: "not in the message" would be no test of that).
        assert str(exc) in _PASSWORD_REFUSALS and exc.__context__ is None
        return
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.decrypt(password).name == "USER_PASSWORD"
    assert texts(reader) == texts(opened(small_pdf))


# --- the rule -----------------------------------------------------------------


RULE_YAML: dict[str, Any] = {
    "field": "date_of_birth",
    "format": "DDMMYYYY",
    "suffix_field": "address.postcode",
    "hint": {"en_GB": "Your date of birth (DDMMYYYY) and postcode", "de_DE": "Ihr Geburtsdatum"},
}
CUSTOMER: dict[str, Any] = {
    "id": "C-1001",
    "date_of_birth": "1990-05-17",
    "address": {"postcode": "SW1A 1AA"},
}


def test_rule_from_mapping_and_password() -> None:
    """pack.yaml's mapping builds the rule; the password is date + postcode without spaces."""
    rule = PasswordRule.from_mapping(RULE_YAML)
    assert password_for(rule, CUSTOMER) == "17051990SW1A1AA"
    assert rule.fields == ("date_of_birth", "address.postcode")


def test_rule_is_a_frozen_value() -> None:
    """Frozen, hashable, comparable; the hint is read-only."""
    rule = PasswordRule.from_mapping(RULE_YAML)
    assert rule == PasswordRule.from_mapping(RULE_YAML)
    assert hash(rule) == hash(PasswordRule.from_mapping(RULE_YAML))
    with pytest.raises(AttributeError):
        rule.field = "id"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rule.hint["fr_FR"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    ("obj", "key"),
    [
        ({"hint": {}}, "security.pdf_password.field"),
        ({"field": "date_of_birth", "format": "DD.MM.YYYY"}, "security.pdf_password.format"),
        ({"field": "id", "colour": "red"}, "security.pdf_password"),
        ({"field": ""}, "security.pdf_password.field"),
        ({"field": "id", "hint": {"en": 3}}, "security.pdf_password.hint"),
    ],
)
def test_bad_rules_are_pack_errors(obj: dict[str, Any], key: str) -> None:
    """A bad rule is a PackError naming the key (a ValueError too)."""
    with pytest.raises(PackError) as info:
        PasswordRule.from_mapping(obj)
    assert info.value.key == key  # type: ignore[attr-defined]
    assert isinstance(info.value, ValueError)


def test_hint_for_locale() -> None:
    """Exact locale, then the same language, then the pack's default locale."""
    rule = PasswordRule.from_mapping(RULE_YAML)
    assert rule.hint_for("de_DE", "en_GB") == "Ihr Geburtsdatum"
    assert rule.hint_for("de_AT", "en_GB") == "Ihr Geburtsdatum"
    assert rule.hint_for("fr_FR", "en_GB") == "Your date of birth (DDMMYYYY) and postcode"
    assert PasswordRule("id").hint_for("en_GB") is None


@pytest.mark.parametrize(
    ("customer", "field"),
    [
        ({"id": "C-7"}, "date_of_birth"),
        ({"id": "C-7", "date_of_birth": None}, "date_of_birth"),
        ({"id": "C-7", "date_of_birth": "17.05.1990"}, "date_of_birth"),
        ({"id": "C-7", "date_of_birth": "1990-13-45"}, "date_of_birth"),
        ({"id": "C-7", "date_of_birth": "1990-05-17"}, "address.postcode"),
        ({"id": "C-7", "date_of_birth": "1990-05-17", "address": {"postcode": "   "}},
         "address.postcode"),
        ({"id": "C-7", "date_of_birth": "1990-05-17", "address": {"postcode": ["x"]}},
         "address.postcode"),
    ],
)
def test_password_rule_errors_name_field_and_customer_only(
    customer: dict[str, Any], field: str
) -> None:
    """Missing or bad fields raise PasswordRuleError with field and customer id, never the value."""
    rule = PasswordRule.from_mapping(RULE_YAML)
    with pytest.raises(PasswordRuleError) as info:
        password_for(rule, customer)
    error = info.value
    assert error.field == field and error.customer_id == "C-7"  # type: ignore[attr-defined]
    assert field in str(error) and "C-7" in str(error)
    for value in ("17.05.1990", "1990-13-45", "1990", "17"):
        assert value not in str(error) and value not in repr(error)
    assert error.__context__ is None and error.__cause__ is None
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_as_is_field_and_date_objects() -> None:
    """format None takes the value as is (trimmed); YAML date objects work like ISO strings."""
    assert password_for(PasswordRule("id"), {"id": 12345678}) == "12345678"
    assert password_for(PasswordRule("pin"), {"id": "1", "pin": " ab12 "}) == "ab12"
    rule = PasswordRule("dob", format="YYYYMMDD")
    assert password_for(rule, {"id": "1", "dob": date(1990, 5, 17)}) == "19900517"


STRFTIME = {"DDMMYYYY": "%d%m%Y", "YYYYMMDD": "%Y%m%d", "MMDDYYYY": "%m%d%Y", "DDMMYY": "%d%m%y"}


@given(
    day=st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)),
    fmt=st.sampled_from(sorted(DATE_FORMATS)),
)
def test_dates_round_trip_against_strftime(day: date, fmt: str) -> None:
    """Every supported format writes an ISO date exactly as strftime would."""
    rule = PasswordRule("date_of_birth", format=fmt)
    assert password_for(rule, {"id": "1", "date_of_birth": day.isoformat()}) == day.strftime(
        STRFTIME[fmt]
    )


def test_entropy_estimates() -> None:
    """Date of birth ~14.8 bits, a postcode adds ~20, numeric ids log2(10) per digit."""
    dob = PasswordRule("date_of_birth", format="DDMMYYYY")
    assert entropy_bits(dob) == pytest.approx(14.8, abs=0.1)
    with_postcode = PasswordRule.from_mapping(RULE_YAML)
    assert entropy_bits(with_postcode) == pytest.approx(34.8, abs=0.1)
    with_id = PasswordRule("date_of_birth", format="DDMMYY", suffix_field="id")
    assert entropy_bits(with_id) == pytest.approx(14.8, abs=0.1)  # length unknown: counts 0
    assert entropy_bits(with_id, sample={"id": "1234567890"}) == pytest.approx(48.0, abs=0.1)
    assert entropy_bits(with_postcode) < 40 <= entropy_bits(with_id, sample={"id": "1234567890"})


def test_rule_repr_has_no_customer_data() -> None:
    """The rule holds field names only, so its repr cannot leak a password."""
    text = repr(PasswordRule.from_mapping(RULE_YAML))
    assert "date_of_birth" in text and "1990" not in text


def test_encrypt_keeps_arrays_of_fonts(encrypted: bytes) -> None:
    """Sanity: the encrypted file still has its pages' font resources after cloning."""
    reader = opened(encrypted, PASSWORD)
    assert all(isinstance(page["/MediaBox"], ArrayObject) for page in reader.pages)
    assert all("/Font" in page["/Resources"] for page in reader.pages)


def test_owner_password_gives_owner_rights_user_password_does_not(plain_pdf: bytes) -> None:
    """qpdf writes distinct user and owner keys: only the owner password opens as OWNER."""
    pdf = encrypt_pdf(plain_pdf, PASSWORD, owner_password="owner-secret-42")
    assert PdfReader(io.BytesIO(pdf)).decrypt(PASSWORD).name == "USER_PASSWORD"
    assert PdfReader(io.BytesIO(pdf)).decrypt("owner-secret-42").name == "OWNER_PASSWORD"


def test_edit_runs_before_encryption(plain_pdf: bytes) -> None:
    """An ``edit`` changes the document in the same pass; the result is still AES-256 R6."""
    import pikepdf

    def edit(pdf: pikepdf.Pdf) -> None:
        pdf.docinfo[pikepdf.Name("/ccm:note")] = "edited"

    reader = opened(encrypt_pdf(plain_pdf, PASSWORD, edit=edit), PASSWORD)
    assert reader.metadata is not None and reader.metadata["/ccm:note"] == "edited"
    assert reader.trailer["/Encrypt"]["/R"] == 6
    assert texts(reader) == texts(opened(plain_pdf))


def test_not_a_pdf_refused() -> None:
    """Bytes that are not a PDF raise ValueError, not a qpdf error."""
    with pytest.raises(ValueError, match="not a readable PDF"):
        encrypt_pdf(b"hello", PASSWORD)


def test_decrypt_pdf_gives_the_plain_document(plain_pdf: bytes, encrypted: bytes) -> None:
    """The user password gives back an unencrypted PDF with the same text and tags."""
    plain = decrypt_pdf(encrypted, PASSWORD)
    reader = opened(plain)
    assert not reader.is_encrypted
    assert texts(reader) == texts(opened(plain_pdf))
    assert "/StructTreeRoot" in reader.trailer["/Root"]
    with pytest.raises(ValueError, match="does not open") as info:
        decrypt_pdf(encrypted, "01011990")
    assert "01011990" not in str(info.value) and info.value.__context__ is None


# --- the encryption dictionary made by ccm, qpdf only encrypting -------------------


def _qpdf_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make encrypt_pdf take qpdf's own AES-256 set-up (the path before ccm's own)."""
    from ccm.render import _r6

    monkeypatch.setattr(_r6, "identity_encrypted", lambda *args: None)


def _encrypt_dict(pdf: bytes, password: str) -> dict[str, Any]:
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf), password=password) as doc:
        assert not doc.get_warnings()
        return {str(k): repr(v) for k, v in doc.trailer.Encrypt.items()
                if k not in ("/O", "/U", "/OE", "/UE", "/Perms")}


def test_ccm_pdfs_skip_qpdf_key_setup(plain_pdf: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """ccm's own PDFs (plain and PDF/A) never reach qpdf's slow key set-up."""
    import pikepdf

    from ccm.channels.pdf import delivery_from_archival

    archival = write_pdf(
        render_document('<html lang="en"><body><p>Archived</p></body></html>',
                        base_url="file:///nonexistent/", fetcher=PackFetcher([])),
        title="t", author="a", lang="en", variant="pdf/a-3b",
        attachments=[("request.json", b"{}", "application/json")],
    )

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("qpdf's own encryption set-up was used")

    monkeypatch.setattr(pikepdf, "Encryption", refused)
    for pdf, edit in ((plain_pdf, None), (archival, delivery_from_archival())):
        reader = opened(encrypt_pdf(pdf, PASSWORD, edit=edit), PASSWORD)
        assert reader.trailer["/Encrypt"]["/R"] == 6
        assert texts(reader) == texts(opened(pdf))


def test_same_encryption_as_qpdf_alone(plain_pdf: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dictionary, permissions, rights and text are those qpdf gives on its own."""
    import pikepdf

    ours = encrypt_pdf(plain_pdf, PASSWORD, owner_password="owner-secret-42")
    _qpdf_alone(monkeypatch)
    theirs = encrypt_pdf(plain_pdf, PASSWORD, owner_password="owner-secret-42")
    assert _encrypt_dict(ours, PASSWORD) == _encrypt_dict(theirs, PASSWORD)
    for pdf in (ours, theirs):
        with pikepdf.open(io.BytesIO(pdf), password=PASSWORD) as doc:
            assert doc.user_password_matched and not doc.owner_password_matched
            assert doc.encryption.stream_method == pikepdf.models.EncryptionMethod.aesv3
            assert doc.encryption.string_method == pikepdf.models.EncryptionMethod.aesv3
            allowed = doc.allow
            assert len(doc.pages) == len(PdfReader(io.BytesIO(plain_pdf)).pages)
        with pikepdf.open(io.BytesIO(pdf), password="owner-secret-42") as doc:
            assert doc.owner_password_matched
        assert b"Kontoauszug" not in pdf and b"Acme" not in pdf  # strings are encrypted
    with pikepdf.open(io.BytesIO(theirs), password=PASSWORD) as doc:
        assert doc.allow == allowed
    assert texts(opened(ours, PASSWORD)) == texts(opened(theirs, PASSWORD))


def test_permissions_value_is_qpdfs(plain_pdf: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """/P written by ccm equals what qpdf computes from the same permissions."""
    from ccm.render.security import _permissions_p

    _qpdf_alone(monkeypatch)
    theirs = encrypt_pdf(plain_pdf, PASSWORD)
    assert _encrypt_dict(theirs, PASSWORD)["/P"] == repr(_permissions_p())


@settings(max_examples=20, deadline=None)
@given(password=st.binary(min_size=0, max_size=130), salt=st.binary(min_size=8, max_size=8),
       udata=st.sampled_from([b"", bytes(range(48))]))
def test_hash_2b_is_pypdfs(password: bytes, salt: bytes, udata: bytes) -> None:
    """Algorithm 2.B agrees with pypdf's implementation."""
    from pypdf._encryption import AlgV5

    from ccm.render._r6 import hash_2b

    assert hash_2b(password, salt, udata) == AlgV5.calculate_hash(6, password, salt, udata)


def _classic(pdf: bytes) -> bytes:
    """``pdf`` rewritten by qpdf with a cross-reference table (no object streams)."""
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as doc:
        out = io.BytesIO()
        doc.save(out, object_stream_mode=pikepdf.ObjectStreamMode.disable)
        return out.getvalue()


def test_other_pdf_shapes(plain_pdf: bytes) -> None:
    """Cross-reference tables, incremental updates and odd /ID strings take the same path."""
    from ccm.render._r6 import identity_encrypted

    classic = _classic(plain_pdf)
    # an incremental update whose trailer has an /ID with parentheses and escapes
    offset = int(classic.rsplit(b"startxref", 1)[1].split()[0])
    trailer = classic[classic.rindex(b"trailer"):classic.rindex(b"startxref")]
    size = trailer.split(b"/Size", 1)[1].split()[0]
    root = trailer.split(b"/Root", 1)[1].split(b"R", 1)[0]
    updated = classic + (
        b"xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size " + size + b" /Root " + root
        + b"R /ID [ (a\\)b(c)\\\\) <0102> ] /Prev %d >>\nstartxref\n%d\n%%%%EOF\n"
        % (offset, len(classic))
    )
    for pdf in (classic, updated):
        assert identity_encrypted(pdf, PASSWORD, "o", -4) is not None
        reader = opened(encrypt_pdf(pdf, PASSWORD), PASSWORD)
        assert texts(reader) == texts(opened(plain_pdf))
    # trailing garbage or a truncated file: not read here; qpdf does all of it
    for pdf in (plain_pdf + b"garbage", plain_pdf[: len(plain_pdf) // 2], b"%PDF-1.7\n"):
        assert identity_encrypted(pdf, PASSWORD, "o", -4) is None
    reader = opened(encrypt_pdf(plain_pdf + b"\n%garbage\n", PASSWORD), PASSWORD)
    assert texts(reader) == texts(opened(plain_pdf))


def test_a_trailer_nested_too_deeply_is_left_to_qpdf(plain_pdf: bytes) -> None:
    """A hostile trailer (arrays nested past Python's recursion limit) is not read here:
    qpdf decides, and encrypt_pdf answers as it answers for any PDF qpdf reads or not."""
    from ccm.render._r6 import identity_encrypted

    classic = _classic(plain_pdf)
    offset = int(classic.rsplit(b"startxref", 1)[1].split()[0])
    trailer = classic[classic.rindex(b"trailer"):classic.rindex(b"startxref")]
    size = trailer.split(b"/Size", 1)[1].split()[0]
    root = trailer.split(b"/Root", 1)[1].split(b"R", 1)[0]
    deep = b"[" * 5000 + b"]" * 5000
    hostile = classic + (
        b"xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size " + size + b" /Root " + root
        + b"R /X " + deep + b" /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (offset, len(classic))
    )
    assert identity_encrypted(hostile, PASSWORD, "o", -4) is None
    try:
        encrypted = encrypt_pdf(hostile, PASSWORD)
    except ValueError as exc:  # qpdf could not read it: the usual refusal
        assert "not a readable PDF" in str(exc)
    else:
        assert texts(opened(encrypted, PASSWORD)) == texts(opened(plain_pdf))


def test_trailer_entries_are_kept_as_qpdf_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries of the file's trailer (not of its xref section) survive either path."""
    import pikepdf

    doc = pikepdf.new()
    doc.add_blank_page()
    doc.trailer.Custom = pikepdf.String("kept")
    out = io.BytesIO()
    doc.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    source = out.getvalue()
    ours = encrypt_pdf(source, PASSWORD)
    _qpdf_alone(monkeypatch)
    theirs = encrypt_pdf(source, PASSWORD)
    keys = []
    for pdf in (ours, theirs):
        with pikepdf.open(io.BytesIO(pdf), password=PASSWORD) as opened_doc:
            assert str(opened_doc.trailer.Custom) == "kept"
            keys.append(sorted(opened_doc.trailer.keys()))
    assert keys[0] == keys[1]


def test_encrypted_input_is_left_to_qpdf(encrypted: bytes) -> None:
    """A trailer with /Encrypt is not touched; encrypt_pdf refuses it as before."""
    from ccm.render._r6 import identity_encrypted

    assert identity_encrypted(encrypted, PASSWORD, "o", -4) is None
    with pytest.raises(ValueError, match="already encrypted"):
        encrypt_pdf(encrypted, PASSWORD)


def test_without_owner_password_the_owner_entries_are_random(encrypted: bytes) -> None:
    """No owner password: /O and /OE have their sizes, differ per file, and the user is USER."""
    import pikepdf

    with pikepdf.open(io.BytesIO(encrypted), password=PASSWORD) as doc:
        assert doc.user_password_matched and not doc.owner_password_matched
        entry = doc.trailer.Encrypt
        assert (len(bytes(entry.O)), len(bytes(entry.OE))) == (48, 32)
        assert len(bytes(entry.U)) == 48 and len(bytes(entry.UE)) == 32
    assert PdfReader(io.BytesIO(encrypted)).decrypt(PASSWORD).name == "USER_PASSWORD"
