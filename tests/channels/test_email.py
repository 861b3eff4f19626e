"""Email channel: MJML compilation, the text alternative, safe headers, the .eml."""

from __future__ import annotations

import email
import email.policy
import random
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mjml import mjml2html

from ccm.channels.email import (
    Attachment,
    build_email,
    build_email_bytes,
    clear_mjml_cache,
    compile_mjml,
    compile_mjml_cached,
    html_to_text,
    parse_bytes,
    safe_header,
    to_bytes,
)
from ccm.channels.email import _headers as email_headers
from ccm.channels.email import _mjml as email_mjml
from ccm.channels.email import _text as email_text
from ccm.errors import HeaderError, MessageError, RenderError
from tests.channels._stdlib_email import stdlib_build_email
from tests.strategies import customer_names, header_values


def _doc(body: str, head: str = "") -> str:
    return (
        f"<mjml><mj-head>{head}</mj-head><mj-body><mj-section><mj-column>{body}"
        "</mj-column></mj-section></mj-body></mjml>"
    )


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """A pack folder with partials, a template folder, and a secret outside both."""
    pack, template = tmp_path / "pack", tmp_path / "template"
    (pack / "partials").mkdir(parents=True)
    template.mkdir()
    (pack / "partials" / "footer.mjml").write_text("<mj-text>FOOTER-MARKER</mj-text>")
    (template / "local.mjml").write_text("<mj-text>LOCAL-MARKER</mj-text>")
    (pack / "x").write_text("<mj-text>X-MARKER</mj-text>")
    (tmp_path / "secret.mjml").write_text("<mj-text>SECRET-MARKER</mj-text>")
    (pack / "escape.mjml").symlink_to(tmp_path / "secret.mjml")
    return pack, template


# --- MJML -----------------------------------------------------------------------------


def test_compile_mjml_adds_no_google_fonts() -> None:
    """Fonts named in the MJML do not pull in fonts.googleapis.com links."""
    html = compile_mjml(_doc('<mj-text font-family="Open Sans, Roboto">Hello</mj-text>'))
    assert "Hello" in html
    assert "fonts.googleapis.com" not in html
    assert "<link" not in html


def test_mj_include_reads_files_inside_the_roots(roots: tuple[Path, Path]) -> None:
    """Includes resolve in the pack first, then the template folder."""
    source = _doc('<mj-include path="partials/footer.mjml"/><mj-include path="./local.mjml"/>')
    html = compile_mjml(source, include_roots=roots)
    assert "FOOTER-MARKER" in html and "LOCAL-MARKER" in html


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "partials/../../secret.mjml",
        "../secret.mjml",
        "https://evil.example/x.mjml",
        "file:///etc/passwd",
        "//evil.example/share.mjml",
        "..\\secret.mjml",
        "C:/Windows/win.ini",
        "escape.mjml",
    ],
)
def test_mj_include_outside_the_roots_is_refused(path: str, roots: tuple[Path, Path]) -> None:
    """Escapes by '..', absolute paths, URLs and symlinks raise RenderError naming the path."""
    with pytest.raises(RenderError) as info:
        compile_mjml(_doc(f'<mj-include path="{path}"/>'), include_roots=roots)
    assert repr(path) in str(info.value)
    assert info.value.context["path"] == path
    assert isinstance(info.value, MessageError)


def test_mj_include_of_a_missing_file_names_it(roots: tuple[Path, Path]) -> None:
    """A missing include fails with its path rather than compiling without it."""
    with pytest.raises(RenderError, match=r"'partials/nope\.mjml' not found"):
        compile_mjml(_doc('<mj-include path="partials/nope.mjml"/>'), include_roots=roots)


def test_mj_include_without_roots_is_refused() -> None:
    """With no include folders nothing can be included."""
    with pytest.raises(RenderError, match="no include folders"):
        compile_mjml(_doc('<mj-include path="footer.mjml"/>'))


def test_escaped_mj_include_is_text_never_an_include(roots: tuple[Path, Path]) -> None:
    """Customer data rendering as '&lt;mj-include …&gt;' shows as text; nothing is read."""
    html = compile_mjml(_doc('<mj-text>Hi &lt;mj-include path="x"/&gt;</mj-text>'),
                        include_roots=roots)
    assert "X-MARKER" not in html
    assert "&lt;mj-include path=\"x\"/&gt;" in html
    assert html_to_text(html) == 'Hi <mj-include path="x"/>'


