"""The ``ccm`` command: a thin layer over the public API, one module per command group.

Exit status: the table of :mod:`ccm.cli._common` (and docs/cli.md): 0 success,
1 bad input, 2 usage, 3 not found, 4 conflict, 5 the system refused (I/O),
70 a bug in ccm, 130 interrupted (Ctrl-C; during the imports at start-up
:func:`ccm.__main__.entry`, the console script, says so too).
``main(argv)`` runs in-process (the tests call it) and is the one boundary
where every error becomes one paragraph and an exit code: a user's mistake
never shows a traceback; a bug shows one line and where to report it, and
the traceback only with ``ccm --debug``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from ccm._version import __version__
from ccm.cli._common import ExitCode, report_error

__all__ = ["cli", "main"]

#: The distribution's name on the package index (``pip install ccm-engine``).
DISTRIBUTION = "ccm-engine"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="ccm")
@click.option("--debug", is_flag=True, default=False,
              help="Show the full traceback when ccm fails unexpectedly (for bug reports).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """ccm: one brand pack, every channel, one communication record."""
    ctx.meta["ccm.debug"] = debug


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
        ("ccm.cli.doctor", "doctor"),
        ("ccm.cli.send", "send"),
        ("ccm.cli.events", "events"),
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
    """Run the CLI; returns the exit status instead of exiting (for in-process tests).

    Every exception ends here as one ``ccm: error: ...`` paragraph on stderr and
    a documented exit code (see :func:`ccm.cli._common.report_error`).
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    try:
        result = cli.main(args=args, prog_name="ccm", standalone_mode=False)
    except SystemExit as exc:  # a command that exits on its own
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as exc:  # the CLI's one boundary
        return int(report_error(exc, debug=debug))
    return int(result) if isinstance(result, int) else int(ExitCode.OK)


def _entry() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()

