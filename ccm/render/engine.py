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
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from ccm._util import checked_clock, json_encoder_once
from ccm.errors import (
    ApprovalError,
    ConfigError,
    UnknownChannel,
    UnknownLocale,
    UnknownTemplate,
)
from ccm.message import CHANNELS, Message, Request, new_message_id
from ccm.pack import BrandPack, load_pack
from ccm.pack.model import localised
from ccm.render.budget import Budget, Meter
from ccm.render.environment import (
    compile_source,
    create_environment,
    gettext_functions,
    render_source,
)
from ccm.render.finish import (
    finish_email,
    finish_pdf,
    finish_sms,
    link_document,
    no_tracking_base,
    pdf_channel,
)
from ccm.render.fold import Constants, FoldedEnvironments
from ccm.render.i18n import catalog_for
from ccm.render.options import DEFAULT, RenderOptions
from ccm.render.recording import (
    apply_result,
    decide,
    default_record_url,
    defers,
    due_for,
    duplicate,
    entry_for,
    open_record,
    queue_for,
    restore_content,
    suppress,
)
from ccm.render.security import PasswordRule
from ccm.render.template import (
    Template,
    load_templates,
    validate_request,
)

if TYPE_CHECKING:
    from ccm.channels.pdf import PackFetcher
    from ccm.record import Record
    from ccm.record.policy import Policy

__all__ = ["DEFAULT", "Engine", "RenderOptions", "default_record_url"]

logger = logging.getLogger("ccm.render.engine")
logger.addHandler(logging.NullHandler())


def _carriers_decision(decisions: list[Any]) -> Any:
    """One decision for a document from its carriers' (one per carrying channel): allowed
    when one of them is, else the first one's no."""
    return next((d for d in decisions if d.allowed), decisions[0])



#: ``json.dumps(..., sort_keys=True, default=str, separators=(",", ":"))``: the parameters
#: digest's JSON (:meth:`Engine._params_sha256`), as the encoder made once (no circular
#: check: it only writes requests :func:`validate_request` accepted, at most ``MAX_DEPTH``
#: deep, with a few names around them).
DIGEST_ENCODER = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))
_DIGEST_ONCE = json_encoder_once(DIGEST_ENCODER)


def digest_json(value: Any) -> str:
    """``DIGEST_ENCODER.encode(value)`` for an acyclic ``value`` (a validated request and
    names), by the C encoder made once."""
    if _DIGEST_ONCE is None:  # pragma: no cover - json without its C speedups
        return DIGEST_ENCODER.encode(value)
    return _DIGEST_ONCE(value)


