"""Locale formatting (Babel) and gettext catalogs read from ``.po`` files.

Filters take the locale and timezone from the render context, so one
environment serves every locale. Catalogs are compiled in memory when a pack
or template is loaded: designers commit ``.po`` files only.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError, dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import pass_context
from jinja2.runtime import Context

from ccm._files import read_contained
from ccm.errors import RenderError, TemplateError

__all__ = ["FILTERS", "catalog_for", "load_po"]

DOMAIN = "messages"
#: What a locale identifier looks like (``de_DE``, ``sr-Latn-RS``), to name one in an error.
_LOCALE_NAME = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8}){0,3}")


@lru_cache(maxsize=256)
def _babel_locale(name: str) -> Locale:
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError) as exc:
        # A template may set ``locale`` from the data: name it only if it looks like one.
        shown = repr(name) if _LOCALE_NAME.fullmatch(str(name)) else "(not a locale name)"
        raise RenderError(f"unknown locale {shown}", locale=name) from exc


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise RenderError(f"{what}: expected a number, got {type(value).__name__}")
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise RenderError(f"{what}: expected a number, got text that is not one") from exc


def _as_datetime(value: Any, what: str) -> datetime | date:
    if isinstance(value, (datetime, date)):
        return value
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise RenderError(f"{what}: not an ISO date (YYYY-MM-DD)") from exc
    raise RenderError(f"{what}: expected a date, got {type(value).__name__}")


def _loc(ctx: Context) -> Locale:
    return _babel_locale(str(ctx.get("locale") or "en"))


_Formatter = Callable[[Decimal], str]
#: Values a fast currency formatter must format exactly as Babel does before it is used.
_PROBES = tuple(Decimal(v) for v in (
    "0", "0.004", "0.005", "0.015", "0.5", "-0.5", "1", "-1", "2.675", "12", "-12.345",
    "999.995", "1234.5", "-1234.567", "100000", "1234567.891", "-9876543210.12", "1E+3",
    "0.1E-5", "-0",
))


@lru_cache(maxsize=1024)
def _currency_formatter(locale: Locale, currency: str, format_type: str) -> _Formatter | None:
    """A per (locale, currency, format) formatter equal to Babel's ``format_currency``, or None.

    Babel re-derives the pattern, symbols, currency digits and plural forms on
    every call (~40 µs); this takes them once and checks the result against
    Babel on probe values, falling back to Babel for anything unusual.
    """
    try:
        pattern = locale.currency_formats[format_type]
        digits = numbers.get_currency_precision(currency)
        group = numbers.get_group_symbol(locale, numbering_system="latn")
        point = numbers.get_decimal_symbol(locale, numbering_system="latn")
        symbol = numbers.get_currency_symbol(currency, locale)
    except Exception:  # unknown format type or currency: Babel raises the right error
        return None
    if pattern.exp_prec or "@" in pattern.pattern or pattern.scale or not pattern.number_pattern:
        return None
    affixes = pattern.prefix + pattern.suffix
    if any("¤¤¤" in a for a in affixes) or any("'" in a for a in affixes):
        return None

    def currency_text(text: str) -> str:
        return text.replace("¤¤", currency.upper()).replace("¤", symbol)

    prefix = tuple(currency_text(p) for p in pattern.prefix)
    suffix = tuple(currency_text(p) for p in pattern.suffix)
    quantum = Decimal(1).scaleb(-digits)
    minimum = pattern.int_prec[0]
    first, rest = pattern.grouping

    def formatter(value: Decimal) -> str:
        negative = int(value.is_signed())
        rounded = abs(value).normalize().quantize(quantum)
        whole, _, frac = f"{rounded:f}".partition(".")
        whole = whole.rjust(minimum, "0")
        size, tail = first, ""
        while len(whole) > size:
            tail = group + whole[-size:] + tail
            whole = whole[:-size]
            size = rest
        text = whole + tail
        if digits:
            text += point + frac.ljust(digits, "0")
        return prefix[negative] + text + suffix[negative]

    try:
        for probe in _PROBES:
            if formatter(probe) != numbers.format_currency(
                probe, currency, locale=locale, format_type=format_type  # type: ignore[arg-type]
            ):
                return None
    except Exception:
        return None
    return formatter


@pass_context
def money(
    ctx: Context,
    amount: Any,
    currency: str,
    format_type: Literal["name", "standard", "accounting"] = "standard",
) -> str:
    """``1234.5|money("EUR")`` → ``1.234,50 €`` in de_DE."""
    value = _decimal(amount, "money")
    locale = _loc(ctx)
    if value.is_finite() and format_type != "name" and isinstance(currency, str):
        fast = _currency_formatter(locale, currency, format_type)
        if fast is not None:
            try:
                return fast(value)
            except ArithmeticError:  # too many digits to quantize: let Babel say so
                pass
    return numbers.format_currency(value, currency, locale=locale, format_type=format_type)


@pass_context
def number(ctx: Context, value: Any) -> str:
    return numbers.format_decimal(_decimal(value, "number"), locale=_loc(ctx))


@pass_context
def decimal(ctx: Context, value: Any, digits: int = 2) -> str:
    fmt = "#,##0." + "0" * digits if digits else "#,##0"
    return numbers.format_decimal(_decimal(value, "decimal"), format=fmt, locale=_loc(ctx))


@pass_context
def percent(ctx: Context, value: Any, digits: int = 0) -> str:
    """``0.125|percent(1)`` → ``12.5%`` (the value is a fraction)."""
    fmt = "#,##0" + ("." + "0" * digits if digits else "") + "%"
    return numbers.format_percent(_decimal(value, "percent"), format=fmt, locale=_loc(ctx))


def _localise_dt(ctx: Context, value: datetime) -> datetime:
    tz = _zone(ctx.get("timezone"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return value.astimezone(tz)


@pass_context
def date_filter(ctx: Context, value: Any, format: str = "medium") -> str:
    """A date in the customer's locale (datetimes are first moved to their timezone)."""
    parsed = _as_datetime(value, "date")
    if isinstance(parsed, datetime):
        parsed = _localise_dt(ctx, parsed).date()
    if isinstance(format, str):
        return _format_date(parsed, format, _loc(ctx))
    return dates.format_date(parsed, format=format, locale=_loc(ctx))


