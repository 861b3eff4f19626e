"""Contained file reading (ccm._files): every pack and template file goes through it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccm._files import contained, contained_files, read_contained, read_contained_text
from ccm.errors import UnsafeFileError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "ok.txt").write_text("fine", "utf-8")
    return folder


def test_reads_a_regular_file_inside_the_root(root: Path) -> None:
    """A regular file inside the root is read, relative or absolute."""
    assert read_contained("sub/ok.txt", root) == b"fine"
    assert read_contained_text(root / "sub" / "ok.txt", root) == "fine"


def test_symlink_to_etc_passwd_is_refused_naming_the_file(root: Path) -> None:
    """A symlink to /etc/passwd is refused; the error names the link, not the content."""
    (root / "sub" / "evil.txt").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeFileError) as caught:
        read_contained(root / "sub" / "evil.txt", root)
    assert "evil.txt" in str(caught.value) and "outside" in caught.value.reason


def test_symlink_to_another_folder_is_refused(root: Path, tmp_path: Path) -> None:
    """A symlink to a file in a sibling folder leaves the root and is refused."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "secret.txt").write_text("secret", "utf-8")
    (root / "link.txt").symlink_to(other / "secret.txt")
    with pytest.raises(UnsafeFileError, match=r"link\.txt"):
        read_contained("link.txt", root)


def test_symlink_inside_the_root_is_followed(root: Path) -> None:
    """A symlink that stays inside the root is fine."""
    (root / "alias.txt").symlink_to(root / "sub" / "ok.txt")
    assert read_contained("alias.txt", root) == b"fine"


def test_dotdot_out_of_the_root_is_refused(root: Path) -> None:
    """A relative path climbing out of the root is refused."""
    with pytest.raises(UnsafeFileError):
        read_contained("../../etc/passwd", root)


def test_fifo_is_refused_without_blocking(root: Path) -> None:
    """A FIFO is refused at once (opened non-blocking), in a child process that must finish."""
    os.mkfifo(root / "pipe")
    code = (
        "import sys\nfrom ccm._files import read_contained\n"
        "from ccm.errors import UnsafeFileError\n"
        f"try:\n    read_contained('pipe', {str(root)!r})\nexcept UnsafeFileError as e:\n"
        "    print(e.reason); sys.exit(0)\nsys.exit(1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr
    assert "FIFO" in done.stdout


def test_device_symlink_is_refused(root: Path) -> None:
    """A symlink to /dev/zero is refused (it leaves the root, and it is a device)."""
    (root / "zero").symlink_to("/dev/zero")
    with pytest.raises(UnsafeFileError):
        read_contained("zero", root)


def test_device_inside_the_root_is_refused_by_kind(tmp_path: Path) -> None:
    """Even with /dev as the root, a character device is refused as a device."""
    with pytest.raises(UnsafeFileError, match="device"):
        read_contained("/dev/zero", "/dev")


def test_symlink_loop_is_refused(root: Path) -> None:
    """A symlink loop is an UnsafeFileError, not a raw OSError or RuntimeError."""
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    with pytest.raises(UnsafeFileError, match="a"):
        read_contained("a", root)
    with pytest.raises(UnsafeFileError):
        contained_files(root)


def test_file_over_the_limit_is_refused(root: Path) -> None:
    """A file larger than max_bytes is refused before it is read."""
    (root / "big.bin").write_bytes(b"x" * 5000)
    with pytest.raises(UnsafeFileError, match="over the 4096 byte limit"):
        read_contained("big.bin", root, max_bytes=4096)


def test_missing_file_is_file_not_found(root: Path) -> None:
    """A missing file is FileNotFoundError (each reader words it)."""
    with pytest.raises(FileNotFoundError):
        read_contained("nope.txt", root)


def test_invalid_utf8_text_is_refused(root: Path) -> None:
    """Text that is not UTF-8 is refused naming the byte offset."""
    (root / "latin.txt").write_bytes(b"caf\xe9")
    with pytest.raises(UnsafeFileError, match="not UTF-8"):
        read_contained_text("latin.txt", root)


def test_contained_files_lists_regular_files_and_refuses_the_rest(root: Path) -> None:
    """The walk lists regular files, skips hidden ones, and refuses a FIFO or an outbound link."""
    (root / ".hidden").write_text("x", "utf-8")
    assert [p.name for p in contained_files(root)] == ["ok.txt"]
    (root / "dir-link").symlink_to(Path("/etc"))
    with pytest.raises(UnsafeFileError, match="dir-link"):
        contained_files(root)
    (root / "dir-link").unlink()
    os.mkfifo(root / "sub" / "pipe")
    with pytest.raises(UnsafeFileError, match="FIFO"):
        contained_files(root)


def test_contained_resolves_without_reading(root: Path) -> None:
    """contained() returns the resolved path inside the root."""
    assert contained("sub/ok.txt", root) == (root / "sub" / "ok.txt").resolve()


def test_listed_refuses_what_contained_files_skips(root: Path, tmp_path: Path) -> None:
    """With ``listed``, a path through a name the listing skips is refused, as given or resolved.

    The listing (what a pack's digest covers) skips hidden names and ``__pycache__``;
    a reader at render time must not read what no digest covers.
    """
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.txt").write_text("secret draft", "utf-8")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "y.txt").write_text("cached", "utf-8")
    (root / "via").symlink_to(root / ".hidden")
    (root / "sub" / ".dot.txt").write_text("dot", "utf-8")
    listed = {p.relative_to(root).as_posix() for p in contained_files(root)}
    assert listed == {"sub/ok.txt"}
    for path, name in (("sub/.dot.txt", "'.dot.txt' is hidden"), (".hidden/x.txt", "'.hidden'"),
                       ("via/x.txt", "'.hidden' is hidden"),
                       ("__pycache__/y.txt", "'__pycache__' is a cache folder")):
        with pytest.raises(UnsafeFileError, match=name) as caught:
            read_contained(path, root, listed=True)
        assert "secret" not in str(caught.value)
        assert read_contained(path, root)  # without ``listed`` (digests of templates) it reads
    assert read_contained_text("sub/ok.txt", root, listed=True) == "fine"
    # The root's own path may be hidden: only names below it count.
    hidden_root = tmp_path / ".config" / "pack"
    (hidden_root / "a").mkdir(parents=True)
    (hidden_root / "a" / "b.txt").write_text("ok", "utf-8")
    assert read_contained("a/b.txt", hidden_root, listed=True) == b"ok"
