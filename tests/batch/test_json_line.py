"""The JSONL line writer of chunks gives ``json.dumps``'s bytes for every line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccm.batch import _chunks
from ccm.batch._chunks import json_line, message_line

#: Text full of what JSON escapes: quotes, backslashes, every line end, tabs, other
#: controls, DEL, non-ASCII and the lone surrogates of bytes that are not UTF-8.
_TEXT = st.lists(st.sampled_from(
    ['"', "\\", "\r\n", "\r", "\n", "\t", "\x00", "\x1f", "\x7f", "\x0c", "\x08", "a", " ",
     "=3D", "<a href=\"x\">", "é", "€", "𝄞", "\udc80", "\u2028", "/"]), max_size=30).map("".join)


def _dumps(item: dict[str, Any]) -> bytes:
    return json.dumps(item, ensure_ascii=True).encode("ascii") + b"\n"


#: Long enough for the replacing writer (shorter contents go to json.dumps).
_LONG = "=3D\r\n" * (_chunks._REPLACE_FROM // 5)


@settings(max_examples=500, deadline=None)
@given(content=_TEXT, customer=_TEXT, content_last=st.booleans(), long=st.booleans(),
       where=st.integers(0, 2))
def test_json_line_is_json_dumps(content: str, customer: str, content_last: bool, long: bool,
                                 where: int) -> None:
    item = message_line(line=7, message_id="m-1", customer_id=customer, channel="email",
                        template="t", locale="de_DE", filename="x.eml", content_sha256=None,
                        content=b"")
    if long:  # the hostile text at the start, the middle or the end of a long content
        half = len(_LONG) // 2
        content = (content + _LONG, _LONG[:half] + content + _LONG[half:], _LONG + content)[where]
    item["content"] = content
    if not content_last:
        item = {"content": content, **{k: v for k, v in item.items() if k != "content"}}
    assert json_line(item) == _dumps(item)
    assert json.loads(json_line(item)) == item


@pytest.mark.parametrize("content", [
    b"Subject: x\r\nContent-Type: text/html; charset=\"utf-8\"\r\n\r\n<p class=3D\"a\">\\</p>\r\n",
    b"a\tb\rc\nd\r\n", b"caf\xc3\xa9\r\n", b"not utf-8 \xff\r\n", b"\x7f\x00", b"",
])
@pytest.mark.parametrize("long", [b"", b"<p style=3D\"x\">\\</p>\r\n" * 400])
def test_message_lines_of_eml_bytes(content: bytes, long: bytes) -> None:
    """Lines made from message bytes (as batches make them) are json.dumps' and read back."""
    item = message_line(line=1, message_id="m", customer_id="c\"1", channel="email",
                        template="t", locale="en_GB", filename="f.eml",
                        content_sha256="ab", content=long + content)
    assert json_line(item) == _dumps(item)
    assert json.loads(json_line(item))["content"].encode("utf-8", "surrogateescape") == (
        long + content)


_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT)


@settings(max_examples=300, deadline=None)
@given(item=st.dictionaries(_TEXT, st.one_of(_SCALAR, st.lists(_SCALAR, max_size=2),
                                             st.dictionaries(_TEXT, _SCALAR, max_size=2)),
                            max_size=6))
def test_json_line_of_any_line_is_json_dumps(item: dict[str, Any]) -> None:
    """Property: lines of any JSON values (flat ones by the encoder made once, nested ones
    by json.dumps) give json.dumps' bytes, NaN and infinities as json.dumps writes them."""
    assert json_line(item) == _dumps(item)
