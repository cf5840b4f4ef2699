"""The roles for real: definitions applied as an etl_admin login, runs executed by a runner that
logs in as an etl_runner (no superuser anywhere), and an operator who cannot report outcomes."""
from __future__ import annotations

import re
import textwrap
import uuid

import psycopg
import pytest
from click.testing import CliRunner

from python_runner.cli import main
from test_execution import CALLS
from test_runner import add_timed_job, pipeline_status, start_runner, wait_for  # noqa: F401 (fixture)

DEFS = """
jobs:
  - slug: r_extract
    kind: python
    target: runner_jobs:ok
    tags: [roles]
    schedule: {cron: "0 3 * * *", timezone: UTC}
  - slug: r_regions
    kind: python
    target: runner_jobs:item_call
    depends_on: [r_extract]
    parameters:
      region: {type: string}
    items:
      sql: "select r as region from (values ('eu'), ('us'), (current_user)) v(r)"
  - slug: r_load
    kind: sql
    target: roles_wh.load
    depends_on: [r_regions]
"""


@pytest.fixture
def logins(db):
    """A login role in each of etl_admin, etl_runner and etl_operator (cluster-wide: dropped after)."""
    tag = uuid.uuid4().hex[:8]
    names = {r: f"etl_t_{r}_{tag}" for r in ("admin", "runner", "operator")}
    with db.connect() as c:
        for role, name in names.items():
            c.execute(f"create role {name} login in role etl_{role}")
        c.execute(CALLS)
        c.execute("""
create schema roles_wh;
create table roles_wh.loaded (n int);
create function roles_wh.load() returns int language sql as $$ insert into roles_wh.loaded values (1) returning 1 $$;
""")
        # What the warehouse grants its runner: its own schema and the test's call log, nothing of etl.
        c.execute(f"grant usage on schema roles_wh to {names['runner']}")
        c.execute(f"grant insert, select on all tables in schema roles_wh to {names['runner']}")
        c.execute(f"grant execute on function roles_wh.load() to {names['runner']}")
        c.execute(f"grant insert on public.test_calls to {names['runner']}")
    yield {role: re.sub(r"user=\S+", f"user={name}", db.dsn) for role, name in names.items()} | {"names": names}
    with db.connect() as c:
        for name in names.values():
            c.execute(f"drop owned by {name}")
            c.execute(f"drop role {name}")


def test_admin_applies_runner_runs_operator_cannot_report(db, logins, start_runner, tmp_path):
    f = tmp_path / "defs.yml"
    f.write_text(textwrap.dedent(DEFS))
    res = CliRunner().invoke(main, ["apply", str(f)], env={"ETL_DSN": logins["admin"]})
    assert res.exit_code == 0, res.output
    assert "+ create job r_regions" in res.output

    with psycopg.connect(logins["operator"], autocommit=True) as op:
        pid = op.execute("select etl.trigger_pipeline(tags => array['roles'], downstream => true, "
                         "reason => 'roles test')").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            op.execute("select * from etl.claim('forger', 1)")

    runner = start_runner(slots=2, worker="runner-role", dsn=logins["runner"])
    with db.connect() as c:
        wait_for(lambda: pipeline_status(c, pid) not in ("queued", "running"), what="the pipeline to end")
        assert pipeline_status(c, pid) == "success", c.execute(
            "select job_id, status, error_message from etl.runs where pipeline_run_id = %s", (pid,)).fetchall()
        # items.sql ran as the runner's role, not as the engine's owner
        regions = {r["region"] for r in c.execute(
            "select i.params ->> 'region' as region from etl.run_items i join etl.runs r using (run_id) "
            "where r.pipeline_run_id = %s", (pid,))}
        assert regions == {"eu", "us", logins["names"]["runner"]}
        assert c.execute("select count(*) as n from roles_wh.loaded").fetchone()["n"] == 1
        beat = c.execute("select status from etl.service_heartbeats where instance_id = 'runner-role'").fetchone()
        assert beat and beat["status"] == "running"
        # (the log sink writes in batches: its rows may follow the run's end by a moment)
        wait_for(lambda: c.execute("select count(*) as n from etl.run_logs l join etl.runs r using (run_id) "
                                   "where r.pipeline_run_id = %s", (pid,)).fetchone()["n"] > 0,
                 timeout=10, what="the jobs' log lines in etl.run_logs")
        runner.terminate()
        assert runner.wait(timeout=20) == 0
        assert "permission denied" not in runner.stderr.read()


def test_a_runner_cut_off_past_its_lease_keeps_its_run(db, logins, start_runner):
    """Heartbeats refused for longer than the lease (as in a database outage): the runner's claim
    loop must not reap its own run, and its heartbeats renew the lease when they get through."""
    import time

    with db.connect() as c:
        add_timed_job(c, "cut_off", "runner_jobs:slow", lease_duration="2 seconds")
        run = c.execute("""select etl.run_job('cut_off', '{"seconds": 7}') as r""").fetchone()["r"]
        start_runner(slots=2, worker="runner-cut", dsn=logins["runner"])
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 == "running", what="the run to start")
        c.execute("revoke execute on function etl.heartbeat(bigint, bigint) from etl_runner")
        try:
            wait_for(lambda: c.execute("select coalesce((select expires_at < now() - interval '1.5 seconds' "
                                       "from etl.job_locks where run_id = %s), true) as gone",
                                       (run,)).fetchone()["gone"], what="the lease to end (or its lock to go)")
            time.sleep(1.0)  # the runner's own wake-ups come and go, its lease long past
        finally:
            c.execute("grant execute on function etl.heartbeat(bigint, bigint) to etl_runner")
        wait_for(lambda: c.execute("select status from etl.runs where run_id = %s", (run,)).fetchone()["status"]
                 not in ("running", "queued"), what="the run to end")
        got = c.execute("select status, attempt_count from etl.runs where run_id = %s", (run,)).fetchone()
        assert (got["status"], got["attempt_count"]) == ("success", 1)
        assert c.execute("select count(*) as n from etl.run_attempts where run_id = %s and status = 'lost'",
                         (run,)).fetchone()["n"] == 0
