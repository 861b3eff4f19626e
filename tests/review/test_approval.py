"""Approval: record approved digests, refuse to render sources changed since."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

import ccm
from ccm.cli import main
from ccm.errors import ApprovalError
from ccm.review.approval import (
    approvals_path,
    check_approved,
    default_approvals_path,
    load_approvals,
    record_approval,
)
from tests.examples_helpers import copy_examples, sample

TEMPLATE = "monthly_statement"


@pytest.fixture()
def project(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the acme pack and the templates that a test may change."""
    return copy_examples(tmp_path, "acme")


def strict_engine(pack: Path, templates: Path, approvals: Path | None = None) -> ccm.Engine:
    options = ccm.RenderOptions(require_approval=True, approvals_file=approvals)
    return ccm.Engine(pack, templates, record=None, options=options)


def render_sms(engine: ccm.Engine) -> ccm.Message:
    return engine.render(TEMPLATE, sample(TEMPLATE), "sms", record=False)


def test_approved_template_renders(project: tuple[Path, Path]) -> None:
    """A template approved as it is renders when the engine requires approval."""
    pack, templates = project
    record_approval(strict_engine(pack, templates), TEMPLATE, by="Dana Compliance")
    message = render_sms(strict_engine(pack, templates))
    assert message.status == "generated"
    assert message.text


def test_never_approved_is_refused(project: tuple[Path, Path]) -> None:
    """A template that was never approved is refused, and the error says how to approve it."""
    pack, templates = project
    with pytest.raises(ApprovalError) as info:
        render_sms(strict_engine(pack, templates))
    assert "not approved" in str(info.value)
    assert f"ccm approve {TEMPLATE}" in str(info.value)


def test_edited_template_file_is_named(project: tuple[Path, Path]) -> None:
    """Editing a template file after approval raises ApprovalError naming that file."""
    pack, templates = project
    record_approval(strict_engine(pack, templates), TEMPLATE, by="Dana")
    source = templates / TEMPLATE / "sms.txt.j2"
    source.write_text(source.read_text("utf-8").replace("ready", "waiting"), "utf-8")
    with pytest.raises(ApprovalError) as info:
        render_sms(strict_engine(pack, templates))
    assert f"templates/{TEMPLATE}/sms.txt.j2" in str(info.value)
    assert info.value.changed == [f"templates/{TEMPLATE}/sms.txt.j2"]  # type: ignore[attr-defined]


def test_edited_pack_layout_is_named(project: tuple[Path, Path]) -> None:
    """Editing the pack's layout after approval raises ApprovalError naming the layout."""
    pack, templates = project
    record_approval(strict_engine(pack, templates), TEMPLATE, by="Dana")
    layout = pack / "layouts" / "pdf.css"
    layout.write_text(layout.read_text("utf-8") + "\n/* new rule */\n", "utf-8")
    with pytest.raises(ApprovalError) as info:
        render_sms(strict_engine(pack, templates))
    assert "brand_packs/acme/layouts/pdf.css" in str(info.value)
    assert info.value.changed == ["brand_packs/acme/layouts/pdf.css"]  # type: ignore[attr-defined]


def test_edit_after_engine_was_built_is_refused(project: tuple[Path, Path]) -> None:
    """A file changed on disk after the engine loaded is caught too (Jinja would read it)."""
    pack, templates = project
    engine = strict_engine(pack, templates)
    record_approval(engine, TEMPLATE, by="Dana")
    render_sms(engine)
    source = templates / TEMPLATE / "sms.txt.j2"
    source.write_text(source.read_text("utf-8") + "\n", "utf-8")
    with pytest.raises(ApprovalError, match=r"sms\.txt\.j2"):
        render_sms(engine)


def test_added_and_removed_files_are_named(project: tuple[Path, Path]) -> None:
    """A file added to the template and one removed from the pack are listed as such."""
    pack, templates = project
    record_approval(strict_engine(pack, templates), TEMPLATE, by="Dana")
    engine = strict_engine(pack, templates)
    (templates / TEMPLATE / "notes.txt").write_text("draft", "utf-8")
    (pack / "assets" / "logo.png").unlink()
    with pytest.raises(ApprovalError) as info:
        check_approved(engine, engine.template(TEMPLATE))
    err = info.value
    assert err.added == [f"templates/{TEMPLATE}/notes.txt"]  # type: ignore[attr-defined]
    assert err.removed == ["brand_packs/acme/assets/logo.png"]  # type: ignore[attr-defined]
    assert "added: templates/" in str(err) and "removed: brand_packs/" in str(err)


