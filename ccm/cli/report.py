"""``ccm record report``: the organisation report over the record, as an HTML page."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from ccm.cli.record import fail, write_output
from ccm.engagement.reports import (
    DEFAULT_RECORD_URL,
    _brand_option,
    _open_record,
    org_report_html,
)
from ccm.errors import CCMError

_record_option = click.option(
    "--record",
    "record_url",
    envvar="CCM_RECORD_URL",
    default=DEFAULT_RECORD_URL,
    show_default=True,
    help="record URL (default: $CCM_RECORD_URL)",
)
_pack_option = click.option(
    "--pack",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="brand pack folder whose name and colours style the page",
)


@click.command("report")
@_record_option
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="only messages created on or after this date (YYYY-MM-DD)",
)
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the report page here",
)
@_pack_option
def report_cmd(record_url: str, since: datetime | None, html_path: Path, pack: Path | None) -> None:
    """Write the organisation report (volumes, engagement, NPS) as an HTML page."""
    try:
        with _open_record(record_url) as record:
            page = org_report_html(
                record, since=since.date() if since else None, brand=_brand_option(pack))
    except CCMError as exc:
        raise fail(exc) from exc
    written = write_output(html_path, page.encode("utf-8"))
    click.echo(f"wrote {written}")
