-- The tick (pg_cron, every minute): due schedules become pipeline runs once per fire time, expired
-- leases are reaped into retries, overdue upstream waits are skipped, old rows are purged.

create or replace function etl._fire_schedule(p_schedule etl.schedules, p_fire timestamptz)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_job etl.jobs;
  v_open integer;
  v_waiting integer;
  v_pid bigint;
begin
  select j.* into v_job from etl.jobs j where j.job_id = p_schedule.job_id;
  select count(*) filter (where p.status in ('queued', 'running')),
         count(*) filter (where not exists (select 1 from etl.runs r
                                             where r.pipeline_run_id = p.pipeline_run_id and r.started_at is not null))
    into v_open, v_waiting
    from etl.pipeline_runs p
   where p.schedule_id = p_schedule.schedule_id and p.status in ('queued', 'running');
  -- Overlap policy when the previous fire is still going.
  if not v_job.enabled
     or (v_open > 0 and p_schedule.overlap_policy = 'skip')
     or (v_waiting > 0 and p_schedule.overlap_policy = 'queue_one') then
    insert into etl.pipeline_runs (trigger_type, schedule_id, logical_date, status, ended_at, selection, skip_reason)
    values ('schedule', p_schedule.schedule_id, p_fire, 'skipped', pg_catalog.now(),
            pg_catalog.jsonb_build_object('jobs', array[v_job.slug], 'downstream', p_schedule.with_downstream),
            case when not v_job.enabled then 'job disabled'
                 else pg_catalog.format('overlap policy %s: previous fire still running', p_schedule.overlap_policy) end)
    on conflict do nothing
    returning pipeline_run_id into v_pid;
    return v_pid;
  end if;
  return etl._create_pipeline_run(
    etl._select_jobs(array[v_job.slug], null, null, p_schedule.with_downstream),
    pg_catalog.jsonb_build_object('jobs', array[v_job.slug], 'downstream', p_schedule.with_downstream,
                                  'schedule_id', p_schedule.schedule_id),
    p_schedule.params, false, 'schedule', null, 'incremental', 'per_procedure', null,
    p_fire, 'schedule', p_schedule.schedule_id);
end;
$$;
comment on function etl._fire_schedule(etl.schedules, timestamptz) is
  'Creates the pipeline run of one schedule fire time (or a skipped record under the overlap policy); '
  'the unique (schedule_id, logical_date) makes a second call for the same fire time a no-op.';

create or replace function etl._reap_expired_leases()
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_lock record;
  v_run etl.runs;
  v_count integer := 0;
begin
  for v_lock in
    select l.lock_id, l.run_id, l.attempt_id from etl.job_locks l
     where l.status = 'active' and l.expires_at < pg_catalog.now()
     order by l.run_id
       for update skip locked
  loop
    select r.* into v_run from etl.runs r where r.run_id = v_lock.run_id for update;
    if v_run.status = 'running' and v_lock.attempt_id is not null then
      -- A dead runner: a transient SYSTEM failure, retried like any other.
      perform etl._record_transition(v_run.run_id, v_run.pipeline_run_id, 'running', 'running', 'etl.tick',
                                     pg_catalog.jsonb_build_object('attempt_id', v_lock.attempt_id), 'lease_expired');
      perform etl._finish(v_run, v_lock.attempt_id,
        '{"status": "failed", "error_category": "SYSTEM", "error_type": "lease_expired", "is_transient": true,
          "message": "the runner stopped heartbeating; its lease expired"}'::jsonb, 'etl.tick');
      update etl.run_attempts a set status = 'lost' where a.attempt_id = v_lock.attempt_id;
    else
      update etl.job_locks l set status = 'expired', released_at = pg_catalog.now() where l.lock_id = v_lock.lock_id;
    end if;
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function etl._reap_expired_leases() is
  'Fails the current attempt of every run whose lease expired as a transient SYSTEM error '
  '(lease_expired), which retries it; the attempt is marked lost and its late report is refused.';

create or replace function etl.tick()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_schedule etl.schedules;
  v_fire timestamptz;
  v_last timestamptz;
  v_fires timestamptz[];
  v_created integer := 0;
  v_reaped integer;
  v_expired integer := 0;
  v_run etl.runs;
