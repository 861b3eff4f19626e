"""What a new user meets first: a plain path as the record, a request of the wrong type,
an unknown customer, an unknown locale, and a bug that must not look like their mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ccm
from ccm.cli import main
from ccm.record import Record
from tests.examples_helpers import PACKS, TEMPLATES, sample

NOON = "2026-06-01T12:00:00+00:00"


def test_a_plain_path_is_a_sqlite_record(tmp_path: Path) -> None:
    """Engine(record="record.db") and Record(path) open a SQLite file at that path."""
    path = tmp_path / "sub" / "record.db"
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=str(path), master_key=None)
    made = engine.render("payment_reminder", sample("payment_reminder"), channel="email")
    assert made.status == "generated" and path.is_file()
    engine.record.close()  # type: ignore[union-attr]
    with Record(path) as record:
        assert record.get(made.message_id).channel == "email"


def test_an_unreadable_record_url_is_a_config_error() -> None:
    """A URL SQLAlchemy cannot parse is a ccm ConfigError naming what to write instead."""
    with pytest.raises(ccm.ConfigError, match=r"sqlite:///path/to/record\.db"):
        Record("postgresql+psycopg://user@host:notaport/db")


def test_a_request_that_is_not_an_object_is_a_data_error() -> None:
    """A list or a number where a request belongs is a DataError, not a TypeError."""
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=None)
    for bad in ([1, 2, 3], 7, "text", None):
        with pytest.raises(ccm.DataError):
            engine.render("payment_reminder", bad, channel="sms")  # type: ignore[arg-type]


def test_render_json_list_of_numbers_exits_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm render` of a JSON list of numbers: exit 1, one line per item, no traceback."""
    data = tmp_path / "numbers.json"
    data.write_text("[1, 2, 3]", "utf-8")
    code = main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--no-record"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and "numbers.json" in err
    assert all(line.startswith("ccm: error: ") for line in err.splitlines())


def test_timeline_of_an_unknown_customer_exits_not_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm record timeline` of a customer with no messages: exit 3 naming the customer."""
    data = tmp_path / "req.json"
    data.write_text(json.dumps(sample("payment_reminder")), "utf-8")
    db = tmp_path / "record.db"
    assert main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--record", str(db), "--channel", "email", "--as-of", NOON]) == 0
    capsys.readouterr()
    assert main(["record", "timeline", "D-0000", "--record", str(db)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ccm: error:") and "'D-0000'" in err
    customer = sample("payment_reminder")["customer"]["id"]
    assert main(["record", "timeline", customer, "--record", str(db)]) == 0


def test_unknown_locale_lists_the_packs_locales(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ccm render --locale fr_FR` on acme: exit 3 listing en_GB and de_DE, no file."""
    data = tmp_path / "req.json"
    data.write_text(json.dumps(sample("payment_reminder")), "utf-8")
    out = tmp_path / "out"
    code = main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--out", str(out), "--no-record",
                 "--locale", "fr_FR"])
    err = capsys.readouterr().err
    assert code == 3 and "en_GB" in err and "de_DE" in err
    assert not list(out.glob("*")) if out.exists() else True


_BUG = """
import sys
import click
from ccm.cli import cli, main

@cli.command("explode")
def explode() -> None:
    {}["missing"]

sys.exit(main(sys.argv[1:]))
"""


def test_a_bug_is_one_line_and_the_traceback_needs_debug(tmp_path: Path) -> None:
    """An unexpected exception: one line saying it is a bug and where to report it, exit 70;
    `ccm --debug` adds the traceback."""
    plain = subprocess.run([sys.executable, "-c", _BUG, "explode"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)
    assert plain.returncode == 70
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("ccm: internal error: KeyError")
    assert "report it" in plain.stderr and "--debug" in plain.stderr
    debug = subprocess.run([sys.executable, "-c", _BUG, "--debug", "explode"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)
    assert debug.returncode == 70 and "Traceback (most recent call last)" in debug.stderr


def test_python_dash_m_ccm_reports_the_distribution_version() -> None:
    """`python -m ccm --version` works and names the installed version."""
    result = subprocess.run([sys.executable, "-m", "ccm", "--version"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0 and ccm.__version__ in result.stdout


def test_offers_come_from_the_offers_address() -> None:
    """senders.email.from_by_type: a marketing email is From the pack's offers address,
    an operational one From the default."""
    import email
    import email.policy

    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=None)
    offer = engine.render("product_offer", sample("product_offer"), channel="email")
    reminder = engine.render("payment_reminder", sample("payment_reminder"), channel="email")
    parse = lambda m: email.message_from_bytes(m.content, policy=email.policy.default)  # noqa: E731
    assert parse(offer)["From"].addresses[0].addr_spec == "offers@acme.example"
    assert parse(reminder)["From"].addresses[0].addr_spec == "statements@acme.example"


@pytest.mark.parametrize("pack", ["acme", "globex"])
def test_the_email_canvas_takes_the_packs_surface_colour(pack: str) -> None:
    """The email's <body> background is the pack's palette.surface (the canvas around the
    card), not the mail client's default white."""
    import email
    import email.policy
    import re

    engine = ccm.Engine(PACKS / pack, TEMPLATES, record=None)
    made = engine.render("welcome", sample("welcome"), channel="email")
    html = email.message_from_bytes(made.content, policy=email.policy.default).get_body(
        ("html",)).get_content()  # type: ignore[union-attr]
    body = re.search(r"<body[^>]*>", html)
    assert body is not None
    assert f"background-color:{engine.pack.palette['surface']}" in body.group(0)
