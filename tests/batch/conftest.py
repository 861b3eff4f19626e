"""Fixtures for the batch tests: example requests, a test templates folder, a record URL."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "brand_packs" / "acme"
TEMPLATES = ROOT / "templates"
#: Test templates: ``quick_note`` (fast, every channel), ``big_table`` (permissive contract).
TEST_TEMPLATES = Path(__file__).resolve().parent / "templates"


def out_name(customer_id: str, channel: str, template: str = "quick_note",
             locale: str = "en_GB") -> str:
    """The output file name of a message (see :func:`ccm.message.output_filename`)."""
    from ccm.message import output_filename

    return output_filename(customer_id, template, locale, channel)


def statement_samples() -> list[dict[str, Any]]:
    """The monthly statement's sample requests."""
    files = sorted((TEMPLATES / "monthly_statement" / "samples").glob("*.json"))
    return [json.loads(p.read_text("utf-8")) for p in files]


def statements(n: int, *, prefix: str = "C") -> list[dict[str, Any]]:
    """``n`` valid statement requests with distinct customer ids (samples recycled)."""
    samples = statement_samples()
    out = []
    for i in range(n):
        req = copy.deepcopy(samples[i % len(samples)])
        req["customer"]["id"] = f"{prefix}{i:04d}"
        req["customer"]["consents"] = {"email": True, "sms": True}
        out.append(req)
    return out


def notes(n: int, *, prefix: str = "N") -> list[dict[str, Any]]:
    """``n`` valid ``quick_note`` requests (every channel allowed)."""
    return [
        {
            "customer": {
                "id": f"{prefix}{i:04d}", "name": f"Customer {i}",
                "email": f"c{i}@example.com", "phone": "+447700900123",
                "date_of_birth": "1980-01-02", "document_code": f"CODE-{prefix}{i:04d}-K7QM",
                "consents": {"email": True, "sms": True},
            },
            "data": {"amount": 10 + i},
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, requests: list[Any]) -> Path:
    """Write requests as JSONL (a string item is written as a raw, possibly broken, line)."""
    with path.open("w", encoding="utf-8") as fh:
        for req in requests:
            fh.write((req if isinstance(req, str) else json.dumps(req)) + "\n")
    return path


@pytest.fixture
def record_url(tmp_path: Path) -> str:
    """A fresh SQLite record for one test."""
    return f"sqlite:///{tmp_path / 'record.db'}"


@pytest.fixture
def master_key() -> Any:
    """A throwaway master key, so the record archives content."""
    from ccm.record import MasterKey

    return MasterKey.generate()


@pytest.fixture
def open_record() -> Iterator[Callable[..., Any]]:
    """Open a record by URL (closed at the end of the test)."""
    from ccm.record import Record

    opened: list[Any] = []

    def _open(url: str, master_key: Any = None) -> Any:
        rec = Record(url, master_key=master_key)
        opened.append(rec)
        return rec

    yield _open
    for rec in opened:
        rec.close()


#: The contact policy's clock in tests: 15:00 UTC is daytime (outside the pack's SMS quiet
#: hours) in every sample's timezone, London to Dubai and Chicago; in Tokyo it is midnight.
DAYTIME = datetime(2025, 11, 3, 15, 0, tzinfo=UTC)
#: Counting "every message ever" in the record: since a date before any test ran.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def pg_url() -> str | None:
    """The PostgreSQL URL for tests, or None (skip) when it is not configured."""
    url = os.environ.get("CCM_TEST_PG_URL")
    if not url and os.environ.get("CCM_REQUIRE_PG"):
        pytest.fail("CCM_REQUIRE_PG is set but CCM_TEST_PG_URL is not")
    return url or None


def chunk_items(out: Path, run_id: str) -> list[dict[str, Any]]:
    """Every message line of a run's published chunks (JSONL files or zip archives), with
    ``content`` as bytes, read the way a consumer would."""
    import zipfile

    items: list[dict[str, Any]] = []
    for path in sorted(out.glob(f"messages-{run_id}-*.jsonl")):
        for text in path.read_text("ascii").splitlines():
            item = json.loads(text)
            item["content"] = item["content"].encode("utf-8", "surrogateescape")
            items.append(item)
    for path in sorted(out.glob(f"messages-{run_id}-*.zip")):
        with zipfile.ZipFile(path) as archive:
            for text in archive.read("manifest.jsonl").decode("ascii").splitlines():
                item = json.loads(text)
                item["content"] = archive.read(item["member"])
                items.append(item)
    return items
