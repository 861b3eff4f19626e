"""MJML compiled once per shape: per message only the values are put into the compiled HTML.

A rendered MJML source is cut into its *shape* (every tag, every attribute
that MJML interprets, the whitespace between tags, comments) and its
*values*: the text runs inside MJML's content elements (``mj-text``,
``mj-button``, ``mj-table``, ...) and the link, image and title attributes
(``href``, ``src``, ``alt``, ``title``). Sources with the same shape differ
only in those values, so one shape is compiled once and every later
message of that shape is the compiled skeleton with its values put back.

Whether a shape may be compiled this way is detected, not assumed:

1. the shape is compiled with a distinct sentinel in every value; each
   sentinel must appear in the HTML (the title twice: ``<title>`` and the
   body's ``aria-label``, every other value exactly once), and nothing else
   in the HTML may differ between the sentinel compile and
2. a second compile with probe values full of what could be treated
   differently (entities, bare ``&``, quotes, ``>``, line breaks, leading
   and trailing spaces, non-ASCII): the skeleton with the probes put in
   must equal MJML's own output byte for byte.

A shape that fails either check is remembered and compiled per message, as
is any message whose values hold characters the probes did not cover
(:data:`_TEXT_OK`, :data:`_ATTR_OK`), a source the tokenizer does not read,
and every message of a template (its include folders) once that template
has produced more than :data:`FAMILY_SHAPES` shapes: loops or conditionals
over request data that change the structure per message. Values need no
escaping here: they are already escaped by the template's autoescape, and
MJML copies them verbatim (which check 2 proves for the shape).
"""

from __future__ import annotations

import re
import secrets
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ccm.channels.email import _mjml
from ccm.channels.email._message import ShapedHTML, qp_segments
from ccm.channels.email._mjml import _Stamp, _unchanged
from ccm.channels.email._text import TextPlan, replay_text, text_plan
from ccm.channels.email._textfill import fill_text

#: Elements whose text content MJML copies into the HTML as it is.
_CONTENT = frozenset({
    "mj-text", "mj-button", "mj-table", "mj-navbar-link", "mj-social-element",
    "mj-accordion-title", "mj-accordion-text", "mj-preview", "mj-title",
})
#: Attributes whose (double-quoted) value is a value, on any element.
_VALUE_ATTRIBUTES = frozenset({"href", "src", "alt", "title"})

_CONTENT_START = re.compile(r"<(" + "|".join(sorted(_CONTENT)) + r")(?=[\s/>])")
_OPEN_TAG_REST = re.compile(
    r"(?:\s+[^\s\"'=<>/]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'))?)*\s*(/?)>")
#: A value attribute; the character before it must be white space (checked by the caller).
_VALUE_ATTRIBUTE = re.compile(
    r"(?:" + "|".join(sorted(_VALUE_ATTRIBUTES)) + r")\s*=\s*\"([^\"]*)\"")
_INNER_TAG = re.compile(r"(<!--.*?-->|<[^<>]*>)", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)

#: Characters a value may hold and still be put in without MJML: what the probes cover.
_TEXT_OK = re.compile(r"[^<\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]*")
_ATTR_OK = re.compile(r"[^<>\"\\\x00-\x1f\x7f-\x9f\u2028\u2029]*")

#: Unicode categories of title characters MJML writes into the body's ``aria-label``
#: (and into attribute values such as ``mj-button``'s ``href``)
#: as they are (``_ATTR_OK`` keeps out the escaped ASCII), and those it writes as
#: ``\\u{hex}`` (marks, non-breaking and other spaces, format characters such as
#: U+200F). Titles with characters of any other category are compiled per message.
_ARIA_VERBATIM = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
                            "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So"})
_ARIA_ESCAPED = frozenset({"Mn", "Me", "Zs", "Cf"})


def aria_label(title: str) -> str | None:
    """The title as MJML writes it into ``aria-label``; None: not a title this knows."""
    if title.isascii():
        return title
    out = []
    for ch in title:
        if ch == " " or ch.isascii():
            out.append(ch)
            continue
        category = unicodedata.category(ch)
        if category in _ARIA_VERBATIM:
            out.append(ch)
        elif category in _ARIA_ESCAPED:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            return None
    return "".join(out)


#: Distinct shapes one template (one set of include folders) may produce before every
#: message of it is compiled on its own: its structure depends on the request data.
FAMILY_SHAPES = 32

