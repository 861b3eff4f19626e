"""``ccm batch`` in-process: JSON events, plain progress, summary, exit status, extras."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from ccm.cli import main

from .conftest import (
    DAYTIME,
    PACK,
    ROOT,
    TEMPLATES,
    TEST_TEMPLATES,
    notes,
    out_name,
    write_jsonl,
)


def _args(data: Path, out: Path, record_url: str, *extra: str) -> list[str]:
    return ["batch", "quick_note", "--pack", str(PACK), "--templates", str(TEST_TEMPLATES),
            "--data", str(data), "--out", str(out), "--record", record_url,
            "--as-of", DAYTIME.isoformat(), *extra]


def test_json_events_stream_start_progress_error_done(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json`` prints one JSON object per line; a bad row makes an error event and status 1."""
    data = write_jsonl(tmp_path / "in.jsonl", [*notes(3), "{broken"])
    status = main(_args(data, tmp_path / "out", record_url, "--json", "--run-id", "j1",
                        "--workers", "0", "--channel", "sms"))
    assert status == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds
    (error,) = [e for e in events if e["event"] == "error"]
    assert error["line"] == 4 and error["error"] == "InputError"
    done = events[-1]
    assert (done["generated"], done["failed"], done["run_id"], done["total"]) == (3, 1, "j1", 4)


