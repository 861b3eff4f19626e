"""Locale formatting in words a designer wrote: currency symbols, literal amounts, fixed dates.

Money, numbers, percentages and dates must go through the locale filters
(``|money``, ``|number``, ``|percent``, ``|date``): a ``£`` before an amount,
``12.50`` or ``31/12/2025`` written into a template or a translation is
right for one locale only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["currency_problems", "format_problems"]

_SYMBOLS = "£$€¥₹₽₺₩₪﷼"
_CODES = r"(?:EUR|GBP|USD|AED|CHF|JPY|SAR|CAD|AUD)"
_CURRENCY = re.compile(
    rf"[{_SYMBOLS}]\s*(?:\d|%\(|\{{\{{|\{{\w)"
    rf"|(?:\d|\)s|\}}\}})\s*[{_SYMBOLS}]"
    rf"|(?<![\w-]){_CODES}\s*(?:\d|%\(|\{{)"
    rf"|(?:\d|\)s)\s*{_CODES}(?![\w-])"
)
_AMOUNT = re.compile(
    r"(?<![\w.,/:-])(?:\d{1,3}(?:[,.]\d{3})+(?:[.,]\d{1,2})?|\d+[.,]\d{2}|\d+(?:[.,]\d+)?\s?%)"
    r"(?![\w.,/:-]*\d)"
)
_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Januar|Februar|März|Juni|Juli|Oktober|Dezember|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_DATE = re.compile(
    r"(?<![\w/.-])(?:\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})|\d{4}-\d{2}-\d{2})"
    r"(?![\w/-]|\.\d)"
    rf"|\b\d{{1,2}}\.?\s+(?:{_MONTHS})\.?\s+\d{{4}}\b"
    rf"|\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"
)


def format_problems(text: str) -> Iterator[tuple[str, int, str]]:
    """``(rule, offset, message)`` for each locale-formatting problem in ``text``."""
    taken: list[tuple[int, int]] = []
    for m in _DATE.finditer(text):
        taken.append(m.span())
        yield "literal-date", m.start(), f"the date {m.group()!r} is written in one fixed format"
    for m in _CURRENCY.finditer(text):
        taken.append(m.span())
        yield "hardcoded-currency", m.start(), \
            f"{m.group().strip()!r} hard-codes a currency next to an amount"
    for m in _AMOUNT.finditer(text):
        if any(a <= m.start() < b for a, b in taken):
            continue
        kind = "percentage" if m.group().endswith("%") else "amount"
        yield "literal-amount", m.start(), f"the {kind} {m.group()!r} is written literally"


def currency_problems(source: str) -> Iterator[tuple[int, str]]:
    """``(offset, message)`` of currency symbols next to an amount or an expression in a source
    (``£{{ amount }}``), where the text-node scan cannot see them."""
    for m in _CURRENCY.finditer(source):
        yield m.start(), f"{m.group().strip()!r} hard-codes a currency next to an amount"