#: Shapes per template tried before a source is split (locales and branches alternate).
RECENT_SHAPES = 8

_TEXT, _ATTR, _TITLE = 0, 1, 2


def _attribute_values(source: str, start: int, end: int,
                      spans: list[tuple[int, int, int]]) -> None:
    for match in _VALUE_ATTRIBUTE.finditer(source, start, end):
        value = match.group(1)
        if value and not value.isspace() and source[match.start() - 1].isspace():
            spans.append((match.start(1), match.end(1), _ATTR))


def split_source(source: str) -> tuple[str, list[str], list[int]] | None:
    """``(shape key, values, kinds)`` of a rendered MJML source; None: not read here.

    The key holds the pieces of the source between the values joined by NUL.
    Joining the pieces with the values gives the source back. Sources with
    comments or NUL are not read (compiled per message).
    """
    if "\x00" in source or "<!--" in source:
        return None
    spans: list[tuple[int, int, int]] = []
    pos = 0
    search = _CONTENT_START.search
    while True:
        element = search(source, pos)
        if element is None:
            break
        rest = _OPEN_TAG_REST.match(source, element.end())
        if rest is None:
            return None
        name = element.group(1)
        if rest.group(1):  # <mj-text ... />: no content
            _attribute_values(source, pos, rest.end(), spans)
            pos = rest.end()
            continue
        _attribute_values(source, pos, rest.end(), spans)
        body = rest.end()
        close = source.find("</" + name, body)
        if close < 0:
            return None
        kind = _TITLE if name == "mj-title" else _TEXT
        content = source[body:close]
        if "<" not in content:
            if content and not content.isspace():
                spans.append((body, close, kind))
        else:
            at = body
            for index, part in enumerate(_INNER_TAG.split(content)):
                if index % 2:
                    _attribute_values(source, at, at + len(part), spans)
                elif "<" in part:
                    return None
                elif part and not part.isspace():
                    spans.append((at, at + len(part), kind))
                at += len(part)
        pos = close
    _attribute_values(source, pos, len(source), spans)
    pieces: list[str] = []
    values: list[str] = []
    kinds: list[int] = []
    cut = 0
    for start, end, kind in spans:
        pieces.append(source[cut:start])
        values.append(source[start:end])
        kinds.append(kind)
        cut = end
    pieces.append(source[cut:])
    return "\x00".join(pieces), values, kinds


def match_shape(source: str, pieces: Sequence[str], kinds: Sequence[int]) -> list[str] | None:
    """``source``'s values if it has the shape of ``pieces`` (a key split at NUL).

    What :func:`split_source` would give.

    A text value runs to the next ``<`` and an attribute value to the next
    ``"`` (neither can hold its end), so each value ends where the next piece
    must begin; the values must also be ones :func:`split_source` takes as
    values (not empty, not white space only). Checked against
    :func:`split_source` by the tests. None: split the source.
    """
    first = pieces[0]
    if not source.startswith(first) or "<!--" in source or "\x00" in source:
        return None
    pos = len(first)
    values: list[str] = []
    for kind, piece in zip(kinds, pieces[1:], strict=True):
        end = source.find('"' if kind == _ATTR else "<", pos)
        if end < 0 or not piece or not source.startswith(piece, end):
            return None
        value = source[pos:end]
        if not value or value.isspace():
            return None
        values.append(value)
        pos = end + len(piece)
    return values if pos == len(source) else None


@dataclass(frozen=True)
class Skeleton:
    """A shape's compiled HTML cut at its values.

    The HTML is ``pieces[0] + values[order[0]] + pieces[1] + ...``.
    """

    pieces: tuple[str, ...]
    order: tuple[int, ...]
    stamps: tuple[_Stamp, ...]
    #: The text alternative's events (:func:`~ccm.channels.email._text.text_plan`), or None.
    text_ops: TextPlan | None = None
    #: ``pieces`` in UTF-8 and the quoted-printable encodings of each by position
    #: (:func:`~ccm.channels.email._message.qp_segments`); None when a piece holds CR.
    qp_pieces: tuple[bytes, ...] | None = None
    qp_memo: dict[tuple[int, int, bool, bool], tuple[bytes, int]] = field(
        default_factory=dict, compare=False, repr=False)

    def shaped_html(self, values: Sequence[str]) -> str:
        """:meth:`fill`, as a :class:`ShapedHTML` carrying its quoted-printable body."""
        html = self.fill(values)
        if self.qp_pieces is None:
            return html
        segments: list[bytes] = [self.qp_pieces[0]]
        for index, piece in zip(self.order, self.qp_pieces[1:], strict=True):
            segments.append(values[index].encode("utf-8"))
            segments.append(piece)
        if not html.endswith("\n"):
            segments.append(b"\n")
        static = [index % 2 == 0 for index in range(len(segments))]
        static[-1] = static[-1] and html.endswith("\n")
        shaped = ShapedHTML(html)
        shaped.qp_body = qp_segments(segments, self.qp_memo, static, crlf=True)
        return shaped

    def fill(self, values: Sequence[str]) -> str:
        """The HTML of a message with ``values`` (in source order)."""
        pieces = self.pieces
        out = [pieces[0]]
        for index, piece in zip(self.order, pieces[1:], strict=True):
            out.append(values[index])
            out.append(piece)
        return "".join(out)


