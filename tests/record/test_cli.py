"""``ccm record ...`` in-process: output, files written, exit statuses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccm.cli.record import record as record_group
from ccm.pack import load_pack
from ccm.record import MasterKey, Record

from ._support import T0, entry, raw_sql

CHECKPOINT_KEY = "cli-checkpoint-key-0123456789abcdef"


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def filled(record_url: str, key: MasterKey) -> Record:
    """A record with one customer's email (opened) and PDF, and a second customer."""
    rec = Record(record_url, master_key=key)
    rec.append(entry("C1", message_id="m-mail", created_at=T0), content=b"Subject: Hi\r\n\r\nBody")
    rec.append(entry("C1", message_id="m-pdf", channel="pdf", message_type="operational",
                     created_at=T0), content=b"%PDF encrypted", archival=b"%PDF/A copy")
    rec.add_event("m-mail", "opened", at=T0)
    rec.append(entry("C2", message_id="m-other", created_at=T0))
    yield rec
    rec.close()


@pytest.fixture
def run(record_url: str, key: MasterKey, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke ``ccm record ARGS --record URL`` with the master key in the environment."""
    monkeypatch.setenv("CCM_MASTER_KEY", key.text())
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)
    monkeypatch.delenv("CCM_CHECKPOINT_KEY", raising=False)
    runner = CliRunner()

    def _run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(record_group, [*args, "--record", record_url], input=input)

    return _run


def test_timeline_json(filled: Record, run) -> None:  # type: ignore[no-untyped-def]
    """timeline --json prints customer_id, summary and messages with their events."""
    result = run("timeline", "C1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["customer_id"] == "C1"
    assert {m["message_id"] for m in doc["messages"]} == {"m-mail", "m-pdf"}
    mail = next(m for m in doc["messages"] if m["message_id"] == "m-mail")
    assert [e["kind"] for e in mail["events"]] == ["opened"]
    assert doc["summary"]["engagement_rate"]["email"] == 1.0


def test_timeline_text(filled: Record, run) -> None:  # type: ignore[no-untyped-def]
    """Plain timeline output has one line per message and the engagement rates."""
    result = run("timeline", "C1")
    assert result.exit_code == 0
    assert "2 generated, 0 suppressed" in result.output
    assert "[opened]" in result.output and "email 100%" in result.output


def test_timeline_html(filled: Record, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """timeline --html writes the people's page (made by ccm.engagement.reports)."""
    page = tmp_path / "timeline.html"
    result = run("timeline", "C1", "--html", str(page))
    assert result.exit_code == 0, result.output
    assert "m-mail" in page.read_text() or "offer" in page.read_text()


def test_report_html_in_the_brands_colours(filled: Record, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """report --html --pack writes the organisation page: charts, counts, the pack's colours."""
    page = tmp_path / "report.html"
    pack = Path(__file__).resolve().parents[2] / "brand_packs" / "acme"
    result = run("report", "--html", str(page), "--pack", str(pack))
    assert result.exit_code == 0, result.output
    text = page.read_text("utf-8")
    assert text.count("<svg") >= 3 and "offer@2" in text
    assert load_pack(pack).palette["primary"] in text
    later = run("report", "--since", "2099-01-01", "--html", str(page))
    assert later.exit_code == 0 and "offer@2" not in page.read_text("utf-8")


def test_verify_ok_and_bad(filled: Record, run) -> None:  # type: ignore[no-untyped-def]
    """verify exits 0 on an intact record and 1 naming the first bad entry."""
    ok = run("verify")
    assert ok.exit_code == 0 and ok.output.startswith("ok: 4 entries of 2 customer(s)")
    raw_sql(filled, "UPDATE messages SET template = 'x' WHERE message_id = 'm-pdf'")
    bad = run("verify")
    assert bad.exit_code == 1
    assert "first bad: customer 'C1' entry 2 (message m-pdf)" in bad.output
    as_json = json.loads(run("verify", "--json").output)
    assert as_json["ok"] is False and "m-pdf" in as_json["first_bad"]


def test_checkpoint_and_verify_against_it(filled: Record, run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """checkpoint writes a signed head; verify --checkpoint catches truncation after it."""
    key_file = tmp_path / "cp.key"
    key_file.write_text(CHECKPOINT_KEY)
    out = tmp_path / "cp.json"
    made = run("checkpoint", "--out", str(out), "--key-file", str(key_file))
    assert made.exit_code == 0, made.output
    monkeypatch.setenv("CCM_CHECKPOINT_KEY", CHECKPOINT_KEY)
    assert run("verify", "--checkpoint", str(out)).exit_code == 0
    raw_sql(filled, "DELETE FROM chain WHERE customer_id = 'C2'",
            "DELETE FROM messages WHERE message_id = 'm-other'")
    assert run("verify").exit_code == 0
    cut = run("verify", "--checkpoint", str(out), "--key-file", str(key_file))
    assert cut.exit_code == 1 and "customer 'C2' entry 1" in cut.output


def test_checkpoint_without_key_is_an_error(filled: Record, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Without a checkpoint key the command fails with one line naming the variable."""
    result = run("checkpoint", "--out", str(tmp_path / "cp.json"))
    assert result.exit_code == 1
    assert result.output.strip().startswith("ccm: error:") and "CCM_CHECKPOINT_KEY" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_show_writes_exact_bytes(filled: Record, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """show prints the entry and writes the exact content and archival bytes."""
    content, archival = tmp_path / "c.pdf", tmp_path / "a.pdf"
    result = run("show", "m-pdf", "--content", str(content), "--archival", str(archival))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["message_id"] == "m-pdf"
    assert content.read_bytes() == b"%PDF encrypted"
    assert archival.read_bytes() == b"%PDF/A copy"


def test_show_unknown_message(filled: Record, run) -> None:  # type: ignore[no-untyped-def]
    """An unknown message id is a one-line error with exit status 3 (not found)."""
    result = run("show", "nope")
    assert result.exit_code == 3
    assert result.output.strip() == "ccm: error: no message 'nope' in the record"


def test_erase_asks_then_shreds(filled: Record, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """erase asks first (no answer: nothing happens); --yes erases and verify still passes."""
    refused = run("erase", "C1", input="n\n")
    assert refused.exit_code == 1
    assert "ccm: error: not confirmed: nothing was erased" in refused.output
    assert "run the command again" not in refused.output
    no_answer = run("erase", "C1", input="")
    assert no_answer.exit_code == 1 and "nothing was erased" in no_answer.output
    assert filled.content("m-mail")
    done = run("erase", "C1", "--yes")
    assert done.exit_code == 0 and "erased customer C1" in done.output
    gone = run("show", "m-mail", "--content", str(tmp_path / "x"))
    assert gone.exit_code == 1 and "erased" in gone.output
    assert run("verify").exit_code == 0


def test_export_to_file(filled: Record, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """export --out writes the customer's JSON with decrypted content."""
    out = tmp_path / "c1.json"
    result = run("export", "C1", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    mail = next(m for m in doc["messages"] if m["message_id"] == "m-mail")
    assert mail["content"]["data"] == "Subject: Hi\r\n\r\nBody"


def test_event_command(filled: Record, run) -> None:  # type: ignore[no-untyped-def]
    """event adds an event with data and time; bad input is a usage error (exit 2)."""
    added = run("event", "m-mail", "clicked", "--data", '{"url": "https://a.example"}',
                "--at", "2025-03-04T10:00:00+00:00")
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["data"] == {"url": "https://a.example"}
    assert [e.kind for e in filled.events("m-mail")] == ["opened", "clicked"]
    assert run("event", "m-mail", "liked").exit_code == 2
    assert run("event", "m-mail", "sent", "--data", "{nope").exit_code == 2
    assert run("event", "m-mail", "sent", "--at", "2025-03-04T10:00").exit_code == 2
    assert run("event", "nope", "sent").exit_code == 3


def test_features_csv(filled: Record, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """features --out writes one CSV row per customer under a fixed header."""
    out = tmp_path / "features.csv"
    result = run("features", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["customer_id"] for r in rows] == ["C1", "C2"]
    assert rows[0]["email_engagement_rate"] == "1.0" and rows[1]["sms_recency_days"] == ""


def test_features_csv_cannot_run_in_a_spreadsheet(record_url: str, run,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    """Customer ids starting with = + - @ tab or CR are written with a leading quote."""
    hostile = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tT", "\rR", "C3"]
    with Record(record_url) as rec:
        for cid in hostile:
            rec.append(entry(cid, created_at=T0))
    out = tmp_path / "features.csv"
    result = run("features", "--out", str(out))
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as fh:
        cells = {row["customer_id"] for row in csv.DictReader(fh)}
    assert cells == {"'" + cid for cid in hostile[:-1]} | {"C3"}


def test_record_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --record the URL comes from CCM_RECORD_URL."""
    url = f"sqlite:///{tmp_path / 'env.db'}"
    Record(url).append(entry("ENV"))
    monkeypatch.setenv("CCM_RECORD_URL", url)
    result = CliRunner().invoke(record_group, ["timeline", "ENV", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["customer_id"] == "ENV"


def test_main_cli_mounts_the_group() -> None:
    """`ccm record --help` lists every subcommand."""
    from ccm.cli import cli

    result = CliRunner().invoke(cli, ["record", "--help"])
    assert result.exit_code == 0
    for name in ("timeline", "verify", "checkpoint", "show", "erase", "export", "event",
                 "features", "report"):
        assert name in result.output


def test_every_subcommand_takes_record_url() -> None:
    """Each `ccm record` subcommand has a --record URL option."""
    import click

    ctx = click.Context(record_group)
    names = record_group.list_commands(ctx)
    assert {"timeline", "verify", "checkpoint", "show", "erase", "export", "event", "features",
            "report"} <= set(names)
    for name in names:
        command = record_group.get_command(ctx, name)
        assert command is not None
        assert any("--record" in p.opts for p in command.params), name


@pytest.mark.parametrize("args", [
    ["timeline", "C1", "--json"], ["verify"], ["show", "m1"], ["export", "C1"],
    ["features", "--out", "{tmp}/f.csv"], ["report", "--html", "{tmp}/r.html"],
    ["timeline", "C1", "--html", "{tmp}/t.html"],
])
def test_a_mistyped_record_path_is_an_error_not_an_empty_record(
    tmp_path: Path, args: list[str]
) -> None:
    """Reading commands never create a record: a wrong path fails, naming it, and makes no file
    (an empty record would otherwise 'verify' and show an empty timeline)."""
    missing = tmp_path / "typo" / "record.db"
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(record_group, [*args, "--record", f"sqlite:///{missing}"])
    assert result.exit_code == 3, result.output
    assert "no record at" in result.output and str(missing) in result.output
    assert not missing.exists() and not missing.parent.exists()


def test_a_database_without_a_record_is_refused(record_url: str) -> None:
    """On either backend, a database without the record's tables is refused by reading commands."""
    result = CliRunner().invoke(record_group, ["verify", "--record", record_url])
    assert result.exit_code == 3 and "no record at" in result.output


@pytest.mark.parametrize("attempt", range(3))
def test_show_and_timeline_list_same_instant_events_in_the_order_added(
        filled: Record, run, attempt: int) -> None:  # type: ignore[no-untyped-def]
    """A bounce and its suppression (and a send's queued/sending/sent) at one instant are
    listed by ``record show`` and ``record timeline`` in the order they happened."""
    kinds = ["queued", "sending", "sent", "bounced", "suppressed"]
    for kind in kinds:
        filled.add_event("m-pdf", kind, at=T0)
    shown = run("show", "m-pdf")
    assert shown.exit_code == 0, shown.output
    assert [e["kind"] for e in json.loads(shown.output)["events"]] == kinds
    timeline = run("timeline", "C1", "--json")
    assert timeline.exit_code == 0, timeline.output
    pdf = next(m for m in json.loads(timeline.output)["messages"] if m["message_id"] == "m-pdf")
    assert [e["kind"] for e in pdf["events"]] == kinds


def test_erase_says_what_it_could_not_reach(record_url: str, key: MasterKey, run) -> None:  # type: ignore[no-untyped-def]
    """erase of a customer with two messages still queued says they can no longer be sent
    (it said only "audit entries kept", and `ccm send --dry-run` then listed them as due),
    and always names what lies outside the record: the files render and batch wrote."""
    from ccm.record.outbox import Queue

    with Record(record_url, master_key=key) as rec:
        for mid in ("q-1", "q-2"):
            rec.append(entry("C9", message_id=mid, created_at=T0),
                       content=b"Subject: Hi\r\n\r\nBody",
                       queue=Queue(recipient="c9@example.com", due_at=T0))
        rec.append(entry("C9", message_id="m-kept", channel="pdf", created_at=T0),
                   content=b"%PDF encrypted")
    done = run("erase", "C9", "--yes")
    assert done.exit_code == 0, done.output
    assert "erased customer C9: data key destroyed, 3 archived part(s) deleted" in done.output
    assert "2 message(s) waiting in the outbox can no longer be sent" in done.output
    assert "not erased (outside the record): files that ccm render or ccm batch wrote" \
        in done.output
    assert "print-*.pdf" in done.output and "docs/privacy.md#" in done.output
    assert "c9@example.com" not in done.output


def test_erase_fails_what_waits_to_be_sent_and_leaves_review_to_a_person(
        record_url: str, key: MasterKey, run) -> None:  # type: ignore[no-untyped-def]
    """The customer's queued messages are failed in the erasure's own transaction ("the
    customer was erased"), so nothing of theirs is due afterwards (`ccm send --dry-run`
    listed them as due until a sender failed them); one in review stays for a person; the
    record still verifies."""
    from datetime import timedelta

    from ccm.record.outbox import ERASED, Outbox, Queue

    with Record(record_url, master_key=key) as rec:
        for mid in ("q-1", "q-2", "q-3"):
            rec.append(entry("C9", message_id=mid, created_at=T0),
                       content=b"Subject: Hi\r\n\r\nBody",
                       queue=Queue(recipient="c9@example.com", due_at=T0))
        outbox = Outbox(rec)
        outbox.transition("q-3", "sending", at=T0, sender="s1")
        outbox.transition("q-3", "review", at=T0)
    done = run("erase", "C9", "--yes")
    assert done.exit_code == 0, done.output
    assert "2 message(s) waiting in the outbox can no longer be sent" in done.output
    assert "marked failed, nothing of this customer is due" in done.output
    assert ("1 message(s) in review (sent or not, unknown) stay for you to resolve: "
            "ccm send --resolve MESSAGE_ID --as sent|failed") in done.output
    with Record(record_url, master_key=key) as rec:
        outbox = Outbox(rec)
        assert outbox.due(now=T0 + timedelta(days=365)) == []
        states = {i.message_id: (i.state, i.error) for i in outbox.items()}
        assert states == {"q-1": ("failed", ERASED), "q-2": ("failed", ERASED),
                          "q-3": ("review", None)}
        assert rec.verify().ok
    dry = run("erase", "C9", "--yes")  # erased already, nothing archived since
    assert dry.exit_code != 0 and "already erased" in dry.output


def test_erase_of_an_empty_id_is_a_usage_error(filled: Record, run) -> None:  # type: ignore[no-untyped-def]
    """``ccm record erase ""`` (an unset shell variable) is exit 2, not a search of the record
    for a customer with an empty id ("customer  has no entry", exit 3)."""
    result = run("erase", "", "--yes")
    assert result.exit_code == 2
    assert "give the CUSTOMER to erase" in result.output
