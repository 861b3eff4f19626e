"""`ccm render` and `ccm batch` with hostile text in the input: a CSV cell over the reader's
limit, lone surrogates, control characters, terminal escapes in customer ids."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ccm.cli import main
from ccm.errors import DataError
from ccm.message import Request
from ccm.render.engine import Engine
from ccm.render.smsplan import SmsPlan
from tests.examples_helpers import PACKS, TEMPLATES, sample

AS_OF = "2026-06-01T12:00:00+00:00"
COLUMNS = ("customer.id", "customer.phone", "customer.email", "data.amount", "data.currency",
           "data.due_date", "data.days_overdue", "data.pay_url", "data.reference")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def big_cell_csv(path: Path) -> Path:
    """Three payment reminders; the middle one's reference is 200,000 characters."""
    rows = [",".join(COLUMNS)]
    for i, ref in enumerate(["R1", "A" * 200_000, "R3"], 1):
        rows.append(f"C{i},+447700900123,c{i}@example.com,86.4,GBP,2025-10-20,14,"
                    f"https://pay.example.com/r/{i},{ref}")
    path.write_text("\n".join(rows) + "\n", "utf-8")
    return path


def test_render_reports_a_csv_cell_over_the_limit_and_renders_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm render`: the oversized row is an error naming its line and the limit; rows 1 and 3
    render; exit 1, no internal error."""
    data = big_cell_csv(tmp_path / "in.csv")
    code, out, err = run(capsys, "render", "payment_reminder", "--pack", str(PACKS / "acme"),
                         "--templates", str(TEMPLATES), "--data", str(data), "--out",
                         str(tmp_path / "out"), "--channel", "sms", "--no-record",
                         "--as-of", AS_OF)
    assert code == 1
    assert f"{data}:3: a cell has more than 131072 characters" in err
    assert "internal error" not in err and "AAAA" not in err
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "out").iterdir()) == ["C1", "C3"]
    assert out.count("generated") == 2


def _batch_one_bad_row(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                       data: Path) -> tuple[dict[str, Any], Path]:
    """``ccm batch`` of ``data`` (SMS, in-process) with exactly one bad row: exit 1, no internal
    error; that row's errors.jsonl entry and the out folder."""
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", "payment_reminder", "--pack", str(PACKS / "acme"),
                       "--templates", str(TEMPLATES), "--data", str(data), "--out", str(out),
                       "--record", f"sqlite:///{tmp_path / 'record.db'}", "--channel", "sms",
                       "--workers", "0", "--as-of", AS_OF)
    assert code == 1 and "internal error" not in err
    (error,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    return error, out


def test_batch_reports_a_csv_cell_over_the_limit_and_renders_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm batch`: the oversized row goes to errors.jsonl with its line; rows 1 and 3 render."""
    data = big_cell_csv(tmp_path / "in.csv")
    error, out = _batch_one_bad_row(capsys, tmp_path, data)
    assert error["line"] == 3 and error["error"] == "InputError"
    assert "131072 characters" in error["message"]
    assert sorted(p.name.split("-")[0] for p in out.glob("*.sms.txt")) == ["C1", "C3"]


#: What request validation refuses in text: C0 controls but tab, LF and CR; lone surrogates.
BAD_CHARS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\ud800", "\udfff"]
_ENGINE: list[Engine] = []


def engine() -> Engine:
    if not _ENGINE:
        _ENGINE.append(Engine(PACKS / "acme", TEMPLATES, record=None))
    return _ENGINE[0]


@pytest.mark.parametrize("char", BAD_CHARS)
@pytest.mark.parametrize(("template", "channel", "field"), [
    ("welcome", "email", "name"), ("welcome", "pdf", "name"),
    ("welcome", "email", "product_name"), ("welcome", "pdf", "product_name"),
    ("payment_reminder", "sms", "name"), ("payment_reminder", "sms", "reference"),
])
def test_every_channel_refuses_a_control_character_or_lone_surrogate_naming_the_field(
    template: str, channel: str, field: str, char: str
) -> None:
    """Engine.render raises a DataError naming the field and the code point (not the text),
    for a request given as a mapping and as a Request alike."""
    req = sample(template)
    where = "customer" if field == "name" else "data"
    req[where][field] = f"Eve{char}Smith"
    code = f"U+{ord(char):04X}"
    for given in (req, Request.from_dict(copy.deepcopy(req))):
        with pytest.raises(DataError) as caught:
            engine().render(template, given, channel)
        assert caught.value.context["path"] == f"$.{where}.{field}"
        assert caught.value.context["rule"] == "text"
        assert code in str(caught.value) and "Eve" not in str(caught.value)


def test_tab_line_feed_and_carriage_return_are_text() -> None:
    """Tab, LF and CR (and DEL, C1 controls, astral characters) are accepted in data."""
    req = sample("welcome")
    req["data"]["product_name"] = "A\tB\r\nC\x7f\x85 \U0001f600"
    message = engine().render("welcome", req, "email")
    assert message.status == "generated"


def test_a_bad_field_name_is_refused_naming_where_it_is() -> None:
    """A key holding a control character is refused; the path is its object's."""
    req = sample("welcome")
    req["customer"]["consents"]["e\x1bmail"] = True
    with pytest.raises(DataError, match=r"\$\.customer\.consents: a field name holds a "
                                        r"control character \(U\+001B\)"):
        engine().render("welcome", req, "email")


