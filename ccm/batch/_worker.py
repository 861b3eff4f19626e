"""The worker side of a batch run: load the engine once per process, render rows.

Workers hold no record: they validate, apply the contact policy without caps
(consent, quiet hours), render every channel, and return summaries, content
and the fields of each record entry to the parent (:mod:`ccm.batch.run`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import resource
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ccm.batch._signals import ignore_sigint
from ccm.batch._values import WorkerLimits
from ccm.batch.inputs import InputRow, request_customer_id
from ccm.errors import ConfigError, MessageError
from ccm.message import CHANNELS, Message, Request, new_message_id, output_filename
from ccm.record.bulk import Digested

if TYPE_CHECKING:
    from ccm.render.engine import Engine, RenderOptions
    from ccm.render.smsplan import SmsPlan, SmsRendered

logger = logging.getLogger("ccm.batch.run")
logger.addHandler(logging.NullHandler())




@dataclass(frozen=True)
class _Spec:
    """Everything a worker needs to render; small and picklable."""

    pack: str
    templates: str
    template: str
    run_id: str
    channels: tuple[str, ...]
    locale: str | None = None
    print_copy: bool = False
    options: RenderOptions | None = None
    limits: WorkerLimits | None = None
    now: datetime | None = None
    #: The run's emails carry the template's PDF (attached, or linked for retrieval).
    email_pdf: bool = False

    @property
    def makes_pdf(self) -> bool:
        """The run makes PDFs (its pdf channel, or its emails' PDFs): its workers load the
        PDF channel before their memory cap, its forkserver preloads it."""
        return "pdf" in self.channels or self.email_pdf


@dataclass
class _Rendered:
    """One message made by a worker, ready for the parent to record and write."""

    channel: str
    status: str
    key: str
    entry: dict[str, Any]
    filename: str
    summary: dict[str, Any]
    content: bytes = b""
    archival: bytes | None = None
    print_pdf: bytes | None = None
    #: ``content`` and its SHA-256 (:class:`~ccm.record.bulk.Digested`), hashed once for
    #: the summary, the entry and the record's check; None: the record hashes it.
    digest: Any = None
    #: A quiet-hours deferral: when the customer's window ends (aware, in their zone).
    #: Not an ``__init__`` argument: the class default costs a message nothing.
    defer_until: datetime | None = field(default=None, init=False)


@dataclass
class _RowResult:
    """A worker's answer for one input row: messages, or the error that stopped it."""

    line: int
    customer_id: str | None
    messages: list[_Rendered] = field(default_factory=list)
    error: dict[str, Any] | None = None
    config_error: BaseException | None = None
    seconds: float = 0.0
    #: The worker ran out of memory: its heap may stay fragmented, so replace it.
    recycle: bool = False


#: Per-process engine cache: (pack, templates, options) -> Engine. Workers load once.
_ENGINES: dict[tuple[str, str, Any], Engine] = {}
_LIMITED = False


def _engine_for(spec: _Spec) -> Engine:
    key = (spec.pack, spec.templates, spec.options)
    engine = _ENGINES.get(key)
    if engine is None:
        from ccm.render.engine import Engine

        engine = Engine(spec.pack, spec.templates, record=None, options=spec.options,
                        run_id=spec.run_id)
        _ENGINES[key] = engine
    engine.run_id = spec.run_id
    return engine


def _init_worker(spec: _Spec) -> None:
    """Process-pool initializer: load the engine, then cap the address space."""
    global _LIMITED
    ignore_sigint()
    _engine_for(spec)
    if spec.makes_pdf:
        _warm_up_pdf()
    # The engine, pack, templates and locale data live as long as the worker:
    # out of the collector's sight, so no collection walks them again.
    gc.freeze()
    _LIMITED = True
    limits = spec.limits
    if limits is not None and limits.memory_mb is not None:
        base = _address_space()
        cap = base + limits.memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _warm_up_pdf() -> None:
    """Lay out one tiny document so Pango and fontconfig start their threads before the cap.

    qpdf (pikepdf), which encrypts the statements, is loaded here too.
    """
    with contextlib.suppress(Exception):
        import pikepdf  # noqa: F401
        import weasyprint

        from ccm.channels.pdf import font_config

        weasyprint.HTML(string="<p>ccm</p>").render(font_config=font_config())


def _address_space() -> int:
    """This process's virtual memory size in bytes (Linux), else its peak RSS."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_limit(seconds: float | None) -> None:
    """Let this task use ``seconds`` more CPU; past it the kernel sends SIGXCPU (fatal)."""
    if seconds is None:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = int(used + seconds) + 1
    with contextlib.suppress(ValueError, OSError):
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def render_rows(
    spec: _Spec, rows: Sequence[tuple[int, Any, tuple[str, ...] | None, Mapping[str, Any] | None]]
) -> list[_RowResult]:
    """Worker task: render each ``(line, request, channels, consent_overrides)``.

    ``channels`` None means every channel of the run. Per-message errors are
    returned, not raised; a configuration error is returned too and stops the run.
    """
    if _LIMITED and spec.limits is not None:
        _cpu_limit(None if spec.limits.cpu_seconds is None
                   else spec.limits.cpu_seconds * max(len(rows), 1))
    engine = _engine_for(spec)
    if len(rows) > 1 and spec.channels == ("sms",):
        plan = _plan_for(engine, spec)
        if plan is not None:
            return _render_sms_rows(engine, spec, plan, rows)
    return [_render_row(engine, spec, *row) for row in rows]


def _render_row(engine: Engine, spec: _Spec, line: int, obj: Any,
                channels: tuple[str, ...] | None,
                overrides: Mapping[str, Any] | None) -> _RowResult:
    customer_id = InputRow(line, obj).customer_id
    result = _RowResult(line, customer_id)
    started = time.perf_counter()
    try:
        result.messages = _render_request(engine, spec, obj, channels or spec.channels, overrides)
    except Exception as exc:
        _failed(result, exc)
    result.seconds = time.perf_counter() - started
    return result


def _failed(result: _RowResult, exc: Exception) -> None:
    """Note on ``result`` why its row failed; called inside the ``except`` block that caught
    ``exc`` (an unexpected error is logged with its traceback)."""
    if isinstance(exc, ConfigError):
        result.config_error = exc
        result.error = _describe_error(exc)
    elif isinstance(exc, MessageError):
        result.error = _describe_error(exc)
        if _caused_by(exc, MemoryError):
            result.error.update(error="BudgetError", budget="memory")
            result.recycle = True
    elif isinstance(exc, MemoryError):
        result.error = {"error": "BudgetError", "message": "memory budget exceeded",
                        "budget": "memory"}
        result.recycle = True
    elif isinstance(exc, RecursionError):
        result.error = {"error": "BudgetError", "message": "recursion too deep",
                        "budget": "depth"}
    else:  # not a ccm error: a bug, or C code that ran out of memory
        logger.exception("unexpected error rendering line %s", result.line)
        result.error = {"error": type(exc).__name__, "message": str(exc),
                        "traceback": traceback.format_exc(limit=6)}
        # The process may be left in a bad state: retry the row once in a fresh worker.
        result.recycle = True


#: A row of :func:`_render_sms_rows` that leaves the plan: the full path makes it (in the
#: render step, so clock reads keep the rows' order).
_FULL = object()
#: A row of :func:`_render_sms_rows` whose answer is already in its result.
_DONE = object()


def _render_sms_rows(
    engine: Engine, spec: _Spec, plan: SmsPlan,
    rows: Sequence[tuple[int, Any, tuple[str, ...] | None, Mapping[str, Any] | None]],
) -> list[_RowResult]:
    """:func:`_render_row` over SMS rows, each step of :func:`_fast_sms` over every row in
    turn (its code stays hot: about a fifth less CPU than row by row).

    The same messages and errors as :func:`_render_row` row by row (tested): each row's
    steps run in the same order, a row the plan declines is made by the full path at
    its turn of the render step (where it read the clock), and an error stops only its
    row. A row asking for other channels is made by :func:`_render_row` at that turn too.
    The rows share the time spent equally (it only sizes tasks).
    """
    started = time.perf_counter()
    results = [_RowResult(line, request_customer_id(obj)) for line, obj, _, _ in rows]
    # Per row: the step's answer so far, or _FULL / _DONE.
    state: list[Any] = [
        None if (channels or spec.channels) == ("sms",) else _FULL for _, _, channels, _ in rows]
    other = [s is _FULL for s in state]
    for i, (_, obj, _, _) in enumerate(rows):
        if state[i] is None:
            try:
                state[i] = plan.request(obj) or _FULL
            except Exception as exc:
                _failed(results[i], exc)
                state[i] = _DONE
    tpl = plan.tpl
    for i, (_, _, _, overrides) in enumerate(rows):
        got = state[i]
        if type(got) is not tuple:
            continue
        req, request_json = got
        try:
            now = spec.now or datetime.now(UTC)
            decision = _decide(engine, tpl, req, "sms", now, overrides)
            locale = plan.locale_for(req)
            if decision is not None and not decision.allowed:
                results[i].messages = [_fast_suppressed(engine, spec, plan, req, request_json,
                                                        locale, new_message_id(now), now,
                                                        decision)]
                state[i] = _DONE
            else:
                state[i] = (req, request_json, locale)
        except Exception as exc:
            _failed(results[i], exc)
            state[i] = _DONE
    noise = os.urandom(10 * len(rows))  # the message ids' randomness, in one call
    for i, (line, obj, channels, overrides) in enumerate(rows):
        got = state[i]
        if got is _DONE:
            continue
        if other[i]:
            results[i] = _render_row(engine, spec, line, obj, channels, overrides)
            state[i] = _DONE
            continue
        try:
            if got is not _FULL:
                req, request_json, locale = got
                at = engine._clock()
                message_id = new_message_id(at, noise[10 * i:10 * i + 10])
                created_at = at.isoformat()
                made = plan.render(req, locale, message_id, created_at)
                if made is not None:
                    state[i] = (req, request_json, locale, message_id, created_at, made)
                    continue
            results[i].messages = _render_full(engine, spec, obj, ("sms",), overrides)
        except Exception as exc:
            _failed(results[i], exc)
        state[i] = _DONE
    for i, got in enumerate(state):
        if got is _DONE:
            continue
        try:
            results[i].messages = [_fast_generated(engine, spec, plan, *got)]
        except Exception as exc:
            _failed(results[i], exc)
    share = (time.perf_counter() - started) / len(rows)
    for result in results:
        result.seconds = share
    return results


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe_error(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    context = getattr(exc, "context", None)
    if isinstance(context, dict):
        for key in ("path", "line", "rule", "channel", "template", "budget", "url"):
            value = context.get(key)
            if value is not None:
                # "line" of an errors.jsonl object is the input row's; the template's is
                # "template_line".
                out["template_line" if key == "line" else key] = (
                    value if isinstance(value, int | float | str) else str(value))
    return out


def _render_request(engine: Engine, spec: _Spec, obj: Any, channels: tuple[str, ...],
                    overrides: Mapping[str, Any] | None) -> list[_Rendered]:
    if channels == ("sms",):
        fast = _fast_sms(engine, spec, obj, overrides)
        if fast is not None:
            return [fast]
    return _render_full(engine, spec, obj, channels, overrides)


#: Per-process SMS plans: (engine id, template, locale) -> (engine, plan or None where none
#: applies). The engine is kept with its plan, so its id cannot be reused while cached.
_PLANS: dict[tuple[int, str, str | None], tuple[Engine, SmsPlan | None]] = {}


def _plan_for(engine: Engine, spec: _Spec) -> SmsPlan | None:
    key = (id(engine), spec.template, spec.locale)
    cached = _PLANS.get(key)
    if cached is not None and cached[0] is engine:
        return cached[1]
    from ccm.render.smsplan import SmsPlan

    plan = SmsPlan.build(engine, spec.template, spec.locale)
    _PLANS[key] = (engine, plan)
    return plan


def _fast_sms(engine: Engine, spec: _Spec, obj: Any,
              overrides: Mapping[str, Any] | None) -> _Rendered | None:
    """One SMS row by the template's precompiled plan, or None: take the full path.

    The plan (:mod:`ccm.render.smsplan`) answers None for anything it is not
    sure to make exactly as :meth:`Engine.render` does; so does this function
    for a message the contact policy stops (the full path records why). The
    policy's own errors (an unknown time zone) and the render's (budgets,
    sandbox, SMS length) are raised as the full path raises them, at the same
    step: a template over its time budget spends it once.
    """
    plan = _plan_for(engine, spec)
    if plan is None:
        return None
    got = plan.request(obj)
    if got is None:
        return None
    req, request_json = got
    tpl = plan.tpl
    now = spec.now or datetime.now(UTC)
    decision = _decide(engine, tpl, req, "sms", now, overrides)
    locale = plan.locale_for(req)
    if decision is not None and not decision.allowed:
        return _fast_suppressed(engine, spec, plan, req, request_json, locale,
                                new_message_id(now), now, decision)
    at = engine._clock()
    message_id = new_message_id(at)
    created_at = at.isoformat()
    made = plan.render(req, locale, message_id, created_at)
    if made is None:
        return None
    return _fast_generated(engine, spec, plan, req, request_json, locale, message_id,
                           created_at, made)


def _fast_generated(engine: Engine, spec: _Spec, plan: SmsPlan, req: Request,
                    request_json: str, locale: str, message_id: str, created_at: str,
                    made: SmsRendered) -> _Rendered:
    """The message, record entry and summary of an SMS the plan made."""
    customer_id = req.customer["id"]
    key = f"{spec.run_id}:{plan.tpl.id}:{customer_id}:sms"
    content = made.text.encode()
    # Hashed once, here: the record takes the digest for these very bytes (Digested).
    digest = Digested(content)
    sha = digest.sha256
    params = plan.params_sha256(request_json, locale)
    entry = _fast_entry(engine, plan, req, message_id, key, params, locale, created_at,
                        "generated", None, sha)
    summary = _fast_summary(engine, plan, message_id, customer_id, locale, "generated", sha)
    summary["encoding"] = made.encoding
    summary["segments"] = made.segments
    if made.password_hint:
        summary["password_hint"] = made.password_hint
    return _Rendered(channel="sms", status="generated", key=key, entry=entry,
                     filename=plan.filename(customer_id, locale), summary=summary,
                     content=content, digest=digest)


def _fast_suppressed(engine: Engine, spec: _Spec, plan: SmsPlan, req: Request,
                     request_json: str, locale: str, message_id: str, now: datetime,
                     decision: Any) -> _Rendered:
    """What the full path records for an SMS the contact policy stops (``_blank`` + ``_pack``)."""
    tpl = plan.tpl
    customer_id = req.customer["id"]
    if decision.defer_until is not None:
        key = f"msg:{message_id}"  # not under the run's key: a rerun after quiet hours sends it
    else:
        key = _key(engine.run_id or "", tpl.id, customer_id, "sms")
    params = plan.params_sha256(request_json, locale)
    entry = _fast_entry(engine, plan, req, message_id, key, params, locale, now.isoformat(),
                        "suppressed", decision.rule, None)
    summary = _fast_summary(engine, plan, message_id, customer_id, locale, "suppressed", None)
    if decision.rule:
        summary["reason"] = decision.rule
    summary["encoding"] = None
    summary["segments"] = None
    rendered = _Rendered(channel="sms", status="suppressed", key=key, entry=entry,
                         filename=plan.filename(customer_id, locale), summary=summary)
    rendered.defer_until = decision.defer_until
    return rendered


def _fast_entry(engine: Engine, plan: SmsPlan, req: Request, message_id: str, key: str,
                params: str, locale: str, created_at: str, status: str, reason: str | None,
                sha: str | None) -> dict[str, Any]:
    """The record entry ``_pack`` writes, from the plan's values."""
    tpl = plan.tpl
    pack = engine.pack
    return {
        "message_id": message_id,
        "idempotency_key": key,
        "params_sha256": params,
        "customer_id": req.customer["id"],
        "channel": "sms",
        "template": tpl.id,
        "template_version": tpl.version,
        "pack": pack.id,
        "pack_version": pack.version,
        "message_type": tpl.message_type,
        "journey": tpl.journey,
        "locale": locale,
        "created_at": created_at,
        "status": status,
        "reason": reason,
        "content_sha256": sha,
        "archival_sha256": None,
        "sources_sha256": plan.sources_sha256,
        "archive_ref": None,
        "segment": req.customer.get("segment"),
    }


def _fast_summary(engine: Engine, plan: SmsPlan, message_id: str, customer_id: str,
                  locale: str, status: str, sha: str | None) -> dict[str, Any]:
    """The first fields of :meth:`Message.summary`, in its order."""
    tpl = plan.tpl
    return {
        "message_id": message_id,
        "customer_id": customer_id,
        "template": tpl.id,
        "template_version": tpl.version,
        "pack": engine.pack.id,
        "pack_version": engine.pack.version,
        "channel": "sms",
        "locale": locale,
        "status": status,
        "sha256": sha,
    }


def _render_full(engine: Engine, spec: _Spec, obj: Any, channels: tuple[str, ...],
                 overrides: Mapping[str, Any] | None) -> list[_Rendered]:
    """Any row on any channels, through :meth:`Engine.render` (the reference path)."""
    from ccm.render.template import validate_request

    tpl = engine.template(spec.template)
    req = validate_request(obj)
    locale = spec.locale or engine.pack.resolve_locale(req.customer.get("locale"))
    now = spec.now or datetime.now(UTC)
    allowed: list[str] = []
    out: dict[str, _Rendered] = {}
    for channel in channels:
        decision = _decide(engine, tpl, req, channel, now, overrides)
        if decision is None or decision.allowed:
            allowed.append(channel)
            continue
        message = _blank(engine, tpl, req, channel, locale, now)
        message.status = "suppressed"
        message.reason = decision.rule
        message.meta["explanation"] = decision.reason
        if decision.defer_until is not None:
            message.meta["defer_until"] = decision.defer_until.isoformat()
            # Not under the run's key: a rerun after quiet hours sends it.
            message.idempotency_key = f"msg:{message.message_id}"
        out[channel] = _pack(engine, tpl, req, message, spec)
        out[channel].defer_until = decision.defer_until
    if not allowed:
        # Engine.render checks the contract; with nothing to render, check it here, so
        # a bad row is an error rather than a recorded suppression.
        tpl.validate_data(req.data, customer_id=req.customer_id)
    else:
        every = [c for c in CHANNELS if c in tpl.channels]
        if allowed == every:
            made = engine.render(spec.template, req, None, spec.locale, record=False)
        else:
            made = [engine.render(spec.template, req, c, spec.locale, record=False)
                    for c in allowed]
        for message in made:
            out[message.channel] = _pack(engine, tpl, req, message, spec)
    return [out[c] for c in channels if c in out]


def _decide(engine: Engine, tpl: Any, req: Request, channel: str, now: datetime,
            overrides: Mapping[str, Any] | None) -> Any:
    """The contact policy without the record: consent and quiet hours; caps count 0 here.

    Caps are enforced by the parent, atomically, when it appends to the record. A pack
    without a ``policy:`` section has the default policy (marketing needs consent), as
    in :meth:`Engine.render`, and the record's opt-outs and blocked channels still apply.
    """
    return engine.policy.evaluate(
        customer=req.customer,
        message_type=tpl.message_type,
        channel=channel,
        now=now,
        counter=_no_caps,
        consent_overrides=overrides or _NO_OVERRIDES,
    )


#: The policy only reads the overrides: no copy per row.
_NO_OVERRIDES: Mapping[str, Any] = MappingProxyType({})


def _no_caps(cap: Any) -> int:
    """Caps count 0 in the worker (the parent counts them when it writes the record)."""
    return 0


def _blank(engine: Engine, tpl: Any, req: Request, channel: str, locale: str,
           now: datetime) -> Message:
    return Message(
        message_id=new_message_id(now), customer_id=req.customer_id, template=tpl.id,
        template_version=tpl.version, pack=engine.pack.id, pack_version=engine.pack.version,
        channel=channel,  # type: ignore[arg-type]
        locale=locale, message_type=tpl.message_type, journey=tpl.journey, content=b"",
        idempotency_key=_key(engine.run_id or "", tpl.id, req.customer_id, channel),
        sources_sha256=engine.sources_sha256(tpl), created_at=now.isoformat(),
    )


def _pack(engine: Engine, tpl: Any, req: Request, message: Message, spec: _Spec) -> _Rendered:
    key = message.idempotency_key or _key(spec.run_id, tpl.id, req.customer_id, message.channel)
    params = engine._params_sha256(tpl, req, message.channel, message.locale)
    # The content's digest is computed once, here: for the summary, the entry, and the
    # record, which takes it for these very bytes (Digested) instead of hashing them again.
    digest = Digested(message.content) if message.content else None
    summary = message.summary(sha256=None if digest is None else digest.sha256)
    entry = {
        "message_id": message.message_id,
        "idempotency_key": key,
        "params_sha256": params,
        "customer_id": message.customer_id,
        "channel": message.channel,
        "template": message.template,
        "template_version": message.template_version,
        "pack": message.pack,
        "pack_version": message.pack_version,
        "message_type": message.message_type,
        "journey": message.journey,
        "locale": message.locale,
        "created_at": message.created_at,
        "status": message.status,
        "reason": message.reason,
        "content_sha256": summary["sha256"],
        "archival_sha256": summary.get("archival_sha256") or message.archival_sha256,
        "sources_sha256": message.sources_sha256,
        "archive_ref": None,
        "segment": req.customer.get("segment"),
    }
    print_pdf = None
    if spec.print_copy and message.channel == "pdf" and message.content:
        print_pdf = _print_copy(engine, req, message)
    return _Rendered(
        channel=message.channel, status=message.status, key=key, entry=entry,
        filename=message.filename, summary=summary, content=message.content,
        archival=message.archival, print_pdf=print_pdf, digest=digest,
    )


def _print_copy(engine: Engine, req: Request, message: Message) -> bytes:
    """The delivery PDF without encryption, for the print stream."""
    plain = message.meta.get("print_pdf")
    if isinstance(plain, bytes):
        return plain
    if not message.encrypted:
        return message.content
    from ccm.render.security import decrypt_pdf, password_for

    if engine.password_rule is None:
        raise ConfigError("encrypted PDF without a password rule")
    return decrypt_pdf(message.content, password_for(engine.password_rule, req.customer))


def _key(run_id: str, template: str, customer_id: str, channel: str) -> str:
    """The idempotency key of one batch message: run, template, customer, channel."""
    return f"{run_id}:{template}:{customer_id}:{channel}"


def _filename(customer_id: str, template: str, locale: str, channel: str) -> str:
    """The output file name (as :attr:`Message.filename`) from recorded fields."""
    return output_filename(customer_id, template, locale, channel)
