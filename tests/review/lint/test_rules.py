"""Each lint rule fires on a broken copy of an example and stays quiet on the original."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.examples_helpers import TEMPLATES

from .conftest import Project, make_project, rules, where

EMAIL = "templates/payment_reminder/email.mjml.j2"
SMS = "templates/payment_reminder/sms.txt.j2"
LAYOUT = "brand_packs/acme/layouts/email.mjml.j2"
HEADING = '<mj-text mj-class="heading">{{ _("Payment reminder") }}</mj-text>'


def add_text(project: Project, markup: str) -> int:
    """Put ``markup`` in place of the reminder's heading; returns its line."""
    project.edit(EMAIL, HEADING, markup)
    return project.line_of(EMAIL, markup.split("\n")[0])


def test_the_untouched_copy_has_no_finding(project: Project) -> None:
    """A copy of an example lints clean: every finding a test sees comes from its change."""
    assert project.lint() == []


# -- render-error ---------------------------------------------------------------------


def test_render_error_names_the_template_file_and_line(project: Project) -> None:
    """An undefined variable is a render-error at the template line that uses it."""
    line = add_text(project, "<mj-text>{{ data.no_such_field.name }}</mj-text>")
    found = rules(project.lint(), "render-error")
    assert {where(f, project.root) for f in found} == {(EMAIL, line)}
    assert "no_such_field" in found[0].message
    assert found[0].severity == "error"


def test_an_integer_literal_python_will_not_read_is_a_render_error(project: Project) -> None:
    """A 5,000-digit number in a template is a finding at its line, not a crash of lint."""
    line = add_text(project, "<mj-text>{{ " + "9" * 5000 + " }}</mj-text>")
    found = rules(project.lint(), "render-error")
    assert {where(f, project.root) for f in found} == {(EMAIL, line)}
    assert "a number of 5000 digits is longer than Python reads" in found[0].message


def test_render_error_in_a_layout_names_the_layout(project: Project) -> None:
    """A layout that fails to render is reported at the layout's own line."""
    project.edit(LAYOUT, "{{ brand.greeting }}", "{{ brand.no_such_key }}")
    found = rules(project.lint(), "render-error")
    assert (LAYOUT, project.line_of(LAYOUT, "brand.no_such_key")) in \
        {where(f, project.root) for f in found}


def test_a_pack_that_does_not_load_is_a_render_error(project: Project) -> None:
    """A pack.yaml that breaks the schema is one render-error on pack.yaml, not a crash."""
    project.edit("brand_packs/acme/pack.yaml", 'version: "1.0.0"', "version: [1]")
    found = project.lint()
    assert [(f.rule, Path(f.file).name) for f in found] == [("render-error", "pack.yaml")]


def test_invalid_yaml_is_a_render_error_at_its_one_based_line(project: Project) -> None:
    """A pack.yaml that does not parse is reported at the line the YAML parser stopped on."""
    manifest = "brand_packs/acme/pack.yaml"
    project.edit(manifest, "name: Acme Bank", "name: Acme: Bank")
    found = project.lint()
    assert [(f.rule, where(f, project.root)) for f in found] == [
        ("render-error", (manifest, project.line_of(manifest, "name: Acme: Bank")))]
    assert found[0].message.startswith("invalid YAML: mapping values are not allowed")


def test_invalid_template_yaml_is_reported_at_its_line(project: Project) -> None:
    """A template.yaml that does not parse names its own file and line."""
    manifest = "templates/payment_reminder/template.yaml"
    project.write(manifest, (project.root / manifest).read_text("utf-8") + "channels: [email\n")
    found = rules(project.lint(), "render-error")
    lines = (project.root / manifest).read_text("utf-8").split("\n")
    assert [where(f, project.root) for f in found] == [(manifest, len(lines))]


def test_load_yaml_context_line_is_one_based(tmp_path: Path) -> None:
    """The error's ``line`` context agrees with the ``file:line`` in its message."""
    from ccm._schema import load_yaml
    from ccm.errors import PackError

    path = tmp_path / "pack.yaml"
    path.write_text("id: x\nname: a: b\n", "utf-8")
    try:
        load_yaml(path, PackError)
    except PackError as exc:
        assert exc.context["line"] == 2
        assert str(exc).startswith(f"{path}:2: invalid YAML")
    else:
        raise AssertionError("invalid YAML loaded")


# -- unsafe-construct -------------------------------------------------------------------


def test_safe_filter_on_data_is_unsafe(project: Project) -> None:
    """``|safe`` on a variable is an unsafe construct at its line."""
    line = add_text(project, "<mj-text>{{ data.reference|safe }}</mj-text>")
    found = rules(project.lint(), "unsafe-construct")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "|safe" in found[0].message


