"""The pack's legal and compliance obligations per message type, journey, locale and channel.

``pack.yaml``'s ``compliance`` section::

    compliance:
      journeys: {growth: marketing}          # the message type a journey's templates must have
      require:
        - {channel: [email, pdf], items: [legal]}
        - {message_type: marketing, channel: email,
           items: [legal, unsubscribe_link, unsubscribe_header]}
        - {message_type: marketing, channel: sms, items: [opt_out]}
        - {journey: billing, channel: pdf, items: [confidential]}
        - {channel: [email, pdf], text: {en_GB: [Financial Conduct Authority]}}

Items: ``legal`` (the pack's legal block in the message locale),
``opt_out`` (the SMS opt-out line), ``unsubscribe_link``,
``unsubscribe_header`` (List-Unsubscribe and List-Unsubscribe-Post),
``confidential`` (the template's ``pdf.confidential``: a password-protected
PDF). ``text`` lists wording (regulator, registration) each locale must show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ITEMS", "Obligation", "obligations", "required_type"]

ITEMS = ("legal", "opt_out", "unsubscribe_link", "unsubscribe_header", "confidential")


@dataclass(frozen=True)
class Obligation:
    """One thing a message must carry: an item, or a phrase in the message's locale."""

    item: str
    phrase: str = ""


def _matches(value: Any, wanted: str) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value == wanted
    return wanted in value


def obligations(raw: Mapping[str, Any] | None, *, message_type: str, journey: str,
                channel: str, locale: str) -> list[Obligation]:
    """Everything ``compliance.require`` asks of one message."""
    out: list[Obligation] = []
    for rule in (raw or {}).get("require") or ():
        if not (_matches(rule.get("message_type"), message_type)
                and _matches(rule.get("journey"), journey)
                and _matches(rule.get("channel"), channel)):
            continue
        out.extend(Obligation(str(item)) for item in rule.get("items") or ())
        texts: Mapping[str, Sequence[str]] = rule.get("text") or {}
        phrases = texts.get(locale) or texts.get(locale.split("_")[0]) or ()
        out.extend(Obligation("text", str(p)) for p in phrases)
    return list(dict.fromkeys(out))


def required_type(raw: Mapping[str, Any] | None, journey: str) -> str | None:
    """The message type ``compliance.journeys`` requires for ``journey``, if any."""
    value = ((raw or {}).get("journeys") or {}).get(journey)
    return str(value) if value else None
