"""Stylesheets read with tinycss2: every declaration with its selector and its place.

The linter reads CSS in three kinds of places: the pack's ``layouts/*.css``,
``<style>``/``<mj-style>`` blocks inside layouts and templates, and
``style="…"`` attributes. :func:`stylesheet_blocks` finds the embedded ones
in a markup file; :func:`declarations` walks a stylesheet (nested at-rules such
as ``@page { @top-left { … } }`` included) and gives each declaration with
the offset of its value in the file, so findings point at the column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import tinycss2
from tinycss2.ast import AtRule, Declaration, Node, QualifiedRule

__all__ = ["Decl", "declarations", "family_names", "inline_declarations", "stylesheet_blocks",
           "url_values"]

_STYLE_BLOCK = re.compile(r"<(style|mj-style)\b[^>]*>(.*?)</\1\s*>", re.DOTALL | re.IGNORECASE)
_GENERIC = frozenset({"serif", "sans-serif", "monospace", "cursive", "fantasy", "system-ui",
                      "ui-serif", "ui-sans-serif", "ui-monospace", "inherit", "initial",
                      "unset", "revert", "emoji", "math"})


@dataclass(frozen=True)
class Decl:
    """One declaration: selector (``""`` in a style attribute), property, value, offset."""

    selector: str
    at_rule: str
    name: str
    value: list[Node]
    offset: int

    @property
    def text(self) -> str:
        """The value as written."""
        return str(tinycss2.serialize(self.value)).strip()


def _offsets(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def _walk(nodes: list[Node], base: int, starts: list[int], selector: str, at: str
          ) -> Iterator[Decl]:
    for node in nodes:
        if isinstance(node, QualifiedRule):
            prelude = tinycss2.serialize(node.prelude).strip()
            body = tinycss2.parse_blocks_contents(node.content) if node.content else []
            yield from _walk(body, base, starts, prelude, at)
        elif isinstance(node, AtRule):
            if node.content is None:
                continue
            name = f"@{node.lower_at_keyword}"
            if node.lower_at_keyword in ("media", "supports", "document"):
                inner = tinycss2.parse_rule_list(node.content)
            else:
                inner = tinycss2.parse_blocks_contents(node.content)
            yield from _walk(inner, base, starts, selector if name != "@font-face" else name,
                             name if at == "" else at)
        elif isinstance(node, Declaration):
            line = node.source_line
            first = next((v for v in node.value if v.type != "whitespace"), None)
            line, col = (first.source_line, first.source_column) if first is not None else \
                (line, node.source_column)
            offset = starts[min(line, len(starts)) - 1] + col - 1
            yield Decl(selector, at, node.lower_name, list(node.value), base + offset)


def declarations(css: str, base: int = 0) -> list[Decl]:
    """Every declaration of the stylesheet ``css``, which starts at offset ``base`` of its file."""
    return list(_sheet(css, base))


@lru_cache(maxsize=256)
def _sheet(css: str, base: int) -> tuple[Decl, ...]:
    rules = tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)
    return tuple(_walk(rules, base, _offsets(css), "", ""))


def inline_declarations(style: str, base: int = 0) -> list[Decl]:
    """The declarations of a ``style`` attribute whose value starts at offset ``base``."""
    return list(_inline(style, base))


@lru_cache(maxsize=4096)
def _inline(style: str, base: int) -> tuple[Decl, ...]:
    # Rendered emails repeat the same few style attributes hundreds of times.
    nodes = tinycss2.parse_blocks_contents(style, skip_comments=True, skip_whitespace=True)
    return tuple(_walk(nodes, base, _offsets(style), "", ""))


def stylesheet_blocks(markup: str) -> Iterator[tuple[int, str]]:
    """``(offset, css)`` of each ``<style>`` and ``<mj-style>`` block of a markup file."""
    for m in _STYLE_BLOCK.finditer(markup):
        yield m.start(2), m.group(2)


def family_names(value: list[Node]) -> list[str]:
    """The font families of a ``font-family`` value, unquoted; ``var(…)`` as written."""
    names: list[str] = []
    current: list[str] = []
    for token in [*value, None]:
        if token is None or (token.type == "literal" and token.value == ","):
            if current:
                names.append(" ".join(current))
            current = []
        elif token.type == "string" or token.type == "ident":
            current.append(token.value)
        elif token.type == "function":
            current.append(tinycss2.serialize([token]))
    return names


def generic(name: str) -> bool:
    """A CSS generic family or keyword (``sans-serif``, ``inherit``)."""
    return name.lower() in _GENERIC


def url_values(value: list[Node]) -> Iterator[str]:
    """Every URL of a value: ``url(x)`` tokens and ``url("x")`` functions."""
    for token in value:
        if token.type == "url":
            yield str(token.value)
        elif token.type == "function" and token.lower_name == "url":
            for arg in token.arguments:
                if arg.type == "string":
                    yield str(arg.value)
        elif token.type == "function":
            yield from url_values(list(token.arguments))
