"""(f) What in-process budget enforcement costs a normal render.

ccm's sandbox (``ccm.render.sandbox.CCMSandbox``: deadline checks on every
call, attribute, item and operator and every 256 loop iterations, size
checks on ``*``, ``+``, ``**``, ``%``, ``~``, filters and methods, data-only
output) against Jinja's plain ``ImmutableSandboxedEnvironment`` with the same
loader, filters and options. The same engine renders the same requests with
either environment, interleaved, best of several rounds, CPU time:

* **jinja**: the Jinja stage alone (``Engine._render``), email, SMS and PDF sources;
* **render**: ``Engine.render`` for the SMS and email channels (the whole
  message: validation, context, Jinja, MJML or SMS encoding), where the
  target applies: enforcement must cost under 5 %.

    python benchmarks/budget_bench.py [--quick]
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PACK, TEMPLATES, Result, best_of, requests_for


def _baseline_env(engine: Any) -> Any:
    """The environment ccm used before budgets: Jinja's immutable sandbox, same loader/filters."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from ccm.render.environment import _autoescape
    from ccm.render.i18n import FILTERS

    env = ImmutableSandboxedEnvironment(
        loader=engine._env.loader, autoescape=_autoescape, undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"], keep_trailing_newline=False, trim_blocks=True,
        lstrip_blocks=True, auto_reload=False, cache_size=-1,
    )
    env.filters.update(FILTERS)
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


def run(quick: bool) -> list[Result]:
    """The overhead of enforcement, Jinja stage and whole render."""
    from ccm.message import Message
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    n, rounds = (40, 3) if quick else (200, 5)
    engine = Engine(PACK, TEMPLATES, record=None)
    budgeted_env = engine._env
    baseline_env = _baseline_env(engine)
    cases = [("payment_reminder", "sms"), ("payment_reminder", "email"),
             ("monthly_statement", "pdf")]
    prepared = []
    for template, channel in cases:
        tpl = engine.template(template)
        reqs = [validate_request(r) for r in requests_for(template, n, prefix="B")]
        prepared.append((tpl, channel, reqs))

    def message(tpl: Any, req: Any, channel: str) -> Message:
        return Message(message_id=uuid.uuid4().hex, customer_id=req.customer_id,
                       template=tpl.id, template_version=tpl.version, pack="acme",
                       pack_version="1", channel=channel, locale="en_GB",  # type: ignore[arg-type]
                       message_type=tpl.message_type, journey=tpl.journey, content=b"")

    def jinja(env: Any) -> Any:
        def go() -> None:
            engine._env = env
            deadline = time.monotonic() + 3600
            for tpl, channel, reqs in prepared:
                for req in reqs:
                    engine._render(tpl, req, channel, message(tpl, req, channel), deadline,
                                   blocks=("subject", "preheader", "title"))
        return go

    def render(env: Any, index: int) -> Any:
        tpl, channel, reqs = prepared[index]

        def go() -> None:
            engine._env = env
            for req in reqs:
                engine.render(tpl.id, req, channel, record=False)
        return go

    jinja(budgeted_env)()
    jinja(baseline_env)()  # warm both template caches
    best = best_of(rounds, {
        "jinja, plain sandbox": jinja(baseline_env),
        "jinja, ccm sandbox": jinja(budgeted_env),
        "sms, plain sandbox": render(baseline_env, 0),
        "sms, ccm sandbox": render(budgeted_env, 0),
        "email, plain sandbox": render(baseline_env, 1),
        "email, ccm sandbox": render(budgeted_env, 1),
    })
    best["render, plain sandbox"] = best["sms, plain sandbox"] + best["email, plain sandbox"]
    best["render, ccm sandbox"] = best["sms, ccm sandbox"] + best["email, ccm sandbox"]
    engine._env = budgeted_env
    jinja_overhead = 100 * (best["jinja, ccm sandbox"] / best["jinja, plain sandbox"] - 1)
    render_overhead = 100 * (best["render, ccm sandbox"] / best["render, plain sandbox"] - 1)
    messages = sum(len(reqs) for _, _, reqs in prepared)
    details = {
        "jinja ms/source, plain": round(1000 * best["jinja, plain sandbox"] / messages, 3),
        "jinja ms/source, ccm": round(1000 * best["jinja, ccm sandbox"] / messages, 3),
        "jinja overhead %": round(jinja_overhead, 1),
        "render ms/message, plain": round(1000 * best["render, plain sandbox"] / (2 * n), 3),
        "render ms/message, ccm": round(1000 * best["render, ccm sandbox"] / (2 * n), 3),
        "sms render overhead %": round(
            100 * (best["sms, ccm sandbox"] / best["sms, plain sandbox"] - 1), 1),
        "email render overhead %": round(
            100 * (best["email, ccm sandbox"] / best["email, plain sandbox"] - 1), 1),
    }
    return [Result("f-budget", "budget enforcement: Engine.render slower by (sms + email)",
                   render_overhead, "%", target=5.0, higher_is_better=False, details=details,
                   note="same engine, environment swapped; CPU time, best of rounds")]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for result in run(quick):
        print(f"{result.id}: {result.value:+.1f}% (target <= {result.target}%)  {result.title}")
        for key, value in result.details.items():
            print(f"    {key}: {value}")
