"""The runner daemon as real processes against a real database."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from python_runner import settings

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
              extra: tuple[str, ...] = (), dsn: str | None = None) -> subprocess.Popen:
        env = dict(os.environ, ETL_DSN=dsn or db.dsn,
                   PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
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


def add_timed_job(conn, slug: str, target: str, **cols) -> None:
    """A job with a number parameter `seconds` (how long runner_jobs' sleeping jobs take)."""
    add_job(conn, slug, target, **cols)
    conn.execute("insert into etl.job_parameters (job_id, name, data_type) "
                 "select job_id, 'seconds', 'number' from etl.jobs where slug = %s", (slug,))


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
        add_timed_job(c, "slow", "runner_jobs:slow")
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
        add_timed_job(c, "slow", "runner_jobs:slow", lease_duration="2 seconds", backoff_base="100 milliseconds")
        run = c.execute("""select etl.run_job('slow', '{"seconds": 3}') as r""").fetchone()["r"]
        a = start_runner(worker="runner-a")
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="runner A to start the run")
        a.kill()
        a.wait(timeout=10)
        start_runner(worker="runner-b")
        # No tick (pg_cron's is a minute away): runner B wakes when the lease ends and reaps it.
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "success", timeout=40, what="runner B to reap the lease and finish the run")
        attempts = c.execute("select attempt_no, status, worker_id, error_type from etl.run_attempts "
                             "where run_id = %s order by attempt_no", (run,)).fetchall()
        assert [(a["status"], a["worker_id"]) for a in attempts] == [("lost", "runner-a"), ("success", "runner-b")]
        assert attempts[0]["error_type"] == "lease_expired"
        assert c.execute("select count(*) as n from etl.run_events where run_id = %s and to_status = 'success'",
                         (run,)).fetchone()["n"] == 1


def test_kill9_mid_pipeline_the_survivor_reaps_and_completes_it_each_run_succeeding_once(db, start_runner):
    with db.connect() as c:
        layers = [[f"k_{layer}{i}" for i in range(3)] for layer in "rml"]
        for slug in sum(layers, []):
            add_timed_job(c, slug, "runner_jobs:slow", lease_duration="2 seconds", backoff_base="100 milliseconds")
        for upper, lower in zip(layers, layers[1:]):
            for i, child in enumerate(lower):
                edge(c, upper[i], child)
                edge(c, upper[(i + 1) % 3], child)
        pid = c.execute("select etl.trigger_pipeline(jobs => %s, params => '{\"seconds\": 0.8}') as p",
                        (sum(layers, []),)).fetchone()["p"]

        def a_holds(layer: str):
            return c.execute("""select 1 from etl.run_attempts a join etl.runs r using (run_id)
                                  join etl.jobs j using (job_id)
                                 where r.pipeline_run_id = %s and a.worker_id = 'runner-a'
                                   and a.status = 'running' and j.slug like %s""", (pid, f"k\\_{layer}%")).fetchone()
        a = start_runner(slots=3, worker="runner-a")
        wait_for(lambda: a_holds("r"), what="runner A to take the roots")
        b = start_runner(slots=3, worker="runner-b", extra=("--metrics-port", "0"))
        port = metrics_port_of(b)
        # A's slots claim the middle runs their roots release: kill A there, mid-pipeline.
        wait_for(lambda: a_holds("m"), what="runner A to hold a middle run")
        a.kill()
        a.wait(timeout=10)
        wait_for(lambda: pipeline_status(c, pid) not in ("queued", "running"), timeout=60,
                 what="the pipeline to end without runner A (no tick)")
        assert pipeline_status(c, pid) == "success"
        lost = c.execute("""select a.run_id, a.worker_id, a.error_type from etl.run_attempts a
                              join etl.runs r using (run_id) where r.pipeline_run_id = %s and a.status = 'lost'""",
                         (pid,)).fetchall()
        assert lost and all(x["worker_id"] == "runner-a" and x["error_type"] == "lease_expired" for x in lost)
        # each of the 9 runs succeeded once; the lost ones on a later attempt, by B
        per_run = c.execute("""select r.run_id, r.status,
                                      count(*) filter (where a.status = 'success') as successes,
                                      (select count(*) from etl.run_events e where e.run_id = r.run_id
                                          and e.to_status = 'success') as success_events,
                                      max(a.worker_id) filter (where a.status = 'success') as by
                                 from etl.runs r join etl.run_attempts a using (run_id)
                                where r.pipeline_run_id = %s group by r.run_id, r.status""", (pid,)).fetchall()
        assert len(per_run) == 9
        assert all(x["status"] == "success" and x["successes"] == 1 and x["success_events"] == 1 for x in per_run)
        assert {x["by"] for x in per_run if x["run_id"] in {y["run_id"] for y in lost}} == {"runner-b"}
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert f'etl_runner_leases_reaped_total{{worker="runner-b"}} {float(len(lost))}' in text
        # and no child's successful attempt started before a parent's ended
        assert c.execute("""select count(*) as n from etl.run_dependencies d
                              join etl.runs p on p.run_id = d.parent_run_id
                              join etl.run_attempts ca on ca.run_id = d.child_run_id and ca.status = 'success'
                             where d.pipeline_run_id = %s and ca.started_at < p.ended_at""", (pid,)).fetchone()["n"] == 0


