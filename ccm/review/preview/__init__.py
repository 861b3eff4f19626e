"""``ccm preview``: every channel of a template, side by side, live as you edit.

Needs the ``preview`` extra (starlette, uvicorn, watchfiles, pypdfium2);
this module imports none of them until the command runs, so ``ccm`` itself
works without the extra. The pieces:

* :mod:`ccm.review.preview.workspace` -- packs and templates rendered on demand,
  errors as values (no web framework);
* :mod:`ccm.review.preview.page` -- the self-contained HTML page;
* :mod:`ccm.review.preview.app` -- the Starlette app, file watching and reload;
* :mod:`ccm.review.preview.pages` -- PDF pages as PNG images.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRA_HINT", "missing_extra"]

#: What to run when the extra is missing (printed by the command, exactly).
EXTRA_HINT = "pip install 'ccm-engine[preview]'"
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
