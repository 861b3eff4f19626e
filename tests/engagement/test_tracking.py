"""Signed tracking tokens, email link rewriting and recording tracked events."""

from __future__ import annotations

import base64
import os
import pickle
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from ccm.engagement.tracking import (
    KEY_ENV,
    KEY_FILE_ENV,
    REPEAT_WINDOW,
    TrackingKey,
    has_event,
    instrument_html,
    record_event,
    sign,
    unsubscribe_url,
    verify,
)
from ccm.errors import ConfigError, KeyConfigError, MessageNotFound, TokenError
from ccm.record import Record
from tests.record._support import entry

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
KEY = TrackingKey(b"k" * 32)
OTHER_KEY = TrackingKey(b"o" * 32)
BASE = "https://t.example.com"

# Hypothesis: message ids are any text; target URLs any absolute http(s) URL,
# including non-ASCII paths and queries (control characters never survive HTML).
message_ids = st.text(min_size=1, max_size=80).filter(lambda s: len(s.encode()) <= 0xFFFF)
url_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=60,
).map(lambda s: s.strip(" \x0c"))
targets = st.one_of(
    urls(),
    st.builds(
        "{}://{}/{}".format,
        st.sampled_from(["http", "https", "HTTPS"]),
        st.sampled_from(["example.com", "xn--bcher-kva.example", "10.0.0.1:8443"]),
        url_text,
    ),
)


# --- keys ------------------------------------------------------------------------


def test_key_loads_from_environment() -> None:
    """A urlsafe base64 key in CCM_TRACKING_KEY is the key."""
    secret = os.urandom(32)
    env = {KEY_ENV: base64.urlsafe_b64encode(secret).decode()}
    assert TrackingKey.load(environ=env).secret == secret
    assert TrackingKey.from_env(env).secret == secret


def test_key_loads_from_key_file(tmp_path: Path) -> None:
    """A key written to a file reads back the same, and the file is private to its owner."""
    key = TrackingKey.generate()
    path = key.write(tmp_path / "tracking.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TrackingKey.load(path).secret == key.secret
    assert TrackingKey.load(environ={KEY_FILE_ENV: str(path)}).secret == key.secret


def test_missing_key_is_a_config_error() -> None:
    """Without a key file or environment variable, loading names both variables."""
    with pytest.raises(KeyConfigError, match=f"{KEY_ENV}.*{KEY_FILE_ENV}"):
        TrackingKey.load(environ={})


@pytest.mark.parametrize("text", ["c2hvcnQ", "not base64 !!", ""])
def test_short_or_garbled_key_is_refused(text: str) -> None:
    """A key under 32 bytes or not base64 is a KeyConfigError."""
    with pytest.raises(KeyConfigError):
        TrackingKey.load(environ={KEY_ENV: text})


def test_unreadable_key_file_is_a_config_error(tmp_path: Path) -> None:
    """A key file that does not exist is a KeyConfigError naming the file."""
    with pytest.raises(KeyConfigError, match=r"nope\.key"):
        TrackingKey.load(tmp_path / "nope.key")


def test_key_repr_hides_the_secret() -> None:
    """Neither repr nor str shows the key bytes, in any encoding."""
    key = TrackingKey.generate()
    shown = repr(key) + str(key)
    assert key.fingerprint in shown
    for spelling in (key.secret.hex(), key.to_base64(), repr(key.secret)):
        assert spelling not in shown


# --- tokens ------------------------------------------------------------------------


@settings(max_examples=200)
@given(message_id=message_ids, target=targets)
def test_click_token_round_trips(message_id: str, target: str) -> None:
    """Any message id and http(s) target comes back from a click token unchanged."""
    token = sign("click", message_id, key=KEY, target=target, now=NOW)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    data = verify(token, "click", key=KEY, now=NOW)
    assert (data.kind, data.message_id, data.target) == ("click", message_id, target)


@given(message_id=message_ids, kind=st.sampled_from(["open", "unsub"]))
def test_open_and_unsubscribe_tokens_round_trip(message_id: str, kind: str) -> None:
    """Open and unsubscribe tokens carry the message id and no target."""
    token = sign(kind, message_id, key=KEY, now=NOW)  # type: ignore[arg-type]
    data = verify(token, kind, key=KEY, now=NOW)  # type: ignore[arg-type]
    assert (data.message_id, data.target) == (message_id, None)
    assert data.expires_at == NOW + timedelta(days=90)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.~% !\x00é"


@settings(max_examples=300)
@given(
    message_id=message_ids,
    target=targets,
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    char=st.sampled_from(_ALPHABET),
)
def test_any_single_character_change_fails(
    message_id: str, target: str, where: float, char: str
) -> None:
    """Changing any one character of a token, even in base64's spare bits, fails verification."""
    token = sign("click", message_id, key=KEY, target=target, now=NOW)
    i = int(where * len(token))
    if token[i] == char:
        return
    tampered = token[:i] + char + token[i + 1 :]
    with pytest.raises(TokenError):
        verify(tampered, "click", key=KEY, now=NOW)


def test_every_last_character_variant_fails() -> None:
    """The last character's unused low bits are not a free second spelling of the token."""
    token = sign("open", "m-1", key=KEY, now=NOW)
    for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if char != token[-1]:
            with pytest.raises(TokenError):
                verify(token[:-1] + char, "open", key=KEY, now=NOW)


@pytest.mark.parametrize("cut", [1, 10, 33, 1000])
def test_truncated_or_extended_token_fails(cut: int) -> None:
    """A token with characters cut off, or added, is refused."""
    token = sign("open", "m-1", key=KEY, now=NOW)
    for bad in (token[:-cut], token + "A" * cut):
        with pytest.raises(TokenError):
            verify(bad, "open", key=KEY, now=NOW)


def test_token_from_another_key_is_forged() -> None:
    """A token signed with another key is refused as forged."""
    token = sign("open", "m-1", key=OTHER_KEY, now=NOW)
    with pytest.raises(TokenError) as info:
        verify(token, "open", key=KEY, now=NOW)
    assert info.value.context["reason"] == "forged"


def test_signature_cannot_move_to_another_message() -> None:
    """A valid signature spliced onto another message's payload is refused."""

    def raw(token: str) -> bytes:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))

    mine = raw(sign("unsub", "message-A", key=KEY, now=NOW))
    theirs = raw(sign("unsub", "message-B", key=KEY, now=NOW))
    spliced = base64.urlsafe_b64encode(theirs[:-32] + mine[-32:]).rstrip(b"=").decode()
    with pytest.raises(TokenError) as info:
        verify(spliced, "unsub", key=KEY, now=NOW)
    assert info.value.context["reason"] == "forged"


