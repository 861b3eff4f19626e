"""Deep calls run on a roomy frame stack: no chunk mapped and unmapped per swing of depth."""

from __future__ import annotations

import resource
import sys
import threading
from typing import Any

import pytest

from ccm import _util
from ccm._util import on_roomy_stack


def _descend(depth: int) -> int:
    return 0 if depth == 0 else 1 + _descend(depth - 1)


def _swings(times: int, depth: int) -> int:
    """Go ``depth`` frames down and back up ``times`` times; the minor page faults it took."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        _descend(depth)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_the_result_arguments_and_errors_pass_through() -> None:
    def combine(a: int, b: int, *, c: int) -> tuple[int, int, int]:
        return a, b, c

    assert on_roomy_stack(combine, 1, 2, c=3) == (1, 2, 3)
    with pytest.raises(ZeroDivisionError):
        on_roomy_stack(lambda: 1 // 0)
    # After an error the next call takes a roomy stack again (not "already inside").
    seen: list[bool] = []
    on_roomy_stack(lambda: seen.append(_util._roomy.active))
    assert seen == [True]
    assert _util._roomy.active is False


def test_nested_calls_run_directly_on_the_stack_already_there() -> None:
    frames: list[Any] = []

    def inner() -> None:
        frames.append(sys._getframe(1).f_code.co_name)

    def outer() -> None:
        on_roomy_stack(inner)

    on_roomy_stack(outer)
    # inner was called by on_roomy_stack itself, not through a second runner frame.
    assert frames == ["on_roomy_stack"]


def test_each_thread_has_its_own_flag() -> None:
    seen: dict[str, bool] = {}

    def in_thread() -> None:
        seen["thread"] = getattr(_util._roomy, "active", False)

    def body() -> None:
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()

    on_roomy_stack(body)
    assert seen == {"thread": False}


def test_deep_swings_stop_mapping_new_stack_chunks() -> None:
    """400 frames down and up, 300 times: CPython maps (and faults in) fresh 16 KiB stack
    chunks at every swing on its own, and none on the roomy stack."""
    plain = _swings(300, 400)
    if plain < 300:
        pytest.skip(f"this platform reports no page faults for stack chunks ({plain})")
    roomy = on_roomy_stack(_swings, 300, 400)
    assert roomy < plain / 10, (plain, roomy)