begin
  perform etl._assert_primary();
  -- An overlapping tick does nothing.
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('etl.tick')) then
    return '{"skipped": "another tick is running"}';
  end if;

  for v_schedule in
    select s.* from etl.schedules s
     where s.is_active and s.next_run_at <= pg_catalog.now()
     order by s.next_run_at for update skip locked
  loop
    select pg_catalog.array_agg(f order by f) into v_fires
      from (select f from etl.cron_next_n(v_schedule.cron_expr, v_schedule.timezone,
                                          v_schedule.next_run_at - interval '1 microsecond', 1000) f
             where f <= pg_catalog.now()) t;
    v_fires := coalesce(v_fires, array[v_schedule.next_run_at]);
    if v_schedule.misfire_policy = 'latest' then
      v_fires := array[v_fires[pg_catalog.cardinality(v_fires)]];
    end if;
    foreach v_fire in array v_fires loop
      -- A fire time that already has its pipeline run (an earlier tick) is not fired again.
      if not exists (select 1 from etl.pipeline_runs p
                      where p.schedule_id = v_schedule.schedule_id and p.logical_date = v_fire
                        and p.trigger_type = 'schedule')
         and etl._fire_schedule(v_schedule, v_fire) is not null then
        v_created := v_created + 1;
      end if;
      v_last := v_fire;
    end loop;
    update etl.schedules s
       set last_fire_at = v_last,
           next_run_at = etl.cron_next(s.cron_expr, s.timezone, greatest(v_last, pg_catalog.now())),
           updated_at = pg_catalog.now()
     where s.schedule_id = v_schedule.schedule_id;
  end loop;

  v_reaped := etl._reap_expired_leases();

  for v_run in
    select r.* from etl.runs r
     where r.status = 'pending' and r.wait_until < pg_catalog.now()
     order by r.run_id for update skip locked
  loop
    update etl.runs r set status = 'skipped', ended_at = pg_catalog.now(),
                          skip_reason = 'upstream not successful within the wait limit'
     where r.run_id = v_run.run_id;
    perform etl._record_transition(v_run.run_id, v_run.pipeline_run_id, 'pending', 'skipped', 'etl.tick',
                                   '{"reason": "upstream wait limit reached"}');
    perform etl._skip_descendants(v_run.run_id, 'upstream skipped: wait limit reached');
    perform etl._finalize_pipeline(v_run.pipeline_run_id);
    v_expired := v_expired + 1;
  end loop;

  delete from etl.job_locks l where l.status <> 'active' and l.released_at < pg_catalog.now() - interval '7 days';
  delete from etl.run_logs g where g.log_id in (
    select g2.log_id from etl.run_logs g2
     where g2.ts < pg_catalog.now() - pg_catalog.make_interval(days => (select (s.value #>> '{}')::int
                                                                 from etl.settings s where s.name = 'log_retention_days'))
     limit 10000);
  return pg_catalog.jsonb_build_object('pipeline_runs_created', v_created, 'leases_reaped', v_reaped,
                                       'waits_expired', v_expired);
end;
$$;
comment on function etl.tick() is
  'The engine''s timer, called every minute by pg_cron (job etl-tick): fires due schedules once per '
  'fire time (misfire policy catch_up or latest, overlap policy skip, queue_one or queue_all), '
  'advances next_run_at with etl.cron_next, reaps expired leases into retries, skips runs whose '
  'upstream wait limit passed, and purges old locks and logs. Guarded by an advisory lock: an '
  'overlapping tick returns at once. Returns what it did.';

create or replace function etl.backfill(
  job text, from_ts timestamptz, to_ts timestamptz, reprocess text default 'none',
  dry_run boolean default false, downstream boolean default false, reason text default null)
returns table (logical_date timestamptz, action text, pipeline_run_id bigint)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_schedule etl.schedules;
  v_fire timestamptz;
  v_existing record;
  v_key text;
begin
  perform etl._assert_primary();
  if backfill.reprocess not in ('none', 'failed', 'all') then
    raise exception 'reprocess must be none, failed or all, got "%"', backfill.reprocess
      using errcode = 'invalid_parameter_value';
  end if;
  if backfill.to_ts < backfill.from_ts then
    raise exception 'to_ts % is before from_ts %', backfill.to_ts, backfill.from_ts using errcode = 'invalid_parameter_value';
  end if;
  select s.* into v_schedule from etl.schedules s join etl.jobs j on j.job_id = s.job_id
   where j.slug = backfill.job and s.is_active;
  if not found then
    raise exception 'job "%" has no active schedule to backfill', backfill.job using errcode = 'invalid_parameter_value';
  end if;
  for v_fire in
    select f from etl.cron_next_n(v_schedule.cron_expr, v_schedule.timezone,
                                  backfill.from_ts - interval '1 microsecond', 10000) f
     where f <= backfill.to_ts
  loop
    select r.status, r.pipeline_run_id into v_existing
      from etl.runs r join etl.pipeline_runs p on p.pipeline_run_id = r.pipeline_run_id
     where r.job_id = v_schedule.job_id and r.logical_date = v_fire and not r.dry_run
     order by r.run_id desc limit 1;
    logical_date := v_fire;
    if v_existing.status is not null and (backfill.reprocess = 'none'
        or (backfill.reprocess = 'failed' and v_existing.status not in ('failed', 'cancelled', 'skipped'))) then
      action := 'exists: ' || v_existing.status; pipeline_run_id := v_existing.pipeline_run_id;
      return next;
      continue;
    end if;
    v_key := pg_catalog.format('backfill:%s:%s:%s', v_schedule.schedule_id, v_fire,
                               coalesce(v_existing.pipeline_run_id::text, 'new'));
    if backfill.dry_run then
      action := 'would create'; pipeline_run_id := null;
    else
      pipeline_run_id := etl._create_pipeline_run(
        etl._select_jobs(array[backfill.job], null, null, backfill.downstream),
        pg_catalog.jsonb_build_object('jobs', array[backfill.job], 'backfill', true),
        v_schedule.params, false, backfill.reason, v_key, 'incremental', 'per_procedure', null,
        v_fire, 'backfill', v_schedule.schedule_id);
      action := 'created';
    end if;
    return next;
  end loop;
  if not backfill.dry_run then
    insert into etl.audit_log (action, target_type, target_id, reason, details)
    values ('backfill', 'job', backfill.job, backfill.reason,
            pg_catalog.jsonb_build_object('from', backfill.from_ts, 'to', backfill.to_ts, 'reprocess', backfill.reprocess));
  end if;
end;
$$;
comment on function etl.backfill(text, timestamptz, timestamptz, text, boolean, boolean, text) is
  'One pipeline run per fire time of the job''s active schedule in [from_ts, to_ts], idempotently. '
  'reprocess: none skips fire times that already have a run, failed redoes only failed/cancelled/skipped '
  'ones, all redoes everything. dry_run lists what it would create against what exists.';
