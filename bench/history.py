#!/usr/bin/env python3
"""Run-history benchmark: a year of realistic history, then the history queries, timed.

    .venv/bin/python bench/history.py --runs 1000000
    .venv/bin/python bench/history.py --runs 10000000 --db etl_bench_history_10m
    .venv/bin/python bench/history.py --runs 1000000 --reuse          # time again, no reload
    .venv/bin/python bench/history.py --runs 1000000 --reuse --proposed   # with the proposed indexes

1. Creates a fresh database (default etl_bench_history) as a clone of a template into which sqitch
   deployed the whole schema (etl_bench_tmpl).
2. Generates the history with set-based SQL only (INSERT ... SELECT generate_series), in chunks,
   printing rows/s: 72 jobs (24 bronze python extracts, 24 silver and 24 gold SQL procedures),
   one pipeline run per 72 runs spread evenly over the 365 days before an anchor hour, runs with a
   skewed status mix, one run_attempts row per attempt, 2-4 run_events per run, run_items for the
   runs of the 7 parameterized jobs (~10% of runs, 1-5 items each) and run_logs for the last 7 days.
   Every value comes from hashint8extended(id, seed): the same --seed gives the same rows, ids and
   timestamps relative to the anchor, whatever the chunking.
   During the load the session runs with session_replication_role = replica, so foreign keys and
   triggers are not fired (the rows are consistent by construction; CHECK and NOT NULL constraints
   still apply), and the non-primary-key indexes of the five history tables are dropped and rebuilt
   afterwards, followed by VACUUM (ANALYZE) so that index-only scans see an all-visible heap.
3. Reads the history tables and their indexes into the OS page cache (pg_prewarm 'read'; skip
   with --no-prewarm), then times the history queries (prepared once, executed --reps times with
   varied, seeded parameters on one connection, client-side wall time including the fetch) and
   prints p50/p95/p99 against the targets, with an EXPLAIN (ANALYZE, BUFFERS) summary of the plan
   the prepared statement settles on (node types, index names, buffers, generic or custom plan).
   --proposed times the same queries with the index changes proposed in bench/README.md.

The anchor ("now") is the hour the data was generated (or --anchor); every "now"-relative window
uses the anchor stored in bench.meta, so --reuse reproduces the figures later, and generating again
with the same --seed and anchor gives identical rows. Results are also written as JSON to
bench/out/ (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import ClientCursor  # noqa: E402

from python_runner import devtools, settings  # noqa: E402

GENERATOR_VERSION = 3
TEMPLATE = "etl_bench_tmpl"
HISTORY_TABLES = ("runs", "run_attempts", "run_items", "run_events", "run_logs")
YEAR_S = 365 * 86400.0
DOMAINS = ("orders", "customers", "products", "payments", "inventory", "shipments", "invoices", "returns")
FACT_DOMAINS = {"orders", "payments", "shipments", "invoices", "returns"}
ITEM_JOBS = (3, 6, 9, 12, 15, 18, 21)          # bronze jobs iterating over regions: 7/72 = 9.7% of runs
REGIONS = ("us", "eu", "apac", "latam", "mea")

# Index changes proposed in bench/README.md. --proposed creates each index (kept in the scratch
# database for later runs) and times the queries inside one transaction that has dropped the index
# it would replace, then rolls back. Without --proposed, existing bench_* indexes are dropped the
# same way (inside the timing transaction), so one scratch database gives both figures.
PROPOSED = {
    # e1 becomes an index-only scan; c1/c2/e3 are fully ordered by the index (no incremental sort)
    "bench_runs_job_started_cov_idx": (
        "create index bench_runs_job_started_cov_idx on etl.runs "
        "(job_id, started_at desc, run_id desc) include (status, duration_ms)",
        "runs_job_started_idx"),
    # b becomes an index-only scan (run_id was the one column read from the heap)
    "bench_runs_failed_ended_cov_idx": (
        "create index bench_runs_failed_ended_cov_idx on etl.runs (ended_at desc) "
        "include (job_id, error_category, is_transient, run_id) where status = 'failed'",
        "runs_failed_ended_idx"),
}


def log(msg: str) -> None:
    print(msg, flush=True)


def connect(db: str, **kw) -> psycopg.Connection:
    return psycopg.connect(settings.dsn(db), autocommit=True, **kw)


def fmt_rate(rows: int, secs: float) -> str:
    return f"{rows / secs:,.0f} rows/s" if secs > 0 else "-"


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------

SETUP_SQL = r"""
create schema if not exists bench;
-- Uniform [0,1) from (key, salt): deterministic, inlined by the planner (LANGUAGE sql, immutable).
create or replace function bench.u(k bigint, s bigint) returns float8
  language sql immutable parallel safe
  as $$ select (pg_catalog.hashint8extended(k, s) & 9007199254740991)::float8 / 9007199254740992.0 $$;
create table if not exists bench.meta (
  db text primary key, runs bigint not null, seed int not null, generator int not null,
  anchor timestamptz not null, pipelines bigint not null, interval_s float8 not null,
  job_base bigint not null, complete boolean not null default false,
  load_seconds float8, row_counts jsonb, created_at timestamptz not null default now());
create table if not exists bench.jobs_cfg (
  idx int primary key, job_id bigint not null, layer_no int not null, kind text not null,
  has_items boolean not null, base_ms float8 not null, rec_scale float8 not null, priority int not null,
  slug text not null, domain text not null, sql_exec text, lineage jsonb not null);
create table if not exists bench.dropped_indexes (
  ord int primary key, tbl text not null, name text not null, create_sql text not null,
  constraint_sql text, est_pages bigint);
