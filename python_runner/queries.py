"""Every SQL statement the runner sends, by name: the worker loop holds no SQL text."""
from psycopg import sql

STALE_TOKEN = "ETL01"  # SQLSTATE of a report from an attempt that no longer holds its run

CLAIM_FIELDS = ("run_id", "token", "attempt_no", "pipeline_run_id", "job_id", "job_slug", "kind", "target",
                 "params", "cursor", "dry_run", "mode", "logical_date", "correlation_id", "max_attempts",
                 "timeout_ms", "lease_expires_at", "items_source", "item_concurrency", "group_id",
                 "group_members", "refreshes")
# lease_left: the lease in the database's own clock (the runner's may be off), for the heartbeats.
CLAIM = (f"select {', '.join(CLAIM_FIELDS)}, extract(epoch from lease_expires_at - clock_timestamp())::float8 "
         f"as lease_left from etl.claim(%(worker)s, %(max_runs)s)")
# A report and the claim of what the slot runs next, in one statement (one round trip, one
# commit): the lateral claim runs after the finish and sees the children it released.
FINISH_AND_CLAIM = f"""
select f.status as finished_status, {', '.join('c.' + c for c in CLAIM_FIELDS)},
       extract(epoch from c.lease_expires_at - clock_timestamp())::float8 as lease_left
  from etl.finish(%(run_id)s, %(token)s, %(outcome)s::jsonb) as f(status)
  left join lateral etl.claim(%(worker)s, case when f.status is not null then %(max_runs)s end) as c on true
"""
HEARTBEAT = "select etl.heartbeat(%(run_id)s, %(token)s) as beat"
FINISH = "select etl.finish(%(run_id)s, %(token)s, %(outcome)s::jsonb) as status"
# When to wake: the end of the shortest backoff to come, and of the earliest lease (a dead runner's,
# once reached: live leases are pushed back by their heartbeats).
NEXT_WAKEUP = ("select extract(epoch from etl.next_wakeup() - now()) as seconds, "
               "extract(epoch from etl.next_lease_expiry(%(spare)s::bigint[]) - now()) as lease_seconds")
REAP = "select etl.reap_expired_leases(%(worker)s, %(spare)s::bigint[]) as reaped"
LISTEN = "listen etl_runnable"
ROUTINE_KINDS = """
select t.target, p.prokind
  from unnest(%(targets)s::text[]) t(target)
  join pg_namespace n on n.nspname = split_part(t.target, '.', 1)
  join pg_proc p on p.pronamespace = n.oid and p.proname = split_part(t.target, '.', 2)
"""
# A job's items.sql (one SELECT, parsed by etl apply), its rows as the JSON array start_items takes.
# (As text: numbers pass through exactly. The unused run id makes it a parameterised statement,
# which psycopg sends with the extended protocol: one statement, never a `;`-separated list.)
ITEMS_OF_QUERY = sql.SQL("select coalesce(jsonb_agg(to_jsonb(q)), '[]')::text as items "
                         "from ({}) q where %(run_id)s::bigint is not null")
RUN_HAS_ITEMS = "select exists (select 1 from etl.run_items where run_id = %(run_id)s) as has_items"
START_ITEMS = """
select item_id, item_no, params, param_hash, cursor, attempt_count
  from etl.start_items(%(run_id)s, %(token)s, %(items)s::jsonb)
"""
FINISH_ITEM = "select etl.finish_item(%(run_id)s, %(token)s, %(item_id)s, %(outcome)s::jsonb) as status"
REFRESH_PLAN = """
select refresh_target_id, schema_name, view_name, sequence, policy, concurrent
  from etl.refresh_plan(%(run_id)s, %(token)s, %(succeeded)s)
"""
REFRESH_VIEW = "select etl.refresh_view(%(run_id)s, %(token)s, %(refresh_target_id)s) as result"
SERVICE_HEARTBEAT = """
insert into etl.service_heartbeats as h (instance_id, service, version, host, pid, status, slots, busy_slots)
values (%(instance_id)s, 'runner', %(version)s, %(host)s, %(pid)s, %(status)s, %(slots)s, %(busy)s)
on conflict (instance_id) do update
   set status = excluded.status, busy_slots = excluded.busy_slots, last_seen = now(),
       -- A worker id used again by a new process: the row describes the new one.
       version = excluded.version, host = excluded.host, slots = excluded.slots, pid = excluded.pid,
       started_at = case when h.pid is distinct from excluded.pid or h.host is distinct from excluded.host
                         then now() else h.started_at end
"""
