-- Core internals shared by every engine function: the standby guard, the one place that records a
-- status change (run_events row + NOTIFY), the lifecycle rule, the global slot pool.

-- GUARD for every engine entry point: a standby cannot take writes, so refuse before doing anything.
create or replace function etl._assert_primary()
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if pg_catalog.pg_is_in_recovery() then
    raise exception 'etl: this server is a standby (read-only); run engine functions on the primary'
      using errcode = 'read_only_sql_transaction';
  end if;
end;
$$;
comment on function etl._assert_primary() is
  'Raises 25006 on a standby so that an engine function refuses politely instead of failing half-way.';

-- Every status change goes through here: one run_events row. The NOTIFY that wakes runners is
-- sent at commit by the deferred trigger runs_notify_runnable (see etl._notify_if_still_queued).
create or replace function etl._record_transition(
  p_run_id bigint, p_pipeline_run_id bigint, p_from text, p_to text,
  p_actor text default null, p_detail jsonb default '{}', p_event_type text default 'status')
returns void
language plpgsql
set search_path = ''
as $$
begin
  insert into etl.run_events (run_id, pipeline_run_id, event_type, from_status, to_status, actor, detail)
  values (p_run_id, p_pipeline_run_id, p_event_type, p_from, p_to,
          coalesce(p_actor, session_user::text), coalesce(p_detail, '{}'));
end;
$$;
comment on function etl._record_transition(bigint, bigint, text, text, text, jsonb, text) is
  'Writes the run_events row of a status change.';

create or replace function etl._notify_runnable(p_run_id bigint)
returns void
language plpgsql
set search_path = ''
as $$
begin
  -- A commit that holds a NOTIFY serialises with every other such commit: send one per transaction.
  if pg_catalog.current_setting('etl.notified', true) is distinct from 'on' then
    perform pg_catalog.set_config('etl.notified', 'on', true);
    perform pg_catalog.pg_notify('etl_runnable', p_run_id::text);
  end if;
