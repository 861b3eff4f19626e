"""Colours in sources: off-palette colours and text/background pairs below WCAG 2.1 AA.

Sources are read as markup after :func:`~ccm.review.lint.sources.prepare_markup`:
palette references become their colour, other Jinja becomes spaces, so
offsets (and lines) are those of the file. Checked:

* CSS: ``.css`` files, ``<style>`` and ``<mj-style>`` blocks, ``style``
  attributes. Colour-bearing properties (``color``, ``background``,
  ``border…``, shadows, ``fill``…) must use palette colours; a rule that sets
  both ``color`` and a background is a pair.
* MJML: colour attributes of ``mj-*`` elements. Pairs are the element's text
  colour on its effective background -- the element's own
  ``container-background-color`` (a button's ``background-color``), else the
  nearest column, section, wrapper or body background -- after the
  ``mj-attributes`` defaults and ``mj-class`` values of the pack layout, as
  MJML applies them. A template's content is placed where the layout has its
  ``{% block content %}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import tinycss2
from tinycss2.color3 import RGBA, parse_color

from ccm.review.lint import css

__all__ = [
    "ColorProblem",
    "MjmlLayout",
    "Palette",
    "contrast_ratio",
    "mjml_layout",
    "scan_source",
]

#: Keywords that are never off-palette (they name no new colour).
_KEYWORDS = frozenset({"transparent", "inherit", "currentcolor"})

_TAG = re.compile(
    r"<(/?)([A-Za-z][\w:-]*)((?:\s+[^\s=/>]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)"
    r"\s*(/?)>"
)
_ATTR = re.compile(r"([^\s=/>]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_ATTRIBUTES = re.compile(r"<mj-attributes\b[^>]*>(.*?)</mj-attributes\s*>", re.DOTALL)
_CONTENT_BLOCK = re.compile(r"\{%-?\s*block\s+content\b")
_SIZE = re.compile(r"^\s*([\d.]+)\s*(px|pt)?\s*$")

#: mj-* elements whose text the contrast check looks at, with MJML's defaults.
_TEXT_ELEMENTS = {
    "mj-text": ("#000000", 13.0),
    "mj-table": ("#000000", 13.0),
    "mj-button": ("#FFFFFF", 13.0),
}
_MJML_BUTTON_BACKGROUND = "#414141"
_CONTAINERS = {
    "mj-column": ("inner-background-color", "background-color"),
    "mj-group": ("background-color",),
    "mj-section": ("background-color",),
    "mj-wrapper": ("background-color",),
    "mj-hero": ("background-color",),
    "mj-body": ("background-color",),
}

Origin = tuple[str, int] | None


@dataclass(frozen=True)
class ColorProblem:
    """One finding of this module: ``rule`` is off-palette-color or low-contrast."""

    rule: str
    file: str
    line: int
    message: str


# --- colours --------------------------------------------------------------------


def _hex(rgba: RGBA) -> str:
    return "#" + "".join(f"{round(c * 255):02X}" for c in (rgba.red, rgba.green, rgba.blue))


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2.1 contrast ratio of two ``#RRGGBB`` colours (1 to 21)."""

    def luminance(color: str) -> float:
        channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


class Palette:
    """A pack palette: names to ``#RRGGBB`` (upper case) and back."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.colors: dict[str, str] = {}
        for name, value in mapping.items():
            parsed = parse_color(str(value))
            if isinstance(parsed, RGBA):
                self.colors[str(name)] = _hex(parsed)
        self.names: dict[str, str] = {}
        for name, value in self.colors.items():
            self.names.setdefault(value, name)

    def describe(self, color: str) -> str:
        """``#14284B (primary)`` or just the colour."""
        name = self.names.get(color)
        return f"{color} ({name})" if name else color

    def nearest(self, color: str) -> str:
        """The closest palette colour, as ``name #RRGGBB`` (for a suggestion)."""
        def distance(item: tuple[str, str]) -> int:
            return sum((int(color[i:i + 2], 16) - int(item[1][i:i + 2], 16)) ** 2
                       for i in (1, 3, 5))

        name, value = min(self.colors.items(), key=distance)
        return f"{name} {value}"


