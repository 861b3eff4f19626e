"""MJML compiled once per shape: the same HTML, text and .eml as compiling every message."""

from __future__ import annotations

import binascii
import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mjml import mjml2html

from ccm.channels.email import _message as email_message
from ccm.channels.email import _mjml as email_mjml
from ccm.channels.email import _skeleton as skeleton
from ccm.channels.email import (
    build_email_bytes,
    clear_skeletons,
    compile_mjml,
    compile_mjml_and_text,
    compile_mjml_shaped,
    html_to_text,
    parse_bytes,
)
from ccm.channels.email._message import ShapedHTML, qp_segments
from ccm.errors import MessageError, RenderError
from ccm.message import Message
from ccm.render.engine import Engine
from ccm.render.template import validate_request
from tests.strategies import customer_names, varied_data

ROOT = Path(__file__).resolve().parents[2]
PACKS = ("acme", "globex")
TEMPLATES = tuple(sorted(
    p.parent.name for p in (ROOT / "templates").glob("*/email.mjml.j2")))
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)

_engines: dict[str, Engine] = {}


def _engine(pack: str) -> Engine:
    if pack not in _engines:
        _engines[pack] = Engine(ROOT / "brand_packs" / pack, ROOT / "templates", record=None,
                                clock=lambda: NOW)
    return _engines[pack]


def _samples(template: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text("utf-8"))
            for p in sorted((ROOT / "templates" / template / "samples").glob("*.json"))]


def _source(pack: str, template: str, raw: dict[str, Any]) -> tuple[str, tuple[Path, ...], str]:
    """The rendered MJML of ``raw``, its include folders and subject, as the engine has them."""
    engine = _engine(pack)
    tpl = engine.template(template)
    req = validate_request(raw)
    locale = engine.pack.resolve_locale(req.customer.get("locale"))
    message = Message(
        message_id="0" * 32, customer_id=req.customer_id, template=tpl.id,
        template_version=tpl.version, pack=engine.pack.id, pack_version=engine.pack.version,
        channel="email", locale=locale, message_type=tpl.message_type, journey=tpl.journey,
        content=b"", created_at=NOW.isoformat())
    rendered = engine._render(tpl, req, "email", message, time.monotonic() + 60,
                              blocks=("subject", "preheader"))
    return rendered.text, (engine.pack.root, tpl.root), rendered.blocks.get("subject") or tpl.id


class _FixedSecrets:
    """The two random parts of an .eml (boundary, Message-ID) fixed, for byte equality."""

    @staticmethod
    def token_hex(n: int) -> str:
        return "5a" * n

    @staticmethod
    def randbelow(n: int) -> int:
        return 4242 % n


def _eml(subject: str, html: str, text: str) -> bytes:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(email_message, "secrets", _FixedSecrets)
        return build_email_bytes(subject=subject, html=html, text=text,
                                 from_=("Acme", "hello@acme.example"),
                                 to=("Customer", "c@example.com"), date=NOW)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    pack = draw(st.sampled_from(PACKS))
    template = draw(st.sampled_from(TEMPLATES))
    raw = copy.deepcopy(draw(st.sampled_from(_samples(template))))
    raw["data"] = varied_data(raw["data"], draw)
    raw["customer"]["name"] = draw(st.one_of(st.just(raw["customer"]["name"]),
                                             customer_names(8)))
    if draw(st.booleans()):
        raw["customer"]["locale"] = draw(st.sampled_from(("en_GB", "de_DE", "en_US", "ar")))
    return pack, template, raw


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    clear_skeletons()
    yield
    clear_skeletons()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_requests())
