"""``ccm track-serve``: run the tracking app (redirects, open pixel, one-click unsubscribe).

The app needs the ``tracking`` extra (starlette, uvicorn); this module
imports neither until the command runs, so ``ccm`` works without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

__all__ = ["track_serve"]

EXTRA_HINT = "pip install 'ccm-engine[tracking]'"


@click.command("track-serve")
@click.option("--record", "record_url", default=None, metavar="URL",
              help="Record URL [default: $CCM_RECORD_URL or sqlite:///ccm-record.db].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (put a TLS-terminating proxy in front).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Tracking key file [default: $CCM_TRACKING_KEY or $CCM_TRACKING_KEY_FILE].")
@click.option("--pack", "pack_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Brand pack whose name and palette style the pages.")
def track_serve(record_url: str | None, host: str, port: int, key_file: Path | None,
                pack_dir: Path | None) -> None:
    """Serve tracked links, the open pixel and one-click unsubscribe into the record."""
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"ccm track-serve needs {', '.join(missing)}; run: {EXTRA_HINT}")
    from ccm.engagement.app import serve
    from ccm.errors import CCMError
    from ccm.render.engine import default_record_url

    brand = None
    try:
        if pack_dir is not None:
            from ccm.pack import load_pack

            pack = load_pack(pack_dir)
            brand = {"name": pack.name, "palette": pack.palette}
        serve(record_url or default_record_url(), host, port,
              key_file=str(key_file) if key_file else None, brand=brand)
    except CCMError as exc:
        _fail(str(exc))
    except SystemExit as exc:
        from ccm.cli.events import UVICORN_STARTUP_FAILURE, cannot_listen

        if exc.code != UVICORN_STARTUP_FAILURE:
            raise
        message, code = cannot_listen(host, port)
        click.echo(f"ccm: error: {message}", err=True)
        raise SystemExit(int(code)) from None


def _fail(message: str) -> None:
    click.echo(f"ccm: error: {message}", err=True)
    raise SystemExit(1)
