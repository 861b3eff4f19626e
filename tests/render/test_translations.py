"""Babel extraction from the Jinja sources, and the example catalogs it must match."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.examples_helpers import PACKS, ROOT, TEMPLATES

# (folder, locale) pairs the issue requires fully translated.
FULLY_TRANSLATED = [
    (TEMPLATES / "monthly_statement", "de_DE"),
    (TEMPLATES / "monthly_statement", "ar"),
    (PACKS / "acme", "de_DE"),
    (PACKS / "globex", "ar"),
]


def extract(folder: Path, tmp_path: Path) -> set[str]:
    """The msgids `pybabel extract -F babel.cfg` finds in ``folder`` (as the docs say to run it)."""
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
         str(ROOT / "babel.cfg"), "-o", str(pot), str(folder)],
        check=True, capture_output=True, cwd=ROOT,
    )
    with pot.open("rb") as fh:
        return {str(m.id if isinstance(m.id, str) else m.id[0]) for m in read_po(fh) if m.id}


@pytest.mark.parametrize(("folder", "locale"), FULLY_TRANSLATED,
                         ids=[f"{f.name}-{loc}" for f, loc in FULLY_TRANSLATED])
def test_every_extracted_message_is_translated(folder: Path, locale: str, tmp_path: Path) -> None:
    """What extraction finds in the sources is what the catalog translates, with no gaps."""
    found = extract(folder, tmp_path)
    assert found, f"nothing extracted from {folder}"
    po = folder / "locales" / locale / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    translated = {str(m.id if isinstance(m.id, str) else m.id[0]): m.string
                  for m in catalog if m.id}
    missing = sorted(found - translated.keys())
    assert not missing, f"{po}: no entry for {missing}"
    empty = sorted(i for i in found if not translated[i]
                   or (isinstance(translated[i], tuple) and not all(translated[i])))
    assert not empty, f"{po}: untranslated {empty}"
