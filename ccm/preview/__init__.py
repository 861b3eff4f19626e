"""``ccm preview``: every channel of a template, side by side, live as you edit.

Needs the ``preview`` extra (starlette, uvicorn, watchfiles, pypdfium2);
this module imports none of them until the command runs, so ``ccm`` itself
works without the extra. The pieces:

* :mod:`ccm.preview.workspace` -- packs and templates rendered on demand,
  errors as values (no web framework);
* :mod:`ccm.preview.page` -- the self-contained HTML page;
* :mod:`ccm.preview.app` -- the Starlette app, file watching and reload;
* :mod:`ccm.preview.pages` -- PDF pages as PNG images.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import click

__all__ = ["EXTRA_HINT", "missing_extra", "preview"]

#: What to run when the extra is missing (printed by the command, exactly).
EXTRA_HINT = "pip install 'ccm[preview]'"
_NEEDED = ("starlette", "uvicorn", "watchfiles", "pypdfium2")


def missing_extra() -> list[str]:
    """The preview extra's modules that cannot be imported."""
    missing = []
    for name in _NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


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
    missing = missing_extra()
    if missing:
        click.echo(f"ccm: error: ccm preview needs {', '.join(missing)}; run: {EXTRA_HINT}",
                   err=True)
        raise SystemExit(1)
    from ..proof import default_pack_dirs
    from .app import PreviewServer
    from .workspace import Workspace

    packs = list(pack_dirs) or default_pack_dirs()
    if not packs:
        click.echo("ccm: error: no brand packs (pass --pack DIR)", err=True)
        raise SystemExit(1)
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
