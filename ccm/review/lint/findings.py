"""What the linter reports: :class:`Finding`, the rule catalogue and per-pack configuration."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["RULES", "Finding", "PackConfig", "Rule", "Severity", "dedupe", "make"]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Rule:
    """A check: its id, default severity and one line on what it catches."""

    id: str
    severity: Severity
    summary: str


#: Every rule, by id (documented with a bad and a good example in docs/lint.md).
RULES: Mapping[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule("render-error", "error", "a template, layout or pack fails to load or render"),
        Rule("unsafe-construct", "error",
             "|safe, |attr, autoescape off, Markup(, dynamic include/extends, "
             "private attributes, mj-include outside the pack"),
        Rule("contract-violation", "error", "a sample's data breaks the template's contract"),
        Rule("no-samples", "warning", "a template has no sample to render"),
        Rule("banned-term", "error", "a term the pack's tone bans"),
        Rule("preferred-term", "warning", "a term the pack's tone replaces with another"),
        Rule("sentence-length", "warning", "a sentence longer than tone.max_sentence_words"),
        Rule("greeting-missing", "error", "an email or letter without the pack's greeting"),
        Rule("sign-off-missing", "error", "an email or letter without the pack's sign-off"),
        Rule("shouting", "warning", "ALL-CAPS words when tone.allow_all_caps is false"),
        Rule("exclamation", "warning", "'!' when tone.allow_exclamations is false; '!!' always"),
        Rule("legal-missing", "error", "the pack's legal block is not in the PDF or email"),
        Rule("off-palette-color", "error", "a colour in CSS or MJML outside the pack palette"),
        Rule("low-contrast", "error", "text and background below WCAG 2.1 AA contrast"),
        Rule("img-alt-missing", "error", "an image without alt text"),
        Rule("insecure-link", "error", "an email link that is not absolute https"),
        Rule("unsubscribe-missing", "error",
             "a marketing email without a visible unsubscribe link or List-Unsubscribe headers"),
        Rule("email-too-large", "error",
             "email HTML over 102 KB (Gmail clips it; a warning from 90 KB)"),
        Rule("sms-too-long", "error", "an SMS over the pack's segment limit"),
        Rule("sms-ucs2", "warning", "template text forces a Latin-script SMS into UCS-2"),
        Rule("missing-translation", "error",
             "a message id without a translation for a pack locale"),
        Rule("channel-source-mismatch", "error",
             "a declared channel without a source, or a source for an undeclared channel"),
        Rule("weak-password-rule", "warning", "a PDF password rule under about 40 bits"),
        Rule("lint-config", "warning", "an unknown rule id in pack.yaml's lint section"),
    )
}


@dataclass(frozen=True)
class Finding:
    """One problem: where (``file``, 1-based ``line``), which rule, how bad, and in what context."""

    file: str
    line: int
    rule: str
    severity: Severity
    message: str
    pack: str | None = None
    template: str | None = None
    channel: str | None = None
    locale: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field, ``None`` where it does not apply."""
        return asdict(self)


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
) -> Finding:
    """A finding of ``rule`` with its default severity unless ``severity`` is given."""
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
                f = Finding(**{**asdict(f), "severity": wanted})
            out.append(f)
        return out


_ORDER = {"error": 0, "warning": 1, "info": 2}


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per pack, place, rule and message (the first seen), sorted by place."""
    seen: dict[tuple[Any, ...], Finding] = {}
    for f in findings:
        key = (f.pack, f.file, f.line, f.rule, f.message)
        seen.setdefault(key, f)
    return sorted(seen.values(), key=lambda f: (f.file, f.line, _ORDER[f.severity], f.rule,
                                                f.message, f.pack or ""))