def test_safe_on_a_string_literal_is_allowed(project: Project) -> None:
    """``"<br>"|safe`` (the example layouts use it) is the author's own markup: no finding."""
    add_text(project, '<mj-text>{{ "<br>"|safe }}</mj-text>')
    assert rules(project.lint(), "unsafe-construct") == []


def test_dynamic_include_autoescape_off_and_attr_are_unsafe(project: Project) -> None:
    """A computed include, ``autoescape false`` and ``|attr`` are each reported."""
    add_text(project, "<mj-text>{% include data.reference %}"
                      "{% autoescape false %}{{ data.reference }}{% endautoescape %}"
                      "{{ data|attr('reference') }}</mj-text>")
    messages = " ".join(f.message for f in rules(project.lint(), "unsafe-construct"))
    assert "include of a computed template name" in messages
    assert "autoescape is switched off" in messages
    assert "|attr" in messages


def test_markup_and_private_attributes_are_unsafe(project: Project) -> None:
    """``Markup(`` and names starting with an underscore are reported at their line."""
    line = add_text(project, "<mj-text>{{ Markup(data.reference) }} {{ data.__class__ }}</mj-text>")
    found = rules(project.lint(), "unsafe-construct")
    assert {where(f, project.root) for f in found} == {(EMAIL, line)}
    messages = " ".join(f.message for f in found)
    assert "Markup(" in messages and "'__class__'" in messages


def test_mj_include_outside_the_pack_is_unsafe(project: Project) -> None:
    """``<mj-include>`` of a path climbing out of the pack is reported at its line."""
    line = add_text(project, '<mj-include path="../../../etc/passwd" />')
    found = [f for f in rules(project.lint(), "unsafe-construct") if "mj-include" in f.message]
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]


def test_include_of_another_templates_file_or_a_hidden_one_is_unsafe(project: Project) -> None:
    """Includes the renderer refuses (outside the template's folder, hidden) are reported."""
    (project.templates / "shared").mkdir()
    (project.templates / "shared" / "note.txt.j2").write_text("Shared.", "utf-8")
    (project.template("payment_reminder") / ".draft.txt.j2").write_text("Draft.", "utf-8")
    line = add_text(project, '<mj-text>{% include "templates/shared/note.txt.j2" %}'
                             '{% include "templates/payment_reminder/.draft.txt.j2" %}</mj-text>')
    messages = [f.message for f in rules(project.lint(), "unsafe-construct")
                if where(f, project.root) == (EMAIL, line)]
    assert any("'templates/shared/note.txt.j2'" in m and "its own folder" in m for m in messages)
    assert any("'templates/payment_reminder/.draft.txt.j2'" in m and "hidden" in m
               for m in messages)


def test_hidden_mj_include_is_unsafe(project: Project) -> None:
    """``<mj-include>`` of a hidden file (no digest covers it) is reported at its line."""
    (project.pack / ".parts").mkdir()
    (project.pack / ".parts" / "x.mjml").write_text("<mj-text>x</mj-text>", "utf-8")
    line = add_text(project, '<mj-include path=".parts/x.mjml" />')
    found = [f for f in rules(project.lint(), "unsafe-construct") if "mj-include" in f.message]
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "is hidden" in found[0].message


def test_dynamic_extends_and_import_are_unsafe(project: Project) -> None:
    """``{% extends %}`` or ``{% import %}`` of a computed name is reported at its line."""
    project.edit(EMAIL, '{% extends "pack/email.mjml.j2" %}',
                 '{% extends "pack/" ~ "email.mjml.j2" %}')
    line = add_text(project, '{% import data.reference as m %}<mj-text>Due.</mj-text>')
    found = rules(project.lint(), "unsafe-construct")
    assert sorted((where(f, project.root), f.message.split(" of ")[0]) for f in found) == [
        ((EMAIL, 1), "extends"), ((EMAIL, line), "import")]


def test_literal_names_and_autoescape_on_are_safe(tmp_path: Path) -> None:
    """Includes, extends and imports of literal names, and ``autoescape true``, are fine."""
    import jinja2

    from ccm.review.lint.unsafe import unsafe_constructs

    source = tmp_path / "t.j2"
    source.write_text('{% extends "pack/email.mjml.j2" %}{% import "macros.j2" as m %}'
                      '{% block content %}{% include "part.j2" %}'
                      "{% autoescape true %}{{ data.name }}{% endautoescape %}"
                      '{{ data.name|e }}{{ "<br>"|safe }}'
                      """{{ "Page %(n)s"|format(n='" counter(page) "'|safe) }}{% endblock %}""",
                      "utf-8")
    assert unsafe_constructs(jinja2.Environment(), str(source), "t.j2") == []
    source.write_text("{{ (data.name ~ '')|safe }}", "utf-8")
    assert [m for _, m in unsafe_constructs(jinja2.Environment(), str(source), "t.j2")] == [
        "|safe marks a value as markup: it is no longer escaped; write the markup in the "
        "template instead"]


