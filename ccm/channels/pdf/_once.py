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

``level`` sets the zlib level of that write's streams, including the object
and cross-reference streams pydyf makes while it writes. pydyf always uses
9; ccm's writes use :data:`COMPRESSION_LEVEL`: level 9 costs ≈ 2.4 ms more
per statement (of ≈ 5 ms compressing) for files ≈ 1.5% smaller. At level 9
the bytes are pydyf's own; at another level they are what pydyf writes at
that level (the test compares them too).
"""

from __future__ import annotations

import zlib
from typing import Any

import pydyf

__all__ = ["COMPRESSION_LEVEL", "serialise_once"]

_DATA = "_ccm_data"
#: The zlib level of the streams in the PDFs ccm writes (pydyf's own is 9).
COMPRESSION_LEVEL = 6
_PYDYF_LEVEL = 9


_classes: dict[tuple[type, int], type] = {}


def _stream_data(level: int) -> Any:
    """``pydyf.Stream.data`` compressing at ``level`` instead of 9."""

    def data(self: Any) -> bytes:
        stream = b"\n".join(pydyf._to_bytes(item) for item in self.stream)
        extra = pydyf.Dictionary(self.extra.copy())
        if self.compress:
            extra["Filter"] = "/FlateDecode"
            compressobj = zlib.compressobj(level=level)
            stream = compressobj.compress(stream)
            stream += compressobj.flush()
        extra["Length"] = len(stream)
        return b"\n".join((extra.data, b"stream", stream, b"endstream"))

    return data


def _remembering(cls: type, level: int) -> type:
    """``cls`` with a ``data`` property computed once per object (one subclass per class)."""
    made = _classes.get((cls, level))
    if made is not None:
        return made
    prop = cls.data  # type: ignore[attr-defined]
    if prop is pydyf.Stream.data and level != _PYDYF_LEVEL:
        compute = _stream_data(level)
    else:
        compute = prop.fget

    def data(self: Any) -> bytes:
        cached: bytes | None = self.__dict__.get(_DATA)
        if cached is None:
            cached = compute(self)
            self.__dict__[_DATA] = cached
        return cached

    made = type(f"Once{cls.__name__}", (cls,), {"data": property(data), "__slots__": ()})
    _classes[(cls, level)] = made
    return made


def _switch(obj: Any, level: int) -> None:
    cls = type(obj)
    if isinstance(getattr(cls, "data", None), property) and hasattr(obj, "__dict__"):
        obj.__class__ = _remembering(cls, level)


class _OncePDF(pydyf.PDF):  # type: ignore[misc]
    _ccm_level = _PYDYF_LEVEL

    def add_object(self, object_: Any) -> None:
        # What pydyf adds while it writes: the info dictionary, object and xref streams.
        super().add_object(object_)
        _switch(object_, self._ccm_level)

    def write(self, *args: Any, **kwargs: Any) -> Any:
        for obj in self.objects:
            _switch(obj, self._ccm_level)
        return super().write(*args, **kwargs)


def serialise_once(pdf: Any, level: int = _PYDYF_LEVEL) -> None:
    """Make ``pdf`` (a ``pydyf.PDF`` about to be written) serialise each object once.

    Its streams are compressed at zlib ``level`` (pydyf's 9 unless given).
    """
    if type(pdf) is pydyf.PDF:
        pdf.__class__ = _OncePDF
        pdf._ccm_level = level
