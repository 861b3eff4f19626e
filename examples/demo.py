"""`make demo`: render the example communications for the example customers.

Renders every example template in both example packs (acme for the en_GB and
de_DE customers, globex for en_US and ar), writes the files into ``out/``,
records every message in ``out/record.db`` (content archived under a local
master key it creates in ``out/master.key``), and prints one customer's
timeline from the record.

    python examples/demo.py --out out
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ccm  # noqa: E402
from ccm._util import atomic_write  # noqa: E402

PACK_FOR_LANGUAGE = {
    "en_GB": "acme", "de_DE": "acme", "de": "acme", "en_US": "globex", "ar": "globex",
}
OTHER_TEMPLATES = ["payment_reminder", "welcome", "product_offer", "nps_survey"]


def pack_for(customer: dict[str, object]) -> str:
    """acme serves the UK and German customers, globex the US and Arabic ones."""
    locale = str(customer.get("locale") or "en_GB")
    return PACK_FOR_LANGUAGE.get(locale, PACK_FOR_LANGUAGE.get(locale.split("_")[0], "acme"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--customers", type=Path, default=ROOT / "examples" / "customers.jsonl")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    from ccm.record import MasterKey, Record

    key_file = out / "master.key"
    if key_file.exists():
        master_key = MasterKey.from_file(key_file)
    else:
        master_key = MasterKey.generate_file(key_file)
        print(f"created a local master key for the archive: {key_file} (demo only; keep real keys "
              "outside the project, see docs/privacy.md)")
    record_path = out / "record.db"
    record = Record(f"sqlite:///{record_path}", master_key=master_key)

    engines = {
        pack: ccm.Engine(ROOT / "brand_packs" / pack, ROOT / "templates", record=record,
                         run_id="demo")
        for pack in ("acme", "globex")
    }
    requests = [json.loads(line) for line in args.customers.read_text("utf-8").splitlines()
                if line.strip()]
    made = 0
    counts: dict[str, int] = {}
    print(f"{'status':10} {'channel':7} {'pack':7} {'locale':6} file")
    for request in requests:
        engine = engines[pack_for(request["customer"])]
        jobs = [("monthly_statement", request)]
        for template in OTHER_TEMPLATES:
            sample = sorted((ROOT / "templates" / template / "samples").glob("*.json"))[0]
            data = json.loads(sample.read_text("utf-8"))["data"]
            jobs.append((template, {"customer": request["customer"], "data": data}))
        for template, req in jobs:
            for message in engine.render(template, req):
                path = ""
                if message.status == "generated" and message.content:
                    sub = out / engine.pack.id / template
                    path = os.path.relpath(atomic_write(sub / message.filename, message.content))
                    made += 1
                counts[message.status] = counts.get(message.status, 0) + 1
                extra = f"  ({message.reason})" if message.reason else ""
                print(f"{message.status:10} {message.channel:7} {engine.pack.id:7} "
                      f"{message.locale:6} {path}{extra}")
    print()
    print(f"{made} files in {out}/; record: {record_path} "
          + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))

    customer = requests[0]["customer"]["id"]
    timeline = record.timeline(customer).to_dict()
    print(f"\ntimeline of customer {customer} (ccm record timeline {customer} "
          f"--record sqlite:///{record_path}):")
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
