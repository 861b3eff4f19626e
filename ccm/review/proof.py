"""Proof packs: everything the templates render, signed, for compliance sign-off.

``ccm proof --out DIR`` renders every pack × template × locale × sample ×
channel and writes, for review:

* the **delivery artefacts exactly as they would be sent** — the PDF
  encrypted when the template is confidential, the ``.eml``, the SMS text —
  because what compliance signs off must be what goes out, byte for byte
  digested;
* review copies next to them — a confidential PDF decrypted with the sample
  customer's password (``document.review.pdf``), a page-one thumbnail, the
  email's HTML and text parts — so a reviewer never needs a password;
* ``findings.json``, the lint findings (:func:`ccm.review.lint.lint`);
* ``index.html``, one page to review it all (thumbnails, links, findings);
* ``manifest.json``: the SHA-256 of every source file (per pack, per
  template) and of every output file, signed with Ed25519 into
  ``manifest.sig`` (the raw 64-byte signature), with the public key in
  ``manifest.pub`` (PEM).

The signing key lives outside the repository: ``--key FILE`` or
``CCM_PROOF_KEY_FILE``; ``ccm proof --generate-key FILE`` makes one (mode
0600). :func:`verify_proof` checks the signature against a public key the
verifier already trusts (never the one inside the folder) and every output's
digest. ``openssl pkeyutl -verify -pubin -inkey key.pub -rawin -in
manifest.json -sigfile manifest.sig`` checks the signature too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccm._util import atomic_write, portable_name
from ccm._version import __version__
from ccm.errors import CCMError, ConfigError
from ccm.review.proof_page import index_html
from ccm.review.signing import (
    KEY_FILE_ENV,
    _public_pem,
    generate_key,
    load_private_key,
    load_public_key,
    public_key_fingerprint,
)

if TYPE_CHECKING:
    from ccm.message import Message
    from ccm.render.engine import Engine
    from ccm.render.template import Template

__all__ = [
    "KEY_FILE_ENV",
    "ProofResult",
    "ProofRow",
    "Verification",
    "build_proof",
    "check_out_dir",
    "default_pack_dirs",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "public_key_fingerprint",
    "render_channels",
    "verify_proof",
]

FORMAT = "ccm-proof/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "manifest.pub"
_SIGNING_FILES = frozenset({MANIFEST, SIGNATURE, PUBLIC_KEY})

_CHANNEL_FILES = {"pdf": "document.pdf", "email": "email.eml", "sms": "sms.txt"}


# -- results ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProofRow:
    """One rendered pack × template × locale × sample × channel."""

    pack: str
    template: str
    locale: str
    sample: str
    channel: str
    status: str
    files: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ProofResult:
    """What :func:`build_proof` wrote."""

    out_dir: Path
    rows: list[ProofRow]
    findings: list[dict[str, Any]]
    manifest_sha256: str
    public_key: Ed25519PublicKey

    @property
    def failed(self) -> list[ProofRow]:
        """Rows that did not render."""
        return [row for row in self.rows if row.status == "error"]

    @property
    def lint_errors(self) -> list[dict[str, Any]]:
        """Lint findings of severity ``error``."""
        return [f for f in self.findings if f.get("severity") == "error"]


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_proof`; ``ok`` only when nothing is wrong."""

    signature_ok: bool
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.signature_ok and not (
            self.changed or self.missing or self.added or self.problems
        )

    def describe(self) -> str:
        """One line per problem, or ``proof intact``."""
        if self.ok:
            return "proof intact: signature valid, every output matches the manifest"
        lines = [] if self.signature_ok else ["signature: INVALID for this public key"]
        lines += [f"changed: {p}" for p in self.changed]
        lines += [f"missing: {p}" for p in self.missing]
        lines += [f"added: {p}" for p in self.added]
        lines += self.problems
        return "\n".join(lines)


# -- building --------------------------------------------------------------------