@pytest.mark.parametrize("char", BAD_CHARS)
def test_the_batch_sms_fast_path_declines_what_validation_refuses(char: str) -> None:
    """The SMS plan gives no request for text validation refuses (the full path names the
    field), and still takes ordinary text with emoji and escaped backslashes."""
    plan = SmsPlan.build(engine(), "payment_reminder")
    assert plan is not None
    req = sample("payment_reminder")
    req["customer"]["name"] = "A\\u000b \\b \U0001f600"
    assert plan.request(copy.deepcopy(req)) is not None
    req["customer"]["name"] = f"A{char}B"
    assert plan.request(req) is None


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    # ensure_ascii: a lone surrogate is written as its JSON escape, as other programs do.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


@pytest.mark.parametrize(("template", "channel"), [
    ("welcome", "email"), ("welcome", "pdf"), ("payment_reminder", "sms")])
@pytest.mark.parametrize("char", ["\ud800", "\x0b"])
def test_render_reports_the_bad_row_and_renders_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str, channel: str,
    char: str,
) -> None:
    """`ccm render` over JSONL: the row with a lone surrogate or a control character is an
    error naming its line and field; the rows after it render; exit 1."""
    rows = [sample(template) for _ in range(3)]
    for i, row in enumerate(rows):
        row["customer"]["id"] = f"C{i + 1}"
    rows[1]["customer"]["name"] = f"Eve{char}"
    data = _jsonl(tmp_path / "in.jsonl", rows)
    code, _, err = run(capsys, "render", template, "--pack", str(PACKS / "acme"),
                         "--templates", str(TEMPLATES), "--data", str(data), "--out",
                         str(tmp_path / "out"), "--channel", channel, "--no-record",
                         "--as-of", AS_OF)
    assert code == 1, err
    assert f"{data}:2: $.customer.name: holds a" in err
    assert "internal error" not in err
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "out").iterdir()) == ["C1", "C3"]


def test_batch_reports_a_bad_sms_row_as_the_full_path_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm batch` (SMS, fast path): the row goes to errors.jsonl as a DataError naming the
    field; the others render."""
    rows = [sample("payment_reminder") for _ in range(3)]
    for i, row in enumerate(rows):
        row["customer"]["id"] = f"C{i + 1}"
    rows[1]["data"]["reference"] = "R\x00\ud800"
    data = _jsonl(tmp_path / "in.jsonl", rows)
    error, out = _batch_one_bad_row(capsys, tmp_path, data)
    assert (error["line"], error["error"], error["path"]) == (2, "DataError", "$.data.reference")
    assert "U+0000" in error["message"]
    assert sorted(p.name.split("-")[0] for p in out.glob("*.sms.txt")) == ["C1", "C3"]


ESCAPES = "E\x1b]0;PWNED\x07\x1b[2J"
#: What a terminal acts on: none of it may reach the operator's screen raw.
TERMINAL_CONTROLS = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\r")


def _bad_rows(ids: list[str]) -> list[dict[str, Any]]:
    rows = [sample("payment_reminder") for _ in ids]
    for cid, row in zip(ids, rows, strict=True):
        row["customer"]["id"] = cid
        row["data"]["amount"] = -5
    return rows


def test_batch_prints_customer_ids_escaped_and_long_ones_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm batch`: a customer id with terminal escapes is printed escaped (``\\x1b``); one of
    5,000 characters is cut to under 80 with its length; errors.jsonl keeps the ids whole."""
    ids = [ESCAPES, "L" * 5000, "E\x9b2J\x7f\u202e"]
    data = _jsonl(tmp_path / "in.jsonl", _bad_rows(ids))
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "batch", "payment_reminder", "--pack", str(PACKS / "acme"),
                            "--templates", str(TEMPLATES), "--data", str(data), "--out",
                            str(out), "--record", f"sqlite:///{tmp_path / 'record.db'}",
                            "--channel", "sms", "--workers", "0", "--as-of", AS_OF)
    assert code == 1
    for char in TERMINAL_CONTROLS:
        assert char not in err and char not in stdout
    assert "(customer E\\x1b]0;PWNED\\x07\\x1b[2J)" in err
    assert "(customer E\\x9b2J\\x7f\\u202e)" in err
    assert "L" * 61 not in err and "\u2026 (5000 characters))" in err
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["customer_id"] for e in errors] == ids


def test_render_prints_customer_ids_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm render`: a customer id holding C1 and bidi controls (valid data) is printed escaped
    in the plain summary line and in the JSON one (as JSON escapes)."""
    req = sample("payment_reminder")
    req["customer"]["id"] = "E\x9b2J\u202eX"
    data = _jsonl(tmp_path / "in.jsonl", [req])
    for extra in ((), ("--json",)):
        code, stdout, err = run(capsys, "render", "payment_reminder", "--pack",
                                str(PACKS / "acme"), "--templates", str(TEMPLATES), "--data",
                                str(data), "--out", str(tmp_path / "out"), "--channel", "sms",
                                "--no-record", "--as-of", AS_OF, *extra)
        assert code == 0, err
        for char in TERMINAL_CONTROLS:
            assert char not in err and char not in stdout
    assert json.loads(stdout)["customer_id"] == "E\x9b2J\u202eX"


