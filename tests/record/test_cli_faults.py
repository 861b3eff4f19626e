"""`ccm record` against hostile files and failing systems: one line, a documented code, no debris.

Full and read-only file systems are real: a 64 KiB tmpfs mounted for the test (root), or
``RLIMIT_FSIZE`` in a child process where mounting is not permitted.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import ccm
from ccm.cli.record import record as record_group
from ccm.errors import ConfigError, RecordNotFound
from ccm.record import MasterKey, Record

from ._support import T0, entry

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_KEY = "faults-checkpoint-key-0123456789abcdef"


def _mount(target: Path, options: str = "size=64k") -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, check=False)
    return done.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own; skipped where mounting is not permitted."""
    target = tmp_path / "mnt"
    if not _mount(target, "size=1m"):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield target
    finally:
        _umount(target)


def _run(*args: str, key: MasterKey | None = None, **env: str) -> Result:
    environ = {"CCM_MASTER_KEY": key.text() if key else "", "CCM_MASTER_KEY_FILE": "",
               "CCM_CHECKPOINT_KEY": CHECKPOINT_KEY, **env}
    return CliRunner().invoke(record_group, list(args), env=environ)


def _one_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def record_db(tmp_path: Path, key: MasterKey) -> Iterator[Path]:
    """A SQLite record (kept open, as a running system would) with a 100 KB letter."""
    path = tmp_path / "record.db"
    rec = Record(path, master_key=key)
    rec.append(entry("C1", message_id="m1", created_at=T0), content=os.urandom(100_000))
    yield path
    rec.close()


OUTPUTS = {
    "export": ["export", "C1", "--out", "{dir}/c1.json"],
    "checkpoint": ["checkpoint", "--out", "{dir}/r.ckpt"],
    "features": ["features", "--out", "{dir}/f.csv"],
    "timeline --html": ["timeline", "C1", "--html", "{dir}/t.html"],
    "show --content": ["show", "m1", "--content", "{dir}/m1.bin"],
}


def _fill_up(folder: Path) -> None:
    """Write a filler file until the file system says it is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_a_full_disk_is_a_clean_io_error(name: str, record_db: Path, key: MasterKey,
                                          tmp_path: Path) -> None:
    """Writing an output onto a full file system exits 5 saying so, and leaves no file behind."""
    target = tmp_path / "full"
    args = [a.format(dir=target) for a in OUTPUTS[name]] + ["--record", str(record_db)]
    if _mount(target):
        try:
            _fill_up(target)
            result = _run(*args, key=key)
            assert result.exit_code == 5, result.output
            line = _one_line(result)
            assert "no space left on the device (disk full); nothing was written" in line
            assert sorted(p.name for p in target.iterdir()) == ["filler"]
        finally:
            _umount(target)
        return
    # No mount permitted: the same command in a child whose file size limit is 1 byte.
    target.mkdir()

    def limit() -> None:  # pragma: no cover - runs in the child
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))

    env = {**os.environ, "CCM_MASTER_KEY": key.text(), "CCM_CHECKPOINT_KEY": CHECKPOINT_KEY}
    done = subprocess.run([sys.executable, "-m", "ccm", "record", *args], env=env,
                          capture_output=True, text=True, preexec_fn=limit, check=False)
    assert done.returncode == 5, done.stderr
    assert "file size limit" in done.stderr and "Traceback" not in done.stderr
    assert list(target.iterdir()) == []


def test_a_read_only_file_system(tmpfs: Path, key: MasterKey) -> None:
    """On a read-only mount, reading commands work, writing ones exit 5 naming the cause."""
    path = tmpfs / "record.db"
    rec = Record(path, master_key=key)
    rec.append(entry("C1", message_id="m1", created_at=T0), content=b"letter")
    rec.close()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    url = ["--record", str(path)]
    verified = _run("verify", *url)
    assert verified.exit_code == 0, verified.output
    assert _run("timeline", "C1", "--json", *url).exit_code == 0
    erased = _run("erase", "C1", "--yes", *url)
    assert erased.exit_code == 5, erased.output
    assert "read-only" in _one_line(erased)
    event = _run("event", "m1", "sent", *url)
    assert event.exit_code == 5 and "read-only" in _one_line(event)
    export = _run("export", "C1", "--out", str(tmpfs / "c1.json"), *url, key=key)
    assert export.exit_code == 5, export.output
    assert "the file system is read-only" in _one_line(export)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    """A text file given as the record: one line saying it is not a record, file untouched."""
    path = tmp_path / "notes.txt"
    path.write_text("shopping list: eggs, milk\n" * 20)
    before = path.read_bytes()
    result = _run("verify", "--record", str(path))
    assert result.exit_code == 1
    assert _one_line(result).endswith(f"{path} is not a ccm record (not a SQLite database)")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_corrupt_record_is_refused(record_db: Path, tmp_path: Path) -> None:
    """A record whose pages were overwritten is refused in one line, not a traceback."""
    copy = tmp_path / "copy.db"
    copy.write_bytes(record_db.read_bytes())
    data = bytearray(copy.read_bytes())
    data[16:24] = b"\xff" * 8  # page size and format bytes of the header
    data[4096:12288] = os.urandom(8192)
    copy.write_bytes(bytes(data))
    result = _run("timeline", "C1", "--record", str(copy))
    assert result.exit_code == 1, result.output
    assert "is not a ccm record" in _one_line(result)


def test_verify_on_an_empty_file_leaves_it_empty(tmp_path: Path) -> None:
    """An empty file is not turned into a database: verify says there is no record (exit 3)."""
    path = tmp_path / "empty.db"
    path.touch()
    result = _run("verify", "--record", str(path))
    assert result.exit_code == 3
    assert "no record at" in _one_line(result)
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    """A SQLite database with other tables is 'not a ccm record', and stays as it was."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    result = _run("export", "C1", "--record", str(path))
    assert result.exit_code == 1
    assert "is a SQLite database but not a ccm record" in _one_line(result)
    assert path.read_bytes() == before