def test_mj_include_inside_the_pack_or_template_is_fine(tmp_path: Path) -> None:
    """A relative mj-include that stays in the pack or template folder passes; a URL, an
    absolute path or a climb out does not."""
    from ccm.review.lint.unsafe import mj_includes

    pack, template = tmp_path / "pack", tmp_path / "templates" / "t"
    template.mkdir(parents=True)
    pack.mkdir()
    source = template / "email.mjml.j2"
    source.write_text('<mj-include path="parts/footer.mjml" />\n'
                      "<mj-include path='https://evil.example/x.mjml' />\n"
                      '<mj-include path="/etc/passwd" />\n'
                      '<mj-include path="parts/../../../secret.mjml" />\n', "utf-8")
    found = mj_includes(str(source), [pack, template])
    assert [(line, message.split("' ")[1].split(":")[0]) for line, message in found] == [
        (2, "is a URL"), (3, "is absolute"), (4, "climbs out with '..'")]


# -- contract-violation -------------------------------------------------------------------


def test_contract_violation_points_at_the_sample_line(project: Project) -> None:
    """Sample data of the wrong type is reported with its JSON path at its sample line."""

    def change(req: dict[str, Any]) -> None:
        req["data"]["amount"] = "lots"

    sample = project.edit_sample("payment_reminder", change)
    found = rules(project.lint(), "contract-violation")
    assert len(found) == 1
    assert found[0].file == str(sample)
    assert found[0].line == project.line_of(str(sample.relative_to(project.root)), '"amount"')
    assert found[0].message.startswith("$.data.amount:")


# -- tone -------------------------------------------------------------------------------------


def test_banned_term_is_found_in_the_visible_text(project: Project) -> None:
    """A term from tone.banned_terms is reported at the source line that writes it."""
    line = add_text(project, "<mj-text>Please act now to avoid a fee.</mj-text>")
    found = rules(project.lint(), "banned-term")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "'act now' is banned by the acme tone of voice" in found[0].message


def test_preferred_term_suggests_the_replacement(project: Project) -> None:
    """A term from tone.preferred_terms says which word to use instead."""
    line = add_text(project, "<mj-text>Sorry for the problem.</mj-text>")
    found = rules(project.lint(), "preferred-term")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "use 'issue' instead of 'problem'" in found[0].message


def test_terms_match_whole_words_only(project: Project) -> None:
    """'problematic' does not contain the word 'problem'."""
    add_text(project, "<mj-text>Nothing problematic here.</mj-text>")
    assert rules(project.lint(), "preferred-term") == []


def test_sentence_length_counts_words_per_sentence(project: Project) -> None:
    """A sentence over tone.max_sentence_words is reported at the line it starts on."""
    words = " ".join(["word"] * 34)
    line = add_text(project, f"<mj-text>This sentence has {words} in it.</mj-text>")
    found = rules(project.lint(), "sentence-length")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "sentence of 39 words, over the acme limit of 30" in found[0].message


def test_short_sentences_pass(project: Project) -> None:
    """Many short sentences in a row are fine."""
    add_text(project, "<mj-text>" + "This is short. " * 20 + "</mj-text>")
    assert rules(project.lint(), "sentence-length") == []


def test_greeting_and_sign_off_missing_from_email(project: Project) -> None:
    """An email layout without the greeting and sign-off gets both findings."""
    project.edit(LAYOUT, '<mj-text padding="0 40px 18px">{{ brand.greeting }}</mj-text>', "")
    project.edit(LAYOUT, '{{ brand.sign_off|replace("\\n", "<br>"|safe) }}', "")
    found = project.lint()
    greeting = rules(found, "greeting-missing")
    assert {f.channel for f in greeting} == {"email"}
    assert "'Dear {name},'" in greeting[0].message
    assert {f.channel for f in rules(found, "sign-off-missing")} == {"email"}


def test_sign_off_message_names_the_pack_sign_off(project: Project) -> None:
    """Without the sign-off the finding quotes the pack's sign-off and says how to add it."""
    project.edit(LAYOUT, '{{ brand.sign_off|replace("\\n", "<br>"|safe) }}', "")
    found = [f for f in rules(project.lint(), "sign-off-missing") if f.locale == "en_GB"]
    assert len(found) == 1 and found[0].severity == "error"
    assert "does not end with the acme sign-off 'Yours sincerely, Acme Bank'" in \
        found[0].message
    assert found[0].message.endswith("add {{ brand.sign_off }}")


