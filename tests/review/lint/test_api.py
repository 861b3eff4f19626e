"""The Python API: configuration, deduplication, one view for the preview, rendered checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ccm
import ccm.review.lint
from ccm.errors import RenderError
from ccm.review.lint import RULES, Finding, findings_for, lint_rendered
from tests.examples_helpers import TEMPLATES

from .conftest import Project, make_project, rules, where
from .test_rules import EMAIL, add_text

MANIFEST = "brand_packs/acme/pack.yaml"


def test_public_names_are_exactly_all() -> None:
    """``ccm.review.lint.__all__`` is sorted and lists every public name of the package."""
    public = {n for n, v in vars(ccm.review.lint).items()
              if not n.startswith("_") and n != "annotations" and not hasattr(v, "__file__")}
    lint_all = ccm.review.lint.__all__
    assert lint_all == sorted(lint_all, key=lambda n: (not n.isupper(), n))
    assert set(ccm.review.lint.__all__) == public


def test_rule_ids_are_kebab_case_with_a_severity() -> None:
    """Every rule id is kebab-case and has a default severity."""
    for rule in RULES.values():
        assert rule.id == rule.id.lower() and " " not in rule.id and "_" not in rule.id
        assert rule.severity in ("error", "warning", "info")


def test_finding_prints_as_file_line_rule_message() -> None:
    """A finding's text form is ``file:line:column: severity: rule-id: message``; its dict has
    every field, the fix and the link to the rule's docs."""
    f = Finding("a.j2", 3, "banned-term", "error", "bad", pack="acme", column=7)
    assert str(f) == "a.j2:3:7: error: banned-term: bad"
    assert set(f.to_dict()) == {"file", "line", "column", "rule", "severity", "message", "pack",
                                "template", "channel", "locale", "sample", "fix", "fixable",
                                "docs"}
    assert f.to_dict()["docs"] == "docs/lint.md#banned-term"


def test_disabled_rules_are_dropped(project: Project) -> None:
    """``lint.disabled`` in pack.yaml switches a rule off for that pack."""
    add_text(project, "<mj-text>Please act now.</mj-text>")
    project.edit(MANIFEST, "  disabled: []",
                 "  disabled: [banned-term, weak-password-rule, untranslated-text]")
    assert project.lint() == []


def test_severity_overrides_apply(project: Project) -> None:
    """``lint.severity`` changes a rule's severity for that pack."""
    add_text(project, "<mj-text>Please act now.</mj-text>")
    project.edit(MANIFEST, "  severity: {}", "  severity: {banned-term: info}")
    assert [f.severity for f in rules(project.lint(), "banned-term")] == ["info"]


def test_unknown_rule_ids_in_the_config_are_reported(project: Project) -> None:
    """A misspelt rule id in ``lint.disabled`` is a lint-config warning at the lint section."""
    project.edit(MANIFEST, "  disabled: []", "  disabled: [banned-terms]")
    found = rules(project.lint(), "lint-config")
    assert [(where(f, project.root), f.severity) for f in found] == [
        ((MANIFEST, project.line_of(MANIFEST, "lint:")), "warning")]


def test_findings_are_deduplicated_across_samples_and_locales(tmp_path: Path) -> None:
    """One template line breaking a rule in 2 samples x 2 locales is reported once."""
    project = make_project(tmp_path, samples=2)
    add_text(project, "<mj-text>Please act now.</mj-text>")
    assert len(rules(project.lint(), "banned-term")) == 1


def test_findings_for_one_view_covers_its_channel_only(project: Project) -> None:
    """findings_for gives the email's findings for the email, not for the SMS."""
    line = add_text(project, "<mj-text>Please act now.</mj-text>")
    project.edit(MANIFEST, "  disabled: []", "  disabled: [untranslated-text]")
    engine = ccm.Engine(project.pack, project.templates, record=None)
    request = json.loads(project.sample("payment_reminder").read_text("utf-8"))
    email = findings_for(engine, "payment_reminder", "email", "en_GB", request)
    assert [(where(f, project.root), f.rule) for f in email] == [((EMAIL, line), "banned-term")]
    assert findings_for(engine, "payment_reminder", "sms", "en_GB", request) == []


def test_findings_for_reports_contract_violations(project: Project) -> None:
    """A request that breaks the contract gives contract-violation findings, not an exception."""
    engine = ccm.Engine(project.pack, project.templates, record=None)
    request = json.loads(project.sample("payment_reminder").read_text("utf-8"))
    request["data"]["amount"] = -1
    found = findings_for(engine, "payment_reminder", "email", None, request)
    assert [f.rule for f in found] == ["contract-violation"]
    assert found[0].message.startswith("$.data.amount:")


