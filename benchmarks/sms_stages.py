"""Where an SMS's (or email's) CPU goes inside ``run_batch`` (one process, master key).

    python benchmarks/sms_stages.py                   # ~15 s: µs per SMS by stage, marginal
    python benchmarks/sms_stages.py --channel email   # ~40 s: the same for emails

Wraps the batch's stage functions with CPU timers, runs 2,000 and 12,000 SMS
(JSONL output, raw input lines as the CLI hands them to workers), and prints
the difference per message, so start-up cancels out. Stages nest: ``_decide``
(the contact policy) is inside ``_render_sms_rows`` (the SMS plan's steps over a task's
rows; ``_fast_sms`` is the same for one row, outside batches), and
``append_all`` (the record) inside ``_commit`` (record, chunk file, publish).
Emails take the full path: ``_render_full`` holds ``Engine.render`` (the
email itself) and ``_pack`` (the record entry and summary); ``_stage`` makes
the chunk's JSONL line.
For people: no target, no assertion.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import PACK, TEMPLATES, requests_for

import ccm.batch._commit as commit_mod
import ccm.batch._worker as worker_mod
from ccm.batch import run_batch
from ccm.record import MasterKey

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)  # daytime in every sample's zone
_spent: dict[str, float] = {}


def _timed(owner: Any, name: str) -> None:
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            _spent[name] = _spent.get(name, 0.0) + time.process_time() - start

    setattr(owner, name, wrapper)


def _run(n: int, tag: str, key: MasterKey, channel: str = "sms",
         ) -> tuple[float, dict[str, float]]:
    _spent.clear()
    rows = [json.dumps(r).encode() for r in requests_for("payment_reminder", n, prefix=tag)]
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-stages-"))
    start = time.process_time()
    run_batch("payment_reminder", rows, pack=PACK, templates=TEMPLATES, out=work / "out",
              record_url=f"sqlite:///{work / 'r.db'}", run_id=tag, workers=0,
              channels=[channel], durable=True, output_format="jsonl", master_key=key, now=NOW)
    return time.process_time() - start, dict(_spent)


def main() -> None:
    import argparse

    from ccm.render.engine import Engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", choices=("sms", "email"), default="sms")
    channel = parser.parse_args().channel
    stages: tuple[tuple[Any, str], ...] = (
        (commit_mod, "_parse_rows"), (worker_mod, "_render_sms_rows"), (worker_mod, "_decide"),
        (commit_mod, "append_all"), (commit_mod._Committer, "_commit"),
        (commit_mod._Committer, "_stage"))
    if channel == "email":
        stages += ((worker_mod, "_render_full"), (Engine, "render"), (worker_mod, "_pack"))
    for owner, name in stages:
        _timed(owner, name)
    key = MasterKey.generate()
    small, large = (2000, 12000) if channel == "sms" else (300, 2300)
    cpu_s, stages_s = _run(small, "S", key, channel)
    cpu_l, stages_l = _run(large, "L", key, channel)
    n = large - small
    print(f"run_batch {channel}, marginal CPU µs per message ({n} messages, load "
          f"{os.getloadavg()[0]:.2f}): {1e6 * (cpu_l - cpu_s) / n:.1f}")
    for name, seconds in stages_l.items():
        print(f"  {name:12} {1e6 * (seconds - stages_s.get(name, 0.0)) / n:7.1f}")


if __name__ == "__main__":
    main()