def test_greeting_missing_from_a_letter(tmp_path: Path) -> None:
    """A letter PDF without the greeting is reported on the pdf channel."""
    project = make_project(tmp_path, template="welcome")
    project.edit("brand_packs/acme/layouts/pdf.html.j2",
                 '<p class="greeting">{{ brand.greeting }}</p>', "")
    found = rules(project.lint(), "greeting-missing")
    assert {(f.channel, f.locale) for f in found} == {("pdf", "en_GB"), ("pdf", "de_DE")}


def test_shouting_flags_long_capitalised_words(project: Project) -> None:
    """A word of four or more capitals is shouting; acronyms and currency codes are not."""
    line = add_text(project, "<mj-text>Pay IMMEDIATELY in GBP to your IBAN.</mj-text>")
    found = rules(project.lint(), "shouting")
    assert [(where(f, project.root), f.severity) for f in found] == [((EMAIL, line), "warning")]
    assert "'IMMEDIATELY'" in found[0].message


def test_shouting_is_allowed_when_the_pack_allows_all_caps(project: Project) -> None:
    """tone.allow_all_caps switches the rule off."""
    project.edit("brand_packs/acme/pack.yaml", "allow_all_caps: false", "allow_all_caps: true")
    add_text(project, "<mj-text>Pay IMMEDIATELY.</mj-text>")
    assert rules(project.lint(), "shouting") == []


def test_capitals_from_customer_data_are_not_shouting(tmp_path: Path) -> None:
    """A letter's address in capitals (the city from the data) is not the template shouting."""
    project = make_project(tmp_path, template="welcome")
    assert rules(project.lint(), "shouting") == []


def test_exclamation_when_the_pack_forbids_it(project: Project) -> None:
    """One '!' breaks acme's tone (allow_exclamations: false)."""
    line = add_text(project, "<mj-text>Thank you!</mj-text>")
    found = rules(project.lint(), "exclamation")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]


def test_exclamation_runs_are_flagged_even_when_allowed(tmp_path: Path) -> None:
    """globex allows '!' but never '!!'."""
    project = make_project(tmp_path, pack="globex")
    add_text(project, "<mj-text>Thank you!</mj-text>")
    assert rules(project.lint(), "exclamation") == []
    project.edit(EMAIL, "Thank you!", "Thank you!!")
    found = rules(project.lint(), "exclamation")
    assert len(found) == 1 and "'you!!'" in found[0].message


# -- legal-missing ---------------------------------------------------------------------------


def test_legal_missing_from_email(project: Project) -> None:
    """An email without the pack's legal block is an error in each locale."""
    project.edit(LAYOUT, "{{ brand.legal }}", "")
    found = rules(project.lint(), "legal-missing")
    assert {(f.channel, f.locale) for f in found} == {("email", "en_GB"), ("email", "de_DE")}
    assert all(f.severity == "error" for f in found)


def test_legal_missing_from_pdf(tmp_path: Path) -> None:
    """A PDF without the legal block is reported; the SMS is exempt."""
    project = make_project(tmp_path, template="welcome")
    project.edit("brand_packs/acme/layouts/pdf.html.j2",
                 '<div class="running-legal">{{ brand.legal }}</div>', "")
    found = rules(project.lint(), "legal-missing")
    assert {f.channel for f in found} == {"pdf"}


# -- colours ------------------------------------------------------------------------------------


def test_off_palette_color_in_an_mjml_attribute(project: Project) -> None:
    """A literal colour outside the palette is reported with the nearest palette colour."""
    line = add_text(project, '<mj-text color="#ff0000">Due soon.</mj-text>')
    found = rules(project.lint(), "off-palette-color")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "#ff0000" in found[0].message and "nearest: negative #9F2A2A" in found[0].message


def test_off_palette_color_in_css(project: Project) -> None:
    """Named and rgb() colours in the pack stylesheet are checked too."""
    css = "brand_packs/acme/layouts/pdf.css"
    project.edit(css, "body { margin: 0; }", "body { margin: 0; border: 1px solid red; }")
    project.edit(css, ".nowrap { white-space: nowrap; }",
                 ".nowrap { white-space: nowrap; outline-color: rgb(1, 2, 3); }")
    found = rules(project.lint(), "off-palette-color")
    assert {where(f, project.root) for f in found} == {
        (css, project.line_of(css, "solid red")), (css, project.line_of(css, "rgb(1, 2, 3)"))}


