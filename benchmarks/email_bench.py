"""Email through ccm's API against a jinja2 + mjml-python loop (i): CPU µs per email.

    python benchmarks/email_bench.py            # or: --quick
    python benchmarks/run.py --only email

* ``i-email-api``: the naive loop's µs per email divided by ccm's, both in this
  process on the same template (payment_reminder, acme), the same distinct
  requests and the same context: the loop is ``jinja2.Environment.render`` +
  ``mjml2html`` per message (what an application developer writes), ccm is
  ``Engine.render(channel="email", record=False)``: validation, contract,
  sandboxed Jinja, MJML (compiled once per shape), text alternative, the
  ``.eml``. Target >= 1.0x, aim 3x (issue 12).
* ``i-email-record``: the same with ccm writing the record (SQLite, master
  key: encrypted archive, hash chain) through ``Engine.render_many``, on an
  engine made and warmed (templates compiled for every locale) before the
  timing, as the engine of ``i-email-api`` is.
  ``ccm µs/email, MJML + text per message (before)`` is the same engine with
  the compiled shapes switched off, in the same run.
* ``i-email-stages``: µs per email for each stage, the compiled shape beside
  the per-message path it replaces.

CPU time of this process; variants interleaved, best of several rounds.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    PACK,
    TEMPLATES,
    NaiveLoop,
    Result,
    best_of,
    load_average,
    requests_for,
)

TEMPLATE = "payment_reminder"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # no quiet hours for any sample's zone


def bench_api(n: int, rounds: int) -> list[Result]:
    """ccm's API against the naive loop, without and with the record."""
    from ccm.channels.email import clear_skeletons
    from ccm.record import MasterKey, Record
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    raws = list(requests_for(TEMPLATE, n, prefix="E"))
    requests = [validate_request(r) for r in raws]
    naive = NaiveLoop(TEMPLATE, "email", raws, NOON.isoformat())
    engine = Engine(PACK, TEMPLATES, record=None, clock=lambda: NOON)
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-email-"))
    key = MasterKey.generate()
    records: list[Any] = []
    clear_skeletons()
    for req in requests[:5]:  # the shapes of the sample set, compiled once per process
        engine.render(TEMPLATE, req, "email", record=False)

    def render() -> None:
        for req in requests:
            engine.render(TEMPLATE, req, "email", record=False)

    def render_per_message() -> None:  # as before: mjml2html + html_to_text per message
        from ccm.channels.email import _skeleton

        _skeleton._skeletons.enabled = False
        try:
            render()
        finally:
            _skeleton._skeletons.enabled = True

    # One engine with a fresh record per round, made and warmed (templates compiled for
    # each locale, as in a long batch) before the timing, like the engine above.
    recording: list[Any] = []
    for _ in range(rounds):
        record = Record(f"sqlite:///{work / f'{uuid.uuid4().hex}.db'}", master_key=key)
        records.append(record)
        with_record = Engine(engine.pack, TEMPLATES, record=record, clock=lambda: NOON)
        for req in requests[:40]:  # every locale of the samples
            with_record.render(TEMPLATE, req, "email", record=False)
        recording.append(with_record)

    def render_and_record() -> None:
        recording.pop().render_many(TEMPLATE, requests, "email")

    try:
        best = best_of(rounds, {"naive": naive.run, "ccm": render,
                                "ccm, MJML + text per message": render_per_message,
                                "ccm + record": render_and_record})
    finally:
        for record in records:
            record.close()
        shutil.rmtree(work, ignore_errors=True)
    us = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    load = load_average()
    return [
        Result("i-email-api", "email (payment_reminder, MJML) through Engine.render vs jinja2 + "
               "mjml2html per message: naive µs / ccm µs", us["naive"] / us["ccm"], "x",
               target=1.0, details={"naive µs/email": us["naive"], "ccm µs/email": us["ccm"],
                                    "ccm µs/email, MJML + text per message (before)":
                                        us["ccm, MJML + text per message"],
                                    "messages": n, "load": load},
               note="aim 3x (issue 12)"),
        Result("i-email-record", "the same with the record (SQLite, master key) through "
               "Engine.render_many: naive µs / ccm µs", us["naive"] / us["ccm + record"], "x",
               target=1.0, details={"naive µs/email": us["naive"],
                                    "ccm + record µs/email": us["ccm + record"],
                                    "messages": n, "load": load}),
    ]


