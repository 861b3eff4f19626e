"""Streaming readers: JSONL and CSV with dotted columns, typed by a schema."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccm.batch.inputs import InputRow, count_rows, read_csv, read_jsonl, read_requests

SCHEMA = {
    "type": "object",
    "properties": {
        "customer": {"type": "object", "properties": {
            "id": {"type": ["string", "integer"]},
            "address": {"type": "object", "properties": {"postcode": {"type": "string"}}},
            "consents": {"type": "object", "additionalProperties": {"type": "boolean"}},
        }},
        "data": {"type": "object", "$defs": {}, "properties": {
            "amount_due": {"$ref": "#/$defs/amount"},
            "count": {"type": "integer"},
            "transactions": {"type": "array"},
        }},
    },
    "$defs": {"amount": {"type": "number"}},
}


def test_jsonl_yields_rows_with_line_numbers_and_bad_lines_as_errors() -> None:
    """Each JSONL line is one row; blank lines are skipped; bad JSON is an error row, not a stop."""
    lines = ['{"customer": {"id": 1}}\n', "\n", "{nope\n", '{"customer": {"id": 2}}']
    rows = list(read_jsonl(lines))
    assert [r.line for r in rows] == [1, 3, 4]
    assert rows[0].customer_id == "1" and rows[0].error is None
    assert rows[1].request is None and rows[1].error and "invalid JSON" in rows[1].error
    assert rows[2].customer_id == "2"


def test_jsonl_reads_one_line_at_a_time() -> None:
    """The reader pulls a line only when the next row is asked for (memory stays flat)."""
    pulled = 0

    def lines() -> Iterator[str]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield json.dumps({"customer": {"id": i}}) + "\n"

    rows = read_jsonl(lines())
    first = [next(rows) for _ in range(3)]
    assert [r.customer_id for r in first] == ["0", "1", "2"]
    assert pulled == 3


def test_csv_dotted_columns_build_nested_requests() -> None:
    """``customer.id`` and ``data.x`` columns become nested objects; empty cells are left out."""
    text = "customer.id,customer.address.postcode,data.note\nC1,01234,hello\nC2,,\n"
    rows = list(read_csv(text.splitlines(keepends=True)))
    assert rows[0].request == {"customer": {"id": "C1", "address": {"postcode": "01234"}},
                               "data": {"note": "hello"}}
    assert rows[1].request == {"customer": {"id": "C2"}}
    assert [r.line for r in rows] == [2, 3]


def test_csv_cells_are_typed_by_the_schema_and_json_cells_parsed() -> None:
    """Numbers, integers and booleans follow the schema; ``[...]`` cells are JSON; strings stay."""
    text = (
        "customer.id,customer.address.postcode,customer.consents.sms,data.amount_due,data.count,"
        "data.transactions\n"
        '007,10115,false,12.50,3,"[{""amount"": -1.5}]"\n'
    )
    (row,) = read_csv(text.splitlines(keepends=True), schema=SCHEMA)
    assert row.request == {
        "customer": {"id": "007", "address": {"postcode": "10115"}, "consents": {"sms": False}},
        "data": {"amount_due": 12.5, "count": 3, "transactions": [{"amount": -1.5}]},
    }


def test_csv_type_suffix_wins_and_bad_values_are_left_for_the_contract() -> None:
    """``col:number`` types a column without a schema; an unparsable number stays a string."""
    text = "customer.id,data.amount:number,data.flag:bool,data.raw:json\nC1,abc,yes,{}\n"
    (row,) = read_csv(text.splitlines(keepends=True))
    assert row.request == {"customer": {"id": "C1"},
                           "data": {"amount": "abc", "flag": True, "raw": {}}}


def test_csv_row_with_wrong_cell_count_is_an_error_row() -> None:
    """A row with too many or too few cells is reported with its line, and reading goes on."""
    text = "customer.id,data.a\nC1,1\nC2,1,2\nC3,3\n"
    rows = list(read_csv(text.splitlines(keepends=True)))
    assert [(r.line, r.error is None) for r in rows] == [(2, True), (3, False), (4, True)]


def test_csv_quoted_newlines_keep_the_starting_line_number() -> None:
    """A cell spanning lines does not shift the line numbers reported for later rows."""
    text = 'customer.id,data.note\nC1,"two\nlines"\nC2,x\n'
    rows = list(read_csv(text.splitlines(keepends=True)))
    assert [r.line for r in rows] == [2, 4]
    assert rows[0].request["data"]["note"] == "two\nlines"


def test_read_requests_by_suffix_gzip_and_count(tmp_path: Path) -> None:
    """``.jsonl.gz`` and ``.csv`` are recognised; ``count_rows`` counts data lines quickly."""
    jsonl = tmp_path / "in.jsonl.gz"
    with gzip.open(jsonl, "wt") as fh:
        fh.write('{"customer": {"id": "A"}}\n{"customer": {"id": "B"}}\n')
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("customer.id\nA\nB\nC\n")
    assert [r.customer_id for r in read_requests(jsonl)] == ["A", "B"]
    assert [r.customer_id for r in read_requests(csv_file)] == ["A", "B", "C"]
    assert count_rows(jsonl) == 2 and count_rows(csv_file) == 3
    with pytest.raises(ValueError, match="unknown input format"):
        list(read_requests(tmp_path / "in.txt"))


def test_input_row_customer_id_is_none_when_the_shape_is_wrong() -> None:
    """A row whose request has no customer object has no customer id."""
    assert InputRow(1, ["not", "an", "object"]).customer_id is None
    assert InputRow(1, {"customer": "x"}).customer_id is None


def test_raw_jsonl_rows_parse_to_what_the_parsing_reader_gives(tmp_path: Path) -> None:
    """``read_requests(raw=True)`` keeps JSONL lines unparsed; parsed, each row (bad ones too)
    equals the row the parsing reader yields, line numbers included."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"customer": {"id": "1"}}\n\n[1]\n{"a": NaN}\n\xff\n{"b": 2}\n')
    raw = list(read_requests(path, raw=True))
    assert all(r.raw is not None and r.request is None for r in raw)
    assert [r.parsed() for r in raw] == list(read_requests(path))
    assert [r.line for r in raw] == [1, 3, 4, 5, 6]


