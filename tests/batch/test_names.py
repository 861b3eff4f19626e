"""Batch output names: one file per message whatever the ids, never another message's file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccm.batch import run_batch
from ccm.cli import main
from tests.strategies import request_ids

from .conftest import DAYTIME, PACK, TEST_TEMPLATES, notes, out_name, write_jsonl

ISSUE_IDS = ["C/1", "C_1", "_C_1", "张伟10", "李娜10", "АБ-7", "ВГ-7", ".", "..", "LPT1"]


def with_ids(ids: list[str], amount: float = 10) -> list[dict[str, Any]]:
    """``quick_note`` requests for these customer ids."""
    requests = notes(len(ids))
    for req, cid in zip(requests, ids, strict=True):
        req["customer"]["id"] = cid
        req["data"]["amount"] = amount
    return requests


def batch_cli(tmp: Path, requests: list[dict[str, Any]], out: Path, url: str, run_id: str,
              capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    """``ccm batch --json`` over ``requests``; the exit status and the events printed."""
    data = write_jsonl(tmp / f"{run_id}.jsonl", requests)
    status = main(["batch", "quick_note", "--pack", str(PACK), "--templates", str(TEST_TEMPLATES),
                   "--data", str(data), "--out", str(out), "--record", url, "--run-id", run_id,
                   "--as-of", DAYTIME.isoformat(), "--workers", "0", "--channel", "sms",
                   "--json"])
    return status, [json.loads(line) for line in capsys.readouterr().out.split("\n") if line]


def assert_one_matching_file_each(out: Path, url: str, run_id: str, ids: list[str],
                                  open_record: Callable[..., Any], channel: str = "sms") -> None:
    """Every customer has exactly its own file, whose SHA-256 is the record's."""
    record = open_record(url)
    names = sorted(p.name for p in out.iterdir()  # and the run's note of its format
                   if p.name not in ("errors.jsonl", "README.txt")
                   and not p.name.startswith(".ccm-run-"))
    assert names == sorted(out_name(cid, channel) for cid in ids)
    for cid in ids:
        entry = record.find_key(f"{run_id}:quick_note:{cid}:{channel}")
        assert entry is not None and entry.customer_id == cid
        data = (out / out_name(cid, channel)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.content_sha256, cid


def test_ids_from_the_issue_each_get_their_own_file(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    open_record: Callable[..., Any],
) -> None:
    """`ccm batch` says generated 10 and the folder holds the 10 files the record vouches for."""
    out = tmp_path / "out"
    status, events = batch_cli(tmp_path, with_ids(ISSUE_IDS), out, record_url, "r1", capsys)
    assert status == 0
    assert events[-1]["generated"] == len(ISSUE_IDS)
    assert_one_matching_file_each(out, record_url, "r1", ISSUE_IDS, open_record)


@pytest.mark.parametrize("archive", [True, False], ids=["from-archive", "re-rendered"])
def test_resume_repairs_a_file_that_does_not_match_the_record(
    tmp_path: Path, record_url: str, master_key: Any, archive: bool,
    open_record: Callable[..., Any],
) -> None:
    """A rerun with the same run id finds a file holding other bytes and writes the right one."""
    out = tmp_path / "out"
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0,
                                  channels=["sms"], master_key=master_key if archive else None)
    requests = with_ids(["C/1", "C_1"])
    requests[1]["data"]["amount"] = 99
    run_batch("quick_note", requests, **kwargs)
    first, second = (out / out_name(cid, "sms") for cid in ("C/1", "C_1"))
    first.write_bytes(second.read_bytes())  # what the old names did: one customer's text
    again = run_batch("quick_note", requests, **kwargs)
    assert again.generated == 0
    assert (again.restored, again.rerendered) == ((1, 0) if archive else (0, 1))
    entry = open_record(record_url).find_key("r1:quick_note:C/1:sms")
    assert first.read_bytes() != second.read_bytes()
    if archive:
        assert hashlib.sha256(first.read_bytes()).hexdigest() == entry.content_sha256
    assert "10" in first.read_text() and "99" in second.read_text()


