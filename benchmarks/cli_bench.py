"""The ``ccm batch`` command an operator runs, against the loop a developer would write (g).

Issue 12's figures, measured from outside:

* ``g-sms`` / ``g-email``: marginal CPU microseconds per message of
  ``python -m ccm batch`` (SQLite record with a master key, one worker),
  CPU of every process it starts (this process becomes a child subreaper, so
  the worker pool's forkserver and its workers are waited for and counted in
  ``RUSAGE_CHILDREN``), as a ratio: naive loop time / ``ccm batch`` time, both
  marginal (the difference between a small and a large run, so start-up,
  imports and pool start cancel out). The naive loops run in the same
  invocation: a plain ``jinja2.Environment`` over the same template and
  context (SMS), plus ``mjml2html`` per message (email).
* ``g-<channel>-<format>-workers`` and ``g-pdf-workers``: wall-clock speed-up
  of 2 workers over 1, marginal (large run minus small run, so start-up
  cancels out; the machine must have 2 free cores for this to mean much).
* ``g-<channel>-<format>-parent``: the parent's marginal CPU per message
  (``parent_cpu`` of the run's summary) as a share of all the CPU: the parent
  is the one process that does not scale with workers (target <= 10%).
* ``g-memory-<format>-parent|worker``: peak RSS (``parent_max_rss_mb`` /
  ``worker_max_rss_mb`` of the summary) of a 100k-message run over a 1k one
  (``--quick``: 20k over 1k), target <= 10% growth.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    PACK,
    ROOT,
    TEMPLATES,
    NaiveLoop,
    Result,
    best_of,
    load_average,
    requests_for,
)

TEMPLATE = "payment_reminder"
AS_OF = "2026-03-02T15:00:00+00:00"  # daytime in every sample's timezone (no quiet hours)
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Orphaned descendants (the forkserver, its workers) are re-parented to this process."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children() -> set[int]:
    """This process's live children (Linux ``/proc``); empty where it cannot be read."""
    found: set[int] = set()
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as fh:
                found.update(int(pid) for pid in fh.read().split())
    except OSError:
        pass
    return found


