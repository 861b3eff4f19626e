"""run_batch end to end: files, record, errors, resumption, budgets, print stream, fsspec."""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from ccm.batch.inputs import InputRow
from ccm.batch.run import BatchEvent, WorkerLimits, run_batch
from ccm.errors import UnknownChannel, UnknownTemplate

from .conftest import (
    DAYTIME,
    EPOCH,
    PACK,
    TEMPLATES,
    TEST_TEMPLATES,
    chunk_items,
    notes,
    out_name,
    statements,
)


def _files(out: Path) -> list[str]:
    """The run's files, without its note of its output format (``.ccm-run-*.json``)."""
    return sorted(p.name for p in out.iterdir()
                  if p.is_file() and not p.name.startswith(".ccm-run-"))


def _no_temp_files(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if ".ccm-staging" in str(p) or p.name.endswith(".tmp")]
    assert leftovers == []


def _errors(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]


def test_every_customer_gets_one_message_per_channel(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any]
) -> None:
    """Each request yields one recorded message and one complete file per channel."""
    out = tmp_path / "out"
    requests = notes(6)
    summary = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES, out=out,
                        record_url=record_url, run_id="r1", workers=0, now=DAYTIME)
    assert (summary.rows, summary.generated, summary.failed, summary.exit_status) == (6, 18, 0, 0)
    record = open_record(record_url)
    for req in requests:
        cid = req["customer"]["id"]
        for channel in ("pdf", "email", "sms"):
            entry = record.find_key(f"r1:quick_note:{cid}:{channel}")
            assert entry is not None and entry.status == "generated"
            data = (out / out_name(cid, channel)).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry.content_sha256
    assert PdfReader(out / out_name("N0000", "pdf")).is_encrypted
    assert len(_files(out)) == 18 + 1  # and errors.jsonl, empty
    assert _errors(out) == []
    _no_temp_files(out)
    assert record.verify().ok


def test_bad_rows_go_to_errors_jsonl_and_the_run_goes_on(tmp_path: Path, record_url: str) -> None:
    """Invalid data and unreadable rows are reported with line, customer and error; others go on."""
    out = tmp_path / "out"
    rows = [
        InputRow(1, notes(1)[0]),
        InputRow(2, None, "invalid JSON: Expecting value"),
        InputRow(3, {"customer": {"id": "BAD"}, "data": {"amount": -5}}),
        InputRow(4, {"customer": {"id": "NOPHONE", "email": "x@example.com",
                                  "date_of_birth": "1990-01-01"}, "data": {"amount": 1}}),
        InputRow(5, notes(2, prefix="M")[1]),
    ]
    events: list[BatchEvent] = []
    summary = run_batch("quick_note", rows, pack=PACK, templates=TEST_TEMPLATES, out=out,
                        record_url=record_url, run_id="r1", workers=0, channels=["sms"],
                        on_event=events.append, now=DAYTIME)
    assert (summary.rows, summary.generated, summary.failed, summary.exit_status) == (5, 2, 3, 1)
    errors = {e["line"]: e for e in _errors(out)}
    assert set(errors) == {2, 3, 4}
    assert errors[2]["error"] == "InputError"
    assert errors[3]["error"] == "DataError" and errors[3]["customer_id"] == "BAD"
    assert errors[3]["path"] == "$.data.amount"
    assert errors[4]["error"] == "DataError" and "phone" in errors[4]["message"]
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("error") == 3


