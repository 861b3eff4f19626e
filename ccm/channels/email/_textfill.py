"""The text alternative of a compiled shape, filled: its text made once, the values put in.

:func:`~ccm.channels.email._text.replay_text` runs the shape's events per
message (about 150 µs for the reminder). Most of what it does is the same for
every message of a shape; what a value changes is narrow:

* a value in a text run is unescaped and its white space collapsed; where it
  lands depends only on its *class*: empty, blank, or text with or without
  white space at either end (:func:`_text_class`). Its text is then the
  collapsed value without those ends (its *core*);
* a link's ``href`` and an image's ``alt`` are written as they are, unescaped
  and stripped; where the href lands depends only on whether the link's text
  and its href compare equal;
* nothing else in the text depends on a value.

So per shape and *signature* (every text value's class, whether each
``alt`` is empty) the text is made once, with a distinct token for each
value's core and each href and alt, and cut at the tokens. Per message the
values are classified, each link's comparison is checked against the one made
with tokens, and the cores and attributes are put in: a few µs per value.

It is detected, not assumed, like the HTML skeleton:

* a shape whose text depends on values in ways the signature does not carry
  (a value in a ``style`` attribute, nested links, a static piece ending in
  an unfinished character reference, token characters in the HTML) is never
  filled;
* each signature's text is checked when it is made: the shape replayed with
  probe values of that signature (entities, runs of white space, a
  non-breaking space) must equal the fill of the same values;
* a message whose values the signature cannot carry (a value ending in an
  unfinished character reference, non-HTML white space at the ends of a
  core, a line break in an href or alt, an href that is not a link, a link
  whose text compares equal to its href where the tokens did not) is
  replayed, as is every message of a shape with more than :data:`SIGNATURES`
  signatures.

``tests/channels/test_email_textfill.py`` proves the fill equal to the replay
(and to ``html_to_text`` of the HTML) for hostile values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import unescape as html_unescape
from typing import Any

from ccm.channels.email._text import (
    _BLANK_LINES,
    _FAST_ATTR,
    _FAST_TOKEN,
    _HTML_SPACE,
    TextPlan,
    _joined,
    _link_key,
    _run,
    _start_facts,
    _TextExtractor,
    replay_text,
)

__all__ = ["SIGNATURES", "fill_text"]

#: Signatures (value classes) one shape is filled for; beyond them it is replayed.
SIGNATURES = 16

# Tokens: a text value's core (U+E000 index U+E001), an href or alt (U+E002 ...), and
# a value where the text must not show it (U+E003 ...). Shapes holding any of these
# private-use characters are never filled.
_CORE, _ATTR, _HIDDEN, _END = "\ue000", "\ue002", "\ue003", "\ue001"
_TOKEN = re.compile("([\ue000\ue002\ue003])([0-9]+)\ue001")
_TOKEN_CHARS = re.compile("[\ue000-\ue003]")
#: Classes of a text value (:func:`_text_class`).
_EMPTY, _BLANK, _CORE_ONLY = 0, 1, 2  # + 1: space before, + 2: space after


def _text_class(value: str) -> tuple[int, str] | None:
    """``(class, core)`` of a text value as it sits in the HTML; None: replay the message."""
    if "&" in value:
        if value.rfind(";") < value.rfind("&"):
            return None  # a reference the following text could complete
        value = html_unescape(value)
    collapsed = (_HTML_SPACE.sub(" ", value) if "  " in value or "\n" in value or "\t" in value
                 or "\r" in value or "\f" in value else value)
    core = collapsed.strip(" ")
    if not core:
        return (_BLANK if collapsed else _EMPTY), ""
    if core[0].isspace() or core[-1].isspace():
        return None  # e.g. a no-break space: the line's strip() would take it
    return _CORE_ONLY + (collapsed[0] == " ") + 2 * (collapsed[-1] == " "), core


#: :func:`_text_class` of values met lately. Most text values of a shape are the same in
#: every message of its template and locale (labels, translations, the brand's lines);
#: emptied when full.
_CLASSES: dict[str, tuple[int, str] | None] = {}
_CLASSES_MAX = 4096
_UNKNOWN = (-1, "")


def _text_class_of(value: str) -> tuple[int, str] | None:
    """:func:`_text_class`, remembered per value."""
    found = _CLASSES.get(value, _UNKNOWN)
    if found is _UNKNOWN:
        found = _text_class(value)
        if len(_CLASSES) >= _CLASSES_MAX:
            _CLASSES.clear()
        _CLASSES[value] = found
    return found


def _class_sentinel(index: int, cls: int) -> str:
    if cls == _EMPTY:
        return ""
    if cls == _BLANK:
        return " "
    flags = cls - _CORE_ONLY
    return (" " if flags & 1 else "") + f"{_CORE}{index}{_END}" + (" " if flags & 2 else "")


def _class_probe(cls: int) -> str:
    """A value of class ``cls`` full of what the text treats specially."""
    if cls == _EMPTY:
        return ""
    if cls == _BLANK:
        return " \n\t "
    flags = cls - _CORE_ONLY
    return ((" \n " if flags & 1 else "") + "Pr&amp;obe  \t te\u00a0xt &#39;q&#39;"
            + ("\r\n  " if flags & 2 else ""))


class _Attribute:
    """An ``href`` of a link or ``alt`` of an image whose value holds values."""

    __slots__ = ("name", "pieces", "slots")

    def __init__(self, name: str, pieces: tuple[str, ...], slots: tuple[int, ...]) -> None:
        self.name, self.pieces, self.slots = name, pieces, slots

    def value(self, values: Sequence[str]) -> str:
        """The attribute as the extractor reads it: unescaped and stripped."""
        raw = _joined(self.pieces, self.slots, values)
        return (html_unescape(raw) if raw else raw).strip()


class _Shape:
    """What filling a shape needs, found once from its events (None: never filled)."""

    __slots__ = ("attributes", "filled", "ops", "tag_values", "tags", "text_values")

    def __init__(self, ops: tuple[Any, ...], text_values: tuple[int, ...],
                 tag_values: frozenset[int],
                 tags: dict[int, tuple[str, bool, list[tuple[str, Any]]]],
                 attributes: list[_Attribute]) -> None:
        self.ops = ops
        self.text_values = text_values
        self.tag_values = tag_values
        #: Per op index of a tag with values: (tag, closed, attributes with tokens).
        self.tags = tags
        self.attributes = attributes
        #: By signature, and by (signature, link comparisons) where they differ.
        self.filled: dict[tuple[Any, ...], _Filled | None] = {}

    @classmethod
    def of(cls, ops: tuple[Any, ...]) -> _Shape | None:
        text_values: list[int] = []
        tag_values: set[int] = set()
        tags: dict[int, tuple[str, bool, list[tuple[str, Any]]]] = {}
        attributes: list[_Attribute] = []
        for at, op in enumerate(ops):
            kind = op[0]
            if kind == 0:
                if _TOKEN_CHARS.search(op[1]):
                    return None
            elif kind == 1:
                pieces, slots = op[1], op[2]
                if any(_TOKEN_CHARS.search(p) for p in pieces):
                    return None
                if len(op) > 3:
                    continue  # style or script content: always hidden (_SKIPPED)
                for piece in pieces[:-1]:  # a reference must not run on into a value
                    amp = piece.rfind("&")
                    if amp >= 0 and piece.rfind(";") < amp:
                        return None
                text_values += [s for s in slots if s not in text_values]
            elif kind == 2:
                if any(_TOKEN_CHARS.search(part) for part in op[1][2:]):
                    return None
            elif kind == 3:
                pieces, slots = op[1], op[2]
                if any(_TOKEN_CHARS.search(p) for p in pieces):
                    return None
                tag_values.update(slots)
                tokened = _joined(pieces, slots, [f"{_HIDDEN}{i}{_END}" for i in
                                                  range(max(slots) + 1)])
                match = _FAST_TOKEN.fullmatch(tokened)
                if match is None or match.group(2) is None:
                    return None
                name = match.group(2).lower()
                found: list[tuple[str, Any]] = []
                pairs = _FAST_ATTR.findall(match.group(3) or "")
                names = [key.lower() for key, _ in pairs]
                for key, quoted in pairs:
                    key = key.lower()
                    value = quoted[1:-1] if quoted else None
                    if value is None or not _TOKEN_CHARS.search(value):
                        found.append((key, html_unescape(value) if value else value))
                        continue
                    if not quoted.startswith('"') or key == "style":
                        return None  # a value that could hide an element, or move a quote
                    if (key, name) in (("href", "a"), ("alt", "img")):
                        if names.count(key) != 1:
                            return None
                        parts = _TOKEN.split(value)
                        attributes.append(_Attribute(
                            key, tuple(parts[0::3]), tuple(int(i) for i in parts[2::3])))
                        found.append((key, f"{_ATTR}{len(attributes) - 1}{_END}"))
                    else:
                        found.append((key, html_unescape(value)))  # not read by the text
                tags[at] = (name, bool(match.group(4)), found)
        return cls(ops, tuple(text_values), frozenset(tag_values), tags, attributes)

    def signature(self, values: Sequence[str]) -> tuple[tuple[int, ...], list[str],
                                                         list[str]] | None:
        """``(signature, cores by text value, attributes)``; None: replay this message."""
        sig: list[int] = []
        cores = [""] * len(values)
        for index in self.text_values:
            found = _text_class_of(values[index])
            if found is None:
                return None
            sig.append(found[0])
            cores[index] = found[1]
        for index in self.tag_values:
            if '"' in values[index]:
                return None  # the tag would not read as one tag (replay_text says None)
        attributes: list[str] = []
        for attribute in self.attributes:
            value = attribute.value(values)
            if "\n" in value:
                return None
            if attribute.name == "href":
                if not value or value.startswith("#") or value.lower().startswith(
                        "javascript:"):
                    return None
            else:
                sig.append(bool(value))
            attributes.append(value)
        return tuple(sig), cores, attributes

    def probes(self, sig: tuple[int, ...], count: int) -> list[str]:
        """Values of signature ``sig``: what a filled text is checked against."""
        values = [f"v{index}" for index in range(count)]
        for index, cls in zip(self.text_values, sig, strict=False):
            values[index] = _class_probe(cls)
        alts = iter(sig[len(self.text_values):])
        for attribute in self.attributes:
            probe = ("https://probe.example/p?a=1&amp;b=%C3%A9" if attribute.name == "href"
                     else "Pro&amp;be alt" if next(alts) else "")
            for index in attribute.slots:  # the first value carries it, the others are empty
                if index not in self.text_values:
                    values[index], probe = probe, ""
        return values


class _Links(_TextExtractor):
    """The extractor, recording each link whose text or href holds a token.

    ``force`` gives those links' comparisons (text and href different?) in
    order; without it they are compared as the tokens read.
    """

    def __init__(self, force: tuple[bool, ...] | None) -> None:
        super().__init__()
        self.force = force
        self.links: list[tuple[str, str, bool]] = []  # text, href, compared different
        self.nested = False

    def _start(self, tag: str, hides: bool, alt: str, href: str) -> None:
        super()._start(tag, hides, alt, href)
        if len(self._links) > 1:
            self.nested = True

    def _close_link(self, href: str, start: int, alts: list[str]) -> None:
        text = "".join(self.out[start:]).strip()
        if not text or not (_TOKEN.search(text) or _TOKEN.search(href)):
            super()._close_link(href, start, alts)
            return
        at = len(self.links)
        different = (self.force[at] if self.force is not None and at < len(self.force)
                     else _link_key(text) != _link_key(href))
        self.links.append((text, href, different))
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return  # as the extractor does (a filled href is never one of these)
        if different:
            self._space = True
            self._emit(f"({href})")


class _Filled:
    """One signature's text with given link comparisons, cut at its tokens."""

    __slots__ = ("decided", "links", "refs", "statics")

    def __init__(self, text: str, links: list[tuple[str, str, bool]]) -> None:
        self.statics, self.refs = self._cut(text)
        self.links = [(*self._cut(t), *self._cut(h)) for t, h, _ in links]
        self.decided = tuple(different for _, _, different in links)

    @staticmethod
    def _cut(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        parts = _TOKEN.split(text)
        refs = []
        for kind, index in zip(parts[1::3], parts[2::3], strict=True):
            if kind == _HIDDEN:
                raise ValueError("a value the text must not show")
            refs.append(int(index) if kind == _CORE else -1 - int(index))
        return tuple(parts[0::3]), tuple(refs)

    @staticmethod
    def _put(statics: tuple[str, ...], refs: tuple[int, ...], cores: list[str],
             attributes: list[str]) -> str:
        out = [statics[0]]
        for ref, static in zip(refs, statics[1:], strict=True):
            out.append(cores[ref] if ref >= 0 else attributes[-1 - ref])
            out.append(static)
        return "".join(out)

    def decisions(self, cores: list[str], attributes: list[str]) -> tuple[bool, ...]:
        """Each recorded link's comparison for these values (text and href different?)."""
        put = self._put
        return tuple(
            _link_key(put(t_statics, t_refs, cores, attributes).strip())
            != _link_key(put(h_statics, h_refs, cores, attributes))
            for t_statics, t_refs, h_statics, h_refs in self.links)

    def text(self, cores: list[str], attributes: list[str]) -> str:
        return self._put(self.statics, self.refs, cores, attributes)


def _make(shape: _Shape, sig: tuple[int, ...], values: Sequence[str],
          force: tuple[bool, ...] | None) -> _Filled | None:
    """The text of ``shape`` for signature ``sig`` with tokens, checked.

    Without ``force`` (the links compared as the tokens read) it is checked on
    probe values of the signature; with it, on ``values``, the message that
    needs those comparisons.
    """
    tokens = [f"{_HIDDEN}{index}{_END}" for index in range(len(values))]
    for index, cls in zip(shape.text_values, sig, strict=False):
        tokens[index] = _class_sentinel(index, cls)
    parser = _Links(force)
    for at, op in enumerate(shape.ops):
        kind = op[0]
        if kind == 1:
            text = _joined(op[1], op[2], tokens)
            parser.handle_data(text if len(op) > 3 or "&" not in text else html_unescape(text))
        elif kind == 3:
            name, closed, attrs = shape.tags[at]
            parser._start(*_start_facts(name, attrs))
            if closed:
                parser.handle_endtag(name)
        else:
            _run(parser, (op,))
    if parser.nested:
        return None
    lines = (line.strip() for line in "".join(parser.out).split("\n"))
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    try:
        filled = _Filled(text, parser.links)
    except ValueError:
        return None
    check = list(values) if force is not None else shape.probes(sig, len(values))
    found = shape.signature(check)
    if found is None or found[0] != sig:
        return None
    _, cores, attributes = found
    if (filled.decisions(cores, attributes) != filled.decided
            or filled.text(cores, attributes) != replay_text(TextPlan(shape.ops), check)):
        return None
    return filled


def _filled(shape: _Shape, key: tuple[Any, ...], sig: tuple[int, ...], values: Sequence[str],
            force: tuple[bool, ...] | None) -> _Filled | None:
    found = shape.filled.get(key)
    if found is not None or key in shape.filled or len(shape.filled) >= SIGNATURES:
        return found
    found = shape.filled[key] = _make(shape, sig, values, force)
    return found


def fill_text(plan: TextPlan, values: Sequence[str]) -> str | None:
    """:func:`~ccm.channels.email._text.replay_text`'s text, filled; None: replay it."""
    shape = plan.filling
    if shape is None:
        shape = plan.filling = _Shape.of(plan.ops) or False
    if shape is False:
        return None
    found = shape.signature(values)
    if found is None:
        return None
    sig, cores, attributes = found
    filled = _filled(shape, sig, sig, values, None)
    if filled is None:
        return None
    if filled.links:
        decided = filled.decisions(cores, attributes)
        if decided != filled.decided:
            filled = _filled(shape, (sig, decided), sig, values, decided)
            if filled is None:
                return None
    return filled.text(cores, attributes)
