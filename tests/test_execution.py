"""Items, cursors, SQL procedure groups, dry runs and view refreshes, end to end with real runners."""
from __future__ import annotations

import json
import signal

import pytest
from click.testing import CliRunner

from python_runner.cli import main
from test_runner import add_job, pipeline_status, start_runner, wait_for  # noqa: F401 (fixture)

CALLS = """
create table public.test_calls (
  call_id bigint generated always as identity primary key, run_id bigint, attempt_no int,
  item_no int, params jsonb, at timestamptz default clock_timestamp())
"""


def run_status(conn, run_id: int) -> str:
    return conn.execute("select status from etl.runs where run_id = %s", (run_id,)).fetchone()["status"]


def finished(conn, run_id: int) -> bool:
    return run_status(conn, run_id) in ("success", "partial_success", "failed", "cancelled", "skipped")


def calls(conn, run_id: int) -> list[dict]:
    return conn.execute("select attempt_no, item_no, params from public.test_calls where run_id = %s "
                        "order by call_id", (run_id,)).fetchall()


def test_duplicate_items_are_processed_once(db, start_runner):
    with db.connect() as c:
        c.execute(CALLS)
        add_job(c, "regions", "runner_jobs:item_call", supports_params=True, item_concurrency=3,
                items_source=json.dumps({"static": [{"region": "eu", "n": 2}, {"region": "us", "n": 3},
                                                    {"region": "eu", "n": 2}, {"region": "apac", "n": 4}]}))
        run = c.execute("select etl.run_job('regions') as r").fetchone()["r"]
        start_runner(slots=1)
        wait_for(lambda: finished(c, run), what="the run to end")
        r = c.execute("select status, items_total, items_duplicate, items_succeeded, records_read "
                      "from etl.runs where run_id = %s", (run,)).fetchone()
        assert r == {"status": "success", "items_total": 3, "items_duplicate": 1, "items_succeeded": 3,
                     "records_read": 9}
        done = calls(c, run)
        assert sorted(x["params"]["region"] for x in done) == ["apac", "eu", "us"]
        items = c.execute("select item_no, params ->> 'region' as region, duplicate_count, status, records_read "
                          "from etl.run_items where run_id = %s order by item_no", (run,)).fetchall()
        assert [(i["item_no"], i["region"], i["duplicate_count"], i["status"], i["records_read"]) for i in items] == [
            (1, "eu", 1, "success", 2), (2, "us", 0, "success", 3), (3, "apac", 0, "success", 4)]


def test_callable_items_source(db, start_runner):
    with db.connect() as c:
        c.execute(CALLS)
        add_job(c, "from_callable", "runner_jobs:item_call", supports_params=True,
                items_source=json.dumps({"callable": "runner_jobs:region_items"}))
        run = c.execute("select etl.run_job('from_callable') as r").fetchone()["r"]
        start_runner(slots=1)
        wait_for(lambda: finished(c, run), what="the run to end")
        assert run_status(c, run) == "success"
        assert [x["params"]["region"] for x in calls(c, run)] == ["eu", "us", "apac"]


def test_transient_item_failure_retries_only_that_item(db, start_runner):
    with db.connect() as c:
        c.execute(CALLS)
        add_job(c, "retry_items", "runner_jobs:item_call", supports_params=True, backoff_base="10 milliseconds",
                items_source=json.dumps({"static": [{"k": 1}, {"k": 2, "fail": "first_attempt"}, {"k": 3}]}))
        run = c.execute("select etl.run_job('retry_items') as r").fetchone()["r"]
        start_runner(slots=1)
        wait_for(lambda: finished(c, run), what="the run to end")
        r = c.execute("select status, attempt_count, records_read from etl.runs where run_id = %s", (run,)).fetchone()
        assert r == {"status": "success", "attempt_count": 2, "records_read": 3}
        assert [(x["attempt_no"], x["item_no"]) for x in calls(c, run)] in (
            [(1, 1), (1, 2), (1, 3), (2, 2)], [(1, 1), (1, 3), (1, 2), (2, 2)])
        per_attempt = c.execute("select attempt_no, records_read from etl.run_attempts where run_id = %s "
                                "order by attempt_no", (run,)).fetchall()
        assert [(a["attempt_no"], a["records_read"]) for a in per_attempt] == [(1, 2), (2, 1)]


