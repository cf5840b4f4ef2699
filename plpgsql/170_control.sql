-- Operator controls: cancel, retry, settings, and the runner's wake-up time.

create or replace function etl._require_reason(p_reason text, p_action text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- GUARD: every manual action is audited with its reason.
  if coalesce(pg_catalog.btrim(p_reason), '') = '' then
    raise exception 'reason is required to %', p_action using errcode = 'invalid_parameter_value';
  end if;
end;
$$;
comment on function etl._require_reason(text, text) is
  'Raises 22023 "reason is required to <action>" when an operator action comes without a reason.';

create or replace function etl.cancel(run_id bigint, reason text)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run etl.runs;
begin
  perform etl._assert_primary();
  perform etl._require_reason(cancel.reason, 'cancel a run');
  select r.* into v_run from etl.runs r where r.run_id = cancel.run_id for update;
  if not found then
    raise exception 'run % does not exist', cancel.run_id using errcode = 'invalid_parameter_value';
  end if;
  -- A waiting group member cannot be left out of its group's transaction: the group is cancelled.
  if v_run.group_leader_run_id is not null and v_run.status = 'pending' then
    return etl.cancel(v_run.group_leader_run_id, cancel.reason);
  end if;
  -- Audited when it changes something: a finished run is returned as it is.
  if v_run.status in ('pending', 'queued', 'running') then
    insert into etl.audit_log (action, target_type, target_id, reason, details)
    values ('cancel', 'run', cancel.run_id::text, cancel.reason, pg_catalog.jsonb_build_object('status', v_run.status));
  end if;
  if v_run.status in ('pending', 'queued') then
    update etl.runs r set status = 'cancelled', ended_at = pg_catalog.now(), skip_reason = cancel.reason
     where r.run_id = cancel.run_id;
    perform etl._record_transition(cancel.run_id, v_run.pipeline_run_id, v_run.status, 'cancelled', null,
                                   pg_catalog.jsonb_build_object('reason', cancel.reason));
    perform etl._skip_descendants(cancel.run_id, pg_catalog.format('upstream run %s cancelled', cancel.run_id));
    perform etl._finalize_pipeline(v_run.pipeline_run_id);
    return 'cancelled';
  elsif v_run.status = 'running' then
    -- The runner sees it on its next heartbeat and finishes the run as cancelled (a group member:
    -- its leader, which the runner heartbeats, cancels the whole group).
    update etl.runs r set cancel_requested_at = pg_catalog.now()
     where r.run_id in (cancel.run_id, v_run.group_leader_run_id);
    perform etl._record_transition(cancel.run_id, v_run.pipeline_run_id, 'running', 'running', null,
                                   pg_catalog.jsonb_build_object('reason', cancel.reason), 'cancel_requested');
    return 'cancel_requested';
  end if;
  return v_run.status;
end;
$$;
comment on function etl.cancel(bigint, text) is
  'Cancels a run: pending or queued runs at once (their descendants are skipped), running ones are '
  'marked for cancellation and stopped by their runner at the next heartbeat. Audited; returns '
  'cancelled, cancel_requested, or the run''s unchanged final status.';

create or replace function etl.cancel_pipeline(pipeline_run_id bigint, reason text)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run bigint;
  v_open bigint[];
  v_count integer := 0;
begin
  perform etl._assert_primary();
  perform etl._require_reason(cancel_pipeline.reason, 'cancel a pipeline run');
  perform 1 from etl.pipeline_runs p where p.pipeline_run_id = cancel_pipeline.pipeline_run_id for update;
  if not found then
    raise exception 'pipeline run % does not exist', cancel_pipeline.pipeline_run_id
      using errcode = 'invalid_parameter_value';
  end if;
  select pg_catalog.array_agg(r.run_id order by r.run_id) into v_open from etl.runs r
   where r.pipeline_run_id = cancel_pipeline.pipeline_run_id and r.status in ('pending', 'queued', 'running');
  foreach v_run in array coalesce(v_open, '{}') loop
    -- (A run an earlier cancel in this loop skipped is no longer open: etl.cancel leaves it be.)
    perform etl.cancel(v_run, cancel_pipeline.reason);
  end loop;
  -- Every run that was open and is now closed (cancelled, or skipped as a cancelled run's
  -- descendant) or asked to stop (running).
  select pg_catalog.count(*) into v_count from etl.runs r
   where r.run_id = any (coalesce(v_open, '{}'))
     and (r.status not in ('pending', 'queued', 'running') or r.cancel_requested_at is not null);
  if v_count > 0 then
    insert into etl.audit_log (action, target_type, target_id, reason, details)
    values ('cancel_pipeline', 'pipeline_run', cancel_pipeline.pipeline_run_id::text, cancel_pipeline.reason,
            pg_catalog.jsonb_build_object('runs_closed_or_asked_to_stop', v_count));
  end if;
  return v_count;
end;
$$;
comment on function etl.cancel_pipeline(bigint, text) is
  'Cancels every unfinished run of a pipeline run (see etl.cancel); returns how many of its open runs '
  'it closed (cancelled, or skipped as a cancelled run''s descendants) or asked to stop (running). '
  'Reason required; audited once for the pipeline run (and per run) when something was open.';

create or replace function etl._reopen_run(p_run etl.runs, p_reason text, p_as_root boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_to text;
  v_attempts integer;
begin
  select j.max_attempts into v_attempts from etl.jobs j where j.job_id = p_run.job_id;
  v_to := case when p_as_root then 'queued' else 'pending' end;
  update etl.runs r
     set status = v_to, ended_at = null, duration_ms = null,
         queued_at = case when p_as_root then pg_catalog.now() end,
         next_attempt_at = case when p_as_root then pg_catalog.now() end,
         max_attempts = r.attempt_count + v_attempts, wait_until = null, cancel_requested_at = null,
         error_category = null, is_transient = null, error_type = null, error_message = null, skip_reason = null
   where r.run_id = p_run.run_id;
  -- Its items that did not succeed run again; the successes are kept.
  update etl.run_items i
     set status = 'pending', ended_at = null, duration_ms = null, error_category = null, is_transient = null,
         error_type = null, error_message = null
   where i.run_id = p_run.run_id and i.status in ('failed', 'skipped', 'cancelled');
  perform etl._record_transition(p_run.run_id, p_run.pipeline_run_id, p_run.status, v_to, null,
                                 pg_catalog.jsonb_build_object('retry', true, 'reason', p_reason));
end;
$$;
comment on function etl._reopen_run(etl.runs, text, boolean) is
  'Starts a new attempt path for a run that did not succeed: a fresh budget of max_attempts; its '
  'items that did not succeed are pending again.';

create or replace function etl._has_items_to_retry(p_run etl.runs)
returns boolean
language sql
stable
set search_path = ''
as $$
  select p_run.status = 'partial_success'
     and exists (select 1 from etl.run_items i
                  where i.run_id = p_run.run_id and i.status in ('failed', 'skipped', 'cancelled'))
$$;
comment on function etl._has_items_to_retry(etl.runs) is
  'A partial success with items that did not succeed: etl.retry re-runs those items (the successes are kept).';

create or replace function etl._refuse_unapproved_retry(p_pipeline_run_id bigint)
returns void
language plpgsql
set search_path = ''
as $$
begin
  -- GUARD: a full refresh runs only as approved; one never approved (rejected while it waited)
  -- cannot be brought back by a retry.
  if exists (select 1 from etl.pipeline_runs p
              where p.pipeline_run_id = p_pipeline_run_id and p.mode = 'full' and not p.full_refresh_confirmed) then
    raise exception 'pipeline run % is a full refresh that was never approved: trigger a new one (with an approval)',
      p_pipeline_run_id using errcode = 'object_not_in_prerequisite_state';
  end if;
end;
$$;
comment on function etl._refuse_unapproved_retry(bigint) is
  'Raises 55000 when the pipeline run is a full refresh that was never approved (retry cannot revive it).';

create or replace function etl.retry(run_id bigint, reason text)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run etl.runs;
  v_child etl.runs;
  v_up record;
  v_count integer := 1;
begin
  perform etl._assert_primary();
  perform etl._require_reason(retry.reason, 'retry a run');
  select r.* into v_run from etl.runs r where r.run_id = retry.run_id for update;
  if not found then
    raise exception 'run % does not exist', retry.run_id using errcode = 'invalid_parameter_value';
  end if;
  -- A group member runs with its group: retrying it retries the group.
  if v_run.group_leader_run_id is not null then
    return etl.retry(v_run.group_leader_run_id, retry.reason);
  end if;
  if not (v_run.status in ('failed', 'cancelled', 'skipped') or etl._has_items_to_retry(v_run)) then
    raise exception 'run % is %: only failed, cancelled or skipped runs can be retried (or a partial success, for its items that did not succeed)',
      retry.run_id, v_run.status using errcode = 'object_not_in_prerequisite_state';
  end if;
  -- GUARD: a run whose parent in the pipeline run ended without success would wait for good.
  select p.run_id, j.slug, p.status into v_up
    from etl.run_dependencies d join etl.runs p on p.run_id = d.parent_run_id join etl.jobs j on j.job_id = p.job_id
   where d.child_run_id = retry.run_id and p.status in ('failed', 'cancelled', 'skipped')
   order by p.run_id limit 1;
  if found then
    raise exception 'run % waits for upstream run % (%, %): retry run % instead, it re-opens the runs it skipped',
      retry.run_id, v_up.run_id, v_up.slug, v_up.status, v_up.run_id using errcode = 'object_not_in_prerequisite_state';
  end if;
  perform etl._refuse_unapproved_retry(v_run.pipeline_run_id);
  update etl.pipeline_runs p set status = 'running', ended_at = null
   where p.pipeline_run_id = v_run.pipeline_run_id;
  perform etl._reopen_run(v_run, retry.reason, false);
  -- A group leader's members followed it (etl._group_leader_moved): they count as re-opened too.
  v_count := v_count + (select pg_catalog.count(*)::integer from etl.runs m where m.group_leader_run_id = retry.run_id);
  perform etl._try_release(retry.run_id);
  -- Its descendants that were skipped because of it wait again.
  for v_child in
    with recursive down(run_id) as (
      -- (the members of a group it leads have children of their own)
      select d.child_run_id from etl.run_dependencies d
       where d.parent_run_id = retry.run_id
          or d.parent_run_id in (select m.run_id from etl.runs m where m.group_leader_run_id = retry.run_id)
      union
      select d.child_run_id from etl.run_dependencies d join down on d.parent_run_id = down.run_id
    )
    select r.* from etl.runs r join down using (run_id) where r.status = 'skipped' order by r.run_id for update of r
  loop
    perform etl._reopen_run(v_child, retry.reason, false);
    v_count := v_count + 1;
  end loop;
  insert into etl.audit_log (action, target_type, target_id, reason, details)
  values ('retry', 'run', retry.run_id::text, retry.reason,
          pg_catalog.jsonb_build_object('previous_status', v_run.status, 'runs_reopened', v_count));
  return v_count;
end;
$$;
comment on function etl.retry(bigint, text) is
  'Retries a failed, cancelled or skipped run, or a partial success for its items that did not '
  'succeed, with a fresh attempt budget (attempt numbers continue), and re-opens its skipped descendants. Refused (55000, naming the run to retry) when a parent in its '
  'pipeline run ended without success: the run would wait for good. Audited; returns the number of '
  'runs re-opened.';

create or replace function etl.retry_pipeline(pipeline_run_id bigint, reason text)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run etl.runs;
  v_count integer := 0;
begin
  perform etl._assert_primary();
  perform etl._require_reason(retry_pipeline.reason, 'retry a pipeline run');
  perform 1 from etl.pipeline_runs p where p.pipeline_run_id = retry_pipeline.pipeline_run_id for update;
  if not found then
    raise exception 'pipeline run % does not exist', retry_pipeline.pipeline_run_id using errcode = 'invalid_parameter_value';
  end if;
  perform etl._refuse_unapproved_retry(retry_pipeline.pipeline_run_id);
  -- Keep the successes; re-open what failed or never ran.
  for v_run in
    select r.* from etl.runs r
     where r.pipeline_run_id = retry_pipeline.pipeline_run_id
       and (r.status in ('failed', 'cancelled', 'skipped') or etl._has_items_to_retry(r))
     order by r.run_id for update
  loop
    perform etl._reopen_run(v_run, retry_pipeline.reason, false);
    v_count := v_count + 1;
  end loop;
  if v_count > 0 then
    update etl.pipeline_runs p set status = 'running', ended_at = null
     where p.pipeline_run_id = retry_pipeline.pipeline_run_id;
    for v_run in
      select r.* from etl.runs r where r.pipeline_run_id = retry_pipeline.pipeline_run_id and r.status = 'pending'
       order by r.run_id
    loop
      perform etl._try_release(v_run.run_id);
    end loop;
  end if;
  insert into etl.audit_log (action, target_type, target_id, reason, details)
  values ('retry_pipeline', 'pipeline_run', retry_pipeline.pipeline_run_id::text, retry_pipeline.reason,
          pg_catalog.jsonb_build_object('runs_reopened', v_count));
  return v_count;
end;
$$;
comment on function etl.retry_pipeline(bigint, text) is
  'Retries a pipeline run from its failed step: re-opens only its failed, cancelled and skipped runs '
  '(successes are kept) and releases those whose upstream succeeded. Audited; returns how many.';

create or replace function etl.set_setting(name text, value jsonb, reason text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old etl.settings;
  v_num numeric;
begin
  perform etl._assert_primary();
  perform etl._require_reason(set_setting.reason, 'change a setting');
  select s.* into v_old from etl.settings s where s.name = set_setting.name for update;
  if not found then
    raise exception 'unknown setting "%" (known: %)', set_setting.name,
      (select pg_catalog.string_agg(s.name, ', ' order by s.name) from etl.settings s)
      using errcode = 'invalid_parameter_value';
  end if;
  if set_setting.value is null or set_setting.value = 'null' then
    raise exception 'setting "%" needs a value, got null', set_setting.name using errcode = 'invalid_parameter_value';
  end if;
  if pg_catalog.jsonb_typeof(v_old.value) <> pg_catalog.jsonb_typeof(set_setting.value) then
    raise exception 'setting "%" takes a %, got %', set_setting.name, pg_catalog.jsonb_typeof(v_old.value),
      set_setting.value using errcode = 'invalid_parameter_value';
  end if;
  if pg_catalog.jsonb_typeof(set_setting.value) = 'number' then
    v_num := (set_setting.value #>> '{}')::numeric;
    if v_num <> pg_catalog.trunc(v_num) or v_num < v_old.min_value or v_num > v_old.max_value then
      raise exception 'setting "%" must be a whole number between % and %, got %', set_setting.name,
        v_old.min_value, v_old.max_value, set_setting.value using errcode = 'invalid_parameter_value';
    end if;
    -- Stored as the whole number it is (30, not 30.0): readers cast the text to integer.
    set_setting.value := pg_catalog.to_jsonb(v_num::bigint);
  end if;
  update etl.settings s set value = set_setting.value, updated_at = pg_catalog.now(), updated_by = session_user
   where s.name = set_setting.name;
  if set_setting.name = 'parallel_jobs' then
    perform etl._resize_slots(v_num::integer);
  end if;
  insert into etl.audit_log (action, target_type, target_id, reason, details)
  values ('set_setting', 'setting', set_setting.name, set_setting.reason,
          pg_catalog.jsonb_build_object('old', v_old.value, 'new', set_setting.value));
  return pg_catalog.jsonb_build_object('name', set_setting.name, 'old', v_old.value, 'new', set_setting.value,
                                       'effective_at', pg_catalog.now());
end;
$$;
comment on function etl.set_setting(text, jsonb, text) is
  'Changes a setting after validating its type and bounds (parallel_jobs: 1..10000, effective at '
  'once for new claims); reason is required and the change is audited with old and new values.';

create or replace function etl.set_job_enabled(job text, enabled boolean, reason text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job etl.jobs;
begin
  perform etl._assert_primary();
  if set_job_enabled.enabled is null then
    raise exception 'enabled must be true or false, got null' using errcode = 'invalid_parameter_value';
  end if;
  perform etl._require_reason(set_job_enabled.reason,
                              case when set_job_enabled.enabled then 'enable a job' else 'disable a job' end);
  select j.* into v_job from etl.jobs j where j.slug = set_job_enabled.job for update;
  if not found then
    raise exception 'unknown job "%"', set_job_enabled.job using errcode = 'invalid_parameter_value';
  end if;
  update etl.jobs j set enabled = set_job_enabled.enabled, updated_at = pg_catalog.now()
   where j.job_id = v_job.job_id;
  insert into etl.audit_log (action, target_type, target_id, reason, details)
  values (case when set_job_enabled.enabled then 'enable' else 'disable' end, 'job', set_job_enabled.job,
          set_job_enabled.reason,
          pg_catalog.jsonb_build_object('job_id', v_job.job_id, 'old', v_job.enabled, 'new', set_job_enabled.enabled));
  return v_job.enabled;
end;
$$;
comment on function etl.set_job_enabled(text, boolean, text) is
  'Enables or disables a job by slug (a disabled job is left out of schedules and tag/layer '
  'selections); reason is required and the change is audited with old and new values. Returns '
  'what enabled was before.';

create or replace function etl.audit_definition_change(action text, details jsonb)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id bigint;
begin
  if audit_definition_change.action is null or audit_definition_change.action not in ('apply', 'import_matviews') then
    raise exception 'action must be apply or import_matviews, got %', coalesce('"' || audit_definition_change.action || '"', 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  insert into etl.audit_log (action, target_type, target_id, details)
  values (audit_definition_change.action, 'definition', null, coalesce(audit_definition_change.details, '{}'))
  returning audit_id into v_id;
  return v_id;
end;
$$;
comment on function etl.audit_definition_change(text, jsonb) is
  'The audit row of a change to job definitions (etl apply, etl import matviews), written under the '
  'session user: admins write the catalog tables, but not the audit log, where they could sign as '
  'someone else. Returns the audit id.';

create or replace function etl.next_wakeup()
returns timestamptz
language sql
stable
security definer
set search_path = ''
as $$
  -- Only the future: a run that is due but waits for a slot or its concurrency key is claimed
  -- when they are freed (by the finisher's own claim, or after its NOTIFY), not by polling.
  select pg_catalog.min(r.next_attempt_at) from etl.runs r
   where r.status = 'queued' and r.next_attempt_at > pg_catalog.now()
$$;
comment on function etl.next_wakeup() is
  'When the next queued run in backoff becomes claimable (the end of the shortest backoff still to '
  'come); NULL when none is. A runner sleeps until then or until a NOTIFY on etl_runnable.';

create or replace function etl.next_lease_expiry(spare bigint[] default null)
returns timestamptz
language sql
stable
security definer
set search_path = ''
as $$
  -- Every lock is deleted when its run ends, so the active ones are all there is: one probe
  -- (and the next ones while they are the worker's own).
  select l.expires_at from etl.job_locks l
   where l.status = 'active' and (next_lease_expiry.spare is null or not l.attempt_id = any (next_lease_expiry.spare))
   order by l.expires_at limit 1
$$;
comment on function etl.next_lease_expiry(bigint[]) is
  'When the earliest active lease ends (past if one already has, unreaped), leaving out the attempts '
  '(tokens) in spare, the asking runner''s own; NULL when there is none. A runner with free slots '
  'wakes then and calls etl.reap_expired_leases(worker, spare) when it has passed: heartbeats push live leases back, so only a '
  'dead runner''s lease is ever reached.';

create or replace function etl._approval_by_another_user()
returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce((select s.value = 'true'::jsonb from etl.settings s where s.name = 'approval_by_another_user'), false)
$$;
comment on function etl._approval_by_another_user() is
  'The setting approval_by_another_user: full refreshes need an approver other than the requester. Internal.';

create or replace function etl.approve(pipeline_run_id bigint, reason text, approver text default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pr etl.pipeline_runs;
  v_approver text := coalesce(nullif(approve.approver, ''), session_user::text);
  v_released integer;
begin
  perform etl._assert_primary();
  perform etl._require_reason(approve.reason, 'approve a full refresh');
  select p.* into v_pr from etl.pipeline_runs p where p.pipeline_run_id = approve.pipeline_run_id for update;
  -- Four eyes, when the setting asks for them: the approver is who is logged in, and not the requester.
  if found and etl._approval_by_another_user() then
    if v_approver <> session_user::text then
      raise exception 'approver "%" is not you: with approval_by_another_user on, an approval is recorded under the database user who gives it (%)',
        v_approver, session_user using errcode = 'insufficient_privilege';
    end if;
    if v_pr.requested_by = session_user::text then
      raise exception 'pipeline run % was requested by %: with approval_by_another_user on, another database user approves it',
        approve.pipeline_run_id, session_user using errcode = 'insufficient_privilege';
    end if;
  end if;
  if not found then
    raise exception 'pipeline run % does not exist', approve.pipeline_run_id using errcode = 'invalid_parameter_value';
  end if;
  if v_pr.status <> 'awaiting_approval' then
    raise exception 'pipeline run % is %, not awaiting_approval: nothing to approve', approve.pipeline_run_id, v_pr.status
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  update etl.pipeline_runs p
     set status = 'running', full_refresh_confirmed = true, approved_by = v_approver,
         approved_at = pg_catalog.now(), approval_reason = approve.reason, started_at = pg_catalog.now()
   where p.pipeline_run_id = approve.pipeline_run_id;
  insert into etl.run_events (run_id, pipeline_run_id, event_type, from_status, to_status, actor, detail)
  select r.run_id, r.pipeline_run_id, 'approval', r.status, r.status, session_user,
         pg_catalog.jsonb_build_object('approver', v_approver, 'reason', approve.reason, 'mode', 'full')
    from etl.runs r where r.pipeline_run_id = approve.pipeline_run_id;
  insert into etl.audit_log (action, target_type, target_id, reason, details)
  values ('approve_full_refresh', 'pipeline_run', approve.pipeline_run_id::text, approve.reason,
          pg_catalog.jsonb_build_object('approver', v_approver, 'requested_by', v_pr.requested_by,
                                        'selection', v_pr.selection, 'confirmed', true));
  v_released := etl._release_roots(approve.pipeline_run_id);
  return v_released;
end;
$$;
comment on function etl.approve(bigint, text, text) is
  'Approves a full refresh that was requested with request_approval => true: records the '
  'confirmation, the approver (default: the session user; with the setting approval_by_another_user '
  'on, always the session user, who must not be the requester) and the reason on the pipeline run, in '
  'run_events and in the audit log, then releases its runs. Returns how many runs became runnable. '
  'A pipeline run awaiting approval is rejected with etl.cancel_pipeline.';