@lru_cache(maxsize=4096)
def _format_date(value: date, format: str, locale: Locale) -> str:
    """Babel's ``format_date``, remembered: a batch formats the same due dates again and again."""
    return dates.format_date(value, format=format, locale=locale)


@pass_context
def datetime_filter(ctx: Context, value: Any, format: str = "medium") -> str:
    """A date and time in the customer's timezone and locale."""
    parsed = _as_datetime(value, "datetime")
    if not isinstance(parsed, datetime):
        parsed = datetime.combine(parsed, time())
    local = _localise_dt(ctx, parsed)
    return dates.format_datetime(local, format=format, tzinfo=local.tzinfo, locale=_loc(ctx))


@pass_context
def time_filter(ctx: Context, value: Any, format: str = "short") -> str:
    parsed = _as_datetime(value, "time")
    if not isinstance(parsed, datetime):
        raise RenderError("time: expected a date-time")
    local = _localise_dt(ctx, parsed)
    return dates.format_time(local, format=format, tzinfo=local.tzinfo, locale=_loc(ctx))


def iban(value: Any) -> str:
    """Group an IBAN in fours: ``DE89 3704 0044 0532 0130 00``."""
    raw = "".join(str(value).split()).upper()
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


FILTERS = {
    "money": money,
    "number": number,
    "decimal": decimal,
    "percent": percent,
    "date": date_filter,
    "datetime": datetime_filter,
    "time": time_filter,
    "iban": iban,
}


#: A ``.po`` line that holds text: a keyword and its quoted string(s), or a string alone
#: (continued text). A string is ``"..."`` with ``\\"`` for a quote inside it.
_PO_TEXT_LINE = re.compile(
    r'(?:(?:msgctxt|msgid|msgid_plural|msgstr|msgstr\[\d+\])\s+)?'
    r'"(?:[^"\\]|\\.)*"(?:\s*"(?:[^"\\]|\\.)*")*')


def _po_syntax_error(data: bytes) -> tuple[int, str] | None:
    """``(line, what is wrong)`` of the first line of a ``.po`` file that is neither blank,
    a comment, nor a keyword with well-quoted text, or None.

    Babel reads a string whose closing quote is missing by dropping its last
    character (``msgstr "Datum`` becomes ``Datu``) and an empty one for a
    keyword without text, so a typo would reach a letter without a word; this
    check turns it into an error at its line.
    """
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or _PO_TEXT_LINE.fullmatch(line):
            continue
        if line.startswith('"') or line.split(None, 1)[0].startswith("msg"):
            return number, ('a text is not quoted right: write each text as one "..." on the '
                            'line, with \\" for a quote inside it')
        return number, ("not a line of a translation catalog (msgid, msgstr, a \"...\" text "
                        "or a # comment)")
    return None


def load_po(path: Path, locale: str, root: Path | None = None) -> Translations:
    """Compile one ``.po`` file in memory; syntax errors name the file and line.

    The file is read with :func:`ccm._files.read_contained` inside ``root``
    (the pack or template folder; by default the file's own folder). A text
    that is not quoted right is refused at its line, where Babel would read
    it cut short (:func:`_po_syntax_error`).
    """
    data = read_contained(path, root or path.parent)
    fault = _po_syntax_error(data)
    if fault is not None:
        number, what = fault
        raise TemplateError(f"{path}:{number}: invalid translation catalog: {what}",
                            path=str(path), line=number)
    try:
        catalog = read_po(io.BytesIO(data), locale=locale, abort_invalid=True)
    except Exception as exc:  # babel raises PoFileError and plain ValueErrors
        line = getattr(exc, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        raise TemplateError(f"{where}: invalid translation catalog: {exc}", path=str(path),
                            line=line) from exc
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def _catalog_file(root: Path, locale: str) -> Path | None:
    for name in (locale, locale.split("_")[0]):
        candidate = root / "locales" / name / "LC_MESSAGES" / f"{DOMAIN}.po"
        if candidate.is_file():
            return candidate
    return None


def catalog_for(roots: Iterable[Path], locale: str) -> NullTranslations:
    """Merge catalogs of ``roots`` for ``locale``; earlier roots win (template before pack)."""
    merged: Translations | None = None
    for root in reversed(list(roots)):
        path = _catalog_file(root, locale)
        if path is None:
            continue
        trans = load_po(path, locale, root)
        if merged is None:
            merged = trans
        else:
            merged.merge(trans)
    return merged if merged is not None else NullTranslations()