def test_palette_colors_and_keywords_are_on_palette(project: Project) -> None:
    """Palette references, the same colour written #rgb-style by value, and transparent pass."""
    add_text(project, '<mj-text color="{{ brand.palette.negative }}" '
                      'container-background-color="transparent">Due.</mj-text>'
                      '<mj-text color="#9f2a2a">Due.</mj-text>')
    assert rules(project.lint(), "off-palette-color") == []


def test_low_contrast_on_one_element(project: Project) -> None:
    """Pale gold text on the white card is below 4.5:1 and reported at the element."""
    line = add_text(project, '<mj-text color="{{ brand.palette.accent }}">Due soon.</mj-text>')
    found = rules(project.lint(), "low-contrast")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "#E4CF97 (accent) on #FFFFFF (background)" in found[0].message


def test_large_text_needs_only_three_to_one(project: Project) -> None:
    """The same grey passes as large bold text (3:1) but not as normal text (4.5:1)."""
    add_text(project, '<mj-text color="#6B6B6B" container-background-color="#D0D0D0" '
                      'font-size="24px">Big.</mj-text>')
    project.edit("brand_packs/acme/pack.yaml", '  rule: "#CBD2DC"',
                 '  rule: "#CBD2DC"\n  grey: "#6B6B6B"\n  pale: "#D0D0D0"')
    assert rules(project.lint(), "low-contrast") == []
    project.edit(EMAIL, 'font-size="24px"', 'font-size="16px"')
    assert len(rules(project.lint(), "low-contrast")) == 1


def test_pdf_css_text_without_a_background_is_checked_on_the_page(project: Project) -> None:
    """A PDF stylesheet rule with only a text colour is checked against the page background."""
    css = "brand_packs/acme/layouts/pdf.css"
    project.edit(css, ".small { font-size: 8pt; }",
                 ".small { font-size: 8pt; color: var(--color-accent); }")
    found = rules(project.lint(), "low-contrast")
    assert [where(f, project.root) for f in found] == [(css, project.line_of(css, ".small {"))]
    assert "(on the page background)" in found[0].message


def test_low_contrast_between_palette_text_and_background(project: Project) -> None:
    """A palette whose text colour is too pale for its background is reported in pack.yaml."""
    manifest = "brand_packs/acme/pack.yaml"
    project.edit(manifest, 'text: "#1C2430"', 'text: "#B0B0B0"')
    found = [f for f in rules(project.lint(), "low-contrast") if f.file.endswith("pack.yaml")]
    assert [where(f, project.root) for f in found] == [(manifest, project.line_of(
        manifest, 'text: "#B0B0B0"'))]


# -- images and links --------------------------------------------------------------------------


def test_image_without_alt_text(project: Project) -> None:
    """An mj-image without alt is reported at the tag in the template."""
    line = add_text(project, '<mj-image src="https://acme.example/brand/v1/assets/logo.png" />')
    found = rules(project.lint(), "img-alt-missing")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]


def test_image_without_alt_text_in_a_pdf(tmp_path: Path) -> None:
    """An <img> without alt in a PDF source is reported on the pdf channel at its line."""
    project = make_project(tmp_path, template="welcome")
    pdf = "templates/welcome/pdf.html.j2"
    project.edit(pdf, "<table", '<img src="assets/logo.png">\n<table')
    found = rules(project.lint(), "img-alt-missing")
    assert {(where(f, project.root), f.channel) for f in found} == {
        ((pdf, project.line_of(pdf, "<img")), "pdf")}


def test_hidden_pdf_asset_is_not_in_pack(tmp_path: Path) -> None:
    """A PDF asset in a hidden file of the pack, which the renderer refuses, is reported."""
    project = make_project(tmp_path, template="welcome")
    (project.pack / "assets" / ".old-logo.png").write_bytes(
        (project.pack / "assets" / "logo.png").read_bytes())
    pdf = "templates/welcome/pdf.html.j2"
    project.edit(pdf, "<table", '<img src="assets/.old-logo.png" alt="Old logo">\n<table')
    found = [f for f in rules(project.lint(), "asset-not-in-pack") if f.file.endswith(pdf)]
    assert found and all("hidden" in f.message for f in found)
    assert (pdf, project.line_of(pdf, "<img")) in {where(f, project.root) for f in found}


def test_image_with_alt_text_and_tracking_pixels_pass(project: Project) -> None:
    """Alt text, or an empty alt on a 1-pixel image, is fine."""
    add_text(project, '<mj-image src="https://acme.example/a.png" alt="A chart" />'
                      '<mj-text><img src="https://t.example/o.gif" width="1" height="1" alt="">'
                      "</mj-text>")
    assert rules(project.lint(), "img-alt-missing") == []


