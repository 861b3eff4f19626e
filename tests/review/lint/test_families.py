"""The rule families of issue 14 on real pack and template files, where a designer can act."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from ccm.cli import main
from ccm.review.lint import RULES, format_sarif
from tests.examples_helpers import ROOT

from .conftest import Project, make_project, rules, where
from .test_rules import EMAIL, HEADING, LAYOUT, add_text

MANIFEST = "brand_packs/acme/pack.yaml"
CSS = "brand_packs/acme/layouts/pdf.css"
TPL_PO_DE = "templates/payment_reminder/locales/de_DE/LC_MESSAGES/messages.po"
PACK_PO_DE = "brand_packs/acme/locales/de_DE/LC_MESSAGES/messages.po"


def col(project: Project, rel: str, needle: str) -> tuple[int, int]:
    """``(line, column)`` of the first ``needle`` in file ``rel``, 1-based."""
    for number, row in enumerate((project.root / rel).read_text("utf-8").split("\n"), 1):
        if needle in row:
            return number, row.index(needle) + 1
    raise AssertionError(f"{needle!r} not in {rel}")


# -- the two false alarms ---------------------------------------------------------------


def test_interest_free_is_not_the_preferred_term_free(project: Project) -> None:
    """'interest-free' is an allowed phrase: no preferred-term for 'free' inside it."""
    add_text(project, '<mj-text>{{ _("An interest-free overdraft.") }}</mj-text>')
    project.edit(MANIFEST, "  disabled: []", "  disabled: [missing-translation]")
    assert rules(project.lint(), "preferred-term") == []


def test_free_alone_is_still_the_preferred_term(project: Project) -> None:
    """'free' on its own still asks for 'at no extra cost'."""
    line = add_text(project, '<mj-text>{{ _("Card delivery is free.") }}</mj-text>')
    found = rules(project.lint(), "preferred-term")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "at no extra cost" in found[0].message


def test_declared_acronyms_are_not_shouting(project: Project) -> None:
    """EURIBOR (declared in tone.acronyms) is not shouting; 'PAY NOW' is, as one phrase."""
    add_text(project, '<mj-text>{{ _("Your rate follows EURIBOR. PAY NOW.") }}</mj-text>')
    found = rules(project.lint(), "shouting")
    assert [f.message.split(" is ")[0] for f in found] == ["'PAY NOW'"]


def test_banned_variant_is_named_as_a_variant(project: Project) -> None:
    """A declared variant ('act today') is banned and names the term it varies."""
    add_text(project, '<mj-text>{{ _("Please act today.") }}</mj-text>')
    found = rules(project.lint(), "banned-term")
    assert "a variant of 'act now'" in found[0].message


# -- typography ---------------------------------------------------------------------------


def test_font_not_in_pack_points_at_the_stylesheet_column(project: Project) -> None:
    """A family outside the pack's fonts and fallbacks is reported at its place in pdf.css."""
    project.edit(CSS, "  font-family: var(--font-body);", "  font-family: 'Comic Sans MS';")
    found = rules(project.lint(), "font-not-in-pack")
    assert [(where(f, project.root), f.column) for f in found] == [
        ((CSS, col(project, CSS, "'Comic Sans MS'")[0]), col(project, CSS, "'Comic Sans MS'")[1])]