def test_invalid_mjml_raises_render_error() -> None:
    """mjml's own errors are translated, message kept."""
    with pytest.raises(RenderError, match="MJML does not compile: "):
        compile_mjml("<p>not mjml</p>")


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Count calls into mjml2html, starting from an empty cache."""
    calls: list[str] = []

    def counting(source: str, **kwargs: Any) -> str:
        calls.append(source)
        return mjml2html(source, **kwargs)

    monkeypatch.setattr(email_mjml, "mjml2html", counting)
    clear_mjml_cache()
    yield calls
    clear_mjml_cache()


def test_cached_compile_compiles_an_identical_source_once(compile_calls: list[str]) -> None:
    """The same source twice costs one compilation; another source costs another."""
    first = compile_mjml_cached(_doc("<mj-text>one</mj-text>"))
    again = compile_mjml_cached(_doc("<mj-text>one</mj-text>"))
    compile_mjml_cached(_doc("<mj-text>two</mj-text>"))
    assert first == again
    assert len(compile_calls) == 2


def test_cached_compile_sees_an_edited_include(
    compile_calls: list[str], roots: tuple[Path, Path]
) -> None:
    """A cache entry is dropped when a file it included changes."""
    source = _doc('<mj-include path="partials/footer.mjml"/>')
    assert "FOOTER-MARKER" in compile_mjml_cached(source, include_roots=roots)
    assert "FOOTER-MARKER" in compile_mjml_cached(source, include_roots=roots)
    (roots[0] / "partials" / "footer.mjml").write_text("<mj-text>NEW FOOTER</mj-text>")
    assert "NEW FOOTER" in compile_mjml_cached(source, include_roots=roots)
    assert len(compile_calls) == 2


def test_cached_compile_does_not_cache_errors(compile_calls: list[str]) -> None:
    """A failing source raises every time."""
    for _ in range(2):
        with pytest.raises(RenderError):
            compile_mjml_cached("<mjml><mj-body>")
    assert len(compile_calls) == 2


@pytest.fixture
def no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """mjml2html fails the test instead of running: a too-deep source must not reach it."""

    def refuse(source: str, **kwargs: Any) -> str:
        pytest.fail("the MJML compiler was called")

    monkeypatch.setattr(email_mjml, "mjml2html", refuse)
    clear_mjml_cache()


@pytest.mark.parametrize("markup", [
    "<b>" * 20_000 + "x",  # a loop that opens tags and never closes them
    "<b>" * 20_000 + "x" + "</b>" * 20_000,  # properly closed: the compiler crashes as well
    "<div><p>" * 10_000 + "x",
])
def test_deep_mjml_is_refused_before_the_compiler(no_compiler: None, markup: str) -> None:
    """Nesting that would overflow mjml-python's stack (and kill the process) is a RenderError."""
    expected = r"nests elements 20005 deep, more than the 100 "
    with pytest.raises(RenderError, match=expected) as caught:
        compile_mjml(_doc(f"<mj-text>{markup}</mj-text>"))
    assert caught.value.channel == "email"


def test_nesting_at_the_limit_compiles() -> None:
    """MAX_MJML_DEPTH levels (mjml, mj-body, mj-section, mj-column, mj-text and 95 more) compile."""
    inner = email_mjml.MAX_MJML_DEPTH - 5
    html = compile_mjml(_doc("<mj-text>" + "<b>" * inner + "deep" + "</b>" * inner + "</mj-text>"))
    assert "deep" in html
    with pytest.raises(RenderError, match="nests elements 101 deep"):
        compile_mjml(_doc("<mj-text>" + "<b>" * (inner + 1) + "</b>" * (inner + 1) + "</mj-text>"))


def test_mj_include_depth_adds_to_the_source(roots: tuple[Path, Path]) -> None:
    """An included file's nesting counts on top of the including source's, naming the file."""
    pack, _template = roots
    (pack / "deep.mjml").write_text("<mj-text>" + "<i>" * 150 + "</i>" * 150 + "</mj-text>")
    with pytest.raises(RenderError, match=r"with mj-include 'deep.mjml' nests elements 155 deep"):
        compile_mjml(_doc('<mj-include path="deep.mjml"/>'), include_roots=roots)


