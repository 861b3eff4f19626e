"""Where an SMS's CPU goes inside ``run_batch`` (one process, record with a master key).

    python benchmarks/sms_stages.py          # ~15 s: µs per message by stage, marginal

Wraps the batch's stage functions with CPU timers, runs 2,000 and 12,000 SMS
(JSONL output, raw input lines as the CLI hands them to workers), and prints
the difference per message, so start-up cancels out. Stages nest: ``_decide``
(the contact policy) is inside ``_fast_sms`` (the SMS plan's row), and
``append_all`` (the record) inside ``_commit`` (record, chunk file, publish).
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


def _run(n: int, tag: str, key: MasterKey) -> tuple[float, dict[str, float]]:
    _spent.clear()
    rows = [json.dumps(r).encode() for r in requests_for("payment_reminder", n, prefix=tag)]
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-stages-"))
    start = time.process_time()
    run_batch("payment_reminder", rows, pack=PACK, templates=TEMPLATES, out=work / "out",
              record_url=f"sqlite:///{work / 'r.db'}", run_id=tag, workers=0,
              channels=["sms"], durable=True, output_format="jsonl", master_key=key, now=NOW)
    return time.process_time() - start, dict(_spent)


def main() -> None:
    for owner, name in ((commit_mod, "_parse_rows"), (worker_mod, "_fast_sms"),
                        (worker_mod, "_decide"), (commit_mod, "append_all"),
                        (commit_mod._Committer, "_commit"), (commit_mod._Committer, "_stage")):
        _timed(owner, name)
    key = MasterKey.generate()
    small, large = 2000, 12000
    cpu_s, stages_s = _run(small, "S", key)
    cpu_l, stages_l = _run(large, "L", key)
    n = large - small
    print(f"run_batch SMS, marginal CPU µs per message ({n} messages, load "
          f"{os.getloadavg()[0]:.2f}): {1e6 * (cpu_l - cpu_s) / n:.1f}")
    for name, seconds in stages_l.items():
        print(f"  {name:12} {1e6 * (seconds - stages_s.get(name, 0.0)) / n:7.1f}")


if __name__ == "__main__":
    main()
