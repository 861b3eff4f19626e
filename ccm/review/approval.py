"""Approval: production renders only the sources compliance signed off.

``ccm approve TEMPLATE --pack DIR`` (:func:`record_approval`) records, for
one pack and one template, the SHA-256 of every file of the pack and of the
template, who approved them and when, in an approvals file (JSON, sorted,
one file per line, so a change of approval reads well in a diff). An
:class:`~ccm.render.engine.Engine` built with ``RenderOptions(require_approval=True)``
calls :func:`check_approved` before each render and refuses, with
:class:`~ccm.errors.ApprovalError`, a template or pack whose files changed,
were added or were removed since, naming them.

An approval is for a *pair*: a template approved in one pack says nothing
about how it looks in another, and a change to a pack's layout changes every
template's output, so each pair is approved on its own.

The approvals file defaults to ``approvals.json`` next to the templates
folder (``RenderOptions.approvals_file`` overrides it). It lives outside the
pack and the templates, so approving does not change what it approves.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccm.errors import ApprovalError, CCMError
from ccm.render.sources import (
    APPROVALS_FILENAME,
    Approval,
    Changes,
    _combined,
    _write,
    approvals_path,
    check_approved,
    compare,
    default_approvals_path,
    load_approvals,
    pack_digests,
    template_digests,
)

if TYPE_CHECKING:
    from ccm.render.engine import Engine
    from ccm.render.template import Template

__all__ = [
    "APPROVALS_FILENAME",
    "Approval",
    "Changes",
    "approvals_path",
    "check_approved",
    "compare",
    "current_user",
    "default_approvals_path",
    "load_approvals",
    "pack_digests",
    "record_approval",
    "template_digests",
]

_write_lock = threading.Lock()


def record_approval(
    engine: Engine,
    template_id: str,
    *,
    by: str,
    path: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> Approval:
    """Record the current sources of ``template_id`` in ``engine``'s pack as approved by ``by``.

    Refuses (ApprovalError) when a render would refuse the sources
    (:meth:`~ccm.render.engine.Engine.check_sources`, over the template's
    samples: a syntax error, a missing layout, a file the loader refuses, a
    construct the sandbox refuses; the contract was checked when the engine
    loaded the template), and when the files on disk are not the ones the engine
    loaded: what is approved must be exactly what was reviewed and can render.
    """
    if not by.strip():
        raise ValueError("approved_by must name someone")
    template = engine.template(template_id)
    target = Path(path).resolve() if path is not None else approvals_path(engine)
    _check_target(engine, target)
    _check_renders(engine, template)
    pack_files = pack_digests(engine.pack)
    template_files = template_digests(template)
    if (_combined(pack_files), _combined(template_files)) != (
        engine.pack.sources_sha256, template.sources_sha256
    ):
        raise ApprovalError(
            f"the sources of {template.id!r} or pack {engine.pack.id!r} changed while loading; "
            "run the approval again",
            template=template.id, pack=engine.pack.id,
        )
    approval = Approval(
        pack=engine.pack.id,
        template=template.id,
        pack_version=engine.pack.version,
        template_version=template.version,
        sources_sha256=engine.sources_sha256(template),
        pack_files=pack_files,
        template_files=template_files,
        approved_by=by.strip(),
        approved_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
    )
    with _write_lock:
        approvals = load_approvals(target)
        approvals[(approval.pack, approval.template)] = approval
        _write(target, approvals)
    return approval


def _check_target(engine: Engine, target: Path) -> None:
    """Refuse (ApprovalError) an approvals file inside the pack or a template folder: every
    file there is digested, so writing it would change what it approves, and the approval
    (and every other one of that pack or template) would never match again."""
    folders = [("pack", engine.pack.id, engine.pack.root),
               *(("template", tpl.id, tpl.root) for tpl in engine.templates.values())]
    real = Path(os.path.realpath(target))
    for kind, name, root in folders:
        if real.is_relative_to(os.path.realpath(root)):
            raise ApprovalError(
                f"{target}: the approvals file is inside {kind} {name!r} ({root}), whose "
                "files approval digests: writing it there would change what it approves, and "
                "no render would match the approval; keep it outside, e.g. the default "
                f"{default_approvals_path(engine.templates_dir)}; nothing was approved",
                pack=engine.pack.id, approvals_file=str(target))


def _check_renders(engine: Engine, template: Template) -> None:
    """Refuse (ApprovalError) sources a render refuses: approving what no render can make
    would only move the failure to production. Each sample is rendered on every channel."""
    requests: list[tuple[Path | None, Any]] = [(None, None)]
    for sample in template.samples():
        try:
            requests.append((sample, template.read_sample(sample)))
        except (OSError, ValueError) as exc:
            if isinstance(exc, json.JSONDecodeError):
                what = f"{sample}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
            elif isinstance(exc, OSError):
                what = f"{sample}: cannot read: {exc.strerror or type(exc).__name__}"
            else:  # UnicodeDecodeError, or a refusal (UnsafeFileError) that names the file
                text = str(exc)
                what = text if text.startswith(str(sample)) else f"{sample}: {text}"
            raise ApprovalError(
                f"{what}; not approved: fix or remove the sample, then run ccm approve again",
                template=template.id, pack=engine.pack.id, path=str(sample)) from exc
    for path, request in requests:
        try:
            # The sources compiled once (the first entry), then each sample rendered.
            engine.check_sources(template.id, [] if path is None else [request],
                                 sources=path is None)
        except CCMError as exc:
            by = "" if path is None else f" (rendering the sample {path})"
            raise ApprovalError(
                f"{exc.message.rstrip('.')}; not approved: a render of {template.id!r} in "
                f"pack {engine.pack.id!r} refuses it{by}. Fix it (`ccm lint` lists every "
                "problem), then run ccm approve again",
                **{**exc.context, "template": template.id, "pack": engine.pack.id},
            ) from exc


def current_user() -> str:
    """The login name of whoever runs the command, for ``approved_by``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
