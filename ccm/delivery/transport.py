"""The transport interface, per-transport retry and rate settings, and the folder transport.

A transport is anything with ``send(message) -> Receipt`` and ``close()``
(:class:`Transport`). It raises, for a message it did not deliver:

* :class:`~ccm.errors.TemporaryDeliveryError` -- not taken, try again later
  (SMTP 4xx, HTTP 429 / 5xx, connection refused); the sender retries with
  exponential backoff and jitter up to :attr:`Retry.max_attempts`;
* :class:`~ccm.errors.PermanentDeliveryError` -- refused for good (SMTP 5xx,
  an invalid number); the message fails at once;
* :class:`~ccm.errors.DeliveryUncertain` -- the transport cannot say
  whether it took the message (the connection dropped after the content was
  handed over); the message goes to review and is never resent blindly;
* :class:`~ccm.errors.TransportUnavailable` (a temporary error) when
  nothing was handed over because the transport itself cannot be reached
  (the relay refuses connections, the folder cannot be written): the sender
  puts the message back without counting an attempt and stops;
* a :class:`~ccm.errors.ConfigError` when the setup is wrong (bad
  credentials): the sender puts the message back and stops.

A transport that can tell, after a crash, whether it holds a message also
has ``check(message) -> Receipt | None`` (:class:`Checkable`); the folder
transport does. Nothing a transport logs or raises holds a recipient, the
content or a secret.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ccm._util import PHONE_NUMBER
from ccm.errors import PermanentDeliveryError, TemporaryDeliveryError, TransportUnavailable
from ccm.message import SUFFIXES, Outgoing, Receipt

__all__ = ["Checkable", "FolderTransport", "RateLimiter", "Retry", "Transport", "scrub"]

_ADDRESS = re.compile(r"[^\s<>\"(),;:]+@[^\s<>\"'(),;:]+")  # ' is valid in a local part (o'brien@)


def scrub(text: str, limit: int = 200) -> str:
    """A provider's reply made safe to store: one line, no email address or phone number.

    Replies often quote the recipient (``550 <bob@example.com>: unknown``,
    ``The 'To' number +4915... is not valid``); the record keeps no
    personal data, so those become ``<address>`` and ``<number>``.
    """
    flat = " ".join(str(text).split())
    flat = _ADDRESS.sub("<address>", flat)
    flat = PHONE_NUMBER.sub("<number>", flat)
    return flat[:limit]


@runtime_checkable
class Transport(Protocol):
    """What the sender needs from a transport: hand over one message, and close."""

    #: A short name for receipts and logs (``smtp``, ``twilio``, ``webhook``, ``folder``).
    name: str

    def send(self, message: Outgoing) -> Receipt:
        """Deliver ``message`` or raise one of the delivery errors (see the module doc)."""
        ...

    def close(self) -> None:
        """Release connections; ``send`` may reconnect afterwards."""
        ...


@runtime_checkable
class Checkable(Protocol):
    """A transport that can tell whether it already holds a message (after a crash)."""

    def check(self, message: Outgoing) -> Receipt | None:
        """The receipt when the transport holds ``message``, else ``None``."""
        ...


@dataclass(frozen=True)
class Retry:
    """Retries of temporary failures: ``base * 2**(attempt-1)`` seconds, capped, with jitter.

    The delay before attempt ``n + 1`` is drawn uniformly from
    ``[d / 2, d]`` with ``d = min(max_backoff, base * 2**(n - 1))`` ("equal
    jitter"), so senders that failed together do not retry together. After
    ``max_attempts`` attempts the message fails.
    """

    max_attempts: int = 5
    backoff: float = 30.0
    max_backoff: float = 3600.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise ValueError("max_attempts must be an integer >= 1")
        if not self.backoff >= 0 or not self.max_backoff >= self.backoff:
            raise ValueError("backoff must be >= 0 and max_backoff >= backoff")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** max(0, attempt - 1))
        draw = (rng or random).random()
        return float(ceiling / 2 + draw * ceiling / 2)


class RateLimiter:
    """At most ``rate`` messages per second from this process (a token bucket of one second).

    ``clock`` and ``sleep`` are injectable (monotonic seconds); ``None`` rate
    means no limit.
    """

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("rate must be > 0 messages per second")
        self.rate = rate
        self._clock, self._sleep = clock, sleep
        self._capacity = max(1.0, rate or 1.0)
        self._tokens = self._capacity
        self._last = clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until one message may go; returns the seconds waited."""
        if self.rate is None:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            pause = (1 - self._tokens) / self.rate
            self._sleep(pause)
            self._last = self._clock()
            self._tokens = 0.0
            return pause


class FolderTransport:
    """Writes each message to ``<folder>/<message id><suffix>`` (development, print drops).

    The file appears whole or not at all (written to a temporary name,
    flushed, then renamed), so :meth:`check` can tell after a crash whether
    a message was delivered: the file is there with the recorded digest.
    """

    name = "folder"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _path(self, message: Outgoing) -> Path:
        return self.folder / f"{message.message_id}{SUFFIXES.get(message.channel, '.bin')}"

    def send(self, message: Outgoing) -> Receipt:
        target = self._path(message)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".sending-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(message.content)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if exc.errno in _TRANSIENT_ERRNOS:
                raise TemporaryDeliveryError(
                    f"folder transport: cannot write {target.name} in {self.folder}: "
                    f"{exc.strerror}", transport=self.name, message_id=message.message_id,
                    code=exc.errno) from None
            if exc.errno in _MESSAGE_ERRNOS:
                raise PermanentDeliveryError(
                    f"folder transport: cannot write {target.name} in {self.folder}: "
                    f"{exc.strerror}", transport=self.name, message_id=message.message_id,
                    code=exc.errno) from None
            # The folder itself refuses (missing, read-only, not ours, full): no message can
            # be written there until a person fixes it.
            raise TransportUnavailable(
                f"folder transport: cannot write in {self.folder}: {exc.strerror}; "
                f"{_FOLDER_ADVICE.get(exc.errno or 0, _ADVICE)}",
                transport=self.name, message_id=message.message_id, code=exc.errno,
                where=str(self.folder)) from None
        return Receipt(self.name, provider_id=target.name, status="written")

    def check(self, message: Outgoing) -> Receipt | None:
        target = self._path(message)
        try:
            data = target.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).digest() != hashlib.sha256(message.content).digest():
            return None
        return Receipt(self.name, provider_id=target.name, status="written",
                       detail="found after a restart")

    def close(self) -> None:
        """Nothing to release."""

#: Write failures that may clear up by themselves in a moment (busy, interrupted).
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.EINTR})
#: Write failures about the one file, not the folder (something else has its name).
_MESSAGE_ERRNOS = frozenset({errno.EISDIR})
_ADVICE = "check that the folder exists and that this user may write to it"
#: What to do when the folder refuses (any other errno: :data:`_ADVICE`).
_FOLDER_ADVICE = {
    errno.EACCES: "give this user write permission on the folder, or set another path",
    errno.EPERM: "give this user write permission on the folder, or set another path",
    errno.EROFS: "the file system is read-only: mount it writable or set another path",
    errno.ENOENT: "create the folder's parent, or set another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: set another path",
    errno.ENOSPC: "the disk is full: free some space or set another path",
    errno.EDQUOT: "the disk quota is exceeded: free some space or set another path",
}
