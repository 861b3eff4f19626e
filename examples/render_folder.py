"""Render every request file in a folder, one output folder per template run.

    python examples/render_folder.py templates/payment_reminder/samples \
        --template payment_reminder \
        --pack brand_packs/acme --out out/folder

Bad requests are reported with their file name and skipped; the script exits
1 if any failed. A message the pack's contact policy stops (no consent, SMS
quiet hours in the customer's time zone) is reported as suppressed, with the
rule, and not written; ``--as-of 2026-06-01T15:00:00+00:00`` renders as of that
moment.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ccm  # noqa: E402
from ccm._util import atomic_write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--template", required=True)
    parser.add_argument("--pack", type=Path, default=ROOT / "brand_packs" / "acme")
    parser.add_argument("--templates", type=Path, default=ROOT / "templates")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "folder")
    parser.add_argument("--as-of", type=datetime.fromisoformat, default=None,
                        help="render as of this moment (ISO 8601 with an offset)")
    args = parser.parse_args(argv)

    moment = args.as_of
    engine = ccm.Engine(args.pack, args.templates, record=None,
                        clock=None if moment is None else (lambda: moment))
    failed = 0
    for path in sorted(args.folder.glob("*.json")):
        try:
            request = json.loads(path.read_text("utf-8"))
            for message in engine.render(args.template, request):
                if message.status != "generated":
                    print(f"{path.name}: {message.channel} {message.status}: {message.reason}")
                    continue
                target = atomic_write(args.out / message.filename, message.content)
                print(f"{path.name}: {message.channel} -> {target}")
        except (ccm.MessageError, json.JSONDecodeError) as exc:
            failed += 1
            print(f"{path.name}: error: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