def test_compiled_shape_gives_the_same_html_text_and_eml_as_per_message_mjml(
    case: tuple[str, str, dict[str, Any]],
) -> None:
    """Every example email template and pack: HTML, text alternative and .eml bytes are equal."""
    pack, template, raw = case
    try:
        source, roots, subject = _source(pack, template, raw)
    except MessageError:
        assume(False)  # data the template refuses (a hostile name where a date goes)
        raise
    try:
        html = compile_mjml(source, include_roots=roots)
    except RenderError as exc:  # MJML refuses the data (a control character): so must we
        with pytest.raises(RenderError) as shaped_error:
            compile_mjml_and_text(source, include_roots=roots)
        assert str(shaped_error.value) == str(exc)
        return
    text = html_to_text(html)
    split = skeleton.split_source(source)
    recent = [shape for shapes in skeleton._skeletons._last.values() for shape in shapes]
    for key, pieces, kinds in recent:  # shapes of earlier examples
        values = skeleton.match_shape(source, pieces, kinds)
        assert values is None or (key, values, kinds) == split
    shaped, replayed = compile_mjml_and_text(source, include_roots=roots)
    assert shaped == html
    assert compile_mjml_shaped(source, include_roots=roots) == html
    if replayed is not None:
        assert replayed == text
    assert _eml(subject, shaped, replayed if replayed is not None else html_to_text(shaped)) \
        == _eml(subject, html, text)


