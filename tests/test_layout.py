"""The package reads as its pipeline: stage subpackages, ``python -m ccm``, errors at the top."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import ccm

STAGES = ("batch", "channels", "cli", "delivery", "engagement", "pack", "record", "render",
          "review")


def test_every_stage_says_what_it_owns() -> None:
    """Each stage subpackage has a docstring whose first line says what it owns."""
    for name in STAGES:
        module = importlib.import_module(f"ccm.{name}")
        doc = (module.__doc__ or "").strip()
        assert doc, f"ccm.{name} has no docstring"
        assert len(doc.splitlines()[0]) <= 100, f"ccm.{name}: first line too long"


def test_top_level_holds_only_shared_modules() -> None:
    """Outside the stage subpackages, ccm/ holds only the shared modules of the design."""
    top = {m.name for m in pkgutil.iter_modules(ccm.__path__)}
    shared = {"__main__", "_fastjson", "_files", "_schema", "_util", "_version", "errors",
              "message", "testing"}
    assert top - set(STAGES) == shared


def test_python_dash_m_ccm_runs_the_cli() -> None:
    """`python -m ccm --help` prints the command list and exits 0."""
    result = subprocess.run([sys.executable, "-m", "ccm", "--help"], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("render", "batch", "record", "lint", "proof", "approve"):
        assert f"  {command}" in result.stdout


def test_the_errors_the_docs_name_import_from_ccm() -> None:
    """`from ccm import CCMError, RenderError, ...` works for every class of ccm.errors."""
    from ccm import CCMError, ConfigError, DataError, MessageError, RenderError  # noqa: F401

    for name in ccm.errors.__all__:
        assert getattr(ccm, name) is getattr(ccm.errors, name)
        assert name in ccm.__all__
