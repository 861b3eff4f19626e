"""``ccm render``: render one template for every request in a file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ccm.cli._common import Fail, as_of_option, aware, out_folder
from ccm.errors import CCMError

__all__ = ["read_requests", "render"]


def read_requests(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, request)`` from a .json (object or list) or .jsonl file, streaming JSONL.

    Bad JSON raises :class:`click.ClickException` naming the file and line.
    """
    if not path.exists():
        raise Fail(f"{path}: no such file")
    if path.suffix == ".jsonl":
        with path.open("r", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise Fail(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        return
    try:
        doc = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise Fail(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except OSError as exc:
        raise Fail(f"{path}: cannot read: {exc.strerror}") from exc
    if isinstance(doc, list):
        yield from ((1, item) for item in doc)
    else:
        yield 1, doc


@click.command("render")
@click.argument("template")
@click.option("--pack", "pack_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Brand pack folder.")
@click.option("--templates", "templates_dir", default="templates", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Templates folder.")
@click.option("--data", "data_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Request file: .json (one request or a list) or .jsonl.")
@click.option("--channel", type=click.Choice(["pdf", "email", "sms"]), default=None,
              help="Render one channel (default: every channel of the template).")
@click.option("--locale", default=None, help="Force a locale of the pack.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for .pdf, .eml and .sms.txt files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per message.")
@click.option("--record", "record_url", default=None, metavar="URL",
              help="Record URL [default: $CCM_RECORD_URL or sqlite:///ccm-record.db].")
@click.option("--no-record", is_flag=True, help="Do not write the communication record.")
@click.option("--idempotency-key", default=None, metavar="KEY",
              help="Caller's idempotency key (combined with each channel).")
@as_of_option
def render(
    template: str,
    pack_dir: Path,
    templates_dir: Path,
    data_file: Path,
    channel: str | None,
    locale: str | None,
    out_dir: Path,
    as_json: bool,
    record_url: str | None,
    no_record: bool,
    idempotency_key: str | None,
    as_of: datetime | None,
) -> None:
    """Render TEMPLATE for every request in --data into --out."""
    from ccm._util import atomic_write
    from ccm.render.engine import Engine, default_record_url

    out_folder(out_dir)
    record: Any = None if no_record else (record_url or default_record_url())
    try:
        moment = aware(as_of)
        engine = Engine(pack_dir, templates_dir, record=record,
                        clock=None if moment is None else (lambda: moment))
    except CCMError as exc:
        raise Fail(str(exc)) from exc
    failures = 0
    recorded = 0
    try:
        for lineno, request in read_requests(data_file):
            try:
                result = engine.render(template, request, channel=channel, locale=locale,
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
                if message.status == "generated" and message.content:
                    path = atomic_write(out_dir / message.filename, message.content)
                summary["path"] = str(path) if path else None
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


def _describe(summary: dict[str, Any]) -> str:
    bits = [summary["channel"], summary["locale"]]
    if summary.get("encrypted"):
        bits.append("AES-256")
    if summary["channel"] == "sms":
        bits.append(f"{summary['encoding']}, {summary['segments']} segment(s)")
    if summary["status"] != "generated":
        reason = f": {summary['reason']}" if summary.get("reason") else ""
        return (f"{summary['status']:9} {summary['template']} for {summary['customer_id']} "
                f"({', '.join(bits)}){reason}")
    return f"generated {summary['path']} ({', '.join(bits)})"