def test_token_checked_against_the_expected_message() -> None:
    """Verifying with a message id refuses a token for any other message."""
    token = sign("unsub", "message-A", key=KEY, now=NOW)
    assert verify(token, "unsub", key=KEY, message_id="message-A", now=NOW)
    with pytest.raises(TokenError) as info:
        verify(token, "unsub", key=KEY, message_id="message-B", now=NOW)
    assert info.value.context["reason"] == "message"


def test_expired_token_is_refused() -> None:
    """A token is valid until its expiry and refused from that second on, as expired."""
    token = sign("open", "m-1", key=KEY, ttl_days=1, now=NOW)
    verify(token, "open", key=KEY, now=NOW + timedelta(days=1, seconds=-1))
    with pytest.raises(TokenError) as info:
        verify(token, "open", key=KEY, now=NOW + timedelta(days=1))
    assert info.value.context["reason"] == "expired"
    assert info.value.context["message_id"] == "m-1"


def test_forged_expired_token_reports_forged() -> None:
    """The signature is checked before expiry, so a forged old token is not 'expired'."""
    token = sign("open", "m-1", key=OTHER_KEY, ttl_days=1, now=NOW - timedelta(days=30))
    with pytest.raises(TokenError) as info:
        verify(token, "open", key=KEY, now=NOW)
    assert info.value.context["reason"] == "forged"


@pytest.mark.parametrize(
    ("made", "asked"), [("click", "open"), ("open", "unsub"), ("unsub", "click")]
)
def test_token_of_another_kind_is_refused(made: str, asked: str) -> None:
    """A click token is not an unsubscribe token, and so on."""
    target = "https://example.com/" if made == "click" else None
    token = sign(made, "m-1", key=KEY, target=target, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(TokenError) as info:
        verify(token, asked, key=KEY, now=NOW)  # type: ignore[arg-type]
    assert info.value.context["reason"] == "kind"


@pytest.mark.parametrize("token", ["", "a", "!!!!", "a" * 20000, "AAAA====", "é" * 10])
def test_malformed_tokens_are_refused(token: str) -> None:
    """Junk that is not a token at all is refused as malformed."""
    with pytest.raises(TokenError) as info:
        verify(token, "open", key=KEY, now=NOW)
    assert info.value.context["reason"] == "malformed"


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "/relative", "mailto:a@b.c", "https://", "http://a\x00b/"]
)
def test_click_token_needs_an_http_target(target: str) -> None:
    """Only absolute http(s) URLs can be signed as click targets."""
    with pytest.raises(ValueError, match="http"):
        sign("click", "m-1", key=KEY, target=target, now=NOW)