def test_a_runner_with_every_slot_busy_still_beats_its_service_row(db, start_runner):
    with db.connect() as c:
        add_timed_job(c, "busy", "runner_jobs:slow")
        run = c.execute("""select etl.run_job('busy', '{"seconds": 14}') as r""").fetchone()["r"]
        # One slot, and a safety poll longer than the test: only the beat's own timer wakes the loop.
        start_runner(slots=1, worker="runner-busy", extra=("--safety-poll", "300"))
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="the run to start")
        first = c.execute("select last_seen from etl.service_heartbeats "
                          "where instance_id = 'runner-busy'").fetchone()["last_seen"]
        wait_for(lambda: c.execute("select last_seen > %s as moved from etl.service_heartbeats "
                                   "where instance_id = 'runner-busy'", (first,)).fetchone()["moved"],
                 timeout=13, what="a service beat while the only slot is busy")
        assert c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"] == "running"


def metrics_port_of(p: subprocess.Popen) -> int:
    """The port a runner started with --metrics-port 0 bound (it logs it first)."""
    for line in p.stderr:
        rec = json.loads(line)
        if rec.get("action") == "metrics":
            return rec["port"]
    raise AssertionError("the runner logged no metrics port")


def test_metrics_endpoint_counts_claims_and_finishes(db, start_runner):
    with db.connect() as c:
        add_job(c, "m_ok", "runner_jobs:ok")
        run = c.execute("select etl.run_job('m_ok') as r").fetchone()["r"]
        p = start_runner(worker="runner-m", extra=("--metrics-port", "0"))
        port = metrics_port_of(p)
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
        # Filtered: the lines it leaves out (after the last one it shows) do not keep it following.
        run = c.execute("select etl.run_job('chatty_slow') as r").fetchone()["r"]
        for args in (["--grep", "step 2"], ["--level", "warning"]):
            follow = subprocess.run([sys.executable, "-m", "python_runner.cli", "logs", str(run), "--follow", *args],
                                    env=env, capture_output=True, text=True, timeout=30)
            assert follow.returncode == 0, follow.stderr
            assert len(follow.stdout.splitlines()) == (1 if args[0] == "--grep" else 0), follow.stdout
            assert f"run {run} ended: success" in follow.stderr


