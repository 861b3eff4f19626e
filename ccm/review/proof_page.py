"""The proof's review page: one self-contained HTML file with thumbnails, links and findings."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ccm._version import __version__
from ccm.review.signing import public_key_fingerprint

if TYPE_CHECKING:
    from ccm.render.engine import Engine
    from ccm.review.proof import ProofRow

__all__ = ["index_html"]


_CSS = """
:root{--ink:#1d232b;--muted:#5d6773;--line:#d9dee5;--bg:#f4f6f8;--err:#a4262c;--warn:#8a5a00}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{background:#1d232b;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c5ccd6;font-size:12px}main{padding:16px 24px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;margin:0 0 16px;
padding:12px 16px}h2{font-size:17px;margin:4px 0 10px}table{border-collapse:collapse;width:100%}
th,td{border-top:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600}img.thumb{width:120px;border:1px solid
var(--line);box-shadow:0 1px 3px rgba(0,0,0,.15);background:#fff}.sms{background:#e9e9eb;
border-radius:14px;padding:8px 10px;max-width:280px;white-space:pre-wrap;font-size:13px}
.meta{color:var(--muted);font-size:12px}.error{color:var(--err);white-space:pre-wrap;
font-family:ui-monospace,monospace;font-size:12px}.sev{font-weight:700;text-transform:uppercase;
font-size:11px}.sev-error{color:var(--err)}.sev-warning{color:var(--warn)}code{font-size:12px}
th.narrow{width:9%}td code.rule{white-space:nowrap}
"""


def index_html(
    engines: Sequence[Engine],
    rows: Sequence[ProofRow],
    findings: Sequence[dict[str, Any]],
    now: datetime,
    public: Ed25519PublicKey,
) -> str:
    """The review page for ``rows`` and ``findings``, made at ``now`` and signed with ``public``."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>ccm proof {esc(now.date().isoformat())}</title><style>{_CSS}</style></head>",
        "<body><header><h1>Proof for sign-off</h1>",
        f"<p>made {esc(now.isoformat(timespec='seconds'))} · ccm {esc(__version__)} · "
        f"signing key <code>{esc(public_key_fingerprint(public))}</code> · "
        f"{len(rows)} renders, {sum(r.status == 'error' for r in rows)} failed · "
        f"{len(findings)} lint findings</p></header><main>",
    ]
    parts.append("<section><h2>Lint findings</h2>")
    if findings:
        parts.append("<table><tr><th>severity</th><th>where</th><th>rule</th><th>message</th></tr>")
        for f in findings:
            sev = str(f.get("severity") or "")
            where = f"{f.get('file') or ''}:{f.get('line')}" if f.get("line") else \
                str(f.get("file") or "")
            parts.append(
                f"<tr><td class='sev sev-{esc(sev)}'>{esc(sev)}</td><td><code>{esc(where)}</code>"
                f"</td><td><code class=rule>{esc(str(f.get('rule') or ''))}</code></td>"
                f"<td>{esc(str(f.get('message') or ''))}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p class=meta>No findings.</p>")
    parts.append("</section>")

    by_key: dict[tuple[str, str], list[ProofRow]] = {}
    for row in rows:
        by_key.setdefault((row.pack, row.template), []).append(row)
    parts.append("<section><h2>Contents</h2><table><tr><th>pack</th><th>template</th>"
                 "<th>renders</th><th>failed</th></tr>")
    for (pack_id, template_id), group in by_key.items():
        failed = sum(r.status == "error" for r in group)
        parts.append(
            f"<tr><td>{esc(pack_id)}</td><td><a href='#{esc(pack_id)}--{esc(template_id)}'>"
            f"{esc(template_id)}</a></td><td>{len(group)}</td>"
            f"<td{' class=error' if failed else ''}>{failed}</td></tr>"
        )
    parts.append("</table></section>")
    for engine in engines:
        for (pack_id, template_id), group in by_key.items():
            if pack_id != engine.pack.id:
                continue
            tpl = engine.templates.get(template_id)
            digest = engine.sources_sha256(tpl) if tpl is not None else ""
            channels = list(tpl.channels) if tpl is not None else []
            parts.append(
                f"<section id='{esc(pack_id)}--{esc(template_id)}'>"
                f"<h2>{esc(engine.pack.name)} · {esc(template_id)}"
                f"{' ' + esc(tpl.version) if tpl else ''}</h2>"
                f"<p class=meta>sources <code>{esc(digest)}</code></p><table><tr>"
                "<th class=narrow>locale</th><th class=narrow>sample</th>"
                + "".join(f"<th>{esc(c)}</th>" for c in channels) + "</tr>"
            )
            cells: dict[tuple[str, str], dict[str, ProofRow]] = {}
            for row in group:
                cells.setdefault((row.locale, row.sample), {})[row.channel] = row
            for (locale, sample), per_channel in cells.items():
                parts.append(f"<tr><td>{esc(locale)}</td><td>{esc(sample)}</td>")
                for channel in channels:
                    cell = per_channel.get(channel)
                    parts.append(f"<td>{_cell(cell) if cell else ''}</td>")
                parts.append("</tr>")
            parts.append("</table></section>")
    parts.append("</main></body></html>")
    return "".join(parts)


def _cell(row: ProofRow) -> str:
    esc = html.escape
    if row.status == "error":
        return f"<div class=error>{esc(row.error or 'failed')}</div>"
    f, d = row.files, row.details

    def link(role: str, label: str) -> str:
        return f"<a href='{esc(f[role])}'>{label}</a>" if role in f else ""

    if row.channel == "pdf":
        target = f.get("review") or f["delivery"]
        thumb = (f"<a href='{esc(target)}'><img class=thumb alt='page 1' "
                 f"src='{esc(f['thumbnail'])}'></a><br>") if "thumbnail" in f else ""
        lock = " · AES-256, hint: " + esc(str(d.get("password_hint"))) if d.get("encrypted") else ""
        return (f"{thumb}<span class=meta>{d.get('pages', '?')} page(s){lock}</span><br>"
                f"{link('review', 'review copy')} {link('delivery', 'delivery PDF')}")
    if row.channel == "email":
        attached = d.get("attachments") or []
        extra = f"<br><span class=meta>attached: {esc(', '.join(map(str, attached)))}</span>" \
            if attached else ""
        return (f"<b>{esc(str(d.get('subject') or ''))}</b>{extra}<br>"
                f"{link('html', 'HTML')} · {link('text', 'text')} · {link('delivery', '.eml')}")
    return (f"<div class=sms>{esc(str(d.get('text') or ''))}</div>"
            f"<span class=meta>{esc(str(d.get('encoding')))}, {d.get('segments')} segment(s)"
            f"</span>")
