"""Fixtures for the record tests: an open record (with a master key) on each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ccm.record import MasterKey, Record


@pytest.fixture
def master_key() -> MasterKey:
    """A throwaway master key."""
    return MasterKey.generate()


@pytest.fixture
def open_record(record_url: str) -> Iterator[Callable[..., Record]]:
    """Open records on this test's database; all closed at the end."""
    opened: list[Record] = []

    def _open(master_key: MasterKey | None = None, url: str | None = None) -> Record:
        rec = Record(url or record_url, master_key=master_key)
        opened.append(rec)
        return rec

    yield _open
    for rec in opened:
        rec.close()


@pytest.fixture
def record(open_record: Callable[..., Record], master_key: MasterKey) -> Record:
    """An empty record that archives content."""
    return open_record(master_key)

