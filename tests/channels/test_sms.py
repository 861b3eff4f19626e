"""SMS channel: normalisation, GSM-7 / UCS-2 choice and segment arithmetic."""

from __future__ import annotations

import pickle
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccm.channels import sms
from ccm.channels.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsResult,
    encoding_for,
    finish_sms,
    measure,
    non_gsm_chars,
    normalise,
    split_segments,
)
from ccm.errors import MessageError, RenderError, SmsTooLongError
from tests.strategies import gsm_texts, sms_texts

# --- a reference implementation over encoded units --------------------------------

#: GSM 03.38 default alphabet by code, written out independently of the module.
_REFERENCE_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_REFERENCE_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                        "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
_ESC = 0x1B


def _reference_units(text: str) -> tuple[str, list[int]]:
    """Encode as a modem would: septets (ESC + code for the extension) or UTF-16 units."""
    septets: list[int] = []
    for ch in text:
        if ch in _REFERENCE_EXTENSION:
            septets += [_ESC, _REFERENCE_EXTENSION[ch]]
        elif ch != "\x1b" and ch in _REFERENCE_TABLE:
            septets.append(_REFERENCE_TABLE.index(ch))
        else:
            raw = text.encode("utf-16-be")
            return "UCS-2", [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return "GSM-7", septets


def _reference_segments(text: str) -> int:
    """Cut the unit stream into full segments, backing off one unit rather than split a pair."""
    encoding, units = _reference_units(text)
    single, multi = (160, 153) if encoding == "GSM-7" else (70, 67)
    if not units:
        return 0
    if len(units) <= single:
        return 1
    count, i = 0, 0
    while i < len(units):
        end = min(i + multi, len(units))
        last = units[end - 1]
        split_pair = end < len(units) and (
            (encoding == "GSM-7" and last == _ESC)
            or (encoding == "UCS-2" and 0xD800 <= last <= 0xDBFF)
        )
        i = end - 1 if split_pair else end
        count += 1
    return count


# --- the tables ---------------------------------------------------------------------


def test_gsm_tables_have_the_standard_sizes() -> None:
    """The basic table has 127 characters (128 codes minus ESC) and the extension 10."""
    assert len(GSM7_BASIC) == 127
    assert set("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert set(_REFERENCE_TABLE) - {"\x1b"} == GSM7_BASIC


@pytest.mark.parametrize("ch", ["@", "£", "¥", "Ç", "Δ", "ß", "¤", "¡", "§", "¿", "à", "\n", "\r"])
def test_basic_characters_are_gsm(ch: str) -> None:
    """Characters from every row of the basic table keep GSM-7."""
    assert encoding_for(f"abc{ch}") == "GSM-7"


@pytest.mark.parametrize("ch", ["ç", "’", "“", "–", "…", "Ж", "中", "😀", "\u00a0", "`", "á"])
def test_other_characters_force_ucs2(ch: str) -> None:
    """Anything outside both tables (including look-alikes such as ç and ’) forces UCS-2."""
    assert encoding_for(f"abc{ch}") == "UCS-2"
    assert non_gsm_chars(f"abc{ch}") == [ch]


def test_non_gsm_chars_are_distinct_in_order_of_appearance() -> None:
    """The linter's list names each offending character once, first seen first."""
    assert non_gsm_chars("Grüße – “ok” – 😀ß’") == ["–", "“", "”", "😀", "’"]
    assert non_gsm_chars("plain text € {}") == []


# --- known vectors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units", "segments"),
    [
        ("", 0, 0),
        ("a" * 160, 160, 1),
        ("a" * 161, 161, 2),
        ("a" * 306, 306, 2),
        ("a" * 307, 307, 3),
        ("a" * 159 + "€", 161, 2),
        ("€" * 80, 160, 1),
        ("a" * 152 + "€" + "a" * 152, 306, 3),
    ],
)
def test_gsm7_segments(text: str, units: int, segments: int) -> None:
    """GSM-7: 160 septets fit one message, 153 per segment beyond; extension characters cost 2."""
    assert measure(text) == SmsResult(text, "GSM-7", units, segments)


@pytest.mark.parametrize(
    ("text", "units", "segments"),
    [
        ("Ж" * 70, 70, 1),
        ("Ж" * 71, 71, 2),
        ("Ж" * 134, 134, 2),
        ("Ж" * 135, 135, 3),
        ("😀", 2, 1),
        ("😀" * 35, 70, 1),
        ("😀" * 36, 72, 2),
        ("Ж" * 66 + "😀" + "Ж" * 66, 134, 3),
    ],
)
def test_ucs2_segments(text: str, units: int, segments: int) -> None:
    """UCS-2: 70 code units fit one message, 67 per segment; astral emoji count 2 units."""
    assert measure(text) == SmsResult(text, "UCS-2", units, segments)


def test_escape_pair_moves_whole_to_the_next_segment() -> None:
    """152 basic characters then '€': the euro's ESC pair starts segment 2 instead of splitting."""
    text = "a" * 152 + "€" + "b" * 10
    parts = split_segments(text)
    assert parts == ["a" * 152, "€" + "b" * 10]
    assert measure(text).segments == 2


def test_surrogate_pair_moves_whole_to_the_next_segment() -> None:
    """An emoji that would straddle the 67-unit boundary starts the next segment."""
    text = "Ж" * 66 + "😀" + "Ж" * 10
    assert split_segments(text) == ["Ж" * 66, "😀" + "Ж" * 10]


def test_a_single_segment_is_the_whole_text() -> None:
    """Up to the single-message limit nothing is split."""
    assert split_segments("a" * 160) == ["a" * 160]
    assert split_segments("") == []


# --- normalise -----------------------------------------------------------------------


def test_normalise_cleans_whitespace_and_keeps_single_newlines() -> None:
    """Tabs and space runs become one space, lines are stripped, 3+ newlines become 2."""
    assert normalise("  Hi\tthere  \n  line two \n\n\n\n\nend  ") == "Hi there\nline two\n\nend"
    assert normalise("a\r\nb\rc\u2028d\u2029e\x85f") == "a\nb\nc\nd\ne\nf"


def test_normalise_removes_controls_and_invisible_characters() -> None:
    """Controls, zero-width characters and bidi overrides are dropped."""
    assert normalise("pay\u200bpal \x00\x1b\x7f\x9b\ufeff\u202eok\u2066\u2069") == "paypal ok"
    assert normalise("a\u200db\u200cc") == "abc"


def test_normalise_keeps_joiners_inside_emoji_and_persian() -> None:
    """ZWJ holds emoji sequences together and ZWNJ is part of Persian spelling."""
    family = "👩\u200d👩\u200d👧"
    assert normalise(f"Hi {family}") == f"Hi {family}"
    assert normalise("می\u200cخواهم") == "می\u200cخواهم"


def test_normalise_turns_no_break_spaces_into_spaces() -> None:
    """Babel's (narrow) no-break spaces would force UCS-2 for nothing."""
    text = normalise("1\u202f234,50\u00a0€")
    assert text == "1 234,50 €"
    assert encoding_for(text) == "GSM-7"


def test_normalise_composes_to_nfc() -> None:
    """Decomposed accents are composed (é is GSM-7, e + U+0301 is not)."""
    assert normalise("e\u0301t\u0065\u200b\u0301") == "été"
    assert encoding_for(normalise("caf\u0065\u0301")) == "GSM-7"


def _is_control(ch: str) -> bool:
    category = unicodedata.category(ch)
    if ch == "\n":
        return False
    if category in ("Cc", "Cs", "Zl", "Zp"):
        return True
    return category == "Cf" and ch not in "\u200c\u200d\u200e\u200f\u061c"


@settings(max_examples=300)
@given(sms_texts())
def test_normalise_is_idempotent_and_leaves_no_controls(text: str) -> None:
    """Property: normalising twice changes nothing; no controls, tabs, runs or blank runs remain."""
    once = normalise(text)
    assert normalise(once) == once
    assert not any(_is_control(ch) for ch in once)
    assert "\t" not in once and "  " not in once and "\n\n\n" not in once
    assert once == once.strip()
    assert unicodedata.is_normalized("NFC", once)


@given(st.text(max_size=60))
def test_normalise_is_idempotent_on_any_text(text: str) -> None:
    """Property: idempotence holds for arbitrary Unicode too."""
    once = normalise(text)
    assert normalise(once) == once


# --- arithmetic properties ---------------------------------------------------------


@settings(max_examples=300)
@given(
    sms_texts(),
    st.sampled_from(["a", "€", "Ж", "😀", "\n", "{", "ç"]) | st.characters(codec="utf-8"),
)
def test_segments_never_decrease_when_a_character_is_appended(text: str, ch: str) -> None:
    """Property: appending a character never makes an SMS cheaper."""
    assert measure(text + ch).segments >= measure(text).segments


@settings(max_examples=300)
@given(st.one_of(sms_texts(), gsm_texts(), st.text(alphabet="a€", min_size=150, max_size=470)))
def test_segments_match_the_reference(text: str) -> None:
    """Property: segments equal a brute-force cut of the encoded units; the split rejoins."""
    result = measure(text)
    encoding, units = _reference_units(text)
    assert (result.encoding, result.units) == (encoding, len(units))
    assert result.segments == _reference_segments(text)
    parts = split_segments(text)
    assert "".join(parts) == text
    assert len(parts) == result.segments


# --- finish_sms ------------------------------------------------------------------------


def test_finish_sms_normalises_and_measures() -> None:
    """The result carries the normalised text and its cost."""
    result = finish_sms("  Hello\t Zoë\u200b! \n\n\n\nBye ", max_segments=1)
    assert result == SmsResult("Hello Zoë!\n\nBye", "UCS-2", 15, 1)


def test_finish_sms_refuses_an_empty_body() -> None:
    """Whitespace and invisible characters only: nothing to send."""
    with pytest.raises(RenderError, match="SMS body is empty"):
        finish_sms(" \n\t\u200b ", max_segments=None)


def test_finish_sms_over_the_limit_names_what_forced_ucs2() -> None:
    """The error gives segments, limit, encoding and the stray characters; it pickles."""
    text = "Your statement is ready’ " + "x" * 60
    with pytest.raises(SmsTooLongError) as info:
        finish_sms(text, max_segments=1)
    err = info.value
    assert isinstance(err, MessageError)
    assert "2 segments" in str(err) and "limit is 1" in str(err) and "UCS-2" in str(err)
    assert "U+2019" in str(err)
    assert err.context == {
        "channel": "sms", "segments": 2, "max_segments": 1, "encoding": "UCS-2", "units": 85,
        "forced_by": ["’"],
    }
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is SmsTooLongError and again.context == err.context


def test_finish_sms_gsm_over_the_limit() -> None:
    """A long GSM-7 text reports its septets and no forcing characters."""
    with pytest.raises(SmsTooLongError, match="3 segments \\(GSM-7, 307 units\\); the limit is 2"):
        finish_sms("a" * 307, max_segments=2)


def test_finish_sms_without_a_limit() -> None:
    """``max_segments=None`` accepts any length; a limit below 1 is a programming error."""
    assert finish_sms("a" * 1000, max_segments=None).segments == 7
    with pytest.raises(ValueError, match="at least 1"):
        finish_sms("a", max_segments=0)


@given(sms_texts())
def test_finish_sms_agrees_with_measure(text: str) -> None:
    """Property: finish_sms is measure(normalise(text)), or an empty-body error."""
    try:
        result = finish_sms(text, max_segments=None)
    except RenderError:
        assert normalise(text) == ""
        return
    assert result == measure(normalise(text))
    assert result.segments >= 1


def _normalise_by_character(text: str) -> str:
    """normalise as first written: one decision per character, in a Python loop."""
    text = unicodedata.normalize("NFC", text)
    text = sms._LINE_BREAKS.sub("\n", text)
    chars = []
    for ch in text:
        if ch == "\t" or unicodedata.category(ch) == "Zs":
            chars.append(" ")
        elif not sms._dropped(ch):
            chars.append(ch)
    text = sms._JOINER_RE.sub(sms._keep_joiner, "".join(chars))
    text = unicodedata.normalize("NFC", text)
    text = sms._SPACES.sub(" ", text)
    text = "\n".join(line.strip(" ") for line in text.split("\n"))
    return sms._BLANK_LINES.sub("\n\n", text).strip("\n")


def _measure_by_filling(text: str) -> tuple[str, str, int, int]:
    encoding = "GSM-7" if all(ch in sms._GSM7 for ch in text) else "UCS-2"
    costs = sms._costs(text, encoding)  # type: ignore[arg-type]
    return text, encoding, sum(costs), len(sms._split(text, costs, encoding))  # type: ignore[arg-type]


@settings(max_examples=400)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
       | st.text(alphabet="ab \t\n\r\x00\x7f\x1b€[^é\u00a0\u200d\u200c\u202e\u2028😀", max_size=60))
