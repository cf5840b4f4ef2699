"""The embedded PostgreSQL 15 cluster: initdb, start, stop, status, and the extensions it needs.

Runs the server as the `postgres` OS user when the caller is root (initdb refuses root), and as
the caller otherwise. Every operation is idempotent: starting a running cluster is a no-op.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import psycopg

from .settings import SUPERUSER, Embedded

PG_MAJOR = "15"
DEBIAN_PACKAGES = ("postgresql-15 postgresql-15-cron postgresql-plpython3-15 postgresql-15-pgtap "
                   "sqitch libtap-parser-sourcehandler-pgtap-perl")
EXTENSIONS = ("pg_cron", "plpython3u", "pgtap")


class ClusterError(RuntimeError):
    """A problem the user can fix; the message says how."""


def bindir() -> Path:
    """Where the PostgreSQL 15 server binaries are (ETL_PG_BINDIR overrides)."""
    candidates = [os.environ.get("ETL_PG_BINDIR"), f"/usr/lib/postgresql/{PG_MAJOR}/bin"]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise ClusterError(
        "PostgreSQL 15 server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/15/bin.\n"
        f"Install them with: apt-get install -y {DEBIAN_PACKAGES}\n"
        "or set ETL_PG_BINDIR to their folder, or point ETL_DSN at an existing server.")


def check_extensions(bin_path: Path) -> None:
    """Fail with the package to install when an extension's files are missing."""
    out = subprocess.run([str(bin_path / "postgres"), "--version"], capture_output=True, text=True)
    sharedir = Path(f"/usr/share/postgresql/{PG_MAJOR}/extension")
    pg_config = bin_path / "pg_config"
    if pg_config.exists():
        sharedir = Path(subprocess.run([str(pg_config), "--sharedir"], capture_output=True,
                                       text=True).stdout.strip()) / "extension"
    packages = {"pg_cron": "postgresql-15-cron", "plpython3u": "postgresql-plpython3-15",
                "pgtap": "postgresql-15-pgtap"}
    missing = [name for name in EXTENSIONS if not (sharedir / f"{name}.control").exists()]
    if missing:
        raise ClusterError(
            f"{out.stdout.strip() or 'PostgreSQL'} lacks the extension(s) {', '.join(missing)} "
            f"(no .control file in {sharedir}).\n"
            f"Install with: apt-get install -y {' '.join(packages[m] for m in missing)}")