@pytest.mark.parametrize(("markup", "depth"), [
    ("", 0),
    ("<a><b></b><c><d/></c></a>", 2),
    ("<p>a<br>b<br/>c<img src='x'><hr></p>", 1),  # void and self-closing elements are empty
    ("<BR><BR>", 2),  # mjml-python knows void elements in lowercase only
    ("<b></B><b></B>", 1),
    ("<b></i><b></i>", 2),  # an end tag closes only the innermost element of its name
    ("<!-- <b><b> --><i></i>", 1),
    ("<!--><b>--><i>", 1),  # the comment ends at the first --> after <!--
    ("<!-- <b><b>", 3),  # unterminated: read as tags
    ('<b title="<i><i>"></b>', 1),
    ('<b title="/>"><b>', 2),  # a /> inside quotes does not close the tag
    ("<b title='x><i><i>", 3),  # unterminated quote: read on after it
    ("a < b <b", 1),
    ("<b<i<u>", 3),
    ("<mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section>", 3),
])
def test_markup_depth(markup: str, depth: int) -> None:
    """Where markup is odd the depth is counted high, never lower than mjml-python nests it."""
    assert email_mjml.markup_depth(markup) == depth


# --- text alternative ------------------------------------------------------------------


class _CountingList(list[Any]):
    """A list that counts reads by index."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        _CountingList.reads += 1
        return super().__getitem__(index)


def test_stray_end_tags_in_deep_markup_cost_linear_work() -> None:
    """Each stray end tag under 1,000 open elements looks through a few hundred, not all."""
    parser = email_text._TextExtractor()
    parser._open = _CountingList()
    _CountingList.reads = 0
    parser.feed("<div>" * 1_000 + "x" + "</i>" * 1_000 + "</div>y")
    parser.close()
    assert _CountingList.reads <= 1_001 * (email_text._END_TAG_REACH + 2)
    assert "".join(parser.out) == "x\ny"  # the </div> closes the innermost div


def test_html_to_text_of_compiled_mjml() -> None:
    """Preheader, head and styles vanish; paragraphs, buttons, links and tables read well."""
    html = compile_mjml(
        _doc(
            "<mj-text><h1>Your statement</h1><p>Dear Zoë,</p>"
            "<p>your balance is 1&nbsp;234,50&nbsp;€.<br/>Thank you.</p></mj-text>"
            '<mj-button href="https://acme.example/pay">Pay now</mj-button>'
            "<mj-table><tr><th>Date</th><th>Amount</th></tr>"
            "<tr><td>1 Jan</td><td>10,00 €</td></tr></mj-table>"
            '<mj-text><a href="https://acme.example/">https://acme.example</a> · '
            '<a href="mailto:help@acme.example">help@acme.example</a></mj-text>',
            head="<mj-title>Statement</mj-title><mj-preview>PREHEADER</mj-preview>"
            "<mj-style>.x { color: red }</mj-style>",
        )
    )
    assert html_to_text(html) == (
        "Your statement\n\n"
        "Dear Zoë,\n\n"
        "your balance is 1\u00a0234,50\u00a0€.\nThank you.\n\n"
        "Pay now (https://acme.example/pay)\n\n"
        "Date | Amount\n1 Jan | 10,00 €\n\n"
        "https://acme.example · help@acme.example"
    )


def test_html_to_text_hides_hidden_elements_and_scripts() -> None:
    """display:none, the hidden attribute, script, style and title are not text."""
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        '<div style="DISPLAY: none">pre</div><div hidden>h</div><script>x()</script>'
        "<p>  visible \n  text  </p></body></html>"
    )
    assert html_to_text(html) == "visible text"


def test_html_to_text_links_lists_and_images() -> None:
    """Links show their URL once; image links use the alt text; list items get dashes."""
    html = (
        '<ul><li>one</li><li>two <a href="https://a.example/x">more</a></li></ul>'
        '<p><a href="https://a.example/"><img src="logo.png" alt="Acme"></a></p>'
        '<p><a href="#top">top</a> <a href="https://a.example/z"></a></p>'
    )
    assert html_to_text(html) == (
        "- one\n- two more (https://a.example/x)\n\nAcme (https://a.example/)\n\n"
        "top https://a.example/z"
    )


def test_html_to_text_tolerates_broken_markup() -> None:
    """Stray and unclosed tags do not lose text."""
    assert html_to_text("<div>a</span><p>b<div>c") == "a\n\nb\nc"
    assert html_to_text("") == ""


# --- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "Bob\r\nBcc: x@evil.example"),
        ("Subject", "Bob\nBcc: x@evil.example"),
        ("Subject", "Bob\rBcc: x@evil.example"),
        ("Subject", "=?utf-8?q?a=0D=0ABcc:_x@evil.example?="),
        ("Subject", "=?utf-8?b?YQ0KQmNjOiB4QGV2aWw=?="),
        ("Subject", "ok =?iso-8859-1?Q?a=0Ab?= ok"),
        ("Subject", "line\u2028separator"),
        ("Subject", "paragraph\u2029separator"),
        ("Subject", "next\x85line"),
        ("Subject", "nul\x00byte"),
        ("X-Note", "=?utf-8?q?=00?="),
        ("To", "Bob\r\nBcc: x@evil.example <bob@example.com>"),
        ("To", "=?utf-8?q?a=0D=0ABcc:_x@evil.example?= <bob@example.com>"),
        ("To", "=?utf-8?q?a=00?= <bob@example.com>"),
        ("To", "bob@example.com\u2028"),
    ],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    """Line breaks and NUL, raw or inside encoded words, raise HeaderError naming the header."""
    with pytest.raises(HeaderError) as info:
        safe_header(name, value)
    assert info.value.context["header"] == name
    assert name in str(info.value)
    assert "evil" not in str(info.value) and "Bob" not in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MessageError)


@pytest.mark.parametrize(
    "value",
    [
        "a@x.example, b@y.example",
        "a@x.example; b@y.example",
        "friends: a@x.example, b@y.example;",
        "group: a@x.example;",
        "alice@example.org)<bob@example.org>",
        "<a@x.example> trailing junk",
        "Bob",
        "",
        "@x.example",
        "a@",
        "jörg@example.com",
    ],
)
def test_address_headers_hold_exactly_one_address(value: str) -> None:
    """Lists, groups, parser-confusing shapes and non-addresses are refused."""
    with pytest.raises(HeaderError, match="To header"):
        safe_header("To", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bob@example.com", "bob@example.com"),
        ("Bob <bob@example.com>", "Bob <bob@example.com>"),
        ("Dr. Bob <bob@example.com>", '"Dr. Bob" <bob@example.com>'),
        ('"Smith, Jr." <j@example.com>', '"Smith, Jr." <j@example.com>'),
        ("Bob\t\x07 Smith <b@example.com>", "Bob Smith <b@example.com>"),
        ("Jörg <j@example.com>", "=?utf-8?b?SsO2cmc=?= <j@example.com>"),
    ],
)
def test_address_headers_come_back_canonical(value: str, expected: str) -> None:
    """One address is accepted and written canonically, non-ASCII names encoded."""
    assert safe_header("To", value) == expected


def test_header_values_lose_control_characters() -> None:
    """Other controls and bidi overrides are dropped, tabs and space runs become one space."""
    assert safe_header("Subject", "  Your\tstatement\x01\x7f  is \u202eready ") == (
        "Your statement is ready"
    )
    assert safe_header("Subject", "=?utf-8?q?stays_literal?=") == "=?utf-8?q?stays_literal?="


def test_header_names_and_lengths_are_checked() -> None:
    """Header names are printable ASCII without ':'; absurdly long values are refused."""
    for name in ("Bcc: x", "X Note", "", "Ünï"):
        with pytest.raises(HeaderError):
            safe_header(name, "v")
    with pytest.raises(HeaderError, match="too long"):
        safe_header("Subject", "x" * 5000)
    with pytest.raises(HeaderError, match="too long"):
        safe_header("To", '"' * 2000 + " <a@example.com>")


# --- the message ---------------------------------------------------------------------------

HTML = compile_mjml(_doc("<mj-text><p>Dear Zoë,</p><p>here is your statement.</p></mj-text>"))
TEXT = html_to_text(HTML)
FROM = "Acme Bank <noreply@acme.example>"
WHEN = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)


def _build(**overrides: Any) -> EmailMessage:
    kwargs: dict[str, Any] = {
        "subject": "Your statement for May",
        "html": HTML,
        "text": TEXT,
        "from_": FROM,
        "to": ("Zoë Müller", "zoe@example.com"),
        "date": WHEN,
    }
    kwargs.update(overrides)
    return build_email(**kwargs)


def _round_trip(msg: EmailMessage) -> tuple[bytes, EmailMessage]:
    data = to_bytes(msg)
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert len(parsed.get_all("To") or []) == 1
    assert len(parsed["To"].addresses) == 1
    assert parsed.get_all("Cc") is None and parsed.get_all("Bcc") is None
    return data, parsed


def test_email_with_attachment_parses_back() -> None:
    """mixed -> [alternative -> (plain, html), pdf]; headers and attachment bytes survive."""
    pdf = b"%PDF-1.7\n\x00\xff\r\n binary \n"
    msg = _build(
        reply_to="Acme Service <service@acme.example>",
        headers={"X-CCM-Message-ID": "msg-123"},
        attachments=[Attachment("Kontoauszug März.pdf", pdf, "application/pdf")],
    )
    data, parsed = _round_trip(msg)
    assert parsed.get_content_type() == "multipart/mixed"
    alternative, attachment = parsed.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "Kontoauszug März.pdf"
    assert attachment.get_content() == pdf
    assert str(parsed["Subject"]) == "Your statement for May"
    assert parsed["To"].addresses[0].display_name == "Zoë Müller"
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.com"
    assert str(parsed["From"]) == FROM
    assert str(parsed["Reply-To"]) == "Acme Service <service@acme.example>"
    assert parsed["Date"].datetime == WHEN
    assert re.fullmatch(r"<[0-9a-f]{32}@acme\.example>", str(parsed["Message-ID"]))
    assert str(parsed["X-CCM-Message-ID"]) == "msg-123"
    assert data.count(b"MIME-Version:") == 1
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == TEXT + "\n"
    html = parsed.get_body(("html",))
    assert html is not None and "Dear Zoë," in html.get_content()


def test_email_without_attachments_is_just_alternative() -> None:
    """No attachments: the top part is multipart/alternative, text/plain first."""
    _, parsed = _round_trip(_build())
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)


def test_header_lines_are_folded_within_78_columns() -> None:
    """Long subjects and non-ASCII names fold into lines of at most 78 characters."""
    data, parsed = _round_trip(
        _build(
            subject="Ihr Kontoauszug für Mai ist da – bitte prüfen Sie ihn " * 3,
            to=("Zoë Alexandra Müller-Lüdenscheidt von und zu Größenwahn", "zoe@example.com"),
        )
    )
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert str(parsed["Subject"]).startswith("Ihr Kontoauszug für Mai ist da – bitte")


def test_long_list_unsubscribe_is_written_verbatim() -> None:
    """A long one-click URL is folded at the comma, never turned into encoded words."""
    url = "https://t.acme.example/u/" + "a1b2c3d4" * 15
    value = f"<{url}>, <mailto:unsubscribe@acme.example?subject=unsubscribe>"
    data, parsed = _round_trip(
        _build(headers={"List-Unsubscribe": value,
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    )
    assert f"List-Unsubscribe: <{url}>,\r\n <mailto:".encode() in data
    assert str(parsed["List-Unsubscribe"]) == value
    assert b"=?" not in data.split(b"List-Unsubscribe: ", 1)[1].split(b"\r\nList-", 1)[0]


def test_text_that_looks_like_an_encoded_word_stays_literal() -> None:
    """A subject or name containing '=?utf-8?q?…?=' reaches the reader as typed."""
    _, parsed = _round_trip(
        _build(subject="Re: =?utf-8?q?Hi?= there", to=("=?utf-8?q?Admin?=", "zoe@example.com"))
    )
    assert str(parsed["Subject"]) == "Re: =?utf-8?q?Hi?= there"
    assert parsed["To"].addresses[0].display_name == "=?utf-8?q?Admin?="


@pytest.mark.parametrize("name", ["To", "cc", "BCC", "Subject", "From", "MIME-Version"])
def test_extra_headers_cannot_replace_built_ones_or_add_recipients(name: str) -> None:
    """headers= cannot set the structural headers, nor add Cc/Bcc recipients."""
    with pytest.raises(HeaderError, match=name):
        _build(headers={name: "x@evil.example"})


@pytest.mark.parametrize(
    "to",
    [
        "a@example.com, b@example.com",
        "all: a@example.com, b@example.com;",
        ("Bob", "a@example.com, b@example.com"),
        ("Bob", "Eve <eve@example.com>"),
        ("Bob\r\nBcc: eve@example.com", "bob@example.com"),
    ],
)
def test_email_has_exactly_one_recipient(to: str | tuple[str, str]) -> None:
    """Anything but one address in To is refused."""
    with pytest.raises(HeaderError):
        _build(to=to)


@pytest.mark.parametrize(
    ("filename", "media_type"),
    [
        ("invoice\u202efdp.exe", "application/pdf"),
        ("a\r\nb.pdf", "application/pdf"),
        ("../../etc/passwd", "application/pdf"),
        ("", "application/pdf"),
        ("=?utf-8?q?a=0A?=.pdf", "application/pdf"),
        ("a.pdf", "application/pdf\r\nX-Evil: 1"),
        ("a.pdf", "pdf"),
        ("a.pdf", "multipart/mixed"),
    ],
)
def test_attachment_names_and_types_are_checked(filename: str, media_type: str) -> None:
    """File names cannot spoof, break lines or carry paths; media types must be type/subtype."""
    with pytest.raises(HeaderError):
        Attachment(filename, b"x", media_type)


def test_message_id_domain_can_be_given_and_date_must_be_aware() -> None:
    """message_id_domain overrides the sender's domain; a naive date is a programming error."""
    _, parsed = _round_trip(_build(message_id_domain="mail.acme.example"))
    assert str(parsed["Message-ID"]).endswith("@mail.acme.example>")
    with pytest.raises(ValueError, match="timezone"):
        _build(date=datetime(2024, 5, 17))


