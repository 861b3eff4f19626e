"""``python -m ccm`` and the ``ccm`` console script: the command line.

:func:`entry` imports the CLI itself, so a Ctrl-C during start-up (the
imports take a moment) is ``ccm: interrupted`` and exit 130 like a Ctrl-C
later on, never a traceback from an import.
"""

from __future__ import annotations

import sys

#: Exit status after Ctrl-C (128 + SIGINT), as in :class:`ccm.cli._common.ExitCode`.
_INTERRUPTED = 130


def entry() -> int:
    """Run ``ccm`` with ``sys.argv``; returns the exit status."""
    try:
        from ccm.cli import main

        return main()
    except KeyboardInterrupt:
        sys.stderr.write("ccm: interrupted\n")
        return _INTERRUPTED


if __name__ == "__main__":
    sys.exit(entry())
