"""One SMS row inside a batch worker against a plain jinja2 loop (r), CPU µs per row.

* ``r-sms-row``: the worker's per-row function (``ccm.batch._worker._render_row``:
  request shape and contract, contact policy, context, sandboxed Jinja under
  the render budget, SMS normalising and segments, parameters digest, record
  entry, summary and file name), which takes the SMS plan's fast path
  (``ccm/render/smsplan.py``); target 35 µs (issue 12's budget for the
  worker's share, docs/performance.md).
* ``r-sms-row-ratio``: the plain jinja2 loop's µs per message divided by the
  per-row function's. The loop renders the same template and pack layout
  with ccm's filters from contexts prepared outside the timing (what
  ``benchmarks/cli_bench.py`` compares against).
* In the details: ``render_rows`` over tasks of 256 rows (what a batch worker
  runs: each step of the plan over every row in turn), and the full path
  (``_render_full``, i.e. ``Engine.render`` and the worker's wrapping as
  before the plan) on the same rows, so the gains are measured in the same
  invocation.

Every row is a distinct customer (ids, names, amounts vary); the clock is
fixed at a daytime hour for every sample's time zone, so no row is held by
quiet hours and each one is rendered on both sides. CPU time of this one
process, variants interleaved, best of several rounds.

Run: ``python benchmarks/row_bench.py [--quick]`` or
``python benchmarks/run.py --only row``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from _common import (
    PACK,
    TEMPLATES,
    NaiveLoop,
    Result,
    best_of,
    load_average,
    requests_for,
)

TEMPLATE = "payment_reminder"
#: Daytime in every sample's time zone: no quiet hours.
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def bench_sms_row(n: int, rounds: int) -> list[Result]:
    """µs per SMS row in the worker (fast and full path) and the naive loop, same invocation."""
    from ccm.batch import _worker

    spec = _worker._Spec(pack=str(PACK), templates=str(TEMPLATES), template=TEMPLATE,
                         run_id="bench", channels=("sms",), now=NOW)
    engine = _worker._engine_for(spec)
    raws = list(requests_for(TEMPLATE, n, prefix="R"))
    rows = [(i + 1, raw, None, None) for i, raw in enumerate(raws)]
    naive = NaiveLoop(TEMPLATE, "sms", raws, NOW.isoformat())
    first = [_worker._render_row(engine, spec, *row) for row in rows]
    statuses = [m.status for r in first for m in r.messages]
    errors = [r.error for r in first if r.error]
    if errors or statuses.count("generated") != n:
        raise RuntimeError(f"benchmark rows did not all render: {errors[:1]} {set(statuses)}")
    fast_rows = sum(_worker._fast_sms(engine, spec, raw, None) is not None for raw in raws)

    def per_row() -> None:
        for row in rows:
            _worker._render_row(engine, spec, *row)

    tasks = [rows[k:k + 256] for k in range(0, len(rows), 256)]

    def per_task() -> None:
        for task in tasks:  # what a batch worker runs: the SMS plan's steps over 256 rows
            _worker.render_rows(spec, task)

    def full_path() -> None:
        for _, raw, _, _ in rows:
            _worker._render_full(engine, spec, raw, ("sms",), None)

    best = best_of(rounds, {"per_row": per_row, "per_task": per_task, "full": full_path,
                            "naive": naive.run})
    fast_us = 1e6 * best["per_row"] / n
    task_us = 1e6 * best["per_task"] / n
    full_us = 1e6 * best["full"] / n
    naive_us = 1e6 * best["naive"] / n
    details = {"rows": n, "rows_on_fast_path": fast_rows, "per_row_us": round(fast_us, 1),
               "render_rows_us": round(task_us, 1),
               "full_path_us": round(full_us, 1), "naive_jinja2_us": round(naive_us, 1),
               "full_over_fast": round(full_us / fast_us, 2), "load": load_average()}
    return [
        Result("r-sms-row", "SMS: the batch worker's per-row function, CPU µs per row",
               round(fast_us, 1), "us", target=35.0, higher_is_better=False, details=details,
               note=f"plain jinja2 loop {naive_us:.1f} µs; full path {full_us:.1f} µs"),
        Result("r-sms-row-ratio", "SMS: plain jinja2 loop / worker per-row function",
               round(naive_us / fast_us, 3), "x", details=details,
               note="above 1.0: a row costs the worker less than jinja2 alone"),
    ]


def run(quick: bool) -> list[Result]:
    """The per-row figures; ``quick`` uses fewer rows."""
    n, rounds = (500, 3) if quick else (3000, 5)
    return bench_sms_row(n, rounds)


if __name__ == "__main__":
    import sys

    for result in run("--quick" in sys.argv):
        print(result.id, result.value, result.unit, result.details)