def test_to_bytes_refuses_bare_line_feeds() -> None:
    """The CRLF guarantee is checked on the bytes, not assumed."""

    class Broken(EmailMessage):
        def as_bytes(self, unixfrom: bool = False, policy: Any = None) -> bytes:
            return b"Subject: x\r\nX-Bad: a\nb\r\n\r\nbody\r\n"

    with pytest.raises(RenderError, match="bare line feed"):
        to_bytes(Broken())


def test_parse_bytes_round_trips() -> None:
    """parse_bytes reads what to_bytes wrote."""
    msg = _build()
    assert str(parse_bytes(to_bytes(msg))["Subject"]) == "Your statement for May"


# --- properties ------------------------------------------------------------------------------

_FORBIDDEN = set("\r\n\x00\x85\u2028\u2029")
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(value: str) -> str:
    """What a reader should see: controls and bidi overrides gone, whitespace tidied."""
    kept = (
        " " if ch == "\t" else ch
        for ch in value
        if ch == "\t" or (unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI)
    )
    return re.sub(" {2,}", " ", "".join(kept)).strip(" ")


def _display_name(data: bytes) -> str:
    """The To display name decoded per RFC 2047 §6.2.

    CPython 3.11's address parser keeps the space between adjacent encoded
    words, which the RFC says to drop, so long names are decoded here the
    standard way.
    """
    raw = email.message_from_bytes(data, policy=email.policy.compat32)["To"]
    raw = re.sub(r"\r?\n[ \t]", " ", str(raw))
    if "=?" not in raw:
        return str(parse_bytes(data)["To"].addresses[0].display_name)
    return str(make_header(decode_header(raw.rsplit("<", 1)[0].strip())))


