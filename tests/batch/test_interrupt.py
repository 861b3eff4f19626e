"""Ctrl-C and SIGTERM on ``ccm batch``, real processes: a prompt clean stop, then an exact resume.

The terminal's Ctrl-C goes to the whole foreground process group (the workers too);
``kill`` or ``timeout`` signal only the parent. Either way the run must stop within
seconds, say so once (``ccm: interrupted; resume with --run-id ...``), exit 130 (SIGINT)
or 143 (SIGTERM) without a traceback, leave no process behind, release the output
folder, and a rerun with the same run id must complete with every message once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import DAYTIME, EPOCH, PACK, TEST_TEMPLATES, notes, out_name, write_jsonl

pytestmark = pytest.mark.slow

RUN_ID = "stop-1"
#: A failure, not a timing assertion: a run that has not exited by then hangs.
HANG = 60.0


def _start(data: Path, out: Path, record_url: str, log: Path,
           channel: str = "sms") -> subprocess.Popen[bytes]:
    """``ccm batch`` in a process group of its own (its workers join it), one channel, one
    row per task (each its own record commit), so that a few hundred SMS take some seconds."""
    cmd = [sys.executable, "-m", "ccm", "batch", "quick_note", "--pack", str(PACK),
           "--templates", str(TEST_TEMPLATES), "--data", str(data), "--out", str(out),
           "--record", record_url, "--run-id", RUN_ID, "--workers", "2", "--channel", channel,
           "--chunk-size", "1", "--as-of", DAYTIME.isoformat()]
    with log.open("ab") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def _wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be signalled"


def _first_output(out: Path) -> Callable[[], bool]:
    return lambda: out.is_dir() and any(p.name.endswith((".sms.txt", ".pdf"))
                                        for p in out.iterdir())


def _started(log: Path) -> Callable[[], bool]:
    """The run has begun (its first line), its workers not yet: they are starting up."""
    return lambda: log.exists() and b"ccm batch: run " in log.read_bytes()


def _forkserver_loading(pgid: int) -> Callable[[], bool]:
    """The run's forkserver is loading the modules its workers share: ccm (SQLAlchemy's
    compiled parts are mapped), WeasyPrint next, a second or more in all."""
    def loading() -> bool:
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit() or os.getpgid(int(entry.name)) != pgid:
                    continue
                if (b"forkserver" in (entry / "cmdline").read_bytes()
                        and "sqlalchemy" in (entry / "maps").read_text()):
                    return True
            except OSError:
                continue
        return False
    return loading


def _group_gone(pgid: int) -> bool:
    """No process of the run's group is left (workers, forkserver, resource tracker)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals, to_group: bool, log: Path) -> int:
    """Send ``sig`` to the run's group (the terminal's Ctrl-C) or its parent alone (``kill``);
    its exit status. Not exiting within :data:`HANG` seconds is a hang: a failure."""
    try:
        (os.killpg if to_group else os.kill)(proc.pid, sig)
        return proc.wait(timeout=HANG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ccm batch did not exit within {HANG:.0f} s of {sig.name}:\n"
                    + log.read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _check_stopped(proc: subprocess.Popen[bytes], code: int, status: int, log: Path) -> None:
    """The exit status, one resume hint, no traceback or warning, no process left."""
    text = log.read_text()
    assert code == status, text
    assert "Traceback" not in text, text
    assert "leaked" not in text, text  # multiprocessing's resource_tracker warning
    assert "not confirmed" not in text, text
    assert text.count(f"ccm: interrupted; resume with --run-id {RUN_ID}") == 1, text
    assert _group_gone(proc.pid), "a worker (or the forkserver) outlived the stopped run"


def _resume_once(data: Path, out: Path, record_url: str, log: Path, record: Any,
                 requests: list[dict[str, Any]], channel: str = "sms") -> None:
    """The rerun starts at once (the folder is released) and completes exactly once."""
    rerun = _start(data, out, record_url, log, channel)
    try:
        assert rerun.wait(timeout=300) == 0, log.read_text()
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
    assert "another batch run is writing" not in log.read_text()
    assert record.verify().ok
    for req in requests:
        cid = req["customer"]["id"]
        assert record.count(cid, since=EPOCH, channel=channel) == 1, cid
        entry = record.find_key(f"{RUN_ID}:quick_note:{cid}:{channel}")
        assert entry is not None and entry.status == "generated"
        content = (out / out_name(cid, channel)).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry.content_sha256, cid
    names = [p.name for p in out.rglob("*")]
    assert not [n for n in names if n.endswith(".tmp") or "ccm-staging" in n]
    suffix = ".sms.txt" if channel == "sms" else ".pdf"
    assert sum(n.endswith(suffix) for n in names) == len(requests)


@pytest.mark.parametrize(("when", "channel", "sig", "to_group", "status"), [
    pytest.param("output", "sms", signal.SIGINT, True, 130, id="ctrl-c-mid-run"),
    pytest.param("output", "sms", signal.SIGINT, False, 130, id="sigint-parent-mid-run"),
    # PDFs: the forkserver preloads WeasyPrint, a second or more to be interrupted in.
    pytest.param("forkserver", "pdf", signal.SIGINT, True, 130,
                 id="ctrl-c-while-workers-start"),
    pytest.param("start", "pdf", signal.SIGINT, False, 130, id="sigint-parent-at-start"),
    pytest.param("output", "sms", signal.SIGTERM, False, 143, id="sigterm-mid-run"),
    pytest.param("output", "sms", signal.SIGTERM, True, 143, id="sigterm-group-mid-run"),
])
def test_a_stopped_run_exits_cleanly_and_resumes_exactly_once(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any],
    when: str, channel: str, sig: signal.Signals, to_group: bool, status: int,
) -> None:
    """Signalled mid-run or while its workers start, the run exits 130/143 within seconds
    with one resume hint and no traceback, leaves no process and no lock behind, and the
    rerun it asks for completes with every message recorded and published once."""
    requests = notes(200 if channel == "sms" else 12)
    data = write_jsonl(tmp_path / "in.jsonl", requests)
    out = tmp_path / "out"
    log = tmp_path / "stderr.log"
    proc = _start(data, out, record_url, log, channel)
    _wait_for(proc, {"output": _first_output(out), "start": _started(log),
                     "forkserver": _forkserver_loading(proc.pid)}[when])
    _check_stopped(proc, _stop(proc, sig, to_group, log), status, log)
    _resume_once(data, out, record_url, log, open_record(record_url), requests, channel)


