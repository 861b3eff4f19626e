"""The in-memory brand pack: a frozen view of ``pack.yaml`` plus its folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrandPack", "localised"]

#: Languages written right to left (Babel knows too, but this avoids a lookup per render).
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv"})


def localised(texts: dict[str, str] | None, locale: str, default_locale: str) -> str | None:
    """Pick the text for ``locale``: exact, then same language, then the pack default."""
    if not texts:
        return None
    if locale in texts:
        return texts[locale]
    lang = locale.split("_")[0]
    for key, value in texts.items():
        if key.split("_")[0] == lang:
            return value
    return texts.get(default_locale) or next(iter(texts.values()))


@dataclass(frozen=True)
class BrandPack:
    """A loaded brand pack. ``raw`` is the validated ``pack.yaml`` mapping."""

    root: Path
    id: str
    name: str
    version: str
    default_locale: str
    locales: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False)
    sources_sha256: str = field(repr=False, default="")

    @property
    def palette(self) -> dict[str, str]:
        return dict(self.raw.get("palette", {}))

    @property
    def layouts_dir(self) -> Path:
        return self.root / "layouts"

    @property
    def security(self) -> dict[str, Any]:
        return dict(self.raw.get("security", {}))

    @property
    def policy(self) -> dict[str, Any]:
        return dict(self.raw.get("policy", {}))

    @property
    def tone(self) -> dict[str, Any]:
        return dict(self.raw.get("tone", {}))

    @property
    def senders(self) -> dict[str, Any]:
        return dict(self.raw.get("senders", {}))

    @property
    def tracking(self) -> dict[str, Any]:
        return dict(self.raw.get("tracking", {}))

    @property
    def lint(self) -> dict[str, Any]:
        return dict(self.raw.get("lint", {}))

    def text(self, key: str, locale: str) -> str | None:
        """A localised top-level text (``legal``, ``logo_alt``) for ``locale``."""
        value = self.raw.get(key)
        return localised(value, locale, self.default_locale) if isinstance(value, dict) else None

    def resolve_locale(self, requested: str | None) -> str:
        """The locale to render: ``requested`` when supported (exact or by language).

        Otherwise the pack's default locale.
        """
        if requested:
            norm = requested.replace("-", "_")
            if norm in self.locales:
                return norm
            lang = norm.split("_")[0]
            for loc in self.locales:
                if loc.split("_")[0] == lang:
                    return loc
        return self.default_locale

    def is_rtl(self, locale: str) -> bool:
        return locale.split("_")[0] in RTL_LANGUAGES
