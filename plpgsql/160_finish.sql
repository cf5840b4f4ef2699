-- Finish: record an attempt's outcome; success releases children and advances the cursor, a
-- transient failure retries after backoff, a permanent one fails the run and skips its descendants.

create or replace function etl.classify_error(
  job_id bigint, category text, error_type text default null, sqlstate text default null,
  http_status integer default null, hint boolean default null)
returns boolean
language sql
stable
set search_path = ''
as $$
  -- The most specific rule wins; a job's own rule beats the global one at the same specificity.
  select coalesce(
    (select c.is_transient from etl.error_classes c
      where (c.job_id = classify_error.job_id or c.job_id is null)
        and (c.category is null or c.category = classify_error.category)
        and ((c.match_kind = 'error_type' and c.match_value = classify_error.error_type)
          or (c.match_kind = 'sqlstate' and c.match_value = classify_error.sqlstate)
          or (c.match_kind = 'http_status' and c.match_value = classify_error.http_status::text)
          or (c.match_kind = 'sqlstate_class' and c.match_value = pg_catalog.left(classify_error.sqlstate, 2))
          or (c.match_kind = 'http_class' and c.match_value = pg_catalog.left(classify_error.http_status::text, 1) || 'xx'))
      order by case c.match_kind when 'error_type' then 1 when 'sqlstate' then 2 when 'http_status' then 3
                                 when 'sqlstate_class' then 4 when 'http_class' then 5 end,
               c.job_id is null
      limit 1),
    classify_error.hint,
    (select c.is_transient from etl.error_classes c
      where (c.job_id = classify_error.job_id or c.job_id is null)
        and c.match_kind = 'category' and c.match_value = classify_error.category
      order by c.job_id is null limit 1),
    false)
$$;
comment on function etl.classify_error(bigint, text, text, text, integer, boolean) is
  'Is this failure transient? Looks up etl.error_classes: error_type, then SQLSTATE, HTTP status, '
  'SQLSTATE class, HTTP class (a job''s rule before the global one); then the runner''s hint; then '
  'the category''s default; permanent when nothing matches.';

create or replace function etl.backoff_ms(run_id bigint, attempt_no integer)
returns bigint
language sql
stable
set search_path = ''
as $$
  -- d = min(cap, base * factor^(attempt-1)); jitter from a hash of (run, attempt), so it is predictable.
  select case j.backoff_jitter
           when 'none' then d.ms
           when 'equal' then (d.ms / 2 + pg_catalog.floor((d.ms - d.ms / 2 + 1) * h.frac))::bigint
           else pg_catalog.floor((d.ms + 1) * h.frac)::bigint
         end
    from etl.runs r join etl.jobs j on j.job_id = r.job_id
    cross join lateral (select least(
                          extract(epoch from j.backoff_cap) * 1000,
                          extract(epoch from j.backoff_base) * 1000
                            * pg_catalog.power(j.backoff_factor, greatest(backoff_ms.attempt_no - 1, 0))
                        )::bigint as ms) d
    cross join lateral (select ('x' || pg_catalog.left(pg_catalog.md5(backoff_ms.run_id || ':' || backoff_ms.attempt_no), 8))::bit(32)::bigint
                               / 4294967296.0 as frac) h
   where r.run_id = backoff_ms.run_id
$$;
comment on function etl.backoff_ms(bigint, integer) is
  'Delay before the attempt after attempt_no: d = min(backoff_cap, backoff_base * backoff_factor^(attempt_no-1)) '
  'with the job''s jitter (full: [0, d], equal: [d/2, d], none: d). The jitter is derived from '
  'md5(run_id:attempt_no), so the same run and attempt always get the same delay.';

