"""The text a reader actually sees in rendered HTML.

Text is hidden when it, or an element around it, has ``display:none``,
``visibility:hidden``, ``opacity:0``, a zero font size, a zero width or
height, or a text colour the same as its background (white on white).
Styles come from ``style`` attributes and from class rules in ``<style>``
blocks (and, for a PDF, the pack's stylesheet), read with tinycss2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser

from tinycss2.color3 import RGBA, parse_color

from ccm.review.lint import css

__all__ = ["Visible", "visible_text"]

_SKIPPED = frozenset({"head", "style", "script", "title", "template"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})
_ZERO = re.compile(r"^\s*0(?:\.0+)?(?:px|pt|em|rem|%)?\s*(?:!important)?\s*$")
_CLASS = re.compile(r"\.([\w-]+)\s*$")


@dataclass(frozen=True)
class Visible:
    """The visible text, and the text hidden by CSS (for naming what hid it)."""

    text: str
    hidden: str


@lru_cache(maxsize=1024)
def _color(value: str) -> tuple[int, int, int] | None:
    import tinycss2

    for token in tinycss2.parse_component_value_list(value):
        parsed = parse_color(token)
        if isinstance(parsed, RGBA) and parsed.alpha > 0.5:
            return (round(parsed.red * 255), round(parsed.green * 255), round(parsed.blue * 255))
    return None


def _class_rules(sheets: list[str]) -> dict[str, dict[str, str]]:
    rules: dict[str, dict[str, str]] = {}
    for sheet in sheets:
        for decl in css.declarations(sheet):
            if decl.at_rule:
                continue
            for selector in decl.selector.split(","):
                m = _CLASS.search(selector.strip())
                if m:
                    rules.setdefault(m.group(1), {})[decl.name] = decl.text
    return rules


def _hides(style: Mapping[str, str]) -> bool:
    get = {k: v.lower().replace("!important", "").strip() for k, v in style.items()}
    if get.get("display") == "none" or get.get("visibility") == "hidden":
        return True
    if _ZERO.match(get.get("opacity", "1")):
        return True
    return any(_ZERO.match(get.get(p, "1px")) for p in ("height", "max-height", "width",
                                                      "max-width")) and \
        get.get("overflow") == "hidden"


class _Parser(HTMLParser):
    def __init__(self, classes: dict[str, dict[str, str]], page: tuple[int, int, int]) -> None:
        super().__init__(convert_charrefs=True)
        self.classes = classes
        #: (tag, hidden, colour, background, zero font size) of each open element.
        self.stack: list[tuple[str, bool, tuple[int, int, int], tuple[int, int, int], bool]] = [
            ("#root", False, (0, 0, 0), page, False)]
        self.visible: list[str] = []
        self.hidden: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        style: dict[str, str] = {}
        for cls in (a.get("class") or "").split():
            style.update(self.classes.get(cls, {}))
        for decl in css.inline_declarations(a.get("style") or ""):
            style[decl.name] = decl.text
        _, hidden, color, background, zero = self.stack[-1]
        hidden = hidden or tag in _SKIPPED or "hidden" in a or _hides(style)
        if "font-size" in style:  # MJML zeroes it on wrappers and sets it again inside
            zero = bool(_ZERO.match(style["font-size"].replace("!important", "")))
        color = _color(style.get("color") or a.get("color") or "") or color
        bg_value = style.get("background-color") or style.get("background") or \
            a.get("bgcolor") or ""
        background = _color(bg_value) or background
        if tag in _VOID:
            if tag == "br":
                self.visible.append("\n")
            return
        self.stack.append((tag, hidden, color, background, zero))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break
        self.visible.append("\n")

    def handle_data(self, data: str) -> None:
        _, hidden, color, background, zero = self.stack[-1]
        same = sum(abs(x - y) for x, y in zip(color, background, strict=True)) < 24
        (self.hidden if hidden or same or zero else self.visible).append(data)


def visible_text(html: str, stylesheets: list[str] | None = None,
                 page: str = "#ffffff") -> Visible:
    """What is visible of ``html``, and what is there but hidden."""
    sheets = [sheet for _, sheet in css.stylesheet_blocks(html)] + list(stylesheets or ())
    parser = _Parser(_class_rules(sheets), _color(page) or (255, 255, 255))
    parser.feed(html)
    parser.close()
    return Visible(" ".join("".join(parser.visible).split()),
                   " ".join(" ".join(parser.hidden).split()))
