"""SQLite page size of a new record: what a batch (email, SMS) and the reads cost at each size.

    python benchmarks/page_size_bench.py                      # CPU: interleaved rounds (~3 min)
    python benchmarks/page_size_bench.py --syscalls           # strace: calls and bytes (~2 min)
    python benchmarks/page_size_bench.py --sizes 4096,16384 --rounds 5
    python benchmarks/page_size_bench.py --sizes 4096,16384 --channels sms --read-rounds 0
    python benchmarks/page_size_bench.py --record-only --read-rounds 0   # append_many alone

The machine may be loaded: the figures that do not depend on load are the
system calls and bytes (``--syscalls``: each run under ``strace -f -y``,
grouped by file: the record, its WAL, its shared memory, anything else), and
sys CPU is taken from ``getrusage`` over many interleaved rounds (min and
median per message, and the median of the differences to the first size
paired by round). Each run makes a fresh record file whose page size is
set before WAL, as :func:`ccm.record.connect._create_engine` does, and runs
``run_batch`` in-process (workers=0, durable, JSONL, master key). The read
figures open a filled record (``--read-emails`` emails and ``--read-sms`` SMS,
one customer each) read-only and run ``Record.verify``, ``timeline`` and
``export`` (decrypts the archive) for ``--read-customers`` customers, and
``find_keys`` (what a resumed batch reads) for all of them.
For people: no target, no assertion.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import PACK, TEMPLATES, requests_for

from ccm.batch import run_batch
from ccm.message import new_message_id
from ccm.record import Entry, MasterKey, Record

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)  # daytime in every sample's zone
HERE = Path(__file__).resolve()


def _fresh(path: Path, page_size: int) -> None:
    """A new record file with ``page_size``, set before WAL (WAL fixes it)."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size = {page_size}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def _usage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _batch(work: Path, page_size: int, channel: str, n: int, tag: str,
           key: MasterKey) -> dict[str, Any]:
    rows = [json.dumps(r).encode() for r in requests_for("payment_reminder", n, prefix=tag)]
    db = work / "r.db"
    _fresh(db, page_size)
    u0, s0 = _usage()
    run_batch("payment_reminder", rows, pack=PACK, templates=TEMPLATES, out=work / "out",
              record_url=f"sqlite:///{db}", run_id=tag, workers=0, channels=[channel],
              durable=True, output_format="jsonl", master_key=key, now=NOW)
    u1, s1 = _usage()
    got = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    assert got == page_size, (got, page_size)
    return {"user_us": 1e6 * (u1 - u0) / n, "sys_us": 1e6 * (s1 - s0) / n,
            "db_bytes": db.stat().st_size}


EMAIL = bytes(random.Random(12).randbytes(20_000))  # an email's .eml: about 20 KB
SMS = (b"Hi Ada, your payment of GBP 120.00 for invoice INV-2041 is due on 12 Jan. "
       b"Pay at https://acme.example/pay/8d1f or reply STOP to opt out.")


def _chunk(tag: str, channel: str, size: int = 256) -> list[dict[str, Any]]:
    """One batch chunk of new customers, shaped as the batch worker's entries."""
    content = EMAIL if channel == "email" else SMS
    digest = hashlib.sha256(content).hexdigest()
    out = []
    for i in range(size):
        mid, customer = new_message_id(NOW), f"{tag}-{i:06d}"
        out.append({"entry": Entry(
            message_id=mid, idempotency_key=f"run-{tag}:payment_reminder:{customer}:{channel}",
            params_sha256=hashlib.sha256(mid.encode()).hexdigest(), customer_id=customer,
            channel=channel, template="payment_reminder", template_version="1.0.0",
            pack="acme", pack_version="1.0.0", message_type="operational",
            journey="collections", locale="en_GB", created_at=NOW, status="generated",
            reason=None, content_sha256=digest, archival_sha256=None,
            sources_sha256="5" * 64, archive_ref=None, segment="retail"),
            "content": content, "archival": None, "caps": ()})
    return out


