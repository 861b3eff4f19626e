"""``ccm lint``: check every template in every pack, locale, sample and channel.

Mounted into the main CLI as ``ccm lint``. Prints each finding as
``file:line:column: severity: rule-id: message`` and its fix (or JSON with
``--format json``, SARIF 2.1.0 with ``--format sarif``) on stdout and a count
on stderr; ``--diff``/``--fix`` show or apply the mechanical fixes. The work
is :func:`ccm.review.lint.lint`.

Exit status: 0 no error-severity finding (warnings allowed), 1 at least one
error, 2 usage error, 3 an unknown ``--template``, 5 a file ``--fix`` cannot
write.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ccm.cli._common import ExitCode, Fail

__all__ = ["lint"]


def _default_packs(base: Path) -> list[Path]:
    """Every folder of ``base`` (``./brand_packs``), hidden ones excepted."""
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


@click.command("lint")
@click.option("--pack", "pack_dirs", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Brand pack folder (repeatable) [default: every folder in ./brand_packs].")
@click.option("--templates", "templates_dir", default="templates", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Templates folder.")
@click.option("--template", "only", multiple=True, metavar="ID",
              help="Lint only this template (repeatable) [default: every template].")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text",
              show_default=True,
              help="Output: file:line:column lines with the fix, JSON, or SARIF 2.1.0.")
@click.option("--fix", "fix", is_flag=True,
              help="Apply the mechanical fixes to the files and print the diff.")
@click.option("--diff", "diff", is_flag=True,
              help="Print the diff --fix would apply, changing nothing.")
def lint(pack_dirs: Sequence[Path], templates_dir: Path, only: Sequence[str], fmt: str,
         fix: bool, diff: bool) -> None:
    """Check templates and brand packs: render everything and report problems.

    Exits 1 when any finding has severity error. Rules and how to fix what
    they find: docs/lint.md.
    """
    from ccm.review.lint import format_json, format_sarif, format_text, summary
    from ccm.review.lint import lint as run
    from ccm.review.lint.fix import apply_fixes

    if fix and diff:
        # --diff promises to change nothing; with --fix it used to write the files anyway.
        raise click.UsageError("give --fix (apply) or --diff (show, change nothing), not both")
    packs = list(pack_dirs) or _default_packs(Path("brand_packs"))
    if not packs:
        raise click.UsageError("no brand packs: give --pack DIR or run where ./brand_packs is")
    if only:
        known = {p.parent.name for p in templates_dir.glob("*/template.yaml")}
        unknown = sorted(set(only) - known)
        if unknown:
            raise Fail(f"--template: no template {', '.join(map(repr, unknown))} in "
                       f"{templates_dir}; there are: {', '.join(sorted(known)) or 'none'}",
                       ExitCode.NOT_FOUND)
    findings = run(packs, templates_dir, only=list(only) or None)
    if fix or diff:
        try:
            changes, count = apply_fixes(findings, write=fix)
        except OSError as exc:
            raise Fail(f"--fix: cannot write {exc.filename}: {exc.strerror}; nothing after it "
                       "was changed", ExitCode.IO_ERROR) from None
        click.echo(changes, nl=False)
        verb = "applied" if fix else "would apply"
        click.echo(f"ccm lint: {verb} {count} fix(es)", err=True)
        if fix:
            findings = run(packs, templates_dir, only=list(only) or None)
    formats = {"json": format_json, "sarif": format_sarif, "text": format_text}
    output = formats[fmt](findings)
    if output and not (diff and fmt == "text"):
        click.echo(output)
    click.echo(f"ccm lint: {summary(findings)}", err=True)
    if any(f.severity == "error" for f in findings):
        raise SystemExit(1)
