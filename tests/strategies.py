"""Shared hypothesis strategies: hostile customer data for every channel.

Each strategy mixes ordinary text with the pieces that break things: line
breaks of every kind, NUL and other controls, bidi overrides, zero-width
characters, quotes and address punctuation, and RFC 2047 encoded words
(some of which decode to CR/LF).
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from ccm.render.template import BAD_TEXT

__all__ = [
    "AWKWARD_IDS",
    "HOSTILE",
    "customer_ids",
    "customer_names",
    "encoded_words",
    "gsm_texts",
    "header_values",
    "request_ids",
    "sms_texts",
    "varied_data",
]

#: Characters and fragments that have broken mail and SMS code somewhere.
HOSTILE: tuple[str, ...] = (
    "\r", "\n", "\r\n", "\x00", "\t", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b",
    "\u2028", "\u2029", "\u200b", "\u200c", "\u200d", "\u200e", "\u202e", "\u2066", "\ufeff",
    "\u00a0", "\u202f", '"', "'", "\\", "<", ">", "@", ",", ";", ":", "(", ")", "[", "]",
    "=?", "?=", "=?utf-8?q?", "=0D=0A", "%0d%0a", "Bcc: x@evil.example", "{{", "{%", "&lt;",
    "<script>", " ", "  ",
)

_NAME_PARTS = (
    "Jörg", "O'Brien", "Zoë", "Müller", "محمد", "李小龍", "Ægir", "Dr. Bob", "Smith, Jr.",
    "Ольга", "Nguyễn", "José", "👩‍👩‍👧", "Łukasz", "Ñandú", "שרה",
)

_any_char = st.characters(codec="utf-8")  # any character but lone surrogates


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    """One RFC 2047 encoded word whose text may hold CR, LF or NUL."""
    text = draw(st.text(alphabet=st.sampled_from("ab é:@<>_=?\r\n\x00"), max_size=12))
    charset = draw(st.sampled_from(("utf-8", "UTF-8", "iso-8859-1", "us-ascii", "utf-8*en")))
    data = text.encode("utf-8")
    if draw(st.booleans()):
        payload = base64.b64encode(data).decode("ascii")
        return f"=?{charset}?{draw(st.sampled_from('bB'))}?{payload}?="
    payload = "".join(
        chr(byte) if chr(byte).isalnum() and byte < 128 else "_" if byte == 32 else f"={byte:02X}"
        for byte in data
    )
    return f"=?{charset}?{draw(st.sampled_from('qQ'))}?{payload}?="


_pieces = st.one_of(
    _any_char,
    st.sampled_from(HOSTILE),
    st.sampled_from(_NAME_PARTS),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8),
)


def customer_names(max_pieces: int = 12) -> st.SearchStrategy[str]:
    """A customer name as an attacker or an unusual but real person would type it."""
    return st.lists(_pieces, min_size=1, max_size=max_pieces).map("".join)


def header_values(max_pieces: int = 12) -> st.SearchStrategy[str]:
    """Something headed for an email header: names, injection fragments, encoded words."""
    return st.lists(
        st.one_of(_pieces, encoded_words()), min_size=0, max_size=max_pieces
    ).map("".join)


_GSM_BASIC = (
    "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = "^{}\\[~]|€"
_UNICODE = "’“”–—…çłĀЖ中ğışİ€\u00a0\u202f"
_ASTRAL = ("😀", "👍🏽", "👩‍👩‍👧", "🇩🇪", "𝄞", "🏦")
_SMS_NOISE = ("\n", "\r\n", "\t", "  ", "\n\n\n", "\x00", "\x1b", "\x7f", "\x85", "\u200b",
              "\u200d", "\u202e", "\u2028", "\ufeff", "\u0301")


def gsm_texts(max_size: int = 400) -> st.SearchStrategy[str]:
    """Texts of GSM 03.38 characters only, extension-table characters included."""
    weighted = st.one_of(
        st.sampled_from(_GSM_BASIC), st.sampled_from(_GSM_BASIC), st.sampled_from(_GSM_EXTENSION)
    )
    return st.text(alphabet=weighted, max_size=max_size)


def sms_texts(max_size: int = 400) -> st.SearchStrategy[str]:
    """SMS bodies: GSM, extension, other BMP and astral characters, whitespace, controls."""
    piece = st.one_of(
        st.sampled_from(_GSM_BASIC),
        st.sampled_from(_GSM_BASIC),
        st.sampled_from(_GSM_EXTENSION),
        st.sampled_from(_UNICODE),
        st.sampled_from(_ASTRAL),
        st.sampled_from(_SMS_NOISE),
        _any_char,
    )
    mixed = st.lists(piece, max_size=max_size // 2).map("".join)
    return st.one_of(gsm_texts(max_size), mixed)


#: Ids the issue found colliding, plus the names file systems treat specially.
AWKWARD_IDS: tuple[str, ...] = (
    "C/1", "C_1", "_C_1", "C\\1", "张伟10", "李娜10", "АБ-7", "ВГ-7", ".", "..", "...",
    "LPT1", "lpt1.txt", "CON", "nul", "COM9", "=1+1", "-C1", "@C1", "\tC1", "C1.", "C1 ",
    "C1\x00", "e\u0301", "\u00e9", "c1", "C1",
)


def customer_ids(max_size: int = 24) -> st.SearchStrategy[str]:
    """A customer id: any Unicode text (no lone surrogates), hostile fragments, awkward ids."""
    return st.one_of(
        st.sampled_from(AWKWARD_IDS),
        st.text(_any_char, min_size=1, max_size=max_size),
        st.lists(st.one_of(_pieces, st.sampled_from(AWKWARD_IDS)), min_size=1, max_size=6)
        .map("".join).filter(bool),
    )


def request_ids(max_size: int = 24) -> st.SearchStrategy[str]:
    """A customer id a request may carry: :func:`customer_ids` without the control characters
    (other than tab, line feed and carriage return) that request validation refuses."""
    return customer_ids(max_size).map(lambda cid: BAD_TEXT.sub("", cid)).filter(bool)


def varied_data(value: Any, draw: st.DrawFn, key: str = "") -> Any:
    """A request's ``data`` changed the way customer data changes (types and formats kept).

    Numbers get other values, names and references (by key) hostile customer names.
    """
    if isinstance(value, dict):
        return {k: varied_data(v, draw, k) for k, v in value.items()}
    if isinstance(value, list):
        return [varied_data(v, draw, key) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return draw(st.integers(min_value=0, max_value=400))
    if isinstance(value, float):
        return draw(st.integers(min_value=0, max_value=10**8)) / 100
    if isinstance(value, str) and key in ("name", "reference", "salutation", "title", "product"):
        return draw(st.one_of(st.just(value), customer_names(6)))
    return value
