"""The public calls: lint folders (:func:`lint`) or one view (:func:`findings_for`)."""

from __future__ import annotations

import json
import os
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

<<<<<<< HEAD
from ccm.errors import CCMError, TemplateError
=======
import jinja2
import jsonschema

from ccm._files import read_contained_text
from ccm._schema import json_path
from ccm.channels.email import html_to_text
from ccm.errors import (
    CCMError,
    DataError,
    PackError,
    PasswordRuleError,
    SmsTooLongError,
    TemplateError,
)
>>>>>>> security
from ccm.message import Message, Request
from ccm.render.template import Template, load_template
from ccm.review.lint.findings import Finding, dedupe, make
from ccm.review.lint.linter import PackLinter
from ccm.review.lint.output import strip_where
from ccm.review.lint.sources import yaml_key_line

if TYPE_CHECKING:
    from ccm.render.engine import Engine

__all__ = ["findings_for", "lint", "lint_rendered"]

<<<<<<< HEAD
=======
#: Weaker PDF password rules than this get a warning.
MIN_PASSWORD_BITS = 40.0
_FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
_ADJACENT_TAGS = re.compile(r"(</[A-Za-z][^>]*>)(?=<[A-Za-z])")


def _english(locale: str) -> bool:
    return locale.split("_")[0].lower() == "en"


