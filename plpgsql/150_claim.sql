-- Claim and heartbeat: hand runnable runs to a runner under the global bound and the
-- concurrency keys, each with a lease and a fencing token (the attempt id).

create or replace function etl.claim(worker text, max_runs integer default 1)
returns table (
  run_id bigint, token bigint, attempt_no integer, pipeline_run_id bigint, job_id bigint,
  job_slug text, kind text, target text, params jsonb, cursor jsonb, dry_run boolean, mode text,
  logical_date timestamptz, correlation_id uuid, max_attempts integer, timeout_ms bigint,
  lease_expires_at timestamptz, items_source jsonb, item_concurrency integer, group_id bigint,
  group_members jsonb, refreshes boolean)
language plpgsql
security definer
set search_path = ''
-- One cached plan per statement: a custom plan for each call's arrays would cost more to plan
-- than to run.
set plan_cache_mode = force_generic_plan
-- Every statement here looks up a few rows by key. The plans are generic and cached for the
-- session, made from the statistics of the moment: runs, job_locks and run_slots look empty to a
-- plan made after a vacuum or on a new install, and a hash join over a sequential scan (of all
-- runs, of every lock and its dead versions for each candidate) then looks cheaper than index
-- probes. It is not, and it grows with history and load: index probes only.
set enable_hashjoin = off
set enable_mergejoin = off
set enable_seqscan = off
set jit = off  -- a disabled seq scan costs 1e10: JIT would compile it, 100 ms a call
as $$
declare
  v_lock_key text;
  v_key_no integer;
  v_default_lease interval;
  v_cand record;
  v_cursor refcursor;
  v_exhausted boolean;
  v_want integer;
  v_row record;
  -- One batch of candidates, in claim order, that no other claimer is taking.
  c_run bigint[];
  v_floor text[];
  v_full boolean;
  v_floored_until timestamptz;
  v_started timestamptz;
  v_fp integer;
  v_fpr bigint;
  v_fcp bigint;
  v_ft timestamptz;
  v_fid bigint;
  v_last text[];
  v_n integer;
  v_slots integer[];
  v_start integer;
  -- The runs taken so far, in claim order, with their key and lease: written after the scan, one
  -- statement per table for the whole batch.
  w_run bigint[] := '{}';
  w_pipeline bigint[] := '{}';
  w_job bigint[] := '{}';
  w_attempt bigint[] := '{}';
  w_attempt_no integer[] := '{}';
  w_key text[] := '{}';
  w_pool text[] := '{}';
  w_key_no integer[] := '{}';
  w_lease interval[] := '{}';
  -- Clock time, not transaction start: a runner claims in the same transaction as it reports, and
  -- a run must never look started before the parent that released it ended.
  v_now timestamptz := pg_catalog.clock_timestamp();
