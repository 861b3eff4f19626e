"""Record appends per second: one writer and concurrent writer processes, SQLite and PostgreSQL.

    python benchmarks/record_bench.py            # the figures in docs/performance.md (~2 min)
    python benchmarks/record_bench.py --quick    # a smoke run (~20 s)
    python benchmarks/record_bench.py --json out.json
    python benchmarks/record_bench.py --bulk-only  # append_many per message vs naive, and as
                                                   # the record grows to 100k (~2 min)

Exits 1 when a figure with a target (the bulk figure: <= 20 us per message) misses it.

Each figure appends realistic messages (an entry plus a 2 KB content blob,
encrypted into the archive under a master key) with :meth:`Record.append`,
one durable transaction per message, exactly as the engine does, and
compares it in the same run with a **naive baseline**: the same columns and
the same content inserted by plain SQLAlchemy Core into a table with only a
primary key, one transaction per row, on the same database with the same
durability settings (SQLite WAL + ``synchronous=FULL``; PostgreSQL
``synchronous_commit=on``), and no idempotency check, customer lock, cap
check, encryption or hash chain. The ratio ``record / naive`` is what those
guarantees cost. ``append_many`` (what batch runs use: many messages per
transaction) is measured for the single writer as well.

The **bulk figure** (issue 12) is CPU time (this process: user + system,
``time.process_time``) per message of ``append_many`` on chunks of 256 SMS
for new customers with a master key (a data key made per customer, content
sealed, a chain link, an archive row), against a naive loop in the same
invocation: ``sqlite3`` ``executemany`` of ``(message_id, customer_id,
content)`` into a plain table, one transaction per chunk, WAL +
``synchronous=FULL`` (psycopg ``executemany`` on PostgreSQL). Rounds
interleave the two; the best of each is kept.

The **growth figure** fills one SQLite record to 100,000 such messages and
reports the CPU per message of the last tenth of the chunks over the first
(1.0: an append costs the same on a full record as on an empty one). A
second record, filled in turn in the same invocation, gets random ``uuid4``
message ids, as ccm made them before and as a naive loop does; its growth
is printed beside.

Concurrent figures start ``--writers`` processes (spawn) that wait at a
barrier and then append for customers of their own; appends per second is
all their appends over the wall time from the barrier to the last one done
(start-up and imports excluded). PostgreSQL runs use a fresh schema in the
database of ``CCM_TEST_PG_URL`` (dropped afterwards) and are skipped, saying
so, when it is not set. Wall-clock times; the best of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import ROOT, Result, load_average  # noqa: E402

sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from ccm.message import new_message_id  # noqa: E402
from ccm.record import Entry, MasterKey, Record  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
PG_ENV = "CCM_TEST_PG_URL"
CONTENT = (b"Subject: Your statement is ready\r\n\r\n" + b"x" * 2048)
_T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


# --- what gets appended --------------------------------------------------------------


def make_entry(customer: str, n: int) -> Entry:
    """A generated operational email, as the engine would record it."""
    mid = uuid.uuid4().hex
    return Entry(
        message_id=mid, idempotency_key=f"bench:{customer}:{n}",
        params_sha256=hashlib.sha256(mid.encode()).hexdigest(), customer_id=customer,
        channel="email", template="monthly_statement", template_version="1.0.0", pack="acme",
        pack_version="1.0.0", message_type="operational", journey="servicing", locale="en_GB",
        created_at=_T0, status="generated", reason=None,
        content_sha256=hashlib.sha256(CONTENT).hexdigest(), archival_sha256=None,
        sources_sha256="5" * 64, archive_ref=None, segment="retail",
    )


def _customers(writer: int, count: int, per_customer: int = 5) -> Iterator[str]:
    """Customer ids for one writer: ``per_customer`` messages each, never shared with others."""
    for i in range(count):
        yield f"W{writer}-C{i // per_customer:05d}"


# --- the naive baseline ----------------------------------------------------------------

_naive_meta = sa.MetaData()
naive_messages = sa.Table(
    "naive_messages", _naive_meta,
    sa.Column("message_id", sa.String, primary_key=True),
    *(sa.Column(name, sa.String) for name in (
        "idempotency_key", "params_sha256", "customer_id", "channel", "template",
        "template_version", "pack", "pack_version", "message_type", "journey", "locale",
        "status", "reason", "content_sha256", "archival_sha256", "sources_sha256",
        "archive_ref", "segment")),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("content", sa.LargeBinary),
)


def naive_engine(url: str) -> sa.Engine:
    """A plain SQLAlchemy engine with the record's durability settings, and the table."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.close()
    _naive_meta.create_all(engine)
    return engine


