"""``ccm lint`` for one template on every sample of one pack: what an editor waits for.

Issue 14 sets the target: under 2 s. Measured with ``ccm.review.lint.lint(packs,
templates, only=[template])`` in one process, in CPU seconds (``time.process_time``,
see ``_common``), best of a few rounds, for every example template on each example
pack; the figure is the slowest template. The first round of each (cold caches:
MJML compilation, catalogs, fonts) is reported too, since an editor may hit it.

    python benchmarks/lint_one_template.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from _common import ROOT, TEMPLATES, Result, load_average

TARGET_SECONDS = 2.0


def measure(rounds: int) -> Result:
    """The slowest template's best lint time over every pack and template."""
    from ccm.review.lint import lint

    per: dict[str, dict[str, float]] = {}
    packs = sorted(p for p in (ROOT / "brand_packs").iterdir() if (p / "pack.yaml").is_file())
    templates = sorted(p.name for p in TEMPLATES.iterdir() if (p / "template.yaml").is_file())
    for pack in packs:
        for template in templates:
            times = []
            for _ in range(rounds):
                start = time.process_time()
                lint([pack], TEMPLATES, only=[template])
                times.append(time.process_time() - start)
            samples = len(list((TEMPLATES / template / "samples").glob("*.json")))
            per[f"{pack.name}/{template}"] = {"best_s": round(min(times), 3),
                                               "first_s": round(times[0], 3),
                                               "samples": samples}
    slowest = max(per.values(), key=lambda v: v["best_s"])
    return Result("lint-one-template", "ccm lint, one template on every sample of one pack",
                  slowest["best_s"], "s", target=TARGET_SECONDS, higher_is_better=False,
                  details=per, note=f"load {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.rounds)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for name, figures in sorted(result.details.items()):
        print(f"{name:32} best {figures['best_s']:.3f} s  first {figures['first_s']:.3f} s  "
              f"({figures['samples']} samples)")
    print(f"slowest: {result.value:.3f} s (target < {TARGET_SECONDS} s; met: {result.met}); "
          f"{result.note}")


if __name__ == "__main__":
    main()