def test_ctrl_c_while_the_input_is_read_exits_130(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any],
) -> None:
    """Interrupted before the run starts (counting the input's rows: here a pipe that has
    not ended), ccm batch exits 130 with the hint, not 1 with another command's wording."""
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    log = tmp_path / "stderr.log"
    keep = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so that the writer can open at once
    writer = os.open(fifo, os.O_WRONLY)
    try:
        proc = _start(fifo, out, record_url, log)
        target = os.path.realpath(fifo)
        reading = lambda: any(  # noqa: E731 - ccm has the pipe open: it is counting rows
            _fd_target(proc.pid, fd) == target for fd in _fds(proc.pid))
        _wait_for(proc, reading)
        _check_stopped(proc, _stop(proc, signal.SIGINT, True, log), 130, log)
    finally:
        os.close(writer)
        os.close(keep)
    requests = notes(5)
    fifo.unlink()
    data = write_jsonl(tmp_path / "in.jsonl", requests)
    _resume_once(data, out, record_url, log, open_record(record_url), requests)


def _fds(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


def _fd_target(pid: int, fd: str) -> str | None:
    """What a process's open file ``fd`` is, or None: it may be closed between the listing
    and this read (the process is running)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def test_run_batch_stops_its_workers_then_raises_keyboard_interrupt(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any],
) -> None:
    """From Python, SIGINT mid-run stops the workers, closes the record and unlocks the
    folder, then raises KeyboardInterrupt (the handler there was); the same call again
    completes with every message once."""
    import multiprocessing

    from ccm.batch.run import run_batch

    requests = notes(60)
    out = tmp_path / "out"
    sent: list[int] = []

    def on_event(event: Any) -> None:
        if event.kind == "progress" and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)

    options: dict[str, Any] = dict(
        pack=PACK, templates=TEST_TEMPLATES, out=out, record_url=record_url, run_id=RUN_ID,
        channels=["sms"], workers=2, chunk_size=1, now=DAYTIME)
    with pytest.raises(KeyboardInterrupt):
        run_batch("quick_note", requests, on_event=on_event, **options)
    assert sent
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not multiprocessing.active_children()

    assert run_batch("quick_note", requests, **options).exit_status == 0
    record = open_record(record_url)
    for req in requests:
        assert record.count(req["customer"]["id"], since=EPOCH, channel="sms") == 1
    assert sum(p.name.endswith(".sms.txt") for p in out.iterdir()) == len(requests)