def default_pack_dirs(base: str | os.PathLike[str] = "brand_packs") -> list[Path]:
    """Every ``<base>/<id>/`` holding a ``pack.yaml``, sorted."""
    return sorted(p.parent for p in Path(base).glob("*/pack.yaml"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _finding_dict(finding: Any) -> dict[str, Any]:
    raw = asdict(finding) if is_dataclass(finding) and not isinstance(finding, type) else {
        name: getattr(finding, name, None)
        for name in ("file", "line", "rule", "severity", "message")
    }
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items()}


def _lint(
    pack_dirs: Sequence[Path],
    templates_dir: Path,
    linter: Callable[[list[Path], Path], Sequence[Any]] | None,
    root: Path,
) -> list[dict[str, Any]]:
    run = linter
    if run is None:
        from ccm.review.lint import lint

        run = lint
    out = []
    for finding in run(list(pack_dirs), templates_dir):
        item = _finding_dict(finding)
        if item.get("file"):
            item["file"] = _relative(Path(str(item["file"])), root)
        out.append(item)
    return out


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it: proofs do not carry local folder names."""
    return path.relative_to(root).as_posix() if path.is_absolute() and \
        path.is_relative_to(root) else path.as_posix()


def check_out_dir(out_dir: str | os.PathLike[str], pack_dirs: Sequence[str | os.PathLike[str]],
                  templates_dir: str | os.PathLike[str]) -> None:
    """Refuse (ConfigError) a proof folder inside a pack or a template's folder.

    Every file there is a source the proof digests: the proof's own files
    would change the sources it describes while it is made (and what a later
    approval digests), so it could only fail, leaving a half-written folder.
    """
    out = Path(os.path.realpath(out_dir))
    tdir = Path(os.path.realpath(templates_dir))
    folders = [("brand pack", Path(os.path.realpath(p))) for p in pack_dirs]
    if tdir.is_dir():
        folders += [("template", d) for d in sorted(tdir.iterdir())
                    if d.is_dir() and (d / "template.yaml").is_file()]
    for kind, root in folders:
        if out.is_relative_to(root):
            raise ConfigError(
                f"{out_dir}: the proof folder is inside the {kind} {root}, whose files the "
                "proof digests: its own files would change the sources it describes; choose "
                "a folder outside the brand packs and template folders (e.g. proof/ next to "
                "them)", path=str(out_dir))


def _prepare_out(out: Path) -> None:
    """Make ``out`` ready: absent, empty, or an earlier proof (whose files are removed)."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: not a folder", path=str(out))
    present = [p for p in out.rglob("*") if p.is_file()]
    if not present:
        return
    try:
        earlier = json.loads((out / MANIFEST).read_text("utf-8"))
        listed = set(earlier["outputs"]) if earlier.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        listed = None
    if listed is None:
        raise ConfigError(f"{out}: not empty and not an earlier proof; choose an empty folder",
                          path=str(out))
    foreign = [p for p in present
               if p.relative_to(out).as_posix() not in listed | _SIGNING_FILES]
    if foreign:
        raise ConfigError(
            f"{out}: holds files that are not part of the earlier proof "
            f"({foreign[0].relative_to(out)}); choose an empty folder",
            path=str(out),
        )
    for p in present:
        p.unlink()
    for d in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        d.rmdir()


def _sources(engine: Engine, templates: Sequence[Template]) -> dict[str, Any]:
    from ccm.review.approval import pack_digests, template_digests

    return {
        "pack": {
            "id": engine.pack.id,
            "version": engine.pack.version,
            "sources_sha256": engine.pack.sources_sha256,
            "files": pack_digests(engine.pack),
        },
        "templates": {
            t.id: {
                "version": t.version,
                "sources_sha256": t.sources_sha256,
                "files": template_digests(t),
            }
            for t in templates
        },
    }