def _reap(own: set[int]) -> None:
    """Wait for every descendant left (so its CPU time lands in RUSAGE_CHILDREN).

    ``own``: children this process had before the run (its own pools' forkserver and
    resource tracker live as long as it does); they are not waited for.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if not _children() - own:
                return
            time.sleep(0.05)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _write_requests(path: Path, n: int, prefix: str, template: str = TEMPLATE) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for req in requests_for(template, n, prefix=prefix):
            fh.write(json.dumps(req) + "\n")


def ccm_batch(channel: str, n: int, workers: int, work: Path, tag: str,
              extra: tuple[str, ...] = (), template: str = TEMPLATE,
              ) -> tuple[float, float, dict[str, Any]]:
    """Run ``python -m ccm batch``; (CPU seconds of all its processes, wall seconds, summary)."""
    from ccm.record import MasterKey

    data = work / f"{tag}.jsonl"
    _write_requests(data, n, tag, template)
    env = {**os.environ, "CCM_MASTER_KEY": MasterKey.generate().text(),
           "PYTHONPATH": str(ROOT)}
    env.pop("CCM_MASTER_KEY_FILE", None)
    cmd = [sys.executable, "-m", "ccm", "batch", template, "--pack", str(PACK),
           "--templates", str(TEMPLATES), "--data", str(data), "--out", str(work / f"out-{tag}"),
           "--record", f"sqlite:///{work / f'{tag}.db'}", "--run-id", tag,
           "--channel", channel, "--workers", str(workers), "--as-of", AS_OF, "--json", *extra]
    _become_subreaper()
    own = _children()
    before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    _reap(own)
    cpu = _children_cpu() - before
    if done.returncode != 0:
        raise RuntimeError(f"ccm batch failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = next(json.loads(line) for line in reversed(done.stdout.splitlines())
                   if line.startswith("{") and '"done"' in line)
    if summary.get("generated") != n:
        raise RuntimeError(f"ccm batch made {summary.get('generated')} of {n}: {summary}")
    return cpu, wall, summary


def bench_channel(channel: str, small: int, large: int, rounds: int,
                  fmt: str = "jsonl", wall_rounds: int | None = None) -> list[Result]:
    """Marginal CPU per message of ``ccm batch`` vs the naive loop; 2 workers vs 1."""
    extra = ("--output-format", fmt)
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-cli-"))
    naive = NaiveLoop(TEMPLATE, channel,
                      list(requests_for(TEMPLATE, large - small, prefix="N")), AS_OF)
    try:
        best_small = best_large = float("inf")
        parent = float("inf")
        for r in range(rounds):
            cpu_s, _, done_s = ccm_batch(channel, small, 1, work, f"s{r}", extra)
            cpu_l, _, done_l = ccm_batch(channel, large, 1, work, f"l{r}", extra)
            best_small, best_large = min(best_small, cpu_s), min(best_large, cpu_l)
            parent = min(parent, float(done_l.get("parent_cpu", 0.0))
                         - float(done_s.get("parent_cpu", 0.0)))
        naive_s = best_of(rounds, {"naive": naive.run})["naive"]
        wall_one, wall_two = _marginal_walls(channel, small, large, wall_rounds or rounds, work,
                                             extra)
        ceiling = machine_ceiling()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_msg = (best_large - best_small) / (large - small)
    parent_per = parent / (large - small)
    naive_per = naive_s / (large - small)
    what = "plain jinja2" if channel == "sms" else "jinja2 + mjml-python"
    return [
        Result(f"g-{channel}-{fmt}", f"{channel}: ccm batch (CLI, --output-format {fmt}, "
               "1 worker, record with master key) "
               f"vs a {what} loop, marginal CPU per message (ratio)",
               naive_per / per_msg, "x", target=1.0,
               details={"ccm_batch_us_per_msg": round(1e6 * per_msg, 1),
                        "naive_us_per_msg": round(1e6 * naive_per, 1),
                        "messages": [small, large], "goal": 2.0 if channel == "sms" else 3.0,
                        "load": load_average()}),
        Result(f"g-{channel}-{fmt}-workers",
               f"{channel}: ccm batch --output-format {fmt}, 2 workers vs 1 (marginal wall "
               "clock)", wall_one / wall_two, "x", target=1.8,
               details={"one_worker_s": round(wall_one, 2), "two_workers_s": round(wall_two, 2),
                        "machine_two_vs_one": round(ceiling, 2),
                        "messages": [small, large], "load": load_average()}),
        Result(f"g-{channel}-{fmt}-parent",
               f"{channel}: ccm batch --output-format {fmt}, the parent's share of all CPU "
               "(marginal per message, 1 worker)", parent_per / per_msg, "", target=0.10,
               higher_is_better=False,
               details={"parent_us_per_msg": round(1e6 * parent_per, 1),
                        "all_us_per_msg": round(1e6 * per_msg, 1), "load": load_average()}),
    ]


def _marginal_walls(channel: str, small: int, large: int, rounds: int, work: Path,
                    extra: tuple[str, ...], template: str = TEMPLATE,
                    ) -> tuple[float, float]:
    """Wall seconds of the ``large - small`` messages a large run makes beyond a small one,
    with 1 worker and with 2: ``(one, two)`` (start-up, imports and the pool's start
    cancel out).

    The four runs of a round go 1-small, 1-large, 2-small, 2-large, so a machine that
    slows down or speeds up during the benchmark weighs on both worker counts alike. Each
    size keeps its best (least) wall clock over the rounds and the marginal is the
    difference of the bests: the best of each size is its least disturbed run, while the
    best of per-round differences picks the round whose small run happened to be slowed
    (on this machine that read 1.5x-2.7x for the same code).
    """
    best: dict[tuple[int, int], float] = {}
    for r in range(rounds):
        for workers in (1, 2):
            for n, size in (("s", small), ("l", large)):
                tag = f"w{workers}-{template[:1]}{r}{n}"
                _, wall, _ = ccm_batch(channel, size, workers, work, tag, extra, template)
                best[workers, size] = min(best.get((workers, size), float("inf")), wall)
    one = best[1, large] - best[1, small]
    two = best[2, large] - best[2, small]
    return max(one, 1e-9), max(two, 1e-9)


def _spin(n: int) -> float:
    """CPU-bound pure Python for the machine's own ceiling; its wall seconds."""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - start


