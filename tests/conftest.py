"""Fixtures: one embedded cluster per session, one deployed template, a fresh database per test.

Each test database is CREATE DATABASE ... TEMPLATE of the deployed template, so tests commit,
LISTEN and run several connections for real, and leave nothing behind.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.rows import dict_row

from python_runner import cluster, devtools, settings


@dataclass(frozen=True)
class TestDatabase:
    name: str
    dsn: str

    def connect(self, autocommit: bool = True, **kw) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=autocommit, row_factory=dict_row, **kw)


def pytest_report_header(config):
    try:
        with psycopg.connect(settings.dsn("postgres"), connect_timeout=3) as conn:
            version = conn.execute("select version()").fetchone()[0]
        return [f"server: {version}", f"dsn: {settings.dsn()}"]
    except psycopg.OperationalError:
        return ["server: not running yet (the session fixture starts it)"]


@pytest.fixture(scope="session")
def template_db() -> str:
    if settings.external_dsn() is None:
        cluster.start(settings.embedded(), echo=lambda *_: None)
    name = os.environ.get("ETL_TEST_TEMPLATE")
    if not name:
        name = "etl_test_template_py"
        devtools.build_template(name)
    return name


@pytest.fixture
def db(template_db) -> TestDatabase:
    name = f"etl_t_{uuid.uuid4().hex[:12]}"
    devtools.recreate_database(name, template=template_db)
    yield TestDatabase(name=name, dsn=settings.dsn(name))
    devtools.drop_database(name)


@pytest.fixture
def conn(db):
    with db.connect() as c:
        yield c
