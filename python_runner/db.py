"""Connections for the CLI, the runner and the tests."""
from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from . import settings


def connect(database: str | None = None, autocommit: bool = True, **kw) -> psycopg.Connection:
    return psycopg.connect(settings.dsn(database), autocommit=autocommit, row_factory=dict_row,
                           application_name=kw.pop("application_name", "etl"), **kw)