begin
  perform etl._assert_primary();
  if claim.worker is null or claim.worker = '' then
    raise exception 'worker must name the runner (a unique id)' using errcode = 'invalid_parameter_value';
  end if;
  if claim.max_runs is null or claim.max_runs < 1 then
    raise exception 'max_runs must be at least 1, got %', claim.max_runs using errcode = 'invalid_parameter_value';
  end if;
  -- Each run a claim takes holds two advisory locks to commit (the run, its key): bounded, so that
  -- one call cannot fill the shared lock table.
  if claim.max_runs > 1000 then
    raise exception 'max_runs must be at most 1000, got % (claim in batches)', claim.max_runs
      using errcode = 'invalid_parameter_value';
  end if;
  -- The global bound: with no free slot nothing can start (a look, not a lock; the slots are
  -- taken below, once, for the whole batch). Looks start at a random slot and wrap around: every
  -- slot row gets its share of the updates, so none grows a long chain of row versions that a
  -- long snapshot elsewhere keeps from being pruned (and every look at that slot would walk).
  v_start := 1 + pg_catalog.floor(pg_catalog.random() * (select max(s.slot_no) from etl.run_slots s))::integer;
  if not (exists (select 1 from etl.run_slots s where s.slot_no >= v_start and s.run_id is null and not s.retired)
          or exists (select 1 from etl.run_slots s where s.slot_no < v_start and s.run_id is null and not s.retired)) then
    return;
  end if;
  select pg_catalog.make_interval(secs => (s.value #>> '{}')::float8) into v_default_lease
    from etl.settings s where s.name = 'default_lease_seconds';

  -- Where this session's last scan stopped: (-priority, pipeline_run_id, -critical_path_ms,
  -- next_attempt_at, run_id). Runs claimed since then leave dead index entries at the head of
  -- runs_claimable_idx; an open snapshot elsewhere (a long SQL procedure) keeps them from being
  -- pruned, and every full scan walks them. When a full scan is seen to be slow (over 2 ms to its
  -- first row), the next claims of this session for half a second start after the floor instead.
  -- Order is then exact except for runs that land behind the floor (a higher priority, an older
  -- timestamp committed late), which the full scan finds when the half second is over or when the
  -- floored scan comes up short.
  v_floor := pg_catalog.string_to_array(pg_catalog.current_setting('etl.claim_floor', true), '|');
  v_full := v_floor is null or pg_catalog.cardinality(v_floor) <> 6
            or pg_catalog.clock_timestamp() >= v_floor[6]::timestamptz;
  <<passes>>
  loop
    if v_full then
      v_fp := -2147483648; v_fpr := 0; v_fcp := -9223372036854775807; v_ft := '-infinity'; v_fid := 0;
      v_floored_until := '-infinity';
    else
      v_fp := v_floor[1]::integer; v_fpr := v_floor[2]::bigint; v_fcp := v_floor[3]::bigint;
      v_ft := v_floor[4]::timestamptz; v_fid := v_floor[5]::bigint;
      v_floored_until := v_floor[6]::timestamptz;
    end if;
    v_started := pg_catalog.clock_timestamp();
    v_exhausted := false;
    -- Highest priority first, then the oldest pipeline run, and in it the run that heads the
    -- longest remaining chain (critical path first), then the oldest runnable. The scan locks no
    -- row: a run another claimer is taking is skipped by its advisory lock, and the runs kept are
    -- then locked by one short statement. (A row lock taken by the scan itself would also land on
    -- runs another claimer took after the scan's snapshot; their finishers would wait for this
    -- transaction.)
    open v_cursor for
      select r.run_id, r.priority, r.pipeline_run_id, r.critical_path_ms, r.next_attempt_at
        from etl.runs r
       where r.status = 'queued' and r.next_attempt_at <= v_now
         and (-r.priority, r.pipeline_run_id, -r.critical_path_ms, r.next_attempt_at, r.run_id)
             > (v_fp, v_fpr, v_fcp, v_ft, v_fid)
         -- (Runs this call took are still queued until the writes below.)
         and not r.run_id = any (w_run)
       order by -r.priority, r.pipeline_run_id, -r.critical_path_ms, r.next_attempt_at, r.run_id
       limit claim.max_runs * 4 + 1000;
    <<batches>>
    loop
      c_run := '{}';
      v_want := claim.max_runs - pg_catalog.cardinality(w_run);
      while pg_catalog.cardinality(c_run) < v_want loop
        fetch v_cursor into v_cand;
        if v_full and v_last is null and pg_catalog.clock_timestamp() - v_started > interval '2 milliseconds' then
          v_floored_until := pg_catalog.clock_timestamp() + interval '500 milliseconds';
        end if;
        if not found then
          v_exhausted := true;
          exit;
        end if;
        v_last := array[(-v_cand.priority)::text, v_cand.pipeline_run_id::text, (-v_cand.critical_path_ms)::text,
                        v_cand.next_attempt_at::text, v_cand.run_id::text];
        -- Another claimer is taking it: skipped at the cost of a lock in memory (under load the head
        -- of the queue is mostly such runs).
        continue when not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('etl.runs'),
                                                               (v_cand.run_id % 2147483648)::integer);
        c_run := c_run || v_cand.run_id;
      end loop;
      exit batches when pg_catalog.cardinality(c_run) = 0;
      -- Still queued (a fresh look, under the advisory locks), not held by another transaction (a
      -- cancel, the reaper), and not waiting for a key a lock holds (a pool of one; larger pools
      -- are looked at below): locked, in claim order.
      for v_row in
        select r.run_id, r.pipeline_run_id, r.job_id, r.attempt_count,
               coalesce(j.concurrency_key, j.slug || ':' || r.parameter_fingerprint) as pool,
               j.concurrency_limit, coalesce(j.lease_duration, v_default_lease) as lease
          from etl.runs r join etl.jobs j on j.job_id = r.job_id
         where r.run_id = any (c_run) and r.status = 'queued' and r.next_attempt_at <= v_now
           and (j.concurrency_limit > 1
                -- (OFFSET 0: a probe of the key's index entry per run, never a hash of every
                -- active lock, whose dead entries a long snapshot elsewhere keeps.)
                or not exists (select 1 from etl.job_locks k
                                where k.concurrency_key = coalesce(j.concurrency_key, j.slug || ':' || r.parameter_fingerprint)
                                  and k.status = 'active' offset 0))
         order by -r.priority, r.pipeline_run_id, -r.critical_path_ms, r.next_attempt_at, r.run_id
           for update of r skip locked
      loop
        -- The concurrency key: the first free slot of its pool, or this run waits. A key another
        -- claimer is taking (or a finisher releasing) right now is skipped, never waited for (no
        -- deadlocks); holding its advisory lock, a fresh look at the locks is exact. The look is
        -- its own statement: a statement's snapshot is taken before it runs, and one that also
        -- took the lock could miss the lock row of a claimer that committed and let go of the
        -- key in between (two active locks on one key, refused by one_active_lock_per_key).
        v_key_no := null;
        for k in 1 .. v_row.concurrency_limit loop
          v_lock_key := case when k = 1 then v_row.pool else v_row.pool || '#' || k end;
          continue when v_lock_key = any (w_key)
                     or not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('etl.job_locks'),
                                                                 pg_catalog.hashtext(v_lock_key));
          if not exists (select 1 from etl.job_locks l where l.concurrency_key = v_lock_key and l.status = 'active') then
            v_key_no := k;
            exit;
          end if;
        end loop;
        continue when v_key_no is null;
        w_run := w_run || v_row.run_id; w_pipeline := w_pipeline || v_row.pipeline_run_id;
        w_job := w_job || v_row.job_id; w_attempt_no := w_attempt_no || (v_row.attempt_count + 1);
        w_attempt := w_attempt || pg_catalog.nextval('etl.run_attempts_attempt_id_seq');
        w_key := w_key || v_lock_key; w_pool := w_pool || v_row.pool; w_key_no := w_key_no || v_key_no;
        w_lease := w_lease || v_row.lease;
      end loop;
      exit batches when v_exhausted or pg_catalog.cardinality(w_run) >= claim.max_runs;
    end loop batches;
    close v_cursor;
    exit passes when v_full or pg_catalog.cardinality(w_run) >= claim.max_runs;
    v_full := true;
  end loop passes;
  if v_last is not null then
    perform pg_catalog.set_config('etl.claim_floor',
      pg_catalog.array_to_string(v_last || v_floored_until::text, '|'), false);
  end if;
  v_n := pg_catalog.cardinality(w_run);
  if v_n = 0 then
    return;
  end if;

  -- The global bound: a free slot per run, from the random start on; runs beyond the free slots
  -- are not claimed (the last in claim order).
  select pg_catalog.array_agg(f.slot_no) into v_slots
    from (select s.slot_no from etl.run_slots s
           where s.slot_no >= v_start and s.run_id is null and not s.retired
           order by s.slot_no limit v_n
             for update skip locked) f;
  if coalesce(pg_catalog.cardinality(v_slots), 0) < v_n then
    v_slots := coalesce(v_slots, '{}') || array(
      select s.slot_no from etl.run_slots s
       where s.slot_no < v_start and s.run_id is null and not s.retired
       order by s.slot_no limit v_n - coalesce(pg_catalog.cardinality(v_slots), 0)
         for update skip locked);
  end if;
  v_n := pg_catalog.cardinality(v_slots);
  if v_n = 0 then
    return;
  end if;
  w_run := w_run[1:v_n];
  -- The runs start now, their slots held: a slot freed by a finisher that committed after this
  -- claim began must not make its new run look started before the run it replaced ended.
  v_now := pg_catalog.clock_timestamp();

  -- The batch's writes, one statement per table: the lock of each key, the attempt (its id is the
  -- fencing token), the slots, the runs running, their events.
  insert into etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, attempt_id, holder,
                             acquired_at, expires_at)
  select w.key, w.pool, w.key_no, w.job, w.run, w.attempt, claim.worker, v_now, v_now + w.lease
    from unnest(w_key[1:v_n], w_pool[1:v_n], w_key_no[1:v_n], w_job[1:v_n], w_run, w_attempt[1:v_n], w_lease[1:v_n])
         as w(key, pool, key_no, job, run, attempt, lease);
  insert into etl.run_attempts (attempt_id, run_id, attempt_no, worker_id, claimed_at, started_at,
                                lease_expires_at, run_slot)
  overriding system value
  select w.attempt, w.run, w.attempt_no, claim.worker, v_now, v_now, v_now + w.lease, w.slot
    from unnest(w_attempt[1:v_n], w_run, w_attempt_no[1:v_n], w_lease[1:v_n], v_slots)
         as w(attempt, run, attempt_no, lease, slot);
  update etl.run_slots s set run_id = w.run, claimed_at = v_now
    from unnest(v_slots, w_run) as w(slot, run)
   where s.slot_no = w.slot;
  update etl.runs r
     set status = 'running', attempt_count = w.attempt_no, started_at = coalesce(r.started_at, v_now)
    from unnest(w_run, w_attempt_no[1:v_n]) as w(run, attempt_no)
   where r.run_id = w.run;
  insert into etl.run_events (run_id, pipeline_run_id, event_type, from_status, to_status, actor, detail)
  select w.run, w.pipeline, 'status', 'queued', 'running', claim.worker,
         pg_catalog.jsonb_build_object('attempt_no', w.attempt_no, 'token', w.attempt)
    from unnest(w_run, w_pipeline[1:v_n], w_attempt_no[1:v_n], w_attempt[1:v_n]) as w(run, pipeline, attempt_no, attempt);

  -- What the runner needs, in claim order. A group leader brings its members: one unit, one
  -- transaction, on this runner.
  return query
  select r.run_id, w.attempt, r.attempt_count, r.pipeline_run_id, r.job_id, j.slug, j.kind, j.target, r.params,
         case when j.supports_incremental and j.items_source is null then
           etl._cursor_for(j.job_id, j.cursor_lookback, r.parameter_fingerprint, r.mode) end,
         r.dry_run, r.mode, r.logical_date, r.correlation_id, r.max_attempts,
         (extract(epoch from j.timeout) * 1000)::bigint, v_now + w.lease, j.items_source, j.item_concurrency,
         r.group_id,
         case when r.group_id is not null then etl._group_claim_members(r.run_id, claim.worker, v_now, w.lease) end,
         exists (select 1 from etl.job_refresh_targets t where t.job_id = r.job_id)
    from unnest(w_run, w_attempt[1:v_n], w_lease[1:v_n]) with ordinality as w(run, attempt, lease, ord)
    join etl.runs r on r.run_id = w.run
    join etl.jobs j on j.job_id = r.job_id
   order by w.ord;