def test_a_font_licensed_restricted_cannot_be_embedded(project: Project) -> None:
    """A font whose OS/2 fsType forbids embedding is an error at its pack.yaml key."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(project.pack / "assets/fonts/DejaVuSans-Bold.ttf"))
    font["OS/2"].fsType = 0x0002
    font.save(str(project.pack / "assets/fonts/Restricted-Bold.ttf"))
    project.edit(MANIFEST, "bold: assets/fonts/DejaVuSans-Bold.ttf",
                 "bold: assets/fonts/Restricted-Bold.ttf")
    found = rules(project.lint(), "font-not-embeddable")
    assert [where(f, project.root) for f in found] == [
        (MANIFEST, project.line_of(MANIFEST, "Restricted-Bold.ttf"))]
    assert "forbids embedding" in found[0].message


# -- locale formatting, translations ----------------------------------------------------------


def test_currency_in_a_translation_points_at_the_catalog(project: Project) -> None:
    """A euro sign written into a German msgstr is reported at that catalog line."""
    project.edit(TPL_PO_DE, 'msgstr "Fälliger Betrag"', 'msgstr "Fälliger Betrag: 12,50 €"')
    found = rules(project.lint(), "hardcoded-currency")
    assert {where(f, project.root) for f in found} == {
        (TPL_PO_DE, project.line_of(TPL_PO_DE, "12,50 €"))}


def test_placeholder_mismatch_points_at_the_msgstr(project: Project) -> None:
    """A renamed placeholder in a translation is reported at its msgstr line."""
    project.edit(PACK_PO_DE, "Ihr Passwort ist %(hint)s.", "Ihr Passwort ist %(hinweis)s.")
    found = rules(project.lint(), "placeholder-mismatch")
    assert [where(f, project.root) for f in found] == [
        (PACK_PO_DE, project.line_of(PACK_PO_DE, "%(hinweis)s"))]
    assert "lacks hint and adds hinweis" in found[0].message


def test_copied_through_entry_is_incomplete(project: Project) -> None:
    """A msgstr that repeats the English msgid is reported; 'IBAN'-like entries are not."""
    project.edit(TPL_PO_DE, 'msgstr "Fälliger Betrag"', 'msgstr "Amount due"')
    found = rules(project.lint(), "catalog-incomplete")
    assert [where(f, project.root) for f in found] == [
        (TPL_PO_DE, project.line_of(TPL_PO_DE, 'msgstr "Amount due"'))]


def test_page_x_of_y_in_css_must_come_from_the_catalog(project: Project) -> None:
    """A literal 'Page … of …' in pdf.css content is untranslated text at the stylesheet."""
    project.edit(CSS, "@bottom-right {\n", '@bottom-right {\n    content: "Page " counter(page);\n')
    found = [f for f in rules(project.lint(), "untranslated-text") if f.file.endswith(".css")]
    assert [where(f, project.root) for f in found] == [
        (CSS, project.line_of(CSS, 'content: "Page "'))]


# -- legal and compliance -----------------------------------------------------------------------


def test_legal_hidden_by_a_class_is_reported_at_the_layout(project: Project) -> None:
    """The legal block hidden by an mj-style class rule is legal-hidden at the layout line."""
    project.edit(LAYOUT, 'padding="0 40px 8px">{{ brand.legal }}',
                 'padding="0 40px 8px" css-class="fine-print">{{ brand.legal }}')
    project.edit(LAYOUT, "      .footer a {", "      .fine-print { display: none; }\n"
                                              "      .footer a {")
    found = rules(project.lint(), "legal-hidden")
    assert {where(f, project.root) for f in found} == {
        (LAYOUT, project.line_of(LAYOUT, "{{ brand.legal }}"))}
    assert {f.sample for f in found} == {"01_en_GB_overdue.json"}


def test_a_marketing_template_cannot_become_operational(tmp_path: Path) -> None:
    """Changing product_offer to operational is message-type-escape at its message_type."""
    project = make_project(tmp_path, template="product_offer")
    manifest = "templates/product_offer/template.yaml"
    project.edit(manifest, "message_type: marketing", "message_type: operational")
    found = rules(project.lint(), "message-type-escape")
    assert [where(f, project.root) for f in found] == [
        (manifest, project.line_of(manifest, "message_type:"))]


def test_statement_must_stay_confidential(tmp_path: Path) -> None:
    """A billing PDF without pdf.confidential breaks the pack's compliance section."""
    project = make_project(tmp_path, template="monthly_statement")
    project.edit("templates/monthly_statement/template.yaml", "confidential: true",
                 "confidential: false")
    found = rules(project.lint(), "compliance-missing")
    assert any("must be confidential" in f.message for f in found)


# -- data contract, assets, brand ---------------------------------------------------------------


