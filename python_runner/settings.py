"""Where things live: the repository, the embedded cluster's folders, and the connection target.

Every knob is an environment variable with a sane default, so the CLI, the tests and the
benchmarks resolve the same cluster the same way.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 54329
DEFAULT_DATABASE = "etl"
SUPERUSER = "postgres"


def repo_root() -> Path:
    """The checkout holding sqitch.plan (ETL_REPO overrides, for installed copies)."""
    if os.environ.get("ETL_REPO"):
        return Path(os.environ["ETL_REPO"]).resolve()
    here = Path(__file__).resolve().parent.parent
    return here


@dataclass(frozen=True)
class Embedded:
    """The project's own PostgreSQL cluster: data, sockets and logs under one git-ignored folder."""

    home: Path
    port: int
    database: str

    @property
    def data_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "log" / "postgres.log"

    def conninfo(self, database: str | None = None) -> str:
        return (f"host={self.socket_dir} port={self.port} user={SUPERUSER} "
                f"dbname={database or self.database}")

    def url(self, database: str | None = None) -> str:
        return (f"postgresql://{SUPERUSER}@/{database or self.database}"
                f"?host={self.socket_dir}&port={self.port}")


def _reachable_by_others(path: Path) -> bool:
    """Can another OS user (the postgres server, when we are root) walk down to this folder?"""
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & 0o001:
                return False
        except FileNotFoundError:
            continue
    return True


def default_home() -> Path:
    """.etl in the checkout; as root in a folder the postgres user cannot walk into, /var/tmp."""
    home = repo_root() / ".etl"
    if os.geteuid() == 0 and not _reachable_by_others(repo_root()):
        digest = hashlib.sha1(str(repo_root()).encode()).hexdigest()[:10]
        home = Path("/var/tmp") / f"etl-{digest}"
    return home


def embedded() -> Embedded:
    home = Path(os.environ.get("ETL_HOME") or default_home()).resolve()
    return Embedded(home=home,
                    port=int(os.environ.get("ETL_PORT", DEFAULT_PORT)),
                    database=os.environ.get("ETL_DB", DEFAULT_DATABASE))


def external_dsn() -> str | None:
    """ETL_DSN, or "" when PG* variables name a server (libpq reads them), else None."""
    if os.environ.get("ETL_DSN"):
        return os.environ["ETL_DSN"]
    if os.environ.get("PGHOST") or os.environ.get("PGDATABASE") or os.environ.get("PGSERVICE"):
        return ""
    return None


def dsn(database: str | None = None) -> str:
    """The connection string every command uses: an external server if named, else the embedded one."""
    ext = external_dsn()
    if ext is not None:
        if database is None:
            return ext
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
        params = conninfo_to_dict(ext)
        params["dbname"] = database
        return make_conninfo(**params)
    return embedded().conninfo(database)
