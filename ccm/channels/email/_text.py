"""The text alternative of an email: visible text of the compiled HTML, links kept."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import unescape as html_unescape
from html.parser import HTMLParser
from typing import Any

_SKIPPED = frozenset({"head", "style", "script", "title", "template", "noscript"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
     "track", "wbr"}
)
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre",
     "figure", "hr"}
)
_LINE = frozenset(
    {"div", "li", "section", "article", "header", "footer", "address", "center", "dt", "dd",
     "caption", "figcaption", "tr"}
)
#: How many open elements an end tag looks through for its own; past them it is
#: stray. Searching them all made each stray end tag cost the whole depth: 20,000
#: in markup nested as deep took 30 s (``ccm lint`` reads PDF sources this way).
#: Compiled MJML is well formed, each end tag closing the innermost element.
_END_TAG_REACH = 256
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _start_facts(tag: str, attrs: list[tuple[str, str | None]]) -> tuple[str, bool, str, str]:
    """``(tag, hides, alt, href)``: whether the element hides itself, its alt text and link."""
    attributes = dict(attrs)
    hides = (
        tag in _SKIPPED
        or "hidden" in attributes
        or bool(_HIDDEN_STYLE.search(attributes.get("style") or ""))
    )
    return (tag, hides, (attributes.get("alt") or "").strip(),
            (attributes.get("href") or "").strip())


class _TextExtractor(HTMLParser):
    """Collects visible text with line and paragraph breaks; see :func:`html_to_text`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._break = 0  # pending break: 1 newline, 2 blank line
        self._space = False
        self._cell = False  # a new table cell started in a row that already has text
        self._prefix = ""
        self._open: list[tuple[str, bool]] = []  # (tag, hidden)
        self._links: list[tuple[str, int, list[str]]] = []  # href, start in out, image alts
        self._rows: list[list[bool]] = []  # [has text, has block content]

    @property
    def _hidden(self) -> bool:
        return bool(self._open) and self._open[-1][1]

    def _request(self, level: int) -> None:
        self._break = max(self._break, level)

    def _emit(self, text: str) -> None:
        if self.out:
            if self._break:
                self.out.append("\n" * self._break)
            elif self._cell:
                self.out.append(" | ")
            elif self._space:
                self.out.append(" ")
        if self._prefix:
            self.out.append(self._prefix)
        self.out.append(text)
        self._break, self._space, self._cell, self._prefix = 0, False, False, ""
        for row in self._rows:
            row[0] = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(*_start_facts(tag, attrs))

    def _start(self, tag: str, hides: bool, alt: str, href: str) -> None:
        """A start tag, reduced to what the text needs (see :func:`_start_facts`)."""
        hidden = self._hidden or hides
        if tag == "img":
            if alt and not hidden and self._links:
                self._links[-1][2].append(alt)
            return
        if tag == "br":
            if not hidden:
                self._break = min(2, self._break + 1)
            return
        if tag in _VOID:
            if tag == "hr" and not hidden:
                self._request(2)
            return
        self._open.append((tag, hidden))
        if hidden:
            return
        if tag in _PARAGRAPH or tag in _LINE:
            self._request(2 if tag in _PARAGRAPH else 1)
            if self._rows and tag != "tr":
                self._rows[-1][1] = True
        if tag == "tr":
            self._rows.append([False, False])
        elif tag in ("td", "th") and self._rows and self._rows[-1][0]:
            self._cell = True
        elif tag == "li":
            self._prefix = "- "
        elif tag == "a":
            self._links.append((href, len(self.out), []))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        depth = len(self._open)
        for index in range(depth - 1, max(depth - 1 - _END_TAG_REACH, -1), -1):
            if self._open[index][0] == tag:
                break
        else:
            return  # a stray end tag
        while len(self._open) > index:
            name, hidden = self._open.pop()
            if not hidden:
                self._close(name)

    def _close(self, tag: str) -> None:
        if tag == "tr" and self._rows:
            row = self._rows.pop()
            self._request(2 if row[1] else 1)
        elif tag == "a" and self._links:
            self._close_link(*self._links.pop())
        elif tag in _PARAGRAPH or tag in _LINE:
            self._request(2 if tag in _PARAGRAPH else 1)

    def _close_link(self, href: str, start: int, alts: list[str]) -> None:
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        text = "".join(self.out[start:]).strip()
        if not text:
            self._emit(f"{' '.join(alts)} ({href})" if alts else href)
        elif _link_key(text) != _link_key(href):
            self._space = True
            self._emit(f"({href})")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        text = _HTML_SPACE.sub(" ", data)
        if text.startswith(" "):
            self._space = True
        stripped = text.strip(" ")
        if stripped:
            self._emit(stripped)
            self._space = text.endswith(" ")


