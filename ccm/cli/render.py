"""``ccm render``: render one template for every request in a file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ccm._util import atomic_write
from ccm.cli._common import ExitCode, Fail, as_of_option, aware, out_folder
from ccm.errors import CCMError

__all__ = ["render"]


def _rows(path: Path, schema: Any = None) -> Iterator[Any]:
    """The request rows of ``path``, read as ``ccm batch`` reads them (:mod:`ccm.batch.inputs`).

    A missing file or an unknown suffix is a one-line failure; a bad line is
    a row with ``error`` set, reported with its line number by the caller.
    """
    from ccm.batch.inputs import read_requests

    if not path.is_file():
        raise Fail(f"{path}: no such file")
    try:
        yield from read_requests(path, schema=schema)
    except FileNotFoundError as exc:
        raise Fail(f"{path}: no such file") from exc
    except OSError as exc:
        raise Fail(f"{path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise Fail(f"{path}: {exc}") from exc


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
              help="Caller's idempotency key (combined with each channel).")
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

    if out_dir is None and not queue:
        raise Fail("--out FOLDER is needed (or --queue, to deliver with ccm send)",
                   ExitCode.USAGE)
    if queue and no_record:
        raise Fail("--queue needs the record (the outbox is in it); drop --no-record",
                   ExitCode.USAGE)
    if out_dir is not None:
        out_folder(out_dir)
    record: Any = None if no_record else (record_url or default_record_url())
    try:
        moment = aware(as_of)
        engine = Engine(pack_dir, templates_dir, record=record,
                        clock=None if moment is None else (lambda: moment),
                        options=RenderOptions(
                            queue=queue,
                            document_delivery="link" if document_delivery == "link"
                            else "attach", web_version=web_version))
    except CCMError as exc:
        raise Fail(str(exc)) from exc
    failures = 0
    recorded = 0
    try:
        for row in _rows(data_file, _request_schema(engine, template)):
            lineno = row.line
            if row.error is not None:
                failures += 1
                click.echo(f"ccm: error: {data_file}:{lineno}: {row.error}", err=True)
                continue
            try:
                result = engine.render(template, row.request, channel=channel, locale=locale,
                                       idempotency_key=idempotency_key)
            except CCMError as exc:
                from ccm.errors import ConfigError

                if isinstance(exc, ConfigError):
                    raise Fail(str(exc)) from exc
                failures += 1
                click.echo(f"ccm: error: {data_file}:{lineno}: {exc}", err=True)
                continue
            for message in result if isinstance(result, list) else [result]:
                recorded += message.status != "duplicate"
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
                        click.echo(
                            f"ccm: error: {data_file}:{lineno}: {out_dir / message.filename} "
                            f"already holds another message, left as it is; {message.channel} "
                            f"message {message.message_id} was not written ({hint})", err=True)
                summary["path"] = str(path) if path else None
                if "due_at" in message.meta:
                    summary["queued"] = message.meta["due_at"]
                if as_json:
                    click.echo(json.dumps(summary, ensure_ascii=False))
                else:
                    click.echo(_describe(summary))
    finally:
        if engine.record is not None:
            engine.record.close()
    if engine.record is not None and recorded:
        archived = ("" if engine.record.master_key is not None else
                    "; content not archived: no master key (CCM_MASTER_KEY or "
                    "CCM_MASTER_KEY_FILE, see docs/privacy.md)")
        click.echo(f"ccm: recorded {recorded} message(s) in {engine.record.where}{archived}",
                   err=True)
    if failures:
        raise SystemExit(1)


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


def _describe(summary: dict[str, Any]) -> str:
    bits = [summary["channel"], summary["locale"]]
    if summary.get("encrypted"):
        bits.append("AES-256")
    if summary["channel"] == "sms" and summary.get("encoding"):  # none when not made
        bits.append(f"{summary['encoding']}, {summary['segments']} segment(s)")
    if summary["status"] != "generated":
        reason = f": {summary['reason']}" if summary.get("reason") else ""
        return (f"{summary['status']:9} {summary['template']} for {summary['customer_id']} "
                f"({', '.join(bits)}){reason}")
    queued = f", queued for {summary['queued']}" if summary.get("queued") else ""
    if summary["path"] is None and not queued:
        return (f"generated {summary['template']} for {summary['customer_id']} "
                f"({', '.join(bits)}): not written, see the error above")
    where = summary["path"] or f"{summary['template']} for {summary['customer_id']}"
    return f"generated {where} ({', '.join(bits)}{queued})"


