"""`etl db` and `etl runner` options against the session's embedded cluster: a port that is not the
cluster's, unreachable servers and bad option values are clear errors, never tracebacks."""
from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from python_runner import cluster, settings
from python_runner.cli import main

pytestmark = pytest.mark.skipif(settings.external_dsn() is not None, reason="the embedded cluster only")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_on_another_port_is_not_running(template_db):
    real = settings.embedded().port
    other = free_port()
    res = CliRunner().invoke(main, ["db", "status"], env={"ETL_PORT": str(other)})
    assert res.exit_code == 3, res.output
    assert "running: False" in res.output
    assert f"is running on port {real}, not on port {other}" in res.output
    res = CliRunner().invoke(main, ["db", "status"])
    assert res.exit_code == 0 and "running: True" in res.output


def test_start_on_another_port_refuses_and_leaves_the_config(template_db):
    c = settings.embedded()
    conf = cluster._as_server(["cat", str(c.data_dir / "etl.conf")]).stdout
    other = free_port()
    res = CliRunner().invoke(main, ["db", "start"], env={"ETL_PORT": str(other)})
    assert res.exit_code == 2, res.output
    assert f"running on port {c.port}, not on port {other} (ETL_PORT); set ETL_PORT={c.port}" in res.output
    assert cluster._as_server(["cat", str(c.data_dir / "etl.conf")]).stdout == conf
    assert cluster.running_port(c) == c.port


def test_summary_of_an_unreachable_server_is_one_line(template_db):
    res = CliRunner().invoke(main, ["db", "summary"], env={"ETL_PORT": str(free_port())})
    assert res.exit_code == 1
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_summary_shows_row_estimates(template_db, db):
    res = CliRunner().invoke(main, ["db", "summary"], env={"ETL_DB": db.name})
    assert res.exit_code == 0, res.output
    assert "rows (est.)" in res.output and "\nruns " in res.output


@pytest.mark.parametrize("args, env, message", [
    ([], {"ETL_RUNNER_SLOTS": "abc"}, "Invalid value for '--slots' (env var: 'ETL_RUNNER_SLOTS')"),
    ([], {"ETL_RUNNER_SLOTS": "0"}, "Invalid value for '--slots'"),
    (["--safety-poll", "0"], {}, "Invalid value for '--safety-poll': 0.0 is not in the range 0.1<=x<=3600"),
    (["--grace", "-5"], {}, "Invalid value for '--grace'"),
    ([], {"ETL_METRICS_PORT": "http"}, "Invalid value for '--metrics-port' (env var: 'ETL_METRICS_PORT')"),
])
def test_runner_options_are_validated(args, env, message, monkeypatch):
    from python_runner import runner

    def must_not_start(self):
        raise AssertionError("the runner started")
    monkeypatch.setattr(runner.Runner, "run", must_not_start)  # a value let through never reaches a database
    res = CliRunner().invoke(main, ["runner", *args], env=env)
    assert res.exit_code == 2
    assert message in res.output


def test_only_the_clusters_owner_may_use_its_socket(template_db):
    """Local connections are trusted, so the socket's mode is the gate (0700: the server's user and
    root); a world-writable socket would let any local account in as the superuser."""
    import os
    import stat
    import subprocess

    emb = settings.embedded()
    sock = emb.socket_dir / f".s.PGSQL.{emb.port}"
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o700
    if os.geteuid() == 0:
        res = subprocess.run(["runuser", "-u", "nobody", "--", str(cluster.bindir() / "psql"), "-h", str(emb.socket_dir),
                              "-p", str(emb.port), "-U", "postgres", "-d", "postgres", "-Atc", "select 1"],
                             capture_output=True, text=True)
        assert res.returncode != 0 and "Permission denied" in res.stderr, res.stdout + res.stderr
