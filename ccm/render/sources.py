"""The sources a render reads and the approval gate over them.

A template's files and a pack's files, with the SHA-256 of each, are what
approval signs off. :func:`check_approved` is the gate the engine calls
before each render when ``RenderOptions(require_approval=True)``; recording
an approval (``ccm approve``) lives in :mod:`ccm.review.approval`.

The approvals file format::

    {
      "format": 1,
      "approvals": {
        "<pack id>": {
          "<template id>": {
            "approved_at": "...", "approved_by": "...",
            "pack_version": "...", "template_version": "...",
            "sources_sha256": "<Engine.sources_sha256(template)>",
            "pack_files": {"layouts/pdf.html.j2": "<sha256>", ...},
            "template_files": {"pdf.html.j2": "<sha256>", ...}
          }
        }
      }
    }
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccm._files import read_contained
from ccm._util import atomic_write
from ccm.errors import ApprovalError
from ccm.render.template import template_files

if TYPE_CHECKING:
    from ccm.pack import BrandPack
    from ccm.render.engine import Engine
    from ccm.render.template import Template

__all__ = [
    "APPROVALS_FILENAME",
    "Approval",
    "Changes",
    "approvals_path",
    "check_approved",
    "compare",
    "default_approvals_path",
    "load_approvals",
    "pack_digests",
    "template_digests",
]

#: The approvals file's name when none is configured (next to the templates folder).
APPROVALS_FILENAME = "approvals.json"
_FORMAT = 1


@dataclass(frozen=True)
class Approval:
    """The approved state of one template in one pack."""

    pack: str
    template: str
    pack_version: str
    template_version: str
    sources_sha256: str
    pack_files: Mapping[str, str]
    template_files: Mapping[str, str]
    approved_by: str
    approved_at: str

    def to_json(self) -> dict[str, Any]:
        """The entry as stored under ``approvals[pack][template]``."""
        return {
            "approved_at": self.approved_at,
            "approved_by": self.approved_by,
            "pack_files": dict(sorted(self.pack_files.items())),
            "pack_version": self.pack_version,
            "sources_sha256": self.sources_sha256,
            "template_files": dict(sorted(self.template_files.items())),
            "template_version": self.template_version,
        }


@dataclass(frozen=True)
class Changes:
    """Files that differ from an approval, as display paths."""

    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def describe(self) -> str:
        """``changed: a, b; added: c`` (only the non-empty kinds)."""
        parts = [
            f"{kind}: {', '.join(names)}"
            for kind, names in (
                ("changed", self.changed), ("added", self.added), ("removed", self.removed)
            )
            if names
        ]
        return "; ".join(parts)


# -- digests -------------------------------------------------------------------

# Hashing a pack's fonts on every render would cost milliseconds; a file whose
# inode, size and mtime are unchanged is not re-read.
_digest_cache: dict[str, tuple[tuple[int, int, int], str]] = {}
_digest_lock = threading.Lock()
_MAX_CACHED = 20_000


def _file_sha256(root: Path, path: Path) -> str:
    st = path.stat()
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    key = str(path)
    with _digest_lock:
        hit = _digest_cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    digest = hashlib.sha256(read_contained(path, root)).hexdigest()
    with _digest_lock:
        if len(_digest_cache) >= _MAX_CACHED:
            _digest_cache.clear()
        _digest_cache[key] = (stamp, digest)
    return digest


def _digests(root: Path, files: Iterable[Path]) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _file_sha256(root, p) for p in sorted(set(files))}


def _template_files(root: Path) -> list[Path]:
    # The same set Template.sources_sha256 covers (ccm.render.template.load_template).
    return template_files(root)


def pack_digests(pack: BrandPack) -> dict[str, str]:
    """SHA-256 per file of the pack as it is on disk now, keyed by relative path."""
    from ccm.pack.loader import pack_files

    return _digests(pack.root, pack_files(pack.root))


def template_digests(template: Template) -> dict[str, str]:
    """SHA-256 per file of the template as it is on disk now, keyed by relative path."""
    return _digests(template.root, _template_files(template.root))


# -- the approvals file --------------------------------------------------------


def default_approvals_path(templates_dir: str | os.PathLike[str]) -> Path:
    """``approvals.json`` next to the templates folder."""
    return Path(templates_dir).resolve().parent / APPROVALS_FILENAME


def approvals_path(engine: Engine) -> Path:
    """The approvals file an engine checks: its option, else the default."""
    configured = engine.options.approvals_file
    if configured is not None:
        return Path(configured).resolve()
    return default_approvals_path(engine.templates_dir)


_file_cache: dict[str, tuple[tuple[int, int], dict[tuple[str, str], Approval]]] = {}


def load_approvals(path: str | os.PathLike[str]) -> dict[tuple[str, str], Approval]:
    """All approvals in ``path`` keyed by ``(pack id, template id)``; empty when absent.

    A malformed file raises :class:`ApprovalError` naming it (and the line for bad JSON).
    """
    target = Path(path)
    try:
        st = target.stat()
    except FileNotFoundError:
        return {}
    stamp = (st.st_size, st.st_mtime_ns)
    with _digest_lock:
        hit = _file_cache.get(str(target))
    if hit is not None and hit[0] == stamp:
        return dict(hit[1])
    try:
        doc = json.loads(target.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ApprovalError(f"{target}:{exc.lineno}: invalid JSON: {exc.msg}",
                            path=str(target), line=exc.lineno) from exc
    except UnicodeDecodeError as exc:
        raise ApprovalError(f"{target}: not UTF-8 text (byte {exc.start}): give the approvals "
                            "file `ccm approve` writes", path=str(target)) from exc
    except OSError as exc:
        raise ApprovalError(f"{target}: cannot read: {exc.strerror}", path=str(target)) from exc
    out = _parse(doc, target)
    with _digest_lock:
        _file_cache[str(target)] = (stamp, out)
    return dict(out)


def _parse(doc: Any, path: Path) -> dict[tuple[str, str], Approval]:
    def bad(where: str) -> ApprovalError:
        return ApprovalError(f"{path}: {where}: not an approvals file entry", path=str(path),
                             key=where)

    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise bad("format")
    approvals = doc.get("approvals", {})
    if not isinstance(approvals, dict):
        raise bad("approvals")
    out: dict[tuple[str, str], Approval] = {}
    for pack_id, templates in approvals.items():
        if not isinstance(templates, dict):
            raise bad(f"approvals.{pack_id}")
        for template_id, entry in templates.items():
            where = f"approvals.{pack_id}.{template_id}"
            try:
                approval = Approval(
                    pack=str(pack_id),
                    template=str(template_id),
                    pack_version=str(entry["pack_version"]),
                    template_version=str(entry["template_version"]),
                    sources_sha256=str(entry["sources_sha256"]),
                    pack_files={str(k): str(v) for k, v in entry["pack_files"].items()},
                    template_files={str(k): str(v) for k, v in entry["template_files"].items()},
                    approved_by=str(entry["approved_by"]),
                    approved_at=str(entry["approved_at"]),
                )
            except (KeyError, TypeError, AttributeError) as exc:
                raise bad(where) from exc
            out[(approval.pack, approval.template)] = approval
    return out

def _combined(digests: Mapping[str, str]) -> str:
    """The digest :func:`ccm._util.sha256_files` computes, from per-file digests."""
    total = hashlib.sha256()
    # sha256_files sorts Path objects (by parts), not strings.
    for rel in sorted(digests, key=lambda r: Path(r).parts):
        total.update(rel.encode() + b"\0")
        total.update(bytes.fromhex(digests[rel]))
    return total.hexdigest()


def compare(
    approved: Mapping[str, str], current: Mapping[str, str], *, prefix: Path, base: Path | None
) -> Changes:
    """What differs between two ``{relative path: sha256}`` maps, as display paths."""

    def show(rel: str) -> str:
        full = prefix / rel
        if base is not None and full.is_relative_to(base):
            return full.relative_to(base).as_posix()
        return full.as_posix()

    return Changes(
        changed=[show(r) for r in sorted(approved.keys() & current.keys())
                 if approved[r] != current[r]],
        added=[show(r) for r in sorted(current.keys() - approved.keys())],
        removed=[show(r) for r in sorted(approved.keys() - current.keys())],
    )


def check_approved(engine: Engine, template: Template) -> None:
    """Raise :class:`ApprovalError` unless ``template`` in ``engine``'s pack is approved as is.

    Compares the files on disk now (a template Jinja has not compiled yet, or a
    pack asset the PDF fetcher reads, comes from there) with the approved
    digests, and the sources the engine loaded with the approved ones. The
    error names each file that changed, was added or was removed.
    """
    pack = engine.pack
    path = approvals_path(engine)
    approval = load_approvals(path).get((pack.id, template.id))
    if approval is None:
        raise ApprovalError(
            f"template {template.id!r} in pack {pack.id!r} is not approved (no entry in {path}); "
            f"review it, then run: ccm approve {template.id} --pack {pack.root}",
            template=template.id, pack=pack.id, approvals_file=str(path),
            changed=[], added=[], removed=[],
        )
    base = path.parent
    pack_changes = compare(approval.pack_files, pack_digests(pack), prefix=pack.root, base=base)
    tpl_changes = compare(approval.template_files, template_digests(template),
                          prefix=template.root, base=base)
    changes = Changes(
        changed=tpl_changes.changed + pack_changes.changed,
        added=tpl_changes.added + pack_changes.added,
        removed=tpl_changes.removed + pack_changes.removed,
    )
    if changes:
        raise ApprovalError(
            f"template {template.id!r} in pack {pack.id!r} changed since it was approved by "
            f"{approval.approved_by} at {approval.approved_at}: {changes.describe()}",
            template=template.id, pack=pack.id, approvals_file=str(path),
            changed=changes.changed, added=changes.added, removed=changes.removed,
        )
    if engine.sources_sha256(template) != approval.sources_sha256:
        # The files on disk are the approved ones, but the engine loaded others
        # (they changed after it was built): its manifests may not be the approved ones.
        raise ApprovalError(
            f"template {template.id!r} in pack {pack.id!r}: the engine loaded sources that "
            "differ from the approved ones (they changed after it was built); build a new Engine",
            template=template.id, pack=pack.id, approvals_file=str(path),
            changed=[], added=[], removed=[],
        )


def _write(path: Path, approvals: Mapping[tuple[str, str], Approval]) -> None:
    tree: dict[str, dict[str, Any]] = {}
    for (pack_id, template_id), approval in sorted(approvals.items()):
        tree.setdefault(pack_id, {})[template_id] = approval.to_json()
    text = json.dumps({"format": _FORMAT, "approvals": tree}, indent=2, sort_keys=True,
                      ensure_ascii=False)
    atomic_write(path, (text + "\n").encode("utf-8"))
