"""docs/security.md: every test named next to a claim exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_REF = re.compile(r"`(tests/[\w/]+\.py|…)(?:::(\w+))?`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith(("test_", "requests_"))}


def test_every_test_named_in_the_threat_model_exists() -> None:
    """Each `tests/file.py::test_name` (and `…::test_name`, same file) in security.md is real."""
    text = (ROOT / "docs" / "security.md").read_text("utf-8")
    current: Path | None = None
    checked = 0
    for file, name in _REF.findall(text):
        if file != "…":
            current = ROOT / file
            assert current.is_file(), file
        if name:
            assert current is not None
            assert name in _tests_in(current), f"{current.relative_to(ROOT)}::{name}"
            checked += 1
    assert checked >= 30
