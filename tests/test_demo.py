"""The 72-job demo end to end: real runner processes, the real local API with transient faults."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_72_job_demo_completes_in_order_within_the_bound(db):
    env = dict(os.environ, ETL_DSN=db.dsn, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "examples.demo.run_demo", "--fault-rate", "0.1", "--timeout", "240"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "72 of 72 runs succeeded" in res.stdout
    with db.connect() as c:
        pid = c.execute("select max(pipeline_run_id) as p from etl.pipeline_runs").fetchone()["p"]
        assert c.execute("select count(*) as n from etl.runs where pipeline_run_id = %s and status = 'success'",
                         (pid,)).fetchone()["n"] == 72
        # every child started after all its parents ended (implied dimension-before-fact edges included)
        assert c.execute("""select count(*) as n from etl.run_dependencies d
                              join etl.runs p on p.run_id = d.parent_run_id join etl.runs ch on ch.run_id = d.child_run_id
                             where d.pipeline_run_id = %s and ch.started_at < p.ended_at""", (pid,)).fetchone()["n"] == 0
        # 6 dimensions x 6 facts; under per_group the 6 edges into silver_orders_conform (a member of
        # silver_sales_core) are inside the unit (2) or moved to its leader (4, type group)
        assert c.execute("select count(*) as n from etl.run_dependencies where pipeline_run_id = %s "
                         "and dependency_type = 'dimension_before_fact'", (pid,)).fetchone()["n"] == 30
        assert c.execute("select count(*) as n from etl.run_dependencies where pipeline_run_id = %s "
                         "and dependency_type = 'group'", (pid,)).fetchone()["n"] == 6
        # attempts that hold a slot never overlapped more than parallel_jobs at any attempt start
        # (the members of a group ride on their leader's slot)
        bound = c.execute("select (value #>> '{}')::int as n from etl.settings where name = 'parallel_jobs'").fetchone()["n"]
        overlap = c.execute("""select max(n) as m from (
              select (select count(*) from etl.run_attempts b
                       where b.run_slot is not null
                         and b.started_at <= a.started_at and coalesce(b.ended_at, 'infinity') > a.started_at) as n
                from etl.run_attempts a where a.run_slot is not null) x""").fetchone()["m"]
        assert overlap <= bound
        # injected 429/503 faults were retried with delays that grow (equal jitter: [d/2, d], factor 2)
        retried = c.execute("""select run_id, array_agg(backoff_ms order by attempt_no) as delays
                                 from etl.run_attempts where status = 'failed' group by run_id""").fetchall()
        assert retried, "a fault rate of 10% produced no retry"
        assert all(r["delays"] == sorted(r["delays"]) for r in retried)
        assert c.execute("select count(*) as n from etl.run_attempts where status = 'failed' "
                         "and error_category = 'API' and is_transient").fetchone()["n"] == sum(len(r["delays"]) for r in retried)
        # the data arrived: bronze to gold
        assert c.execute("select sum(records) as n from gold.orders_daily").fetchone()["n"] > 0
        # bronze ran per region item, silver_sales_core as one unit, the views were refreshed by the engine
        assert c.execute("select count(*) as n from etl.run_items i join etl.runs r using (run_id) "
                         "where r.pipeline_run_id = %s and i.status = 'success'", (pid,)).fetchone()["n"] == 36
        assert c.execute("select count(*) as n from etl.runs where pipeline_run_id = %s "
                         "and group_leader_run_id is not null", (pid,)).fetchone()["n"] == 2
        assert c.execute("select count(*) as n from etl.run_refreshes f join etl.runs r using (run_id) "
                         "where r.pipeline_run_id = %s and f.status = 'success'", (pid,)).fetchone()["n"] == 12
        assert c.execute("select sum(records) as n from gold.mv_orders_by_region").fetchone()["n"] == \
            c.execute("select count(*) as n from silver.orders").fetchone()["n"]
        first_read = c.execute("select sum(records_read) as n from etl.runs where pipeline_run_id = %s", (pid,)).fetchone()["n"]
    # a second run is incremental: the cursors hold, nothing new is read
    res = subprocess.run([sys.executable, "-m", "examples.demo.run_demo", "--fault-rate", "0"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with db.connect() as c:
        pid2 = c.execute("select max(pipeline_run_id) as p from etl.pipeline_runs").fetchone()["p"]
        second_read = c.execute("select sum(records_read) as n from etl.runs where pipeline_run_id = %s", (pid2,)).fetchone()["n"]
    assert first_read > 1000 and second_read == 0


def test_a_dry_run_extract_reads_for_real_and_changes_no_table_and_no_cursor(db):
    import signal
    import time

    from examples.demo.api_server import serve
    server, port = serve(port=0, rate_limit=0)
    env = dict(os.environ, ETL_DSN=db.dsn, PYTHONPATH=str(ROOT), ETL_DEMO_API=f"http://127.0.0.1:{port}")
    runner = None
    try:
        with db.connect() as c:
            c.execute((ROOT / "examples" / "demo" / "schema.sql").read_text())
            subprocess.run([sys.executable, "-m", "python_runner.cli", "apply", str(ROOT / "examples" / "demo" / "jobs.yml")],
                           env=env, check=True, capture_output=True)
            runner = subprocess.Popen([sys.executable, "-m", "python_runner.cli", "runner", "--slots", "2"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def ended(run_id):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    row = c.execute("select status, records_read, records_written from etl.runs where run_id = %s",
                                    (run_id,)).fetchone()
                    if row["status"] in ("success", "failed"):
                        return row
                    time.sleep(0.05)
                raise AssertionError(f"run {run_id} did not end")

            dry = c.execute("select etl.run_job('bronze_orders', dry_run => true) as r").fetchone()["r"]
            row = ended(dry)
            assert row["status"] == "success" and row["records_read"] > 0 and row["records_written"] == row["records_read"]
            assert c.execute("select count(*) as n from bronze.orders").fetchone()["n"] == 0
            assert c.execute("select count(*) as n from etl.cursors").fetchone()["n"] == 0

            real = c.execute("select etl.run_job('bronze_orders') as r").fetchone()["r"]
            assert ended(real)["status"] == "success"
            assert c.execute("select count(*) as n from bronze.orders").fetchone()["n"] == row["records_read"]
            curs = c.execute("select params ->> 'region' as region, advance_count, cursor_value from etl.cursors "
                             "order by 1").fetchall()
            assert [(x["region"], x["advance_count"]) for x in curs] == [("apac", 1), ("eu", 1), ("us", 1)]
            assert all(x["cursor_value"] is not None for x in curs)
    finally:
        if runner is not None:
            runner.send_signal(signal.SIGTERM)
            runner.wait(timeout=30)
        server.stop()