def test_undeclared_variable_points_at_the_template_column(project: Project) -> None:
    """A misspelt data field behind 'is defined' is undeclared-variable at its column."""
    project.edit(EMAIL, "{% if data.reference is defined %}", "{% if data.refernce is defined %}")
    found = rules(project.lint(), "undeclared-variable")
    line, column = col(project, EMAIL, "refernce")
    assert [(where(f, project.root), f.column) for f in found] == [((EMAIL, line), column)]


def test_a_field_marked_unused_is_not_reported(tmp_path: Path) -> None:
    """A required field no source reads is unused-field unless the contract says x-unused."""
    project = make_project(tmp_path, template="nps_survey")
    contract = project.template("nps_survey") / "contract.schema.json"
    schema = json.loads(contract.read_text("utf-8"))
    schema["properties"]["campaign"] = {"type": "string"}
    schema["required"].append("campaign")
    contract.write_text(json.dumps(schema), "utf-8")
    project.edit_sample("nps_survey", lambda d: d["data"].update(campaign="q4"))
    assert [f.message.split(" is ")[0] for f in rules(project.lint(), "unused-field")] == [
        "required field 'campaign'"]
    schema["properties"]["campaign"]["x-unused"] = "kept for the CRM export"
    contract.write_text(json.dumps(schema), "utf-8")
    assert rules(project.lint(), "unused-field") == []


def test_hot_linked_image_is_not_from_the_pack(project: Project) -> None:
    """An image from another host is asset-not-in-pack at the template line."""
    line = add_text(project, '<mj-image src="https://images.example.net/card.png" '
                             'alt="{{ brand.logo_alt }}" />')
    found = rules(project.lint(), "asset-not-in-pack")
    assert {where(f, project.root) for f in found} == {(EMAIL, line)}
    assert "hot-linked from images.example.net" in found[0].message


def test_another_packs_name_is_foreign(tmp_path: Path) -> None:
    """With globex next to acme, 'Globex' in an acme-rendered template is foreign-brand."""
    project = make_project(tmp_path)
    shutil.copytree(ROOT / "brand_packs" / "globex", project.root / "brand_packs" / "globex")
    line = add_text(project, '<mj-text>{{ _("Better than Globex.") }}</mj-text>')
    found = rules(project.lint(), "foreign-brand")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]


def test_file_name_as_alt_text_is_meaningless(project: Project) -> None:
    """alt text that is the image's file name does not describe it."""
    project.edit(LAYOUT, 'alt="{{ brand.logo_alt }}"', 'alt="logo.png"')
    project.edit(MANIFEST, "  disabled: []", "  disabled: [untranslated-text]")
    found = rules(project.lint(), "alt-text-meaningless")
    assert {where(f, project.root) for f in found} == {
        (LAYOUT, project.line_of(LAYOUT, 'alt="logo.png"'))}


# -- output: one finding per problem, SARIF, --fix, pre-commit -------------------------------------


def test_one_finding_per_problem_across_samples(tmp_path: Path) -> None:
    """A template line that breaks a rule in every sample is reported once, naming a sample."""
    project = make_project(tmp_path, samples=3)
    add_text(project, '<mj-text>{{ _("Please act now.") }}</mj-text>')
    found = rules(project.lint(), "banned-term")
    assert len(found) == 1 and found[0].sample is not None


