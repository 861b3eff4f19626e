"""The runnable examples in examples/, run as a user runs them: in a subprocess."""

from __future__ import annotations

import email
import email.policy
import io
import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from ccm.message import output_filename
from ccm.record import MasterKey, Record

from .examples_helpers import ROOT, TEMPLATES

EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.mark.slow
def test_demo_renders_records_and_verifies(tmp_path: Path) -> None:
    """`make demo`'s script: files for every customer, a record that verifies, a timeline,
    the same output at any hour (a fixed clock), and a rerun that says what exists."""
    out = tmp_path / "out"
    result = run_example("demo.py", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "created a local master key" in result.stdout
    assert "record verify: ok" in result.stdout
    assert "the contact policy sees 2026-06-01T15:00:00+00:00" in result.stdout
    customers = [json.loads(line) for line in
                 (EXAMPLES / "customers.jsonl").read_text("utf-8").splitlines() if line.strip()]
    first = customers[0]["customer"]["id"]
    assert f"timeline of customer {first}" in result.stdout
    # The fixed clock: 08:00 in Los Angeles is inside globex's SMS quiet hours, every run.
    assert "D-3002: sms quiet hours 20:00-09:00 in America/Los_Angeles" in result.stdout

    pdfs = sorted(out.rglob("*monthly_statement*.pdf"))
    assert len(pdfs) == len(customers)
    emls = list(out.rglob("*.eml"))
    smss = list(out.rglob("*.sms.txt"))
    assert emls and smss

    # Each customer gets the sample data of their own locale: dollars in the US, and the
    # German salutation comes from the customer, not a "Sehr geehrte(r)" guess.
    us_file = out / "globex" / "payment_reminder" / output_filename(
        "D-3001", "payment_reminder", "en_US", "email")
    us = email.message_from_bytes(us_file.read_bytes(), policy=email.policy.default)
    us_text = us.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "$" in us_text and "£" not in us_text
    de_file = out / "acme" / "welcome" / output_filename("D-2001", "welcome", "de_DE", "email")
    de = email.message_from_bytes(de_file.read_bytes(), policy=email.policy.default)
    de_text = de.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Sehr geehrter Herr Schäfer," in de_text and "(r)" not in de_text

    record = Record(f"sqlite:///{out / 'record.db'}",
                    master_key=MasterKey.from_file(out / "master.key"))
    try:
        assert record.verify().ok
        timeline = record.timeline(first).to_dict()
        statement = next(m for m in timeline["messages"]
                         if m["template"] == "monthly_statement" and m["channel"] == "pdf")
        assert statement["created_at"].startswith("2026-06-01T15:00")
        # The archive returns exactly the bytes written to out/.
        written = next(p for p in pdfs if first in p.name)
        assert record.content(statement["message_id"]) == written.read_bytes()
    finally:
        record.close()

    # A second run changes nothing and says what exists, where, and how to start over.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run_example("demo.py", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "the demo has run already" in again.stdout and "--fresh" in again.stdout
    assert f"{len(before) - 2} files" in again.stdout  # all but record.db and master.key
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    # --fresh starts over (one customer, to keep the test short).
    one = tmp_path / "one.jsonl"
    one.write_text((EXAMPLES / "customers.jsonl").read_text("utf-8").splitlines()[0] + "\n")
    fresh = run_example("demo.py", "--out", str(out), "--fresh", "--customers", str(one),
                        cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "created a local master key" in fresh.stdout
    assert len(list(out.rglob("*.pdf"))) == 2  # D-1001's statement and welcome letter


#: Midday UTC: outside every pack's quiet hours, whatever the hour the tests run.
DAYTIME = "2026-06-01T12:00:00+00:00"


def test_billing_app_sends_once_per_invoice(tmp_path: Path) -> None:
    """The event arrives twice; the email with the encrypted statement is sent once."""
    out = tmp_path / "billing"
    result = run_example("billing_app.py", "--out", str(out), "--as-of", DAYTIME, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "emails handed to the transport: 1"
    statuses = [line.split()[:2] for line in lines[:-1]]
    assert statuses == [["email", "generated"], ["sms", "generated"],
                        ["email", "duplicate"], ["sms", "duplicate"]]
    first_id, retry_id = lines[0].split()[2], lines[2].split()[2]
    assert first_id == retry_id

    (eml,) = (out / "outbox").glob("*.eml")
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    reader = PdfReader(io.BytesIO(attachment.get_content()))
    assert reader.is_encrypted


def test_render_folder_reports_bad_files_and_goes_on(tmp_path: Path) -> None:
    """A folder with one good and one broken request: the good one renders, exit 1 names the bad."""
    folder = tmp_path / "requests"
    folder.mkdir()
    sample = sorted((TEMPLATES / "payment_reminder" / "samples").glob("*.json"))[0]
    shutil.copy(sample, folder / "a-good.json")
    bad = json.loads(sample.read_text("utf-8"))
    del bad["customer"]["id"]
    (folder / "b-bad.json").write_text(json.dumps(bad), "utf-8")
    (folder / "c-not-json.json").write_text("{", "utf-8")
    out = tmp_path / "out"
    result = run_example("render_folder.py", str(folder), "--template", "payment_reminder",
                         "--out", str(out), "--as-of", "2026-06-01T15:00:00+00:00", cwd=tmp_path)
    assert result.returncode == 1
    assert "a-good.json: email ->" in result.stdout
    assert "a-good.json: sms ->" in result.stdout
    assert "b-bad.json: error:" in result.stderr and "id" in result.stderr
    assert "c-not-json.json: error:" in result.stderr
    assert len(list(out.glob("*.eml"))) == 1 and len(list(out.glob("*.sms.txt"))) == 1


def test_render_folder_reports_a_suppressed_message_and_writes_no_file(tmp_path: Path) -> None:
    """Without a record the contact policy still applies: an SMS at 23:00 in the customer's
    time zone is reported suppressed (quiet_hours), and no empty file is written for it."""
    folder = tmp_path / "requests"
    folder.mkdir()
    sample = sorted((TEMPLATES / "payment_reminder" / "samples").glob("*.json"))[0]
    shutil.copy(sample, folder / "a.json")
    zone = json.loads(sample.read_text("utf-8"))["customer"]["timezone"]
    night = datetime(2026, 6, 1, 23, 0, tzinfo=ZoneInfo(zone)).isoformat()
    out = tmp_path / "out"
    result = run_example("render_folder.py", str(folder), "--template", "payment_reminder",
                         "--out", str(out), "--as-of", night, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "a.json: sms suppressed: quiet_hours" in result.stdout
    assert len(list(out.glob("*.eml"))) == 1 and not list(out.glob("*.sms.txt"))
