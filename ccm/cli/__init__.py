"""The ``ccm`` command: a thin layer over the public API, one module per command group.

Exit status: 0 success, 1 a one-line error about the input or the setup,
2 a usage error. ``main(argv)`` runs in-process (the tests call it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from ccm._version import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="ccm")
def cli() -> None:
    """ccm: one brand pack, every channel, one communication record."""


def _mount_optional() -> None:
    """Add the command groups, one module each; a module whose extra is missing is skipped."""
    import importlib

    for module, attr in (
        ("ccm.cli.render", "render"),
        ("ccm.cli.record", "record"),
        ("ccm.cli.batch", "batch"),
        ("ccm.cli.lint", "lint"),
        ("ccm.cli.preview", "preview"),
        ("ccm.cli.proof", "proof"),
        ("ccm.cli.approve", "approve"),
        ("ccm.cli.track", "track_serve"),
        ("ccm.cli.send", "send"),
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

