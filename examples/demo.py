"""`make demo`: render the example communications for the example customers.

Renders every example template in both example packs (acme for the en_GB and
de_DE customers, globex for en_US and ar), each customer with the sample data
of their own locale, writes the files into ``out/``, records every message in
``out/record.db`` (content archived under a local master key it creates in
``out/master.key``), and prints one customer's timeline from the record.

The contact policy sees a fixed moment (``--as-of``, default
2026-06-01 15:00 UTC), so the output is the same at any hour: quiet hours
suppress or defer the same messages every run, and the demo says which and
why. A second run finds the record and says what is there; ``--fresh``
starts over.

    python examples/demo.py --out out [--fresh] [--as-of 2026-06-01T15:00:00+00:00]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ccm  # noqa: E402
from ccm._util import atomic_write  # noqa: E402

PACKS = ("acme", "globex")
PACK_FOR_LANGUAGE = {"en_GB": "acme", "de": "acme", "en_US": "globex", "ar": "globex"}
OTHER_TEMPLATES = ["payment_reminder", "welcome", "product_offer", "nps_survey"]
#: The moment the contact policy sees: a Monday afternoon in Europe, morning in the US.
DEMO_TIME = "2026-06-01T15:00:00+00:00"
#: What the demo makes in --out; --fresh removes these and nothing else.
MADE = ("record.db", "master.key", *PACKS)


def pack_for(customer: dict[str, Any]) -> str:
    """acme serves the UK and German customers, globex the US and Arabic ones."""
    locale = str(customer.get("locale") or "en_GB").replace("-", "_")
    return PACK_FOR_LANGUAGE.get(locale, PACK_FOR_LANGUAGE.get(locale.split("_")[0], "acme"))


def sample_data(template: str, locale: str) -> dict[str, Any]:
    """The template's sample data for ``locale``: the same locale, else the same language,
    else the first sample (so a US customer gets dollars, a German one euros)."""
    samples = sorted((ROOT / "templates" / template / "samples").glob("*.json"))
    loaded = [json.loads(path.read_text("utf-8")) for path in samples]
    wanted = locale.replace("-", "_")

    def loc(req: dict[str, Any]) -> str:
        return str(req["customer"].get("locale", "")).replace("-", "_")

    for match in (lambda r: loc(r) == wanted,
                  lambda r: loc(r).split("_")[0] == wanted.split("_")[0]):
        for req in loaded:
            if match(req):
                return req["data"]  # type: ignore[no-any-return]
    return loaded[0]["data"]  # type: ignore[no-any-return]


def ticking(start: datetime) -> Callable[[], datetime]:
    """A clock that starts at ``start`` and moves one second per reading (a stable order)."""
    def seconds() -> Iterator[int]:
        n = 0
        while True:
            yield n
            n += 1
    counter = seconds()
    return lambda: start + timedelta(seconds=next(counter))


def show(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it, else absolute."""
    rel = os.path.relpath(path)
    return str(path.resolve()) if rel.startswith("..") else rel


