"""What a designer wrote in a template or layout, with Jinja taken out: text, attributes, CSS.

:func:`blank_jinja` replaces every Jinja construct by spaces (offsets kept),
and the whole of a ``{% trans %}…{% endtrans %}`` block, since its text is
translated. :func:`texts` then lists the literal text nodes and the literal
values of user-visible attributes (``title``, ``alt``, ``aria-label``,
``placeholder``) with their place: what a customer would read that no
catalog translates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["TextNode", "blank_jinja", "blank_jinja_comments", "texts"]

_PATTERNS = (
    re.compile(r"\{#.*?#\}", re.DOTALL),
    re.compile(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", re.DOTALL),
    re.compile(r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}", re.DOTALL),
    re.compile(r"\{\{.*?\}\}", re.DOTALL),
    re.compile(r"\{%.*?%\}", re.DOTALL),
)
#: Attributes a customer reads (or hears from a screen reader).
VISIBLE_ATTRIBUTES = ("title", "alt", "aria-label", "placeholder")
#: Elements whose content is not text: styles, scripts, MJML configuration.
_NOT_TEXT = frozenset({"style", "script", "mj-style", "mj-attributes", "mj-breakpoint",
                       "mj-font", "mj-html-attributes", "head"})
_TEXT_IN_HEAD = frozenset({"title", "mj-title", "mj-preview"})


def _spaces(m: re.Match[str]) -> str:
    return "".join(ch if ch == "\n" else " " for ch in m.group())


def blank_jinja(text: str) -> str:
    """``text`` with comments, trans blocks, expressions and statements as spaces."""
    for pattern in _PATTERNS:
        text = pattern.sub(_spaces, text)
    return text


def blank_jinja_comments(text: str) -> str:
    """``text`` with only Jinja comments as spaces."""
    return _PATTERNS[0].sub(_spaces, text)


@dataclass(frozen=True)
class TextNode:
    """Literal visible text: ``attribute`` is None for a text node."""

    text: str
    offset: int
    attribute: str | None = None
    tag: str = ""


class _Collector(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.starts = [0] + [i + 1 for i, ch in enumerate(source) if ch == "\n"]
        self.found: list[TextNode] = []
        self.stack: list[str] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.starts[line - 1] + col

    def _skipped(self) -> bool:
        for tag in reversed(self.stack):
            if tag in _TEXT_IN_HEAD:
                return False
            if tag in _NOT_TEXT:
                return True
        return False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._offset()
        raw = self.get_starttag_text() or ""
        for name, value in attrs:
            if name in VISIBLE_ATTRIBUTES and value and any(ch.isalpha() for ch in value):
                m = re.search(re.escape(name) + r"\s*=\s*[\"']?", raw)
                at = start + (m.end() if m else 0)
                self.found.append(TextNode(value.strip(), at, name, tag))
        if tag not in ("img", "br", "hr", "meta", "link", "input") and not raw.endswith("/>"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] == tag:
                del self.stack[index:]
                break

    def handle_data(self, data: str) -> None:
        if self._skipped() or not any(ch.isalpha() for ch in data):
            return
        start = self._offset()
        lead = len(data) - len(data.lstrip())
        self.found.append(TextNode(" ".join(data.split()), start + lead, None,
                                   self.stack[-1] if self.stack else ""))


def texts(source: str) -> Iterator[TextNode]:
    """The literal visible text of a Jinja markup (or plain-text) source."""
    blanked = blank_jinja(source)
    parser = _Collector(blanked)
    parser.feed(blanked)
    parser.close()
    yield from parser.found