"""


def job_rows(job_base: int):
    """The 72 jobs: (idx, slug, name, kind, target, layer, role, domain, priority, has_items)."""
    out = []
    for idx in range(1, 73):
        layer_no = (idx - 1) // 24
        layer = ("bronze", "silver", "gold")[layer_no]
        nn = (idx - 1) % 24 + 1
        domain = DOMAINS[(nn - 1) % len(DOMAINS)]
        slug = f"{layer}_{domain}_{nn:02d}"
        if layer_no == 0:
            kind, target, role = "python", "demo.extract:run", None
        elif layer_no == 1:
            kind, target = "sql", f"silver.load_x_{nn:02d}"
            role = "fact" if domain in FACT_DOMAINS else "dimension"
        else:
            kind, target = "sql", f"gold.build_x_{nn:02d}"
            role = "fact" if domain in FACT_DOMAINS else "dimension"
        priority = (30, 20, 10)[layer_no] + (nn % 5)
        out.append(dict(idx=idx, job_id=job_base + idx, layer_no=layer_no, layer=layer, nn=nn,
                        domain=domain, slug=slug, kind=kind, target=target, role=role,
                        priority=priority, has_items=(layer_no == 0 and nn in ITEM_JOBS)))
    return out


def create_catalog(conn: psycopg.Connection, seed: int) -> int:
    """Jobs, DAG edges, one schedule; normal session (catalog triggers, if any, do run)."""
    cur = conn.cursor()
    if cur.execute("select count(*) from etl.runs").fetchone()[0] or \
            cur.execute("select count(*) from etl.pipeline_runs").fetchone()[0]:
        raise SystemExit("the fresh database already holds runs or pipeline runs: is the template clean?")
    job_base = cur.execute("select coalesce(max(job_id), 0) from etl.jobs").fetchone()[0]
    jobs = job_rows(job_base)
    region_static = json.dumps({"static": [{"region": r} for r in REGIONS]})
    with conn.transaction():
        for j in jobs:
            bronze = j["layer_no"] == 0
            cur.execute(
                """insert into etl.jobs (job_id, slug, name, description, kind, target, layer, role, domain,
                       priority, max_attempts, supports_params, items_source, item_concurrency,
                       allow_partial_success, supports_incremental, incremental_strategy, cursor_lookback,
                       cursor_tiebreak_key, config)
                   overriding system value
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 3, %s, %s::jsonb, 1, %s, %s, %s, %s, %s, %s::jsonb)""",
                (j["job_id"], j["slug"], j["slug"].replace("_", " ").title(),
                 f"{j['layer']} {j['domain']} #{j['nn']} (benchmark)", j["kind"], j["target"], j["layer"],
                 j["role"], j["domain"], j["priority"], bronze,
                 region_static if j["has_items"] else None, j["has_items"],
                 bronze, "modified_date" if bronze else "none", "10 minutes" if bronze else "0",
                 "id" if bronze else None,
                 json.dumps({"endpoint": f"https://api.example.invalid/v2/{j['domain']}"} if bronze
                            else {"statement_timeout": "15min"})))
            lineage = {}
            if j["layer_no"] == 1:
                lineage = {"reads": [f"bronze.{j['domain']}_{j['nn']:02d}"], "writes": [f"silver.{j['domain']}_{j['nn']:02d}"]}
            elif j["layer_no"] == 2:
                lineage = {"reads": [f"silver.{j['domain']}_{j['nn']:02d}"], "writes": [f"gold.{j['domain']}_{j['nn']:02d}"]}
            base_ms = (20000.0, 8000.0, 12000.0)[j["layer_no"]] * (0.5 + ((j["nn"] * 37) % 10) / 10.0)
            rec_scale = (50000.0, 200000.0, 20000.0)[j["layer_no"]] * (0.2 + ((j["nn"] * 53) % 10) / 5.0)
            cur.execute(
                """insert into bench.jobs_cfg values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)""",
                (j["idx"], j["job_id"], j["layer_no"], j["kind"], j["has_items"], base_ms, rec_scale,
                 j["priority"], j["slug"], j["domain"],
                 f"CALL {j['target']}(p_mode => 'incremental')" if j["kind"] == "sql" else None,
                 json.dumps(lineage)))
        # DAG: silver_k <- bronze_k, gold_k <- silver_k and silver_(k+1): 72 jobs, 72 edges.
        for nn in range(1, 25):
            b, s, g = job_base + nn, job_base + 24 + nn, job_base + 48 + nn
            s2 = job_base + 24 + (nn % 24) + 1
            cur.execute("insert into etl.job_dependencies (parent_job_id, child_job_id, dependency_type) "
                        "values (%s, %s, 'data'), (%s, %s, 'data'), (%s, %s, 'lineage')",
                        (b, s, s, g, s2, g))
        cur.execute("""insert into etl.schedules (job_id, cron_expr, timezone, with_downstream, description)
                       values (%s, '@hourly', 'UTC', true, 'benchmark: the whole DAG')""", (job_base + 1,))
    return job_base


def fingerprints(conn: psycopg.Connection) -> tuple[list[str], list[str], list[str]]:
    """param_fingerprint of the 8 run parameter sets and of the 5 item parameter sets."""
    cur = conn.cursor()
    has_fp = cur.execute("select to_regprocedure('etl.param_fingerprint(jsonb)') is not null").fetchone()[0]
    fp = "etl.param_fingerprint(p)" if has_fp else "encode(sha256(convert_to(p::text, 'UTF8')), 'hex')"
    run_params = ["{}"] + [json.dumps({"lookback_days": k}) for k in range(1, 8)]
    item_params = [json.dumps({"region": r}) for r in REGIONS]
    run_fp = [cur.execute(f"select {fp} from (select %s::jsonb as p) x", (p,)).fetchone()[0] for p in run_params]
    item_fp = [cur.execute(f"select {fp} from (select %s::jsonb as p) x", (p,)).fetchone()[0] for p in item_params]
    return run_fp, item_params, item_fp


# Salts: seed * 1000 + n, n below; every random draw of a row is u(row key, salt).
RUNS_SQL = r"""
insert into etl.runs (run_id, pipeline_run_id, job_id, correlation_id, status, mode, dry_run, params,
  parameter_fingerprint, priority, logical_date, scheduled_at, queued_at, started_at, ended_at, duration_ms,
  attempt_count, max_attempts, error_category, is_transient, error_type, error_message,
  records_read, records_written, page_count, rows_affected,
  items_total, items_succeeded, items_failed, items_duplicate,
  metrics, lineage, param_snapshot, sql_executed, skip_reason, requested_by)
overriding system value
select rid, p, job_id, md5(%(seed)s::text || ':' || rid)::uuid, status, pmode, false, params,
  (%(run_fp)s::text[])[pk + 1], priority, l, l,
  case when status in ('pending', 'skipped') then null
       when layer_no = 0 then l + interval '1 second'
       else least(pstart, %(anchor)s::timestamptz) - make_interval(secs => 0.2 + 3 * uq) end,
  case when status in ('queued', 'pending', 'skipped') then null else pstart end,
  case when status in ('success', 'partial_success', 'failed', 'cancelled')
         then pstart + make_interval(secs => total_ms / 1000.0)
       when status = 'skipped' then pstart end,
  case when status in ('success', 'partial_success', 'failed', 'cancelled') then total_ms end,
  case when status in ('queued', 'pending', 'skipped') then 0 when status = 'running' then 1 else natt end,
  3,
  case when status in ('failed', 'partial_success') then ecat end,
  case when status in ('failed', 'partial_success') then etr end,
  case when status in ('failed', 'partial_success') then etype end,
  case when status in ('failed', 'partial_success') then emsg end,
  rr, rw,
  case when kind = 'python' and rr is not null then ceil(rr / 500.0)::int end,
  case when kind = 'sql' then rw end,
  nit,
  case when status = 'success' then nit when status = 'partial_success' then nit - 1 - floor(uf * (nit - 1))::int
       when status = 'cancelled' then nit / 2 when nit is not null then 0 end,
  case when status = 'partial_success' then 1 + floor(uf * (nit - 1))::int when nit is not null then 0 end
    + case when status = 'failed' then nit else 0 end,
  case when nit is null then null when ui2 < 0.05 then 1 else 0 end,
  case when kind = 'python' and rr is not null
       then jsonb_build_object('http_requests', ceil(rr / 500.0)::int + natt - 1,
                               'api_latency_ms_p95', 80 + floor(uw * 400)::int)
       else '{}'::jsonb end,
  case when status in ('success', 'partial_success') then lineage else '{}'::jsonb end,
  case when status not in ('queued', 'pending', 'skipped') then params end,
  case when kind = 'sql' and status not in ('queued', 'pending', 'skipped') then sql_exec end,
  case when status = 'skipped' then 'upstream run not successful' end,
  case when pman then 'alice' else 'scheduler' end
