"""Writing findings: text lines, JSON, or SARIF 2.1.0 for editors and code review."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ccm._version import __version__
from ccm.review.lint.findings import RULES, Finding

__all__ = ["format_json", "format_sarif", "format_text", "relative", "summary"]

_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def relative(file: str, base: Path | None = None) -> str:
    """``file`` relative to ``base`` (the current folder) when it is inside it."""
    root = (base or Path.cwd()).resolve()
    path = Path(file)
    if path.is_absolute() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return file if not path.is_absolute() else path.as_posix()


def _context(f: Finding) -> str:
    parts = [p for p in (f.pack, f.template, f.channel, f.locale) if p]
    if f.sample:
        parts.append(f"sample {f.sample}")
    return f" [{', '.join(parts)}]" if parts else ""


def format_text(findings: Sequence[Finding], base: Path | None = None) -> str:
    """Two lines per finding: ``file:line:column: severity: rule-id: message [context]``, then
    an indented ``fix: … (docs/lint.md#rule-id)``."""
    lines = []
    for f in findings:
        lines.append(f"{relative(f.file, base)}:{f.line}:{f.column}: {f.severity}: {f.rule}: "
                     f"{f.message}{_context(f)}")
        lines.append(f"    fix: {f.fix} ({f.docs})")
    return "\n".join(lines)


def format_json(findings: Sequence[Finding], base: Path | None = None) -> str:
    """A JSON list of objects: file, line, column, rule, severity, message, fix, docs,
    fixable, pack, template, channel, locale, sample."""
    items = [{**f.to_dict(), "file": relative(f.file, base)} for f in findings]
    return json.dumps(items, indent=2, ensure_ascii=False)


def sarif(findings: Sequence[Finding], base: Path | None = None) -> dict[str, Any]:
    """The SARIF 2.1.0 log of ``findings``: one run, every rule described, one result each."""
    used = sorted({f.rule for f in findings})
    rules = [{
        "id": rule,
        "shortDescription": {"text": RULES[rule].summary},
        "help": {"text": RULES[rule].fix},
        "helpUri": RULES[rule].docs,
        "defaultConfiguration": {"level": _SARIF_LEVEL[RULES[rule].severity]},
    } for rule in used]
    index = {rule: i for i, rule in enumerate(used)}
    results = []
    for f in findings:
        results.append({
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.message}{_context(f)}. Fix: {f.fix}"},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": relative(f.file, base)},
                "region": {"startLine": f.line, "startColumn": f.column},
            }}],
            "properties": {k: v for k, v in (("pack", f.pack), ("template", f.template),
                                              ("channel", f.channel), ("locale", f.locale),
                                              ("sample", f.sample)) if v},
        })
    return {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "ccm lint", "version": __version__,
                "informationUri": "https://ccm.dev/docs/lint", "rules": rules,
            }},
            "results": results,
        }],
    }


def format_sarif(findings: Sequence[Finding], base: Path | None = None) -> str:
    """:func:`sarif` as JSON text."""
    return json.dumps(sarif(findings, base), indent=2, ensure_ascii=False)


def summary(findings: Sequence[Finding]) -> str:
    """``2 errors, 1 warning`` (or ``no findings``)."""
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    parts = [f"{n} {s}{'' if n == 1 else 's'}" for s, n in counts.items() if n]
    return ", ".join(parts) if parts else "no findings"
