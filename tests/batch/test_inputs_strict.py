"""The strict request reader shared by ``ccm batch`` and ``ccm render``: hostile files."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccm.batch.inputs import MAX_DEPTH, MAX_INT_DIGITS, parse_json, read_jsonl, read_requests

GOOD = '{"customer": {"id": "A"}, "data": {}}'


def rows_of(path: Path) -> list[tuple[int, str | None, str | None]]:
    return [(r.line, r.customer_id, r.error) for r in read_requests(path)]


def test_invalid_utf8_line_is_an_error_row_and_the_rest_go_on(tmp_path: Path) -> None:
    """A line with invalid UTF-8 is reported with its number; the lines after it are read."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + b'{"customer": {"id": "\xff\xfe"}}\n'
                     + GOOD.replace('"A"', '"B"').encode() + b"\n")
    rows = rows_of(path)
    assert rows[0] == (1, "A", None)
    assert rows[1][0] == 2 and rows[1][2] is not None and "UTF-8" in rows[1][2]
    assert rows[2] == (3, "B", None)


def test_a_bom_is_allowed(tmp_path: Path) -> None:
    """A UTF-8 byte order mark at the start of the file is skipped."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + GOOD.encode() + b"\n")
    assert rows_of(path) == [(1, "A", None)]
    single = tmp_path / "in.json"
    single.write_bytes(codecs.BOM_UTF8 + GOOD.encode())
    assert rows_of(single) == [(1, "A", None)]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_utf16_file_is_one_clear_error(tmp_path: Path, suffix: str) -> None:
    """A UTF-16 file is refused as a whole with one error saying to save it as UTF-8."""
    path = tmp_path / f"in{suffix}"
    path.write_text(GOOD + "\n", encoding="utf-16")
    rows = rows_of(path)
    assert len(rows) == 1 and rows[0][2] is not None and "UTF-16" in rows[0][2]


def test_huge_integer_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A 5,000-digit integer is an error row whose message has none of its digits."""
    path = tmp_path / "in.jsonl"
    digits = "7" * 5000
    path.write_text('{"customer": {"id": "A"}, "data": {"n": ' + digits + "}}\n", "utf-8")
    [(line, _, error)] = rows_of(path)
    assert line == 1 and error is not None
    assert f"{MAX_INT_DIGITS} digits" in error and "7777" not in error


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    """JSON nested 100,000 deep is an error row, not a RecursionError."""
    path = tmp_path / "in.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n" + GOOD + "\n", "utf-8")
    rows = rows_of(path)
    assert rows[0][2] is not None and "nested" in rows[0][2]
    assert rows[1] == (2, "A", None)
    moderate = '{"customer": {"id": "A"}, "data": ' + '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(moderate + "}")


@settings(max_examples=150, deadline=None)
@given(depth=st.integers(1, MAX_DEPTH + 4),
       kinds=st.one_of(st.just(["list"] * (MAX_DEPTH + 4)),
                       st.just(["object"] * (MAX_DEPTH + 4)),
                       st.lists(st.sampled_from(["list", "object"]), min_size=MAX_DEPTH + 4,
                                max_size=MAX_DEPTH + 4)),
       noise=st.lists(st.text(alphabet="{[]}a\"\\", max_size=12), max_size=6))
def test_the_depth_limit_holds_whatever_brackets_strings_hold(
        depth: int, kinds: list[str], noise: list[str]) -> None:
    """Property: a request is refused exactly when its nesting is over MAX_DEPTH, however many
    brackets its strings hold (the reader skips the walk only when the text has few brackets)."""
    value: object = "leaf"
    for kind in kinds[:depth - 1]:
        value = [value, *noise] if kind == "list" else {"v": value, "n": "".join(noise)}
    line = json.dumps({"customer": {"id": "A"}, "data": value, "notes": "".join(noise)})
    if _nesting(json.loads(line)) > MAX_DEPTH:
        with pytest.raises(ValueError, match="nested deeper"):
            parse_json(line)
    else:
        assert parse_json(line)["data"] == value


def _nesting(value: object) -> int:
    """Containers inside containers, counted from the top (a scalar is 0): the test's own count."""
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(
    ("line", "kind"),
    [('"just a string"', "a string"), ("[1, 2, 3]", "a list"), ("42", "a number"),
     ("null", "null")],
)
def test_a_line_that_is_not_an_object_is_a_clear_error(line: str, kind: str) -> None:
    """A top-level string, list of numbers, number or null is a per-line error, not a crash."""
    [row] = list(read_jsonl([line + "\n"]))
    assert row.request is None and row.error is not None
    assert "must be a JSON object" in row.error and kind in row.error


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    """NaN, Infinity and numbers overflowing to infinity are refused (contracts miss them)."""
    [row] = list(read_jsonl(['{"customer": {"id": "A"}, "data": {"amount": ' + constant + "}}"]))
    assert row.error is not None and "finite" in row.error


def test_json_list_items_carry_their_line_numbers(tmp_path: Path) -> None:
    """Items of a .json list are rows numbered by the line each starts on; bad items are errors."""
    path = tmp_path / "in.json"
    text = '[\n  {"customer": {"id": "A"}},\n  "oops",\n\n  {"customer": {"id": "B"}}\n]\n'
    path.write_text(text, "utf-8")
    rows = rows_of(path)
    assert [(r[0], r[1]) for r in rows] == [(2, "A"), (3, None), (5, "B")]
    assert rows[1][2] is not None and "a string" in rows[1][2]


def test_invalid_json_names_the_line_and_column(tmp_path: Path) -> None:
    """Bad JSON in JSONL: the row says where; the text of the line is not repeated."""
    [row] = list(read_jsonl(['{"customer": {"name": "Eleanor Whitfield"}, oops}']))
    assert row.error is not None and "column" in row.error and "Eleanor" not in row.error


def test_csv_row_with_invalid_utf8_is_an_error_row(tmp_path: Path) -> None:
    """A CSV row that is not UTF-8 is an error row; the next rows are read."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"customer.id,customer.name\nA,Ann\nB,\xe9ve\nC,Cy\n")
    rows = rows_of(path)
    assert [r[0] for r in rows] == [2, 3, 4]
    assert rows[1][2] == "not valid UTF-8" and rows[2][1] == "C"


def test_parse_json_accepts_a_normal_request() -> None:
    """A normal request parses to the same value json.loads gives."""
    text = json.dumps({"customer": {"id": "A"}, "data": {"amount": 12.5, "n": 10**20}})
    assert parse_json(text) == json.loads(text)
