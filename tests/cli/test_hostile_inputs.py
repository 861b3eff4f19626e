"""Every ``ccm`` command against bad arguments and bad files: one paragraph naming the file
and what to do, an exit code from docs/cli.md's table, no traceback, and no file changed
that the command was only pointed at."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccm.cli import main
from ccm.cli._common import ExitCode
from tests.examples_helpers import PACKS, TEMPLATES, sample

NOON = "2026-06-01T12:00:00+00:00"
ACME = str(PACKS / "acme")
DOCUMENTED = {int(code) for code in ExitCode} - {0, int(ExitCode.INTERNAL)}

def _bad_files(root: Path) -> dict[str, Path]:
    """One file per kind of hostile input, all in ``root``."""
    files = {
        "missing": root / "missing.json",
        "folder": root / "a-folder.json",
        "empty": root / "empty.json",
        "binary": root / "binary.json",
        "latin1": root / "latin1.json",
        "numbers": root / "numbers.json",
        "huge": root / "huge.json",
        "text": root / "notes.txt",
    }
    files["folder"].mkdir()
    files["empty"].write_bytes(b"")
    files["binary"].write_bytes(bytes(range(256)) * 8)
    req = json.dumps(sample("payment_reminder"), ensure_ascii=False)
    files["latin1"].write_bytes(req.replace("Whitfield", "Müller").encode("latin-1",
                                                                         "replace"))
    files["numbers"].write_text("[1, 2, 3]", "utf-8")
    files["huge"].write_text('{"customer": {"id": "X"}, "data": {"pad": "'
                             + "x" * 3_000_000 + '"}}', "utf-8")
    files["text"].write_text("this is not a database\n" * 10, "utf-8")
    return files


@dataclass
class World:
    root: Path
    files: dict[str, Path]
    record: Path
    out: Path
    hashes: dict[Path, str] = field(default_factory=dict)

    def snapshot(self) -> dict[Path, str]:
        # A reader of a WAL-mode SQLite record needs its -wal/-shm companions (SQLite makes
        # them even for read-only opens); the record file itself must not change.
        return {p: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.root.rglob("*"))
                if p.is_file() and self.out not in p.parents
                and not p.name.endswith(("-wal", "-shm"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A folder with a real record, a good request and every kind of bad file."""
    root = tmp_path_factory.mktemp("hostile")
    files = _bad_files(root)
    good = root / "good.json"
    good.write_text(json.dumps(sample("payment_reminder")), "utf-8")
    files["good"] = good
    record = root / "record.db"
    assert main(["render", "payment_reminder", "--pack", ACME, "--templates", str(TEMPLATES),
                 "--data", str(good), "--out", str(root / "made"), "--record", str(record),
                 "--channel", "email", "--as-of", NOON]) == 0
    shutil.rmtree(root / "made")
    yield World(root=root, files=files, record=record, out=root / "out")


def check(world: World, capsys: pytest.CaptureFixture[str], args: list[str],
          names: tuple[str, ...]) -> tuple[int, str]:
    """Run ``ccm args``; assert the documented shape of a failure; return (code, stderr)."""
    before = world.snapshot()
    code = main(args)
    out, err = capsys.readouterr()
    assert code in DOCUMENTED, (args, code, err)
    assert "Traceback" not in err and err.strip(), (args, err)
    assert "\n\n" not in err.strip(), f"more than one paragraph: {err!r}"
    assert any(name in err + out for name in names), f"{args}: {err!r} names none of {names}"
    assert world.snapshot() == before, f"{args} changed a file it was pointed at"
    return code, err


# -- request files: ccm render and ccm batch ------------------------------------------------

REQUEST_KINDS = ["missing", "folder", "empty", "binary", "latin1", "numbers", "huge"]


@pytest.mark.parametrize("kind", REQUEST_KINDS)
def test_render_with_a_bad_request_file(world: World, capsys: pytest.CaptureFixture[str],
                                        kind: str) -> None:
    """`ccm render --data BAD`: a documented exit, the file named, nothing else touched."""
    path = world.files[kind]
    check(world, capsys, ["render", "payment_reminder", "--pack", ACME, "--templates",
                          str(TEMPLATES), "--data", str(path), "--out", str(world.out),
                          "--no-record", "--as-of", NOON], (path.name,))


@pytest.mark.parametrize("kind", REQUEST_KINDS)
def test_batch_with_a_bad_request_file(world: World, capsys: pytest.CaptureFixture[str],
                                       kind: str, tmp_path: Path) -> None:
    """`ccm batch --data BAD`: a documented exit naming the file, the record untouched."""
    path = world.files[kind]
    jsonl = path
    if path.is_file() and path.suffix == ".json":
        jsonl = tmp_path / f"{path.stem}.jsonl"
        shutil.copy(path, jsonl)
    check(world, capsys, ["batch", "payment_reminder", "--pack", ACME, "--templates",
                          str(TEMPLATES), "--data", str(jsonl), "--out", str(world.out),
                          "--record", f"sqlite:///{tmp_path / 'batch.db'}", "--workers", "0",
                          "--as-of", NOON], (jsonl.name,))