def test_insecure_and_relative_links(project: Project) -> None:
    """http:// and relative links in email are reported; https, mailto, tel and # pass."""
    line = add_text(project, '<mj-text><a href="http://acme.example/pay">Pay</a> '
                             '<a href="/help">Help</a> <a href="mailto:a@acme.example">Mail</a> '
                             '<a href="tel:+441234">Call</a> <a href="#top">Top</a></mj-text>')
    found = rules(project.lint(), "insecure-link")
    assert sorted(f.message.split("'")[1] for f in found) == ["/help", "http://acme.example/pay"]
    assert {where(f, project.root) for f in found} == {(EMAIL, line)}


def test_unsubscribe_missing_from_marketing_email(tmp_path: Path) -> None:
    """A marketing email whose layout drops the unsubscribe link is an error."""
    project = make_project(tmp_path, template="product_offer")
    assert rules(project.lint(), "unsubscribe-missing") == []
    project.edit(LAYOUT, '<a href="{{ message.unsubscribe_url }}" style="color: '
                         '{{ p.background }};">{{ _("Unsubscribe") }}</a>', "")
    found = rules(project.lint(), "unsubscribe-missing")
    assert found and "no visible unsubscribe link" in found[0].message


def test_unsubscribe_headers_are_required() -> None:
    """A marketing email with the link but without the one-click headers is reported."""
    from email.message import EmailMessage

    from ccm.review.lint.checks import unsubscribe_problems
    from ccm.review.lint.html import parse_html

    page = parse_html('<p><a href="https://acme.example/u/1">Unsubscribe</a></p>')
    msg = EmailMessage()
    assert unsubscribe_problems(page, msg, "https://acme.example/u/1") == [
        "marketing email lacks the List-Unsubscribe and List-Unsubscribe-Post header(s) that "
        "mailbox providers require for one-click unsubscribe"]
    msg["List-Unsubscribe"] = "<https://acme.example/u/1>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    assert unsubscribe_problems(page, msg, "https://acme.example/u/1") == []
    hidden = parse_html('<div style="display:none"><a href="https://acme.example/u/1">x</a></div>')
    assert len(unsubscribe_problems(hidden, msg, "https://acme.example/u/1")) == 1


def test_operational_email_needs_no_unsubscribe(project: Project) -> None:
    """An operational email has no unsubscribe link and no finding."""
    assert rules(project.lint(), "unsubscribe-missing") == []


def test_email_too_large(project: Project) -> None:
    """Email HTML over 102 KB is an error."""
    add_text(project, "{% for i in range(600) %}<mj-text>Row {{ i }}.</mj-text>{% endfor %}")
    found = rules(project.lint(), "email-too-large")
    assert found and {f.severity for f in found} == {"error"}
    assert "Gmail clips messages over 102 KB" in found[0].message


def test_email_size_thresholds() -> None:
    """Over 102 KB is an error, over 90 KB a warning, below nothing."""
    from ccm.review.lint.checks import email_size

    clipped = email_size("x" * (102 * 1024 + 1))
    assert clipped is not None and clipped.severity is None  # the rule's default: error
    near = email_size("x" * (91 * 1024))
    assert near is not None and near.severity == "warning"
    assert email_size("x" * (89 * 1024)) is None


# -- SMS -------------------------------------------------------------------------------------------


def test_sms_too_long(project: Project) -> None:
    """An SMS over acme's three segments is reported on the SMS source."""
    project.edit(SMS, "{% block content %}", "{% block content %}" + "Long text. " * 50)
    found = rules(project.lint(), "sms-too-long")
    assert {where(f, project.root) for f in found} == {(SMS, 1)}
    assert "the limit is 3" in found[0].message


def test_sms_within_a_higher_pack_limit_passes(project: Project) -> None:
    """The same long SMS is fine when the pack allows enough segments."""
    project.edit(SMS, "{% block content %}", "{% block content %}" + "Long text. " * 50)
    project.edit("brand_packs/acme/pack.yaml", "max_segments: 3", "max_segments: 6")
    assert rules(project.lint(), "sms-too-long") == []


def test_sms_ucs2_names_the_stray_character_and_its_line(project: Project) -> None:
    """An en dash in the SMS source forces UCS-2: reported with the character and line."""
    project.edit(SMS, "{% block content %}", "{% block content %}\nThank you – ")
    found = rules(project.lint(), "sms-ucs2")
    assert {where(f, project.root) for f in found} == {(SMS, 3)}
    assert "'–' (U+2013)" in found[0].message and "GSM-7 without them" in found[0].message


