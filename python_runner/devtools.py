"""Developer tooling behind scripts/test: the deployed template database and pg_prove.

`python -m python_runner.devtools template NAME` (re)creates NAME, deploys every sqitch change into
it and adds pgTAP, so tests clone it with CREATE DATABASE ... TEMPLATE in milliseconds.
`python -m python_runner.devtools pg_prove DB FILES...` runs pgTAP files against DB.
"""
from __future__ import annotations

import os
import shutil
import sys

import psycopg

from . import deploy, settings


def recreate_database(name: str, template: str | None = None) -> None:
    with psycopg.connect(settings.dsn("postgres"), autocommit=True) as conn:
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
        conn.execute(f'drop database if exists "{name}"')
        if template:
            conn.execute(f'create database "{name}" template "{template}"')
        else:
            conn.execute(f'create database "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(settings.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def build_template(name: str) -> None:
    """A fresh database with every change deployed and pgTAP installed, ready to be cloned."""
    recreate_database(name)
    deploy.deploy(dsn=settings.dsn(name), quiet=True)
    with psycopg.connect(settings.dsn(name), autocommit=True) as conn:
        conn.execute("create extension if not exists pgtap")


def pg_prove(database: str, files: list[str]) -> int:
    env, _ = deploy.sqitch_env(settings.dsn(database))
    env["PGDATABASE"] = database
    exe = shutil.which("pg_prove")
    if not exe:
        print("pg_prove is not installed: apt-get install -y libtap-parser-sourcehandler-pgtap-perl",
              file=sys.stderr)
        return 2
    os.chdir(settings.repo_root())
    os.execve(exe, [exe, "--ext", ".sql", "-f", *files], env)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "template":
        build_template(argv[1])
        return 0
    if len(argv) >= 2 and argv[0] == "clone":
        recreate_database(argv[2], template=argv[1])
        return 0
    if len(argv) >= 2 and argv[0] == "drop":
        drop_database(argv[1])
        return 0
    if len(argv) >= 3 and argv[0] == "pg_prove":
        return pg_prove(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