def test_permanent_item_failure_is_partial_when_allowed(db, start_runner):
    with db.connect() as c:
        c.execute(CALLS)
        for slug, partial in (("partial_ok", True), ("partial_no", False)):
            add_job(c, slug, "runner_jobs:item_call", supports_params=True, allow_partial_success=partial,
                    items_source=json.dumps({"static": [{"k": 1}, {"k": 2, "fail": "permanent"}]}))
        runs = [c.execute("select etl.run_job(%s) as r", (s,)).fetchone()["r"] for s in ("partial_ok", "partial_no")]
        start_runner(slots=2)
        wait_for(lambda: all(finished(c, r) for r in runs), what="both runs to end")
        got = [c.execute("select status, error_category, error_type, attempt_count from etl.runs where run_id = %s",
                         (r,)).fetchone() for r in runs]
        assert got == [{"status": "partial_success", "error_category": "DATA", "error_type": "item_failed",
                        "attempt_count": 1},
                       {"status": "failed", "error_category": "DATA", "error_type": "item_failed",
                        "attempt_count": 1}]


def test_killed_attempt_resumes_only_unfinished_items(db, start_runner):
    with db.connect() as c:
        c.execute(CALLS)
        add_job(c, "long_items", "runner_jobs:slow_item", supports_params=True, lease_duration="2 seconds",
                items_source=json.dumps({"static": [{"k": k, "seconds": 0.4} for k in range(1, 7)]}))
        run = c.execute("select etl.run_job('long_items') as r").fetchone()["r"]
        first = start_runner(slots=1, worker="first")
        wait_for(lambda: c.execute("select count(*) as n from etl.run_items where run_id = %s and status = 'success'",
                                   (run,)).fetchone()["n"] >= 2, what="two items to succeed")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        done_before = {i["item_no"] for i in c.execute(
            "select item_no from etl.run_items where run_id = %s and status = 'success'", (run,))}
        start_runner(slots=1, worker="second")

        # No tick: the second runner reaps the lease when it ends.
        wait_for(lambda: finished(c, run), timeout=60, what="the second runner to reap the lease and finish the run")
        assert run_status(c, run) == "success"
        done = calls(c, run)
        second = [x["item_no"] for x in done if x["attempt_no"] == 2]
        assert not set(second) & done_before, "items that had succeeded ran again"
        assert {x["item_no"] for x in done} == set(range(1, 7))
        statuses = c.execute("select status, count(*) as n from etl.run_attempts where run_id = %s group by 1",
                             (run,)).fetchall()
        assert {s["status"]: s["n"] for s in statuses} == {"lost": 1, "success": 1}


def test_item_cursors_advance_once_per_success_never_on_dry_run_or_failure(db, start_runner):
    with db.connect() as c:
        c.execute("create table public.test_source (region text, modified timestamptz)")
        c.execute("create table public.test_fail (region text)")
        add_job(c, "cursor_items", "runner_jobs:item_watermark", supports_params=True, supports_incremental=True,
                incremental_strategy="modified_date", max_attempts=1,
                items_source=json.dumps({"static": [{"region": "eu"}, {"region": "us"}]}))
        start_runner(slots=1)

        def run(dry_run: bool = False) -> int:
            r = c.execute("select etl.run_job('cursor_items', dry_run => %s) as r", (dry_run,)).fetchone()["r"]
            wait_for(lambda: finished(c, r), what="the run to end")
            return r

        def cursors():
            return {(row["params"]["region"], row["cursor_value"].isoformat(), row["advance_count"]) for row in
                    c.execute("select params, cursor_value, advance_count from etl.cursors c join etl.jobs j "
                              "using (job_id) where j.slug = 'cursor_items'")}

        c.execute("insert into public.test_source values ('eu', '2026-01-01Z'), ('us', '2026-01-02Z')")
        assert run_status(c, run()) == "success"
        first = cursors()
        assert first == {("eu", "2026-01-01T00:00:00+00:00", 1), ("us", "2026-01-02T00:00:00+00:00", 1)}
        c.execute("insert into public.test_source values ('eu', '2026-03-01Z'), ('us', '2026-03-02Z')")
        assert run_status(c, run(dry_run=True)) == "success"
        assert cursors() == first, "a dry run moved a cursor"
        c.execute("insert into public.test_fail values ('us')")
        assert run_status(c, run()) == "failed"
        assert cursors() == {("eu", "2026-03-01T00:00:00+00:00", 2), ("us", "2026-01-02T00:00:00+00:00", 1)}
        c.execute("delete from public.test_fail")
        again = run()
        assert run_status(c, again) == "success", c.execute(
            "select error_type, error_message from etl.runs where run_id = %s", (again,)).fetchone()
        assert run_status(c, run()) == "success"  # nothing new: no advance
        assert cursors() == {("eu", "2026-03-01T00:00:00+00:00", 2), ("us", "2026-03-02T00:00:00+00:00", 2)}


