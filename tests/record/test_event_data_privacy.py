"""Event data is stored in clear and chained: it never takes an email address or phone number."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccm.cli import main
from ccm.record import MasterKey, Record

from ._support import T0, entry, raw_rows

EMAIL = "ada.quill@example.org"
PHONE = "+44 7700 900461"


@pytest.fixture
def db(tmp_path: Path, master_key: MasterKey, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite record file with one archived email for customer C1."""
    monkeypatch.setenv("CCM_MASTER_KEY", master_key.text())
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)
    path = tmp_path / "record.db"
    rec = Record(path, master_key=master_key)
    rec.append(entry("C1", message_id="m1", created_at=T0), content=b"Dear Ada")
    rec.close()
    return path


@pytest.mark.parametrize(("data", "where"), [
    (f'{{"email": "{EMAIL}"}}', "$.email: an email address"),
    (f'{{"note": "called {PHONE}"}}', "$.note: a phone number"),
    (f'{{"bounce": {{"to": ["{EMAIL}"]}}}}', "$.bounce.to[0]: an email address"),
    (f'{{"url": "https://acme.example/p?e={EMAIL}"}}', "$.url: an email address"),
    (f'{{"{EMAIL}": 1}}', "$: a key that is an email address or a phone number"),
])
def test_cli_refuses_personal_data_and_erasure_leaves_none(
        db: Path, data: str, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm record event --data` with an address or number exits 2 naming where, not what;
    nothing is recorded, so after an erase no byte of it is in the file."""
    code = main(["record", "event", "m1", "bounced", "--data", data, "--record", str(db)])
    out, err = capsys.readouterr()
    assert code == 2
    assert where in err and "erasing the customer cannot remove it" in err
    assert EMAIL not in out + err and PHONE not in out + err and "Traceback" not in err
    assert main(["record", "erase", "C1", "--yes", "--record", str(db)]) == 0
    capsys.readouterr()
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert EMAIL.encode() not in raw and PHONE.encode() not in raw
    with Record(db, read_only=True) as rec:
        assert list(rec.events("m1")) == []
        assert rec.verify().ok


def test_cli_keeps_codes_ids_and_times(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What event data is for (codes, ids, channels, a date, a plain link) is recorded."""
    data = ('{"bounce": "hard", "status": "5.1.1", "smtp_code": "550", "at": '
            '"2026-12-08T03:54:41.919235+00:00", "provider_id": "SM0123456789abcdef0123456789abcd",'
            ' "url": "https://acme.example/offer/123456789"}')
    code = main(["record", "event", "m1", "bounced", "--data", data, "--record", str(db)])
    assert code == 0, capsys.readouterr().err
    with Record(db, read_only=True) as rec:
        assert [e.data["smtp_code"] for e in rec.events("m1") if e.data] == ["550"]


def test_add_event_refuses_personal_data(record: Record) -> None:
    """`Record.add_event` raises ValueError naming the JSON path; the value is not in it."""
    record.append(entry("C1", message_id="m1", created_at=T0), content=b"x")
    with pytest.raises(ValueError, match=r"\$\.reply\[1\]: a phone number") as caught:
        record.add_event("m1", "bounced", at=T0, data={"reply": ["busy", PHONE]})
    assert PHONE not in str(caught.value)
    with pytest.raises(ValueError, match=r"\$\.who: an email address"):
        record.add_event_once("m1", "complained", at=T0, data={"who": EMAIL})
    assert raw_rows(record, "events") == []


def test_a_tracked_click_keeps_its_url(record: Record) -> None:
    """The library leaves a click's `url` to the lint (personal-data-in-link): the click is kept."""
    record.append(entry("C1", message_id="m1", created_at=T0), content=b"x")
    url = f"https://acme.example/p?e={EMAIL}"
    added = record.add_event_once("m1", "clicked", at=T0, data={"url": url}, same_data=True)
    assert added is not None and added.data == {"url": url}


def test_a_resolve_note_with_personal_data_is_refused(
        tmp_path: Path, master_key: MasterKey, capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm send --resolve ID --note` with a phone number exits 1 naming `$.note`, not the
    number, and leaves the message in review with no event; a plain note settles it."""
    from ccm.record.outbox import Outbox, Queue

    db = tmp_path / "record.db"
    with Record(db, master_key=master_key) as rec:
        rec.append(entry("C1", message_id="q-1", created_at=T0), content=b"Dear Ada",
                   queue=Queue(recipient=EMAIL, due_at=T0))
        Outbox(rec).transition("q-1", "sending", at=T0, sender="s1")
        Outbox(rec).transition("q-1", "review", at=T0)
        before = len(raw_rows(rec, "events"))
    args = ["send", "--record", str(db), "--resolve", "q-1", "--as", "sent",
            "--as-of", "2026-03-02T13:00:00+00:00", "--note"]
    assert main([*args, f"customer confirmed on {PHONE}"]) == 1
    err = capsys.readouterr().err
    assert "$.note: a phone number" in err and PHONE not in err and "Traceback" not in err
    with Record(db, master_key=master_key) as rec:
        assert Outbox(rec).get("q-1").state == "review"  # type: ignore[union-attr]
        assert len(raw_rows(rec, "events")) == before
    assert main([*args, "in the relay log"]) == 0