from (                                               -- L4: records and items, as of the status
  select c.*,
    case when status in ('success', 'partial_success') then (rec_scale * (0.5 + ur))::bigint
         when status = 'failed' then (rec_scale * ur * 0.3)::bigint
         when status = 'cancelled' then (rec_scale * ur * 0.5)::bigint end as rr,
    case when status = 'success' then (rec_scale * (0.5 + ur) * (0.9 + 0.1 * uw))::bigint
         when status = 'partial_success' then (rec_scale * (0.5 + ur) * 0.7)::bigint
         when status in ('failed', 'cancelled') then 0 end as rw,
    case when has_items and status in ('success', 'partial_success', 'failed', 'cancelled')
         then case when status = 'partial_success' then 2 + floor(ui * 4)::int else 1 + floor(ui * 5)::int end
    end as nit
  from (                                             -- L3: duration over all attempts, status as of the anchor
    select b.*,
      case when pstart > %(anchor)s::timestamptz then (case when layer_no = 0 then 'queued' else 'pending' end)
           when fstatus = 'skipped' then 'skipped'
           when pstart + make_interval(secs => (natt * dms + (natt - 1) * 2000) / 1000.0) > %(anchor)s::timestamptz
             then 'running'
           else fstatus end as status,
      natt * dms + (natt - 1) * 2000 as total_ms
    from (                                           -- L2: attempts, error texts, one attempt's duration
      select a.*,
        case when fstatus = 'failed' then (case when etr then 3 else 1 end)
             when fstatus = 'success' then (case when ua < 0.03 then 2 when ua < 0.035 then 3 else 1 end)
             else 1 end as natt,
        -- log-normal around the job's median, capped at a fifth of the pipeline interval
        greatest(200, least(
          base_ms * exp(0.7 * sqrt(-2 * ln(1 - ud1)) * cos(2 * pi() * ud2))
            * (case fstatus when 'cancelled' then 0.5 when 'failed' then 0.6 else 1 end),
          200 * %(interval_s)s))::bigint as dms,
        case when fstatus = 'partial_success' then 'HTTPError' else case ecat
          when 'API' then case when etr then case when ut2 < 0.5 then 'HTTPError' else 'ReadTimeout' end
                               else case when ut2 < 0.5 then 'HTTPError' else 'JSONDecodeError' end end
          when 'DB' then case when etr then case when ut2 < 0.5 then 'DeadlockDetected' else 'OperationalError' end
                              else case when ut2 < 0.5 then 'UniqueViolation' else 'UndefinedColumn' end end
          when 'DATA' then case when ut2 < 0.5 then 'ValidationError' else 'CheckViolation' end
          when 'SYSTEM' then case when etr then 'LeaseExpired' else 'MemoryError' end
        end end as etype,
        case ecat
          when 'API' then case when fstatus = 'partial_success' then 'items failed: see run_items'
               when etr then case when ut2 < 0.5
                 then '503 Server Error: Service Unavailable for url: https://api.example.invalid/v2/' || domain || '?page=' || (1 + floor(uw * 40))::int
                 else 'HTTPSConnectionPool(host=''api.example.invalid'', port=443): Read timed out. (read timeout=30)' end
               else case when ut2 < 0.5
                 then '401 Client Error: Unauthorized for url: https://api.example.invalid/v2/' || domain
                 else 'Expecting value: line 1 column 1 (char 0)' end end
          when 'DB' then case when etr then case when ut2 < 0.5
                 then 'deadlock detected' else 'server closed the connection unexpectedly' end
               else case when ut2 < 0.5
                 then 'duplicate key value violates unique constraint "' || domain || '_pkey"'
                 else 'column "amount_eur" does not exist' end end
          when 'DATA' then case when ut2 < 0.5
                 then 'schema drift: column "amount" changed type from numeric to text'
                 else 'new row for relation "' || domain || '" violates check constraint "' || domain || '_quantity_check"' end
          when 'SYSTEM' then case when etr then 'lease expired without heartbeat (runner lost)' else 'out of memory' end
        end as emsg
      from (                                         -- L1: intended outcome, error class, planned start
        select y.*,
          case when us < ffail then 'failed'
               when us < ffail + fpart then 'partial_success'
               when us < ffail + fpart + 0.005 then 'skipped'
               when us < ffail + fpart + 0.009 then 'cancelled'
               else 'success' end as fstatus,
          -- overall: API 50 pct, DB 20 pct, DATA 20 pct, SYSTEM 10 pct of the failed runs
          case when us >= ffail + fpart then null
               when us >= ffail then 'API'
               when layer_no = 0 then (case when ue < 0.9 then 'API' else 'SYSTEM' end)
               else (case when ue < 0.45 then 'DB' when ue < 0.9 then 'DATA' else 'SYSTEM' end) end as ecat,
          case when us >= ffail + fpart then null
               when us >= ffail then false
               when layer_no = 0 then (case when ue < 0.9 then ut < 0.8 else ut < 0.9 end)
               else (case when ue < 0.45 then ut < 0.5 when ue < 0.9 then false else ut < 0.9 end) end as etr,
          l + make_interval(secs => (layer_no * 0.3 + 0.05 * uo) * %(interval_s)s + 1) as pstart
        from (                                       -- L0: keys and uniform draws
          select x.p, x.rid, j.job_id, j.layer_no, j.kind, j.has_items, j.base_ms, j.rec_scale,
            j.priority, j.domain, j.sql_exec, j.lineage,
            -- failures: 5 pct of bronze extracts (API, SYSTEM), 2 pct of SQL jobs (DB, DATA, SYSTEM): 3 pct overall
            case when j.layer_no = 0 then 0.05 else 0.02 end as ffail,
            -- partial success only for the jobs with items: 5.14 pct of their runs, 0.5 pct overall
            case when j.has_items then 0.0514 else 0 end as fpart,
            %(anchor)s::timestamptz - make_interval(secs => (%(pipelines)s - x.p) * %(interval_s)s + 60) as l,
            bench.u(x.p, %(salt)s + 50) < 0.02 as pman,
            case when bench.u(x.p, %(salt)s + 51) < 0.001 then 'full' else 'incremental' end as pmode,
            case when j.layer_no = 0 and bench.u(x.p, %(salt)s + 50) < 0.02 then 1 + (x.p %% 7)::int else 0 end as pk,
            case when j.layer_no = 0 and bench.u(x.p, %(salt)s + 50) < 0.02
                 then jsonb_build_object('lookback_days', 1 + (x.p %% 7)::int) else '{}'::jsonb end as params,
            bench.u(x.rid, %(salt)s + 1) as us, bench.u(x.rid, %(salt)s + 2) as ue,
            bench.u(x.rid, %(salt)s + 3) as ut, bench.u(x.rid, %(salt)s + 4) as ud1,
            bench.u(x.rid, %(salt)s + 5) as ud2, bench.u(x.rid, %(salt)s + 6) as uo,
            bench.u(x.rid, %(salt)s + 7) as ua, bench.u(x.rid, %(salt)s + 8) as ur,
            bench.u(x.rid, %(salt)s + 9) as ui, bench.u(x.rid, %(salt)s + 10) as uq,
            bench.u(x.rid, %(salt)s + 11) as uf, bench.u(x.rid, %(salt)s + 12) as ut2,
            bench.u(x.rid, %(salt)s + 13) as uw, bench.u(x.rid, %(salt)s + 14) as ui2
          from (select rid, (rid - 1) / 72 + 1 as p, ((rid - 1) %% 72 + 1)::int as idx
                from generate_series(%(r0)s::bigint, %(r1)s::bigint) rid) x
          join bench.jobs_cfg j on j.idx = x.idx
          offset 0) y
        offset 0) a
      offset 0) b
    offset 0) c
  offset 0) d
"""

PIPELINES_SQL = r"""
insert into etl.pipeline_runs (pipeline_run_id, trigger_type, schedule_id, logical_date, status, mode, params,
  selection, reason, requested_by, full_refresh_confirmed, approved_by, approved_at, approval_reason,
  created_at, started_at, ended_at)
overriding system value
select p, case when pman then 'manual' else 'schedule' end, case when not pman then %(schedule_id)s::bigint end,
  l, status, pmode,
  case when pman then jsonb_build_object('lookback_days', 1 + (p %% 7)::int) else '{}'::jsonb end,
  '{"layers": ["bronze", "silver", "gold"], "downstream": true}'::jsonb,
  case when pman then 'ad-hoc rerun' end,
  case when pman then 'alice' else 'scheduler' end,
  pmode = 'full', case when pmode = 'full' then 'bob' end, case when pmode = 'full' then l - interval '5 minutes' end,
  case when pmode = 'full' then 'full refresh after source correction' end,
  l, first_start, case when status <> 'running' then last_end end
from (
  select r.pipeline_run_id as p, min(r.logical_date) as l,
    bench.u(r.pipeline_run_id, %(salt)s + 50) < 0.02 as pman,
    case when bench.u(r.pipeline_run_id, %(salt)s + 51) < 0.001 then 'full' else 'incremental' end as pmode,
    case when bool_or(r.status in ('pending', 'queued', 'running')) then 'running'
         when bool_or(r.status = 'failed') then 'failed'
         when bool_or(r.status in ('partial_success', 'skipped', 'cancelled')) then 'partial_success'
         else 'success' end as status,
    min(r.started_at) as first_start, max(r.ended_at) as last_end
  from etl.runs r
  where r.run_id between %(r0)s and %(r1)s
  group by r.pipeline_run_id
) x
order by p
"""

ATTEMPTS_SQL = r"""
insert into etl.run_attempts (attempt_id, run_id, attempt_no, status, worker_id, claimed_at, started_at, ended_at,
  duration_ms, lease_expires_at, error_category, is_transient, error_type, error_message, error_detail,
  backoff_ms, next_attempt_at, records_read, records_written, page_count, rows_affected, metrics)
overriding system value
select run_id * 4 + k, run_id, k,
  case when status = 'running' then 'running'
       when k = attempt_count then status
       when error_category = 'SYSTEM' and is_transient then 'lost'
       else 'failed' end,
  'etl-runner-' || (1 + (pg_catalog.hashint8extended(run_id * 4 + k, %(salt)s + 20) & 3)),
  astart - interval '40 milliseconds', astart,
  case when status <> 'running' then astart + make_interval(secs => d / 1000.0) end,
  case when status <> 'running' then d end,
  case when status = 'running' then greatest(astart, %(anchor)s::timestamptz)
       else astart + make_interval(secs => d / 1000.0) end + interval '30 seconds',
  case when status = 'running' then null when k = attempt_count or status = 'failed' then error_category else 'API' end,
  case when status = 'running' then null when k = attempt_count or status = 'failed' then is_transient else true end,
  case when status = 'running' then null when k = attempt_count or status = 'failed' then error_type else 'ReadTimeout' end,
  case when status = 'running' then null when k = attempt_count or status = 'failed' then error_message
       else 'HTTPSConnectionPool(host=''api.example.invalid'', port=443): Read timed out. (read timeout=30)' end,
  case when status in ('failed') or (k < attempt_count and status <> 'running')
       then jsonb_build_object('attempt', k, 'category', coalesce(error_category, 'API')) end,
  case when k < attempt_count and status <> 'running' then 2000 end,
  case when k < attempt_count and status <> 'running' then astart + make_interval(secs => (d + 2000) / 1000.0) end,
  case when k = attempt_count then records_read end,
  case when k = attempt_count then records_written end,
  case when k = attempt_count then page_count end,
  case when k = attempt_count then rows_affected end,
  '{}'::jsonb
