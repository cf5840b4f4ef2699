"""The runner daemon as real processes against a real database."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll a database condition until it holds (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def start_runner(db):
    procs: list[subprocess.Popen] = []

    def start(slots: int = 2, worker: str | None = None, grace: float = 10.0,
              extra: tuple[str, ...] = ()) -> subprocess.Popen:
        env = dict(os.environ, ETL_DSN=db.dsn, PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        args = [sys.executable, "-m", "python_runner.cli", "runner", "--slots", str(slots), "--grace", str(grace),
                "--safety-poll", "2"]
        if worker:
            args += ["--worker-id", worker]
        args += list(extra)
        p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def add_job(conn, slug: str, target: str, kind: str = "python", **cols) -> None:
    names = ["slug", "name", "kind", "target", *cols]
    conn.execute(f"insert into etl.jobs ({', '.join(names)}) values ({', '.join(['%s'] * len(names))})",
                 [slug, slug, kind, target, *cols.values()])


def edge(conn, parent: str, child: str) -> None:
    conn.execute("insert into etl.job_dependencies (parent_job_id, child_job_id) "
                 "select p.job_id, c.job_id from etl.jobs p, etl.jobs c where p.slug = %s and c.slug = %s",
                 (parent, child))


def pipeline_status(conn, pid: int) -> str:
    return conn.execute("select status from etl.pipeline_runs where pipeline_run_id = %s", (pid,)).fetchone()["status"]


def test_a_dag_runs_in_dependency_order(db, start_runner):
    with db.connect() as c:
        for s in "abcd":
            add_job(c, s, "runner_jobs:ok")
        for p, ch in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
            edge(c, p, ch)
        pid = c.execute("select etl.trigger_pipeline(jobs => array['a','b','c','d']) as p").fetchone()["p"]
        start_runner(slots=2)
        wait_for(lambda: pipeline_status(c, pid) == "success", what="the pipeline to succeed")
        rows = {r["slug"]: r for r in c.execute(
            "select j.slug, r.started_at, r.ended_at, r.records_read, r.records_written, r.attempt_count "
            "from etl.runs r join etl.jobs j using (job_id) where r.pipeline_run_id = %s", (pid,))}
        for p, ch in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
            assert rows[ch]["started_at"] >= rows[p]["ended_at"], f"{ch} started before {p} ended"
        assert all(r["records_read"] == 3 and r["records_written"] == 2 and r["attempt_count"] == 1
                   for r in rows.values())
        beat = c.execute("select status, slots from etl.service_heartbeats").fetchone()
        assert beat == {"status": "running", "slots": 2}


def test_transient_failure_is_retried_after_backoff(db, start_runner):
    with db.connect() as c:
        add_job(c, "flaky", "runner_jobs:flaky", backoff_base="100 milliseconds", backoff_jitter="none")
        run = c.execute("select etl.run_job('flaky') as r").fetchone()["r"]
        start_runner()
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "success", what="the retried run to succeed")
        attempts = c.execute("select attempt_no, status, error_category, is_transient, backoff_ms "
                             "from etl.run_attempts where run_id = %s order by attempt_no", (run,)).fetchall()
        assert attempts[0] == {"attempt_no": 1, "status": "failed", "error_category": "API",
                               "is_transient": True, "backoff_ms": 100}
        assert attempts[1]["status"] == "success" and len(attempts) == 2


def test_a_data_error_fails_permanently_and_alerts(db, start_runner):
    with db.connect() as c:
        add_job(c, "bad", "runner_jobs:bad_data")
        add_job(c, "after_bad", "runner_jobs:ok")
        edge(c, "bad", "after_bad")
        pid = c.execute("select etl.trigger_pipeline(jobs => array['bad', 'after_bad']) as p").fetchone()["p"]
        start_runner()
        wait_for(lambda: pipeline_status(c, pid) == "failed", what="the pipeline to fail")
        runs = {r["slug"]: r for r in c.execute(
            "select j.slug, r.status, r.error_category, r.error_type, r.attempt_count "
            "from etl.runs r join etl.jobs j using (job_id) where r.pipeline_run_id = %s", (pid,))}
        assert runs["bad"] == {"slug": "bad", "status": "failed", "error_category": "DATA",
                               "error_type": "ValueError", "attempt_count": 1}
        assert runs["after_bad"]["status"] == "skipped"
        assert c.execute("select count(*) as n from etl.alert_events where dedupe_key = 'run_failed:bad'"
                         ).fetchone()["n"] == 1


def test_sql_dry_run_reports_real_counts_and_changes_nothing(db, start_runner):
    with db.connect() as c:
        c.execute("create table public.target_rows (x int)")
        c.execute("""create function public.load_rows(n integer) returns integer language sql as $$
                       insert into public.target_rows select g from generate_series(1, n) g returning 1;
                       select n $$""")
        add_job(c, "load_rows", "public.load_rows", kind="sql")
        c.execute("insert into etl.job_parameters (job_id, name, data_type, required) "
                  "select job_id, 'n', 'integer', true from etl.jobs where slug = 'load_rows'")
        dry = c.execute("""select etl.run_job('load_rows', '{"n": 5}', dry_run => true) as r""").fetchone()["r"]
        start_runner()
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (dry,)).fetchone()["status"]
                 == "success", what="the dry run to end")
        row = c.execute("select rows_affected, sql_executed from etl.runs where run_id = %s", (dry,)).fetchone()
        assert row["rows_affected"] == 5
        assert '"public"."load_rows"("n" => %(n)s)' in row["sql_executed"]
        assert c.execute("select count(*) as n from public.target_rows").fetchone()["n"] == 0
        real = c.execute("""select etl.run_job('load_rows', '{"n": 4}') as r""").fetchone()["r"]
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (real,)).fetchone()["status"]
                 == "success", what="the real run to end")
        assert c.execute("select count(*) as n from public.target_rows").fetchone()["n"] == 4


def test_sigterm_drains_in_flight_work(db, start_runner):
    with db.connect() as c:
        add_job(c, "slow", "runner_jobs:slow")
        c.execute("insert into etl.job_parameters (job_id, name, data_type) "
                  "select job_id, 'seconds', 'number' from etl.jobs where slug = 'slow'")
        run = c.execute("""select etl.run_job('slow', '{"seconds": 1.5}') as r""").fetchone()["r"]
        p = start_runner()
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="the run to start")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        assert c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"] == "success"
        assert c.execute("select status from etl.service_heartbeats").fetchone()["status"] == "stopped"


def test_kill9_loses_nothing_the_lease_expires_and_another_runner_finishes(db, start_runner):
    with db.connect() as c:
        add_job(c, "slow", "runner_jobs:slow", lease_duration="2 seconds", backoff_base="100 milliseconds")
        c.execute("insert into etl.job_parameters (job_id, name, data_type) "
                  "select job_id, 'seconds', 'number' from etl.jobs where slug = 'slow'")
        run = c.execute("""select etl.run_job('slow', '{"seconds": 3}') as r""").fetchone()["r"]
        a = start_runner(worker="runner-a")
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="runner A to start the run")
        a.kill()
        a.wait(timeout=10)
        start_runner(worker="runner-b")
        # pg_cron ticks every minute in the cron database; here the test ticks until the lease is reaped.
        def reaped():
            c.execute("select etl.tick()")
            return c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"] == "success"
        wait_for(reaped, timeout=40, what="the run to be reaped and finished by runner B")
        attempts = c.execute("select attempt_no, status, worker_id, error_type from etl.run_attempts "
                             "where run_id = %s order by attempt_no", (run,)).fetchall()
        assert [(a["status"], a["worker_id"]) for a in attempts] == [("lost", "runner-a"), ("success", "runner-b")]
        assert attempts[0]["error_type"] == "lease_expired"
        assert c.execute("select count(*) as n from etl.run_events where run_id = %s and to_status = 'success'",
                         (run,)).fetchone()["n"] == 1


def test_metrics_endpoint_counts_claims_and_finishes(db, start_runner):
    import json
    import urllib.request
    with db.connect() as c:
        add_job(c, "m_ok", "runner_jobs:ok")
        run = c.execute("select etl.run_job('m_ok') as r").fetchone()["r"]
        p = start_runner(worker="runner-m", extra=("--metrics-port", "0"))
        port = None
        for line in p.stderr:  # the runner logs the port it bound
            rec = json.loads(line)
            if rec.get("action") == "metrics":
                port = rec["port"]
                break
        assert port
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "success", what="the run to succeed")
        def scraped():
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return text if 'etl_runner_runs_finished_total{category="",job="m_ok",status="success"} 1.0' in text else None
        text = wait_for(scraped, what="the finish to show in /metrics")
        assert 'etl_runner_claims_total{worker="runner-m"} 1.0' in text
        assert "etl_runner_run_duration_seconds_count" in text


def test_job_logs_reach_run_logs_redacted_and_etl_logs_shows_them(db, start_runner):
    from click.testing import CliRunner

    from python_runner.cli import main
    with db.connect() as c:
        add_job(c, "chatty", "runner_jobs:chatty")
        run = c.execute("select etl.run_job('chatty') as r").fetchone()["r"]
        start_runner()
        rows = wait_for(lambda: c.execute(
            "select level, message, attempt_id, job_id, fields, redacted from etl.run_logs "
            "where run_id = %s order by log_id", (run,)).fetchall() if c.execute(
            "select count(*) as n from etl.run_logs where run_id = %s", (run,)).fetchone()["n"] >= 2 else None,
            what="the job's logs in etl.run_logs")
        token = c.execute("select attempt_id from etl.run_attempts where run_id = %s", (run,)).fetchone()["attempt_id"]
        assert [r["level"] for r in rows] == ["INFO", "WARNING"]
        assert all(r["redacted"] and r["attempt_id"] == token and r["job_id"] for r in rows)
        assert "hunter2" not in rows[0]["message"] and "ops@example.com" not in rows[0]["message"]
        assert rows[1]["fields"]["api_key"] == "[REDACTED]" and rows[1]["fields"]["page"] == 3
        out = CliRunner().invoke(main, ["logs", str(run), "--level", "WARNING"], env={"ETL_DSN": db.dsn})
        assert out.exit_code == 0, out.output
        assert "slow page" in out.output and "connecting" not in out.output
        missing = CliRunner().invoke(main, ["logs", "999999"], env={"ETL_DSN": db.dsn})
        assert missing.exit_code == 3


def test_logs_follow_streams_until_the_run_ends(db, start_runner):
    with db.connect() as c:
        add_job(c, "chatty_slow", "runner_jobs:slow_chatty")
        run = c.execute("select etl.run_job('chatty_slow') as r").fetchone()["r"]
        start_runner()
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 in ("running", "success"), what="the run to start")
        env = dict(os.environ, ETL_DSN=db.dsn)
        follow = subprocess.run([sys.executable, "-m", "python_runner.cli", "logs", str(run), "--follow"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert follow.returncode == 0, follow.stderr
        assert [l.split(" INFO     ")[1].split()[0:2] for l in follow.stdout.splitlines()] == \
            [["step", str(i)] for i in range(5)]
        assert f"run {run} ended: success" in follow.stderr


def test_a_lost_database_connection_is_retried_not_a_crash(db, start_runner):
    with db.connect() as c:
        add_job(c, "after_outage", "runner_jobs:ok")
        p = start_runner(worker="runner-outage")
        wait_for(lambda: c.execute("select count(*) as n from etl.service_heartbeats where status = 'running'"
                                   ).fetchone()["n"] == 1, what="the runner to start")
        # Cut every connection the runner holds (listener, control, pool, heartbeats).
        killed = c.execute("select count(pg_terminate_backend(pid)) as n from pg_stat_activity "
                           "where datname = current_database() and application_name like 'etl-runner%%'"
                           ).fetchone()["n"]
        assert killed >= 2
        run = c.execute("select etl.run_job('after_outage') as r").fetchone()["r"]
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "success", what="the runner to reconnect and finish the run")
        assert p.poll() is None, "the runner must survive a lost connection"


def test_cancel_reaches_a_running_job_at_its_next_heartbeat(db, start_runner):
    with db.connect() as c:
        add_job(c, "long", "runner_jobs:slow", lease_duration="3 seconds")
        c.execute("insert into etl.job_parameters (job_id, name, data_type) "
                  "select job_id, 'seconds', 'number' from etl.jobs where slug = 'long'")
        run = c.execute("""select etl.run_job('long', '{"seconds": 60}') as r""").fetchone()["r"]
        start_runner()
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="the run to start")
        assert c.execute("select etl.cancel(%s, 'operator changed their mind') as s", (run,)).fetchone()["s"] \
            == "cancel_requested"
        row = wait_for(lambda: c.execute("select status, duration_ms from etl.runs where run_id = %s and status <> 'running'",
                                         (run,)).fetchone(), timeout=15, what="the runner to stop the job")
        assert row["status"] == "cancelled" and row["duration_ms"] < 10000
