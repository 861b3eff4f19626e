"""Checks on one rendered message: legal text, greeting, images, links, size, SMS encoding."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from babel.core import Locale, UnknownLocaleError, get_global

from ccm.channels import sms as sms_channel
from ccm.review.lint.findings import Severity
from ccm.review.lint.html import Page

__all__ = [
    "EMAIL_CLIP_BYTES",
    "EMAIL_WARN_BYTES",
    "Problem",
    "contains",
    "email_parts",
    "email_size",
    "images_without_alt",
    "insecure_links",
    "latin_script",
    "personal_data_in_links",
    "personal_values",
    "stray_ucs2",
    "unsubscribe_problems",
    "urls_in_text",
]

#: Gmail clips a message whose HTML is larger than this ("102 KB").
EMAIL_CLIP_BYTES = 102 * 1024
#: Warn from here: tracking and personalisation add to what a sample shows.
EMAIL_WARN_BYTES = 90 * 1024


@dataclass(frozen=True)
class Problem:
    """A finding before it is placed: rule, message, and an optional severity override."""

    rule: str
    message: str
    severity: Severity | None = None


def _norm(text: str) -> str:
    return " ".join(text.split())


def contains(visible: str, passage: str) -> bool:
    """``passage`` appears in ``visible``, whitespace-insensitively."""
    return _norm(passage) in _norm(visible)


def email_parts(msg: EmailMessage) -> tuple[str, str]:
    """The HTML and the text alternative of an email (empty when absent)."""
    html_part = msg.get_body(("html",))
    text_part = msg.get_body(("plain",))
    html = html_part.get_content() if isinstance(html_part, EmailMessage) else ""
    text = text_part.get_content() if isinstance(text_part, EmailMessage) else ""
    return str(html), str(text)


def images_without_alt(page: Page) -> list[str]:
    """Descriptions of images a screen reader cannot describe (1-pixel images may be empty)."""
    out = []
    for image in page.images:
        alt = image.attrs.get("alt")
        name = image.src.rsplit("/", 1)[-1][:80] or "(no src)"
        if alt is None:
            out.append(f"image {name!r} has no alt attribute")
        elif not alt.strip() and not image.pixel:
            out.append(f"image {name!r} has an empty alt text; describe it (an empty alt is "
                       "only for 1-pixel images)")
    return out


def insecure_links(page: Page) -> list[str]:
    """Link targets that are not absolute https (``mailto:``, ``tel:`` and ``#`` are fine)."""
    out = []
    for link in page.links:
        href = link.href
        low = href.lower()
        if low.startswith(("https://", "mailto:", "tel:", "#")):
            continue
        out.append(href)
    return list(dict.fromkeys(out))


#: Customer fields that are not personal data, or that every link may carry: the id is
#: the record's own key (pseudonymous), the others are settings.
_NOT_PERSONAL = frozenset({"id", "locale", "timezone", "segment", "consents"})
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
#: A tracked link (ccm.render.links): the original target travels inside the token.
_TRACKED = re.compile(r"/c/([A-Za-z0-9_-]{20,})")


def personal_values(customer: Mapping[str, Any], prefix: str = "customer") -> dict[str, str]:
    """``{"customer.email": value, ...}``: the customer's personal text (4+ characters)."""
    out: dict[str, str] = {}
    for name, value in customer.items():
        if prefix == "customer" and name in _NOT_PERSONAL:
            continue
        dotted = f"{prefix}.{name}"
        if isinstance(value, Mapping):
            out.update(personal_values(value, dotted))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str | int) and not isinstance(item, bool):
                    text = str(item).strip()
                    if len(text) >= 4:
                        out[f"{dotted}[{i}]"] = text
        elif isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value).strip()
            if len(text) >= 4:
                out[dotted] = text
    return out


def _spellings(href: str) -> str:
    """``href`` as it may carry a value: itself, percent-decoded (``+`` as space), and the
    target inside a tracked link's token, lowercased."""
    texts = [href, unquote_plus(href)]
    for token in _TRACKED.findall(href):
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            continue
        inner = raw.decode("utf-8", "replace")
        texts += [inner, unquote_plus(inner)]
    return "\n".join(texts).lower()


def personal_data_in_links(hrefs: list[str], customer: Mapping[str, Any]
                           ) -> list[tuple[str, str]]:
    """``(href, field)`` for each link whose URL holds a personal value of the customer."""
    values = personal_values(customer)
    out = []
    for href in dict.fromkeys(hrefs):
        text = _spellings(href)
        for field, value in values.items():
            if value.lower() in text:
                out.append((href, field))
                break
    return out


def urls_in_text(text: str) -> list[str]:
    """The http(s) URLs written in plain text (an SMS)."""
    return _URL.findall(text)


def unsubscribe_problems(page: Page, msg: EmailMessage, url: str | None) -> list[str]:
    """What a marketing email lacks: a visible unsubscribe link, the one-click headers."""
    out = []
    visible = [link for link in page.links if not link.hidden and link.text]
    if not url or not any(link.href == url for link in visible):
        out.append("marketing email has no visible unsubscribe link; show "
                   "{{ message.unsubscribe_url }} as a link")
    missing = [h for h in ("List-Unsubscribe", "List-Unsubscribe-Post") if msg.get(h) is None]
    if missing:
        out.append(f"marketing email lacks the {' and '.join(missing)} header(s) that "
                   "mailbox providers require for one-click unsubscribe")
    return out


def email_size(html: str) -> Problem | None:
    """``email-too-large`` when the HTML would be clipped (error) or nearly (warning)."""
    size = len(html.encode("utf-8"))
    kb = size / 1024
    if size > EMAIL_CLIP_BYTES:
        return Problem("email-too-large", f"email HTML is {kb:.0f} KB: Gmail clips messages "
                                          "over 102 KB and hides the rest (legal text included)")
    if size > EMAIL_WARN_BYTES:
        return Problem("email-too-large", f"email HTML is {kb:.0f} KB, close to the 102 KB at "
                                          "which Gmail clips it", severity="warning")
    return None


@cache
def latin_script(locale: str) -> bool:
    """Whether ``locale`` is written in Latin script (where GSM-7 should be enough)."""
    try:
        parsed = Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return True
    script = parsed.script
    if script is None:
        likely = get_global("likely_subtags")
        key = f"{parsed.language}_{parsed.territory}" if parsed.territory else parsed.language
        subtags = str(likely.get(key) or likely.get(parsed.language) or "")
        parts = subtags.split("_")
        script = parts[1] if len(parts) > 1 else None
    return script in (None, "Latn")


def stray_ucs2(text: str, chars: list[str], from_source: Callable[[str], bool]) -> str | None:
    """A message naming the source characters that force UCS-2, or None when there are none."""
    culprits = [ch for ch in chars if from_source(ch)]
    if not culprits:
        return None
    now = sms_channel.measure(text)
    fixed = text
    for ch in culprits:
        fixed = fixed.replace(ch, "?")
    then = sms_channel.measure(fixed)
    shown = ", ".join(f"'{ch}' (U+{ord(ch):04X})" for ch in culprits[:10])
    cost = f"{now.segments} segment(s) in UCS-2"
    if then.encoding == "GSM-7":
        cost += f"; {then.segments} in GSM-7 without them"
    return f"{shown} force(s) the SMS into UCS-2: {cost}"