@dataclass(frozen=True)
class _Token:
    written: str
    color: str | None  # "#RRGGBB" when opaque
    alpha: float
    keyword: bool = False


def _tokens(value: str) -> Iterator[_Token]:
    """The colours written in a CSS value (or an MJML attribute value)."""
    for token in tinycss2.parse_component_value_list(value):
        kind = token.type
        if kind == "function" and token.lower_name == "var":
            name = tinycss2.serialize(token.arguments).strip()
            if name.startswith("--color-"):
                # A palette variable the pack does not define (defined ones were substituted).
                yield _Token(f"var({name})", None, 1.0)
            continue
        if kind == "ident" and token.lower_value in _KEYWORDS:
            yield _Token(token.value, None, 1.0, keyword=True)
            continue
        if kind not in ("hash", "function", "ident"):
            continue
        parsed = parse_color(token)
        if isinstance(parsed, RGBA):
            yield _Token(tinycss2.serialize([token]), _hex(parsed), parsed.alpha)
        elif parsed == "currentColor":
            yield _Token(tinycss2.serialize([token]), None, 1.0, keyword=True)


def _solid(value: str) -> str | None:
    """The one opaque colour in ``value`` (e.g. ``1px solid #CCC``), else None."""
    found = [t for t in _tokens(value) if not t.keyword]
    if len(found) == 1 and found[0].color is not None and found[0].alpha == 1:
        return found[0].color
    return None


def _is_color_property(name: str) -> bool:
    n = name.lower()
    return (
        n.startswith("--") or "color" in n
        or n.startswith(("background", "border", "outline", "column-rule", "text-decoration"))
        or n in ("fill", "stroke", "box-shadow", "text-shadow", "bgcolor")
    )


def _px(value: str | None, default: float) -> float:
    if not value:
        return default
    m = _SIZE.match(value)
    if not m:
        return default
    number = float(m.group(1))
    return number * 4 / 3 if m.group(2) == "pt" else number


def _bold(value: str | None) -> bool:
    if not value:
        return False
    v = value.strip().lower()
    return v in ("bold", "bolder") or (v.isdigit() and int(v) >= 700)


def _required(size_px: float, bold: bool) -> tuple[float, str]:
    large = size_px >= 24 or (bold and size_px >= 18.66)
    return (3.0, "large text") if large else (4.5, "normal text")


# --- the scan ---------------------------------------------------------------------


