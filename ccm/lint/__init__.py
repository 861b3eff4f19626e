"""``ccm lint``: keep every communication on brand, on tone, accessible and compliant.

:func:`lint` renders every template of a folder in every channel, in every
locale of every brand pack, with each of the template's samples, and checks
the sources and the output. :func:`findings_for` does the same for one view
(the live preview); :func:`lint_rendered` checks one message already
rendered. Every check is a rule with an id (listed in :data:`RULES` and in
docs/lint.md); a pack switches rules off or changes their severity in the
``lint`` section of ``pack.yaml``.
"""

from __future__ import annotations

from .findings import RULES as RULES
from .findings import Finding as Finding
from .findings import Rule as Rule
from .findings import Severity as Severity
from .report import format_json as format_json
from .report import format_text as format_text
from .report import summary as summary
from .runner import PackLinter as PackLinter
from .runner import findings_for as findings_for
from .runner import lint as lint
from .runner import lint_rendered as lint_rendered

__all__ = [
    "RULES",
    "Finding",
    "PackLinter",
    "Rule",
    "Severity",
    "findings_for",
    "format_json",
    "format_text",
    "lint",
    "lint_rendered",
    "summary",
]
