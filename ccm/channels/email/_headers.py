"""Email finishing: MJML -> HTML, a text alternative, safe headers -> ``EmailMessage``.

Header values are checked here rather than trusted to :mod:`email.policy`:
CPython 3.11.7 is affected by CVE-2024-6923 (the folder does not quote line
breaks, including ones smuggled in RFC 2047 encoded words) and by
CVE-2023-27043 (``parseaddr`` and the header parser disagree on crafted
addresses). So every value goes through :func:`safe_header`, and ccm writes
the folded header text itself: a plain ASCII value is written as given
(folded at spaces), anything else as RFC 2047 encoded words. That also keeps
machine-read headers such as ``List-Unsubscribe`` intact -- the standard
folder turns any word longer than a line, like a long unsubscribe URL, into
encoded words that mail providers do not decode -- and keeps text that merely
looks like an encoded word literal instead of letting it be decoded at the
recipient.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import re
from email.errors import MessageDefect, NonPrintableDefect, ObsoleteHeaderDefect
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import formataddr, getaddresses
from functools import lru_cache

from ccm.errors import HeaderError

_FORBIDDEN = frozenset("\r\n\x00\x85\u2028\u2029")
#: Finds a character of :data:`_FORBIDDEN` (one C-level scan instead of a loop per character).
_FORBIDDEN_SEARCH = re.compile("[\r\n\x00\x85\u2028\u2029]").search
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_PLAIN = re.compile(r"[ -~]*")
_SPACES = re.compile(r" {2,}")
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([bBqQ])\?(.*?)\?=", re.DOTALL)
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_ADDRESS_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "sender", "resent-from", "resent-to",
     "resent-cc", "resent-bcc", "resent-sender"}
)
_MAX_LINE = 78
_HARD_MAX_LINE = 998
_MAX_VALUE = 4096
_MAX_ADDRESS = 1000


def _decode_word(charset: str, encoding: str, payload: str) -> tuple[bytes, str]:
    """Leniently decode one encoded word as a mail client might: raw bytes and text."""
    if encoding in "bB":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
        try:
            raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            raw = b""
    else:
        data = payload.replace("_", " ").encode("latin-1", "replace")
        raw = _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)
    try:
        text = raw.decode(charset.split("*", 1)[0].strip() or "ascii", errors="replace")
    except LookupError:
        text = raw.decode("latin-1")
    return raw, text


def _check_line_breaks(name: str, value: str) -> None:
    if _FORBIDDEN_SEARCH(value):
        raise HeaderError(f"unsafe {name} header: it contains a line break or NUL", header=name)
    for match in _ENCODED_WORD.finditer(value):
        raw, text = _decode_word(*match.groups())
        if any(b in raw for b in b"\r\n\x00") or _FORBIDDEN_SEARCH(text):
            raise HeaderError(
                f"unsafe {name} header: an encoded word decodes to a line break or NUL",
                header=name,
            )


_ASCII_CONTROLS = dict.fromkeys([*range(32), 127])


def _clean_text(value: str) -> str:
    """Drop control and bidi override characters, tabs become spaces, runs of spaces one."""
    if value.isascii():
        # ASCII's control characters are exactly C0 and DEL: no loop needed.
        return _SPACES.sub(" ", value.replace("\t", " ").translate(_ASCII_CONTROLS)).strip(" ")
    return _SPACES.sub(" ", _DROPPED.sub("", value.replace("\t", " "))).strip(" ")


#: What :func:`_clean_text` drops: the characters of Unicode categories Cc (C0, DEL and C1:
#: a set the Unicode stability policy fixes) and Cs (surrogates), and the bidi controls.
_DROPPED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff" + "".join(sorted(_BIDI_CONTROLS)) + "]")


#: RFC 2047 "Q" form of each byte in a phrase (section 5(3)): letters, digits and
#: ``!*+-/`` as they are, space as ``_``, every other byte ``=XX``.
_Q_BYTE = [f"={b:02X}" for b in range(256)]
for _b in b"!*+-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
    _Q_BYTE[_b] = chr(_b)
_Q_BYTE[0x20] = "_"
#: The bytes written as one character in the "Q" form.
_Q_SINGLE = bytes(b for b in range(256) if len(_Q_BYTE[b]) == 1)
#: ``=?utf-8?q?`` + ``?=``: an encoded word's characters around its payload.
_WORD_OVERHEAD = 12
#: Longest encoded word (RFC 2047 section 2).
_MAX_WORD = 75


@lru_cache(maxsize=1024)  # subjects repeat across a batch (names rarely do)
def _encode_words(text: str, header: str) -> str:
    """``text`` as RFC 2047 encoded words (UTF-8) separated by single spaces.

    Like :class:`email.header.Header` with the UTF-8 charset: base64 when it is
    strictly shorter than "Q" for the whole text, else "Q". Words end on
    character boundaries, each at most 75 characters, the first sized so that
    ``header: word`` fits 76 columns. Written here because the stdlib's
    ``Header.encode`` costs about 80 us a subject (a tenth of an email in a
    batch); tests decode the result with the stdlib.
    """
    if not text:
        return ""
    raw = text.encode("utf-8")
    # "Q" writes the bytes of _Q_SINGLE as one character each, every other byte as three.
    q_total = len(raw) + 2 * len(raw.translate(None, _Q_SINGLE))
    b_total = (len(raw) + 2) // 3 * 4
    use_b = b_total < q_total
    if (b_total if use_b else q_total) <= max(76 - len(header) - 2, 24) - _WORD_OVERHEAD:
        return _word_of("b" if use_b else "q", raw)  # one word: no character boundary to find
    return _split_words(text, header)


def _split_words(text: str, header: str) -> str:
    """:func:`_encode_words`, cutting the text into words character by character."""
    raws = [char.encode("utf-8") for char in text]
    q_costs = [sum(len(_Q_BYTE[b]) for b in raw) for raw in raws]
    nbytes = sum(map(len, raws))
    use_b = (nbytes + 2) // 3 * 4 < sum(q_costs)
    kind = "b" if use_b else "q"
    room = max(76 - len(header) - 2, 24) - _WORD_OVERHEAD  # the first word's payload
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char, raw, q_cost in zip(text, raws, q_costs, strict=True):
        if use_b:
            cost = len(raw)  # bytes; payload = ceil(bytes / 3) * 4
            fits = (size + cost + 2) // 3 * 4 <= room
        else:
            cost = q_cost
            fits = size + cost <= room
        if chunk and not fits:
            words.append(_word(kind, chunk))
            chunk, size, room = [], 0, _MAX_WORD - _WORD_OVERHEAD
        chunk.append(char)
        size += cost
    if chunk or not words:
        words.append(_word(kind, chunk))
    return " ".join(words)


def _word(kind: str, chars: list[str]) -> str:
    return _word_of(kind, "".join(chars).encode("utf-8"))


def _word_of(kind: str, raw: bytes) -> str:
    if kind == "b":
        return f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?="
    return f"=?utf-8?q?{''.join([_Q_BYTE[b] for b in raw])}?="


def _format_address(header: str, display_name: str, addr_spec: str) -> str:
    if not display_name:
        return addr_spec
    if _PLAIN.fullmatch(display_name) and "=?" not in display_name:
        return formataddr((display_name, addr_spec))
    return f"{_encode_words(display_name, header)} <{addr_spec}>"


def _not_one_address(name: str) -> HeaderError:
    return HeaderError(f"{name} header must be exactly one valid address", header=name)


#: A bare address in plain dot-atom form: what every parser reads as that one address.
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


def _safe_address(name: str, value: str) -> str:
    if _SIMPLE_ADDRESS.fullmatch(value):
        # The common case (a customer's bare address), without the stdlib's header
        # parser, which costs ~0.1 ms: such a value parses to exactly itself.
        return value
    return _parsed_address(name, value)


def _parsed_address(name: str, value: str) -> str:
    value = _clean_text(value)
    try:
        parsed = email.policy.default.header_factory(name, value)
        if not isinstance(parsed, AddressHeader):
            raise _not_one_address(name)
        groups = parsed.groups
        # typeshed does not declare AddressHeader a BaseHeader, which has .defects.
        found: tuple[MessageDefect, ...] = getattr(parsed, "defects", ())
        # Obsolete syntax is harmless; control characters in a decoded name are dropped below.
        defects = [d for d in found if not isinstance(d, ObsoleteHeaderDefect | NonPrintableDefect)]
    except HeaderError:
        raise
    except Exception as exc:  # the header parser raises assorted errors on crafted input
        raise _not_one_address(name) from exc
    if len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1:
        raise _not_one_address(name)
    address = groups[0].addresses[0]
    if defects or not address.username or not address.domain:
        raise _not_one_address(name)
    # The old parser must read the same single address (CVE-2023-27043 shapes differ).
    pairs = getaddresses([value])
    if len(pairs) != 1 or pairs[0][1] != address.addr_spec:
        raise _not_one_address(name)
    if not address.addr_spec.isascii() or not _PLAIN.fullmatch(address.addr_spec):
        raise HeaderError(
            f"{name} header: non-ASCII addresses need SMTPUTF8, which ccm does not use",
            header=name,
        )
    display_name = address.display_name
    if _FORBIDDEN_SEARCH(display_name):
        raise HeaderError(f"unsafe {name} header: the name decodes to a line break or NUL",
                          header=name)
    return _format_address(name, _clean_text(display_name), address.addr_spec)


def safe_header(name: str, value: str) -> str:
    """Check and clean one header value; raise :class:`HeaderError` naming the header.

    Rejects CR, LF, NUL, U+0085, U+2028 and U+2029, also inside RFC 2047
    encoded words, and values over 4096 characters (1000 for addresses).
    Drops other control characters and bidi overrides, turns tabs into
    spaces and runs of spaces into one. Address headers (From, To, Reply-To,
    ...) must hold exactly one address -- no lists, no groups -- and come back
    in a canonical form (non-ASCII names as encoded words). Other values come
    back as the literal text to show.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} header value must be str, not {type(value).__name__}")
    if not _HEADER_NAME.fullmatch(name):
        raise HeaderError(f"invalid header name {name!r}", header=name)
    address = name.lower() in _ADDRESS_HEADERS
    if len(value) > (_MAX_ADDRESS if address else _MAX_VALUE):
        # Also bounds the encoded-word scan and CPython's address parser, which
        # are super-linear on crafted input (a 4 kB run of quotes takes 0.6 s).
        raise HeaderError(f"{name} header is too long", header=name)
    _check_line_breaks(name, value)
    if address:
        return _safe_address(name, value)
    return _clean_text(value)


