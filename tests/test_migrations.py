"""sqitch round trip on an empty database: deploy with verify, revert to the start, deploy again."""
from __future__ import annotations

import uuid

import psycopg
import pytest

from python_runner import deploy, devtools, settings


@pytest.fixture
def empty_db(template_db):
    name = f"etl_rt_{uuid.uuid4().hex[:10]}"
    devtools.recreate_database(name)
    yield name
    devtools.drop_database(name)


def _etl_tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'etl' and c.relkind = 'r' order by 1")]


def test_deploy_verify_revert_deploy(empty_db):
    dsn = settings.dsn(empty_db)
    deploy.deploy(dsn=dsn, quiet=True)
    deploy.verify(dsn=dsn, quiet=True)
    first = _etl_tables(dsn)
    assert "runs" in first and "jobs" in first

    deploy.revert(dsn=dsn, quiet=True)
    assert _etl_tables(dsn) == []
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select count(*) from pg_namespace where nspname = 'etl'").fetchone()[0] == 0

    deploy.deploy(dsn=dsn, quiet=True)
    deploy.verify(dsn=dsn, quiet=True)
    assert _etl_tables(dsn) == first


def test_verify_fails_when_a_table_is_missing(empty_db):
    dsn = settings.dsn(empty_db)
    deploy.deploy(dsn=dsn, quiet=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("drop table etl.run_refreshes")
    res = deploy.sqitch("verify", dsn=dsn, check=False, quiet=True)
    assert res.returncode != 0
    assert "runs" in (res.stdout + res.stderr)


def test_parallel_jobs_seeded_from_environment(empty_db, monkeypatch):
    monkeypatch.setenv("ETL_PARALLEL_JOBS", "17")
    dsn = settings.dsn(empty_db)
    deploy.deploy(dsn=dsn, quiet=True)
    with psycopg.connect(dsn) as conn:
        value = conn.execute("select value from etl.settings where name = 'parallel_jobs'").fetchone()[0]
    assert value == 17


def test_bad_parallel_jobs_is_refused(empty_db, monkeypatch):
    monkeypatch.setenv("ETL_PARALLEL_JOBS", "lots")
    with pytest.raises(deploy.DeployError, match="ETL_PARALLEL_JOBS='lots'"):
        deploy.deploy(dsn=settings.dsn(empty_db), quiet=True)
