"""``ccm render --queue`` run again: a run key makes reruns safe; the document an email
carries is recorded but not queued on its own; setup errors leave nothing behind."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ccm.cli import main
from ccm.record import MasterKey
from tests.examples_helpers import DAYTIME, PACKS, ROOT, TEMPLATES, sample

AS_OF = DAYTIME.isoformat()


@pytest.fixture(autouse=True)
def master_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--queue needs a master key; the CLI reads it from the environment."""
    key_file = tmp_path / "m.key"
    MasterKey.generate_file(key_file)
    monkeypatch.setenv("CCM_MASTER_KEY_FILE", str(key_file))
    monkeypatch.delenv("CCM_MASTER_KEY", raising=False)
    monkeypatch.delenv("CCM_RECORD_URL", raising=False)
    monkeypatch.delenv("CCM_DELIVERY_CONFIG", raising=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def reminder(i: int) -> dict[str, object]:
    request = sample("payment_reminder")
    request["customer"].update({"id": f"C-{i:04d}", "email": f"c{i}@example.com"})
    return request


def render(capsys: pytest.CaptureFixture[str], data: Path, db: Path, *extra: str,
           template: str = "payment_reminder") -> tuple[int, str, str]:
    return run(capsys, "render", template, "--pack", str(PACKS / "acme"), "--templates",
               str(TEMPLATES), "--data", str(data), "--queue", "--record", str(db),
               "--as-of", AS_OF, *extra)


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def by_channel(db: Path, table: str) -> dict[str, int]:
    return dict(rows(db, f"SELECT channel, count(*) FROM {table} GROUP BY channel"))


def test_fixing_a_bad_row_and_running_again_queues_nothing_twice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three rows, the middle one broken: exit 1, the others queued. The row fixed and the
    same command run again (same --idempotency-key): the two good rows are duplicates, not
    errors; only the fixed row is new. Each customer has one email and one SMS queued."""
    db = tmp_path / "r.db"
    data = tmp_path / "rows.jsonl"
    broken = reminder(1)
    del broken["data"]
    data.write_text("".join(json.dumps(r) + "\n" for r in (reminder(0), broken, reminder(2))),
                    "utf-8")
    code, out, err = render(capsys, data, db, "--idempotency-key", "june-reminders")
    assert code == 1 and f"{data}:2:" in err
    assert out.count("queued for") == 4
    assert "recorded 4 message(s)" in err

    data.write_text("".join(json.dumps(reminder(i)) + "\n" for i in range(3)), "utf-8")
    code, out, err = render(capsys, data, db, "--idempotency-key", "june-reminders")
    assert code == 0, err
    assert "ccm: error" not in err and "other parameters" not in err
    assert out.count("duplicate payment_reminder for C-0000") == 2
    assert out.count("duplicate payment_reminder for C-0002") == 2
    assert out.count("queued for") == 2  # C-0001's email and SMS, nothing else
    assert "recorded 2 message(s)" in err
    assert "4 message(s) already recorded under this --idempotency-key" in err
    assert by_channel(db, "messages") == {"email": 3, "sms": 3}
    assert by_channel(db, "outbox") == {"email": 3, "sms": 3}
    per_customer = rows(db, "SELECT customer_id, channel, count(*) FROM outbox "
                            "GROUP BY customer_id, channel")
    assert {n for _, _, n in per_customer} == {1} and len(per_customer) == 6
    # The keys are ccm batch's: RUN:TEMPLATE:CUSTOMER:CHANNEL.
    assert ("june-reminders:payment_reminder:C-0001:sms",) in rows(
        db, "SELECT idempotency_key FROM messages")

    code, _, err = run(capsys, "send", "--dry-run", "--record", str(db), "--as-of", AS_OF)
    assert code == 0 and "ccm: 6 message(s) due" in err


def test_queue_without_a_key_says_a_rerun_queues_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --idempotency-key each run is new (as ccm batch without --run-id), and the
    operator is told so, with the option to give, before anything is rendered."""
    data = tmp_path / "one.json"
    data.write_text(json.dumps(reminder(0)), "utf-8")
    code, _, err = render(capsys, data, tmp_path / "r.db")
    assert code == 0
    assert "no --idempotency-key: running this command again queues every message again" \
        in err and "--idempotency-key RUN" in err


def test_an_empty_key_is_a_usage_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "one.json"
    data.write_text(json.dumps(reminder(0)), "utf-8")
    code, out, err = render(capsys, data, tmp_path / "r.db", "--idempotency-key", " ")
    assert code == 2 and out == "" and "--idempotency-key is empty" in err
    assert not (tmp_path / "r.db").exists()


def test_the_statement_an_email_attaches_is_recorded_not_queued(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--channel email of a statement: each PDF the email attaches is recorded (the archived
    document) and counted as such, but only the emails are queued; ccm send with an
    email-only config then leaves nothing behind."""
    db = tmp_path / "s.db"
    data = ROOT / "examples" / "customers.jsonl"
    n = sum(1 for line in data.read_text("utf-8").splitlines() if line.strip())
    code, out, err = render(capsys, data, db, "--channel", "email", "--idempotency-key", "s1",
                            template="monthly_statement")
    assert code == 0, err
    assert out.count("queued for") == n
    assert (f"recorded {2 * n} message(s) in sqlite:///{db}: {n} email, {n} pdf documents "
            "(carried by the messages, not queued on their own)") in err
    assert by_channel(db, "messages") == {"email": n, "pdf": n}
    assert by_channel(db, "outbox") == {"email": n}

    config = tmp_path / "delivery.yaml"
    config.write_text(f"version: 1\nchannels:\n  email:\n    transport: folder\n"
                      f"    path: {tmp_path / 'sent'}\n", "utf-8")
    code, _, err = run(capsys, "send", "--config", str(config), "--record", str(db),
                       "--as-of", AS_OF)
    assert code == 0 and f"ccm: {n} sent" in err and "warning" not in err
    code, _, err = run(capsys, "send", "--dry-run", "--record", str(db), "--as-of", AS_OF)
    assert code == 0 and "ccm: 0 message(s) due" in err


def test_send_warns_about_messages_due_on_a_channel_without_transport(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An SMS queued and a config with only email: ccm send sends the email and says the
    SMS stays queued (--dry-run lists it as due), instead of ending quietly."""
    db = tmp_path / "r.db"
    data = tmp_path / "one.json"
    data.write_text(json.dumps(reminder(0)), "utf-8")
    assert render(capsys, data, db, "--idempotency-key", "k")[0] == 0
    config = tmp_path / "delivery.yaml"
    config.write_text(f"version: 1\nchannels:\n  email:\n    transport: folder\n"
                      f"    path: {tmp_path / 'sent'}\n", "utf-8")
    code, _, err = run(capsys, "send", "--config", str(config), "--record", str(db),
                       "--as-of", AS_OF)
    assert code == 0 and "ccm: 1 sent" in err
    assert (f"ccm: warning: 1 message(s) due on a channel {config} has no transport for "
            "(1 sms): they stay queued") in err
    assert rows(db, "SELECT channel, state FROM outbox ORDER BY channel") == [
        ("email", "sent"), ("sms", "queued")]


def test_a_locale_the_pack_lacks_leaves_no_record_or_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checked with the other setup checks, before the record is opened and --out made."""
    data = tmp_path / "one.json"
    data.write_text(json.dumps(reminder(0)), "utf-8")
    code, out, err = run(capsys, "render", "payment_reminder", "--pack", str(PACKS / "acme"),
                         "--templates", str(TEMPLATES), "--data", str(data), "--locale", "xx_XX",
                         "--out", str(tmp_path / "out"), "--record", str(tmp_path / "r.db"),
                         "--as-of", AS_OF)
    assert code == 3 and out == "" and "has no locale 'xx_XX'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.key", "one.json"]


def old_form_run(db: Path, request: dict[str, object], key: str,
                 channel: str | None = None) -> None:
    """Record ``request`` as ``ccm render --queue --idempotency-key KEY`` did before run keys:
    ``engine.render(..., idempotency_key=KEY)``, keys ``KEY:CHANNEL`` (a file's later rows
    failed: the key was taken), the messages queued."""
    import ccm
    from ccm.record import Record

    record = Record(f"sqlite:///{db}", master_key=MasterKey.from_env())
    try:
        engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=lambda: DAYTIME,
                            options=ccm.RenderOptions(queue=True))
        engine.render("payment_reminder", request, channel=channel, idempotency_key=key)
    finally:
        record.close()


def test_a_run_recorded_under_the_old_key_form_is_not_made_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A one-row file rendered and queued by an earlier ccm under --idempotency-key K (keys
    K:email, K:sms): the same command run now makes, records and queues nothing, prints both
    as duplicates and says they were found under the key's earlier form; again the same."""
    db = tmp_path / "r.db"
    data = tmp_path / "one.json"
    data.write_text(json.dumps(reminder(0)), "utf-8")
    old_form_run(db, reminder(0), "june-reminders")
    before = rows(db, "SELECT message_id, idempotency_key FROM messages ORDER BY 1")
    assert sorted(str(k) for _, k in before) == ["june-reminders:email", "june-reminders:sms"]
    for _ in range(2):
        code, out, err = render(capsys, data, db, "--idempotency-key", "june-reminders")
        assert code == 0, err
        assert out.count("duplicate payment_reminder for C-0000") == 2
        assert "queued for" not in out and "ccm: recorded" not in err
        assert ("ccm: 2 message(s) already recorded under this --idempotency-key (2 of them "
                "under its earlier form KEY:CHANNEL, as ccm wrote it before run keys): not "
                "recorded or queued again") in err
        assert rows(db, "SELECT message_id, idempotency_key FROM messages ORDER BY 1") == before
        assert by_channel(db, "outbox") == {"email": 1, "sms": 1}
    code, _, err = run(capsys, "send", "--dry-run", "--record", str(db), "--as-of", AS_OF)
    assert code == 0 and "ccm: 2 message(s) due" in err


def test_an_interrupted_old_form_run_is_completed_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The earlier ccm recorded only C-0000's email under K:email (interrupted; the file's
    other rows failed under the old form). Now: that email is a duplicate, C-0000's SMS and
    C-0001's messages are made once; a third run makes nothing. Each customer ends with one
    email and one SMS queued, and a template the old key never named is keyed afresh."""
    db = tmp_path / "r.db"
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(reminder(i)) + "\n" for i in range(2)), "utf-8")
    old_form_run(db, reminder(0), "k", channel="email")
    code, out, err = render(capsys, data, db, "--idempotency-key", "k")
    assert code == 0, err
    assert out.count("duplicate payment_reminder for C-0000 (email") == 1
    assert out.count("queued for") == 3 and "recorded 3 message(s)" in err
    assert "1 message(s) already recorded under this --idempotency-key (1 of them" in err
    code, out, err = render(capsys, data, db, "--idempotency-key", "k")
    assert code == 0 and out.count("duplicate") == 4 and "queued for" not in out
    per_customer = rows(db, "SELECT customer_id, channel, count(*) FROM outbox "
                            "GROUP BY customer_id, channel ORDER BY 1, 2")
    assert per_customer == [("C-0000", "email", 1), ("C-0000", "sms", 1),
                            ("C-0001", "email", 1), ("C-0001", "sms", 1)]
    assert sorted(str(k) for (k,) in rows(db, "SELECT idempotency_key FROM messages")) == [
        "k:email", "k:payment_reminder:C-0001:email", "k:payment_reminder:C-0001:sms", "k:sms"]
