"""The linter of one engine: the pack's and templates' sources, the samples, the output.

A :class:`PackLinter` wraps one :class:`~ccm.render.engine.Engine` and keeps what
does not depend on a sample (parsed layouts, source findings); the preview
holds one per engine through :func:`~ccm.review.lint.runner.findings_for`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import jsonschema

from ccm._schema import json_path
from ccm.errors import BudgetError, DataError, PackError
from ccm.message import Message, Request
from ccm.pack.loader import LAYOUTS
from ccm.render.environment import render_source
from ccm.render.security import PasswordRule, entropy_bits, needs_sample
from ccm.render.template import Template, validate_request
from ccm.review.lint.base import english
from ccm.review.lint.blocks import unknown_blocks
from ccm.review.lint.catalogs import check_catalog
from ccm.review.lint.colors import (
    ColorProblem,
    MjmlLayout,
    contrast_ratio,
    mjml_layout,
    scan_source,
)
from ccm.review.lint.compliance import required_type
from ccm.review.lint.contract import resolve, unformatted, uses
from ccm.review.lint.findings import Finding
from ccm.review.lint.output import OutputChecks
from ccm.review.lint.packfacts import font_problems
from ccm.review.lint.sourcechecks import check_source
from ccm.review.lint.sources import (
    Place,
    json_path_line,
    locate,
    prepare_markup,
    read_text,
    yaml_key_line,
)
from ccm.review.lint.translations import catalog_entries, untranslated
from ccm.review.lint.unsafe import mj_includes, unsafe_constructs
from ccm.review.lint.wording import format_problems

if TYPE_CHECKING:
    from ccm.render.engine import Engine

__all__ = ["MIN_PASSWORD_BITS", "PackLinter"]


def _place_of(path: Path, line: int, names: tuple[str, ...], dotted: str = "") -> Place:
    """The column of a data path (``dotted`` as written, else its last name) on ``line``."""
    rows = read_text(path).split("\n")
    row = rows[line - 1] if 0 < line <= len(rows) else ""
    key = next((n for n in reversed(names) if n not in ("[]", "{}")), "")
    col = row.find(dotted) if dotted else -1
    if col < 0:
        col = row.find(key) if key else -1
    return Place(str(path), line, col + 1 if col >= 0 else 1)


def _json_key_line(path: Path, key: str) -> int:
    text = read_text(path)
    index = text.find(f'"{key}"', text.find('"properties"'))
    return text.count("\n", 0, index) + 1 if index >= 0 else 1

#: Weaker PDF password rules than this get a warning.
MIN_PASSWORD_BITS = 40.0
_FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


class PackLinter(OutputChecks):
    """The checks for one engine (one pack and its templates).

    ``templates_dir`` is the folder findings should name when the engine was
    built on a stand-in folder (``lint`` does that to leave broken templates
    out); paths under the engine's folder are mapped to it.
    """

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
                password = PasswordRule.from_mapping(rule_raw)
                customer = self._sample_customer()
                # No sample to estimate a field from (none loads: no-samples says so): no
                # figure is better than a made-up "about 0 bits".
                bits = (MIN_PASSWORD_BITS if customer is None and needs_sample(password)
                        else entropy_bits(password, customer))
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
        base = str((pack.raw.get("tracking") or {}).get("base_url") or "")
        if base and not base.lower().startswith("https://"):
            yield self._finding(
                "insecure-link", manifest, yaml_key_line(manifest, "tracking.base_url"),
                f"tracking.base_url {base[:80]!r} is not https: every tracked link and the "
                "open pixel in every email would be sent over it", channel="email")
        for key, _file, message in font_problems(pack.raw, pack.root):
            yield self._finding("font-not-embeddable", manifest, yaml_key_line(manifest, key),
                                message)
        for channel in LAYOUTS:
            yield from self._layout_checks(channel)
            yield from self._source_checks(self.layout(channel), channel)
        yield from self._catalog_checks(pack.root)
        for css in sorted(pack.layouts_dir.glob("*.css")):
            yield from self._source_checks(css, "pdf")
            prepared = prepare_markup(read_text(css), pack.palette)
            yield from self._colors(scan_source(str(css), prepared, self.palette, pack.id,
                                                page=self.page), channel="pdf")

    def _sample_customer(self) -> dict[str, Any] | None:
        """The first sample's customer: what other password fields look like."""
        for tpl in sorted(self.engine.templates.values(), key=lambda t: t.id):
            for sample in tpl.samples():
                try:
                    customer = tpl.read_sample(sample).get("customer")
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
            if english(locale):
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

    def _blocks(self, path: Path, name: str, **where: Any) -> Iterable[Finding]:
        try:
            found = unknown_blocks(self.env, str(path), name)
        except jinja2.TemplateSyntaxError:
            return  # a render-error already (_unsafe reports it)
        for line, message in found:
            yield self._finding("unknown-block", path, line, message, **where)

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
        yield from self._contract_checks(tpl)
        yield from self._catalog_checks(tpl.root, template=tpl.id)
        wanted = required_type(self.pack.raw.get("compliance"), tpl.journey)
        if wanted and wanted != tpl.message_type:
            manifest = tpl.root / "template.yaml"
            yield self._finding(
                "message-type-escape", manifest, yaml_key_line(manifest, "message_type"),
                f"journey {tpl.journey!r} carries {wanted} obligations in the {self.pack.id} "
                f"pack; message_type {tpl.message_type!r} would drop them", **where)
        for channel in tpl.channels:
            path = self.source(tpl, channel)
            yield from self._source_checks(path, channel, **where)
            yield from self._unsafe(path, tpl.source_name(channel), channel=channel, **where)
            yield from self._blocks(path, tpl.source_name(channel), channel=channel, **where)
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
                if english(locale):
                    continue
                for line, msgid in untranslated(path, [tpl.root, self.pack.root], locale):
                    yield self._finding(
                        "missing-translation", path, line,
                        f"{msgid!r} has no {locale} translation in the template or pack catalog",
                        channel=channel, locale=locale, **where)

    def _source_checks(self, path: Path, channel: str, **where: Any) -> Iterable[Finding]:
        for p in check_source(path, self.brand, channel, self.pack.locales):
            yield self.at(p.rule, p.place, p.message, channel=channel, edit=p.edit, **where)

    def _catalog_checks(self, root: Path, **where: Any) -> Iterable[Finding]:
        from ccm.review.lint.translations import catalog_file

        for locale in self.pack.locales:
            file = catalog_file(root, locale)
            if file is None or english(locale):
                continue
            for p in check_catalog(file, locale, self.tone.acronyms):
                yield self.at(p.rule, p.place, p.message, locale=locale, **where)
            for entry in catalog_entries(file, locale):
                for text in entry[1]:
                    for rule, _at, message in format_problems(text):
                        place = locate(text[:40], [file], case=True, word=False) or \
                            Place(str(file), entry[3])
                        yield self.at(rule, place, f"{message} in the {locale} translation",
                                      locale=locale, **where)

    def _contract_checks(self, tpl: Template) -> Iterable[Finding]:
        where: dict[str, Any] = {"template": tpl.id}
        schema = tpl.contract
        contract = tpl.root / str(tpl.raw.get("contract", "contract.schema.json"))
        used: set[str] = set()
        for channel in tpl.channels:
            path = self.source(tpl, channel)
            text = read_text(path)
            try:
                found = uses(self.env, text)
                loose = unformatted(self.env, text, schema)
            except jinja2.TemplateSyntaxError:
                continue  # a render-error already
            for use in found:
                used.add(use.path[0])
                if resolve(schema, use.path, schema) is None:
                    name = ".".join(("data", *use.path)).replace(".[]", "[]")
                    yield self.at("undeclared-variable", _place_of(path, use.line, use.path),
                                  f"{name} is not declared in {contract.name}",
                                  channel=channel, **where)
            for line, name, kind in loose:
                yield self.at("unformatted-value",
                              _place_of(path, line, (name.split(".")[-1],), name),
                              f"{name} is a {kind} printed without a locale filter",
                              channel=channel, **where)
        props = schema.get("properties") or {}
        for field in schema.get("required") or ():
            if field in used or (props.get(field) or {}).get("x-unused"):
                continue
            yield self._finding("unused-field", contract, _json_key_line(contract, field),
                                f"required field {field!r} is used by no source of the "
                                "template; use it, drop it, or mark it \"x-unused\"", **where)

    # -- samples -----------------------------------------------------------------------

    def check_request(self, tpl: Template, obj: Any, sample: Path | None
                      ) -> tuple[Request | None, list[Finding]]:
        """The request of a sample, or the contract violations that stop it rendering."""
        file = sample or tpl.root / str(tpl.raw.get("contract", "contract.schema.json"))
        where: dict[str, Any] = {"template": tpl.id, "sample": sample}

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

    def render(self, tpl: Template, request: Request, locale: str, *, layout_pdf: bool = True
               ) -> dict[str, Message | Exception]:
        """Every channel of ``tpl``: the message, or the error that stopped it.

        With ``layout_pdf=False`` the PDF is checked on its HTML only (no
        WeasyPrint layout, which is most of the time a lint takes): ``lint``
        lays out the largest sample of each template and locale in full, where
        page and time budgets bite first, and the others through their HTML.

        A channel that ran out of its time budget once is not rendered again
        for the other samples and locales: its error stands for them (one
        finding either way), so a template that loops for ever costs the lint
        its time budget once or twice, not once per sample, locale and channel.
        """
        others = [c for c in tpl.channels if c != "pdf"]
        stuck = any((tpl.id, c) in self._out_of_time for c in tpl.channels)
        if not layout_pdf and "pdf" in tpl.channels and others:
            engine = self._light(tpl) if tpl.attach_pdf else self.engine
            out = {c: self._one(tpl, request, c, locale, engine) for c in others}
            created = next((m.created_at for m in out.values() if isinstance(m, Message)), None)
            if created is not None:
                out["pdf"] = self._out_of_time.get((tpl.id, "pdf")) or self._pdf_html(
                    tpl, request, locale, created)
                return out
        if not stuck:
            try:
                messages = self.engine.render(tpl.id, request, None, locale, record=False)
                return {m.channel: m for m in messages}
            except Exception:  # rendered again one by one to pin the error on its channel
                pass
        return {channel: self._one(tpl, request, channel, locale) for channel in tpl.channels}

    def _one(self, tpl: Template, request: Request, channel: str, locale: str,
             engine: Engine | None = None) -> Message | Exception:
        known = self._out_of_time.get((tpl.id, channel))
        if known is not None:
            return known
        try:
            return (engine or self.engine).render(tpl.id, request, channel, locale,
                                                  record=False)
        except Exception as exc:  # reported as a finding, never raised
            if isinstance(exc, BudgetError) and exc.context.get("budget") == "time":
                self._out_of_time[(tpl.id, channel)] = exc
            return exc

    def _light(self, tpl: Template) -> Engine:
        """A lint-only engine whose copy of ``tpl`` sends its email without the PDF attached
        (the attachment is the PDF channel's document, laid out once for the largest sample)."""
        from dataclasses import replace

        from ccm.render.engine import Engine

        if self._light_engine is None:
            self._light_engine = Engine(self.pack, self.engine_templates, record=None)
        email = {**dict(tpl.raw.get("email") or {}), "attach_pdf": False}
        self._light_engine.templates[tpl.id] = replace(tpl, raw={**tpl.raw, "email": email})
        return self._light_engine

    def _pdf_html(self, tpl: Template, request: Request, locale: str, created_at: str | None
                  ) -> Message | Exception:
        """A PDF message without its document: the HTML rendered, or the error it raised."""
        message = Message(
            message_id="lint", customer_id=request.customer_id, template=tpl.id,
            template_version=tpl.version, pack=self.pack.id, pack_version=self.pack.version,
            channel="pdf", locale=locale, message_type=tpl.message_type, journey=tpl.journey,
            content=b"", created_at=created_at,
            password_hint=self.engine.password_hint(locale) if tpl.confidential else None,
        )
        try:
            render_source(self.env, tpl.source_name("pdf"),
                          self.engine.context(tpl, request, "pdf", locale, message))
        except Exception as exc:  # reported as a finding, never raised
            if isinstance(exc, BudgetError) and exc.context.get("budget") == "time":
                self._out_of_time[(tpl.id, "pdf")] = exc
            return exc
        return message
