"""What the linter reports: :class:`Finding`, the rule catalogue and per-pack configuration."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

__all__ = ["DOCS", "RULES", "Edit", "Finding", "PackConfig", "Rule", "Severity", "dedupe", "make"]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


#: Where each rule is documented (the rule id is the section's anchor).
DOCS = "docs/lint.md"


@dataclass(frozen=True)
class Rule:
    """A check: its id, default severity, one line on what it catches, one line on the fix."""

    id: str
    severity: Severity
    summary: str
    fix: str = ""

    @property
    def docs(self) -> str:
        """The rule's section in the docs."""
        return f"{DOCS}#{self.id}"


#: Every rule, by id (documented with a bad and a good example in docs/lint.md).
RULES: Mapping[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule("render-error", "error", "a template, layout or pack fails to load or render",
             "fix the error at this line; the message says what is wrong there (a Jinja or "
             "MJML error, a key of pack.yaml or template.yaml, the contract, a catalog)"),
        Rule("unsafe-construct", "error",
             "|safe, |attr, autoescape off, Markup(, dynamic include/extends, "
             "private attributes, mj-include outside the pack",
             "print the value escaped; include templates by a literal name inside the pack"),
        Rule("unknown-block", "error",
             "a block the layout a source extends does not have: its text is never shown",
             "name the block as the layout does (the message lists its blocks)"),
        Rule("contract-violation", "error", "a sample's data breaks the template's contract",
             "make the sample match contract.schema.json (or fix the contract)"),
        Rule("no-samples", "warning", "a template has no sample to render",
             "add samples/01_<locale>.json with a realistic request"),
        Rule("banned-term", "error", "a term (or a declared variant) the pack's tone bans",
             "reword without the banned term"),
        Rule("preferred-term", "warning", "a term the pack's tone replaces with another",
             "use the preferred term the message names"),
        Rule("sentence-length", "warning", "a sentence longer than tone.max_sentence_words",
             "split the sentence in two"),
        Rule("greeting-missing", "error", "an email or letter without the pack's greeting",
             "keep {{ brand.greeting }} in the layout"),
        Rule("sign-off-missing", "error", "an email or letter without the pack's sign-off",
             "keep {{ brand.sign_off }} in the layout"),
        Rule("shouting", "warning",
             "ALL-CAPS words or phrases (not the pack's acronyms) when tone.allow_all_caps "
             "is false",
             "write it in sentence case, or declare the acronym in tone.acronyms"),
        Rule("exclamation", "warning",
             "'!' when tone.allow_exclamations is false; '!!' or more than "
             "tone.max_exclamations always",
             "end the sentence with a full stop"),
        Rule("pressuring-wording", "error",
             "threatening or pressuring wording the pack's tone lists for the locale",
             "state the facts and the next step calmly; see the pack's tone.pressure list"),
        Rule("legal-missing", "error", "the pack's legal block is not in the PDF or email",
             "keep {{ brand.legal }} in the layout"),
        Rule("legal-hidden", "error",
             "a legal or compliance text present but hidden (display:none, "
             "visibility:hidden, zero size, text the colour of its background)",
             "show the text: remove the hiding style or class"),
        Rule("legal-wrong-language", "error",
             "the legal block of another locale in place of the sample's language",
             "use {{ brand.legal }}, which follows the message locale"),
        Rule("compliance-missing", "error",
             "a text or header the pack's compliance section requires for this message "
             "type, locale and channel is not in the message",
             "add the required element (the message names it) to the layout or template"),
        Rule("message-type-escape", "error",
             "a template declares a message type that drops obligations its journey carries",
             "set message_type back to the type the pack's compliance.journeys requires"),
        Rule("off-palette-color", "error", "a colour in CSS or MJML outside the pack palette",
             "use the palette colour the message suggests"),
        Rule("color-literal", "warning",
             "a palette colour written as a literal instead of its palette token",
             "write {{ brand.palette.<name> }} or var(--color-<name>); ccm lint --fix does it"),
        Rule("low-contrast", "error", "text and background below WCAG 2.1 AA contrast",
             "use a darker text or lighter background from the palette"),
        Rule("img-alt-missing", "error", "an image without alt text",
             "add alt=\"{{ _('…') }}\" describing the image; ccm lint --fix adds the "
             "pack's default"),
        Rule("alt-text-meaningless", "error",
             "alt text that is a file name, a URL or a word like 'image' or 'logo'",
             "describe what the image shows (the logo's alt is {{ brand.logo_alt }})"),
        Rule("insecure-link", "error", "an email or PDF link that is not absolute https",
             "use an absolute https:// URL (require ^https:// in the contract for data)"),
        Rule("personal-data-in-link", "error",
             "a link whose URL holds the customer's personal data (email, phone, name, "
             "birth date, address, document code)",
             "link with an opaque id (the message's tracking does the rest); the URL is "
             "kept in clear in the record's click events, where erasure cannot reach it"),
        Rule("unsubscribe-missing", "error",
             "a marketing email without a visible unsubscribe link or List-Unsubscribe headers",
             "keep the pack's unsubscribe footer and message.unsubscribe_url"),
        Rule("email-too-large", "error",
             "email HTML over 102 KB (Gmail clips it; a warning from 90 KB)",
             "summarise in the email and link the details"),
        Rule("sms-too-long", "error", "an SMS over the pack's segment limit",
             "shorten the text or link to the details"),
        Rule("sms-ucs2", "warning", "template text forces a Latin-script SMS into UCS-2",
             "use the plain GSM-7 character (straight quote, '-')"),
        Rule("missing-translation", "error",
             "a message id without a translation for a pack locale",
             "add the msgid with its msgstr to the locale's messages.po"),
        Rule("untranslated-text", "error",
             "user-visible text (text, title, alt, aria-label, CSS content) not wrapped for "
             "translation",
             "wrap it: {{ _(\"…\") }}; ccm lint --fix does it"),
        Rule("catalog-incomplete", "error",
             "a catalog entry that is empty, fuzzy or copied through untranslated",
             "translate the msgstr for the catalog's locale"),
        Rule("placeholder-mismatch", "error",
             "placeholders in a msgstr differ from its msgid",
             "use exactly the msgid's placeholders (%(name)s, {{ name }})"),
        Rule("hardcoded-currency", "error",
             "a currency symbol or code written next to an amount instead of |money",
             "format the amount with {{ value|money(currency) }}"),
        Rule("literal-amount", "error",
             "an amount, number or percentage written literally in a template or translation",
             "pass the value in and format it with |number, |percent or |money"),
        Rule("literal-date", "error", "a date written in one fixed format",
             "pass the date in and format it with |date"),
        Rule("unformatted-value", "error",
             "a number or date from the data printed without a locale filter",
             "add |money, |number, |percent or |date"),
        Rule("undeclared-variable", "error",
             "a template uses a data field its contract does not declare",
             "declare the field in contract.schema.json or fix the name"),
        Rule("unused-field", "warning",
             "a required contract field no template source uses",
             "use it, drop it from required, or mark it \"x-unused\": \"why\""),
        Rule("font-not-in-pack", "error",
             "a font family in CSS or MJML that is not a pack font or a declared fallback",
             "use var(--font-body) / the pack's family, or declare the fallback in pack.yaml"),
        Rule("font-not-embeddable", "error",
             "a pack font whose file is missing or whose licence forbids embedding",
             "ship an installable/editable-licensed font file in the pack's assets"),
        Rule("asset-not-in-pack", "error",
             "an image, font or stylesheet not from the pack (http:, file:, another host)",
             "put the file in the pack's assets and refer to it through brand.* or assets_url"),
        Rule("brand-literal", "error",
             "the brand's name or logo written literally instead of taken from the pack",
             "write {{ brand.name }} / {{ brand.logo }}"),
        Rule("foreign-brand", "error", "another pack's name, logo or colours",
             "remove it; a template is brand-neutral and takes its brand from the pack"),
        Rule("unsafe-pattern", "error",
             "a data-contract regex that can take exponential time on a hostile value",
             "rewrite it without a repetition inside a repetition (^a+$ for ^(a+)+$), or "
             "make the inner one possessive (a++) or atomic ((?>...))"),
        Rule("channel-source-mismatch", "error",
             "a declared channel without a source, or a source for an undeclared channel",
             "add the source file or drop the channel from template.yaml"),
        Rule("weak-password-rule", "warning", "a PDF password rule under about 40 bits",
             "add a suffix_field the sender does not print"),
        Rule("lint-config", "warning", "an unknown rule id in pack.yaml's lint section",
             "spell the rule id as docs/lint.md does"),
    )
}