def test_a_template_error_names_the_input_row_and_the_template_line(
    tmp_path: Path, record_url: str
) -> None:
    """errors.jsonl's ``line`` is the input row; the template's own line is ``template_line``
    (it used to overwrite the row's). The customer's name is not in the message."""
    templates = tmp_path / "templates"
    shutil.copytree(TEST_TEMPLATES, templates)
    sms = templates / "quick_note" / "sms.txt.j2"
    sms.write_text('{% extends "pack/sms.txt.j2" %}\n{% block content %}\n'
                   "{% set labels = {'A': 'a'} %}\n"
                   "{{ labels[customer.name] if data.amount > 10 else 'ok' }}\n"
                   "{% endblock %}\n", "utf-8")
    rows = [InputRow(i + 1, request) for i, request in enumerate(notes(3, prefix="T"))]
    out = tmp_path / "out"
    summary = run_batch("quick_note", rows, pack=PACK, templates=templates, out=out,
                        record_url=record_url, run_id="r1", workers=0, channels=["sms"],
                        now=DAYTIME)
    assert (summary.generated, summary.failed) == (1, 2)
    errors = sorted(_errors(out), key=lambda e: e["line"])
    assert [(e["line"], e["customer_id"], e["template_line"]) for e in errors] == [
        (2, "T0001", 4), (3, "T0002", 4)]
    assert all("Customer" not in e["message"] for e in errors)
    assert "has no attribute '…'" in errors[0]["message"]


def test_rerun_with_the_same_run_id_adds_nothing(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any]
) -> None:
    """A second run with the same run id finds every message recorded and renders nothing."""
    out = tmp_path / "out"
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0)
    run_batch("quick_note", notes(4), **kwargs)
    before = {name: (out / name).read_bytes() for name in _files(out)}
    again = run_batch("quick_note", notes(4), **kwargs)
    assert (again.generated, again.duplicate, again.skipped, again.rows) == (0, 12, 4, 4)
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    assert open_record(record_url).count("N0001", since=EPOCH, channel="sms") == 1


def test_rerun_with_changed_data_is_a_conflict_not_a_silent_skip(
    tmp_path: Path, record_url: str
) -> None:
    """A recorded row whose data changed since is reported, not skipped or sent twice."""
    out = tmp_path / "out"
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0, channels=["sms"])
    run_batch("quick_note", notes(2), **kwargs)
    changed = notes(2)
    changed[1]["data"]["amount"] = 999
    again = run_batch("quick_note", changed, **kwargs)
    assert (again.generated, again.skipped, again.failed) == (0, 1, 1)
    (error,) = _errors(out)
    assert error["customer_id"] == "N0001" and error["error"] == "IdempotencyConflict"


@pytest.mark.parametrize("workers", [0, 1])
def test_a_customer_twice_in_one_input_is_reported_as_such(
    tmp_path: Path, record_url: str, workers: int
) -> None:
    """The second row of a customer (other data) fails with what to do; the first is sent."""
    out = tmp_path / "out"
    rows = notes(2)
    again = json.loads(json.dumps(rows[0]))
    again["data"]["amount"] = 999
    summary = run_batch("quick_note", [*rows, again], now=DAYTIME, pack=PACK,
                        templates=TEST_TEMPLATES, out=out, record_url=record_url, run_id="r1",
                        workers=workers, channels=["sms"])
    assert (summary.generated, summary.failed) == (2, 1)
    (error,) = _errors(out)
    assert (error["line"], error["customer_id"], error["error"]) == (
        3, "N0000", "IdempotencyConflict")
    assert error["message"].startswith("customer N0000 already has an SMS in this run, "
                                       "made from other data (message ")
    assert "keep one row" in error["message"] and "another --run-id" in error["message"]


def test_a_missing_file_is_restored_from_the_archive(
    tmp_path: Path, record_url: str, master_key: Any
) -> None:
    """If a recorded message's file is gone, the rerun writes it back from the archived content."""
    out = tmp_path / "out"
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0,
                                  channels=["sms", "pdf"], master_key=master_key)
    run_batch("quick_note", notes(3), **kwargs)
    lost = out / out_name("N0001", "pdf")
    original = lost.read_bytes()
    lost.unlink()
    again = run_batch("quick_note", notes(3), **kwargs)
    assert (again.generated, again.restored, again.rerendered) == (0, 1, 0)
    assert lost.read_bytes() == original