def machine_ceiling(rounds: int = 3, n: int = 8_000_000) -> float:
    """Two CPU-bound processes vs one on this machine: ``2 * one / two`` (best of rounds).

    The ceiling any "2 workers vs 1" figure can reach here, measured in the same
    invocation: a shared virtual machine's two cores do not always give twice one
    (on this one a plain loop read 1.76x-2.27x from one minute to the next).
    """
    ctx = multiprocessing.get_context("spawn")
    best = 0.0
    with ctx.Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # started and imported before the timing
        for _ in range(rounds):
            one = _spin(n)
            start = time.perf_counter()
            pool.map(_spin, [n, n], chunksize=1)
            best = max(best, 2 * one / (time.perf_counter() - start))
    return best


def bench_pdf_workers(small: int, large: int, rounds: int) -> list[Result]:
    """PDF (monthly_statement, AES-256): 2 workers vs 1, marginal wall clock."""
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-cli-"))
    try:
        one, two = _marginal_walls("pdf", small, large, rounds, work, (), "monthly_statement")
        ceiling = machine_ceiling()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [Result("g-pdf-workers", "pdf: ccm batch, 2 workers vs 1 (marginal wall clock)",
                   one / two, "x", target=1.8,
                   details={"one_worker_s": round(one, 2), "two_workers_s": round(two, 2),
                            "machine_two_vs_one": round(ceiling, 2),
                            "messages": [small, large], "load": load_average()})]


def bench_memory(small: int, large: int, formats: tuple[str, ...] = ("files", "jsonl", "zip"),
                 ) -> list[Result]:
    """Peak RSS of the parent and of the worker, ``small`` vs ``large`` SMS, per output format
    (``parent_max_rss_mb`` / ``worker_max_rss_mb`` of the run's summary; 1 worker)."""
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-mem-"))
    out: list[Result] = []
    try:
        for fmt in formats:
            extra = ("--output-format", fmt)
            _, _, lo = ccm_batch("sms", small, 1, work, f"m{fmt}s", extra)
            _, _, hi = ccm_batch("sms", large, 1, work, f"m{fmt}l", extra)
            for who in ("parent", "worker"):
                a, b = float(lo[f"{who}_max_rss_mb"]), float(hi[f"{who}_max_rss_mb"])
                out.append(Result(
                    f"g-memory-{fmt}-{who}",
                    f"sms, --output-format {fmt}: the {who}'s peak RSS, {large:,} vs {small:,} "
                    "messages (growth)", b / a - 1, "", target=0.10, higher_is_better=False,
                    details={"small_mb": a, "large_mb": b, "messages": [small, large],
                             "load": load_average()}))
            shutil.rmtree(work / f"out-m{fmt}l", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def run(quick: bool) -> list[Result]:
    """The CLI figures; ``quick`` uses fewer messages and one round (memory: 1k vs 20k
    messages instead of 1k vs 100k)."""
    if quick:
        return [*bench_channel("sms", 500, 3000, 1), *bench_channel("email", 50, 400, 1),
                *bench_pdf_workers(4, 20, 1), *bench_memory(1000, 20_000)]
    # 15,000 SMS / 3,000 emails of margin, so the 2-worker wall clock (~2 s) is not lost in
    # the start-up noise of two worker processes (with 5,000 SMS / 1,000 emails it read
    # 1.5x-2.1x between runs).
    # Wall clocks: three rounds, 1 and 2 workers interleaved (see _marginal_walls).
    return [*bench_channel("sms", 1000, 16000, 2, "files", 3),
            *bench_channel("sms", 1000, 16000, 2, wall_rounds=3),
            *bench_channel("email", 200, 3200, 2, wall_rounds=3), *bench_pdf_workers(10, 50, 2),
            *bench_memory(1000, 100_000)]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="fewer messages, one round (figures for a smoke run)")
    for result in run(parser.parse_args().quick):
        print(result.id, round(result.value, 3), result.unit, result.details)
