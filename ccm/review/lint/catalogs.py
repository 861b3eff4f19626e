"""Catalog completeness: every entry translated, not copied through, same placeholders."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ccm.review.lint.sources import Place, read_text
from ccm.review.lint.translations import catalog_entries

__all__ = ["CatalogProblem", "check_catalog", "placeholders"]

_PLACEHOLDER = re.compile(r"%\((\w+)\)[sdifr]|%[sdif]|\{\{\s*(\w+)\s*\}\}|\{(\w+)\}")


@dataclass(frozen=True)
class CatalogProblem:
    """A problem with one catalog entry, at its ``msgstr`` line."""

    rule: str
    place: Place
    message: str


def placeholders(text: str) -> Counter[str]:
    """The placeholders of a message (``%(name)s``, ``%s``, ``{{ name }}``, ``{name}``)."""
    found: Counter[str] = Counter()
    for m in _PLACEHOLDER.finditer(text):
        found[m.group(1) or m.group(2) or m.group(3) or m.group(0)] += 1
    return found


def _copied_ok(msgid: str, acronyms: frozenset[str]) -> bool:
    """A msgid that is the same in every language: an acronym, a placeholder, a number."""
    words = re.findall(r"[^\W\d_]+", _PLACEHOLDER.sub(" ", msgid))
    return all(w.isupper() or w in acronyms for w in words)


def _msgstr_place(path: Path, lineno: int) -> Place:
    lines = read_text(path).split("\n")
    for index in range(max(0, lineno - 1), min(len(lines), lineno + 12)):
        if lines[index].lstrip().startswith("msgstr"):
            return Place(str(path), index + 1, lines[index].index("msgstr") + 1)
    return Place(str(path), lineno)


def check_catalog(path: Path, locale: str, acronyms: frozenset[str] = frozenset()
                  ) -> Iterator[CatalogProblem]:
    """Entries of ``path`` (a non-source locale) that are empty, fuzzy, copied or mismatched."""
    for msgid, strings, fuzzy, lineno in catalog_entries(path, locale):
        ids: tuple[str, ...] = msgid if isinstance(msgid, tuple) else (msgid,)
        place = _msgstr_place(path, lineno)
        shown = ids[0][:60]
        if fuzzy or not strings or not all(strings):
            state = "fuzzy" if fuzzy else "untranslated"
            yield CatalogProblem("catalog-incomplete", place,
                                 f"{shown!r} is {state} in the {locale} catalog")
            continue
        if any(s == ids[0] for s in strings) and not _copied_ok(ids[0], acronyms):
            yield CatalogProblem("catalog-incomplete", place,
                                 f"{shown!r} is copied through untranslated in the {locale} "
                                 "catalog")
            continue
        yield from _placeholders(ids, strings, place, locale)


def _placeholders(ids: tuple[str, ...], strings: tuple[str, ...], place: Place, locale: str
                  ) -> Iterator[CatalogProblem]:
    wanted = placeholders(ids[0])
    if len(ids) == 1:
        for text in strings:
            got = placeholders(text)
            if got != wanted:
                yield CatalogProblem("placeholder-mismatch", place, _mismatch(
                    ids[0], wanted, got, locale))
        return
    # Plural forms: each form may drop the count, but no form may invent a placeholder.
    allowed = set(wanted) | set(placeholders(ids[1]))
    for text in strings:
        got = placeholders(text)
        if set(got) - allowed:
            yield CatalogProblem("placeholder-mismatch", place, _mismatch(
                ids[0], wanted, got, locale))


def _mismatch(msgid: str, wanted: Counter[str], got: Counter[str], locale: str) -> str:
    missing = sorted(set(wanted) - set(got))
    extra = sorted(set(got) - set(wanted))
    parts = []
    if missing:
        parts.append(f"lacks {', '.join(missing)}")
    if extra:
        parts.append(f"adds {', '.join(extra)}")
    if not parts:
        parts.append("repeats a placeholder a different number of times")
    return f"the {locale} translation of {msgid[:60]!r} {' and '.join(parts)}"

