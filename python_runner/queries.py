"""Every SQL statement the runner sends, by name: the worker loop holds no SQL text."""

CLAIM = """
select run_id, token, attempt_no, pipeline_run_id, job_id, job_slug, kind, target, params, cursor,
       dry_run, mode, logical_date, correlation_id, max_attempts, timeout_ms, lease_expires_at
  from etl.claim(%(worker)s, %(max_runs)s)
"""
HEARTBEAT = "select etl.heartbeat(%(run_id)s, %(token)s) as beat"
FINISH = "select etl.finish(%(run_id)s, %(token)s, %(outcome)s::jsonb) as status"
NEXT_WAKEUP = "select extract(epoch from etl.next_wakeup() - now()) as seconds"
LISTEN = "listen etl_runnable"
ROUTINE_KIND = """
select p.prokind from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = %(schema)s and p.proname = %(name)s
"""
SERVICE_HEARTBEAT = """
insert into etl.service_heartbeats as h (instance_id, service, version, host, pid, status, slots, busy_slots)
values (%(instance_id)s, 'runner', %(version)s, %(host)s, %(pid)s, %(status)s, %(slots)s, %(busy)s)
on conflict (instance_id) do update
   set status = excluded.status, busy_slots = excluded.busy_slots, last_seen = now()
"""
