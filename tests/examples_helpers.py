"""Shared helpers for tests that use the example packs and templates."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "brand_packs"
TEMPLATES = ROOT / "templates"


def sample(template: str, index: int = 0) -> dict[str, Any]:
    """The ``index``-th sample request of an example template."""
    files = sorted((TEMPLATES / template / "samples").glob("*.json"))
    return json.loads(files[index].read_text("utf-8"))  # type: ignore[no-any-return]


def sample_for_locale(template: str, prefix: str) -> dict[str, Any]:
    """The first sample whose customer locale starts with ``prefix`` (e.g. ``de``, ``ar``)."""
    for path in sorted((TEMPLATES / template / "samples").glob("*.json")):
        req = json.loads(path.read_text("utf-8"))
        if str(req["customer"].get("locale", "")).startswith(prefix):
            return req  # type: ignore[no-any-return]
    raise LookupError(f"no {prefix} sample for {template}")


#: Daytime for every sample customer (Chicago 10:00, London 16:00, Berlin 17:00, Dubai
#: 19:00): outside both example packs' SMS quiet hours, which apply without a record too.
DAYTIME = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def daytime() -> datetime:
    """:data:`DAYTIME`, as an engine's clock: tests never read the real one."""
    return DAYTIME


@cache
def _engine(pack: str) -> Any:
    import ccm

    return ccm.Engine(PACKS / pack, TEMPLATES, record=None, clock=daytime)


def engine(pack: str = "acme") -> Any:
    """A shared record-less engine for an example pack (loading is the expensive part),
    its clock at :data:`DAYTIME`."""
    return _engine(pack)


def pdf_text(data: bytes, password: str | None = None) -> str:
    """The text of a PDF as pdftotext sees it (layout mode), decrypting if needed."""
    if shutil.which("pdftotext"):
        args = ["pdftotext", "-layout"]
        if password is not None:
            args += ["-upw", password]
        out = subprocess.run([*args, "-", "-"], input=data, capture_output=True, check=True)
        return out.stdout.decode("utf-8")
    from io import BytesIO

    from pypdf import PdfReader

    reader = PdfReader(BytesIO(data))
    if reader.is_encrypted:
        reader.decrypt(password or "")
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def copy_examples(tmp: Path, pack: str = "acme") -> tuple[Path, Path]:
    """Copy a pack and the templates into ``tmp`` so a test can change them."""
    pack_dir = tmp / "brand_packs" / pack
    shutil.copytree(PACKS / pack, pack_dir)
    templates = tmp / "templates"
    shutil.copytree(TEMPLATES, templates)
    return pack_dir, templates
