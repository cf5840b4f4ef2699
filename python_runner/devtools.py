"""Developer tooling behind scripts/test: the deployed template database and pg_prove.

`python -m python_runner.devtools template NAME` (re)creates NAME, deploys every sqitch change into
it and adds pgTAP, so tests clone it with CREATE DATABASE ... TEMPLATE in milliseconds.
`python -m python_runner.devtools pg_prove DB FILES...` runs pgTAP files against DB.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import psycopg

from . import cluster, deploy, settings


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


def pgbench_command() -> list[str]:
    """pgbench against the embedded cluster as postgres: the benches' baseline and load driver."""
    c = settings.embedded()
    return [str(cluster.bindir() / "pgbench"), "-h", str(c.socket_dir), "-p", str(c.port), "-U", "postgres"]


def pgbench_tps(database: str, clients: int, seconds: int) -> float:
    """pgbench -N (scale 10, `clients` clients, 2 threads) in a fresh `database`: transactions/s."""
    recreate_database(database)
    cmd = pgbench_command()
    subprocess.run([*cmd, "-i", "-s", "10", "-q", database], check=True, capture_output=True)
    out = subprocess.run([*cmd, "-N", "-c", str(clients), "-j", "2", "-T", str(seconds), database],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if not m:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(m.group(1))


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
