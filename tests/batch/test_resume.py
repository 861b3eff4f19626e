"""Crash safety with real processes: SIGKILL ``ccm batch`` mid-run, run again, check everything."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    DAYTIME,
    EPOCH,
    PACK,
    TEST_TEMPLATES,
    chunk_items,
    notes,
    out_name,
    write_jsonl,
)

pytestmark = pytest.mark.slow

CHANNELS = {"pdf": ".pdf", "email": ".eml", "sms": ".sms.txt"}


def _start(data: Path, out: Path, record_url: str, log: Path,
           *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "ccm", "batch", "quick_note", "--pack", str(PACK),
           "--templates", str(TEST_TEMPLATES), "--data", str(data), "--out", str(out),
           "--record", record_url, "--run-id", "crash-1", "--workers", "2", "--json",
           "--as-of", DAYTIME.isoformat(), *extra]
    with log.open("ab") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def _outputs(out: Path) -> int:
    """How many files the run has written into ``out`` (not its note of its format)."""
    return sum(1 for p in out.iterdir() if p.is_file() and not p.name.startswith(".ccm-run-"))


def _kill_after(proc: subprocess.Popen[bytes], out: Path, files: int) -> None:
    """SIGKILL the whole run (parent and workers) once ``files`` outputs exist."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and _outputs(out) >= files:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_sigkill_then_rerun_gives_exactly_one_message_per_channel(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any]
) -> None:
    """Killed twice mid-run and restarted with the same run id, the run completes exactly once."""
    requests = notes(40)
    data = write_jsonl(tmp_path / "in.jsonl", requests)
    out = tmp_path / "out"

    log = tmp_path / "stderr.log"
    for files in (4, 50):  # early, then well into the run
        _kill_after(_start(data, out, record_url, log), out, files)

    final = _start(data, out, record_url, log)
    assert final.wait(timeout=300) == 0, log.read_text()

    record = open_record(record_url)
    assert record.verify().ok
    for req in requests:
        cid = req["customer"]["id"]
        for channel in CHANNELS:
            assert record.count(cid, since=EPOCH, channel=channel) == 1, (cid, channel)
            entry = record.find_key(f"crash-1:quick_note:{cid}:{channel}")
            assert entry is not None and entry.status == "generated"
            content = (out / out_name(cid, channel)).read_bytes()
            assert hashlib.sha256(content).hexdigest() == entry.content_sha256
    names = [p.name for p in out.rglob("*")]
    assert not [n for n in names if n.endswith(".tmp") or "ccm-staging" in n]
    by_suffix = Counter(next(s for s in CHANNELS.values() if n.endswith(s))
                        for n in names if n != "errors.jsonl" and not n.startswith(".ccm-run-"))
    assert by_suffix == {suffix: len(requests) for suffix in CHANNELS.values()}


@pytest.mark.parametrize("fmt", ["jsonl", "zip"])
def test_sigkill_then_rerun_with_chunks_gives_each_message_once(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any], fmt: str
) -> None:
    """With --output-format jsonl or zip, killed twice and rerun, every SMS and email is in
    exactly one published chunk (content matching the record) and every PDF in one file."""
    requests = notes(40)
    data = write_jsonl(tmp_path / "in.jsonl", requests)
    out = tmp_path / "out"
    log = tmp_path / "stderr.log"
    for files in (3, 25):
        _kill_after(_start(data, out, record_url, log, "--output-format", fmt), out, files)
    final = _start(data, out, record_url, log, "--output-format", fmt)
    assert final.wait(timeout=300) == 0, log.read_text()

    record = open_record(record_url)
    assert record.verify().ok
    items = chunk_items(out, "crash-1")
    seen = Counter((item["customer_id"], item["channel"]) for item in items)
    assert set(seen.values()) == {1}, [k for k, v in seen.items() if v > 1]
    by_key = {(item["customer_id"], item["channel"]): item for item in items}
    for req in requests:
        cid = req["customer"]["id"]
        for channel in CHANNELS:
            entry = record.find_key(f"crash-1:quick_note:{cid}:{channel}")
            assert entry is not None and entry.status == "generated"
            if channel == "pdf":
                content = (out / out_name(cid, "pdf")).read_bytes()
            else:
                item = by_key[(cid, channel)]
                assert item["message_id"] == entry.message_id
                content = item["content"]
            assert hashlib.sha256(content).hexdigest() == entry.content_sha256, (cid, channel)
    names = [p.name for p in out.rglob("*")]
    assert not [n for n in names if n.endswith(".tmp") or "ccm-staging" in n]
    assert not [n for n in names if n.endswith((".eml", ".sms.txt"))]


