"""Every code block of docs/delivery.md runs: Python in-process, the console session in a
shell, the YAML through load_config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ccm.delivery import load_config

from ..examples_helpers import ROOT

DOC = ROOT / "docs" / "delivery.md"
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", DOC.read_text("utf-8"), re.S | re.M)


def blocks(kind: str) -> list[str]:
    return [text for lang, text in BLOCKS if lang == kind]


@pytest.mark.parametrize("code", blocks("python"))
def test_python_blocks_run(code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Python example runs from the repository root as written."""
    monkeypatch.chdir(ROOT)
    exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("attempt", range(3))
def test_python_blocks_print_what_their_comments_say(
        attempt: int, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each ``print(...)  # output`` line prints its comment -- the event order too, which
    must not depend on the random tail of event ids (so the example runs several times)."""
    monkeypatch.chdir(ROOT)
    for code in blocks("python"):
        expected = [line.split("#", 1)[1].strip() for line in code.splitlines()
                    if line.startswith("print(") and "#" in line]
        exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})
        printed = capsys.readouterr().out.splitlines()
        assert printed == expected


def test_the_yaml_example_is_a_valid_config(tmp_path: Path) -> None:
    """The delivery.yaml example passes the schema and builds every route."""
    [text] = blocks("yaml")
    path = tmp_path / "delivery.yaml"
    path.write_text(text, "utf-8")
    config = load_config(path, env={"CCM_SMTP_PASSWORD": "x", "TWILIO_AUTH_TOKEN": "y"})
    assert sorted(config.routes) == ["email", "pdf", "sms"]


@pytest.mark.slow
def test_the_console_session_runs(tmp_path: Path) -> None:
    """The shell session renders, queues, lists, sends into the folder and shows the review."""
    [session] = blocks("console")
    for name in ("brand_packs", "templates"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PYTHONPATH": str(ROOT)}  # this checkout's ccm, as tests/test_docs_examples.py runs
    done = subprocess.run(["bash", "-e", "-c", session], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ccm: 1 sent" in done.stderr and "ccm: 0 message(s) in review" in done.stderr
    assert len(list((tmp_path / "demo-outbox").glob("*.eml"))) == 1
