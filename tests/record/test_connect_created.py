"""``Record.created``: whether opening made the record."""

from __future__ import annotations

from pathlib import Path

from ccm.record import Record


def test_created_is_true_only_for_the_opening_that_made_the_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'record.db'}"
    with Record(url) as first:
        assert first.created is True
    with Record(url) as again:
        assert again.created is False
    with Record(url, read_only=True) as reader:
        assert reader.created is False
