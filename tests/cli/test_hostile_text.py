"""`ccm render` and `ccm batch` with hostile text in the input: a CSV cell over the reader's
limit, lone surrogates, control characters, terminal escapes in customer ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccm.cli import main
from tests.examples_helpers import PACKS, TEMPLATES

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


def test_batch_reports_a_csv_cell_over_the_limit_and_renders_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm batch`: the oversized row goes to errors.jsonl with its line; rows 1 and 3 render."""
    data = big_cell_csv(tmp_path / "in.csv")
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", "payment_reminder", "--pack", str(PACKS / "acme"),
                       "--templates", str(TEMPLATES), "--data", str(data), "--out", str(out),
                       "--record", f"sqlite:///{tmp_path / 'record.db'}", "--channel", "sms",
                       "--workers", "0", "--as-of", AS_OF)
    assert code == 1 and "internal error" not in err
    (error,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert error["line"] == 3 and error["error"] == "InputError"
    assert "131072 characters" in error["message"]
    assert sorted(p.name.split("-")[0] for p in out.glob("*.sms.txt")) == ["C1", "C3"]
