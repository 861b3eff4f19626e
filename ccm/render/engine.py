"""The engine: the one place that composes the stages.

::

    request -> validate (shape, contract) -> idempotency + contact policy (record)
            -> context -> sandboxed Jinja inside the pack layout
            -> channel finish (pdf: WeasyPrint + AES-256, email: MJML + MIME, sms: GSM-7/UCS-2)
            -> record entry + encrypted archive copy -> Message

Load an :class:`Engine` once per pack and templates folder and call
:meth:`Engine.render` per request; it is safe to keep for the life of a
process (batch workers do exactly that).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ccm.channels import email as email_channel
from ccm.channels import pdf as pdf_channel
from ccm.channels import sms as sms_channel
from ccm.errors import (
    ApprovalError,
    DataError,
    PackError,
    RenderError,
    UnknownChannel,
    UnknownLocale,
    UnknownTemplate,
)
from ccm.message import CHANNELS, PARSE_CONTENT, Message, Request
from ccm.pack import BrandPack, load_pack
from ccm.pack.model import localised
from ccm.render.environment import create_environment, gettext_functions, render_source
from ccm.render.i18n import catalog_for
from ccm.render.security import PasswordRule, encrypt_pdf, password_for
from ccm.render.template import Template, load_templates, validate_request

if TYPE_CHECKING:
    from ccm.record import Record
    from ccm.record.policy import Decision, Policy

__all__ = ["DEFAULT", "Engine", "RenderOptions"]

logger = logging.getLogger("ccm.render.engine")
logger.addHandler(logging.NullHandler())


class _Default:
    """Sentinel: "use the default" (distinct from ``None``, which means "none")."""

    _instance: _Default | None = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


@dataclass(frozen=True)
class RenderOptions:
    """Per-engine rendering options; validated at construction."""

    #: Seconds one document may take (Jinja + layout); a template's ``budget.seconds`` wins.
    time_budget: float = 30.0
    #: Characters a rendered source may produce before it is refused.
    max_output_chars: int = 5_000_000
    #: Write every PDF as PDF/A-3b (only possible for unencrypted PDFs).
    pdfa: bool = False
    #: Also write the PDF/A-3b archival copy of confidential PDFs when the pack
    #: archives them (previews, which never show it, turn this off).
    archival: bool = True
    #: Refuse to render sources whose digests differ from their approval.
    require_approval: bool = False
    #: Where approvals are kept (``ccm approve`` writes here).
    approvals_file: Path | None = None

    def __post_init__(self) -> None:
        if self.time_budget <= 0:
            raise ValueError("time_budget must be positive")
        if self.max_output_chars < 1024:
            raise ValueError("max_output_chars must be at least 1024")


@dataclass
class _PackRuntime:
    """Things built once per engine: environment, catalogs, fetcher, stylesheet caches."""

    env: Any
    catalogs: dict[tuple[str, str], Any] = field(default_factory=dict)


class Engine:
    """Render messages for one brand pack from a folder of templates.

    Every message is recorded unless the caller opts out: ``record`` is a
    :class:`ccm.record.Record`, a record URL, ``None`` to keep no record, or
    :data:`DEFAULT` (the default: ``CCM_RECORD_URL``, else
    ``sqlite:///ccm-record.db`` in the current folder). ``master_key`` encrypts archived content; by
    default it comes from ``CCM_MASTER_KEY`` / ``CCM_MASTER_KEY_FILE`` when set.
    """

    def __init__(
        self,
        pack: str | os.PathLike[str] | BrandPack,
        templates: str | os.PathLike[str] = "templates",
        *,
        record: Record | str | os.PathLike[str] | None = DEFAULT,
        master_key: Any = DEFAULT,
        options: RenderOptions | None = None,
        run_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.pack = pack if isinstance(pack, BrandPack) else load_pack(pack)
        self.templates_dir = Path(templates).resolve()
        self.templates: dict[str, Template] = load_templates(self.templates_dir)
        self.options = options or RenderOptions()
        self.run_id = run_id
        self._clock = clock or (lambda: datetime.now(UTC))
        self._env = create_environment(self.pack.layouts_dir, self.templates_dir)
        self._catalogs: dict[tuple[str, str], Any] = {}
        self._gettext_cache: dict[tuple[str, str], dict[str, Callable[..., Any]]] = {}
        self._brand_cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._sources_cache: dict[tuple[str, str], str] = {}
        self._fetcher = pdf_channel.PackFetcher(
            roots=[self.pack.root, self.templates_dir],
            allowed_hosts=tuple(self.pack.security.get("allowed_hosts", ())),
        )
        rule = self.pack.security.get("pdf_password")
        self.password_rule: PasswordRule | None = PasswordRule.from_mapping(rule) if rule else None
        self.record: Record | None = self._open_record(record, master_key)
        self._policy: Policy | None = None
        self._listeners: list[Callable[[Message], None]] = []

    def add_listener(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        """Call ``callback`` with every finished message; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    # -- setup ---------------------------------------------------------------

    @staticmethod
    def _open_record(record: Record | str | os.PathLike[str] | None,
                     master_key: Any) -> Record | None:
        if record is None:
            return None
        from ccm.record import MasterKey, Record

        if isinstance(record, Record):
            return record
        key = master_key
        if key is DEFAULT:
            key = MasterKey.from_env() if _env_has_master_key() else None
        url = record if record is not DEFAULT else default_record_url()
        opened = Record(url, master_key=key)
        if key is None:
            logger.warning(
                "record at %s keeps entries but no content: no master key "
                "(set CCM_MASTER_KEY or CCM_MASTER_KEY_FILE, see docs/privacy.md)", opened.where)
        return opened

    @property
    def policy(self) -> Policy:
        """The pack's contact policy (consent, caps, quiet hours)."""
        if self._policy is None:
            from ccm.record.policy import Policy

            self._policy = Policy.from_mapping(self.pack.policy)
        return self._policy

    def template(self, template_id: str) -> Template:
        """The loaded template, or :class:`UnknownTemplate` listing the ones there are."""
        try:
            return self.templates[template_id]
        except KeyError:
            raise UnknownTemplate(
                f"unknown template {template_id!r}; available: "
                f"{', '.join(sorted(self.templates)) or '(none)'}",
                template=template_id,
                available=sorted(self.templates),
            ) from None

    def sources_sha256(self, template: Template) -> str:
        """One SHA-256 over the pack's and the template's files: proves the exact sources."""
        key = (self.pack.sources_sha256, template.sources_sha256)
        digest = self._sources_cache.get(key)
        if digest is None:
            digest = self._sources_cache[key] = hashlib.sha256(
                f"{key[0]}:{key[1]}".encode()).hexdigest()
        return digest

    def _catalog(self, template: Template, locale: str) -> Any:
        key = (template.id, locale)
        if key not in self._catalogs:
            self._catalogs[key] = catalog_for([template.root, self.pack.root], locale)
        return self._catalogs[key]

    # -- the public call -----------------------------------------------------

    @overload
    def render(
        self,
        template: str,
        request: Request | Mapping[str, Any],
        channel: str,
        locale: str | None = ...,
        *,
        idempotency_key: str | None = ...,
        record: bool = ...,
    ) -> Message: ...

    @overload
    def render(
        self,
        template: str,
        request: Request | Mapping[str, Any],
        channel: None = ...,
        locale: str | None = ...,
        *,
        idempotency_key: str | None = ...,
        record: bool = ...,
    ) -> list[Message]: ...

    def render(
        self,
        template: str,
        request: Request | Mapping[str, Any],
        channel: str | None = None,
        locale: str | None = None,
        *,
        idempotency_key: str | None = None,
        record: bool = True,
    ) -> Message | list[Message]:
        """Render ``template`` for ``request`` on one channel, or on all when ``channel`` is None.

        A caller's ``idempotency_key`` on a multi-channel call is combined with
        each channel, so each channel's message is kept once. Without a key,
        and with a ``run_id`` on the engine, the key is derived from run,
        template, customer and channel. Suppression by contact policy is a
        returned message with ``status="suppressed"`` and the rule in ``reason``.
        """
        tpl = self.template(template)
        self._check_call(tpl, channel, locale)
        req = request if isinstance(request, Request) else validate_request(_plain(request))
        tpl.validate_data(req.data, customer_id=req.customer_id)
        loc = locale or self.pack.resolve_locale(req.customer.get("locale"))
        channels = [channel] if channel else [c for c in CHANNELS if c in tpl.channels]

        results: dict[str, Message] = {}
        # The PDF first: an email may attach it.
        order = sorted(channels, key=lambda c: 0 if c == "pdf" else 1)
        if tpl.attach_pdf and "email" in order and "pdf" not in order and "pdf" in tpl.channels:
            order.insert(0, "pdf")
        for ch in order:
            key = self._key(tpl, req, ch, idempotency_key)
            attach = results.get("pdf") if ch == "email" and tpl.attach_pdf else None
            if ch == "email" and tpl.attach_pdf and attach is None:
                attach = self._render_channel(tpl, req, "pdf", loc, key=None, use_record=False)
            results[ch] = self._render_channel(
                tpl, req, ch, loc, key=key, use_record=record, attachment=attach
            )
        if channel is not None:
            return results[channel]
        return [results[c] for c in channels]

    def _check_call(self, tpl: Template, channel: str | None, locale: str | None) -> None:
        """Channel and locale exist; the template is approved when approval is required."""
        if channel is not None and channel not in tpl.channels:
            raise UnknownChannel(
                f"template {tpl.id!r} has no {channel!r} channel; "
                f"it has: {', '.join(tpl.channels)}",
                template=tpl.id,
                channel=channel,
                available=list(tpl.channels),
            )
        if locale is not None and locale not in self.pack.locales:
            raise UnknownLocale(
                f"pack {self.pack.id!r} has no locale {locale!r}; "
                f"it has: {', '.join(self.pack.locales)}",
                locale=locale,
                available=list(self.pack.locales),
            )
        self._check_approval(tpl)

    def render_many(
        self,
        template: str,
        requests: Iterable[Request | Mapping[str, Any]],
        channel: str,
        locale: str | None = None,
        *,
        chunk_size: int = 256,
    ) -> list[Message]:
        """Render ``template`` on ``channel`` for many requests; record them in few transactions.

        The messages come back in request order, as :meth:`render` would give
        them one by one, but the record is written with
        :meth:`~ccm.record.Record.append_many`: one transaction per
        ``chunk_size`` messages, and every message is committed before this
        returns (so before anything can be sent). The record is read in bulk
        too: idempotency keys and withdrawn consents once per chunk. Frequency
        caps are counted when the chunk is written, inside its transaction and
        including the chunk's earlier messages; a message over a cap comes back
        ``suppressed`` with ``reason="cap:<name>"`` and no content. An
        exception (a bad request, a render error) stops the call: chunks
        already written stay written, the failing chunk is not written. Needs
        a record; without one this is :meth:`render` in a loop.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        out: list[Message] = []
        pending: list[Request | Mapping[str, Any]] = []
        for request in requests:
            pending.append(request)
            if len(pending) >= chunk_size:
                out.extend(self._render_chunk(template, pending, channel, locale))
                pending = []
        if pending:
            out.extend(self._render_chunk(template, pending, channel, locale))
        return out

    def _render_chunk(self, template: str, requests: Sequence[Request | Mapping[str, Any]],
                      channel: str, locale: str | None) -> list[Message]:
        record = self.record
        if record is None:
            return [self.render(template, r, channel, locale) for r in requests]
        tpl = self.template(template)
        self._check_call(tpl, channel, locale)
        reqs = [r if isinstance(r, Request) else validate_request(_plain(r)) for r in requests]
        for req in reqs:
            tpl.validate_data(req.data, customer_id=req.customer_id)
        keys = [self._key(tpl, req, channel, None) for req in reqs]
        known = record.find_keys([k for k in keys if k is not None])
        consents = record.consent_overrides_many({req.customer_id for req in reqs})
        caps = self.policy.caps_for(tpl.message_type, channel)
        messages: list[Message] = []
        rendered: list[Message] = []
        items: list[tuple[Message, dict[str, Any]]] = []
        for req, key in zip(reqs, keys, strict=True):
            loc = locale or self.pack.resolve_locale(req.customer.get("locale"))
            params = self._params_sha256(tpl, req, channel, loc)
            if key is not None and (earlier := known.get(key)) is not None:
                messages.append(_duplicate(earlier, key, params, req))
                continue
            now = self._clock()
            message = self._new_message(tpl, req, channel, loc, key, now)
            # Caps are left to the write (counted there, atomically): 0 here.
            decision = self.policy.evaluate(
                customer=req.customer, message_type=tpl.message_type, channel=channel,
                now=now, counter=lambda cap: 0,
                consent_overrides=consents.get(req.customer_id, {}),
            )
            item_caps: Sequence[Any] = caps
            if not decision.allowed:
                _suppress(message, decision)
                item_caps = ()
            else:
                attachment = None
                if channel == "email" and tpl.attach_pdf and "pdf" in tpl.channels:
                    attachment = self._render_channel(tpl, req, "pdf", loc, key=None,
                                                      use_record=False)
                self._finish(tpl, req, message, attachment)
                rendered.append(message)
            messages.append(message)
            items.append((message, {
                "entry": self._entry(message, params, req.customer.get("segment")),
                "content": message.content or None, "archival": message.archival,
                "caps": item_caps,
            }))
        results = record.append_many([item for _, item in items])
        for (message, _), result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                raise result  # another writer recorded the key for other parameters
            _apply(result, message)
        for message in rendered:  # as render() does, once the chunk is committed
            for listener in list(self._listeners):
                listener(message)
        return messages

    # -- composition ---------------------------------------------------------

    def _key(self, tpl: Template, req: Request, channel: str, given: str | None) -> str | None:
        if given:
            return f"{given}:{channel}"
        if self.run_id:
            return f"{self.run_id}:{tpl.id}:{req.customer_id}:{channel}"
        return None

    def _params_sha256(self, tpl: Template, req: Request, channel: str, locale: str) -> str:
        """What an idempotency key commits to: template version, pack version, locale, data."""
        blob = json.dumps(
            {
                "template": tpl.id,
                "template_version": tpl.version,
                "pack": self.pack.id,
                "pack_version": self.pack.version,
                "channel": channel,
                "locale": locale,
                "request": req.to_dict(),
            },
            sort_keys=True,
            default=str,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _render_channel(
        self,
        tpl: Template,
        req: Request,
        channel: str,
        locale: str,
        *,
        key: str | None,
        use_record: bool,
        attachment: Message | None = None,
    ) -> Message:
        now = self._clock()
        message = self._new_message(tpl, req, channel, locale, key, now)
        record = self.record if use_record else None
        params = ""  # only the record needs it: a SHA-256 over the whole request
        if record is not None:
            params = self._params_sha256(tpl, req, channel, locale)
            if key is not None:
                earlier = record.find_key(key)
                if earlier is not None:
                    duplicate = _duplicate(earlier, key, params, req)
                    _restore_content(record, duplicate, earlier, tpl)
                    return duplicate
            decision = self._decide(tpl, req, channel, now, record)
            if not decision.allowed:
                _suppress(message, decision)
                self._append(record, message, params, caps=(),
                             segment=req.customer.get("segment"))
                return message

        self._finish(tpl, req, message, attachment)

        if record is not None:
            caps = self.policy.caps_for(tpl.message_type, channel)
            self._append(record, message, params, caps=caps,
                         segment=req.customer.get("segment"))
        for listener in list(self._listeners):
            listener(message)
        logger.debug(
            "rendered %s %s for customer %s (%s)",
            tpl.id, channel, req.customer_id, message.message_id,
        )
        return message

    def _new_message(self, tpl: Template, req: Request, channel: str, locale: str,
                     key: str | None, now: datetime) -> Message:
        return Message(
            message_id=uuid.uuid4().hex,
            customer_id=req.customer_id,
            template=tpl.id,
            template_version=tpl.version,
            pack=self.pack.id,
            pack_version=self.pack.version,
            channel=channel,  # type: ignore[arg-type]
            locale=locale,
            message_type=tpl.message_type,
            journey=tpl.journey,
            content=b"",
            idempotency_key=key,
            sources_sha256=self.sources_sha256(tpl),
            created_at=now.isoformat(),
        )

    def _finish(self, tpl: Template, req: Request, message: Message,
                attachment: Message | None) -> None:
        """The channel's part: fill ``message`` with its content."""
        deadline = time.monotonic() + float(tpl.budget.get("seconds", self.options.time_budget))
        if message.channel == "pdf":
            self._finish_pdf(tpl, req, message, deadline)
        elif message.channel == "email":
            self._finish_email(tpl, req, message, deadline, attachment)
        else:
            self._finish_sms(tpl, req, message, deadline)

    def _decide(
        self, tpl: Template, req: Request, channel: str, now: datetime, record: Record
    ) -> Decision:
        since_cache: dict[Any, int] = {}

        def counter(cap: Any) -> int:
            if cap not in since_cache:
                from datetime import timedelta

                since_cache[cap] = record.count(
                    req.customer_id,
                    since=now - timedelta(days=cap.window_days),
                    message_type=cap.message_type,
                    channel=cap.channel,
                )
            return since_cache[cap]

        return self.policy.evaluate(
            customer=req.customer,
            message_type=tpl.message_type,
            channel=channel,
            now=now,
            counter=counter,
            consent_overrides=record.consent_overrides(req.customer_id),
        )

    def _append(self, record: Record, message: Message, params: str, caps: Sequence[Any],
                segment: str | None = None) -> None:
        result = record.append(
            self._entry(message, params, segment),
            content=message.content or None,
            archival=message.archival,
            caps=caps,
        )
        _apply(result, message)

    def _entry(self, message: Message, params: str, segment: str | None) -> Any:
        """The record entry of ``message``."""
        from ccm.record import Entry

        return Entry(
            message_id=message.message_id,
            idempotency_key=message.idempotency_key or f"msg:{message.message_id}",
            params_sha256=params,
            customer_id=message.customer_id,
            channel=message.channel,
            template=message.template,
            template_version=message.template_version,
            pack=message.pack,
            pack_version=message.pack_version,
            message_type=message.message_type,
            journey=message.journey,
            locale=message.locale,
            created_at=datetime.fromisoformat(message.created_at or self._clock().isoformat()),
            status=message.status,
            reason=message.reason,
            content_sha256=message.sha256 if message.content else None,
            archival_sha256=message.archival_sha256,
            sources_sha256=message.sources_sha256,
            archive_ref=None,
            segment=segment,
        )

    # -- context ---------------------------------------------------------------

    def context(
        self, tpl: Template, req: Request, channel: str, locale: str, message: Message
    ) -> dict[str, Any]:
        """The variables a template sees (documented in docs/templates.md)."""
        pack = self.pack
        brand = dict(self._brand(channel, locale))
        fallback = brand.pop("_greeting_fallback")
        brand["greeting"] = _greeting(brand["greeting"], fallback, req.customer)
        msg = {
            "id": message.message_id,
            "channel": channel,
            "template": tpl.id,
            "template_version": tpl.version,
            "message_type": tpl.message_type,
            "journey": tpl.journey,
            "confidential": tpl.confidential,
            "letter": tpl.letter,
            "password_hint": message.password_hint,
            "unsubscribe_url": message.meta.get("unsubscribe_url"),
            "created_at": message.created_at,
        }
        lang = locale.split("_")[0]
        ctx: dict[str, Any] = {
            "customer": req.customer,
            "data": req.data,
            "brand": brand,
            "message": msg,
            "locale": locale,
            "lang": lang,
            "dir": "rtl" if pack.is_rtl(locale) else "ltr",
            "timezone": req.customer.get("timezone") or "UTC",
        }
        ctx.update(self._gettext(tpl, locale))
        return ctx

    def _gettext(self, tpl: Template, locale: str) -> dict[str, Callable[..., Any]]:
        key = (tpl.id, locale)
        functions = self._gettext_cache.get(key)
        if functions is None:
            functions = self._gettext_cache[key] = gettext_functions(self._catalog(tpl, locale))
        return functions

    def _brand(self, channel: str, locale: str) -> dict[str, Any]:
        """The ``brand`` variables of ``channel`` and ``locale`` (built once; copied per render).

        ``greeting`` still holds its ``{field}`` placeholders; ``_greeting_fallback`` is the
        text for customers without one of those fields. :meth:`context` resolves both.
        """
        key = (channel, locale)
        cached = self._brand_cache.get(key)
        if cached is not None:
            return cached
        pack = self.pack
        tone = pack.tone
        greeting = localised(tone.get("greeting"), locale, pack.default_locale) or "{name}"
        fallback = localised(tone.get("greeting_fallback"), locale, pack.default_locale) or ""
        logo = pack.raw.get("logo")
        if channel == "email" and logo:
            base = pack.raw.get("assets_url")
            logo = f"{base.rstrip('/')}/{logo}" if base else None
        senders = pack.senders
        sms = dict(senders.get("sms", {}))
        sms["opt_out"] = localised(sms.get("opt_out"), locale, pack.default_locale) or ""
        brand = {
            "id": pack.id,
            "name": pack.name,
            "version": pack.version,
            "palette": pack.palette,
            "fonts": pack.raw.get("fonts", {}),
            "logo": logo,
            "logo_alt": pack.text("logo_alt", locale) or pack.name,
            "legal": pack.text("legal", locale) or "",
            "greeting": greeting,
            "_greeting_fallback": fallback,
            "sign_off": localised(tone.get("sign_off"), locale, pack.default_locale) or "",
            "sender": senders,
            "website": pack.raw.get("website", ""),
            "sms": sms,
            "return_address": senders.get("pdf", {}).get("return_address", ""),
            "letter_standard": senders.get("pdf", {}).get("letter_standard", ""),
        }
        self._brand_cache[key] = brand
        return brand

    def _render(
        self, tpl: Template, req: Request, channel: str, message: Message, deadline: float,
        blocks: tuple[str, ...] = (),
    ) -> Any:
        ctx = self.context(tpl, req, channel, message.locale, message)
        return render_source(
            self._env,
            tpl.source_name(channel),
            ctx,
            blocks=blocks,
            deadline=deadline,
            max_chars=int(tpl.budget.get("max_output_bytes", self.options.max_output_chars)),
        )

    # -- channels ----------------------------------------------------------------

    def password_hint(self, locale: str) -> str | None:
        """The pack's hint for the PDF password in ``locale`` (never the password)."""
        if self.password_rule is None:
            return None
        return self.password_rule.hint_for(locale, self.pack.default_locale)

    def _finish_pdf(self, tpl: Template, req: Request, message: Message, deadline: float) -> None:
        rendered = self._render(tpl, req, "pdf", message, deadline, blocks=("title",))
        document = pdf_channel.render_document(
            rendered.text,
            base_url=self.pack.root.as_uri() + "/",
            fetcher=self._fetcher,
            deadline=deadline,
        )
        title = rendered.blocks.get("title") or tpl.name
        meta: dict[str, Any] = {
            "title": title,
            "author": self.pack.name,
            "lang": message.locale.replace("_", "-"),
            "subject": tpl.name,
        }
        message.subject = title
        if tpl.confidential:
            if self.password_rule is None:
                raise RenderError(
                    f"template {tpl.id!r} is confidential but pack {self.pack.id!r} has no "
                    "security.pdf_password rule",
                    template=tpl.id,
                )
            password = password_for(self.password_rule, req.customer)
            metadata: dict[str, str] = {}
            if self.pack.security.get("archive_pdfa", True) and self.options.archival:
                request_json = json.dumps(req.to_dict(), sort_keys=True, indent=2,
                                          ensure_ascii=False).encode()
                message.archival = pdf_channel.write_pdf(
                    document, **meta, variant="pdf/a-3b",
                    attachments=[("request.json", request_json, "application/json")],
                )
                metadata["ccm:archival-sha256"] = hashlib.sha256(message.archival).hexdigest()
            if message.archival is not None:
                # One WeasyPrint write: qpdf strips what PDF/A added while it encrypts.
                message.content = encrypt_pdf(
                    message.archival, password,
                    edit=pdf_channel.delivery_from_archival(metadata),
                )
            else:
                delivery = pdf_channel.write_pdf(document, **meta, metadata=metadata)
                message.content = encrypt_pdf(delivery, password)
            message.encrypted = True
            message.password_hint = self.password_hint(message.locale)
        else:
            variant = "pdf/a-3b" if self.options.pdfa else None
            message.content = pdf_channel.write_pdf(document, **meta, variant=variant)

    def _finish_email(
        self,
        tpl: Template,
        req: Request,
        message: Message,
        deadline: float,
        attachment: Message | None,
    ) -> None:
        to_addr = req.customer.get("email")
        if not to_addr:
            raise DataError(
                f"customer {req.customer_id}: email channel needs customer.email",
                path="$.customer.email", rule="required", customer_id=req.customer_id,
            )
        if attachment is not None and attachment.encrypted:
            message.password_hint = attachment.password_hint
        sender = self.pack.senders.get("email", {})
        if not sender.get("from"):
            raise PackError(
                f"{self.pack.root / 'pack.yaml'}: senders.email.from: needed for the email channel",
                path=str(self.pack.root / "pack.yaml"),
                key="senders.email.from",
            )
        headers: dict[str, str] = {}
        if tpl.message_type == "marketing":
            unsubscribe = self._unsubscribe_url(message)
            message.meta["unsubscribe_url"] = unsubscribe
            targets = [f"<{unsubscribe}>"]
            if sender.get("unsubscribe_mailto"):
                targets.append(f"<mailto:{sender['unsubscribe_mailto']}?subject=unsubscribe>")
            headers["List-Unsubscribe"] = ", ".join(targets)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        headers["X-CCM-Message-ID"] = message.message_id
        rendered = self._render(tpl, req, "email", message, deadline,
                                blocks=("subject", "preheader"))
        html = email_channel.compile_mjml_cached(
            rendered.text, include_roots=(self.pack.root, tpl.root)
        )
        html = self._instrument(html, message)
        text = email_channel.html_to_text(html)
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
        )
        message.email = PARSE_CONTENT  # parsed from content when someone reads it
        message.subject = subject

    def _unsubscribe_url(self, message: Message) -> str:
        tracking = self.pack.tracking
        if tracking.get("base_url"):
            from ccm.render.links import TrackingKey, unsubscribe_url

            return unsubscribe_url(tracking["base_url"], message.message_id, TrackingKey.from_env())
        pattern = self.pack.senders.get("email", {}).get("unsubscribe_url")
        if not pattern:
            raise RenderError(
                f"marketing email needs senders.email.unsubscribe_url or tracking.base_url in "
                f"pack {self.pack.id!r}",
                template=message.template,
            )
        return str(pattern).replace("{token}", message.message_id)

    def _instrument(self, html: str, message: Message) -> str:
        tracking = self.pack.tracking
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

    def _finish_sms(self, tpl: Template, req: Request, message: Message, deadline: float) -> None:
        if not req.customer.get("phone"):
            raise DataError(
                f"customer {req.customer_id}: sms channel needs customer.phone",
                path="$.customer.phone", rule="required", customer_id=req.customer_id,
            )
        if tpl.confidential and "pdf" in tpl.channels:
            message.password_hint = self.password_hint(message.locale)
        rendered = self._render(tpl, req, "sms", message, deadline)
        limit = self.pack.senders.get("sms", {}).get("max_segments")
        result = sms_channel.finish_sms(rendered.text, max_segments=limit)
        message.text = result.text
        message.encoding = result.encoding
        message.segments = result.segments
        message.content = result.text.encode("utf-8")

    # -- approval ------------------------------------------------------------------

    def _check_approval(self, tpl: Template) -> None:
        if not self.options.require_approval:
            return
        from ccm.render.sources import check_approved

        check_approved(self, tpl)


