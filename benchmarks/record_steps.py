"""Where ``Record.append_many``'s time goes, step by step (SQLite, master key, new customers).

    python benchmarks/record_steps.py              # 80 chunks of 256 SMS (~15 s)
    python benchmarks/record_steps.py --caps       # with the acme pack's three caps, as in a batch

Runs a copy of :func:`ccm.record.bulk.append_bulk` with a timer between its
steps (found by the first words of each step's line; a step that moved is
named, and the script stops), and times ``prepare``, the transaction around
the work and the commit. Prints µs per message: the least over the chunks
(the figure least disturbed by other work on the machine) and the median.
The least of each step do not add up to the least of the whole.
For people: no target, no assertion.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from record_bench import CHUNK, sms_chunk  # noqa: E402

import ccm.record.appends as appends_mod  # noqa: E402
import ccm.record.bulk as bulk_mod  # noqa: E402
import ccm.record.connect as connect_mod  # noqa: E402
from ccm.record import MasterKey, Record  # noqa: E402
from ccm.record.policy import Cap  # noqa: E402

#: The first words of the line each step starts at, and the step's name.
STEPS = (
    ("    sql = _sql(conn)\n", "statements"),
    ("    known = _known(", "reads: keys, heads, caps"),
    ("    out: list[Any] = [None] * count", "what becomes of each item"),
    ("    keys_of = data_keys_of(", "data keys (read, made, inserted)"),
    ("    now = datetime.now(UTC)\n    at_iso", "rows, archive refs, sealing"),
    ("    created_isos = [", "message rows"),
    ("    bodies = message_bodies(", "canonical JSON of the bodies"),
    ("    links: list[tuple", "chain links (SHA-256)"),
    ("    chain_rows = [(", "chain rows"),
    ("    for index, stored, status, reason in zip(taken", "results"),
    ('    sql.write(conn, "messages"', "insert messages"),
    ('    sql.write(conn, "archive"', "insert archive"),
    ('    sql.write(conn, "chain"', "insert chain"),
    ("    for index, stored, status in zip(taken", "outbox"),
    ("    return out\n", ""),
)
ACME_CAPS = (Cap("marketing-weekly", 3, 7, "marketing"),
             Cap("marketing-sms-weekly", 1, 7, "marketing", "sms"),
             Cap("operational-daily", 10, 1, "operational"))


def timed_append_bulk(laps: dict[str, list[float]]) -> Callable[..., Any]:
    """``append_bulk`` compiled again with ``_lap(step)`` before each step's first line."""
    source = Path(bulk_mod.__file__).read_text(encoding="utf-8")
    start = source.index("def append_bulk(")
    body = source[start:]
    for words, name in STEPS:
        if words not in body:
            raise SystemExit(f"record_steps.py: no line starts with {words.strip()!r} in "
                             "append_bulk any more: update STEPS")
        body = body.replace(words, f"    _lap({name!r})\n" + words, 1)
    state: dict[str, Any] = {"name": "", "at": 0.0}

    def lap(name: str) -> None:
        now = time.perf_counter()
        if state["name"]:
            laps[state["name"]].append(now - state["at"])
        state["name"], state["at"] = name, time.perf_counter()

    space = dict(bulk_mod.__dict__, _lap=lap)
    exec(compile("from __future__ import annotations\n" + body, bulk_mod.__file__, "exec"),
         space)
    return space["append_bulk"]  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=80)
    parser.add_argument("--caps", action="store_true", help="the acme pack's caps on every item")
    args = parser.parse_args()
    laps: dict[str, list[float]] = collections.defaultdict(list)
    setattr(appends_mod, "append_bulk", timed_append_bulk(laps))  # noqa: B010
    retrying = connect_mod.Connected._retrying

    def around(self: Any, customers: Any, work: Callable[[Any], Any]) -> Any:
        began = time.perf_counter()
        ended: list[float] = []

        def inner(conn: Any) -> Any:
            laps["transaction begun"].append(time.perf_counter() - began)
            result = work(conn)
            ended.append(time.perf_counter())
            return result

        result = retrying(self, customers, inner)
        laps["commit"].append(time.perf_counter() - ended[0])
        return result

    connect_mod.Connected._retrying = around  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as scratch:
        rec = Record(f"sqlite:///{scratch}/record.db", master_key=MasterKey.generate())
        rec.append_many(sms_chunk("warm"))
        laps.clear()
        work = [sms_chunk(f"c{c}") for c in range(args.chunks)]
        for chunk in work:
            for item in chunk:
                item["caps"] = ACME_CAPS if args.caps else ()
        whole, prepared = [], []
        for chunk in work:
            started = time.perf_counter()
            for item in chunk:
                bulk_mod.prepare(item)
            prepared.append(time.perf_counter() - started)
        for chunk in work:
            started = time.perf_counter()
            rec.append_many(chunk)
            whole.append(time.perf_counter() - started)
        if not rec.verify().ok:
            raise SystemExit("record_steps.py: the record written does not verify")
        rec.close()

    def line(name: str, values: list[float]) -> str:
        least, middle = min(values) / CHUNK * 1e6, statistics.median(values) / CHUNK * 1e6
        return f"  {name:34s} {least:6.2f} {middle:8.2f}"

    print(f"append_many, µs per message ({args.chunks} chunks of {CHUNK} SMS, new customers, "
          f"master key{', acme caps' if args.caps else ''}): least, median")
    print(line("append_many (all of it)", whole))
    print(line("prepare (checks, digests)", prepared))
    for name, values in laps.items():
        print(line(name, values))


if __name__ == "__main__":
    main()
