"""A machine where WeasyPrint cannot load Pango: text channels work, PDFs say why they cannot.

The PDF channel loads with the first PDF (tests/render/test_lazy_pdf.py). Here a
``weasyprint`` package first on ``PYTHONPATH`` raises what WeasyPrint raises
without Pango's libraries (``OSError: cannot load library 'libgobject-2.0-0'``), in
every process of the command: the CLI, the forkserver, the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .examples_helpers import PACKS, ROOT, TEMPLATES

NOON = "2026-06-01T12:00:00+00:00"
_FAKE = ('raise OSError("cannot load library \'libgobject-2.0-0\': libgobject-2.0-0: cannot '
         'open shared object file: No such file or directory")\n')


@pytest.fixture
def no_pango(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fake"
    (fake / "weasyprint").mkdir(parents=True)
    (fake / "weasyprint" / "__init__.py").write_text(_FAKE)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CCM_RECORD_URL", "CCM_MASTER_KEY", "CCM_MASTER_KEY_FILE")}
    env["PYTHONPATH"] = os.pathsep.join([str(fake), str(ROOT)])
    return env


def _ccm(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccm", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _statements(tmp_path: Path, n: int = 3) -> Path:
    sample = json.loads(sorted((TEMPLATES / "monthly_statement" / "samples").glob("*.json"))[0]
                        .read_text())
    data = tmp_path / "statements.jsonl"
    lines = []
    for i in range(n):
        sample["customer"]["id"] = f"C-{i}"
        lines.append(json.dumps(sample))
    data.write_text("\n".join(lines) + "\n")
    return data


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ccm: error:")]
    assert errors, done.stderr
    return errors[0]


def test_a_pdf_render_says_pango_cannot_load(no_pango: dict[str, str], tmp_path: Path) -> None:
    sample = sorted((TEMPLATES / "monthly_statement" / "samples").glob("*.json"))[0]
    done = _ccm(no_pango, tmp_path, "render", "monthly_statement", "--pack",
                str(PACKS / "acme"), "--templates", str(TEMPLATES), "--data", str(sample),
                "--channel", "pdf", "--out", str(tmp_path / "out"), "--as-of", NOON)
    assert done.returncode == 1
    error = _one_line_error(done)
    assert "WeasyPrint and Pango" in error and "ccm doctor" in error, error
    assert str(sample.name) not in error  # not blamed on the data file
    assert not list((tmp_path / "out").glob("*.pdf"))


def test_text_channels_work_without_pango(no_pango: dict[str, str], tmp_path: Path) -> None:
    sample = sorted((TEMPLATES / "payment_reminder" / "samples").glob("*.json"))[0]
    done = _ccm(no_pango, tmp_path, "render", "payment_reminder", "--pack",
                str(PACKS / "acme"), "--templates", str(TEMPLATES), "--data", str(sample),
                "--out", str(tmp_path / "out"), "--as-of", NOON)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*.eml"))) == 1


def test_doctor_names_the_missing_libraries(no_pango: dict[str, str], tmp_path: Path) -> None:
    done = _ccm(no_pango, tmp_path, "doctor")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "MISSING WeasyPrint and Pango (PDF): OSError" in done.stdout
    assert "apt-get install libpango" in done.stdout
    assert "MISSING HarfBuzz subsetter (fast PDF fonts): unknown: WeasyPrint cannot load" in \
        done.stdout


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_pdf_batch_stops_and_says_why(no_pango: dict[str, str], tmp_path: Path,
                                        workers: str) -> None:
    """Every statement would fail the same way: the run stops on the first, names the
    cause once, and leaves no PDF; run again once Pango is installed."""
    done = _ccm(no_pango, tmp_path, "batch", "monthly_statement", "--pack",
                str(PACKS / "acme"), "--templates", str(TEMPLATES), "--data",
                str(_statements(tmp_path)), "--out", str(tmp_path / "out"), "--record",
                str(tmp_path / "record.db"), "--channel", "pdf", "--workers", workers,
                "--as-of", NOON)
    assert done.returncode == 1, done.stderr
    error = _one_line_error(done)
    assert "WeasyPrint and Pango" in error and "ccm doctor" in error, error
    assert not list((tmp_path / "out").rglob("*.pdf"))