def test_sarif_output_is_valid_sarif_2_1_0(project: Project, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``--format sarif`` prints a SARIF 2.1.0 log: rules with help links, results with regions."""
    add_text(project, "<mj-text>Please act now.</mj-text>")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--format", "sarif"]) == 1
    log = json.loads(capsys.readouterr().out)
    jsonschema.validate(log, SARIF_SUBSET)
    run = log["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for result in run["results"]:
        assert ids[result["ruleIndex"]] == result["ruleId"]
    banned = next(r for r in run["results"] if r["ruleId"] == "banned-term")
    region = banned["locations"][0]["physicalLocation"]["region"]
    assert banned["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == EMAIL
    assert (region["startLine"], region["startColumn"]) == col(project, EMAIL, "act now")


def test_sarif_levels_follow_severities() -> None:
    """error/warning/info map to SARIF error/warning/note."""
    from ccm.review.lint.findings import make

    log = json.loads(format_sarif([make("shouting", "a.j2", 2, "x", severity="info")]))
    assert log["runs"][0]["results"][0]["level"] == "note"
    assert log["runs"][0]["tool"]["driver"]["rules"][0]["helpUri"] == RULES["shouting"].docs


def test_diff_shows_fixes_and_changes_nothing(project: Project, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--diff`` prints the wrap-for-translation fix as a diff and leaves the file alone."""
    add_text(project, "<mj-text>Thank you</mj-text>")
    before = (project.root / EMAIL).read_text("utf-8")
    monkeypatch.chdir(project.root)
    main(["lint", "--diff"])
    out = capsys.readouterr().out
    assert f"+++ b/{EMAIL}" in out
    assert '+<mj-text>{{ _("Thank you") }}</mj-text>' in out
    assert (project.root / EMAIL).read_text("utf-8") == before


def test_diff_with_fix_is_a_usage_error_and_changes_nothing(
        project: Project, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--diff --fix`` contradict each other: exit 2 and the file is left alone (``--fix``
    won before, so a designer adding ``--diff`` for a dry run had the files rewritten)."""
    add_text(project, "<mj-text>Thank you</mj-text>")
    before = (project.root / EMAIL).read_text("utf-8")
    monkeypatch.chdir(project.root)
    assert main(["lint", "--diff", "--fix"]) == 2
    assert "give --fix (apply) or --diff (show, change nothing), not both" \
        in capsys.readouterr().err
    assert (project.root / EMAIL).read_text("utf-8") == before


def test_fix_wraps_text_and_swaps_palette_literals(project: Project,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--fix`` wraps literal text, swaps a palette literal for its token, adds the default
    alt, and those findings are gone afterwards."""
    project.edit(EMAIL, HEADING, '<mj-text color="#14284B">Thank you</mj-text>\n'
                                 '<mj-image src="{{ brand.logo }}" />')
    monkeypatch.chdir(project.root)
    main(["lint", "--fix"])
    captured = capsys.readouterr()
    assert "applied 3 fix(es)" in captured.err
    text = (project.root / EMAIL).read_text("utf-8")
    assert '<mj-text color="{{ brand.palette.primary }}">{{ _("Thank you") }}</mj-text>' in text
    assert '<mj-image alt="{{ _("Illustration") }}" src="{{ brand.logo }}" />' in text
    left = {f.rule for f in project.lint()}
    assert not left & {"color-literal", "untranslated-text", "img-alt-missing"}


def test_pre_commit_hook_runs_ccm_lint() -> None:
    """.pre-commit-hooks.yaml declares a ccm-lint hook on brand packs and templates."""
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text("utf-8"))
    hook = next(h for h in hooks if h["id"] == "ccm-lint")
    assert hook["entry"] == "ccm lint" and hook["pass_filenames"] is False
    assert hook["language"] == "python" and "brand_packs" in hook["files"]


#: The parts of the SARIF 2.1.0 schema (sarif-schema-2.1.0.json) this output uses.
SARIF_SUBSET = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {
                    "driver": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "version": {"type": "string"},
                        "informationUri": {"type": "string", "format": "uri"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["id"], "properties": {
                                "id": {"type": "string"},
                                "shortDescription": {"$ref": "#/$defs/message"},
                                "help": {"$ref": "#/$defs/message"},
                                "helpUri": {"type": "string"},
                                "defaultConfiguration": {"type": "object", "properties": {
                                    "level": {"$ref": "#/$defs/level"}}},
                            }}},
                    }},
                }},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["message"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": 0},
                        "level": {"$ref": "#/$defs/level"},
                        "message": {"$ref": "#/$defs/message"},
                        "locations": {"type": "array", "items": {
                            "type": "object", "properties": {"physicalLocation": {
                                "type": "object", "required": ["artifactLocation"],
                                "properties": {
                                    "artifactLocation": {"type": "object",
                                                         "required": ["uri"]},
                                    "region": {"type": "object", "properties": {
                                        "startLine": {"type": "integer", "minimum": 1},
                                        "startColumn": {"type": "integer", "minimum": 1},
                                    }},
                                }}}}},
                        "properties": {"type": "object"},
                    }}},
            }}},
    },
    "$defs": {
        "level": {"enum": ["none", "note", "warning", "error"]},
        "message": {"type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string"}}},
    },
}


