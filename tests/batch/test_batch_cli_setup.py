"""``ccm batch`` as an operator meets it: reruns in another output format, setup mistakes,
repaired files. Each test asserts what the user sees (message, exit code) and the files left."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from ccm.cli import main

from .conftest import DAYTIME, PACK, TEST_TEMPLATES, notes, write_jsonl


def _args(data: Path | str, out: Path | str, record_url: str, *extra: str) -> list[str]:
    return ["batch", "quick_note", "--pack", str(PACK), "--templates", str(TEST_TEMPLATES),
            "--data", str(data), "--out", str(out), "--record", record_url,
            "--as-of", DAYTIME.isoformat(), "--workers", "0", "--channel", "sms", *extra]


def _messages(out: Path) -> list[str]:
    """Every message id in ``out``: one per .sms.txt file, one per JSONL line."""
    ids = [p.name for p in out.glob("*.sms.txt")]
    for chunk in out.glob("messages-*.jsonl"):
        ids += [json.loads(line)["message_id"] for line in chunk.read_text().splitlines()]
    return ids


@pytest.mark.parametrize(("began", "other"), [("jsonl", "files"), ("files", "jsonl"),
                                              ("zip", "jsonl")])
def test_a_rerun_keeps_the_format_its_run_began_with_and_refuses_another(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str], began: str, other: str,
) -> None:
    """Without --output-format a rerun takes its run's format; another format is refused
    before anything is written (it would write every message again, in both forms)."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(3))
    out = tmp_path / "out"
    assert main(_args(data, out, record_url, "--run-id", "r1", "--output-format", began)) == 0
    before = sorted(p.name for p in out.iterdir())

    assert main(_args(data, out, record_url, "--run-id", "r1")) == 0
    assert "duplicate   3" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == before

    assert main(_args(data, out, record_url, "--run-id", "r1", "--output-format", other)) == 1
    err = capsys.readouterr().err
    assert f"run r1 began with output format {began!r}" in err
    assert f"(ccm batch --output-format {began})" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_run_begun_before_runs_kept_notes_is_known_by_its_chunk_files(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """An output folder of an older ccm (chunk files, no note): a rerun in files is refused,
    and one without --output-format resumes in JSONL, the messages once each."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(3))
    out = tmp_path / "out"
    assert main(_args(data, out, record_url, "--run-id", "old", "--output-format", "jsonl")) == 0
    (note,) = out.glob(".ccm-run-*.json")
    note.unlink()
    assert main(_args(data, out, record_url, "--run-id", "old", "--output-format", "files")) == 1
    assert "began with output format 'jsonl'" in capsys.readouterr().err
    assert main(_args(data, out, record_url, "--run-id", "old")) == 0
    assert len(_messages(out)) == 3 and not list(out.glob("*.sms.txt"))


def test_a_new_run_into_a_folder_with_another_runs_note_writes_its_own_format(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """The note is per run: another run id in the same folder chooses its format freely."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(2))
    out = tmp_path / "out"
    assert main(_args(data, out, record_url, "--run-id", "a", "--output-format", "jsonl")) == 0
    other = write_jsonl(tmp_path / "other.jsonl", notes(2, prefix="O"))
    assert main(_args(other, out, record_url, "--run-id", "b", "--output-format", "files")) == 0
    assert len(list(out.glob("*.sms.txt"))) == 2
    assert len(list(out.glob(".ccm-run-*.json"))) == 2


def test_an_empty_run_id_is_a_usage_error(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """``--run-id "$UNSET"`` would start a new run on every rerun: refused, status 2."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    assert main(_args(data, tmp_path / "out", record_url, "--run-id", " ")) == 2
    assert "'--run-id': is empty" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _setup_error(tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
                 args: list[str]) -> tuple[int, str]:
    status = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "resume with" not in captured.err
    assert not (tmp_path / "out").exists()
    return status, captured.err


def test_setup_mistakes_are_one_line_with_the_documented_exit_code_and_nothing_made(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """Missing pack, data or locale: NOT_FOUND (3); a folder for --data or a file for --out:
    BAD_INPUT (1). No output folder, and no 'resume' hint for a run that never started."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    out = tmp_path / "out"

    args = _args(data, out, record_url)
    args[args.index("--pack") + 1] = str(tmp_path / "no-pack")
    assert _setup_error(tmp_path, record_url, capsys, args) == (
        3, f"ccm: error: --pack {tmp_path / 'no-pack'}: no such folder; give the brand "
           "pack's folder\n")

    missing = tmp_path / "missing.jsonl"
    assert _setup_error(tmp_path, record_url, capsys, _args(missing, out, record_url)) == (
        3, f"ccm: error: --data {missing}: no such file; check the path\n")

    folder = tmp_path / "folder"
    folder.mkdir()
    assert _setup_error(tmp_path, record_url, capsys, _args(folder, out, record_url)) == (
        1, f"ccm: error: --data {folder}: that is a folder; give a .jsonl, .csv or .json "
           "file\n")

    status, err = _setup_error(tmp_path, record_url, capsys,
                               _args(data, out, record_url, "--locale", "xx_YY"))
    assert status == 3 and "has no locale 'xx_YY'; it has: " in err

    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    status = main(_args(data, a_file, record_url))
    assert status == 1
    assert capsys.readouterr().err == (
        f"ccm: error: --out {a_file}: a file of that name is in the way; give a folder\n")
    assert a_file.read_text() == "keep me"


def test_an_out_folder_that_cannot_be_made_stops_before_the_record_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A file on the --out path: IO_ERROR (5), one line, and no record file left behind."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    record = tmp_path / "record.db"
    status = main(_args(data, a_file / "out", f"sqlite:///{record}"))
    assert status == 5
    assert capsys.readouterr().err == (
        f"ccm: error: --out {a_file / 'out'}: {a_file} is a file, not a folder; check the "
        "path\n")
    assert not record.exists() and a_file.read_text() == "keep me"


def test_data_at_a_url_whose_file_system_is_not_installed_says_what_is_missing(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fsspec's ImportError for an uninstalled protocol is the user's setup: one line, not
    an internal error."""
    import importlib

    known = importlib.import_module("fsspec.registry").known_implementations
    monkeypatch.setitem(known, "ccmtest", {
        "class": "ccm_no_such_module.FileSystem", "err": "install ccm-no-such-module"})
    status, err = _setup_error(tmp_path, record_url, capsys,
                               _args("ccmtest://bucket/in.jsonl", tmp_path / "out", record_url))
    assert status == 1
    assert err.startswith("ccm: error: --data ccmtest://bucket/in.jsonl: reading this URL "
                          "needs more packages: ")
    assert "install ccm-no-such-module" in err


def test_a_damaged_file_is_repaired_with_a_warning_naming_it(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """A message file edited by hand is written again on rerun, and the operator is told."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(2))
    out = tmp_path / "out"
    assert main(_args(data, out, record_url, "--run-id", "w1")) == 0
    damaged = sorted(out.glob("*.sms.txt"))[0]
    good = damaged.read_bytes()
    damaged.write_text("edited by hand")
    capsys.readouterr()
    assert main(_args(data, out, record_url, "--run-id", "w1")) == 0
    captured = capsys.readouterr()
    assert f"ccm: warning: {damaged} does not hold message " in captured.err
    assert "missing or damaged in the output" in captured.out
    assert damaged.read_bytes() == good


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-06-01", datetime(2026, 6, 1)),
    ("2026-06-01T12:00Z", datetime.fromisoformat("2026-06-01T12:00+00:00")),
    ("2026-06-01 12:00:00.5+02:00", datetime.fromisoformat("2026-06-01T12:00:00.5+02:00")),
])
def test_as_of_takes_iso_8601_dates_and_times(text: str, expected: datetime) -> None:
    from ccm.cli._common import IsoDateTime

    assert IsoDateTime().convert(text, None, None) == expected


def test_as_of_that_is_not_a_date_is_a_usage_error(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    args = _args(data, tmp_path / "out", record_url)
    args[args.index("--as-of") + 1] = "next tuesday"
    assert main(args) == 2
    assert "'next tuesday' is not an ISO 8601 date and time" in capsys.readouterr().err


def test_a_run_without_a_master_key_warns_that_lost_files_cannot_be_restored(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a key the record keeps no content: the operator is told once, at the start;
    with one, not. ``--json`` carries it as the start event's ``archived``."""
    from ccm.record import MasterKey

    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    monkeypatch.delenv("CCM_MASTER_KEY", raising=False)
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)
    assert main(_args(data, tmp_path / "a", record_url, "--run-id", "a")) == 0
    assert capsys.readouterr().err.count("ccm: warning: no master key") == 1

    assert main(_args(data, tmp_path / "b", record_url, "--run-id", "b", "--json")) == 0
    start = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (start["event"], start["archived"]) == ("start", False)

    monkeypatch.setenv("CCM_MASTER_KEY", MasterKey.generate().text())
    keyed = f"sqlite:///{tmp_path / 'keyed.db'}"
    assert main(_args(data, tmp_path / "c", keyed, "--run-id", "c")) == 0
    assert "no master key" not in capsys.readouterr().err