@pytest.fixture
def silver(db):
    """Two tables, three procedures: p_dim and p_fact insert; p_broken inserts then violates a key."""
    with db.connect() as c:
        c.execute("""
create schema silver;
create table silver.dim (id int primary key, name text);
create table silver.fact (id int primary key, dim_id int references silver.dim);
create procedure silver.p_dim() language sql as $$ insert into silver.dim values (1, 'a'), (2, 'b') $$;
create procedure silver.p_fact() language sql as $$ insert into silver.fact values (10, 1), (11, 2), (12, 1) $$;
create procedure silver.p_broken() language sql as $$ insert into silver.fact values (20, 1); insert into silver.fact values (20, 2) $$;
create materialized view silver.fact_counts as select dim_id, count(*) as n from silver.fact group by dim_id;
create unique index on silver.fact_counts (dim_id);
""")
        add_job(c, "dim", "silver.p_dim", kind="sql", role="dimension", layer="silver")
        add_job(c, "fact", "silver.p_fact", kind="sql", role="fact", layer="silver")
        add_job(c, "broken", "silver.p_broken", kind="sql", role="fact", layer="silver", max_attempts=1)
        c.execute("insert into etl.job_groups (name) values ('silver_core')")
        c.execute("insert into etl.job_group_members (group_id, job_id, sequence) "
                  "select g.group_id, j.job_id, s.seq from etl.job_groups g, etl.jobs j, "
                  "(values ('dim', 1), ('fact', 2), ('broken', 3)) s(slug, seq) where j.slug = s.slug")
    return db


def count(conn, table: str) -> int:
    return conn.execute(f"select count(*) as n from {table}").fetchone()["n"]


def test_per_group_failure_leaves_no_row_of_any_member(silver, start_runner):
    with silver.connect() as c:
        pid = c.execute("select etl.trigger_pipeline(jobs => array['dim','fact','broken'], "
                        "transaction_scope => 'per_group', reason => 'test') as p").fetchone()["p"]
        start_runner(slots=2)
        wait_for(lambda: pipeline_status(c, pid) not in ("running", "queued"), what="the pipeline to end")
        assert (count(c, "silver.dim"), count(c, "silver.fact")) == (0, 0)
        rows = {r["slug"]: r for r in c.execute(
            "select j.slug, r.status, r.error_type, r.error_message from etl.runs r join etl.jobs j using (job_id) "
            "where r.pipeline_run_id = %s", (pid,))}
        assert {s: r["status"] for s, r in rows.items()} == {"dim": "failed", "fact": "failed", "broken": "failed"}
        assert rows["broken"]["error_type"] == "UniqueViolation"
        assert rows["fact"]["error_type"] == "group_rolled_back"
        assert "broken failed" in rows["dim"]["error_message"]