def test_batch_with_an_empty_request_file_writes_nothing(
        world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`ccm batch` on an empty (or blank-lines-only) file says the file has no requests,
    exits BAD_INPUT, and makes no output folder and no record."""
    for content in (b"", b"\n  \n\n"):
        jsonl = tmp_path / "nothing.jsonl"
        jsonl.write_bytes(content)
        out, record = tmp_path / "out", tmp_path / "batch.db"
        code = main(["batch", "payment_reminder", "--pack", ACME, "--templates",
                     str(TEMPLATES), "--data", str(jsonl), "--out", str(out),
                     "--record", f"sqlite:///{record}", "--workers", "0", "--as-of", NOON])
        err = capsys.readouterr().err
        assert code == ExitCode.BAD_INPUT
        assert "nothing.jsonl" in err and "no requests" in err and "Traceback" not in err
        assert not out.exists() and not record.exists()


# -- records: every ccm record subcommand -----------------------------------------------------

RECORD_COMMANDS: list[list[str]] = [
    ["record", "timeline", "D-1001"],
    ["record", "verify"],
    ["record", "show", "m-1"],
    ["record", "export", "D-1001"],
    ["record", "erase", "D-1001", "--yes"],
    ["record", "event", "m-1", "opened"],
    ["record", "report", "--html", "OUT/report.html"],
    ["record", "features", "--out", "OUT/features.csv"],
    ["record", "checkpoint", "--out", "OUT/head.json", "--key-file", "KEY"],
]
RECORD_KINDS = ["missing", "folder", "empty", "binary", "text"]
def _record_args(world: World, command: list[str]) -> list[str]:
    key = world.root / "signing.key"
    if not key.exists():
        key.write_bytes(os.urandom(32).hex().encode())
    out = str(world.out)
    return [a.replace("OUT", out).replace("KEY", str(key)) for a in command]


@pytest.mark.parametrize("command", RECORD_COMMANDS, ids=lambda c: c[1])
@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_record_commands_with_a_bad_record(world: World, capsys: pytest.CaptureFixture[str],
                                           command: list[str], kind: str) -> None:
    """`ccm record ... --record BAD`: never a traceback, never a new or changed file there."""
    path = world.files[kind]
    args = [*_record_args(world, command), "--record", str(path)]
    check(world, capsys, args, (path.name, "record"))
    assert not (kind == "missing" and path.exists()), "a missing record was created"


@pytest.mark.parametrize("command", [c for c in RECORD_COMMANDS
                                     if c[1] in ("timeline", "show", "event")],
                         ids=lambda c: c[1])
def test_record_commands_on_an_unknown_customer_or_message(
    world: World, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A customer or message the record does not have: a documented exit naming it."""
    args = [a.replace("D-1001", "D-0000") for a in _record_args(world, command)]
    code, _ = check(world, capsys, [*args, "--record", str(world.record)], ("D-0000", "m-1"))
    assert code == ExitCode.NOT_FOUND


# -- output that cannot be written -----------------------------------------------------------

def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only file system (a tmpfs mounted ro), or a folder without write permission."""
    where = tmp_path / "ro"
    if _mount_tmpfs(where, "ro,size=64k"):
        yield where
        subprocess.run(["umount", str(where)], check=False)
        return
    if os.geteuid() == 0:
        pytest.skip("root without mount: no folder is read-only")
    where.chmod(0o500)
    yield where
    where.chmod(0o700)


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A file system with no space left (a 64 KiB tmpfs, filled)."""
    where = tmp_path / "full"
    if not _mount_tmpfs(where, "size=64k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with (where / "filler").open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_render_out_that_cannot_be_created(world: World, capsys: pytest.CaptureFixture[str],
                                           readonly_dir: Path) -> None:
    """`--out` on a read-only file system: exit 5 naming the folder, nothing rendered."""
    out = readonly_dir / "sub"
    code, err = check(world, capsys, [
        "render", "payment_reminder", "--pack", ACME, "--templates", str(TEMPLATES),
        "--data", str(world.files["good"]), "--out", str(out), "--no-record"], (str(out),))
    assert code == ExitCode.IO_ERROR and "--out" in err


def test_render_out_under_a_file(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """`--out` below a file: a documented exit naming the folder."""
    out = world.files["text"] / "sub"
    check(world, capsys, ["render", "payment_reminder", "--pack", ACME, "--templates",
                          str(TEMPLATES), "--data", str(world.files["good"]), "--out", str(out),
                          "--no-record"], (str(out),))


def test_render_into_a_full_disk(world: World, capsys: pytest.CaptureFixture[str],
                                 full_dir: Path) -> None:
    """A full disk while writing the files: exit 5 saying the disk is full."""
    code, err = check(world, capsys, [
        "render", "monthly_statement", "--pack", ACME, "--templates", str(TEMPLATES),
        "--data", str(TEMPLATES / "monthly_statement" / "samples" / "01_en_GB_long.json"),
        "--out", str(full_dir), "--no-record", "--channel", "pdf"], (str(full_dir),))
    assert code == ExitCode.IO_ERROR and "full" in err


def test_features_into_a_full_disk(world: World, capsys: pytest.CaptureFixture[str],
                                   full_dir: Path) -> None:
    """`ccm record features --out` on a full disk: exit 5, the record untouched."""
    target = full_dir / "features.csv"
    code, _ = check(world, capsys, ["record", "features", "--out", str(target),
                                      "--record", str(world.record)], ("features.csv",))
    assert code == ExitCode.IO_ERROR


# -- the other commands ----------------------------------------------------------------------

OTHER: list[Any] = [
    ("lint-missing-pack", lambda w: ["lint", "--pack", str(w.root / "nopack"), "--templates",
                                     str(TEMPLATES)], ("nopack",)),
    ("lint-pack-is-file", lambda w: ["lint", "--pack", str(w.files["text"]), "--templates",
                                     str(TEMPLATES)], ("notes.txt",)),
    ("approve-bad-approvals", lambda w: ["approve", "payment_reminder", "--pack", ACME,
                                         "--templates", str(TEMPLATES), "--approvals",
                                         str(w.files["binary"])], ("binary.json",)),
    ("approve-unknown-template", lambda w: ["approve", "nope", "--pack", ACME, "--templates",
                                            str(TEMPLATES), "--approvals",
                                            str(w.root / "approvals.json")], ("nope",)),
    ("proof-binary-key", lambda w: ["proof", "--pack", ACME, "--templates", str(TEMPLATES),
                                    "--out", str(w.out / "proof"), "--key",
                                    str(w.files["binary"])], ("binary.json",)),
    ("proof-missing-key", lambda w: ["proof", "--pack", ACME, "--templates", str(TEMPLATES),
                                     "--out", str(w.out / "proof"), "--key",
                                     str(w.files["missing"])], ("missing.json",)),
    ("render-unknown-option", lambda w: ["render", "--nope"], ("--nope",)),
    ("render-bad-as-of", lambda w: ["render", "payment_reminder", "--pack", ACME, "--data",
                                    str(w.files["good"]), "--out", str(w.out),
                                    "--as-of", "yesterday"], ("--as-of", "yesterday")),
    ("render-pack-missing", lambda w: ["render", "payment_reminder", "--pack",
                                       str(w.root / "nopack"), "--templates", str(TEMPLATES),
                                       "--data", str(w.files["good"]), "--out", str(w.out),
                                       "--no-record"], ("nopack",)),
    pytest.param(
        "render-record-is-text", lambda w: ["render", "payment_reminder", "--pack", ACME,
                                            "--templates", str(TEMPLATES), "--data",
                                            str(w.files["good"]), "--out", str(w.out),
                                            "--record", str(w.files["text"]), "--as-of", NOON],
        ("notes.txt",), id="render-record-is-text"),
    ("doctor-extra-argument", lambda w: ["doctor", "extra"], ("extra",)),
]


@pytest.mark.parametrize("name,args,names", OTHER)
def test_other_commands_with_bad_arguments(
    world: World, capsys: pytest.CaptureFixture[str], name: str,
    args: Callable[[World], list[str]], names: tuple[str, ...],
) -> None:
    """lint, approve, proof, render, doctor with bad arguments: one documented failure."""
    check(world, capsys, args(world), names)


def test_servers_with_bad_arguments(world: World) -> None:
    """preview and track-serve refuse bad arguments before they listen."""
    for args in (["preview", "--port", "70000"],
                 ["track-serve", "--port", "0"],
                 ["track-serve", "--record", str(world.files["text"]), "--key-file",
                  str(world.files["missing"])]):
        done = subprocess.run([sys.executable, "-m", "ccm", *args], capture_output=True,
                              text=True, timeout=120, check=False, cwd=world.root)
        assert done.returncode in DOCUMENTED, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith(("ccm: error", "Usage"))


# -- Hypothesis: hostile request files -------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_requestish = st.fixed_dictionaries({}, optional={
    "customer": _json | st.fixed_dictionaries({"id": _json}, optional={"name": _json,
                                                                       "locale": _json}),
    "data": _json,
})
_file_bytes = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    _requestish.map(lambda v: json.dumps(v).encode()),
    st.lists(_requestish, max_size=3).map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_file_bytes, suffix=st.sampled_from([".json", ".jsonl"]))
def test_render_survives_hostile_request_files(world: World,
                                               capsys: pytest.CaptureFixture[str],
                                               content: bytes, suffix: str) -> None:
    """Any bytes as a request file: exit 0 or a documented code, never a traceback."""
    path = world.root / f"hostile{suffix}"
    path.write_bytes(content)
    try:
        code = main(["render", "payment_reminder", "--pack", ACME, "--templates",
                     str(TEMPLATES), "--data", str(path), "--out", str(world.out),
                     "--no-record", "--channel", "sms"])
        err = capsys.readouterr().err
        assert code == 0 or code in DOCUMENTED, (content, code, err)
        assert "Traceback" not in err and "internal error" not in err, err
        if code:
            assert path.name in err
    finally:
        path.unlink()