# -- the remaining rules, each on a real file ---------------------------------------------------


def test_pressuring_wording_is_per_locale(project: Project) -> None:
    """An English pressure phrase from the pack's tone.pressure is reported where it is written."""
    line = add_text(project, '<mj-text>{{ _("Pay or we take legal action.") }}</mj-text>')
    found = rules(project.lint(), "pressuring-wording")
    assert {(where(f, project.root), f.locale) for f in found} == {((EMAIL, line), "en_GB")}


def test_brand_name_written_literally(project: Project) -> None:
    """'Acme Bank' inside a msgid is brand-literal at its line."""
    line = add_text(project, '<mj-text>{{ _("Acme Bank thanks you.") }}</mj-text>')
    found = rules(project.lint(), "brand-literal")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]


def test_literal_amount_and_date_in_a_msgid(project: Project) -> None:
    """An amount and a fixed-format date written into a msgid are each reported at its column."""
    text = '<mj-text>{{ _("A fee of 12.50 applies from 31/10/2025.") }}</mj-text>'
    line = add_text(project, text)
    found = project.lint()
    amount, date = rules(found, "literal-amount"), rules(found, "literal-date")
    assert [where(f, project.root) for f in amount + date] == [(EMAIL, line)] * 2
    assert amount[0].column == col(project, EMAIL, "12.50")[1]
    assert date[0].column == col(project, EMAIL, "31/10/2025")[1]


def test_amount_printed_without_money_filter(project: Project) -> None:
    """``{{ data.amount }}`` (a number in the contract) is unformatted-value at its column."""
    project.edit(EMAIL, "{{ data.amount|money(data.currency) }}</td>", "{{ data.amount }}</td>")
    found = rules(project.lint(), "unformatted-value")
    line, column = col(project, EMAIL, "{{ data.amount }}</td>")
    assert [(where(f, project.root), f.message) for f in found] == [
        ((EMAIL, line), "data.amount is a number printed without a locale filter")]
    assert found[0].column == column + len("{{ ")


def test_english_legal_in_a_german_email(project: Project) -> None:
    """The English legal text written into the layout is the wrong language for de_DE."""
    import yaml as _yaml

    english = _yaml.safe_load((project.pack / "pack.yaml").read_text("utf-8"))["legal"]["en_GB"]
    project.edit(LAYOUT, 'padding="0 40px 8px">{{ brand.legal }}',
                 f'padding="0 40px 8px">{english}')
    found = rules(project.lint(), "legal-wrong-language")
    assert {f.locale for f in found} == {"de_DE"}
    assert "shows the en_GB legal block, not the de_DE one" in found[0].message


def test_a_font_file_that_is_not_a_font_is_a_finding(project: Project) -> None:
    """A font file with garbage in it is font-not-embeddable, not a crash."""
    (project.pack / "assets/fonts/DejaVuSans-Bold.ttf").write_bytes(b"not a font" * 10)
    found = rules(project.lint(), "font-not-embeddable")
    assert [where(f, project.root) for f in found] == [
        (MANIFEST, project.line_of(MANIFEST, "bold: assets/fonts/DejaVuSans-Bold.ttf"))]
    assert "not a readable font" in found[0].message


def test_a_font_path_outside_the_pack_is_not_read(project: Project) -> None:
    """A font path that leaves the pack folder is reported, never opened."""
    project.edit(MANIFEST, "bold: assets/fonts/DejaVuSans-Bold.ttf",
                 "bold: ../../../../etc/passwd")
    found = project.lint()
    assert {"font-not-embeddable", "render-error"} & {f.rule for f in found}
