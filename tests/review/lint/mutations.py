"""Off-brand, off-tone and non-compliant changes to the example packs and templates.

Each :class:`Mutation` is what a designer, copywriter or translator might do
wrong: edits to a copy of one example pack and template, and the rule ids any
of which counts as catching it. ``python -m tests.review.lint.mutations``
prints the share caught (the figure docs/lint.md and the issue ask for).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ccm.review.lint import Finding
from tests.examples_helpers import PACKS

from .conftest import make_project

PR = "templates/payment_reminder"
EMAIL = f"{PR}/email.mjml.j2"
SMS = f"{PR}/sms.txt.j2"
ACME = "brand_packs/acme"
LAYOUT = f"{ACME}/layouts/email.mjml.j2"
PDF_LAYOUT = f"{ACME}/layouts/pdf.html.j2"
CSS = f"{ACME}/layouts/pdf.css"
PO_DE = f"{ACME}/locales/de_DE/LC_MESSAGES/messages.po"
TPL_PO_DE = f"{PR}/locales/de_DE/LC_MESSAGES/messages.po"
HEADING = '<mj-text mj-class="heading">{{ _("Payment reminder") }}</mj-text>'
LEGAL = '<mj-text color="{{ p.on_primary }}" font-size="11px" line-height="17px" ' \
    'padding="0 40px 8px">{{ brand.legal }}</mj-text>'
WELCOME_PDF = "templates/welcome/pdf.html.j2"
THANKS = '<p>{{ _("If anything is unclear, please contact us. We will be glad to help.") }}</p>'


@dataclass(frozen=True)
class Mutation:
    """Edits ``(file, old, new)`` to a copy of ``pack`` with ``template``; caught by ``rules``."""

    id: str
    edits: tuple[tuple[str, str, str], ...]
    rules: frozenset[str]
    pack: str = "acme"
    template: str = "payment_reminder"


def _m(id: str, file: str, old: str, new: str, *rules: str, pack: str = "acme",
       template: str = "payment_reminder") -> Mutation:
    return Mutation(id, ((file, old, new),), frozenset(rules), pack, template)


def _heading(id: str, markup: str, *rules: str) -> Mutation:
    return _m(id, EMAIL, HEADING, markup, *rules)


MUTATIONS: tuple[Mutation, ...] = (
    # -- tone ------------------------------------------------------------------------
    _heading("banned-term", '<mj-text>{{ _("Please act now.") }}</mj-text>', "banned-term"),
    _heading("banned-variant", '<mj-text>{{ _("Please act today.") }}</mj-text>',
             "banned-term"),
    _heading("banned-hyphenated", '<mj-text>{{ _("A risk-free way to pay.") }}</mj-text>',
             "banned-term"),
    _heading("pressure", '<mj-text>{{ _("Pay or we take legal action.") }}</mj-text>',
             "pressuring-wording"),
    _heading("pressure-immediately", '<mj-text>{{ _("Pay immediately.") }}</mj-text>',
             "pressuring-wording"),
    _heading("shouting-word", '<mj-text>{{ _("Payment OVERDUE") }}</mj-text>', "shouting"),
    _heading("shouting-short-phrase", '<mj-text>{{ _("PAY NOW") }}</mj-text>', "shouting"),
    _heading("exclamation", '<mj-text>{{ _("Payment reminder!") }}</mj-text>', "exclamation"),
    _heading("preferred-term", '<mj-text>{{ _("Sorry for the problem.") }}</mj-text>',
             "preferred-term"),
    _heading("sentence-length", '<mj-text>{{ _("We are writing to you today because our '
             "records show that the payment which was due on your account has not yet "
             "reached us and we would therefore be grateful if you could look into it as soon "
             'as you are able.") }}</mj-text>', "sentence-length"),
    _m("exclamations-excess", "templates/product_offer/email.mjml.j2",
       '{{ _("Find out more") }}', '{{ _("Find out more!") }} {{ _("Great news!") }}',
       "exclamation", pack="globex", template="product_offer"),
    _m("exclamation-run", "templates/product_offer/email.mjml.j2",
       '{{ _("Find out more") }}', '{{ _("Find out more!!") }}', "exclamation",
       pack="globex", template="product_offer"),
    # -- legal and compliance ----------------------------------------------------------
    _m("legal-removed", LAYOUT, LEGAL, "", "legal-missing", "compliance-missing"),
    Mutation("legal-display-none", (
        (LAYOUT, 'padding="0 40px 8px">{{ brand.legal }}',
         'padding="0 40px 8px" css-class="fine-print">{{ brand.legal }}'),
        (LAYOUT, "      .footer a {", "      .fine-print { display: none; }\n      .footer a {"),
    ), frozenset({"legal-hidden"})),
    _m("legal-white-on-white", LAYOUT, LEGAL, LEGAL.replace("p.on_primary", "p.primary"),
       "legal-hidden", "low-contrast"),
    _m("legal-zero-size", LAYOUT, LEGAL, LEGAL.replace('font-size="11px"', 'font-size="0px"'),
       "legal-hidden"),
    Mutation("legal-english-in-german", (
        (f"{ACME}/pack.yaml", "Amtsgericht Frankfurt am Main, HRB 123456.",
         "Registered in England and Wales."),
        (f"{ACME}/pack.yaml", "Bundesanstalt für\n    Finanzdienstleistungsaufsicht (BaFin)",
         "Financial Conduct Authority"),
    ), frozenset({"compliance-missing", "legal-wrong-language"})),
    _m("regulator-wording-removed", f"{ACME}/pack.yaml", "regulated by the Financial Conduct\n"
       "    Authority and", "regulated by the FCA and",
       "compliance-missing"),
    _m("unsubscribe-link-removed", "brand_packs/globex/layouts/email.mjml.j2",
       '{{ _("Unsubscribe") }}', '{{ _("Manage preferences") }}',
       "unsubscribe-missing", "compliance-missing", "missing-translation", pack="globex",
       template="product_offer"),
    _m("marketing-as-operational", "templates/product_offer/template.yaml",
       "message_type: marketing", "message_type: operational", "message-type-escape",
       template="product_offer"),
    _m("statement-not-confidential", "templates/monthly_statement/template.yaml",
       "confidential: true", "confidential: false", "compliance-missing",
       template="monthly_statement"),
    _m("sms-opt-out-removed", f"{ACME}/layouts/sms.txt.j2", " {{ brand.sms.opt_out }}", "",
       "compliance-missing", template="product_offer"),
    # -- typography ----------------------------------------------------------------------
    _m("css-font", CSS, "font-family: var(--font-body);", "font-family: 'Comic Sans MS';",
       "font-not-in-pack"),
    _m("css-font-role", CSS, "font-family: var(--font-heading);",
       "font-family: var(--font-display);", "font-not-in-pack"),
    _m("mjml-font", LAYOUT, "Verdana, Geneva, Arial", "'Helvetica Neue', Arial",
       "font-not-in-pack"),
    _heading("inline-font", '<mj-text font-family="Papyrus">{{ _("Payment reminder") }}'
             "</mj-text>", "font-not-in-pack"),
    _m("font-file-missing", f"{ACME}/pack.yaml", "bold: assets/fonts/DejaVuSans-Bold.ttf",
       "bold: assets/fonts/Missing-Bold.ttf", "font-not-embeddable", "render-error"),
    # -- locale formatting -------------------------------------------------------------
    _m("currency-symbol", EMAIL, "{{ data.amount|money(data.currency) }}</td>",
       "£{{ data.amount|number }}</td>", "hardcoded-currency"),
    _heading("literal-amount", '<mj-text>{{ _("A late fee of 12.50 may apply.") }}</mj-text>',
             "literal-amount", "hardcoded-currency"),
    _m("literal-date-in-translation", TPL_PO_DE, 'msgstr "Zahlungserinnerung"',
       'msgstr "Zahlungserinnerung vom 31.10.2025"', "literal-date"),
    _m("money-filter-dropped", EMAIL, "{{ data.amount|money(data.currency) }}</td>",
       "{{ data.amount }}</td>", "unformatted-value"),
    _m("date-filter-dropped", EMAIL, '{{ data.due_date|date("long") }}</td>',
       "{{ data.due_date }}</td>", "unformatted-value"),
    # -- translation completeness ------------------------------------------------------------
    _heading("text-not-wrapped", "<mj-text>Payment reminder</mj-text>", "untranslated-text"),
    _m("alt-not-wrapped", LAYOUT, 'alt="{{ brand.logo_alt }}"', 'alt="Acme logo"',
       "untranslated-text", "brand-literal"),
    _m("aria-label-not-wrapped", EMAIL, '<mj-button mj-class="button"',
       '<mj-button mj-class="button" title="Pay your bill"', "untranslated-text"),
    _m("catalog-empty", TPL_PO_DE, 'msgstr "Zahlungserinnerung"', 'msgstr ""',
       "catalog-incomplete", "missing-translation"),
    _m("catalog-copied", TPL_PO_DE, 'msgstr "Zahlungserinnerung"',
       'msgstr "Payment reminder"', "catalog-incomplete"),
    _m("placeholder-renamed", PO_DE, "Ihr Passwort ist %(hint)s.",
       "Ihr Passwort ist %(hinweis)s.", "placeholder-mismatch", "render-error"),
    _m("page-x-of-y-literal", CSS, "@bottom-right {\n",
       '@bottom-right {\n    content: "Page " counter(page) " of " counter(pages);\n',
       "untranslated-text"),
    # -- assets --------------------------------------------------------------------------
    _heading("image-plain-http", '<mj-image src="http://acme.example/brand/v1/card.png" '
             'alt="{{ _(\'Your card\') }}" />', "asset-not-in-pack"),
    _heading("image-hot-linked", '<mj-image src="https://images.example.net/card.png" '
             'alt="{{ _(\'Your card\') }}" />', "asset-not-in-pack"),
    _m("css-file-url", CSS, "@page {\n  size: A4;",
       "@page {\n  size: A4;\n  background: url(file:///etc/brand/paper.png);",
       "asset-not-in-pack"),
    _heading("link-plain-http", '<mj-text><a href="http://acme.example/help">{{ _("Help") }}'
             "</a></mj-text>", "insecure-link"),
    _m("pdf-link-plain-http", WELCOME_PDF, THANKS,
       '<p><a href="http://acme.example/help">{{ _("Help") }}</a></p>', "insecure-link",
       template="welcome"),
    _m("tracking-plain-http", f"{ACME}/pack.yaml", "\nlint:\n",
       "\ntracking:\n  base_url: http://t.acme.example\n\nlint:\n", "insecure-link",
       template="product_offer"),
    # -- data contract ---------------------------------------------------------------------
    _m("undeclared-field", EMAIL, "{% if data.reference is defined %}",
       "{% if data.refernce is defined %}", "undeclared-variable"),
    _m("undeclared-nested", EMAIL, "{{ data.reference }}", "{{ data.reference.code }}",
       "undeclared-variable", "render-error"),
    Mutation("required-field-unused", (
        (WELCOME_PDF, '<tr><th scope="row">{{ _("Customer number") }}</th><td>'
         "{{ data.customer_number }}</td></tr>", ""),
        ("templates/welcome/email.mjml.j2", '<tr><th scope="row">{{ _("Customer number") }}'
         '</th><td class="amount">{{ data.customer_number }}</td></tr>', ""),
    ), frozenset({"unused-field"}), template="welcome"),
    # -- brand identity ----------------------------------------------------------------------
    _heading("brand-name-literal", '<mj-text>{{ _("Acme Bank payment reminder") }}</mj-text>',
             "brand-literal"),
    _heading("other-brand-name", '<mj-text>{{ _("Pay like a Globex customer") }}</mj-text>',
             "foreign-brand"),
    _heading("other-brand-colour", '<mj-text color="#FF6F59">{{ _("Payment reminder") }}'
             "</mj-text>", "foreign-brand", "off-palette-color"),
    _m("logo-literal", LAYOUT, 'src="{{ logo }}"',
       'src="https://acme.example/brand/v1/logo.png"', "brand-literal"),
    _m("other-brand-logo", LAYOUT, 'src="{{ logo }}"',
       'src="https://cdn.globex.example/brand/v1/logo.png"', "foreign-brand",
       "asset-not-in-pack"),
    _m("alt-file-name", LAYOUT, 'alt="{{ brand.logo_alt }}"', 'alt="{{ _(\'logo.png\') }}"',
       "alt-text-meaningless", "missing-translation"),
    _m("alt-generic", LAYOUT, 'alt="{{ brand.logo_alt }}"', 'alt="{{ _(\'Image\') }}"',
       "alt-text-meaningless", "missing-translation"),
    _m("alt-missing", LAYOUT, 'alt="{{ brand.logo_alt }}" ', "", "img-alt-missing"),
    # -- colours and the rest ---------------------------------------------------------------
    _heading("off-palette", '<mj-text color="#ff0000">{{ _("Payment reminder") }}</mj-text>',
             "off-palette-color"),
    _heading("palette-literal", '<mj-text color="#14284B">{{ _("Payment reminder") }}'
             "</mj-text>", "color-literal"),
    _heading("low-contrast", '<mj-text color="{{ brand.palette.accent }}">'
             '{{ _("Payment reminder") }}</mj-text>', "low-contrast"),
    _heading("unsafe", "<mj-text>{{ data.reference|safe }}</mj-text>", "unsafe-construct"),
    _m("sms-typographic-quote", SMS, "days overdue. Pay at {{ url }}\n",
       "days overdue – pay at {{ url }}\n", "sms-ucs2"),
)


def caught(mutation: Mutation, base: Path) -> tuple[bool, list[Finding]]:
    """Whether linting the mutated copy reports one of the mutation's rules (and the findings)."""
    project = make_project(base, mutation.pack, mutation.template)
    for other in sorted(PACKS.iterdir()):  # the other packs sit next to it, as in a repository
        if (other / "pack.yaml").is_file() and other.name != mutation.pack:
            shutil.copytree(other, base / "brand_packs" / other.name)
    for file, old, new in mutation.edits:
        project.edit(file, old, new)
    found = project.lint()
    return any(f.rule in mutation.rules for f in found), found