def test_record_timeline_prints_the_customer_id_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm record timeline`: a recorded id holding C1 and bidi controls, and an unknown id
    with terminal escapes, are printed escaped."""
    url = f"sqlite:///{tmp_path / 'record.db'}"
    req = sample("payment_reminder")
    req["customer"]["id"] = "E\x9b2J\u202eX"
    data = _jsonl(tmp_path / "in.jsonl", [req])
    assert run(capsys, "render", "payment_reminder", "--pack", str(PACKS / "acme"),
               "--templates", str(TEMPLATES), "--data", str(data), "--out", str(tmp_path / "o"),
               "--channel", "sms", "--record", url, "--as-of", AS_OF)[0] == 0
    code, stdout, err = run(capsys, "record", "timeline", "E\x9b2J\u202eX", "--record", url)
    assert code == 0 and "customer E\\x9b2J\\u202eX: 1 generated" in stdout
    for char in TERMINAL_CONTROLS:
        assert char not in err and char not in stdout
    code, stdout, err = run(capsys, "record", "timeline", ESCAPES, "--record", url)
    assert code == 3
    assert "E\\x1b]0;PWNED\\x07\\x1b[2J" in err
    for char in TERMINAL_CONTROLS:
        assert char not in err and char not in stdout


def test_printable_shown_and_json_text() -> None:
    """The CLI's escaping: messages keep line breaks; values lose them and are cut; JSON stays
    the same value."""
    from ccm.cli._common import json_text, printable, shown

    assert printable("a\x1b[2J\nb\tc\r\x9b\u2066\ud800") == "a\\x1b[2J\nb\tc\\r\\x9b\\u2066\\ud800"
    assert shown("C1\nccm: done") == "C1\\nccm: done"
    assert shown("x" * 81) == "x" * 60 + "\u2026 (81 characters)" and shown("x" * 80) == "x" * 80
    doc = {"id": "a\x1b\x7f\x85\u202e\ud800"}
    text = json_text(json.dumps(doc, ensure_ascii=False))
    assert json.loads(text) == doc and not set(text) & set("\x1b\x7f\x85\u202e\ud800")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_batch_with_a_lone_surrogate_in_a_customer_id_fails_that_row_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """`ccm batch`: a customer id with a lone surrogate (which the record's driver cannot
    encode) is a DataError row, also when the run is resumed; errors.jsonl holds it as its
    JSON escape; the other row renders."""
    rows = [sample("payment_reminder") for _ in range(2)]
    rows[0]["customer"]["id"], rows[1]["customer"]["id"] = "C\ud800", "C2"
    data = tmp_path / f"in{suffix}"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) if suffix == ".jsonl"
                    else json.dumps(rows), "utf-8")
    out = tmp_path / "out"
    args = ("batch", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
            str(TEMPLATES), "--data", str(data), "--out", str(out), "--record",
            f"sqlite:///{tmp_path / 'record.db'}", "--channel", "sms", "--workers", "0",
            "--as-of", AS_OF, "--run-id", "r1")
    for _ in range(2):  # the second run resumes: the parent asks the record about each row
        code, _, err = run(capsys, *args)
        assert code == 1 and "ccm: error" not in err, err
        (error,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
        assert (error["customer_id"], error["path"]) == ("C\ud800", "$.customer.id")
        assert "\\ud800" in (out / "errors.jsonl").read_text("utf-8")
        assert [p.name.split("-")[0] for p in out.glob("*.sms.txt")] == ["C2"]
