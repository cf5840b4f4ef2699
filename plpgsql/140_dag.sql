-- The DAG: cycle refusal on edge insert, release of runs whose upstream succeeded, skipping the
-- descendants of a failed run, and closing a pipeline run when its last run ends.

create or replace function etl._refuse_dependency_cycle()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_ids bigint[];
  v_path text[];
begin
  -- Serialise edge inserts so two concurrent inserts cannot close a cycle between them.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('etl.job_dependencies'));
  -- A cycle exists when the new parent is reachable from the new child.
  with recursive walk(job_id, path) as (
    select new.child_job_id, array[new.child_job_id]
    union all
    select d.child_job_id, w.path || d.child_job_id
      from walk w join etl.job_dependencies d on d.parent_job_id = w.job_id
     where not d.child_job_id = any (w.path)
  )
  select w.path into v_ids from walk w where w.job_id = new.parent_job_id limit 1;
  if v_ids is not null then
    select pg_catalog.array_agg(j.slug order by p.ord) into v_path
      from pg_catalog.unnest(v_ids || new.child_job_id) with ordinality p(job_id, ord)
      join etl.jobs j on j.job_id = p.job_id;
    raise exception 'dependency_cycle: edge % -> % would close the cycle %',
      (select slug from etl.jobs where job_id = new.parent_job_id),
      (select slug from etl.jobs where job_id = new.child_job_id),
      pg_catalog.array_to_string(v_path, ' -> ')
      using errcode = 'check_violation';
  end if;
  return new;
end;
$$;
comment on function etl._refuse_dependency_cycle() is
  'Trigger on job_dependencies: refuses an edge that closes a cycle and names the cycle (slugs).';

create or replace function etl._latest_run_succeeded(p_job_id bigint)
returns boolean
language sql
stable
set search_path = ''
as $$
  -- The latest finished run is a success (or partial success): no failure ended after it, and no
  -- newer run is under way (its data is on the way: the child waits for it, and its success
  -- releases the child).
  -- Dry runs count for nothing: they changed no data.
  select exists (
    select 1
      from (select max(r.ended_at) as at from etl.runs r
             where r.job_id = p_job_id and r.status in ('success', 'partial_success') and not r.dry_run) s
     where s.at is not null
       and not exists (select 1 from etl.runs f
                        where f.job_id = p_job_id and f.status in ('failed', 'cancelled', 'skipped')
                          and f.ended_at > s.at and not f.dry_run)
       and not exists (select 1 from etl.runs q
                        where q.job_id = p_job_id and q.status in ('queued', 'running') and not q.dry_run))
$$;
comment on function etl._latest_run_succeeded(bigint) is
  'Seed 000''s "latest success per parent": true when the job''s most recent finished run succeeded '
  'and no newer run of it is queued or running (dry runs left out).';

-- Caller holds the run's row lock (FOR UPDATE), so concurrent parents cannot both miss the release.
create or replace function etl._try_release(p_run_id bigint)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_run record;
  v_limit interval;
begin
  select r.run_id, r.pipeline_run_id, r.job_id, r.status, r.wait_until, r.group_id, r.group_leader_run_id
    into v_run from etl.runs r where r.run_id = p_run_id;
  -- A group member is never queued on its own: it starts with its leader.
  if v_run.status is distinct from 'pending' or v_run.group_leader_run_id is not null then
    return false;
  end if;
  -- GUARD: a full refresh waiting for its approval runs nothing.
  if exists (select 1 from etl.pipeline_runs p
              where p.pipeline_run_id = v_run.pipeline_run_id and p.status = 'awaiting_approval') then
    return false;
  end if;
  -- GUARD: every parent in the same pipeline run has succeeded.
  if exists (select 1 from etl.run_dependencies d join etl.runs p on p.run_id = d.parent_run_id
              where d.child_run_id = p_run_id and p.status not in ('success', 'partial_success')) then
    return false;
  end if;
  -- GUARD: parents outside the pipeline run: their latest run must be a success.
  -- (A group leader answers for the outside parents of all its members: one EXISTS over the jobs
  -- the run answers for, each probing job_dependencies by child; the CASE looks up a parent's
  -- latest run only when the parent is outside the pipeline run.)
  if exists (select 1
               from (select v_run.job_id as job_id
                     union all
                     select m.job_id from etl.runs m
                      where v_run.group_id is not null and m.group_leader_run_id = p_run_id) c
               join etl.job_dependencies jd on jd.child_job_id = c.job_id
              where case when exists (select 1 from etl.runs pr
                                       where pr.pipeline_run_id = v_run.pipeline_run_id and pr.job_id = jd.parent_job_id)
                         then false
                         else not etl._latest_run_succeeded(jd.parent_job_id) end) then
    if v_run.wait_until is null then
      select coalesce(j.upstream_wait_limit,
                      pg_catalog.make_interval(secs => (select (s.value #>> '{}')::float8 from etl.settings s
                                                         where s.name = 'upstream_wait_limit_seconds')))
        into v_limit from etl.jobs j where j.job_id = v_run.job_id;
      update etl.runs set wait_until = pg_catalog.now() + v_limit where run_id = p_run_id;
    end if;
    return false;
  end if;
  update etl.runs
     set status = 'queued', queued_at = pg_catalog.clock_timestamp(), next_attempt_at = pg_catalog.clock_timestamp()
   where run_id = p_run_id;
  perform etl._record_transition(p_run_id, v_run.pipeline_run_id, 'pending', 'queued', null,
                                 '{"why": "upstream succeeded"}');
  return true;
end;
$$;
comment on function etl._try_release(bigint) is
  'Moves a pending run to queued when its parents in the pipeline run succeeded and the latest '
  'runs of its parents outside it are successes; otherwise starts its upstream wait limit.';

create or replace function etl._release_children(p_run_ids bigint[])
returns integer
language plpgsql
set search_path = ''
set plan_cache_mode = force_generic_plan  -- arrays: one cached plan, not one per call
set enable_hashjoin = off   -- lookups of a few runs by key: index probes only (see etl.claim)
set enable_mergejoin = off
set enable_seqscan = off
set jit = off  -- a disabled seq scan costs 1e10: JIT would compile it, 100 ms a call
as $$
declare
  v_child bigint;
  v_released integer := 0;
begin
  -- The children in the pipeline runs of these runs, and the runs triggered alone elsewhere that
  -- wait for these jobs' latest runs to succeed: each locked and looked at once, in id order (two
  -- finishers lock shared runs in the same order).
  for v_child in
    select d.child_run_id
      from pg_catalog.unnest(p_run_ids) p(run_id) join etl.run_dependencies d on d.parent_run_id = p.run_id
    union
    select w.run_id
      from etl.runs p
      join etl.job_dependencies jd on jd.parent_job_id = p.job_id
      join etl.runs w on w.job_id = jd.child_job_id
     where p.run_id = any (p_run_ids)
       and w.status = 'pending' and w.wait_until is not null and w.pipeline_run_id <> p.pipeline_run_id
     order by 1
  loop
    perform 1 from etl.runs where run_id = v_child for update;
    if etl._try_release(v_child) then
      v_released := v_released + 1;
    end if;
  end loop;
  return v_released;
