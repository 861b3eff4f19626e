"""``ccm lint --fix``: apply the mechanical fixes findings carry, and show the diff."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from ccm.review.lint.findings import Finding
from ccm.review.lint.report import relative

__all__ = ["apply_fixes"]


def apply_fixes(findings: Sequence[Finding], *, write: bool) -> tuple[str, int]:
    """The unified diff of every fixable finding applied (and the files changed when ``write``).

    Each edit replaces its ``old`` text once on its line; an edit whose text is
    no longer there (the file changed, or an earlier edit took it) is skipped.
    Returns the diff and the number of edits applied.
    """
    by_file: dict[str, list[Finding]] = {}
    for f in findings:
        if f.edit is not None:
            by_file.setdefault(f.file, []).append(f)
    diffs: list[str] = []
    applied = 0
    for file, items in sorted(by_file.items()):
        path = Path(file)
        before = path.read_text("utf-8")
        lines = before.split("\n")
        done: set[tuple[int, str]] = set()
        for f in items:
            edit = f.edit
            assert edit is not None
            index = edit.line - 1
            if (edit.line, edit.old) in done or not 0 <= index < len(lines) or \
                    edit.old not in lines[index]:
                continue
            lines[index] = lines[index].replace(edit.old, edit.new, 1)
            done.add((edit.line, edit.old))
            applied += 1
        after = "\n".join(lines)
        if after == before:
            continue
        diffs.append("".join(difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"a/{relative(file)}", tofile=f"b/{relative(file)}")))
        if write:
            path.write_text(after, "utf-8")
    return "".join(diffs), applied