def _join(key: str, values: Sequence[str]) -> str:
    pieces = key.split("\x00")
    out = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        out.append(value)
        out.append(piece)
    return "".join(out)


def _probe(index: int, kind: int) -> str:
    """A value that would show it if MJML treated values other than as verbatim text."""
    if kind == _TEXT:
        return f"  p{index} &amp; a&b > 'q' \"d\" &#39;\n\tÉté € 中 𝄞 "
    if kind == _TITLE:
        return f" p{index} &amp; a&b 'q' &#39; Été € 中 𝄞 خالد بِن\u00a0\u202f\u200f!"
    return f"https://p{index}.example/x?a=1&amp;b=2&c=3 'q' Été € 中"


def _compile_shape(key: str, kinds: Sequence[int],
                   roots: tuple[Path, ...]) -> Skeleton | None:
    """The skeleton of a shape, or None when the two checks (module docstring) fail.

    Values are numbered in source order; each title's ``aria-label`` landing
    gets the number ``len(kinds) + k`` (k-th title), filled with :func:`aria_label`.
    """
    nonce = secrets.token_hex(6)
    sentinel = re.compile(f"ccm{nonce}v([0-9]+)z")
    sentinels = [f"ccm{nonce}v{index}z" for index in range(len(kinds))]
    probes = [_probe(index, kind) for index, kind in enumerate(kinds)]
    try:
        html, stamps = _mjml._compile(_join(key, sentinels), roots)
        expected, _ = _mjml._compile(_join(key, probes), roots)
    except Exception:  # the message's own compile reports the error
        return None
    found = sentinel.split(html)
    pieces = tuple(found[0::2])
    order = [int(index) for index in found[1::2]]
    titles = [index for index, kind in enumerate(kinds) if kind == _TITLE]
    for index, kind in enumerate(kinds):
        if order.count(index) != (2 if kind == _TITLE else 1):
            return None
    for k, index in enumerate(titles):
        landings = [n for n, at in enumerate(order)
                    if at == index and pieces[n].endswith(' aria-label="')]
        if len(landings) != 1:
            return None
        order[landings[0]] = len(kinds) + k
        label = aria_label(probes[index])
        assert label is not None
        probes.append(label)
        sentinels.append(f"ccm{nonce}v{len(kinds) + k}z")
    skeleton = Skeleton(pieces, tuple(order), stamps)
    if skeleton.fill(probes) != expected:
        return None
    ops = text_plan(skeleton.fill(sentinels), sentinel)
    qp = None if any("\r" in piece for piece in pieces) else tuple(
        piece.encode("utf-8") for piece in pieces)
    return Skeleton(pieces, tuple(order), stamps, None if ops is None else TextPlan(ops), qp)


class _Family:
    __slots__ = ("shapes",)

    def __init__(self) -> None:
        self.shapes = 0