@settings(max_examples=150, deadline=None)
@given(subject=header_values(), header=st.sampled_from(["Subject", "X-Note"]))
def test_any_header_text_is_refused_or_arrives_clean(subject: str, header: str) -> None:
    """Property: HeaderError, or the header arrives minus controls; one To, CRLF only."""
    extra = {} if header == "Subject" else {header: subject}
    try:
        msg = _build(subject=subject if header == "Subject" else "s", headers=extra)
    except HeaderError:
        # Only line breaks/NUL (raw or in something shaped like an encoded word) are refused.
        assert _FORBIDDEN & set(subject) or "=?" in subject
        return
    _, parsed = _round_trip(msg)
    assert str(parsed[header]) == _visible(subject)


@settings(max_examples=150, deadline=None)
@given(name=customer_names())
def test_any_customer_name_is_refused_or_arrives_clean(name: str) -> None:
    """Property: a (name, address) recipient is refused only for line breaks, else as typed."""
    try:
        msg = _build(to=(name, "customer@example.com"))
    except HeaderError:
        assert _FORBIDDEN & set(name)
        return
    data, parsed = _round_trip(msg)
    assert parsed["To"].addresses[0].addr_spec == "customer@example.com"
    assert _display_name(data) == _visible(name)


@settings(max_examples=100, deadline=None)
@given(name=customer_names())
def test_any_formatted_recipient_is_refused_or_is_one_address(name: str) -> None:
    """Property: a formataddr() To string (the engine's form) yields one address or HeaderError."""
    try:
        msg = _build(to=formataddr((name, "customer@example.com")))
    except HeaderError:
        return
    data, parsed = _round_trip(msg)
    assert parsed["To"].addresses[0].addr_spec == "customer@example.com"
    if "=?" not in name:
        # The stdlib's address parser folds a run of whitespace in an encoded name
        # ("\t\xa0") to one space, so compare what a reader sees word by word.
        assert _display_name(data).split() == _visible(name).split()



