"""`etl import legacy` (python_runner/legacy_import.py): a legacy deployment built from the seeds'
table names (tests/legacy_schema.sql) brought across into schema etl, through the CLI."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg import sql

from python_runner.cli import main

LEGACY_SQL = (Path(__file__).parent / "legacy_schema.sql").read_text()
ETL_TABLES = ("jobs", "job_dependencies", "job_tags", "job_parameters", "job_groups", "job_group_members",
              "schedules", "pipeline_runs", "runs", "run_attempts", "run_dependencies", "run_events", "cursors")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def load_legacy(conn, schema: str = "legacy") -> None:
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("set search_path = {}").format(sql.Identifier(schema)))
    conn.execute(LEGACY_SQL)
    conn.execute("reset search_path")


def counts(conn) -> dict[str, int]:
    return {t: conn.execute(sql.SQL("select count(*) as n from etl.{}").format(sql.Identifier(t))).fetchone()["n"]
            for t in ETL_TABLES}


def contents(conn) -> dict[str, str]:
    """A digest of every row of every table the import writes: equal digests, unchanged data."""
    return {t: conn.execute(sql.SQL("select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) as d "
                                    "from etl.{} x").format(sql.Identifier(t))).fetchone()["d"]
            for t in ETL_TABLES}


@pytest.fixture
def cli(db):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["import", "legacy", *args], env={"ETL_DSN": db.dsn}, catch_exceptions=False)

    return invoke


@pytest.fixture
def legacy(conn):
    load_legacy(conn)
    return conn


def import_json(cli, *args: str) -> dict:
    res = cli("--schema", "legacy", "--json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def table(summary: dict, name: str) -> dict:
    return next(t for t in summary["tables"] if t["table"] == name)


def reasons(t: dict) -> dict[str, list[str]]:
    return {r["reason"]: r["ids"] for r in t["not_imported"]}


def notes(t: dict) -> dict[str, list[str]]:
    return {n["note"]: n["ids"] for n in t["notes"]}


def run_of(conn, legacy_table: str, legacy_id: str) -> dict:
    return conn.execute("""select r.*, j.slug, p.trigger_type, p.status as pipeline_status, p.mode as pipeline_mode
                             from etl.runs r join etl.pipeline_runs p using (pipeline_run_id)
                             join etl.jobs j using (job_id)
                            where p.idempotency_key = %s order by j.slug""",
                        (f"legacy:legacy:{legacy_table}:{legacy_id}",)).fetchall()


# ------------------------------------------------------------------------------------ complete import


def test_the_legacy_schema_imports_completely(cli, legacy):
    conn = legacy
    s = import_json(cli)
    assert s["committed"] is True and s["dry_run"] is False
    assert counts(conn) == {"jobs": 8, "job_dependencies": 5, "job_tags": 3, "job_parameters": 5, "job_groups": 1,
                            "job_group_members": 3, "schedules": 0, "pipeline_runs": 11, "runs": 14,
                            "run_attempts": 15, "run_dependencies": 1, "run_events": 0, "cursors": 5}
    assert s["new_rows"] == sum(counts(conn).values())

    # jobs (dw_etl_jobs): slug, kind/target, retries, strategy, placeholder target disabled
    jobs = {r["slug"]: r for r in conn.execute("select * from etl.jobs")}
    o = jobs["bronze_orders"]
    assert (o["kind"], o["target"], o["layer"], o["priority"], o["enabled"]) == \
        ("python", "extracts.orders:extract", "bronze", 5, True)
    assert (o["max_attempts"], o["backoff_base"], o["backoff_factor"], o["timeout"]) == \
        (5, timedelta(seconds=2), 3, timedelta(minutes=15))
    assert (o["supports_params"], o["supports_incremental"], o["incremental_strategy"]) == (True, True, "modified_date")
    assert o["concurrency_key"] == "shop_api"
    assert o["config"] == {"legacy": {"schema": "legacy", "table": "dw_etl_jobs", "id": "1"}}
    assert jobs["bronze_customers"]["incremental_strategy"] == "last_run"
    assert (jobs["silver_orders"]["kind"], jobs["silver_orders"]["target"], jobs["silver_orders"]["max_attempts"]) == \
        ("sql", "silver.load_orders", 1)
    gold = jobs["gold_revenue_daily"]   # no slug in the legacy row: derived from job_name
    assert (gold["target"], gold["enabled"], gold["timeout"]) == ("legacy:gold_revenue_daily", False, timedelta(minutes=30))
    assert (jobs["legacy_cleanup"]["target"], jobs["legacy_cleanup"]["enabled"]) == ("maintenance.cleanup:run", False)
    # procedures (transformation_procedure)
    fact = jobs["load_fact_sales"]
    assert (fact["kind"], fact["target"], fact["role"], fact["layer"], fact["allow_full_refresh"],
            fact["incremental_strategy"], fact["timeout"]) == \
        ("sql", "silver.load_fact_sales", "fact", "silver", True, "modified_date", timedelta(minutes=20))
    assert (jobs["load_dim_product"]["role"], jobs["load_dim_product"]["supports_incremental"]) == ("dimension", False)

    edges = {(r["p"], r["c"], r["dependency_type"]) for r in conn.execute(
        """select p.slug as p, c.slug as c, d.dependency_type from etl.job_dependencies d
             join etl.jobs p on p.job_id = d.parent_job_id join etl.jobs c on c.job_id = d.child_job_id""")}
    assert edges == {("bronze_orders", "silver_orders", "explicit"), ("bronze_customers", "silver_orders", "explicit"),
                     ("silver_orders", "gold_revenue_daily", "explicit"),
                     ("load_dim_customer", "load_fact_sales", "explicit"),
                     ("load_dim_product", "load_fact_sales", "explicit")}
    members = [(r["name"], r["slug"], r["sequence"]) for r in conn.execute(
        """select g.name, j.slug, m.sequence from etl.job_group_members m join etl.job_groups g using (group_id)
             join etl.jobs j using (job_id) order by m.sequence""")]
    assert members == [("silver_sales", "load_dim_customer", 1), ("silver_sales", "load_dim_product", 2),
                       ("silver_sales", "load_fact_sales", 3)]
    params = {(r["slug"], r["name"], r["mode"]): r for r in conn.execute(
        "select j.slug, p.* from etl.job_parameters p join etl.jobs j using (job_id)")}
    assert (params[("load_fact_sales", "batch_size", "all")]["data_type"],
            params[("load_fact_sales", "batch_size", "all")]["default_value"]) == ("integer", 5000)
    assert params[("load_fact_sales", "start_date", "full")]["default_value"] == "2020-01-01"
    assert params[("load_fact_sales", "start_date", "incremental")]["required"] is True
    assert params[("load_dim_customer", "country", "all")]["default_value"] == "DE"
    # bronze_orders had no parameter schema: its legacy runs' keys are declared
    assert params[("bronze_orders", "country", "all")]["data_type"] == "string"
    assert {r["tag"] for r in conn.execute("select tag from etl.job_tags")} == {"shop", "finance"}

    # runs: status lower-cased, duration backfilled, error category rules, fingerprint
    assert {r["trigger_type"] for r in conn.execute("select trigger_type from etl.pipeline_runs")} == {"import"}
    [r101] = run_of(conn, "dw_etl_runs", 101)
    assert (r101["slug"], r101["status"], r101["duration_ms"], r101["records_read"], r101["records_written"],
            r101["page_count"], r101["error_category"], r101["attempt_count"], r101["max_attempts"]) == \
        ("bronze_orders", "success", 120000, 1000, 990, 10, None, 1, 5)
    assert str(r101["correlation_id"]) == "6f1d3c2a-0000-4000-8000-000000000101"
    assert r101["logical_date"] == ts("2024-05-01T02:00:00+00:00")
    assert r101["parameter_fingerprint"] == conn.execute(
        """select etl.param_fingerprint('{"country": "DE"}') as f""").fetchone()["f"]
    [r103] = run_of(conn, "dw_etl_runs", 103)
    assert (r103["status"], r103["duration_ms"], r103["params"]) == ("success", 42500, {})
    [r104] = run_of(conn, "dw_etl_runs", 104)
    assert (r104["status"], r104["error_category"], r104["error_type"]) == ("partial_success", "DATA", "null_customer")
    [r105] = run_of(conn, "dw_etl_runs", 105)
    assert (r105["status"], r105["error_category"], r105["error_type"], r105["requested_by"]) == \
        ("failed", "SYSTEM", "legacy_unknown", "alice")
    [r106] = run_of(conn, "dw_etl_runs", 106)
    assert (r106["status"], r106["started_at"], r106["ended_at"]) == ("skipped", None, ts("2024-05-02T03:00:00+00:00"))
    [r107] = run_of(conn, "dw_etl_runs", 107)
    assert (r107["status"], r107["dry_run"], r107["duration_ms"]) == ("cancelled", True, 300000)
    [r110] = run_of(conn, "dw_etl_runs", 110)
    assert (r110["status"], r110["duration_ms"]) == ("success", 7250)
    # attempts of the failed run: backoff kept, next attempt computed, unique attempt numbers
    [r102] = run_of(conn, "dw_etl_runs", 102)
    attempts = conn.execute("""select attempt_no, status, worker_id, backoff_ms, next_attempt_at, duration_ms,
                                      error_category, lease_expires_at, ended_at
                                 from etl.run_attempts where run_id = %s order by attempt_no""",
                            (r102["run_id"],)).fetchall()
    assert [(a["attempt_no"], a["status"], a["worker_id"], a["backoff_ms"], a["error_category"]) for a in attempts] == \
        [(1, "failed", "etl-worker-1", 2000, "API"), (2, "failed", "etl-worker-2", 4000, "API"),
         (3, "failed", "etl-worker-1", None, "API")]
    assert attempts[0]["next_attempt_at"] == ts("2024-05-01T02:00:08+00:00")
    assert attempts[2]["duration_ms"] == 7000 and attempts[2]["lease_expires_at"] == attempts[2]["ended_at"]
    assert (r102["status"], r102["attempt_count"], r102["error_category"], r102["is_transient"]) == ("failed", 3, "API", True)
    # nothing live: no run the engine could claim
    assert conn.execute("select count(*) as n from etl.runs where status in ('pending', 'queued', 'running')"
                        ).fetchone()["n"] == 0

    # transformation_run / transformation_step history
    tr1 = {r["slug"]: r for r in run_of(conn, "transformation_run", "c0000000-0000-4000-8000-000000000001")}
    assert set(tr1) == {"load_dim_customer", "load_dim_product", "load_fact_sales"}
    f = tr1["load_fact_sales"]
    assert (f["status"], f["attempt_count"], f["rows_affected"], f["duration_ms"], f["group_id"] is not None) == \
        ("success", 2, 5100, 180000, True)
    fa = conn.execute("select attempt_no, status, error_category, error_type, error_detail from etl.run_attempts "
                      "where run_id = %s order by attempt_no", (f["run_id"],)).fetchall()
    assert [(a["status"], a["error_category"], a["error_type"]) for a in fa] == \
        [("failed", "DB", "DeadlockDetected"), ("success", None, None)]
    assert fa[0]["error_detail"] == {"sqlstate": "40P01"}
    # per_group: the group is one unit led by its first member, as the engine forms it; the
    # snapshot keeps the declared edges
    leader = tr1["load_dim_customer"]["run_id"]
    assert [tr1[j]["group_leader_run_id"] for j in ("load_dim_customer", "load_dim_product", "load_fact_sales")] == \
        [None, leader, leader]
    assert conn.execute("select count(*) as n from etl.run_dependencies where pipeline_run_id = %s",
                        (f["pipeline_run_id"],)).fetchone()["n"] == 0
    snapshot = conn.execute("select dependency_snapshot as s from etl.pipeline_runs where pipeline_run_id = %s",
                            (f["pipeline_run_id"],)).fetchone()["s"]
    assert {(e["parent"], e["child"]) for e in snapshot} == {("load_dim_customer", "load_fact_sales"),
                                                             ("load_dim_product", "load_fact_sales")}
    [full] = run_of(conn, "transformation_run", "c0000000-0000-4000-8000-000000000002")
    assert (full["mode"], full["pipeline_mode"], full["status"]) == ("full", "full", "success")
    approval = conn.execute("select approved_by, approval_reason, full_refresh_confirmed from etl.pipeline_runs "
                            "where pipeline_run_id = %s", (full["pipeline_run_id"],)).fetchone()
    assert approval == {"approved_by": "carol", "approval_reason": "schema change in sales", "full_refresh_confirmed": True}
    tr3 = {r["slug"]: r for r in run_of(conn, "transformation_run", "c0000000-0000-4000-8000-000000000003")}
    assert (tr3["load_dim_customer"]["status"], tr3["load_dim_customer"]["error_type"],
            tr3["load_fact_sales"]["status"], tr3["load_fact_sales"]["attempt_count"]) == \
        ("failed", "NotNullViolation", "skipped", 0)
    edge = conn.execute("select parent_run_id, child_run_id from etl.run_dependencies where pipeline_run_id = %s",
                        (tr3["load_fact_sales"]["pipeline_run_id"],)).fetchall()
    assert edge == [{"parent_run_id": tr3["load_dim_customer"]["run_id"], "child_run_id": tr3["load_fact_sales"]["run_id"]}]

    # cursors and watermarks
    cur = {(r["slug"], json.dumps(r["params"], sort_keys=True)): r for r in conn.execute(
        "select j.slug, c.* from etl.cursors c join etl.jobs j using (job_id)")}
    de = cur[("bronze_orders", '{"country": "DE"}')]
    assert (de["strategy"], de["cursor_value"], de["tiebreak_value"], de["advance_count"]) == \
        ("modified_date", ts("2024-05-01T01:59:58+00:00"), "ORD-99812", 0)
    assert de["param_hash"] == r101["parameter_fingerprint"]
    assert cur[("bronze_orders", '{"country": "FR"}')]["cursor_value"] == ts("2024-04-30T01:59:41+00:00")
    assert (cur[("bronze_customers", "{}")]["strategy"], cur[("bronze_customers", "{}")]["cursor_value"]) == \
        ("last_run", ts("2024-05-01T02:00:00+00:00"))
    wm = cur[("load_dim_customer", '{"country": "DE"}')]   # keyed by the default parameters
    assert (wm["cursor_value"], wm["metadata"]["column"]) == (ts("2024-05-01T00:00:00+00:00"), "updated_at")
    assert cur[("load_fact_sales", '{"batch_size": 5000}')]["cursor_value"] == ts("2024-05-02T03:00:00+00:00")

    # the summary: per table, reasons, notes, unmapped columns, tables left behind
    runs = table(s, "dw_etl_runs")
    assert (runs["seen"], runs["imported"], runs["already_present"], runs["not_imported_count"]) == (10, 8, 0, 2)
    assert table(s, "dw_etl_jobs")["imported"] == 5 and table(s, "transformation_procedure")["imported"] == 3
    assert table(s, "transformation_step")["imported"] == 7
    assert notes(runs)["duration_ms backfilled from ended_at - started_at"] == ["103", "107", "110"]
    assert notes(runs)["failed without an error category: SYSTEM / legacy_unknown"] == ["105"]
    assert any("placeholder" in n and ids == ["4"] for n, ids in notes(table(s, "dw_etl_jobs")).items())
    assert table(s, "dw_etl_jobs")["unmapped_columns"] == ["owner_email"]
    assert table(s, "transformation_step")["unmapped_columns"] == ["dependency_snapshot"]
    left = {t["table"]: t for t in s["tables_not_imported"]}
    assert set(left) == {"dw_etl_schedules", "dw_etl_run_events", "transformation_step_log"}
    assert left["dw_etl_schedules"]["rows"] == 2 and "etl apply" in left["dw_etl_schedules"]["reason"]


def test_imported_cursors_are_the_ones_the_engine_hands_out(cli, legacy):
    """The fingerprints the import computed are the engine's: a new run of the same parameters
    (bronze_orders DE; load_dim_customer with its defaults filled in) claims the imported cursor."""
    import_json(cli)
    conn = legacy
    conn.execute("""select etl.run_job('bronze_orders', '{"country": "DE"}', reason => 'test')""")
    conn.execute("select etl.run_job('load_dim_customer', '{}', reason => 'test')")
    claimed = {r["job_slug"]: r for r in conn.execute("select * from etl.claim('test-worker', 10)")}
    assert set(claimed) == {"bronze_orders", "load_dim_customer"}
    assert ts(claimed["bronze_orders"]["cursor"]["value"]) == ts("2024-05-01T01:59:58+00:00")
    assert claimed["bronze_orders"]["cursor"]["tiebreak"] == "ORD-99812"
    assert ts(claimed["load_dim_customer"]["cursor"]["value"]) == ts("2024-05-01T00:00:00+00:00")
    # an imported failed run is a run like any other: etl.retry reopens it with its parameters
    [r102] = run_of(conn, "dw_etl_runs", 102)
    conn.execute("select etl.retry(%s, 'rerun the legacy failure')", (r102["run_id"],))
    for c in claimed.values():   # bronze_orders shares the concurrency key shop_api: free it first
        conn.execute("""select etl.finish(%s, %s, '{"status": "success"}')""", (c["run_id"], c["token"]))
    [again] = conn.execute("select * from etl.claim('test-worker', 10)").fetchall()
    assert (again["run_id"], again["params"], again["attempt_no"]) == (r102["run_id"], {"country": "FR"}, 4)
    assert ts(again["cursor"]["value"]) == ts("2024-04-30T01:59:41+00:00")


# ------------------------------------------------------------------------------ idempotent, dry run


def test_a_second_import_changes_nothing(cli, legacy):
    first = import_json(cli)
    before_counts, before_rows = counts(legacy), contents(legacy)
    res = cli("--schema", "legacy")
    assert res.exit_code == 0, res.output
    assert "0 new rows written" in res.output
    second = import_json(cli)
    assert counts(legacy) == before_counts and contents(legacy) == before_rows
    assert second["new_rows"] == 0 and second["written"] == {}
    for t1, t2 in zip(first["tables"], second["tables"]):
        assert t2["imported"] == 0, t2
        assert t2["already_present"] == t1["imported"] + t1["already_present"], t2
        assert t2["not_imported_count"] == t1["not_imported_count"], t2


def test_dry_run_changes_nothing_and_reports_what_the_import_does(cli, legacy):
    before_counts, before_rows = counts(legacy), contents(legacy)
    res = cli("--schema", "legacy", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "dry run: rolled back, nothing written" in res.output and "new rows would be written" in res.output
    dry = import_json(cli, "--dry-run")
    assert counts(legacy) == before_counts and contents(legacy) == before_rows
    assert dry["dry_run"] is True and dry["committed"] is False and dry["new_rows"] > 0
    real = import_json(cli)
    assert real["tables"] == dry["tables"] and real["written"] == dry["written"]
    assert real["new_rows"] == sum(counts(legacy).values())


# ------------------------------------------------------------------------------- what is reported


def test_non_terminal_legacy_runs_are_reported_not_imported(cli, legacy):
    res = cli("--schema", "legacy")
    assert res.exit_code == 0, res.output
    assert "dw_etl_runs: 1 row(s) (ids 108): non-terminal legacy status PENDING" in res.output
    assert "dw_etl_runs: 1 row(s) (ids 109): non-terminal legacy status RUNNING" in res.output
    assert "dw_etl_run_attempts: 1 row(s) (ids 1009): its run was not imported" in res.output
    s = import_json(cli)
    assert any("RUNNING" in r and ids == ["c0000000-0000-4000-8000-000000000004"]
               for r, ids in reasons(table(s, "transformation_run")).items())
    assert list(reasons(table(s, "transformation_step")).values()) == [["8"]]
    for legacy_id in (108, 109):
        assert run_of(legacy, "dw_etl_runs", legacy_id) == []
    # the engine finds no work in the imported history
    assert legacy.execute("select * from etl.claim('test-worker', 10)").fetchall() == []


def test_unknown_legacy_columns_are_reported(cli, legacy):
    legacy.execute("alter table legacy.dw_etl_runs add column sla_minutes integer default 30")
    legacy.execute("alter table legacy.dw_etl_incremental_cursors add column shard text")
    res = cli("--schema", "legacy")
    assert res.exit_code == 0, res.output
    assert "legacy columns not understood" in res.output
    assert "  dw_etl_runs: sla_minutes" in res.output
    s = import_json(cli)
    assert table(s, "dw_etl_runs")["unmapped_columns"] == ["sla_minutes"]
    assert table(s, "dw_etl_incremental_cursors")["unmapped_columns"] == ["shard"]
    assert table(s, "dw_etl_jobs")["unmapped_columns"] == ["owner_email"]


def test_existing_etl_data_is_never_changed(cli, legacy):
    """A job already defined in etl (etl apply) and its cursor win: the legacy job maps onto it,
    its cursor is not moved, the other parameter set's cursor is added."""
    conn = legacy
    job_id = conn.execute("""insert into etl.jobs (slug, name, kind, target, supports_params, supports_incremental,
                                                   incremental_strategy, max_attempts)
                             values ('bronze_orders', 'Orders', 'python', 'shop.orders:extract', true, true,
                                     'modified_date', 7) returning job_id""").fetchone()["job_id"]
    conn.execute("""insert into etl.cursors (job_id, param_hash, params, strategy, cursor_value)
                    values (%s, etl.param_fingerprint('{"country": "DE"}'), '{"country": "DE"}', 'modified_date',
                            '2024-06-01 00:00:00+00')""", (job_id,))
    s = import_json(cli)
    assert table(s, "dw_etl_jobs")["already_present"] == 1
    job = conn.execute("select target, max_attempts, config from etl.jobs where job_id = %s", (job_id,)).fetchone()
    assert job == {"target": "shop.orders:extract", "max_attempts": 7, "config": {}}
    cursors = {json.dumps(r["params"]): r["cursor_value"] for r in conn.execute(
        "select params, cursor_value from etl.cursors where job_id = %s", (job_id,))}
    assert cursors == {'{"country": "DE"}': ts("2024-06-01T00:00:00+00:00"),
                       '{"country": "FR"}': ts("2024-04-30T01:59:41+00:00")}
    c = table(s, "dw_etl_incremental_cursors")
    assert (c["imported"], c["already_present"]) == (2, 1)
    [r101] = run_of(conn, "dw_etl_runs", 101)
    assert (r101["job_id"], r101["max_attempts"]) == (job_id, 7)
    # not a new job: its parameter schema is left alone
    assert conn.execute("select count(*) as n from etl.job_parameters where job_id = %s", (job_id,)).fetchone()["n"] == 0


