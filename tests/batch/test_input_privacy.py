"""A CSV cell that cannot be read is reported by its line, column and rule, never its value.

docs/batch.md: errors give "the rule and the column, never the values". Every kind of
typed cell (and an untyped one the contract types) is driven through ``ccm batch`` and
``ccm render`` with a distinctive value; it must appear neither on stderr/stdout nor in
``errors.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccm.cli import main

from .conftest import DAYTIME, PACK, TEST_TEMPLATES

#: A value no message or file name would hold by chance.
SECRET = "1984-03-17Q7ZX"

HEADER = "customer.id,customer.phone,customer.email,customer.date_of_birth"
CELLS = "Q-1,+447700900123,q1@example.com,1980-01-02"

#: (column, cell): one bad cell of every kind the reader types, holding SECRET.
BAD_CELLS = [
    ("customer.consents.email:bool", SECRET),
    ("customer.consents.email:bool", f" {SECRET.lower()} "),
    ("data.amount:int", SECRET),
    ("data.amount:number", SECRET),
    ("data.amount:str", SECRET),
    ("data.amount", SECRET),  # typed by the contract: a number
    ("data.tags:json", "{" + SECRET),
    ("data.tags:json", json.dumps([SECRET, {"x": SECRET}])[:-1]),
    ("data.tags", "[" + SECRET),  # looks like JSON, is not: a string, which the contract refuses
    ("data.tags:json", json.dumps({"x": SECRET})),  # valid JSON, the wrong type
    ("customer.consents:json", json.dumps(SECRET)),
    ("customer.timezone", SECRET),
    ("customer.date_of_birth:str", SECRET),
    ("data.amount:int", "9" * 5000),  # over Python's digit limit
]


def _csv(path: Path, column: str, cell: str) -> Path:
    quoted = '"' + cell.replace('"', '""') + '"'
    header, cells = HEADER, CELLS
    if column == "customer.date_of_birth:str":  # replaces the sample's own column
        header, cells = header.rsplit(",", 1)[0], cells.rsplit(",", 1)[0]
    path.write_text(f"{header},{column}\n{cells},{quoted}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("column", "cell"), BAD_CELLS)
def test_a_bad_csv_cell_is_reported_without_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, cell: str
) -> None:
    data = _csv(tmp_path / "pr.csv", column, cell)
    out = tmp_path / "out"
    status = main(["batch", "quick_note", "--pack", str(PACK), "--templates",
                   str(TEST_TEMPLATES), "--data", str(data), "--out", str(out),
                   "--record", f"sqlite:///{tmp_path / 'r.db'}", "--run-id", "pr",
                   "--workers", "0", "--channel", "sms", "--as-of", DAYTIME.isoformat()])
    captured = capsys.readouterr()
    errors = (out / "errors.jsonl").read_text("utf-8")
    assert status == 1, captured
    (error,) = [json.loads(line) for line in errors.splitlines()]
    assert error["line"] == 2 and error["customer_id"] == "Q-1"
    secret = cell.strip() if len(cell) < 100 else cell[:40]
    for text in (captured.err, captured.out, errors):
        assert secret not in text and secret.lower() not in text
        assert SECRET not in text and SECRET.lower() not in text
    assert f"pr.csv:2 (customer Q-1): {error['error']}: " in captured.err


def test_a_bad_bool_cell_says_what_a_boolean_may_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message names the column and the accepted spellings (what the reader takes)."""
    data = _csv(tmp_path / "pr.csv", "customer.consents.email:bool", SECRET)
    status = main(["batch", "quick_note", "--pack", str(PACK), "--templates",
                   str(TEST_TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
                   "--record", f"sqlite:///{tmp_path / 'r.db'}", "--run-id", "pr",
                   "--workers", "0", "--channel", "sms", "--as-of", DAYTIME.isoformat()])
    err = capsys.readouterr().err
    assert status == 1
    assert ("pr.csv:2 (customer Q-1): InputError: column customer.consents.email: not a "
            "boolean (use true/false, yes/no, y/n or 1/0)") in err


@pytest.mark.parametrize("word", ["true", "YES", " y ", "1", "False", "no", "N", "0"])
def test_every_spelling_the_bool_message_names_is_read(tmp_path: Path, word: str) -> None:
    from ccm.batch.inputs import read_csv

    (row,) = read_csv(["customer.id,customer.consents.email:bool\n", f"Q-1,{word}\n"])
    assert row.error is None
    assert row.request["customer"]["consents"]["email"] is (word.strip().lower() in
                                                          ("true", "yes", "y", "1"))


def test_ccm_render_reports_a_bad_bool_cell_without_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ccm render`` reads CSV with the same reader: the same message, no value."""
    data = _csv(tmp_path / "pr.csv", "customer.consents.email:bool", SECRET)
    data.write_text(data.read_text("utf-8") + f"Q-2,+447700900123,q2@example.com,1980-01-02,"
                    f"{SECRET}\n", encoding="utf-8")
    status = main(["render", "quick_note", "--pack", str(PACK), "--templates",
                   str(TEST_TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
                   "--no-record", "--channel", "sms", "--as-of", DAYTIME.isoformat()])
    captured = capsys.readouterr()
    assert status != 0
    assert "column customer.consents.email: not a boolean" in captured.err
    assert SECRET not in captured.err + captured.out


def test_a_number_too_long_to_read_names_its_column() -> None:
    """Not Python's own message (about sys.set_int_max_str_digits): the column and the rule."""
    from ccm.batch.inputs import read_csv

    (row,) = read_csv(["customer.id,data.amount:int\n", f"Q-1,{'9' * 5000}\n"])
    assert row.error == "column data.amount: a number has too many digits to read"
