"""Shared fixtures: a fresh, isolated record URL per test on SQLite and on PostgreSQL.

``record_url`` runs each test that asks for it twice: against a SQLite file
in the test's temporary folder, and against PostgreSQL in a schema of its
own (``CCM_TEST_PG_URL``, made by ``.ci/pg-setup.sh``), dropped afterwards.
Without ``CCM_TEST_PG_URL`` the PostgreSQL runs are skipped, unless
``CCM_REQUIRE_PG`` is set (CI), where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings
from sqlalchemy.pool import NullPool

# Property tests check behaviour, not speed (budgets have tests of their own), so no
# per-example deadline: a slow machine must not turn a warm-up into a failure. CI
# (.ci/run sets HYPOTHESIS_PROFILE=ci) draws the same examples every run, so a red
# build is reproducible; local runs explore new examples each time.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pg_base_url() -> str | None:
    """``CCM_TEST_PG_URL``, or None (skip); fails when CI requires PostgreSQL."""
    url = os.environ.get("CCM_TEST_PG_URL")
    if not url and os.environ.get("CCM_REQUIRE_PG"):
        pytest.fail("CCM_REQUIRE_PG is set but CCM_TEST_PG_URL is not")
    return url or None


def pg_schema_url(base: str, schema: str) -> str:
    """``base`` with every connection's search_path set to ``schema``."""
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def pg_admin(base: str) -> sa.Engine:
    """An engine for creating and dropping test schemas."""
    return sa.create_engine(base, poolclass=NullPool)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty record of its own: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "record.db")
        return
    base = pg_base_url()
    if base is None:
        pytest.skip("CCM_TEST_PG_URL is not set")
    schema = f"ccm_test_{uuid.uuid4().hex[:12]}"
    admin = pg_admin(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield pg_schema_url(base, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(autouse=True)
def _default_record_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """An engine made without ``record=`` writes a record of the test's own, not ./ccm-record.db."""
    saved = os.environ.get("CCM_RECORD_URL")
    folder = tmp_path_factory.mktemp("default-record")
    os.environ["CCM_RECORD_URL"] = sqlite_url(folder / "ccm-record.db")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CCM_RECORD_URL", None)
        else:
            os.environ["CCM_RECORD_URL"] = saved