def test_token_error_survives_pickling() -> None:
    """A TokenError crosses process boundaries with its reason."""
    with pytest.raises(TokenError) as info:
        verify("AAAA", "open", key=KEY, now=NOW)
    again = pickle.loads(pickle.dumps(info.value))
    assert again.context["reason"] == "malformed"


def test_unsubscribe_url_is_a_long_lived_unsub_token() -> None:
    """unsubscribe_url gives {base}/u/{token}, valid for years, for that message only."""
    url = unsubscribe_url(BASE + "/", "m-9", KEY, now=NOW)
    assert url.startswith(BASE + "/u/")
    data = verify(url.rsplit("/", 1)[1], "unsub", key=KEY, now=NOW + timedelta(days=4 * 365))
    assert data.message_id == "m-9"


@pytest.mark.parametrize(
    "base", ["ftp://t.example.com", "t.example.com", "https://t.example.com/?x=1"]
)
def test_bad_base_url_is_a_config_error(base: str) -> None:
    """A tracking base URL that is not absolute http(s) without a query is refused."""
    with pytest.raises(ConfigError):
        unsubscribe_url(base, "m-1", KEY)


# --- HTML --------------------------------------------------------------------------


def click(target: str, message_id: str = "m-1") -> str:
    return f"{BASE}/c/" + sign("click", message_id, key=KEY, target=target, now=NOW)


def pixel(message_id: str = "m-1") -> str:
    src = f"{BASE}/o/" + sign("open", message_id, key=KEY, now=NOW)
    return f'<img src="{src}" width="1" height="1" alt="" style="display:none">'


def instrument(doc: str, **kwargs: object) -> str:
    options: dict[str, object] = {"message_id": "m-1", "base_url": BASE, "key": KEY, "now": NOW}
    options.update(kwargs)
    return instrument_html(doc, **options)  # type: ignore[arg-type]


def test_links_rewritten_whatever_the_quoting() -> None:
    """Double, single and unquoted hrefs in any case become click URLs; nothing else moves."""
    doc = (
        "<!DOCTYPE html>\n<html><head><title>x</title></head>\n<BODY>\n"
        '<p><a class="btn" href="https://a.example/x?y=1">one</a>\n'
        "<A HREF='http://b.example/'>two</A>\r\n"
        "<a href=https://c.example/p title=t>three</a>\n"
        '<a\n  data-x="1"\n  href = "https://d.example/é" >four</a></p>\n'
        "</BODY>\n</html>\n"
    )
    expected = (
        "<!DOCTYPE html>\n<html><head><title>x</title></head>\n<BODY>\n"
        f'<p><a class="btn" href="{click("https://a.example/x?y=1")}">one</a>\n'
        f'<A HREF="{click("http://b.example/")}">two</A>\r\n'
        f'<a href="{click("https://c.example/p")}" title=t>three</a>\n'
        f'<a\n  data-x="1"\n  href = "{click("https://d.example/é")}" >four</a></p>\n'
        f"{pixel()}</BODY>\n</html>\n"
    )
    assert instrument(doc) == expected


def test_character_references_in_href_are_signed_decoded() -> None:
    """An href with &amp; signs the URL the browser would follow (with a plain &)."""
    out = instrument('<a href="https://a.example/?x=1&amp;y=2">go</a>', pixel=False)
    token = re.search(r"/c/([\w-]+)", out)
    assert token is not None
    assert verify(token.group(1), "click", key=KEY, now=NOW).target == "https://a.example/?x=1&y=2"


def test_links_that_must_not_be_tracked_are_left_alone() -> None:
    """mailto, tel, anchors, relative links, marked and given unsubscribe links stay as they are."""
    unsub = unsubscribe_url(BASE, "m-1", KEY, now=NOW)
    doc = (
        "<body>"
        '<a href="mailto:help@example.com">mail</a>'
        '<a href="tel:+441234">call</a>'
        '<a href="#top">top</a>'
        '<a href="/relative">rel</a>'
        '<a href="//cdn.example/x">proto-relative</a>'
        '<a href="javascript:void(0)">js</a>'
        '<a href="https://www.example/unsub?c=1" data-ccm="unsubscribe">unsubscribe</a>'
        '<a href="https://www.example/privacy" data-ccm="notrack">privacy</a>'
        '<a href="https://www.example/prefs">prefs</a>'
        f'<a href="{unsub}">unsubscribe (ours)</a>'
        '<a name="anchor">no href</a><a href>empty</a>'
        "</body>"
    )
    out = instrument(doc, pixel=False, unsubscribe_url="https://www.example/prefs")
    assert out == doc


