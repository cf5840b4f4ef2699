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

create or replace function etl._reap_expired_leases(p_actor text default 'etl.tick', p_spare bigint[] default null)
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
       and (p_spare is null or not l.attempt_id = any (p_spare))
     order by l.run_id
       for update skip locked
  loop
    select r.* into v_run from etl.runs r where r.run_id = v_lock.run_id for update;
    if v_run.status = 'running' and v_lock.attempt_id is not null then
      perform etl._record_transition(v_run.run_id, v_run.pipeline_run_id, 'running', 'running', p_actor,
                                     pg_catalog.jsonb_build_object('attempt_id', v_lock.attempt_id), 'lease_expired');
      if v_run.cancel_requested_at is not null then
        -- The runner died before it could stop the run it was asked to cancel: the reaper ends it as
        -- the runner would have (etl.finish with status cancelled), not as a failure to retry.
        perform etl._finish(v_run, v_lock.attempt_id,
          '{"status": "cancelled", "error_type": "lease_expired",
            "message": "cancel requested; the runner stopped heartbeating before it stopped the run"}'::jsonb,
          p_actor);
      else
        -- A dead runner: a transient SYSTEM failure, retried like any other.
        perform etl._finish(v_run, v_lock.attempt_id,
          '{"status": "failed", "error_category": "SYSTEM", "error_type": "lease_expired", "is_transient": true,
            "message": "the runner stopped heartbeating; its lease expired"}'::jsonb, p_actor);
      end if;
      update etl.run_attempts a set status = 'lost' where a.attempt_id = v_lock.attempt_id;
    else
      update etl.job_locks l set status = 'expired', released_at = pg_catalog.now() where l.lock_id = v_lock.lock_id;
    end if;
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function etl._reap_expired_leases(text, bigint[]) is
  'Fails the current attempt of every run whose lease expired as a transient SYSTEM error '
  '(lease_expired), which retries it; a run whose cancellation was requested ends cancelled instead '
  '(descendants skipped, pipeline run finalized, as when its runner reports the cancel). Either way '
  'the attempt is marked lost and its late report is refused. p_actor names the reaper in the run '
  'events; the attempts (tokens) in p_spare are left alone (a runner never reaps the runs it holds).';

