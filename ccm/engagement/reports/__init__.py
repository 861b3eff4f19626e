"""HTML pages for people: a customer's timeline and the organisation report.

Three modules of one idea each:

* :mod:`.queries` counts in the record (:func:`collect_report` -> :class:`OrgReport`);
* :mod:`.charts` draws colours and inline SVG charts;
* :mod:`.pages` renders the Jinja pages (:func:`timeline_html`,
  :func:`render_report`, :func:`org_report_html`) and writes them to files
  (what ``ccm record timeline --html`` and ``ccm record report`` call).
"""

from __future__ import annotations

from ccm.engagement.reports.charts import bars_svg as bars_svg
from ccm.engagement.reports.charts import brand_from_pack as brand_from_pack
from ccm.engagement.reports.charts import share_bars_svg as share_bars_svg
from ccm.engagement.reports.charts import stacked_columns_svg as stacked_columns_svg
from ccm.engagement.reports.pages import DEFAULT_RECORD_URL as DEFAULT_RECORD_URL
from ccm.engagement.reports.pages import _brand_option as _brand_option
from ccm.engagement.reports.pages import _open_record as _open_record
from ccm.engagement.reports.pages import org_report_html as org_report_html
from ccm.engagement.reports.pages import render_report as render_report
from ccm.engagement.reports.pages import timeline_html as timeline_html
from ccm.engagement.reports.pages import write_report_html as write_report_html
from ccm.engagement.reports.pages import write_timeline_html as write_timeline_html
from ccm.engagement.reports.queries import ChannelEngagement as ChannelEngagement
from ccm.engagement.reports.queries import OrgReport as OrgReport
from ccm.engagement.reports.queries import collect_report as collect_report

__all__ = [
    "ChannelEngagement",
    "OrgReport",
    "bars_svg",
    "brand_from_pack",
    "collect_report",
    "org_report_html",
    "render_report",
    "share_bars_svg",
    "stacked_columns_svg",
    "timeline_html",
    "write_report_html",
    "write_timeline_html",
]