def test_markup_that_is_not_a_link_is_left_alone() -> None:
    """Links inside comments, scripts, styles and attribute values are not rewritten."""
    doc = (
        '<body><!-- <a href="https://c.example/">c</a> -->'
        "<script>var s = '<a href=\"https://s.example/\">';</script>"
        '<style>a[href="https://st.example/"]{color:red}</style>'
        "<div title='<a href=\"https://t.example/\">'></div>"
        '<link href="https://l.example/s.css" rel=stylesheet>'
        "</body>"
    )
    assert instrument(doc, pixel=False) == doc


def test_first_href_wins_as_in_browsers() -> None:
    """With a duplicated href, the first (the one browsers follow) is signed and replaced."""
    out = instrument(
        '<a href="https://one.example/" href="https://two.example/">x</a>', pixel=False
    )
    assert out == f'<a href="{click("https://one.example/")}" href="https://two.example/">x</a>'


def test_pixel_goes_before_the_last_body_end_or_at_the_end() -> None:
    """The open pixel is inserted before </body>, appended without one, and left out on request."""
    assert instrument("<html><body><p>x</p></body></html>") == (
        f"<html><body><p>x</p>{pixel()}</body></html>"
    )
    assert instrument("<p>fragment</p>") == f"<p>fragment</p>{pixel()}"
    assert instrument("<body>x</body>", pixel=False) == "<body>x</body>"


def test_instrumenting_twice_changes_nothing_more() -> None:
    """Links already pointing at the tracking host are not wrapped again."""
    once = instrument('<body><a href="https://a.example/">a</a></body>', pixel=False)
    assert instrument(once, pixel=False) == once


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


@settings(max_examples=100)
@given(targets=st.lists(targets, min_size=1, max_size=4), filler=url_text)
def test_every_rewritten_link_resolves_to_its_target(targets: list[str], filler: str) -> None:
    """Parsing the output finds one click URL per link, each verifying to the original target."""
    from html import escape

    body = "".join(f'<p>{escape(filler)}<a href="{escape(t)}">l</a></p>' for t in targets)
    parser = _Hrefs()
    parser.feed(instrument(f"<body>{body}</body>", pixel=False))
    assert len(parser.hrefs) == len(targets)
    for href, target in zip(parser.hrefs, targets, strict=True):
        assert href.startswith(f"{BASE}/c/")
        assert verify(href.rsplit("/", 1)[1], "click", key=KEY, now=NOW).target == target


# --- recording (against a real record: see the record fixture) -----------------------