@dataclass(frozen=True)
class Edit:
    """A mechanical fix: on ``line`` of the finding's file, replace ``old`` by ``new``."""

    line: int
    old: str
    new: str


@dataclass(frozen=True)
class Finding:
    """One problem: where (``file``, 1-based ``line`` and ``column``), which rule, how bad, and
    in what context (pack, template, channel, locale, and the ``sample`` that showed it)."""

    file: str
    line: int
    rule: str
    severity: Severity
    message: str
    pack: str | None = None
    template: str | None = None
    channel: str | None = None
    locale: str | None = None
    column: int = 1
    sample: str | None = None
    fix: str = ""
    edit: Edit | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.rule}: " \
            f"{self.message}"

    @property
    def docs(self) -> str:
        """The rule's section in docs/lint.md."""
        return f"{DOCS}#{self.rule}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field (``None`` where it does not apply) and the docs link."""
        out = asdict(self)
        out["fixable"] = out.pop("edit") is not None
        out["docs"] = self.docs
        return out


def make(
    rule: str,
    file: str | os.PathLike[str],
    line: int | None,
    message: str,
    *,
    severity: Severity | None = None,
    pack: str | None = None,
    template: str | None = None,
    channel: str | None = None,
    locale: str | None = None,
    column: int | None = None,
    sample: str | os.PathLike[str] | None = None,
    fix: str | None = None,
    edit: Edit | None = None,
) -> Finding:
    """A finding of ``rule`` with its default severity and fix unless given."""
    if rule not in RULES:
        raise ValueError(f"unknown lint rule {rule!r}")
    return Finding(
        file=str(file),
        line=line if isinstance(line, int) and line > 0 else 1,
        rule=rule,
        severity=severity or RULES[rule].severity,
        message=message,
        pack=pack,
        template=template,
        channel=channel,
        locale=locale,
        column=column if isinstance(column, int) and column > 0 else 1,
        sample=Path(sample).name if sample else None,
        fix=fix or RULES[rule].fix,
        edit=edit,
    )


