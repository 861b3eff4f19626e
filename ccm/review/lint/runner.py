"""The public calls: lint folders (:func:`lint`) or one view (:func:`findings_for`)."""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccm.errors import CCMError, TemplateError, UnsafeFileError
from ccm.message import Message, Request
from ccm.render.template import Template, load_template
from ccm.review.lint.findings import Finding, dedupe, make
from ccm.review.lint.linter import PackLinter
from ccm.review.lint.output import strip_where
from ccm.review.lint.sources import yaml_key_line

if TYPE_CHECKING:
    from ccm.render.engine import Engine

__all__ = ["findings_for", "lint", "lint_rendered"]


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
        except (TemplateError, UnsafeFileError) as exc:
            # UnsafeFileError: a file of the template is a symlink out of it, a FIFO, too
            # big...: a finding on that template, not the end of the whole lint.
            bad.append(manifest.parent)
            context = exc.context
            file = str(context.get("path") or manifest)
            rule = "channel-source-mismatch" if context.get("key") == "channels" else \
                "unsafe-pattern" if context.get("rule") == "unsafe-pattern" else "render-error"
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
        samples = tpl.samples()
        # The largest sample is laid out as a real PDF in its own locale (where page and time
        # budgets bite first); the other renders are checked on their HTML.
        heaviest = max(samples, key=lambda p: (p.stat().st_size, p.name), default=None)
        for sample in samples:
            try:
                obj = tpl.read_sample(sample)
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
                own = engine.pack.resolve_locale(request.customer.get("locale"))
                results = linter.render(tpl, request, locale,
                                        layout_pdf=sample == heaviest and locale == own)
                for channel in tpl.channels:
                    yield from linter.rendered(tpl, channel, locale, request, results[channel],
                                               sample)