def _workers_of(proc: subprocess.Popen[bytes]) -> list[int]:
    """The worker processes of a run: the forkserver's children (grandchildren of the run)."""
    stats = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        stats.append((int(entry.name), int(fields[1]), int(fields[2])))  # pid, ppid, pgrp
    children = {pid for pid, ppid, _ in stats if ppid == proc.pid}
    return [pid for pid, ppid, pgrp in stats if pgrp == proc.pid and ppid in children]


def _check_once(out: Path, record: Any, requests: list[dict[str, Any]], fmt: str) -> None:
    """Every message of every row is recorded once and is in exactly one published output."""
    assert record.verify().ok
    items = chunk_items(out, "crash-1")
    seen = Counter((item["customer_id"], item["channel"]) for item in items)
    assert set(seen.values()) <= {1}, [k for k, v in seen.items() if v > 1]
    by_key = {(item["customer_id"], item["channel"]): item for item in items}
    for req in requests:
        cid = req["customer"]["id"]
        for channel in CHANNELS:
            assert record.count(cid, since=EPOCH, channel=channel) == 1, (cid, channel)
            entry = record.find_key(f"crash-1:quick_note:{cid}:{channel}")
            assert entry is not None and entry.status == "generated"
            if channel == "pdf" or fmt == "files":
                content = (out / out_name(cid, channel)).read_bytes()
            else:
                item = by_key[(cid, channel)]
                assert item["message_id"] == entry.message_id
                content = item["content"]
            assert hashlib.sha256(content).hexdigest() == entry.content_sha256, (cid, channel)
    names = [p.name for p in out.rglob("*")]
    assert not [n for n in names if n.endswith(".tmp") or "ccm-staging" in n]


@pytest.mark.parametrize("fmt", ["files", "jsonl", "zip"])
def test_a_worker_killed_mid_run_loses_and_doubles_nothing(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any], fmt: str
) -> None:
    """SIGKILL one worker while workers stage, record and publish: the run looks its rows up
    again, and (after a rerun if it had to give a row up) every message is there once."""
    requests = notes(60)
    data = write_jsonl(tmp_path / "in.jsonl", requests)
    out = tmp_path / "out"
    log = tmp_path / "stderr.log"
    proc = _start(data, out, record_url, log, "--output-format", fmt)
    deadline = time.monotonic() + 90
    killed = False
    while time.monotonic() < deadline and proc.poll() is None and not killed:
        if out.exists() and _outputs(out) >= 6:
            for pid in _workers_of(proc)[:1]:
                os.kill(pid, signal.SIGKILL)
                killed = True
        time.sleep(0.01)
    assert killed, "no worker was found to kill"
    first = proc.wait(timeout=300)
    text = log.read_text()
    assert "Traceback" not in text, text
    if first != 0:  # the row the worker held alone was given up: reported, rerun finishes it
        failed = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
        assert first == 1 and {f["error"] for f in failed} == {"WorkerDied"}, failed
        assert _start(data, out, record_url, log, "--output-format", fmt).wait(300) == 0, text
    _check_once(out, open_record(record_url), requests, fmt)


@pytest.mark.parametrize("fmt", ["files", "jsonl", "zip"])
def test_the_parent_killed_alone_then_rerun_gives_each_message_once(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any], fmt: str
) -> None:
    """SIGKILL only the parent (its workers may still be committing) and rerun at once:
    every message is recorded once and published once."""
    requests = notes(40)
    data = write_jsonl(tmp_path / "in.jsonl", requests)
    out = tmp_path / "out"
    log = tmp_path / "stderr.log"
    proc = _start(data, out, record_url, log, "--output-format", fmt)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and _outputs(out) >= 5:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    final = _start(data, out, record_url, log, "--output-format", fmt)
    assert final.wait(timeout=300) == 0, log.read_text()
    _check_once(out, open_record(record_url), requests, fmt)
