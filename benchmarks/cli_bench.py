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
* ``g-<channel>-<format>-workers``: wall-clock speed-up of 2 workers over 1 for
  the same large run (the machine must have 2 free cores for this to mean
  much), with the parent's marginal CPU per message (``parent_cpu`` of the
  run's summary) and its share of all the CPU: the parent is the one process
  that does not scale with workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import PACK, ROOT, TEMPLATES, Result, best_of, load_average, requests_for

TEMPLATE = "payment_reminder"
AS_OF = "2026-03-02T15:00:00+00:00"  # daytime in every sample's timezone (no quiet hours)
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Orphaned descendants (the forkserver, its workers) are re-parented to this process."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap() -> None:
    """Wait for every descendant left (so its CPU time lands in RUSAGE_CHILDREN)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _write_requests(path: Path, n: int, prefix: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for req in requests_for(TEMPLATE, n, prefix=prefix):
            fh.write(json.dumps(req) + "\n")


def ccm_batch(channel: str, n: int, workers: int, work: Path, tag: str,
              extra: tuple[str, ...] = ()) -> tuple[float, float, dict[str, Any]]:
    """Run ``python -m ccm batch``; (CPU seconds of all its processes, wall seconds, summary)."""
    from ccm.record import MasterKey

    data = work / f"{tag}.jsonl"
    _write_requests(data, n, tag)
    env = {**os.environ, "CCM_MASTER_KEY": MasterKey.generate().text(),
           "PYTHONPATH": str(ROOT)}
    env.pop("CCM_MASTER_KEY_FILE", None)
    cmd = [sys.executable, "-m", "ccm", "batch", TEMPLATE, "--pack", str(PACK),
           "--templates", str(TEMPLATES), "--data", str(data), "--out", str(work / f"out-{tag}"),
           "--record", f"sqlite:///{work / f'{tag}.db'}", "--run-id", tag,
           "--channel", channel, "--workers", str(workers), "--as-of", AS_OF, "--json", *extra]
    _become_subreaper()
    before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    _reap()
    cpu = _children_cpu() - before
    if done.returncode != 0:
        raise RuntimeError(f"ccm batch failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = next(json.loads(line) for line in reversed(done.stdout.splitlines())
                   if line.startswith("{") and '"done"' in line)
    if summary.get("generated") != n:
        raise RuntimeError(f"ccm batch made {summary.get('generated')} of {n}: {summary}")
    return cpu, wall, summary


class _Naive:
    """The loop without ccm: plain jinja2 on the same sources and context (+ mjml2html)."""

    def __init__(self, channel: str, n: int) -> None:
        import jinja2

        from ccm.message import Message
        from ccm.render.engine import Engine
        from ccm.render.i18n import FILTERS
        from ccm.render.template import validate_request

        engine = Engine(PACK, TEMPLATES, record=None)
        tpl = engine.template(TEMPLATE)
        self.env = jinja2.Environment(
            loader=jinja2.PrefixLoader({
                "pack": jinja2.FileSystemLoader(str(PACK / "layouts")),
                "templates": jinja2.FileSystemLoader(str(TEMPLATES)),
            }),
            autoescape=channel != "sms", extensions=["jinja2.ext.i18n"], trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        self.env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
        self.template = self.env.get_template(tpl.source_name(channel))
        self.contexts = []
        for raw in requests_for(TEMPLATE, n, prefix="N"):
            req = validate_request(raw)
            locale = engine.pack.resolve_locale(req.customer.get("locale"))
            message = Message(
                message_id="0" * 32, customer_id=req.customer_id, template=tpl.id,
                template_version=tpl.version, pack="acme", pack_version="1", channel=channel,
                locale=locale, message_type=tpl.message_type, journey=tpl.journey,
                content=b"", created_at=AS_OF)
            ctx = engine.context(tpl, req, channel, locale, message)
            for name in ("gettext", "ngettext", "_"):
                ctx.pop(name, None)
            self.contexts.append(ctx)
        self.channel = channel

    def run(self) -> None:
        render = self.template.render
        if self.channel == "email":
            from mjml import mjml2html

            for ctx in self.contexts:
                mjml2html(render(ctx))
        else:
            for ctx in self.contexts:
                render(ctx)


def bench_channel(channel: str, small: int, large: int, rounds: int,
                  fmt: str = "jsonl") -> list[Result]:
    """Marginal CPU per message of ``ccm batch`` vs the naive loop; 2 workers vs 1."""
    extra = ("--output-format", fmt)
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-cli-"))
    naive = _Naive(channel, large - small)
    try:
        best_small = best_large = float("inf")
        wall_one = float("inf")
        parent = float("inf")
        for r in range(rounds):
            cpu_s, _, done_s = ccm_batch(channel, small, 1, work, f"s{r}", extra)
            cpu_l, wall, done_l = ccm_batch(channel, large, 1, work, f"l{r}", extra)
            best_small, best_large = min(best_small, cpu_s), min(best_large, cpu_l)
            wall_one = min(wall_one, wall)
            parent = min(parent, float(done_l.get("parent_cpu", 0.0))
                         - float(done_s.get("parent_cpu", 0.0)))
        naive_s = best_of(rounds, {"naive": naive.run})["naive"]
        wall_two = float("inf")
        for r in range(rounds):
            _, wall, _ = ccm_batch(channel, large, 2, work, f"w{r}", extra)
            wall_two = min(wall_two, wall)
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
               f"{channel}: ccm batch --output-format {fmt}, 2 workers vs 1 (wall clock)",
               wall_one / wall_two, "x", target=1.8,
               details={"one_worker_s": round(wall_one, 2), "two_workers_s": round(wall_two, 2),
                        "parent_us_per_msg": round(1e6 * parent_per, 1),
                        "parent_share_of_all_cpu": round(parent_per / per_msg, 2),
                        "messages": large, "load": load_average()}),
    ]


def run(quick: bool) -> list[Result]:
    """The CLI figures; ``quick`` uses fewer messages and one round."""
    if quick:
        return [*bench_channel("sms", 200, 1200, 1), *bench_channel("email", 50, 300, 1)]
    return [*bench_channel("sms", 1000, 6000, 2, "files"), *bench_channel("sms", 1000, 6000, 2),
            *bench_channel("email", 200, 1200, 2)]


if __name__ == "__main__":
    for result in run("--quick" in sys.argv):
        print(result.id, round(result.value, 3), result.unit, result.details)
