"""The print stream: PDFs concatenated page by page, with an index."""

from __future__ import annotations

import io

import pytest
import weasyprint
from pypdf import PdfReader, PdfWriter

from ccm.batch.printstream import PrintStream, write_index


def _pdf(text: str, pages: int) -> bytes:
    body = "".join(f'<p style="break-after: page">{text} page {i + 1}</p>' for i in range(pages))
    return weasyprint.HTML(string=f"<html><body>{body}</body></html>").write_pdf()  # type: ignore[no-any-return]


def test_documents_are_concatenated_in_order_with_their_page_ranges() -> None:
    """Each document's pages follow the previous one's; the index says where each starts."""
    out = io.BytesIO()
    with PrintStream(out) as stream:
        entries = [stream.add(_pdf(name, n), name) for name, n in (("alpha", 2), ("beta", 1),
                                                                    ("gamma", 3))]
    assert [(e.customer_id, e.first_page, e.page_count) for e in entries] == [
        ("alpha", 1, 2), ("beta", 3, 1), ("gamma", 4, 3)]
    reader = PdfReader(io.BytesIO(out.getvalue()), strict=True)
    assert not reader.is_encrypted
    texts = [page.extract_text() for page in reader.pages]
    assert len(texts) == 6
    assert "alpha page 1" in texts[0] and "beta page 1" in texts[2] and "gamma page 3" in texts[5]


def test_encrypted_input_is_refused() -> None:
    """The print stream takes unencrypted print copies only."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf("x", 1))))
    writer.encrypt("pw", algorithm="AES-256")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(ValueError, match="unencrypted"):
        PrintStream(io.BytesIO()).add(buf.getvalue(), "C1")


def test_index_csv_lists_customer_first_page_and_count() -> None:
    """The index is a CSV with a header and one line per document."""
    out = io.BytesIO()
    stream = PrintStream(out)
    entry = stream.add(_pdf("x", 2), "C-1", "m1")
    stream.close()
    text = io.StringIO()
    write_index(text, [entry])
    assert text.getvalue() == "customer_id,first_page,page_count,message_id\nC-1,1,2,m1\n"


def test_index_csv_quotes_ids_a_spreadsheet_would_run() -> None:
    """Customer ids starting with = + - @ tab or CR reach the index with a leading quote."""
    import csv

    hostile = ["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(A1)", "\tT", "\rR", "C-1"]
    out = io.BytesIO()
    stream = PrintStream(out)
    entries = [stream.add(_pdf("x", 1), cid, f"m{i}") for i, cid in enumerate(hostile)]
    stream.close()
    text = io.StringIO()
    write_index(text, entries)
    rows = list(csv.DictReader(io.StringIO(text.getvalue(), newline="")))
    assert [r["customer_id"] for r in rows] == ["'" + cid for cid in hostile[:-1]] + ["C-1"]
    assert [r["first_page"] for r in rows] == [str(n) for n in range(1, len(hostile) + 1)]