# -- the direct writer and the fast text path ------------------------------------------

_FAST_CASES = [
    {"subject": "Your statement f\u00fcr Oktober =?utf-8?q?x?=", "html": HTML,
     "text": "h\u00e9llo  \nworld \n\n" + "long line " * 30 + "\n.\nFrom here\n",
     "from_": "Acme Bank <statements@acme.example>",
     "to": ("J\u00fcrgen Sch\u00e4fer", "j@example.de"),
     "reply_to": "Service <service@acme.example>",
     "headers": {"X-CCM-Message-ID": "abc", "List-Unsubscribe":
                 "<https://acme.example/unsubscribe/" + "t" * 120 + ">"}},
    {"subject": "plain", "html": "<b>x</b>", "text": "x", "from_": "a@acme.example",
     "to": "Bob <b@example.com>",
     "attachments": [Attachment("st\u00e4tement.pdf", b"%PDF-1.7\n" * 500, "application/pdf"),
                     Attachment("notes.txt", b"hello", "text/plain")]},
    {"subject": "", "html": "", "text": "", "from_": "a@acme.example", "to": "b@example.com"},
]


def _parts(data: bytes) -> list[tuple[str, list[tuple[str, str]], object]]:
    parsed = parse_bytes(data)
    out = []
    for part in parsed.walk():
        headers = [(k, str(v)) for k, v in part.items()
                   if k != "Message-ID" and not str(v).startswith("multipart/")]
        out.append((part.get_content_type(), headers,
                    None if part.is_multipart() else part.get_content()))
    return out