def test_plain_output_ends_with_a_summary_and_status_0(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``--json`` and off a terminal, progress is plain lines and a summary is printed."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(2))
    status = main(_args(data, tmp_path / "out", record_url, "--workers", "0", "--channel", "sms"))
    captured = capsys.readouterr()
    assert status == 0
    assert "generated   2" in captured.out and "failed      0" in captured.out
    assert "ccm batch: run " in captured.err


def test_csv_input_is_typed_by_the_template_contract(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """CSV columns become a request; ``data.amount`` is a number because the contract says so."""
    data = tmp_path / "in.csv"
    data.write_text(
        "customer.id,customer.phone,customer.email,customer.date_of_birth,data.amount,data.tags\n"
        'C1,+447700900123,c1@example.com,1980-01-02,12.5,"[""a""]"\n'
        "C2,+447700900123,c2@example.com,1980-01-02,3,\n"
    )
    out = tmp_path / "out"
    status = main(_args(data, out, record_url, "--workers", "0", "--channel", "sms", "--json"))
    assert status == 0, capsys.readouterr()
    assert "12.50" in (out / out_name("C1", "sms")).read_text()


def test_unknown_template_is_a_one_line_error(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown template is one line naming the templates there are, status 3, before
    any work."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    args = _args(data, tmp_path / "out", record_url)
    args[1] = "no_such_template"
    assert main(args) == 3  # NOT_FOUND (docs/cli.md)
    err = capsys.readouterr().err
    assert err.startswith("ccm: error: no template 'no_such_template' in ")
    assert "it has: " in err and "quick_note" in err
    assert not (tmp_path / "out").exists()


def test_missing_distributed_names_the_extra_to_install(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--scheduler`` without the cluster extra says exactly what to pip install."""
    real_import = builtins.__import__

    def no_distributed(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    assert main(_args(data, tmp_path / "out", record_url, "--scheduler", "local")) == 1
    assert "pip install 'ccm-engine[cluster]'" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_an_io_error(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--scheduler tcp://`` where nothing listens: one line naming the address, exit 5 (the
    table's code for something that cannot be reached), nothing rendered."""
    pytest.importorskip("distributed")
    monkeypatch.setattr("ccm.cli.batch.SCHEDULER_TIMEOUT", 2)
    data = write_jsonl(tmp_path / "in.jsonl", notes(1))
    code = main(_args(data, tmp_path / "out", record_url, "--scheduler", "tcp://127.0.0.1:9"))
    err = capsys.readouterr().err
    assert code == 5, err
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9" in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("**/*.txt"))


def test_output_format_defaults_to_jsonl_above_the_documented_size(
    tmp_path: Path, record_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """Inputs over JSONL_ABOVE rows get JSONL chunks by default; smaller ones one file each."""
    import ccm.batch.run as run

    monkeypatch.setattr(run, "JSONL_ABOVE", 3)  # the documented 10,000, scaled down
    small = write_jsonl(tmp_path / "small.jsonl", notes(3, prefix="S"))
    large = write_jsonl(tmp_path / "large.jsonl", notes(4, prefix="L"))
    assert main(_args(small, tmp_path / "a", record_url, "--workers", "0", "--channel", "sms",
                      "--run-id", "small")) == 0
    assert main(_args(large, tmp_path / "b", record_url, "--workers", "0", "--channel", "sms",
                      "--run-id", "large")) == 0
    capsys.readouterr()
    assert len(list((tmp_path / "a").glob("*.sms.txt"))) == 3
    assert not list((tmp_path / "b").glob("*.sms.txt"))
    chunks = list((tmp_path / "b").glob("messages-large-*.jsonl"))
    assert chunks  # one per task: how many depends on how the run sized its tasks
    assert sum(len(c.read_text("ascii").splitlines()) for c in chunks) == 4


def test_a_fresh_run_with_workers_reads_consent_and_reports_bad_lines_by_number(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run the record has never seen sends raw lines to its workers: they still find a
    hard bounce recorded earlier (the SMS is suppressed) and report a broken line by number."""
    from ccm.record import Record

    data = write_jsonl(tmp_path / "a.jsonl", notes(3))
    assert main(_args(data, tmp_path / "a", record_url, "--workers", "0", "--channel", "sms",
                      "--run-id", "first")) == 0
    with Record(record_url) as record:
        entry = record.find_key("first:quick_note:N0001:sms")
        assert entry is not None
        record.add_event(entry.message_id, "suppressed", at=DAYTIME)
    data = write_jsonl(tmp_path / "b.jsonl", [*notes(3), "{broken"])
    capsys.readouterr()
    status = main(_args(data, tmp_path / "b", record_url, "--workers", "1", "--channel", "sms",
                        "--run-id", "second", "--json"))
    assert status == 1
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["generated"] == 2 and done["suppressed_total"] == 1 and done["failed"] == 1
    assert done["parent_max_rss_mb"] > 0 and done["worker_max_rss_mb"] > 0
    (error,) = [json.loads(x) for x in (tmp_path / "b" / "errors.jsonl").read_text().splitlines()]
    assert error["line"] == 4 and error["error"] == "InputError"
    assert not (tmp_path / "b" / out_name("N0001", "sms")).exists()
    assert (tmp_path / "b" / out_name("N0002", "sms")).exists()


def test_a_run_waits_for_another_writer_of_its_folder_then_says_so(
    tmp_path: Path, record_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """While another process writes into out/ (holds the folder lock), a run does not start:
    it says it waits, past the wait it fails with a message naming the folder, and writes
    nothing."""
    import fcntl
    import os

    import ccm.batch.run as batch_run

    monkeypatch.setattr(batch_run, "WAIT_FOR_WRITERS", 0.2)
    out = tmp_path / "out"
    out.mkdir()
    data = write_jsonl(tmp_path / "in.jsonl", notes(2))
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # as a worker of another run does while it commits
        status = main(_args(data, out, record_url, "--workers", "0", "--channel", "sms",
                            "--run-id", "locked"))
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert status != 0
    assert "another batch run is writing into" in err and str(out) in err
    assert err.index("waiting for it to finish (at most 0 s") < err.index("still after")
    assert "Traceback" not in err
    assert not list(out.glob("*.sms.txt"))
    assert main(_args(data, out, record_url, "--workers", "0", "--channel", "sms",
                      "--run-id", "locked")) == 0
    assert len(list(out.glob("*.sms.txt"))) == 2


def test_peak_memory_is_the_runs_own_not_its_launchers(tmp_path: Path) -> None:
    """A run ``exec``'d by a large process reports its own peak RSS, not the launcher's.

    ``ru_maxrss`` survives ``exec`` on Linux: started from a 600 MiB process, the
    parent would report 600 MiB whatever it used (the memory benchmark then
    compares the launcher with itself, a figure that cannot move).
    """
    import subprocess
    import sys

    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM is Linux's")
    data = write_jsonl(tmp_path / "in.jsonl", notes(3))
    args = ["-m", "ccm", *_args(data, tmp_path / "out", f"sqlite:///{tmp_path / 'r.db'}",
                                "--json", "--workers", "1", "--channel", "sms")]
    launcher = ("import os, sys\n"
                "ballast = b'x' * (600 << 20)\n"
                "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n")
    done = subprocess.run([sys.executable, "-c", launcher, *args], capture_output=True,
                          text=True, timeout=300, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["generated"] == 3
    assert 0 < summary["parent_max_rss_mb"] < 400
    assert 0 < summary["worker_max_rss_mb"] < 400


def test_quiet_hours_deferrals_are_reported_apart_with_the_rerun_to_send_them(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's run at 23:30 UTC: six SMS held by quiet hours (London and Dubai) are
    ``deferred``, not ``suppressed``, with when the windows end and the command that sends
    them; a deferral is no error (exit 0); the rerun after the windows sends them."""
    args = ["batch", "monthly_statement", "--pack", str(PACK), "--templates", str(TEMPLATES),
            "--data", str(ROOT / "examples" / "customers.jsonl"), "--out", str(tmp_path / "out"),
            "--record", record_url, "--run-id", "qh", "--channel", "sms", "--workers", "0"]
    assert main([*args, "--as-of", "2026-06-01T23:30:00Z"]) == 0
    out = capsys.readouterr().out
    assert "  suppressed  0\n" in out
    assert ("  deferred    6 (quiet hours, until each customer's own end of them, from "
            "2026-06-02 08:00 Asia/Dubai to 2026-06-02 08:00 Europe/London)\n") in out
    assert ("quiet hours deferred 6 message(s), not suppressed: run the same command again "
            "with --run-id qh after 2026-06-02 08:00 Europe/London to send them") in out
    assert not (tmp_path / "out" / "errors.jsonl").read_text()

    assert main([*args, "--as-of", "2026-06-02T07:30:00Z", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (done["generated"], done["deferred"], done["suppressed"]) == (6, 0, {})
    assert done["deferred_until"] is None


def test_deferrals_in_one_zone_say_until_when_and_json_has_them(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One customer in Tokyo at midnight: ``deferred 1`` until 08:00 there; ``--json``'s
    ``done`` event and its progress events count it as deferred, not suppressed."""
    requests = notes(2)
    requests[1]["customer"]["timezone"] = "Asia/Tokyo"
    data = write_jsonl(tmp_path / "in.jsonl", requests)
    args = _args(data, tmp_path / "out", record_url, "--run-id", "tk", "--workers", "0",
                 "--channel", "sms")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "  deferred    1 (quiet hours, until 2025-11-04 08:00 Asia/Tokyo)\n" in out
    assert "after 2025-11-04 08:00 Asia/Tokyo to send them" in out
    assert main([*args, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = events[-1]
    assert (done["duplicate"], done["deferred"], done["suppressed_total"]) == (1, 1, 0)
    assert done["deferred_until"] == {
        "earliest": "2025-11-04T08:00:00+09:00", "earliest_zone": "Asia/Tokyo",
        "latest": "2025-11-04T08:00:00+09:00", "latest_zone": "Asia/Tokyo"}
    assert events[-2]["event"] == "progress" and events[-2]["deferred"] == 1


def test_a_full_disk_without_a_file_named_says_where_the_run_writes(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An OSError that names no file (a full disk met while syncing) still says where the run
    writes, exit 5; it read "cannot use: the disk is full"."""
    import errno

    def full(self: Any, handles: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ccm.batch._output._Output.sync", full)
    data = write_jsonl(tmp_path / "in.jsonl", notes(2))
    out = tmp_path / "out"
    code = main(_args(data, out, record_url, "--workers", "0", "--channel", "sms"))
    err = capsys.readouterr().err
    assert code == 5, err
    assert f"cannot write the run's files (under {out}" in err and "disk is full" in err


def test_a_new_record_is_announced_so_a_mistyped_record_url_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that creates the record says so once, naming it; the next run into it does not
    (an operator who mistyped ``--record`` would otherwise start an empty record quietly and
    send again what the real record holds)."""
    data = write_jsonl(tmp_path / "in.jsonl", notes(2))
    typo = tmp_path / "recrod" / "record.db"
    url = f"sqlite:///{typo}"
    args = _args(data, tmp_path / "out", url, "--workers", "0", "--channel", "sms")
    assert main([*args, "--run-id", "first"]) == 0
    err = capsys.readouterr().err
    assert f"ccm batch: new record at {url} (there was none)" in err
    assert "check --record or CCM_RECORD_URL" in err and typo.is_file()
    assert main([*args, "--run-id", "second"]) == 0
    assert "new record" not in capsys.readouterr().err
    status = main([*args, "--run-id", "third", "--json"])
    start = json.loads(capsys.readouterr().out.splitlines()[0])
    assert status == 0 and (start["record"], start["record_created"]) == (url, False)