class PackLinter:
    """The checks for one engine (one pack and its templates).

    ``templates_dir`` is the folder findings should name when the engine was
    built on a stand-in folder (``lint`` does that to leave broken templates
    out); paths under the engine's folder are mapped to it.
    """

    def __init__(self, engine: Engine, templates_dir: Path | None = None) -> None:
        self.engine = engine
        self.pack = engine.pack
        self.engine_templates = Path(engine.templates_dir)
        self.templates_dir = (templates_dir or self.engine_templates).resolve()
        self.env = create_environment(self.pack.layouts_dir, self.engine_templates)
        self.palette = Palette(self.pack.palette)
        self.tone = ToneRules.from_mapping(self.pack.tone)
        self.config = PackConfig.from_mapping(self.pack.lint)
        self.manifest = self.pack.root / "pack.yaml"
        #: The PDF page colour, behind any CSS rule that sets no background of its own.
        self.page = self.palette.colors.get("background")
        self._pack_findings: list[Finding] | None = None
        self._template_findings: dict[str, list[Finding]] = {}
        self._mjml: tuple[MjmlLayout, list[ColorProblem]] | None = None

    # -- places ------------------------------------------------------------------

    def layout(self, channel: str) -> Path:
        """The pack's layout file for ``channel``."""
        return self.pack.layouts_dir / LAYOUTS[channel]

    def source(self, tpl: Template, channel: str) -> Path:
        """The template's source file for ``channel``."""
        return tpl.root / SOURCES[channel]

    def catalogs(self, tpl: Template, locale: str) -> list[Path]:
        """The ``.po`` files the engine reads for ``tpl`` in ``locale`` (template first)."""
        from ccm.review.lint.translations import catalog_file

        found = [catalog_file(tpl.root, locale), catalog_file(self.pack.root, locale)]
        return [p for p in found if p is not None]

    def search_paths(self, tpl: Template, channel: str, locale: str) -> list[Path]:
        """Where visible text of ``tpl`` on ``channel`` can come from, most specific first."""
        return [self.source(tpl, channel), self.layout(channel),
                *self.catalogs(tpl, locale), self.manifest]

    def real(self, path: str | os.PathLike[str] | None) -> str | None:
        """A file name from an error, as the designer knows it (loader names resolved)."""
        if not path:
            return None
        text = str(path)
        if text.startswith("templates/"):
            text = str(self.engine_templates / text.removeprefix("templates/"))
        elif text.startswith("pack/"):
            text = str(self.pack.layouts_dir / text.removeprefix("pack/"))
        engine_dir = str(self.engine_templates)
        if text.startswith(engine_dir + os.sep):
            text = str(self.templates_dir) + text[len(engine_dir):]
        return text

    def _finding(self, rule: str, file: str | Path, line: int | None, message: str,
                 **where: Any) -> Finding:
        return make(rule, file, line, message, pack=self.pack.id, **where)

    # -- findings from the sources ---------------------------------------------------

    def pack_findings(self) -> list[Finding]:
        """Findings about the pack itself: manifest, layouts, stylesheets (cached)."""
        if self._pack_findings is None:
            self._pack_findings = list(self._pack_checks())
        return self._pack_findings

    def _pack_checks(self) -> Iterable[Finding]:
        pack, manifest = self.pack, self.manifest
        for rule in self.config.unknown():
            yield self._finding("lint-config", manifest, yaml_key_line(manifest, "lint"),
                                f"lint: {rule!r} is not a rule id; see docs/lint.md")
        rule_raw = pack.security.get("pdf_password")
        if rule_raw:
            try:
                bits = entropy_bits(PasswordRule.from_mapping(rule_raw), self._sample_customer())
            except PackError:
                bits = MIN_PASSWORD_BITS
            if bits < MIN_PASSWORD_BITS:
                fields = " + ".join(f for f in (rule_raw.get("field"),
                                                rule_raw.get("suffix_field")) if f)
                yield self._finding(
                    "weak-password-rule", manifest,
                    yaml_key_line(manifest, "security.pdf_password"),
                    f"the PDF password ({fields}) has about {bits:.0f} bits of entropy, under "
                    f"{MIN_PASSWORD_BITS:.0f}: it can be guessed by trying every value; add a "
                    "suffix_field the sender does not print (e.g. a postcode)",
                    channel="pdf",
                )
        colors = self.palette.colors
        if "text" in colors and "background" in colors:
            ratio = contrast_ratio(colors["text"], colors["background"])
            if ratio < 4.5:
                yield self._finding(
                    "low-contrast", manifest, yaml_key_line(manifest, "palette.text"),
                    f"palette text {colors['text']} on background {colors['background']} is "
                    f"{ratio:.2f}:1, below the 4.5:1 WCAG 2.1 AA needs for normal text",
                )
        for channel in LAYOUTS:
            yield from self._layout_checks(channel)
        for css in sorted(pack.layouts_dir.glob("*.css")):
            prepared = prepare_markup(read_text(css), pack.palette)
            yield from self._colors(scan_source(str(css), prepared, self.palette, pack.id,
                                                page=self.page), channel="pdf")

    def _sample_customer(self) -> dict[str, Any] | None:
        """The first sample's customer: what other password fields look like."""
        for tpl in sorted(self.engine.templates.values(), key=lambda t: t.id):
            for sample in tpl.samples():
                try:
                    customer = json.loads(read_contained_text(sample, tpl.root)).get("customer")
                except (OSError, ValueError, AttributeError):
                    continue
                if isinstance(customer, dict):
                    return customer
        return None

    def _layout_checks(self, channel: str) -> Iterable[Finding]:
        path = self.layout(channel)
        yield from self._unsafe(path, f"pack/{LAYOUTS[channel]}", channel=channel)
        if channel == "email":
            for line, message in mj_includes(str(path), [self.pack.root]):
                yield self._finding("unsafe-construct", path, line, message, channel=channel)
            yield from self._colors(self.mjml()[1], channel=channel)
        elif channel == "pdf":
            prepared = prepare_markup(read_text(path), self.pack.palette)
            yield from self._colors(scan_source(str(path), prepared, self.palette, self.pack.id,
                                                page=self.page), channel=channel)
        for locale in self.pack.locales:
            if _english(locale):
                continue
            for line, msgid in untranslated(path, [self.pack.root], locale):
                yield self._finding("missing-translation", path, line,
                                    f"{msgid!r} has no {locale} translation in the pack catalog",
                                    channel=channel, locale=locale)

    def mjml(self) -> tuple[MjmlLayout, list[ColorProblem]]:
        """The pack's email layout as the colour checks read it (cached)."""
        if self._mjml is None:
            path = self.layout("email")
            text = read_text(path)
            self._mjml = mjml_layout(str(path), text, prepare_markup(text, self.pack.palette),
                                     self.palette, self.pack.id)
        return self._mjml

    def _unsafe(self, path: Path, name: str, **where: Any) -> Iterable[Finding]:
        try:
            found = unsafe_constructs(self.env, str(path), name)
        except jinja2.TemplateSyntaxError as exc:
            yield self._finding("render-error", path, exc.lineno, exc.message or str(exc),
                                **where)
            return
        for line, message in found:
            yield self._finding("unsafe-construct", path, line, message, **where)

    def _colors(self, problems: Iterable[ColorProblem], **where: Any) -> Iterable[Finding]:
        for p in problems:
            yield self._finding(p.rule, p.file, p.line, p.message, **where)

    def template_findings(self, tpl: Template) -> list[Finding]:
        """Findings about a template's sources in this pack (cached)."""
        if tpl.id not in self._template_findings:
            self._template_findings[tpl.id] = list(self._template_checks(tpl))
        return self._template_findings[tpl.id]

    def _template_checks(self, tpl: Template) -> Iterable[Finding]:
        where: dict[str, Any] = {"template": tpl.id}
        if not tpl.samples():
            yield self._finding("no-samples", tpl.root / "template.yaml", 1,
                                "no sample requests in samples/: nothing can be rendered and "
                                "checked; add one (e.g. samples/01_example.json)", **where)
        for channel in tpl.channels:
            path = self.source(tpl, channel)
            yield from self._unsafe(path, tpl.source_name(channel), channel=channel, **where)
            prepared = prepare_markup(read_text(path), self.pack.palette)
            if channel == "email":
                for line, message in mj_includes(str(path), [self.pack.root, tpl.root]):
                    yield self._finding("unsafe-construct", path, line, message,
                                        channel=channel, **where)
                problems = scan_source(str(path), prepared, self.palette, self.pack.id,
                                       self.mjml()[0])
                yield from self._colors(problems, channel=channel, **where)
            elif channel == "pdf":
                problems = scan_source(str(path), prepared, self.palette, self.pack.id,
                                       page=self.page)
                yield from self._colors(problems, channel=channel, **where)
            for locale in self.pack.locales:
                if _english(locale):
                    continue
                for line, msgid in untranslated(path, [tpl.root, self.pack.root], locale):
                    yield self._finding(
                        "missing-translation", path, line,
                        f"{msgid!r} has no {locale} translation in the template or pack catalog",
                        channel=channel, locale=locale, **where)

    # -- samples -----------------------------------------------------------------------

    def check_request(self, tpl: Template, obj: Any, sample: Path | None
                      ) -> tuple[Request | None, list[Finding]]:
        """The request of a sample, or the contract violations that stop it rendering."""
        file = sample or tpl.root / str(tpl.raw.get("contract", "contract.schema.json"))
        where = {"template": tpl.id}

        def at(path: str) -> int:
            return json_path_line(sample, path) if sample else 1

        try:
            request = validate_request(obj)
        except DataError as exc:
            path = str(exc.context.get("path", "$"))
            return None, [self._finding("contract-violation", file, at(path), str(exc),
                                        **where)]
        cls = jsonschema.validators.validator_for(tpl.contract,
                                                  default=jsonschema.Draft202012Validator)
        validator = cls(tpl.contract, format_checker=_FORMATS)
        found = []
        for err in sorted(validator.iter_errors(request.data), key=lambda e: list(e.path)):
            path = json_path(["data", *err.absolute_path])
            found.append(self._finding("contract-violation", file, at(path),
                                       f"{path}: {err.message} [rule: {err.validator}]", **where))
        return (None if found else request), found

    def render(self, tpl: Template, request: Request, locale: str
               ) -> dict[str, Message | Exception]:
        """Every channel of ``tpl``: the message, or the error that stopped it."""
        try:
            messages = self.engine.render(tpl.id, request, None, locale, record=False)
            return {m.channel: m for m in messages}
        except Exception:  # rendered again one by one to pin the error on its channel
            pass
        out: dict[str, Message | Exception] = {}
        for channel in tpl.channels:
            try:
                out[channel] = self.engine.render(tpl.id, request, channel, locale, record=False)
            except Exception as exc:  # reported as a finding, never raised
                out[channel] = exc
        return out

    # -- rendered output -------------------------------------------------------------

    def rendered(self, tpl: Template, channel: str, locale: str, request: Request,
                 result: Message | Exception, sample: Path | None = None) -> list[Finding]:
        """Findings about one rendered message (or the error that replaced it)."""
        where = {"template": tpl.id, "channel": channel, "locale": locale}
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
                        yield self._finding("sms-ucs2", found[0], found[1],
                                            f"'{ch}' (U+{ord(ch):04X}) forces the SMS into UCS-2",
                                            **where)
            return
        if isinstance(exc, DataError | PasswordRuleError):
            file: str | Path = sample or source
            at = json_path_line(sample, str(context.get("path", "$.customer"))) \
                if sample else 1
            yield self._finding("contract-violation", file, at, _strip_where(exc), **where)
            return
        path = self.real(context.get("path"))
        line = context.get("line")
        if path is None or not Path(path).is_file():
            path, line = str(source), 1
        kind = "" if isinstance(exc, CCMError) else f"unexpected {type(exc).__name__}: "
        yield self._finding("render-error", path, line if isinstance(line, int) else 1,
                            kind + _strip_where(exc, context.get("path")), **where)

    def _output(self, tpl: Template, channel: str, locale: str, request: Request,
                message: Message, sample: Path | None, where: dict[str, Any]
                ) -> Iterable[Finding]:
        source = self.source(tpl, channel)
        paths = self.search_paths(tpl, channel, locale)
        markup = [source, self.layout(channel)]
        data = json.dumps(request.to_dict(), ensure_ascii=False)

        def data_has(text: str) -> tuple[str, int] | None:
            if sample is not None:
                return locate(text, [sample], word=False)
            return (str(source), 1) if text.lower() in data.lower() else None

        def at(*needles: str) -> tuple[str, int]:
            for needle in needles:
                found = locate(needle, markup, case=True, word=False)
                if found:
                    return found
            return str(source), 1

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
                yield self._finding("legal-missing", *at("brand.legal"),
                                    f"the {pack} legal block for {locale} is not in the "
                                    f"{channel}; add {{{{ brand.legal }}}}", **where)
            if channel == "email" or tpl.letter:
                kind = "email" if channel == "email" else "letter"
                yield from self._salutations(brand, visible, kind, at, where)
            page = parse_html(html)
            for problem in checks.images_without_alt(page):
                found = _tag_without_alt(markup)
                yield self._finding("img-alt-missing", *(found or (str(source), 1)), problem,
                                    **where)
        if channel == "email" and message.email is not None:
            page = parse_html(html)
            for href in checks.insecure_links(page):
                found = locate(href, markup, case=True, word=False) or \
                    (data_has(href) if href else None) or at("http:", "href")
                why = "is not https" if ":" in href.split("/")[0] else "is not absolute"
                yield self._finding("insecure-link", *found,
                                    f"link {href[:120]!r} {why}; email links must be absolute "
                                    "https URLs", **where)
            if tpl.message_type == "marketing":
                for problem in checks.unsubscribe_problems(
                        page, message.email, message.meta.get("unsubscribe_url")):
                    yield self._finding("unsubscribe-missing", *at("unsubscribe_url"), problem,
                                        **where)
            size = checks.email_size(html)
            if size is not None:
                yield make(size.rule, source, 1, size.message, pack=pack,
                           severity=size.severity, **where)
        if channel == "sms" and message.encoding == "UCS-2" and checks.latin_script(locale):
            chars = sms_chars(message.text or "")
            pack_texts = self._pack_sms_texts(locale)
            from_source = {ch: self._char_source(ch, tpl, locale, pack_texts) for ch in chars}
            stray = checks.stray_ucs2(message.text or "", chars, lambda ch: bool(from_source[ch]))
            first = next((from_source[ch] for ch in chars if from_source[ch]), None)
            if stray is not None and first is not None:
                yield self._finding("sms-ucs2", first[0], first[1], stray, **where)

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
            data_has=data_has,
            own_words=frozenset(own.split()) | frozenset(
                w.strip(".,:;()") for w in own.split()),
        )
        for p in problems:
            file, line = p.where or (str(source), 1)
            yield self._finding(p.rule, file, line, p.message, **where)

    def _pack_sms_texts(self, locale: str) -> list[str]:
        """The pack's own texts an SMS in ``locale`` may carry: opt-out, sender id, hint."""
        from ccm.pack.model import localised

        sms = self.pack.senders.get("sms", {})
        texts = (localised(sms.get("opt_out"), locale, self.pack.default_locale),
                 sms.get("sender_id"), self.engine.password_hint(locale))
        return [str(t) for t in texts if t]

    def _char_source(self, ch: str, tpl: Template, locale: str, pack_texts: Sequence[str]
                     ) -> tuple[str, int] | None:
        """Where an SMS character comes from in the sources, or None (customer data)."""
        paths = [self.source(tpl, "sms"), self.layout("sms"), *self.catalogs(tpl, locale)]
        found = locate(ch, paths, case=True, word=False)
        if found:
            return found
        for text in pack_texts:
            if ch in text:
                return locate(text, [self.manifest], case=True, word=False) or \
                    (str(self.manifest), 1)
        return None

    def _salutations(self, brand: Mapping[str, Any], visible: str, kind: str,
                     at: Callable[..., tuple[str, int]], where: dict[str, Any]
                     ) -> Iterable[Finding]:
        pack, tone, locale = self.pack, self.pack.tone, where["locale"]
        from ccm.pack.model import localised

        greeting = str(brand.get("greeting") or "")
        if greeting and not checks.contains(visible, greeting):
            pattern = localised(tone.get("greeting"), locale, pack.default_locale) or greeting
            yield self._finding("greeting-missing", *at("brand.greeting"),
                                f"the {kind} does not greet the customer with the {pack.id} "
                                f"greeting {pattern!r}; add {{{{ brand.greeting }}}}", **where)
        sign_off = str(brand.get("sign_off") or "")
        if sign_off and not checks.contains(visible, sign_off):
            yield self._finding("sign-off-missing", *at("brand.sign_off"),
                                f"the {kind} does not end with the {pack.id} sign-off "
                                f"{' '.join(sign_off.split())!r}; add {{{{ brand.sign_off }}}}",
                                **where)

    # -- together ---------------------------------------------------------------------

    def finish(self, findings: Iterable[Finding]) -> list[Finding]:
        """Apply the pack's lint configuration, then dedupe and sort."""
        return dedupe(self.config.apply(findings))


