"""The fuzz targets in CI: every corpus input, then a few seconds of fuzzing each.

With atheris installed (Linux, the ``dev`` extra) each target runs as a
libFuzzer process for :data:`RUNS` inputs from a fixed seed, starting from the
committed corpus (new inputs go to a temporary folder, the repository is not
touched): the same inputs on every machine at every hour, so a failure is a
change of ours, never a lucky draw. ``CCM_FUZZ_SECONDS=600 pytest
tests/fuzz`` fuzzes for real (random seed, that many seconds per target);
whatever it finds goes into the corpus with its fix;
without it, hypothesis feeds the same targets random bytes for a bounded
number of examples.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import render_target, requests_target

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
#: Inputs each atheris target runs in the test suite (about 2 s each).
RUNS = 3000
TARGETS: dict[str, Callable[[bytes], None]] = {"render": render_target,
                                               "requests": requests_target}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_corpus_input_passes(target: str) -> None:
    """Each committed corpus input gives a result or a ccm error, nothing else."""
    files = sorted((CORPUS / target).iterdir())
    assert files, f"no corpus for {target}"
    for path in files:
        TARGETS[target](path.read_bytes())


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_finds_nothing_in_a_few_seconds(target: str, tmp_path: Path) -> None:
    """libFuzzer runs the target from the corpus without a crash or hang."""
    seconds = os.environ.get("CCM_FUZZ_SECONDS", "")
    budget = [f"-max_total_time={int(seconds)}"] if seconds else ["-seed=1", f"-runs={RUNS}"]
    done = subprocess.run(
        [sys.executable, str(HERE / f"fuzz_{target}.py"), *budget,
         "-timeout=20", "-rss_limit_mb=3072", "-max_len=4096", f"-artifact_prefix={tmp_path}/",
         str(tmp_path), str(CORPUS / target)],
        capture_output=True, text=True, timeout=300 + int(seconds or 0), check=False, cwd=ROOT,
        env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]


@settings(max_examples=200)
@given(st.binary(max_size=512) | st.text(max_size=256).map(str.encode))
def test_hypothesis_fuzz_of_the_request_reader(data: bytes) -> None:
    """Random bytes through the request reader: error rows, never an exception."""
    requests_target(data)


@settings(max_examples=100)
@given(st.text(alphabet=st.sampled_from(list("{}%#()[]|.~*+-/'\"0123456789 abcdefgnor_\0")),
               max_size=80).map(str.encode))
def test_hypothesis_fuzz_of_the_render_path(data: bytes) -> None:
    """Random template-ish text through the render path: output or a ccm error."""
    render_target(data)
