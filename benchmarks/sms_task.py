"""A batch worker's SMS tasks in one process, for instruction counts (valgrind), for people.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/sms_task.py 0
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/sms_task.py 4

Loads the engine, runs one task of 256 ``payment_reminder`` SMS rows through
``ccm.batch._worker.render_rows`` (what a worker runs: the SMS plan's steps over
the task's rows) to warm up, then ``N`` (at most 8) more tasks of 256 distinct
customers (the requests of all 8 are made either way). The difference of the
two runs' instruction counts ("Collected"), divided by ``256 * N``, is the
instructions per SMS row, free of the machine's noise. Run it in two trees
(``PYTHONPATH=TREE``, from that tree) to compare a change. The clock is fixed
at a daytime hour for every sample's time zone. No output.
"""

from __future__ import annotations

import gc
import json
import sys
from datetime import UTC, datetime

from _common import PACK, TEMPLATES, requests_for

import ccm.batch._worker as worker

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)  # daytime in every sample's zone
TASK = 256
#: Tasks made ready whatever ``N`` (so that the two runs differ by the tasks' rendering only).
MOST = 8


def main() -> None:
    count = min(int(sys.argv[1]) if len(sys.argv) > 1 else 4, MOST)
    spec = worker._Spec(pack=str(PACK), templates=str(TEMPLATES), template="payment_reminder",
                        run_id="R", channels=("sms",), now=NOW)
    engine = worker._engine_for(spec)
    engine._clock = lambda: NOW
    objs = [json.loads(json.dumps(r))
            for r in requests_for("payment_reminder", TASK * (MOST + 1), prefix="T")]
    tasks = [[(line, obj, None, None) for line, obj in enumerate(objs[k:k + TASK], start=k + 1)]
             for k in range(0, len(objs), TASK)]
    worker.render_rows(spec, tasks[0])
    gc.freeze()  # as a worker does after loading
    for task in tasks[1:count + 1]:
        worker.render_rows(spec, task)


if __name__ == "__main__":
    main()
