"""Tone-of-voice checks on the text a customer sees.

The text is what is visible: the SMS, the email's subject, preheader and
text alternative, the PDF's text. URLs and e-mail addresses are left out,
and so are the pack's own mandated paragraphs (the legal block, the SMS
opt-out): they are checked by ``legal-missing`` and cannot be reworded by a
template. Words that the pack itself supplies (sender id, brand name,
password hint, greeting, sign-off) never count as shouting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ccm.review.lint.sources import Place

__all__ = ["ACRONYMS", "ToneProblem", "ToneRules", "check_tone", "sentences", "without"]

#: Established acronyms that are not shouting (a pack adds its own in ``tone.acronyms``).
ACRONYMS = frozenset({
    "IBAN", "SWIFT", "SEPA", "BACS", "CHAPS", "FSCS", "HMRC", "GDPR", "CCPA", "HTTPS", "HTML",
    "ISBN", "ISIN", "FATCA", "PAYE", "SONIA", "SOFR", "NYSE", "NASDAQ", "UCITS", "USSD", "ESIM",
    "OK", "ID", "PIN", "PDF", "SMS", "URL", "UK", "US", "USA", "EU", "UAE", "VAT", "FAQ", "ATM",
    "BIC", "APR", "AER", "APY", "ISA", "PLC", "LLC", "INC", "GMBH", "AG", "FCA", "PRA", "FCC",
    "HRB", "STOP", "TAN", "IT", "AM", "PM", "CEO", "QR", "NFC", "SIM", "GB", "MB",
    "KB", "TV", "DSL", "DDMMYYYY", "YYYYMMDD", "TTMMJJJJ", "MMDDYYYY",
})

_WORD_CHARS = r"[\w'’-]"
_URL = re.compile(r"\b(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?؟。])\s+|\n+|\s\|\s")
_BANGS = re.compile(r"!+")

#: ``locate(needle, case_sensitive)`` -> the place in the sources, or None.
Locator = Callable[[str, bool], "Place | None"]
#: ``phrase([words])`` -> where a sentence starting with these words is, or None.
PhraseLocator = Callable[[list[str]], "Place | None"]


def _terms(raw: Any) -> tuple[tuple[str, ...], ...]:
    """Banned terms with their variants: ``"act now"`` or ``{term: act now, variants: [...]}``."""
    out = []
    for item in raw or ():
        if isinstance(item, Mapping):
            out.append((str(item["term"]), *(str(v) for v in item.get("variants") or ())))
        else:
            out.append((str(item),))
    return tuple(out)


@dataclass(frozen=True)
class ToneRules:
    """The pack's ``tone`` section, as the linter uses it."""

    banned: tuple[tuple[str, ...], ...] = ()
    preferred: Mapping[str, str] = field(default_factory=dict)
    max_sentence_words: int | None = None
    allow_exclamations: bool = False
    max_exclamations: int = 1
    allow_all_caps: bool = False
    acronyms: frozenset[str] = frozenset()
    allowed: tuple[str, ...] = ()
    pressure: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, tone: Mapping[str, Any]) -> ToneRules:
        """Read ``pack.yaml``'s ``tone`` mapping."""
        return cls(
            banned=_terms(tone.get("banned_terms")),
            preferred={str(k): str(v) for k, v in (tone.get("preferred_terms") or {}).items()},
            max_sentence_words=tone.get("max_sentence_words"),
            allow_exclamations=bool(tone.get("allow_exclamations", False)),
            max_exclamations=int(tone.get("max_exclamations", 1)),
            allow_all_caps=bool(tone.get("allow_all_caps", False)),
            acronyms=frozenset(str(a) for a in tone.get("acronyms") or ()),
            allowed=tuple(str(a) for a in tone.get("allowed_phrases") or ()),
            pressure={str(k): tuple(str(t) for t in v)
                      for k, v in (tone.get("pressure") or {}).items()},
        )

    def pressure_terms(self, locale: str) -> tuple[str, ...]:
        """The pressuring phrases listed for ``locale`` (exact, then its language)."""
        return self.pressure.get(locale) or self.pressure.get(locale.split("_")[0]) or ()


@dataclass(frozen=True)
class ToneProblem:
    """A tone finding: ``where`` is None when the text could not be traced to a source."""

    rule: str
    where: Place | None
    message: str


@cache
def _currency_codes() -> frozenset[str]:
    """ISO 4217 codes (EUR, GBP, …): never shouting."""
    from babel.core import get_global

    return frozenset(str(code) for code in get_global("all_currencies"))


def without(text: str, passages: Iterable[str]) -> str:
    """``text`` with each passage (matched across any whitespace) replaced by a line break."""
    for passage in passages:
        words = passage.split()
        if words:
            text = re.sub(r"\s+".join(re.escape(w) for w in words), "\n", text)
    return text


