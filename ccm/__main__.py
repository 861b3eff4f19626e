"""``python -m ccm``: the command line."""

from __future__ import annotations

import sys

from ccm.cli import main

if __name__ == "__main__":
    sys.exit(main())