def test_a_staged_file_whose_message_was_committed_is_published(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any]
) -> None:
    """Crash between record commit and rename: the rerun publishes the staged file, unchanged."""
    from ccm.batch._output import _Output

    out = tmp_path / "out"
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0, channels=["sms"])
    run_batch("quick_note", notes(2), **kwargs)
    entry = open_record(record_url).find_key("r1:quick_note:N0000:sms")
    final = out / out_name("N0000", "sms")
    staging = Path(_Output(out, "r1", durable=False).staging)
    staging.mkdir()
    final.rename(staging / f"{entry.message_id}.sms.txt")
    again = run_batch("quick_note", notes(2), **kwargs)
    assert (again.generated, again.restored) == (0, 1)
    assert hashlib.sha256(final.read_bytes()).hexdigest() == entry.content_sha256
    _no_temp_files(out)


def test_without_an_archive_a_lost_file_is_rendered_again(tmp_path: Path, record_url: str) -> None:
    """No staged copy and no archive: the file is re-rendered; the record keeps one entry."""
    out = tmp_path / "out"
    kwargs: dict[str, Any] = dict(now=DAYTIME, pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0, channels=["sms"])
    run_batch("quick_note", notes(2), **kwargs)
    (out / out_name("N0000", "sms")).unlink()
    again = run_batch("quick_note", notes(2), **kwargs)
    assert (again.generated, again.rerendered, again.duplicate) == (0, 1, 1)
    assert (out / out_name("N0000", "sms")).exists()


def test_a_quiet_hours_deferral_is_recorded_and_counted_apart_from_suppressions(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any]
) -> None:
    """An SMS in the customer's quiet hours is recorded (suppressed, quiet_hours), no file;
    the summary counts it as deferred, with when the window ends, not as a suppression."""
    out = tmp_path / "out"
    requests = notes(3)
    requests[1]["customer"]["timezone"] = "Asia/Tokyo"  # midnight there: quiet hours
    summary = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES, out=out,
                        record_url=record_url, run_id="r1", workers=0, channels=["sms"],
                        now=DAYTIME)
    assert (summary.generated, summary.suppressed, summary.deferred) == (2, {}, 1)
    assert summary.deferred_until == {
        "earliest": "2025-11-04T08:00:00+09:00", "earliest_zone": "Asia/Tokyo",
        "latest": "2025-11-04T08:00:00+09:00", "latest_zone": "Asia/Tokyo"}
    assert summary.messages == 3 and summary.exit_status == 0
    assert not (out / out_name("N0001", "sms")).exists()
    record = open_record(record_url)
    (entry,) = record.timeline("N0001").to_dict()["messages"]
    assert (entry["status"], entry["reason"]) == ("suppressed", "quiet_hours")
    # The deferral does not hold the run's key: rerun after the window, it is sent once.
    assert record.find_key("r1:quick_note:N0001:sms") is None
    morning_in_tokyo = DAYTIME + timedelta(hours=8, minutes=30)
    rerun = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES, out=out,
                      record_url=record_url, run_id="r1", workers=0, channels=["sms"],
                      now=morning_in_tokyo)
    assert (rerun.generated, rerun.duplicate, rerun.suppressed, rerun.deferred) == (1, 2, {}, 0)
    assert rerun.deferred_until is None
    assert (out / out_name("N0001", "sms")).exists()
    assert record.find_key("r1:quick_note:N0001:sms").status == "generated"


def test_a_rerun_counts_every_recorded_channel_of_a_partly_done_row(
    tmp_path: Path, record_url: str
) -> None:
    """A row whose SMS was deferred but whose PDF and email went out: on a rerun inside the
    quiet hours those two are duplicates and the SMS is deferred again; every message of every
    row is accounted for."""
    out = tmp_path / "out"
    requests = notes(2)
    requests[1]["customer"]["timezone"] = "Asia/Tokyo"  # midnight there: quiet hours
    first = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES, out=out,
                      record_url=record_url, run_id="r1", workers=0, now=DAYTIME)
    assert (first.generated, first.suppressed, first.deferred) == (5, {}, 1)
    rerun = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES, out=out,
                      record_url=record_url, run_id="r1", workers=0, now=DAYTIME)
    assert (rerun.generated, rerun.duplicate, rerun.deferred) == (0, 5, 1)
    assert rerun.messages == 6


