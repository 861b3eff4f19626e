"""Library or our own code: the figures behind docs/architecture.md's decisions table (f).

* ``f-contracts``: checking a valid request and its data contract, microseconds
  per request, for ``jsonschema`` alone, ``fastjsonschema`` (compiled once per
  schema) and the hand-written ``ccm/render/_fastschema.py`` it replaced; over
  every example template's samples.
* ``f-eml``: writing one multipart/alternative ``.eml``: the standard
  library's ``email`` generator (``tests/channels/_stdlib_email.py``, the
  tests' oracle, + ``to_bytes``) against ccm's writer (``build_email_bytes``).
* ``f-text``: the HTML-to-text alternative of a compiled payment reminder:
  ours (``html_to_text``), ``inscriptis`` and ``html2text``.

All in one process, CPU time, variants interleaved, best of several rounds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from _common import PACK, TEMPLATES, Result, best_of, load_average, requests_for

EXAMPLES = ("payment_reminder", "monthly_statement", "welcome", "product_offer", "nps_survey")


def bench_contracts(n: int, rounds: int) -> Result:
    """Validating requests and data contracts: µs per request."""
    import fastjsonschema
    import jsonschema

    from ccm._schema import load_schema
    from ccm.render.template import _FORMATS, load_templates

    templates = load_templates(TEMPLATES)
    cases: list[tuple[Any, Any]] = []
    for name in EXAMPLES:
        for req in requests_for(name, max(n // len(EXAMPLES), 1)):
            cases.append((templates[name].contract, req))
    request_schema = load_schema("request")
    js = {id(s): jsonschema.Draft202012Validator(s, format_checker=_FORMATS)
          for s, _ in cases}
    js_request = jsonschema.Draft202012Validator(request_schema, format_checker=_FORMATS)
    fj = {id(s): fastjsonschema.compile(s, use_default=False) for s, _ in cases}
    fj_request = fastjsonschema.compile(request_schema, use_default=False)

    def run_jsonschema() -> None:
        for schema, req in cases:
            js_request.is_valid(req)
            js[id(schema)].is_valid(req["data"])

    def run_fastjsonschema() -> None:
        for schema, req in cases:
            fj_request(req)
            fj[id(schema)](req["data"])

    variants: dict[str, Any] = {"jsonschema": run_jsonschema,
                                "fastjsonschema": run_fastjsonschema}
    try:
        from ccm.render._fastschema import compile_check
    except ImportError:
        compile_check = None
    if compile_check is not None:
        hw = {id(s): compile_check(s, _FORMATS) for s, _ in cases}
        hw_request = compile_check(request_schema, _FORMATS)

        def run_hand_written() -> None:
            for schema, req in cases:
                if hw_request is None or not hw_request(req):
                    js_request.is_valid(req)
                check = hw[id(schema)]
                if check is None or not check(req["data"]):
                    js[id(schema)].is_valid(req["data"])  # as the engine falls back

        variants["hand-written _fastschema"] = run_hand_written
    best = best_of(rounds, variants)
    us = {k: round(1e6 * v / len(cases), 2) for k, v in best.items()}
    return Result("f-contracts", "request + data contract check, µs per request "
                  "(fastjsonschema; lower is better)", us["fastjsonschema"], "µs",
                  higher_is_better=False, details={**us, "requests": len(cases)})


def _compiled_reminders(n: int) -> list[str]:
    from ccm.channels import email as email_channel
    from ccm.render.engine import Engine

    noon = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    engine = Engine(PACK, TEMPLATES, record=None, clock=lambda: noon)
    out = []
    for req in requests_for("payment_reminder", n, prefix="T"):
        message = engine.render("payment_reminder", req, "email", record=False)
        parsed = email_channel.parse_bytes(message.content)
        html = parsed.get_body(("html",))
        assert html is not None
        out.append(str(html.get_content()))
    return out


def bench_eml(n: int, rounds: int) -> Result:
    """The .eml writer: µs per message, stdlib generator vs the hand-written one."""
    from ccm.channels import email as email_channel

    htmls = _compiled_reminders(n)
    texts = [email_channel.html_to_text(h) for h in htmls]
    common = {"subject": "Your payment is due", "from_": "Acme <billing@acme.example>",
              "to": ("Customer", "c@example.com"), "headers": {"List-Unsubscribe":
                                                                "<https://acme.example/u/x>"}}
    from datetime import UTC, datetime

    from tests.channels._stdlib_email import stdlib_build_email

    when = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    variants: dict[str, Any] = {
        "stdlib email generator": lambda: [
            email_channel.to_bytes(stdlib_build_email(html=h, text=t, date=when, **common))
            for h, t in zip(htmls, texts, strict=True)],
    }
    hand = getattr(email_channel, "build_email_bytes", None)
    if hand is not None:
        variants["hand-written writer"] = lambda: [
            hand(html=h, text=t, date=when, **common) for h, t in zip(htmls, texts, strict=True)]
    best = best_of(rounds, variants)
    us = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    return Result("f-eml", "one .eml (multipart/alternative): the stdlib generator's time "
                  "over ours (keep ours while > 1)",
                  us["stdlib email generator"] / us.get("hand-written writer", float("inf")),
                  "x", target=1.0,
                  details={**us, "messages": n, "load": load_average()})


def bench_text(n: int, rounds: int) -> Result:
    """HTML-to-text: µs per email for ours, inscriptis and html2text."""
    try:
        import html2text
        from inscriptis import get_text
    except ImportError:
        return Result("f-text", "HTML-to-text: skipped, the libraries to compare with are "
                      "not installed (pip install 'ccm-engine[bench]')", float("nan"), "x",
                      note="skipped")

    from ccm.channels import email as email_channel

    htmls = _compiled_reminders(n)
    h2t = html2text.HTML2Text()
    h2t.body_width = 0
    best = best_of(rounds, {
        "ours (html_to_text)": lambda: [email_channel.html_to_text(h) for h in htmls],
        "inscriptis": lambda: [get_text(h) for h in htmls],
        "html2text": lambda: [h2t.handle(h) for h in htmls],
    })
    us = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    fastest_library = min(us["inscriptis"], us["html2text"])
    return Result("f-text", "HTML-to-text: the fastest library's time over ours "
                  "(keep ours while > 1)", fastest_library / us["ours (html_to_text)"], "x",
                  target=1.0, details={**us, "html_bytes": sum(map(len, htmls)) // n,
                                       "load": load_average()},
                  note="compiled payment reminders")


def run(quick: bool) -> list[Result]:
    """The library decisions; ``quick`` uses fewer messages."""
    n, rounds = (50, 2) if quick else (300, 3)
    return [bench_contracts(n * 4, rounds), bench_eml(n, rounds), bench_text(n, rounds)]


if __name__ == "__main__":
    import sys

    for result in run("--quick" in sys.argv):
        print(result.id, result.value, result.unit, result.details)