def test_per_procedure_failure_keeps_the_earlier_commits(silver, start_runner):
    with silver.connect() as c:
        pid = c.execute("select etl.trigger_pipeline(jobs => array['dim','fact','broken'], reason => 'test') as p"
                        ).fetchone()["p"]
        start_runner(slots=2)
        wait_for(lambda: pipeline_status(c, pid) not in ("running", "queued"), what="the pipeline to end")
        assert (count(c, "silver.dim"), count(c, "silver.fact")) == (2, 3)
        assert {r["slug"]: r["status"] for r in c.execute(
            "select j.slug, r.status from etl.runs r join etl.jobs j using (job_id) where r.pipeline_run_id = %s",
            (pid,))} == {"dim": "success", "fact": "success", "broken": "failed"}


def test_per_group_success_commits_all_members_in_sequence(silver, start_runner):
    with silver.connect() as c:
        pid = c.execute("select etl.trigger_pipeline(jobs => array['dim','fact'], transaction_scope => 'per_group') as p"
                        ).fetchone()["p"]
        start_runner(slots=2)
        wait_for(lambda: pipeline_status(c, pid) not in ("running", "queued"), what="the pipeline to end")
        assert pipeline_status(c, pid) == "success"
        rows = {r["slug"]: r for r in c.execute(
            "select j.slug, r.rows_affected, r.sql_executed, r.group_leader_run_id from etl.runs r "
            "join etl.jobs j using (job_id) where r.pipeline_run_id = %s", (pid,))}
        assert rows["fact"]["group_leader_run_id"] is not None
        assert 'call "silver"."p_fact"()' in rows["fact"]["sql_executed"]
        assert (count(c, "silver.dim"), count(c, "silver.fact")) == (2, 3)


def test_dry_run_of_a_procedure_reports_real_counts_and_changes_nothing(silver, start_runner):
    with silver.connect() as c:
        run = c.execute("select etl.run_job('dim', dry_run => true) as r").fetchone()["r"]
        start_runner(slots=1)
        wait_for(lambda: finished(c, run), what="the dry run to end")
        r = c.execute("select status, rows_affected, metrics from etl.runs where run_id = %s", (run,)).fetchone()
        assert r["status"] == "success"
        assert r["metrics"]["dry_run_rolled_back"] is True
        assert count(c, "silver.dim") == 0


def test_view_refreshes_after_success_and_not_after_failure_on_success_policy(silver, start_runner):
    with silver.connect() as c:
        c.execute("insert into etl.refresh_targets (schema_name, view_name) values ('silver', 'fact_counts')")
        c.execute("insert into etl.job_refresh_targets (job_id, refresh_target_id) "
                  "select j.job_id, t.refresh_target_id from etl.jobs j, etl.refresh_targets t "
                  "where j.slug in ('fact', 'broken')")
        c.execute("call silver.p_dim()")
        start_runner(slots=1)
        ok = c.execute("select etl.run_job('fact') as r").fetchone()["r"]
        wait_for(lambda: finished(c, ok), what="fact to end")
        refreshes = c.execute("select status, was_concurrent from etl.run_refreshes where run_id = %s", (ok,)).fetchall()
        assert refreshes == [{"status": "success", "was_concurrent": True}]
        assert count(c, "silver.fact_counts") == 2
        bad = c.execute("select etl.run_job('broken') as r").fetchone()["r"]
        wait_for(lambda: finished(c, bad), what="broken to end")
        assert run_status(c, bad) == "failed"
        assert count(c, "etl.run_refreshes where run_id = %s" % bad) == 0


