"""The ``ccm`` command: a thin layer over the public API.

Exit status: 0 success, 1 a one-line error about the input or the setup,
2 a usage error. ``main(argv)`` runs in-process (the tests call it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from .errors import CCMError

__all__ = ["cli", "main", "read_requests"]


class _Fail(click.ClickException):
    """A one-line error with exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"ccm: error: {self.message}", err=True)


def read_requests(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, request)`` from a .json (object or list) or .jsonl file, streaming JSONL.

    Bad JSON raises :class:`click.ClickException` naming the file and line.
    """
    if not path.exists():
        raise _Fail(f"{path}: no such file")
    if path.suffix == ".jsonl":
        with path.open("r", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _Fail(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        return
    try:
        doc = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise _Fail(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except OSError as exc:
        raise _Fail(f"{path}: cannot read: {exc.strerror}") from exc
    if isinstance(doc, list):
        yield from ((1, item) for item in doc)
    else:
        yield 1, doc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ccm")
def cli() -> None:
    """ccm: one brand pack, every channel, one communication record."""


@cli.command()
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
) -> None:
    """Render TEMPLATE for every request in --data into --out."""
    from .engine import Engine, default_record_url
    from .util import atomic_write

    record: Any = None if no_record else (record_url or default_record_url())
    try:
        engine = Engine(pack_dir, templates_dir, record=record)
    except CCMError as exc:
        raise _Fail(str(exc)) from exc
    failures = 0
    recorded = 0
    try:
        for lineno, request in read_requests(data_file):
            try:
                result = engine.render(template, request, channel=channel, locale=locale,
                                       idempotency_key=idempotency_key)
            except CCMError as exc:
                from .errors import ConfigError

                if isinstance(exc, ConfigError):
                    raise _Fail(str(exc)) from exc
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


def _mount_optional() -> None:
    """Add subcommands that live with their feature (record, batch, lint, preview...)."""
    import importlib

    for module, attr in (
        ("ccm.record.cli", "record"),
        ("ccm.batch_cli", "batch"),
        ("ccm.lint_cli", "lint"),
        ("ccm.preview", "preview"),
        ("ccm.proof", "proof"),
        ("ccm.approval", "approve"),
        ("ccm.tracking_cli", "track_serve"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("ccm"):
                continue
            raise
        command = getattr(mod, attr, None)
        if isinstance(command, click.Command):
            cli.add_command(command)


_mount_optional()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of exiting (for in-process tests)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="ccm",
                 standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _entry() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()

