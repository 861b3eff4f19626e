"""Shell completion as docs/cli.md documents it: click's recipe, in a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("words,cword,expected", [
    ("ccm rec", 1, {"record"}),
    ("ccm record ", 2, {"timeline", "verify", "export", "erase"}),
    ("ccm render x --chan", 3, {"--channel"}),
    ("ccm render x --channel ", 4, {"pdf", "email", "sms"}),
])
def test_bash_completion_completes_commands_options_and_choices(
    words: str, cword: int, expected: set[str]
) -> None:
    """`eval "$(_CCM_COMPLETE=bash_source ccm)"` defines a completion that bash uses."""
    if not (BIN / "ccm").exists():
        pytest.skip("the ccm script is not installed next to this Python")
    script = (
        'eval "$(_CCM_COMPLETE=bash_source ccm)"\n'
        f"COMP_WORDS=({words}{' ' if words.endswith(' ') else ''}"
        + ('""' if words.endswith(" ") else "") + ")\n"
        f"COMP_CWORD={cword}\n"
        "_ccm_completion ccm\n"  # bash passes the command name first
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert expected <= set(done.stdout.split()), done.stdout
