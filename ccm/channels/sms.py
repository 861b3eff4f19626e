"""SMS finishing: normalise the text, pick GSM-7 or UCS-2, count segments.

The arithmetic follows 3GPP TS 23.038 / 23.040 as handsets and gateways
apply it: a single GSM-7 message holds 160 septets, a concatenated one 153
per segment (the user data header takes the rest); UCS-2 holds 70 UTF-16
code units, 67 per segment when concatenated. An extension-table character
is sent as ESC + character, two septets that are never split across
segments, and a surrogate pair (an emoji outside the BMP) is never split
either, so segments are counted by filling them in order rather than by
dividing. National language shift tables are not used.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from ccm.errors import RenderError, SmsTooLongError

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "Encoding",
    "SmsResult",
    "encoding_for",
    "finish_sms",
    "measure",
    "non_gsm_chars",
    "normalise",
    "split_segments",
]

Encoding = Literal["GSM-7", "UCS-2"]

#: GSM 03.38 default alphabet in code order; 0x1B (ESC) is left out.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_BASIC: frozenset[str] = frozenset(_BASIC_TABLE) - {"\x1b"}
#: Characters reached through ESC: each costs two septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")
_GSM7 = GSM7_BASIC | GSM7_EXTENSION

_GSM7_SINGLE, _GSM7_MULTI = 160, 153
_UCS2_SINGLE, _UCS2_MULTI = 70, 67


@dataclass(frozen=True)
class SmsResult:
    """A measured SMS: the text and what it costs to send."""

    text: str
    encoding: Encoding
    #: Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2.
    units: int
    segments: int


# --- normalisation ------------------------------------------------------------

_LINE_BREAKS = re.compile("\r\n|[\r\x85\u2028\u2029]")
_LINE_BREAK_CHARS = frozenset("\r\x85\u2028\u2029")
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ, ZWJ
#: Invisible direction marks that right-to-left text with digits needs; unlike
#: the embedding/override/isolate controls they cannot reorder a whole run.
_DIRECTION_MARKS = frozenset("\u200e\u200f\u061c")
_JOINER_RE = re.compile("[\u200c\u200d]")
_SPACES = re.compile(" {2,}")
_BLANK_LINES = re.compile("\n{3,}")


def _dropped(ch: str) -> bool:
    """True for what an SMS must not carry: controls, invisible formatting, lone surrogates."""
    category = unicodedata.category(ch)
    if category in ("Cc", "Cs", "Zl", "Zp"):
        return ch != "\n"
    if category == "Cf":
        return ch not in _DIRECTION_MARKS and ch not in _JOINERS
    return False


def _action(ch: str) -> str | None:
    """What :func:`normalise` makes of one character: itself, a space, or None (dropped)."""
    if ch == "\t" or unicodedata.category(ch) == "Zs":
        return " "
    return None if _dropped(ch) else ch


_MISSING = object()
#: :func:`_action` of characters seen so far.
_ACTIONS: dict[str, object] = {}


def _joinable(ch: str) -> bool:
    return not ch.isascii() and not ch.isspace() and ch not in _JOINERS


def _keep_joiner(match: re.Match[str]) -> str:
    # ZWJ builds emoji sequences and ZWNJ is orthographic in Persian and Indic
    # scripts; between ASCII letters they only hide words from filters.
    text, i = match.string, match.start()
    if 0 < i < len(text) - 1 and _joinable(text[i - 1]) and _joinable(text[i + 1]):
        return match.group()
    return ""


#: ASCII control characters except ``\n`` (all of them category Cc): dropped; tab: a space.
_ASCII_CLEAN = {i: None for i in range(32) if i != 10} | {9: " ", 127: None}


def _tidy(text: str) -> str:
    # Each step only when its pattern can match: most texts need none of them.
    if "  " in text:
        text = _SPACES.sub(" ", text)
    if " \n" in text or "\n " in text or text[:1] == " " or text[-1:] == " ":
        text = "\n".join(line.strip(" ") for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n")


#: Anything but printable ASCII and ``\n``: an ASCII text without it is only tidied.
_ASCII_SPECIAL = re.compile("[^\n\x20-\x7e]")
#: Characters :func:`normalise` keeps as they are and that never take part in a
#: joiner or line-break rule: printable ASCII, ``\n``, and others as they are seen.
_KEPT: set[str] = {chr(i) for i in range(0x20, 0x7F)} | {"\n"}
#: Characters seen that :func:`normalise` turns into one ASCII space (Unicode spaces).
_SPACE_TABLE: dict[int, str] = {}
#: :data:`_KEPT` and the keys of :data:`_SPACE_TABLE`.
_KEPT_OR_SPACE: set[str] = set(_KEPT)


def normalise(text: str) -> str:
    """Clean ``text`` for sending: NFC, no control or invisible characters, tidy whitespace.

    Line breaks of any kind become ``\\n`` (single newlines are kept, three or
    more collapse to a blank line). Tabs and every Unicode space become one
    ASCII space -- Babel formats amounts with no-break spaces, which would
    otherwise force UCS-2 and halve what a segment holds. Bidi embedding,
    override and isolate controls, zero-width characters and other format
    characters are removed; ZWJ/ZWNJ survive only between two non-ASCII
    characters (emoji sequences, Persian). The result is stable:
    ``normalise(normalise(t)) == normalise(t)``.
    """
    if text.isascii():
        # The common case, without a loop over characters: ASCII is already NFC and
        # its only characters to drop or replace are the C0 controls and DEL.
        if _ASCII_SPECIAL.search(text) is None:
            return _tidy(text)
        return _tidy(_LINE_BREAKS.sub("\n", text).translate(_ASCII_CLEAN))
    if unicodedata.is_normalized("NFC", text):
        if _KEPT.issuperset(text):
            # Every character stays as it is (no line break, joiner or control): only tidy.
            return _tidy(text)
        if _KEPT_OR_SPACE.issuperset(text):
            # Babel's no-break spaces: each becomes " " (no space composes with a mark).
            return _tidy(text.translate(_SPACE_TABLE))
    return _normalise_full(text)


def _normalise_full(text: str) -> str:
    """:func:`normalise` character by character (what its shortcuts must agree with)."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    # One decision per distinct character (a text has a few dozen), applied by translate.
    table: dict[int, str | None] = {}
    for ch in set(text):
        action = _ACTIONS.get(ch, _MISSING)
        if action is _MISSING:
            action = _action(ch)
            if len(_ACTIONS) < 65536:
                _ACTIONS[ch] = action
        if action != ch:
            table[ord(ch)] = action  # type: ignore[assignment]
        elif ch not in _JOINERS and ch not in _LINE_BREAK_CHARS and len(_KEPT) < 65536:
            _KEPT.add(ch)
            _KEPT_OR_SPACE.add(ch)
        if action == " " and ch != " " and len(_SPACE_TABLE) < 256:
            _SPACE_TABLE[ord(ch)] = " "
            _KEPT_OR_SPACE.add(ch)
    if table:
        text = text.translate(table)
    text = _JOINER_RE.sub(_keep_joiner, text)
    # Removing characters can leave a base letter next to its combining mark.
    return _tidy(unicodedata.normalize("NFC", text))


