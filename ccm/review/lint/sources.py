"""Reading sources and finding places in them: where a piece of rendered text came from.

Rendered output has no line numbers, so a finding about it is mapped back by
searching the sources that produced it (template, layout, catalogs,
``pack.yaml``) for the offending text. Searches skip what cannot be shown:
Jinja comments, and in ``.po`` files everything but the translations.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from ccm._files import read_contained
from ccm.errors import UnsafeFileError

__all__ = [
    "Place",
    "blank",
    "json_path_line",
    "line_at",
    "locate",
    "place_at",
    "prepare_markup",
    "read_text",
    "searchable",
    "yaml_key_line",
]

_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_JINJA_EXPR = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_JINJA_STMT = re.compile(r"\{%.*?%\}", re.DOTALL)
_PO_KEEP = re.compile(r'^\s*(msgstr(\[\d+\])?\s+)?"')


class Place(NamedTuple):
    """Where a finding points: a file, a 1-based line and a 1-based column."""

    file: str
    line: int
    column: int = 1


def read_text(path: str | os.PathLike[str]) -> str:
    """The file's text (cached until it changes on disk); empty when unreadable."""
    p = Path(path)
    try:
        stat = p.stat()
    except OSError:
        return ""
    return _read(str(p), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=512)
def _read(path: str, mtime_ns: int, size: int) -> str:
    try:
        # Contained in the file's folder: a symlink out of it reads as empty
        # (loading the pack or template reports it).
        return read_contained(path, Path(path).parent).decode("utf-8", errors="replace")
    except (OSError, UnsafeFileError):
        return ""


def blank(text: str, start: int, end: int, replacement: str = "") -> str:
    """``text`` with ``[start, end)`` replaced, padded with spaces to the same length.

    Newlines inside the span are kept, so offsets and line numbers stay valid.
    """
    span = text[start:end]
    newlines = span.count("\n")
    body = replacement[: max(0, len(span) - newlines)]
    filler = body + " " * (len(span) - newlines - len(body)) + "\n" * newlines
    return text[:start] + filler + text[end:]


def _blank_all(text: str, pattern: re.Pattern[str]) -> str:
    out = []
    last = 0
    for m in pattern.finditer(text):
        out.append(text[last:m.start()])
        span = m.group()
        out.append("".join(ch if ch == "\n" else " " for ch in span))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _po_translations(text: str) -> str:
    """Keep only ``msgstr`` lines (and their continuations) of a ``.po`` file."""
    keep = False
    lines = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("msgstr"):
            keep = True
        elif not stripped.startswith('"'):
            keep = False
        lines.append(line if keep and _PO_KEEP.match(line) else "")
    return "\n".join(lines)


def searchable(path: str | os.PathLike[str]) -> str:
    """The text of ``path`` with what is never shown blanked (same offsets and lines)."""
    name = str(path)
    text = read_text(path)
    if name.endswith(".po"):
        return _po_translations(text)
    if name.endswith(".j2"):
        return _blank_all(text, _JINJA_COMMENT)
    return text


def prepare_markup(text: str, palette: Mapping[str, str]) -> str:
    """A Jinja source as plain markup for colour analysis, with the same offsets.

    Palette references (``{{ p.primary }}`` after ``{% set p = brand.palette %}``,
    ``{{ brand.palette.primary }}``, ``{{ brand.palette["primary"] }}`` and
    ``var(--color-primary)``) become the colour; every other Jinja expression,
    statement and comment becomes spaces.
    """
    aliases = {"brand.palette"} | set(
        re.findall(r"\{%-?\s*set\s+(\w+)\s*=\s*brand\.palette\s*-?%\}", text)
    )
    alias = "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True))
    ref = re.compile(
        r"\{\{-?\s*(?:" + alias + r")(?:\.(\w+)|\[\s*['\"](\w+)['\"]\s*\])\s*-?\}\}"
        r"|var\(\s*--color-([\w-]+)\s*\)"
    )
    out = text
    for m in reversed(list(ref.finditer(text))):
        key = m.group(1) or m.group(2) or m.group(3)
        if key in palette:
            out = blank(out, m.start(), m.end(), palette[key])
    out = _blank_all(out, _JINJA_COMMENT)
    out = _blank_all(out, _JINJA_EXPR)
    return _blank_all(out, _JINJA_STMT)


def line_at(text: str, offset: int) -> int:
    """The 1-based line of ``offset`` in ``text``."""
    return text.count("\n", 0, max(0, offset)) + 1


def place_at(path: str | os.PathLike[str], text: str, offset: int) -> Place:
    """The :class:`Place` of ``offset`` in ``text`` (the content of ``path``)."""
    offset = max(0, offset)
    return Place(str(path), line_at(text, offset), offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _pattern(needle: str, *, case: bool, word: bool) -> re.Pattern[str] | None:
    parts = needle.split()
    if not parts:
        return None
    body = r"\s+".join(re.escape(p) for p in parts)
    if word:
        body = r"(?<!\w)" + body + r"(?!\w)"
    return re.compile(body, 0 if case else re.IGNORECASE)


def locate(
    needle: str,
    paths: Iterable[str | os.PathLike[str]],
    *,
    case: bool = False,
    word: bool = True,
) -> Place | None:
    """The first place among ``paths`` whose visible text contains ``needle``.

    Whitespace in ``needle`` matches any run of whitespace (sources wrap
    lines); ``word`` requires word boundaries at both ends.
    """
    pattern = _pattern(needle, case=case, word=word)
    if pattern is None:
        return None
    for path in paths:
        text = searchable(path)
        m = pattern.search(text)
        if m:
            return place_at(path, text, m.start())
    return None


def locate_phrase(
    words: Sequence[str], paths: Sequence[str | os.PathLike[str]], *, shortest: int = 2
) -> Place | None:
    """Where a sentence starts: its first words, fewer and fewer, down to ``shortest``."""
    for n in range(min(len(words), 6), shortest - 1, -1):
        found = locate(" ".join(words[:n]), paths)
        if found:
            return found
    return None


_JSON_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


def json_path_line(path: str | os.PathLike[str], json_path: str) -> int:
    """The line of the value a JSON path (``$.data.items[2].amount``) names, roughly.

    Keys are searched in order from the start of the file, so the line is the
    last key found; array indexes are skipped.
    """
    text = read_text(path)
    pos, line = 0, 1
    for m in _JSON_SEGMENT.finditer(json_path):
        key = m.group(1) or m.group(3)
        if key is None:
            continue
        found = re.compile(re.escape(json.dumps(key)) + r"\s*:").search(text, pos)
        if found is None:
            break
        pos = found.end()
        line = line_at(text, found.start())
    return line


def yaml_key_line(path: str | os.PathLike[str], dotted: str) -> int:
    """The line of a nested key (``security.pdf_password``) in a block-style YAML file."""
    lines = read_text(path).split("\n")
    start, indent, found = 0, -1, 1
    for key in dotted.split("."):
        pattern = re.compile(r"^(\s*)(?:" + re.escape(key) + r"|['\"]" + re.escape(key)
                             + r"['\"])\s*:")
        for index in range(start, len(lines)):
            line = lines[index]
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            depth = len(line) - len(line.lstrip())
            if depth <= indent:
                return found
            m = pattern.match(line)
            if m and len(m.group(1)) > indent:
                start, indent, found = index + 1, len(m.group(1)), index + 1
                break
        else:
            return found
    return found
