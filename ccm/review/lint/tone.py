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
from typing import Any

__all__ = ["ACRONYMS", "ToneProblem", "ToneRules", "check_tone", "sentences", "without"]

#: Established acronyms of four or more letters that are not shouting.
ACRONYMS = frozenset({
    "IBAN", "SWIFT", "SEPA", "BACS", "CHAPS", "FSCS", "HMRC", "GDPR", "CCPA", "HTTPS", "HTML",
    "ISBN", "ISIN", "FATCA", "PAYE", "SONIA", "SOFR", "NYSE", "NASDAQ", "UCITS", "USSD", "ESIM",
})

_URL = re.compile(r"\b(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?؟。])\s+|\n+|\s\|\s")
_LETTERS = re.compile(r"[^\W\d_]+")
_BANGS = re.compile(r"!+")

#: ``locate(needle, case_sensitive)`` -> (file, line) in the sources, or None.
Locator = Callable[[str, bool], "tuple[str, int] | None"]
#: ``phrase([words])`` -> where a sentence starting with these words is, or None.
PhraseLocator = Callable[[list[str]], "tuple[str, int] | None"]


@dataclass(frozen=True)
class ToneRules:
    """The pack's ``tone`` section, as the linter uses it."""

    banned: tuple[str, ...] = ()
    preferred: Mapping[str, str] = field(default_factory=dict)
    max_sentence_words: int | None = None
    allow_exclamations: bool = False
    allow_all_caps: bool = False

    @classmethod
    def from_mapping(cls, tone: Mapping[str, Any]) -> ToneRules:
        """Read ``pack.yaml``'s ``tone`` mapping."""
        return cls(
            banned=tuple(str(t) for t in tone.get("banned_terms") or ()),
            preferred={str(k): str(v) for k, v in (tone.get("preferred_terms") or {}).items()},
            max_sentence_words=tone.get("max_sentence_words"),
            allow_exclamations=bool(tone.get("allow_exclamations", False)),
            allow_all_caps=bool(tone.get("allow_all_caps", False)),
        )


@dataclass(frozen=True)
class ToneProblem:
    """A tone finding: ``where`` is None when the text could not be traced to a source."""

    rule: str
    where: tuple[str, int] | None
    message: str


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
    body = r"\s+".join(re.escape(p) for p in term.split())
    return re.compile(r"(?<!\w)" + body + r"(?!\w)", re.IGNORECASE)


def check_tone(
    text: str,
    rules: ToneRules,
    *,
    pack: str,
    locate: Locator,
    phrase: PhraseLocator,
    data_has: Callable[[str], tuple[str, int] | None],
    own_words: frozenset[str] = frozenset(),
) -> list[ToneProblem]:
    """Every tone problem in ``text`` (visible text, mandated passages already removed).

    ``locate`` finds text in the sources; ``data_has`` finds it in the sample
    data (shouting and exclamations that only the customer's data brings are
    not the template's voice and are skipped; terms found only in data are
    reported at the sample).
    """
    text = _URL.sub(" ", text)
    out: list[ToneProblem] = []

    def place(found: str, *, case: bool = False) -> tuple[str, int] | None:
        return locate(found, case) or data_has(found)

    for term in rules.banned:
        for m in _term(term).finditer(text):
            out.append(ToneProblem("banned-term", place(m.group()),
                                   f"'{m.group()}' is banned by the {pack} tone of voice"))
            break
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
        seen: set[str] = set()
        for m in _LETTERS.finditer(text):
            word = m.group()
            if len(word) < 4 or not word.isupper() or word in seen:
                continue
            seen.add(word)
            if word in ACRONYMS or word in own_words:
                continue
            where = locate(word, True)
            if where is None and data_has(word) is not None:
                continue  # the customer's own data (a name, a city in capitals)
            out.append(ToneProblem("shouting", where,
                                   f"'{word}' is in capitals; {pack} does not allow ALL CAPS"))

    seen_bangs: set[str] = set()
    for m in _BANGS.finditer(text):
        run = m.group()
        if len(run) == 1 and rules.allow_exclamations:
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
        else:
            message = f"'{snippet}': {pack} does not allow exclamation marks"
        out.append(ToneProblem("exclamation", where, message))
    return out
