"""The channels' part of a render: rendered markup in, a message's content out.

Each ``finish_*`` function fills one :class:`~ccm.message.Message` for an
:class:`~ccm.render.engine.Engine`; the engine decides which runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ccm.channels import email as email_channel
from ccm.channels import sms as sms_channel
from ccm.errors import BudgetError, ConfigError, DataError, PackError, RenderError
from ccm.message import PARSE_CONTENT, Message, Request
from ccm.render.budget import Meter
from ccm.render.security import encrypt_pdf, password_for

if TYPE_CHECKING:
    from ccm.render.engine import Engine
    from ccm.render.template import Template

__all__ = ["finish_email", "finish_pdf", "finish_sms", "pdf_channel"]


def pdf_channel() -> ModuleType:
    """:mod:`ccm.channels.pdf`, loaded with the first PDF (WeasyPrint and Pango take about
    half a second to load: a process making no PDF never loads them).

    Where they cannot load (Pango's libraries missing), a :class:`~ccm.errors.ConfigError`
    that says so: no PDF can be made until the machine is fixed, so a batch stops.
    """
    try:
        from ccm.channels import pdf
    except (ImportError, OSError) as exc:
        raise ConfigError(
            f"PDFs need WeasyPrint and Pango, which cannot load on this machine "
            f"({type(exc).__name__}: {exc}); `ccm doctor` says what to install") from None
    return pdf


def finish_pdf(engine: Engine, tpl: Template, req: Request, message: Message,
               meter: Meter) -> None:
    """Lay out the PDF, encrypt it when confidential, and keep the archival copy."""
    pdf = pdf_channel()
    rendered = engine._render(tpl, req, "pdf", message, meter, blocks=("title",))
    document = pdf.render_document(
        rendered.text,
        base_url=engine.pack.root.as_uri() + "/",
        fetcher=engine._fetcher(tpl),
        deadline=meter.deadline,
    )
    # An address line too long for the window is the customer's data, not ours to cut.
    # (Only layouts that mark such text need the walk over every box.)
    if pdf.FIT_ATTRIBUTE in rendered.text:
        pdf.check_fit(document, template=tpl.id, customer_id=req.customer_id)
    title = rendered.blocks.get("title") or tpl.name
    meta: dict[str, Any] = {
        "title": title,
        "author": engine.pack.name,
        "lang": message.locale.replace("_", "-"),
        "subject": tpl.name,
    }
    message.subject = title
    if tpl.confidential:
        if engine.password_rule is None:
            raise RenderError(
                f"template {tpl.id!r} is confidential but pack {engine.pack.id!r} has no "
                "security.pdf_password rule",
                template=tpl.id,
            )
        password = password_for(engine.password_rule, req.customer)
        metadata: dict[str, str] = {}
        if engine.pack.security.get("archive_pdfa", True) and engine.options.archival:
            request_json = json.dumps(req.to_dict(), sort_keys=True, indent=2,
                                      ensure_ascii=False).encode()
            message.archival = pdf.write_pdf(
                document, **meta, variant="pdf/a-3b",
                attachments=[("request.json", request_json, "application/json")],
            )
            metadata["ccm:archival-sha256"] = hashlib.sha256(message.archival).hexdigest()
        if message.archival is not None:
            # One WeasyPrint write: qpdf strips what PDF/A added while it encrypts.
            message.content = encrypt_pdf(
                message.archival, password,
                edit=pdf.delivery_from_archival(metadata),
            )
        else:
            delivery = pdf.write_pdf(document, **meta, metadata=metadata)
            message.content = encrypt_pdf(delivery, password)
        message.encrypted = True
        message.password_hint = engine.password_hint(message.locale)
    else:
        variant = "pdf/a-3b" if engine.options.pdfa else None
        message.content = pdf.write_pdf(document, **meta, variant=variant)

def finish_email(
    engine: Engine,
    tpl: Template,
    req: Request,
    message: Message,
    meter: Meter,
    attachment: Message | None,
) -> None:
    """Compile the MJML, instrument links and build the MIME message."""
    to_addr = req.customer.get("email")
    if not to_addr:
        raise DataError(
            f"customer {req.customer_id}: email channel needs customer.email",
            path="$.customer.email", rule="required", customer_id=req.customer_id,
        )
    if attachment is not None and attachment.encrypted:
        message.password_hint = attachment.password_hint
    sender = engine.pack.senders.get("email", {})
    if not sender.get("from"):
        raise PackError(
            f"{engine.pack.root / 'pack.yaml'}: senders.email.from: needed for the email channel",
            path=str(engine.pack.root / "pack.yaml"),
            key="senders.email.from",
        )
    headers: dict[str, str] = {}
    if tpl.message_type == "marketing":
        unsubscribe = _unsubscribe_url(engine, message)
        message.meta["unsubscribe_url"] = unsubscribe
        targets = [f"<{unsubscribe}>"]
        if sender.get("unsubscribe_mailto"):
            targets.append(f"<mailto:{sender['unsubscribe_mailto']}?subject=unsubscribe>")
        headers["List-Unsubscribe"] = ", ".join(targets)
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    headers["X-CCM-Message-ID"] = message.message_id
    _web_version(engine, message)
    rendered = engine._render(tpl, req, "email", message, meter,
                            blocks=("subject", "preheader"))
    # MJML compiled once per shape of the rendered source, the text alternative replayed
    # from it (ccm/channels/email/_skeleton.py); tracked links change the HTML, so then
    # the text is converted from the instrumented HTML.
    # The MJML compile and the text part run outside Jinja, where the clock is not read
    # and a compile cannot be interrupted: the deadline is checked between the steps, so
    # a document over its time budget stops at the next one (its source is already within
    # the output budget, max_output_bytes, as Jinja wrote it).
    source = tpl.source_name("email")
    _check_deadline(meter, source, "before its MJML compile")
    tracked = bool(engine.pack.tracking.get("base_url"))
    try:
        html, text = email_channel.compile_mjml_and_text(
            rendered.text, include_roots=(engine.pack.root, tpl.root), text=not tracked
        )
    except RenderError as exc:
        if exc.context.get("template") is not None:
            raise
        # The channel sees only MJML; say which template it came from.
        raise type(exc)(f"template {tpl.id!r}: {exc.message}",
                        **{**exc.context, "template": tpl.id}) from exc
    _check_deadline(meter, source, "in its MJML compile")
    html = _instrument(engine, html, message)
    if text is None:
        text = email_channel.html_to_text(html)
        _check_deadline(meter, source, "in making its text part")
    subject = rendered.blocks.get("subject") or tpl.name
    attachments = []
    if attachment is not None:
        attachments.append(
            email_channel.Attachment(tpl.attachment_name, attachment.content, "application/pdf")
        )
        message.meta["attachment_sha256"] = attachment.sha256
    message.content = email_channel.build_email_bytes(
        subject=subject,
        html=html,
        text=text,
        from_=(sender.get("from_by_type") or {}).get(tpl.message_type) or sender["from"],
        to=(str(req.customer.get("name") or ""), str(to_addr)),
        reply_to=sender.get("reply_to"),
        headers=headers,
        attachments=attachments,
        # The message's own time (the engine's clock), not the machine's: an email made
        # "as of" a moment says so, and the same input makes the same headers at any hour.
        date=datetime.fromisoformat(message.created_at) if message.created_at else None,
    )
    message.email = PARSE_CONTENT  # parsed from content when someone reads it
    message.subject = subject

def _check_deadline(meter: Meter, source: str, step: str) -> None:
    """:class:`~ccm.errors.BudgetError` naming ``source`` when its document is past its
    time budget after (or before) ``step`` of the channel's work."""
    if time.monotonic() > meter.deadline:
        raise BudgetError(f"{source}: the document exceeded its {meter.seconds:g} s time "
                          f"budget ({step}); raise RenderOptions(time_budget=...) or make "
                          "the email smaller", path=source, budget="time")


def no_tracking_base(engine: Engine, what: str, template: str) -> PackError:
    """The error for links the pack has no ``tracking.base_url`` for.

    A :class:`PackError` (configuration), not a message's error: every
    request would fail alike, so a run stops at the first instead of
    reporting each row.
    """
    manifest = engine.pack.root / "pack.yaml"
    return PackError(
        f"{what} needs tracking.base_url in pack {engine.pack.id!r} (the web app's address): "
        f"add `tracking: {{base_url: https://...}}` to {manifest} (see docs/retrieval.md)",
        path=str(manifest), key="tracking.base_url", template=template,
    )


def _tracking_base(engine: Engine, what: str, template: str) -> str:
    base = engine.pack.tracking.get("base_url")
    if not base:
        raise no_tracking_base(engine, what, template)
    return str(base)


def link_document(engine: Engine, message: Message, document: Message) -> None:
    """Carry ``document`` (a recorded, encrypted PDF) as a signed retrieval link, not a file.

    Sets ``message.meta["document_url"]`` (``message.document_url`` in the
    template) and the password hint; a document that was not made
    (suppressed) gives no link.
    """
    if not document.content or document.status == "suppressed":
        return
    from ccm.render.links import TrackingKey, document_url

    base = _tracking_base(engine, "document_delivery='link'", message.template)
    message.meta["document_url"] = document_url(base, document.message_id, TrackingKey.from_env(),
                                                now=engine._clock())
    message.meta["document_id"] = document.message_id
    if document.encrypted:
        message.password_hint = document.password_hint


def _web_version(engine: Engine, message: Message) -> None:
    if not engine.options.web_version:
        return
    from ccm.render.links import TrackingKey, web_version_url

    base = _tracking_base(engine, "web_version", message.template)
    ttl = float(engine.pack.tracking.get("token_ttl_days", 90))
    message.meta["web_version_url"] = web_version_url(
        base, message.message_id, TrackingKey.from_env(), ttl_days=ttl, now=engine._clock())


def _unsubscribe_url(engine: Engine, message: Message) -> str:
    tracking = engine.pack.tracking
    if tracking.get("base_url"):
        from ccm.render.links import TrackingKey, unsubscribe_url

        return unsubscribe_url(tracking["base_url"], message.message_id, TrackingKey.from_env())
    pattern = engine.pack.senders.get("email", {}).get("unsubscribe_url")
    if not pattern:
        raise RenderError(
            f"marketing email needs senders.email.unsubscribe_url or tracking.base_url in "
            f"pack {engine.pack.id!r}",
            template=message.template,
        )
    return str(pattern).replace("{token}", message.message_id)

def _instrument(engine: Engine, html: str, message: Message) -> str:
    tracking = engine.pack.tracking
    if not tracking.get("base_url"):
        return html
    from ccm.render.links import TrackingKey, instrument_html

    return instrument_html(
        html,
        message_id=message.message_id,
        base_url=tracking["base_url"],
        key=TrackingKey.from_env(),
        pixel=bool(tracking.get("pixel", True)),
        ttl_days=int(tracking.get("token_ttl_days", 90)),
        unsubscribe_url=message.meta.get("unsubscribe_url"),
    )

def finish_sms(engine: Engine, tpl: Template, req: Request, message: Message,
               meter: Meter) -> None:
    """Normalise the SMS text and measure its encoding and segments."""
    if not req.customer.get("phone"):
        raise DataError(
            f"customer {req.customer_id}: sms channel needs customer.phone",
            path="$.customer.phone", rule="required", customer_id=req.customer_id,
        )
    if tpl.confidential and "pdf" in tpl.channels:
        message.password_hint = engine.password_hint(message.locale)
    rendered = engine._render(tpl, req, "sms", message, meter)
    limit = engine.pack.senders.get("sms", {}).get("max_segments")
    result = sms_channel.finish_sms(rendered.text, max_segments=limit)
    message.text = result.text
    message.encoding = result.encoding
    message.segments = result.segments
    message.content = result.text.encode("utf-8")

# -- approval ------------------------------------------------------------------