def sms_chars(text: str) -> list[str]:
    """The characters of ``text`` that force UCS-2."""
    from ccm.channels.sms import non_gsm_chars

    return non_gsm_chars(text)


def _tag_without_alt(paths: Sequence[Path]) -> tuple[str, int] | None:
    pattern = re.compile(r"<(?:mj-image|img)\b(?:(?!\balt\s*=)[^>])*>", re.IGNORECASE)
    for path in paths:
        text = searchable(path)
        m = pattern.search(text)
        if m:
            return str(path), text.count("\n", 0, m.start()) + 1
    return None


def _strip_where(exc: BaseException, path: Any = None) -> str:
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


# --- the public calls -------------------------------------------------------------------
>>>>>>> security

_LINTERS: weakref.WeakKeyDictionary[Any, PackLinter] = weakref.WeakKeyDictionary()


def _linter(engine: Engine) -> PackLinter:
    found = _LINTERS.get(engine)
    if found is None:
        found = _LINTERS[engine] = PackLinter(engine)
    return found


def lint_rendered(
    engine: Engine,
    template_id: str,
    channel: str,
    locale: str,
    request: Request | Mapping[str, Any],
    result: Message | Exception,
    *,
    sample: Path | None = None,
) -> list[Finding]:
    """Findings about one message already rendered (or the error rendering raised).

    Only what the output shows: legal text, greeting, tone, images, links,
    size, SMS encoding. The pack's lint configuration is applied.
    """
    linter = _linter(engine)
    tpl = engine.template(template_id)
    req = request if isinstance(request, Request) else Request.from_dict(dict(request))
    return linter.finish(linter.rendered(tpl, channel, locale, req, result, sample))