def test_the_password_warning_shows_on_confidential_pdfs_only(tmp_path: Path) -> None:
    """The weak password warning shows on a confidential statement's PDF, not on a letter."""
    project = make_project(tmp_path, template="welcome")
    shutil.copytree(TEMPLATES / "monthly_statement", project.template("monthly_statement"))
    project.weaken_password()
    engine = ccm.Engine(project.pack, project.templates, record=None)
    letter = json.loads(project.sample("welcome").read_text("utf-8"))
    assert findings_for(engine, "welcome", "pdf", "en_GB", letter) == []
    statement = json.loads(project.sample("monthly_statement").read_text("utf-8"))
    found = findings_for(engine, "monthly_statement", "pdf", "en_GB", statement,
                         result=RenderError("not rendered in this test"))
    assert sorted(f.rule for f in found) == ["render-error", "weak-password-rule"]


def test_lint_rendered_turns_an_error_into_a_finding(project: Project) -> None:
    """An error the preview already caught becomes a render-error at its file and line."""
    engine = ccm.Engine(project.pack, project.templates, record=None)
    request = json.loads(project.sample("payment_reminder").read_text("utf-8"))
    error = RenderError("boom", path="templates/payment_reminder/email.mjml.j2", line=7)
    found = lint_rendered(engine, "payment_reminder", "email", "en_GB", request, error)
    assert [(where(f, project.root), f.rule, f.message) for f in found] == [
        ((EMAIL, 7), "render-error", "boom")]


def test_lint_rendered_checks_a_message(project: Project) -> None:
    """A rendered message is checked as it is: here, its legal text."""
    engine = ccm.Engine(project.pack, project.templates, record=None)
    request = json.loads(project.sample("payment_reminder").read_text("utf-8"))
    message = engine.render("payment_reminder", request, "email", "en_GB", record=False)
    assert lint_rendered(engine, "payment_reminder", "email", "en_GB", request, message) == []


def test_lint_raises_nothing_for_a_missing_templates_folder(tmp_path: Path) -> None:
    """A templates folder that does not exist is a finding."""
    project = make_project(tmp_path)
    found = ccm.review.lint.lint([project.pack], tmp_path / "nowhere")
    assert "render-error" in {f.rule for f in found}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_is_documented_with_a_bad_and_a_good_example(rule: str) -> None:
    """docs/lint.md has a section per rule id with a bad and a good example."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "lint.md").read_text("utf-8")
    heading = f"### `{rule}`"
    assert heading in doc
    section = doc.split(heading, 1)[1].split("\n### ", 1)[0]
    starts = [line.split(" ")[0].rstrip(":") for line in section.split("\n")]
    assert "Bad" in starts and "Good" in starts


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_has_a_test_that_makes_it_fire(rule: str) -> None:
    """Each rule id is asserted on by name in the rule tests (a new rule needs its test)."""
    here = Path(__file__).resolve().parent
    tests = "\n".join(p.read_text("utf-8") for p in sorted(here.glob("test_*.py")))
    assert f'"{rule}"' in tests or f"'{rule}'" in tests or f": {rule}:" in tests


@pytest.mark.parametrize("doc", ["lint.md", "designer-guide.md"])
def test_docs_show_only_real_rule_ids(doc: str) -> None:
    """Example findings and ``lint:`` settings in the docs name rules that exist."""
    import re

    text = (Path(__file__).resolve().parents[3] / "docs" / doc).read_text("utf-8")
    shown = set(re.findall(r"^\S+:\d+: (?!error:|warning:|info:)([a-z-]+): ", text,
                           re.MULTILINE))
    shown |= set(re.findall(r"^\S+:\d+:\d+: (?:error|warning|info): ([a-z-]+): ", text,
                            re.MULTILINE))
    for disabled in re.findall(r"^\s*disabled: \[(.*)\]", text, re.MULTILINE):
        shown |= {d.strip() for d in disabled.split(",") if d.strip()}
    for severity in re.findall(r"^\s*severity: \{(.*)\}", text, re.MULTILINE):
        shown |= {s.split(":")[0].strip() for s in severity.split(",") if s.strip()}
    assert shown and shown <= set(RULES), sorted(shown - set(RULES))