from (
  select r.run_id, r.status, r.attempt_count, r.error_category, r.is_transient, r.error_type, r.error_message,
    r.records_read, r.records_written, r.page_count, r.rows_affected, k,
    case when r.status = 'running' then null
         else (r.duration_ms - (r.attempt_count - 1) * 2000) / r.attempt_count end as d,
    r.started_at + make_interval(secs => (k - 1) * (coalesce((r.duration_ms - (r.attempt_count - 1) * 2000)
                                                             / r.attempt_count, 0) + 2000) / 1000.0) as astart
  from etl.runs r
  join (values (1), (2), (3)) kk(k) on kk.k <= r.attempt_count
  where r.run_id between %(r0)s and %(r1)s and r.attempt_count > 0
) x
"""

ITEMS_SQL = r"""
insert into etl.run_items (item_id, run_id, item_no, params, param_hash, status, attempt_id, attempt_count,
  duplicate_count, started_at, ended_at, duration_ms, records_read, records_written, page_count, cursor_value,
  error_category, is_transient, error_type, error_message, metrics)
overriding system value
select run_id * 8 + k, run_id, k, (%(item_params)s::text[])[k]::jsonb, (%(item_fp)s::text[])[k], istatus,
  run_id * 4 + attempt_count, case when istatus = 'failed' then attempt_count else 1 end,
  case when k = 1 and items_duplicate = 1 then 1 else 0 end,
  istart, iend, (extract(epoch from iend - istart) * 1000)::bigint,
  case when istatus = 'success' then records_read / items_total end,
  case when istatus = 'success' then records_written / greatest(items_total - items_failed, 1) end,
  case when istatus = 'success' then greatest(1, ceil(records_read / items_total / 500.0))::int end,
  case when istatus = 'success' then jsonb_build_object('modified_at', iend, 'id', run_id * 10 + k) end,
  case when istatus = 'failed' then coalesce(error_category, 'API') end,
  case when istatus = 'failed' then coalesce(is_transient, false) end,
  case when istatus = 'failed' then (case when status = 'partial_success' then 'HTTPError' else error_type end) end,
  case when istatus = 'failed' then (case when status = 'partial_success'
        then '404 Client Error: Not Found for url: https://api.example.invalid/v2/' || (%(regions)s::text[])[k] || '/export'
        else error_message end) end,
  case when istatus = 'success' then jsonb_build_object('pages', greatest(1, ceil(records_read / items_total / 500.0))::int)
       else '{}'::jsonb end
from (
  select x.*,
    case when status = 'success' then 'success'
         when status = 'failed' then 'failed'
         when status = 'partial_success' then case when k > items_total - items_failed then 'failed' else 'success' end
         when status = 'cancelled' then case when k <= items_succeeded then 'success' else 'cancelled' end
    end as istatus,
    astart + make_interval(secs => (k - 1) * d / items_total / 1000.0) as istart,
    astart + make_interval(secs => k * d / items_total / 1000.0) as iend
  from (
    select r.run_id, r.status, r.attempt_count, r.items_total, r.items_failed, r.items_succeeded, r.items_duplicate,
      r.records_read, r.records_written, r.error_category, r.is_transient, r.error_type, r.error_message, k,
      (r.duration_ms - (r.attempt_count - 1) * 2000) / r.attempt_count as d,
      r.started_at + make_interval(secs => (r.attempt_count - 1)
        * ((r.duration_ms - (r.attempt_count - 1) * 2000) / r.attempt_count + 2000) / 1000.0) as astart
    from etl.runs r
    join (values (1), (2), (3), (4), (5)) kk(k) on kk.k <= r.items_total
    where r.run_id between %(r0)s and %(r1)s and r.items_total is not null
  ) x
) y
"""

EVENTS_SQL = r"""
insert into etl.run_events (event_id, run_id, pipeline_run_id, ts, event_type, from_status, to_status, actor, detail)
overriding system value
select run_id * 4 + slot, run_id, pipeline_run_id, ts, etype, fs, tst, actor, detail
from (
  select r.run_id, r.pipeline_run_id, s.slot,
    case s.slot
      when 0 then 'status'
      when 1 then case when r.status = 'pending' then null else 'status' end
      when 2 then case when r.finished and r.attempt_count > 1 then 'retry_scheduled'
                       when r.status = 'cancelled' then 'cancel_requested' end
      else case when r.finished then 'status' end
    end as etype,
    case s.slot
      when 0 then case when r.started_at is null then null else 'pending' end
      when 1 then case when r.started_at is null then 'pending' else 'queued' end
      when 2 then case when r.attempt_count > 1 then 'running' end
      else 'running'
    end as fs,
    case s.slot
      when 0 then case when r.started_at is null then 'pending' else 'queued' end
      when 1 then case when r.status = 'queued' then 'queued' when r.status = 'skipped' then 'skipped' else 'running' end
      when 2 then case when r.attempt_count > 1 then 'queued' end
      else r.status
    end as tst,
    case s.slot
      when 0 then case when r.started_at is null then r.scheduled_at else r.queued_at end
      when 1 then case when r.status = 'queued' then r.queued_at when r.status = 'skipped' then r.ended_at
                       else r.started_at end
      when 2 then case when r.attempt_count > 1 then r.started_at + make_interval(secs => r.d / 1000.0)
                       else greatest(r.started_at, r.ended_at - interval '500 milliseconds') end
      else r.ended_at
    end as ts,
    case s.slot
      when 0 then 'scheduler'
      when 1 then case when r.started_at is null then 'scheduler' else r.worker end
      when 2 then case when r.attempt_count > 1 then r.worker else 'alice' end
      else r.worker
    end as actor,
    case s.slot
      when 1 then case when r.status = 'skipped' then '{"reason": "upstream run not successful"}'::jsonb
                       else '{}'::jsonb end
      when 2 then case when r.attempt_count > 1
                       then jsonb_build_object('attempt', 1, 'backoff_ms', 2000, 'error_type',
                                               case when r.status = 'failed' then r.error_type else 'ReadTimeout' end)
                       else '{"reason": "operator request"}'::jsonb end
      when 3 then case when r.status = 'failed' then jsonb_build_object('error_category', r.error_category)
                       else '{}'::jsonb end
      else '{}'::jsonb
    end as detail
  from (
    select r.run_id, r.pipeline_run_id, r.status, r.scheduled_at, r.queued_at, r.started_at, r.ended_at,
      r.attempt_count, r.error_category, r.error_type,
      'etl-runner-' || (1 + (pg_catalog.hashint8extended(r.run_id * 4 + greatest(r.attempt_count, 1), %(salt)s + 20) & 3)) as worker,
      r.status in ('success', 'partial_success', 'failed', 'cancelled') as finished,
      case when r.status <> 'running' and r.attempt_count > 0
           then (r.duration_ms - (r.attempt_count - 1) * 2000) / r.attempt_count end as d
    from etl.runs r
    where r.run_id between %(r0)s and %(r1)s
    offset 0
  ) r
  cross join (values (0), (1), (2), (3)) s(slot)
  offset 0
) e
where etype is not null
"""

LOGS_SQL = r"""
insert into etl.run_logs (log_id, ts, level, message, job_id, run_id, attempt_id, request_id, logger, fields)
overriding system value
select run_id * 8 + k,
  started_at + make_interval(secs => span_ms * (k - 1)::float8 / nlog / 1000.0),
  case when k = nlog and status = 'failed' then 'ERROR'
       when k = nlog and status in ('partial_success', 'cancelled') then 'WARNING'
       when k between 2 and nlog - 1 and kind = 'python' then 'DEBUG'
       else 'INFO' end,
  case when k = 1 then 'attempt ' || attempt_count || ' claimed by ' || worker
       when k < nlog then case when kind = 'python' then 'fetched page ' || (k - 1) || ' of ' || domain
                               else 'executing ' || coalesce(sql_executed, 'CALL') end
       when status = 'running' then 'still running'
       when status = 'failed' then error_message
       else 'run finished: ' || status || ' (' || coalesce(records_written, 0) || ' records written)' end,
  job_id, run_id, run_id * 4 + attempt_count,
  case when kind = 'python' then substr(md5(run_id::text || ':' || k), 1, 16) end,
  case when kind = 'python' then 'etl.runner.extract' else 'etl.runner.sql' end,
  case when k = 1 then jsonb_build_object('action', 'claim', 'attempt', attempt_count)
       when k < nlog and kind = 'python' then jsonb_build_object('action', 'page', 'page', k - 1, 'http_status', 200)
       when k < nlog then jsonb_build_object('action', 'statement', 'step', k - 1)
       when status = 'failed' then jsonb_build_object('action', 'error', 'error_type', error_type,
                                                      'category', error_category)
       else jsonb_build_object('action', 'finish', 'status', status, 'records_written', records_written) end
