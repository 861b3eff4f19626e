"""Serialise each PDF object once when pydyf also hashes them for the file identifier.

A PDF/A file needs a file identifier (``/ID``); pydyf computes it at the end
of ``PDF.write`` as the MD5 of every object's ``data`` -- and ``data`` is a
property that builds the object's bytes again, compressing every stream a
second time at zlib level 9. :func:`serialise_once` is called from ccm's
WeasyPrint finisher, after every object is final and just before pydyf
writes: it switches that one ``pydyf.PDF`` to a subclass whose ``write``
makes each object's ``data`` remember its bytes for the rest of that write.
The bytes written and the identifier are the same as before
(``tests/channels/test_pdf_gc.py`` compares them); only the second
serialisation is gone. Nothing global is changed: other ``pydyf.PDF``
objects and other classes are untouched.
"""

from __future__ import annotations

from typing import Any

import pydyf

_DATA = "_ccm_data"


_classes: dict[type, type] = {}


def _remembering(cls: type) -> type:
    """``cls`` with a ``data`` property computed once per object (one subclass per class)."""
    made = _classes.get(cls)
    if made is not None:
        return made
    compute = cls.data.fget  # type: ignore[attr-defined]

    def data(self: Any) -> bytes:
        cached: bytes | None = self.__dict__.get(_DATA)
        if cached is None:
            cached = compute(self)
            self.__dict__[_DATA] = cached
        return cached

    made = type(f"Once{cls.__name__}", (cls,), {"data": property(data), "__slots__": ()})
    _classes[cls] = made
    return made


class _OncePDF(pydyf.PDF):  # type: ignore[misc]
    def write(self, *args: Any, **kwargs: Any) -> Any:
        for obj in self.objects:
            cls = type(obj)
            if isinstance(getattr(cls, "data", None), property) and hasattr(obj, "__dict__"):
                obj.__class__ = _remembering(cls)
        return super().write(*args, **kwargs)


def serialise_once(pdf: Any) -> None:
    """Make ``pdf`` (a ``pydyf.PDF`` about to be written) serialise each object once."""
    if type(pdf) is pydyf.PDF:
        pdf.__class__ = _OncePDF
