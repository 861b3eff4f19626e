"""`ccm events serve` and `ccm track-serve` on a port another process listens on, or on an
address this machine does not have: one ``ccm: error:`` line saying so and what to change,
with its documented exit code -- not uvicorn's bare exit status 3, which reads as "not
found". Each command runs as a user would run it, in its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ccm.cli._common import ExitCode
from ccm.record import Record
from ccm.render.links import TrackingKey


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    url = f"sqlite:///{tmp_path / 'record.db'}"
    with Record(url):
        pass
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "CCM_TRACKING_KEY": TrackingKey.generate().to_base64()}
    proc = subprocess.run([sys.executable, "-m", "ccm", *args, "--record", url], env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("command", [["events", "serve"], ["track-serve"]])
def test_a_port_in_use_is_a_conflict_naming_the_port(tmp_path: Path,
                                                     command: list[str]) -> None:
    """Another process listens on the port: exit 4 (CONFLICT), and the last line names the
    address and says to stop it or choose another --port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, err = run(tmp_path, *command, "--port", str(port))
    assert code == ExitCode.CONFLICT, err
    assert err.splitlines()[-1] == (f"ccm: error: cannot listen on 127.0.0.1:{port}: another "
                                    "process listens there; stop it or choose another --port")
    assert "Traceback" not in err


def test_an_address_this_machine_does_not_have_is_bad_input(tmp_path: Path) -> None:
    """``--host`` an address of no interface here (TEST-NET-1, RFC 5737): exit 1 naming it."""
    code, err = run(tmp_path, "events", "serve", "--host", "192.0.2.1", "--port", "8080")
    assert code == ExitCode.BAD_INPUT, err
    assert err.splitlines()[-1] == ("ccm: error: cannot listen on 192.0.2.1:8080: this machine "
                                    "has no such address; check --host")
