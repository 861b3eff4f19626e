"""The SMS plan's two per-row steps, and an email render, in CPU µs (one process, for people).

    python benchmarks/render_steps.py          # ~30 s

Times ``SmsPlan.request`` and ``SmsPlan.render`` (the batch's SMS rows) over 3,000
``payment_reminder`` requests, best of 9, and ``Engine.render`` of 200 emails, best
of 5, per message. Run it in two trees one after the other (``PYTHONPATH=TREE``) to
compare a change; no target, no assertion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from _common import PACK, TEMPLATES, requests_for

from ccm.render.engine import Engine
from ccm.render.smsplan import SmsPlan

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)  # daytime in every sample's zone


def _best(run: Callable[[], Any], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return 1e6 * best / count


def main() -> None:
    engine = Engine(PACK, TEMPLATES, record=None, clock=lambda: NOW)
    plan = SmsPlan.build(engine, "payment_reminder")
    if plan is None:
        raise SystemExit("payment_reminder has no SMS plan on this engine")
    objs = [json.loads(json.dumps(r)) for r in requests_for("payment_reminder", 3000,
                                                            prefix="T")]
    reqs = [got for got in (plan.request(o) for o in objs) if got is not None]
    locales = [plan.locale_for(req) for req, _ in reqs]
    created = NOW.isoformat()
    emails = objs[:200]

    def render_emails() -> None:
        for obj in emails:
            engine.render("payment_reminder", obj, channel="email")

    render_emails()
    print(json.dumps({
        "sms_request_us": round(_best(lambda: [plan.request(o) for o in objs], len(objs), 9), 1),
        "sms_render_us": round(_best(
            lambda: [plan.render(req, loc, "0" * 32, created)
                     for (req, _), loc in zip(reqs, locales, strict=True)], len(reqs), 9), 1),
        "email_render_us": round(_best(render_emails, len(emails), 5), 1),
    }))


if __name__ == "__main__":
    main()