def score(mutations: tuple[Mutation, ...] | None = None) -> tuple[int, int, list[str]]:
    """``(caught, total, ids missed)`` over ``mutations`` (all of them by default)."""
    mutations = mutations if mutations is not None else MUTATIONS + HELD_OUT
    missed = []
    for mutation in mutations:
        with tempfile.TemporaryDirectory() as tmp:
            ok, _ = caught(mutation, Path(tmp))
        if not ok:
            missed.append(mutation.id)
    return len(mutations) - len(missed), len(mutations), missed


GLOBEX_EMAIL = "brand_packs/globex/layouts/email.mjml.j2"
OFFER = "templates/product_offer/email.mjml.j2"
FIND_OUT = '{{ _("Find out more") }}'

#: Written after the rules, as a check on the set above: never tuned against the linter.
HELD_OUT: tuple[Mutation, ...] = (
    _m("globex-banned-in-subject", OFFER, "An offer for you:", "Act now: an offer for you:",
       "banned-term", "missing-translation", pack="globex", template="product_offer"),
    _m("globex-unlimited-shouted", OFFER, FIND_OUT, '{{ _("UNLIMITED data") }}',
       "banned-term", "shouting", pack="globex", template="product_offer"),
    _heading("globex-final-notice", '<mj-text>{{ _("This is your final notice.") }}</mj-text>',
             "pressuring-wording"),
    _m("pdf-literal-heading", WELCOME_PDF, THANKS, "<h2>Next steps</h2>",
       "untranslated-text", template="welcome"),
    _m("pdf-hot-linked-image", WELCOME_PDF, THANKS,
       '<img src="https://images.example.net/hero.jpg" alt="{{ _(\'Welcome\') }}">',
       "asset-not-in-pack", "missing-translation", template="welcome"),
    _m("pdf-legal-visibility-hidden", CSS, ".running-legal {\n  position: running(legal);",
       ".running-legal {\n  position: running(legal);\n  visibility: hidden;",
       "legal-hidden", template="welcome"),
    _m("globex-css-font", "brand_packs/globex/layouts/pdf.css",
       ".subject { font-family: var(--font-heading);", ".subject { font-family: Roboto;",
       "font-not-in-pack", pack="globex", template="welcome"),
    _m("globex-google-font", GLOBEX_EMAIL, "<mj-head>",
       '<mj-head>\n    <mj-font name="Roboto" '
       'href="https://fonts.googleapis.com/css?family=Roboto" />',
       "asset-not-in-pack", "font-not-in-pack", pack="globex"),
    _m("welcome-date-unformatted", "templates/welcome/email.mjml.j2",
       '{{ data.start_date|date("long") }}</td>', "{{ data.start_date }}</td>",
       "unformatted-value", template="welcome"),
    _m("euro-sign-in-translation", TPL_PO_DE, "Zahlung über %(amount)s ist überfällig",
       "Zahlung über %(amount)s € ist überfällig", "hardcoded-currency"),
    _m("arabic-entry-empty", "brand_packs/globex/locales/ar/LC_MESSAGES/messages.po",
       'msgstr "إلغاء الاشتراك"', 'msgstr ""', "catalog-incomplete", "missing-translation",
       pack="globex", template="product_offer"),
    _m("arabic-placeholder-dropped", "brand_packs/globex/locales/ar/LC_MESSAGES/messages.po",
       'msgstr "الصفحة %(page)s من %(pages)s"', 'msgstr "الصفحة %(page)s"',
       "placeholder-mismatch", pack="globex", template="welcome"),
    _m("logo-alt-empty", LAYOUT, 'alt="{{ brand.logo_alt }}"', 'alt=""', "img-alt-missing"),
    _m("nps-undeclared", "templates/nps_survey/email.mjml.j2", "{% if data.closes_on is defined %}",
       "{% if data.closes_on is defined and data.reminder %}", "undeclared-variable",
       template="nps_survey"),
    _m("globex-registration-removed", "brand_packs/globex/pack.yaml",
       "FCC Registration Number 0012345678.", "", "compliance-missing", pack="globex"),
    _m("unsubscribe-hidden", LAYOUT, '<a href="{{ message.unsubscribe_url }}" style="color: '
       '{{ p.background }};">', '<a href="{{ message.unsubscribe_url }}" style="display: none;">',
       "unsubscribe-missing", "compliance-missing", template="product_offer"),
    _m("globex-sms-opt-out-removed", "brand_packs/globex/layouts/sms.txt.j2",
       " {{ brand.sms.opt_out }}", "", "compliance-missing", pack="globex",
       template="product_offer"),
    _m("german-banned-in-translation", TPL_PO_DE, 'msgstr "Zahlungserinnerung"',
       'msgstr "Zahlungserinnerung: sofort zugreifen"', "banned-term"),
    _m("pdf-page-count-literal", WELCOME_PDF, THANKS, "<p>Page 1 of 2</p>",
       "untranslated-text", template="welcome"),
    _heading("globex-brand-literal", '<mj-text>{{ _("Thanks for choosing Globex") }}</mj-text>',
             "brand-literal", "foreign-brand"),
    _heading("printf-amount", '<mj-text>{{ "%.2f"|format(data.amount) }}</mj-text>',
             "unformatted-value", "literal-amount"),
    _heading("date-in-msgid", '<mj-text>{{ _("Please pay by 31/10/2025.") }}</mj-text>',
             "literal-date"),
    _m("globex-http-link", GLOBEX_EMAIL, '<a href="{{ message.unsubscribe_url }}">',
       '<a href="http://globex.example/terms">Terms</a> <a href="{{ message.unsubscribe_url }}">',
       "insecure-link", "untranslated-text", pack="globex", template="product_offer"),
)


if __name__ == "__main__":
    for name, group in (("main set", MUTATIONS), ("held-out set", HELD_OUT)):
        got, total, missed = score(group)
        print(f"{name}: caught {got} of {total} ({100 * got / total:.1f}%); missed: {missed}")