def test_each_rerun_inside_quiet_hours_records_another_deferral(
    tmp_path: Path, record_url: str, open_record: Callable[..., Any]
) -> None:
    """As docs/batch.md says: a deferral is not kept under the run's key, so each rerun of
    the same run id inside the window records one more quiet_hours entry for the deferred
    channel, and the rerun after the window sends it once."""
    out = tmp_path / "out"
    requests = notes(1)
    requests[0]["customer"]["timezone"] = "Asia/Tokyo"  # midnight there: quiet hours
    kwargs: dict[str, Any] = dict(pack=PACK, templates=TEST_TEMPLATES, out=out,
                                  record_url=record_url, run_id="r1", workers=0,
                                  channels=["sms"])
    for _ in range(3):
        run_batch("quick_note", requests, now=DAYTIME, **kwargs)
    record = open_record(record_url)
    entries = record.timeline("N0000").messages
    assert [(m.entry.status, m.entry.reason) for m in entries] == [
        ("suppressed", "quiet_hours")] * 3
    run_batch("quick_note", requests, now=DAYTIME + timedelta(hours=8, minutes=30), **kwargs)
    statuses = [m.entry.status for m in record.timeline("N0000").messages]
    assert statuses.count("generated") == 1 and statuses.count("suppressed") == 3


def test_pathological_rows_fail_alone_within_their_budgets(tmp_path: Path, record_url: str) -> None:
    """A 10,000-row table, deep nesting and a huge value fail alone; the other rows render."""
    out = tmp_path / "out"
    phone = "+447700900123"
    nested: Any = "x"
    for _ in range(200):
        nested = [nested]
    rows = [
        {"customer": {"id": "OK1", "phone": phone}, "data": {"rows": ["a", "b"]}},
        {"customer": {"id": "TABLE", "phone": phone},
         "data": {"rows": [f"transaction {i}" for i in range(10_000)]}},
        {"customer": {"id": "DEEP", "phone": phone}, "data": {"rows": nested}},
        {"customer": {"id": "HUGE", "phone": phone}, "data": {"note": "y" * 3_000_000}},
        {"customer": {"id": "OK2", "phone": phone}, "data": {"rows": ["c"]}},
    ]
    summary = run_batch("big_table", rows, pack=PACK, templates=TEST_TEMPLATES, out=out,
                        record_url=record_url, run_id="r1", workers=1, channels=["pdf"],
                        now=DAYTIME)
    errors = {e["customer_id"]: e for e in _errors(out)}
    assert set(errors) == {"TABLE", "DEEP", "HUGE"}
    assert errors["TABLE"]["error"] in ("BudgetError", "WorkerDied")
    assert errors["DEEP"]["error"] == "DataError" and errors["DEEP"]["rule"] == "maxDepth"
    assert errors["HUGE"]["error"] == "DataError" and errors["HUGE"]["rule"] == "maxBytes"
    assert summary.generated == 2 and summary.failed == 3
    assert (out / out_name("OK2", "pdf", "big_table")).exists()


def test_a_worker_over_its_cpu_limit_is_replaced_and_the_row_reported(
    tmp_path: Path, record_url: str
) -> None:
    """Past its CPU budget the worker is killed; the row fails alone and a new worker goes on."""
    out = tmp_path / "out"
    phone = "+447700900123"
    rows = [{"customer": {"id": f"OK{i}", "phone": phone}, "data": {"rows": ["a"]}}
            for i in range(4)]
    rows.insert(2, {"customer": {"id": "SLOW", "phone": phone},
                    "data": {"rows": [f"transaction {i}" for i in range(10_000)]}})
    # The engine's own wall-clock budget would fail the row gracefully; raise it far above
    # the 1 CPU second, so on a busy machine too the CPU limit is what stops the worker.
    templates = tmp_path / "templates"
    shutil.copytree(TEST_TEMPLATES, templates)
    manifest = templates / "big_table" / "template.yaml"
    manifest.write_text(manifest.read_text("utf-8").replace("seconds: 3", "seconds: 60"),
                        "utf-8")
    summary = run_batch("big_table", rows, pack=PACK, templates=templates, out=out,
                        record_url=record_url, run_id="r1", workers=2, channels=["pdf"],
                        limits=WorkerLimits(memory_mb=None, cpu_seconds=1), now=DAYTIME)
    (error,) = _errors(out)
    assert error["customer_id"] == "SLOW" and error["error"] == "WorkerDied"
    assert "--cpu-limit" in error["message"] and "same run id" in error["message"]
    assert summary.workers_replaced >= 1
    assert summary.generated == 4 and summary.failed == 1


