"""Checks on one rendered message (or the error that replaced it).

What only the output shows: the legal block and the pack's compliance
obligations, greeting and sign-off, tone, images, links, size, SMS encoding.
Rendered output has no line numbers, so each finding is traced back to the
source that holds the text (see :mod:`ccm.review.lint.sources`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ccm.channels.email import html_to_text
from ccm.errors import CCMError, DataError, PasswordRuleError, SmsTooLongError
from ccm.message import Message, Request
from ccm.render.environment import render_source
from ccm.render.template import Template
from ccm.review.lint import checks
from ccm.review.lint.base import LinterBase
from ccm.review.lint.compliance import Obligation, obligations
from ccm.review.lint.findings import Edit, Finding, make
from ccm.review.lint.html import parse_html
from ccm.review.lint.sourcechecks import url_problem
from ccm.review.lint.sources import (
    Place,
    json_path_line,
    locate,
    locate_phrase,
    place_at,
    read_text,
    searchable,
    yaml_key_line,
)
from ccm.review.lint.tone import check_tone, without
from ccm.review.lint.visibility import visible_text

__all__ = ["OutputChecks", "sms_chars", "strip_where"]

_ADJACENT_TAGS = re.compile(r"(</[A-Za-z][^>]*>)(?=<[A-Za-z])")


class OutputChecks(LinterBase):
    """The checks on rendered messages."""


    def rendered(self, tpl: Template, channel: str, locale: str, request: Request,
                 result: Message | Exception, sample: Path | None = None) -> list[Finding]:
        """Findings about one rendered message (or the error that replaced it)."""
        where: dict[str, Any] = {"template": tpl.id, "channel": channel, "locale": locale,
                                 "sample": sample}
        if isinstance(result, Exception):
            return list(self._error(tpl, channel, locale, result, sample, where))
        return list(self._output(tpl, channel, locale, request, result, sample, where))

    def _error(self, tpl: Template, channel: str, locale: str, exc: Exception,
               sample: Path | None, where: dict[str, Any]) -> Iterable[Finding]:
        source = self.source(tpl, channel)
        context = getattr(exc, "context", {}) or {}
        if isinstance(exc, SmsTooLongError):
            yield self._finding("sms-too-long", source, 1, str(exc), **where)
            forced = list(context.get("forced_by") or ())
            if forced and checks.latin_script(locale):
                for ch in forced:
                    found = self._char_source(ch, tpl, locale, self._pack_sms_texts(locale))
                    if found:
                        yield self.at("sms-ucs2", found,
                                            f"'{ch}' (U+{ord(ch):04X}) forces the SMS into UCS-2",
                                            **where)
            return
        if isinstance(exc, DataError | PasswordRuleError):
            file: str | Path = sample or source
            at = json_path_line(sample, str(context.get("path", "$.customer"))) \
                if sample else 1
            yield self._finding("contract-violation", file, at, strip_where(exc), **where)
            return
        path = self.real(context.get("path"))
        line = context.get("line")
        if path is None or not Path(path).is_file():
            path, line = str(source), 1
        kind = "" if isinstance(exc, CCMError) else f"unexpected {type(exc).__name__}: "
        yield self._finding("render-error", path, line if isinstance(line, int) else 1,
                            kind + strip_where(exc, context.get("path")), **where)

    def _output(self, tpl: Template, channel: str, locale: str, request: Request,
                message: Message, sample: Path | None, where: dict[str, Any]
                ) -> Iterable[Finding]:
        source = self.source(tpl, channel)
        paths = self.search_paths(tpl, channel, locale)
        markup = [source, self.layout(channel)]
        data = json.dumps(request.to_dict(), ensure_ascii=False)

        def data_has(text: str) -> Place | None:
            if sample is not None:
                return locate(text, [sample], word=False)
            return Place(str(source), 1) if text.lower() in data.lower() else None

        def at(*needles: str) -> Place:
            for needle in needles:
                found = locate(needle, markup, case=True, word=False)
                if found:
                    return found
            return Place(str(source), 1)

        stand_in = _copy(message)
        ctx = self.engine.context(tpl, request, channel, locale, stand_in)
        brand = ctx["brand"]
        html, visible = "", ""
        if channel == "pdf":
            try:
                html = render_source(self.env, tpl.source_name(channel), ctx).text
            except CCMError:
                return
            # Letter address lines are inline spans made blocks by CSS: keep words apart.
            visible = html_to_text(_ADJACENT_TAGS.sub(r"\1 ", html))
        elif channel == "email" and message.email is not None:
            html, text = checks.email_parts(message.email)
            try:
                blocks = render_source(self.env, tpl.source_name(channel), ctx,
                                       blocks=("preheader",)).blocks
            except CCMError:
                blocks = {}
            visible = "\n".join([message.subject or "", blocks.get("preheader", ""), text])
        elif channel == "sms":
            visible = message.text or ""

        pack = self.pack.id
        if channel in ("pdf", "email"):
            legal = str(brand.get("legal") or "")
            if legal and not checks.contains(visible, legal):
                yield self.at("legal-missing", at("brand.legal"),
                                    f"the {pack} legal block for {locale} is not in the "
                                    f"{channel}; add {{{{ brand.legal }}}}", **where)
            if channel == "email" or tpl.letter:
                kind = "email" if channel == "email" else "letter"
                yield from self._salutations(brand, visible, kind, at, where)
            page = parse_html(html)
            yield from self._images_and_assets(page, channel, markup, source, where)
            for problem in checks.images_without_alt(page):
                found = _tag_without_alt(markup)
                yield self.at("img-alt-missing", found or Place(str(source), 1), problem,
                              edit=self._alt_edit(found), **where)
        yield from self._obligations(tpl, channel, locale, message, html, visible, at, where)
        if channel == "pdf":
            for href in checks.insecure_links(parse_html(html)):
                found = locate(href, markup, case=True, word=False) or \
                    data_has(href) or at("http:", "href")
                yield self.at("insecure-link", found, f"link {href[:120]!r} in the PDF is not "
                              "an absolute https URL", **where)
        if channel == "email" and message.email is not None:
            page = parse_html(html)
            for href in checks.insecure_links(page):
                found = locate(href, markup, case=True, word=False) or \
                    (data_has(href) if href else None) or at("http:", "href")
                why = "is not https" if ":" in href.split("/")[0] else "is not absolute"
                yield self.at("insecure-link", found,
                                    f"link {href[:120]!r} {why}; email links must be absolute "
                                    "https URLs", **where)
            if tpl.message_type == "marketing":
                for problem in checks.unsubscribe_problems(
                        page, message.email, message.meta.get("unsubscribe_url")):
                    yield self.at("unsubscribe-missing", at("unsubscribe_url"), problem,
                                        **where)
            size = checks.email_size(html)
            if size is not None:
                yield make(size.rule, source, 1, size.message, pack=pack,
                           severity=size.severity, **where)
        yield from self._personal_links(channel, request, message, html, markup, source,
                                        where)
        if channel == "sms" and message.encoding == "UCS-2" and checks.latin_script(locale):
            chars = sms_chars(message.text or "")
            pack_texts = self._pack_sms_texts(locale)
            from_source = {ch: self._char_source(ch, tpl, locale, pack_texts) for ch in chars}
            stray = checks.stray_ucs2(message.text or "", chars, lambda ch: bool(from_source[ch]))
            first = next((from_source[ch] for ch in chars if from_source[ch]), None)
            if stray is not None and first is not None:
                yield self.at("sms-ucs2", first, stray, **where)

        if channel == "sms":
            mandated = [str(brand.get("sms", {}).get("opt_out") or "")]
        else:
            mandated = [str(brand.get("legal") or "")]
        own = " ".join(str(v) for v in (
            brand.get("name"), brand.get("greeting"), brand.get("sign_off"),
            brand.get("return_address"), (brand.get("sms") or {}).get("sender_id"),
            message.password_hint, self.engine.password_hint(locale),
        ) if v)
        problems = check_tone(
            without(visible, mandated), self.tone, pack=pack,
            locate=lambda needle, case: locate(needle, paths, case=case),
            phrase=lambda words: locate_phrase(words, paths),
            data_has=data_has, locale=locale,
            own_words=frozenset(own.split()) | frozenset(
                w.strip(".,:;()") for w in own.split()),
        )
        for p in problems:
            yield self.at(p.rule, p.where or Place(str(source), 1), p.message, **where)

    def _personal_links(self, channel: str, request: Request, message: Message, html: str,
                        markup: list[Path], source: Path, where: dict[str, Any]
                        ) -> Iterable[Finding]:
        """``personal-data-in-link``: a link (tracked or not) whose URL carries the customer's
        personal data, which a click then stores in clear in the record's events."""
        if channel == "sms":
            hrefs = checks.urls_in_text(message.text or "")
        elif channel == "email" and message.email is not None:
            # (A PDF's links are not tracked: a click on one leaves nothing in the record.)
            hrefs = [link.href for link in parse_html(html).links]
        else:
            return
        for _href, field in checks.personal_data_in_links(hrefs, request.customer):
            name = field.split("[")[0]
            found = locate(name, markup, case=True, word=False) or Place(str(source), 1)
            yield self.at("personal-data-in-link", found,
                          f"a link carries {field} in its URL; a click stores the URL in clear "
                          "in the record, where erasing the customer cannot reach it", **where)

    def _alt_edit(self, found: Place | None) -> Edit | None:
        """Add the pack's ``lint.default_alt`` (a msgid) to the tag at ``found``."""
        default = str(self.pack.lint.get("default_alt") or "")
        if found is None or not default or '"' in default:
            return None
        row = read_text(found.file).split("\n")[found.line - 1]
        m = re.search(r"<(mj-image|img)\b", row[found.column - 1:])
        if m is None:
            return None
        return Edit(found.line, m.group(), f'{m.group()} alt="{{{{ _("{default}") }}}}"')

    def _obligations(self, tpl: Template, channel: str, locale: str, message: Message,
                     html: str, visible: str, at: Callable[..., Place], where: dict[str, Any]
                     ) -> Iterable[Finding]:
        """The pack's compliance section, and the legal block shown in the right language."""
        from ccm.pack.model import localised

        legal_texts = {str(k): str(v) for k, v in (self.pack.raw.get("legal") or {}).items()}
        legal = localised(legal_texts, locale, self.pack.default_locale) or ""
        shown = visible
        hidden = ""
        if html:
            sheets = [read_text(p) for p in sorted(self.pack.layouts_dir.glob("*.css"))] \
                if channel == "pdf" else []
            seen = visible_text(html, sheets, self.page or "#ffffff")
            shown, hidden = seen.text, seen.hidden
        if channel in ("pdf", "email") and legal:
            if not checks.contains(shown, legal) and checks.contains(hidden, legal):
                yield self.at("legal-hidden", at("brand.legal"),
                              f"the {self.pack.id} legal block is in the {channel} but hidden "
                              "by CSS", **where)
            elif not checks.contains(shown, legal):
                other = next((loc for loc, text in legal_texts.items()
                              if loc != locale and checks.contains(shown, text)), None)
                if other:
                    yield self.at("legal-wrong-language", at("legal"),
                                  f"the {channel} shows the {other} legal block, not the "
                                  f"{locale} one", **where)
        for duty in obligations(self.pack.raw.get("compliance"),
                                message_type=tpl.message_type, journey=tpl.journey,
                                channel=channel, locale=locale):
            problem = self._duty(duty, tpl, channel, locale, message, shown, hidden, legal)
            if problem:
                hidden_text = "hidden by CSS" in problem
                rule = "legal-hidden" if hidden_text else "compliance-missing"
                if hidden_text:
                    place = at("brand.legal")
                elif duty.item == "text":  # the wording belongs in the locale's legal block
                    place = Place(str(self.manifest),
                                  yaml_key_line(self.manifest, f"legal.{locale}"))
                else:
                    place = Place(str(self.manifest),
                                  yaml_key_line(self.manifest, "compliance.require"))
                yield self.at(rule, place, problem, **where)

    def _duty(self, duty: Obligation, tpl: Template, channel: str, locale: str,
              message: Message, shown: str, hidden: str, legal: str) -> str | None:
        """Why ``message`` does not meet ``duty``, or None."""
        from ccm.pack.model import localised

        name = f"{tpl.message_type} {channel} ({locale})"
        if duty.item == "text":
            if checks.contains(shown, duty.phrase):
                return None
            how = "hidden by CSS" if checks.contains(hidden, duty.phrase) else "missing"
            return f"{duty.phrase[:60]!r} is {how} in the {name}"
        if duty.item == "legal":
            return None if not legal or checks.contains(shown, legal) else \
                f"the legal block is missing from the {name}"
        if duty.item == "opt_out":
            opt = localised(self.pack.senders.get("sms", {}).get("opt_out"), locale,
                            self.pack.default_locale) or ""
            return None if opt and checks.contains(shown, opt) else \
                f"the opt-out line is missing from the {name}"
        if duty.item == "unsubscribe_link":
            url = message.meta.get("unsubscribe_url")
            links = parse_html((message.email and checks.email_parts(message.email)[0]) or "")
            ok = bool(url) and any(link.href == url and not link.hidden for link in links.links)
            return None if ok else f"no visible unsubscribe link in the {name}"
        if duty.item == "unsubscribe_header":
            email = message.email
            ok = email is not None and all(email.get(h) for h in ("List-Unsubscribe",
                                                                  "List-Unsubscribe-Post"))
            return None if ok else f"the one-click List-Unsubscribe headers are missing " \
                f"from the {name}"
        if duty.item == "confidential":
            return None if tpl.confidential else \
                f"the {name} must be confidential (pdf.confidential: true in template.yaml)"
        return None

    def _images_and_assets(self, page: Any, channel: str, markup: Sequence[Path],
                           source: Path, where: dict[str, Any]) -> Iterable[Finding]:
        """Every image from the pack, each with meaningful alt text."""
        for image in page.images:
            src = image.src
            place = locate(src, markup, case=True, word=False) or \
                locate(src.rsplit("/", 1)[-1], markup, case=True, word=False) or \
                Place(str(source), 1)
            problem = url_problem(src, self.brand, email=channel == "email")
            if problem and not image.pixel:
                yield self.at("asset-not-in-pack", place, f"image {problem}", **where)
            alt = (image.attrs.get("alt") or "").strip()
            if alt and meaningless_alt(alt, src):
                yield self.at("alt-text-meaningless", _tag_with_alt(markup, alt) or place,
                              f"alt text {alt[:60]!r} does not describe the image", **where)

    def _pack_sms_texts(self, locale: str) -> list[str]:
        """The pack's own texts an SMS in ``locale`` may carry: opt-out, sender id, hint."""
        from ccm.pack.model import localised

        sms = self.pack.senders.get("sms", {})
        texts = (localised(sms.get("opt_out"), locale, self.pack.default_locale),
                 sms.get("sender_id"), self.engine.password_hint(locale))
        return [str(t) for t in texts if t]

    def _char_source(self, ch: str, tpl: Template, locale: str, pack_texts: Sequence[str]
                     ) -> Place | None:
        """Where an SMS character comes from in the sources, or None (customer data)."""
        paths = [self.source(tpl, "sms"), self.layout("sms"), *self.catalogs(tpl, locale)]
        found = locate(ch, paths, case=True, word=False)
        if found:
            return found
        for text in pack_texts:
            if ch in text:
                return locate(text, [self.manifest], case=True, word=False) or \
                    Place(str(self.manifest), 1)
        return None

    def _salutations(self, brand: Mapping[str, Any], visible: str, kind: str,
                     at: Callable[..., Place], where: dict[str, Any]
                     ) -> Iterable[Finding]:
        pack, tone, locale = self.pack, self.pack.tone, where["locale"]
        from ccm.pack.model import localised

        greeting = str(brand.get("greeting") or "")
        if greeting and not checks.contains(visible, greeting):
            pattern = localised(tone.get("greeting"), locale, pack.default_locale) or greeting
            yield self.at("greeting-missing", at("brand.greeting"),
                                f"the {kind} does not greet the customer with the {pack.id} "
                                f"greeting {pattern!r}; add {{{{ brand.greeting }}}}", **where)
        sign_off = str(brand.get("sign_off") or "")
        if sign_off and not checks.contains(visible, sign_off):
            yield self.at("sign-off-missing", at("brand.sign_off"),
                                f"the {kind} does not end with the {pack.id} sign-off "
                                f"{' '.join(sign_off.split())!r}; add {{{{ brand.sign_off }}}}",
                                **where)

