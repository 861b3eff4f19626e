"""``ccm preview``: a live preview of every template (the ``preview`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ccm.cli._common import need_folder
from ccm.review import preview as _preview


@click.command("preview")
@click.option("--pack", "pack_dirs", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Brand pack folder (repeatable) [default: every pack in ./brand_packs].")
@click.option("--templates", "templates_dir", default="templates", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Templates folder.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--no-lint", is_flag=True, help="Do not show lint findings (faster).")
def preview(pack_dirs: Sequence[Path], templates_dir: Path, port: int, no_lint: bool) -> None:
    """Serve a live preview of every template on http://127.0.0.1:PORT (local only)."""
    missing = _preview.missing_extra()
    if missing:
        click.echo(f"ccm: error: ccm preview needs {', '.join(missing)}; "
                   f"run: {_preview.EXTRA_HINT}", err=True)
        raise SystemExit(1)
    from ccm.review.preview.app import PreviewServer
    from ccm.review.preview.workspace import Workspace
    from ccm.review.proof import default_pack_dirs

    packs = list(pack_dirs) or default_pack_dirs()
    if not packs:
        click.echo("ccm: error: no brand packs (pass --pack DIR)", err=True)
        raise SystemExit(1)
    # A mistyped folder would otherwise serve an empty preview that watches nothing.
    for pack_dir in packs:
        need_folder(pack_dir, "--pack", "the brand pack's folder")
    need_folder(templates_dir, "--templates", "the templates folder")
    workspace = Workspace(packs, templates_dir, lint=not no_lint)
    try:
        server = PreviewServer(workspace, port=port, log_level="warning")
    except OSError as exc:
        click.echo(f"ccm: error: cannot listen on 127.0.0.1:{port}: {exc.strerror}; "
                   "try another --port", err=True)
        raise SystemExit(1) from exc
    click.echo(f"ccm preview: {server.url}  (watching {len(packs)} pack(s) and "
               f"{templates_dir}; Ctrl-C stops)")
    server.run()