def test_a_subset_of_legacy_tables_imports(cli, legacy):
    legacy.execute("""drop table legacy.dw_etl_run_attempts, legacy.dw_etl_run_events, legacy.dw_etl_runs,
                                 legacy.dw_etl_incremental_cursors, legacy.dw_etl_job_tags, legacy.dw_etl_schedules,
                                 legacy.dw_etl_job_dependencies, legacy.dw_etl_jobs""")
    s = import_json(cli)
    assert "dw_etl_jobs" in s["tables_missing"] and "dw_etl_runs" in s["tables_missing"]
    assert [t["table"] for t in s["tables"]][:2] == ["transformation_procedure", "transformation_dependency"]
    assert counts(legacy)["jobs"] == 3 and counts(legacy)["cursors"] == 2


def test_a_schema_name_is_an_identifier_not_sql(cli, conn, db):
    load_legacy(conn, 'old "etl"; drop table x')
    res = CliRunner().invoke(main, ["import", "legacy", "--schema", 'old "etl"; drop table x', "--json"],
                             env={"ETL_DSN": db.dsn}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["new_rows"] > 0
    assert conn.execute("""select count(*) as n from etl.pipeline_runs
                            where idempotency_key like 'legacy:old "etl"; drop table x:dw_etl_runs:%'""").fetchone()["n"] == 8


# ------------------------------------------------------------------------------------------ errors


def assert_failed_cleanly(res, conn, *fragments: str) -> None:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in res.output, res.output
    assert "nothing imported" in res.output
    assert counts(conn) == dict.fromkeys(ETL_TABLES, 0)


def test_an_unknown_status_fails_naming_table_row_and_column_and_imports_nothing(cli, legacy):
    legacy.execute("alter table legacy.dw_etl_runs drop constraint dw_etl_runs_status_check")
    legacy.execute("""insert into legacy.dw_etl_runs (run_id, job_id, status, started_at, ended_at)
                      values (111, 1, 'DONE', '2024-05-04 02:00:00+00', '2024-05-04 02:01:00+00')""")
    res = cli("--schema", "legacy")
    assert_failed_cleanly(res, legacy, "error: legacy table dw_etl_runs, row run_id=111, column status: "
                                       "unknown status 'DONE'")
    res = cli("--schema", "legacy", "--json")
    assert_failed_cleanly(res, legacy)
    err = json.loads(res.stdout)
    assert (err["ok"], err["table"], err["row_id"], err["column"]) == (False, "dw_etl_runs", "111", "status")


def test_an_unparsable_watermark_fails_naming_its_column(cli, legacy):
    legacy.execute("""update legacy.transformation_watermark set watermark_value = 'last tuesday'
                       where procedure_id = 'a0000000-0000-4000-8000-000000000003'""")
    assert_failed_cleanly(cli("--schema", "legacy"), legacy,
                          "legacy table transformation_watermark, row procedure_id=a0000000-0000-4000-8000-000000000003, "
                          "column watermark_value: 'last tuesday' is not a timestamp")


def test_an_end_before_the_start_fails(cli, legacy):
    legacy.execute("update legacy.dw_etl_run_attempts set ended_at = started_at - interval '1 second' "
                   "where attempt_id = 1003")
    assert_failed_cleanly(cli("--schema", "legacy"), legacy,
                          "legacy table dw_etl_run_attempts, row attempt_id=1003, column ended_at: ends")


def test_a_legacy_dependency_cycle_fails(cli, legacy):
    legacy.execute("insert into legacy.dw_etl_job_dependencies (parent_job_id, child_job_id) values (4, 1)")
    assert_failed_cleanly(cli("--schema", "legacy"), legacy,
                          "legacy table dw_etl_job_dependencies, row parent_job_id/child_job_id=4/1",
                          "dependency_cycle")


def test_two_legacy_jobs_with_one_slug_fail(cli, legacy):
    legacy.execute("""insert into legacy.dw_etl_jobs (job_id, slug, job_name, callable)
                      values (6, NULL, 'Gold: Revenue, daily!', 'x.y:z')""")
    assert_failed_cleanly(cli("--schema", "legacy"), legacy,
                          "legacy table dw_etl_jobs, row job_id=6, column job_name: gives slug 'gold_revenue_daily'")


def test_a_missing_or_empty_schema_fails(cli, conn):
    res = cli("--schema", "nope")
    assert res.exit_code == 1 and "schema 'nope' does not exist" in res.output
    conn.execute("create schema empty")
    res = cli("--schema", "empty")
    assert res.exit_code == 1 and "holds none of the legacy tables" in res.output


def test_import_matviews_adds_targets_links_by_lineage_and_is_idempotent(db):
    with db.connect() as c:
        c.execute("""
create schema s;
create table s.orders (id int primary key, region text);
create materialized view s.by_region as select region, count(*) as n from s.orders group by region;
create unique index on s.by_region (region);
create materialized view s.plain as select 1 as one;
insert into etl.jobs (slug, name, kind, target) values ('load_orders', 'load_orders', 'sql', 's.load_orders');
insert into etl.job_lineage (job_id, relation, access) select job_id, 's.orders', 'write' from etl.jobs;
""")
    env = {"ETL_DSN": db.dsn}
    first = CliRunner().invoke(main, ["import", "matviews", "--schema", "s"], env=env)
    assert first.exit_code == 0, first.output
    assert "2 materialized view(s) added" in first.output
    assert "suggested (use --link): load_orders writes what s.by_region reads" in first.output
    linked = CliRunner().invoke(main, ["import", "matviews", "--schema", "s", "--link", "--json"], env=env)
    assert linked.exit_code == 0, linked.output
    assert json.loads(linked.output)["links_added"] == [{"job": "load_orders", "view": "s.by_region"}]
    again = CliRunner().invoke(main, ["import", "matviews", "--schema", "s", "--link", "--json"], env=env)
    out = json.loads(again.output)
    assert out["added"] == [] and out["links_added"] == [] and sorted(out["already_present"]) == ["s.by_region", "s.plain"]
    with db.connect() as c:
        rows = c.execute("select view_name, refresh_mode, discovered_at is not null as found from etl.refresh_targets "
                         "order by 1").fetchall()
        assert [(r["view_name"], r["refresh_mode"], r["found"]) for r in rows] == [("by_region", "auto", True),
                                                                                   ("plain", "auto", True)]
        assert c.execute("select count(*) as n from etl.job_refresh_targets").fetchone()["n"] == 1
