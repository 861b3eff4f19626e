"""Render every request file in a folder, one output folder per template run.

    python examples/render_folder.py templates/payment_reminder/samples \
        --template payment_reminder \
        --pack brand_packs/acme --out out/folder

Bad requests are reported with their file name and skipped; the script exits
1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    args = parser.parse_args(argv)

    engine = ccm.Engine(args.pack, args.templates, record=None)
    failed = 0
    for path in sorted(args.folder.glob("*.json")):
        try:
            request = json.loads(path.read_text("utf-8"))
            for message in engine.render(args.template, request):
                target = atomic_write(args.out / message.filename, message.content)
                print(f"{path.name}: {message.channel} -> {target}")
        except (ccm.MessageError, json.JSONDecodeError) as exc:
            failed += 1
            print(f"{path.name}: error: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