def test_a_worker_over_its_memory_budget_fails_the_row_not_the_run(
    tmp_path: Path, record_url: str
) -> None:
    """With a small address-space budget a huge document fails alone; its neighbours render."""
    out = tmp_path / "out"
    phone = "+447700900123"
    rows = [
        {"customer": {"id": "OK1", "phone": phone}, "data": {"rows": ["a"]}},
        {"customer": {"id": "BIG", "phone": phone},
         "data": {"rows": [f"row {i}" for i in range(10_000)]}},
        {"customer": {"id": "OK2", "phone": phone}, "data": {"rows": ["b"]}},
        {"customer": {"id": "OK3", "phone": phone}, "data": {"rows": ["c"]}},
    ]
    summary = run_batch("big_table", rows, pack=PACK, templates=TEST_TEMPLATES, out=out,
                        record_url=record_url, run_id="r1", workers=1, channels=["pdf"],
                        limits=WorkerLimits(memory_mb=64, cpu_seconds=60), now=DAYTIME)
    (error,) = _errors(out)
    assert error["customer_id"] == "BIG"
    assert summary.generated == 3


def test_workers_are_retired_after_their_tasks_so_memory_stays_flat(
    tmp_path: Path, record_url: str
) -> None:
    """Workers are replaced after ``tasks_per_worker`` tasks; no row is lost or repeated."""
    summary = run_batch("quick_note", notes(6), pack=PACK, templates=TEST_TEMPLATES,
                        out=tmp_path / "out", record_url=record_url, run_id="r1", workers=1,
                        channels=["sms"], chunk_size=1,
                        limits=WorkerLimits(tasks_per_worker=2), now=DAYTIME)
    assert (summary.generated, summary.failed, summary.workers_replaced) == (6, 0, 0)
    assert summary.workers_retired >= 2


def test_print_file_is_unencrypted_and_indexed(tmp_path: Path, record_url: str) -> None:
    """``print_file`` writes one plain PDF of every statement in input order, with its index."""
    out = tmp_path / "out"
    requests = notes(3)
    summary = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES, out=out,
                        record_url=record_url, run_id="r1", workers=0, channels=["pdf"],
                        print_file=True, now=DAYTIME)
    assert summary.print_file and summary.print_index
    stream = PdfReader(summary.print_file)
    assert not stream.is_encrypted
    index = list(csv.DictReader(io.StringIO(Path(summary.print_index).read_text())))
    assert [row["customer_id"] for row in index] == ["N0000", "N0001", "N0002"]
    assert [int(row["first_page"]) for row in index] == [1, 2, 3]
    assert len(stream.pages) == sum(int(row["page_count"]) for row in index)
    assert "£11.00" in stream.pages[1].extract_text()  # N0001 has amount 11
    assert PdfReader(out / out_name("N0001", "pdf")).is_encrypted
    _no_temp_files(out)


def test_outputs_can_go_to_an_fsspec_url(record_url: str) -> None:
    """``out`` may be an fsspec URL: files and errors.jsonl appear there, staging is cleaned up."""
    import fsspec

    fs = fsspec.filesystem("memory")
    summary = run_batch("quick_note", notes(3), pack=PACK, templates=TEST_TEMPLATES,
                        out="memory://batch-out", record_url=record_url, run_id="r1",
                        workers=0, channels=["sms", "pdf"], now=DAYTIME)
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find("/batch-out"))
    assert summary.generated == 6
    assert "errors.jsonl" in names and out_name("N0002", "pdf") in names
    assert not any("ccm-staging" in p for p in fs.find("/batch-out", withdirs=True))
    fs.rm("/batch-out", recursive=True)


