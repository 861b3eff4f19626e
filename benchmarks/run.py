"""Run every benchmark in one process run and print the figures against the issue's targets.

    python benchmarks/run.py            # the figures in docs/performance.md (~18 min on 2 cores)
    python benchmarks/run.py --quick    # a smoke run (~3 min)
    python benchmarks/run.py --only pdf,text --json results.json

Groups: ``pdf`` (a, b: the API), ``pdf-cli`` (b-cli: ``ccm batch --channel pdf``),
``pdf-dask`` (b-dask: a Dask LocalCluster of 2 workers vs 1, PostgreSQL record),
``scale`` (c, d), ``text`` (e), ``library`` (f: library or our own code), ``row`` (r: one
SMS row inside a batch worker against plain jinja2), ``cli`` (g: the ``ccm batch`` command
against naive loops, CPU of every process),
``budget`` (h: the cost of in-process render budgets), ``email`` (i: an email through
the API against jinja2 + mjml2html per message), ``floor`` (k: the least the guarantees
cost per message, done without ccm, against the same naive loops), ``record`` (the record's own
benchmark, ``benchmarks/record_bench.py``, run as a separate process when present). Ratios
are always between two measurements of the same run.

Every figure is printed with its target; the exit status is 1 when one is missed (for
people: CI does not run this, and no test asserts a timing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Result, load_average  # noqa: E402

GROUPS = ("pdf", "pdf-cli", "pdf-dask", "scale", "text", "library", "row", "cli", "budget",
          "email", "floor", "record")


def _format(value: float, unit: str) -> str:
    if value != value:  # NaN: the figure was skipped
        return "skipped"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:+.1f}%"
    if unit == "msg/s":
        return f"{value:,.0f}/s"
    return f"{value:.1f} {unit}"


def _print(results: list[Result]) -> None:
    for r in results:
        met = {True: "met", False: "NOT MET", None: ""}[r.met]
        target = ""
        if r.target is not None:
            target = f"(target {'>=' if r.higher_is_better else '<='} {_format(r.target, r.unit)})"
        print(f"  {r.id:16} {_format(r.value, r.unit):>12}  {target:22} {met:8} {r.title}")
        for key, value in r.details.items():
            print(f"  {'':16} {'':>12}    {key}: {value}")
        if r.note:
            print(f"  {'':16} {'':>12}    note: {r.note}")


def _record_bench(quick: bool) -> None:
    script = HERE / "record_bench.py"
    if not script.exists():
        print("  (benchmarks/record_bench.py not present)")
        return
    cmd = [sys.executable, str(script), *(["--quick"] if quick else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 and quick and "--quick" in done.stderr:
        done = subprocess.run(cmd[:2], capture_output=True, text=True, check=False)
    print("\n".join("  " + line for line in done.stdout.splitlines()))
    if done.returncode != 0:
        print(f"  record_bench.py exited with {done.returncode}: {done.stderr.strip()[-500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs, for a smoke test")
    parser.add_argument("--full", action="store_true",
                        help="thousands of PDF statements for the memory figure (slow)")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated groups: {', '.join(GROUPS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")

    print(f"ccm benchmarks  python {platform.python_version()}  {platform.machine()}  "
          f"cpus {os.cpu_count()}  load {load_average()}")
    started = time.perf_counter()
    results: list[Result] = []
    for group in groups:
        print(f"\n[{group}]")
        t0 = time.perf_counter()
        if group == "pdf":
            import pdf_bench

            batch = pdf_bench.run(args.quick)
        elif group in ("pdf-cli", "pdf-dask"):
            import pdf_bench

            batch = (pdf_bench.run_cli if group == "pdf-cli" else pdf_bench.run_dask)(args.quick)
        elif group == "scale":
            import scale_bench

            batch = scale_bench.run(args.quick, full=args.full)
        elif group == "text":
            import text_bench

            batch = text_bench.run(args.quick)
        elif group == "budget":
            import budget_bench

            batch = budget_bench.run(args.quick)
        elif group == "library":
            import library_bench

            batch = library_bench.run(args.quick)
        elif group == "row":
            import row_bench

            batch = row_bench.run(args.quick)
        elif group == "cli":
            import cli_bench

            batch = cli_bench.run(args.quick)
        elif group == "email":
            import email_bench

            batch = email_bench.run(args.quick)
        elif group == "floor":
            import floor_bench

            batch = floor_bench.run(args.quick)
        else:
            _record_bench(args.quick)
            continue
        _print(batch)
        results.extend(batch)
        print(f"  ({time.perf_counter() - t0:.0f} s)")

    missed = [r.id for r in results if r.met is False]
    print(f"\n{len(results)} figures in {time.perf_counter() - started:.0f} s; "
          f"targets met: {sum(r.met is True for r in results)}, "
          f"not met: {len(missed)}{' (' + ', '.join(missed) + ')' if missed else ''}")
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
