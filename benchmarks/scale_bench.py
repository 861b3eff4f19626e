"""Scaling on one machine: 2 workers vs 1 (c), and peak memory per worker vs run length (d).

* ``c``: the same PDF statements through ``run_batch`` with a pool of one and
  of two worker processes; wall clock, pool start-up included. On a machine
  with two cores the parent shares them with the workers, so this is a floor.
* ``d``: peak RSS of each worker process (sampled with psutil every 50 ms)
  and of the parent, for a short and a ten times longer run; flat means the
  long run's peak is within 10% of the short run's. SMS and email runs use
  1,000 vs 10,000 messages; PDF runs use 100 vs 500 statements (``--full``:
  1,000 vs 3,000), because 10,000 statements take over an hour on two cores;
  workers are retired after 250 tasks (the default), so longer runs cannot go
  higher than a 250-statement worker does.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import PACK, TEMPLATES, Result, load_average, requests_for


class PeakRss:
    """Sample the RSS of this process and its children; keep each one's peak."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.parent = 0
        self.children: dict[int, int] = {}
        self.forkservers: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = self._psutil.Process()
        while not self._stop.is_set():
            try:
                self.parent = max(self.parent, me.memory_info().rss)
                for child in me.children(recursive=True):
                    try:
                        if child.children():
                            # The forkserver: it only forks workers and never renders.
                            self.forkservers.add(child.pid)
                            continue
                        rss = child.memory_info().rss
                    except self._psutil.Error:
                        continue
                    self.children[child.pid] = max(self.children.get(child.pid, 0), rss)
            except self._psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def worker_peak(self) -> int:
        """The highest peak RSS of any worker process (the forkserver excluded)."""
        return max((rss for pid, rss in self.children.items() if pid not in self.forkservers),
                   default=0)


def _run(template: str, n: int, channels: list[str], workers: int, work: Path,
         tag: str) -> tuple[float, Any, PeakRss]:
    from ccm.batch import run_batch

    requests = requests_for(template, n, prefix=tag)  # a generator: streamed, never a list
    start = time.perf_counter()
    with PeakRss() as peak:
        summary = run_batch(template, requests, pack=PACK, templates=TEMPLATES,
                            out=work / f"out-{tag}", record_url=f"sqlite:///{work / f'{tag}.db'}",
                            run_id=tag, workers=workers, channels=channels, durable=False)
    return time.perf_counter() - start, summary, peak


def bench_workers(n: int) -> Result:
    """(c): 2 workers vs 1, wall clock, PDF statements."""
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    try:
        one, s1, _ = _run("monthly_statement", n, ["pdf"], 1, work, "w1")
        two, s2, _ = _run("monthly_statement", n, ["pdf"], 2, work, "w2")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert s1.generated == s2.generated == n
    return Result("c", "2 workers vs 1 worker (PDF statements, wall clock)", one / two, "x",
                  target=1.8, details={"statements": n, "one_worker_s": round(one, 2),
                                       "two_workers_s": round(two, 2), "load": load_average()})


def bench_memory(template: str, channel: str, short: int, long: int) -> Result:
    """(d): peak worker RSS for a short and a long run; ratio long/short."""
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    try:
        _, s_short, p_short = _run(template, short, [channel], 1, work, f"m{short}")
        seconds, s_long, p_long = _run(template, long, [channel], 1, work, f"m{long}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mb = 1024 * 1024
    ratio = p_long.worker_peak / p_short.worker_peak
    return Result(
        f"d-{channel}", f"peak worker RSS, {long} vs {short} {channel} messages (ratio)",
        ratio, "x", target=1.10, higher_is_better=False,
        details={"worker_peak_mb_short": round(p_short.worker_peak / mb, 1),
                 "worker_peak_mb_long": round(p_long.worker_peak / mb, 1),
                 "parent_peak_mb_short": round(p_short.parent / mb, 1),
                 "parent_peak_mb_long": round(p_long.parent / mb, 1),
                 "long_run_s": round(seconds, 1),
                 "generated": [s_short.generated, s_long.generated]},
    )


def run(quick: bool, full: bool = False) -> list[Result]:
    """Scaling figures; ``quick`` is smaller, ``full`` runs thousands of PDFs."""
    if quick:
        return [bench_workers(8), bench_memory("payment_reminder", "sms", 200, 2000),
                bench_memory("monthly_statement", "pdf", 10, 40)]
    pdf_short, pdf_long = (1000, 3000) if full else (100, 500)
    return [
        bench_workers(40),
        bench_memory("payment_reminder", "sms", 1000, 10_000),
        bench_memory("payment_reminder", "email", 1000, 10_000),
        bench_memory("monthly_statement", "pdf", pdf_short, pdf_long),
    ]