create or replace function etl._check_outcome(
  p_status text, p_category text, p_allowed text[], p_status_message text, p_category_context text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_status is null or not p_status = any (p_allowed) then
    raise exception '%, got %', p_status_message, coalesce(pg_catalog.quote_literal(p_status), 'nothing')
      using errcode = 'invalid_parameter_value';
  end if;
  if p_status = 'failed' and (p_category is null or p_category not in ('API', 'DB', 'DATA', 'SYSTEM')) then
    raise exception 'outcome.error_category must be API, DB, DATA or SYSTEM %, got %', p_category_context,
      coalesce(pg_catalog.quote_literal(p_category), 'nothing') using errcode = 'invalid_parameter_value';
  end if;
end;
$$;
comment on function etl._check_outcome(text, text, text[], text, text) is
  'Raises 22023 when an outcome''s status is not one of p_allowed, or a failure has no known category.';

create or replace function etl._finish(p_run etl.runs, p_token bigint, p_outcome jsonb, p_actor text)
returns text
language plpgsql
set search_path = ''
set enable_hashjoin = off   -- key lookups: index probes only (see etl.claim)
set enable_mergejoin = off
set enable_seqscan = off
set jit = off  -- a disabled seq scan costs 1e10: JIT would compile it, 100 ms a call
as $$
declare
  v_status text := p_outcome ->> 'status';
  v_category text := p_outcome ->> 'error_category';
  v_transient boolean;
  v_job etl.jobs;
  v_attempt etl.run_attempts;
  v_delay bigint;
  v_next timestamptz;
  v_now timestamptz := pg_catalog.clock_timestamp();  -- see etl.claim: clock, not transaction start
  v_skipped integer;
  v_cursor jsonb := p_outcome -> 'cursor';
  v_items jsonb;        -- set when the run has items: their counts and sums
  v_run_sums jsonb;     -- what the run's metrics are (the items' sums, or the attempt's report)
  v_att_sums jsonb;     -- what this attempt's metrics are
  v_retired boolean;
begin
  perform etl._check_outcome(v_status, v_category, array['success', 'partial_success', 'failed', 'cancelled'],
                             'outcome.status must be success, partial_success, failed or cancelled',
                             'for a failure');
  -- (One jsonpath test on the common path; which field it was is looked up only when one is bad.)
  if p_outcome @? '$ ? (exists(@.records_read ? (@.type() != "null" && (@.type() != "number" || @ < 0 || @.floor() != @)))
                     || exists(@.records_written ? (@.type() != "null" && (@.type() != "number" || @ < 0 || @.floor() != @)))
                     || exists(@.page_count ? (@.type() != "null" && (@.type() != "number" || @ < 0 || @.floor() != @)))
                     || exists(@.rows_affected ? (@.type() != "null" && (@.type() != "number" || @ < 0 || @.floor() != @)))
                     || exists(@.http_status ? (@.type() != "null" && (@.type() != "number" || @.floor() != @))))' then
    raise exception 'outcome.% must be a whole number (a count: from 0), got %',
      (select k from pg_catalog.unnest(array['records_read', 'records_written', 'page_count', 'rows_affected',
                                             'http_status']) k
        where case when coalesce(p_outcome -> k, 'null') = 'null' then false
                   when pg_catalog.jsonb_typeof(p_outcome -> k) <> 'number' then true
                   else (p_outcome ->> k)::numeric <> pg_catalog.floor((p_outcome ->> k)::numeric)
                        or (k <> 'http_status' and (p_outcome ->> k)::numeric < 0) end
        limit 1),
      p_outcome using errcode = 'invalid_parameter_value';
  end if;
  select j.* into v_job from etl.jobs j where j.job_id = p_run.job_id;

  -- A run with items: the engine, not the runner, says how it went.
  v_run_sums := p_outcome;
  v_att_sums := p_outcome;
  -- (Two IFs: an expression that a null items_source folds to false gets a fresh plan per call.)
  if v_job.items_source is not null then
    if exists (select 1 from etl.run_items i where i.run_id = p_run.run_id) then
      v_items := etl._item_outcome(p_run, v_job, p_token, p_outcome);
      p_outcome := p_outcome || (v_items -> 'outcome');
      v_status := p_outcome ->> 'status';
      v_category := p_outcome ->> 'error_category';
      v_run_sums := v_items -> 'run_sums';
      v_att_sums := v_items -> 'attempt_sums';
    end if;
  end if;

  if v_status = 'failed' then
    v_transient := case when (p_outcome ->> 'items_transient')::boolean then true
                        else etl.classify_error(p_run.job_id, v_category, p_outcome ->> 'error_type',
                                                p_outcome ->> 'sqlstate', (p_outcome ->> 'http_status')::integer,
                                                (p_outcome ->> 'is_transient')::boolean) end;
  end if;

  update etl.run_attempts a
     set status = v_status, ended_at = v_now,
         duration_ms = (extract(epoch from v_now - a.started_at) * 1000)::bigint,
         error_category = case when v_status <> 'success' then v_category end,
         is_transient = v_transient,
         error_type = p_outcome ->> 'error_type', error_message = p_outcome ->> 'message',
         error_detail = p_outcome -> 'error_detail',
         records_read = (v_att_sums ->> 'records_read')::bigint,
         records_written = (v_att_sums ->> 'records_written')::bigint,
         page_count = (v_att_sums ->> 'page_count')::integer,
         rows_affected = (p_outcome ->> 'rows_affected')::bigint,
         metrics = coalesce(p_outcome -> 'metrics', '{}')
   where a.attempt_id = p_token
  returning a.* into v_attempt;
  -- The actor of the events is the runner that held the attempt, unless the reaper acts.
  p_actor := coalesce(p_actor, v_attempt.worker_id);

  -- The lock and the slot go back in the same transaction as the outcome. The key's advisory lock
  -- comes first: a claimer inserting the same key then skips it instead of waiting on this
  -- delete while holding a slot (a deadlock).
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('etl.job_locks'), pg_catalog.hashtext(l.concurrency_key))
     from etl.job_locks l where l.attempt_id = p_token and l.status = 'active';
  delete from etl.job_locks l where l.attempt_id = p_token;
  update etl.run_slots s set run_id = null, claimed_at = null where s.slot_no = v_attempt.run_slot
  returning s.retired into v_retired;
  if v_retired then
    delete from etl.run_slots s where s.slot_no = v_attempt.run_slot;
  elsif exists (select 1 from etl.run_slots s where s.retired) then
    perform etl._free_slots_for_retired(array[v_attempt.run_slot]);
  end if;

  -- A transient failure with attempts and time left goes back to the queue after a backoff.
  if v_status = 'failed' and v_transient and p_run.attempt_count < p_run.max_attempts then
    v_delay := etl.backoff_ms(p_run.run_id, p_run.attempt_count);
    v_next := v_now + pg_catalog.make_interval(secs => v_delay / 1000.0);
    -- The time budget counts from the first start, or from the last manual retry (a fresh budget).
    if v_job.max_retry_elapsed is null
       or v_next - greatest(p_run.started_at,
                            (select pg_catalog.max(e.ts) from etl.run_events e
                              where e.run_id = p_run.run_id and e.detail ? 'retry'))
          <= v_job.max_retry_elapsed then
      update etl.run_attempts a set backoff_ms = v_delay, next_attempt_at = v_next where a.attempt_id = p_token;
      update etl.runs r
         set status = 'queued', queued_at = v_now, next_attempt_at = v_next,
             error_category = v_category, is_transient = true,
             error_type = p_outcome ->> 'error_type', error_message = p_outcome ->> 'message',
             items_succeeded = (v_items ->> 'items_succeeded')::integer,
             items_failed = (v_items ->> 'items_failed')::integer
       where r.run_id = p_run.run_id;
      perform etl._record_transition(p_run.run_id, p_run.pipeline_run_id, 'running', 'queued', p_actor,
        pg_catalog.jsonb_build_object('attempt_no', p_run.attempt_count, 'backoff_ms', v_delay,
                                      'next_attempt_at', v_next, 'error_category', v_category,
                                      'error_type', p_outcome ->> 'error_type'),
        'retry_scheduled');
      if p_run.group_id is not null and p_run.group_leader_run_id is null then
        perform etl._group_follow(p_run, 'pending', p_outcome, p_actor);
      end if;
      return 'queued';
    end if;
  end if;

  -- Out of attempts with some items done: partial where the job allows it.
  if v_status = 'failed' and v_items is not null and v_job.allow_partial_success
     and (v_items ->> 'items_succeeded')::integer > 0 then
    v_status := 'partial_success';
  end if;
  if v_items is not null then
    update etl.run_items i set status = 'skipped', ended_at = v_now
     where i.run_id = p_run.run_id and i.status in ('pending', 'running');
  end if;

  update etl.runs r
     set status = v_status, ended_at = v_now,
         duration_ms = (extract(epoch from v_now - r.started_at) * 1000)::bigint,
         error_category = case when v_status in ('failed', 'partial_success') then v_category end,
         is_transient = v_transient,
         error_type = case when v_status <> 'success' then p_outcome ->> 'error_type' end,
         error_message = case when v_status <> 'success' then p_outcome ->> 'message' end,
         next_attempt_at = null,
         records_read = (v_run_sums ->> 'records_read')::bigint,
         records_written = (v_run_sums ->> 'records_written')::bigint,
         page_count = (v_run_sums ->> 'page_count')::integer,
         rows_affected = (p_outcome ->> 'rows_affected')::bigint,
         items_total = coalesce((v_items ->> 'items_total')::integer, r.items_total),
         items_succeeded = (v_items ->> 'items_succeeded')::integer,
         items_failed = (v_items ->> 'items_failed')::integer,
         metrics = coalesce(v_run_sums -> 'metrics', r.metrics),
         lineage = coalesce(p_outcome -> 'lineage', r.lineage),
         sql_executed = coalesce(p_outcome ->> 'sql_executed', r.sql_executed)
   where r.run_id = p_run.run_id;
  perform etl._record_transition(p_run.run_id, p_run.pipeline_run_id, 'running', v_status, p_actor,
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'attempt_no', p_run.attempt_count, 'error_category', v_category, 'is_transient', v_transient,
      'error_type', p_outcome ->> 'error_type')));

  if v_status in ('success', 'partial_success') then
    -- The cursor advances with the success, exactly once, never on a dry run, never backwards.
    -- (A run with items advanced each item's cursor with the item.)
    if v_job.supports_incremental and not p_run.dry_run and v_items is null then
      perform etl._advance_cursor(v_job, p_run, p_run.parameter_fingerprint, p_run.params, v_cursor);
    end if;
    perform etl._release_children(array[p_run.run_id]);
    -- (A dry run's success loaded nothing: the failure it follows is not mended.)
    if not p_run.dry_run then
      update etl.alert_events e set status = 'resolved', resolved_at = v_now, resolved_by = 'engine: next success'
       where e.dedupe_key = 'run_failed:' || v_job.slug and e.status <> 'resolved';
    end if;
  else
    v_skipped := etl._skip_descendants(p_run.run_id,
      pg_catalog.format('upstream %s run %s %s', v_job.slug, p_run.run_id, v_status));
    if v_status = 'failed' then
      perform etl._raise_run_failed_alert(v_job, p_run, v_category, p_outcome ->> 'message', v_skipped);
    end if;
  end if;
  if p_run.group_id is not null and p_run.group_leader_run_id is null then
    perform etl._group_follow(p_run, v_status, p_outcome, p_actor);
  end if;
  -- (The finalizer's own first check, inline: most finishes leave siblings to run.)
  if not exists (select 1 from etl.runs r where r.pipeline_run_id = p_run.pipeline_run_id
                                           and r.status in ('pending', 'queued')) then
    perform etl._finalize_pipeline(p_run.pipeline_run_id);
  end if;
  return v_status;
end;
$$;
comment on function etl._finish(etl.runs, bigint, jsonb, text) is
  'Records the outcome of the current attempt of a locked running run; p_actor NULL means the '
  'attempt''s runner. A run with items takes its outcome and metrics from them (etl._item_outcome); '
  'a group leader carries its members along (etl._group_follow). Internal: etl.finish, '
  'etl.finish_many and the lease reaper call it.';

create or replace function etl._tiebreak_after(p_new text, p_old text)
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  -- Ids compare as numbers (10 after 9), anything else as text; a tie-break where there was none
  -- is a step forward.
  select case when p_new is null then false
              when p_old is null then true
              when p_new ~ '^-?[0-9]{1,30}$' and p_old ~ '^-?[0-9]{1,30}$' then p_new::numeric > p_old::numeric
              else p_new > p_old end
$$;
comment on function etl._tiebreak_after(text, text) is
  'Whether tie-break key p_new comes after p_old at one cursor value: numerically for integers '
  '(10 after 9), as text otherwise. Internal.';

create or replace function etl._advance_cursor(
  p_job etl.jobs, p_run etl.runs, p_param_hash text, p_params jsonb, p_cursor jsonb)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_value timestamptz;
begin
  v_value := case p_job.incremental_strategy
               when 'last_run' then p_run.logical_date
               else (p_cursor ->> 'value')::timestamptz end;
  if v_value is null then
    return;
  end if;
  insert into etl.cursors as c (job_id, param_hash, params, strategy, cursor_value, tiebreak_value,
                                metadata, last_run_id, advance_count)
  values (p_job.job_id, p_param_hash, p_params, p_job.incremental_strategy, v_value,
          p_cursor ->> 'tiebreak', coalesce(p_cursor -> 'metadata', '{}'), p_run.run_id, 1)
  on conflict (job_id, param_hash) do update
     set cursor_value = case when p_run.mode = 'full' then excluded.cursor_value
                             else greatest(c.cursor_value, excluded.cursor_value) end,
         tiebreak_value = case
                            when p_run.mode = 'full' or excluded.cursor_value > c.cursor_value then excluded.tiebreak_value
                            when excluded.cursor_value = c.cursor_value
                                 and etl._tiebreak_after(excluded.tiebreak_value, c.tiebreak_value)
                              then excluded.tiebreak_value
                            else c.tiebreak_value end,
         metadata = c.metadata || excluded.metadata,
         last_run_id = excluded.last_run_id,
         advance_count = c.advance_count
                         + coalesce(p_run.mode = 'full' or excluded.cursor_value > c.cursor_value
                                    or (excluded.cursor_value = c.cursor_value
                                        and etl._tiebreak_after(excluded.tiebreak_value, c.tiebreak_value)), false)::int,
         updated_at = pg_catalog.now();
end;
$$;
comment on function etl._advance_cursor(etl.jobs, etl.runs, text, jsonb, jsonb) is
  'Moves the (job, param_hash) cursor forward: modified_date takes the reported value and tie-break '
  'key, last_run the run''s logical date; never backwards except in a full refresh.';

create or replace function etl._raise_run_failed_alert(
  p_job etl.jobs, p_run etl.runs, p_category text, p_message text, p_skipped integer)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_alert bigint;
  v_rule bigint;
begin
  select r.rule_id into v_rule from etl.alert_rules r
   where r.rule_type = 'run_failed' and r.enabled and (r.job_id = p_job.job_id or r.job_id is null)
   order by r.job_id is null limit 1;
  -- One open alert per job while it keeps failing; a repeat counts as an occurrence.
  insert into etl.alert_events as e (rule_id, run_id, job_id, dedupe_key, severity, title, message, details)
  values (v_rule, p_run.run_id, p_job.job_id, 'run_failed:' || p_job.slug, 'critical',
          pg_catalog.format('%s failed (%s)', p_job.slug, p_category), p_message,
          pg_catalog.jsonb_build_object('run_id', p_run.run_id, 'pipeline_run_id', p_run.pipeline_run_id,
                                        'attempts', p_run.attempt_count, 'skipped_descendants', p_skipped))
  on conflict (dedupe_key) where status <> 'resolved' do update
     set occurrences = e.occurrences + 1, last_seen_at = pg_catalog.now(), run_id = excluded.run_id,
         message = excluded.message, details = excluded.details
  returning e.alert_event_id into v_alert;
  insert into etl.alert_deliveries (alert_event_id, channel_id)
  select v_alert, rc.channel_id from etl.alert_rule_channels rc
    join etl.alert_channels ch on ch.channel_id = rc.channel_id and ch.enabled
   where rc.rule_id = v_rule;
end;
$$;
comment on function etl._raise_run_failed_alert(etl.jobs, etl.runs, text, text, integer) is
  'Records (or counts again) the open run_failed alert of a job and queues its deliveries.';

create or replace function etl.finish(run_id bigint, token bigint, outcome jsonb)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run etl.runs;
begin
  perform etl._assert_primary();
  v_run := etl._lock_current_attempt(finish.run_id, finish.token);
  return etl._finish(v_run, finish.token, finish.outcome, null);
end;
$$;
comment on function etl.finish(bigint, bigint, jsonb) is
  'Reports the outcome of a claimed run: outcome = {"status": success|partial_success|failed|cancelled, '
  '"error_category": API|DB|DATA|SYSTEM, "error_type", "message", "sqlstate", "http_status", '
  '"is_transient" (a hint; etl.error_classes decides), "records_read", "records_written", '
  '"page_count", "rows_affected", "metrics": {}, "cursor": {"value", "tiebreak", "metadata"}, '
  '"lineage": {}, "sql_executed"}. Refuses a stale token (ETL01). Returns the run''s new status: '
  'queued when a retry was scheduled.';

-- (Called by etl.finish_many only, so it plans under that function's settings: generic plans,
-- index probes only.)
create or replace function etl._finish_successes(p_run_ids bigint[], p_tokens bigint[], p_outcomes jsonb[])
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();  -- see etl.claim: clock, not transaction start
  v_slots integer[];
  v_retired integer[];
  v_pipeline bigint;
  v_row record;
begin
  -- Plain successes (no items, no group), all locked and fenced by the caller: each table is
  -- written once for the whole batch, in the same order and with the same values as etl._finish.
  with done as (
    update etl.run_attempts a
       set status = 'success', ended_at = v_now,
           duration_ms = (extract(epoch from v_now - a.started_at) * 1000)::bigint,
           error_category = null, is_transient = null,
           error_type = f.o ->> 'error_type', error_message = f.o ->> 'message', error_detail = f.o -> 'error_detail',
           records_read = (f.o ->> 'records_read')::bigint, records_written = (f.o ->> 'records_written')::bigint,
           page_count = (f.o ->> 'page_count')::integer, rows_affected = (f.o ->> 'rows_affected')::bigint,
           metrics = coalesce(f.o -> 'metrics', '{}')
      from unnest(p_tokens, p_outcomes) as f(token, o)
     where a.attempt_id = f.token
    returning a.run_slot
  )
  select pg_catalog.array_agg(done.run_slot) into v_slots from done;

  -- The keys and the slots go back with the outcome; the key's advisory lock first (see etl._finish).
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('etl.job_locks'), pg_catalog.hashtext(l.concurrency_key))
     from etl.job_locks l where l.attempt_id = any (p_tokens) and l.status = 'active'
    order by l.concurrency_key;
  delete from etl.job_locks l where l.attempt_id = any (p_tokens);
  with freed as (
    update etl.run_slots s set run_id = null, claimed_at = null
     where s.slot_no = any (v_slots)
    returning s.slot_no, s.retired
  )
  select pg_catalog.array_agg(freed.slot_no) filter (where freed.retired) into v_retired from freed;
  if v_retired is not null then
    delete from etl.run_slots s where s.slot_no = any (v_retired);
  end if;
  if exists (select 1 from etl.run_slots s where s.retired) then
    perform etl._free_slots_for_retired(v_slots);
  end if;

  with done as (
    update etl.runs r
       set status = 'success', ended_at = v_now,
           duration_ms = (extract(epoch from v_now - r.started_at) * 1000)::bigint,
           error_category = null, is_transient = null, error_type = null, error_message = null,
           next_attempt_at = null,
           records_read = (f.o ->> 'records_read')::bigint, records_written = (f.o ->> 'records_written')::bigint,
           page_count = (f.o ->> 'page_count')::integer, rows_affected = (f.o ->> 'rows_affected')::bigint,
           items_succeeded = null, items_failed = null,
           metrics = coalesce(f.o -> 'metrics', r.metrics), lineage = coalesce(f.o -> 'lineage', r.lineage),
           sql_executed = coalesce(f.o ->> 'sql_executed', r.sql_executed)
      from unnest(p_run_ids, p_outcomes) as f(run_id, o)
     where r.run_id = f.run_id
    returning r.run_id, r.pipeline_run_id, r.attempt_count, f.o
  )
  insert into etl.run_events (run_id, pipeline_run_id, event_type, from_status, to_status, actor, detail)
  select done.run_id, done.pipeline_run_id, 'status', 'running', 'success', a.worker_id,
         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
           'attempt_no', done.attempt_count, 'error_category', done.o ->> 'error_category',
           'error_type', done.o ->> 'error_type'))
    from done join etl.run_attempts a on a.run_id = done.run_id and a.attempt_no = done.attempt_count
   order by done.run_id;

  -- The cursors advance with the success, exactly once, never on a dry run.
  for v_row in
    select j, r, f.o -> 'cursor' as cursor
      from unnest(p_run_ids, p_outcomes) as f(run_id, o)
      join etl.runs r on r.run_id = f.run_id join etl.jobs j on j.job_id = r.job_id
     where j.supports_incremental and not r.dry_run
     order by r.run_id
  loop
    perform etl._advance_cursor(v_row.j, v_row.r, (v_row.r).parameter_fingerprint, (v_row.r).params, v_row.cursor);
  end loop;
  perform etl._release_children(p_run_ids);
  update etl.alert_events e set status = 'resolved', resolved_at = v_now, resolved_by = 'engine: next success'
   where e.dedupe_key in (select 'run_failed:' || j.slug from etl.runs r join etl.jobs j on j.job_id = r.job_id
                           where r.run_id = any (p_run_ids) and not r.dry_run)
     and e.status <> 'resolved';
  -- A pipeline run whose last open run this was closes (in id order: finalizers wait on each other).
  for v_pipeline in
    select distinct r.pipeline_run_id from etl.runs r where r.run_id = any (p_run_ids) order by 1
  loop
    perform etl._finalize_pipeline(v_pipeline);
  end loop;