def test_a_caller_supplied_executor_is_used(tmp_path: Path, record_url: str) -> None:
    """Any ``concurrent.futures.Executor`` can run the work (here a caller's process pool)."""
    out = tmp_path / "out"
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        summary = run_batch("quick_note", notes(5), pack=PACK, templates=TEST_TEMPLATES,
                            out=out, record_url=record_url, run_id="r1", executor=pool,
                            channels=["sms"], now=DAYTIME)
    assert summary.generated == 5 and summary.failed == 0


def test_the_real_statement_renders_through_a_process_pool(tmp_path: Path, record_url: str) -> None:
    """Example monthly statements render on every channel through two worker processes."""
    out = tmp_path / "out"
    summary = run_batch("monthly_statement", statements(4), pack=PACK, templates=TEMPLATES,
                        out=out, record_url=record_url, run_id="r1", workers=2, now=DAYTIME)
    assert summary.failed == 0 and summary.generated == 12
    assert len([n for n in _files(out) if n.endswith(".pdf")]) == 4


def test_configuration_errors_stop_before_any_work(tmp_path: Path, record_url: str) -> None:
    """An unknown template or channel raises at once instead of failing every row."""
    with pytest.raises(UnknownTemplate):
        run_batch("nope", [], pack=PACK, templates=TEST_TEMPLATES, out=tmp_path,
                  record_url=record_url, workers=0, now=DAYTIME)
    with pytest.raises(UnknownChannel):
        run_batch("big_table", [], pack=PACK, templates=TEST_TEMPLATES, out=tmp_path,
                  record_url=record_url, workers=0, channels=["email"], now=DAYTIME)


@pytest.mark.parametrize("fmt", ["jsonl", "zip"])
def test_chunks_hold_each_text_message_once_and_come_back_from_the_archive(
    tmp_path: Path, open_record: Any, master_key: Any, fmt: str
) -> None:
    """JSONL or zip output: one item per SMS/email with the recorded digest; a deleted chunk
    is written again from the record's archive on the next run, each message once."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    record = open_record(url, master_key)
    requests = notes(12)
    out = tmp_path / "out"

    def run() -> Any:
        return run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES, out=out,
                         record_url=record, run_id="j1", workers=0, channels=["sms", "email"],
                         now=DAYTIME, durable=False, output_format=fmt)

    first = run()
    assert first.generated == 24
    made = chunk_items(out, "j1")
    assert sorted((i["customer_id"], i["channel"]) for i in made) == sorted(
        (r["customer"]["id"], c) for r in requests for c in ("sms", "email"))
    for item in made:
        entry = record.find_key(f"j1:quick_note:{item['customer_id']}:{item['channel']}")
        assert item["message_id"] == entry.message_id
        assert hashlib.sha256(item["content"]).hexdigest() == entry.content_sha256
    assert not list(out.glob("*.sms.txt")) and not list(out.glob("*.eml"))
    for chunk in out.glob("messages-j1-*"):
        chunk.unlink()
    again = run()
    assert (again.generated, again.restored, again.duplicate) == (0, 24, 24)
    assert sorted(i["message_id"] for i in chunk_items(out, "j1")) == sorted(
        i["message_id"] for i in made)
    third = run()
    assert (third.restored, third.duplicate) == (0, 24)
    assert len(chunk_items(out, "j1")) == 24


def test_cli_refuses_an_unknown_output_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--output-format tar is refused with a usage error naming the choices, nothing written."""
    from ccm.cli import main

    status = main([
        "batch", "quick_note", "--pack", str(PACK), "--templates", str(TEST_TEMPLATES),
        "--data", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out"),
        "--output-format", "tar"])
    assert status == 2
    err = capsys.readouterr().err
    assert "'files'" in err and "'jsonl'" in err
    assert not (tmp_path / "out").exists()