_LINK_SCHEME = re.compile(r"^(?:https?://|mailto:|tel:)", re.IGNORECASE)


def _link_key(value: str) -> str:
    return _LINK_SCHEME.sub("", value.strip()).rstrip("/").casefold()


# The strict shapes of markup that HTMLParser reads unambiguously; compiled MJML
# uses nothing else. See _fast_feed.
_FAST_TOKEN = re.compile(
    r"<!--.*?--\s*>"  # a comment: up to the first "--" ">" after "<!--", as HTMLParser
    r"|<![dD][oO][cC][tT][yY][pP][eE][^>]*>"
    r"|</([a-zA-Z][-.a-zA-Z0-9:_]*)\s*>"
    r"|<([a-zA-Z][-.a-zA-Z0-9:_]*)"
    r"((?:\s+[a-zA-Z_:][-.a-zA-Z0-9_:]*(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'))?)*)\s*(/?)>",
    re.DOTALL,
)
_FAST_ATTR = re.compile(r"\s+([a-zA-Z_:][-.a-zA-Z0-9_:]*)(?:\s*=\s*(\"[^\"]*\"|'[^']*'))?")
_CDATA_END = {tag: re.compile(rf"</\s*{tag}\s*>", re.IGNORECASE) for tag in ("script", "style")}


#: What start tags seen before reduce to: compiled MJML repeats the same tags in every email.
_TAG_FACTS: dict[str, tuple[str, bool, str, str]] = {}
_TAG_FACTS_MAX = 4096


def _fast_feed(parser: _TextExtractor, html: str) -> bool:
    """Feed ``parser`` the events :class:`HTMLParser` would, for strictly formed markup.

    HTMLParser is pure Python and costs about 1.5 ms for an email's 20 KB of
    compiled MJML. This tokenizer reads only unambiguous markup -- comments,
    a doctype, start tags whose attributes are all quoted or bare, end tags,
    and text whose every ``<`` starts one of those -- and hands the same
    calls (lowercased names, unescaped text and values, ``/>`` as start plus
    end, script and style content as raw data) to the same handlers. On
    anything else it returns False before the caller's result is used, and
    the caller parses with HTMLParser instead.
    """
    unescape = html_unescape
    pos, size = 0, len(html)
    search = _FAST_TOKEN.search
    while pos < size:
        match = search(html, pos)
        start = match.start() if match is not None else size
        if start > pos:
            text = html[pos:start]
            if "<" in text:
                return False
            parser.handle_data(unescape(text) if "&" in text else text)
        if match is None:
            return True
        pos = match.end()
        end_name, name, attributes, closed = match.group(1, 2, 3, 4)
        if end_name is not None:
            tag = end_name.lower()
            stack = parser._open
            if stack and stack[-1][0] == tag:
                # The usual case, handle_endtag's loop unrolled: close the innermost element.
                hidden = stack.pop()[1]
                if not hidden:
                    parser._close(tag)
            else:
                parser.handle_endtag(tag)
        elif name is not None:
            raw = match.group()
            facts = _TAG_FACTS.get(raw)
            if facts is None:
                attrs: list[tuple[str, str | None]] = []
                if attributes:
                    for key, quoted in _FAST_ATTR.findall(attributes):
                        value = quoted[1:-1] if quoted else None
                        attrs.append((key.lower(), unescape(value) if value else value))
                facts = _start_facts(name.lower(), attrs)
                if len(_TAG_FACTS) < _TAG_FACTS_MAX:
                    _TAG_FACTS[raw] = facts
            tag = facts[0]
            parser._start(*facts)
            if closed:
                parser.handle_endtag(tag)
            elif tag in _CDATA_END:
                close = _CDATA_END[tag].search(html, pos)
                if close is None:
                    return False
                if close.start() > pos:
                    parser.handle_data(html[pos:close.start()])
                parser.handle_endtag(tag)
                pos = close.end()
    return True