end;
$$;
comment on function etl._finish_successes(bigint[], bigint[], jsonb[]) is
  'etl._finish for many plain successes (no items, not in a group) at once: one statement per '
  'table, then cursors, children, alerts and pipeline runs. The caller locked the runs and checked '
  'the tokens. Internal to etl.finish_many.';

create or replace function etl.finish_many(reports jsonb)
returns table (run_id bigint, status text)
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan  -- arrays: one cached plan, not one per call
set enable_hashjoin = off   -- lookups of a batch by key: index probes only (see etl.claim)
set enable_mergejoin = off
set enable_seqscan = off
set jit = off  -- a disabled seq scan costs 1e10: JIT would compile it, 100 ms a call
as $$
declare
  v_row record;
  v_fast_runs bigint[] := '{}';
  v_fast_tokens bigint[] := '{}';
  v_fast_outcomes jsonb[] := '{}';
  v_n integer;
begin
  perform etl._assert_primary();
  if pg_catalog.jsonb_typeof(finish_many.reports) <> 'array' then
    raise exception 'reports must be a JSON array of {"run_id", "token", "outcome"}'
      using errcode = 'invalid_parameter_value';
  end if;
  select x ->> 'run_id' as rid into v_row
    from pg_catalog.jsonb_array_elements(finish_many.reports) x
   group by x ->> 'run_id' having count(*) > 1 limit 1;
  if found then
    raise exception 'run % is reported twice in one batch', v_row.rid using errcode = 'invalid_parameter_value';
  end if;
  -- Every reported run locked with its current attempt, in (pipeline run, run) order, so two batches
  -- never lock runs or pipeline runs in opposite orders. All or nothing: a stale token anywhere
  -- refuses the whole batch.
  v_n := 0;
  for v_row in
    select e.rid, e.token, e.outcome, r as run, a.attempt_id as current, j.items_source is null as plain
      from (select (x ->> 'run_id')::bigint as rid, (x ->> 'token')::bigint as token, x -> 'outcome' as outcome
              from pg_catalog.jsonb_array_elements(finish_many.reports) x) e
      join etl.runs r on r.run_id = e.rid
      join etl.jobs j on j.job_id = r.job_id
      left join etl.run_attempts a on a.run_id = r.run_id and a.attempt_no = r.attempt_count
     order by r.pipeline_run_id, e.rid
       for update of r
  loop
    v_n := v_n + 1;
    if (v_row.run).status <> 'running' or v_row.current is distinct from v_row.token then
      perform etl._refuse_stale_token(v_row.rid, (v_row.run).status, v_row.current, v_row.token);
    end if;
    if v_row.outcome ->> 'status' = 'success' and v_row.plain and (v_row.run).group_id is null then
      v_fast_runs := v_fast_runs || v_row.rid;
      v_fast_tokens := v_fast_tokens || v_row.token;
      v_fast_outcomes := v_fast_outcomes || v_row.outcome;
      run_id := v_row.rid; status := 'success';
    else
      run_id := v_row.rid;
      status := etl._finish(v_row.run, v_row.token, v_row.outcome, null);
    end if;
    return next;
  end loop;
  if v_n < pg_catalog.jsonb_array_length(finish_many.reports) then
    select x ->> 'run_id' as rid into v_row
      from pg_catalog.jsonb_array_elements(finish_many.reports) x
     where not exists (select 1 from etl.runs r where r.run_id = (x ->> 'run_id')::bigint)
     limit 1;
    raise exception 'run % does not exist', coalesce(v_row.rid, '(a report without run_id)')
      using errcode = 'invalid_parameter_value';
  end if;
  if pg_catalog.cardinality(v_fast_runs) > 0 then
    perform etl._finish_successes(v_fast_runs, v_fast_tokens, v_fast_outcomes);
  end if;
end;
$$;
comment on function etl.finish_many(jsonb) is
  'etl.finish for many runs in one transaction (one commit): reports = [{"run_id", "token", "outcome"}, ...]. '
  'All or nothing: a stale token anywhere refuses the whole batch. Plain successes are written a '
  'table at a time (etl._finish_successes); the rest one by one (etl._finish).'; 