def test_csv_cell_over_the_reader_limit_is_an_error_row_and_reading_goes_on() -> None:
    """A cell over the CSV reader's size limit is an error row naming the limit, whether it is
    unquoted or a quoted cell running over several lines; the next rows are read as rows."""
    big = "A" * 200_000
    text = (f"customer.id,data.ref\nC1,{big}\nC2,x\n"
            f'C3,"{big}\nstill inside,the quoted cell\nC9,9"\nC4,y\n')
    rows = list(read_csv(text.splitlines(keepends=True)))
    assert [(r.line, r.customer_id) for r in rows] == [(2, None), (3, "C2"), (4, None), (7, "C4")]
    for row in (rows[0], rows[2]):
        assert row.error is not None and "131072 characters" in row.error
        assert big[:50] not in row.error


def test_csv_carriage_return_in_an_unquoted_cell_is_an_error_row() -> None:
    """A bare carriage return inside an unquoted cell is an error row, not a stop."""
    rows = list(read_csv(["customer.id,data.a\n", "C1,a\rb\n", "C2,c\n"]))
    assert [(r.line, r.customer_id) for r in rows] == [(2, None), (3, "C2")]
    assert rows[0].error is not None and "quote" in rows[0].error


def test_csv_header_over_the_reader_limit_is_a_value_error() -> None:
    """A header the CSV reader refuses fails the file as a whole, as a bad header does."""
    with pytest.raises(ValueError, match="CSV header"):
        list(read_csv(["customer.id," + "h" * 200_000 + "\n", "C1,x\n"]))
