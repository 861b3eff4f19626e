"""Statements lay out with worst-case values in every locale of every example pack.

Each PDF template is rendered for every pack and every locale of the pack with the
longest values its contract allows or a customer may have (a long name, a 32-character
IBAN, a long account name, amounts near a billion, 120 transactions over many pages,
merchant names without spaces), and the PDF is measured with pypdfium2: the summary
box sits beside the account details (not dropped below them), and no character or
drawn box leaves the page's printable area on any page.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from tests.examples_helpers import PACKS, engine, sample

pdfium = pytest.importorskip("pypdfium2")
pdfium_c = pytest.importorskip("pypdfium2.raw")

MM = 72 / 25.4
#: No character comes closer than this to a page's side (both packs' margins are wider)...
EDGE = 12 * MM
#: ... or to its top or bottom (the legal footer runs in the bottom margin).
EDGE_Y = 8 * MM
#: The two boxes' first rows start within this of each other.
TOP_TOLERANCE = 3 * MM

PACK_LOCALES = [(pack.name, locale) for pack in sorted(PACKS.iterdir())
                if (pack / "pack.yaml").is_file()
                for locale in engine(pack.name).pack.locales]

LONG_NAME = "Maximiliane Alexandra Bartholomew-Featherstonehaugh von Wolfeschlegelsteinhausen"
LONG_WORD = "SUPERCALIFRAGILISTICEXPIALIDOCIOUSMARKETPLACEHOLDINGSINTERNATIONAL"
#: 32 characters: the longest IBAN in use (Saint Lucia); the contract allows up to 34.
LONG_IBAN = "LC55HEMM000100010012001200023015"
#: Digits that appear nowhere else in the statement, to find the summary's first row.
OPENING = 987_654_321.09
CODE = "SUDKRUUP4B"


def worst_statement(locale: str) -> dict[str, Any]:
    """A monthly_statement request with the longest values the contract allows."""
    req = copy.deepcopy(sample("monthly_statement"))
    req["customer"].update(locale=locale, name=LONG_NAME, document_code=CODE)
    data = req["data"]
    data["account"] = {
        "name": ("Premier Platinum Everyday Current Account with Overdraft Protection and "
                 "Cashback Rewards Plus")[:100],
        "number_masked": "************9999",
        "iban": LONG_IBAN,
    }
    data["opening_balance"] = OPENING
    data["closing_balance"] = -999_999_999.99
    data["amount_due"] = 999_999_999.99
    data["transactions"] = [
        {"date": f"2025-10-{1 + i % 28:02d}",
         "description": (f"CARD PAYMENT TO {LONG_WORD}" if i % 3 == 0 else
                         "DIRECT DEBIT GREATER LONDON AUTHORITY CONGESTION CHARGE AND ULTRA "
                         f"LOW EMISSION ZONE PENALTY NOTICE {i}")[:200],
         "amount": -123_456_123.45 if i % 2 else 123_456_123.55}
        for i in range(120)]
    return req


def worst_welcome(locale: str) -> dict[str, Any]:
    """A welcome letter request with a long product name and the longest address lines
    the letter window holds (85 mm: a longer line is cut at the window's edge, by design,
    so the postcode and country below it stay in the window)."""
    req = copy.deepcopy(sample("welcome"))
    req["customer"].update(locale=locale, name="Maximiliane Featherstonehaugh-Wolfe",
                           document_code=CODE)
    req["customer"]["address"] = {
        "lines": ["Flat 4712, Building C, Riverside Court", "2739 Kurfürstendammstraße"],
        "postcode": "WC2B 6UN", "city": "Llanfairpwllgwyngyll", "country": "United Kingdom"}
    req["data"]["product_name"] = ("Premier Platinum Everyday Current Account with Overdraft "
                                   "Protection and Cashback Rewards Plus")[:100]
    req["data"]["customer_number"] = "ABCD-1234-EFGH-5678-IJKL"[:24]
    return req


@dataclass(frozen=True)
class Box:
    left: float
    bottom: float
    right: float
    top: float


@dataclass(frozen=True)
class Page:
    width: float
    height: float
    text: str
    chars: tuple[tuple[str, Box], ...]
    paths: tuple[Box, ...]

    def find(self, needle: str) -> list[Box]:
        """The boxes of the characters of every occurrence of ``needle`` (spaces ignored)."""
        flat = [(c, b) for c, b in self.chars if not c.isspace()]
        joined = "".join(c for c, _ in flat)
        target = "".join(needle.split())
        found: list[Box] = []
        start = joined.find(target)
        while start >= 0:
            found.extend(b for _, b in flat[start:start + len(target)])
            start = joined.find(target, start + 1)
        return found


def _bounds(obj: Any) -> tuple[float, float, float, float]:
    # pypdfium2 5 renamed get_pos to get_bounds.
    get = getattr(obj, "get_bounds", None) or obj.get_pos
    return tuple(get())  # type: ignore[return-value]


def pages_of(pdf_bytes: bytes, password: str | None) -> list[Page]:
    """Every page's size, characters (with their boxes) and drawn paths."""
    doc = pdfium.PdfDocument(pdf_bytes, password=password)
    pages: list[Page] = []
    try:
        for page in doc:
            width, height = page.get_size()
            textpage = page.get_textpage()
            chars = []
            for i in range(textpage.count_chars()):
                char = textpage.get_text_range(i, 1)
                chars.append((char, Box(*textpage.get_charbox(i))))
            paths = tuple(Box(*_bounds(obj)) for obj in page.get_objects(
                # Top level only: objects inside a form (the SVG logo) are in its space.
                filter=[pdfium_c.FPDF_PAGEOBJ_PATH, pdfium_c.FPDF_PAGEOBJ_FORM,
                        pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=0))
            pages.append(Page(width, height, textpage.get_text_range(), tuple(chars), paths))
            textpage.close()
            page.close()
    finally:
        doc.close()
    return pages


def assert_inside_the_page(pages: list[Page], what: str) -> None:
    """Every character lies inside the page's printable area, every drawn box on the page."""
    for number, page in enumerate(pages, 1):
        for char, box in page.chars:
            if char.isspace() or box.right <= box.left:
                continue
            assert box.left >= EDGE and box.right <= page.width - EDGE, (
                f"{what}: page {number}: {char!r} at x {box.left / MM:.1f}-"
                f"{box.right / MM:.1f} mm leaves the page's printable width")
            assert box.bottom >= EDGE_Y and box.top <= page.height - EDGE_Y, (
                f"{what}: page {number}: {char!r} at y {box.bottom / MM:.1f} mm "
                "leaves the page's printable height")
        for box in page.paths:
            # Bands and fold marks may run to the edge by design, but not past it.
            assert box.left >= -1 and box.right <= page.width + 1, (
                f"{what}: page {number}: a box at x {box.left / MM:.1f}-{box.right / MM:.1f}"
                " mm leaves the page's printable width")


def _flat(text: str) -> str:
    # pdfium marks a hyphen it sees at a line end as U+FFFE.
    return "".join(text.split()).translate(dict.fromkeys(map(ord, "-\u00ad\ufffe\ufffd")))


@pytest.mark.parametrize(("pack", "locale"), PACK_LOCALES)
def test_the_statement_summary_sits_beside_the_details(pack: str, locale: str) -> None:
    """With worst-case values, the statement's summary box starts level with the account
    details and lies wholly to their side (right in ltr, left in rtl), every long value is
    printed whole, and nothing leaves the page on any page."""
    made = engine(pack).render("monthly_statement", worst_statement(locale), channel="pdf",
                               locale=locale)
    pages = pages_of(made.content, CODE if made.encrypted else None)
    what = f"{pack}/{locale}"
    assert len(pages) > 2, f"{what}: 120 transactions should span pages"

    first = pages[0]
    name = first.find(LONG_NAME.split()[0])
    iban = first.find(LONG_IBAN[:4]) + first.find(LONG_IBAN[-4:])
    opening = first.find("987")
    assert name and iban and opening, f"{what}: name, IBAN or opening balance not on page 1"
    details = name + iban
    top_details = max(b.top for b in name)
    top_summary = max(b.top for b in opening)
    assert abs(top_details - top_summary) <= TOP_TOLERANCE, (
        f"{what}: the summary box starts {(top_details - top_summary) / MM:.1f} mm below "
        "the account details: it dropped below them instead of sitting beside them")
    rtl = locale.split("_")[0] in ("ar", "he", "fa", "ur")
    if rtl:
        assert max(b.right for b in opening) < min(b.left for b in details), (
            f"{what}: the summary box overlaps the details (rtl: it belongs on their left)")
    else:
        assert min(b.left for b in opening) > max(b.right for b in details), (
            f"{what}: the summary box overlaps the details (it belongs on their right)")

    text = _flat("".join(page.text for page in pages))
    # Word by word: in rtl pages pdfium interleaves the text of a line's two cells.
    iban_groups = " ".join(LONG_IBAN[i:i + 4] for i in range(0, len(LONG_IBAN), 4))
    for value in (LONG_NAME, iban_groups, LONG_WORD):
        for word in value.replace("-", " ").split():
            assert _flat(word) in text, f"{what}: {word!r} of {value[:20]}... is not printed"
    assert_inside_the_page(pages, what)


@pytest.mark.parametrize(("pack", "locale"), PACK_LOCALES)
def test_the_welcome_letter_stays_on_its_page(pack: str, locale: str) -> None:
    """The welcome letter with a long name, address and product keeps every character and
    box inside the page's printable area."""
    made = engine(pack).render("welcome", worst_welcome(locale), channel="pdf", locale=locale)
    pages = pages_of(made.content, CODE if made.encrypted else None)
    assert_inside_the_page(pages, f"{pack}/{locale} welcome")
