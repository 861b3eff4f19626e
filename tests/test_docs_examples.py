"""Every code example in README.md and docs/*.md runs as written (docs/internals.md, "Doc
examples are tests"): Python blocks in a child interpreter, shell blocks in bash, each page
in a fresh copy of a folder where `make demo` has run (fixed clock)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python": "python", "console": "shell", "sh": "shell", "bash": "shell",
            "shell": "shell"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*$")
SKIP = re.compile(r"^\s*<!--\s*skip\b(?P<why>[^>]*)-->\s*$")
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its kind, its code, and whether it is skipped."""

    page: Path
    line: int
    kind: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` (only runnable kinds), in order."""
    lines = page.read_text("utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or not match["lang"]:
            i += 1
            continue
        indent, lang, start = len(match["indent"]), match["lang"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:])
            i += 1
        i += 1
        if lang not in RUNNABLE:
            continue
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        skip = SKIP.match(lines[above]) if above >= 0 else None
        found.append(Block(page, start + 1, RUNNABLE[lang], "\n".join(body) + "\n",
                           (skip["why"].strip(" :") or "marked skip") if skip else None))
    return found


def shell_commands(code: str) -> str:
    """A console block as a script: the ``$ `` lines when there are any (the rest is shown
    output), else every line; ``\\`` continuations kept."""
    lines = code.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    script: list[str] = []
    continuing = False
    for line in lines:
        if prompted and not continuing:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        script.append(line)
        continuing = line.rstrip().endswith("\\")
    return "\n".join(script) + "\n"


#: Commands a doc may show but a test must not run: they install or run the suite itself.
SHELL_PRELUDE = """
set -euo pipefail
make() {
  if [ "$*" = demo ]; then return 0; fi  # the fixture has run the demo already
  echo "doc example runs 'make $*': mark the block <!-- skip: why -->" >&2; return 97
}
pip() { echo "doc example runs 'pip $*': mark the block <!-- skip: why -->" >&2; return 97; }
"""

PYTHON_DRIVER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
for block in blocks:
    try:
        exec(compile(block["code"], block["where"], "exec"), namespace)
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"{block['where']}: exits {exc.code}", file=sys.stderr)
            sys.exit(1)
    except BaseException:
        print(f"{block['where']}: the example fails:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a fresh clone after `make demo` (at the demo's fixed clock)."""
    base = tmp_path_factory.mktemp("docs-demo")
    for name in ("brand_packs", "templates", "examples"):
        shutil.copytree(ROOT / name, base / name)
    done = subprocess.run([sys.executable, str(base / "examples" / "demo.py"), "--out", "out"],
                          cwd=base, capture_output=True, text=True, timeout=600,
                          check=False, env=_env(base))
    assert done.returncode == 0, done.stdout + done.stderr
    return base


def _env(home: Path) -> dict[str, str]:
    """The environment every example gets: this venv first on PATH, nothing of the caller's."""
    env = {"PATH": f"{BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
           "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    for name in ("CCM_TEST_PG_URL",):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doc_examples_run_as_written(page: Path, demo_dir: Path, tmp_path: Path) -> None:
    """Each runnable block of the page succeeds, in order, after `make demo`."""
    todo = [b for b in blocks(page) if b.skip is None]
    if not todo:
        return
    work = tmp_path / "clone"
    shutil.copytree(demo_dir, work, symlinks=True)
    env = _env(tmp_path)
    python_blocks: list[dict[str, str]] = []
    failures: list[str] = []

    def run_python() -> None:
        if not python_blocks:
            return
        spec = tmp_path / "blocks.json"
        spec.write_text(json.dumps(python_blocks), "utf-8")
        python_blocks.clear()
        done = subprocess.run([sys.executable, "-c", PYTHON_DRIVER, str(spec)], cwd=work,
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode:
            failures.append(done.stderr[-3000:])

    for block in todo:
        if block.kind == "python":
            python_blocks.append({"where": block.where, "code": block.code})
            continue
        run_python()  # in page order: Python before the shell block that follows it
        done = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                               SHELL_PRELUDE + shell_commands(block.code)],
                              cwd=work, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode:
            failures.append(f"{block.where}: the example fails (exit {done.returncode}):\n"
                            f"{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    run_python()
    assert not failures, "\n\n".join(failures)


def test_skip_markers_say_why() -> None:
    """Every `<!-- skip -->` in the docs gives its reason, so a skipped example is a choice."""
    for page in PAGES:
        for block in blocks(page):
            assert block.skip != "marked skip", f"{block.where}: say why: <!-- skip: reason -->"
