"""Approval: record approved digests, refuse to render sources changed since."""

from __future__ import annotations

import io
import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

import ccm
from ccm.cli import main
from ccm.errors import ApprovalError, AssetError, UnsafeFileError
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


# -- every file that shapes a message is covered, or refused ------------------------------
# The reproduction of a finding: a hidden layout snippet (the pack's digest skips hidden
# files) and a stylesheet in a folder shared by the templates (no template's digest covers
# it) could change an approved PDF without changing its sources_sha256.

PDF_TEMPLATE = "welcome"


def approve_with_cli(pack: Path, templates: Path, approvals: Path) -> None:
    code = main(["approve", PDF_TEMPLATE, "--pack", str(pack), "--templates", str(templates),
                 "--approvals", str(approvals), "--by", "Dana Compliance"])
    assert code == 0


def refused_by_cli(pack: Path, templates: Path, approvals: Path, template: str,
                   capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``ccm approve`` that must refuse: exit 1, one error, no approval written."""
    code = main(["approve", template, "--pack", str(pack), "--templates", str(templates),
                 "--approvals", str(approvals), "--by", "Dana Compliance"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert err.startswith("ccm: error: ") and "Traceback" not in err
    assert "not approved" in err and "run ccm approve again" in err
    assert not approvals.exists()
    return err


def render_pdf_text(pack: Path, templates: Path, approvals: Path | None = None
                    ) -> tuple[ccm.Message, str]:
    """The PDF of the sample; with ``approvals``, from an engine that requires approval."""
    from pypdf import PdfReader

    engine = (strict_engine(pack, templates, approvals) if approvals is not None
              else ccm.Engine(pack, templates, record=None))
    message = engine.render(PDF_TEMPLATE, sample(PDF_TEMPLATE), "pdf", record=False)
    assert message.content is not None
    reader = PdfReader(io.BytesIO(message.content))
    return message, "\n".join(page.extract_text() for page in reader.pages)


def add_to_source(path: Path, marker: str, addition: str) -> None:
    text = path.read_text("utf-8")
    assert marker in text
    path.write_text(text.replace(marker, marker + addition, 1), "utf-8")


def test_hidden_layout_snippet_is_refused_before_and_after_a_change(
        project: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A layout including a hidden file (which no digest covers) is refused: neither
    approved nor rendered."""
    pack, templates = project
    approvals = tmp_path / "approvals.json"
    snippet = pack / "layouts" / ".snip.j2"
    snippet.write_text("<p>HIDDEN v1</p>", "utf-8")
    add_to_source(pack / "layouts" / "pdf.html.j2", "{% block content %}{% endblock %}",
                  '{% include "pack/.snip.j2" %}')
    err = refused_by_cli(pack, templates, approvals, PDF_TEMPLATE, capsys)
    assert ".snip.j2" in err and "hidden" in err and "HIDDEN" not in err
    for version in ("v1", "v2"):
        snippet.write_text(f"<p>HIDDEN {version}</p>", "utf-8")
        with pytest.raises(UnsafeFileError) as info:
            render_pdf_text(pack, templates)
        assert ".snip.j2" in str(info.value) and "hidden" in str(info.value)
        assert "HIDDEN" not in str(info.value)


def test_hidden_file_reached_through_a_symlinked_folder_is_refused(
        project: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A visible folder that is a symlink to a hidden one is no way round the rule."""
    pack, templates = project
    approvals = tmp_path / "approvals.json"
    (pack / ".drafts").mkdir()
    (pack / ".drafts" / "snip.j2").write_text("<p>HIDDEN v1</p>", "utf-8")
    (pack / "layouts" / "parts").symlink_to(pack / ".drafts")
    add_to_source(pack / "layouts" / "pdf.html.j2", "{% block content %}{% endblock %}",
                  '{% include "pack/parts/snip.j2" %}')
    assert "'.drafts' is hidden" in refused_by_cli(pack, templates, approvals, PDF_TEMPLATE,
                                                   capsys)
    with pytest.raises(UnsafeFileError, match=r"'\.drafts' is hidden"):
        render_pdf_text(pack, templates)


def test_stylesheet_shared_by_templates_is_refused(
        project: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A PDF asset outside the pack and the template's own folder fails the render."""
    pack, templates = project
    approvals = tmp_path / "approvals.json"
    (templates / "shared").mkdir()
    css = templates / "shared" / "s.css"
    add_to_source(templates / PDF_TEMPLATE / "pdf.html.j2", "{% block content %}",
                  '<link rel="stylesheet" href="../../templates/shared/s.css"><p class="x"></p>')
    css.write_text('p.x::after { content: "SHARED v0" }\n', "utf-8")
    assert "shared/s.css" in refused_by_cli(pack, templates, approvals, PDF_TEMPLATE, capsys)
    for version in ("v1", "v2"):
        css.write_text(f'p.x::after {{ content: "SHARED {version}" }}\n', "utf-8")
        with pytest.raises(AssetError) as info:
            render_pdf_text(pack, templates)
        assert "shared/s.css" in str(info.value) and "outside the pack" in str(info.value)
        assert "template's own folder" in str(info.value)


def test_stylesheet_in_the_template_folder_is_covered_by_approval(
        project: tuple[Path, Path], tmp_path: Path) -> None:
    """A PDF asset in the template's own folder renders, and a change to it is named."""
    pack, templates = project
    approvals = tmp_path / "approvals.json"
    css = templates / PDF_TEMPLATE / "s.css"
    css.write_text('p.x::after { content: "OWN v1" }\n', "utf-8")
    add_to_source(templates / PDF_TEMPLATE / "pdf.html.j2", "{% block content %}",
                  f'<link rel="stylesheet" href="../../templates/{PDF_TEMPLATE}/s.css">'
                  '<p class="x"></p>')
    approve_with_cli(pack, templates, approvals)
    message, text = render_pdf_text(pack, templates, approvals)
    assert "OWN v1" in text
    approved = message.sources_sha256
    css.write_text('p.x::after { content: "OWN v2" }\n', "utf-8")
    with pytest.raises(ApprovalError) as info:
        render_pdf_text(pack, templates, approvals)
    assert info.value.changed == [f"templates/{PDF_TEMPLATE}/s.css"]  # type: ignore[attr-defined]
    approve_with_cli(pack, templates, approvals)
    message, text = render_pdf_text(pack, templates, approvals)
    assert "OWN v2" in text and message.sources_sha256 != approved


def test_hidden_pack_asset_is_refused(project: tuple[Path, Path], tmp_path: Path) -> None:
    """A hidden stylesheet in the pack (the pack's digest skips it) fails the render."""
    pack, templates = project
    approvals = tmp_path / "approvals.json"
    (pack / "assets" / ".extra.css").write_text('p.x::after { content: "HIDDEN" }', "utf-8")
    add_to_source(pack / "layouts" / "pdf.html.j2", "{% block content %}{% endblock %}",
                  '<link rel="stylesheet" href="assets/.extra.css"><p class="x"></p>')
    with pytest.raises(ApprovalError, match=r"\.extra\.css.*hidden.*not approved") as info:
        record_approval(strict_engine(pack, templates, approvals), PDF_TEMPLATE, by="Dana",
                        path=approvals)
    assert isinstance(info.value.__cause__, AssetError) and not approvals.exists()
    with pytest.raises(AssetError, match=r"\.extra\.css.*hidden"):
        render_pdf_text(pack, templates)


def test_include_of_another_templates_file_is_refused(
        project: tuple[Path, Path], tmp_path: Path) -> None:
    """A template includes only its own files and the pack's: another one's escapes its digest."""
    pack, templates = project
    approvals = tmp_path / "approvals.json"
    (templates / "shared").mkdir()
    (templates / "shared" / "note.txt.j2").write_text("SHARED v1", "utf-8")
    add_to_source(templates / TEMPLATE / "sms.txt.j2", "{% block content %}",
                  '{% include "templates/shared/note.txt.j2" %}')
    with pytest.raises(ApprovalError, match="not approved") as refused:
        record_approval(strict_engine(pack, templates, approvals), TEMPLATE, by="Dana",
                        path=approvals)
    assert isinstance(refused.value.__cause__, UnsafeFileError) and not approvals.exists()
    with pytest.raises(UnsafeFileError) as info:
        ccm.Engine(pack, templates, record=None).render(
            TEMPLATE, sample(TEMPLATE), "sms", record=False)
    assert "templates/shared/note.txt.j2" in str(info.value)
    assert f"its own folder (templates/{TEMPLATE}/)" in str(info.value)


# -- what a render refuses is not approved --------------------------------------------
# Each edit below was approved before (exit 0) while every render of the template failed.

REFUSED_EDITS = {
    "syntax error": ("{% block content %}", "{{ customer.name ", "email.mjml.j2:"),
    "missing layout": ('{% extends "pack/email.mjml.j2" %}',
                       '{% extends "pack/no_such_layout.mjml.j2" %}', "no_such_layout"),
    "nesting": ("{% block content %}", "{{ " + "(" * 60 + "1" + ")" * 60 + " }}",
                "nested deeper than"),
    "sandbox": ("{% block content %}", "{{ customer.name.__class__.__mro__ }}",
                "blocked by the sandbox"),
}


@pytest.mark.parametrize("edit", sorted(REFUSED_EDITS))
def test_approve_refuses_what_a_render_refuses(
        edit: str, project: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm approve` exits 1 naming the file and what to do when a render of it fails."""
    pack, templates = project
    marker, addition, expected = REFUSED_EDITS[edit]
    source = templates / PDF_TEMPLATE / "email.mjml.j2"
    if edit == "missing layout":
        source.write_text(source.read_text("utf-8").replace(marker, addition), "utf-8")
    else:
        add_to_source(source, marker, addition)
    with pytest.raises(ccm.errors.CCMError) as rendered:
        ccm.Engine(pack, templates, record=None).render(
            PDF_TEMPLATE, sample(PDF_TEMPLATE), "email", record=False)
    assert expected in str(rendered.value)
    err = refused_by_cli(pack, templates, tmp_path / "approvals.json", PDF_TEMPLATE, capsys)
    assert expected in err and f"templates/{PDF_TEMPLATE}/email.mjml.j2" in err
    assert "ccm lint" in err


def test_approve_refuses_a_sample_that_is_not_json(
        project: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sample approval cannot read is named, not approved around."""
    pack, templates = project
    (templates / PDF_TEMPLATE / "samples" / "09_broken.json").write_text("{", "utf-8")
    err = refused_by_cli(pack, templates, tmp_path / "approvals.json", PDF_TEMPLATE, capsys)
    assert "samples/09_broken.json:1: invalid JSON: Expecting property name" in err


def test_check_sources_renders_nothing_into_the_record(
        project: tuple[Path, Path], tmp_path: Path) -> None:
    """Engine.check_sources compiles and renders samples without approval or a record entry."""
    pack, templates = project
    from ccm.record import Record

    record = Record(f"sqlite:///{tmp_path / 'r.db'}")
    engine = ccm.Engine(pack, templates, record=record,
                        options=ccm.RenderOptions(require_approval=True,
                                                  approvals_file=tmp_path / "none.json"))
    engine.check_sources(TEMPLATE, [sample(TEMPLATE)])
    assert not record.timeline(sample(TEMPLATE)["customer"]["id"]).messages
    record.close()
