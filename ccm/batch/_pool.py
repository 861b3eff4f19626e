"""The executor a batch run submits to: its own process pool, or one it was given."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import time
from typing import Any

from ccm.batch._commit import _Committer, _Sink, _TaskResult, run_task
from ccm.batch._signals import sigint_blocked
from ccm.batch._worker import _init_worker, _Spec

#: Seconds the workers of a stopped run get to finish the task they hold before they are
#: terminated (what they commit then need not be made again on resume).
STOP_GRACE = 2.0
#: Seconds a terminated worker gets to exit before it is killed.
KILL_AFTER = 2.0


class _Pool:
    """The executor a run submits to; replaces its own process pool when a worker dies."""

    def __init__(self, spec: _Spec, sink: _Sink, executor: cf.Executor | None, workers: int,
                 committer: _Committer | None = None) -> None:
        self.spec = spec
        self.sink = sink
        #: The parent's committer, used when tasks run in this process (``workers=0``).
        self.committer = committer
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
            preload = ["ccm.batch._commit", "ccm.render.engine", "ccm.record"]
            if self.spec.makes_pdf:
                # WeasyPrint loaded once, not in every worker (nothing where it cannot load:
                # the forkserver stops on any error of a preload but ImportError).
                preload.append("ccm.batch._pdf_preload")
            ctx.set_forkserver_preload(preload)
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

    def submit(self, rows: list[tuple[int, Any, tuple[str, ...] | None, Any]],
               rewrite: frozenset[tuple[int, str]], rewrite_ids: dict[tuple[int, str], str],
               seq: int, retry_recycled: bool) -> cf.Future[_TaskResult]:
        """Run one task (:func:`ccm.batch._commit.run_task`) on a worker, or here."""
        if self.inline:
            future: cf.Future[_TaskResult] = cf.Future()
            try:
                future.set_result(run_task(self.spec, self.sink, rows, rewrite, rewrite_ids,
                                           seq, retry_recycled, self.committer))
            except BaseException as exc:
                future.set_exception(exc)
            return future
        executor = self._given or self._own
        assert executor is not None
        try:
            with sigint_blocked():  # a submit may start a worker (and the forkserver)
                return executor.submit(run_task, self.spec, self.sink, rows, rewrite,
                                       rewrite_ids, seq, retry_recycled)
        except RuntimeError as exc:  # a broken pool refuses new work: report it per task
            failed: cf.Future[Any] = cf.Future()
            failed.set_exception(exc)
            return failed

    def retire_due(self) -> bool:
        """True once the pool's workers have run their ``tasks_per_worker`` (counted here)."""
        self._tasks += 1
        limit = self.spec.limits.tasks_per_worker if self.spec.limits is not None else None
        return self.restartable and limit is not None and self._tasks >= limit * self.workers

    def restart(self, *, wait: bool = False) -> None:
        """Start fresh processes; ``wait``: only once the old ones have exited (a worker
        died: the others are stopped, and must be gone before their rows are looked up again).
        """
        if self._own is not None:
            limit = self.spec.limits.tasks_per_worker if self.spec.limits is not None else None
            if limit is not None and self._tasks >= limit * self.workers:
                self.retired += 1
            else:
                self.replaced += 1
            self._own.shutdown(wait=wait, cancel_futures=True)
            self._own = self._start()
            self._tasks = 0

    def close(self) -> None:
        """Shut the pool down once its tasks are done (the run finished, or a setup error)."""
        if self._own is not None:
            self._own.shutdown(wait=True, cancel_futures=True)
            self._own = None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop now (the run was interrupted): queued tasks are cancelled, running ones get
        ``grace`` seconds, then their processes are terminated, then killed.

        Never a join without a deadline: a pool stopped half way through starting a worker
        can wait forever for it. A given executor (Dask) is left alone: its workers are
        not this run's to stop, and the tasks it runs commit under the same protocol.
        """
        executor, self._own = self._own, None
        if executor is None:
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        manager = getattr(executor, "_executor_manager_thread", None)
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(KILL_AFTER)
            if process.is_alive():
                process.kill()
                process.join(KILL_AFTER)
        if manager is not None:  # it notices its workers are gone, and cleans up
            manager.join(KILL_AFTER)


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
    # cf.BrokenExecutor, not cf.process.BrokenProcessPool: ``concurrent.futures.process`` is
    # imported only once a process pool was made, and a --workers 0 run that failed with an
    # OSError met an AttributeError here instead of its own message.
    if isinstance(exc, cf.BrokenExecutor):
        return True
    return type(exc).__name__ in ("KilledWorker", "CommClosedError")