class Engine:
    """Render messages for one brand pack from a folder of templates.

    Every message is recorded unless the caller opts out: ``record`` is a
    :class:`ccm.record.Record`, a record URL, ``None`` to keep no record, or
    :data:`DEFAULT` (the default: ``CCM_RECORD_URL``, else
    ``sqlite:///ccm-record.db`` in the current folder). Without a record the
    contact policy still applies what needs no history (consent in the
    request, quiet hours, the time zone); caps and recorded opt-outs need one.
    ``master_key`` encrypts archived content; by default it comes from
    ``CCM_MASTER_KEY`` / ``CCM_MASTER_KEY_FILE`` when set.
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
        _check_arguments(pack, templates, record, options, run_id, clock)
        self.pack = pack if isinstance(pack, BrandPack) else load_pack(pack)
        self.templates_dir = Path(templates).resolve()
        self.templates: dict[str, Template] = load_templates(self.templates_dir)
        self.options = options or RenderOptions()
        self.run_id = run_id
        self._clock: Callable[[], datetime] = (
            checked_clock(clock, "Engine") if clock is not None else lambda: datetime.now(UTC))
        self._env = create_environment(
            self.pack.layouts_dir, self.templates_dir, self.pack.root,
            {tpl_id: tpl.root for tpl_id, tpl in self.templates.items()})
        #: Per template, channel and locale, an environment compiling with the pack's
        #: constants folded in (ccm/render/fold.py); None: compile as written.
        self._folds: FoldedEnvironments | None = FoldedEnvironments(self._env)
        self._catalogs: dict[tuple[str, str], Any] = {}
        self._gettext_cache: dict[tuple[str, str], dict[str, Callable[..., Any]]] = {}
        self._brand_cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._sources_cache: dict[tuple[str, str], str] = {}
        self._budgets: dict[str, Budget] = {}
        self._pdf_fetchers: dict[str, PackFetcher] = {}
        rule = self.pack.security.get("pdf_password")
        self.password_rule: PasswordRule | None = PasswordRule.from_mapping(rule) if rule else None
        self.record: Record | None = open_record(record, master_key)
        if self.options.queue and (self.record is None or self.record.master_key is None):
            from ccm.errors import KeyConfigError

            raise KeyConfigError(
                "RenderOptions(queue=True) needs a record with a master key: the outbox keeps "
                "each message's content and recipient encrypted; set CCM_MASTER_KEY or "
                "CCM_MASTER_KEY_FILE (docs/privacy.md)")
        self._policy: Policy | None = None
        self._listeners: list[Callable[[Message], None]] = []

    def add_listener(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        """Call ``callback`` with every finished message; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

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

        A PDF rendered only because the email attaches it (or an email or SMS
        links to it) is recorded but never queued for delivery on its own: it
        travels in, or behind, the message that carries it.
        A caller's ``idempotency_key`` on a multi-channel call is combined with
        each channel, so each channel's message is kept once. Without a key,
        and with a ``run_id`` on the engine, the key is derived from run,
        template, customer and channel. Suppression by contact policy is a
        returned message with ``status="suppressed"`` and the rule in ``reason``.
        ``record=False`` renders outside the record *and* the contact policy:
        for proofs, previews and lint of samples, and batch workers (which
        decide the policy themselves); a customer's message leaves it True.
        """
        tpl = self.template(template)
        self._check_call(tpl, channel, locale)
        return self._render_one(tpl, request, channel, locale, idempotency_key, record)

    def _render_one(self, tpl: Template, request: Request | Mapping[str, Any],
                    channel: str | None, locale: str | None, idempotency_key: str | None,
                    record: bool) -> Message | list[Message]:
        """:meth:`render` once the call is checked."""
        req = _request(request)
        tpl.validate_data(req.data, customer_id=req.customer_id)
        loc = locale or self.pack.resolve_locale(req.customer.get("locale"))
        channels = [channel] if channel else [c for c in CHANNELS if c in tpl.channels]

        results: dict[str, Message] = {}
        linked = self._links_document(tpl) and any(c in ("email", "sms") for c in channels)
        for ch in self._made_channels(tpl, channels):
            key = self._key(tpl, req, ch, idempotency_key)
            attach = results.get("pdf") if ch == "email" and tpl.attach_pdf else None
            if linked and ch in ("email", "sms"):
                attach = results["pdf"]
            if ch == "email" and tpl.attach_pdf and attach is None:
                attach = self._render_channel(tpl, req, "pdf", loc, key=None, use_record=False)
            # A PDF rendered only because the email attaches it (or links to it) is
            # recorded, the archived document, but not queued: it travels in the email,
            # whose policy decides for it (its carriers).
            results[ch] = self._render_channel(
                tpl, req, ch, loc, key=key, use_record=record, attachment=attach,
                deliver=ch in channels, carriers=self._carriers(tpl, ch, channels),
            )
        if channel is not None:
            return results[channel]
        return [results[c] for c in channels]

    def _made_channels(self, tpl: Template, channels: Sequence[str]) -> list[str]:
        """The channels a call for ``channels`` makes, in order: the PDF first, also when it
        was not asked for but an email attaches it or an email or SMS links to it (it is
        then recorded, the archived document, but not queued: it travels in the message).
        :meth:`render` and :meth:`render_many` both follow it, so both record the same."""
        order = sorted(channels, key=lambda c: 0 if c == "pdf" else 1)
        linked = self._links_document(tpl) and any(c in ("email", "sms") for c in channels)
        attached = tpl.attach_pdf and "email" in order and "pdf" in tpl.channels
        if (attached or linked) and "pdf" not in order:
            order.insert(0, "pdf")
        return order

    def _carriers(self, tpl: Template, channel: str, channels: Sequence[str]) -> tuple[str, ...]:
        """The channels among ``channels`` that carry ``channel``'s document (a PDF attached
        to an email or linked from an email or SMS); empty for anything else."""
        if channel != "pdf":
            return ()
        linked = self._links_document(tpl)
        return tuple(c for c in channels
                     if (c == "email" and (tpl.attach_pdf or linked)) or (c == "sms" and linked))

    def _carried(self, tpl: Template, req: Request, locale: str,
                 attachment: Message | None) -> Message | None:
        """The document an email attaches: ``attachment``, or, when that was stopped as a
        contact of its own (its entry says why), the document made for the email alone
        (its bytes are in the email's archived copy): never an empty attachment."""
        if attachment is None or attachment.status != "suppressed":
            return attachment
        return self._render_channel(tpl, req, "pdf", locale, key=None, use_record=False)

    def _decision(self, tpl: Template, req: Request, channel: str, carriers: Sequence[str],
                  now: datetime, record: Any) -> Any:
        """The policy's decision for ``channel``; for a document other messages carry, its
        carriers' (allowed when one of them is; else the first one's no): a carried document
        is no contact of its own."""
        if not carriers:
            return decide(self.policy, tpl, req, channel, now, record)
        return _carriers_decision([decide(self.policy, tpl, req, c, now, record)
                                   for c in carriers])

    def _links_document(self, tpl: Template) -> bool:
        """Whether this template's confidential PDF travels as a retrieval link."""
        return (self.options.document_delivery == "link" and tpl.confidential
                and "pdf" in tpl.channels)

    def _check_call(self, tpl: Template, channel: str | None, locale: str | None, *,
                    approval: bool = True) -> None:
        """Channel and locale exist; the template is approved when approval is required
        (and ``approval``: False when the check is the one approving it)."""
        if channel is not None and channel not in tpl.channels:
            raise UnknownChannel(
                f"template {tpl.id!r} has no {channel!r} channel; "
                f"it has: {', '.join(tpl.channels)}",
                template=tpl.id,
                channel=channel,
                available=list(tpl.channels),
            )
        self._check_locale(locale)
        if approval:
            self._check_approval(tpl)
        self._check_links(tpl, channel)

    def _check_links(self, tpl: Template, channel: str | None) -> None:
        """Links the options ask for have a ``tracking.base_url``; checked before anything
        is rendered or recorded (a linked PDF is recorded before its email)."""
        if self.pack.tracking.get("base_url"):
            return
        channels = [channel] if channel else list(tpl.channels)
        if self._links_document(tpl) and any(c in ("email", "sms") for c in channels):
            raise no_tracking_base(self, "document_delivery='link'", tpl.id)
        if self.options.web_version and "email" in channels:
            raise no_tracking_base(self, "web_version", tpl.id)

    def _check_locale(self, locale: str | None) -> None:
        """``locale`` is None or one of the pack's; else :class:`UnknownLocale` naming them."""
        if locale is not None and locale not in self.pack.locales:
            raise UnknownLocale(
                f"pack {self.pack.id!r} has no locale {locale!r}; "
                f"it has: {', '.join(self.pack.locales)}",
                locale=locale,
                available=list(self.pack.locales),
            )

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
        ``suppressed`` with ``reason="cap:<name>"`` and no content. A message
        already recorded under its key comes back ``duplicate`` with the bytes
        recorded for it (with a master key), as from :meth:`render`. An
        exception (a bad request, a render error) stops the call: chunks
        already written stay written, the failing chunk is not written. Needs
        a record; without one this is :meth:`render` in a loop.
        """
        if type(chunk_size) is not int or chunk_size < 1:
            raise ConfigError(f"render_many(chunk_size={chunk_size!r}): "
                              "give a whole number of messages per transaction, at least 1")
        if not isinstance(channel, str):
            # (render() would take None as "every channel": render_many makes one each.)
            tpl = self.template(template)
            raise UnknownChannel(
                f"render_many needs one channel name, got {type(channel).__name__}; "
                f"template {tpl.id!r} has: {', '.join(tpl.channels)} "
                "(render() without a channel makes them all)",
                template=tpl.id, channel=str(channel), available=list(tpl.channels))
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
        tpl = self.template(template)
        if record is None or (self._links_document(tpl) and channel in ("email", "sms")):
            # A linked document is recorded as its own message first: one request at a time.
            return [self.render(template, r, channel, locale) for r in requests]
        self._check_call(tpl, channel, locale)
        reqs = [_request(r) for r in requests]
        for req in reqs:
            tpl.validate_data(req.data, customer_id=req.customer_id)
        # The PDF an email attaches is made first and recorded as render() records it.
        made = self._made_channels(tpl, [channel])
        keys = [{ch: self._key(tpl, req, ch, None) for ch in made} for req in reqs]
        known = record.find_keys([k for ks in keys for k in ks.values() if k is not None])
        consents = record.consent_overrides_many({req.customer_id for req in reqs})
        caps = {ch: self.policy.caps_for(tpl.message_type, ch) for ch in made}
        messages: list[Message] = []
        rendered: list[Message] = []
        items: list[tuple[Message, dict[str, Any]]] = []
        for req, req_keys in zip(reqs, keys, strict=True):
            loc = locale or self.pack.resolve_locale(req.customer.get("locale"))
            made_for: dict[str, Message] = {}
            # A document's recorded bytes are read back only for a message still to make;
            # a duplicate on the channel asked for gets its own, as render() gives them.
            carried = known.get(req_keys[channel] or "") is None
            for ch in made:
                attachment = made_for.get("pdf") if ch == "email" and tpl.attach_pdf else None
                made_for[ch] = self._chunk_message(
                    tpl, req, ch, loc, req_keys[ch], known.get(req_keys[ch] or ""),
                    consents.get(req.customer_id, {}), caps[ch], attachment,
                    deliver=ch == channel, restore=ch == channel or carried,
                    rendered=rendered, items=items, carriers=self._carriers(tpl, ch, [channel]))
            messages.append(made_for[channel])
        results = record.append_many([item for _, item in items])
        for (message, _), result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                raise result  # another writer recorded the key for other parameters
            apply_result(result, message)
            if message.status != "generated":
                message.meta.pop("due_at", None)
        for message in rendered:  # as render() does, once the chunk is committed
            for listener in list(self._listeners):
                listener(message)
        return messages

    def _chunk_message(
        self, tpl: Template, req: Request, channel: str, loc: str, key: str | None,
        earlier: Any, consents: Mapping[str, Any], caps: Sequence[Any],
        attachment: Message | None, *, deliver: bool, restore: bool,
        rendered: list[Message], items: list[tuple[Message, dict[str, Any]]],
        carriers: Sequence[str] = (),
    ) -> Message:
        """One message of a :meth:`render_many` chunk, as :meth:`_render_channel` makes it
        but left for the chunk's one write: appended to ``items`` (and to ``rendered``
        when its content was made); ``deliver`` False: a document another message carries;
        ``restore``: a duplicate gets its recorded bytes (the document a new email attaches)."""
        params = self._params_sha256(tpl, req, channel, loc)
        if earlier is not None:
            dup = duplicate(earlier, key or "", params, req)
            if restore and self.record is not None:
                restore_content(self.record, dup, earlier, tpl)
            return dup
        now = self._clock()
        message = self._new_message(tpl, req, channel, loc, key, now)
        # Caps are left to the write (counted there, atomically): 0 here. A document
        # another message carries is no contact of its own: its carriers' policy decides
        # (see _render_channel).
        decision = _carriers_decision([self.policy.evaluate(
            customer=req.customer, message_type=tpl.message_type, channel=c,
            now=now, counter=lambda cap: 0, consent_overrides=consents,
        ) for c in (carriers if not deliver and carriers else (channel,))])
        item_caps: Sequence[Any] = caps if deliver else ()
        queue = None
        if not decision.allowed and not defers(self.options, decision):
            suppress(message, decision)
            item_caps = ()
        else:
            if deliver:
                queue = queue_for(req, channel, due_for(self.options, message, decision, now),
                                  consent=tpl.message_type in self.policy.consent_required)
            self._finish(tpl, req, message, self._carried(tpl, req, loc, attachment)
                         if channel == "email" else attachment)
            rendered.append(message)
        items.append((message, {
            "entry": entry_for(message, params, req.customer.get("segment"), self._clock),
            "content": message.content or None, "archival": message.archival,
            "caps": item_caps, "queue": queue,
        }))
        return message

    # -- composition ---------------------------------------------------------

    def _key(self, tpl: Template, req: Request, channel: str, given: str | None) -> str | None:
        if given:
            return f"{given}:{channel}"
        if self.run_id:
            return f"{self.run_id}:{tpl.id}:{req.customer_id}:{channel}"
        return None

    def _params_sha256(self, tpl: Template, req: Request, channel: str, locale: str) -> str:
        """What an idempotency key commits to: template version, pack version, locale, data."""
        blob = digest_json({
            "template": tpl.id,
            "template_version": tpl.version,
            "pack": self.pack.id,
            "pack_version": self.pack.version,
            "channel": channel,
            "locale": locale,
            "request": req.to_dict(),
        })
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
        deliver: bool = True,
        carriers: Sequence[str] = (),
    ) -> Message:
        """One channel's message, recorded when ``use_record``; queued when the options
        queue and ``deliver`` (False: a document another message carries). ``carriers``:
        the channels carrying this document, whose policy decides for it."""
        now = self._clock()
        message = self._new_message(tpl, req, channel, locale, key, now)
        record = self.record if use_record else None
        due: datetime | None = None
        params = ""  # only the record needs it: a SHA-256 over the whole request
        if record is not None:
            params = self._params_sha256(tpl, req, channel, locale)
            if key is not None:
                earlier = record.find_key(key)
                if earlier is not None:
                    dup = duplicate(earlier, key, params, req)
                    restore_content(record, dup, earlier, tpl)
                    return dup
        if use_record:
            # With or without a record (Engine(record=None)): consent in the request,
            # quiet hours and the time zone need no history; caps and opt-outs do. A
            # document another message carries is no contact of its own: its carriers'
            # policy decides (the PDF channel's stopped it, and the email went out with an
            # empty attachment).
            decision = self._decision(tpl, req, channel, () if deliver else carriers, now,
                                      record)
            if not decision.allowed and not defers(self.options, decision):
                suppress(message, decision)
                if record is not None:
                    self._append(record, message, params, caps=(),
                                 segment=req.customer.get("segment"))
                return message
            if deliver:
                due = due_for(self.options, message, decision, now)

        self._finish(tpl, req, message, self._carried(tpl, req, locale, attachment)
                     if channel == "email" else attachment)

        if record is not None:
            caps = self.policy.caps_for(tpl.message_type, channel) if deliver else ()
            self._append(record, message, params, caps=caps,
                         segment=req.customer.get("segment"),
                         queue=queue_for(req, channel, due, consent=tpl.message_type
                                         in self.policy.consent_required))
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
            message_id=new_message_id(now),
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
        meter = self.budget(tpl).start()
        if attachment is not None and self._links_document(tpl):
            link_document(self, message, attachment)
            attachment = None
        if message.channel == "pdf":
            finish_pdf(self, tpl, req, message, meter)
        elif message.channel == "email":
            finish_email(self, tpl, req, message, meter, attachment)
        else:
            finish_sms(self, tpl, req, message, meter)

    def budget(self, tpl: Template) -> Budget:
        """The render budget of ``tpl``: the engine's options, overridden by its ``budget:``."""
        key = tpl.id
        cached = self._budgets.get(key)
        if cached is None:
            cached = self._budgets[key] = self.options.budget.override(tpl.budget)
        return cached

    def _append(self, record: Record, message: Message, params: str, caps: Sequence[Any],
                segment: str | None = None, queue: Any = None) -> None:
        result = record.append(
            entry_for(message, params, segment, self._clock),
            content=message.content or None,
            archival=message.archival,
            caps=caps,
            queue=queue,
        )
        apply_result(result, message)
        if queue is not None and message.status != "generated":
            message.meta.pop("due_at", None)

    # -- context ---------------------------------------------------------------

    def context(
        self, tpl: Template, req: Request, channel: str, locale: str, message: Message
    ) -> dict[str, Any]:
        """The variables a template sees (documented in docs/templates.md)."""
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
            "document_url": message.meta.get("document_url"),
            "web_version_url": message.meta.get("web_version_url"),
            "created_at": message.created_at,
        }
        ctx: dict[str, Any] = {
            "customer": req.customer,
            "data": req.data,
            "brand": brand,
            "message": msg,
            **self._locale_names(locale),
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
        self, tpl: Template, req: Request, channel: str, message: Message,
        meter: Meter | float, blocks: tuple[str, ...] = (),
    ) -> Any:
        """Render ``tpl``'s source for ``channel`` under ``meter`` (or a deadline)."""
        if not isinstance(meter, Meter):
            deadline, meter = meter, self.budget(tpl).start()
            meter.deadline = deadline
        ctx = self.context(tpl, req, channel, message.locale, message)
        return render_source(self._environment(tpl, channel, message.locale),
                             tpl.source_name(channel), ctx, blocks=blocks, meter=meter)

    def _environment(self, tpl: Template, channel: str, locale: str) -> Any:
        """The Jinja environment ``tpl`` renders ``channel`` in for ``locale``.

        Its templates are compiled with what every message of this template,
        channel and locale shares folded in (:mod:`ccm.render.fold`).
        """
        folds = self._folds
        if folds is None:
            return self._env
        return folds.get(tpl.source_name(channel), (tpl.id, channel, locale),
                         lambda: self._constants(tpl, channel, locale))

    def _constants(self, tpl: Template, channel: str, locale: str) -> Constants:
        brand = self._brand(channel, locale)
        return Constants(self._locale_names(locale),
                         {k: v for k, v in brand.items() if k != "_greeting_fallback"},
                         self._gettext(tpl, locale))

    def _locale_names(self, locale: str) -> dict[str, str]:
        """The context's ``locale``, ``lang`` and ``dir``."""
        return {"locale": locale, "lang": locale.split("_")[0],
                "dir": "rtl" if self.pack.is_rtl(locale) else "ltr"}

    # -- channels ----------------------------------------------------------------

    def _fetcher(self, tpl: Template) -> PackFetcher:
        """The fetcher of ``tpl``'s PDF assets, made on its first PDF (loading the PDF
        channel loads WeasyPrint and Pango: a process making no PDF never does).

        It serves the pack and the template's own folder -- the files
        :meth:`sources_sha256` and approval cover -- and nothing else of the
        templates folder: another template's files, or a shared folder next to
        them, could change this template's PDF unseen by its approval.
        """
        fetcher = self._pdf_fetchers.get(tpl.id)
        if fetcher is None:
            fetcher = self._pdf_fetchers[tpl.id] = pdf_channel().PackFetcher(
                roots=[self.pack.root, tpl.root],
                allowed_hosts=tuple(self.pack.security.get("allowed_hosts", ())),
            )
        return fetcher

    def password_hint(self, locale: str) -> str | None:
        """The pack's hint for the PDF password in ``locale`` (never the password)."""
        if self.password_rule is None:
            return None
        return self.password_rule.hint_for(locale, self.pack.default_locale)

    # -- approval ------------------------------------------------------------------

    def check_sources(self, template: str,
                      requests: Iterable[Request | Mapping[str, Any]] = (), *,
                      sources: bool = True) -> None:
        """Check that ``template`` renders, as a render would check it, recording nothing.

        Compiles every channel source, in every locale of the pack, with the
        layouts and includes they name; then renders each of ``requests`` (its
        samples, say) on every channel, outside the record and whether or not
        the template is approved. Raises what a render would raise: a syntax
        error naming file and line, a source or layout that does not exist, a
        file the loader refuses, a construct the sandbox refuses, a budget
        exceeded, data the contract refuses. The contract itself was checked
        when the template loaded. ``ccm approve`` runs it, so no approval is
        recorded for sources a render refuses. ``sources=False`` skips the
        compiling (done by an earlier call) and only renders ``requests``.
        """
        tpl = self.template(template)
        if sources:
            for channel in tpl.channels:
                for locale in self.pack.locales:
                    compile_source(self._environment(tpl, channel, locale),
                                   tpl.source_name(channel))
            self._check_call(tpl, None, None, approval=False)
        for request in requests:
            self._render_one(tpl, request, None, None, None, record=False)

    def _check_approval(self, tpl: Template) -> None:
        if not self.options.require_approval:
            return
        from ccm.render.sources import check_approved

        check_approved(self, tpl)


