"""PDF statements: ccm's overhead over WeasyPrint (a) and batch rate per core vs a naive loop (b).

(a) The same statement HTML through WeasyPrint alone and through ``Engine.render``:
    * ``a``: the statement as configured (confidential: tagged PDF/A-3b
      archival copy, tagged delivery PDF, AES-256) against WeasyPrint's plain
      ``write_pdf()``;
    * ``a-same-output``: a non-confidential copy of the template (one tagged
      PDF, no encryption) against WeasyPrint writing the same tagged PDF --
      ccm's own overhead (validation, sandboxed Jinja, fetcher, metadata).
(b) Statements per CPU second: ``run_batch`` (in one process, record and files
    included) against the naive loop, plus prototypes of the strategies the
    issue suggests, on the same HTML, so each idea is measured on its own:
    * ``shared``: one FontConfiguration and the pack stylesheet parsed once;
    * ``merged-write``: lay out each statement, write one PDF for a chunk of
      statements (fonts subset once), split it with qpdf and encrypt each part;
    * ``one-document``: one HTML document per chunk (a section per statement,
      page counter reset per section), split at each section's first page.
      Note: ``counter(pages)`` is then the chunk's page count, so "Page x of
      y" is wrong in this variant -- measured to show what it would buy.
    The prototypes write untagged PDFs without an archival copy and encrypt
    with qpdf (pikepdf), as ccm does.
(b-breakdown) Where a confidential statement's time goes, stage by stage,
    with pypdf's encryption (what ccm used before) for comparison.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import (
    PACK,
    ROOT,
    TEMPLATES,
    Result,
    best_of,
    load_average,
    naive_statement_pipeline,
    requests_for,
)

CHUNK = 8
AS_OF = "2026-03-02T15:00:00+00:00"  # daytime in every sample's timezone (no quiet hours)
#: Statements in the small run subtracted from the large one (marginal cost).
SMALL = 2


def _encrypt_parts(pdf: bytes, ranges: list[tuple[int, int]], passwords: list[str],
                   title: str) -> list[bytes]:
    """Split ``pdf`` into page ranges with qpdf, each part AES-256 with its own password."""
    import pikepdf

    from ccm.render.security import encrypt_pdf

    parts = []
    with pikepdf.open(io.BytesIO(pdf)) as combined:
        for (start, stop), password in zip(ranges, passwords, strict=True):
            with pikepdf.new() as part:
                part.pages.extend(combined.pages[start:stop])
                part.docinfo["/Title"] = title
                part.docinfo["/Author"] = "Acme Bank"
                buffer = io.BytesIO()
                part.save(buffer)
            parts.append(encrypt_pdf(buffer.getvalue(), password))
    return parts


class Strategies:
    """The prototypes of (b), each turning a list of HTML strings into encrypted PDFs."""

    def __init__(self) -> None:
        from ccm.channels import pdf as pdf_channel

        self.pdf = pdf_channel
        self.fetcher = pdf_channel.PackFetcher(roots=[PACK, TEMPLATES])
        self.css = pdf_channel.load_stylesheet(PACK / "layouts" / "pdf.css", self.fetcher)
        self.base_url = PACK.as_uri() + "/"

    @staticmethod
    def _unlinked(html: str) -> str:
        return html.replace('<link rel="stylesheet" href="layouts/pdf.css">', "", 1)

    def _layout(self, html: str) -> Any:
        return self.pdf.render_document(self._unlinked(html), base_url=self.base_url,
                                        fetcher=self.fetcher, stylesheets=[self.css])

    def shared(self, htmls: list[str], passwords: list[str]) -> list[bytes]:
        from ccm.render.security import encrypt_pdf

        out = []
        for html, password in zip(htmls, passwords, strict=True):
            plain = self._layout(html).write_pdf()
            out.append(encrypt_pdf(plain, password))
        return out

    def merged_write(self, htmls: list[str], passwords: list[str]) -> list[bytes]:
        out = []
        for i in range(0, len(htmls), CHUNK):
            docs = [self._layout(h) for h in htmls[i:i + CHUNK]]
            pages = [page for doc in docs for page in doc.pages]
            combined = docs[0].copy(pages).write_pdf()
            ranges, start = [], 0
            for doc in docs:
                ranges.append((start, start + len(doc.pages)))
                start += len(doc.pages)
            out.extend(_encrypt_parts(combined, ranges, passwords[i:i + CHUNK], "Statement"))
        return out

    def one_document(self, htmls: list[str], passwords: list[str]) -> list[bytes]:
        out = []
        for i in range(0, len(htmls), CHUNK):
            chunk = htmls[i:i + CHUNK]
            head = chunk[0].split("<body", 1)[0]
            sections = []
            for j, html in enumerate(chunk):
                body = re.split(r"<body[^>]*>", html, maxsplit=1)[1].rsplit("</body>", 1)[0]
                sections.append(f'<section class="ccm-part" id="ccm-part-{j}">{body}</section>')
            style = ("<style>section.ccm-part { break-before: page; counter-reset: page 1 }"
                     " section.ccm-part:first-child { break-before: auto }</style>")
            html = head.replace("</head>", style + "</head>") + "<body>" + "".join(sections) \
                + "</body></html>"
            doc = self._layout(html)
            starts = {}
            for index, page in enumerate(doc.pages):
                for anchor in page.anchors:
                    if anchor.startswith("ccm-part-"):
                        starts.setdefault(int(anchor.rsplit("-", 1)[1]), index)
            bounds = [starts[j] for j in range(len(chunk))] + [len(doc.pages)]
            ranges = list(itertools.pairwise(bounds))
            out.extend(_encrypt_parts(doc.write_pdf(), ranges, passwords[i:i + CHUNK],
                                      "Statement"))
        return out


def _non_confidential_templates() -> Path:
    """A temporary copy of the templates with the statement not confidential."""
    folder = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    target = folder / "monthly_statement"
    shutil.copytree(TEMPLATES / "monthly_statement", target)
    manifest = target / "template.yaml"
    manifest.write_text(manifest.read_text().replace("confidential: true", "confidential: false"))
    return folder


def bench_overhead(n: int, rounds: int) -> list[Result]:
    """(a): ccm render vs WeasyPrint alone on the same HTML, per statement."""
    import weasyprint

    from ccm.render.engine import Engine

    naive = naive_statement_pipeline()
    requests = list(requests_for("monthly_statement", n))
    contexts = [naive.context(r) for r in requests]
    naive.check(contexts)
    htmls = [naive.html(c) for c in contexts]
    plain_templates = _non_confidential_templates()
    try:
        full = Engine(PACK, TEMPLATES, record=None)
        plain = Engine(PACK, plain_templates, record=None)
        base = naive.base_url
        for engine in (full, plain):  # warm caches (fonts, stylesheets) as a batch would
            engine.render("monthly_statement", requests[0], "pdf", record=False)
        weasyprint.HTML(string=htmls[0], base_url=base).write_pdf()
        best = best_of(rounds, {
            "weasyprint": lambda: [weasyprint.HTML(string=h, base_url=base).write_pdf()
                                   for h in htmls],
            "weasyprint_tagged": lambda: [
                weasyprint.HTML(string=h, base_url=base).write_pdf(pdf_tags=True)
                for h in htmls],
            "ccm_confidential": lambda: [full.render("monthly_statement", r, "pdf", record=False)
                                         for r in requests],
            "ccm_plain": lambda: [plain.render("monthly_statement", r, "pdf", record=False)
                                  for r in requests],
        })
    finally:
        shutil.rmtree(plain_templates, ignore_errors=True)
    per = {k: 1000 * v / n for k, v in best.items()}
    return [
        Result("a-same-output", "ccm PDF overhead over WeasyPrint, same output (tagged, "
               "not encrypted)", 100 * (per["ccm_plain"] / per["weasyprint_tagged"] - 1), "%",
               target=15, higher_is_better=False,
               details={"ccm_ms": round(per["ccm_plain"], 1),
                        "weasyprint_tagged_ms": round(per["weasyprint_tagged"], 1)}),
        Result("a", "ccm confidential statement (tagged + PDF/A-3b copy + AES-256) over "
               "WeasyPrint's plain write_pdf()",
               100 * (per["ccm_confidential"] / per["weasyprint"] - 1), "%", target=15,
               higher_is_better=False,
               details={"ccm_ms": round(per["ccm_confidential"], 1),
                        "weasyprint_ms": round(per["weasyprint"], 1)},
               note="ccm writes the archival PDF/A-3b, derives the delivery PDF from it "
                    "and encrypts it (qpdf); WeasyPrint writes one plain PDF"),
    ]


def bench_batch(n: int, rounds: int) -> list[Result]:
    """(b): statements per CPU second, batch and prototypes vs the naive loop.

    ``ccm_batch`` is ``run_batch`` in this process (SQLite record with a master key, files
    written), marginal: a run of ``n`` statements minus a run of :data:`SMALL`, so engine
    loading and record creation cancel out as they do in a long batch.
    """
    from ccm.batch import run_batch
    from ccm.record import MasterKey

    key = MasterKey.generate()

    naive = naive_statement_pipeline()
    requests = list(requests_for("monthly_statement", n))
    contexts = [naive.context(r) for r in requests]
    naive.check(contexts)
    htmls = [naive.html(c) for c in contexts]
    passwords = [c["customer"]["document_code"] for c in contexts]
    strategies = Strategies()
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    counter = iter(range(1_000_000))

    def batch(rows: list[dict[str, Any]]) -> None:
        run = next(counter)
        run_batch("monthly_statement", rows, pack=PACK, templates=TEMPLATES,
                  out=work / f"out{run}", record_url=f"sqlite:///{work / f'r{run}.db'}",
                  run_id=f"bench{run}", workers=0, channels=["pdf"], durable=False,
                  master_key=key, now=datetime.fromisoformat(AS_OF))

    try:
        naive.statement(contexts[0])
        strategies.shared(htmls[:1], passwords[:1])
        best = best_of(rounds, {
            # the statements the marginal ccm_batch figure covers (samples differ in length)
            "naive": lambda: [naive.statement(c) for c in contexts[SMALL:]],
            "ccm_batch": lambda: batch(requests),
            "ccm_batch_small": lambda: batch(requests[:SMALL]),
            "shared": lambda: strategies.shared(htmls, passwords),
            "merged_write": lambda: strategies.merged_write(htmls, passwords),
            "one_document": lambda: strategies.one_document(htmls, passwords),
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    marginal = max(best.pop("ccm_batch") - best.pop("ccm_batch_small"), 1e-9)
    rate = {k: n / v for k, v in best.items()}
    rate["naive"] = (n - SMALL) / best["naive"]
    rate["ccm_batch"] = (n - SMALL) / marginal
    details = {f"{k}_per_cpu_s": round(v, 2) for k, v in rate.items()}
    details["statements"] = n
    details["load"] = load_average()
    results = [Result("b", "batch PDF statements per core vs the naive loop (run_batch in-process, "
                      "record with master key, marginal; ccm_batch / naive)",
                      rate["ccm_batch"] / rate["naive"], "x", target=1.3, details=details)]
    for name, note in (
        ("shared", "one FontConfiguration + pre-parsed pack CSS"),
        ("merged_write", f"one write per {CHUNK} statements, split + encrypt with qpdf"),
        ("one_document", f"one HTML document per {CHUNK} statements (page x of y wrong)"),
    ):
        results.append(Result(f"b-{name.replace('_', '-')}", f"prototype: {note}",
                              rate[name] / rate["naive"], "x",
                              note="untagged, no archival copy, qpdf encryption"))
    return results


def bench_breakdown(n: int, rounds: int) -> list[Result]:
    """Where a confidential statement's time goes in ccm's PDF path (ms per statement)."""
    import hashlib

    from ccm.channels import pdf as pdf_channel
    from ccm.render.security import encrypt_pdf

    naive = naive_statement_pipeline()
    contexts = [naive.context(r) for r in requests_for("monthly_statement", n)]
    naive.check(contexts)
    htmls = [naive.html(c) for c in contexts]
    strategies = Strategies()
    fetcher, base = strategies.fetcher, strategies.base_url
    docs = [pdf_channel.render_document(h, base_url=base, fetcher=fetcher) for h in htmls]
    meta = {"title": "Statement", "author": "Acme Bank", "lang": "en-GB"}
    request = [("request.json", b"{}", "application/json")]
    tagged = [pdf_channel.write_pdf(d, **meta) for d in docs]
    untagged = [d.write_pdf() for d in docs]
    archival = [pdf_channel.write_pdf(d, **meta, variant="pdf/a-3b", attachments=request)
                for d in docs]

    def delivery(pdf: bytes) -> bytes:
        edit = pdf_channel.delivery_from_archival(
            {"ccm:archival-sha256": hashlib.sha256(pdf).hexdigest()})
        return encrypt_pdf(pdf, "01021980", edit=edit)

    def pypdf_encrypt(pdf: bytes) -> bytes:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
        writer.encrypt("01021980", os.urandom(16).hex(), algorithm="AES-256")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    best = best_of(rounds, {
        "layout (pdf.css linked, parsed once, as the engine does)": lambda: [
            pdf_channel.render_document(h, base_url=base, fetcher=fetcher) for h in htmls],
        "write PDF/A-3b archival copy": lambda: [
            pdf_channel.write_pdf(d, **meta, variant="pdf/a-3b", attachments=request)
            for d in docs],
        "delivery PDF from the archival copy + AES-256 (qpdf)": lambda: [
            delivery(p) for p in archival],
        "(before) write tagged delivery PDF": lambda: [
            pdf_channel.write_pdf(d, **meta) for d in docs],
        "(before) encrypt tagged PDF with pypdf": lambda: [pypdf_encrypt(p) for p in tagged],
        "(compare) encrypt tagged PDF with qpdf": lambda: [encrypt_pdf(p, "01021980")
                                                           for p in tagged],
        "(compare) write untagged PDF": lambda: [d.write_pdf() for d in docs],
        "(compare) encrypt untagged PDF with pypdf": lambda: [pypdf_encrypt(p)
                                                              for p in untagged],
    })
    details = {k: round(1000 * v / n, 1) for k, v in best.items()}
    total = (details["layout (pdf.css linked, parsed once, as the engine does)"]
             + details["write PDF/A-3b archival copy"]
             + details["delivery PDF from the archival copy + AES-256 (qpdf)"])
    return [Result("b-breakdown", "ccm confidential statement, sum of its stages",
                   total, "ms", higher_is_better=False, details=details)]


def run(quick: bool) -> list[Result]:
    """All PDF benchmarks; ``quick`` uses fewer statements and rounds."""
    n, rounds = (8, 2) if quick else (16, 3)
    return [*bench_overhead(n, rounds), *bench_batch(n, rounds), *bench_breakdown(n, rounds)]


# --- through the command an operator runs (b-cli) and on a Dask cluster (b-dask) ------------------


def _statements_file(path: Path, n: int, prefix: str) -> Path:
    import json

    with path.open("w", encoding="utf-8") as fh:
        for req in requests_for("monthly_statement", n, prefix=prefix):
            fh.write(json.dumps(req) + "\n")
    return path


#: System CPU seconds and minor page faults of every process of the last ``ccm_batch_pdf``.
LAST_RUN_KERNEL: dict[str, float] = {}


def ccm_batch_pdf(n: int, work: Path, tag: str) -> float:
    """CPU seconds of every process of one ``python -m ccm batch --channel pdf`` run.

    Its system CPU and minor page faults are left in :data:`LAST_RUN_KERNEL`.
    """
    import json
    import resource
    import subprocess
    import sys

    from cli_bench import _become_subreaper, _children, _children_cpu, _reap

    from ccm.record import MasterKey

    data = _statements_file(work / f"{tag}.jsonl", n, tag)
    env = {**os.environ, "CCM_MASTER_KEY": MasterKey.generate().text(),
           "PYTHONPATH": str(ROOT)}
    env.pop("CCM_MASTER_KEY_FILE", None)
    cmd = [sys.executable, "-m", "ccm", "batch", "monthly_statement", "--pack", str(PACK),
           "--templates", str(TEMPLATES), "--data", str(data), "--out", str(work / f"out-{tag}"),
           "--record", f"sqlite:///{work / f'{tag}.db'}", "--run-id", tag,
           "--channel", "pdf", "--workers", "1", "--as-of", AS_OF, "--json"]
    _become_subreaper()
    own = _children()
    before = _children_cpu()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    _reap(own)
    cpu = _children_cpu() - before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_RUN_KERNEL.update(sys_s=after.ru_stime - usage.ru_stime,
                           minflt=after.ru_minflt - usage.ru_minflt)
    if done.returncode != 0:
        raise RuntimeError(f"ccm batch failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = next(json.loads(line) for line in reversed(done.stdout.splitlines())
                   if line.startswith("{") and '"done"' in line)
    if summary.get("generated") != n:
        raise RuntimeError(f"ccm batch made {summary.get('generated')} of {n}: {summary}")
    return cpu


def bench_cli(small: int, large: int, rounds: int) -> list[Result]:
    """(b-cli): ``ccm batch --channel pdf`` (1 worker, SQLite record with a master key), marginal
    CPU per statement of all its processes, against the naive loop in this process."""
    naive = naive_statement_pipeline()
    contexts = [naive.context(r) for r in requests_for("monthly_statement", large - small,
                                                        prefix="N")]
    naive.check(contexts)
    naive.statement(contexts[0])
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-pdfcli-"))
    best_small = best_large = naive_s = float("inf")
    kernel = {"sys_s": float("inf"), "minflt": float("inf")}  # marginal, best of the rounds
    try:
        for r in range(rounds):
            best_small = min(best_small, ccm_batch_pdf(small, work, f"s{r}"))
            small_kernel = dict(LAST_RUN_KERNEL)
            best_large = min(best_large, ccm_batch_pdf(large, work, f"l{r}"))
            for name in kernel:
                kernel[name] = min(kernel[name], LAST_RUN_KERNEL[name] - small_kernel[name])
            naive_s = min(naive_s, best_of(1, {"naive": lambda: [naive.statement(c)
                                                                 for c in contexts]})["naive"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per = (best_large - best_small) / (large - small)
    naive_per = naive_s / (large - small)
    return [Result("b-cli", "PDF statements: ccm batch --channel pdf (CLI, 1 worker, record "
                   "with master key) vs the naive loop, marginal CPU per statement (ratio)",
                   naive_per / per, "x", target=1.3,
                   details={"ccm_batch_ms": round(1000 * per, 1),
                            "naive_ms": round(1000 * naive_per, 1), "goal": 1.6,
                            "system_cpu_ms_per_statement": round(
                                1000 * kernel["sys_s"] / (large - small), 1),
                            "page_faults_per_statement": round(
                                kernel["minflt"] / (large - small)),
                            "statements": [small, large], "load": load_average()})]


def _pg_url() -> str:
    return os.environ.get("CCM_TEST_PG_URL") or os.environ.get(
        "CCM_BENCH_PG_URL", "postgresql+psycopg://ccm:ccm@127.0.0.1:5432/ccm")


def bench_dask(n: int, rounds: int) -> list[Result]:
    """(b-dask): Dask LocalCluster, 2 worker processes vs one, PDF statements, PostgreSQL record.

    Wall clock of ``run_batch(executor=client.get_executor())`` on each cluster (each warmed
    by a small run first, so engine loading is not counted); target 0.85 x 2.
    """
    import time
    import uuid

    import distributed

    from ccm.batch import run_batch

    url = _pg_url()
    requests = list(requests_for("monthly_statement", n, prefix=f"K{uuid.uuid4().hex[:6]}-"))
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-dask-"))
    walls: dict[int, float] = {}
    try:
        for workers in (1, 2):
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                               processes=True, dashboard_address=":0")
            client = distributed.Client(cluster)
            try:
                def once(rows: list[dict[str, Any]], tag: str, c: Any = client) -> float:
                    start = time.perf_counter()
                    run_batch("monthly_statement", rows, pack=PACK, templates=TEMPLATES,
                              out=work / tag, record_url=url, run_id=tag,
                              executor=c.get_executor(), channels=["pdf"],
                              now=datetime.fromisoformat(AS_OF))
                    return time.perf_counter() - start

                once(requests[:2 * workers], f"warm{workers}-{uuid.uuid4().hex[:8]}")
                walls[workers] = min(once(requests, f"d{workers}-{uuid.uuid4().hex[:8]}")
                                     for _ in range(rounds))
            finally:
                client.close()
                cluster.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [Result("b-dask", "PDF statements on a Dask LocalCluster: 2 worker processes vs "
                   "1 (wall clock, record in PostgreSQL)", walls[1] / walls[2], "x",
                   target=1.7, details={"one_worker_s": round(walls[1], 2),
                                        "two_workers_s": round(walls[2], 2), "statements": n,
                                        "load": load_average()},
                   note="needs 2 free cores; the target is 0.85 x 2")]


def run_cli(quick: bool) -> list[Result]:
    """The CLI PDF figure; ``quick`` uses fewer statements and one round."""
    return bench_cli(4, 24, 1) if quick else bench_cli(10, 70, 2)


def run_dask(quick: bool) -> list[Result]:
    """The Dask LocalCluster PDF figure."""
    return bench_dask(16, 1) if quick else bench_dask(60, 2)
