"""SIGINT and SIGTERM while a batch run's process pool is in use: noted, acted on at a safe point.

A signal's usual effect (``KeyboardInterrupt``) is raised at whatever line the
parent is running. When that line is inside the process pool's own bookkeeping
(half way through starting a worker, say), the pool can be left neither usable
nor able to shut down, and the process hangs at exit joining a worker that waits
for work forever -- holding the output folder its resume then waits for. So
while the pool is in use the run only notes the signal (:class:`StopSignals`);
its loop stops at the next safe point, stops the workers (a short grace, then
terminate, then kill), and hands the signal to the handler that was there before
(the CLI's, Python's ``KeyboardInterrupt``, or the default action).

Workers never act on SIGINT themselves -- the terminal sends Ctrl-C to the whole
process group, workers included, and the parent decides -- and processes are
started with SIGINT blocked (:func:`sigint_blocked`), so one cannot interrupt a
worker, or the forkserver, while it starts up either.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any, NoReturn

#: The signals that stop a run: Ctrl-C, and ``kill`` / a service manager stopping it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run noted a stop signal: raised at a safe point of its loop, never seen outside."""


class StopSignals:
    """Note SIGINT and SIGTERM instead of acting on them, until :meth:`restore`.

    Only in the main thread (the only one Python runs handlers in), and only for
    signals not ignored (``nohup``): an ignored signal stays ignored.
    """

    def __init__(self) -> None:
        #: The first stop signal received, or None.
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            current = signal.getsignal(sig)
            if current == signal.SIG_IGN:
                continue
            self._previous[sig] = signal.SIG_DFL if current is None else current
            signal.signal(sig, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    def check(self) -> None:
        """Raise :class:`Interrupted` when a stop signal came (a safe point of the loop)."""
        if self.signum is not None:
            raise Interrupted

    def restore(self) -> None:
        """Put the handlers that were there before back."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def deliver(self) -> NoReturn:
        """Hand the noted signal to the handler that was there before: it raises (Python's
        ``KeyboardInterrupt``, the CLI's), or ends the process (the default action); if it
        returns, the run still stops, with ``KeyboardInterrupt``."""
        assert self.signum is not None
        self.restore()
        signal.raise_signal(self.signum)  # runs a Python handler before returning
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while processes are started: a process inherits the mask
    (across ``exec`` too), so a worker or the forkserver cannot get a Ctrl-C before it has
    set SIGINT to be ignored. A SIGINT meanwhile waits, or goes to another thread."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_sigint() -> None:
    """In a worker: Ctrl-C is the parent's to act on (it stops the workers itself)."""
    with contextlib.suppress(ValueError):  # not the main thread (a Dask worker's task)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