@pytest.mark.parametrize("case", _FAST_CASES)
def test_build_email_bytes_equals_the_stdlib_message(case: dict[str, object]) -> None:
    """The .eml ccm writes parses to the same headers, parts and content as the stdlib's."""
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    slow = to_bytes(stdlib_build_email(**case, date=when))  # type: ignore[arg-type]
    fast = build_email_bytes(**case, date=when)  # type: ignore[arg-type]
    assert _parts(fast) == _parts(slow)
    assert b"\n" not in fast.replace(b"\r\n", b"") and b"\r" not in fast.replace(b"\r\n", b"")
    body = fast.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))
    assert max(map(len, fast.split(b"\r\n"))) <= max(78, *map(len, slow.split(b"\r\n")))


def test_build_email_bytes_checks_headers_like_build_email() -> None:
    """Injection and reserved headers are refused by the direct writer too."""
    base = {"html": "<p>x</p>", "text": "x", "from_": "a@acme.example", "to": "b@example.com"}
    with pytest.raises(HeaderError):
        build_email_bytes(subject="a\r\nBcc: x@example.com", **base)  # type: ignore[arg-type]
    with pytest.raises(HeaderError):
        build_email_bytes(subject="s", headers={"Bcc": "x@example.com"}, **base)  # type: ignore[arg-type]


def _text_with_htmlparser(html: str) -> str:
    parser = email_text._TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).split("\n"))
    return email_text._BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


_FRAGMENTS = [
    "<p>", "</p>", '<div style="display:none">', "</div>", "<div>", "<a href=\"https://x.example/a?b=1&amp;c=2\">",
    "</a>", '<img alt="Logo &amp; co" src="l.png">', '<img alt="A"/>', "<br>", "<br/>", "<table>",
    "<tr>", "<td>", "</td>", "</tr>", "</table>", "<li>", "</li>", "text ", "&amp; ", "&lt;",
    "&#169;",
    " ", "\n", "<!-- c -->", "<!--[if mso]><b>x</b><![endif]-->", "<style>a<b{}</style>",
    "<script>x</script>", "<span hidden>", "</span>", "< b", "&", "<!doctype html>",
    '<P CLASS="x">', "<a href=bare>", "<b/>", "x<", "<?pi?>", "<![CDATA[x]]>", '<a  href = "u" >',
    '<td style="visibility:hidden">', '<a href="#top">', "<div/>", "<hr>", "&nbsp;",
]


def test_html_to_text_fast_path_matches_htmlparser() -> None:
    """Whatever the markup, html_to_text gives what the HTMLParser walk gives."""
    rng = random.Random(4)
    for _ in range(3000):
        html = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(0, 25)))
        assert html_to_text(html) == _text_with_htmlparser(html), html
    assert html_to_text(HTML) == _text_with_htmlparser(HTML)


@settings(max_examples=300)
@given(st.from_regex(email_headers._SIMPLE_ADDRESS, fullmatch=True))
def test_simple_addresses_skip_the_parser_with_the_same_result(address: str) -> None:
    """A plain dot-atom address comes back from the header parser unchanged (the shortcut)."""
    if len(address) <= 1000:
        assert email_headers._parsed_address("To", address) == address


@settings(max_examples=300)
@given(text=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=200),
       header=st.sampled_from(["Subject", "To", "From", "X-Campaign-Reference-Header"]))