@pytest.mark.parametrize("pack", PACKS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_example_email_is_made_from_its_compiled_shape(pack: str, template: str) -> None:
    """The example templates keep their Jinja in text and link values: no sample falls back."""
    splits = []
    for raw in _samples(template):
        source, roots, _ = _source(pack, template, raw)
        split = skeleton.split_source(source)
        assert split is not None
        splits.append((source, split))
        found = skeleton._skeletons.find(source, roots)
        assert found is not None, (pack, template, raw["customer"]["id"])
        assert found[0].text_ops is not None
        assert found[0].fill(found[1]) == compile_mjml(source, include_roots=roots)
    for source, split in splits:  # matching a known shape gives split_source's answer
        for key, _, kinds in (other for _, other in splits):
            values = skeleton.match_shape(source, key.split("\x00"), kinds)
            assert values is None or (key, values, kinds) == split


def test_engine_emails_carry_the_per_message_html_and_text() -> None:
    """Through Engine.render the .eml holds compile_mjml's HTML and html_to_text's text."""
    engine = _engine("acme")
    for raw in _samples("payment_reminder"):
        source, roots, _ = _source("acme", "payment_reminder", raw)
        html = compile_mjml(source, include_roots=roots)
        for _ in range(2):  # the first compiles the shape, the second fills it
            message = engine.render("payment_reminder", raw, channel="email")
            parsed = parse_bytes(message.content)
            html_part = parsed.get_body(("html",))
            text_part = parsed.get_body(("plain",))
            assert html_part is not None and text_part is not None
            assert _lf(html_part.get_content()) == _lf(html)
            assert _lf(text_part.get_content()) == _lf(html_to_text(html))
    assert skeleton._skeletons.hits > 0


def _lf(text: str) -> str:
    """Line ends as a parsed MIME part gives them back: LF, one at the end."""
    return text.replace("\r\n", "\n").rstrip("\n") + "\n"


def _doc(body: str, head: str = "") -> str:
    return (f"<mjml><mj-head>{head}</mj-head><mj-body><mj-section><mj-column>{body}"
            "</mj-column></mj-section></mj-body></mjml>")


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count calls into mjml2html."""
    calls: list[str] = []

    def counting(source: str, **kwargs: Any) -> str:
        calls.append(source)
        return mjml2html(source, **kwargs)

    monkeypatch.setattr(email_mjml, "mjml2html", counting)
    email_mjml.clear_mjml_cache()
    return calls


def test_a_shape_is_compiled_once_for_many_messages(
    compile_calls: list[str], tmp_path: Path
) -> None:
    """Twenty messages of one shape cost the two checking compiles, not twenty."""
    roots = (tmp_path,)
    for i in range(20):
        source = _doc(f'<mj-text>Dear customer {i} &amp; co</mj-text>'
                      f'<mj-button href="https://pay.example/{i}">Pay {i}</mj-button>')
        assert compile_mjml_shaped(source, include_roots=roots) == mjml2html(source, fonts={})
    assert len(compile_calls) == 2


def test_data_dependent_structure_is_detected_and_compiled_per_message(
    compile_calls: list[str], tmp_path: Path
) -> None:
    """A value in an attribute MJML interprets makes a shape per message: after the limit,
    the template's messages are compiled one by one, and all are equal."""
    roots = (tmp_path,)
    count = skeleton.FAMILY_SHAPES + 5
    for i in range(count):
        source = _doc(f'<mj-text padding="{i}px">Dear customer</mj-text>')
        assert compile_mjml_shaped(source, include_roots=roots) == mjml2html(source, fonts={})
    assert skeleton._skeletons.per_message(roots)
    before = len(compile_calls)
    source = _doc('<mj-text padding="999px">Dear customer</mj-text>')
    assert compile_mjml_shaped(source, include_roots=roots) == mjml2html(source, fonts={})
    assert len(compile_calls) == before + 1  # one plain compile, no checking compiles
    assert not skeleton._skeletons.per_message((tmp_path / "other",))


def test_loops_over_request_data_compile_one_form_per_length(tmp_path: Path) -> None:
    """Rows from a loop change the shape: each length is its own compiled form."""
    roots = (tmp_path,)
    for n in (1, 2, 3, 1, 2, 3):
        rows = "".join(f"<tr><td>Item {n}-{i}</td></tr>" for i in range(n))
        source = _doc(f"<mj-table>{rows}</mj-table>")
        assert compile_mjml_shaped(source, include_roots=roots) == mjml2html(source, fonts={})
    assert skeleton._skeletons.misses == 3
    assert skeleton._skeletons.hits == 3


def test_a_value_mjml_does_not_copy_verbatim_makes_the_shape_fall_back(
    compile_calls: list[str], tmp_path: Path
) -> None:
    """mj-social-element rewrites its href into a share link: detected, compiled per message."""
    roots = (tmp_path,)
    for i in range(3):
        source = _doc('<mj-social><mj-social-element name="facebook" '
                      f'href="https://x.example/{i}">Share</mj-social-element></mj-social>')
        split = skeleton.split_source(source)
        assert split is not None
        key, _, kinds = split
        assert skeleton._compile_shape(key, kinds, roots) is None
        assert compile_mjml_shaped(source, include_roots=roots) == mjml2html(source, fonts={})
    assert skeleton._skeletons.hits == 0


def test_values_the_probes_do_not_cover_are_compiled_per_message(tmp_path: Path) -> None:
    """A line separator in a value skips the skeleton; the HTML is still MJML's."""
    roots = (tmp_path,)
    plain = _doc("<mj-text>Dear customer</mj-text>")
    odd = _doc("<mj-text>Dear\u2028customer</mj-text>")
    compile_mjml_shaped(plain, include_roots=roots)
    assert skeleton._skeletons.find(odd, roots) is None
    assert compile_mjml_shaped(odd, include_roots=roots) == mjml2html(odd, fonts={})


def test_split_source_gives_the_source_back() -> None:
    """Pieces and values joined again are the source; tags and MJML attributes stay in the key."""
    source = _doc('<mj-text color="#fff">Hi <a href="https://x.example/?a=1&amp;b">you</a>'
                  "</mj-text>", "<mj-title>Subject</mj-title>")
    split = skeleton.split_source(source)
    assert split is not None
    key, values, _ = split
    assert values == ["Subject", "Hi ", "https://x.example/?a=1&amp;b", "you"]
    assert skeleton._join(key, values) == source
    assert 'color="#fff"' in key


def test_mjml_errors_are_those_of_the_per_message_compile(tmp_path: Path) -> None:
    """A source MJML refuses raises the same error through the shaped path."""
    source = "<mjml><mj-body><mj-text>unclosed"
    with pytest.raises(MessageError, match="MJML does not compile"):
        compile_mjml_shaped(source, include_roots=(tmp_path,))


_QP_PIECES = st.sampled_from(
    ["a", "b", " ", "\t", "=", ".", "\n", "é", "€", "x" * 80, " \n", ".\n", '<a href="x">',
     "\x0c", "=\n", "\t\n"])


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.lists(_QP_PIECES, max_size=8).map("".join), min_size=1, max_size=7),
       static=st.lists(st.booleans(), max_size=8))
def test_quoted_printable_by_segments_equals_b2a_qp(parts: list[str], static: list[bool]) -> None:
    """Encoding segment by segment (remembered or not) gives b2a_qp's bytes of the whole."""
    segments = [part.encode("utf-8") for part in parts]
    if not b"".join(segments).endswith(b"\n"):
        segments.append(b"\n")
    whole = binascii.b2a_qp(b"".join(segments), istext=True)
    memo: dict[tuple[int, int, bool, bool], tuple[bytes, int]] = {}
    assert qp_segments(segments, memo, static) == whole
    assert qp_segments(segments, memo, static) == whole  # from the memo
    crlf = whole.replace(b"\n", b"\r\n")
    assert qp_segments(segments, memo, static, crlf=True) == crlf  # the same memo
    assert qp_segments(segments, memo, static, crlf=True) == crlf


