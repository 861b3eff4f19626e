"""Load ``brand_packs/<id>/``: validate ``pack.yaml`` and check its files exist."""

from __future__ import annotations

import os
from pathlib import Path

from ccm._files import contained, contained_files
from ccm._schema import key_line, load_yaml, validate_manifest
from ccm._util import sha256_files
from ccm.errors import PackError, UnsafeFileError
from ccm.pack.model import BrandPack

__all__ = ["LAYOUTS", "load_pack", "pack_files"]

#: The base layout per channel every pack provides.
LAYOUTS = {"pdf": "pdf.html.j2", "email": "email.mjml.j2", "sms": "sms.txt.j2"}


def pack_files(root: Path) -> list[Path]:
    """Every regular file of the pack (the set its SHA-256 covers), hidden files excluded.

    Hidden files and folders (and ``__pycache__``) are no part of the pack:
    editors and tools leave them, so they are not digested, and no render
    reads them (``listed=True`` in :mod:`ccm._files`).

    A symlink leaving the pack, a symlink loop, a FIFO, device or socket
    anywhere in it is refused with :class:`~ccm.errors.UnsafeFileError`.
    """
    return contained_files(root)


def load_pack(path: str | os.PathLike[str]) -> BrandPack:
    """Load and validate a brand pack folder.

    Raises :class:`~ccm.errors.PackError` naming the file and key for anything
    wrong: schema violations, a default locale not in ``locales``, a legal block
    or password hint missing for a locale, a referenced asset or layout missing.
    """
    root = Path(path).resolve()
    manifest = root / "pack.yaml"
    if not manifest.is_file():
        raise PackError(f"{manifest}: no pack.yaml (is {root} a brand pack?)", path=str(manifest))
    raw = load_yaml(manifest, PackError)
    if not isinstance(raw, dict):
        raise PackError(f"{manifest}: must be a mapping", path=str(manifest), key="(top level)")
    validate_manifest(raw, "pack", manifest, PackError)

    locales = tuple(raw["locales"])

    def fail(key: str, problem: str) -> PackError:
        line = key_line(manifest, key.split("."))
        where = f"{manifest}:{line}" if line else str(manifest)
        return PackError(f"{where}: {key}: {problem}", path=str(manifest), key=key,
                         **({"line": line} if line else {}))

    if raw["default_locale"] not in locales:
        raise fail("default_locale", f"{raw['default_locale']!r} is not in locales {list(locales)}")
    for key in ("legal",):
        missing = [loc for loc in locales if loc not in raw[key]]
        if missing:
            raise fail(key, f"no text for locale(s) {', '.join(missing)}")
    rule = raw.get("security", {}).get("pdf_password")
    if rule:
        missing = [loc for loc in locales if loc not in rule["hint"]]
        if missing:
            raise fail("security.pdf_password.hint", f"no hint for locale(s) {', '.join(missing)}")

    referenced: list[tuple[str, str]] = []
    if "logo" in raw:
        referenced.append(("logo", raw["logo"]))
    for role, font in raw.get("fonts", {}).items():
        for style, file in font["files"].items():
            referenced.append((f"fonts.{role}.files.{style}", file))
    for key, rel in referenced:
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise fail(key, f"{rel!r} is outside the pack")
        if not target.is_file():
            raise fail(key, f"file {rel!r} does not exist")
        try:
            contained(rel, root, listed=True)
        except UnsafeFileError as exc:  # hidden: no digest covers it, no render reads it
            raise fail(key, exc.reason) from None
    for channel, name in LAYOUTS.items():
        if not (root / "layouts" / name).is_file():
            raise PackError(
                f"{root / 'layouts' / name}: missing {channel} layout",
                path=str(root / "layouts" / name),
                key=f"layouts/{name}",
            )

    return BrandPack(
        root=root,
        id=raw["id"],
        name=raw["name"],
        version=str(raw["version"]),
        default_locale=raw["default_locale"],
        locales=locales,
        raw=raw,
        sources_sha256=sha256_files(root, pack_files(root)),
    )