def test_job_debug_lines_are_kept_only_at_job_log_level_debug(db, start_runner):
    with db.connect() as c:
        add_job(c, "dbg", "runner_jobs:debug_chatty")

        def levels_of_a_run(*extra: str) -> list[str]:
            run = c.execute("select etl.run_job('dbg') as r").fetchone()["r"]
            p = start_runner(slots=1, extra=extra)
            wait_for(lambda: c.execute("select count(*) filter (where message = 'the gist') as n from etl.run_logs "
                                       "where run_id = %s", (run,)).fetchone()["n"] == 1, what="the run's log lines")
            p.terminate()
            assert p.wait(timeout=20) == 0
            return [r["level"] for r in c.execute("select level from etl.run_logs where run_id = %s and "
                                                  "message in ('the detail', 'the gist') order by log_id", (run,))]
        assert levels_of_a_run() == ["INFO"]
        assert levels_of_a_run("--job-log-level", "debug") == ["DEBUG", "INFO"]


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
        add_timed_job(c, "long", "runner_jobs:slow", lease_duration="3 seconds")
        run = c.execute("""select etl.run_job('long', '{"seconds": 60}') as r""").fetchone()["r"]
        start_runner()
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="the run to start")
        assert c.execute("select etl.cancel(%s, 'operator changed their mind') as s", (run,)).fetchone()["s"] \
            == "cancel_requested"
        row = wait_for(lambda: c.execute("select status, duration_ms from etl.runs where run_id = %s and status <> 'running'",
                                         (run,)).fetchone(), timeout=15, what="the runner to stop the job")
        assert row["status"] == "cancelled" and row["duration_ms"] < 10000


def run_row(c, run: int) -> dict:
    return c.execute("""select r.status, r.attempt_count, r.error_category, r.is_transient, r.error_type,
                               r.error_message, a.error_message as attempt_message
                          from etl.runs r join etl.run_attempts a on a.run_id = r.run_id and a.attempt_no = 1
                         where r.run_id = %s""", (run,)).fetchone()


def run_to_its_end(c, start_runner, run: int, timeout: float = 30.0) -> tuple[dict, subprocess.Popen]:
    """Starts a runner, waits for the run to end, and returns its row (run_row) and the runner."""
    p = start_runner()
    wait_for(lambda: finished(c, run), timeout=timeout, what="the run to end")
    return run_row(c, run), p


def finished(c, run: int) -> bool:
    return c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"] not in (
        "pending", "queued", "running")


@pytest.mark.parametrize("variant, message", [
    ("status", "returned status 'banana': a job returns success or partial_success, and raises to fail"),
    ("records", "returned records_read 'lots': a count is a whole number from 0 to"),
    ("negative", "returned records_written -5: a count is a whole number from 0 to"),
])
def test_a_bad_return_value_fails_the_run_at_once(db, start_runner, variant, message):
    with db.connect() as c:
        add_job(c, "bad_return", "runner_jobs:bad_return", max_attempts=3)
        c.execute("insert into etl.job_parameters (job_id, name, data_type) "
                  "select job_id, 'variant', 'string' from etl.jobs where slug = 'bad_return'")
        run = c.execute("select etl.run_job('bad_return', %s) as r", (json.dumps({"variant": variant}),)).fetchone()["r"]
        row, _ = run_to_its_end(c, start_runner, run)
        # Failed once, for good, saying what was wrong: not left running until its lease expired.
        assert (row["status"], row["attempt_count"], row["error_category"], row["is_transient"], row["error_type"]) \
            == ("failed", 1, "SYSTEM", False, "bad_outcome")
        assert message in row["error_message"]


def test_an_outcome_the_engine_refuses_is_reported_as_a_failure(db, start_runner):
    with db.connect() as c:
        add_job(c, "bad_cursor", "runner_jobs:bad_cursor", max_attempts=3, supports_incremental=True,
                incremental_strategy="modified_date")
        run = c.execute("select etl.run_job('bad_cursor') as r").fetchone()["r"]
        row, p = run_to_its_end(c, start_runner, run, timeout=15)
        assert (row["status"], row["attempt_count"], row["error_type"], row["is_transient"]) \
            == ("failed", 1, "bad_outcome", False)
        assert row["error_message"].startswith("the engine refused the reported outcome: invalid input syntax")
        assert c.execute("select count(*) as n from etl.cursors").fetchone()["n"] == 0
        assert p.poll() is None