def test_unapproved_full_refresh_is_refused_and_enqueues_nothing(silver):
    with silver.connect() as c:
        c.execute("update etl.jobs set allow_full_refresh = true where slug = 'dim'")
        before = count(c, "etl.pipeline_runs")
    env = {"ETL_DSN": silver.dsn}
    refused = CliRunner().invoke(main, ["run", "dim", "--full", "--reason", "rebuild"], env=env)
    assert refused.exit_code != 0
    assert "approv" in refused.output
    with silver.connect() as c:
        assert count(c, "etl.pipeline_runs") == before
    approved = CliRunner().invoke(main, ["run", "dim", "--full", "--approve", "--reason", "rebuild after fix"], env=env)
    assert approved.exit_code == 0, approved.output
    with silver.connect() as c:
        p = c.execute("select mode, full_refresh_confirmed, approved_by, approval_reason from etl.pipeline_runs "
                      "order by pipeline_run_id desc limit 1").fetchone()
        assert p["mode"] == "full" and p["full_refresh_confirmed"] and p["approval_reason"] == "rebuild after fix"
        assert p["approved_by"]
        assert count(c, "etl.audit_log where action = 'run_job' and details -> 'approval' ->> 'confirmed' = 'true'") == 1


def test_a_run_whose_items_failed_refreshes_no_on_success_view(db, start_runner):
    with db.connect() as c:
        c.execute(CALLS)
        c.execute("create materialized view public.mv_calls as select count(*) as n from public.test_calls")
        add_job(c, "items_fail", "runner_jobs:item_call", supports_params=True, max_attempts=1,
                items_source=json.dumps({"static": [{"region": "eu"}, {"region": "us", "fail": "permanent"}]}))
        c.execute("insert into etl.refresh_targets (schema_name, view_name) values ('public', 'mv_calls')")
        c.execute("insert into etl.job_refresh_targets (job_id, refresh_target_id) "
                  "select j.job_id, t.refresh_target_id from etl.jobs j, etl.refresh_targets t where j.slug = 'items_fail'")
        run = c.execute("select etl.run_job('items_fail') as r").fetchone()["r"]
        start_runner(slots=1)
        wait_for(lambda: finished(c, run), what="the run to end")
        assert run_status(c, run) == "failed"
        assert count(c, "etl.run_refreshes where run_id = %s" % run) == 0
        assert c.execute("select n from public.mv_calls").fetchone()["n"] == 0, "the view was refreshed"


def test_sigterm_during_items_starts_no_new_item_and_hands_the_rest_on(db, start_runner):
    with db.connect() as c:
        c.execute(CALLS)
        add_job(c, "drained_items", "runner_jobs:slow_item", supports_params=True, item_concurrency=1,
                items_source=json.dumps({"static": [{"k": k, "seconds": 0.5} for k in range(1, 9)]}))
        run = c.execute("select etl.run_job('drained_items') as r").fetchone()["r"]
        first = start_runner(slots=1, worker="first", grace=30.0)
        wait_for(lambda: len(calls(c, run)) >= 2, what="two items to start")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0, "the runner waited for every item instead of draining"
        row = c.execute("select r.status, a.error_type from etl.runs r join etl.run_attempts a "
                        "on a.run_id = r.run_id and a.attempt_no = 1 where r.run_id = %s", (run,)).fetchone()
        assert (row["status"], row["error_type"]) == ("queued", "runner_shutdown")
        started_by_first = len(calls(c, run))
        assert started_by_first < 8
        start_runner(slots=1, worker="second")
        wait_for(lambda: finished(c, run), timeout=60, what="the second runner to finish the items")
        assert run_status(c, run) == "success"
        assert sorted(x["params"]["k"] for x in calls(c, run)) == list(range(1, 9)), "an item ran twice or never"


