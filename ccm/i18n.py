"""Locale formatting (Babel) and gettext catalogs read from ``.po`` files.

Filters take the locale and timezone from the render context, so one
environment serves every locale. Catalogs are compiled in memory when a pack
or template is loaded: designers commit ``.po`` files only.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
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

from .errors import RenderError, TemplateError

__all__ = ["FILTERS", "catalog_for", "load_po"]

DOMAIN = "messages"


@lru_cache(maxsize=256)
def _babel_locale(name: str) -> Locale:
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError) as exc:
        raise RenderError(f"unknown locale {name!r}", locale=name) from exc


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise RenderError(f"{what}: expected a number, got {value!r}")
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise RenderError(f"{what}: expected a number, got {str(value)[:40]!r}") from exc


def _as_datetime(value: Any, what: str) -> datetime | date:
    if isinstance(value, (datetime, date)):
        return value
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise RenderError(f"{what}: not an ISO date: {value[:40]!r}") from exc
    raise RenderError(f"{what}: expected a date, got {type(value).__name__}")


def _loc(ctx: Context) -> Locale:
    return _babel_locale(str(ctx.get("locale") or "en"))


@pass_context
def money(
    ctx: Context,
    amount: Any,
    currency: str,
    format_type: Literal["name", "standard", "accounting"] = "standard",
) -> str:
    """``1234.5|money("EUR")`` → ``1.234,50 €`` in de_DE."""
    return numbers.format_currency(
        _decimal(amount, "money"), currency, locale=_loc(ctx), format_type=format_type
    )


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
    return dates.format_date(parsed, format=format, locale=_loc(ctx))


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


def load_po(path: Path, locale: str) -> Translations:
    """Compile one ``.po`` file in memory; syntax errors name the file and line."""
    try:
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=locale, abort_invalid=True)
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
        trans = load_po(path, locale)
        if merged is None:
            merged = trans
        else:
            merged.merge(trans)
    return merged if merged is not None else NullTranslations()