@pytest.mark.parametrize("after", [b"\n", b"a", b"=", b" \n", b"\t"])
@pytest.mark.parametrize("value", [b"x", b"ab cd", b"a ", b" ", b".", b".x", b"a.b", b"x" * 40,
                                   b"a=b", b"a\tb", b"caf\xc3\xa9", b"~}|", b"a\x7f",
                                   b"y" * 160, b"a b " * 40 + b"c", b"." + b"z" * 90,
                                   b"w" * 74 + b" ", b"v" * 151 + b"."])
def test_plain_segments_written_as_they_are_at_every_column(value: bytes, after: bytes) -> None:
    """A segment copied without b2a_qp matches it at every column up to and past the limit."""
    for column in range(0, 80):
        lead = b"b" * column
        segments = [lead, value, after] if after.endswith(b"\n") else [lead, value, after, b"\n"]
        whole = binascii.b2a_qp(b"".join(segments), istext=True)
        assert qp_segments(segments) == whole, column
        assert qp_segments([b"\n" + lead, *segments[1:]]) == b"\n" + whole, column
        assert qp_segments(segments, crlf=True) == whole.replace(b"\n", b"\r\n"), column


def test_engine_html_body_is_encoded_from_the_shape() -> None:
    """The HTML handed to the .eml writer carries a quoted-printable body equal to encoding it."""
    source, roots, _ = _source("acme", "payment_reminder", _samples("payment_reminder")[0])
    for _ in range(2):
        html, _text = compile_mjml_and_text(source, include_roots=roots)
        assert isinstance(html, ShapedHTML)
        assert html.qp_body == email_message._qp_body(email_message._lines(html))


@pytest.mark.parametrize("odd", ["\xad", "\ufeff", "\u200f", "\xa0", "\u0650"])
def test_attribute_values_mjml_escapes_are_compiled_per_message(odd: str, tmp_path: Path) -> None:
    """MJML writes a soft hyphen, BOM, RLM, NBSP or mark in an href as \\u{..}: per message."""
    roots = (tmp_path,)

    def source(value: str) -> str:
        return _doc(f'<mj-button href="https://x.example/{value}">Go {value}</mj-button>',
                    f"<mj-title>T {value}</mj-title>")

    compile_mjml_shaped(source("plain"), include_roots=roots)
    odd_source = source(f"a{odd}b")
    assert skeleton._skeletons.find(odd_source, roots) is None
    html, text = compile_mjml_and_text(odd_source, include_roots=roots)
    assert html == mjml2html(odd_source, fonts={})
    assert text is None


@pytest.mark.parametrize("where", ["href", "title", "text"])
@pytest.mark.parametrize("odd", ["\\", ">", "\x01", "\u2028", "\x85"])
def test_values_of_each_kind_are_checked_wherever_they_stand(where: str, odd: str,
                                                            tmp_path: Path) -> None:
    """A character the probes of a value's kind do not cover, in any one value of a shape
    (the others plain), sends the message to the per-message compile."""
    roots = (tmp_path,)

    def source(href: str, title: str, text: str) -> str:
        return _doc(f'<mj-text>Hello</mj-text><mj-button href="https://x.example/{href}">'
                    f'Go</mj-button><mj-text>{text}</mj-text>', f"<mj-title>T {title}</mj-title>")

    plain = source("a", "b", "c")
    compile_mjml_shaped(plain, include_roots=roots)
    assert skeleton._skeletons.find(plain, roots) is not None
    values = {"href": "a", "title": "b", "text": "c", where: f"x{odd}y"}
    odd_source = source(values["href"], values["title"], values["text"])
    if where == "text" and odd in ("\\", ">"):  # text values may hold these
        assert skeleton._skeletons.find(odd_source, roots) is not None
    else:
        assert skeleton._skeletons.find(odd_source, roots) is None
