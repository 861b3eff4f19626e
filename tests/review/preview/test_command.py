"""The ``ccm preview`` command: mounted on the CLI, local only, clear about its extra."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import ccm.review.preview
from ccm.cli import main


def test_commands_are_mounted(capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm --help` lists preview, proof and approve."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("preview", "proof", "approve"):
        assert f"  {name}" in out


def test_missing_extra_prints_the_exact_install(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without the preview extra the command prints the pip install line and exits 1."""
    monkeypatch.setattr(ccm.review.preview, "missing_extra", lambda: ["watchfiles"])
    assert main(["preview"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'ccm-engine[preview]'" in err and "watchfiles" in err


def test_extra_is_installed_here() -> None:
    """In the development environment every module of the extra imports."""
    assert ccm.review.preview.missing_extra() == []


def test_port_in_use_is_a_one_line_error(project: tuple[list[Path], Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A busy port is reported in one line, with the exit status 1."""
    packs, templates = project
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["preview", "--pack", str(packs[0]), "--templates", str(templates),
                     "--port", str(port)])
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["--pack", "--templates"])
def test_a_missing_folder_is_not_found_before_serving(
        which: str, project: tuple[list[Path], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``ccm preview --pack TYPO`` (or ``--templates TYPO``) exits 3 naming the folder, and
    no server is started: it used to serve an empty preview, watching nothing, until Ctrl-C."""
    import ccm.review.preview.app as app

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a server was started for a folder that does not exist")

    monkeypatch.setattr(app, "PreviewServer", no_server)
    packs, templates = project
    missing = tmp_path / "no-such-folder"
    args = {"--pack": str(packs[0]), "--templates": str(templates), which: str(missing)}
    assert main(["preview", *[x for pair in args.items() for x in pair], "--port", "0"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"ccm: error: {which} {missing}: no such folder")
    assert len(err.splitlines()) == 1
