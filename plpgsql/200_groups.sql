-- Groups under transaction scope per_group: the selected members of a job group run in sequence
-- in one transaction, claimed as one unit. The run of the first member (the leader) stands for the
-- unit in the DAG: it carries the members' outside parents, takes the slot and the lock, and the
-- other members follow its status. Members keep their own outside children, released when they
-- succeed.

-- Called by etl._create_pipeline_run for a per_group pipeline run, after the edges are in place.
create or replace function etl._form_groups(p_pipeline_run_id bigint)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_group record;
  v_bad record;
  v_not_sql text;
  v_count integer := 0;
begin
  -- A group with a single selected member is just a run.
  update etl.runs r set group_id = null
   where r.run_id in (select min(o.run_id) from etl.runs o
                       where o.pipeline_run_id = p_pipeline_run_id and o.group_id is not null
                       group by o.group_id having count(*) = 1);

  for v_group in
    select r.group_id, g.name,
           (pg_catalog.array_agg(r.run_id order by m.sequence))[1] as leader,
           pg_catalog.array_agg(r.run_id order by m.sequence) as members
      from etl.runs r
      join etl.job_group_members m on m.group_id = r.group_id and m.job_id = r.job_id
      join etl.job_groups g on g.group_id = r.group_id
     where r.pipeline_run_id = p_pipeline_run_id and r.group_id is not null
     group by r.group_id, g.name
     order by r.group_id
  loop
    -- GUARD: one transaction holds SQL only; a Python extract cannot be rolled back with it.
    select pg_catalog.string_agg(j.slug, ', ' order by j.slug) into v_not_sql
      from etl.runs r join etl.jobs j on j.job_id = r.job_id
     where r.run_id = any (v_group.members) and j.kind <> 'sql';
    if v_not_sql is not null then
      raise exception 'group %: per_group runs SQL jobs in one transaction; % % not SQL (run it per_procedure, or take them out of the group)',
        v_group.name, v_not_sql, case when v_not_sql like '%,%' then 'are' else 'is' end
        using errcode = 'invalid_parameter_value';
    end if;
    -- GUARD: inside the unit the sequence is the order, so it must agree with every edge.
    select pj.slug as parent, pm.sequence as parent_seq, cj.slug as child, cm.sequence as child_seq into v_bad
      from etl.run_dependencies d
      join etl.runs p on p.run_id = d.parent_run_id join etl.jobs pj on pj.job_id = p.job_id
      join etl.job_group_members pm on pm.group_id = v_group.group_id and pm.job_id = p.job_id
      join etl.runs c on c.run_id = d.child_run_id join etl.jobs cj on cj.job_id = c.job_id
      join etl.job_group_members cm on cm.group_id = v_group.group_id and cm.job_id = c.job_id
     where d.parent_run_id = any (v_group.members) and d.child_run_id = any (v_group.members)
       and pm.sequence >= cm.sequence
     limit 1;
    if found then
      raise exception 'group %: % (sequence %) must run before % (sequence %), which depends on it; fix the sequences',
        v_group.name, v_bad.parent, v_bad.parent_seq, v_bad.child, v_bad.child_seq
        using errcode = 'check_violation';
    end if;
    -- Outside parents of any member become parents of the leader; edges inside the unit go.
    insert into etl.run_dependencies (pipeline_run_id, parent_run_id, child_run_id, dependency_type)
    select distinct p_pipeline_run_id, d.parent_run_id, v_group.leader, 'group'
      from etl.run_dependencies d
     where d.child_run_id = any (v_group.members) and d.child_run_id <> v_group.leader
       and not d.parent_run_id = any (v_group.members)
    on conflict do nothing;
    delete from etl.run_dependencies d
     where d.child_run_id = any (v_group.members)
       and (d.child_run_id <> v_group.leader or d.parent_run_id = any (v_group.members));
    update etl.runs r set group_leader_run_id = v_group.leader
     where r.run_id = any (v_group.members) and r.run_id <> v_group.leader;
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function etl._form_groups(bigint) is
  'Makes each job group of a per_group pipeline run one unit: the first member by sequence leads, '
  'the members'' outside parents become the leader''s, edges inside the unit are dropped (the '
  'sequence orders them; an edge against the sequence is an error). Internal.';