_FIELD = re.compile(r"\{(\w+)\}")


def _greeting(pattern: str, fallback: str, customer: Mapping[str, Any]) -> str:
    """``pattern`` with each ``{field}`` replaced by the customer's field (``{name}``,
    ``{salutation}``); ``fallback`` when the customer lacks one of them."""
    values: dict[str, str] = {}
    for field_name in _FIELD.findall(pattern):
        value = customer.get(field_name)
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            return fallback
        values[field_name] = str(value).strip()
    return _FIELD.sub(lambda m: values[m.group(1)], pattern)


def _plain(request: Any) -> Any:
    """A mapping as a ``dict``; anything else as it is, for the request check to refuse."""
    return dict(request) if isinstance(request, Mapping) else request


def _apply(result: Any, message: Message) -> None:
    """What the record did with an appended message, applied to the message."""
    if result.status == "duplicate":
        message.status = "duplicate"
        message.message_id = result.entry.message_id
    elif result.status == "suppressed" and message.status != "suppressed":
        # Another writer reached the cap first: nothing may be sent.
        message.status = "suppressed"
        message.reason = result.reason
        message.content = b""
        message.archival = None
        message.email = None


def _env_has_master_key() -> bool:
    return bool(os.environ.get("CCM_MASTER_KEY") or os.environ.get("CCM_MASTER_KEY_FILE"))


