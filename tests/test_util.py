"""File names that are portable and never shared, and CSV cells a spreadsheet cannot run."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccm._util import (
    MAX_NAME_BYTES,
    atomic_write,
    csv_cell,
    safe_filename,
    unique_filename,
    write_csv,
)
from tests.strategies import AWKWARD_IDS, customer_ids

DEVICES = ["CON", "PRN", "AUX", "NUL"] + [f"{d}{n}" for d in ("COM", "LPT") for n in range(10)]


def assert_portable(name: str) -> None:
    """``name`` is a legal, harmless file name on Windows, macOS and Linux."""
    assert name and name not in (".", "..")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert not any(c in name for c in '/\\:*?"<>|')
    assert not any(unicodedata.category(c)[0] in "CZ" for c in name), name
    assert not name.startswith((".", "-")) and not name.endswith((".", " "))
    assert name.split(".", 1)[0].upper() not in DEVICES
    assert unicodedata.normalize("NFC", name) == name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ext", ["", ".txt", ".tar.gz", "."])
def test_windows_device_names_are_never_produced(device: str, ext: str) -> None:
    """A Windows device name in any case, with or without an extension, is prefixed with _."""
    for name in (device + ext, device.lower() + ext, device.title() + ext):
        assert_portable(safe_filename(name))
        assert safe_filename(name).startswith("_")


def test_the_issue_cases_keep_their_letters() -> None:
    """Non-Latin ids keep their letters; separators, dots-only and devices become harmless."""
    assert safe_filename("张伟10") == "张伟10"
    assert safe_filename("АБ-7") == "АБ-7"
    assert safe_filename("C/1") == "C_1"
    assert safe_filename(".") == "_" and safe_filename("..") == "_"
    assert safe_filename("LPT1") == "_LPT1"
    assert safe_filename("e\u0301") == "\u00e9"  # NFC


def test_long_names_are_cut_at_a_character_boundary() -> None:
    """A name longer than the byte budget is cut without splitting a character."""
    name = safe_filename("张" * 100)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name == "张" * (MAX_NAME_BYTES // 3)
    assert len(unique_filename("张" * 300, "t", "en", suffix=".sms.txt").encode()) <= MAX_NAME_BYTES



_PLAINISH = st.one_of(
    st.from_regex(r"[A-Za-z0-9._-]{0,120}", fullmatch=True),
    st.sampled_from(["con", "CON.txt", "nul.x", "com1", "lpt9.a", "a.", ".a", "-a", "_", "a..",
                     "x" * 62, "x" * 63, "x" * 64, "x" * 100, "y" * 150, "z" * 190, "conin$",
                     "ab.con"]),
    st.text(max_size=20),
)


@given(parts=st.lists(_PLAINISH, min_size=1, max_size=4),
       suffix=st.sampled_from(["", ".pdf", ".sms.txt", ".eml", ".x" * 20]))
def test_the_whole_parts_shortcut_names_as_the_full_rule_does(parts: list[str],
                                                               suffix: str) -> None:
    """Parts kept whole (plain ASCII, short, no device name) skip the per-part walk and get
    the very name the full rule gives."""
    import ccm._util as util

    fast = unique_filename(*parts, suffix=suffix)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(util, "_kept_whole", lambda *_: False)
        assert unique_filename(*parts, suffix=suffix) == fast



@pytest.mark.parametrize("parts", [
    ("C1", "payment_reminder", "en_GB"), ("y" * 150, "x" * 100), ("x" * 60, "y" * 60, "z" * 60),
    ("a" * 61, "b", "c"), ("x" * 61, "y" * 61, "z" * 61), ("con", "t", "en"), ("a.", "t"),
    ("x" * 186,), ("x" * 187,),
])
def test_the_shortcut_on_long_and_reserved_parts(parts: tuple[str, ...]) -> None:
    """Shared room, device names and trailing dots: the shortcut gives the full rule's name."""
    import ccm._util as util

    fast = unique_filename(*parts, suffix=".pdf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(util, "_kept_whole", lambda *_: False)
        assert unique_filename(*parts, suffix=".pdf") == fast
    assert util._kept_whole(("C1", "payment_reminder", "en_GB"), 183)


def test_long_customer_ids_leave_template_and_locale_whole() -> None:
    """Cutting a long id shortens the id, not the template or locale."""
    name = unique_filename("x" * 500, "payment_reminder", "en_GB", suffix=".pdf")
    assert "-payment_reminder-en_GB-" in name and name.endswith(".pdf")


@given(st.text())
def test_safe_filename_is_always_portable(name: str) -> None:
    """Whatever the input, the result is a portable file name."""
    assert_portable(safe_filename(name))


@given(customer_ids(), customer_ids())
def test_unique_filename_never_shares_a_name(a: str, b: str) -> None:
    """Distinct parts give distinct names, also when compared without case."""
    name_a = unique_filename(a, "quick_note", "en_GB", suffix=".pdf")
    name_b = unique_filename(b, "quick_note", "en_GB", suffix=".pdf")
    assert_portable(name_a)
    if a != b:
        assert name_a.casefold() != name_b.casefold()
    else:
        assert name_a == name_b


def test_the_issue_ids_give_distinct_names() -> None:
    """Every awkward id from the issue names its own file, even on a case-blind file system."""
    names = {unique_filename(cid, "payment_reminder", "en_GB", suffix=".eml").casefold()
             for cid in AWKWARD_IDS}
    assert len(names) == len(AWKWARD_IDS)
    assert unique_filename("C1", "payment_reminder", "en_GB", suffix=".eml").startswith(
        "C1-payment_reminder-en_GB-")


def test_atomic_write_without_replace_leaves_an_existing_file(tmp_path: Path) -> None:
    """replace=False never overwrites: the old bytes stay and no temp file is left."""
    target = tmp_path / "a.pdf"
    atomic_write(target, b"first", replace=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, b"second", replace=False)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["a.pdf"]


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx",
                                  "=HYPERLINK(\"http://evil\")"])
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(cell: str) -> None:
    """A text cell starting with = + - @ tab or CR gets a leading single quote."""
    assert csv_cell(cell) == "'" + cell


@pytest.mark.parametrize("value", ["C1", "", "a=b", "'=x", 3, -2, 0.5, -0.25, None])
def test_other_csv_cells_pass_unchanged(value: object) -> None:
    """Plain text and numbers (negative ones too) are left as they are."""
    assert csv_cell(value) == value


@given(st.lists(st.lists(st.one_of(st.text(), st.integers()), min_size=2, max_size=2),
                max_size=4))
def test_write_csv_round_trips_and_neutralises(rows: list[list[object]]) -> None:
    """Any cells read back as written (CR and LF inside cells too), formula starts quoted."""
    import csv
    import io

    buffer = io.StringIO()
    assert write_csv(buffer, ["a", "b"], rows) == len(rows)
    back = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert back[0] == ["a", "b"]
    assert back[1:] == [[str(csv_cell(cell)) for cell in row] for row in rows]
