"""Message file names: the documented scheme, the same for a message and its record entry."""

from __future__ import annotations

import re
from pathlib import Path

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