def test_a_too_long_sms_also_names_the_stray_character(project: Project) -> None:
    """When a stray character tips an SMS over the limit, both findings point at the source."""
    project.edit(SMS, "{% block content %}", "{% block content %}\n" + "Text – more. " * 16)
    found = project.lint()
    assert rules(found, "sms-too-long")
    assert {where(f, project.root) for f in rules(found, "sms-ucs2")} == {(SMS, 3)}


def test_arabic_sms_is_legitimately_ucs2(tmp_path: Path) -> None:
    """globex's Arabic SMS and customer data in Arabic script are not flagged."""
    project = make_project(tmp_path, pack="globex", template="product_offer", samples=4)
    assert rules(project.lint(), "sms-ucs2") == []


# -- translations ------------------------------------------------------------------------------


def test_missing_translation_for_each_non_english_locale(project: Project) -> None:
    """A new message id without a German translation is reported for de_DE only."""
    line = add_text(project, '<mj-text>{{ _("A sentence nobody translated.") }}</mj-text>')
    found = rules(project.lint(), "missing-translation")
    assert [(where(f, project.root), f.locale) for f in found] == [((EMAIL, line), "de_DE")]
    assert "'A sentence nobody translated.'" in found[0].message


def test_a_translated_message_id_passes(project: Project) -> None:
    """Once the German catalog translates the new message id, the finding goes away."""
    add_text(project, '<mj-text>{{ _("A sentence nobody translated.") }}</mj-text>')
    catalog = project.template("payment_reminder") / "locales/de_DE/LC_MESSAGES/messages.po"
    catalog.write_text(catalog.read_text("utf-8") + '\nmsgid "A sentence nobody translated."\n'
                       'msgstr "Ein Satz, den niemand übersetzt hat."\n', "utf-8")
    assert rules(project.lint(), "missing-translation") == []


# -- manifests ---------------------------------------------------------------------------------


def test_declared_channel_without_source(project: Project) -> None:
    """A declared sms channel without sms.txt.j2 is reported at template.yaml's channels line."""
    (project.root / SMS).unlink()
    manifest = "templates/payment_reminder/template.yaml"
    found = rules(project.lint(), "channel-source-mismatch")
    assert [where(f, project.root) for f in found] == [(manifest, project.line_of(
        manifest, "channels:"))]


def test_source_for_undeclared_channel_and_other_templates_still_lint(project: Project) -> None:
    """A stray pdf.html.j2 is reported, and the other templates are still rendered and checked."""
    shutil.copy(TEMPLATES / "welcome" / "pdf.html.j2",
                project.template("payment_reminder") / "pdf.html.j2")
    shutil.copytree(TEMPLATES / "welcome", project.template("welcome"))
    for extra in sorted((project.template("welcome") / "samples").glob("*.json"))[1:]:
        extra.unlink()
    welcome = "templates/welcome/email.mjml.j2"
    project.edit(welcome, '{{ _("Get started") }}', "Act now")
    found = project.lint()
    mismatch = rules(found, "channel-source-mismatch")
    assert [where(f, project.root) for f in mismatch] == [
        ("templates/payment_reminder/pdf.html.j2", 1)]
    assert (welcome, project.line_of(welcome, "Act now")) in \
        {where(f, project.root) for f in rules(found, "banned-term")}


def test_weak_password_rule_names_the_estimate(project: Project) -> None:
    """A date of birth alone is about 15 bits: a warning at security.pdf_password."""
    manifest = "brand_packs/acme/pack.yaml"
    project.weaken_password()
    found = rules(project.lint(), "weak-password-rule")
    assert [(where(f, project.root), f.severity) for f in found] == [
        ((manifest, project.line_of(manifest, "pdf_password:")), "warning")]
    assert "about 15 bits" in found[0].message


def test_strong_password_rule_passes(project: Project) -> None:
    """A long random customer secret is well over 40 bits: no warning."""
    project.edit("brand_packs/acme/pack.yaml", "field: document_code", "field: pdf_secret")

    def change(req: dict[str, Any]) -> None:
        req["customer"]["pdf_secret"] = "x7Qp-93Lm-Vt2Z"

    project.edit_sample("payment_reminder", change)
    assert rules(project.lint(), "weak-password-rule") == []


def test_no_sample_makes_no_password_estimate(project: Project) -> None:
    """With no sample that loads, a field only a sample can estimate is not guessed at: no
    "about 0 bits" warning (no-samples says what is missing); a date needs no sample, so a
    date-only rule is still named weak."""
    for sample in project.templates.glob("*/samples/*.json"):
        sample.unlink()
    found = project.lint()
    assert rules(found, "weak-password-rule") == [] and rules(found, "no-samples")
    project.weaken_password()
    (weak,) = rules(project.lint(), "weak-password-rule")
    assert "about 15 bits" in weak.message