def sentences(text: str) -> list[list[str]]:
    """The words of each sentence; lines and table cells end sentences too."""
    out = []
    for chunk in _SENTENCE_END.split(text):
        words = [w for w in chunk.split() if any(ch.isalnum() for ch in w)]
        if words:
            out.append(words)
    return out


def _term(term: str) -> re.Pattern[str]:
    """``term`` as a whole word: a hyphen or apostrophe joins words ("interest-free")."""
    body = r"\s+".join(re.escape(p) for p in term.split())
    return re.compile(rf"(?<!{_WORD_CHARS})" + body + rf"(?!{_WORD_CHARS})", re.IGNORECASE)


def _mask(text: str, phrases: Iterable[str]) -> str:
    """``text`` with the allowed phrases blanked (same length), so no rule sees inside them."""
    for phrase in phrases:
        text = _term(phrase).sub(lambda m: " " * len(m.group()), text)
    return text


_CAPS = re.compile(r"(?<![\w'’-])[^\W\d_a-z]{2,}(?:[ -][^\W\d_a-z]{2,})*(?![\w'’-])")


def check_tone(
    text: str,
    rules: ToneRules,
    *,
    pack: str,
    locate: Locator,
    phrase: PhraseLocator,
    data_has: Callable[[str], Place | None],
    own_words: frozenset[str] = frozenset(),
    locale: str = "",
) -> list[ToneProblem]:
    """Every tone problem in ``text`` (visible text, mandated passages already removed).

    ``locale`` selects the pack's pressuring phrases; allowed phrases
    (``interest-free``) are blanked before any rule reads the text.
    ``locate`` finds text in the sources; ``data_has`` finds it in the sample
    data (shouting and exclamations that only the customer's data brings are
    not the template's voice and are skipped; terms found only in data are
    reported at the sample).
    """
    text = _mask(_URL.sub(" ", text), rules.allowed)
    out: list[ToneProblem] = []

    def place(found: str, *, case: bool = False) -> Place | None:
        return locate(found, case) or data_has(found)

    for forms in rules.banned:
        for form in forms:
            m = _term(form).search(text)
            if m:
                variant = "" if form == forms[0] else f" (a variant of '{forms[0]}')"
                out.append(ToneProblem(
                    "banned-term", place(m.group()),
                    f"'{m.group()}'{variant} is banned by the {pack} tone of voice"))
                break
    for term in rules.pressure_terms(locale):
        m = _term(term).search(text)
        if m:
            out.append(ToneProblem(
                "pressuring-wording", place(m.group()),
                f"'{m.group()}' is threatening or pressuring wording ({pack} tone for "
                f"{locale})"))
    for term, better in rules.preferred.items():
        for m in _term(term).finditer(text):
            out.append(ToneProblem(
                "preferred-term", place(m.group()),
                f"use '{better}' instead of '{m.group()}' ({pack} tone of voice)"))
            break

    if rules.max_sentence_words:
        for words in sentences(text):
            if len(words) > rules.max_sentence_words:
                start = " ".join(words[:8])
                out.append(ToneProblem(
                    "sentence-length", phrase(words),
                    f"sentence of {len(words)} words, over the {pack} limit of "
                    f"{rules.max_sentence_words}: '{start}…'",
                ))

    if not rules.allow_all_caps:
        allowed = ACRONYMS | rules.acronyms | own_words | _currency_codes()
        seen: set[str] = set()
        for m in _CAPS.finditer(text):
            words = [w for part in m.group().split() for w in part.split("-")]
            shouted = [w for w in words if w.isupper() and w not in allowed]
            if not shouted or m.group() in seen:
                continue
            seen.add(m.group())
            found = " ".join(shouted) if len(shouted) == 1 else m.group()
            where = locate(found, True) or locate(shouted[0], True)
            if where is None and data_has(shouted[0]) is not None:
                continue  # the customer's own data (a name, a city in capitals)
            out.append(ToneProblem(
                "shouting", where,
                f"'{found}' is in capitals; {pack} does not allow ALL CAPS (declare real "
                "acronyms in tone.acronyms)"))

    seen_bangs: set[str] = set()
    singles = 0
    for m in _BANGS.finditer(text):
        run = m.group()
        singles += len(run) == 1
        if len(run) == 1 and rules.allow_exclamations and singles <= rules.max_exclamations:
            continue
        before = text[:m.start()].split()
        word = before[-1] if before and not text[m.start() - 1].isspace() else ""
        snippet = word + run
        if snippet in seen_bangs:
            continue
        seen_bangs.add(snippet)
        where = locate(snippet, False) if word else None
        if where is None and word and data_has(snippet) is not None:
            continue
        if len(run) > 1:
            message = f"'{snippet}': runs of exclamation marks are never on brand"
        elif rules.allow_exclamations:
            message = f"'{snippet}': more than {rules.max_exclamations} exclamation mark(s) " \
                f"in one message ({pack} tone.max_exclamations)"
        else:
            message = f"'{snippet}': {pack} does not allow exclamation marks"
        out.append(ToneProblem("exclamation", where, message))
    return out