_ = ApprovalError  # re-exported for users catching it from the engine module


def _request(request: Request | Mapping[str, Any]) -> Request:
    """A request validated (:func:`validate_request`). A :class:`Request` made by the caller
    is validated as the same request as a dict would be (a missing or mistyped customer
    id, consents that are no object, text with a control character: the same
    :class:`DataError` naming the field); one :func:`validate_request` built (a batch
    worker's) is passed through."""
    if isinstance(request, Request):
        if getattr(request, "_text_checked", False) is True:  # from validate_request
            return request
        return validate_request(request.to_dict())
    return validate_request(_as_dict(request))


def _check_arguments(pack: Any, templates: Any, record: Any, options: Any, run_id: Any,
                     clock: Any) -> None:
    """The :class:`Engine` arguments are of the types it takes: else a
    :class:`ConfigError` naming the argument (not a ``TypeError`` from pathlib, or an
    ``AttributeError`` at the first render)."""
    from ccm.record import Record

    def wrong(name: str, value: Any, takes: str) -> ConfigError:
        return ConfigError(f"Engine({name}=...): {takes}; got {type(value).__name__}")

    if not isinstance(pack, str | os.PathLike | BrandPack):
        raise wrong("pack", pack, "give the brand pack's folder (str or Path) or a BrandPack")
    if not isinstance(templates, str | os.PathLike):
        raise wrong("templates", templates, "give the templates folder (str or Path)")
    if not (record is None or record is DEFAULT or isinstance(record, str | os.PathLike | Record)):
        raise wrong("record", record, "give a ccm.record.Record, a record URL or file path "
                    "(str or Path), None for no record, or leave the default")
    if options is not None and not isinstance(options, RenderOptions):
        raise wrong("options", options, "give a ccm.RenderOptions(...) or None")
    if run_id is not None and not isinstance(run_id, str):
        raise wrong("run_id", run_id, "give a str or None")
    if clock is not None and not callable(clock):
        raise wrong("clock", clock, "give a function returning an aware datetime, "
                    "e.g. lambda: datetime(2026, 6, 1, 12, tzinfo=UTC), or None")


def _as_dict(request: Any) -> Any:
    """A mapping request as a dict; anything else as it is (validate_request refuses it)."""
    return dict(request) if isinstance(request, Mapping) else request


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