@dataclass(frozen=True)
class PackConfig:
    """A pack's ``lint:`` section: rules switched off and severities changed."""

    disabled: frozenset[str] = frozenset()
    severity: Mapping[str, Severity] | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> PackConfig:
        """Read ``pack.yaml``'s ``lint`` mapping (already schema-validated)."""
        raw = raw or {}
        severity = {
            str(k): v for k, v in dict(raw.get("severity") or {}).items() if v in SEVERITIES
        }
        return cls(frozenset(str(r) for r in raw.get("disabled") or ()), severity)

    def unknown(self) -> list[str]:
        """Rule ids named in the config that do not exist."""
        named = set(self.disabled) | set(self.severity or {})
        return sorted(named - set(RULES))

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        """Drop disabled rules and apply severity overrides."""
        out = []
        overrides = self.severity or {}
        for f in findings:
            if f.rule in self.disabled:
                continue
            wanted = overrides.get(f.rule)
            if wanted is not None and wanted != f.severity:
                f = replace(f, severity=wanted)
            out.append(f)
        return out


_ORDER = {"error": 0, "warning": 1, "info": 2}


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per pack, place, rule and message (the first sample that showed it, which
    the finding names), sorted by place."""
    seen: dict[tuple[Any, ...], Finding] = {}
    for f in findings:
        key = (f.pack, f.file, f.line, f.column, f.rule, f.message)
        seen.setdefault(key, f)
    return sorted(seen.values(), key=lambda f: (f.file, f.line, f.column, _ORDER[f.severity],
                                                f.rule, f.message, f.pack or ""))
