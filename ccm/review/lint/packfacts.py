"""What the checks need to know of a pack and its sibling packs, and the pack's font files."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ccm._schema import safe_load_bounded
from ccm.review.lint.sourcechecks import Brand

__all__ = ["brand_of", "font_problems"]

#: OS/2 fsType bits: 0x0002 restricted licence (no embedding), 0x0200 bitmap embedding only.
_RESTRICTED, _BITMAP_ONLY = 0x0002, 0x0200


def _host(url: Any) -> str | None:
    return urlsplit(str(url)).hostname if url else None


def _facts(raw: Mapping[str, Any], root: Path, others: tuple[Brand, ...] = ()) -> Brand:
    fonts = raw.get("fonts") or {}
    families: set[str] = set()
    for font in fonts.values():
        families.add(str(font.get("family", "")).lower())
        for name in str(font.get("fallback") or "").split(","):
            families.add(name.strip().strip("'\"").lower())
    tracking = raw.get("tracking") or {}
    hosts = {_host(raw.get("website")), _host(raw.get("assets_url")),
             _host(tracking.get("base_url")),
             *((raw.get("security") or {}).get("allowed_hosts") or ())}
    return Brand(
        id=str(raw.get("id", root.name)), name=str(raw.get("name", "")),
        palette={str(k): str(v) for k, v in (raw.get("palette") or {}).items()},
        families=frozenset(f for f in families if f), font_roles=frozenset(fonts),
        hosts=frozenset(h for h in hosts if h), assets_url=str(raw.get("assets_url") or ""),
        logo=str(raw.get("logo") or ""), root=root, others=others,
    )


@lru_cache(maxsize=32)
def _sibling(manifest: Path, mtime: int) -> Brand | None:
    try:
        raw = safe_load_bounded(manifest.read_text("utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return _facts(raw, manifest.parent) if isinstance(raw, dict) else None


def brand_of(raw: Mapping[str, Any], root: Path) -> Brand:
    """The pack's facts, with every other pack next to it (same parent folder) as ``others``."""
    others = []
    for manifest in sorted(root.parent.glob("*/pack.yaml")):
        if manifest.parent.resolve() == root.resolve():
            continue
        sibling = _sibling(manifest, manifest.stat().st_mtime_ns)
        if sibling is not None and sibling.name and sibling.name != raw.get("name"):
            others.append(sibling)
    return _facts(raw, root, tuple(others))


def font_problems(raw: Mapping[str, Any], root: Path) -> Iterator[tuple[str, str, str]]:
    """``(yaml key, file, message)`` for each pack font file missing or not embeddable."""
    from fontTools.ttLib import TTFont, TTLibError

    for role, font in (raw.get("fonts") or {}).items():
        for style, file in (font.get("files") or {}).items():
            key = f"fonts.{role}.files.{style}"
            path = root / str(file)
            inside = path.resolve().is_relative_to(root.resolve())
            if not inside or not path.is_file():
                yield key, str(file), f"font file {file!r} ({role} {style}) is not in the pack"
                continue
            try:
                with path.open("rb") as handle, TTFont(handle, lazy=True) as ttf:
                    fs_type = int(ttf["OS/2"].fsType) if "OS/2" in ttf else 0
            except (TTLibError, OSError, KeyError, AssertionError, ValueError, struct.error):
                yield key, str(file), f"font file {file!r} is not a readable font"
                continue
            if fs_type & _RESTRICTED:
                yield key, str(file), (f"font {file!r} is licensed 'restricted': its OS/2 "
                                       "fsType forbids embedding in a PDF")
            elif fs_type & _BITMAP_ONLY:
                yield key, str(file), (f"font {file!r} may only be embedded as bitmaps "
                                       "(OS/2 fsType 0x0200)")
