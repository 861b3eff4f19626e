"""What every check of one pack shares: the engine, its places, and making findings."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccm.pack.loader import LAYOUTS
from ccm.render.template import SOURCES, Template
from ccm.review.lint.colors import ColorProblem, MjmlLayout, Palette
from ccm.review.lint.findings import Finding, PackConfig, dedupe, make
from ccm.review.lint.packfacts import brand_of
from ccm.review.lint.sources import Place
from ccm.review.lint.tone import ToneRules

if TYPE_CHECKING:
    from ccm.render.engine import Engine

__all__ = ["LinterBase", "english"]


def english(locale: str) -> bool:
    return locale.split("_")[0].lower() == "en"


class LinterBase:
    """What every check of one engine (one pack and its templates) shares: places, context.

    ``templates_dir`` is the folder findings should name when the engine was
    built on a stand-in folder (``lint`` does that to leave broken templates
    out); paths under the engine's folder are mapped to it.
    """

    def __init__(self, engine: Engine, templates_dir: Path | None = None) -> None:
        self.engine = engine
        self.pack = engine.pack
        self.engine_templates = Path(engine.templates_dir)
        self.templates_dir = (templates_dir or self.engine_templates).resolve()
        # The engine's own environment: its containment (a stand-in's symlinked template
        # folders keep their files in their own roots), its sandbox, its compiled sources.
        self.env = engine._env
        self.palette = Palette(self.pack.palette)
        self.tone = ToneRules.from_mapping(self.pack.tone)
        self.config = PackConfig.from_mapping(self.pack.lint)
        self.manifest = self.pack.root / "pack.yaml"
        #: The PDF page colour, behind any CSS rule that sets no background of its own.
        self.page = self.palette.colors.get("background")
        self.brand = brand_of(self.pack.raw, self.pack.root)
        self._pack_findings: list[Finding] | None = None
        self._template_findings: dict[str, list[Finding]] = {}
        self._mjml: tuple[MjmlLayout, list[ColorProblem]] | None = None
        self._light_engine: Engine | None = None
        #: ``(template id, channel)`` whose render ran out of its time budget, and the error:
        #: the same source would spin as long again for every sample and locale.
        self._out_of_time: dict[tuple[str, str], Exception] = {}

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

    def at(self, rule: str, place: Place, message: str, **where: Any) -> Finding:
        """A finding at ``place`` (file, line, column)."""
        return make(rule, place.file, place.line, message, column=place.column,
                    pack=self.pack.id, **where)


    # -- together ---------------------------------------------------------------------

    def finish(self, findings: Iterable[Finding]) -> list[Finding]:
        """Apply the pack's lint configuration, then dedupe and sort."""
        return dedupe(self.config.apply(findings))