@dataclass
class _Sink:
    file: str
    text: str
    palette: Palette
    pack: str
    #: The page colour behind CSS rules that set no background (PDF), or None.
    page: str | None = None
    problems: list[ColorProblem] = field(default_factory=list)

    def line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def add(self, rule: str, offset: int | None, message: str, *, where: Origin = None) -> None:
        if where is not None:
            self.problems.append(ColorProblem(rule, where[0], where[1], message))
        else:
            self.problems.append(ColorProblem(rule, self.file, self.line(offset or 0), message))

    def check_value(self, prop: str, value: str, offset: int) -> None:
        if not _is_color_property(prop):
            return
        for token in _tokens(value):
            if token.keyword or (token.color is not None and token.alpha == 0):
                continue
            if token.color is None:
                self.add("off-palette-color", offset,
                         f"{prop}: {token.written} is not a colour of the {self.pack} palette")
                continue
            if token.alpha == 1 and token.color in self.palette.names:
                continue
            shown = token.written if token.written.upper() == token.color else \
                f"{token.written} ({token.color})"
            note = f" at {round(token.alpha * 100)}% opacity" if token.alpha != 1 else ""
            self.add("off-palette-color", offset,
                     f"{prop}: {shown}{note} is not in the {self.pack} palette "
                     f"(nearest: {self.palette.nearest(token.color)})")

    def check_pair(self, fg: str, bg: str, size_px: float, bold: bool, offset: int | None,
                   *, where: Origin = None, origins: str = "") -> None:
        ratio = contrast_ratio(fg, bg)
        needed, kind = _required(size_px, bold)
        if ratio >= needed:
            return
        self.add("low-contrast", offset,
                 f"text {self.palette.describe(fg)} on {self.palette.describe(bg)} is "
                 f"{ratio:.2f}:1, below the {needed:g}:1 WCAG 2.1 AA needs for {kind}{origins}",
                 where=where)

    def declarations(self, body: str, base: int) -> list[tuple[str, str, int]]:
        """``(property, value, offset)`` of a style attribute's declarations."""
        return [(d.name, d.text, d.offset) for d in css.inline_declarations(body, base)]

    def rule_pair(self, decls: list[tuple[str, str, int]], *, size: float = 16.0,
                  bold: bool = False) -> None:
        """A text/background pair set in one CSS rule (or one style attribute)."""
        values = {name: (value, offset) for name, value, offset in decls}
        fg = values.get("color")
        bg = values.get("background-color") or values.get("background")
        if fg is None:
            return
        fg_color = _solid(fg[0])
        origins = ""
        if bg is not None and bg[0].strip().lower() not in ("none", "transparent"):
            bg_color = _solid(bg[0])
        elif self.page is not None:
            # Nothing behind this text in the rule: it sits on the page (PDF).
            bg_color, origins = self.page, " (on the page background)"
        else:
            return
        if fg_color is None or bg_color is None:
            return
        size = _px(values.get("font-size", ("", 0))[0], size)
        bold = _bold(values.get("font-weight", ("", 0))[0]) or bold
        self.check_pair(fg_color, bg_color, size, bold, fg[1], origins=origins)

    def css(self, start: int, end: int) -> None:
        """Check the stylesheet at ``text[start:end]``: each value, and each rule's pair."""
        rule: list[tuple[str, str, int]] = []
        key: tuple[str, str] | None = None
        for decl in css.declarations(self.text[start:end], start):
            self.check_value(decl.name, decl.text, decl.offset)
            if (decl.selector, decl.at_rule) != key:
                self.rule_pair(rule)
                rule, key = [], (decl.selector, decl.at_rule)
            rule.append((decl.name, decl.text, decl.offset))
        self.rule_pair(rule)


def _attrs(raw: str, base: int) -> dict[str, tuple[str, int]]:
    """Attribute name -> (value, offset of the value in the file)."""
    out = {}
    for m in _ATTR.finditer(raw):
        value = m.group(2) or ""
        offset = base + (m.start(2) if m.group(2) else m.start())
        if value[:1] in "\"'":
            value, offset = value[1:-1], offset + 1
        out[m.group(1).lower()] = (value, offset)
    return out


# --- MJML -----------------------------------------------------------------------------

_Values = dict[str, tuple[str, Origin]]


@dataclass
class MjmlLayout:
    """What a pack's email layout gives every template: defaults, classes, where content goes."""

    defaults: dict[str, _Values] = field(default_factory=dict)
    classes: dict[str, _Values] = field(default_factory=dict)
    content_stack: list[tuple[str, _Values]] = field(default_factory=list)

    def resolve(self, tag: str, own: _Values) -> _Values:
        """An element's attributes as MJML applies them: mj-all < tag defaults < classes < own."""
        out: _Values = {}
        out.update(self.defaults.get("mj-all", {}))
        out.update(self.defaults.get(tag, {}))
        for name in (own.get("mj-class", ("", None))[0]).split():
            out.update(self.classes.get(name, {}))
        out.update(own)
        return out


def _values(sink: _Sink, attrs: dict[str, tuple[str, int]]) -> _Values:
    return {k: (v.strip(), (sink.file, sink.line(off))) for k, (v, off) in attrs.items()}


