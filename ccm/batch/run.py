"""Batch runs: stream requests through an executor, keep the record, write the files.

::

    parent                                        workers (processes, or a Dask cluster)
    ------                                        -------
    read rows (streaming)                         load Engine once per process
      -> skip/restore what the record has         (record=False: no database here)
      -> submit chunks (bounded window)  ------>  validate, contact policy (consent,
                                                  quiet hours), render every channel
    collect results                     <------   summaries + content + entry fields
      -> stage files (temp names)
      -> append to the record in batches (caps re-checked atomically)
      -> publish: rename staged -> final
      -> errors.jsonl, progress events, summary

The order *stage, commit, publish* is what makes a run resumable: a file
appears under its final name only after its message is in the record, so a
sender or print house watching ``out/`` never sees a message the record does
not have; a staged file whose message was committed is published on the next
run; one whose message was not committed is rendered again. See
``docs/batch.md`` for the full argument.

Logging: ``ccm.batch.run`` logs one INFO line per run start and end, WARNING for
rows that fail or worker processes that die, DEBUG per commit.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import resource
import secrets
import sys
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from ccm._util import safe_filename
from ccm.batch.inputs import InputRow
from ccm.errors import ConfigError, DataError, MessageError
from ccm.message import CHANNELS, SUFFIXES, Message, Request

if TYPE_CHECKING:
    from ccm.record import Record
    from ccm.render.engine import Engine, RenderOptions
    from ccm.render.template import Template

__all__ = [
    "BatchEvent",
    "BatchSummary",
    "WorkerLimits",
    "new_run_id",
    "request_schema",
    "run_batch",
]

logger = logging.getLogger("ccm.batch.run")
logger.addHandler(logging.NullHandler())

EventKind = Literal["start", "progress", "error", "done"]

#: Messages collected before the parent commits them to the record.
COMMIT_MESSAGES = 256
#: Seconds between commits when results arrive slowly.
COMMIT_SECONDS = 1.0
#: Work per task the parent aims for when it sizes chunks of rows.
TASK_SECONDS = 0.05
#: Most rows in one task.
MAX_CHUNK = 256
#: Input rows read ahead at a time: their record lookups (resume, consent) are one query each.
LOOKUP_ROWS = 256
#: Seconds between progress events.
PROGRESS_SECONDS = 0.5


# --- public value objects ------------------------------------------------------


@dataclass(frozen=True)
class WorkerLimits:
    """Per-document budgets enforced on worker processes that the batch starts itself.

    ``memory_mb`` caps each worker's address space above what it uses after
    loading the engine (``RLIMIT_AS``): an allocation past it raises
    ``MemoryError`` in that row, or kills the worker. ``cpu_seconds`` caps the
    CPU time one task may take (``RLIMIT_CPU``): past it the worker is killed
    by the kernel, even inside C code. Either way the worker is replaced, the
    row is reported, and the run goes on. The engine's own time budget
    (``RenderOptions.time_budget`` / a template's ``budget.seconds``) still
    applies first and fails the row without losing the worker. ``None``
    switches a limit off. Dask workers are not limited this way (use the
    nanny's ``memory_limit``).
    """

    memory_mb: int | None = 1024
    cpu_seconds: float | None = 120.0
    #: Tasks a worker runs before it is replaced by a fresh process. WeasyPrint 70
    #: leaks native memory (a Pango attribute list, ~40 KB per statement) for text
    #: with OpenType features such as ``font-variant-numeric``; the example packs no
    #: longer use them, and replacing workers keeps any pack's peak flat however long
    #: the run.
    tasks_per_worker: int | None = 250

    def __post_init__(self) -> None:
        if self.memory_mb is not None and self.memory_mb < 64:
            raise ValueError("memory_mb must be at least 64")
        if self.cpu_seconds is not None and self.cpu_seconds <= 0:
            raise ValueError("cpu_seconds must be positive")
        if self.tasks_per_worker is not None and self.tasks_per_worker < 1:
            raise ValueError("tasks_per_worker must be at least 1")


@dataclass(frozen=True)
class BatchEvent:
    """Something a batch reports while it runs: ``start``, ``progress``, ``error``, ``done``."""

    kind: EventKind
    data: dict[str, Any]

    def to_json(self) -> str:
        """One line of JSON: ``{"event": kind, ...data}``."""
        return json.dumps({"event": self.kind, **self.data}, ensure_ascii=False, default=str)


@dataclass
class BatchSummary:
    """What a batch run did. Counts ``generated``, ``suppressed`` and ``duplicate`` are messages;
    ``rows``, ``failed`` and ``skipped`` are input rows."""

    run_id: str
    template: str
    out: str
    rows: int = 0
    generated: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    duplicate: int = 0
    failed: int = 0
    skipped: int = 0
    restored: int = 0
    rerendered: int = 0
    workers_replaced: int = 0
    workers_retired: int = 0
    elapsed: float = 0.0
    errors_file: str | None = None
    print_file: str | None = None
    print_index: str | None = None
    total: int | None = None

    @property
    def messages(self) -> int:
        """Messages accounted for in this run (generated, suppressed or already recorded)."""
        return self.generated + sum(self.suppressed.values()) + self.duplicate

    @property
    def rate(self) -> float:
        """Input rows handled per second."""
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """0 when every row succeeded, 1 when some failed."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["suppressed_total"] = sum(self.suppressed.values())
        out["messages"] = self.messages
        out["rate"] = round(self.rate, 2)
        out["elapsed"] = round(self.elapsed, 3)
        out["exit_status"] = self.exit_status
        return out


# --- the worker side -----------------------------------------------------------


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
    _engine_for(spec)
    if "pdf" in spec.channels:
        _warm_up_pdf()
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
    return [_render_row(engine, spec, *row) for row in rows]


def _render_row(engine: Engine, spec: _Spec, line: int, obj: Any,
                channels: tuple[str, ...] | None,
                overrides: Mapping[str, Any] | None) -> _RowResult:
    customer_id = InputRow(line, obj).customer_id
    result = _RowResult(line, customer_id)
    started = time.perf_counter()
    try:
        result.messages = _render_request(engine, spec, obj, channels or spec.channels, overrides)
    except ConfigError as exc:
        result.config_error = exc
        result.error = _describe_error(exc)
    except MessageError as exc:
        result.error = _describe_error(exc)
        if _caused_by(exc, MemoryError):
            result.error.update(error="BudgetError", budget="memory")
            result.recycle = True
    except MemoryError:
        result.error = {"error": "BudgetError", "message": "memory budget exceeded",
                        "budget": "memory"}
        result.recycle = True
    except RecursionError:
        result.error = {"error": "BudgetError", "message": "recursion too deep",
                        "budget": "depth"}
    except Exception as exc:  # not a ccm error: a bug, or C code that ran out of memory
        logger.exception("unexpected error rendering line %s", line)
        result.error = {"error": type(exc).__name__, "message": str(exc),
                        "traceback": traceback.format_exc(limit=6)}
        # The process may be left in a bad state: retry the row once in a fresh worker.
        result.recycle = True
    result.seconds = time.perf_counter() - started
    return result


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
                out[key] = value if isinstance(value, int | float | str) else str(value)
    return out


def _render_request(engine: Engine, spec: _Spec, obj: Any, channels: tuple[str, ...],
                    overrides: Mapping[str, Any] | None) -> list[_Rendered]:
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

    Caps are enforced by the parent, atomically, when it appends to the record.
    """
    if not engine.pack.policy:
        return None
    return engine.policy.evaluate(
        customer=req.customer,
        message_type=tpl.message_type,
        channel=channel,
        now=now,
        counter=lambda cap: 0,
        consent_overrides=dict(overrides or {}),
    )


def _blank(engine: Engine, tpl: Any, req: Request, channel: str, locale: str,
           now: datetime) -> Message:
    import uuid

    return Message(
        message_id=uuid.uuid4().hex, customer_id=req.customer_id, template=tpl.id,
        template_version=tpl.version, pack=engine.pack.id, pack_version=engine.pack.version,
        channel=channel,  # type: ignore[arg-type]
        locale=locale, message_type=tpl.message_type, journey=tpl.journey, content=b"",
        idempotency_key=_key(engine.run_id or "", tpl.id, req.customer_id, channel),
        sources_sha256=engine.sources_sha256(tpl), created_at=now.isoformat(),
    )


def _pack(engine: Engine, tpl: Any, req: Request, message: Message, spec: _Spec) -> _Rendered:
    key = message.idempotency_key or _key(spec.run_id, tpl.id, req.customer_id, message.channel)
    params = engine._params_sha256(tpl, req, message.channel, message.locale)
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
        "content_sha256": message.sha256 if message.content else None,
        "archival_sha256": message.archival_sha256,
        "sources_sha256": message.sources_sha256,
        "archive_ref": None,
        "segment": req.customer.get("segment"),
    }
    print_pdf = None
    if spec.print_copy and message.channel == "pdf" and message.content:
        print_pdf = _print_copy(engine, req, message)
    return _Rendered(
        channel=message.channel, status=message.status, key=key, entry=entry,
        filename=message.filename, summary=message.summary(), content=message.content,
        archival=message.archival, print_pdf=print_pdf,
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
    return safe_filename(f"{customer_id}-{template}-{locale}") + SUFFIXES[channel]


# --- outputs: local folder or fsspec URL ---------------------------------------


class _Output:
    """The output folder: staged files, publishing by rename, atomic final writes.

    Local paths use ``os.replace`` (atomic); fsspec URLs use the filesystem's
    ``mv`` (object stores make each object appear whole).
    """

    def __init__(self, out: str | os.PathLike[str], run_id: str, *, durable: bool) -> None:
        name = os.fspath(out)
        self.url = name
        self.durable = durable
        tag = hashlib.sha256(run_id.encode()).hexdigest()[:16]
        self.fs: Any = None
        if "://" in name and not name.startswith("file://"):
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(name)
            self.root: str = root.rstrip("/")
            self.fs.makedirs(self.root, exist_ok=True)
        else:
            self.root = str(Path(name.removeprefix("file://")).resolve())
            Path(self.root).mkdir(parents=True, exist_ok=True)
        self.staging = f"{self.root}/.ccm-staging-{tag}"
        self._made_staging = False

    @property
    def local(self) -> bool:
        return self.fs is None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def display(self, name: str) -> str:
        if self.local:
            return self.path(name)
        return f"{self.fs.unstrip_protocol(self.path(name))}"

    def staged(self, name: str) -> str:
        return f"{self.staging}/{name}"

    def _ensure_staging(self) -> None:
        if self._made_staging:
            return
        if self.local:
            Path(self.staging, "print").mkdir(parents=True, exist_ok=True)
        else:
            self.fs.makedirs(self.staging + "/print", exist_ok=True)
        self._made_staging = True

    def stage(self, name: str, data: bytes) -> Any:
        """Write ``data`` under a staging name; returns an open handle to sync (local)."""
        self._ensure_staging()
        target = self.staged(name)
        if not self.local:
            self.fs.pipe_file(target, data)
            return None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            raise
        return fd

    def sync(self, handles: Iterable[Any]) -> None:
        """Make staged files durable before the record commit that refers to them.

        On Linux one ``syncfs`` of the output's file system replaces an ``fsync``
        per file (about ten times cheaper for a commit of a few hundred files).
        """
        fds = [fd for fd in handles if fd is not None]
        per_file = self.durable and _syncfs is None
        try:
            if per_file:
                for fd in fds:
                    os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)
        if self.durable and self.local and self._made_staging:
            if _syncfs is not None and fds:
                _syncfs(self.staging)
            _fsync_dir(self.staging)

    def publish(self, staged_name: str, final_name: str) -> None:
        """Move a staged file to its final name (atomic on local disks)."""
        if self.local:
            os.replace(self.staged(staged_name), self.path(final_name))
        else:
            self.fs.mv(self.staged(staged_name), self.path(final_name))

    def publish_done(self) -> None:
        if self.durable and self.local:
            _fsync_dir(self.root)

    def discard(self, staged_name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                os.unlink(self.staged(staged_name))
            else:
                self.fs.rm_file(self.staged(staged_name))

    def exists(self, name: str) -> bool:
        target = self.path(name)
        return os.path.exists(target) if self.local else bool(self.fs.exists(target))

    def staged_exists(self, name: str) -> bool:
        target = self.staged(name)
        return os.path.exists(target) if self.local else bool(self.fs.exists(target))

    def read_staged(self, name: str) -> bytes:
        if self.local:
            return Path(self.staged(name)).read_bytes()
        data: bytes = self.fs.cat_file(self.staged(name))
        return data

    def write(self, name: str, data: bytes) -> None:
        """Write a final file atomically (temp + rename)."""
        if self.local:
            from ccm._util import atomic_write

            atomic_write(self.path(name), data)
        else:
            tmp = self.staged(f"{secrets.token_hex(8)}.tmp")
            self._ensure_staging()
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, self.path(name))

    @contextlib.contextmanager
    def open_final(self, name: str, mode: str = "wb") -> Iterator[IO[Any]]:
        """Open a final file for streaming writes; it appears only when complete."""
        self._ensure_staging()
        tmp = self.staged(f"{secrets.token_hex(8)}.tmp")
        opener: Any = open if self.local else self.fs.open
        kwargs: dict[str, Any] = {"newline": ""} if "b" not in mode else {}
        if "b" not in mode:
            kwargs["encoding"] = "utf-8"
        try:
            with opener(tmp, mode, **kwargs) as fh:
                yield fh
                if self.local and self.durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            if self.local:
                os.replace(tmp, self.path(name))
            else:
                self.fs.mv(tmp, self.path(name))
        except BaseException:
            with contextlib.suppress(OSError):
                if self.local:
                    os.unlink(tmp)
                else:
                    self.fs.rm_file(tmp)
            raise

    def print_copies(self) -> str:
        return self.staged("print")

    def cleanup(self) -> None:
        """Remove the staging folder (left-overs are renders that were never committed)."""
        if self.local:
            import shutil

            shutil.rmtree(self.staging, ignore_errors=True)
        elif self.fs.exists(self.staging):
            self.fs.rm(self.staging, recursive=True)
        self._made_staging = False


def _load_syncfs() -> Callable[[str], None] | None:
    """``syncfs(2)`` through libc on Linux, else None (fsync each file instead)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return None

    def syncfs(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if call(fd) != 0:
                raise OSError(ctypes.get_errno(), f"syncfs failed for {path}")
        finally:
            os.close(fd)

    return syncfs


_syncfs = _load_syncfs()


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- executors -----------------------------------------------------------------


class _Pool:
    """The executor a run submits to; replaces its own process pool when a worker dies."""

    def __init__(self, spec: _Spec, executor: cf.Executor | None, workers: int) -> None:
        self.spec = spec
        self.workers = workers
        self._given = executor
        self._own: cf.ProcessPoolExecutor | None = None
        self.replaced = 0
        self.retired = 0
        self._tasks = 0
        if executor is None and workers > 0:
            self._own = self._start()

    @property
    def inline(self) -> bool:
        return self._given is None and self._own is None

    @property
    def restartable(self) -> bool:
        return self._own is not None

    def _start(self) -> cf.ProcessPoolExecutor:
        # forkserver: workers never inherit the parent's threads (progress bar,
        # database driver), and starting a replacement is cheap.
        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["ccm.batch.run", "ccm.render.engine"])
        return cf.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
            initargs=(self.spec,),
        )

    @property
    def capacity(self) -> int:
        """How many tasks run at once."""
        if self._given is not None:
            return _executor_capacity(self._given)
        return max(self.workers, 1)

    def submit(self, rows: list[tuple[int, Any, tuple[str, ...] | None, Any]]) -> cf.Future[Any]:
        if self.inline:
            future: cf.Future[Any] = cf.Future()
            try:
                future.set_result(render_rows(self.spec, rows))
            except BaseException as exc:
                future.set_exception(exc)
            return future
        executor = self._given or self._own
        assert executor is not None
        try:
            return executor.submit(render_rows, self.spec, rows)
        except RuntimeError as exc:  # a broken pool refuses new work: report it per task
            failed: cf.Future[Any] = cf.Future()
            failed.set_exception(exc)
            return failed

    def retire_due(self) -> bool:
        """True once the pool's workers have run their ``tasks_per_worker`` (counted here)."""
        self._tasks += 1
        limit = self.spec.limits.tasks_per_worker if self.spec.limits is not None else None
        return self.restartable and limit is not None and self._tasks >= limit * self.workers

    def restart(self) -> None:
        if self._own is not None:
            limit = self.spec.limits.tasks_per_worker if self.spec.limits is not None else None
            if limit is not None and self._tasks >= limit * self.workers:
                self.retired += 1
            else:
                self.replaced += 1
            self._own.shutdown(wait=False, cancel_futures=True)
            self._own = self._start()
            self._tasks = 0

    def close(self) -> None:
        if self._own is not None:
            self._own.shutdown(wait=True, cancel_futures=True)
            self._own = None


def _executor_capacity(executor: cf.Executor) -> int:
    workers = getattr(executor, "_max_workers", None)
    if isinstance(workers, int) and workers > 0:
        return workers
    client = getattr(executor, "_client", None)
    if client is not None:  # distributed.cfexecutor.ClientExecutor
        with contextlib.suppress(Exception):
            return max(int(sum(client.nthreads().values())), 1)
    return os.cpu_count() or 1


def _is_worker_death(exc: BaseException) -> bool:
    if isinstance(exc, cf.process.BrokenProcessPool):
        return True
    return type(exc).__name__ in ("KilledWorker", "CommClosedError")


# --- the run -------------------------------------------------------------------


@dataclass
class _Task:
    rows: list[tuple[int, Any, tuple[str, ...] | None, Any]]
    rewrite: frozenset[tuple[int, str]] = frozenset()
    isolated: bool = False


@dataclass
class _Pending:
    """A rendered message waiting for the next commit."""

    line: int
    customer_id: str | None
    rendered: _Rendered
    staged_name: str | None = None
    handles: list[Any] = field(default_factory=list)
    rewrite: bool = False
    error: dict[str, Any] | None = None


def run_batch(
    template: str,
    requests: Iterable[Any],
    *,
    pack: str | os.PathLike[str],
    templates: str | os.PathLike[str] = "templates",
    out: str | os.PathLike[str],
    record_url: str | Record | None = None,
    run_id: str | None = None,
    channels: Sequence[str] | None = None,
    locale: str | None = None,
    executor: cf.Executor | None = None,
    workers: int = 1,
    on_event: Callable[[BatchEvent], None] | None = None,
    print_file: bool = False,
    limits: WorkerLimits | None = None,
    options: RenderOptions | None = None,
    chunk_size: int | None = None,
    window: int | None = None,
    durable: bool = True,
    total: int | None = None,
    master_key: Any = None,
    now: datetime | None = None,
) -> BatchSummary:
    """Render ``template`` for every request and keep the record; resumable by ``run_id``.

    ``requests`` yields :class:`~ccm.batch.inputs.InputRow`, :class:`~ccm.message.Request`
    or request mappings (line numbers are then positions, from 1). Work goes to
    ``executor`` when given (a ``concurrent.futures.Executor``, e.g.
    ``distributed.Client(...).get_executor()``), else to a process pool of
    ``workers`` processes (``workers=0`` renders in this process, without
    limits). ``record_url`` is a record URL or an open :class:`Record`;
    ``None`` uses ``CCM_RECORD_URL`` or ``sqlite:///ccm-record.db``.

    Rows that fail are written to ``out/errors.jsonl`` and counted; the run
    goes on. A :class:`~ccm.errors.ConfigError` stops it (after committing
    what was made) and is raised. ``now`` fixes the time the contact policy
    sees (quiet hours), e.g. to run "as of" a send time; default: the clock.
    """
    return _Batch(
        template=template, pack=pack, templates=templates, out=out, record_url=record_url,
        run_id=run_id, channels=channels, locale=locale, executor=executor, workers=workers,
        on_event=on_event, print_file=print_file, limits=limits, options=options,
        chunk_size=chunk_size, window=window, durable=durable, total=total,
        master_key=master_key, now=now,
    ).run(requests)


def request_schema(template: Template) -> dict[str, Any]:
    """The JSON Schema of a whole request for ``template``: types the cells of CSV input."""
    from ccm._schema import load_schema

    base = load_schema("request")
    return {
        "type": "object",
        "properties": {
            "customer": base["properties"]["customer"],
            "data": template.contract,
        },
        "$defs": template.contract.get("$defs", {}),
    }


def new_run_id() -> str:
    """A fresh run id: UTC time plus randomness, e.g. ``20250131T120000-1a2b3c``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class _Batch:
    """One run's state; :func:`run_batch` is the public face."""

    def __init__(self, *, template: str, pack: str | os.PathLike[str],
                 templates: str | os.PathLike[str], out: str | os.PathLike[str],
                 record_url: str | Record | None, run_id: str | None,
                 channels: Sequence[str] | None, locale: str | None,
                 executor: cf.Executor | None, workers: int,
                 on_event: Callable[[BatchEvent], None] | None, print_file: bool,
                 limits: WorkerLimits | None, options: RenderOptions | None,
                 chunk_size: int | None, window: int | None, durable: bool,
                 total: int | None, master_key: Any, now: datetime | None) -> None:
        from ccm.errors import UnknownChannel
        from ccm.render.engine import Engine, default_record_url

        if workers < 0:
            raise ValueError("workers must be 0 or more")
        self.engine = Engine(pack, templates, record=None, options=options)
        self.tpl = self.engine.template(template)
        wanted = tuple(channels) if channels else tuple(c for c in CHANNELS
                                                       if c in self.tpl.channels)
        for channel in wanted:
            if channel not in self.tpl.channels:
                raise UnknownChannel(
                    f"template {self.tpl.id!r} has no {channel!r} channel; it has: "
                    f"{', '.join(self.tpl.channels)}",
                    template=self.tpl.id, channel=channel, available=list(self.tpl.channels),
                )
        self.channels = tuple(c for c in CHANNELS if c in wanted)
        if print_file and "pdf" not in self.channels:
            raise ValueError("--print-file needs the pdf channel")
        self.run_id = run_id or new_run_id()
        self.spec = _Spec(
            pack=str(Path(pack).resolve()), templates=str(Path(templates).resolve()),
            template=template, run_id=self.run_id, channels=self.channels, locale=locale,
            print_copy=print_file, options=options,
            limits=limits if limits is not None else WorkerLimits(), now=now,
        )
        self.record = self._open_record(record_url or default_record_url(), master_key)
        self._owns_record = self.record is not record_url
        self.output = _Output(out, self.run_id, durable=durable)
        self.on_event = on_event
        self.print_file = print_file
        self.executor = executor
        self.workers = workers
        self.fixed_chunk = chunk_size
        self.chunk_size = chunk_size or 1
        self._row_seconds: float | None = None
        self.window = window
        self.summary = BatchSummary(run_id=self.run_id, template=template,
                                    out=self.output.url, total=total)
        self.suppressed: Counter[str] = Counter()
        self._pending: list[_Pending] = []
        self._errors: IO[str] | None = None
        self._print_order: IO[str] | None = None
        self._last_commit = time.monotonic()
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._caps: dict[str, Any] = {
            c: self.engine.policy.caps_for(self.tpl.message_type, c) for c in self.channels
        } if self.engine.pack.policy else {}
        self._config_error: BaseException | None = None
        self._overrides = getattr(self.record, "consent_overrides", None)
        self._ahead: deque[InputRow] = deque()
        self._known: dict[str, Any] = {}
        self._consent: dict[str, Any] = {}

    @staticmethod
    def _open_record(record: Any, master_key: Any) -> Any:
        from ccm.record import Record

        if isinstance(record, Record):
            return record
        key = master_key
        from_env = any(os.environ.get(n) for n in ("CCM_MASTER_KEY", "CCM_MASTER_KEY_FILE"))
        if key is None and from_env:
            from ccm.record import MasterKey

            key = MasterKey.from_env()
        return Record(str(record), master_key=key)

    # -- events -------------------------------------------------------------------

    def _emit(self, kind: EventKind, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(BatchEvent(kind, data))

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_SECONDS:
            return
        self._last_progress = now
        s = self.summary
        elapsed = now - self._started
        rate = s.rows / elapsed if elapsed > 0 else 0.0
        eta = None
        if s.total is not None and rate > 0:
            eta = round(max(s.total - s.rows, 0) / rate, 1)
        self._emit("progress", done=s.rows, total=s.total, generated=s.generated,
                   suppressed=sum(self.suppressed.values()), duplicate=s.duplicate,
                   failed=s.failed, rate=round(rate, 2), eta=eta,
                   elapsed=round(elapsed, 2))

    # -- the loop -------------------------------------------------------------------

    def run(self, requests: Iterable[Any]) -> BatchSummary:
        self._started = time.monotonic()
        errors_name = "errors.jsonl"
        self.summary.errors_file = self.output.display(errors_name)
        logger.info("batch %s: template %s, channels %s", self.run_id, self.tpl.id,
                    ",".join(self.channels))
        self._emit("start", run_id=self.run_id, template=self.tpl.id,
                   channels=list(self.channels), total=self.summary.total,
                   out=self.output.url, workers=self.workers)
        pool = _Pool(self.spec, self.executor, self.workers)
        self.pool = pool
        try:
            with self.output.open_final(errors_name, "w") as errors:
                self._errors = errors
                if self.print_file:
                    self._print_order = self._open_print_order()
                try:
                    self._loop(pool, _rows(requests))
                finally:
                    self._commit()
                    if self._print_order is not None:
                        self._print_order.close()
            if self._config_error is not None:
                raise self._config_error
            if self.print_file:
                self._write_print_stream()
            self.output.cleanup()
        finally:
            pool.close()
            self.summary.workers_replaced = pool.replaced
            self.summary.workers_retired = pool.retired
            self.summary.suppressed = dict(self.suppressed)
            self.summary.elapsed = time.monotonic() - self._started
            if self._owns_record:
                self.record.close()
        self._progress(force=True)
        self._emit("done", **self.summary.to_dict())
        logger.info("batch %s done: %s", self.run_id, self.summary.to_dict())
        return self.summary

    def _loop(self, pool: _Pool, rows: Iterator[InputRow]) -> None:
        capacity = pool.capacity
        window = self.window or max(2, capacity * 3)
        in_flight: dict[cf.Future[Any], _Task] = {}
        suspects: deque[_Task] = deque()
        exhausted = False
        chunk: list[tuple[int, Any, tuple[str, ...] | None, Any]] = []
        rewrite: set[tuple[int, str]] = set()
        recycle = False
        while True:
            if self._config_error is not None:
                for future in in_flight:
                    future.cancel()
                return
            if recycle and not in_flight:
                # Out of memory, or old enough to retire: drain, then start fresh processes.
                pool.restart()
                recycle = False
            # Isolation: after a worker died, suspects run one at a time, alone.
            if suspects and not in_flight and not recycle:
                task = suspects.popleft()
                in_flight[pool.submit(task.rows)] = task
            isolating = any(t.isolated for t in in_flight.values())
            while (not suspects and not isolating and not recycle and not exhausted
                   and len(in_flight) < window):
                row = self._next_row(rows)
                if row is None:
                    exhausted = True
                    if chunk:
                        in_flight[pool.submit(chunk)] = _Task(chunk, frozenset(rewrite))
                        chunk, rewrite = [], set()
                    break
                prepared = self._prepare(row)
                if prepared is None:
                    continue
                item, redo = prepared
                chunk.append(item)
                rewrite.update((row.line, c) for c in redo)
                if len(chunk) >= self.chunk_size:
                    in_flight[pool.submit(chunk)] = _Task(chunk, frozenset(rewrite))
                    chunk, rewrite = [], set()
            if not in_flight:
                if exhausted and not suspects:
                    return
                continue
            done, _ = cf.wait(in_flight, timeout=COMMIT_SECONDS,
                              return_when=cf.FIRST_COMPLETED)
            broken: list[_Task] = []
            for future in done:
                task = in_flight.pop(future)
                try:
                    results = future.result()
                except BaseException as exc:
                    if _is_worker_death(exc) or isinstance(exc, cf.CancelledError):
                        broken.append(task)
                        continue
                    raise
                for result in results:
                    if result.recycle and pool.restartable:
                        recycle = True
                        if not task.isolated:
                            # Out of memory, maybe because of a neighbour: retry alone, fresh.
                            suspects.append(_Task(
                                [row for row in task.rows if row[0] == result.line],
                                frozenset(x for x in task.rewrite if x[0] == result.line),
                                isolated=True,
                            ))
                            continue
                    self._collect(result, task.rewrite)
                self._tune(results)
                recycle = recycle or pool.retire_due()
            if broken:
                self._recover(pool, broken, in_flight, suspects)
            if (len(self._pending) >= COMMIT_MESSAGES
                    or time.monotonic() - self._last_commit >= COMMIT_SECONDS):
                self._commit()
            self._progress()

    def _tune(self, results: list[_RowResult]) -> None:
        """Size tasks to about :data:`TASK_SECONDS` of work: one PDF, or a few hundred SMS."""
        if self.fixed_chunk is not None or not results:
            return
        seconds = sum(r.seconds for r in results) / len(results)
        avg = seconds if self._row_seconds is None else 0.8 * self._row_seconds + 0.2 * seconds
        self._row_seconds = avg
        self.chunk_size = max(1, min(MAX_CHUNK, int(TASK_SECONDS / max(avg, 1e-6))))

    def _recover(self, pool: _Pool, broken: list[_Task], in_flight: dict[cf.Future[Any], _Task],
                 suspects: deque[_Task]) -> None:
        """A worker died: find the row that killed it by running the suspects one at a time."""
        if pool.restartable:
            # A broken process pool loses every task still in flight with it.
            broken.extend(in_flight.values())
            in_flight.clear()
            pool.restart()
        alone = len(broken) == 1 and len(broken[0].rows) == 1
        for task in broken:
            if task.isolated or alone:
                self._worker_died(task)
                continue
            for row in task.rows:
                redo = frozenset(x for x in task.rewrite if x[0] == row[0])
                suspects.append(_Task([row], redo, isolated=True))
        if suspects:
            logger.warning("a worker process died; %d row(s) will be retried one at a time",
                           len(suspects))

    def _worker_died(self, task: _Task) -> None:
        for line, obj, _, _ in task.rows:
            cid = InputRow(line, obj).customer_id
            self._fail(line, cid, {
                "error": "WorkerDied",
                "message": "the worker process rendering this row died (memory or CPU budget "
                           "exceeded, or a crash); it was replaced",
            })

    # -- before submitting: resume ------------------------------------------------

    def _prepare(self, row: InputRow) -> tuple[tuple[int, Any, tuple[str, ...] | None, Any],
                                                  tuple[str, ...]] | None:
        """Skip what the record already has; return the work left for this row."""
        if row.error is not None:
            self._fail(row.line, row.customer_id, {"error": "InputError", "message": row.error})
            return None
        customer_id = row.customer_id
        if customer_id is None:  # the worker reports the shape error with its path
            return (row.line, row.request, None, None), ()
        todo: list[str] = []
        redo: list[str] = []
        for channel in self.channels:
            entry = self._find_key(_key(self.run_id, self.tpl.id, customer_id, channel))
            if entry is None:
                todo.append(channel)
                continue
            if entry.params_sha256 != self._params(row, channel):
                self._fail(row.line, customer_id, {
                    "error": "IdempotencyConflict", "channel": channel,
                    "message": f"customer {customer_id}: {channel} message "
                               f"{entry.message_id} of run {self.run_id} was made from other "
                               "data or sources; use a new run id to send it again",
                })
                return None
            if not self._restore(row.line, entry):
                todo.append(channel)
                redo.append(channel)
        if not todo:
            self.summary.rows += 1
            self.summary.skipped += 1
            self.summary.duplicate += len(self.channels)
            return None
        # The channels already recorded (a row cut off mid-way, or a deferred SMS
        # beside a sent PDF and email) are duplicates of this run too.
        self.summary.duplicate += len(self.channels) - len(todo)
        overrides = self._consent_of(customer_id)
        channels = None if len(todo) == len(self.channels) else tuple(todo)
        return (row.line, row.request, channels, overrides), tuple(redo)

    def _next_row(self, rows: Iterator[InputRow]) -> InputRow | None:
        """The next input row; rows are read :data:`LOOKUP_ROWS` at a time so that what the
        record knows about them (resume keys, withdrawn consent) comes in two queries, not
        two per row."""
        if not self._ahead:
            block = list(itertools.islice(rows, LOOKUP_ROWS))
            if not block:
                return None
            self._ahead.extend(block)
            self._lookup(block)
        return self._ahead.popleft()

    def _lookup(self, block: list[InputRow]) -> None:
        customers = {row.customer_id for row in block
                     if row.error is None and row.customer_id is not None}
        self._known.clear()
        self._consent.clear()
        if not customers:
            return
        find_keys = getattr(self.record, "find_keys", None)
        if find_keys is not None:
            keys = [_key(self.run_id, self.tpl.id, cid, channel)
                    for cid in customers for channel in self.channels]
            found = find_keys(keys)
            self._known.update(dict.fromkeys(keys))
            self._known.update(found)
        many = getattr(self.record, "consent_overrides_many", None)
        if many is not None and self._overrides is not None:
            self._consent.update(many(customers))

    def _find_key(self, key: str) -> Any:
        if key in self._known:
            return self._known[key]
        return self.record.find_key(key)

    def _consent_of(self, customer_id: str) -> Any:
        if self._overrides is None:
            return None
        if customer_id in self._consent:
            return self._consent[customer_id]
        return self._overrides(customer_id)

    def _params(self, row: InputRow, channel: str) -> str | None:
        """What this row's message on ``channel`` would commit to (as the engine computes it)."""
        from ccm.render.template import validate_request

        try:
            req = validate_request(row.request)
        except MessageError:
            return None
        locale = self.spec.locale or self.engine.pack.resolve_locale(req.customer.get("locale"))
        return self.engine._params_sha256(self.tpl, req, channel, locale)

    def _restore(self, line: int, entry: Any) -> bool:
        """Make sure a recorded message's file is in ``out/``; False if it must be re-rendered."""
        if entry.status != "generated" or not entry.content_sha256:
            return True
        final = _filename(entry.customer_id, entry.template, entry.locale, entry.channel)
        staged = entry.message_id + SUFFIXES[entry.channel]
        if self.output.staged_exists(staged):
            data = self.output.read_staged(staged)
            if hashlib.sha256(data).hexdigest() == entry.content_sha256:
                self.output.publish(staged, final)
                self.summary.restored += 1
                self._note_print(line, entry.customer_id, entry.message_id, entry.channel)
                return True
            self.output.discard(staged)
        if self.output.exists(final):
            self._note_print(line, entry.customer_id, entry.message_id, entry.channel)
            return True
        content = self._archived(entry.message_id)
        if content is not None and hashlib.sha256(content).hexdigest() == entry.content_sha256:
            self.output.write(final, content)
            self.summary.restored += 1
            self._note_print(line, entry.customer_id, entry.message_id, entry.channel)
            return True
        return False

    def _archived(self, message_id: str) -> bytes | None:
        reader = getattr(self.record, "content", None)
        if reader is None:
            return None
        try:
            content = reader(message_id)
        except Exception:  # erased, no key, no archive: re-render instead
            return None
        return content if isinstance(content, bytes) else None

    # -- after a worker answered ----------------------------------------------------

    def _collect(self, result: _RowResult, rewrite: frozenset[tuple[int, str]]) -> None:
        if result.config_error is not None:
            self._config_error = result.config_error
            return
        if result.error is not None:
            self._fail(result.line, result.customer_id, result.error)
            return
        self.summary.rows += 1
        for rendered in result.messages:
            pending = _Pending(result.line, result.customer_id, rendered,
                               rewrite=(result.line, rendered.channel) in rewrite)
            if rendered.status == "generated" and rendered.content:
                pending.staged_name = rendered.entry["message_id"] + SUFFIXES[rendered.channel]
                pending.handles.append(self.output.stage(pending.staged_name, rendered.content))
                if rendered.print_pdf is not None:
                    pending.handles.append(self.output.stage(
                        f"print/{rendered.entry['message_id']}.pdf", rendered.print_pdf))
            self._pending.append(pending)

    def _fail(self, line: int, customer_id: str | None, error: Mapping[str, Any]) -> None:
        self.summary.rows += 1
        self.summary.failed += 1
        record = {"line": line, "customer_id": customer_id, **error}
        record.pop("traceback", None)
        if self._errors is not None:
            self._errors.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            self._errors.flush()
        logger.warning("line %s (customer %s): %s: %s", line, customer_id,
                       error.get("error"), error.get("message"))
        self._emit("error", **record)

    # -- commit -----------------------------------------------------------------------

    def _commit(self) -> None:
        """Sync staged files, append to the record, then publish (see the module doc)."""
        self._last_commit = time.monotonic()
        pending, self._pending = self._pending, []
        if not pending:
            return
        self.output.sync(h for p in pending for h in p.handles)
        appended = self._append_all([p for p in pending if not p.rewrite])
        published = False
        failed_lines: set[int] = set()
        for p in pending:
            rendered = p.rendered
            if p.rewrite:
                # The record has this message but neither its file nor its content:
                # the re-rendered file replaces it (its digest differs from the record's).
                if p.staged_name is not None:
                    self.output.publish(p.staged_name, rendered.filename)
                    published = True
                    self.summary.rerendered += 1
                    self._note_print(p.line, p.customer_id or "", rendered.entry["message_id"],
                                     rendered.channel)
                continue
            status, reason, message_id = appended[id(p)]
            if status == "generated":
                self.summary.generated += 1
                if p.staged_name is not None:
                    self.output.publish(p.staged_name, rendered.filename)
                    published = True
                    self._note_print(p.line, p.customer_id or "", message_id, rendered.channel)
                continue
            if p.staged_name is not None:
                self.output.discard(p.staged_name)
                if rendered.print_pdf is not None:
                    self.output.discard(f"print/{rendered.entry['message_id']}.pdf")
            if status == "failed":
                if p.line not in failed_lines:
                    failed_lines.add(p.line)
                    self.summary.rows -= 1  # counted again by _fail
                    self._fail(p.line, p.customer_id,
                               {**(p.error or {}), "channel": rendered.channel})
            elif status == "suppressed":
                self.suppressed[reason or "policy"] += 1
            else:
                self.summary.duplicate += 1
        if published:
            self.output.publish_done()
        logger.debug("committed %d message(s)", len(pending))

    def _append_all(self, pending: list[_Pending]) -> dict[int, tuple[str, str | None, str]]:
        from ccm.record import Entry

        out: dict[int, tuple[str, str | None, str]] = {}
        items = []
        for p in pending:
            fields = dict(p.rendered.entry)
            fields["created_at"] = datetime.fromisoformat(fields["created_at"])
            generated = p.rendered.status == "generated"
            caps = self._caps.get(p.rendered.channel, ()) if generated else ()
            items.append((p, Entry(**fields), caps))
        bulk = getattr(self.record, "append_many", None)
        if bulk is not None and items:
            results = bulk([
                {"entry": entry, "content": p.rendered.content or None,
                 "archival": p.rendered.archival, "caps": caps}
                for p, entry, caps in items
            ])
        else:
            results = []
            for p, entry, caps in items:
                try:
                    results.append(self.record.append(
                        entry, content=p.rendered.content or None,
                        archival=p.rendered.archival, caps=caps))
                except MessageError as exc:  # e.g. IdempotencyConflict: this message only
                    results.append(exc)
        for (p, entry, _), result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                out[id(p)] = ("failed", None, entry.message_id)
                p.error = _describe_error(result)
                continue
            status = result.status
            if status in ("appended", "generated", "ok", "new", "recorded"):
                status = p.rendered.status
            if status == "suppressed" and p.rendered.status == "suppressed":
                reason = p.rendered.entry.get("reason")
            else:
                reason = getattr(result, "reason", None)
            message_id = getattr(getattr(result, "entry", None), "message_id", entry.message_id)
            out[id(p)] = (status, reason, message_id)
        return out

    # -- the print stream ------------------------------------------------------------

    def _open_print_order(self) -> IO[str]:
        self.output._ensure_staging()
        target = self.output.staged("print/order.jsonl")
        if self.output.local:
            return open(target, "a", encoding="utf-8")
        handle: IO[str] = self.output.fs.open(target, "a")
        return handle

    def _note_print(self, line: int, customer_id: str, message_id: str, channel: str) -> None:
        if self._print_order is None or channel != "pdf":
            return
        self._print_order.write(json.dumps([line, customer_id, message_id]) + "\n")

    def _write_print_stream(self) -> None:
        from ccm.batch.printstream import PrintStream, write_index

        order_path = self.output.staged("print/order.jsonl")
        seen: dict[int, tuple[str, str]] = {}
        opener: Any = open if self.output.local else self.output.fs.open
        with contextlib.suppress(FileNotFoundError), opener(order_path, "r") as fh:
            for text in fh:
                line, customer_id, message_id = json.loads(text)
                seen[int(line)] = (customer_id, message_id)
        entries = []
        name = f"print-{safe_filename(self.run_id)}.pdf"
        with self.output.open_final(name) as target:
            stream = PrintStream(target, title=f"{self.tpl.name} ({self.run_id})")
            for line in sorted(seen):
                customer_id, message_id = seen[line]
                copy = f"print/{message_id}.pdf"
                if not self.output.staged_exists(copy):
                    logger.warning("no print copy for message %s (line %s)", message_id, line)
                    continue
                entries.append(stream.add(self.output.read_staged(copy), customer_id, message_id))
            stream.close()
        index = f"print-{safe_filename(self.run_id)}.csv"
        with self.output.open_final(index, "w") as fh:
            write_index(fh, entries)
        self.summary.print_file = self.output.display(name)
        self.summary.print_index = self.output.display(index)


def _rows(requests: Iterable[Any]) -> Iterator[InputRow]:
    for position, item in enumerate(requests, 1):
        if isinstance(item, InputRow):
            yield item
        elif isinstance(item, Request):
            yield InputRow(position, item.to_dict())
        else:
            yield InputRow(position, item)


_ = DataError  # documented in errors.jsonl entries