def sms_chars(text: str) -> list[str]:
    """The characters of ``text`` that force UCS-2."""
    from ccm.channels.sms import non_gsm_chars

    return non_gsm_chars(text)


_GENERIC_ALT = frozenset({"image", "img", "picture", "photo", "logo", "icon", "graphic",
                          "banner", "bild", "foto", "grafik", "صورة", "شعار", "spacer", "alt"})


def meaningless_alt(alt: str, src: str) -> bool:
    """Alt text that says nothing: a file name, a URL, or a generic word."""
    low = alt.lower().strip(" .")
    name = src.rsplit("/", 1)[-1].lower()
    return low in _GENERIC_ALT or low == name or "://" in low or \
        bool(re.fullmatch(r"[\w-]+\.(?:png|jpe?g|gif|svg|webp)", low)) or \
        bool(re.fullmatch(r"[\d_\W]+", low))


def _tag_with_alt(paths: Sequence[Path], alt: str) -> Place | None:
    for path in paths:
        text = searchable(path)
        m = re.search(r"\balt\s*=\s*[\"']" + re.escape(alt), text)
        if m:
            return place_at(path, text, m.start())
    return None


def _tag_without_alt(paths: Sequence[Path]) -> Place | None:
    pattern = re.compile(r"<(?:mj-image|img)\b(?:(?!\balt\s*=)[^>])*>", re.IGNORECASE)
    for path in paths:
        text = searchable(path)
        m = pattern.search(text)
        if m:
            return place_at(path, text, m.start())
    return None


def strip_where(exc: BaseException, path: Any = None) -> str:
    """An error's message without the ``file:line:`` prefix the finding already shows."""
    text = str(exc)
    m = re.match(r"^(\S+?):(\d+|None):\s+", text)
    if m and (path is None or m.group(1) == str(path) or m.group(1).endswith(str(path))):
        return text[m.end():]
    if path and text.startswith(f"{path}: "):
        return text[len(str(path)) + 2:]
    return text


def _copy(message: Message) -> Message:
    """A stand-in message for the render context (same ids, locale, password hint, meta)."""
    return Message(
        message_id=message.message_id, customer_id=message.customer_id,
        template=message.template, template_version=message.template_version,
        pack=message.pack, pack_version=message.pack_version, channel=message.channel,
        locale=message.locale, message_type=message.message_type, journey=message.journey,
        content=b"", password_hint=message.password_hint, created_at=message.created_at,
        meta=dict(message.meta),
    )

