"""Fields that must fit their space: nothing a customer needs is cut off silently.

A layout marks an element with ``data-ccm-fit="<field>"`` when its text must
be shown whole: the recipient's address in an envelope window is the usual
case (``white-space: nowrap; overflow: hidden`` keeps a long line from
pushing the window's other lines down, and would also cut it). After layout,
:func:`misfits` lists every marked element whose text runs past its own
content box sideways, or past the box of an ancestor that clips
(``overflow: hidden``, e.g. a window six lines high) in either direction;
:func:`check_fit` turns them into one :class:`~ccm.errors.DataError` that names
the fields, never their values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ccm.errors import DataError

__all__ = ["ATTRIBUTE", "check_fit", "misfits"]

#: The attribute that marks an element whose text must fit.
ATTRIBUTE = "data-ccm-fit"
#: Slack in CSS pixels (rounding in text measurement).
_EPSILON = 0.5


def _children(box: Any) -> list[Any]:
    return getattr(box, "children", None) or []


def _clips(box: Any) -> bool:
    style = getattr(box, "style", None)
    return style is not None and style["overflow"] != "visible"


def _padding_rect(box: Any) -> tuple[float, float, float, float]:
    x, y = box.padding_box_x(), box.padding_box_y()
    return x, y, x + box.padding_width(), y + box.padding_height()


def _text_boxes(box: Any) -> Iterator[Any]:
    stack = list(_children(box))
    while stack:
        child = stack.pop()
        if type(child).__name__ == "TextBox":
            yield child
        stack.extend(_children(child))


def _misfit(box: Any, clips: list[tuple[float, float, float, float]]) -> str | None:
    left = box.content_box_x()
    right = left + box.width
    for text in _text_boxes(box):
        x0 = text.position_x
        x1 = x0 + text.margin_width()
        y0 = text.position_y
        y1 = y0 + text.margin_height()
        if x0 < left - _EPSILON or x1 > right + _EPSILON:
            return "too long for its line"
        for cx0, cy0, cx1, cy1 in clips:
            if x0 < cx0 - _EPSILON or x1 > cx1 + _EPSILON:
                return "too long for its line"
            if y0 < cy0 - _EPSILON or y1 > cy1 + _EPSILON:
                return "below the space it must fit in (too many lines)"
    return None


def misfits(document: Any) -> list[tuple[str, str]]:
    """``(field, what is wrong)`` for each marked element of a laid-out ``weasyprint.Document``
    whose text does not fit, in document order, each field once."""
    found: dict[str, str] = {}
    for page in document.pages:
        # (box, the clipping rectangles of its ancestors)
        stack: list[tuple[Any, list[tuple[float, float, float, float]]]] = [
            (page._page_box, [])]
        while stack:
            box, clips = stack.pop()
            element = getattr(box, "element", None)
            if (element is not None and type(box).__name__ == "BlockBox"
                    and element.get(ATTRIBUTE)):
                field = element.get(ATTRIBUTE)
                if field not in found:
                    what = _misfit(box, clips)
                    if what is not None:
                        found[field] = what
                continue
            children = _children(box)
            if not children:
                continue
            inner = [*clips, _padding_rect(box)] if _clips(box) else clips
            stack.extend((child, inner) for child in reversed(children))
    return list(found.items())


def check_fit(document: Any, **context: Any) -> None:
    """Raise :class:`~ccm.errors.DataError` naming the fields that do not fit, if any
    (``context`` is added to the error: ``template``, ``customer_id``)."""
    bad = misfits(document)
    if not bad:
        return
    paths = [f"$.{field}" for field, _ in bad]
    where = "; ".join(f"{path}: {what}" for path, (_, what) in zip(paths, bad, strict=True))
    raise DataError(
        f"{where}. It would be cut off in the PDF: shorten the value or split it over "
        "lines the layout has room for (an address window holds a fixed number of lines "
        "of a fixed width) [rule: fits-layout]",
        path=paths[0], rule="fits-layout", channel="pdf", fields=paths, **context,
    )