def findings_for(
    engine: Engine,
    template_id: str,
    channel: str,
    locale: str | None,
    request: Request | Mapping[str, Any],
    *,
    sample: Path | None = None,
    result: Message | Exception | None = None,
) -> list[Finding]:
    """Everything the linter finds for one view: this template, channel, locale and request.

    Findings about the sources (the template's source for the channel, the
    pack's layout, catalogs for the locale) and the pack, the request's
    contract, and the rendered message. Source findings are cached per
    engine. The channel is rendered once, unless ``result`` -- the message
    already rendered for this view, or the error rendering raised -- is given.
    ``sample`` is the request's file, for findings that point into it.
    """
    linter = _linter(engine)
    tpl = engine.template(template_id)
    if isinstance(request, Request):
        request = request.to_dict()
    loc = locale or engine.pack.resolve_locale(
        (request.get("customer") or {}).get("locale") if isinstance(request, Mapping) else None)
    found = [f for f in [*linter.pack_findings(), *linter.template_findings(tpl)]
             if f.channel in (None, channel) and f.locale in (None, loc)]
    if not tpl.confidential:
        found = [f for f in found if f.rule != "weak-password-rule"]
    req, problems = linter.check_request(tpl, request, sample)
    found.extend(problems)
    if req is not None:
        if result is None:
            try:
                result = engine.render(template_id, req, channel, loc, record=False)
            except Exception as exc:  # reported as a finding
                result = exc
        found.extend(linter.rendered(tpl, channel, loc, req, result, sample))
    return linter.finish(found)