end;
$$;
comment on function etl.claim(text, integer) is
  'Claims up to max_runs runnable runs for runner worker: highest priority, then the oldest pipeline '
  'run, in it the longest remaining chain (runs.critical_path_ms), then the oldest runnable; never more '
  'running than settings.parallel_jobs (a slot pool), never two active locks on one concurrency key '
  '(default key: job slug and parameter fingerprint; a pool of concurrency_limit slots per key). '
  'Writes the attempt row and returns what the runner needs, with token (the attempt id, a fencing '
  'token for heartbeat and finish) and lease_expires_at. Claimers never wait on each other or on a '
  'finisher: the queue is scanned without row locks, a run another claimer is taking is passed over '
  'by its advisory lock, the runs kept are locked with SKIP LOCKED, and a batch is written one '
  'statement per table.';

create or replace function etl._refuse_stale_token(p_run_id bigint, p_status text, p_current bigint, p_token bigint)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_status <> 'running' and p_current is not distinct from p_token then
    raise exception 'stale_token: run % was already reported: it is %', p_run_id, p_status
      using errcode = 'ETL01', hint = 'a second report of the same attempt; drop this result';
  end if;
  raise exception 'stale_token: run % is % and its current attempt token is %, not %',
    p_run_id, p_status, coalesce(p_current::text, 'none'), p_token
    using errcode = 'ETL01', hint = 'the lease was lost or the run was reported already; drop this result';
