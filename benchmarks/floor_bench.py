"""The floor (k): the least CPU per message that ccm's guarantees need, done without ccm.

Issue 12 asks ``ccm batch`` to be at least as fast as a naive loop that only
renders (plain jinja2 with Babel filters, from contexts built outside its
timing), record with master key included on ccm's side. This measures the
least any implementation of ccm's guarantees must do per message, with the
cheapest pieces known, in one plain Python loop, against the same naive loop
in the same invocation:

1. ``json.loads`` of the input line (``ccm batch`` reads JSONL);
2. the request schema and the template's contract, as fastjsonschema compiled
   them (ccm's compiled validators: the cheapest check of the shape known);
3. the text: SMS, the template in a plain ``jinja2.Environment`` per locale
   (no sandbox, no budgets) with ccm's filters (currency formats and dates
   remembered, far cheaper than Babel's calls) and the translations, from
   contexts built outside the timing, as the naive loop's are (checked to
   write ccm's text for every context before the timing); email, ccm's own
   ``Engine.render`` bytes, made outside the timing, its cost measured apart
   and added (the cheapest email render known: already below the naive loop,
   figure i-email-api);
4. the record in ccm's own format, so that ``Record.verify`` accepts it and
   ``Record.content`` decrypts it (``tests/test_benchmark_baselines.py``): ccm's
   tables and indexes, WAL with ``synchronous=FULL``, one transaction and one
   ``executemany`` per table per 256 messages; per message the SHA-256 of the
   content, a new customer's data key wrapped by the master key, the content
   sealed with it (AES-256-GCM), the chain link (SHA-256 of the canonical
   JSON of the message), the message row;
5. the output: one JSONL line per message, one file per 256 messages, fsynced.

Left out, each in the floor's favour: the reads before a commit
(idempotency keys, chain heads, known data keys), the contact policy, SMS
normalising and segments, the sandbox and the render budgets, building the
context, the parameters digest, staging and renaming the output, the summary,
a clock reading per message.

* ``k-sms-floor``: naive µs per SMS / floor µs per SMS -- the best ratio any
  implementation of the guarantees could reach against the naive loop
  (``ccm batch`` measured 0.22-0.26x: figure g-sms).
* ``k-email-floor``: naive µs per email / (the floor without the render +
  ccm's ``Engine.render``): the best ratio with today's email render.

For people: no target, no assertion. CPU time of this one process, variants
interleaved, best of the rounds.

    python benchmarks/floor_bench.py [--quick]     # ~60 s (--quick ~15 s)
    python benchmarks/run.py --only floor
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from _common import (
    PACK,
    TEMPLATES,
    NaiveLoop,
    Result,
    best_of,
    load_average,
    naive_template,
    requests_for,
)

TEMPLATE = "payment_reminder"
AS_OF = "2026-03-02T15:00:00+00:00"  # daytime in every sample's zone (no quiet hours)
#: Messages per record transaction and per output file, as ``ccm batch``'s tasks.
CHUNK = 256
#: Message ids start with this time in ms (a fixed clock: no reading per message).
_AT_MS = 1_772_463_600_000


def _clock() -> datetime:
    return datetime.fromisoformat(AS_OF)


class Floor:
    """The floor loop over ``requests`` for ``channel``; :meth:`run` writes into a folder.

    ``texts`` gives the message text per request instead of the plain jinja2
    render (email: ccm's own bytes, made outside the timing).
    """

    def __init__(self, channel: str, requests: list[dict[str, Any]], master: Any,
                 texts: list[str] | None = None) -> None:
        from ccm.render.engine import Engine
        from ccm.render.i18n import FILTERS
        from ccm.render.template import request_fast_validator

        self.naive = NaiveLoop(TEMPLATE, channel, requests, AS_OF)
        engine = Engine(PACK, TEMPLATES, record=None, clock=_clock)
        tpl = engine.template(TEMPLATE)
        self.channel = channel
        self.template_version = tpl.version
        self.pack_version = engine.pack.version
        self.lines = [json.dumps(r).encode() for r in requests]
        self.contexts = self.naive.contexts
        self.texts = texts
        self.render = naive_template(TEMPLATE, channel, self.contexts, FILTERS).render
        self.check_request = request_fast_validator()
        self.check_data = tpl.fast_validator
        if self.check_request is None or self.check_data is None:
            raise RuntimeError(f"{TEMPLATE}: no compiled validator")
        self.master = master

    def new_folder(self, root: Path, name: str) -> Path:
        """An empty record (ccm's schema, the master key's fingerprint) and output folder."""
        from ccm.record import Record

        folder = root / name
        folder.mkdir()
        Record(f"sqlite:///{folder / 'record.db'}").close()
        with sqlite3.connect(folder / "record.db") as db:
            db.execute("INSERT INTO ccm_meta (key, value) VALUES (?, ?)",
                       ("master_key_fingerprint", self.master.fingerprint))
        return folder

    def run(self, folder: Path, *, store: bool = True) -> None:
        """Every message: parse, check, text; with ``store``, the record and the output."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from ccm.record.archive import aad
        from ccm.record.chain import GENESIS, message_body_json, message_link_hash
        from ccm.record.datakeys import key_detail
        from ccm.record.entries import _ENTRY_FIELDS

        row_of = itemgetter(*_ENTRY_FIELDS)
        created = AS_OF.replace("+00:00", ".000000+00:00")
        created_db = created[:10] + " " + created[11:26]
        db = sqlite3.connect(folder / "record.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        insert = {table: f"INSERT INTO {table} ({', '.join(cols)}) "
                         f"VALUES ({', '.join('?' * len(cols))})"
                  for table, cols in (
                      ("data_keys", ("customer_id", "key_id", "wrapped", "created_at")),
                      ("messages", _ENTRY_FIELDS),
                      ("archive", ("ref", "part", "message_id", "customer_id", "key_id",
                                   "blob")),
                      ("chain", ("customer_id", "seq", "kind", "ref", "at", "detail",
                                 "prev_hash", "hash")))}
        out = (folder / "messages.jsonl").open("wb")
        texts = self.texts
        render, contexts, lines = self.render, self.contexts, self.lines
        check_request, check_data = self.check_request, self.check_data
        master, channel = self.master, self.channel
        try:
            for start in range(0, len(lines), CHUNK):
                keys, messages, archive, chain, written = [], [], [], [], []
                noise = os.urandom(100 * CHUNK)
                for i in range(start, min(len(lines), start + CHUNK)):
                    request = json.loads(lines[i])
                    check_request(request)
                    check_data(request["data"])
                    text = render(contexts[i]) if texts is None else texts[i]
                    content = text.encode()
                    sha = hashlib.sha256(content).hexdigest()
                    if not store:
                        continue
                    at = 100 * (i - start)
                    customer = request["customer"]["id"]
                    message_id = f"{_AT_MS:012x}7{noise[at:at + 10].hex()[:19]}"
                    key, key_id = noise[at + 10:at + 42], noise[at + 42:at + 58].hex()
                    wrapped = master.wrap(key, customer_id=customer,
                                          nonce=noise[at + 58:at + 70])
                    keys.append((customer, key_id, wrapped, created_db))
                    commitment = key_detail(key_id, wrapped, master)
                    nonce = noise[at + 70:at + 82]
                    archive.append((message_id, "content", message_id, customer, key_id,
                                    nonce + AESGCM(key).encrypt(
                                        nonce, content, aad(message_id, "content", customer))))
                    values = {
                        "message_id": message_id, "customer_id": customer,
                        "idempotency_key": f"floor:{TEMPLATE}:{customer}:{channel}",
                        "params_sha256": sha, "channel": channel, "template": TEMPLATE,
                        "template_version": self.template_version, "pack": "acme",
                        "pack_version": self.pack_version, "message_type": "transactional",
                        "journey": None, "locale": contexts[i]["locale"],
                        "created_at": created_db, "status": "generated", "reason": None,
                        "content_sha256": sha, "archival_sha256": None,
                        "sources_sha256": None, "archive_ref": message_id, "segment": None,
                    }
                    messages.append(row_of(values))
                    link = message_link_hash(
                        customer_id=customer, seq=1, ref=message_id, at=created,
                        detail=commitment, prev=GENESIS,
                        body_json=message_body_json(values, created))
                    chain.append((customer, 1, "message", message_id, created_db, commitment,
                                  GENESIS, link))
                    written.append(json.dumps({
                        "line": i + 1, "message_id": message_id, "customer_id": customer,
                        "channel": channel, "template": TEMPLATE,
                        "locale": values["locale"], "content_sha256": sha, "content": text,
                    }).encode() + b"\n")
                if not store:
                    continue
                db.execute("BEGIN IMMEDIATE")
                for table, rows in (("data_keys", keys), ("messages", messages),
                                    ("archive", archive), ("chain", chain)):
                    db.executemany(insert[table], rows)
                db.execute("COMMIT")
                out.write(b"".join(written))
                out.flush()
                os.fsync(out.fileno())
        finally:
            out.close()
            db.close()


def _timed_runs(floor: Floor, work: Path, rounds: int, **kwargs: Any) -> Callable[[], None]:
    """A callable that runs the floor into the next of ``rounds`` folders made beforehand."""
    folders = [floor.new_folder(work, f"{floor.channel}-{len(kwargs)}-{r}")
               for r in range(rounds)]

    def run() -> None:
        floor.run(folders.pop(), **kwargs)

    return run


def bench_sms(n: int, rounds: int, work: Path, master: Any) -> Result:
    """The SMS floor and its parts against the naive loop, same invocation."""
    requests = list(requests_for(TEMPLATE, n, prefix="K"))
    floor = Floor("sms", requests, master)
    render = floor.render

    def render_only() -> None:
        for ctx in floor.contexts:
            render(ctx)

    best = best_of(rounds, {
        "naive": floor.naive.run,
        "floor": _timed_runs(floor, work, rounds),
        "parse, check, text": _timed_runs(floor, work, rounds, store=False),
        "text": render_only,
    })
    us = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    return Result(
        "k-sms-floor", "SMS: the naive loop / the least the guarantees cost (parse, check, "
        "render with ccm's filters, record with master key, JSONL), CPU per message",
        us["naive"] / us["floor"], "x",
        details={"naive µs/SMS": us["naive"], "floor µs/SMS": us["floor"],
                 "of which the text (plain jinja2, ccm's filters)": us["text"],
                 "of which parse and check": round(us["parse, check, text"] - us["text"], 1),
                 "of which record and output": round(us["floor"] - us["parse, check, text"], 1),
                 "messages": n, "load": load_average()},
        note="the best ratio any implementation could reach; target g-sms is >= 1.0x")


def bench_email(n: int, rounds: int, work: Path, master: Any) -> Result:
    """The email floor without the render, plus ccm's render, against the naive loop."""
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    requests = list(requests_for(TEMPLATE, n, prefix="L"))
    engine = Engine(PACK, TEMPLATES, record=None, clock=_clock)
    checked = [validate_request(r) for r in requests]
    texts = [engine.render(TEMPLATE, r, "email", record=False).content.decode()
             for r in checked]  # also warms every locale's templates and shapes
    floor = Floor("email", requests, master, texts)

    def ccm_render() -> None:
        for req in checked:
            engine.render(TEMPLATE, req, "email", record=False)

    best = best_of(rounds, {
        "naive": floor.naive.run,
        "floor without the render": _timed_runs(floor, work, rounds),
        "parse and check": _timed_runs(floor, work, rounds, store=False),
        "ccm render": ccm_render,
    })
    us = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    least = us["floor without the render"] + us["ccm render"]
    return Result(
        "k-email-floor", "email: the naive loop / (the least the guarantees cost besides the "
        "render + ccm's Engine.render), CPU per message", us["naive"] / least, "x",
        details={"naive µs/email": us["naive"], "ccm Engine.render µs/email": us["ccm render"],
                 "of which parse and check": us["parse and check"],
                 "of which record and output (19 KB .eml)":
                     round(us["floor without the render"] - us["parse and check"], 1),
                 "messages": n, "load": load_average()},
        note="the best ratio with today's render; target g-email is >= 1.0x")


def run(quick: bool) -> list[Result]:
    """Both floors; ``quick`` uses fewer messages."""
    from ccm.record import MasterKey

    sms_n, email_n, rounds = (1500, 300, 3) if quick else (6000, 1500, 3)
    master = MasterKey.generate()
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-floor-"))
    try:
        return [bench_sms(sms_n, rounds, work, master),
                bench_email(email_n, rounds, work, master)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import sys

    for result in run("--quick" in sys.argv):
        print(result.id, f"{result.value:.2f}{result.unit}", result.details)