def lint(
    packs: Sequence[str | os.PathLike[str]],
    templates: str | os.PathLike[str],
    *,
    only: Sequence[str] | None = None,
) -> list[Finding]:
    """Lint every template in every pack: sources, samples, and every rendered message.

    Each template is rendered on each of its channels, in each locale of each
    pack, with each sample. Findings are deduplicated (one per pack, place,
    rule and message) and sorted by file and line. Nothing raises for broken
    content: a pack or template that does not load is a ``render-error`` (or
    ``channel-source-mismatch``) finding. ``only`` limits the run to those
    template ids (an editor linting the file it has open).
    """
    from ccm.pack import load_pack
    from ccm.render.engine import Engine

    templates_dir = Path(templates).resolve()
    findings: list[Finding] = []
    good, bad = _load_templates(templates_dir, findings, only)
    with tempfile.TemporaryDirectory(prefix="ccm-lint-") as scratch:
        engine_dir = templates_dir
        if bad:
            # The engine loads a whole folder; broken templates are left out of a stand-in.
            engine_dir = Path(scratch).resolve()
            for tpl in good:
                (engine_dir / tpl.root.name).symlink_to(tpl.root, target_is_directory=True)
        for pack_dir in packs:
            pack_path = Path(pack_dir)
            try:
                engine = Engine(load_pack(pack_path), engine_dir, record=None)
            except CCMError as exc:
                context = getattr(exc, "context", {}) or {}
                file = context.get("path") or str(pack_path / "pack.yaml")
                line = context.get("line") or (
                    yaml_key_line(file, str(context["key"])) if context.get("key") and
                    str(file).endswith(".yaml") else 1)
                findings.append(make("render-error", file, line,
                                     strip_where(exc, context.get("path")),
                                     pack=pack_path.name))
                continue
            linter = PackLinter(engine, templates_dir)
            findings.extend(linter.finish(_lint_pack(linter)))
    return dedupe(findings)