def _server_user() -> str | None:
    """The OS user to run the server as: postgres when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError("running as root needs the 'postgres' OS user to own the server "
                           "(initdb refuses root); install postgresql-15, which creates it") from None
    return "postgres"


def _as_server(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    user = _server_user()
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _prepare_dirs(c: Embedded) -> None:
    for d in (c.home, c.socket_dir, c.log_file.parent):
        d.mkdir(parents=True, exist_ok=True)
    user = _server_user()
    if user:
        pw = pwd.getpwnam(user)
        for d in (c.home, c.socket_dir, c.log_file.parent):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        if c.data_dir.exists():
            os.chown(c.data_dir, pw.pw_uid, pw.pw_gid)
        probe = _as_server(["test", "-w", str(c.home)])
        if probe.returncode != 0:
            raise ClusterError(
                f"the postgres user cannot reach {c.home} (a parent folder is not searchable by it); "
                "set ETL_HOME to a folder it can use, e.g. ETL_HOME=/var/tmp/etl")


def _write_config(c: Embedded) -> None:
    conf = (
        "# Written by `etl db start`; edit ETL_* variables rather than this file.\n"
        f"port = {c.port}\n"
        f"unix_socket_directories = '{c.socket_dir}'\n"
        # Local connections are trusted (no passwords to manage for a cluster of one's own), so
        # the socket is the gate: only its owner (the server's user; and root) may connect.
        "unix_socket_permissions = 0700\n"
        "listen_addresses = ''\n"
        "shared_preload_libraries = 'pg_cron'\n"
        f"cron.database_name = '{c.database}'\n"
        "cron.use_background_workers = on\n"
        "max_worker_processes = 32\n"
        "max_connections = 300\n"
        "shared_buffers = '512MB'\n"
        "wal_buffers = '16MB'\n"
        "max_wal_size = '4GB'\n"
        "checkpoint_timeout = '15min'\n"
        # the engine's small hot tables (locks, slots) need vacuuming every few seconds under load
        "autovacuum_naptime = '5s'\n"
        "timezone = 'UTC'\n"
        "log_timezone = 'UTC'\n"
        "lc_messages = 'C'\n"
    )
    target = c.data_dir / "etl.conf"
    tmp = c.home / "etl.conf.tmp"
    tmp.write_text(conf)
    user = _server_user()
    if user:
        pw = pwd.getpwnam(user)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    _as_server(["cp", str(tmp), str(target)]).check_returncode()
    tmp.unlink()
    main_conf = c.data_dir / "postgresql.conf"
    text = _as_server(["cat", str(main_conf)]).stdout
    if "include_if_exists = 'etl.conf'" not in text:
        _as_server(["sh", "-c", f"echo \"include_if_exists = 'etl.conf'\" >> '{main_conf}'"]).check_returncode()


def is_running(c: Embedded) -> bool:
    if not c.data_dir.exists():
        return False
    res = _as_server([str(bindir() / "pg_ctl"), "status", "-D", str(c.data_dir)])
    return res.returncode == 0


def running_port(c: Embedded) -> int | None:
    """The port the running server listens on (line 4 of postmaster.pid); None when it is down."""
    if not is_running(c):
        return None
    line = _as_server(["sed", "-n", "4p", str(c.data_dir / "postmaster.pid")]).stdout.strip()
    return int(line) if line.isdigit() else None


def _port_mismatch(c: Embedded, port: int) -> str:
    return (f"the cluster in {c.data_dir} is running on port {port}, not on port {c.port} (ETL_PORT); "
            f"set ETL_PORT={port}, or move it with `etl db stop` and `etl db start`")


def start(c: Embedded, echo=print) -> None:
    """initdb if needed, start if stopped, create the database and extensions; idempotent."""
    bin_path = bindir()
    check_extensions(bin_path)
    _prepare_dirs(c)
    if not (c.data_dir / "PG_VERSION").exists():
        echo(f"initdb {c.data_dir}")
        res = _as_server([str(bin_path / "initdb"), "-D", str(c.data_dir), "-U", SUPERUSER,
                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        if res.returncode != 0:
            raise ClusterError(f"initdb failed:\n{res.stdout}{res.stderr}")
    port = running_port(c)
    if port is not None and port != c.port:
        # (Checked before the configuration is rewritten: a later start would move it silently.)
        raise ClusterError(_port_mismatch(c, port))
    _write_config(c)
    if port is not None:
        echo(f"PostgreSQL already running on port {c.port} (socket {c.socket_dir})")
    else:
        res = _as_server([str(bin_path / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(c.data_dir),
                          "-l", str(c.log_file)])
        if res.returncode != 0:
            tail = _as_server(["tail", "-n", "20", str(c.log_file)]).stdout
            raise ClusterError(f"the server did not start:\n{res.stdout}{res.stderr}\n{tail}")
        echo(f"PostgreSQL started on port {c.port} (socket {c.socket_dir}, data {c.data_dir})")
    ensure_database(c)


def ensure_database(c: Embedded) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg.connect(c.conninfo("postgres"), autocommit=True)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (c.database,)).fetchone()
        if not exists:
            conn.execute(f'create database "{c.database}"')
    with psycopg.connect(c.conninfo(), autocommit=True) as conn:
        for ext in EXTENSIONS:
            conn.execute(f"create extension if not exists {ext}")


def stop(c: Embedded, echo=print) -> None:
    if not is_running(c):
        echo("PostgreSQL is not running")
        return
    res = _as_server([str(bindir() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(c.data_dir)])
    if res.returncode != 0:
        raise ClusterError(f"pg_ctl stop failed:\n{res.stdout}{res.stderr}")
    echo("PostgreSQL stopped")


def status(c: Embedded) -> dict:
    """running is true only when the server listens where ETL_PORT says: clients connect there."""
    port = running_port(c) if c.data_dir.exists() else None
    info = {"data_dir": str(c.data_dir), "port": c.port, "socket_dir": str(c.socket_dir),
            "database": c.database, "initialized": (c.data_dir / "PG_VERSION").exists(),
            "running": port == c.port, "url": c.url()}
    if port is not None and port != c.port:
        info.update(running_port=port, error=_port_mismatch(c, port))
    return info