class SkeletonCache:
    """Skeletons by shape and include folders (LRU), and the per-template shape counts."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, tuple[Path, ...]], Skeleton | None] = OrderedDict()
        self._families: dict[tuple[Path, ...], _Family] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        #: False: every source is compiled per message (the benchmark's "before").
        self.enabled = True
        #: The shapes (key, its pieces, kinds) last seen per include folders, most
        #: recent first: the next source most likely has one of them.
        self._last: dict[tuple[Path, ...], list[tuple[str, list[str], list[int]]]] = {}

    def _match_last(self, source: str,
                    roots: tuple[Path, ...]) -> tuple[str, list[str], list[int]] | None:
        for key, pieces, kinds in tuple(self._last.get(roots, ())):
            values = match_shape(source, pieces, kinds)
            if values is not None:
                return key, values, kinds
        return None

    def _remember(self, roots: tuple[Path, ...], key: str, kinds: list[int]) -> None:
        recent = self._last.setdefault(roots, [])
        if recent and recent[0][0] is key:
            return
        for index, entry in enumerate(recent):
            if entry[0] == key:
                recent.insert(0, recent.pop(index))
                return
        recent.insert(0, (key, key.split("\x00"), kinds))
        del recent[RECENT_SHAPES:]

    def html(self, source: str, roots: tuple[Path, ...]) -> str | None:
        """The compiled HTML of ``source`` from its shape's skeleton; None: compile it directly."""
        found = self.find(source, roots)
        return None if found is None else found[0].fill(found[1])

    def find(self, source: str, roots: tuple[Path, ...]) -> tuple[Skeleton, list[str]] | None:
        """The skeleton of ``source``'s shape and its values; None: compile it directly."""
        if not self.enabled:
            return None
        family = self._families.get(roots)
        if family is not None and family.shapes > FAMILY_SHAPES:
            return None
        split = self._match_last(source, roots) or split_source(source)
        if split is None:
            return None
        key, values, kinds = split
        with self._lock:
            self._remember(roots, key, kinds)
        labels = []  # each title's second landing, numbered after the source's values
        for value, kind in zip(values, kinds, strict=True):
            if not (_TEXT_OK if kind == _TEXT else _ATTR_OK).fullmatch(value):
                return None
            if kind == _TITLE:
                label = aria_label(value)
                if label is None:
                    return None
                labels.append(label)
            elif kind == _ATTR and not value.isascii() and aria_label(value) != value:
                return None  # MJML writes attributes as it writes aria-label: escaped
        values.extend(labels)
        entry_key = (key, roots)
        with self._lock:
            known = entry_key in self._entries
            skeleton = self._entries.get(entry_key)
            if known:
                self._entries.move_to_end(entry_key)
        if known and (skeleton is None or _unchanged(skeleton.stamps)):
            if skeleton is None:
                return None
            self.hits += 1
            return skeleton, values
        self.misses += 1
        skeleton = _compile_shape(key, kinds, roots)
        with self._lock:
            if not known:
                family = self._families.setdefault(roots, _Family())
                family.shapes += 1
            self._entries[entry_key] = skeleton
            self._entries.move_to_end(entry_key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return None if skeleton is None else (skeleton, values)

    def per_message(self, roots: tuple[Path, ...]) -> bool:
        """Whether the template with these include folders is compiled per message now."""
        family = self._families.get(roots)
        return family is not None and family.shapes > FAMILY_SHAPES

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._families.clear()
            self._last.clear()
            self.hits = self.misses = 0


_skeletons = SkeletonCache()


def compile_mjml_shaped(source: str, *, include_roots: Sequence[Path] = ()) -> str:
    """:func:`compile_mjml`'s HTML, from the source's compiled shape when it has one.

    Equal to ``compile_mjml(source, include_roots=...)`` for every source
    (module docstring: how that is checked); errors are :func:`compile_mjml`'s.
    """
    roots = tuple(include_roots)
    html = _skeletons.html(source, roots)
    if html is not None:
        return html
    return _mjml._cache.get(source, roots)


def compile_mjml_and_text(source: str, *, include_roots: Sequence[Path] = (),
                          text: bool = True) -> tuple[str, str | None]:
    """:func:`compile_mjml_shaped`'s HTML and, with ``text``, its :func:`html_to_text`.

    The text is the shape's text filled with the values
    (:mod:`~ccm.channels.email._textfill`) or, where that cannot be done,
    its replayed events; both equal to converting the HTML. None when the
    caller must convert the HTML itself.
    """
    roots = tuple(include_roots)
    found = _skeletons.find(source, roots)
    if found is None:
        return _mjml._cache.get(source, roots), None
    skeleton, values = found
    html = skeleton.shaped_html(values) if text else skeleton.fill(values)
    if not text or skeleton.text_ops is None:
        return html, None
    return html, (fill_text(skeleton.text_ops, values)
                  or replay_text(skeleton.text_ops, values))


def clear_skeletons() -> None:
    """Forget every compiled shape and shape count (tests, or after a pack is reloaded)."""
    _skeletons.clear()
