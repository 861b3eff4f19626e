"""The preview page: one self-contained HTML document (inline CSS and JS, nothing fetched
from elsewhere), so it works offline and shows exactly what the server rendered."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import urlencode

from ccm.review.preview.workspace import (
    ChannelView,
    EmailView,
    ErrorInfo,
    FindingView,
    Listing,
    PdfView,
    SmsView,
    View,
    ViewKey,
)

__all__ = ["error_html", "findings_html", "page_html"]

_CSS = """
:root{--ink:#1b2129;--muted:#5f6975;--line:#d8dde4;--bg:#eef1f4;--panel:#fff;--err:#a4262c;
--err-bg:#fdf0f0;--warn:#8a5a00;--accent:#2457c5}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--ink);background:var(--bg)}
header{position:sticky;top:0;z-index:5;display:flex;flex-wrap:wrap;gap:12px;align-items:center;
background:#1b2129;color:#fff;padding:10px 16px}
header .brand{font-weight:700;letter-spacing:.02em;margin-right:8px}
header label{font-size:12px;color:#b9c2cd;display:flex;gap:6px;align-items:center}
header select{font:inherit;font-size:13px;padding:3px 6px;border-radius:5px;
border:1px solid #4a5563;background:#2a323d;color:#fff}
#status{margin-left:auto;font-size:12px;color:#b9c2cd}
#status .dot{display:inline-block;width:8px;height:8px;border-radius:50%;background:#7a8591;
margin-right:6px;vertical-align:middle}
#status.live .dot{background:#3ccf6e}
nav{display:flex;flex-wrap:wrap;gap:4px;padding:8px 16px 0;border-bottom:1px solid var(--line);
background:#f8f9fb}
nav a{display:block;padding:6px 12px 7px;border-radius:7px 7px 0 0;color:var(--ink);
text-decoration:none;border:1px solid transparent;border-bottom:0;margin-bottom:-1px}
nav a:hover{background:#e8ecf1}
nav a.current{background:var(--bg);border-color:var(--line)}
nav .id{display:block;font-size:11px;color:var(--muted)}
nav .ch{font-size:10px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
main{padding:14px 16px 40px}
.channels{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.panel h2{margin:0 0 8px;font-size:15px;display:flex;gap:8px;align-items:baseline}
.panel h2 .meta{font-weight:400}
.meta{color:var(--muted);font-size:12px}
#pdf{width:420px}#pdf img{display:block;width:100%;height:auto;border:1px solid var(--line);
margin:0 0 12px;box-shadow:0 2px 6px rgba(0,0,0,.12);background:#fff}
#email{max-width:1040px}
.frames{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.frame figcaption{font-size:12px;color:var(--muted);margin-bottom:4px}
.frame iframe{display:block;box-sizing:content-box;border:1px solid var(--line);background:#fff;
height:600px}
.frame.desktop iframe{width:600px}
.frame.mobile iframe{width:375px;border-radius:18px;border:8px solid #1b2129}
table.headers{border-collapse:collapse;font-size:12px;margin:0 0 10px;width:100%}
table.headers th{text-align:right;color:var(--muted);font-weight:500;padding:2px 8px 2px 0;
white-space:nowrap;vertical-align:top;width:1%}
table.headers td{padding:2px 0;word-break:break-all}
pre.text{white-space:pre-wrap;font-size:12px;background:#f7f8fa;border:1px solid var(--line);
border-radius:6px;padding:8px;max-height:360px;overflow:auto}
.phone{width:300px;border:10px solid #1b2129;border-radius:34px;background:#fff;
padding:14px 12px 26px;min-height:200px}
.phone .sender{text-align:center;font-size:12px;color:var(--muted);margin-bottom:12px}
.bubble{background:#e9e9eb;color:#000;border-radius:18px 18px 18px 4px;padding:8px 12px;
max-width:240px;white-space:pre-wrap;word-wrap:break-word;font-size:14px;line-height:1.35}
.smsinfo{margin-top:10px;font-size:12px}
.smsinfo b{font-weight:600}.warnchars{color:var(--warn)}
.error{background:var(--err-bg);border:1px solid #f0c2c2;border-radius:8px;padding:10px 12px;
color:var(--err)}
.error .where{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-weight:700;
overflow-wrap:anywhere}
.error pre{margin:8px 0 0;color:var(--ink);background:#fff;border-radius:6px;padding:6px 0;
font-size:12px;overflow:auto}
.error pre span{display:block;padding:0 8px}.error pre span.hit{background:#ffe1e1}
.error .msg{white-space:pre-wrap;margin-top:4px}
.side{display:flex;flex-direction:column;gap:16px;width:360px}
#sms,#lint{width:360px}
ul.findings{list-style:none;margin:0;padding:0;font-size:13px}
ul.findings li{border-top:1px solid var(--line);padding:7px 0}
ul.findings li:first-child{border-top:0}
ul.findings .where{display:block;color:var(--muted);overflow-wrap:anywhere}
.sev{font-weight:700;font-size:11px;text-transform:uppercase}
.sev-error{color:var(--err)}.sev-warning{color:var(--warn)}.sev-info{color:var(--muted)}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.lock{font-size:12px;color:var(--muted)}
"""

_JS = """
(function(){
  var cur = JSON.parse(document.getElementById('ccm-state').textContent);
  function go(){
    var q = new URLSearchParams();
    document.querySelectorAll('header select').forEach(function(s){ q.set(s.name, s.value); });
    location.href = '/?' + q.toString();
  }
  document.querySelectorAll('header select').forEach(function(s){
    s.addEventListener('change', go);
  });
  document.querySelectorAll('iframe[data-autoheight]').forEach(function(f){
    function fit(){ try { var d = f.contentDocument; if (d && d.documentElement) {
      f.style.height = Math.max(200, d.documentElement.scrollHeight + 4) + 'px'; } } catch (e) {} }
    f.addEventListener('load', fit); fit();
  });
  var lint = document.getElementById('lint-body');
  if (lint) {
    fetch('/lint?' + cur.query).then(function(r){ return r.text(); })
      .then(function(t){ lint.innerHTML = t; })
      .catch(function(){ lint.textContent = 'lint findings unavailable'; });
  }
  var status = document.getElementById('status');
  if (window.EventSource) {
    var es = new EventSource('/events?' + cur.query);
    function check(e){ if (e.data !== cur.token) { location.reload(); } }
    es.addEventListener('hello', function(e){ status.classList.add('live'); check(e); });
    es.addEventListener('reload', check);
    es.onerror = function(){ status.classList.remove('live'); };
  }
})();
"""


def _opt(value: str, current: str, label: str | None = None) -> str:
    sel = " selected" if value == current else ""
    return f"<option value='{escape(value)}'{sel}>{escape(label or value)}</option>"


def error_html(info: ErrorInfo, *, title: str = "Error") -> str:
    """An error box: kind, file:line, message, and the source lines around it."""
    where = f"<div class=where>{escape(info.where)}</div>" if info.where else ""
    lines = ""
    if info.excerpt:
        rows = "".join(
            f"<span class='{'hit' if n == info.line else ''}'>{n:>4}  {escape(text)}</span>"
            for n, text in info.excerpt
        )
        lines = f"<pre>{rows}</pre>"
    return (f"<div class=error role=alert data-kind='{escape(info.kind)}'>"
            f"<b>{escape(title)}: {escape(info.kind)}</b>{where}"
            f"<div class=msg>{escape(info.message)}</div>{lines}</div>")


def findings_html(findings: tuple[FindingView, ...], *, enabled: bool = True) -> str:
    """The lint findings, most severe first (or a line saying there are none)."""
    if not enabled:
        return "<p class=meta>Lint is off.</p>"
    if not findings:
        return "<p class=meta id=lint-clean>No findings for what is shown.</p>"
    items = "".join(
        f"<li class='finding sev-{escape(f.severity)}'><span class='sev sev-{escape(f.severity)}'>"
        f"{escape(f.severity)}</span> <code>{escape(f.rule)}</code>"
        f"<code class=where>{escape(f.where)}</code><div>{escape(f.message)}</div></li>"
        for f in findings
    )
    return f"<ul class=findings>{items}</ul>"


def _pdf_panel(ch: ChannelView, key: ViewKey, gen: int) -> str:
    out = ch.output
    head = "<h2>PDF"
    if isinstance(out, PdfView):
        lock = (f" · <span class=lock>AES-256 encrypted; password hint: "
                f"{escape(out.password_hint or '')}</span>") if out.encrypted else ""
        head += (f" <span class=meta>{len(out.pages)} page(s), {out.size // 1024} KB{lock}"
                 "</span></h2>")
        q = key.query()
        imgs = "".join(
            f"<img alt='page {n}' width={w} height={h} loading=lazy "
            f"src='/pdf-page?{escape(urlencode({**q, 'n': n, 'g': gen}))}'>"
            for n, (w, h) in enumerate(out.sizes, 1)
        )
        return f"<section class=panel id=pdf>{head}{imgs}</section>"
    return f"<section class=panel id=pdf>{head}</h2>{_channel_error(ch)}</section>"


def _channel_error(ch: ChannelView) -> str:
    return error_html(ch.error, title=f"{ch.channel} did not render") if ch.error else ""


def _email_panel(ch: ChannelView, key: ViewKey, gen: int) -> str:
    out = ch.output
    if not isinstance(out, EmailView):
        return f"<section class=panel id=email><h2>Email</h2>{_channel_error(ch)}</section>"
    src = "/email-html?" + urlencode({**key.query(), "g": gen})
    headers = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in out.headers)
    for name, size in out.attachments:
        headers += f"<tr><th>Attachment</th><td>{escape(name)} ({size // 1024} KB)</td></tr>"
    frames = "".join(
        f"<figure class='frame {cls}' style='margin:0'><figcaption>{label}</figcaption>"
        f"<iframe title='email, {label}' sandbox='allow-same-origin' data-autoheight "
        f"src='{escape(src)}'></iframe></figure>"
        for cls, label in (("desktop", "desktop · 600 px"), ("mobile", "mobile · 375 px"))
    )
    return (f"<section class=panel id=email><h2>Email <span class=meta>HTML "
            f"{out.html_size / 1024:.1f} KB</span></h2>"
            f"<table class=headers>{headers}</table><div class=frames>{frames}</div>"
            f"<details open><summary class=meta>text version</summary>"
            f"<pre class=text id=email-text>{escape(out.text)}</pre></details></section>")


def _sms_panel(ch: ChannelView) -> str:
    out = ch.output
    if not isinstance(out, SmsView):
        return f"<section class=panel id=sms><h2>SMS</h2>{_channel_error(ch)}</section>"
    warn = ""
    if out.non_gsm:
        chars = " ".join(f"<code>{escape(c)}</code> (U+{ord(c):04X})" for c in out.non_gsm)
        warn = f"<div class=warnchars>forced into UCS-2 by: {chars}</div>"
    unit = "septets" if out.encoding.upper().startswith("GSM") else "UTF-16 units"
    return (f"<section class=panel id=sms><h2>SMS</h2><div class=phone>"
            f"<div class=sender>{escape(out.sender or '')}</div>"
            f"<div class=bubble id=sms-text>{escape(out.text)}</div></div>"
            f"<div class=smsinfo><b id=sms-encoding>{escape(out.encoding)}</b> · "
            f"<b id=sms-segments>{out.segments}</b> segment(s) · {out.units} {unit} · "
            f"{len(out.text)} characters{warn}</div></section>")


def page_html(listing: Listing, view: View, *, token: str, lint: bool = True) -> str:
    """The whole preview page for ``view``; ``token`` names the generation it shows."""
    key = view.key
    q = key.query()
    entry = next((t for t in listing.templates if t.id == key.template), None)
    selects = [
        ("pack", "pack", [_opt(p, key.pack) for p in listing.packs]),
        ("template", "template", [_opt(t.id, key.template, t.name) for t in listing.templates]),
        ("locale", "locale", [_opt(loc, key.locale) for loc in listing.locales]),
        ("sample", "sample", [_opt(s, key.sample) for s in (entry.samples if entry else ())]),
    ]
    controls = "".join(
        f"<label>{label}<select name={name} id=select-{name}>{''.join(opts)}</select></label>"
        for label, name, opts in selects
    )
    nav = "".join(
        f"<a href='/?{escape(urlencode({**q, 'template': t.id, 'sample': ''}))}'"
        f"{' class=current' if t.id == key.template else ''}>{escape(t.name)}"
        f"<span class=id>{escape(t.message_type)} · "
        f"<span class=ch>{escape(' · '.join(t.channels))}</span></span></a>"
        for t in listing.templates
    )
    body: list[str] = []
    if listing.error is not None:
        body.append(error_html(listing.error, title="The pack or templates do not load"))
    elif view.error is not None:
        body.append(error_html(view.error, title="Cannot render"))
    panels, side = [], []
    for ch in view.channels:
        if ch.channel == "pdf":
            panels.append(_pdf_panel(ch, key, view.generation))
        elif ch.channel == "email":
            panels.append(_email_panel(ch, key, view.generation))
        else:
            side.append(_sms_panel(ch))
    side.append("<section class=panel id=lint><h2>Lint <span class=meta>this template, "
                "locale and sample</span></h2><div id=lint-body><p class=meta>"
                "checking…</p></div><noscript><a href='/lint?"
                f"{escape(urlencode(q))}'>findings</a></noscript></section>")
    panels.append(f"<div class=side>{''.join(side)}</div>")
    body.append(f"<div class=channels>{''.join(panels)}</div>")
    state = {"query": urlencode(q), "token": token}
    state_json = json.dumps(state).replace("<", "\\u003c")
    title = f"{view.template_name or key.template} · {view.pack_name or key.pack} · {key.locale}"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)} — ccm preview</title><style>{_CSS}</style></head><body>"
        f"<header><span class=brand>ccm preview</span>"
        f"<form method=get action='/' style='display:contents'>{controls}"
        "<noscript><button>show</button></noscript></form>"
        f"<span id=status title='live reload'><span class=dot></span>"
        f"rendered in {view.seconds:.2f} s · generation {view.generation}</span></header>"
        f"<nav aria-label=templates>{nav}</nav><main>{''.join(body)}</main>"
        f"<script type='application/json' id=ccm-state>{state_json}</script>"
        f"<script>{_JS}</script></body></html>"
    )