from (
  select r.run_id, r.job_id, r.status, r.started_at, r.attempt_count, r.error_message, r.error_type,
    r.error_category, r.records_written, r.sql_executed, j.kind, j.domain,
    'etl-runner-' || (1 + (pg_catalog.hashint8extended(r.run_id * 4 + r.attempt_count, %(salt)s + 20) & 3)) as worker,
    coalesce(r.duration_ms::float8,
             greatest(0, extract(epoch from %(anchor)s::timestamptz - r.started_at) * 1000)) as span_ms,
    2 + (pg_catalog.hashint8extended(r.run_id, %(salt)s + 30) & 3)::int as nlog
  from etl.runs r join bench.jobs_cfg j on j.job_id = r.job_id
  where r.run_id between %(r0)s and %(r1)s and r.started_at >= %(anchor)s::timestamptz - interval '7 days'
  offset 0
) x
join (values (1), (2), (3), (4), (5)) kk(k) on kk.k <= x.nlog
"""


def drop_secondary_indexes(conn: psycopg.Connection) -> None:
    """Drop every non-primary-key index of the history tables, keeping their DDL to rebuild."""
    cur = conn.cursor()
    rows = cur.execute(
        """select c.relname, i.relname, pg_get_indexdef(x.indexrelid),
                  con.conname, con.condeferrable, con.condeferred, con.contype
           from pg_index x
           join pg_class i on i.oid = x.indexrelid
           join pg_class c on c.oid = x.indrelid
           join pg_namespace n on n.oid = c.relnamespace
           left join pg_constraint con on con.conindid = x.indexrelid and con.conrelid = c.oid
                                     and con.contype in ('u', 'p', 'x')
           where n.nspname = 'etl' and c.relname = any(%s) and not x.indisprimary
             and (con.contype is null or con.contype = 'u')
             and not exists (select 1 from pg_constraint f where f.contype = 'f' and f.conindid = x.indexrelid)
           order by c.relname, i.relname""", (list(HISTORY_TABLES),)).fetchall()
    cur.execute("truncate bench.dropped_indexes")
    for ord_, (tbl, name, indexdef, conname, deferrable, deferred, contype) in enumerate(rows):
        con_sql = None
        if conname:
            con_sql = f'alter table etl.{tbl} add constraint "{conname}" unique using index "{name}"'
            if deferrable:
                con_sql += " deferrable" + (" initially deferred" if deferred else "")
        cur.execute("insert into bench.dropped_indexes values (%s, %s, %s, %s, %s, null)",
                    (ord_, tbl, name, indexdef, con_sql))
    with conn.transaction():
        for tbl, name, _, conname, *_ in rows:
            if conname:
                cur.execute(f'alter table etl.{tbl} drop constraint "{conname}"')
            else:
                cur.execute(f'drop index etl."{name}"')
    log(f"  dropped {len(rows)} secondary indexes of {', '.join(HISTORY_TABLES)} for the load")


def rebuild_indexes(db: str, workers: int) -> None:
    with connect(db) as conn:
        rows = conn.execute(
            """select d.ord, d.tbl, d.name, d.create_sql, d.constraint_sql,
                      pg_relation_size(('etl.' || d.tbl)::regclass) as bytes
               from bench.dropped_indexes d
               order by bytes desc, d.ord""").fetchall()
    t0 = time.perf_counter()
    done = [0]
    lock = threading.Lock()

    def build(row):
        _, tbl, name, create_sql, _, _ = row
        with connect(db) as c:
            c.execute("set maintenance_work_mem = '1GB'")
            c.execute(f"set max_parallel_maintenance_workers = {0 if workers > 1 else 2}")
            s = time.perf_counter()
            c.execute(create_sql)
            el = time.perf_counter() - s
        with lock:
            done[0] += 1
            log(f"    [{done[0]}/{len(rows)}] {tbl}.{name}: {el:.1f}s")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(build, rows))
    with connect(db) as conn:
        for row in rows:
            if row[4]:
                conn.execute(row[4])
        conn.execute("truncate bench.dropped_indexes")
    log(f"  rebuilt {len(rows)} indexes in {time.perf_counter() - t0:.1f}s ({workers} sessions)")


class Loader:
    """Chunked generation. Table writers run in two sessions: session A writes runs and pipeline_runs
    of chunk k while session B writes run_attempts, run_events, run_items and run_logs of chunk k-1,
    so each table is written by one session in id order."""

    def __init__(self, db: str, meta: dict, run_fp, item_params, item_fp, chunk_runs: int, workers: int):
        self.db = db
        self.meta = meta
        self.base = dict(seed=meta["seed"], salt=meta["seed"] * 1000, anchor=meta["anchor"],
                         pipelines=meta["pipelines"], interval_s=meta["interval_s"], runs=meta["runs"],
                         run_fp=run_fp, item_params=item_params, item_fp=item_fp, regions=list(REGIONS),
                         schedule_id=meta["schedule_id"])
        self.chunk_p = max(1, chunk_runs // 72)
        self.workers = workers
        self.counts = {t: 0 for t in ("pipeline_runs",) + HISTORY_TABLES}
        self.times = {t: 0.0 for t in self.counts}
        self.lock = threading.Lock()
        # first pipeline whose logical date is within the last 7 days (+ slack): the logs statement
        # only runs for chunks from there on (and filters started_at >= anchor - 7 days itself)
        p7 = meta["pipelines"] - int((7 * 86400) / meta["interval_s"]) - 2
        self.logs_from_rid = max(1, (p7 - 1) * 72 + 1)

    def session(self) -> psycopg.Connection:
        c = connect(self.db)
        c.execute("set session_replication_role = replica")
        c.execute("set synchronous_commit = off")
        c.execute("set work_mem = '64MB'")
        c.execute("set jit = off")
        # the history tables have no statistics while they grow: read runs by primary-key range only
        c.execute("set enable_seqscan = off")
        c.execute("set enable_bitmapscan = off")
        return c

    def _exec(self, conn, table, sql, params) -> int:
        s = time.perf_counter()
        n = conn.execute(sql, params).rowcount
        el = time.perf_counter() - s
        with self.lock:
            self.counts[table] += n
            self.times[table] += el
        return n

    def chunks(self):
        P = self.meta["pipelines"]
        out = []
        p0 = 1
        while p0 <= P:
            p1 = min(P, p0 + self.chunk_p - 1)
            r0 = (p0 - 1) * 72 + 1
            r1 = min(self.meta["runs"], p1 * 72)
            out.append((p0, p1, r0, r1))
            p0 = p1 + 1
        return out

    def stage_a(self, conn, ch):
        p0, p1, r0, r1 = ch
        prm = dict(self.base, p0=p0, p1=p1, r0=r0, r1=r1)
        self._exec(conn, "runs", RUNS_SQL, prm)
        self._exec(conn, "pipeline_runs", PIPELINES_SQL, prm)

    def stage_b(self, conn, ch):
        p0, p1, r0, r1 = ch
        prm = dict(self.base, p0=p0, p1=p1, r0=r0, r1=r1)
        self._exec(conn, "run_attempts", ATTEMPTS_SQL, prm)
        self._exec(conn, "run_events", EVENTS_SQL, prm)
        self._exec(conn, "run_items", ITEMS_SQL, prm)
        if r1 >= self.logs_from_rid:
            prm["r0"] = max(r0, self.logs_from_rid)
            self._exec(conn, "run_logs", LOGS_SQL, prm)

    def run(self) -> float:
        chunks = self.chunks()
        total_runs = self.meta["runs"]
        t0 = time.perf_counter()
        n = len(chunks)

        def progress(i):
            el = time.perf_counter() - t0
            with self.lock:
                rows = sum(self.counts.values())
                runs = self.counts["runs"]
            log(f"  chunk {i + 1}/{n}: runs {runs:,}/{total_runs:,} ({100 * runs / total_runs:.0f}%), "
                f"all rows {rows:,} | {fmt_rate(runs, el)} runs, {fmt_rate(rows, el)} overall | {el:.0f}s")

        if self.workers <= 1:
            with self.session() as c:
                for i, ch in enumerate(chunks):
                    self.stage_a(c, ch)
                    self.stage_b(c, ch)
                    progress(i)
        else:
            a_done = [threading.Event() for _ in chunks]
            errors = []

            def writer_a():
                try:
                    with self.session() as c:
                        for i, ch in enumerate(chunks):
                            self.stage_a(c, ch)
                            a_done[i].set()
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    for ev in a_done:
                        ev.set()

            ta = threading.Thread(target=writer_a, daemon=True)
            ta.start()
            with self.session() as c:
                for i, ch in enumerate(chunks):
                    a_done[i].wait()
                    if errors:
                        break
                    self.stage_b(c, ch)
                    progress(i)
            ta.join()
            if errors:
                raise errors[0]
        return time.perf_counter() - t0


def generate(args) -> dict:
    db = args.db
    t_all = time.perf_counter()
    log(f"== building template {TEMPLATE} (sqitch deploy) and cloning it as {db}")
    devtools.build_template(TEMPLATE)
    log(f"  template deployed in {time.perf_counter() - t_all:.1f}s")
    s = time.perf_counter()
    devtools.recreate_database(db, template=TEMPLATE)
    log(f"  {db} (re)created in {time.perf_counter() - s:.1f}s")
    P = math.ceil(args.runs / 72)
    interval_s = YEAR_S / P
    anchor = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    if args.anchor:
        anchor = datetime.fromisoformat(args.anchor).astimezone(timezone.utc)
    with connect(db) as conn:
        conn.execute(SETUP_SQL)
        job_base = create_catalog(conn, args.seed)
        schedule_id = conn.execute("select max(schedule_id) from etl.schedules").fetchone()[0]
        run_fp, item_params, item_fp = fingerprints(conn)
        conn.execute("insert into bench.meta (db, runs, seed, generator, anchor, pipelines, interval_s, job_base) "
                     "values (%s, %s, %s, %s, %s, %s, %s, %s)",
                     (db, args.runs, args.seed, GENERATOR_VERSION, anchor, P, interval_s, job_base))
        triggers = conn.execute(
            """select c.relname || '.' || t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid
               join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'etl' and not t.tgisinternal and c.relname = any(%s)""",
            (list(HISTORY_TABLES) + ["pipeline_runs"],)).fetchall()
        if triggers:
            log("  note: user triggers bypassed during the load (session_replication_role = replica): "
                + ", ".join(t[0] for t in triggers))
        for t in HISTORY_TABLES + ("pipeline_runs",):
            conn.execute(f"alter table etl.{t} set (autovacuum_enabled = false)")
        if not args.load_with_indexes:
            drop_secondary_indexes(conn)
    log(f"  set-up done in {time.perf_counter() - t_all:.1f}s")
    meta = dict(runs=args.runs, seed=args.seed, anchor=anchor, pipelines=P, interval_s=interval_s,
                schedule_id=schedule_id)
    log(f"== generating {args.runs:,} runs: {P:,} pipeline runs of 72 jobs, one every {interval_s:.0f}s "
        f"over the 365 days before {anchor.isoformat()}; seed {args.seed}")
    loader = Loader(db, meta, run_fp, item_params, item_fp, args.chunk, args.load_workers)
    t_load = loader.run()
    total_rows = sum(loader.counts.values())
    log(f"  inserted {total_rows:,} rows in {t_load:.1f}s ({fmt_rate(total_rows, t_load)}); per table "
        "(statement time, rows/s):")
    for t, n in loader.counts.items():
        log(f"    {t:<14} {n:>12,} rows  {loader.times[t]:7.1f}s  {fmt_rate(n, loader.times[t])}")
    t_idx = time.perf_counter()
    if not args.load_with_indexes:
        log("== rebuilding indexes")
        rebuild_indexes(db, args.load_workers)
    t_idx = time.perf_counter() - t_idx
    t_vac = time.perf_counter()
    log("== identity sequences, VACUUM (ANALYZE)")
    with connect(db) as conn:
        for t, col in (("pipeline_runs", "pipeline_run_id"), ("runs", "run_id"), ("run_attempts", "attempt_id"),
                       ("run_items", "item_id"), ("run_events", "event_id"), ("run_logs", "log_id")):
            conn.execute(f"select setval(pg_get_serial_sequence('etl.{t}', '{col}'), "
                         f"(select coalesce(max({col}), 0) + 1 from etl.{t}), false)")
        for t in HISTORY_TABLES + ("pipeline_runs",):
            conn.execute(f"alter table etl.{t} reset (autovacuum_enabled)")

    def vac(t):
        with connect(db) as c:
            s = time.perf_counter()
            c.execute(f"vacuum (analyze) etl.{t}")
            log(f"    vacuum (analyze) etl.{t}: {time.perf_counter() - s:.1f}s")

    with ThreadPoolExecutor(max_workers=args.load_workers) as pool:
        list(pool.map(vac, ("runs", "run_events", "run_attempts", "run_items", "run_logs", "pipeline_runs",
                            "jobs", "job_dependencies", "schedules")))
    t_vac = time.perf_counter() - t_vac
    total = time.perf_counter() - t_all
    with connect(db) as conn:
        conn.execute("update bench.meta set complete = true, load_seconds = %s, row_counts = %s::jsonb",
                     (total, json.dumps(loader.counts)))
    log(f"== load done: {total:.1f}s in all (inserts {t_load:.1f}s, indexes {t_idx:.1f}s, vacuum {t_vac:.1f}s); "
        f"{fmt_rate(total_rows, total)} end to end, {fmt_rate(args.runs, total)} runs")
    return dict(total_s=total, insert_s=t_load, index_s=t_idx, vacuum_s=t_vac, rows=loader.counts,
                table_seconds=loader.times)


def existing_meta(db: str):
    try:
        with connect(db) as conn:
            row = conn.execute("select runs, seed, generator, anchor, pipelines, interval_s, job_base, complete, "
                               "load_seconds, row_counts from bench.meta").fetchone()
            if not row:
                return None
            keys = ("runs", "seed", "generator", "anchor", "pipelines", "interval_s", "job_base", "complete",
                    "load_seconds", "row_counts")
            m = dict(zip(keys, row))
            m["actual_runs"] = conn.execute("select count(*) from etl.runs").fetchone()[0]
            m["pending_rebuild"] = conn.execute("select count(*) from bench.dropped_indexes").fetchone()[0]
            return m
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None


# ----------------------------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------------------------

RUN_COLS = "run_id, status, started_at, ended_at, duration_ms, attempt_count, error_category"

QUERIES = [
    # key, label, target ms, PREPARE statement
    ("a", "latest success per job (72, LATERAL)", 2.0,
     """prepare qa as
        select j.job_id, s.run_id, s.ended_at
        from etl.jobs j
        cross join lateral (
          select r.run_id, r.ended_at from etl.runs r
          where r.job_id = j.job_id and r.status = 'success'
          order by r.ended_at desc limit 1) s"""),
    ("b", "failures in last 24 h + category, slug", 5.0,
     """prepare qb(timestamptz) as
        select r.run_id, j.slug, r.ended_at, r.error_category, r.is_transient
        from etl.runs r join etl.jobs j on j.job_id = r.job_id
        where r.status = 'failed' and r.ended_at > $1 - interval '24 hours' and r.ended_at <= $1
        order by r.ended_at desc"""),
    # started_at is null for runs that never started (skipped, pending, queued): without the
    # filter they sort first (DESC NULLS FIRST, the index order) and every first page would read
    # all of the job's skipped runs of the whole history before the latest started one.
    ("c1", "job history page 1 (50, keyset)", 5.0,
     f"""prepare qc1(bigint) as
        select {RUN_COLS} from etl.runs
        where job_id = $1 and started_at is not null
        order by started_at desc, run_id desc limit 50"""),
    ("c2", "job history deep page (50, keyset)", 5.0,
     f"""prepare qc2(bigint, timestamptz, bigint) as
        select {RUN_COLS} from etl.runs
        where job_id = $1 and started_at <= $2 and (started_at < $2 or run_id < $3)
        order by started_at desc, run_id desc limit 50"""),
    ("d", "one run + attempts/items/events/logs", 5.0,
     """prepare qd(bigint) as
        select to_jsonb(r) as run,
          (select coalesce(jsonb_agg(to_jsonb(a) order by a.attempt_no), '[]')
             from etl.run_attempts a where a.run_id = r.run_id) as attempts,
          (select coalesce(jsonb_agg(to_jsonb(i) order by i.item_no), '[]')
             from etl.run_items i where i.run_id = r.run_id) as items,
          (select coalesce(jsonb_agg(to_jsonb(e) order by e.ts, e.event_id), '[]')
             from etl.run_events e where e.run_id = r.run_id) as events,
          (select coalesce(jsonb_agg(to_jsonb(l) order by l.ts, l.log_id), '[]')
             from (select * from etl.run_logs l where l.run_id = r.run_id order by l.ts, l.log_id limit 500) l) as logs
        from etl.runs r where r.run_id = $1"""),
    ("e1", "job, last 30 days: count + sum(duration)", 5.0,
     """prepare qe1(bigint, timestamptz) as
        select count(*) as runs, sum(duration_ms) as total_ms,
               count(*) filter (where status = 'success') as ok,
               count(*) filter (where status = 'failed') as failed
        from etl.runs
        where job_id = $1 and started_at >= $2 - interval '30 days' and started_at < $2"""),
    ("e2", "job, last 30 days: the rows (all)", 5.0,
     f"""prepare qe2(bigint, timestamptz) as
        select {RUN_COLS} from etl.runs
        where job_id = $1 and started_at >= $2 - interval '30 days' and started_at < $2
        order by started_at desc, run_id desc"""),
    # The first page of the window, written as a keyset page (upper bound only) filtered by the
    # lower bound outside: same rows as "window ... order by ... limit 100", but a generic plan
    # cannot mistake the window for a few rows and pick a bitmap scan + sort of the whole window.
    ("e3", "job, last 30 days: rows page 1 (100)", 5.0,
     f"""prepare qe3(bigint, timestamptz) as
        select * from (
          select {RUN_COLS} from etl.runs
          where job_id = $1 and started_at < $2
          order by started_at desc, run_id desc limit 100) s
        where started_at >= $2 - interval '30 days'"""),
    ("f", "runs by status in a 6 h window", 5.0,
     """prepare qf(text, timestamptz) as
        select run_id, job_id, status, started_at, ended_at, error_category, error_type
        from etl.runs
        where status = $1 and ended_at >= $2 and ended_at < $2 + interval '6 hours'
        order by ended_at desc"""),
]


def make_params(conn, meta, reps: int, seed: int) -> dict:
    """Deterministic parameter lists per query (random.Random(seed))."""
    rng = random.Random(seed)
    anchor = meta["anchor"]
    job_ids = [r[0] for r in conn.execute("select job_id from bench.jobs_cfg order by idx").fetchall()]
    max_rid = conn.execute("select max(run_id) from etl.runs").fetchone()[0]
    P = meta["pipelines"]
    recent_rid0 = max(1, (P - int(7 * 86400 / meta["interval_s"])) * 72)
    # deep-page cursors: existing (job, started_at, run_id) of random runs over the whole year
    sample = [rng.randint(1, max_rid) for _ in range(reps * 2)]
    cur_rows = conn.execute("select job_id, started_at, run_id from etl.runs where run_id = any(%s) "
                            "and started_at is not null order by run_id", (sample,)).fetchall()
    by_id = {r[2]: r for r in cur_rows}
    cursors = [by_id[s] for s in sample if s in by_id][:reps]
    while len(cursors) < reps:
        cursors.append(cursors[len(cursors) % max(1, len(cursors))])
    statuses = ["failed"] * 4 + ["cancelled", "skipped", "partial_success"]
    p = {
        "a": [() for _ in range(reps)],
        "b": [(anchor - timedelta(seconds=rng.uniform(0, 7 * 86400)),) for _ in range(reps)],
        "c1": [(rng.choice(job_ids),) for _ in range(reps)],
        "c2": cursors,
        "d": [((rng.randint(recent_rid0, max_rid) if rng.random() < 0.5 else rng.randint(1, max_rid)),)
              for _ in range(reps)],
        "e1": [], "e2": [], "e3": [],
        "f": [(rng.choice(statuses), anchor - timedelta(seconds=rng.uniform(6 * 3600, 365 * 86400)))
              for _ in range(reps)],
    }
    for _ in range(reps):
        # half at the anchor ("now"), half anywhere in the year
        t = anchor if rng.random() < 0.5 else anchor - timedelta(seconds=rng.uniform(0, 335 * 86400))
        j = rng.choice(job_ids)
        for k in ("e1", "e2", "e3"):
            p[k].append((j, t))
    return p


def prewarm(db: str) -> None:
    """Read the history tables and all their indexes once (pg_prewarm 'read': into the OS page cache,
    not shared_buffers), so that the percentiles measure the plans rather than first-touch disk reads
    of a database that was just written or that other work pushed out of the cache."""
    with connect(db) as conn:
        conn.execute("create extension if not exists pg_prewarm schema bench")
        rels = conn.execute(
            """select c.oid::regclass::text, pg_relation_size(c.oid)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'etl' and c.relkind in ('r', 'i')
                 and (c.relname = any(%s) or c.oid in (select indexrelid from pg_index
                                                     where indrelid = any(%s::regclass[])))
               order by 2 desc""",
            (list(HISTORY_TABLES) + ["jobs"], [f"etl.{t}" for t in HISTORY_TABLES + ("jobs",)])).fetchall()
        s = time.perf_counter()
        for name, _ in rels:
            conn.execute("select bench.pg_prewarm(%s::regclass, 'read')", (name,))
        total = sum(b for _, b in rels)
        log(f"== prewarmed {len(rels)} relations, {total / 2**30:.1f} GiB, into the OS page cache in "
            f"{time.perf_counter() - s:.1f}s")


def pct(values, q):
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def plan_summary(plan_json) -> dict:
    root = plan_json[0]
    nodes, idx, heap_fetches = [], [], 0

    def walk(n):
        nonlocal heap_fetches
        nt = n["Node Type"]
        name = nt
        if "Index Name" in n:
            name = f"{nt} using {n['Index Name']}"
            idx.append(n["Index Name"])
        elif "Relation Name" in n:
            name = f"{nt} on {n['Relation Name']}"
        nodes.append(name)
        heap_fetches += n.get("Heap Fetches", 0) or 0
        for ch in n.get("Plans", []):
            walk(ch)

    walk(root["Plan"])
    p = root["Plan"]
    return dict(nodes=nodes, indexes=sorted(set(idx)), heap_fetches=heap_fetches,
                shared_hit=p.get("Shared Hit Blocks", 0), shared_read=p.get("Shared Read Blocks", 0),
                exec_ms=root.get("Execution Time"), plan_ms=root.get("Planning Time"),
                rows=p.get("Actual Rows"))


def run_queries(db: str, meta: dict, reps: int, seed: int, proposed: bool) -> list[dict]:
    results = []
    with connect(db, cursor_factory=ClientCursor) as conn:
        existing = {r[0] for r in conn.execute(
            "select indexname from pg_indexes where schemaname = 'etl' and indexname like 'bench\\_%%'").fetchall()}
        for name in sorted(existing - set(PROPOSED)):
            conn.execute(f"drop index etl.{name}")      # left over from an earlier proposal
            existing.discard(name)
        for name, (ddl, _) in PROPOSED.items():
            if proposed and name not in existing:
                s = time.perf_counter()
                conn.execute("set maintenance_work_mem = '1GB'")
                conn.execute(ddl)
                log(f"  created proposed index {name} in {time.perf_counter() - s:.1f}s")
        if proposed:
            conn.execute("vacuum (analyze) etl.runs")
        params = make_params(conn, meta, reps, seed)
        tx = conn.transaction() if (proposed or existing) else None
        if tx:
            tx.__enter__()
            for name, (_, replaces) in PROPOSED.items():
                drop = replaces if proposed else name if name in existing else None
                if drop:
                    conn.execute(f"drop index if exists etl.{drop}")
                    log(f"  (in the timing transaction, rolled back after) dropped {drop}")
        cur = conn.cursor()
        for key, label, target, prep in QUERIES:
            cur.execute(prep)
            stmt = prep.split()[1].split("(")[0]
            plist = params[key]
            nargs = len(plist[0]) if plist else 0
            call = f"execute {stmt}" + (f"({', '.join(['%s'] * nargs)})" if nargs else "")
            load_before = os.getloadavg()[0]
            warm = max(20, reps // 10)
            for i in range(warm):
                cur.execute(call, plist[(i * 7919) % len(plist)])
                cur.fetchall()
            times, nrows = [], []
            for prm in plist:
                s = time.perf_counter()
                cur.execute(call, prm)
                rows = cur.fetchall()
                times.append((time.perf_counter() - s) * 1000)
                nrows.append(len(rows))
            cur.execute(f"explain (analyze, buffers, format json) {call}", plist[0])
            pj = cur.fetchone()[0]
            if isinstance(pj, str):
                pj = json.loads(pj)
            ps = plan_summary(pj)
            ps["generic"] = ("generic" if "$1" in json.dumps(pj) else "custom") if nargs else "no parameters"
            cur.execute(f"deallocate {stmt}")
            p50, p95, p99 = pct(times, .5), pct(times, .95), pct(times, .99)
            results.append(dict(key=key, label=label, target_ms=target, reps=len(times), p50=p50, p95=p95,
                                p99=p99, max=max(times), mean=statistics.fmean(times),
                                rows_avg=statistics.fmean(nrows), passed=p95 < target, plan=ps,
                                explain_params=[str(x) for x in plist[0]],
                                loadavg=(load_before, os.getloadavg()[0])))
            log(f"  {key:<3} done: p95 {p95:.3f} ms")
        if tx:
            tx.__exit__(psycopg.Rollback, psycopg.Rollback(), None)
            log("  rolled back: the dropped indexes are back")
    return results


def print_results(results, meta, runs_label, proposed):
    title = f"History queries on {runs_label} runs" + (" (with proposed indexes)" if proposed else "")
    log("")
    log(title)
    hdr = f"{'q':<3} {'query':<42} {'reps':>5} {'rows':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'target':>8}  result"
    log(hdr)
    log("-" * len(hdr))
    for r in results:
        log(f"{r['key']:<3} {r['label']:<42} {r['reps']:>5} {r['rows_avg']:>8.1f} {r['p50']:>8.3f} "
            f"{r['p95']:>8.3f} {r['p99']:>8.3f} {'<' + format(r['target_ms'], 'g'):>8}  "
            f"{'PASS' if r['passed'] else 'MISS'}")
    log("")
    log("EXPLAIN (ANALYZE, BUFFERS) of the prepared statement, first parameter set:")
    for r in results:
        p = r["plan"]
        scans = [n for n in p["nodes"] if "Scan" in n]
        log(f"{r['key']:<3} scans: {'; '.join(dict.fromkeys(scans))}")
        log(f"    nodes: {' > '.join(p['nodes'])}")
        log(f"    buffers: shared hit={p['shared_hit']} read={p['shared_read']} | heap fetches={p['heap_fetches']} "
            f"| rows={p['rows']} | exec {p['exec_ms']:.3f} ms | {p['generic']}{' plan' if p['generic'] != 'no parameters' else ''}")
    la = [x for r in results for x in r["loadavg"]]
    log(f"1-min load average while timing: {min(la):.2f}..{max(la):.2f} on {os.cpu_count()} CPUs"
        + ("  (other work was running: figures are pessimistic)" if max(la) > 1.5 else ""))


# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1_000_000, help="runs to generate (default 1000000)")
    ap.add_argument("--db", default="etl_bench_history", help="scratch database (default etl_bench_history)")
    ap.add_argument("--reuse", action="store_true",
                    help="skip generation when the database already holds this many runs from this seed")
    ap.add_argument("--reps", type=int, default=2000, help="executions per query (default 2000)")
    ap.add_argument("--seed", type=int, default=42, help="random seed of data and parameters (default 42)")
    ap.add_argument("--chunk", type=int, default=500_000, help="runs per generation chunk (default 500000)")
    ap.add_argument("--load-workers", type=int, default=2,
                    help="sessions writing/indexing in parallel during the load (default 2)")
    ap.add_argument("--load-with-indexes", action="store_true",
                    help="keep the secondary indexes during the load instead of rebuilding them after")
    ap.add_argument("--anchor", help="ISO timestamp standing for 'now' (default: the current hour)")
    ap.add_argument("--proposed", action="store_true",
                    help="time with the proposed index changes (bench/README.md): create the bench_* indexes "
                         "(kept) and drop the indexes they replace inside the timing transaction "
                         "(rolled back); without it, existing bench_* indexes are dropped that way")
    ap.add_argument("--no-queries", action="store_true", help="generate only")
    ap.add_argument("--no-prewarm", action="store_true",
                    help="skip reading the history tables and their indexes into the OS page cache before timing")
    ap.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS",
                    help="before timing, wait up to SECONDS for the 1-min load average to drop below 1.2")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--keep", action="store_true", default=True, help="keep the database at the end (default)")
    g.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = ap.parse_args(argv)
    if not args.db.startswith("etl_bench_"):
        ap.error("--db must start with etl_bench_")

    load = None
    meta = existing_meta(args.db) if args.reuse else None
    if meta and meta["complete"] and meta["runs"] == args.runs and meta["actual_runs"] == args.runs \
            and meta["seed"] == args.seed and meta["generator"] == GENERATOR_VERSION and not meta["pending_rebuild"]:
        log(f"== reusing {args.db}: {meta['actual_runs']:,} runs, seed {meta['seed']}, anchor "
            f"{meta['anchor'].isoformat()} (loaded in {meta['load_seconds']:.0f}s)")
    else:
        if args.reuse:
            log(f"== {args.db} cannot be reused (missing, incomplete or other parameters): generating")
        load = generate(args)
        meta = existing_meta(args.db)

    with connect(args.db) as conn:
        sizes = conn.execute(
            """select c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'etl' and c.relkind = 'r' and c.relname = any(%s)
               order by pg_table_size(c.oid) desc""", (list(HISTORY_TABLES) + ["pipeline_runs"],)).fetchall()
        dbsize = conn.execute("select pg_database_size(current_database())").fetchone()[0]
        server = conn.execute("select current_setting('server_version'), current_setting('shared_buffers'), "
                              "current_setting('random_page_cost'), current_setting('jit')").fetchone()
    log(f"== database {args.db}: {dbsize / 2**30:.2f} GiB; server {server[0]}, shared_buffers {server[1]}, "
        f"random_page_cost {server[2]}, jit {server[3]}")
    for name, t, i in sizes:
        log(f"    {name:<14} table {t / 2**20:9.1f} MiB  indexes {i / 2**20:9.1f} MiB")

    results = []
    if not args.no_queries and args.wait_quiet > 0:
        deadline = time.time() + args.wait_quiet
        while os.getloadavg()[0] > 1.2 and time.time() < deadline:
            time.sleep(5)
        log(f"== 1-min load average {os.getloadavg()[0]:.2f} before timing")
    if not args.no_queries and not args.no_prewarm:
        prewarm(args.db)
    if not args.no_queries:
        log(f"== timing {len(QUERIES)} queries x {args.reps} executions (prepared, one connection)")
        results = run_queries(args.db, meta, args.reps, args.seed, args.proposed)
        print_results(results, meta, f"{meta['actual_runs']:,}", args.proposed)

    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    fn = out / f"history_{args.db}_{args.runs}{'_proposed' if args.proposed else ''}.json"
    fn.write_text(json.dumps(dict(runs=args.runs, db=args.db, seed=args.seed, anchor=meta["anchor"].isoformat(),
                                  load=load, db_bytes=dbsize, results=results,
                                  at=datetime.now(timezone.utc).isoformat()), indent=2, default=str))
    log(f"== results written to {fn.relative_to(REPO)}")
    if args.drop:
        devtools.drop_database(args.db)
        log(f"== dropped {args.db}")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