-- Called by etl.claim when it claims a leader: the members start with it, on the same worker.
create or replace function etl._group_claim_members(
  p_leader_run_id bigint, p_worker text, p_now timestamptz, p_lease interval)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_member record;
  v_attempt bigint;
  v_list jsonb := '[]';
begin
  for v_member in
    select r.*, j.slug, j.kind, j.target, j.timeout, m.sequence,
           case when j.supports_incremental
                then etl._cursor_for(j.job_id, j.cursor_lookback, r.parameter_fingerprint, r.mode) end as cursor
      from etl.runs r join etl.jobs j on j.job_id = r.job_id
      join etl.job_group_members m on m.group_id = r.group_id and m.job_id = r.job_id
     where r.group_leader_run_id = p_leader_run_id and r.status = 'pending'
     order by m.sequence
       for update of r
  loop
    insert into etl.run_attempts (run_id, attempt_no, worker_id, claimed_at, started_at, lease_expires_at)
    values (v_member.run_id, v_member.attempt_count + 1, p_worker, p_now, p_now, p_now + p_lease)
    returning attempt_id into v_attempt;
    update etl.runs r
       set status = 'running', attempt_count = v_member.attempt_count + 1,
           started_at = coalesce(r.started_at, p_now), queued_at = coalesce(r.queued_at, p_now)
     where r.run_id = v_member.run_id;
    perform etl._record_transition(v_member.run_id, v_member.pipeline_run_id, 'pending', 'running', p_worker,
      pg_catalog.jsonb_build_object('attempt_no', v_member.attempt_count + 1, 'group_leader_run_id', p_leader_run_id));
    v_list := v_list || pg_catalog.jsonb_build_object(
      'run_id', v_member.run_id, 'token', v_attempt, 'job_slug', v_member.slug, 'kind', v_member.kind,
      'target', v_member.target, 'params', v_member.params, 'cursor', v_member.cursor,
      'sequence', v_member.sequence, 'timeout_ms', (extract(epoch from v_member.timeout) * 1000)::bigint,
      'refreshes', exists (select 1 from etl.job_refresh_targets t where t.job_id = v_member.job_id));
  end loop;
  return v_list;
end;
$$;
comment on function etl._group_claim_members(bigint, text, timestamptz, interval) is
  'Starts the other members of a claimed group leader: an attempt each, running, and returns them '
  'in sequence for the runner. Internal to etl.claim.';