def build_proof(
    pack_dirs: Sequence[str | os.PathLike[str]],
    templates_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    key: Ed25519PrivateKey,
    templates: Sequence[str] | None = None,
    thumbnails: bool = True,
    linter: Callable[[list[Path], Path], Sequence[Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> ProofResult:
    """Render everything into ``out_dir``, lint it, and write the signed manifest.

    A render that fails is a row with ``status="error"`` and its message, not
    an exception: the proof shows it. Configuration errors (a pack that does
    not load, an unknown template id) raise. ``linter`` defaults to
    :func:`ccm.review.lint.lint`.
    """
    from ccm.render.engine import Engine, RenderOptions

    out = Path(out_dir).resolve()
    tdir = Path(templates_dir).resolve()
    packs = [Path(p).resolve() for p in pack_dirs]
    if not packs:
        raise ConfigError("no brand packs to proof (pass --pack DIR)")
    check_out_dir(out, packs, tdir)
    _prepare_out(out)
    root = Path(os.path.commonpath([tdir, *packs]))
    now = (clock or (lambda: datetime.now(UTC)))()
    say = progress or (lambda _line: None)

    rows: list[ProofRow] = []
    outputs: dict[str, str] = {}
    sources: dict[str, Any] = {"packs": {}, "templates": {}}

    def put(rel: str, data: bytes) -> str:
        if rel in outputs:  # two samples named alike must never share a file
            raise ConfigError(f"{out / rel}: written twice in one proof", path=rel)
        atomic_write(out / rel, data)
        outputs[rel] = _sha256(data)
        return rel

    engines: list[Engine] = []
    for pack_dir in packs:
        engine = Engine(pack_dir, tdir, record=None, options=RenderOptions())
        engines.append(engine)
        chosen = [engine.template(t) for t in templates] if templates else \
            [engine.templates[t] for t in sorted(engine.templates)]
        before = _sources(engine, chosen)
        for tpl in chosen:
            say(f"{engine.pack.id}/{tpl.id}")
            rows.extend(_render_template(engine, tpl, put, thumbnails=thumbnails))
        after = _sources(engine, chosen)
        if after != before:
            raise ConfigError(
                f"sources of pack {engine.pack.id!r} or its templates changed during the proof; "
                "run it again",
            )
        sources["packs"][engine.pack.id] = {**after["pack"], "path": _relative(pack_dir, root)}
        sources["templates"].update(after["templates"])

    say("lint")
    findings = _lint(packs, tdir, linter, root)
    put("findings.json", _json_bytes(findings))
    public = key.public_key()
    put("index.html", index_html(engines, rows, findings, now, public).encode("utf-8"))

    manifest = {
        "format": FORMAT,
        "created_at": now.isoformat(timespec="seconds"),
        "ccm_version": __version__,
        "public_key_fingerprint": public_key_fingerprint(public),
        "sources": sources,
        "pairs": {
            f"{e.pack.id}/{t.id}": e.sources_sha256(t)
            for e in engines
            for t in ([e.template(x) for x in templates] if templates else e.templates.values())
        },
        "renders": [asdict(row) for row in rows],
        "lint": {
            "errors": sum(1 for f in findings if f.get("severity") == "error"),
            "warnings": sum(1 for f in findings if f.get("severity") == "warning"),
        },
        "outputs": dict(sorted(outputs.items())),
    }
    manifest_bytes = _json_bytes(manifest)
    atomic_write(out / MANIFEST, manifest_bytes)
    atomic_write(out / SIGNATURE, key.sign(manifest_bytes))
    atomic_write(out / PUBLIC_KEY, _public_pem(public))
    return ProofResult(out, rows, findings, _sha256(manifest_bytes), public)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str)
            + "\n").encode("utf-8")


def _samples(tpl: Template) -> list[tuple[str, Any]]:
    out = []
    for path in tpl.samples():
        try:
            out.append((path.stem, tpl.read_sample(path)))
        except (OSError, ValueError) as exc:
            out.append((path.stem, exc))
    return out


def _render_template(
    engine: Engine, tpl: Template, put: Callable[[str, bytes], str], *, thumbnails: bool
) -> list[ProofRow]:
    rows: list[ProofRow] = []
    samples = _samples(tpl)
    if not samples:
        return [ProofRow(engine.pack.id, tpl.id, "", "", "", "error",
                         error=f"{tpl.root}/samples: no sample requests, so nothing of "
                               f"{tpl.id!r} was rendered; add one (e.g. samples/01_example.json "
                               "with a customer and data)")]
    for locale in engine.pack.locales:
        for sample_name, request in samples:
            folder = "/".join(portable_name(x) for x in
                              (engine.pack.id, tpl.id, locale, sample_name))
            messages = render_channels(engine, tpl, request, locale)
            for channel in tpl.channels:
                base = ProofRow(engine.pack.id, tpl.id, locale, sample_name, channel, "error")
                result = messages[channel]
                if isinstance(result, Exception):
                    where = f"sample {sample_name}: " if isinstance(request, Exception) else ""
                    rows.append(_with(base, error=f"{where}{type(result).__name__}: {result}"))
                    continue
                try:
                    rows.append(_write_channel(engine, result, request, base, folder, put,
                                               thumbnails=thumbnails))
                except CCMError as exc:
                    rows.append(_with(base, error=f"{type(exc).__name__}: {exc}"))
    return rows


def render_channels(
    engine: Engine, template: Template, request: Any, locale: str | None
) -> dict[str, Message | Exception]:
    """Every channel of ``template`` for ``request``: the message, or the error that stopped it.

    One call renders them all (the PDF once, reused as the email's attachment);
    when that fails, each channel is rendered alone so the error lands on the
    channel that caused it. Only ccm errors are caught.
    """
    if isinstance(request, Exception):
        return dict.fromkeys(template.channels, request)
    try:
        together = engine.render(template.id, request, None, locale, record=False)
        return {m.channel: m for m in together}
    except CCMError:
        pass
    out: dict[str, Message | Exception] = {}
    for channel in template.channels:
        try:
            out[channel] = engine.render(template.id, request, channel, locale, record=False)
        except CCMError as exc:
            out[channel] = exc
    return out



def _with(row: ProofRow, **changes: Any) -> ProofRow:
    return ProofRow(**{**asdict(row), **changes})


def _write_channel(
    engine: Engine,
    message: Message,
    request: Any,
    row: ProofRow,
    folder: str,
    put: Callable[[str, bytes], str],
    *,
    thumbnails: bool,
) -> ProofRow:
    files = {"delivery": put(f"{folder}/{_CHANNEL_FILES[message.channel]}", message.content)}
    details: dict[str, Any] = {
        "sources_sha256": message.sources_sha256,
        "template_version": message.template_version,
        "pack_version": message.pack_version,
    }
    if message.channel == "pdf":
        from ccm.review.preview.pages import readable_pdf

        details["encrypted"] = message.encrypted
        details["password_hint"] = message.password_hint
        readable = readable_pdf(engine, message, request.get("customer", {}))
        if message.encrypted:
            files["review"] = put(f"{folder}/document.review.pdf", readable)
        if thumbnails:
            try:
                from ccm.review.preview.pages import render_pages
            except ImportError:  # pragma: no cover - pypdfium2 is in the preview extra
                pass
            else:
                pngs = render_pages(readable, scale=0.5, max_pages=1)
                if pngs:
                    files["thumbnail"] = put(f"{folder}/document.png", pngs[0])
                import pypdf

                details["pages"] = len(pypdf.PdfReader(io.BytesIO(readable)).pages)
    elif message.channel == "email" and message.email is not None:
        details["subject"] = message.subject
        html_part = message.email.get_body(("html",))
        text_part = message.email.get_body(("plain",))
        if html_part is not None:
            files["html"] = put(f"{folder}/email.html",
                                str(html_part.get_content()).encode("utf-8"))
        if text_part is not None:
            files["text"] = put(f"{folder}/email.txt",
                                str(text_part.get_content()).encode("utf-8"))
        details["attachments"] = [a.get_filename() for a in message.email.iter_attachments()]
    elif message.channel == "sms":
        details["text"] = message.text
        details["encoding"] = message.encoding
        details["segments"] = message.segments
    return _with(row, status=message.status, files=files, details=details)


# -- verifying -------------------------------------------------------------------


def verify_proof(
    directory: str | os.PathLike[str],
    public_key: Ed25519PublicKey | bytes | str | os.PathLike[str],
) -> Verification:
    """Check a proof folder: the manifest's signature under ``public_key``, then every output.

    Pass a public key you trust from elsewhere, not ``manifest.pub`` from the
    folder itself (anyone who edits the folder can replace that one too).
    """
    root = Path(directory)
    key = load_public_key(public_key)
    try:
        manifest_bytes = (root / MANIFEST).read_bytes()
        signature = (root / SIGNATURE).read_bytes()
    except OSError as exc:
        return Verification(False, problems=[f"{exc.filename}: cannot read: {exc.strerror}"])
    try:
        key.verify(signature, manifest_bytes)
        signature_ok = True
    except InvalidSignature:
        signature_ok = False
    try:
        manifest = json.loads(manifest_bytes)
        outputs: dict[str, str] = dict(manifest["outputs"])
        if manifest.get("format") != FORMAT:
            raise ValueError(manifest.get("format"))
    except (ValueError, KeyError, TypeError) as exc:
        return Verification(signature_ok, problems=[f"{MANIFEST}: not a proof manifest ({exc})"])
    changed, missing = [], []
    for rel, digest in sorted(outputs.items()):
        path = root / rel
        if not path.is_file():
            missing.append(rel)
        elif _sha256(path.read_bytes()) != digest:
            changed.append(rel)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    added = sorted(present - set(outputs) - _SIGNING_FILES)
    return Verification(signature_ok, changed=changed, missing=missing, added=added)