def naive_insert(engine: sa.Engine, entry: Entry) -> None:
    """One row, one transaction: what an application without ccm would write."""
    row = {c.name: getattr(entry, c.name) for c in naive_messages.c if c.name != "content"}
    with engine.begin() as conn:
        conn.execute(naive_messages.insert().values(**row, content=CONTENT))


# --- writers (top level, so spawned processes can import them) ----------------------------


def _writer(kind: str, url: str, key_text: str, writer: int, count: int, barrier: Any,
            out: Any) -> None:
    """Append ``count`` messages after the barrier; report (start, end) wall times."""
    if kind == "record":
        rec = Record(url, master_key=MasterKey.from_text(key_text))
        entries = [make_entry(c, i) for i, c in enumerate(_customers(writer, count))]

        def work() -> None:
            for e in entries:
                rec.append(e, content=CONTENT)
        done: Callable[[], None] = rec.close
    else:
        engine = naive_engine(url)
        entries = [make_entry(c, i) for i, c in enumerate(_customers(writer, count))]

        def work() -> None:
            for e in entries:
                naive_insert(engine, e)
        done = engine.dispose
    barrier.wait()
    start = time.time()
    work()
    end = time.time()
    done()
    out.put((start, end))


def concurrent_rate(kind: str, url: str, key: MasterKey, writers: int, per_writer: int) -> float:
    """Appends per second of ``writers`` processes together (wall clock)."""
    barrier, out = SPAWN.Barrier(writers), SPAWN.Queue()
    procs = [SPAWN.Process(target=_writer,
                           args=(kind, url, key.text(), w, per_writer, barrier, out))
             for w in range(writers)]
    for p in procs:
        p.start()
    times: list[tuple[float, float]] = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"{kind} writer {p.pid} exited with {p.exitcode}")
    elapsed = max(e for _, e in times) - min(s for s, _ in times)
    return writers * per_writer / elapsed


# --- databases ----------------------------------------------------------------------------


@contextmanager
def sqlite_db(folder: Path) -> Iterator[str]:
    """A fresh SQLite file URL in ``folder``."""
    path = folder / f"bench-{uuid.uuid4().hex[:8]}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def pg_db(base: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database at ``base``; dropped afterwards."""
    from sqlalchemy.pool import NullPool

    schema = f"ccm_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, poolclass=NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


# --- the bulk figure (append_many, new customers, 256 per chunk) -----------------------------

SMS = (b"Hi Ada, your payment of GBP 120.00 for invoice INV-2041 is due on 12 Jan. "
       b"Pay at https://acme.example/pay/8d1f or reply STOP to opt out.")
CHUNK = 256


def _random_id(_at: datetime) -> str:
    """A message id as ccm made them until it made UUID version 7 (and as a naive loop does)."""
    return uuid.uuid4().hex


def sms_chunk(tag: str, size: int = CHUNK,
              ids: Callable[[datetime], str] = new_message_id) -> list[dict[str, Any]]:
    """One chunk of SMS for new customers, shaped as the batch worker's entries.

    Message ids are made as the renderer makes them (:func:`ccm.message.new_message_id`,
    from the time of the render), unless ``ids`` says otherwise.
    """
    digest = hashlib.sha256(SMS).hexdigest()
    at = datetime.now(UTC)
    out = []
    for i in range(size):
        mid, customer = ids(at), f"{tag}-{i:06d}"
        out.append({"entry": Entry(
            message_id=mid, idempotency_key=f"run-{tag}:payment_reminder:{customer}:sms",
            params_sha256=hashlib.sha256(mid.encode()).hexdigest(), customer_id=customer,
            channel="sms", template="payment_reminder", template_version="1.0.0", pack="acme",
            pack_version="1.0.0", message_type="operational", journey="collections",
            locale="en_GB", created_at=_T0, status="generated", reason=None,
            content_sha256=digest, archival_sha256=None, sources_sha256="5" * 64,
            archive_ref=None, segment="retail"), "content": SMS, "archival": None, "caps": ()})
    return out