end;
$$;
-- Deferred to commit: a run that became queued and was claimed in the same transaction (a
-- runner's report that releases a child and claims it at once) wakes nobody, so other runners do
-- not claim in vain on every step of a chain.
create or replace function etl._notify_if_still_queued()
returns trigger
language plpgsql
-- A deferred trigger fires at commit, outside the API function that queued the run: as the
-- session's own role (an operator), which may not call etl._notify_runnable itself.
security definer
set search_path = ''
as $$
begin
  -- (Two IFs: the cheap test alone, and the query planned once rather than with the setting.)
  if pg_catalog.current_setting('etl.notified', true) is distinct from 'on' then
    if exists (select 1 from etl.runs r where r.run_id = new.run_id and r.status = 'queued') then
      perform etl._notify_runnable(new.run_id);
    end if;
  end if;
  return null;
end;
$$;
comment on function etl._notify_if_still_queued() is
  'Deferred constraint trigger: at commit, NOTIFY etl_runnable for a run that became queued in the '
  'transaction and is still queued (once per transaction).';

comment on function etl._notify_runnable(bigint) is
  'NOTIFY etl_runnable, payload the id of a run that became runnable; at most once per transaction. '
  'A hint only: etl.claim() decides, and is correct without any NOTIFY.';

-- The lifecycle as data: which status may follow which.
create or replace function etl._run_transition_is_legal(p_from text, p_to text)
returns boolean
language plpgsql
immutable
parallel safe
set search_path = ''
as $$
begin
  -- PL/pgSQL with a CASE, not a SQL function: called from a trigger on every status change, a SQL
  -- function would be planned again on each call.
  return p_from = p_to or case p_from
    when 'pending' then p_to in ('queued', 'skipped', 'cancelled')
    when 'queued' then p_to in ('running', 'skipped', 'cancelled', 'pending')
    when 'running' then p_to in ('success', 'partial_success', 'failed', 'queued', 'cancelled')
    -- retry: a run that did not succeed starts a new attempt path (a partial success: for its
    -- items that did not succeed)
    when 'failed' then p_to in ('queued', 'pending')
    when 'partial_success' then p_to in ('queued', 'pending')
    when 'skipped' then p_to in ('queued', 'pending')
    when 'cancelled' then p_to in ('queued', 'pending')
    else false
  end;
end;
$$;
comment on function etl._run_transition_is_legal(text, text) is
  'The run lifecycle: pending -> queued -> running -> success | partial_success | failed | cancelled, '
  'running -> queued (retry with backoff), pending/queued -> skipped | cancelled, and failed, '
  'skipped, cancelled or partial_success (its items that did not succeed) -> queued/pending through '
  'etl.retry. success is final.';

create or replace function etl._check_run_transition()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- A group member starts and retries with its leader, never on its own in the queue.
  if not etl._run_transition_is_legal(old.status, new.status)
     and not (new.group_leader_run_id is not null
              and ((old.status = 'pending' and new.status = 'running')
                   or (old.status = 'running' and new.status = 'pending'))) then
    raise exception 'run_status_transition_is_legal: run % cannot go from % to %',
      old.run_id, old.status, new.status
      using errcode = 'check_violation';
  end if;
  return new;
end;
$$;
comment on function etl._check_run_transition() is 'Trigger: refuses an illegal run status change (see etl._run_transition_is_legal).';

-- The global bound is a pool of parallel_jobs slot rows: a claim takes a free one with
-- SKIP LOCKED, so concurrent claimers never exceed it and never queue behind one counter row.
create or replace function etl._resize_slots(p_size integer)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_active integer;
  v_n integer;
begin
  -- Claims wait (a few milliseconds) rather than take a slot this is about to remove; and this
  -- waits no longer than 5 s for a long transaction that holds slots (every claim would queue too).
  perform pg_catalog.set_config('lock_timeout', '5s', true);
  begin
    lock table etl.run_slots in exclusive mode;
  exception when lock_not_available then
    raise exception 'parallel_jobs not changed: the slot pool stayed locked for 5 s by another transaction'
      using errcode = 'lock_not_available', hint = 'Try again; pg_stat_activity shows what holds etl.run_slots.';
  end;
  select pg_catalog.count(*) into v_active from etl.run_slots s where not s.retired;
  if v_active < p_size then
    -- Retired slots still busy come back first, then new ones.
    update etl.run_slots s set retired = false
     where s.slot_no in (select r.slot_no from etl.run_slots r where r.retired order by r.slot_no limit p_size - v_active);
    get diagnostics v_n = row_count;
    insert into etl.run_slots (slot_no)
    select coalesce((select pg_catalog.max(s.slot_no) from etl.run_slots s), 0) + g
      from pg_catalog.generate_series(1, p_size - v_active - v_n) g;
  elsif v_active > p_size then
    -- Free slots go at once; then busy ones retire, each removed when its run ends. While any is
    -- busy, a slot freed elsewhere is removed in its stead (etl._finish): running runs never
    -- exceed the new bound from this commit on, however long the retired ones run.
    delete from etl.run_slots s
     where s.slot_no in (select r.slot_no from etl.run_slots r where not r.retired and r.run_id is null
                          order by r.slot_no desc limit v_active - p_size);
    get diagnostics v_n = row_count;
    update etl.run_slots s set retired = true
     where s.slot_no in (select r.slot_no from etl.run_slots r where not r.retired
                          order by r.slot_no desc limit v_active - p_size - v_n);
  end if;
end;
$$;
-- Called by a finish only while some slot is retired (the common finish never gets here).
create or replace function etl._free_slots_for_retired(p_freed integer[])
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_slot integer;
begin
  -- A lowered parallel_jobs whose retired slots are still busy: each slot just freed goes in the
  -- stead of one of them (which stays, active), so no claim exceeds the new bound meanwhile.
  for v_slot in select s.slot_no from etl.run_slots s where s.slot_no = any (p_freed) order by s.slot_no loop
    update etl.run_slots s set retired = false
     where s.slot_no = (select r.slot_no from etl.run_slots r where r.retired
                         order by r.slot_no limit 1 for update skip locked);
    exit when not found;
    delete from etl.run_slots s where s.slot_no = v_slot;
  end loop;
end;
$$;
comment on function etl._free_slots_for_retired(integer[]) is
  'Removes the freed slots p_freed in the stead of busy retired ones, which become active: the pool '
  'shrinks to a lowered parallel_jobs as runs end, whichever end first. Internal.';

comment on function etl._resize_slots(integer) is
  'Makes the pool p_size slots: grows by reviving retired slots, then new ones; shrinks by removing '
  'free slots, then retiring busy ones (removed when freed; until then each slot freed elsewhere '
  'is removed instead), so the running runs never exceed p_size once it commits. Internal.';
