"""The example packs and templates, linted whole: no errors, only the documented warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccm.review.lint import Finding, lint
from tests.examples_helpers import PACKS, ROOT, TEMPLATES


@pytest.fixture(scope="module")
def findings() -> list[Finding]:
    """Every finding for both example packs and all example templates (linted once)."""
    return lint(sorted(p for p in PACKS.iterdir() if (p / "pack.yaml").is_file()), TEMPLATES)


def _place(f: Finding) -> tuple[str, int, str]:
    return Path(f.file).relative_to(ROOT).as_posix(), f.line, f.rule


def test_examples_have_no_errors(findings: list[Finding]) -> None:
    """No error-severity finding in any example pack, template, locale, sample or channel."""
    errors = sorted(_place(f) for f in findings if f.severity == "error")
    assert errors == []


def test_examples_have_no_finding_at_all(findings: list[Finding]) -> None:
    """With every rule on, the example packs and templates have no finding of any severity
    (their PDF passwords are the customer's document code, not a birth date)."""
    assert sorted(_place(f) for f in findings) == []


def test_one_example_template_alone_has_no_finding() -> None:
    """``ccm lint --template monthly_statement``: the other templates are left out of a
    stand-in folder of symlinks; the linter's own environment must read the template's files
    in its own root as the engine does (it refused them for de_DE and ar: "resolves outside")."""
    packs = sorted(p for p in PACKS.iterdir() if (p / "pack.yaml").is_file())
    assert [_place(f) for f in lint(packs, TEMPLATES, only=["monthly_statement"])] == []