def default_record_url() -> str:
    """``CCM_RECORD_URL``, else a SQLite file in the current folder."""
    return os.environ.get("CCM_RECORD_URL") or "sqlite:///ccm-record.db"


def _from_entry(entry: Any, *, status: Literal["duplicate"]) -> Message:
    return Message(
        message_id=entry.message_id,
        customer_id=entry.customer_id,
        template=entry.template,
        template_version=entry.template_version,
        pack=entry.pack,
        pack_version=entry.pack_version,
        channel=entry.channel,
        locale=entry.locale,
        message_type=entry.message_type,
        journey=entry.journey,
        content=b"",
        status=status,
        reason=entry.reason,
        idempotency_key=entry.idempotency_key,
        sources_sha256=entry.sources_sha256,
        created_at=entry.created_at.isoformat() if entry.created_at else None,
        meta={"recorded_status": entry.status},
    )


def _duplicate(earlier: Any, key: str, params: str, req: Request) -> Message:
    """The recorded message for ``key``; a conflict when it was made from other parameters."""
    if earlier.params_sha256 != params:
        from ccm.errors import IdempotencyConflict

        raise IdempotencyConflict(
            f"idempotency key {key!r} is recorded for other parameters "
            f"(message {earlier.message_id}); use a new key",
            key=key, message_id=earlier.message_id, customer_id=req.customer_id,
        )
    return _from_entry(earlier, status="duplicate")


def _suppress(message: Message, decision: Decision) -> None:
    """Mark ``message`` suppressed by the policy, saying by which rule and until when."""
    message.status = "suppressed"
    message.reason = decision.rule
    message.meta["explanation"] = decision.reason
    if decision.defer_until is not None:
        message.meta["defer_until"] = decision.defer_until.isoformat()
        # Recorded under its own id, so the retry after quiet hours, with the
        # same idempotency key, is not taken for a duplicate.
        message.idempotency_key = None


def _restore_content(record: Record, message: Message, entry: Any, tpl: Template) -> None:
    """Give a duplicate the exact bytes recorded for it, when the archive can (a retried
    send re-sends what was generated); left empty without a master key or after erasure."""
    if record.master_key is None or entry.content_sha256 is None:
        return
    from ccm.errors import CCMError

    try:
        message.content = record.content(entry.message_id)
        message.archival = record.archival(entry.message_id)
    except CCMError as exc:  # erased, or archived under another key
        logger.info("duplicate %s: recorded content not available (%s)",
                    entry.message_id, type(exc).__name__)
        return
    message.encrypted = message.channel == "pdf" and tpl.confidential


_ = ApprovalError  # re-exported for users catching it from the engine module