def _naive_bulk(url: str, chunks: list[list[dict[str, Any]]]) -> float:
    """CPU seconds of the naive loop: one executemany and one transaction per chunk."""
    rows = [[(i["entry"].message_id, i["entry"].customer_id, i["content"]) for i in chunk]
            for chunk in chunks]
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(sa.make_url(url).database or ":memory:", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE naive_sms (message_id TEXT PRIMARY KEY, customer_id TEXT, "
                     "content BLOB)")
        start = time.process_time()
        for part in rows:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO naive_sms VALUES (?, ?, ?)", part)
            conn.execute("COMMIT")
        spent = time.process_time() - start
        conn.close()
        return spent
    import psycopg

    pg = sa.make_url(url)
    options = pg.query.get("options")
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.username, password=pg.password,
                         dbname=pg.database, options=str(options or "")) as pg_conn:
        pg_conn.execute("SET synchronous_commit TO on")
        pg_conn.execute("CREATE TABLE naive_sms (message_id TEXT PRIMARY KEY, customer_id TEXT, "
                        "content BYTEA)")
        pg_conn.commit()
        start = time.process_time()
        for part in rows:
            with pg_conn.cursor() as cur:
                cur.executemany("INSERT INTO naive_sms VALUES (%s, %s, %s)", part)
            pg_conn.commit()
        return time.process_time() - start


def bulk_figure(backend: str, open_db: Callable[[], Any], *, chunks: int,
                rounds: int) -> Result:
    """CPU us per message of append_many (new customers, 256 per chunk) vs the naive loop."""
    key = MasterKey.generate()
    best: dict[str, float] = {}
    for r in range(rounds):
        with open_db() as url:
            rec = Record(url, master_key=key)
            rec.append_many(sms_chunk(f"warm{r}"))
            work = [sms_chunk(f"r{r}c{c}") for c in range(chunks)]
            start = time.process_time()
            for chunk in work:
                rec.append_many(chunk)
            spent = time.process_time() - start
            report = rec.verify()
            if not report.ok or report.checked != (chunks + 1) * CHUNK:
                raise RuntimeError(f"bulk run did not verify: {report.to_dict()}")
            rec.close()
            best["record"] = min(spent, best.get("record", spent))
        with open_db() as url:
            spent = _naive_bulk(url, [sms_chunk(f"n{r}c{c}") for c in range(chunks)])
            best["naive"] = min(spent, best.get("naive", spent))
    n = chunks * CHUNK
    record_us, naive_us = best["record"] / n * 1e6, best["naive"] / n * 1e6
    return Result(
        f"{backend}-bulk-sms",
        f"append_many per message ({backend}, master key, new customers, {CHUNK} per chunk)",
        record_us, "us/msg", target=20.0, higher_is_better=False,
        details={"naive executemany": f"{naive_us:.1f} us/msg",
                 "record / naive (CPU)": f"{record_us / naive_us:.1f}x",
                 "run": f"{chunks} chunks of {CHUNK}, best of {rounds}, load {load_average()}"})