def test_approval_is_per_pack(tmp_path: Path) -> None:
    """Approving a template in one pack does not approve it in another."""
    acme, templates = copy_examples(tmp_path, "acme")
    globex, _ = copy_examples(tmp_path / "g", "globex")
    approvals = tmp_path / "approvals.json"
    record_approval(strict_engine(acme, templates, approvals), TEMPLATE, by="Dana",
                    path=approvals)
    with pytest.raises(ApprovalError, match="'globex' is not approved"):
        render_sms(strict_engine(globex, templates, approvals))


def test_approvals_file_is_diff_friendly(project: tuple[Path, Path]) -> None:
    """The approvals file is sorted, indented JSON with one file digest per line and who/when."""
    pack, templates = project
    engine = strict_engine(pack, templates)
    when = datetime(2025, 11, 3, 9, 30, tzinfo=UTC)
    record_approval(engine, TEMPLATE, by="Dana", now=when)
    path = default_approvals_path(templates)
    assert path == templates.parent / "approvals.json" == approvals_path(engine)
    text = path.read_text("utf-8")
    doc = json.loads(text)
    entry = doc["approvals"]["acme"][TEMPLATE]
    assert entry["approved_by"] == "Dana"
    assert entry["approved_at"] == "2025-11-03T09:30:00+00:00"
    assert entry["sources_sha256"] == engine.sources_sha256(engine.template(TEMPLATE))
    assert "layouts/pdf.html.j2" in entry["pack_files"]
    assert "sms.txt.j2" in entry["template_files"]
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert '      "sms.txt.j2": "' in text  # one file per line


def test_reapproval_replaces_only_that_entry(project: tuple[Path, Path]) -> None:
    """Approving again after an edit updates that pair and keeps the others."""
    pack, templates = project
    engine = strict_engine(pack, templates)
    record_approval(engine, TEMPLATE, by="Dana")
    record_approval(engine, "payment_reminder", by="Dana")
    source = templates / TEMPLATE / "sms.txt.j2"
    source.write_text(source.read_text("utf-8") + "\n", "utf-8")
    record_approval(strict_engine(pack, templates), TEMPLATE, by="Lee")
    approvals = load_approvals(default_approvals_path(templates))
    assert approvals[("acme", TEMPLATE)].approved_by == "Lee"
    assert approvals[("acme", "payment_reminder")].approved_by == "Dana"
    render_sms(strict_engine(pack, templates))


def test_approval_error_pickles_with_its_files(project: tuple[Path, Path]) -> None:
    """ApprovalError keeps the changed files when it crosses a process boundary."""
    pack, templates = project
    record_approval(strict_engine(pack, templates), TEMPLATE, by="Dana")
    (templates / TEMPLATE / "sms.txt.j2").write_text("changed", "utf-8")
    with pytest.raises(ApprovalError) as info:
        render_sms(strict_engine(pack, templates))
    again = pickle.loads(pickle.dumps(info.value))
    assert again.changed == info.value.changed  # type: ignore[attr-defined]
    assert str(again) == str(info.value)


def test_malformed_approvals_file_names_the_line(project: tuple[Path, Path]) -> None:
    """A broken approvals file is an ApprovalError naming the file and line."""
    pack, templates = project
    path = default_approvals_path(templates)
    path.write_text('{\n  "format": 1,\n  oops\n}\n', "utf-8")
    with pytest.raises(ApprovalError, match=r"approvals\.json:3: invalid JSON"):
        render_sms(strict_engine(pack, templates))


def test_approve_command(project: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm approve` records the approval next to the templates folder and says so."""
    pack, templates = project
    code = main(["approve", TEMPLATE, "--pack", str(pack), "--templates", str(templates),
                 "--by", "Dana Compliance"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"approved {TEMPLATE}" in out and "Dana Compliance" in out
    approvals = load_approvals(templates.parent / "approvals.json")
    assert approvals[("acme", TEMPLATE)].approved_by == "Dana Compliance"
    render_sms(strict_engine(pack, templates))


def test_approve_command_unknown_template(project: tuple[Path, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm approve` of an unknown template fails with one line (exit 3) listing the templates."""
    pack, templates = project
    code = main(["approve", "nope", "--pack", str(pack), "--templates", str(templates)])
    err = capsys.readouterr().err
    assert code == 3  # NOT_FOUND (docs/cli.md)
    assert err.startswith("ccm: error: unknown template 'nope'")
    assert TEMPLATE in err
