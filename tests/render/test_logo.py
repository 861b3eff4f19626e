"""The pack's logo survives being moved: the PDF embeds it, the email links it absolutely.

Rendered with ``ccm render`` from a working folder where the pack is a relative path,
then opened from another folder after the pack is gone: the PDF still draws the logo
(its colours are in the letterhead), and the email's images point at the pack's
published ``assets_url``, never at a file path that only works next to the pack.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
from pathlib import Path

import pytest

from ccm.cli import main
from tests.examples_helpers import copy_examples, engine, sample

pdfium = pytest.importorskip("pypdfium2")

NOON = "2026-06-01T12:00:00+00:00"
MM = 72 / 25.4


def _render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pack: str, channel: str) -> bytes:
    """``ccm render welcome`` with a relative pack path; the pack is deleted afterwards."""
    work = tmp_path / "work"
    copy_examples(work, pack)
    (work / "req.json").write_text(json.dumps(sample("welcome")), "utf-8")
    monkeypatch.chdir(work)
    assert main(["render", "welcome", "--pack", f"brand_packs/{pack}", "--templates",
                 "templates", "--data", "req.json", "--out", "out", "--no-record",
                 "--channel", channel, "--as-of", NOON]) == 0
    made = [p for p in (work / "out").rglob("*") if p.is_file()]
    assert len(made) == 1, made
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / made[0].name
    shutil.move(made[0], moved)
    shutil.rmtree(work)
    monkeypatch.chdir(elsewhere)
    return moved.read_bytes()


def _near(pixel: tuple[int, int, int], colour: str, tolerance: int = 40) -> bool:
    want = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, want, strict=True))


@pytest.mark.parametrize("pack", ["acme", "globex"])
def test_the_pdf_draws_the_logo_when_opened_elsewhere(
        pack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A welcome letter rendered with a relative --pack, moved to another folder with the
    pack deleted, still shows the logo's accent colour in its letterhead (it is embedded)."""
    pdf = _render(tmp_path, monkeypatch, pack, "pdf")
    doc = pdfium.PdfDocument(pdf, password=sample("welcome")["customer"]["document_code"])
    try:
        image = doc[0].render(scale=100 / 72).to_pil().convert("RGB")
    finally:
        doc.close()
    px = 100 / 25.4  # pixels per millimetre
    # The letterhead's logo corner: 10-60 mm from the left, 10-35 mm from the top
    # (below globex's coloured band at the top edge).
    box = image.crop((int(10 * px), int(10 * px), int(60 * px), int(35 * px)))
    secondary = engine(pack).pack.palette["secondary"]
    raw = box.tobytes()
    pixels = (tuple(raw[i:i + 3]) for i in range(0, len(raw), 3))
    accent = sum(1 for p in pixels if _near(p, secondary))  # type: ignore[arg-type]
    assert accent > 20, f"{pack}: no {secondary} logo pixels in the letterhead ({accent})"


@pytest.mark.parametrize("pack", ["acme", "globex"])
def test_the_email_links_the_logo_where_the_pack_publishes_it(
        pack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every image of the email is an absolute https URL under the pack's assets_url (the
    logo as PNG), so the .eml shows it from any folder; no relative or file: source."""
    eml = _render(tmp_path, monkeypatch, pack, "email")
    msg = email.message_from_bytes(eml, policy=email.policy.default)
    body = msg.get_body(("html",))
    assert body is not None
    html = body.get_content()
    sources = re.findall(r'<img[^>]*\bsrc="([^"]*)"', html)
    base = engine(pack).pack.raw["assets_url"].rstrip("/")
    assert f"{base}/assets/logo.png" in sources
    for src in sources:
        assert src.startswith(("https://", "cid:", "data:")), f"{pack}: image source {src!r}"
