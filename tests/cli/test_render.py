"""`ccm render`: files written, JSON lines, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccm.cli import main
from tests.examples_helpers import DAYTIME, PACKS, TEMPLATES, sample


def write_request(tmp_path: Path, request: dict[str, object], name: str = "req.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(request))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_render_writes_files_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one object per message with the documented fields, and the files exist."""
    data = write_request(tmp_path, sample("monthly_statement"))
    code, out, _ = run(
        capsys, "render", "monthly_statement", "--pack", str(PACKS / "acme"),
        "--templates", str(TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
        "--json", "--no-record", "--as-of", DAYTIME.isoformat(),
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [obj["channel"] for obj in lines] == ["pdf", "email", "sms"]
    for obj in lines:
        for key in ("message_id", "customer_id", "template", "channel", "locale", "path", "status"):
            assert key in obj
        assert Path(obj["path"]).is_file()
    sms = lines[2]
    assert sms["encoding"] in ("GSM-7", "UCS-2") and sms["segments"] >= 1
    assert Path(lines[0]["path"]).suffix == ".pdf"
    assert lines[1]["path"].endswith(".eml") and sms["path"].endswith(".sms.txt")


def test_render_one_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--channel renders just that channel."""
    data = write_request(tmp_path, sample("payment_reminder"))
    code, out, _ = run(
        capsys, "render", "payment_reminder", "--pack", str(PACKS / "globex"),
        "--templates", str(TEMPLATES), "--data", str(data), "--out", str(tmp_path),
        "--channel", "sms", "--json", "--no-record",
    )
    assert code == 0
    assert [json.loads(line)["channel"] for line in out.splitlines()] == ["sms"]


def test_bad_data_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid data: exit 1 and a one-line error naming the JSON path."""
    req = sample("payment_reminder")
    req["data"] = {}
    data = write_request(tmp_path, req)
    code, _, err = run(
        capsys, "render", "payment_reminder", "--pack", str(PACKS / "acme"),
        "--templates", str(TEMPLATES), "--data", str(data), "--out", str(tmp_path), "--no-record",
    )
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "$.data" in err


def test_unknown_template_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown template: exit 3 (not found, as in ccm batch) listing the templates there are."""
    data = write_request(tmp_path, sample("payment_reminder"))
    code, _, err = run(
        capsys, "render", "nope", "--pack", str(PACKS / "acme"), "--templates", str(TEMPLATES),
        "--data", str(data), "--out", str(tmp_path), "--no-record",
    )
    assert code == 3 and "payment_reminder" in err


def test_invalid_json_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .jsonl with a broken line: exit 1 naming file and line."""
    path = tmp_path / "reqs.jsonl"
    path.write_text(json.dumps(sample("payment_reminder")) + "\n{oops\n")
    code, _, err = run(
        capsys, "render", "payment_reminder", "--pack", str(PACKS / "acme"),
        "--templates", str(TEMPLATES), "--data", str(path), "--out", str(tmp_path), "--no-record",
    )
    assert code == 1 and "reqs.jsonl:2" in err


def test_bad_pack_exits_1_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken pack.yaml: exit 1 naming pack.yaml."""
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "pack.yaml").write_text("id: [unclosed\n")
    data = write_request(tmp_path, sample("payment_reminder"))
    code, _, err = run(
        capsys, "render", "payment_reminder", "--pack", str(tmp_path / "pack"),
        "--templates", str(TEMPLATES), "--data", str(data), "--out", str(tmp_path), "--no-record",
    )
    assert code == 1 and "pack.yaml" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing required option is a usage error: exit 2."""
    code, _, _ = run(capsys, "render", "monthly_statement")
    assert code == 2


def test_render_says_where_it_recorded_and_whether_content_is_archived(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default record is written; stderr names it, and warns when no master key archives
    the content. With a key the warning goes, and the archive returns the file's bytes."""
    from ccm.record import MasterKey, Record

    data = write_request(tmp_path, sample("payment_reminder"))
    url = f"sqlite:///{tmp_path / 'rec.db'}"
    args = ["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
            str(TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
            "--record", url, "--channel", "sms", "--as-of", "2026-06-01T12:00:00+00:00"]
    monkeypatch.delenv("CCM_MASTER_KEY", raising=False)
    monkeypatch.delenv("CCM_MASTER_KEY_FILE", raising=False)
    code, _, err = run(capsys, *args)
    assert code == 0
    assert f"recorded 1 message(s) in {url}; content not archived: no master key" in err
    # The first render made the record and says so (a mistyped --record would show here).
    assert err.startswith(f"ccm: new record at {url} (there was none): if you meant an "
                          "existing record, check --record or CCM_RECORD_URL\n")

    key = MasterKey.generate()
    monkeypatch.setenv("CCM_MASTER_KEY", key.text())
    code, out, err = run(capsys, *args, "--idempotency-key", "k1", "--json")
    assert code == 0 and err.strip() == f"ccm: recorded 1 message(s) in {url}"
    made = json.loads(out)
    with Record(url, master_key=key) as record:
        assert record.content(made["message_id"]) == Path(made["path"]).read_bytes()


@pytest.mark.parametrize("flag", [["--documents", "link"], ["--web-version"]])
def test_links_without_tracking_base_url_stop_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        flag: list[str]) -> None:
    """A pack without tracking.base_url cannot make links: the run stops at once (exit 1)
    with one error naming the setting and the pack file -- not one per input row -- and
    records nothing (no orphan PDF). The check comes before the record is opened and the
    --out folder made: neither is left behind (docs/cli.md, docs/retrieval.md)."""
    from ccm.record import MasterKey
    from tests.examples_helpers import ROOT

    monkeypatch.setenv("CCM_TRACKING_KEY", "k" * 43)
    monkeypatch.setenv("CCM_MASTER_KEY", MasterKey.generate().text())
    url = f"sqlite:///{tmp_path / 'r.db'}"
    code, out, err = run(
        capsys, "render", "monthly_statement", "--pack", str(PACKS / "acme"), "--templates",
        str(TEMPLATES), "--data", str(ROOT / "examples" / "customers.jsonl"), "--out",
        str(tmp_path / "out"), "--record", url, *flag, "--as-of", "2026-03-02T12:00:00")
    assert code == 1 and out == ""
    assert err.count("ccm: error:") == 1 and "Traceback" not in err
    assert "needs tracking.base_url in pack 'acme'" in err
    assert str(PACKS / "acme" / "pack.yaml") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no r.db, no out/
