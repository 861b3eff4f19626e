"""The print stream: many unencrypted PDFs concatenated into one file for a print house.

:class:`PrintStream` appends documents one at a time and writes each page's
objects out as soon as it has read them, so memory stays flat however many
statements go into the file (only the byte offset of each object and the
number of each page are kept, in compact arrays). The index CSV names, for
every document, the customer, the first page and the page count, which is
what a print house needs to split, insert and post the stream.

Only what a printer needs is copied: page content, resources, boxes,
rotation and transparency groups. Links, the structure tree (tagging) and
document-level metadata of the parts are dropped.
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    PdfObject,
    StreamObject,
)

from ccm._util import write_csv

__all__ = ["IndexEntry", "PrintStream", "write_index"]

#: Page keys that a printer needs; everything else (links, tags, thumbnails) is left out.
_PAGE_KEYS = ("/MediaBox", "/CropBox", "/BleedBox", "/TrimBox", "/ArtBox", "/Resources",
              "/Contents", "/Rotate", "/UserUnit", "/Group")
#: Keys a page may inherit from its ancestors in the page tree.
_INHERITED = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")


@dataclass(frozen=True)
class IndexEntry:
    """Where one document starts in the print stream (pages are 1-based)."""

    customer_id: str
    first_page: int
    page_count: int
    message_id: str = ""


class PrintStream:
    """Concatenate PDFs into ``target`` (a binary file opened for writing), streaming.

    Use as a context manager or call :meth:`close`; nothing is valid until
    the trailer has been written.
    """

    _CATALOG = 1
    _PAGES = 2

    def __init__(self, target: IO[bytes], *, title: str = "Print stream",
                 producer: str = "ccm") -> None:
        self._out = target
        self._pos = 0
        self._offsets = array("Q", [0, 0, 0])  # object 0 is free; 1 and 2 reserved
        self._kids = array("L")
        self._title = title
        self._producer = producer
        self._closed = False
        self._write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")

    # -- public -------------------------------------------------------------------

    @property
    def pages(self) -> int:
        """Pages written so far."""
        return len(self._kids)

    def add(self, pdf: bytes | IO[bytes], customer_id: str, message_id: str = "") -> IndexEntry:
        """Append every page of ``pdf``; returns where it starts and how long it is."""
        if self._closed:
            raise ValueError("print stream is closed")
        reader = PdfReader(io.BytesIO(pdf) if isinstance(pdf, bytes | bytearray) else pdf)
        if reader.is_encrypted:
            raise ValueError(f"customer {customer_id}: print copies must be unencrypted")
        first = len(self._kids) + 1
        remap: dict[tuple[int, int], int] = {}
        queue: list[tuple[int, PdfObject]] = []
        for page in reader.pages:
            number = self._reserve()
            self._kids.append(number)
            content = DictionaryObject()
            content[NameObject("/Type")] = NameObject("/Page")
            content[NameObject("/Parent")] = IndirectObject(self._PAGES, 0, None)  # type: ignore[arg-type]
            for key in _PAGE_KEYS:
                value = _inherited(page, key) if key in _INHERITED else page.get(key)
                if value is not None:
                    content[NameObject(key)] = value
            queue.append((number, content))
            while queue:
                num, obj = queue.pop()
                self._begin(num)
                self._emit(obj, reader, remap, queue)
                self._write(b"\nendobj\n")
        return IndexEntry(customer_id, first, len(self._kids) - first + 1, message_id)

    def close(self) -> None:
        """Write the page tree, the catalog and the cross-reference table."""
        if self._closed:
            return
        self._closed = True
        self._begin(self._PAGES)
        self._write(b"<< /Type /Pages /Count %d /Kids [" % len(self._kids))
        for i, kid in enumerate(self._kids):
            self._write(b"%s%d 0 R" % (b"\n" if i % 16 == 0 else b" ", kid))
        self._write(b" ] >>\nendobj\n")
        self._begin(self._CATALOG)
        self._write(b"<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
        info = self._reserve()
        self._begin(info)
        self._write(b"<< /Producer " + _pdf_string(self._producer)
                    + b" /Title " + _pdf_string(self._title) + b" >>\nendobj\n")
        xref = self._pos
        self._write(b"xref\n0 %d\n0000000000 65535 f \n" % len(self._offsets))
        for offset in self._offsets[1:]:
            self._write(b"%010d 00000 n \n" % offset)
        self._write(b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                    % (len(self._offsets), info, xref))

    def __enter__(self) -> PrintStream:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()

    # -- writing ------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._pos += len(data)

    def _reserve(self) -> int:
        self._offsets.append(0)
        return len(self._offsets) - 1

    def _begin(self, number: int) -> None:
        self._offsets[number] = self._pos
        self._write(b"%d 0 obj\n" % number)

    def _emit(self, obj: Any, reader: PdfReader, remap: dict[tuple[int, int], int],
              queue: list[tuple[int, PdfObject]]) -> None:
        if isinstance(obj, IndirectObject):
            key = (obj.idnum, obj.generation)
            number = remap.get(key)
            if number is None:
                number = remap[key] = self._reserve()
                queue.append((number, obj.get_object()))  # type: ignore[arg-type]
            self._write(b"%d 0 R" % number)
        elif isinstance(obj, StreamObject):
            # The raw (still encoded) bytes: nothing is decompressed or re-encoded.
            data: bytes = obj._data  # pypdf has no public accessor for the raw bytes
            self._emit_dict(obj, reader, remap, queue, length=len(data))
            self._write(b"\nstream\n")
            self._write(data)
            self._write(b"\nendstream")
        elif isinstance(obj, DictionaryObject):
            self._emit_dict(obj, reader, remap, queue)
        elif isinstance(obj, ArrayObject):
            self._write(b"[")
            for item in obj:
                self._write(b" ")
                self._emit(item, reader, remap, queue)
            self._write(b" ]")
        else:
            buf = io.BytesIO()
            obj.write_to_stream(buf)
            self._write(buf.getvalue())

    def _emit_dict(self, obj: DictionaryObject, reader: PdfReader,
                   remap: dict[tuple[int, int], int], queue: list[tuple[int, PdfObject]],
                   length: int | None = None) -> None:
        self._write(b"<<")
        for key, value in obj.items():
            if key in ("/Length", "/Parent", "/StructParents", "/StructParent"):
                continue
            self._write(b"\n" + key.encode() + b" ")
            self._emit(value, reader, remap, queue)
        if length is not None:
            self._write(b"\n/Length %d" % length)
        self._write(b"\n>>")


def _inherited(page: DictionaryObject, key: str) -> Any:
    node: Any = page
    for _ in range(64):
        if key in node:
            return node.raw_get(key)
        parent = node.get("/Parent")
        if parent is None:
            return None
        node = parent.get_object()
    return None


def _pdf_string(text: str) -> bytes:
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return b"<feff" + text.encode("utf-16-be").hex().encode() + b">"
    escaped = raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"(" + escaped + b")"


def write_index(target: IO[str], entries: Iterator[IndexEntry] | list[IndexEntry]) -> None:
    """Write the print index as CSV: ``customer_id,first_page,page_count,message_id``.

    Customer ids a spreadsheet would run as a formula get a leading ``'``
    (see :func:`ccm._util.write_csv`).
    """
    write_csv(target, ["customer_id", "first_page", "page_count", "message_id"],
              ([e.customer_id, e.first_page, e.page_count, e.message_id] for e in entries))
