"""``ccm lint`` on the command line: output formats and exit status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ccm.cli import main
from tests.examples_helpers import TEMPLATES

from .conftest import Project
from .test_rules import EMAIL, add_text


def test_clean_project_exits_zero_and_says_so(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of the examples has no finding: exit 0, nothing on stdout, one line saying so."""
    monkeypatch.chdir(project.root)
    assert main(["lint"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "no findings" in err


def test_warnings_alone_exit_zero_and_are_printed(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings alone exit 0; each prints as ``file:line:column: severity: rule-id: message``
    relative to cwd, then the fix and the docs link."""
    project.weaken_password()
    monkeypatch.chdir(project.root)
    assert main(["lint"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("brand_packs/acme/pack.yaml:")
    assert ": warning: weak-password-rule: the PDF password (date_of_birth) has about 15 bits" \
        in out
    assert "    fix: add a suffix_field the sender does not print " \
        "(docs/lint.md#weak-password-rule)" in out
    assert "1 warning" in err


def test_an_error_exits_one(project: Project, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """An error-severity finding makes ``ccm lint`` exit 1."""
    line = add_text(project, "<mj-text>Please act now.</mj-text>")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--pack", "brand_packs/acme", "--templates", "templates"]) == 1
    out = capsys.readouterr().out
    assert f"{EMAIL}:{line}:17: error: banned-term: 'act now' is banned by the acme tone of " \
        "voice [acme, payment_reminder, email, en_GB, sample 01_en_GB_overdue.json]" in out


def test_a_number_python_will_not_read_exits_one_not_seventy(
        project: Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A 5,000-digit literal is the designer's mistake: a finding at its line, exit 1."""
    line = add_text(project, "<mj-text>{{ " + "9" * 5000 + " }}</mj-text>")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--pack", "brand_packs/acme", "--templates", "templates"]) == 1
    out, err = capsys.readouterr()
    assert f"{EMAIL}:{line}:1: error: render-error: a number of 5000 digits is longer " \
        "than Python reads" in out
    assert "internal error" not in err and "Traceback" not in out + err


def test_json_output_has_every_field(project: Project, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``--format json`` prints a list of objects with place, rule, severity and context."""
    add_text(project, "<mj-text>Please act now.</mj-text>")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--format", "json"]) == 1
    items = json.loads(capsys.readouterr().out)
    banned = next(i for i in items if i["rule"] == "banned-term")
    assert banned["file"] == EMAIL
    assert {k: banned[k] for k in ("severity", "pack", "template", "channel")} == {
        "severity": "error", "pack": "acme", "template": "payment_reminder", "channel": "email"}
    assert banned["locale"] in ("en_GB", "de_DE")


def test_no_packs_is_a_usage_error(tmp_path: object, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Without --pack and without ./brand_packs, ``ccm lint`` says what to do (exit 2)."""
    monkeypatch.chdir(str(tmp_path))
    assert main(["lint"]) == 2
    assert "--pack" in capsys.readouterr().err


def test_text_and_json_report_the_same_findings(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each text finding is the place, severity, rule, message and fix of one JSON item, in the
    same order."""
    add_text(project, "<mj-text>Please act now. Sorry for the problem!</mj-text>")
    monkeypatch.chdir(project.root)
    assert main(["lint"]) == 1
    text = capsys.readouterr().out.splitlines()
    assert main(["lint", "--format", "json"]) == 1
    items = json.loads(capsys.readouterr().out)
    assert len(items) >= 4  # banned, preferred, exclamation, weak password
    assert text[0::2] == [
        f"{i['file']}:{i['line']}:{i['column']}: {i['severity']}: {i['rule']}: {i['message']} "
        f"[{', '.join(v for k in ('pack', 'template', 'channel', 'locale') if (v := i[k]))}"
        f"{', sample ' + i['sample'] if i['sample'] else ''}]" for i in items]
    assert text[1::2] == [f"    fix: {i['fix']} ({i['docs']})" for i in items]


def test_unknown_template_is_named(project: Project, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--template`` with a name that is not there exits 3 and lists the templates."""
    monkeypatch.chdir(project.root)
    assert main(["lint", "--template", "payment_remindr"]) == 3
    err = capsys.readouterr().err
    assert "no template 'payment_remindr'" in err and "payment_reminder" in err
    assert "Traceback" not in err


def test_one_template_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--template ID`` lints that template and leaves the others out."""
    from .conftest import make_project

    project = make_project(tmp_path)
    shutil.copytree(TEMPLATES / "nps_survey", project.templates / "nps_survey")
    project.edit("templates/nps_survey/email.mjml.j2", "{% if data.closes_on is defined %}",
                 "{% if data.closes is defined %}")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--template", "payment_reminder", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # the broken nps_survey is left out
    assert main(["lint", "--template", "nps_survey", "--format", "json"]) == 1
    assert "undeclared-variable" in {i["rule"] for i in json.loads(capsys.readouterr().out)}


def test_fix_on_a_read_only_file_says_so(project: Project, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A fix that cannot be written exits 5 with the file named, no traceback."""
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    add_text(project, "<mj-text>Thank you</mj-text>")
    (project.root / EMAIL).chmod(0o444)
    monkeypatch.chdir(project.root)
    assert main(["lint", "--fix"]) == 5
    assert "cannot write" in capsys.readouterr().err


def test_a_contract_regex_that_can_hang_is_an_unsafe_pattern_error(
        project: Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A nested-quantifier pattern in the contract is named at its line, with the rewrite."""
    contract = "templates/payment_reminder/contract.schema.json"
    project.edit(contract, '"^[A-Za-z0-9][A-Za-z0-9 ./-]*$"', '"^([A-Za-z0-9]+[ ./-]?)+$"')
    line = next(number for number, text in enumerate(
        (project.root / contract).read_text("utf-8").splitlines(), 1) if "[ ./-]?)+$" in text)
    monkeypatch.chdir(project.root)
    assert main(["lint", "--pack", "brand_packs/acme", "--templates", "templates"]) == 1
    out, err = capsys.readouterr()
    assert f"{contract}:{line}:1: error: unsafe-pattern: template 'payment_reminder': " \
        "$.properties.reference.pattern: the pattern '^([A-Za-z0-9]+[ ./-]?)+$' for " \
        "data.reference can take exponential time on a hostile value" in out
    assert "possessive (a++)" in out and "Traceback" not in out + err


def test_a_template_file_linked_out_of_its_folder_is_a_finding_not_the_end(
        project: Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A second template whose SMS source is a symlink to a file outside it is a
    ``render-error`` finding at that file; the other template is still linted (a banned
    term in it is found) and nothing of the linked file is printed. ``ccm lint`` used to stop
    at the refused file with one line, hiding every other finding."""
    outside = project.root / "secret.txt"
    outside.write_text("TOP-SECRET-LINE\n", "utf-8")
    linked = project.templates / "linked"
    shutil.copytree(project.template("payment_reminder"), linked)
    project.edit("templates/linked/template.yaml", "id: payment_reminder", "id: linked")
    (linked / "sms.txt.j2").unlink()
    (linked / "sms.txt.j2").symlink_to(outside)
    line = add_text(project, "<mj-text>Please act now.</mj-text>")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--pack", "brand_packs/acme", "--templates", "templates"]) == 1
    out, err = capsys.readouterr()
    assert "templates/linked/sms.txt.j2:1:1: error: render-error: refused: resolves outside" \
        in out
    assert f"{EMAIL}:{line}:17: error: banned-term:" in out
    assert "TOP-SECRET-LINE" not in out + err
    assert "ccm: error" not in err


def test_a_misspelt_block_is_an_unknown_block_error(
        project: Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``{% block contnet %}`` renders an email without its text and no error (Jinja drops a
    block its layout lacks): lint reports it at its line, suggests the layout's name, exit 1."""
    project.edit(EMAIL, "{% block content %}", "{% block contnet %}")
    line = project.line_of(EMAIL, "{% block contnet %}")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--pack", "brand_packs/acme", "--templates", "templates"]) == 1
    out = capsys.readouterr().out
    assert f"{EMAIL}:{line}:1: error: unknown-block: block 'contnet' is not in " \
        "'pack/email.mjml.j2', the layout this source extends, so what it holds is never " \
        "shown (did you mean 'content'? the layout's blocks: content, preheader, subject)" \
        in out
    assert out.count("unknown-block: ") == 1


def test_a_layout_block_renamed_is_an_unknown_block_error_in_each_template(
        project: Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Renaming the email layout's ``content`` block drops every email's text: each template
    whose email fills ``content`` gets an unknown-block error at its block (not the SMS)."""
    layout = "brand_packs/acme/layouts/email.mjml.j2"
    project.edit(layout, "{% block content %}{% endblock %}", "{% block body %}{% endblock %}")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--pack", "brand_packs/acme", "--templates", "templates"]) == 1
    out = capsys.readouterr().out
    line = project.line_of(EMAIL, "{% block content %}")
    found = [row for row in out.splitlines() if ": unknown-block: " in row]
    assert len(found) == 1, out
    assert found[0].startswith(f"{EMAIL}:{line}:1: error: unknown-block: block 'content' is "
                               "not in 'pack/email.mjml.j2'")
    assert "the layout's blocks: body, preheader, subject" in found[0]
