"""``ccm proof``: render every pack, template, locale, sample and channel into a signed proof."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ccm.cli._common import Fail, need_folder, needs_extra, out_folder
from ccm.errors import CCMError
from ccm.review import proof as _proof
from ccm.review.proof import KEY_FILE_ENV


def _repo_root(path: Path) -> Path | None:
    for parent in [path.resolve(), *path.resolve().parents]:
        if (parent / ".git").exists():
            return parent
    return None


@click.command("proof")
@click.option("--pack", "pack_dirs", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Brand pack folder (repeatable) [default: every pack in ./brand_packs].")
@click.option("--templates", "templates_dir", default="templates", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Templates folder.")
@click.option("--template", "template_ids", multiple=True, metavar="ID",
              help="Only this template (repeatable) [default: all].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the proof (empty, or an earlier proof to replace).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Ed25519 signing key (PEM) [default: ${KEY_FILE_ENV}].")
@click.option("--generate-key", "generate", type=click.Path(dir_okay=False, path_type=Path),
              help="Create a new signing key at FILE (mode 0600) and FILE.pub, then stop.")
@click.option("--verify", "verify_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Verify the proof in DIR instead of making one.")
@click.option("--public-key", "public_key_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Trusted public key for --verify [default: derived from --key].")
def proof(
    pack_dirs: Sequence[Path],
    templates_dir: Path,
    template_ids: Sequence[str],
    out_dir: Path | None,
    key_file: Path | None,
    generate: Path | None,
    verify_dir: Path | None,
    public_key_file: Path | None,
) -> None:
    """Render every pack × template × locale × sample × channel into a signed proof."""
    try:
        if generate is not None:
            public = _proof.generate_key(generate)
            click.echo(f"wrote {generate} (keep it secret, outside the repository) and "
                       f"{generate}.pub ({_proof.public_key_fingerprint(public)})")
            return
        if verify_dir is not None:
            # Before the key: a mistyped folder is not an invalid signature.
            need_folder(verify_dir, "--verify", "the proof's folder")
            trusted: Any
            if public_key_file is not None:
                trusted = _proof.load_public_key(public_key_file)
            else:
                trusted = _proof.load_private_key(key_file).public_key()
            verification = _proof.verify_proof(verify_dir, trusted)
            click.echo(verification.describe())
            if not verification.ok:
                raise SystemExit(1)
            return
        if out_dir is None:
            raise click.UsageError("--out DIR is required to make a proof")
        # Page thumbnails are drawn with pypdfium2 (the preview extra).
        needs_extra("ccm proof", ("pypdfium2",), "preview")
        packs = list(pack_dirs) or _proof.default_pack_dirs()
        forbidden = [*packs, templates_dir, out_dir]
        repo = _repo_root(templates_dir)
        if repo is not None:
            forbidden.append(repo)
        key = _proof.load_private_key(key_file, forbidden=forbidden)
        _proof.check_out_dir(out_dir, packs, templates_dir)  # before the folder is made
        made = not out_dir.exists()
        out_folder(out_dir)  # after the key: a failed start leaves no folder behind
        try:
            result = _proof.build_proof(
                packs, templates_dir, out_dir, key=key, templates=template_ids or None,
                progress=lambda line: click.echo(f"proof: {line}", err=True),
            )
        except CCMError:
            # An unknown template, a pack that does not load: stopped before the first
            # render, so the folder this command made is still empty; leave none behind.
            if made and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise
    except CCMError as exc:
        raise Fail(str(exc)) from exc
    for row in result.failed:
        where = "/".join(part for part in (row.pack, row.template, row.locale, row.sample,
                                           row.channel) if part)
        click.echo(f"ccm: error: {where}: {row.error}", err=True)
    click.echo(
        f"proof written to {result.out_dir}: {len(result.rows)} renders "
        f"({len(result.failed)} failed), {len(result.findings)} lint findings "
        f"({len(result.lint_errors)} errors); open {result.out_dir / 'index.html'}; "
        f"manifest sha256 {result.manifest_sha256}"
    )
    if result.failed or result.lint_errors:
        sys.exit(1)
