"""What the linter needs from rendered HTML: images, links, and whether they show."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["Image", "Link", "Page", "parse_html"]

_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})
_SKIPPED = frozenset({"head", "style", "script", "title", "template"})


@dataclass(frozen=True)
class Image:
    """An ``<img>``: its attributes and whether it is hidden."""

    attrs: dict[str, str | None]
    hidden: bool
    line: int

    @property
    def src(self) -> str:
        return (self.attrs.get("src") or "").strip()

    @property
    def pixel(self) -> bool:
        """A 1×1 (or 1-wide) image: a tracking pixel or a spacer."""
        size = (self.attrs.get("width") or "").strip().removesuffix("px"), \
            (self.attrs.get("height") or "").strip().removesuffix("px")
        style = (self.attrs.get("style") or "").replace(" ", "").lower()
        return "1" in size or "width:1px" in style or "height:1px" in style


@dataclass(frozen=True)
class Link:
    """An ``<a href>``: where it goes, its text, whether it is hidden."""

    href: str
    text: str
    hidden: bool
    line: int


@dataclass
class Page:
    """The images and links of a document."""

    images: list[Image] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._open: list[tuple[str, bool]] = []
        self._link: tuple[str, bool, int, list[str]] | None = None

    @property
    def _hidden(self) -> bool:
        return bool(self._open) and self._open[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        hidden = self._hidden or tag in _SKIPPED or "hidden" in attributes or \
            bool(_HIDDEN.search(attributes.get("style") or ""))
        line = self.getpos()[0]
        if tag == "img":
            self.page.images.append(Image(attributes, hidden, line))
            if self._link is not None and (attributes.get("alt") or "").strip():
                self._link[3].append(attributes["alt"] or "")
        if tag in _VOID:
            return
        self._open.append((tag, hidden))
        if tag == "a" and attributes.get("href") is not None:
            self._link = ((attributes.get("href") or "").strip(), hidden, line, [])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break
        if tag == "a" and self._link is not None:
            href, hidden, line, text = self._link
            self.page.links.append(Link(href, " ".join(" ".join(text).split()), hidden, line))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._link is not None and not self._hidden:
            self._link[3].append(data)


def parse_html(html: str) -> Page:
    """Images and links of ``html`` (hidden means inside a hidden or non-rendered element)."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page