def _folded(name: str, value: str) -> str:
    """The header text ccm writes for an already safe ``value``, folded at spaces.

    Plain ASCII is written as it is; other text (and text that looks like an
    encoded word, so that it stays literal) as UTF-8 encoded words. Address
    values are always plain ASCII by then (see :func:`safe_header`).
    """
    address = name.lower() in _ADDRESS_HEADERS
    longest = _HARD_MAX_LINE - len(name) - 2
    words = value.split(" ")
    literal = _PLAIN.fullmatch(value) and (address or "=?" not in value)
    if not literal or any(len(word) > longest for word in words):
        if address:
            raise HeaderError(f"{name} header is too long", header=name)
        words = _encode_words(value, name).split(" ")
    lines: list[str] = []
    current, width = words[0], len(name) + 2 + len(words[0])
    for word in words[1:]:
        if width + 1 + len(word) > _MAX_LINE:
            lines.append(current)
            current, width = " " + word, 1 + len(word)
        else:
            current, width = f"{current} {word}", width + 1 + len(word)
    lines.append(current)
    return "\n".join(lines)


#: An address header value: RFC 5322 text, or a (display name, address) pair
#: whose name is taken literally (nothing in it is decoded as an encoded word).
AddressValue = str | tuple[str, str]


def _address_pair(name: str, value: tuple[str, str]) -> str:
    display_name, addr_spec = value
    if _FORBIDDEN_SEARCH(display_name):
        raise HeaderError(f"unsafe {name} header: the name contains a line break or NUL",
                          header=name)
    if len(display_name) > _MAX_VALUE:
        raise HeaderError(f"{name} header is too long", header=name)
    if "<" in addr_spec or ">" in addr_spec:
        raise _not_one_address(name)
    bare = safe_header(name, addr_spec)
    if bare != addr_spec.strip():
        # A display name or comment hid in the address part.
        raise _not_one_address(name)
    return _format_address(name, _clean_text(display_name), bare)


def _set_header(msg: EmailMessage, name: str, value: str | tuple[str, str]) -> str:
    """Check, fold and store one header; return the safe value."""
    safe = _address_pair(name, value) if isinstance(value, tuple) else safe_header(name, value)
    # set_raw stores text that POLICY (refold_source="none") writes verbatim.
    msg.set_raw(name, _folded(name, safe))
    return safe
