"""`ccm render` with hostile request files and templates: line-numbered errors, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccm.cli import main
from tests.examples_helpers import PACKS, TEMPLATES, copy_examples, sample


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def render_sms(capsys: pytest.CaptureFixture[str], data: Path, out: Path,
               templates: Path = TEMPLATES, pack: Path = PACKS / "acme") -> tuple[int, str, str]:
    return run(capsys, "render", "payment_reminder", "--pack", str(pack), "--templates",
               str(templates), "--data", str(data), "--out", str(out), "--channel", "sms",
               "--no-record", "--as-of", "2026-06-01T12:00:00+00:00")


def test_bad_lines_are_reported_by_number_and_the_rest_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid UTF-8, a huge integer, deep nesting, a string and a list: each named by line;
    the good lines render; exit 1."""
    good = json.dumps(sample("payment_reminder")).encode()
    path = tmp_path / "reqs.jsonl"
    path.write_bytes(b"\n".join([
        good,
        b'{"customer": {"id": "\xff"}}',
        b'{"customer": {"id": "X"}, "data": {"n": ' + b"9" * 5000 + b"}}",
        b"[" * 100_000 + b"]" * 100_000,
        b'"a string"',
        b"[1, 2, 3]",
        b'{"customer": {"id": "Y"}, "data": {"amount": NaN}}',
        good,
    ]) + b"\n")
    code, out, err = render_sms(capsys, path, tmp_path / "out")
    assert code == 1
    for line in range(2, 8):
        assert f"reqs.jsonl:{line}:" in err
    assert "Traceback" not in err and "9999" not in err
    assert len(list((tmp_path / "out").glob("*.sms.txt"))) >= 1
    assert out.count("generated") == 2


def test_utf16_request_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A UTF-16 request file: exit 1 and one line saying to save it as UTF-8."""
    path = tmp_path / "reqs.json"
    path.write_text(json.dumps(sample("payment_reminder")), encoding="utf-16")
    code, _, err = render_sms(capsys, path, tmp_path / "out")
    assert code == 1 and "UTF-16" in err and "UTF-8" in err and "Traceback" not in err


def test_invalid_date_of_birth_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid date of birth fails naming the field and the rule, not the value."""
    req = sample("payment_reminder")
    req["customer"]["date_of_birth"] = "1984-13-77"
    path = tmp_path / "reqs.json"
    path.write_text(json.dumps(req), "utf-8")
    code, _, err = render_sms(capsys, path, tmp_path / "out")
    assert code == 1
    assert "$.customer.date_of_birth" in err and "format" in err
    assert "1984-13-77" not in err and req["customer"]["name"] not in err


def test_data_errors_name_the_rule_without_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A contract violation (wrong type) names the field and rule, not the account number."""
    req = sample("payment_reminder")
    req["data"]["amount"] = "GB29 NWBK 6016 1331 9268 19"
    path = tmp_path / "reqs.jsonl"
    path.write_text(json.dumps(req) + "\n", "utf-8")
    code, _, err = render_sms(capsys, path, tmp_path / "out")
    assert code == 1 and "$.data.amount" in err and "type" in err
    assert "NWBK" not in err


def test_a_power_in_a_template_fails_fast_naming_the_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``{{ 10 ** (10 ** 8) }}`` in a template: exit 1, a budget error naming file and line."""
    pack, templates = copy_examples(tmp_path)
    src = templates / "payment_reminder" / "sms.txt.j2"
    src.write_text(src.read_text("utf-8").replace(
        "{% block content %}", "{% block content %}{{ 10 ** (10 ** 8) }}"), "utf-8")
    data = tmp_path / "reqs.json"
    data.write_text(json.dumps(sample("payment_reminder")), "utf-8")
    code, _, err = render_sms(capsys, data, tmp_path / "out", templates, pack)
    assert code == 1
    assert "payment_reminder/sms.txt.j2:2" in err and "bits" in err and "Traceback" not in err
