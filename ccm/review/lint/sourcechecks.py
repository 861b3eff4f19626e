"""Checks on what a designer wrote in one source: text, fonts, assets, brand, colour literals.

One pass over a template or layout (or a pack stylesheet) finds literal
text that is not wrapped for translation, money, numbers and dates written
for one locale, the brand's name or logo written literally, another pack's
name, host or colours, fonts that are not the pack's, assets that do not
come from the pack, and palette colours written as literals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import tinycss2

from ccm._files import unlisted_name
from ccm.review.lint import css
from ccm.review.lint.findings import Edit
from ccm.review.lint.markup import TextNode, blank_jinja, blank_jinja_comments, texts
from ccm.review.lint.sources import Place, place_at, read_text
from ccm.review.lint.translations import message_ids
from ccm.review.lint.wording import currency_problems, format_problems

__all__ = ["Brand", "SourceProblem", "check_source", "url_problem"]

_ATTR = re.compile(r"\b(src|href|background|font-family|style)\s*=\s*\"([^\"]*)\"",
                   re.IGNORECASE)
_FONT_SET = re.compile(r"\{%-?\s*set\s+\w*font\w*\s*=(.*?)-?%\}", re.DOTALL)
_STRING = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_HEX = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
_COLOR_ATTRS = re.compile(r"\b(color|background-color|container-background-color|bgcolor|"
                          r"border-color|inner-background)\s*=\s*\"(#[0-9a-fA-F]{3,6})\"")


@dataclass(frozen=True)
class Brand:
    """What the checks know of a pack: its name, palette, fonts, hosts, logo."""

    id: str
    name: str
    palette: Mapping[str, str]
    families: frozenset[str] = frozenset()
    font_roles: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    assets_url: str = ""
    logo: str = ""
    root: Path | None = None
    others: tuple[Brand, ...] = field(default=())

    def palette_name(self, color: str) -> str | None:
        """The palette name of a colour literal (``#14284b`` -> ``primary``), or None."""
        wanted = _full(color)
        for name, value in self.palette.items():
            if _full(value) == wanted:
                return name
        return None


def _full(color: str) -> str:
    c = color.lower().lstrip("#")
    return "#" + ("".join(ch * 2 for ch in c) if len(c) == 3 else c)


@dataclass(frozen=True)
class SourceProblem:
    """A finding before it is made: rule, place, message, an optional mechanical edit."""

    rule: str
    place: Place
    message: str
    edit: Edit | None = None


def url_problem(url: str, brand: Brand, *, email: bool) -> str | None:
    """Why an asset URL does not come from the pack (None when it does)."""
    low = url.strip().lower()
    if not low or low.startswith(("data:", "cid:", "#")):
        return None
    if low.startswith("file:"):
        return f"{url[:100]!r} is a file: reference"
    if low.startswith("http:"):
        return f"{url[:100]!r} is plain http"
    if low.startswith(("https:", "//")):
        host = urlsplit(url if not low.startswith("//") else "https:" + url).hostname or ""
        if brand.assets_url and low.startswith(brand.assets_url.lower().rstrip("/") + "/"):
            return None
        if host in brand.hosts:
            return None
        return f"{url[:100]!r} is hot-linked from {host}, not the pack's assets"
    if email:
        return f"{url[:100]!r} is a relative path: emails need the pack's assets_url"
    path = url.split("?")[0].split("#")[0]
    if brand.root is not None and not (brand.root / path).resolve().is_relative_to(
            brand.root.resolve()):
        return f"{url[:100]!r} leaves the pack folder"
    if unlisted_name(path):
        return f"{url[:100]!r} is a hidden file, which the renderer refuses (approval does " \
            "not cover it)"
    return None


class _Scan:
    def __init__(self, path: Path, brand: Brand, channel: str, locales: Sequence[str]) -> None:
        self.path = path
        self.brand = brand
        self.channel = channel
        self.text = read_text(path)
        self.css_file = path.suffix == ".css"
        self.blanked = self.text if self.css_file else blank_jinja(self.text)
        self.out: list[SourceProblem] = []

    def add(self, rule: str, offset: int, message: str, edit: Edit | None = None) -> None:
        self.out.append(SourceProblem(rule, place_at(self.path, self.text, offset), message,
                                      edit))

    def line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    # -- text --------------------------------------------------------------------------

    def texts(self) -> None:
        names = {b.name for b in self.brand.others}
        for node in texts(self.text):
            if node.text == self.brand.name:
                self.add("brand-literal", node.offset,
                         f"the brand name {node.text!r} is written literally",
                         Edit(self.line(node.offset), node.text, "{{ brand.name }}"))
                continue
            if node.text in names:
                self.add("foreign-brand", node.offset, f"{node.text!r} is another pack's name")
                continue
            self._words(node.text, node.offset)
            self._untranslated(node)

    def _untranslated(self, node: TextNode) -> None:
        what = f"the {node.attribute} text" if node.attribute else "the text"
        edit = None
        raw = self.text[node.offset:node.offset + len(node.text)]
        if raw == node.text and '"' not in raw and "%" not in raw:
            edit = Edit(self.line(node.offset), raw, '{{ _("' + raw + '") }}')
        self.add("untranslated-text", node.offset,
                 f"{what} {node.text[:60]!r} is not wrapped for translation", edit)

    def _words(self, text: str, offset: int, exact: bool = True) -> None:
        """Brand names and locale formats in a piece of text that starts at ``offset``."""
        for rule, at, message in format_problems(text):
            self.add(rule, offset + (at if exact else 0), message)
        own = re.search(r"(?<!\w)" + re.escape(self.brand.name) + r"(?!\w)", text)
        if own and text != self.brand.name:
            self.add("brand-literal", offset + (own.start() if exact else 0),
                     f"the brand name {self.brand.name!r} is written literally; use a "
                     "placeholder filled with {{ brand.name }}")
        for other in self.brand.others:
            m = re.search(r"(?<!\w)" + re.escape(other.name) + r"(?!\w)", text)
            if m:
                self.add("foreign-brand", offset + (m.start() if exact else 0),
                         f"{other.name!r} is the {other.id} pack's name")

    def currency(self) -> None:
        """Currency symbols next to expressions (``£{{ amount }}``) anywhere in the source."""
        source = self.text if self.css_file else blank_jinja_comments(self.text)
        for at, message in currency_problems(source):
            self.add("hardcoded-currency", at, message)

    def msgids(self) -> None:
        for line, msgid in message_ids(self.path):
            ids = msgid if isinstance(msgid, tuple) else (msgid,)
            for one in ids:
                start = self._find(one, line)
                self._words(one, start, exact=self.text[start:start + len(one)] == one)

    def _find(self, needle: str, line: int) -> int:
        head = sum(len(row) + 1 for row in self.text.split("\n")[:max(0, line - 1)])
        found = self.text.find(needle[:40], head)
        return found if found >= 0 else head

    # -- foreign packs in the raw source -------------------------------------------------

    def foreign(self) -> None:
        for other in self.brand.others:
            for host in other.hosts:
                for m in re.finditer(re.escape(host), self.blanked):
                    self.add("foreign-brand", m.start(), f"{host!r} is the {other.id} pack's host")
        own = {_full(v) for v in self.brand.palette.values()}
        theirs = {_full(v): (o.id, n) for o in self.brand.others for n, v in o.palette.items()}
        for m in _HEX.finditer(self.blanked):
            full = _full(m.group())
            if full not in own and full in theirs:
                self.add("foreign-brand", m.start(),
                         f"{m.group()} is the {theirs[full][0]} pack's {theirs[full][1]} colour")

    # -- attributes ----------------------------------------------------------------------

    def attributes(self) -> None:
        if self.css_file:
            return
        for m in _ATTR.finditer(self.blanked):
            name, value, start = m.group(1).lower(), m.group(2), m.start(2)
            if not value.strip():
                continue
            if name == "font-family":
                self._families(css.family_names(list(
                    tinycss2.parse_component_value_list(value))), start)
            elif name == "style":
                for decl in css.inline_declarations(value, start):
                    self._declaration(decl)
            elif name in ("src", "background") or (name == "href" and self._asset_link(m)):
                self._asset(value.strip(), start)
        for m in _FONT_SET.finditer(self.text):
            for literal in _STRING.finditer(m.group(1)):
                if m.group(1)[:literal.start()].rstrip().endswith(("==", "!=", " in")):
                    continue  # a condition, not a font list
                value = literal.group(1) if literal.group(1) is not None else literal.group(2)
                self._families(css.family_names(list(
                    tinycss2.parse_component_value_list(value))), m.start(1) + literal.start())
        for m in _COLOR_ATTRS.finditer(self.blanked):
            self._color_literal(m.group(2), m.start(2))

    def _asset_link(self, m: re.Match[str]) -> bool:
        tag_start = self.blanked.rfind("<", 0, m.start())
        tag = self.blanked[tag_start:m.start()].lower()
        return tag.startswith("<link") or tag.startswith("<mj-font")

    def _asset(self, url: str, offset: int) -> None:
        problem = url_problem(url, self.brand, email=self.channel == "email")
        logo = Path(self.brand.logo).stem if self.brand.logo else ""
        if logo and logo in url and problem is None:
            self.add("brand-literal", offset, f"the logo {url[:80]!r} is referred to literally",
                     Edit(self.line(offset), url, "{{ brand.logo }}"))
        elif problem:
            self.add("asset-not-in-pack", offset, problem)

    # -- CSS -----------------------------------------------------------------------------

    def stylesheets(self) -> None:
        blocks = [(0, self.blanked)] if self.css_file else list(
            css.stylesheet_blocks(self.blanked))
        for base, sheet in blocks:
            for decl in css.declarations(sheet, base):
                self._declaration(decl)

    def _declaration(self, decl: css.Decl) -> None:
        if decl.name == "font-family" and decl.at_rule != "@font-face":
            self._families(css.family_names(decl.value), decl.offset)
        elif decl.name == "content":
            for token in decl.value:
                if token.type == "string" and any(ch.isalpha() for ch in token.value):
                    self.add("untranslated-text", decl.offset,
                             f"the CSS content {token.value[:60]!r} is not from the catalog; "
                             "pass a translated string in from the template")
        for url in css.url_values(decl.value):
            if decl.at_rule == "@font-face" and decl.name == "src":
                self._font_file(url, decl.offset)
            else:
                self._asset(url, decl.offset)
        for token in decl.value:
            if token.type == "hash" and _HEX.fullmatch("#" + token.value):
                at = self.text.find("#" + token.value, decl.offset)
                self._color_literal("#" + token.value, at if at >= 0 else decl.offset)

    def _font_file(self, url: str, offset: int) -> None:
        if not url.strip():
            return  # written by the layout from pack.yaml's fonts
        problem = url_problem(url, self.brand, email=False)
        if problem:
            self.add("asset-not-in-pack", offset, f"font {problem}")
        elif self.brand.root is not None and not url.startswith(("data:", "https:")) and \
                not (self.brand.root / url).is_file():
            self.add("font-not-embeddable", offset,
                     f"@font-face src {url!r} is not a file of the pack")

    def _families(self, names: list[str], offset: int) -> None:
        for name in names:
            if name.startswith("var("):
                role = name[4:-1].strip().removeprefix("--font-")
                if name.startswith("var(--font-") and role not in self.brand.font_roles:
                    self.add("font-not-in-pack", offset,
                             f"{name} is not a font role of the {self.brand.id} pack")
                continue
            if css.generic(name) or name.lower() in self.brand.families:
                continue
            self.add("font-not-in-pack", offset,
                     f"font {name!r} is neither a {self.brand.id} font nor one of its declared "
                     "fallbacks")

    def _color_literal(self, color: str, offset: int) -> None:
        name = self.brand.palette_name(color)
        if name is None:
            return
        token = f"var(--color-{name})" if self.css_file else f"{{{{ brand.palette.{name} }}}}"
        self.add("color-literal", offset, f"{color} is the palette's {name!r} written as a "
                 f"literal; write {token}", Edit(self.line(offset), color, token))


def check_source(path: Path, brand: Brand, channel: str, locales: Sequence[str] = ()
                 ) -> Iterator[SourceProblem]:
    """Every problem :mod:`sourcechecks` finds in one source file."""
    scan = _Scan(path, brand, channel, locales)
    if not scan.css_file:
        scan.texts()
        scan.msgids()
        scan.currency()
    scan.foreign()
    scan.attributes()
    scan.stylesheets()
    yield from scan.out