def _appends(work: Path, page_size: int, channel: str, n: int, tag: str,
             key: MasterKey) -> dict[str, Any]:
    """``append_many`` alone: chunks of 256 new customers, one transaction each."""
    chunks = [_chunk(f"{tag}{c}", channel) for c in range(max(1, n // 256))]
    db = work / "r.db"
    _fresh(db, page_size)
    with Record(f"sqlite:///{db}", master_key=key) as rec:
        u0, s0 = _usage()
        for chunk in chunks:
            rec.append_many(chunk)
        u1, s1 = _usage()
    count = 256 * len(chunks)
    return {"user_us": 1e6 * (u1 - u0) / count, "sys_us": 1e6 * (s1 - s0) / count}


def _reads(db: Path, key: MasterKey, customers: list[str]) -> dict[str, Any]:
    u0, s0 = _usage()
    with Record(f"sqlite:///{db}", master_key=key, read_only=True) as rec:
        report = rec.verify()
        assert report.ok, report
        for cid in customers:
            rec.timeline(cid)
            rec.export(cid)
    u1, s1 = _usage()
    return {"user_ms": 1e3 * (u1 - u0), "sys_ms": 1e3 * (s1 - s0)}


def _fill(work: Path, page_size: int, key: MasterKey, emails: int, sms: int) -> Path:
    db = work / "r.db"
    _fresh(db, page_size)
    for channel, n, tag in (("email", emails, "E"), ("sms", sms, "S")):
        rows = [json.dumps(r).encode() for r in requests_for("payment_reminder", n, prefix=tag)]
        run_batch("payment_reminder", rows, pack=PACK, templates=TEMPLATES,
                  out=work / f"out-{tag}", record_url=f"sqlite:///{db}", run_id=tag, workers=0,
                  channels=[channel], durable=True, output_format="jsonl", master_key=key,
                  now=NOW)
    return db


def _read_customers(emails: int, sms: int, count: int) -> list[str]:
    half = count // 2
    return ([f"E{i:07d}" for i in range(0, emails, max(1, emails // half))][:half]
            + [f"S{i:07d}" for i in range(0, sms, max(1, sms // half))][:half])


# -- one run in a child process (strace counts it) ----------------------------------


def _child(args: argparse.Namespace) -> None:
    key = MasterKey.from_text(Path(args.key).read_text().strip())
    work = Path(args.work)
    if args.child == "batch":
        out = _batch(work, args.page_size, args.channel, args.n, "T", key)
    else:
        out = _reads(work / "r.db", key,
                     _read_customers(args.read_emails, args.read_sms, args.read_customers))
    print(json.dumps(out))


_CALL = re.compile(r"^\d+\s+(\w+)\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)")


def _strace(cmd: list[str], db: Path) -> dict[str, dict[str, int]]:
    """Calls and bytes per (kind of file, syscall) of ``cmd`` under strace."""
    log = db.parent / "strace.log"
    subprocess.run(["strace", "-f", "-y", "-o", str(log), "-e",
                    "trace=read,pread64,write,pwrite64,fsync,fdatasync", *cmd],
                   check=True, stdout=subprocess.DEVNULL)
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    name = str(db.resolve())
    for line in log.read_text(errors="replace").splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        call, _fd, path, ret = m.groups()
        kind = ("wal" if path == name + "-wal" else "shm" if path == name + "-shm"
                else "db" if path == name else "other")
        if kind == "other":
            continue
        found[kind][call] += 1
        if call in ("read", "pread64", "write", "pwrite64") and int(ret) > 0:
            found[kind][call + "_bytes"] += int(ret)
    log.unlink()
    return {k: dict(v) for k, v in found.items()}


def _syscalls(args: argparse.Namespace, sizes: list[int], key_file: Path, root: Path) -> None:
    me = [sys.executable, str(HERE), "--key", str(key_file)]
    for channel, n in (("email", args.email), ("sms", args.sms)):
        print(f"\n{channel} batch of {n}: per message (record files only)")
        for size in sizes:
            work = Path(tempfile.mkdtemp(dir=root))
            calls = _strace([*me, "--child", "batch", "--work", str(work), "--page-size",
                             str(size), "--channel", channel, "--n", str(n)], work / "r.db")
            _show(size, calls, n)
            shutil.rmtree(work)
    key = MasterKey.from_text(key_file.read_text().strip())
    print(f"\nreads: verify + timeline/export of {args.read_customers} customers over "
          f"{args.read_emails} emails + {args.read_sms} SMS (totals)")
    for size in sizes:
        work = Path(tempfile.mkdtemp(dir=root))
        db = _fill(work, size, key, args.read_emails, args.read_sms)
        calls = _strace([*me, "--child", "reads", "--work", str(work),
                         "--read-emails", str(args.read_emails), "--read-sms",
                         str(args.read_sms), "--read-customers", str(args.read_customers)], db)
        print(f"  (record {db.stat().st_size / 1e6:.1f} MB)")
        _show(size, calls, 1)
        shutil.rmtree(work)


def _show(size: int, calls: dict[str, dict[str, int]], n: int) -> None:
    parts = []
    total_calls = 0
    total_bytes = 0
    for kind in ("db", "wal", "shm"):
        got = calls.get(kind, {})
        c = sum(v for k, v in got.items() if not k.endswith("_bytes"))
        b = sum(v for k, v in got.items() if k.endswith("_bytes"))
        syncs = got.get("fsync", 0) + got.get("fdatasync", 0)
        total_calls += c
        total_bytes += b
        parts.append(f"{kind}: {c / n:.2f} calls {b / n / 1024:.1f} KiB {syncs / n:.3f} syncs")
    print(f"  {size:6}: {total_calls / n:7.2f} calls {total_bytes / n / 1024:8.1f} KiB | "
          + " | ".join(parts))


def _cpu(args: argparse.Namespace, sizes: list[int], key: MasterKey, root: Path) -> None:
    # One warm-up each (templates, imports), then rounds interleaving the sizes.
    for channel, n in (("email", 50), ("sms", 200)):
        work = Path(tempfile.mkdtemp(dir=root))
        _batch(work, 4096, channel, n, "W", key)
        shutil.rmtree(work)
    got: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    readers = _read_customers(args.read_emails, args.read_sms, args.read_customers)
    filled = {size: _fill(Path(tempfile.mkdtemp(dir=root)), size, key, args.read_emails,
                          args.read_sms) for size in sizes} if args.read_rounds else {}
    for r in range(args.rounds):
        order = sizes if r % 2 == 0 else sizes[::-1]
        for channel, n in (("email", args.email), ("sms", args.sms)):
            if channel not in args.channels:
                continue
            for size in order:
                work = Path(tempfile.mkdtemp(dir=root))
                run = _appends if args.record_only else _batch
                got[(channel, size)].append(run(work, size, channel, n, f"R{r}", key))
                shutil.rmtree(work)
        if r < args.read_rounds:
            for size in order:
                got[("reads", size)].append(_reads(filled[size], key, readers))
    print(f"load {os.getloadavg()[0]:.2f}; {args.rounds} rounds; per message µs "
          "(min / median), reads ms in all")
    for (what, size), runs in sorted(got.items()):
        fields = ("user_ms", "sys_ms") if what == "reads" else ("user_us", "sys_us")
        cols = []
        for f in fields:
            vals = [x[f] for x in runs]
            cols.append(f"{f} {min(vals):7.1f} / {statistics.median(vals):7.1f}")
        tot = [x[fields[0]] + x[fields[1]] for x in runs]
        cols.append(f"total {min(tot):7.1f} / {statistics.median(tot):7.1f}")
        print(f"  {what:5} {size:6}: " + "  ".join(cols))
    # Paired by round (the runs of one round are next to each other: the same load).
    base = sizes[0]
    for (what, size), runs in sorted(got.items()):
        if size == base:
            continue
        fields = ("user_ms", "sys_ms") if what == "reads" else ("user_us", "sys_us")
        cols = []
        for f in (*fields, "total"):
            diffs = [(x[f] if f != "total" else x[fields[0]] + x[fields[1]])
                     - (y[f] if f != "total" else y[fields[0]] + y[fields[1]])
                     for x, y in zip(runs, got[(what, base)], strict=True)]
            q = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
            lower = sum(d < 0 for d in diffs)
            cols.append(f"{f} {q[1]:+.1f} ({q[0]:+.1f}..{q[2]:+.1f}, lower {lower}/{len(diffs)})")
        print(f"  {what:5} {size:6} - {base}, paired median (quartiles): " + "  ".join(cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,8192,16384,65536",
                        help="page sizes to compare, comma-separated (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds of the batches (default: %(default)s)")
    parser.add_argument("--read-rounds", type=int, default=5,
                        help="rounds of the reads (default: %(default)s)")
    parser.add_argument("--email", type=int, default=512,
                        help="emails per batch (default: %(default)s)")
    parser.add_argument("--sms", type=int, default=2048,
                        help="SMS per batch (default: %(default)s)")
    parser.add_argument("--read-emails", type=int, default=2000,
                        help="emails in the record the reads run on (default: %(default)s)")
    parser.add_argument("--read-sms", type=int, default=4000,
                        help="SMS in the record the reads run on (default: %(default)s)")
    parser.add_argument("--read-customers", type=int, default=200,
                        help="customers whose timeline and export are read (default: %(default)s)")
    parser.add_argument("--channels", default="email,sms",
                        help="batches to run, comma-separated (default: %(default)s)")
    parser.add_argument("--syscalls", action="store_true",
                        help="count system calls and bytes per record file under strace "
                             "instead of timing CPU")
    parser.add_argument("--record-only", action="store_true",
                        help="time Record.append_many alone (no rendering)")
    # internal: one run in a child process
    parser.add_argument("--child", choices=("batch", "reads"), help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--page-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channel", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    args.channels = args.channels.split(",")
    root = Path(tempfile.mkdtemp(prefix="ccm-bench-page-"))
    try:
        key = MasterKey.generate()
        if args.syscalls:
            key_file = root / "key"
            key_file.write_text(key.text())
            _syscalls(args, sizes, key_file, root)
        else:
            _cpu(args, sizes, key, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