def _load_templates(folder: Path, findings: list[Finding], only: Sequence[str] | None = None
                    ) -> tuple[list[Template], list[Path]]:
    if not folder.is_dir():
        findings.append(make("render-error", folder, 1, "templates folder does not exist"))
        return [], []
    good, bad = [], []
    for manifest in sorted(folder.glob("*/template.yaml")):
        if only and manifest.parent.name not in only:
            bad.append(manifest.parent)
            continue
        try:
            good.append(load_template(manifest.parent))
        except TemplateError as exc:
            bad.append(manifest.parent)
            context = exc.context
            file = str(context.get("path") or manifest)
            rule = "channel-source-mismatch" if context.get("key") == "channels" else \
                "render-error"
            line = context.get("line")
            if not line and rule == "channel-source-mismatch" and file.endswith(".yaml"):
                line = yaml_key_line(file, "channels")
            findings.append(make(rule, file, line, strip_where(exc, context.get("path")),
                                 template=manifest.parent.name))
    return good, bad


def _lint_pack(linter: PackLinter) -> Iterable[Finding]:
    yield from linter.pack_findings()
    engine = linter.engine
    for tpl in sorted(engine.templates.values(), key=lambda t: t.id):
        yield from linter.template_findings(tpl)
        for sample in tpl.samples():
            try:
                obj = json.loads(read_contained_text(sample, tpl.root))
            except (OSError, ValueError) as exc:
                line = getattr(exc, "lineno", 1)
                yield linter._finding("contract-violation", sample, line,
                                      f"the sample is not valid JSON: {exc}", template=tpl.id)
                continue
            request, problems = linter.check_request(tpl, obj, sample)
            yield from problems
            if request is None:
                continue
            for locale in engine.pack.locales:
                results = linter.render(tpl, request, locale)
                for channel in tpl.channels:
                    yield from linter.rendered(tpl, channel, locale, request, results[channel],
                                               sample)
