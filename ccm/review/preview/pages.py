"""PDF pages as PNG images, for the preview and the proof's thumbnails.

Pages are drawn with pypdfium2 (the ``preview`` extra) from an *unencrypted*
PDF. A confidential delivery PDF is first decrypted with the sample
customer's password, computed from the pack's password rule exactly as for
delivery: the preview shows the document the customer will open, and a
password rule that does not fit the sample data shows up as an error here.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccm.message import Message
    from ccm.render.engine import Engine

__all__ = ["draw_pdf", "readable_pdf", "render_pages"]


def readable_pdf(engine: Engine, message: Message, customer: Mapping[str, Any]) -> bytes:
    """The PDF of ``message`` without encryption (decrypted with ``customer``'s password)."""
    if not message.encrypted:
        return message.content
    from pypdf import PdfReader, PdfWriter

    from ccm.errors import RenderError
    from ccm.render.security import password_for

    if engine.password_rule is None:  # pragma: no cover - the engine refuses this first
        raise RenderError("encrypted PDF without a password rule", template=message.template)
    reader = PdfReader(io.BytesIO(message.content))
    if not reader.decrypt(password_for(engine.password_rule, customer)):
        raise RenderError(
            f"{message.template}: the sample customer's password does not open the PDF",
            template=message.template,
        )
    writer = PdfWriter(clone_from=reader)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def draw_pdf(engine: Engine, message: Message, customer: Mapping[str, Any], *,
             scale: float = 1.5) -> list[bytes]:
    """PNG bytes of each page of ``message``'s PDF, opened as the customer opens it.

    A confidential PDF is opened with the sample customer's password (pdfium
    reads AES-256 itself, so nothing is decrypted and rewritten first); a
    password that does not open it is a :class:`~ccm.errors.RenderError`.
    """
    if not message.encrypted:
        return render_pages(message.content, scale=scale)
    import pypdfium2

    from ccm.errors import RenderError
    from ccm.render.security import password_for

    if engine.password_rule is None:  # pragma: no cover - the engine refuses this first
        raise RenderError("encrypted PDF without a password rule", template=message.template)
    try:
        return render_pages(message.content, scale=scale,
                            password=password_for(engine.password_rule, customer))
    except pypdfium2.PdfiumError as exc:
        raise RenderError(
            f"{message.template}: the sample customer's password does not open the PDF",
            template=message.template,
        ) from exc


def render_pages(pdf: bytes, *, scale: float = 1.5, max_pages: int | None = None,
                 password: str | None = None) -> list[bytes]:
    """PNG bytes of each page (``scale`` 1 is 72 dpi), the first ``max_pages`` only if given;
    ``password`` opens an encrypted PDF."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf, password=password)
    try:
        count = len(document) if max_pages is None else min(len(document), max_pages)
        pages = []
        for index in range(count):
            page = document[index]
            try:
                image = page.render(scale=scale).to_pil()
                buf = io.BytesIO()
                image.save(buf, format="PNG", compress_level=1)  # local: speed over size
                pages.append(buf.getvalue())
            finally:
                page.close()
        return pages
    finally:
        document.close()
