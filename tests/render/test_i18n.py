"""Locale formatting: the per-locale currency formatter gives exactly what Babel gives."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from babel import Locale, numbers

from ccm.render.i18n import _currency_formatter, money

LOCALES = ["en_GB", "en_US", "de_DE", "fr_FR", "ar", "ar_EG", "fa_IR", "hi_IN", "ja_JP",
           "nl_NL", "he_IL", "pt_BR", "sv_SE", "de_CH"]
CURRENCIES = ["EUR", "GBP", "USD", "JPY", "BHD", "CHF", "INR"]


@pytest.mark.parametrize("locale", LOCALES)
def test_cached_currency_formatter_equals_babel(locale: str) -> None:
    """For every currency and format the fast formatter (when there is one) matches Babel."""
    rng = random.Random(locale)
    parsed = Locale.parse(locale)
    for currency in CURRENCIES:
        for format_type in ("standard", "accounting"):
            fast = _currency_formatter(parsed, currency, format_type)
            if fast is None:
                continue  # Babel formats it (e.g. quotes in the pattern)
            for _ in range(200):
                value = Decimal(str(round(rng.uniform(-1e7, 1e7), rng.randint(0, 5))))
                assert fast(value) == numbers.format_currency(
                    value, currency, locale=parsed, format_type=format_type)


def test_money_filter_falls_back_to_babel_for_names_and_unknown_codes() -> None:
    """``name`` formats and unknown currency codes still go through Babel."""
    ctx = {"locale": "en_GB"}
    assert money(ctx, 2, "EUR", "name") == numbers.format_currency(  # type: ignore[arg-type]
        Decimal(2), "EUR", locale="en_GB", format_type="name")
    assert money(ctx, 1234.5, "XYZ") == numbers.format_currency(  # type: ignore[arg-type]
        Decimal("1234.5"), "XYZ", locale="en_GB")


@pytest.mark.parametrize("locale", ["en_GB", "de_DE", "ar", "ja_JP"])
def test_date_filter_remembers_exactly_what_babel_formats(locale: str) -> None:
    """The remembered date format is Babel's, for named formats and patterns alike."""
    from datetime import date

    from babel import dates

    from ccm.render.i18n import date_filter

    ctx = {"locale": locale, "timezone": "Europe/Berlin"}
    for fmt in ("short", "medium", "long", "full", "dd.MM.yyyy"):
        for day in (date(2025, 1, 31), date(2024, 2, 29)):
            expected = dates.format_date(day, format=fmt, locale=Locale.parse(locale))
            assert date_filter(ctx, day.isoformat(), fmt) == expected  # type: ignore[arg-type]
            assert date_filter(ctx, day.isoformat(), fmt) == expected  # type: ignore[arg-type]