create or replace function etl.reap_expired_leases(worker text default null, spare bigint[] default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform etl._assert_primary();
  return etl._reap_expired_leases(coalesce(reap_expired_leases.worker, session_user::text), reap_expired_leases.spare);
end;
$$;
comment on function etl.reap_expired_leases(text, bigint[]) is
  'The tick''s reaper on its own, for runners: a runner that sees a lease end (etl.next_lease_expiry) '
  'reaps it at once instead of waiting up to a minute for the next tick, so a run whose runner died '
  'is retried seconds after its lease, not a tick later. A runner passes its worker id, which the '
  'run events name, and the tokens of the attempts it runs, which are spared (after an outage its '
  'heartbeats renew them: its jobs are alive). A restarted runner under the same worker id reaps '
  'what its dead predecessor held. Safe beside the tick and other runners (SKIP LOCKED). Returns the number '
  'of leases reaped.';

create or replace function etl.tick()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  -- catch_up creates at most this many fire times per schedule per tick; the next ticks go on
  -- from the first one not yet created (a long outage drains over several ticks).
  c_batch constant integer := 1000;
  v_schedule etl.schedules;
  v_spec etl.cron_spec;
  v_fire timestamptz;
  v_last timestamptz;
  v_fires timestamptz[];
  v_pid bigint;
  v_created integer := 0;
  v_skipped integer := 0;
  v_failed jsonb := '[]';
  v_state text;
  v_message text;
  v_reaped integer;
  v_expired integer := 0;
  v_lost integer;
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
    -- One schedule that cannot be fired (a row written before its cron was checked) must not stop
    -- the others, the reaper and the wait expiry: it is rolled back, reported and left due.
    begin
      v_last := null;
      -- Only fire times of the cron fire: next_run_at itself is one only if it is on the cron.
      if v_schedule.misfire_policy = 'latest' then
        v_fire := etl._cron_last_fire(v_schedule.cron_expr, v_schedule.timezone,
                                      v_schedule.next_run_at, pg_catalog.now());
        v_fires := case when v_fire is null then '{}' else array[v_fire] end;
      else
        -- Walked one by one up to now (not c_batch fire times computed for every due schedule).
        v_spec := etl.cron_parse(v_schedule.cron_expr);
        perform etl._cron_assert_tz(v_schedule.timezone);
        v_fires := '{}';
        v_fire := etl._cron_next_from_spec(v_spec, v_schedule.timezone,
                                           v_schedule.next_run_at - interval '1 microsecond', v_schedule.cron_expr);
        while v_fire <= pg_catalog.now() and pg_catalog.cardinality(v_fires) < c_batch loop
          v_fires := v_fires || v_fire;
          v_fire := etl._cron_next_from_spec(v_spec, v_schedule.timezone, v_fire, v_schedule.cron_expr);
        end loop;
      end if;
      foreach v_fire in array v_fires loop
        -- A fire time that already has its pipeline run (an earlier tick) is not fired again.
        if not exists (select 1 from etl.pipeline_runs p
                        where p.schedule_id = v_schedule.schedule_id and p.logical_date = v_fire
                          and p.trigger_type = 'schedule') then
          v_pid := etl._fire_schedule(v_schedule, v_fire);
          -- A record of a fire skipped by the overlap policy (or a disabled job) has no runs.
          if v_pid is null then
            null;
          elsif exists (select 1 from etl.runs r where r.pipeline_run_id = v_pid) then
            v_created := v_created + 1;
          else
            v_skipped := v_skipped + 1;
          end if;
        end if;
        v_last := v_fire;
      end loop;
      -- After the last fire time handled: the first not yet created (a full catch_up batch, still
      -- due, so the next tick goes on), else the next one after now.
      update etl.schedules s
         set last_fire_at = coalesce(v_last, s.last_fire_at),
             next_run_at = etl.cron_next(s.cron_expr, s.timezone, coalesce(v_last, pg_catalog.now())),
             updated_at = pg_catalog.now()
       where s.schedule_id = v_schedule.schedule_id;
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
      v_failed := v_failed || pg_catalog.jsonb_build_object(
        'schedule_id', v_schedule.schedule_id,
        'job', (select j.slug from etl.jobs j where j.job_id = v_schedule.job_id),
        'sqlstate', v_state, 'error', v_message);
      raise warning 'etl.tick: schedule % of job "%" not fired: % (SQLSTATE %)', v_schedule.schedule_id,
        (select j.slug from etl.jobs j where j.job_id = v_schedule.job_id), v_message, v_state
        using hint = 'Fix the schedule row (cron_expr, timezone); the other schedules fired.';
    end;
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

  -- A runner beats every 10 s, busy or not: unseen for six beats, it was killed or cut off.
  update etl.service_heartbeats h set status = 'lost'
   where h.service = 'runner' and h.status in ('starting', 'running', 'draining')
     and h.last_seen < pg_catalog.now() - interval '60 seconds';
  get diagnostics v_lost = row_count;

  delete from etl.job_locks l where l.status <> 'active' and l.released_at < pg_catalog.now() - interval '7 days';
  -- (Through numeric: a setting stored as 30.0 is still a whole number of days.)
  delete from etl.run_logs g where g.log_id in (
    select g2.log_id from etl.run_logs g2
     where g2.ts < pg_catalog.now() - pg_catalog.make_interval(days => (select (s.value #>> '{}')::numeric::integer
                                                                 from etl.settings s where s.name = 'log_retention_days'))
     limit 10000);
  return pg_catalog.jsonb_build_object('pipeline_runs_created', v_created, 'fires_skipped', v_skipped,
                                       'schedules_failed', v_failed, 'leases_reaped', v_reaped,
                                       'waits_expired', v_expired, 'runners_lost', v_lost);
end;
$$;
comment on function etl.tick() is
  'The engine''s timer, called every minute by pg_cron (job etl-tick): fires due schedules once per '
  'fire time (misfire policy latest: only the latest missed fire time; catch_up: every missed one, at '
  'most 1,000 per schedule per tick, the next ticks going on from the first not yet created; overlap '
  'policy skip, queue_one or queue_all), advances next_run_at with etl.cron_next, reaps expired leases '
  'into retries (or into the cancel that was requested), skips runs whose upstream wait limit passed, '
  'marks runners unseen for 60 s lost in etl.service_heartbeats, and purges old locks and logs. A '
  'schedule that cannot be fired is rolled back on its own, reported with a WARNING and in '
  'schedules_failed, and left due. Guarded by an advisory lock: an overlapping '
  'tick returns at once. Returns {pipeline_runs_created, fires_skipped (overlap or disabled job), '
  'schedules_failed: [{schedule_id, job, sqlstate, error}], leases_reaped, waits_expired, runners_lost}.';

create or replace function etl.backfill(
  job text, from_ts timestamptz, to_ts timestamptz, reprocess text default 'none',
  dry_run boolean default false, downstream boolean default false, reason text default null)
returns table (logical_date timestamptz, action text, pipeline_run_id bigint)
language plpgsql
security definer
set search_path = ''
as $$
declare
  -- One call, one transaction: a longer range is split by the caller.
  c_cap constant integer := 10000;
  v_schedule etl.schedules;
  v_fires timestamptz[];
  v_fire timestamptz;
  v_existing record;
  v_key text;
  v_created integer := 0;
  v_open integer := 0;
begin
  perform etl._assert_primary();
  -- GUARD: a NULL or infinite bound has no fire times; say so rather than do nothing.
  if backfill.from_ts is null or not pg_catalog.isfinite(backfill.from_ts) then
    raise exception 'from_ts must be a finite timestamp, got %', coalesce(backfill.from_ts::text, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  if backfill.to_ts is null or not pg_catalog.isfinite(backfill.to_ts) then
    raise exception 'to_ts must be a finite timestamp, got %', coalesce(backfill.to_ts::text, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  if backfill.reprocess is null or backfill.reprocess not in ('none', 'failed', 'all') then
    raise exception 'reprocess must be none, failed or all, got %', coalesce('"' || backfill.reprocess || '"', 'NULL')
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
  -- A dry run writes nothing, so it needs no reason; a backfill is audited with one.
  if not coalesce(backfill.dry_run, false) then
    perform etl._require_reason(backfill.reason, 'backfill a job');
  end if;
  select coalesce(pg_catalog.array_agg(f order by f), '{}') into v_fires
    from (select f from etl.cron_next_n(v_schedule.cron_expr, v_schedule.timezone,
                                        backfill.from_ts - interval '1 microsecond', c_cap + 1) f
           where f <= backfill.to_ts) t;
  if pg_catalog.cardinality(v_fires) > c_cap then
    raise exception 'backfill of job "%" from % to %: more than % fire times (the cap of one backfill)',
      backfill.job, backfill.from_ts, backfill.to_ts, c_cap
      using errcode = 'program_limit_exceeded',
            hint = pg_catalog.format('Split the range: the %sth fire time is %s; backfill up to it, then from after it.',
                                     c_cap, v_fires[c_cap]);
  end if;
  foreach v_fire in array v_fires loop
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
    -- GUARD: reprocess all redoes finished fire times only; a second run beside one still under way
    -- would run the same logical date twice at once.
    if v_existing.status in ('pending', 'queued', 'running') then
      action := 'skipped: ' || v_existing.status; pipeline_run_id := v_existing.pipeline_run_id;
      v_open := v_open + 1;
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
      v_created := v_created + 1;
    end if;
    return next;
  end loop;
  if v_open > 0 then
    raise notice 'backfill of job "%": % fire time(s) skipped, their runs are still pending, queued or running',
      backfill.job, v_open;
  end if;
  if not backfill.dry_run then
    insert into etl.audit_log (action, target_type, target_id, reason, details)
    values ('backfill', 'job', backfill.job, backfill.reason,
            pg_catalog.jsonb_build_object('from', backfill.from_ts, 'to', backfill.to_ts, 'reprocess', backfill.reprocess,
                                          'created', v_created, 'skipped_open', v_open));
  end if;
end;
$$;
comment on function etl.backfill(text, timestamptz, timestamptz, text, boolean, boolean, text) is
  'One pipeline run per fire time of the job''s active schedule in [from_ts, to_ts], idempotently. '
  'reprocess: none skips fire times that already have a run, failed redoes only failed/cancelled/skipped '
  'ones, all redoes every finished one (a fire time whose run is still pending, queued or running is '
  'skipped: action "skipped: <status>", counted in a NOTICE and the audit row). dry_run lists what it '
  'would create against what exists. Refused (22023): NULL or infinite bounds, to_ts before from_ts, '
  'and without a reason unless dry_run (the backfill is audited with it). At most 10,000 fire times '
  'per call (54000 beyond, with where to split the range).';
