"""orjson reads a request line only where its answer is json's (ccm/_fastjson.py):
compared over generated and mutated texts, with the json-only reader as the reference."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccm import _fastjson as fastjson
from ccm.batch import inputs
from ccm.batch.inputs import parse_json

pytestmark = pytest.mark.skipif(fastjson.orjson is None, reason="orjson is not installed")


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is float:
        return repr(a) == repr(b)
    return bool(a == b)


_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
_SCALARS = (st.none() | st.booleans() | st.integers() | _FLOATS
            | st.integers(-(2**70), 2**70) | st.text(max_size=8)
            | st.sampled_from([1e16, 1e15, 1e-5, 1e-4, 9999999999999998.0, 5e-324, 0.1, -0.0,
                               2**63, -(2**63) - 1, 2**64, "1e5", "\x7f", "é", "\u2028"]))
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


def _reference(text: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(fastjson, "orjson", None)
        return _outcome(text)


def _outcome(text: bytes) -> Any:
    try:
        return ("value", parse_json(text))
    except ValueError as exc:
        return ("error", type(exc).__name__, str(exc))


def _texts() -> st.SearchStrategy[bytes]:
    written = _VALUES.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8",
                                                                            "surrogatepass"))
    odd = st.sampled_from([
        b'{"a": NaN}', b'{"a": 1e400}', b'{"a": -Infinity}', b'{"a": "\\ud800"}',
        b'{"a": 123456789012345678901234567890}', b'{"a": -9223372036854775809}',
        b'\xef\xbb\xbf{"a": 1}', b'{"a": 1,}', b'{"a": "\xff"}', b'{"a": 1, "a": 2}',
        b'[1]', b'"text"', b' {"a": 1e-400} \n', b'{"a": "\\u0000"}', b'{"a": 01}',
        b"[" * 40 + b"]" * 40, b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"a": 0.1000000000000000055511151231257827021181583404541015625}',
    ])
    mutated = st.tuples(written, st.integers(0, 60), st.binary(max_size=3)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):])
    return written | odd | mutated


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_texts())
def test_request_lines_read_as_the_strict_reader_reads_them(
        text: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """``parse_json`` with orjson gives the json-only reader's value (types too) or its
    error, message and all."""
    ours, theirs = _outcome(text), _reference(text, monkeypatch)
    if theirs[0] == "value":
        assert ours[0] == "value" and _same(ours[1], theirs[1]), text
    else:
        assert ours == theirs, text


def test_a_typical_line_is_read_by_orjson() -> None:
    line = (b'{"customer": {"id": "C1", "phone": "+447700900123", "locale": "en_GB"}, '
            b'"data": {"amount": 89.2, "days_overdue": 14, "due_date": "2025-10-20"}}')
    got = fastjson.loads(line)
    assert got is not fastjson.NOT_SURE
    assert _same(got, json.loads(line))
    assert inputs.parse_json(line) == got


def test_floats_read_exactly() -> None:
    """orjson's float reading is correctly rounded, as json's: spot checks at awkward values."""
    for text in ("0.1", "2.2250738585072011e-308", "4.9406564584124654e-324", "1e23",
                 "9007199254740993", "0.30000000000000004", "1.7976931348623157e308"):
        got = fastjson.loads(text.encode())
        assert got is not fastjson.NOT_SURE
        assert repr(got) == repr(json.loads(text)) and not math.isnan(got)