end;
$$;
comment on function etl._refuse_stale_token(bigint, text, bigint, bigint) is
  'Raises ETL01 stale_token for a report whose token is not the current attempt of a running run. Internal.';

create or replace function etl._lock_current_attempt(p_run_id bigint, p_token bigint)
returns etl.runs
language plpgsql
set search_path = ''
as $$
declare
  v_run etl.runs;
  v_current bigint;
  v_row record;
begin
  -- One statement: the run locked, with the id of its current attempt.
  select r, a.attempt_id into v_row
    from etl.runs r left join etl.run_attempts a on a.run_id = r.run_id and a.attempt_no = r.attempt_count
   where r.run_id = p_run_id
     for update of r;
  v_run := v_row.r;
  v_current := v_row.attempt_id;
  if v_run.run_id is null then
    raise exception 'run % does not exist', p_run_id using errcode = 'invalid_parameter_value';
  end if;
  -- GUARD: only the current attempt of a running run may report (fencing).
  if v_run.status <> 'running' or v_current is distinct from p_token then
    perform etl._refuse_stale_token(p_run_id, v_run.status, v_current, p_token);
  end if;
  return v_run;
end;
$$;
comment on function etl._lock_current_attempt(bigint, bigint) is
  'Locks a running run and checks that token is its current attempt; raises ETL01 stale_token otherwise.';