def _read_attributes(sink: _Sink, layout: MjmlLayout) -> None:
    for block in _ATTRIBUTES.finditer(sink.text):
        for tag in _TAG.finditer(block.group(1)):
            if tag.group(1):
                continue
            name = tag.group(2).lower()
            attrs = _attrs(tag.group(3), block.start(1) + tag.start(3))
            values = _values(sink, attrs)
            if name == "mj-class":
                cls = values.pop("name", ("", None))[0]
                if cls:
                    layout.classes[cls] = values
            else:
                layout.defaults[name] = values
            _declaration_pair(sink, name, values)


def _declaration_pair(sink: _Sink, tag: str, values: _Values) -> None:
    """A default or class that sets a text colour and its own background in one place."""
    fg = values.get("color")
    bg = values.get("background-color") if tag in ("mj-button", "mj-class") else None
    bg = bg or values.get("container-background-color")
    if fg is None or bg is None or fg[1] is None:
        return
    fg_color, bg_color = _solid(fg[0]), _solid(bg[0])
    if fg_color is None or bg_color is None:
        return
    default_size = _TEXT_ELEMENTS.get(tag, ("", 13.0))[1]
    size = _px(values.get("font-size", ("", None))[0], default_size)
    bold = _bold(values.get("font-weight", ("", None))[0])
    sink.check_pair(fg_color, bg_color, size, bold, None, where=fg[1])


def _where(origin: Origin, base: str, pack: str) -> str:
    if origin is None:
        return "the MJML default"
    file, line = origin
    return f"line {line}" if file == base else f"the {pack} email layout, line {line}"


def _background(stack: list[tuple[str, _Values]]) -> tuple[str | None, Origin]:
    for tag, values in reversed(stack):
        image = values.get("background-url", ("", None))[0]
        if image and tag in ("mj-section", "mj-wrapper", "mj-hero"):
            return None, None  # an image: the colour behind the text is unknown
        for key in _CONTAINERS.get(tag, ()):
            if key in values:
                color = _solid(values[key][0])
                if color is not None:
                    return color, values[key][1]
    return "#FFFFFF", None


def _element(sink: _Sink, tag: str, values: _Values, stack: list[tuple[str, _Values]],
             offset: int) -> None:
    default_color, default_size = _TEXT_ELEMENTS[tag]
    fg_raw = values.get("color")
    fg = _solid(fg_raw[0]) if fg_raw else default_color
    fg_origin = fg_raw[1] if fg_raw else None
    if tag == "mj-button":
        bg_raw = values.get("background-color")
        bg = _solid(bg_raw[0]) if bg_raw else _MJML_BUTTON_BACKGROUND
        bg_origin = bg_raw[1] if bg_raw else None
    elif "container-background-color" in values:
        bg_raw = values["container-background-color"]
        bg, bg_origin = _solid(bg_raw[0]), bg_raw[1]
    else:
        bg, bg_origin = _background(stack)
    if fg is None or bg is None:
        return
    size = _px(values.get("font-size", ("", None))[0], default_size)
    bold = _bold(values.get("font-weight", ("", None))[0])
    if fg_origin is not None and fg_origin == bg_origin:
        sink.check_pair(fg, bg, size, bold, None, where=fg_origin)
        return
    origins = (f" (text colour from {_where(fg_origin, sink.file, sink.pack)}, "
               f"background from {_where(bg_origin, sink.file, sink.pack)})")
    sink.check_pair(fg, bg, size, bold, offset, origins=origins)


