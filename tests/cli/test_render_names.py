"""`ccm render`: one file per message whatever the customer ids, never overwriting another."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccm.cli import main
from ccm.message import output_filename
from ccm.record import Record
from tests.examples_helpers import PACKS, TEMPLATES, sample
from tests.strategies import request_ids

AS_OF = "2026-06-01T12:00:00+00:00"  # midday: outside every quiet hour


def requests_for(ids: list[str], path: Path) -> Path:
    """A .jsonl of the payment reminder sample, once per customer id."""
    lines = []
    for cid in ids:
        req = sample("payment_reminder")
        req["customer"]["id"] = cid
        lines.append(json.dumps(req, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def render(capsys: pytest.CaptureFixture[str], data: Path, out: Path, url: str,
           *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    record = [] if "--no-record" in extra else ["--record", url]
    code = main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--out", str(out), *record,
                 "--as-of", AS_OF, "--json", *extra])
    stdout, err = capsys.readouterr()
    return code, [json.loads(line) for line in stdout.split("\n") if line], err


def assert_files_match_record(url: str, out: Path, made: list[dict[str, Any]]) -> None:
    """One file per generated message, holding exactly the bytes the record vouches for."""
    generated = [m for m in made if m["status"] == "generated"]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(m["path"]).name for m in generated)
    with Record(url) as record:
        for m in generated:
            entry = record.get(m["message_id"])
            path = Path(m["path"])
            assert path.parent == out
            assert path.name == output_filename(entry.customer_id, entry.template, entry.locale,
                                                entry.channel)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.content_sha256


@pytest.mark.parametrize("ids", [
    ["C/1", "C_1", "_C_1"],
    ["张伟10", "李娜10"],
    ["АБ-7", "ВГ-7"],
    [".", ".."],
    ["LPT1", "CON", "nul.txt"],
], ids=["separators", "chinese", "cyrillic", "dots", "devices"])
def test_ids_from_the_issue_each_get_their_own_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ids: list[str]
) -> None:
    """Ids whose readable names meet still get one file each, matching the record."""
    url = f"sqlite:///{tmp_path / 'rec.db'}"
    out = tmp_path / "out"
    code, made, err = render(capsys, requests_for(ids, tmp_path / "r.jsonl"), out, url,
                             "--channel", "email")
    assert code == 0, err
    assert [m["customer_id"] for m in made] == ids
    assert len({m["path"] for m in made}) == len(ids)
    assert_files_match_record(url, out, made)


def test_non_latin_ids_keep_their_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Chinese or Cyrillic id is readable in its file name, a plain id is unchanged."""
    url = f"sqlite:///{tmp_path / 'rec.db'}"
    data = requests_for(["张伟10", "АБ-7", "C1"], tmp_path / "r.jsonl")
    code, made, _ = render(capsys, data, tmp_path / "out", url, "--channel", "sms")
    assert code == 0
    names = [Path(m["path"]).name for m in made]
    assert names[0].startswith("张伟10-payment_reminder-en_GB-")
    assert names[1].startswith("АБ-7-payment_reminder-en_GB-")
    assert names[2].startswith("C1-payment_reminder-en_GB-") and names[2].endswith(".sms.txt")


def test_another_message_under_the_same_name_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second message for the same customer finds the name taken: exit 1, the first file stays,
    and the error says how to get the second message from the record's archive."""
    from ccm.record import MasterKey

    monkeypatch.setenv("CCM_MASTER_KEY", MasterKey.generate().text())
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)
    url = f"sqlite:///{tmp_path / 'rec.db'}"
    out = tmp_path / "out"
    data = requests_for(["C1"], tmp_path / "r.jsonl")
    code, first, _ = render(capsys, data, out, url, "--channel", "sms")
    assert code == 0
    before = Path(first[0]["path"]).read_bytes()
    req = sample("payment_reminder")
    req["customer"]["id"] = "C1"
    req["data"]["amount"] = 999.99
    other = tmp_path / "other.json"
    other.write_text(json.dumps(req))
    code, second, err = render(capsys, other, out, url, "--channel", "sms")
    assert code == 1
    assert second[0]["status"] == "generated" and second[0]["path"] is None
    assert "already holds another message" in err and "other.json:1" in err
    assert f"ccm record show {second[0]['message_id']} --content FILE" in err
    assert Path(first[0]["path"]).read_bytes() == before
    assert len(list(out.iterdir())) == 1


def test_the_same_message_again_is_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that already holds exactly this message's bytes counts as written."""
    out = tmp_path / "out"
    data = requests_for(["C1"], tmp_path / "r.jsonl")
    args = ("--channel", "sms", "--no-record")
    code, first, _ = render(capsys, data, out, "unused", *args)
    code2, second, err = render(capsys, data, out, "unused", *args)
    assert (code, code2) == (0, 0), err
    assert first[0]["path"] == second[0]["path"]


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(request_ids(), min_size=1, max_size=5, unique=True))
def test_distinct_ids_never_share_a_file(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], ids: list[str]
) -> None:
    """Arbitrary Unicode ids: one file per message, each holding the digest the record has."""
    tmp = tmp_path_factory.mktemp("ids")
    url = f"sqlite:///{tmp / 'rec.db'}"
    out = tmp / "out"
    code, made, err = render(capsys, requests_for(ids, tmp / "r.jsonl"), out, url,
                             "--channel", "sms")
    assert code == 0, err
    assert sorted(m["customer_id"] for m in made) == sorted(ids)
    assert_files_match_record(url, out, made)


def test_a_taken_name_without_a_record_is_reported_in_plain_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json and without a record: the line says not written, the error what to do."""
    out = tmp_path / "out"
    data = requests_for(["C1"], tmp_path / "r.jsonl")
    assert render(capsys, data, out, "unused", "--channel", "sms", "--no-record")[0] == 0
    taken = next(out.iterdir())
    taken.write_bytes(b"a statement for someone else")
    code = main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--out", str(out), "--no-record",
                 "--as-of", AS_OF, "--channel", "sms"])
    stdout, err = capsys.readouterr()
    assert code == 1
    assert "not written" in stdout and "Traceback" not in err
    assert f"r.jsonl:1: {taken} already holds another message" in err
    assert "render into an empty --out folder" in err and "record show" not in err
    assert taken.read_bytes() == b"a statement for someone else"

