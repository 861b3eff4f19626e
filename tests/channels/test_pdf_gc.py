"""The PDF channel collects cyclic garbage less often while it works, then restores the GC."""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from ccm._util import YOUNG_THRESHOLD
from ccm.channels.pdf import PackFetcher, fewer_collections, render_document, write_pdf


@pytest.fixture()
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The process's GC thresholds before the test, restored after it whatever happens."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_thresholds_are_raised_inside_and_restored_after(thresholds: tuple[int, int, int]) -> None:
    """Inside the block the young threshold is raised; after it the old thresholds are back."""
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, thresholds[1], thresholds[2])
        with fewer_collections():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the outer block still runs
    assert gc.get_threshold() == thresholds


def test_thresholds_come_back_after_an_error(thresholds: tuple[int, int, int]) -> None:
    """An exception inside the block still restores the thresholds."""
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("layout failed")
    assert gc.get_threshold() == thresholds


def test_disabled_or_higher_thresholds_are_left_alone(thresholds: tuple[int, int, int]) -> None:
    """A caller who switched automatic collection off, or set a higher threshold, keeps it."""
    gc.set_threshold(0, 10, 10)
    with fewer_collections():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold()[0] == 0
    gc.set_threshold(YOUNG_THRESHOLD * 2, 10, 10)
    with fewer_collections():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD * 2
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD * 2


def test_concurrent_threads_share_one_raise(thresholds: tuple[int, int, int]) -> None:
    """Threads rendering at once restore the thresholds only when the last one finishes."""
    inside = threading.Barrier(2)
    release = threading.Event()
    seen: list[int] = []

    def work() -> None:
        with fewer_collections():
            inside.wait(timeout=10)
            release.wait(timeout=10)
            seen.append(gc.get_threshold()[0])

    first = threading.Thread(target=work)
    first.start()
    with fewer_collections():
        inside.wait(timeout=10)
        release.set()
        first.join(timeout=10)
    assert seen == [YOUNG_THRESHOLD]
    assert gc.get_threshold() == thresholds


def test_a_rendered_pdf_leaves_the_thresholds_as_they_were(
    thresholds: tuple[int, int, int], tmp_path: Path
) -> None:
    """Layout and writing leave the process's GC thresholds unchanged, and the PDF is whole."""
    fetcher = PackFetcher(roots=[tmp_path])
    document = render_document(
        "<html><body>" + "<p>row</p>" * 200 + "</body></html>",
        base_url=tmp_path.as_uri() + "/", fetcher=fetcher,
    )
    pdf = write_pdf(document, title="Statement", author="Acme Bank", lang="en-GB")
    assert gc.get_threshold() == thresholds
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == len(document.pages) >= 2
    assert "row" in reader.pages[0].extract_text()


def test_pdfa_bytes_are_the_same_when_each_object_is_serialised_once(tmp_path: Path) -> None:
    """Remembering each object's bytes during pydyf's write changes nothing in the PDF/A file."""
    from ccm.channels.pdf import _output_intent
    from ccm.channels.pdf._once import serialise_once

    document = render_document(
        '<html lang="en"><head><title>t</title></head><body>' + "<p>row</p>" * 120
        + "</body></html>",
        base_url=tmp_path.as_uri() + "/", fetcher=PackFetcher(roots=[tmp_path]),
    )

    def write(finisher: Any) -> bytes:
        target = document.copy()
        target.color_profiles = dict(document.color_profiles)
        intent = _output_intent(target, "pdf/a-3b")  # ccm's sRGB profile, as write_pdf does
        pdf: bytes = target.write_pdf(pdf_variant="pdf/a-3b", pdf_tags=True,
                                      output_intent=intent, finisher=finisher)
        return pdf

    plain = write(None)
    once = write(lambda doc, pdf: serialise_once(pdf))
    assert once == plain
    assert b"/ID" in once
    reader = PdfReader(io.BytesIO(once))
    assert len(reader.pages) == len(document.pages)
    assert "row" in reader.pages[-1].extract_text()


def test_compression_level_gives_what_pydyf_writes_at_that_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At ccm's zlib level the file is byte for byte pydyf's own at that level."""
    import types
    import zlib

    import pydyf

    from ccm.channels.pdf import _output_intent
    from ccm.channels.pdf._once import COMPRESSION_LEVEL, serialise_once

    assert COMPRESSION_LEVEL != 9
    document = render_document(
        '<html lang="en"><head><title>t</title></head><body>' + "<p>row</p>" * 120
        + "</body></html>",
        base_url=tmp_path.as_uri() + "/", fetcher=PackFetcher(roots=[tmp_path]),
    )

    def write(finisher: Any) -> bytes:
        target = document.copy()
        target.color_profiles = dict(document.color_profiles)
        intent = _output_intent(target, "pdf/a-3b")
        pdf: bytes = target.write_pdf(pdf_variant="pdf/a-3b", pdf_tags=True,
                                      output_intent=intent, finisher=finisher)
        return pdf

    ours = write(lambda doc, pdf: serialise_once(pdf, COMPRESSION_LEVEL))
    levels: list[int] = []

    def compressobj(level: int = -1, *args: Any) -> Any:
        levels.append(level)
        return zlib.compressobj(COMPRESSION_LEVEL, *args)

    monkeypatch.setattr(pydyf, "zlib", types.SimpleNamespace(compressobj=compressobj,
                                                             compress=zlib.compress))
    theirs = write(None)
    assert levels and set(levels) == {9}  # pydyf asked for 9 everywhere, got ccm's level
    assert ours == theirs
    monkeypatch.undo()
    default = write(lambda doc, pdf: serialise_once(pdf))
    assert write(None) == default != ours  # level 9 unless asked: pydyf's bytes
    reader = PdfReader(io.BytesIO(ours))
    assert "row" in reader.pages[-1].extract_text()