end;
$$;
comment on function etl._release_children(bigint[]) is
  'After these runs succeeded: releases the runs that were waiting only for them (their children in '
  'their pipeline runs, and runs elsewhere waiting on their jobs); returns how many.';

create or replace function etl._skip_descendants(p_run_id bigint, p_reason text)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_row record;
  v_count integer := 0;
begin
  for v_row in
    with recursive down(run_id) as (
      select d.child_run_id from etl.run_dependencies d where d.parent_run_id = p_run_id
      union
      select d.child_run_id from etl.run_dependencies d join down on d.parent_run_id = down.run_id
    )
    select r.run_id, r.pipeline_run_id, r.status
      from etl.runs r join down using (run_id)
     where r.status in ('pending', 'queued')
     order by r.run_id
       for update of r
  loop
    update etl.runs
       set status = 'skipped', ended_at = pg_catalog.clock_timestamp(), skip_reason = p_reason
     where run_id = v_row.run_id;
    perform etl._record_transition(v_row.run_id, v_row.pipeline_run_id, v_row.status, 'skipped', null,
                                   pg_catalog.jsonb_build_object('reason', p_reason, 'upstream_run_id', p_run_id));
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function etl._skip_descendants(bigint, text) is
  'Marks every not-yet-started descendant of a run in its pipeline run skipped, with the reason.';

create or replace function etl._finalize_pipeline(p_pipeline_run_id bigint)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_status text;
  v_counts record;
begin
  -- Cheap exit: a sibling that has not started yet will finalize later.
  if exists (select 1 from etl.runs where pipeline_run_id = p_pipeline_run_id
                                      and status in ('pending', 'queued')) then
    return null;
  end if;
  -- Two last finishers each see the other's run still running: they take turns on the pipeline
  -- run's advisory lock, and the second looks again with the first one's commit visible. (A lock in
  -- memory: most finishes stop here, with siblings still running, and write nothing more.)
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('etl.pipeline_runs'), (p_pipeline_run_id % 2147483648)::integer);
  if exists (select 1 from etl.runs where pipeline_run_id = p_pipeline_run_id
                                      and status in ('pending', 'queued', 'running')) then
    return null;
  end if;
  select status into v_status from etl.pipeline_runs where pipeline_run_id = p_pipeline_run_id for update;
  if v_status not in ('queued', 'running', 'awaiting_approval') then
    return v_status;
  end if;
  select count(*) filter (where status in ('pending', 'queued', 'running')) as open,
         count(*) filter (where status = 'failed') as failed,
         count(*) filter (where status = 'cancelled') as cancelled,
         count(*) filter (where status = 'skipped') as skipped,
         count(*) filter (where status = 'partial_success') as partial,
         count(*) as total
    into v_counts
    from etl.runs where pipeline_run_id = p_pipeline_run_id;
  if v_counts.open > 0 then
    return null;
  end if;
  v_status := case
    when v_counts.failed > 0 then 'failed'
    when v_counts.cancelled > 0 then 'cancelled'
    when v_counts.total > 0 and v_counts.skipped = v_counts.total then 'skipped'
    when v_counts.partial > 0 or v_counts.skipped > 0 then 'partial_success'
    else 'success' end;
  update etl.pipeline_runs set status = v_status, ended_at = pg_catalog.clock_timestamp()
   where pipeline_run_id = p_pipeline_run_id;
  return v_status;
end;
$$;
comment on function etl._finalize_pipeline(bigint) is
  'Closes a pipeline run once none of its runs is pending, queued or running: failed if any run '
  'failed, else cancelled, else partial_success if any run was partial or skipped, else success.';
