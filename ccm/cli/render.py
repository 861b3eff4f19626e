"""``ccm render``: render one template for every request in a file."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Generator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ccm._util import atomic_write
from ccm.cli._common import (
    NOT_GZIP,
    ExitCode,
    Fail,
    as_of_option,
    aware,
    echo,
    json_text,
    lock_timeout,
    need_folder,
    out_folder,
    shown,
)
from ccm.errors import CCMError

__all__ = ["render"]


def _rows(path: Path, schema: Any = None) -> Generator[Any, None, None]:
    """The request rows of ``path``, read as ``ccm batch`` reads them (:mod:`ccm.batch.inputs`).

    A missing file, an unknown suffix, a damaged ``.gz`` or a file in another
    encoding is a one-line failure; a bad line is a row with ``error`` set,
    reported with its line number by the caller.
    """
    import gzip
    import zlib

    from ccm.batch.inputs import read_requests

    if not path.is_file():
        raise Fail(f"--data {path}: no such file; check the path", ExitCode.NOT_FOUND)
    try:
        yield from read_requests(path, schema=schema)
    except FileNotFoundError as exc:
        raise Fail(f"--data {path}: no such file; check the path", ExitCode.NOT_FOUND) from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Fail(f"{path}: {NOT_GZIP}") from exc
    except OSError as exc:
        raise Fail(f"{path}: cannot read: {exc.strerror or type(exc).__name__}",
                   ExitCode.IO_ERROR) from exc
    except ValueError as exc:
        text = str(exc)  # some name the file already
        raise Fail(text if text.startswith(f"{path}:") else f"{path}: {text}") from exc


def _first_row(path: Path) -> None:
    """Fail unless ``path`` holds a request that can be read, before the record is opened.

    An empty file (or blank lines, or a CSV header alone) is an error, as in
    ``ccm batch``; so is a file whose only row cannot be read (a UTF-16 file
    is one such row): nothing could be rendered, so no record file is made.
    """
    rows = _rows(path)
    try:
        first = next(rows, None)
        only = first is not None and next(rows, None) is None
    finally:
        rows.close()
    if first is None:
        raise Fail(f"{path}: the file has no requests (it is empty, or holds only blank "
                   "lines or a CSV header); nothing was rendered or written")
    if only and first.error is not None:
        raise Fail(f"{path}:{first.line}: {first.error}")


@click.command("render")
@click.argument("template")
@click.option("--pack", "pack_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Brand pack folder.")
@click.option("--templates", "templates_dir", default="templates", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Templates folder.")
@click.option("--data", "data_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Request file: .json (one request or a list), .jsonl or .csv (as ccm batch).")
@click.option("--channel", type=click.Choice(["pdf", "email", "sms"]), default=None,
              help="Render one channel (default: every channel of the template).")
@click.option("--locale", default=None, help="Force a locale of the pack.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for .pdf, .eml and .sms.txt files (needed unless --queue).")
@click.option("--queue", is_flag=True,
              help="Queue each generated message for delivery (ccm send sends it); needs a "
                   "master key.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per message.")
@click.option("--record", "record_url", default=None, metavar="URL",
              help="Record URL [default: $CCM_RECORD_URL or sqlite:///ccm-record.db].")
@click.option("--no-record", is_flag=True, help="Do not write the communication record.")
@click.option("--idempotency-key", default=None, metavar="KEY",
              help="Run key: combined with template, customer and channel of each row (as "
                   "ccm batch --run-id), so running the command again records and queues "
                   "nothing twice.")
@click.option("--documents", "document_delivery", type=click.Choice(["attach", "link"]),
              default="attach", show_default=True,
              help="Confidential PDFs as attachments, or as retrieval links (docs/retrieval.md).")
@click.option("--web-version", is_flag=True,
              help="Give emails a hosted web version link (needs tracking.base_url).")
@as_of_option
def render(
    template: str,
    pack_dir: Path,
    templates_dir: Path,
    data_file: Path,
    channel: str | None,
    locale: str | None,
    out_dir: Path | None,
    queue: bool,
    as_json: bool,
    record_url: str | None,
    no_record: bool,
    idempotency_key: str | None,
    document_delivery: str,
    web_version: bool,
    as_of: datetime | None,
) -> None:
    """Render TEMPLATE for every request in --data into --out."""
    from ccm.render.engine import Engine, default_record_url
    from ccm.render.options import RenderOptions

    if no_record and record_url is not None:
        raise Fail("give --record URL or --no-record, not both", ExitCode.USAGE)
    if out_dir is None and not queue:
        raise Fail("--out FOLDER is needed (or --queue, to deliver with ccm send)",
                   ExitCode.USAGE)
    if queue and no_record:
        raise Fail("--queue needs the record (the outbox is in it); drop --no-record",
                   ExitCode.USAGE)
    if idempotency_key is not None and not idempotency_key.strip():
        raise Fail("--idempotency-key is empty: give a key for this run (e.g. "
                   "reminders-2026-06), or leave the option out", ExitCode.USAGE)
    # The setup is checked before the record is opened: a mistake leaves no record file.
    need_folder(pack_dir, "--pack", "the brand pack's folder")
    _first_row(data_file)
    key = _master_key(queue)
    moment = aware(as_of)
    # The key is a run key, as ccm batch's --run-id: each row's messages are keyed
    # RUN:TEMPLATE:CUSTOMER:CHANNEL, so a rerun finds them recorded (duplicates).
    engine = Engine(pack_dir, templates_dir, record=None, run_id=idempotency_key,
                    clock=None if moment is None else (lambda: moment),
                    options=RenderOptions(
                        document_delivery="link" if document_delivery == "link" else "attach",
                        web_version=web_version))
    if template not in engine.templates:
        from ccm.errors import UnknownTemplate

        raise UnknownTemplate(f"unknown template {template!r}; available: "
                              f"{', '.join(sorted(engine.templates))}", template=template)
    # Channel, locale, approval and links (tracking.base_url) too: nothing is made yet.
    engine._check_call(engine.template(template), channel, locale)
    if queue and idempotency_key is None:
        echo("ccm: note: no --idempotency-key: running this command again queues every "
             "message again; give --idempotency-key RUN (any name for this run) to make a "
             "rerun after a fix or an interruption safe (see docs/cli.md)", err=True)
    if out_dir is not None:
        out_folder(out_dir)
    if not no_record:
        from dataclasses import replace

        from ccm.record import Record

        # Opened here, not by the engine, to pass $CCM_RECORD_LOCK_TIMEOUT on.
        engine.record = Record(record_url or default_record_url(), master_key=key,
                               lock_timeout=lock_timeout())
        if engine.record.created:
            echo(f"ccm: new record at {engine.record.where} (there was none): if you meant an "
                 "existing record, check --record or CCM_RECORD_URL", err=True)
        engine.options = replace(engine.options, queue=queue)
    # Customers whose messages an earlier ccm recorded under this key's old KEY:channel
    # form: their rows are keyed that way again, so a rerun across the upgrade finds them.
    earlier = (_old_form_customers(engine.record, idempotency_key, template)
               if idempotency_key is not None and engine.record is not None else frozenset())
    failures = 0
    recorded: Counter[str] = Counter()  # by channel, the messages asked for
    duplicates = 0
    old_form_duplicates = 0
    wanted = {channel} if channel else set(engine.template(template).channels)
    documents: list[str] = []  # PDFs recorded only because a message carries them
    engine.add_listener(lambda m: documents.append(m.message_id)
                        if m.channel not in wanted and engine.record is not None else None)
    try:
        for row in _rows(data_file, _request_schema(engine, template)):
            lineno = row.line
            if row.error is not None:
                failures += 1
                echo(f"ccm: error: {data_file}:{lineno}: {row.error}", err=True)
                continue
            try:
                old_form = row.customer_id in earlier
                result = engine.render(template, row.request, channel=channel, locale=locale,
                                       idempotency_key=idempotency_key if old_form else None)
            except CCMError as exc:
                from ccm.errors import ConfigError, RecordIOError, RecordLocked

                # The setup, or a record that cannot be written: no later request would
                # fare better. The boundary gives the exit code (NOT_FOUND for an unknown
                # locale, CONFLICT for a locked record, IO_ERROR for a full disk).
                if isinstance(exc, ConfigError | RecordLocked | RecordIOError):
                    raise
                failures += 1
                echo(f"ccm: error: {data_file}:{lineno}: {exc}", err=True)
                continue
            for message in result if isinstance(result, list) else [result]:
                if message.status == "duplicate":
                    duplicates += 1
                    old_form_duplicates += old_form
                else:
                    recorded[message.channel] += 1
                summary = message.summary()
                path = None
                if message.status == "generated" and message.content and out_dir is not None:
                    path = _write_new(out_dir / message.filename, message.content)
                    if path is None:
                        failures += 1
                        in_archive = (engine.record is not None
                                      and engine.record.master_key is not None)
                        hint = (f"get it with `ccm record show {message.message_id} --content "
                                "FILE`, or render into an empty --out folder" if in_archive else
                                "render into an empty --out folder")
                        echo(
                            f"ccm: error: {data_file}:{lineno}: {out_dir / message.filename} "
                            f"already holds another message, left as it is; {message.channel} "
                            f"message {message.message_id} was not written ({hint})", err=True)
                summary["path"] = str(path) if path else None
                if "due_at" in message.meta:
                    summary["queued"] = message.meta["due_at"]
                if as_json:
                    click.echo(json_text(json.dumps(summary, ensure_ascii=False)))
                else:
                    echo(_describe(summary, message.meta.get("defer_until")))
    finally:
        if engine.record is not None:
            engine.record.close()
    if engine.record is not None and (recorded or documents):
        archived = ("" if engine.record.master_key is not None else
                    "; content not archived: no master key (CCM_MASTER_KEY or "
                    "CCM_MASTER_KEY_FILE, see docs/privacy.md)")
        kinds = [f"{n} {ch}" for ch, n in sorted(recorded.items())]
        if documents:
            kinds.append(f"{len(documents)} pdf documents (carried by the messages, "
                         "not queued on their own)")
        total = sum(recorded.values()) + len(documents)
        detail = f": {', '.join(kinds)}" if len(kinds) > 1 else ""
        echo(f"ccm: recorded {total} message(s) in {engine.record.where}{detail}{archived}",
             err=True)
    if engine.record is not None and duplicates:
        old = (f" ({old_form_duplicates} of them under its earlier form KEY:CHANNEL, "
               "as ccm wrote it before run keys)" if old_form_duplicates else "")
        echo(f"ccm: {duplicates} message(s) already recorded under this --idempotency-key"
             f"{old}: not recorded or queued again", err=True)
    if failures:
        raise SystemExit(1)


def _old_form_customers(record: Any, key: str, template: str) -> frozenset[str]:
    """The customers with a ``template`` message recorded under ``KEY:CHANNEL``.

    ``ccm render --idempotency-key KEY`` before the run-key scheme (CHANGELOG,
    7 December 2026) keyed each row's messages ``KEY:pdf``, ``KEY:email`` and
    ``KEY:sms``: one customer per key, since every later row failed. Their
    row is rendered under that form again (:meth:`Engine.render`'s
    ``idempotency_key``), so what is recorded is a duplicate and a message
    missing is recorded as it would have been: read-compatible, with no
    migration. One read, whatever the number of rows.
    """
    from ccm.message import CHANNELS

    found = record.find_keys(f"{key}:{ch}" for ch in CHANNELS)
    return frozenset(e.customer_id for e in found.values() if e.template == template)


def _master_key(queue: bool) -> Any:
    """The master key of ``CCM_MASTER_KEY`` / ``CCM_MASTER_KEY_FILE``, or None when neither is set.

    ``--queue`` needs one (the outbox keeps content and recipients encrypted).
    """
    import os

    from ccm.record.keys import ENV_KEY, ENV_KEY_FILE, MasterKey

    if os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FILE):
        return MasterKey.from_env()
    if queue:
        raise Fail(f"--queue needs a master key: the outbox keeps each message's content and "
                   f"recipient encrypted; set {ENV_KEY_FILE} to a key file (or {ENV_KEY} to "
                   "the key), see docs/privacy.md")
    return None


def _request_schema(engine: Any, template: str) -> Any:
    """The request schema that types CSV cells (as ``ccm batch`` does); None if unknown."""
    from ccm.batch.run import request_schema

    tpl = engine.templates.get(template)
    return None if tpl is None else request_schema(tpl)


def _write_new(path: Path, content: bytes) -> Path | None:
    """Write ``content`` to ``path`` unless another file is there; None if one is.

    A file with exactly ``content`` (the same message written before) counts
    as written.
    """
    try:
        return atomic_write(path, content, replace=False)
    except FileExistsError:
        try:
            same = path.read_bytes() == content
        except OSError:
            same = False
        return path if same else None
    except OSError as exc:
        # The CLI boundary names the file and what to do, with the exit code for its errno.
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _describe(summary: dict[str, Any], defer_until: str | None = None) -> str:
    """One line for a person; a field the message has not (a suppressed SMS was never
    encoded) is left out, and a message held by quiet hours says until when."""
    bits = [summary["channel"], summary["locale"]]
    if summary.get("encrypted"):
        bits.append("AES-256")
    if summary.get("encoding") is not None:
        bits.append(summary["encoding"])
    if summary.get("segments") is not None:
        bits.append(f"{summary['segments']} segment(s)")
    if summary["status"] != "generated":
        reason = f": {summary['reason']}" if summary.get("reason") else ""
        if defer_until is not None:
            reason += f" until {defer_until}"
        return (f"{summary['status']:9} {summary['template']} for {shown(summary['customer_id'])} "
                f"({', '.join(bits)}){reason}")
    queued = f", queued for {summary['queued']}" if summary.get("queued") else ""
    if summary["path"] is None and not queued:
        return (f"generated {summary['template']} for {shown(summary['customer_id'])} "
                f"({', '.join(bits)}): not written, see the error above")
    where = summary["path"] or f"{summary['template']} for {shown(summary['customer_id'])}"
    return f"generated {where} ({', '.join(bits)}{queued})"


