"""``python -m ccm``: the command line."""

from __future__ import annotations

import sys

try:
    from ccm.cli import main
except KeyboardInterrupt:  # Ctrl-C while ccm loads: nothing was done yet
    sys.stderr.write("ccm: interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
