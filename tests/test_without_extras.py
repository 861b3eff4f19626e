"""`pip install ccm-engine` without extras: the CLI starts, renders, names the missing extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .examples_helpers import PACKS, ROOT, TEMPLATES

# Run ccm in a child interpreter where the extras' packages cannot be imported.
_BLOCK = """
import sys
from importlib.abc import MetaPathFinder
BLOCKED = {"starlette", "uvicorn", "watchfiles", "pypdfium2", "dask", "distributed",
           "psycopg", "fsspec", "playwright"}
class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
import importlib.util
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):
    return None if name.split(".")[0] in BLOCKED else _find_spec(name, package)
importlib.util.find_spec = find_spec
from ccm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def ccm_without_extras(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CCM_RECORD_URL"}
    return subprocess.run([sys.executable, "-c", _BLOCK, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_starts_and_renders_without_extras(tmp_path: Path) -> None:
    help_ = ccm_without_extras("--help", cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    for command in ("render", "record", "batch", "lint", "preview", "proof", "approve",
                    "track-serve"):
        assert command in help_.stdout

    sample = sorted((TEMPLATES / "payment_reminder" / "samples").glob("*.json"))[0]
    rendered = ccm_without_extras(
        "render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
        str(TEMPLATES), "--data", str(sample), "--out", str(tmp_path / "out"),
        "--as-of", "2026-06-01T12:00:00+00:00", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert len(list((tmp_path / "out").glob("*.eml"))) == 1
    assert (tmp_path / "ccm-record.db").exists()


def test_commands_needing_an_extra_name_it(tmp_path: Path) -> None:
    for args, extra in ((["preview"], "ccm-engine[preview]"),
                        (["proof", "--out", str(tmp_path / "proof")], "ccm-engine[preview]"),
                        (["track-serve"], "ccm-engine[tracking]")):
        result = ccm_without_extras(*args, cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.startswith("ccm: error:") and extra in result.stderr
        assert "Traceback" not in result.stderr


# The receiver-side check of docs/delivery.md, and a webhook route, where httpx (the
# ``delivery`` extra) cannot be imported.
_WITHOUT_HTTPX = """
import sys
from importlib.abc import MetaPathFinder
class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "httpx":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from ccm.delivery.webhook import sign, verify_signature
header = sign(b"a-shared-secret-of-32-bytes-long", 1767000000, b"{}")
assert verify_signature(b"a-shared-secret-of-32-bytes-long", "1767000000", b"{}", header,
                        now=1767000030)
print("verified")
from ccm.delivery import load_config
from ccm.errors import DeliveryConfigError
try:
    load_config(sys.argv[1], env={"HOOK_SECRET": "s" * 32})
except DeliveryConfigError as exc:
    print(exc)
"""


def test_webhook_signatures_need_no_extra(tmp_path: Path) -> None:
    """sign/verify_signature import and work without httpx; a webhook route in delivery.yaml
    is refused naming the extra to install, not with a ModuleNotFoundError."""
    config = tmp_path / "delivery.yaml"
    config.write_text("version: 1\nchannels:\n  email:\n    transport: webhook\n"
                      "    url: https://hooks.example.com/ccm\n    secret_env: HOOK_SECRET\n",
                      "utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's ccm, not the installed one
    done = subprocess.run([sys.executable, "-c", _WITHOUT_HTTPX, str(config)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    verified, refused = done.stdout.splitlines()
    assert verified == "verified"
    assert "channels.email.transport" in refused
    assert "pip install 'ccm-engine[delivery]'" in refused
