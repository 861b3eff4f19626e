"""An address that does not fit the envelope window is an error naming the field, never cut.

The example packs' letters mark each address line ``data-ccm-fit``; a line too
long for the window (``white-space: nowrap; overflow: hidden`` would cut it)
or one line too many for its height is a ``DataError`` naming the field and
never its value, through the API and through ``ccm batch``, where the other
rows go on.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest
import weasyprint

from ccm import DataError, Engine
from ccm.channels.pdf._fit import misfits
from ccm.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "templates" / "welcome" / "samples" / "01_en_GB.json"
LONG_LINE = "Flat 12, The Very Long Named Apartment Building on Kensington Park Gardens"
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _request(**address: Any) -> dict[str, Any]:
    req = json.loads(SAMPLE.read_text("utf-8"))
    req = copy.deepcopy(req)
    req["customer"]["address"].update(address)
    return req


@pytest.fixture(scope="module", params=["acme", "globex"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return Engine(ROOT / "brand_packs" / request.param, ROOT / "templates", record=None,
                  clock=lambda: NOON)


def test_a_line_too_long_for_the_window_names_the_field_not_the_value(engine: Engine) -> None:
    req = _request(lines=[LONG_LINE, "27 Kingsway"])
    with pytest.raises(DataError) as caught:
        engine.render("welcome", req, "pdf", record=False)
    error = caught.value
    assert error.context["path"] == "$.customer.address.lines[0]"
    assert error.context["rule"] == "fits-layout"
    assert error.context["customer_id"] == req["customer"]["id"]
    assert "too long for its line" in str(error)
    assert "Kensington" not in str(error) and "Kensington" not in repr(error.context)


def test_one_line_too_many_for_the_window_names_the_first_that_falls_out(
        engine: Engine) -> None:
    req = _request(lines=["1", "2", "3", "4", "5", "6"])
    with pytest.raises(DataError) as caught:
        engine.render("welcome", req, "pdf", record=False)
    assert caught.value.context["path"] == "$.customer.address.lines[5]"
    assert "too many lines" in str(caught.value)


def test_an_address_that_fits_renders_every_line_whole(engine: Engine) -> None:
    """The longest line that fits is in the PDF's text, whole."""
    line = "Flat 12, Kensington Park Gardens"
    message = engine.render("welcome", _request(lines=[line, "27 Kingsway"]), "pdf",
                            record=False)
    text = pypdf.PdfReader(__import__("io").BytesIO(message.content)).pages[0].extract_text()
    assert line in text


def _doc(body: str, direction: str = "ltr") -> Any:
    html = (f'<html dir="{direction}"><style>@page {{ size: A4; margin: 20mm }}'
            ".w { position: absolute; top: 20mm; width: 60mm; height: 20mm;"
            " overflow: hidden; font-size: 10pt; line-height: 5mm }"
            ".w span { display: block; white-space: nowrap; overflow: hidden }</style>"
            f'<div class="w">{body}</div></html>')
    return weasyprint.HTML(string=html).render()


def test_misfits_in_both_directions_and_both_axes() -> None:
    wide = "W" * 60
    assert misfits(_doc('<span data-ccm-fit="a">short</span>')) == []
    assert misfits(_doc(f'<span data-ccm-fit="a">{wide}</span>')) == [
        ("a", "too long for its line")]
    assert misfits(_doc(f'<span data-ccm-fit="r">{"ش" * 80}</span>', "rtl")) == [
        ("r", "too long for its line")]
    lines = "".join(f'<span data-ccm-fit="l{i}">{i}</span>' for i in range(6))
    assert [field for field, _ in misfits(_doc(lines))] == ["l4", "l5"]
    # unmarked text may be clipped by design: not ccm's business
    assert misfits(_doc(f"<span>{wide}</span>")) == []


def test_batch_reports_the_row_and_the_others_go_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _request()
    bad = _request(lines=[LONG_LINE])
    bad["customer"]["id"] = "C-LONG"
    rows = [good, bad]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    status = main(["batch", "welcome", "--pack", str(ROOT / "brand_packs" / "acme"),
                   "--templates", str(ROOT / "templates"), "--data", str(data),
                   "--out", str(tmp_path / "out"), "--record", str(tmp_path / "r.db"),
                   "--channel", "pdf", "--workers", "0", "--as-of", NOON.isoformat(),
                   "--json"])
    out = capsys.readouterr().out
    assert status == 1
    events = [json.loads(line) for line in out.splitlines()]
    (error,) = [e for e in events if e["event"] == "error"]
    assert error["line"] == 2 and error["customer_id"] == "C-LONG"
    assert "$.customer.address.lines[0]" in error["message"]
    assert "Kensington" not in out
    assert events[-1]["generated"] == 1 and events[-1]["failed"] == 1
    pdfs = sorted((tmp_path / "out").rglob("*.pdf"))
    assert len(pdfs) == 1 and "C-LONG" not in pdfs[0].name
