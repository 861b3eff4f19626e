"""atheris fuzzer of the request reader: python tests/fuzz/fuzz_requests.py [options] CORPUS."""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["ccm"]):
    from tests.fuzz.targets import requests_target


if __name__ == "__main__":
    atheris.Setup(sys.argv, requests_target)
    atheris.Fuzz()
