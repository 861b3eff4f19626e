"""Every command follows the one exit-code table of docs/cli.md: message, code, files left."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ccm.cli import main
from tests.examples_helpers import PACKS, ROOT, TEMPLATES, sample

ACME = str(PACKS / "acme")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, request: dict[str, Any]) -> Path:
    path.write_text(json.dumps(request), "utf-8")
    return path


def render(capsys: pytest.CaptureFixture[str], template: str, data: Path, *extra: str,
           ) -> tuple[int, str, str]:
    return run(capsys, "render", template, "--pack", ACME, "--templates", str(TEMPLATES),
               "--data", str(data), *extra)


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No master key in the environment (whatever the caller has)."""
    monkeypatch.delenv("CCM_MASTER_KEY", raising=False)
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)


# -- 1. not found is 3, in render as in batch ---------------------------------------


@pytest.mark.parametrize(("change", "says"), [
    ({"template": "nope"}, "unknown template 'nope'"),
    ({"pack": "missing-pack"}, "no such folder"),
    ({"data": "missing.json"}, "no such file"),
])
def test_render_not_found_is_3_before_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], says: str,
) -> None:
    """An unknown template, a missing --pack folder or --data file: exit 3, no record made."""
    data = write(tmp_path / "req.json", sample("monthly_statement"))
    args = {"template": "monthly_statement", "pack": ACME, "data": str(data)}
    args.update({k: str(tmp_path / v) if k != "template" else v for k, v in change.items()})
    record = tmp_path / "record.db"
    code, out, err = run(capsys, "render", args["template"], "--pack", args["pack"],
                         "--templates", str(TEMPLATES), "--data", args["data"],
                         "--out", str(tmp_path / "out"), "--record", str(record))
    assert code == 3, err
    assert says in err and len(err.strip().splitlines()) == 1 and out == ""
    assert not record.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("template", "extra", "says"), [
    ("monthly_statement", ("--locale", "xx_XX"), "no locale 'xx_XX'"),
    ("welcome", ("--channel", "sms"), "has no 'sms' channel"),
])
def test_render_unknown_locale_or_channel_is_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str, extra: tuple[str, ...],
    says: str,
) -> None:
    """A locale the pack lacks or a channel the template lacks: exit 3 (as ccm batch),
    found before the --out folder is made."""
    data = write(tmp_path / "req.json", sample(template))
    code, _, err = render(capsys, template, data, "--out", str(tmp_path / "out"), "--no-record",
                          *extra)
    assert code == 3 and says in err
    assert not (tmp_path / "out").exists()