def test_fast_normalise_and_measure_equal_the_character_loop(text: str) -> None:
    """The translate-table normalise and the regex measure give what the per-character loop gave."""
    assert normalise(text) == _normalise_by_character(text)
    result = measure(text)
    got = (result.text, result.encoding, result.units, result.segments)
    assert got == _measure_by_filling(text)


@pytest.mark.parametrize("ch", ["a", "€", "😀", "é", "["])
def test_measure_at_segment_boundaries(ch: str) -> None:
    """Around every single-segment limit, counting by regex agrees with filling segments."""
    for size in range(60, 330):
        result = measure(ch * size)
        assert (result.text, result.encoding, result.units, result.segments) == \
            _measure_by_filling(ch * size)


@given(st.one_of(
    sms_texts(), gsm_texts(), st.text(max_size=80),
    st.text(alphabet="ab \n\r\t\u00a0\u202f\u2009\u2000\u200d\u200c\u2028\x85é\u0301£€😀\u202e",
            max_size=40),
))
@settings(max_examples=300)
def test_normalise_shortcuts_agree_with_the_character_by_character_path(text: str) -> None:
    """normalise's shortcuts (plain ASCII, characters seen before) give the full path's text."""
    assert normalise(text) == sms._normalise_full(text)
    assert normalise(text) == sms._normalise_full(text)  # again, with the characters now known
