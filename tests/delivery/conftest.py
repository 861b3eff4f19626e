"""Fixtures for delivery tests: a record that archives (queueing needs a master key) and an
engine that queues what it renders."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.record import MasterKey, Record

from ..examples_helpers import PACKS, TEMPLATES, sample

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, outside the SMS quiet hours
KEY = MasterKey.generate()


@pytest.fixture
def rec(record_url: str) -> Iterator[Record]:
    """A record with a master key, on SQLite and on PostgreSQL."""
    record = Record(record_url, master_key=KEY)
    yield record
    record.close()


def queue_engine(record: Record, clock: datetime = NOON) -> ccm.Engine:
    """The acme pack and example templates, queueing every generated message."""
    return ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=lambda: clock,
                      options=ccm.RenderOptions(queue=True))


def reminder(i: int = 0, **customer: Any) -> dict[str, Any]:
    """The payment reminder sample for customer C-<i>, with fields replaced."""
    request = copy.deepcopy(sample("payment_reminder"))
    request["customer"].update({"id": f"C-{i:04d}", "email": f"c{i}@example.com"}, **customer)
    return request


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A record URL, a master key in the environment the CLI reads, and a request file."""
    key_file = tmp_path / "master.key"
    MasterKey.generate_file(key_file)
    monkeypatch.setenv("CCM_MASTER_KEY_FILE", str(key_file))
    monkeypatch.delenv("CCM_MASTER_KEY", raising=False)
    monkeypatch.delenv("CCM_DELIVERY_CONFIG", raising=False)
    data = tmp_path / "requests.jsonl"
    data.write_text("".join(json.dumps(reminder(i)) + "\n" for i in range(3)), "utf-8")
    return {"url": f"sqlite:///{tmp_path / 'record.db'}", "data": data, "tmp": tmp_path,
            "key": MasterKey.from_file(key_file)}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment handed to sender processes: a master key file and nothing else."""
    key_file = tmp_path / "master.key"
    MasterKey.generate_file(key_file)
    yield {"CCM_MASTER_KEY_FILE": str(key_file), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