def files_in(out: Path) -> list[Path]:
    return sorted(p for pack in PACKS for p in (out / pack).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--customers", type=Path, default=ROOT / "examples" / "customers.jsonl")
    parser.add_argument("--as-of", default=DEMO_TIME, metavar="DATETIME",
                        help=f"the moment the contact policy sees (quiet hours); "
                             f"default {DEMO_TIME}")
    parser.add_argument("--fresh", action="store_true",
                        help="remove what an earlier run made in --out and start over")
    args = parser.parse_args(argv)
    out: Path = args.out
    try:
        as_of = datetime.fromisoformat(args.as_of)
    except ValueError:
        parser.error(f"--as-of {args.as_of!r} is not an ISO 8601 date and time")
    if as_of.tzinfo is None:
        parser.error("--as-of needs a UTC offset, e.g. 2026-06-01T15:00:00+00:00")

    from ccm.record import MasterKey, Record

    record_path = out / "record.db"
    rel = show(record_path)
    if args.fresh:
        for name in MADE:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    elif record_path.exists():
        return again(out, record_path)
    out.mkdir(parents=True, exist_ok=True)

    key_file = out / "master.key"
    master_key = MasterKey.generate_file(key_file)
    print(f"created a local master key for the archive: {show(key_file)} (demo only; "
          "keep real keys outside the project, see docs/privacy.md)")
    print(f"the contact policy sees {as_of.isoformat()} (--as-of)\n")
    record = Record(f"sqlite:///{record_path}", master_key=master_key)
    clock = ticking(as_of)
    engines = {
        pack: ccm.Engine(ROOT / "brand_packs" / pack, ROOT / "templates", record=record,
                         run_id="demo", clock=clock)
        for pack in PACKS
    }
    requests = [json.loads(line) for line in args.customers.read_text("utf-8").splitlines()
                if line.strip()]
    made = 0
    counts: dict[str, int] = {}
    print(f"{'status':10} {'channel':7} {'pack':7} {'locale':6} file")
    for request in requests:
        customer = request["customer"]
        engine = engines[pack_for(customer)]
        jobs = [("monthly_statement", request)]
        for template in OTHER_TEMPLATES:
            data = sample_data(template, str(customer.get("locale") or "en_GB"))
            jobs.append((template, {"customer": customer, "data": data}))
        for template, req in jobs:
            for message in engine.render(template, req):
                path = ""
                if message.status == "generated" and message.content:
                    sub = out / engine.pack.id / template
                    path = show(atomic_write(sub / message.filename, message.content))
                    made += 1
                counts[message.status] = counts.get(message.status, 0) + 1
                extra = ""
                if message.reason:
                    why = message.meta.get("explanation") or message.reason
                    extra = f"  {customer['id']}: {why}"
                    if message.meta.get("defer_until"):
                        extra += f"; goes at {message.meta['defer_until']}"
                print(f"{message.status:10} {message.channel:7} {engine.pack.id:7} "
                      f"{message.locale:6} {path}{extra}")
    print()
    print(f"{made} files in {show(out)}/; record: {rel} ("
          + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")")
    return finish(record, requests[0]["customer"]["id"], record_path)


def again(out: Path, record_path: Path) -> int:
    """A second run: say what the first one made and where, and how to start over."""
    from ccm.record import MasterKey, Record

    key_file = out / "master.key"
    key = MasterKey.from_file(key_file) if key_file.exists() else None
    record = Record(f"sqlite:///{record_path}", master_key=key)
    files = files_in(out)
    checked = record.verify().checked
    print(f"the demo has run already: {show(record_path)} holds {checked} entries "
          f"and {show(out)}/ has {len(files)} files, for example:")
    for path in files[:: max(1, len(files) // 5)][:5]:
        print(f"  {show(path)}")
    print("start over with: make demo ARGS=--fresh  "
          f"(python examples/demo.py --out {show(out)} --fresh)")
    customers = [line for line in (ROOT / "examples" / "customers.jsonl")
                 .read_text("utf-8").splitlines() if line.strip()]
    first = json.loads(customers[0])["customer"]["id"]
    return finish(record, first, record_path)


def finish(record: Any, customer: str, record_path: Path) -> int:
    """Print ``customer``'s timeline and verify the record."""
    timeline = record.timeline(customer).to_dict()
    print(f"\ntimeline of customer {customer} (ccm record timeline {customer} "
          f"--record {show(record_path)}):")
    for item in timeline["messages"]:
        print(f"  {item['created_at'][:19]}  {item['channel']:6} {item['template']:18} "
              f"{item['status']}")
    print("  summary:", json.dumps(timeline["summary"].get("by_channel", timeline["summary"]),
                                   ensure_ascii=False))
    report = record.verify()
    print(f"\nrecord verify: {'ok' if report.ok else 'FAILED'} ({report.checked} entries checked)")
    record.close()
    return 0 if report.ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
