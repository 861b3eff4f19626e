"""The text alternative filled from a shape's text: equal to replaying it and to html_to_text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccm.channels.email import _textfill
from ccm.channels.email._text import TextPlan, html_to_text, replay_text, text_plan
from ccm.channels.email._textfill import fill_text

SENTINEL = re.compile(r"ccmtestv([0-9]+)z")

# Compiled-MJML-like HTML: hidden title and preheader, an image link, a link whose text
# may equal its href, a link around an image, table cells, list items, an entity
# before a value, a static link, and values with space around them.
SHAPE = (
    '<!doctype html><html><head><title>ccmtestv0z</title>'
    '<style type="text/css">p { margin: 0 }</style></head><body>'
    '<div style="display:none;max-height:0px">ccmtestv1z</div>'
    '<table><tr><td><img src="ccmtestv2z" alt="ccmtestv3z" width="120"></td></tr></table>'
    '<div><a href="ccmtestv4z" target="_blank">ccmtestv5z</a></div>'
    '<p>Dear ccmtestv6z,</p>\n<p>\n  ccmtestv7z\n</p>'
    '<a href="ccmtestv8z"><img alt="ccmtestv9z" src="x.png"></a>'
    '<table><tr><th scope="row">ccmtestv10z</th><td class="amount">ccmtestv11z</td></tr>'
    '<tr><th>Due</th><td>ccmtestv12z</td></tr></table>'
    '<a href="https://static.example/">ccmtestv13z</a>'
    '<ul><li>ccmtestv14z</li><li>Tea &amp; ccmtestv15z</li></ul>'
    '<p>ccmtestv16zccmtestv17z</p>'
    '</body></html>'
)
COUNT = 18
ATTRIBUTES = frozenset({2, 3, 4, 8, 9})
LINK_TEXT, LINK_HREF = 5, 4


def _html(values: list[str]) -> str:
    return SENTINEL.sub(lambda m: values[int(m.group(1))], SHAPE)


def _plan() -> TextPlan:
    ops = text_plan(SHAPE, SENTINEL)
    assert ops is not None
    return TextPlan(ops)  # a new plan: no signatures remembered from other examples


def _typical() -> list[str]:
    values = [f"Value {index}" for index in range(COUNT)]
    values[4] = values[8] = "https://pay.example/r?id=7&amp;x=1"
    values[2] = "https://cdn.example/logo.png"
    values[7] = "\n  Your payment of &#163;12.00 is due.\n"
    return values


# What values are made of: mostly what the fill carries (words, runs of HTML white space,
# complete references, inner no-break spaces), sometimes what it must replay (a no-break
# space at an end, an unfinished reference, a line break in an attribute).
_MILD = [
    "a", "Zo\u00eb", "12", " ", "  ", "\t", "\f", "&amp;", "&#39;", "&lt;", "x&nbsp;y",
    "x\u00a0y", "\u00e9", "#", "/", ";", "pay.example", "PAY.EXAMPLE/",
]
_HOSTILE = st.sampled_from([
    "\u00a0", "\u2028", "\x0b", "&nbsp;", "&", "&amp", "&am", "p;", "javascript:", "mailto:",
    "\n", " \n ", '"',
])


@st.composite
def _value(draw: st.DrawFn, href: bool = False) -> str:
    """Mostly a value the fill carries; one in twenty-five holds something it may not."""
    mild = _MILD if href else [*_MILD, "\n", "\r\n"]
    text = "".join(draw(st.lists(st.sampled_from(mild), max_size=6)))
    if href:
        starts = ["https://pay.example/"] * 6 + ["mailto:", "", "#", "pay."]
        text = draw(st.sampled_from(starts)) + text
    if draw(st.integers(0, 24)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(_HOSTILE) + text[at:]
    return text


@st.composite
def _values(draw: st.DrawFn) -> list[str]:
    values = [draw(_value(href=index in (4, 8))) for index in range(COUNT)]
    if draw(st.booleans()):  # the link's text is its href, as some templates write it
        href = draw(st.sampled_from(["https://pay.example", "pay.example/", "mailto:x@y.z"]))
        values[LINK_HREF] = href
        values[LINK_TEXT] = draw(st.sampled_from([href, href.upper(), " " + href + "\n"]))
    if draw(st.integers(0, 9)) == 0:  # a quote in an attribute: the tag no longer reads
        values[draw(st.sampled_from(sorted(ATTRIBUTES)))] += '"'
    return values


@settings(max_examples=600, deadline=None)
@given(values=_values())
def test_filled_text_equals_replayed_text_and_html_to_text(values: list[str]) -> None:
    plan = _plan()
    replayed = replay_text(plan, values)
    filled = fill_text(plan, values)
    if filled is None:
        return  # replayed instead: the caller uses replay_text
    assert filled == replayed
    if not any('"' in values[i] for i in ATTRIBUTES):
        assert filled == html_to_text(_html(values))


@settings(max_examples=200, deadline=None)
@given(first=_values(), second=_values())
def test_a_remembered_signature_fills_later_messages_equally(
        first: list[str], second: list[str]) -> None:
    """The text made for one message's signature serves the next message of that signature."""
    plan = _plan()
    fill_text(plan, first)
    filled = fill_text(plan, second)
    if filled is not None:
        assert filled == replay_text(plan, second)