def test_secrets_in_item_and_group_member_failures_and_in_bound_params_are_redacted(db, start_runner):
    """What viewers read (runs, items, attempts, alerts, sql_executed) holds no secret a job leaked."""
    with db.connect() as c:
        c.execute("""
create schema leaky;
create function leaky.f_login(api_password text) returns int language sql as $$ select 1 $$;
create procedure leaky.p_ok() language sql as $$ select 1 $$;
create procedure leaky.p_leak() language plpgsql as $$ begin raise exception 'login failed: password=hunter2'; end $$;
""")
        add_job(c, "leaky_items", "runner_jobs:item_leaks_secret", supports_params=True, max_attempts=1,
                items_source=json.dumps({"static": [{"k": 1}]}))
        add_job(c, "leaky_sql", "leaky.f_login", kind="sql", supports_params=True)
        c.execute("insert into etl.job_parameters (job_id, name, data_type) "
                  "select job_id, 'api_password', 'string' from etl.jobs where slug = 'leaky_sql'")
        add_job(c, "g_ok", "leaky.p_ok", kind="sql", max_attempts=1)
        add_job(c, "g_leak", "leaky.p_leak", kind="sql", max_attempts=1)
        c.execute("insert into etl.job_groups (name) values ('leaky_group')")
        c.execute("insert into etl.job_group_members (group_id, job_id, sequence) "
                  "select g.group_id, j.job_id, s.seq from etl.job_groups g, etl.jobs j, "
                  "(values ('g_ok', 1), ('g_leak', 2)) s(slug, seq) where j.slug = s.slug")
        items_run = c.execute("select etl.run_job('leaky_items') as r").fetchone()["r"]
        sql_run = c.execute("""select etl.run_job('leaky_sql', '{"api_password": "hunter2"}') as r""").fetchone()["r"]
        pid = c.execute("select etl.trigger_pipeline(jobs => array['g_ok','g_leak'], "
                        "transaction_scope => 'per_group', reason => 'test') as p").fetchone()["p"]
        start_runner(slots=2)
        wait_for(lambda: finished(c, items_run) and finished(c, sql_run)
                 and pipeline_status(c, pid) not in ("running", "queued"), what="the three to end")
        assert (run_status(c, items_run), run_status(c, sql_run)) == ("failed", "success")
        stored = c.execute("""
select string_agg(coalesce(t, ''), ' | ') as text from (
  select error_message as t from etl.runs where run_id = %(i)s or pipeline_run_id = %(p)s
  union all select error_message from etl.run_items where run_id = %(i)s
  union all select a.error_message from etl.run_attempts a join etl.runs r using (run_id)
             where r.run_id = %(i)s or r.pipeline_run_id = %(p)s
  union all select message from etl.alert_events
  union all select sql_executed from etl.runs where run_id = %(s)s) x""",
                           {"i": items_run, "s": sql_run, "p": pid}).fetchone()["text"]
        assert "hunter2" not in stored and "S3cretPw" not in stored, stored
        assert "[REDACTED]" in c.execute("select error_message from etl.run_items where run_id = %s",
                                         (items_run,)).fetchone()["error_message"]
        assert '"leaky"."f_login"' in c.execute("select sql_executed from etl.runs where run_id = %s",
                                            (sql_run,)).fetchone()["sql_executed"]
        assert "login failed" in c.execute("select r.error_message from etl.runs r join etl.jobs j using (job_id) "
                                           "where r.pipeline_run_id = %s and j.slug = 'g_leak'",
                                           (pid,)).fetchone()["error_message"]


def test_items_sql_runs_as_one_read_only_statement(db, start_runner):
    """A job's items.sql cannot end the runner's read-only transaction with `; commit; ...` (one
    statement only) nor write in it."""
    with db.connect() as c:
        c.execute("create table public.escape_probe (n int)")
        c.execute("create function public.write_probe() returns int language sql "
                  "as $$ insert into public.escape_probe values (2) returning n $$")
        for slug, query in (("escapes", "select 1 as k) q; commit; insert into public.escape_probe values (1); "
                                        "select 1 as items from (select 1"),
                            ("writes", "select public.write_probe() as k")):
            add_job(c, slug, "runner_jobs:item_call", supports_params=True, max_attempts=1,
                    items_source=json.dumps({"sql": query}))
        runs = [c.execute("select etl.run_job(%s) as r", (s,)).fetchone()["r"] for s in ("escapes", "writes")]
        start_runner(slots=2)
        wait_for(lambda: all(finished(c, r) for r in runs), what="both runs to end")
        got = [c.execute("select status, error_message from etl.runs where run_id = %s", (r,)).fetchone() for r in runs]
        assert [g["status"] for g in got] == ["failed", "failed"], got
        assert "multiple commands" in got[0]["error_message"]
        assert "read-only transaction" in got[1]["error_message"]
        assert c.execute("select count(*) as n from public.escape_probe").fetchone()["n"] == 0