def test_an_unexpected_exception_is_redacted_and_its_traceback_logged(db, start_runner):
    with db.connect() as c:
        add_job(c, "leaky", "runner_jobs:leaky_crash", max_attempts=1)
        run = c.execute("select etl.run_job('leaky') as r").fetchone()["r"]
        row, _ = run_to_its_end(c, start_runner, run)
        assert row["error_message"] == row["attempt_message"] == "kaboom password=[REDACTED] for [EMAIL]"
        log = wait_for(lambda: c.execute("select message, fields from etl.run_logs where run_id = %s and level = 'ERROR'",
                                         (run,)).fetchone(), what="the job's error line")
        assert log["message"] == "job raised RuntimeError: kaboom password=[REDACTED] for [EMAIL]"
        assert "Traceback" in log["fields"]["exception"] and "leaky_crash" in log["fields"]["exception"]
        assert "hunter2" not in json.dumps(log["fields"])


def test_sigterm_exits_after_the_grace_period_even_if_a_job_ignores_cancel(db, start_runner):
    with db.connect() as c:
        add_timed_job(c, "deaf", "runner_jobs:deaf")
        run = c.execute("""select etl.run_job('deaf', '{"seconds": 30}') as r""").fetchone()["r"]
        p = start_runner(grace=1.0)
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="the run to start")
        p.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert p.wait(timeout=15) == 0
        assert time.monotonic() - started < 10, "the runner waited for a job it had handed back"
        row = c.execute("""select r.status, a.status as attempt_status, a.error_type
                             from etl.runs r join etl.run_attempts a on a.run_id = r.run_id and a.attempt_no = 1
                            where r.run_id = %s""", (run,)).fetchone()
        assert (row["status"], row["attempt_status"], row["error_type"]) == ("queued", "failed", "runner_shutdown")


def test_a_result_in_hand_outlives_a_long_database_outage(db, start_runner):
    """The report of a success is retried while the lease lasts, past the usual tries: the job does not
    run again. Heartbeats back off meanwhile instead of hammering the server."""
    with db.connect() as c:
        add_timed_job(c, "outage", "runner_jobs:sleep_then_ok", lease_duration="90 seconds")
        run = c.execute("""select etl.run_job('outage', '{"seconds": 1}') as r""").fetchone()["r"]
        p = start_runner(slots=1)
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="the run to start")
        # The outage: no new connection to the database, and every connection of the runner cut.
        with psycopg.connect(settings.dsn("postgres"), autocommit=True) as admin:
            admin.execute(f'alter database "{db.name}" allow_connections false')
            try:
                admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                              "where datname = %s and application_name like 'etl-runner%%'", (db.name,))
                # Longer than eight tries of a connection can last: 22.6 s of backoff, jittered up
                # to 1.5 times (34 s), after the job's one second.
                time.sleep(40)
            finally:
                admin.execute(f'alter database "{db.name}" allow_connections true')
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "success", timeout=30, what="the report to get through")
        assert c.execute("select count(*) as n from etl.run_attempts where run_id = %s", (run,)).fetchone()["n"] == 1
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        retries = [json.loads(line) for line in err.splitlines()
                   if '"database unreachable, retrying"' in line and '"finish"' in line]
        # Tries that fail are logged, the one that gets through is not: eight logged failures mean
        # a ninth try (the eighth failure used to be the last, and raised unlogged).
        assert max(r["attempt"] for r in retries) >= 8
        beats = [line for line in err.splitlines() if '"heartbeat failed"' in line]
        assert len(beats) < 30, f"{len(beats)} heartbeat attempts in a 40 s outage: no backoff"


def test_a_module_the_runner_cannot_import_fails_at_once(db, start_runner):
    with db.connect() as c:
        add_job(c, "ghost", "no_such_module_anywhere:run", max_attempts=5)
        run = c.execute("select etl.run_job('ghost') as r").fetchone()["r"]
        row, _ = run_to_its_end(c, start_runner, run)
        assert (row["status"], row["attempt_count"], row["is_transient"], row["error_type"]) == \
            ("failed", 1, False, "bad_target")
        assert "module no_such_module_anywhere cannot be imported by this runner" in row["error_message"]