# --- encoding and arithmetic ----------------------------------------------------


_NOT_GSM7 = re.compile("[^" + re.escape("".join(sorted(_GSM7))) + "]")
_GSM7_EXT_RE = re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def encoding_for(text: str) -> Encoding:
    """``"GSM-7"`` when every character is in the GSM 03.38 tables, else ``"UCS-2"``."""
    return "UCS-2" if _NOT_GSM7.search(text) else "GSM-7"


def _units(text: str, encoding: Encoding) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of ``text``: ``sum(_costs(...))``."""
    wide = _GSM7_EXT_RE if encoding == "GSM-7" else _ASTRAL
    return len(text) + len(wide.findall(text))


def non_gsm_chars(text: str) -> list[str]:
    """The distinct characters that force UCS-2, in order of first appearance."""
    return list(dict.fromkeys(ch for ch in text if ch not in _GSM7))


def _costs(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _split(text: str, costs: list[int], encoding: Encoding) -> list[str]:
    single, multi = (
        (_GSM7_SINGLE, _GSM7_MULTI) if encoding == "GSM-7" else (_UCS2_SINGLE, _UCS2_MULTI)
    )
    units = sum(costs)
    if units == 0:
        return []
    if units <= single:
        return [text]
    parts: list[str] = []
    start = used = 0
    for index, cost in enumerate(costs):
        if used + cost > multi:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return parts


def split_segments(text: str) -> list[str]:
    """The text each segment carries, in order (none for empty text).

    Segments are filled in order and an ESC pair or a surrogate pair that
    does not fit moves whole to the next segment, as concatenation does.
    """
    encoding = encoding_for(text)
    return _split(text, _costs(text, encoding), encoding)


def measure(text: str) -> SmsResult:
    """Encoding, units and segments of ``text`` as given (call :func:`normalise` first)."""
    encoding = encoding_for(text)
    units = _units(text, encoding)
    if units <= (_GSM7_SINGLE if encoding == "GSM-7" else _UCS2_SINGLE):
        # One segment (or none): no need to fill segments character by character.
        return SmsResult(text, encoding, units, 1 if units else 0)
    costs = _costs(text, encoding)
    return SmsResult(text, encoding, units, len(_split(text, costs, encoding)))


def finish_sms(text: str, *, max_segments: int | None) -> SmsResult:
    """Normalise and measure a rendered SMS; enforce the pack's segment limit.

    Raises :class:`RenderError` when nothing is left to send and
    :class:`SmsTooLongError` when the text needs more than ``max_segments``
    (``None`` means no limit). The error names the characters that forced
    UCS-2, since one stray typographic quote can double the cost.
    """
    if max_segments is not None and max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, got {max_segments}")
    result = measure(normalise(text))
    if result.segments == 0:
        raise RenderError("SMS body is empty", channel="sms")
    if max_segments is not None and result.segments > max_segments:
        forced_by = non_gsm_chars(result.text) if result.encoding == "UCS-2" else []
        message = (
            f"SMS needs {result.segments} segments ({result.encoding}, {result.units} units); "
            f"the limit is {max_segments}"
        )
        if forced_by:
            shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in forced_by[:10])
            more = f" and {len(forced_by) - 10} more" if len(forced_by) > 10 else ""
            message += f"; UCS-2 forced by {shown}{more}"
        raise SmsTooLongError(
            message,
            channel="sms",
            segments=result.segments,
            max_segments=max_segments,
            encoding=result.encoding,
            units=result.units,
            forced_by=forced_by,
        )
    return result
