"""Real processes writing at once: nothing lost, caps hold, SIGKILL leaves no partial entry."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from ccm.record import MasterKey, Record

from . import _support
from ._support import EPOCH, raw_rows

pytestmark = pytest.mark.slow
SPAWN = multiprocessing.get_context("spawn")


def _run(target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]],
         n: int, timeout: float = 60) -> None:
    procs = [SPAWN.Process(target=target, args=args_for(i)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        if p.is_alive():  # pragma: no cover - only when something hangs
            p.kill()
            pytest.fail(f"worker {p.pid} hung")
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"


def test_concurrent_writers_lose_nothing(record_url: str, open_record: Callable[..., Record],
                                         master_key: MasterKey) -> None:
    """Four processes appending for overlapping customers: every entry is there and verifies."""
    open_record(master_key)  # create the schema once, as an application would
    out = SPAWN.Queue()
    customers = ["C0", "C1", "C2", "C3", "C4"]
    per_worker = 20
    _run(_support.append_loop,
         lambda w: (record_url, master_key.text(), w, customers[w % 2:], per_worker, out), 4)
    made = dict(out.get(timeout=5) for _ in range(4))
    rec = open_record(master_key)
    expected = {mid for ids in made.values() for mid in ids}
    assert len(expected) == 4 * per_worker
    assert {r["message_id"] for r in raw_rows(rec, "messages")} == expected
    report = rec.verify()
    assert report.ok, report.problems
    assert report.checked == 4 * per_worker
    assert rec.content("w3-19") == b"worker 3 message 19"


def test_cap_holds_under_a_race(record_url: str, open_record: Callable[..., Record]) -> None:
    """Five processes appending for one customer at once pass a cap of 3 exactly 3 times."""
    open_record()
    out = SPAWN.Queue()
    n = 5
    barrier = SPAWN.Barrier(n)
    _run(_support.cap_race, lambda w: (record_url, w, barrier, out), n)
    results = sorted(out.get(timeout=5) for _ in range(n))
    assert results == [("generated", None)] * 3 + [("suppressed", "cap:marketing-weekly")] * 2
    rec = open_record()
    assert rec.count("RACE", since=EPOCH) == 3
    assert rec.count("RACE", since=EPOCH, status="suppressed") == 2
    assert rec.verify().ok


@pytest.mark.parametrize("kill_after", [7, 23])
def test_sigkill_mid_append_leaves_no_partial_entry(
    record_url: str, open_record: Callable[..., Record], master_key: MasterKey, kill_after: int,
) -> None:
    """A writer killed with SIGKILL while appending leaves a record that opens and verifies,
    with every entry complete (its blobs all there) and no blob without its entry."""
    open_record(master_key)
    started = SPAWN.Value("i", 0)
    proc = SPAWN.Process(target=_support.append_forever,
                         args=(record_url, master_key.text(), started))
    proc.start()
    deadline = time.monotonic() + 60
    while started.value < kill_after and time.monotonic() < deadline and proc.is_alive():
        time.sleep(0.001)
    assert proc.pid is not None and proc.is_alive()
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL

    rec = open_record(master_key)
    report = rec.verify()
    assert report.ok, report.problems
    entries = raw_rows(rec, "messages")
    assert len(entries) >= kill_after
    blobs = raw_rows(rec, "archive")
    parts: dict[str, set[str]] = {}
    for blob in blobs:
        parts.setdefault(blob["ref"], set()).add(blob["part"])
    assert {e["archive_ref"] for e in entries} == set(parts)
    assert all(p == {"content", "archival"} for p in parts.values())
    chained = {r["ref"] for r in raw_rows(rec, "chain") if r["kind"] == "message"}
    assert chained == {e["message_id"] for e in entries}
    for e in entries:
        assert rec.content(e["message_id"]).startswith(b"x" * 2048)
