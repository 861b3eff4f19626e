"""Email finishing: MJML -> HTML, a text alternative, safe headers -> the ``.eml`` bytes.

* :mod:`._mjml`: MJML compiled to HTML, includes contained in the pack and
  template folders, a cache keyed by source;
* :mod:`._skeleton`: MJML compiled once per shape of a rendered source, values
  put back per message (:func:`compile_mjml_shaped`), detected by two compiles;
* :mod:`._text`: the ``text/plain`` alternative;
* :mod:`._headers`: every header value checked and folded by ccm
  (:func:`safe_header`; the module says why the standard folder is not trusted);
* :mod:`._message`: the one ``.eml`` writer (:func:`build_email_bytes`) and
  :func:`build_email`, the same message as an ``EmailMessage``.
"""

from __future__ import annotations

from ccm.channels.email._headers import AddressValue, safe_header
from ccm.channels.email._message import (
    Attachment,
    build_email,
    build_email_bytes,
    parse_bytes,
    to_bytes,
)
from ccm.channels.email._mjml import clear_mjml_cache, compile_mjml, compile_mjml_cached
from ccm.channels.email._skeleton import (
    clear_skeletons,
    compile_mjml_and_text,
    compile_mjml_shaped,
)
from ccm.channels.email._text import html_to_text
from ccm.message import POLICY

__all__ = [
    "POLICY",
    "AddressValue",
    "Attachment",
    "build_email",
    "build_email_bytes",
    "clear_mjml_cache",
    "clear_skeletons",
    "compile_mjml",
    "compile_mjml_and_text",
    "compile_mjml_cached",
    "compile_mjml_shaped",
    "html_to_text",
    "parse_bytes",
    "safe_header",
    "to_bytes",
]
