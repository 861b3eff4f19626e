"""The fuzz targets: the render path and the request reader, each one function of bytes.

Both run under atheris (``tests/fuzz/fuzz_render.py``, ``fuzz_requests.py``)
and under pytest on the committed corpora (``tests/fuzz/corpus/``). The rule
they check is the one in docs/security.md: whatever the bytes, the caller
gets a result or a ccm error -- never another exception, never a hang (the
render budget is one second here), never a Python repr in the output.

A render input is a template source, a NUL byte, and the request data as
JSON (anything after the NUL that is not JSON is used as a string).
"""

from __future__ import annotations

import io
import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from ccm.batch.inputs import _read_json, read_jsonl
from ccm.errors import CCMError, DataError
from ccm.render.budget import Budget
from ccm.render.environment import create_environment, render_source
from ccm.render.template import validate_request

__all__ = ["render_target", "requests_target"]

_BUDGET = Budget(seconds=1.0, max_output=100_000, max_value=10_000)


@cache
def _env() -> tuple[Any, Path]:
    root = Path(tempfile.mkdtemp(prefix="ccm-fuzz-"))
    (root / "pack" / "layouts").mkdir(parents=True)
    (root / "templates" / "t").mkdir(parents=True)
    (root / "pack" / "layouts" / "base.txt.j2").write_text(
        "[{% block content %}{% endblock %}]", "utf-8")
    env = create_environment(root / "pack" / "layouts", root / "templates", root / "pack")
    return env, root / "templates" / "t" / "fuzz.txt.j2"


def render_target(data: bytes) -> None:
    """Render a fuzzed template with fuzzed data; only ccm errors may come out."""
    source_bytes, _, data_bytes = data.partition(b"\0")
    source = source_bytes.decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(data_bytes.decode("utf-8", errors="replace") or "{}")
    except (ValueError, RecursionError):
        value = data_bytes.decode("utf-8", errors="replace")
    env, path = _env()
    path.write_text(source, "utf-8")
    env.cache.clear()  # one file name for every input: forget the previous compile
    try:
        text = render_source(env, "templates/t/fuzz.txt.j2", {"data": value},
                             meter=_BUDGET.start()).text
    except CCMError as exc:
        if not exc.context.get("path"):
            raise AssertionError(f"a ccm error without its template: {exc!r}") from exc
        return
    if " at 0x" in text and " at 0x" not in source:
        raise AssertionError("a Python repr reached the output")


def requests_target(data: bytes) -> None:
    """Read fuzzed bytes as JSONL and as a .json file; validate what parses."""
    rows = list(read_jsonl(io.BytesIO(data)))
    rows += list(_read_json(io.BytesIO(data)))
    for row in rows:
        if row.error is not None:
            if not isinstance(row.error, str) or row.line < 1:
                raise AssertionError(f"a bad error row: {row!r}")
            continue
        if not isinstance(row.request, dict):
            raise AssertionError("a row that is not an object")
        try:
            validate_request(row.request)
        except DataError as exc:
            if not exc.context.get("path"):
                raise AssertionError(f"a data error without a path: {exc!r}") from exc