def test_typical_values_are_filled_not_replayed() -> None:
    plan = _plan()
    values = _typical()
    assert fill_text(plan, values) == replay_text(plan, values) == html_to_text(_html(values))
    other = [v.replace("Value", "Wert") for v in values]
    filled = fill_text(plan, other)
    assert filled is not None and filled == html_to_text(_html(other))
    assert "Wert 5 (https://pay.example/r?id=7&x=1)" in filled
    assert len(plan.filling.filled) == 1  # one signature served both messages


def test_a_link_whose_text_is_its_href_gets_its_own_text() -> None:
    plan = _plan()
    values = _typical()
    assert fill_text(plan, values) is not None
    values[LINK_HREF], values[LINK_TEXT] = "https://acme.example", "acme.example"
    filled = fill_text(plan, values)
    assert filled is not None and filled == html_to_text(_html(values))
    assert "(https://acme.example)" not in filled
    assert len(plan.filling.filled) == 2  # the signature, and its other link comparison


@pytest.mark.parametrize(("index", "value"), [
    (7, "Ends in a no-break space\u00a0"),  # the line's strip() would take it
    (6, "Fish &amp"),  # an unfinished reference the next piece could complete
    (4, "#top"),  # not a link: the extractor writes no href
    (4, "javascript:alert(1)"),
    (8, "https://a.example/ \n b"),  # a line break: the text's lines are stripped
    (2, 'x" onload="y'),  # the tag would not read as one tag
])
def test_values_the_signature_cannot_carry_are_replayed(index: int, value: str) -> None:
    plan = _plan()
    values = _typical()
    values[index] = value
    assert fill_text(plan, values) is None
    assert fill_text(plan, _typical()) is not None  # the shape itself is still filled


@pytest.mark.parametrize("shape", [
    '<p style="color: ccmtestv0z">x</p>',  # a value that could hide an element
    '<a href="https://a.example/">x <a href="ccmtestv0z">y</a></a>',  # nested links
    '<p>Fish &ampccmtestv0z</p>',  # a reference that runs on into the value
    '<p>\ue000ccmtestv0z</p>',  # the fill's own token characters
])
def test_shapes_the_fill_cannot_read_are_replayed(shape: str) -> None:
    ops = text_plan(shape, SENTINEL)
    assert ops is not None
    plan = TextPlan(ops)
    values = ["https://pay.example/"]
    assert fill_text(plan, values) is None
    assert replay_text(plan, values) == html_to_text(SENTINEL.sub(values[0], shape))


def test_more_signatures_than_remembered_are_replayed() -> None:
    plan = _plan()
    values = _typical()
    for n in range(_textfill.SIGNATURES + 3):
        # Each combination of space around values 10-14 is a signature of its own.
        varied = list(values)
        for bit, index in enumerate(range(10, 15)):
            if n >> bit & 1:
                varied[index] = " " + varied[index]
        filled = fill_text(plan, varied)
        if n < _textfill.SIGNATURES:
            assert filled == replay_text(plan, varied)
        else:
            assert filled is None
    assert len(plan.filling.filled) == _textfill.SIGNATURES


@settings(max_examples=300, deadline=None)
@given(value=_value())
def test_remembered_value_classes_are_the_computed_ones(value: str) -> None:
    """A value's class comes back the same from memory; the memory stays bounded."""
    expected = _textfill._text_class(value)
    assert _textfill._text_class_of(value) == expected
    assert _textfill._text_class_of(value) == expected  # remembered
    assert len(_textfill._CLASSES) <= _textfill._CLASSES_MAX


def test_the_value_class_memory_is_emptied_when_full() -> None:
    for n in range(_textfill._CLASSES_MAX + 10):
        _textfill._text_class_of(f" v{n} ")
    assert 0 < len(_textfill._CLASSES) <= _textfill._CLASSES_MAX
    assert _textfill._text_class_of(" v1 ") == _textfill._text_class(" v1 ")