def test_a_folder_is_not_a_record(tmp_path: Path) -> None:
    """A folder given as the record is refused in one line."""
    result = _run("verify", "--record", str(tmp_path))
    assert result.exit_code == 1
    assert "is not a ccm record (it is not a regular file)" in _one_line(result)


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql+nodriver://u@127.0.0.1/x", "no PostgreSQL driver 'postgresql+nodriver'"),
    ("mysql://u@127.0.0.1/x", "unsupported record URL"),
    ("post gres://x", "not a record URL"),
])
def test_bad_urls_are_one_line_errors(url: str, says: str) -> None:
    """A URL the record cannot use is a one-line error (exit 1) that says what to give."""
    result = _run("verify", "--record", url)
    assert result.exit_code == 1, result.output
    assert says in _one_line(result)


def test_a_missing_driver_says_what_to_install() -> None:
    """Without psycopg, a PostgreSQL URL says to pip install ccm-engine[postgres] (exit 1)."""
    code = ("import sys; sys.modules['psycopg'] = None; from ccm.cli import main; "
            "sys.exit(main(['record', 'verify', '--record', "
            "'postgresql+psycopg://u@127.0.0.1:1/x']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={**os.environ, "CCM_MASTER_KEY": ""})
    assert done.returncode == 1, done.stderr
    assert "pip install 'ccm-engine[postgres]'" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_database_is_an_io_error() -> None:
    """A PostgreSQL server that does not answer is exit 5 with one line."""
    result = _run("verify", "--record", "postgresql+psycopg://u:pw@127.0.0.1:1/x")
    assert result.exit_code == 5, result.output
    line = _one_line(result)
    assert "127.0.0.1:1" in line and "pw" not in line


@pytest.mark.parametrize("query", ["password=S3CRETPW", "sslpassword=S3CRETPW&sslmode=require",
                                   "PGPASSWORD=S3CRETPW"])
def test_a_password_in_the_url_query_is_not_shown(query: str) -> None:
    """libpq takes the password in the query as well: it is masked there too."""
    result = _run("verify", "--record", f"postgresql+psycopg://u@127.0.0.1:1/x?{query}")
    assert result.exit_code == 5, result.output
    line = _one_line(result)
    assert "S3CRETPW" not in line and "=***" in line and "127.0.0.1:1" in line


def test_locked_past_the_timeout_is_a_conflict(record_db: Path) -> None:
    """A writer held by another process past CCM_RECORD_LOCK_TIMEOUT exits 4, saying locked."""
    holder = sqlite3.connect(record_db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = _run("event", "m1", "sent", "--record", str(record_db),
                      CCM_RECORD_LOCK_TIMEOUT="0.2")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 4, result.output
    assert "is locked by another process past the timeout" in _one_line(result)


def _as_nobody(args: list[str]) -> tuple[int, str]:
    """Run `ccm record ARGS` in a forked child that dropped to uid/gid 65534 (or as is)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            result = CliRunner().invoke(record_group, args, env={"CCM_MASTER_KEY": ""})
            os.write(write, (result.output or repr(result.exception)).encode())
            code = result.exit_code
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


def test_permission_denied_is_an_io_error(record_db: Path, tmp_path: Path) -> None:
    """A record this user may not reach (root's folders, mode 600) exits 5 naming permissions."""
    tmp_path.chmod(0o755)
    record_db.chmod(0o600)
    code, output = _as_nobody(["verify", "--record", str(record_db)])
    assert code == 5, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output
    assert "permission" in output


def test_checkpoint_into_a_missing_folder_is_an_error(record_db: Path, tmp_path: Path) -> None:
    """checkpoint --out into a folder that does not exist fails (exit 3) and creates nothing."""
    out = tmp_path / "audit" / "r.ckpt"
    result = _run("checkpoint", "--out", str(out), "--record", str(record_db))
    assert result.exit_code == 3
    assert f"the folder {out.parent} does not exist" in _one_line(result)
    assert not out.parent.exists()


def test_a_plain_path_means_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record("record.db") and Engine(record="record.db") open a SQLite file; bad URLs are
    ccm errors."""
    monkeypatch.chdir(tmp_path)
    rec = Record("record.db")
    assert rec.backend == "sqlite" and (tmp_path / "record.db").is_file()
    rec.append(entry("C1"))
    rec.close()
    engine = ccm.Engine(ROOT / "brand_packs" / "acme", ROOT / "templates", record="record.db",
                        master_key=None)
    assert engine.record is not None and engine.record.backend == "sqlite"
    assert engine.record.timeline("C1").summary["generated"] == 1
    engine.record.close()
    assert _run("timeline", "C1", "--json", "--record", "record.db").exit_code == 0
    with pytest.raises(ConfigError, match="not a record URL"):
        Record("post gres://x")
    with pytest.raises(RecordNotFound):
        Record("missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


TAMPERED = {
    "a timestamp that is text": "UPDATE messages SET created_at = 'not a time'",
    "a status that is bytes": "UPDATE messages SET status = X'00ff'",
    "event data that is not JSON": "UPDATE events SET data = '{not json'",
    "an event time that is a number": "UPDATE events SET at = 12345",
}
READERS = {
    "timeline": ["timeline", "C1"],
    "timeline --json": ["timeline", "C1", "--json"],
    "export": ["export", "C1", "--out", "{dir}/c1.json"],
    "show": ["show", "m1"],
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("change", sorted(TAMPERED))
def test_a_record_changed_outside_ccm_is_one_line_not_a_bug_report(
        record_db: Path, tmp_path: Path, key: MasterKey, change: str, reader: str) -> None:
    """A value of the wrong type written into the record by hand: the reading commands say
    the record was changed outside ccm and point at verify (exit 1), print nothing else
    and write no file, instead of an internal error (exit 70) asking for a bug report."""
    with Record(record_db, master_key=key) as rec:
        rec.add_event("m1", "opened", at=T0, data={"ip": "192.0.2.1"})
    with sqlite3.connect(record_db) as db:
        db.execute(TAMPERED[change])
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.replace("{dir}", str(out)) for a in READERS[reader]]
    result = _run(*argv, "--record", str(record_db), key=key)
    assert result.exit_code == 1, result.output
    line = _one_line(result)
    assert "changed outside ccm" in line and "ccm record verify" in line
    assert "192.0.2.1" not in result.output and "not json" not in result.output
    assert list(out.iterdir()) == []
    verified = _run("verify", "--record", str(record_db))
    assert verified.exit_code == 1 and "edited" in verified.output


def test_a_read_failing_on_an_intact_record_is_still_a_bug(
        record_db: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The same failure where verify finds nothing wrong is ccm's own: exit 70, the bug line."""
    from ccm.cli import main

    def broken(self: Record, customer_id: str) -> None:
        raise TypeError("a bug in ccm")

    monkeypatch.setattr(Record, "timeline", broken)
    assert main(["record", "timeline", "C1", "--record", str(record_db)]) == 70
    assert "internal error: TypeError" in capsys.readouterr().err


def test_a_write_the_file_system_refuses_is_not_called_an_open_failure(tmp_path: Path) -> None:
    """A record write over the file size limit (SQLite's "disk I/O error") says what to check
    (space, ulimit -f, the device), exit 5; it read "cannot be opened … check the path"."""
    record_db = tmp_path / "record.db"
    with Record(record_db) as rec:
        rec.append(entry("C1", message_id="m1", created_at=T0))
    def limit() -> None:  # pragma: no cover - runs in the child
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))

    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(record_db.parent),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ccm", "record", "event", "m1", "opened",
                           "--record", str(record_db)], env=env, capture_output=True,
                          text=True, preexec_fn=limit, check=False)
    assert done.returncode == 5, done.stderr
    assert "disk I/O error" in done.stderr and "ulimit -f" in done.stderr
    assert "cannot be opened" not in done.stderr and "Traceback" not in done.stderr
