"""``ccm approve``: record the current sources of templates as approved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ccm.cli._common import Fail
from ccm.errors import CCMError
from ccm.render.engine import Engine
from ccm.review.approval import current_user, default_approvals_path, record_approval


@click.command("approve")
@click.argument("templates", nargs=-1, required=True, metavar="TEMPLATE...")
@click.option("--pack", "pack_dirs", multiple=True, required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Brand pack folder (repeat to approve in several packs).")
@click.option("--templates", "templates_dir", default="templates", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Templates folder.")
@click.option("--approvals", "approvals_file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Approvals file [default: approvals.json next to the templates folder].")
@click.option("--by", "by", default=None, metavar="NAME",
              help="Who approves [default: the current user].")
def approve(
    templates: Sequence[str],
    pack_dirs: Sequence[Path],
    templates_dir: Path,
    approvals_file: Path | None,
    by: str | None,
) -> None:
    """Record the current sources of TEMPLATE in each --pack as approved."""
    who = by or current_user()
    target = approvals_file or default_approvals_path(templates_dir)
    try:
        for pack_dir in pack_dirs:
            engine = Engine(pack_dir, templates_dir, record=None)
            for template_id in templates:
                approval = record_approval(engine, template_id, by=who, path=target)
                click.echo(
                    f"approved {approval.template} {approval.template_version} in "
                    f"{approval.pack} {approval.pack_version} by {approval.approved_by} "
                    f"({len(approval.template_files)} template + {len(approval.pack_files)} "
                    f"pack files) -> {target}"
                )
    except CCMError as exc:
        raise Fail(str(exc)) from exc
