"""The transport helpers: retry delays, the rate limiter, scrubbing replies, the folder."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from ccm.delivery import FolderTransport, RateLimiter, Retry
from ccm.delivery.transport import Checkable, Transport, scrub
from ccm.message import Outgoing

from ..strategies import header_values


@given(st.integers(min_value=1, max_value=60), st.floats(min_value=0, max_value=600),
       st.integers(min_value=0, max_value=2**32))
def test_retry_delays_double_within_the_cap_and_jitter_stays_in_the_upper_half(
        attempt: int, backoff: float, seed: int) -> None:
    """The wait after attempt n lies in [d/2, d], d = min(max, base * 2**(n-1))."""
    retry = Retry(max_attempts=5, backoff=backoff, max_backoff=max(backoff, 3600.0))
    ceiling = min(retry.max_backoff, backoff * 2 ** (attempt - 1))
    delay = retry.delay(attempt, random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


def test_the_rate_limiter_spaces_messages() -> None:
    """At 2 messages a second, the first two go at once and the next waits half a second;
    after a pause the bucket refills to its capacity only."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2, clock=lambda: now[0], sleep=sleep)
    waits = [limiter.wait() for _ in range(4)]
    assert waits[:2] == [0.0, 0.0] and waits[2] == 0.5 and waits[3] == 0.5
    now[0] += 10
    assert [limiter.wait() for _ in range(3)] == [0.0, 0.0, 0.5]
    assert RateLimiter(None).wait() == 0.0


@given(header_values(), st.emails(), st.from_regex(r"\+[1-9][0-9]{7,13}", fullmatch=True))
@example(text="x", address="'@A.aC", number="+12345678")  # an apostrophe in the local part
def test_scrub_removes_addresses_and_numbers(text: str, address: str, number: str) -> None:
    """Whatever a provider's reply says around a recipient's address or number, the scrubbed
    text keeps neither and stays on one line."""
    out = scrub(f"{text} <{address}> {text} to {number}: {text}", limit=10_000)
    assert address not in out and number not in out
    assert "\n" not in out and "\r" not in out


def test_the_folder_transport_writes_whole_files_and_can_check(tmp_path: Path) -> None:
    """A message becomes <id>.eml with its exact bytes; check finds it by digest, and a file
    with other bytes does not count."""
    folder = FolderTransport(tmp_path / "out")
    assert isinstance(folder, Transport) and isinstance(folder, Checkable)
    message = Outgoing(message_id=uuid.uuid4().hex, customer_id="C-1", channel="email",
                       recipient="a@example.com", content=b"Subject: x\r\n\r\nbody\r\n")
    receipt = folder.send(message)
    target = tmp_path / "out" / f"{message.message_id}.eml"
    assert target.read_bytes() == message.content and receipt.provider_id == target.name
    assert folder.check(message) is not None
    target.write_bytes(b"something else")
    assert folder.check(message) is None
    assert [p.name for p in (tmp_path / "out").iterdir()] == [target.name]


def test_an_outgoing_message_does_not_show_personal_data_in_repr() -> None:
    """repr() of what a transport is handed shows ids only."""
    message = Outgoing(message_id="0" * 32, customer_id="C-1", channel="sms",
                       recipient="+447700900123", content=b"Hello Alice")
    assert "+447700900123" not in repr(message) and "Alice" not in repr(message)
