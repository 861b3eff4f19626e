"""The output folder of a batch run: staged files, publishing by rename, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ccm._util import portable_name

logger = logging.getLogger("ccm.batch.run")
logger.addHandler(logging.NullHandler())

#: Staged files synced one by one up to this many per commit; more take one ``syncfs``.
SYNCFS_ABOVE = 16


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
        #: What the run began with (its output format), kept in the folder after the run.
        self.marker = f"{self.root}/.ccm-run-{tag}.json"
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
        per file when there are many (about ten times cheaper for a commit of a few
        hundred files). A few files (a JSONL or zip chunk, a handful of PDFs) are
        fsynced one by one: ``syncfs`` flushes everything dirty on the file system,
        the other workers' files and record too, and with two workers it made the
        run no faster than one (figure g2 in docs/performance.md).
        """
        fds = [fd for fd in handles if fd is not None]
        few = len(fds) <= SYNCFS_ABOVE
        per_file = self.durable and (_syncfs is None or few)
        try:
            if per_file:
                for fd in fds:
                    os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)
        if self.durable and self.local and self._made_staging:
            if _syncfs is not None and fds and not few:
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

    def read(self, name: str) -> bytes | None:
        """A final file's bytes, or None when there is none."""
        try:
            if self.local:
                return Path(self.path(name)).read_bytes()
            data: bytes = self.fs.cat_file(self.path(name))
        except FileNotFoundError:
            return None
        return data

    def has_files(self) -> bool:
        """Whether the folder holds anything but ccm's own staging folders and run notes
        (then names may be taken)."""
        return any(not name.startswith((".ccm-staging-", ".ccm-run-")) for name in self.names())

    def names(self) -> list[str]:
        """The names in the folder itself, sorted."""
        if self.local:
            try:
                return sorted(os.listdir(self.root))
            except FileNotFoundError:
                return []
        try:
            listed = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:  # object stores have no empty folders
            return []
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed)

    def run_format(self) -> str | None:
        """The output format this run began with in this folder (its note), or None."""
        try:
            if self.local:
                text = Path(self.marker).read_text(encoding="utf-8")
            else:
                text = self.fs.cat_file(self.marker).decode("utf-8")
            value = json.loads(text).get("output_format")
        except (FileNotFoundError, ValueError, AttributeError, UnicodeDecodeError):
            return None
        return value if isinstance(value, str) else None

    def note_run_format(self, run_id: str, output_format: str) -> None:
        """Keep the run's output format in the folder, so a rerun resumes with it."""
        data = json.dumps({"run_id": run_id, "output_format": output_format}).encode() + b"\n"
        if self.local:
            from ccm._util import atomic_write

            atomic_write(self.marker, data)
        else:
            self.fs.pipe_file(self.marker, data)

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

    # -- who writes into the folder ------------------------------------------------

    def lock(self, *, shared: bool, wait: float | None = None) -> int | None:
        """Lock the output folder (local folders on POSIX; else None): ``shared`` for a run's
        writers, exclusive to wait until no one else writes here.

        Exclusive waits up to ``wait`` seconds (None: forever) and raises
        :class:`TimeoutError` past it. Returns the descriptor to :meth:`unlock`.
        """
        if not self.local or _fcntl is None:
            return None
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if shared:
                _fcntl.flock(fd, _fcntl.LOCK_SH)
                return fd
            deadline = None if wait is None else time.monotonic() + wait
            while True:
                try:
                    _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError(self.root) from None
                    time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def unlock(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the lock

    @staticmethod
    def share(fd: int | None) -> None:
        """Turn an exclusive lock into a shared one (writers of the same run may join)."""
        if fd is not None and _fcntl is not None:
            _fcntl.flock(fd, _fcntl.LOCK_SH)

    def print_copies(self) -> str:
        return self.staged("print")

    def write_print_stream(self, run_id: str, title: str) -> tuple[str, str]:
        """Concatenate the staged print copies, in input order, into the print stream.

        Returns the names of the stream PDF and its index CSV.
        """
        from ccm.batch.printstream import PrintStream, write_index

        order_path = self.staged("print/order.jsonl")
        seen: dict[int, tuple[str, str]] = {}
        opener: Any = open if self.local else self.fs.open
        with contextlib.suppress(FileNotFoundError), opener(order_path, "r") as fh:
            for text in fh:
                line, customer_id, message_id = json.loads(text)
                seen[int(line)] = (customer_id, message_id)
        entries = []
        name = f"print-{portable_name(run_id)}.pdf"
        with self.open_final(name) as target:
            stream = PrintStream(target, title=title)
            for line in sorted(seen):
                customer_id, message_id = seen[line]
                copy = f"print/{message_id}.pdf"
                if not self.staged_exists(copy):
                    logger.warning("no print copy for message %s (line %s)", message_id, line,
                                   extra={"operator": True})
                    continue
                entries.append(stream.add(self.read_staged(copy), customer_id, message_id))
            stream.close()
        index = f"print-{portable_name(run_id)}.csv"
        with self.open_final(index, "w") as fh:
            write_index(fh, entries)
        return name, index

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

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - not POSIX: no folder lock
    _fcntl = None  # type: ignore[assignment]


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
