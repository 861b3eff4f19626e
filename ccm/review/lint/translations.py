"""Message ids used in Jinja sources that a catalog does not translate."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract

from ccm.render.i18n import DOMAIN
from ccm.review.lint.sources import read_text

__all__ = ["catalog_entries", "catalog_file", "message_ids", "untranslated"]

_OPTIONS = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}

MsgId = str | tuple[str, ...]


def message_ids(path: Path) -> list[tuple[int, MsgId]]:
    """``(line, msgid)`` of every translatable string in a Jinja source (plural: a tuple)."""
    text = read_text(path)
    return _message_ids(str(path), text)


@lru_cache(maxsize=256)
def _message_ids(path: str, text: str) -> list[tuple[int, MsgId]]:
    import io

    out: list[tuple[int, MsgId]] = []
    found = extract(babel_extract, io.BytesIO(text.encode("utf-8")),  # type: ignore[arg-type]
                    keywords=DEFAULT_KEYWORDS, options=_OPTIONS)
    try:
        for lineno, message, _comments, _context in found:
            if message:
                out.append((lineno, message))
    except ValueError:
        # Jinja's lexer reading a literal Python refuses (an integer of thousands of
        # digits); babel_extract skips syntax errors only. The template's compile
        # reports it with its file and line.
        return []
    return out


def catalog_file(root: Path, locale: str) -> Path | None:
    """The ``.po`` file the engine reads for ``locale`` under ``root`` (exact, then language)."""
    for name in (locale, locale.split("_")[0]):
        candidate = root / "locales" / name / "LC_MESSAGES" / f"{DOMAIN}.po"
        if candidate.is_file():
            return candidate
    return None


def _catalog(path: Path, locale: str) -> Catalog | None:
    text = read_text(path)
    return _parse(str(path), locale, text)


@lru_cache(maxsize=128)
def _parse(path: str, locale: str, text: str) -> Catalog | None:
    import io

    try:
        return read_po(io.BytesIO(text.encode("utf-8")), locale=locale)
    except Exception:  # an invalid catalog is a render error, reported when rendering
        return None


def catalog_entries(path: Path, locale: str
                    ) -> list[tuple[MsgId, tuple[str, ...], bool, int]]:
    """``(msgid, msgstr forms, fuzzy, line)`` of every entry of the ``.po`` file ``path``."""
    catalog = _catalog(path, locale)
    if catalog is None:
        return []
    out = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        msgid: MsgId = message.id if isinstance(message.id, str) else tuple(message.id)
        out.append((msgid, tuple(str(s or "") for s in strings), bool(message.fuzzy),
                    int(message.lineno or 1)))
    return out


def _translated(catalogs: Sequence[Catalog], msgid: MsgId) -> bool:
    key = msgid[0] if isinstance(msgid, tuple) else msgid
    for catalog in catalogs:
        message = catalog.get(key)
        if message is None or message.fuzzy:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if strings and all(strings):
            return True
    return False


def untranslated(path: Path, roots: Sequence[Path], locale: str) -> list[tuple[int, str]]:
    """``(line, msgid)`` used in ``path`` that no catalog under ``roots`` translates for ``locale``.

    Roots are searched like the engine does (template catalog first, then the
    pack's); a fuzzy entry does not count, the engine skips those too.
    """
    catalogs = []
    for root in roots:
        file = catalog_file(root, locale)
        if file is not None:
            catalog = _catalog(file, locale)
            if catalog is not None:
                catalogs.append(catalog)
    out = []
    for line, msgid in message_ids(path):
        if not _translated(catalogs, msgid):
            out.append((line, msgid[0] if isinstance(msgid, tuple) else msgid))
    return out
