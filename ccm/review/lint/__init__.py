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

from ccm.review.lint.findings import RULES as RULES
from ccm.review.lint.findings import Finding as Finding
from ccm.review.lint.findings import Rule as Rule
from ccm.review.lint.findings import Severity as Severity
from ccm.review.lint.linter import PackLinter as PackLinter
from ccm.review.lint.report import format_json as format_json
from ccm.review.lint.report import format_sarif as format_sarif
from ccm.review.lint.report import format_text as format_text
from ccm.review.lint.report import summary as summary
from ccm.review.lint.runner import findings_for as findings_for
from ccm.review.lint.runner import lint as lint
from ccm.review.lint.runner import lint_rendered as lint_rendered

__all__ = [
    "RULES",
    "Finding",
    "PackLinter",
    "Rule",
    "Severity",
    "findings_for",
    "format_json",
    "format_sarif",
    "format_text",
    "lint",
    "lint_rendered",
    "summary",
]