def test_emails_that_attach_their_pdf_load_the_pdf_channel_before_the_memory_cap(
    tmp_path: Path, record_url: str
) -> None:
    """monthly_statement attaches its PDF to the email: an email-only run makes PDFs too, so
    its workers load WeasyPrint and qpdf before their address-space cap (as a pdf run's do),
    not on the first row under it. Loading and a first layout take about 190 MB of address
    space: under a 128 MB cap that fails every row; after the warm-up the cap leaves room
    for the statements and a Pango thread that starts later (about 72 MB: a stack and a
    malloc arena; 64 MB was too tight for it)."""
    out = tmp_path / "out"
    summary = run_batch("monthly_statement", statements(2), pack=PACK, templates=TEMPLATES,
                        out=out, record_url=record_url, run_id="r1", workers=1,
                        channels=["email"], limits=WorkerLimits(memory_mb=128, cpu_seconds=60),
                        now=DAYTIME)
    assert _errors(out) == []
    assert summary.generated == 2


def _tracked_pack(tmp_path: Path) -> Path:
    pack = tmp_path / "acme"
    shutil.copytree(PACK, pack)
    with (pack / "pack.yaml").open("a", encoding="utf-8") as fh:
        fh.write("\ntracking:\n  base_url: https://t.acme.example\n  pixel: false\n")
    return pack


def test_a_batch_with_document_links_records_the_pdf_each_email_links_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_batch(options=RenderOptions(document_delivery="link")) over every channel: each
    email carries no attachment but a link, and the PDF it links to is in the record."""
    from ccm.record import MasterKey, Record
    from ccm.render.options import RenderOptions

    monkeypatch.setenv("CCM_TRACKING_KEY", "k" * 43)
    record = Record(f"sqlite:///{tmp_path / 'r.db'}", master_key=MasterKey.generate())
    try:
        summary = run_batch("monthly_statement", statements(2), pack=_tracked_pack(tmp_path),
                            templates=TEMPLATES, out=tmp_path / "out", record_url=record,
                            workers=0, now=DAYTIME,
                            options=RenderOptions(document_delivery="link"))
        assert summary.failed == 0 and summary.generated == 6
        for cid in ("C0000", "C0001"):
            channels = {m.entry.channel: m.entry for m in record.timeline(cid).messages}
            assert set(channels) == {"pdf", "email", "sms"}
            assert record.content(channels["pdf"].message_id).startswith(b"%PDF")
            mail = record.content(channels["email"].message_id)
            assert b"https://t.acme.example/d/" in mail and b"application/pdf" not in mail
    finally:
        record.close()


def test_a_batch_with_document_links_needs_base_url_and_the_pdf_channel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Links the setup cannot honour stop the run before any row: a pack without
    tracking.base_url, or a run without the pdf channel (its links would lead nowhere)."""
    from ccm.errors import ConfigError, PackError
    from ccm.render.options import RenderOptions

    monkeypatch.setenv("CCM_TRACKING_KEY", "k" * 43)
    link = RenderOptions(document_delivery="link")
    with pytest.raises(PackError, match=r"needs tracking\.base_url in pack 'acme'"):
        run_batch("monthly_statement", statements(3), pack=PACK, templates=TEMPLATES,
                  out=tmp_path / "out1", record_url=f"sqlite:///{tmp_path / 'r1.db'}",
                  workers=0, now=DAYTIME, options=link)
    with pytest.raises(PackError, match=r"web_version needs tracking\.base_url"):
        run_batch("monthly_statement", statements(3), pack=PACK, templates=TEMPLATES,
                  out=tmp_path / "out2", record_url=f"sqlite:///{tmp_path / 'r2.db'}",
                  channels=["email"], workers=0, now=DAYTIME,
                  options=RenderOptions(web_version=True))
    with pytest.raises(ConfigError, match="needs the pdf channel"):
        run_batch("monthly_statement", statements(3), pack=_tracked_pack(tmp_path),
                  templates=TEMPLATES, out=tmp_path / "out3",
                  record_url=f"sqlite:///{tmp_path / 'r3.db'}", channels=["email"],
                  workers=0, now=DAYTIME, options=link)
    for out in ("out1", "out2", "out3"):
        assert not (tmp_path / out).exists() or _files(tmp_path / out) == []
