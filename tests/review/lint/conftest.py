"""Small projects for lint tests: an example pack and one example template, broken on purpose.

Each project is a copy made in a tmp dir: the pack (all its locales) and one
template with only the samples a test needs, so a lint run takes a fraction
of a second. Tests break one thing with :meth:`Project.edit` and lint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ccm.review.lint import Finding, lint
from tests.examples_helpers import PACKS, TEMPLATES


@dataclass
class Project:
    """A copied pack and templates folder."""

    root: Path
    pack: Path
    templates: Path

    def template(self, name: str) -> Path:
        """The folder of template ``name``."""
        return self.templates / name

    def edit(self, rel: str, old: str, new: str, *, count: int = 1) -> None:
        """Replace ``old`` by ``new`` in the file ``rel`` (relative to the project root)."""
        path = self.root / rel
        text = path.read_text("utf-8")
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, count), "utf-8")

    def write(self, rel: str, text: str) -> Path:
        """Write a file (relative to the project root)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        return path

    def weaken_password(self) -> None:
        """Make acme's PDF password the birth date alone (~15 bits), as many banks do."""
        self.edit("brand_packs/acme/pack.yaml", "    field: document_code\n",
                  "    field: date_of_birth\n    format: DDMMYYYY\n")

    def sample(self, template: str) -> Path:
        """The (first) sample file of ``template``."""
        return sorted((self.template(template) / "samples").glob("*.json"))[0]

    def edit_sample(self, template: str, change: Callable[[dict[str, Any]], None]) -> Path:
        """Change the first sample of ``template`` as JSON (re-indented like the originals)."""
        path = self.sample(template)
        data = json.loads(path.read_text("utf-8"))
        change(data)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return path

    def lint(self) -> list[Finding]:
        """Lint the project."""
        return lint([self.pack], self.templates)

    def line_of(self, rel: str, needle: str) -> int:
        """The 1-based line of the first ``needle`` in file ``rel``."""
        lines = (self.root / rel).read_text("utf-8").split("\n")
        return next(i for i, line in enumerate(lines, 1) if needle in line)


def make_project(base: Path, pack: str = "acme", template: str = "payment_reminder",
                 samples: int = 1) -> Project:
    """Copy ``pack`` and ``template`` (its first ``samples`` samples) under ``base``."""
    pack_dir = base / "brand_packs" / pack
    shutil.copytree(PACKS / pack, pack_dir)
    target = base / "templates" / template
    shutil.copytree(TEMPLATES / template, target)
    for extra in sorted((target / "samples").glob("*.json"))[samples:]:
        extra.unlink()
    return Project(base, pack_dir, base / "templates")


def rules(findings: list[Finding], rule: str) -> list[Finding]:
    """The findings of one rule."""
    return [f for f in findings if f.rule == rule]


def where(finding: Finding, root: Path) -> tuple[str, int]:
    """``(file relative to root, line)`` of a finding."""
    return Path(finding.file).relative_to(root).as_posix(), finding.line


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    """acme with payment_reminder (email and SMS), one English sample."""
    return make_project(tmp_path)