def test_compiled_mjml_gets_tracked_links_and_one_pixel() -> None:
    """Real MJML output: text links, buttons and linked images are tracked, the footer link not."""
    from ccm.channels.email import compile_mjml

    source = (
        "<mjml><mj-body><mj-section><mj-column>"
        '<mj-text>Hi <a href="https://acme.example/a?x=1&amp;y=2">link</a></mj-text>'
        '<mj-button href="https://acme.example/buy">Buy</mj-button>'
        '<mj-image src="https://acme.example/logo.png" href="https://acme.example/" />'
        '<mj-text><a data-ccm="unsubscribe" href="https://acme.example/u">Unsubscribe</a></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    out = instrument(compile_mjml(source))
    parser = _Hrefs()
    parser.feed(out)
    tracked = [h for h in parser.hrefs if h.startswith(f"{BASE}/c/")]
    targets = [verify(h.rsplit("/", 1)[1], "click", key=KEY, now=NOW).target for h in tracked]
    assert targets == [
        "https://acme.example/a?x=1&y=2",
        "https://acme.example/buy",
        "https://acme.example/",
    ]
    assert "https://acme.example/u" in parser.hrefs
    assert out.count(f"{BASE}/o/") == 1
    assert out.index(f"{BASE}/o/") < out.lower().rindex("</body>")


# --- recording into a real record ---------------------------------------------------


@pytest.fixture
def record(tmp_path: Path) -> Iterator[Record]:
    """A SQLite record holding an email ``m1`` and an SMS ``m2`` for customer C1."""
    rec = Record(f"sqlite:///{tmp_path / 'record.db'}")
    for message_id, channel in (("m1", "email"), ("m2", "sms")):
        rec.append(entry("C1", message_id=message_id, channel=channel, created_at=NOW))
    yield rec
    rec.close()


def kinds(record: Record, message_id: str) -> list[tuple[str, object]]:
    return [(e.kind, e.data) for e in record.events(message_id)]


def test_record_event_adds_the_tokens_event(record: Record) -> None:
    """A click records its URL, an open nothing more, an unsubscribe the message's channel."""
    later = [NOW + timedelta(minutes=n) for n in range(3)]
    record_event(
        record, click("https://a.example/x", "m1").rsplit("/", 1)[1], "click", key=KEY,
        now=later[0],
    )
    record_event(record, sign("open", "m1", key=KEY, now=NOW), "open", key=KEY, now=later[1])
    done = record_event(record, sign("unsub", "m1", key=KEY, now=NOW), "unsub", key=KEY,
                        now=later[2])
    assert done.added and done.event == "opted_out"
    assert kinds(record, "m1") == [
        ("clicked", {"url": "https://a.example/x"}),
        ("opened", None),
        ("opted_out", {"channel": "email"}),
    ]
    assert [e.at for e in record.events("m1")] == later
    assert has_event(record, "m1", "opted_out")
    assert record.verify().ok


def test_unsubscribe_withdraws_consent_for_the_channel(record: Record) -> None:
    """An unsubscribe from the SMS opts the customer out of SMS only."""
    record_event(record, sign("unsub", "m2", key=KEY, now=NOW), "unsub", key=KEY, now=NOW)
    assert record.consent_overrides("C1") == {"sms": False}
    assert record.timeline("C1").summary["opted_out"] == ["sms"]


def test_click_token_of_another_message_records_on_its_own_message(record: Record) -> None:
    """The event goes to the message inside the token, never to another one."""
    token = sign("click", "m2", key=KEY, target="https://a.example/", now=NOW)
    record_event(record, token, "click", key=KEY, now=NOW)
    assert kinds(record, "m1") == [] and kinds(record, "m2") == [
        ("clicked", {"url": "https://a.example/"})
    ]


def test_unsubscribe_is_recorded_once(record: Record) -> None:
    """A second unsubscribe for the same message adds nothing and says so."""
    token = sign("unsub", "m1", key=KEY, now=NOW)
    assert record_event(record, token, "unsub", key=KEY, now=NOW).added
    assert not record_event(record, token, "unsub", key=KEY, now=NOW).added
    assert kinds(record, "m1") == [("opted_out", {"channel": "email"})]


def test_repeated_opens_and_clicks_are_recorded_once_per_window(record: Record) -> None:
    """A repeat open, or click on the same link, within REPEAT_WINDOW adds nothing and says so;
    another link, or the same after the window, is recorded."""
    opened = sign("open", "m1", key=KEY, now=NOW)
    first = click("https://a.example/x", "m1").rsplit("/", 1)[1]
    other = click("https://a.example/y", "m1").rsplit("/", 1)[1]
    almost = NOW + REPEAT_WINDOW - timedelta(seconds=1)
    assert timedelta(hours=1) == REPEAT_WINDOW
    assert record_event(record, opened, "open", key=KEY, now=NOW).added
    assert not record_event(record, opened, "open", key=KEY, now=almost).added
    assert record_event(record, first, "click", key=KEY, now=NOW).added
    repeat = record_event(record, first, "click", key=KEY, now=almost)
    assert not repeat.added and repeat.data == {"url": "https://a.example/x"}
    assert record_event(record, other, "click", key=KEY, now=almost).added
    assert record_event(record, first, "click", key=KEY, now=NOW + REPEAT_WINDOW).added
    assert [(e.kind, (e.data or {}).get("url")) for e in record.events("m1")] == [
        ("opened", None), ("clicked", "https://a.example/x"), ("clicked", "https://a.example/y"),
        ("clicked", "https://a.example/x"),
    ]


def test_record_event_refuses_bad_tokens_and_unknown_messages(record: Record) -> None:
    """A forged token raises TokenError, a valid one for an unknown message MessageNotFound."""
    with pytest.raises(TokenError):
        record_event(record, sign("open", "m1", key=OTHER_KEY, now=NOW), "open", key=KEY, now=NOW)
    with pytest.raises(MessageNotFound):
        record_event(record, sign("open", "zz", key=KEY, now=NOW), "open", key=KEY, now=NOW)
    assert kinds(record, "m1") == []
    assert record.verify().checked == 2
