"""The preview in a real browser: Playwright drives Debian's chromium.

Set ``CCM_UPDATE_SCREENSHOTS=1`` to also write the screenshots used by
``docs/designer-guide.md`` into ``docs/img/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccm.review.preview.app import PreviewServer
from ccm.review.preview.workspace import Workspace
from tests.examples_helpers import ROOT, engine, sample

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LIGHT = "payment_reminder"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


@pytest.fixture()
def browser() -> Iterator[Any]:
    """A headless chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            instance.close()


def shoot(page: Any, tmp_path: Path, name: str, **kwargs: Any) -> Path:
    """Screenshot into tmp (and into docs/img when CCM_UPDATE_SCREENSHOTS is set)."""
    path = tmp_path / name
    page.screenshot(path=str(path), **kwargs)
    assert path.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("CCM_UPDATE_SCREENSHOTS"):
        (ROOT / "docs" / "img").mkdir(exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / "img" / name)
    return path


def edit_block(path: Path, text: str) -> None:
    """Insert ``text`` at the start of the template's content block."""
    source = path.read_text("utf-8")
    path.write_text(source.replace("{% block content %}\n", "{% block content %}\n" + text, 1),
                    "utf-8")


def test_preview_switches_reloads_and_shows_errors(
    browser: Any, project: tuple[list[Path], Path], tmp_path: Path,
) -> None:
    """Open the preview, switch pack and locale, edit, break and fix a template, screenshot."""
    from playwright.sync_api import expect

    packs, templates = project
    # The examples have no finding; a password rule of the birth date alone gives one.
    manifest_path = packs[0] / "pack.yaml"
    manifest_path.write_text(manifest_path.read_text("utf-8").replace(
        "    field: document_code\n", "    field: date_of_birth\n    format: DDMMYYYY\n", 1),
        "utf-8")
    ws = Workspace(packs, templates)
    with PreviewServer(ws) as server:
        page = browser.new_page(viewport={"width": 1900, "height": 1150})
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(f"{server.url}/?template=monthly_statement")

        # Every channel side by side: PDF pages, email at two widths, the SMS bubble.
        expect(page.locator("#pdf img").first).to_be_visible(timeout=20_000)
        expect(page.locator("#sms-text")).to_contain_text("ACME: ")
        expect(page.locator("#sms-encoding")).to_have_text("GSM-7")
        frames = page.locator("#email iframe")
        expect(frames).to_have_count(2)
        assert [f.evaluate("e => e.clientWidth") for f in frames.all()] == [600, 375]
        expect(page.frame_locator("#email .desktop iframe").locator("body")).to_contain_text(
            "Acme")
        expect(page.locator("#status")).to_have_class("live", timeout=5_000)
        # The lint findings for what is shown: the statement's weak password rule.
        finding = page.locator("#lint-body li.finding")
        expect(finding).to_have_count(1, timeout=30_000)
        expect(finding.locator("code").first).to_have_text("weak-password-rule")
        manifest = manifest_path.read_text("utf-8").split("\n")
        line = next(n for n, text in enumerate(manifest, 1) if "pdf_password:" in text)
        expect(finding.locator(".where")).to_have_text(f"brand_packs/acme/pack.yaml:{line}")
        shoot(page, tmp_path, "preview-overview.png")

        # Switch the pack, then the locale: the page follows and renders again.
        page.goto(f"{server.url}/?template={LIGHT}")
        acme_sms = page.locator("#sms-text").inner_text()
        page.select_option("#select-pack", "globex")
        page.wait_for_url("**pack=globex**")
        expect(page.locator("#sms-text")).not_to_have_text(acme_sms)
        locales = page.locator("#select-locale option").all_inner_texts()
        current = page.locator("#select-locale").input_value()
        other = next(loc for loc in locales if loc != current)
        before = page.locator("#sms-text").inner_text()
        page.select_option("#select-locale", other)
        page.wait_for_url(f"**locale={other}**")
        expect(page.locator("#select-locale")).to_have_value(other)
        expect(page.locator("#sms-text")).not_to_have_text(before)
        expect(page.locator("#status")).to_have_class("live", timeout=5_000)

        # Save a change to the template: the open page shows it without a reload by hand.
        # (How fast is measured, not asserted: no timed assertions in tests.)
        source = templates / LIGHT / "sms.txt.j2"
        original = source.read_text("utf-8")
        edit_block(source, "Zebra. ")
        expect(page.locator("#sms-text")).to_contain_text("Zebra.", timeout=10_000)

        # Break it: the page shows the file and line instead of the SMS.
        edit_block(source, "{{ data.amount | money( }}\n")
        error = page.locator("#sms .error")
        expect(error).to_be_visible(timeout=5_000)
        expect(error.locator(".where")).to_have_text(f"templates/{LIGHT}/sms.txt.j2:3")
        expect(page.locator("#email iframe").first).to_be_visible()
        # The broken template is a render error; other findings (untranslated text) may list too.
        broken = page.locator("#lint-body li.sev-error").filter(has_text="render-error")
        expect(broken).to_have_count(1, timeout=10_000)
        expect(broken.locator(".where")).to_have_text(f"templates/{LIGHT}/sms.txt.j2:3")
        shoot(page, tmp_path, "preview-error.png", clip={"x": 0, "y": 0, "width": 1900,
                                                         "height": 700})

        # Fix it: back to normal, the server never went away.
        source.write_text(original, "utf-8")
        expect(page.locator("#sms-text")).to_be_visible(timeout=5_000)
        expect(page.locator("#sms .error")).to_have_count(0)
        assert not [url for url in failed if not url.startswith(server.url)]


@pytest.mark.parametrize("pack", ["acme", "globex"])
def test_pdf_thumbnails_keep_the_pages_aspect_ratio(
    browser: Any, project: tuple[list[Path], Path], pack: str,
) -> None:
    """Each PDF page thumbnail is drawn with its page's width/height ratio (within 1%), not
    squashed into the height its attributes give for another width."""
    import pypdfium2 as pdfium
    from playwright.sync_api import expect

    packs, templates = project
    made = engine(pack).render("monthly_statement", sample("monthly_statement"), channel="pdf")
    doc = pdfium.PdfDocument(made.content,
                             password=sample("monthly_statement")["customer"]["document_code"])
    try:
        width, height = doc[0].get_size()
    finally:
        doc.close()
    with PreviewServer(Workspace(packs, templates)) as server:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{server.url}/?template=monthly_statement&pack={pack}")
        images = page.locator("#pdf img")
        expect(images.first).to_be_visible(timeout=20_000)
        assert images.count() >= 1
        for image in images.all():
            image.scroll_into_view_if_needed()
            box = image.evaluate("e => [e.getBoundingClientRect().width,"
                                 " e.getBoundingClientRect().height]")
            assert box[0] > 100, box
            assert abs(box[0] / box[1] - width / height) <= 0.01 * width / height, (
                f"{pack}: thumbnail {box[0]:.0f}x{box[1]:.0f} px, page {width:.0f}x{height:.0f} pt")
        page.close()