def test_a_new_run_never_overwrites_an_earlier_runs_file(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    open_record: Callable[..., Any],
) -> None:
    """A second run into the same folder fails the rows whose names hold other messages, says
    which file and what to do, records nothing for them, and leaves the files as they were."""
    out = tmp_path / "out"
    ids = ["C1", "C2"]
    assert batch_cli(tmp_path, with_ids(ids), out, record_url, "r1", capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()
              if not p.name.startswith(".ccm-run-")}  # each run's note of its format
    changed = with_ids(ids, amount=77)
    status, events = batch_cli(tmp_path, changed, out, record_url, "r2", capsys)
    assert status == 1
    errors = sorted((e for e in events if e["event"] == "error"), key=lambda e: e["line"])
    assert [e["error"] for e in errors] == ["OutputExists", "OutputExists"]
    assert [e["customer_id"] for e in errors] == ids
    for error, cid in zip(errors, ids, strict=True):
        assert error["file"] == str(out / out_name(cid, "sms"))
        assert out_name(cid, "sms") in error["message"] and "new --out folder" in error["message"]
    assert events[-1]["generated"] == 0 and events[-1]["failed"] == 2
    after = {p.name: p.read_bytes() for p in out.iterdir()
             if p.name != "errors.jsonl" and not p.name.startswith(".ccm-run-")}
    assert after == {k: v for k, v in before.items() if k != "errors.jsonl"}
    record = open_record(record_url)
    assert record.find_key("r2:quick_note:C1:sms") is None
    assert_one_matching_file_each(out, record_url, "r1", ids, open_record)


def test_a_new_run_with_the_same_bytes_is_not_refused(
    tmp_path: Path, record_url: str, capsys: pytest.CaptureFixture[str],
    open_record: Callable[..., Any],
) -> None:
    """A file that holds exactly the new message's bytes is not another message's file."""
    out = tmp_path / "out"
    assert batch_cli(tmp_path, with_ids(["C1"]), out, record_url, "r1", capsys)[0] == 0
    status, events = batch_cli(tmp_path, with_ids(["C1"]), out, record_url, "r2", capsys)
    assert status == 0 and events[-1]["generated"] == 1
    assert_one_matching_file_each(out, record_url, "r2", ["C1"], open_record)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(request_ids(), min_size=1, max_size=6, unique=True))
def test_distinct_ids_never_share_a_file(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
    open_record: Callable[..., Any], ids: list[str],
) -> None:
    """Arbitrary Unicode ids through `ccm batch`: one file each, with the record's digest."""
    tmp = tmp_path_factory.mktemp("batch-ids")
    url = f"sqlite:///{tmp / 'record.db'}"
    status, events = batch_cli(tmp, with_ids(ids), tmp / "out", url, "p1", capsys)
    assert status == 0, [e for e in events if e["event"] == "error"]
    assert events[-1]["generated"] == len(ids)
    assert_one_matching_file_each(tmp / "out", url, "p1", ids, open_record)


def test_fsspec_outputs_are_checked_and_repaired_too(record_url: str, master_key: Any) -> None:
    """On an fsspec folder a rerun repairs a wrong file and a new run refuses a taken name."""
    import fsspec

    fs = fsspec.filesystem("memory")
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES,
                                  out="memory://names-out", record_url=record_url, workers=0,
                                  channels=["sms"], master_key=master_key)
    try:
        run_batch("quick_note", with_ids(["C/1", "C_1"]), run_id="r1", **kwargs)
        first, second = (f"/names-out/{out_name(cid, 'sms')}" for cid in ("C/1", "C_1"))
        good, kept = fs.cat_file(first), fs.cat_file(second)
        fs.pipe_file(first, b"someone else's text")
        again = run_batch("quick_note", with_ids(["C/1", "C_1"]), run_id="r1", **kwargs)
        assert (again.restored, fs.cat_file(first)) == (1, good)
        other = run_batch("quick_note", with_ids(["C_1"], amount=55), run_id="r2", **kwargs)
        assert (other.generated, other.failed) == (0, 1)
        assert fs.cat_file(second) == kept
    finally:
        fs.rm("/names-out", recursive=True)


def test_a_repeated_row_in_a_folder_with_files_is_a_duplicate(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same customer twice in one run, into a folder that already had files: the second
    row is a duplicate of this run's message, not a clash with another run's file."""
    import ccm.batch.run

    # Commit after every two messages, so the first C1 is published before the second is
    # committed (both were looked up in the record before either was there).
    monkeypatch.setattr(ccm.batch.run, "COMMIT_MESSAGES", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.txt").write_text("an earlier run's notes")
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0,
                                  channels=["email"], chunk_size=1)
    ids = ["C1", "C2", "C3", "C4", "C5", "C6"]
    rows = with_ids(ids)
    rows.append(rows[0])  # the same request again; an email's bytes differ each render
    summary = run_batch("quick_note", rows, **kwargs)
    assert (summary.generated, summary.failed, summary.duplicate) == (6, 0, 1)
    assert_one_matching_file_each(out, record_url, "r1", ids, open_record, "email")
