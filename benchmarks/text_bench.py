"""Email and SMS per core, including the record write (e), and where an email's time goes.

* ``e-sms`` / ``e-email``: ``Engine.render_many`` for distinct payment
  reminders with a SQLite record: one transaction per 256 messages, caps
  re-checked inside it, idempotency keys and consents read once per chunk, in
  one process: messages per CPU second. ``render_only_per_s`` is
  ``Engine.render(record=False)``; ``render_each_with_record_per_s`` is
  ``Engine.render`` with the record, one transaction (and the contact policy's
  reads) per message.
* ``e-sms-batch`` / ``e-email-batch``: the whole ``run_batch`` in one process
  (input, resume lookups, record, files), messages per CPU second.
* ``e-email-stages``: milliseconds per email for each stage, including
  ``compile_mjml`` uncached vs a ``compile_mjml_cached`` hit, to size the
  "compile MJML once per template and pack" idea.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import PACK, TEMPLATES, Result, best_of, load_average, requests_for

TEMPLATE = "payment_reminder"
#: Messages per record transaction, as the batch parent commits them
#: (ccm.batch.run.COMMIT_MESSAGES).
BATCH = 256


def bench_render_and_record(channel: str, n: int, rounds: int) -> Result:
    """Render + record write per message, in one process, through the engine's public API."""
    from ccm.record import Record
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    # Daytime for every sample's timezone (Chicago to Dubai): the pack's SMS quiet
    # hours would otherwise defer some messages, depending on when the benchmark runs.
    noon = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    plain = Engine(PACK, TEMPLATES, record=None, clock=lambda: noon)
    bulk = Engine(plain.pack, TEMPLATES, record=None, clock=lambda: noon)
    single = Engine(plain.pack, TEMPLATES, record=None, clock=lambda: noon)
    requests = [validate_request(r) for r in requests_for(TEMPLATE, n, prefix=channel[0])]
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    records: list[Any] = []

    def fresh_record() -> Any:
        record = Record(f"sqlite:///{work / f'{uuid.uuid4().hex}.db'}")
        records.append(record)
        return record

    def render_only() -> None:
        for req in requests:
            plain.render(TEMPLATE, req, channel, record=False)

    def render_many() -> None:
        bulk.record = fresh_record()
        made = bulk.render_many(TEMPLATE, requests, channel, chunk_size=BATCH)
        assert all(m.status == "generated" for m in made)

    def render_each() -> None:
        single.record = fresh_record()
        for req in requests:
            single.render(TEMPLATE, req, channel)

    try:
        render_only()
        best = best_of(rounds, {"render": render_only, "render_many": render_many,
                                "render each with record": render_each})
    finally:
        for record in records:
            record.close()
        shutil.rmtree(work, ignore_errors=True)
    target = 20_000 if channel == "sms" else 2_000
    return Result(f"e-{channel}", f"{channel} per core including the record write "
                  "(Engine.render_many)",
                  n / best["render_many"], "msg/s", target=target,
                  details={"render_only_per_s": round(n / best["render"], 1),
                           "render_each_with_record_per_s":
                               round(n / best["render each with record"], 1),
                           "messages": n, "load": load_average()})


def bench_batch(channel: str, n: int) -> Result:
    """The whole batch in one process (input, lookups, record, files)."""
    from ccm.batch import run_batch

    requests = list(requests_for(TEMPLATE, n, prefix=channel[0].upper()))
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    try:
        start = time.process_time()
        summary = run_batch(TEMPLATE, requests, pack=PACK, templates=TEMPLATES, out=work / "out",
                            record_url=f"sqlite:///{work / 'r.db'}", run_id="bench",
                            workers=0, channels=[channel], durable=False)
        seconds = time.process_time() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Result(f"e-{channel}-batch", f"{channel}: run_batch in one process, messages per "
                  "CPU second (input, resume lookups, record, files)",
                  summary.generated / seconds, "msg/s", details={"messages": summary.generated})


def _html_to_text_slow(html: str) -> str:
    """``html_to_text`` as it was: the stdlib HTMLParser over every byte (for the stage table)."""
    from ccm.channels.email import _text as email_text

    parser = email_text._TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).split("\n"))
    return email_text._BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def bench_email_stages(n: int, rounds: int) -> Result:
    """Milliseconds per email, stage by stage."""
    from ccm.channels import email as email_channel
    from ccm.message import Message
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    engine = Engine(PACK, TEMPLATES, record=None)
    tpl = engine.template(TEMPLATE)
    requests = [validate_request(r) for r in requests_for(TEMPLATE, n, prefix="S")]
    roots = (engine.pack.root, tpl.root)

    def message(req: Any) -> Message:
        return Message(message_id=uuid.uuid4().hex, customer_id=req.customer_id,
                       template=tpl.id, template_version=tpl.version, pack="acme",
                       pack_version="1", channel="email", locale="en_GB",
                       message_type=tpl.message_type, journey=tpl.journey, content=b"")

    deadline = time.monotonic() + 3600
    sources = [engine._render(tpl, r, "email", message(r), deadline,
                              blocks=("subject", "preheader")).text for r in requests]
    htmls = [email_channel.compile_mjml(s, include_roots=roots) for s in sources]
    email_channel.compile_mjml_cached(sources[0], include_roots=roots)
    best = best_of(rounds, {
        "validate request + contract": lambda: [
            tpl.validate_data(validate_request(r.to_dict()).data) for r in requests],
        "jinja (sandboxed, with context)": lambda: [
            engine._render(tpl, r, "email", message(r), deadline,
                           blocks=("subject", "preheader")) for r in requests],
        "compile_mjml (every source differs)": lambda: [
            email_channel.compile_mjml(s, include_roots=roots) for s in sources],
        "compile_mjml_cached (hit)": lambda: [
            email_channel.compile_mjml_cached(sources[0], include_roots=roots)
            for _ in requests],
        "html_to_text": lambda: [email_channel.html_to_text(h) for h in htmls],
        "html_to_text with HTMLParser (before)": lambda: [_html_to_text_slow(h) for h in htmls],
        "build_email + to_bytes (stdlib email)": lambda: [
            email_channel.to_bytes(email_channel.build_email(
                subject="Reminder", html=h, text="text", from_="Acme <a@acme.example>",
                to=("Customer", "c@example.com"))) for h in htmls],
        "build_email_bytes (what the engine uses)": lambda: [
            email_channel.build_email_bytes(
                subject="Reminder", html=h, text="text", from_="Acme <a@acme.example>",
                to=("Customer", "c@example.com")) for h in htmls],
        "engine.render (all of it)": lambda: [
            engine.render(TEMPLATE, r, "email", record=False) for r in requests],
    })
    details = {k: round(1000 * v / n, 3) for k, v in best.items()}
    return Result("e-email-stages", "email: ms per message by stage",
                  details["engine.render (all of it)"], "ms", higher_is_better=False,
                  details=details,
                  note="rendered MJML differs per customer, so the compile cache misses")


def run(quick: bool) -> list[Result]:
    """Email and SMS figures; ``quick`` uses fewer messages."""
    n_sms, n_email, rounds = (300, 60, 2) if quick else (2000, 300, 3)
    return [
        bench_render_and_record("sms", n_sms, rounds),
        bench_render_and_record("email", n_email, rounds),
        bench_batch("sms", n_sms),
        bench_batch("email", n_email),
        bench_email_stages(min(n_email, 60), rounds),
    ]