def test_template_without_samples(project: Project) -> None:
    """A template with no sample cannot be checked when rendered: a warning says so."""
    for sample in (project.template("payment_reminder") / "samples").glob("*.json"):
        sample.unlink()
    found = rules(project.lint(), "no-samples")
    assert [f.severity for f in found] == ["warning"]


def test_a_source_that_runs_out_of_time_is_rendered_out_of_time_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An SMS source that loops (almost) for ever, linted with three samples in acme's two
    locales, runs out of its time budget at most twice (the whole template, then the SMS alone
    to pin it), not once or twice per sample and locale: a designer waited 20 minutes for
    ``ccm lint`` on a nested loop at the default 30 s budget. The finding is still there, and
    the email is still checked."""
    from ccm.errors import BudgetError
    from ccm.render.engine import Engine

    project = make_project(tmp_path, samples=3)
    project.edit("templates/payment_reminder/template.yaml", "id: payment_reminder\n",
                 "id: payment_reminder\nbudget:\n  seconds: 0.2\n")
    project.write("templates/payment_reminder/sms.txt.j2",
                  "{% for i in range(99999) %}{% for j in range(99999) %}"
                  "{% endfor %}{% endfor %}\n")
    timeouts: list[str] = []
    real = Engine.render

    def counting(self: Engine, *args: Any, **kwargs: Any) -> Any:
        try:
            return real(self, *args, **kwargs)
        except BudgetError as exc:
            if exc.context.get("budget") == "time":
                timeouts.append(str(exc))
            raise

    monkeypatch.setattr(Engine, "render", counting)
    found = project.lint()
    assert 1 <= len(timeouts) <= 2
    errors = [f for f in rules(found, "render-error") if "time budget" in f.message]
    assert [where(f, project.root) for f in errors] == \
        [("templates/payment_reminder/sms.txt.j2", 1)]
    assert not [f for f in found if f.channel == "email" and f.severity == "error"]


# -- personal-data-in-link ------------------------------------------------------------


def test_personal_data_in_an_email_link_is_found_by_field_not_value(project: Project) -> None:
    """A button whose URL carries the customer's email address (percent-encoded) is a
    ``personal-data-in-link`` error at the line that puts it there, naming the field and not
    the address: a click would keep the URL in clear in the record, past an erasure."""
    project.edit(EMAIL, 'href="{{ data.pay_url }}"',
                 'href="https://acme.example/pay?who={{ customer.email | urlencode }}"')
    found = rules(project.lint(), "personal-data-in-link")
    line = project.line_of(EMAIL, "customer.email | urlencode")
    assert [where(f, project.root) for f in found] == [(EMAIL, line)]
    assert "customer.email" in found[0].message and "@" not in found[0].message
    assert found[0].severity == "error" and found[0].channel == "email"


def test_personal_data_in_an_sms_link_and_an_opaque_id_is_fine(project: Project) -> None:
    """An SMS link with the customer's phone is found too; a link with only the customer id
    (pseudonymous, in the audit trail anyway) is not."""
    project.edit(SMS, "{% endif %}\n{% endblock %}",
                 "{% endif %} https://acme.example/p/{{ customer.phone | urlencode }}"
                 " https://acme.example/r/{{ customer.id }}\n{% endblock %}")
    found = rules(project.lint(), "personal-data-in-link")
    assert [(where(f, project.root)[0], f.channel) for f in found] == [(SMS, "sms")]
    assert "customer.phone" in found[0].message and "+44" not in found[0].message


def test_personal_data_is_found_inside_a_tracked_link() -> None:
    """With tracking on, an email's links are ``/c/TOKEN``: the target inside the token (signed,
    not encrypted) is searched too, percent-decoded."""
    from datetime import UTC, datetime

    from ccm.render.links import TrackingKey, sign
    from ccm.review.lint.checks import personal_data_in_links

    token = sign("click", "m-1", key=TrackingKey.generate(),
                 target="https://acme.example/pay?who=jane.doe%40example.com",
                 now=datetime(2026, 6, 1, tzinfo=UTC))
    customer = {"id": "C-1", "email": "jane.doe@example.com", "locale": "en_GB"}
    tracked = f"https://t.acme.example/c/{token}"
    assert personal_data_in_links([tracked], customer) == [(tracked, "customer.email")]
    assert personal_data_in_links(["https://acme.example/r/C-1"], customer) == []