-- The members follow their leader: called by etl._finish for the leader's outcome, and by the
-- trigger below for every other change of the leader's status.
create or replace function etl._group_follow(p_leader etl.runs, p_status text, p_outcome jsonb, p_actor text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_member etl.runs;
  v_report jsonb;
  v_to text;
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_job etl.jobs;
  v_leader_slug text;
  v_message text;
  v_category text;
begin
  select j.slug into v_leader_slug from etl.jobs j where j.job_id = p_leader.job_id;
  for v_member in
    select r.* from etl.runs r
     where r.group_leader_run_id = p_leader.run_id
     order by r.run_id
       for update
  loop
    v_to := case when p_status = 'queued' then 'pending' else p_status end;
    continue when v_member.status = v_to;
    -- Only the moves a member can make with its leader.
    continue when not (
         (v_member.status = 'running' and v_to in ('pending', 'success', 'partial_success', 'failed', 'cancelled'))
      or (v_member.status = 'pending' and v_to in ('skipped', 'cancelled'))
      or (v_member.status in ('failed', 'skipped', 'cancelled') and v_to = 'pending'));
    select r -> 0 into v_report
      from (select pg_catalog.jsonb_path_query_array(coalesce(p_outcome -> 'members', '[]'),
                                                     '$[*] ? (@.run_id == $id)',
                                                     pg_catalog.jsonb_build_object('id', v_member.run_id)) r) t;
    v_category := coalesce(v_report ->> 'error_category', p_outcome ->> 'error_category', 'SYSTEM');
    v_message := coalesce(v_report ->> 'message',
                          pg_catalog.format('rolled back with its group (leader %s run %s): %s', v_leader_slug,
                                            p_leader.run_id, coalesce(p_outcome ->> 'message', p_status)));

    if v_member.status = 'running' then
      update etl.run_attempts a
         set status = case when v_to = 'pending' then 'failed' else v_to end, ended_at = v_now,
             duration_ms = (extract(epoch from v_now - a.started_at) * 1000)::bigint,
             error_category = case when v_to <> 'success' then v_category end,
             error_type = case when v_to <> 'success' then coalesce(v_report ->> 'error_type', 'group_rolled_back') end,
             error_message = case when v_to <> 'success' then v_message end,
             rows_affected = (v_report ->> 'rows_affected')::bigint,
             records_written = (v_report ->> 'records_written')::bigint,
             metrics = coalesce(v_report -> 'metrics', '{}')
       where a.run_id = v_member.run_id and a.attempt_no = v_member.attempt_count and a.status = 'running';
    end if;

    if v_to = 'pending' then
      update etl.runs r
         set status = 'pending', ended_at = null, duration_ms = null, skip_reason = null,
             max_attempts = case when v_member.status = 'running' then r.max_attempts
                                 else r.attempt_count + (select j.max_attempts from etl.jobs j where j.job_id = r.job_id) end,
             error_category = case when v_member.status = 'running' then v_category end,
             error_type = case when v_member.status = 'running' then 'group_retry' end,
             error_message = case when v_member.status = 'running' then v_message end,
             is_transient = null, cancel_requested_at = null
       where r.run_id = v_member.run_id;
    else
      update etl.runs r
         set status = v_to, ended_at = v_now,
             duration_ms = case when r.started_at is not null
                                then (extract(epoch from v_now - r.started_at) * 1000)::bigint end,
             error_category = case when v_to in ('failed', 'partial_success') then v_category end,
             error_type = case when v_to in ('failed', 'cancelled') then coalesce(v_report ->> 'error_type', 'group_rolled_back') end,
             error_message = case when v_to in ('failed', 'cancelled') then v_message end,
             is_transient = case when v_to = 'failed' then false end,
             skip_reason = case when v_to in ('skipped', 'cancelled')
                                then pg_catalog.format('group leader %s run %s %s', v_leader_slug, p_leader.run_id, v_to) end,
             rows_affected = (v_report ->> 'rows_affected')::bigint,
             records_written = (v_report ->> 'records_written')::bigint,
             sql_executed = coalesce(v_report ->> 'sql_executed', r.sql_executed),
             lineage = coalesce(v_report -> 'lineage', r.lineage),
             metrics = coalesce(v_report -> 'metrics', r.metrics),
             next_attempt_at = null
       where r.run_id = v_member.run_id;
    end if;
    perform etl._record_transition(v_member.run_id, v_member.pipeline_run_id, v_member.status, v_to,
      coalesce(p_actor, session_user::text),
      pg_catalog.jsonb_build_object('group_leader_run_id', p_leader.run_id, 'leader_status', p_status));

    if v_to in ('success', 'partial_success') then
      select j.* into v_job from etl.jobs j where j.job_id = v_member.job_id;
      if v_job.supports_incremental and not v_member.dry_run then
        perform etl._advance_cursor(v_job, v_member, v_member.parameter_fingerprint, v_member.params,
                                    v_report -> 'cursor');
      end if;
      perform etl._release_children(array[v_member.run_id]);
    elsif v_to in ('failed', 'skipped', 'cancelled') then
      perform etl._skip_descendants(v_member.run_id,
        pg_catalog.format('upstream group member run %s %s', v_member.run_id, v_to));
    end if;
  end loop;
end;
$$;
comment on function etl._group_follow(etl.runs, text, jsonb, text) is
  'Moves the members of a group with their leader''s new status: success (each with its own '
  'report from outcome.members, children released, cursor advanced), failed or cancelled (rolled '
  'back with the cause, descendants skipped), skipped, or back to pending (a retry). Internal.';

create or replace function etl._group_leader_moved()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Claim and finish move the members themselves (they know the worker and the reports).
  if old.status <> 'running' and new.status <> 'running'
     and not (old.status = 'pending' and new.status = 'queued')
     and not (old.status = 'queued' and new.status = 'pending') then
    perform etl._group_follow(new, new.status, '{}', null);
  end if;
  return null;
end;
$$;
comment on function etl._group_leader_moved() is
  'Trigger on a group leader''s status: skipped, cancelled or re-opened, its members follow.';
