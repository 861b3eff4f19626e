"""The value objects a batch run shows its caller: limits, events, the summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EventKind = Literal["waiting", "start", "progress", "error", "done"]




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
    """What a batch run did. Counts ``generated``, ``suppressed``, ``deferred`` and ``duplicate``
    are messages; ``rows``, ``failed`` and ``skipped`` are input rows.

    ``deferred`` messages were held by quiet hours (``action: defer``): they are not
    suppressions, a rerun with the same run id after the window sends them.
    ``deferred_until`` says when the windows end: ``earliest`` and ``latest`` (ISO 8601
    in the customer's time) with their zones, ``earliest_zone`` and ``latest_zone``.
    """

    run_id: str
    template: str
    out: str
    rows: int = 0
    generated: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    deferred_until: dict[str, str] | None = None
    duplicate: int = 0
    failed: int = 0
    skipped: int = 0
    restored: int = 0
    rerendered: int = 0
    workers_replaced: int = 0
    workers_retired: int = 0
    elapsed: float = 0.0
    #: CPU seconds of the parent process (the run's own work: reading, the record, outputs;
    #: with ``workers=0`` rendering too), to size what the parent costs per message.
    parent_cpu: float = 0.0
    #: Peak resident memory (MiB) of the parent, and of the largest worker process
    #: (reported by the workers with each task; the parent's own with ``workers=0``).
    parent_max_rss_mb: float = 0.0
    worker_max_rss_mb: float = 0.0
    errors_file: str | None = None
    print_file: str | None = None
    print_index: str | None = None
    total: int | None = None

    @property
    def messages(self) -> int:
        """Messages accounted for in this run (generated, suppressed, deferred or already
        recorded)."""
        return self.generated + sum(self.suppressed.values()) + self.deferred + self.duplicate

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
        out["parent_cpu"] = round(self.parent_cpu, 3)
        out["exit_status"] = self.exit_status
        return out