def _markup(sink: _Sink, layout: MjmlLayout | None, stack: list[tuple[str, _Values]],
            stop: int | None = None) -> list[tuple[str, _Values]] | None:
    """Walk the tags of ``sink.text``; return the stack at offset ``stop`` if given."""
    text = sink.text
    skip = [(m.start(), m.end()) for m in _ATTRIBUTES.finditer(text)]
    skip += [(start, start + len(sheet)) for start, sheet in css.stylesheet_blocks(text)]
    snapshot = None
    for tag in _TAG.finditer(text):
        if stop is not None and snapshot is None and tag.start() >= stop:
            snapshot = list(stack)
        if any(a <= tag.start() < b for a, b in skip):
            continue
        closing, name, raw, self_closing = tag.group(1), tag.group(2).lower(), tag.group(3), \
            tag.group(4)
        if closing:
            if name.startswith("mj-"):
                for index in range(len(stack) - 1, -1, -1):
                    if stack[index][0] == name:
                        del stack[index:]
                        break
            continue
        attrs = _attrs(raw, tag.start(3))
        for key, (value, offset) in attrs.items():
            if key == "style":
                decls = sink.declarations(value, offset)
                for prop, val, off in decls:
                    sink.check_value(prop, val, off)
                _inline_pair(sink, decls, stack)
            elif (name.startswith("mj-") or key in ("bgcolor", "color", "fill", "stroke")) \
                    and _is_color_property(key):
                sink.check_value(key, value, offset)
        if not name.startswith("mj-") or layout is None:
            continue
        values = layout.resolve(name, _values(sink, attrs))
        if name in _TEXT_ELEMENTS:
            _element(sink, name, values, stack, tag.start())
        if not self_closing:
            stack.append((name, values))
    if stop is not None and snapshot is None:
        snapshot = list(stack)
    return snapshot


def _inline_pair(sink: _Sink, decls: list[tuple[str, str, int]],
                 stack: list[tuple[str, _Values]]) -> None:
    names = {d[0] for d in decls}
    if "color" not in names:
        return
    if names & {"background", "background-color"} or not stack:
        sink.rule_pair(decls)
        return
    top, values = stack[-1]
    if top not in _TEXT_ELEMENTS:
        return
    fg = _solid(next(v for n, v, _ in decls if n == "color"))
    if top == "mj-button":
        raw = values.get("background-color")
        bg = _solid(raw[0]) if raw else _MJML_BUTTON_BACKGROUND
    elif "container-background-color" in values:
        bg = _solid(values["container-background-color"][0])
    else:
        bg = _background(stack)[0]
    if fg is None or bg is None:
        return
    size = dict((n, v) for n, v, _ in decls).get("font-size") or \
        values.get("font-size", ("", None))[0]
    bold = _bold(dict((n, v) for n, v, _ in decls).get("font-weight")) or \
        _bold(values.get("font-weight", ("", None))[0])
    offset = next(off for n, _, off in decls if n == "color")
    sink.check_pair(fg, bg, _px(size, _TEXT_ELEMENTS[top][1]), bold, offset)


def mjml_layout(file: str, original: str, prepared: str, palette: Palette, pack: str
                ) -> tuple[MjmlLayout, list[ColorProblem]]:
    """Read a pack's email layout: defaults, classes, the content position; its own problems."""
    sink = _Sink(file, prepared, palette, pack)
    layout = MjmlLayout()
    _read_attributes(sink, layout)
    for start, sheet in css.stylesheet_blocks(prepared):
        sink.css(start, start + len(sheet))
    # Jinja statements are blanked in ``prepared``: the block is found in the original.
    stop = _CONTENT_BLOCK.search(original)
    layout.content_stack = _markup(sink, layout, [], stop.start() if stop else None) or []
    return layout, sink.problems


def scan_source(file: str, prepared: str, palette: Palette, pack: str,
                layout: MjmlLayout | None = None, *, page: str | None = None
                ) -> list[ColorProblem]:
    """Colour problems of one CSS, HTML or template MJML source (already prepared).

    ``layout`` is the pack's email layout for a template's MJML source: its
    defaults and classes apply, and the content starts inside its column.
    ``page`` is the colour behind CSS rules that set a text colour and no
    background (a PDF page): such rules are checked against it.
    """
    sink = _Sink(file, prepared, palette, pack, page)
    if file.endswith(".css"):
        sink.css(0, len(prepared))
        return sink.problems
    for start, sheet in css.stylesheet_blocks(prepared):
        sink.css(start, start + len(sheet))
    _markup(sink, layout, list(layout.content_stack) if layout else [])
    return sink.problems