def test_encoded_words_are_the_stdlibs_and_decode_back(text: str, header: str) -> None:
    """ccm's own RFC 2047 encoder (the stdlib's costs ~80 us a subject) writes exactly what
    ``email.header.Header`` writes, every word within 75 characters, and decodes back.
    (Header text is cleaned of control characters before it is encoded.)"""
    from email.header import Header

    ours = email_headers._encode_words.__wrapped__(text, header)
    stdlib = Header(text, "utf-8", maxlinelen=76, header_name=header).encode(linesep="\n")
    assert ours == stdlib.replace("\n ", " ").replace("\n\t", " ")
    assert all(len(word) <= 75 for word in ours.split(" "))
    assert str(make_header(decode_header(ours))) == text


_HEADER_TEXT = st.lists(st.sampled_from(
    ["a", "Z", " ", "  ", "\t", "=?", "?=", "=?utf-8?q?x?=", "<m@x.example>", "é", "\r", "\n",
     "\x00", "\x7f", "\x01", "\u2028", "\u202e", ":", "x" * 40]), max_size=6).map("".join)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(["Date", "Message-ID", "X-CCM-Message-ID", "Subject", "To",
                             "Reply-To", "X-A-Very-Long-Header-Name-For-Folding", "Bad Name",
                             "X:Y"]),
       value=_HEADER_TEXT)
@example(name="Subject", value="x" * 40 + " " + "x" * 40)  # folded
@example(name="Date", value="Mon, 02 Mar 2026 15:00:01 +0000")
@example(name="X-CCM-Message-ID", value="019caf1035e3764aad6cb6dd210facd3")
def test_a_plain_header_written_directly_is_the_checked_and_folded_one(name: str,
                                                                       value: str) -> None:
    """``_header`` gives ``_header_line(name, safe_header(name, value))`` or its error."""
    from ccm.channels.email._message import _header, _header_line

    try:
        expected: bytes | str = _header_line(name, email_headers.safe_header(name, value))
    except HeaderError as exc:
        expected = str(exc)
    try:
        got: bytes | str = _header(name, value)
    except HeaderError as exc:
        got = str(exc)
    assert got == expected


@settings(max_examples=600, deadline=None)
@given(text=st.lists(st.sampled_from(["a", "Z", " ", "_", "=", "?", ":", ".", "é", "€", "中",
                                      "𝄞", "ü", "x" * 9, "£89.20"]), max_size=40).map("".join),
       header=st.sampled_from(["To", "Subject", "From", "X-A-Very-Long-Header-Name-Here",
                               "X-" + "h" * 60]))
@example(text="Reminder: your payment of £89.20 is overdue", header="Subject")
@example(text="Jürgen Schäfer 1", header="To")
@example(text="a" * 55 + "é", header="Subject")  # one payload byte too many for one word
@example(text="中" * 14, header="Subject")  # base64, 4 characters too many
def test_encoded_words_in_one_go_are_the_words_cut_by_character(text: str, header: str) -> None:
    """A text that fits one encoded word is written without the per-character cut, alike."""
    words = email_headers._encode_words.__wrapped__(text, header)  # type: ignore[attr-defined]
    assert words == (email_headers._split_words(text, header) if text else "")


def _clean_text_by_category(value: str) -> str:
    """What ``_clean_text`` did character by character (the reference)."""
    chars = [ch for ch in value.replace("\t", " ")
             if unicodedata.category(ch) not in ("Cc", "Cs")
             and ch not in email_headers._BIDI_CONTROLS]
    return re.sub(" {2,}", " ", "".join(chars)).strip(" ")


def test_header_text_drops_exactly_controls_surrogates_and_bidi_controls() -> None:
    """The one-pass pattern drops every code point the category check dropped, no other."""
    dropped = email_headers._DROPPED.fullmatch
    for code in range(0x110000):
        ch = chr(code)
        expected = unicodedata.category(ch) in ("Cc", "Cs") or ch in email_headers._BIDI_CONTROLS
        assert bool(dropped(ch)) == expected, hex(code)


@settings(max_examples=300, deadline=None)
@given(value=st.lists(st.sampled_from(
    ["a", " ", "  ", "\t", "é", "\x00", "\x85", "\x9f", "\xa0", "\u202e", "\u2066", "\ud800",
     "\u200f", "中", "\x7f", "Ü"]), max_size=12).map("".join))
def test_header_text_cleaned_as_by_category(value: str) -> None:
    assert email_headers._clean_text(value) == _clean_text_by_category(value)
