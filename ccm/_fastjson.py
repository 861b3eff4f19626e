"""orjson reading request lines where its answer is certainly the json module's.

A batch reads every request line as JSON, strictly (:func:`ccm.batch.inputs.parse_json`).
orjson reads a typical line in about a quarter of json's time (figures in
docs/performance.md, "Request lines read by orjson"), but not always with json's
answer: it makes a float of an integer beyond 64 bits (json keeps the integer),
and it refuses text json reads (a lone surrogate escape, a BOM). So :func:`loads`
answers only where neither can happen, checked over the bytes in C
(``bytes.translate`` and ``find``), and says :data:`NOT_SURE` otherwise, also for
anything orjson refuses: the caller then reads the text with json's strict reader,
which reads it or explains what is wrong. ``tests/test_fastjson.py`` compares the
two readers over generated and mutated texts.

(Writing the parameters digest's canonical JSON with orjson was measured and not
kept: with the checks that make its text json's it was no faster.)
"""

from __future__ import annotations

from typing import Any, Final

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; without it json does everything
    orjson = None  # type: ignore[assignment]

__all__ = ["NOT_SURE", "loads"]

#: What :func:`loads` answers when json must read the text itself.
NOT_SURE: Final = object()

#: Digits as ``0``, anything else as a space: a run of digits found with ``find``.
_DIGIT_RUNS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
#: 19 digits: the shortest integer orjson may read as a float (below -2**63).
_LONG_INTEGER = b"0" * 19


def loads(data: bytes) -> Any:
    """``data`` (one JSON text, UTF-8) as json reads it, or :data:`NOT_SURE`.

    NOT_SURE for text orjson refuses (json's strict reader then refuses it with its
    own message, or reads it) and for text with a run of 19 digits (an integer orjson
    might make a float). What ccm's strict reader adds to json holds for orjson's answer
    too (it refuses NaN and infinities; its integers have at most 18 digits here); the
    depth is the caller's check, as for json's answer.
    """
    if orjson is None or data.translate(_DIGIT_RUNS).find(_LONG_INTEGER) >= 0:
        return NOT_SURE
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return NOT_SURE