def bench_stages(n: int, rounds: int) -> Result:
    """µs per email for each stage; the compiled shape beside the per-message path."""
    from ccm.channels import email as email_channel
    from ccm.channels.email import _skeleton
    from ccm.channels.email._text import replay_text
    from ccm.channels.email._textfill import fill_text
    from ccm.message import Message
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    engine = Engine(PACK, TEMPLATES, record=None, clock=lambda: NOON)
    as_written = Engine(PACK, TEMPLATES, record=None, clock=lambda: NOON)
    as_written._folds = None  # before: every template compiled as written
    tpl = engine.template(TEMPLATE)
    requests = [validate_request(r) for r in requests_for(TEMPLATE, n, prefix="S")]
    roots = (engine.pack.root, tpl.root)

    def message(req: Any) -> Message:
        return Message(message_id=uuid.uuid4().hex, customer_id=req.customer_id,
                       template=tpl.id, template_version=tpl.version, pack="acme",
                       pack_version="1", channel="email",
                       locale=engine.pack.resolve_locale(req.customer.get("locale")),
                       message_type=tpl.message_type, journey=tpl.journey, content=b"")

    deadline = time.monotonic() + 3600
    sources = [engine._render(tpl, r, "email", message(r), deadline,
                              blocks=("subject", "preheader")).text for r in requests]
    htmls = [email_channel.compile_mjml(s, include_roots=roots) for s in sources]
    texts = [email_channel.html_to_text(h) for h in htmls]
    found = [_skeleton._skeletons.find(s, roots) for s in sources]
    shaped = sum(f is not None for f in found)
    shaped_htmls = [f[0].shaped_html(f[1]) if f is not None else h
                    for f, h in zip(found, htmls, strict=True)]
    best = best_of(rounds, {
        "jinja (sandboxed, with context; constants folded)": lambda: [
            engine._render(tpl, r, "email", message(r), deadline,
                           blocks=("subject", "preheader")) for r in requests],
        "jinja, compiled as written (before)": lambda: [
            as_written._render(tpl, r, "email", message(r), deadline,
                               blocks=("subject", "preheader")) for r in requests],
        "mjml2html per message": lambda: [
            email_channel.compile_mjml(s, include_roots=roots) for s in sources],
        "compiled shape: split + fill": lambda: [
            email_channel.compile_mjml_shaped(s, include_roots=roots) for s in sources],
        "html_to_text of the HTML": lambda: [email_channel.html_to_text(h) for h in htmls],
        "text replayed from the shape": lambda: [
            replay_text(f[0].text_ops, f[1]) for f in found
            if f is not None and f[0].text_ops is not None],
        "text filled from the shape's text (ccm now)": lambda: [
            fill_text(f[0].text_ops, f[1]) for f in found
            if f is not None and f[0].text_ops is not None],
        "build_email_bytes": lambda: [
            email_channel.build_email_bytes(
                subject="Reminder", html=h, text=t, from_="Acme <a@acme.example>",
                to=("Customer", "c@example.com"), date=NOON)
            for h, t in zip(htmls, texts, strict=True)],
        "build_email_bytes, HTML body from the shape": lambda: [
            email_channel.build_email_bytes(
                subject="Reminder", html=h, text=t, from_="Acme <a@acme.example>",
                to=("Customer", "c@example.com"), date=NOON)
            for h, t in zip(shaped_htmls, texts, strict=True)],
        "engine.render (all of it)": lambda: [
            engine.render(TEMPLATE, r, "email", record=False) for r in requests],
    })
    details: dict[str, Any] = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    details["sources from a compiled shape"] = f"{shaped}/{n}"
    return Result("i-email-stages", "email: µs per message by stage",
                  details["engine.render (all of it)"], "µs", higher_is_better=False,
                  details=details)


def run(quick: bool) -> list[Result]:
    """The email figures; ``quick`` uses fewer messages."""
    n, rounds = (150, 3) if quick else (600, 5)
    return [*bench_api(n, rounds), bench_stages(min(n, 200), rounds)]


def main(argv: list[str]) -> int:
    from run import _print

    print(f"load {load_average()}")
    results = run("--quick" in argv)
    _print(results)
    return 1 if any(r.met is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
