"""Preloaded by the forkserver of a batch that makes PDFs: the PDF channel, loaded once
for all its workers.

Where WeasyPrint or Pango cannot load, nothing is loaded here (the forkserver would stop
on the error); each worker's first PDF then raises the :class:`~ccm.errors.ConfigError`
that says why (:func:`ccm.render.finish.pdf_channel`), which stops the run.
"""

from __future__ import annotations

import contextlib

with contextlib.suppress(Exception):
    import ccm.channels.pdf  # noqa: F401