create or replace function etl._attempt_is_current(p_run_id bigint, p_token bigint)
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform 1 from etl.run_attempts a
   where a.attempt_id = p_token and a.run_id = p_run_id and a.status = 'running';
  if not found then
    raise exception 'stale_token: attempt % of run % is not running', p_token, p_run_id
      using errcode = 'ETL01', hint = 'the lease was lost or the run was reported already; drop this result';
  end if;
end;
$$;
comment on function etl._attempt_is_current(bigint, bigint) is
  'Raises ETL01 unless token is the running attempt of the run (fencing without the run row lock). Internal.';

create or replace function etl.heartbeat(run_id bigint, token bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
set enable_seqscan = off  -- the lock by its attempt: an index probe (see etl.claim)
set jit = off  -- a disabled seq scan costs 1e10: JIT would compile it, 100 ms a call
as $$
declare
  v_run etl.runs;
  v_lease interval;
  v_expires timestamptz;
begin
  perform etl._assert_primary();
  v_run := etl._lock_current_attempt(heartbeat.run_id, heartbeat.token);
  select coalesce(j.lease_duration,
                  pg_catalog.make_interval(secs => (select (s.value #>> '{}')::float8 from etl.settings s
                                                     where s.name = 'default_lease_seconds')))
    into v_lease from etl.jobs j where j.job_id = v_run.job_id;
  v_expires := pg_catalog.clock_timestamp() + v_lease;
  update etl.job_locks l set expires_at = v_expires
   where l.attempt_id = heartbeat.token and l.status = 'active';
  update etl.run_attempts a set lease_expires_at = v_expires where a.attempt_id = heartbeat.token;
  return pg_catalog.jsonb_build_object('lease_expires_at', v_expires,
                                       'cancel_requested', v_run.cancel_requested_at is not null);
end;
$$;
comment on function etl.heartbeat(bigint, bigint) is
  'Extends the lease (lock and attempt) of a running run held with token; returns '
  '{"lease_expires_at": ..., "cancel_requested": bool}: a runner that sees cancel_requested stops '
  'the work and finishes the run as cancelled. A stale token raises ETL01.';