def growth_figure(open_db: Callable[[], Any], *, messages: int) -> Result:
    """append_many's CPU per message as the record grows: the last tenth of a fill over the first.

    One SQLite record is filled with ``messages`` SMS for new customers (chunks
    of 256, master key), ids as the renderer makes them; a second record, filled
    in the same invocation chunk for chunk in turn, gets random (uuid4) message
    ids, as ccm made them before. The figure is the ratio of the CPU per message of
    the last tenth of the chunks to the first tenth (1.0: flat). No target: the
    customer ids (``g<chunk>-<n>``, which sort out of their order of arrival, as
    real ones do) decide part of it through the indexes keyed by customer.
    """
    key = MasterKey.generate()
    chunks = max(20, messages // CHUNK)
    tenth = chunks // 10
    spent: dict[str, list[float]] = {"ordered": [], "random": []}
    with open_db() as ordered_url, open_db() as random_url:
        recs = {"ordered": (Record(ordered_url, master_key=key), new_message_id),
                "random": (Record(random_url, master_key=key), _random_id)}
        for c in range(chunks):
            for name, (rec, ids) in recs.items():
                chunk = sms_chunk(f"g{c}", ids=ids)
                start = time.process_time()
                rec.append_many(chunk)
                spent[name].append(time.process_time() - start)
        for rec, _ in recs.values():
            rec.close()

    def per_message(times: list[float]) -> float:
        return sum(times) / (len(times) * CHUNK) * 1e6

    def growth(name: str) -> tuple[float, float, float]:
        first, last = per_message(spent[name][:tenth]), per_message(spent[name][-tenth:])
        return first, last, last / first

    first, last, ratio = growth("ordered")
    r_first, r_last, r_ratio = growth("random")
    return Result(
        "sqlite-bulk-growth",
        f"append_many as the record grows to {chunks * CHUNK:,} messages: CPU per message, "
        "last tenth / first tenth (SQLite, master key)",
        ratio, "x", higher_is_better=False,
        details={"time-ordered ids (ccm)": f"{first:.1f} -> {last:.1f} us/msg",
                 "random uuid4 ids (as before)": f"{r_first:.1f} -> {r_last:.1f} us/msg "
                                                   f"({r_ratio:.2f}x)",
                 "run": f"{chunks} chunks of {CHUNK} each, interleaved, load {load_average()}"})


# --- the measurements -----------------------------------------------------------------------


def _timed(fn: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def single_rates(open_db: Callable[[], Any], key: MasterKey, n: int, rounds: int,
                 batch: int) -> dict[str, float]:
    """Best appends/s of one writer: ``append``, ``append_many`` and the naive insert."""
    best: dict[str, float] = {}

    def keep(name: str, rate: float) -> None:
        best[name] = max(rate, best.get(name, 0.0))

    for _ in range(rounds):
        with open_db() as url:
            rec = Record(url, master_key=key)
            entries = [make_entry(c, i) for i, c in enumerate(_customers(0, n))]
            rec.append(make_entry("warm-up", 0), content=CONTENT)

            def appends(rec: Record = rec, entries: list[Entry] = entries) -> None:
                for e in entries:
                    rec.append(e, content=CONTENT)
            keep("record", _timed(appends, n))
            many = [{"entry": make_entry(c, i), "content": CONTENT}
                    for i, c in enumerate(_customers(1, n))]

            def bulk(rec: Record = rec, many: list[dict[str, Any]] = many) -> None:
                for i in range(0, len(many), batch):
                    rec.append_many(many[i:i + batch])
            keep("append_many", _timed(bulk, n))
            assert rec.verify().ok
            rec.close()
        with open_db() as url:
            engine = naive_engine(url)
            rows = [make_entry(c, i) for i, c in enumerate(_customers(0, n))]
            naive_insert(engine, make_entry("warm-up", 0))

            def plain(engine: sa.Engine = engine, rows: list[Entry] = rows) -> None:
                for e in rows:
                    naive_insert(engine, e)
            keep("naive", _timed(plain, n))
            engine.dispose()
    return best


def concurrent_rates(open_db: Callable[[], Any], key: MasterKey, writers: int,
                     per_writer: int, rounds: int) -> dict[str, float]:
    """Best appends/s of ``writers`` processes, record and naive."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for kind in ("record", "naive"):
            with open_db() as url:
                if kind == "record":
                    Record(url, master_key=key).close()  # the schema, as an application would
                else:
                    naive_engine(url).dispose()
                rate = concurrent_rate(kind, url, key, writers, per_writer)
                if kind == "record":
                    with Record(url) as rec:
                        report = rec.verify()
                        if not report.ok or report.checked != writers * per_writer:
                            raise RuntimeError(f"concurrent run lost entries: {report.to_dict()}")
            best[kind] = max(rate, best.get(kind, 0.0))
    return best


def figures(backend: str, open_db: Callable[[], Any], *, n: int, writers: int,
            per_writer: int, rounds: int, batch: int) -> list[Result]:
    """The figures of one backend."""
    key = MasterKey.generate()
    single = single_rates(open_db, key, n, rounds, batch)
    many = concurrent_rates(open_db, key, writers, per_writer, rounds)
    how = f"{n} appends, best of {rounds}"
    return [
        Result(f"{backend}-1", f"{backend}: one writer, Record.append", single["record"],
               "msg/s", details={"naive insert": f"{single['naive']:,.0f}/s",
                                 "record / naive": f"{single['record'] / single['naive']:.2f}x",
                                 "run": how}),
        Result(f"{backend}-1-bulk", f"{backend}: one writer, append_many({batch})",
               single["append_many"], "msg/s",
               details={"append_many / naive": f"{single['append_many'] / single['naive']:.2f}x"}),
        Result(f"{backend}-{writers}", f"{backend}: {writers} writer processes, Record.append",
               many["record"], "msg/s",
               details={"naive insert": f"{many['naive']:,.0f}/s",
                        "record / naive": f"{many['record'] / many['naive']:.2f}x",
                        f"{writers} writers / 1 writer":
                            f"{many['record'] / single['record']:.2f}x",
                        "run": f"{writers} x {per_writer} appends, best of {rounds}"}),
    ]


def run(quick: bool = False, *, writers: int = 4, rounds: int | None = None,
        folder: Path | None = None, backends: tuple[str, ...] = ("sqlite", "postgresql"),
        bulk_only: bool = False) -> tuple[list[Result], list[str]]:
    """Every record figure; returns (results, notes about what was skipped)."""
    n = 200 if quick else 1000
    per_writer = 100 if quick else 500
    bulk_chunks = 8 if quick else 40
    rounds = rounds or (1 if quick else 3)
    results: list[Result] = []
    notes: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix="ccm-record-bench-", dir=folder))
    try:
        if "sqlite" in backends:
            results.append(bulk_figure("sqlite", lambda: sqlite_db(scratch), chunks=bulk_chunks,
                                       rounds=rounds))
            results.append(growth_figure(lambda: sqlite_db(scratch),
                                         messages=20_000 if quick else 100_000))
        if "sqlite" in backends and not bulk_only:
            results += figures("sqlite", lambda: sqlite_db(scratch), n=n, writers=writers,
                               per_writer=per_writer, rounds=rounds, batch=100)
        if "postgresql" in backends:
            base = os.environ.get(PG_ENV)
            if base:
                results.append(bulk_figure("postgresql", lambda: pg_db(base),
                                           chunks=bulk_chunks, rounds=rounds))
                if not bulk_only:
                    results += figures("postgresql", lambda: pg_db(base), n=n, writers=writers,
                                       per_writer=per_writer, rounds=rounds, batch=100)
            else:
                notes.append(f"PostgreSQL skipped: set {PG_ENV} "
                             "(e.g. postgresql+psycopg://ccm:ccm@127.0.0.1:5432/ccm_test)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results, notes


def _print(results: list[Result]) -> None:
    for r in results:
        unit = "/s" if r.unit == "msg/s" else f" {r.unit}"
        value = f"{r.value:>10,.0f}" if r.unit == "msg/s" else f"{r.value:>10,.1f}"
        print(f"  {r.id:16} {value}{unit}  {r.title}")
        if r.target is not None:
            sign = ">=" if r.higher_is_better else "<="
            print(f"  {'':16} {'':>12}  target {sign} {r.target:g} {r.unit}: "
                  f"{'met' if r.met else 'NOT MET'}")
        for name, value in r.details.items():
            print(f"  {'':16} {'':>12}  {name}: {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs, for a smoke test")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer processes")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (best kept)")
    parser.add_argument("--only", default="sqlite,postgresql",
                        help="comma-separated backends: sqlite, postgresql")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the SQLite files go (default: the temp folder)")
    parser.add_argument("--bulk-only", action="store_true",
                        help="only the append_many figure (issue 12)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.only.split(",") if b.strip())
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown or args.writers < 2:
        parser.error("--only takes sqlite and/or postgresql; --writers at least 2")
    print(f"record appends  python {platform.python_version()}  sqlalchemy {sa.__version__}  "
          f"cpus {os.cpu_count()}  load {load_average()}")
    started = time.perf_counter()
    results, notes = run(args.quick, writers=args.writers, rounds=args.rounds, folder=args.dir,
                         backends=backends, bulk_only=args.bulk_only)
    _print(results)
    for note in notes:
        print(f"  note: {note}")
    print(f"  ({time.perf_counter() - started:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))
    return 1 if any(r.met is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