def test_a_metrics_port_in_use_is_a_clear_error(db, start_runner):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        p = start_runner(extra=("--metrics-port", str(taken.getsockname()[1])))
        _, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert '"message": "cannot serve metrics"' in err and "Traceback" not in err


def test_a_worker_id_used_again_describes_the_new_process(db, start_runner):
    with db.connect() as c:
        def row():
            return c.execute("select pid, started_at, status from etl.service_heartbeats "
                             "where instance_id = 'same-id'").fetchone()
        first = start_runner(worker="same-id")
        wait_for(lambda: (row() or {}).get("status") == "running", what="the first runner")
        before = row()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        second = start_runner(worker="same-id")
        wait_for(lambda: (row() or {}).get("pid") == second.pid and row()["status"] == "running",
                 what="the second runner's row")
        assert row()["started_at"] > before["started_at"]


def test_a_runner_never_holds_more_runs_than_its_slots(db, start_runner):
    """A finish that releases many children: the report's own claim and the claim loop (woken by
    that commit's NOTIFY) must not both take the same free slots."""
    with db.connect() as c:
        c.execute("select etl.set_setting('parallel_jobs', '16', 'test')")
        add_timed_job(c, "fan_root", "runner_jobs:sleep_then_ok")
        for i in range(12):
            add_timed_job(c, f"fan_{i:02d}", "runner_jobs:sleep_then_ok")
            edge(c, "fan_root", f"fan_{i:02d}")
        start_runner(slots=2, worker="fan-runner")
        for _ in range(3):
            pid = c.execute("""select etl.trigger_pipeline(jobs => array['fan_root'], downstream => true,
                                                            params => '{"seconds": 0.3}') as p""").fetchone()["p"]
            wait_for(lambda: pipeline_status(c, pid) != "running", timeout=60, what="the pipeline to end")
            assert pipeline_status(c, pid) == "success"
        # Claimed to ended, per attempt: at no instant more than 2 at once on the one runner.
        held = c.execute("""
            select max(n) as most from (
              select (select count(*) from etl.run_attempts b
                       where b.worker_id = a.worker_id and b.claimed_at <= a.claimed_at
                         and b.ended_at > a.claimed_at) as n
                from etl.run_attempts a where a.worker_id = 'fan-runner') x""").fetchone()["most"]
        assert held <= 2, f"the runner held {held} runs with 2 slots"


def test_more_slots_than_parallel_jobs_open_no_useless_connections(db, start_runner):
    with db.connect() as c:
        c.execute("select etl.set_setting('parallel_jobs', '3', 'test')")
        start_runner(slots=40, worker="wide")
        wait_for(lambda: c.execute("select count(*) as n from etl.service_heartbeats where status = 'running'"
                                   ).fetchone()["n"] == 1, what="the runner to start")
        n = c.execute("select count(*) as n from pg_stat_activity where datname = current_database() "
                      "and application_name like 'etl-runner wide%%'").fetchone()["n"]
        assert n < 15, f"{n} connections for a bound of 3 runs"


def test_the_lease_is_timed_by_the_database_clock_not_the_runners():
    """A runner whose clock is a minute fast still heartbeats at a third of the lease the database gave."""
    from datetime import datetime, timedelta, timezone

    from python_runner.runner import Claimed, Runner

    runner = Runner("host=/nonexistent dbname=none", slots=1, worker_id="skewed")
    fields = dict(run_id=1, token=1, attempt_no=1, pipeline_run_id=1, job_id=1, job_slug="j", kind="python",
                  target="m:f", params={}, cursor=None, dry_run=False, mode="incremental", logical_date=None,
                  correlation_id=None, max_attempts=3, timeout_ms=1000,
                  lease_expires_at=datetime.now(timezone.utc) - timedelta(seconds=30))  # as this runner sees it
    assert runner._in_flight_of(Claimed(**fields, lease_left=30.0)).lease_seconds == 30.0
    assert runner._in_flight_of(Claimed(**fields)).lease_seconds == 0.5  # (no database figure: its own clock)