def test_approve_unknown_template_is_3(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm approve nonexist`: exit 3 naming the templates there are, nothing approved."""
    code, _, err = run(capsys, "approve", "nonexist", "--pack", ACME, "--templates",
                       str(TEMPLATES), "--approvals", str(tmp_path / "approvals.json"))
    assert code == 3 and "unknown template 'nonexist'" in err
    assert not (tmp_path / "approvals.json").exists()


@pytest.mark.parametrize("args", [
    ("record", "verify", "--checkpoint", "{missing}"),
    ("events", "bounce", "{missing}"),
    ("record", "rotate-key", "--new-key-file", "{missing}"),
])
def test_a_missing_input_file_is_3_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
) -> None:
    """A file option or argument that does not exist: exit 3, one line naming the file."""
    missing = str(tmp_path / "missing.file")
    code, _, err = run(capsys, *(a.format(missing=missing) for a in args),
                       "--record", str(tmp_path / "record.db"))
    assert code == 3, err
    assert err.strip().splitlines() == [f"ccm: error: {missing}: no such file; check the path"]
    assert not (tmp_path / "record.db").exists()


def test_export_of_an_unknown_customer_is_3_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`record export` of a customer the record does not hold: exit 3 as `timeline`, no file."""
    record = tmp_path / "record.db"
    data = write(tmp_path / "req.json", sample("monthly_statement"))
    assert render(capsys, "monthly_statement", data, "--channel", "sms", "--out",
                  str(tmp_path / "out"), "--record", str(record))[0] == 0
    export = tmp_path / "e.json"
    code, out, err = run(capsys, "record", "export", "D-9999", "--record", str(record),
                         "--out", str(export))
    assert code == 3 and "no messages for customer 'D-9999'" in err and out == ""
    assert not export.exists()
    assert run(capsys, "record", "timeline", "D-9999", "--record", str(record))[0] == 3


# -- 2. an input with no requests, or none readable: 1, and no record file ------------


@pytest.mark.parametrize(("name", "content"), [
    ("empty.jsonl", b""),
    ("blank.jsonl", b"\n  \n\n"),
    ("empty.csv", b""),
    ("header.csv", b"customer.id,customer.locale\n"),
])
def test_render_of_a_file_without_requests_is_1_and_leaves_no_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes,
) -> None:
    """As ccm batch: `the file has no requests`, exit 1, no record file, no output folder."""
    data = tmp_path / name
    data.write_bytes(content)
    record = tmp_path / "record.db"
    code, out, err = render(capsys, "monthly_statement", data, "--out", str(tmp_path / "out"),
                            "--record", str(record))
    assert code == 1 and out == ""
    assert f"{data}: the file has no requests" in err
    assert not record.exists() and not (tmp_path / "out").exists()


def test_render_of_a_utf16_file_leaves_no_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A UTF-16 file is one error asking for UTF-8, before the record is created."""
    data = tmp_path / "req.jsonl"
    data.write_bytes(json.dumps(sample("monthly_statement")).encode("utf-16"))
    record = tmp_path / "record.db"
    code, _, err = render(capsys, "monthly_statement", data, "--out", str(tmp_path / "out"),
                          "--record", str(record))
    assert code == 1 and "UTF-16" in err and "UTF-8" in err
    assert not record.exists()


def test_queue_without_a_master_key_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_key: None,
) -> None:
    """--queue without a key: the options to set, not the API's wording; no record file."""
    data = write(tmp_path / "req.json", sample("monthly_statement"))
    record = tmp_path / "record.db"
    code, _, err = render(capsys, "monthly_statement", data, "--queue", "--record", str(record))
    assert code == 1
    assert "--queue needs a master key" in err and "CCM_MASTER_KEY_FILE" in err
    assert "RenderOptions" not in err
    assert not record.exists()


# -- 3. CCM_RECORD_LOCK_TIMEOUT: every writing command, exit 4 ------------------------


@pytest.mark.parametrize("command", ["render", "batch"])
def test_a_locked_record_is_4_after_the_lock_timeout(tmp_path: Path, command: str) -> None:
    """Another writer holds the record: exit 4 after $CCM_RECORD_LOCK_TIMEOUT, not after 30 s."""
    record = tmp_path / "record.db"
    data = write(tmp_path / "req.json", sample("monthly_statement"))
    assert main(["render", "monthly_statement", "--pack", ACME, "--templates", str(TEMPLATES),
                 "--data", str(data), "--channel", "sms", "--out", str(tmp_path / "first"),
                 "--record", str(record)]) == 0
    env = {**os.environ, "CCM_RECORD_LOCK_TIMEOUT": "1", "PYTHONPATH": str(ROOT)}
    holder = sqlite3.connect(record, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        # Over the 30 s default the run would be killed: the timeout given is honoured.
        done = subprocess.run(
            [sys.executable, "-m", "ccm", command, "monthly_statement", "--pack", ACME,
             "--templates", str(TEMPLATES), "--data", str(data), "--channel", "sms",
             "--out", str(tmp_path / "second"), "--record", str(record)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=25, check=False)
    finally:
        holder.close()
    assert done.returncode == 4, done.stderr
    assert "locked by another process" in done.stderr and "Traceback" not in done.stderr


# -- 4. the line of a JSON mistake --------------------------------------------------


def test_invalid_json_in_a_multi_line_file_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing comma on line N of an indented .json file is reported at line N, not 1."""
    text = json.dumps(sample("payment_reminder"), indent=2)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if '"currency"' in line)
    lines[at] = lines[at].rstrip(",")
    data = tmp_path / "req.json"
    data.write_text("\n".join(lines), "utf-8")
    code, _, err = render(capsys, "payment_reminder", data, "--out", str(tmp_path / "out"),
                          "--no-record")
    assert code == 1
    # The decoder stops where the comma should be: at the start of the next line.
    assert f"{data}:{at + 2}: invalid JSON: Expecting ',' delimiter (column" in err
    as_list = tmp_path / "list.json"
    as_list.write_text("[\n" + "\n".join(lines) + "\n]", "utf-8")
    code, _, err = render(capsys, "payment_reminder", as_list, "--out", str(tmp_path / "out"),
                          "--no-record")
    assert code == 1 and f"{as_list}:{at + 3}: invalid JSON: Expecting ','" in err


# -- 5. a damaged .gz --------------------------------------------------------------


@pytest.mark.parametrize("content", [b"x\n", gzip.compress(b'{"a": 1}\n' * 50)[:30]])
@pytest.mark.parametrize("command", ["render", "batch"])
def test_a_damaged_gzip_input_is_1_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, command: str,
) -> None:
    """Not gzip, or cut short: exit 1, `<file>: not a valid gzip file`; no record for a
    file that is no gzip at all (requests before the cut of a short one may be rendered)."""
    data = tmp_path / "req.jsonl.gz"
    data.write_bytes(content)
    record = tmp_path / "record.db"
    code, _, err = run(capsys, command, "monthly_statement", "--pack", ACME, "--templates",
                       str(TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
                       "--record", str(record))
    assert code == 1, err
    assert f"{data}: not a valid gzip file" in err and "None" not in err
    assert record.exists() == (content != b"x\n")


# -- 6. the human line of a suppressed or deferred message -----------------------------


def test_a_suppressed_sms_line_shows_no_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """No consent: the line names channel, locale and reason, and no field it does not have."""
    req = sample("product_offer")
    req["customer"]["consents"] = {"email": False, "sms": False}
    data = write(tmp_path / "req.json", req)
    code, out, _ = render(capsys, "product_offer", data, "--out", str(tmp_path / "out"),
                          "--record", str(tmp_path / "record.db"))
    assert code == 0 and "None" not in out
    assert "suppressed product_offer for C-100231 (sms, en_GB): consent:sms" in out


def test_a_message_deferred_by_quiet_hours_says_until_when(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """An SMS at 23:30 London time: held by quiet hours until 08:00 the next morning."""
    data = write(tmp_path / "req.json", sample("product_offer"))
    code, out, _ = render(capsys, "product_offer", data, "--channel", "sms", "--out",
                          str(tmp_path / "out"), "--record", str(tmp_path / "record.db"),
                          "--as-of", "2026-06-01T23:30:00+01:00")
    assert code == 0 and "None" not in out
    assert "(sms, en_GB): quiet_hours until 2026-06-02T08:00:00+01:00" in out


# -- 7. Ctrl-C ---------------------------------------------------------------------


class _Interrupted:
    """A module whose names raise KeyboardInterrupt: Ctrl-C while ``ccm.cli`` is imported."""

    def __getattr__(self, name: str) -> Any:
        raise KeyboardInterrupt


def test_ctrl_c_during_start_up_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The entry point turns a KeyboardInterrupt during the imports into `ccm: interrupted`."""
    from ccm.__main__ import entry

    monkeypatch.setitem(sys.modules, "ccm.cli", _Interrupted())
    assert entry() == 130
    assert capsys.readouterr().err == "ccm: interrupted\n"


def test_ctrl_c_in_a_command_is_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C while rendering: `ccm: interrupted`, exit 130, no traceback."""
    from ccm.render.engine import Engine

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Engine, "render", interrupted)
    data = write(tmp_path / "req.json", sample("monthly_statement"))
    code, _, err = render(capsys, "monthly_statement", data, "--out", str(tmp_path / "out"),
                          "--no-record")
    assert code == 130 and "ccm: interrupted" in err and "Traceback" not in err


# -- 8. smaller -------------------------------------------------------------------


def test_no_record_with_record_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """--no-record and --record together: exit 2 before anything is made."""
    data = write(tmp_path / "req.json", sample("monthly_statement"))
    record = tmp_path / "record.db"
    code, _, err = render(capsys, "monthly_statement", data, "--out", str(tmp_path / "out"),
                          "--no-record", "--record", str(record))
    assert code == 2 and "not both" in err
    assert not record.exists() and not (tmp_path / "out").exists()


def test_an_unknown_suffix_names_the_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--data x.txt`: one mention of the file and the formats there are."""
    data = tmp_path / "d1.txt"
    data.write_text("{}", "utf-8")
    code, _, err = render(capsys, "monthly_statement", data, "--out", str(tmp_path / "out"),
                          "--no-record")
    assert code == 1 and err.count(str(data)) == 1 and "unknown input format" in err


def test_a_master_key_file_that_is_not_one_says_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key file holding other text: not a ccm master key, and how to make one; no record."""
    key = tmp_path / "master.key"
    key.write_text("ccmkey \u2713 nope\n", "utf-8")
    monkeypatch.delenv("CCM_MASTER_KEY", raising=False)
    monkeypatch.setenv("CCM_MASTER_KEY_FILE", str(key))
    data = write(tmp_path / "req.json", sample("monthly_statement"))
    record = tmp_path / "record.db"
    code, _, err = render(capsys, "monthly_statement", data, "--out", str(tmp_path / "out"),
                          "--record", str(record))
    assert code == 1 and "codec" not in err
    assert f"master key file {key} is not a ccm master key" in err
    assert "MasterKey.generate_file" in err
    assert not record.exists()


@pytest.mark.parametrize("group", [(), ("record",)])
def test_a_bare_group_prints_its_help_without_an_error_prefix(
    capsys: pytest.CaptureFixture[str], group: tuple[str, ...],
) -> None:
    """`ccm` or `ccm record` alone: the group's help (as click does), exit 2, no `ccm: error:`."""
    code, _, err = run(capsys, *group)
    assert code == 2 and err.startswith("Usage: ccm") and "ccm: error" not in err
