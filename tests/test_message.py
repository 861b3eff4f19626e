"""Message file names: the documented scheme, the same for a message and its record entry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ccm.message import Message, output_filename

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_file_name_table_in_batch_md_is_what_the_code_gives() -> None:
    """Every row of the table in docs/batch.md#file-names is the name output_filename makes."""
    text = (DOCS / "batch.md").read_text("utf-8")
    section = text[text.index("### File names"):]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", section, re.MULTILINE)
    assert len(rows) >= 7
    for customer_id, name in rows:
        assert output_filename(customer_id, "payment_reminder", "en_GB", "email") == name


def test_message_filename_is_output_filename() -> None:
    """Message.filename is computed from the fields the record keeps, so resume finds it."""
    message = Message(
        message_id="m1", customer_id="C/1", template="payment_reminder", template_version="1",
        pack="acme", pack_version="1", channel="sms", locale="en_GB",
        message_type="operational", journey="collections", content=b"hi",
    )
    assert message.filename == output_filename("C/1", "payment_reminder", "en_GB", "sms")
    assert message.filename.startswith("C_1-payment_reminder-en_GB-")
    assert message.filename.endswith(".sms.txt")


# -- message ids ----------------------------------------------------------------------


def test_a_message_id_is_a_uuid7_of_its_creation_time() -> None:
    """32 hex digits, version 7, RFC 9562 variant, the first 48 bits ``at`` in Unix ms."""
    import uuid

    from ccm.message import new_message_id

    at = datetime(2026, 3, 2, 15, 4, 5, 678_901, tzinfo=UTC)
    ids = {new_message_id(at) for _ in range(2000)}
    assert len(ids) == 2000  # 74 random bits per millisecond
    for value in list(ids)[:200]:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert int(value[:12], 16) == 1772463845678


def test_message_ids_sort_by_creation_time_and_naive_times_count_as_utc() -> None:
    from ccm.message import new_message_id

    start = datetime(2026, 3, 2, 15, tzinfo=UTC)
    times = [start + timedelta(milliseconds=ms) for ms in (0, 1, 2, 999, 60_000, 10**9)]
    ids = [new_message_id(t) for t in times]
    assert ids == sorted(ids)
    # Another zone, or none (UTC), for the same instant: the same time prefix.
    paris = start.astimezone(timezone(timedelta(hours=1)))
    assert new_message_id(paris)[:12] == new_message_id(start.replace(tzinfo=None))[:12] \
        == ids[0][:12]


@given(noise=st.binary(min_size=10, max_size=10))
def test_a_message_id_of_given_random_bytes_is_made_as_of_drawn_ones(noise: bytes) -> None:
    """Property: 10 random bytes given (drawn at once for many ids) make the id
    os.urandom's same bytes would: time prefix, then the bytes with the version and
    variant bits set; other lengths are refused."""
    import uuid
    from unittest import mock

    import pytest

    from ccm.message import new_message_id

    at = datetime(2026, 3, 2, 15, 4, 5, 678_901, tzinfo=UTC)
    with mock.patch("ccm.message.os.urandom", return_value=noise):
        drawn = new_message_id(at)
    given_id = new_message_id(at, noise)
    assert given_id == drawn
    parsed = uuid.UUID(hex=given_id)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert bytes.fromhex(given_id)[9:] == noise[3:]
    for wrong in (noise[:9], noise + b"x"):
        with pytest.raises(ValueError, match="10 random bytes"):
            new_message_id(at, wrong)


@settings(max_examples=200)
@given(at=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=-11))])))
def test_the_time_prefix_of_any_message_id_is_its_millisecond(at: datetime) -> None:
    """Property: the prefix is ``at`` in Unix milliseconds, and ids keep the order of times."""
    from ccm.message import new_message_id

    value = new_message_id(at)
    assert len(value) == 32 and int(value, 16) >= 0
    ms = int(value[:12], 16)
    exact = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert abs(ms - exact) <= 1  # float seconds: at most a rounding step
    later = new_message_id(at + timedelta(milliseconds=2))
    assert later[:12] > value[:12]
