"""Scale out for real: a Dask LocalCluster of two worker processes and a PostgreSQL record."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ccm.batch import run_batch
from ccm.cli import main

from .conftest import DAYTIME, PACK, TEST_TEMPLATES, notes, out_name, pg_url, write_jsonl

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two single-threaded worker processes, as ``--scheduler local`` starts them."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def pg_record_url() -> str:
    """The PostgreSQL record URL (CCM_TEST_PG_URL); skipped when unset, failed when required."""
    url = pg_url()
    if url is None:
        pytest.skip("CCM_TEST_PG_URL is not set")
    return url


def test_dask_workers_render_and_postgres_keeps_the_record(
    tmp_path: Path, client: Any, pg_record_url: str, open_record: Callable[..., Any]
) -> None:
    """Two Dask workers render, record in PostgreSQL and write to a file:// URL themselves."""
    run_id = f"dask-{uuid.uuid4().hex[:8]}"
    prefix = f"D{uuid.uuid4().hex[:6]}-"
    requests = notes(12, prefix=prefix)
    out = tmp_path / "out"
    summary = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES,
                        out=out.as_uri(), record_url=pg_record_url, run_id=run_id,
                        executor=client.get_executor(), channels=["sms", "pdf"], now=DAYTIME)
    assert (summary.generated, summary.failed) == (24, 0)
    loaded = client.run(
        lambda: len(__import__("ccm.batch._worker", fromlist=["_ENGINES"])._ENGINES))
    assert sorted(loaded.values()) == [1, 1], "each worker loaded the engine once"
    record = open_record(pg_record_url)
    for req in requests:
        cid = req["customer"]["id"]
        entry = record.find_key(f"{run_id}:quick_note:{cid}:pdf")
        data = (out / out_name(cid, "pdf")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.content_sha256
    again = run_batch("quick_note", requests, pack=PACK, templates=TEST_TEMPLATES,
                      out=out.as_uri(), record_url=pg_record_url, run_id=run_id,
                      executor=client.get_executor(), channels=["sms", "pdf"], now=DAYTIME)
    assert (again.generated, again.duplicate) == (0, 24)


def test_cli_scheduler_local_starts_a_cluster(
    tmp_path: Path, pg_record_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--scheduler local`` runs the batch on a LocalCluster and exits 0."""
    prefix = f"L{uuid.uuid4().hex[:6]}-"
    data = write_jsonl(tmp_path / "in.jsonl", notes(6, prefix=prefix))
    status = main(["batch", "quick_note", "--pack", str(PACK), "--templates",
                   str(TEST_TEMPLATES), "--data", str(data), "--out", str(tmp_path / "out"),
                   "--record", pg_record_url, "--scheduler", "local", "--channel", "sms",
                   "--run-id", f"local-{prefix}", "--as-of", DAYTIME.isoformat()])
    assert status == 0, capsys.readouterr()
    assert len(list((tmp_path / "out").glob("*.sms.txt"))) == 6
