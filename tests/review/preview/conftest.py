"""Fixtures for the preview: a private copy of the example packs and templates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.examples_helpers import PACKS, TEMPLATES


def copy_project(base: Path) -> tuple[list[Path], Path]:
    """Copy both example packs and the templates under ``base``."""
    packs = []
    for name in ("acme", "globex"):
        shutil.copytree(PACKS / name, base / "brand_packs" / name)
        packs.append(base / "brand_packs" / name)
    shutil.copytree(TEMPLATES, base / "templates")
    return packs, base / "templates"


@pytest.fixture()
def project(tmp_path: Path) -> tuple[list[Path], Path]:
    """A copy of the example packs and templates that a test may edit."""
    return copy_project(tmp_path)
