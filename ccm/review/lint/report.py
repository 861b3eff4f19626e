"""Writing findings: ``file:line: rule-id: message`` lines, or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ccm.review.lint.findings import Finding

__all__ = ["format_json", "format_text", "relative", "summary"]


def relative(file: str, base: Path | None = None) -> str:
    """``file`` relative to ``base`` (the current folder) when it is inside it."""
    root = (base or Path.cwd()).resolve()
    path = Path(file)
    if path.is_absolute() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return file if not path.is_absolute() else path.as_posix()


def format_text(findings: Sequence[Finding], base: Path | None = None) -> str:
    """One ``file:line: rule-id: message`` line per finding (identical lines once)."""
    lines = [f"{relative(f.file, base)}:{f.line}: {f.rule}: {f.message}" for f in findings]
    return "\n".join(dict.fromkeys(lines))


def format_json(findings: Sequence[Finding], base: Path | None = None) -> str:
    """A JSON list of objects: file, line, rule, severity, message, pack, template, channel,
    locale."""
    items = [{**f.to_dict(), "file": relative(f.file, base)} for f in findings]
    return json.dumps(items, indent=2, ensure_ascii=False)


def summary(findings: Sequence[Finding]) -> str:
    """``2 errors, 1 warning`` (or ``no findings``)."""
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    parts = [f"{n} {s}{'' if n == 1 else 's'}" for s, n in counts.items() if n]
    return ", ".join(parts) if parts else "no findings"