def html_to_text(html: str) -> str:
    """A readable ``text/plain`` alternative of compiled email HTML.

    Drops the head, styles, scripts and hidden elements (the preheader),
    keeps paragraph and line breaks, writes links as ``text (url)`` unless the
    text already is the URL, and table cells of a row on one line separated
    by ``|``. Standard library only.
    """
    parser = _TextExtractor()
    if not _fast_feed(parser, html):
        parser = _TextExtractor()
        parser.feed(html)
        parser.close()
    lines = (line.strip() for line in "".join(parser.out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# --- the text of a compiled shape, replayed --------------------------------------------
#
# A compiled MJML shape (``_skeleton.Skeleton``) is the same HTML for every message
# but for its values, which sit in text runs and in quoted attribute values. Tokenizing
# it once gives the events :func:`_fast_feed` would produce for every message of the
# shape; per message only the text runs and tags that hold a value are put together
# and read again. The values cannot move a token boundary (text values hold no ``<``,
# attribute values no ``"``, ``<`` or ``>``), so the events, and the text, are equal.

#: An op: (0, static data) | (1, pieces, slots) data with values | (2, facts, closed, cdata)
#: a static start tag | (3, pieces, slots, cdata) a start tag with values | (4, tag) end tag.
TextOp = tuple[Any, ...]


def text_plan(html: str, sentinel: re.Pattern[str]) -> tuple[TextOp, ...] | None:
    """The events of ``html`` (values written as ``sentinel`` matches, group 1 their index).

    None when :func:`_fast_feed` would not read it, or a value sits anywhere
    but in a text run or an attribute value (a comment, a tag name, a style).
    """
    ops: list[TextOp] = []
    pos, size = 0, len(html)
    search = _FAST_TOKEN.search

    def data(text: str) -> None:
        parts = sentinel.split(text)
        if len(parts) == 1:
            ops.append((0, html_unescape(text) if "&" in text else text))
        else:
            ops.append((1, tuple(parts[0::2]), tuple(int(i) for i in parts[1::2])))

    while pos < size:
        match = search(html, pos)
        start = match.start() if match is not None else size
        if start > pos:
            text = html[pos:start]
            if "<" in text:
                return None
            data(text)
        if match is None:
            break
        pos = match.end()
        end_name, name, _, closed = match.group(1, 2, 3, 4)
        raw = match.group()
        if end_name is None and name is None:  # a comment or the doctype
            if sentinel.search(raw):
                return None
            continue
        if end_name is not None:
            if sentinel.search(raw):
                return None
            ops.append((4, end_name.lower()))
            continue
        tag = name.lower()
        cdata = tag in _CDATA_END and not closed
        parts = sentinel.split(raw)
        if sentinel.search(name):
            return None
        if len(parts) == 1:
            facts = _start_facts(tag, [
                (key.lower(), html_unescape(quoted[1:-1]) if quoted and quoted[1:-1]
                 else (quoted[1:-1] if quoted else None))
                for key, quoted in _FAST_ATTR.findall(match.group(3) or "")])
            ops.append((2, facts, bool(closed), cdata))
        else:
            ops.append((3, tuple(parts[0::2]), tuple(int(i) for i in parts[1::2]), cdata))
        if cdata:
            close = _CDATA_END[tag].search(html, pos)
            if close is None:
                return None
            if close.start() > pos:
                content = html[pos:close.start()]
                split = sentinel.split(content)
                ops.append((0, content) if len(split) == 1 else
                           (1, tuple(split[0::2]), tuple(int(i) for i in split[1::2]), "raw"))
            ops.append((5, tag))
            pos = close.end()
    return tuple(ops)


def _joined(pieces: tuple[str, ...], slots: tuple[int, ...], values: Sequence[str]) -> str:
    out = [pieces[0]]
    for index, piece in zip(slots, pieces[1:], strict=True):
        out.append(values[index])
        out.append(piece)
    return "".join(out)


class TextPlan:
    """A shape's text events, cut into runs without values; each run remembers its effect.

    A run of events without values does the same to the extractor whenever it
    starts from the same state, so its effect (text written, state after) is
    kept per entry state (:func:`_state`: everything the handlers read) and
    applied instead of running the events again.
    """

    __slots__ = ("filling", "ops", "steps")

    #: Entry states remembered per run (a shape normally reaches each run in one state).
    MEMO = 8

    def __init__(self, ops: tuple[TextOp, ...]) -> None:
        self.ops = ops
        #: What :mod:`~ccm.channels.email._textfill` found it needs (None: not looked yet).
        self.filling: Any = None
        steps: list[Any] = []
        run: list[TextOp] = []
        for op in ops:
            if op[0] in (1, 3):
                if run:
                    steps.append((tuple(run), {}))
                    run = []
                steps.append(op)
            else:
                run.append(op)
        if run:
            steps.append((tuple(run), {}))
        self.steps = tuple(steps)


def _state(parser: _TextExtractor) -> tuple[Any, ...]:
    """Everything the extractor's handlers read, as a key."""
    out = parser.out
    return (bool(out), parser._break, parser._space, parser._cell, parser._prefix,
            tuple(parser._open),
            tuple((href, tuple(alts), "".join(out[start:])) for href, start, alts in parser._links),
            tuple(tuple(row) for row in parser._rows))


def _effect(parser: _TextExtractor, entry_out: int,
            entry_links: list[tuple[str, int, list[str]]]) -> tuple[Any, ...]:
    links: list[tuple[Any, ...]] = []
    for link in parser._links:
        old = next((i for i, e in enumerate(entry_links) if e is link), None)
        if old is not None:
            links.append((True, old, tuple(link[2])))
        else:
            links.append((False, link[0], link[1] - entry_out, tuple(link[2])))
    return (tuple(parser.out[entry_out:]), parser._break, parser._space, parser._cell,
            parser._prefix, tuple(parser._open), tuple(links),
            tuple(tuple(row) for row in parser._rows))


def _apply(parser: _TextExtractor, effect: tuple[Any, ...]) -> None:
    added, parser._break, parser._space, parser._cell, parser._prefix, opened, links, rows = effect
    entry_out = len(parser.out)
    entry_links = list(parser._links)
    parser.out.extend(added)
    parser._open[:] = opened
    parser._links[:] = [
        (entry_links[link[1]][0], entry_links[link[1]][1], list(link[2])) if link[0]
        else (link[1], entry_out + link[2], list(link[3])) for link in links]
    parser._rows[:] = [list(row) for row in rows]


def _run(parser: _TextExtractor, ops: tuple[TextOp, ...]) -> None:
    stack = parser._open
    for op in ops:
        kind = op[0]
        if kind == 0:
            parser.handle_data(op[1])
        elif kind == 2:
            facts = op[1]
            parser._start(*facts)
            if op[2]:
                parser.handle_endtag(facts[0])
        elif kind == 4:
            tag = op[1]
            if stack and stack[-1][0] == tag:
                hidden = stack.pop()[1]
                if not hidden:
                    parser._close(tag)
            else:
                parser.handle_endtag(tag)
        else:  # 5: the end of a style or script
            parser.handle_endtag(op[1])


def replay_text(plan: TextPlan, values: Sequence[str]) -> str | None:
    """:func:`html_to_text` of the HTML ``plan`` was made from, with ``values`` put in.

    None when a tag with values no longer reads as one tag (the caller then
    converts the HTML itself).
    """
    parser = _TextExtractor()
    unescape = html_unescape
    for step in plan.steps:
        if len(step) == 2 and isinstance(step[1], dict):  # a run without values
            ops, memo = step
            key = _state(parser)
            effect = memo.get(key)
            if effect is not None:
                _apply(parser, effect)
                continue
            entry_out, entry_links = len(parser.out), list(parser._links)
            _run(parser, ops)
            if len(memo) < TextPlan.MEMO:
                memo[key] = _effect(parser, entry_out, entry_links)
            continue
        if step[0] == 1:
            text = _joined(step[1], step[2], values)
            parser.handle_data(text if len(step) > 3 or "&" not in text else unescape(text))
            continue
        raw = _joined(step[1], step[2], values)  # 3: a start tag with values
        match = _FAST_TOKEN.fullmatch(raw)
        if match is None or match.group(2) is None:
            return None
        attrs: list[tuple[str, str | None]] = []
        for key_, quoted in _FAST_ATTR.findall(match.group(3) or ""):
            value = quoted[1:-1] if quoted else None
            attrs.append((key_.lower(), unescape(value) if value else value))
        facts = _start_facts(match.group(2).lower(), attrs)
        parser._start(*facts)
        if match.group(4):
            parser.handle_endtag(facts[0])
    lines = (line.strip() for line in "".join(parser.out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
