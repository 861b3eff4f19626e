"""Email and SMS per core, including the record write (e), and where an email's time goes.

* ``e-sms`` / ``e-email``: ``Engine.render(record=False)`` for distinct
  payment reminders plus ``Record.append`` of each message (one SQLite
  transaction per message, as the record offers it), in one process: messages
  per CPU second.
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


def _entry(message: Any, engine: Any, tpl: Any, req: Any) -> Any:
    from ccm.record import Entry

    return Entry(
        message_id=message.message_id, idempotency_key=f"bench:{uuid.uuid4().hex}",
        params_sha256=engine._params_sha256(tpl, req, message.channel, message.locale),
        customer_id=message.customer_id, channel=message.channel, template=message.template,
        template_version=message.template_version, pack=message.pack,
        pack_version=message.pack_version, message_type=message.message_type,
        journey=message.journey, locale=message.locale,
        created_at=datetime.fromisoformat(message.created_at) if message.created_at
        else datetime.now(UTC),
        status=message.status, reason=message.reason, content_sha256=message.sha256,
        archival_sha256=None, sources_sha256=message.sources_sha256, archive_ref=None,
    )


def bench_render_and_record(channel: str, n: int, rounds: int) -> Result:
    """Render + record append per message, in one process."""
    from ccm.engine import Engine
    from ccm.record import Record
    from ccm.template import validate_request

    engine = Engine(PACK, TEMPLATES, record=None)
    tpl = engine.template(TEMPLATE)
    requests = [validate_request(r) for r in requests_for(TEMPLATE, n, prefix=channel[0])]
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    records: list[Any] = []

    def render_only() -> None:
        for req in requests:
            engine.render(TEMPLATE, req, channel, record=False)

    def with_record() -> None:
        record = Record(f"sqlite:///{work / f'{uuid.uuid4().hex}.db'}")
        records.append(record)
        for req in requests:
            message = engine.render(TEMPLATE, req, channel, record=False)
            record.append(_entry(message, engine, tpl, req), content=message.content)

    try:
        render_only()
        best = best_of(rounds, {"render": render_only, "render+record": with_record})
    finally:
        for record in records:
            record.close()
        shutil.rmtree(work, ignore_errors=True)
    target = 20_000 if channel == "sms" else 2_000
    return Result(f"e-{channel}", f"{channel} per core including the record write",
                  n / best["render+record"], "msg/s", target=target,
                  details={"render_only_per_s": round(n / best["render"], 1),
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


def bench_email_stages(n: int, rounds: int) -> Result:
    """Milliseconds per email, stage by stage."""
    from ccm.channels import email as email_channel
    from ccm.engine import Engine
    from ccm.message import Message
    from ccm.template import validate_request

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
        "build_email + to_bytes": lambda: [
            email_channel.to_bytes(email_channel.build_email(
                subject="Reminder", html=h, text="text", from_="Acme <a@acme.example>",
                to="Customer <c@example.com>")) for h in htmls],
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
