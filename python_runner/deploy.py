"""sqitch deploy, verify and revert against the resolved server.

sqitch reaches the server through libpq, so the connection is handed over as PG* variables and the
target is just `db:pg:<database>`: one way for the embedded socket and for ETL_DSN alike.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from psycopg.conninfo import conninfo_to_dict

from . import settings

_LIBPQ_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
              "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "options": "PGOPTIONS"}


class DeployError(RuntimeError):
    pass


def sqitch_env(dsn: str) -> tuple[dict, str]:
    """Environment and sqitch target for a libpq connection string."""
    params = conninfo_to_dict(dsn)
    env = dict(os.environ)
    for key, var in _LIBPQ_ENV.items():
        if params.get(key):
            env[var] = str(params[key])
    env.setdefault("SQITCH_FULLNAME", "ETL Orchestrator")
    env.setdefault("SQITCH_EMAIL", "etl@localhost")
    # settings.parallel_jobs is seeded from ETL_PARALLEL_JOBS through a custom GUC.
    if os.environ.get("ETL_PARALLEL_JOBS"):
        n = os.environ["ETL_PARALLEL_JOBS"]
        if not n.isdigit() or not 1 <= int(n) <= 10000:
            raise DeployError(f"ETL_PARALLEL_JOBS={n!r} is not a whole number between 1 and 10000")
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + f" -c etl.parallel_jobs={n}").strip()
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or settings.DEFAULT_DATABASE
    return env, f"db:pg:{dbname}"


def sqitch(command: str, *args: str, dsn: str | None = None, check: bool = True,
           quiet: bool = False) -> subprocess.CompletedProcess:
    exe = shutil.which("sqitch")
    if not exe:
        raise DeployError("sqitch is not installed: apt-get install -y sqitch")
    env, target = sqitch_env(dsn if dsn is not None else settings.dsn())
    cmd = [exe, "--chdir", str(settings.repo_root()), command, *args, target]
    res = subprocess.run(cmd, env=env, capture_output=quiet, text=True)
    if check and res.returncode not in (0,):
        detail = (res.stdout or "") + (res.stderr or "") if quiet else ""
        raise DeployError(f"sqitch {command} failed (exit {res.returncode}){': ' + detail if detail else ''}")
    return res


def deploy(dsn: str | None = None, quiet: bool = False) -> None:
    """Deploy every change with verification; a no-op when the database is up to date."""
    sqitch("deploy", "--verify", dsn=dsn, quiet=quiet)


def revert(dsn: str | None = None, quiet: bool = False) -> None:
    sqitch("revert", "-y", dsn=dsn, quiet=quiet)


def verify(dsn: str | None = None, quiet: bool = False) -> None:
    sqitch("verify", dsn=dsn, quiet=quiet)
