-- Items: a run of a parameterized job fans out into items (one per distinct parameter set). The
-- engine materializes them once per run, hands the unfinished ones to the attempt that holds the
-- run, and records each item's result in its own transaction, so a retried attempt redoes only the
-- items that did not succeed. The run's outcome is derived from its items in etl._finish.

-- The cursor a run or item starts from: none in a full refresh (reload everything); otherwise the
-- stored watermark and, for modified_date, "since" = value minus the job's look-back.
create or replace function etl._cursor_for(p_job_id bigint, p_lookback interval, p_param_hash text, p_mode text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select case when p_mode <> 'full' then
    (select pg_catalog.jsonb_build_object(
              'strategy', c.strategy, 'value', c.cursor_value, 'tiebreak', c.tiebreak_value,
              'since', c.cursor_value - p_lookback,
              'lookback_seconds', extract(epoch from p_lookback),
              'metadata', c.metadata)
       from etl.cursors c
      where c.job_id = p_job_id and c.param_hash = p_param_hash)
  end
$$;
comment on function etl._cursor_for(bigint, interval, text, text) is
  'The cursor handed to an incremental run or item: {"strategy", "value", "tiebreak", "since" '
  '(value minus the job''s cursor_lookback, for late records), "lookback_seconds", "metadata"}; '
  'NULL when there is no cursor yet or the run is a full refresh (which reloads everything).';

create or replace function etl._materialize_items(p_run etl.runs, p_job etl.jobs, p_items jsonb, p_token bigint)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_rows jsonb;
  v_source text;
  v_bad jsonb;
  v_count integer;
begin
  v_source := case when p_job.items_source ? 'static' then 'static'
                   when p_job.items_source ? 'sql' then 'sql'
                   when p_job.items_source ? 'callable' then 'callable' end;
  if v_source = 'static' then
    v_rows := p_job.items_source -> 'static';
  elsif v_source = 'sql' then
    -- The runner runs the query, under its own role and in a read-only transaction: run here it
    -- would run as this function's owner, and whoever may write a job definition would own the
    -- database.
    if p_items is null then
      raise exception 'job % takes its items from its items.sql query, which the runner runs under its own role: pass its rows as items',
        p_job.slug using errcode = 'invalid_parameter_value';
    end if;
    v_rows := p_items;
  elsif v_source = 'callable' then
    if p_items is null then
      raise exception 'job % takes its items from the callable %: pass the list it returned as items',
        p_job.slug, p_job.items_source ->> 'callable' using errcode = 'invalid_parameter_value';
    end if;
    v_rows := p_items;
  else
    raise exception 'job % has no items source', p_job.slug using errcode = 'invalid_parameter_value';
  end if;
  if v_source = 'static' and p_items is not null then
    raise exception 'job % takes its items from its % source; items must not be passed', p_job.slug, v_source
      using errcode = 'invalid_parameter_value';
  end if;
  if pg_catalog.jsonb_typeof(v_rows) <> 'array' then
    raise exception 'items of job % must be a JSON array of objects, got %', p_job.slug, pg_catalog.jsonb_typeof(v_rows)
      using errcode = 'invalid_parameter_value';
  end if;
  select e into v_bad from pg_catalog.jsonb_array_elements(v_rows) e where pg_catalog.jsonb_typeof(e) <> 'object' limit 1;
  if found then
    raise exception 'items of job %: every item must be a JSON object of parameters, got %', p_job.slug, v_bad
      using errcode = 'invalid_parameter_value';
  end if;

  -- An item's parameters are the run's with the item's own on top. Equal parameters are one item
  -- (the first occurrence keeps its place); the repeats are counted, never processed.
  with given as (
    select p_run.params || e.value as params, e.ord
      from pg_catalog.jsonb_array_elements(v_rows) with ordinality e(value, ord)
  ), hashed as (
    select g.params, g.ord, etl.param_fingerprint(g.params) as param_hash from given g
  ), distinct_items as (
    select h.param_hash, min(h.ord) as first_ord, count(*) - 1 as repeats,
           (pg_catalog.array_agg(h.params order by h.ord))[1] as params
      from hashed h group by h.param_hash
  )
  -- Written once, already held by the attempt that creates them (a second write of every row
  -- would move it through the status index again).
  insert into etl.run_items (run_id, item_no, params, param_hash, duplicate_count, status, attempt_id,
                             attempt_count, started_at)
  select p_run.run_id, row_number() over (order by d.first_ord), d.params, d.param_hash, d.repeats,
         'running', p_token, 1, pg_catalog.clock_timestamp()
    from distinct_items d;
  get diagnostics v_count = row_count;
  update etl.runs r
     set items_total = v_count,
         items_duplicate = (select coalesce(sum(i.duplicate_count), 0) from etl.run_items i where i.run_id = p_run.run_id)
   where r.run_id = p_run.run_id;
  return v_count;
end;
$$;
comment on function etl._materialize_items(etl.runs, etl.jobs, jsonb, bigint) is
  'Creates the items of a run from its job''s items source (the static list, or the rows the runner '
  'got from the items.sql query or the callable), deduplicated by param_hash with the repeats counted, running '
  'under the attempt p_token. Internal.';

create or replace function etl.start_items(run_id bigint, token bigint, items jsonb default null)
returns table (item_id bigint, item_no integer, params jsonb, param_hash text, cursor jsonb, attempt_count integer)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run etl.runs;
  v_job etl.jobs;
  v_now timestamptz := pg_catalog.clock_timestamp();
begin
  perform etl._assert_primary();
  v_run := etl._lock_current_attempt(start_items.run_id, start_items.token);
  select j.* into v_job from etl.jobs j where j.job_id = v_run.job_id;
  if v_job.items_source is null then
    raise exception 'job % has no items: it runs as a whole', v_job.slug using errcode = 'invalid_parameter_value';
  end if;
  -- Items are fixed by the first attempt; later attempts resume them.
  if not exists (select 1 from etl.run_items i where i.run_id = v_run.run_id) then
    perform etl._materialize_items(v_run, v_job, start_items.items, start_items.token);
    return query
      select i.item_id, i.item_no, i.params, i.param_hash,
             case when v_job.supports_incremental
                  then etl._cursor_for(v_job.job_id, v_job.cursor_lookback, i.param_hash, v_run.mode) end,
             i.attempt_count
        from etl.run_items i where i.run_id = v_run.run_id order by i.item_no;
    return;
  end if;
  -- What is left: never started, started by a lost attempt, or failed transiently.
  return query
    update etl.run_items i
       set status = 'running', attempt_id = start_items.token, attempt_count = i.attempt_count + 1,
           started_at = v_now, ended_at = null, duration_ms = null,
           -- what an earlier attempt reported belongs to that attempt, not to this one
           records_read = null, records_written = null, page_count = null, metrics = '{}',
           cursor_value = null, error_category = null, is_transient = null, error_type = null,
           error_message = null
     where i.run_id = v_run.run_id
       and (i.status in ('pending', 'running') or (i.status = 'failed' and i.is_transient))
    returning i.item_id, i.item_no, i.params, i.param_hash,
              case when v_job.supports_incremental
                   then etl._cursor_for(v_job.job_id, v_job.cursor_lookback, i.param_hash, v_run.mode) end,
              i.attempt_count;
end;
$$;
comment on function etl.start_items(bigint, bigint, jsonb) is
  'For the attempt holding a run (token): creates the run''s items on its first attempt (from the '
  'job''s static list, or from items = the JSON array of the rows of its items.sql query or of what '
  'its callable returned: the runner runs either under its own role), '
  'deduplicated by param_hash, then hands over every item not yet succeeded (pending, left running '
  'by a lost attempt, or failed transiently), each with its own cursor. Refuses a stale token (ETL01).';

create or replace function etl.finish_item(run_id bigint, token bigint, item_id bigint, outcome jsonb)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_item etl.run_items;
  v_run etl.runs;
  v_job etl.jobs;
  v_status text := finish_item.outcome ->> 'status';
  v_category text := finish_item.outcome ->> 'error_category';
  v_transient boolean;
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_started timestamptz;
begin
  perform etl._assert_primary();
  perform etl._check_outcome(v_status, v_category, array['success', 'failed', 'cancelled'],
                             'outcome.status of an item must be success, failed or cancelled',
                             'for a failed item');
  -- Fencing on the item row, so the items of one run finish concurrently without the run row lock:
  -- whoever takes an item from an attempt (the next attempt's start_items, the final outcome)
  -- updates the item row, so it waits for this transaction and then sees its result. The attempt
  -- check refuses a report that comes after the attempt ended.
  perform etl._attempt_is_current(finish_item.run_id, finish_item.token);
  select i.* into v_item from etl.run_items i
   where i.item_id = finish_item.item_id and i.run_id = finish_item.run_id for update;
  if not found then
    raise exception 'item % is not an item of run %', finish_item.item_id, finish_item.run_id
      using errcode = 'invalid_parameter_value';
  end if;
  if v_item.attempt_id is distinct from finish_item.token or v_item.status <> 'running' then
    raise exception 'stale_token: item % is % under attempt %, not running under %',
      v_item.item_id, v_item.status, coalesce(v_item.attempt_id::text, 'none'), finish_item.token
      using errcode = 'ETL01';
  end if;
  select r.* into v_run from etl.runs r where r.run_id = finish_item.run_id;
  select j.* into v_job from etl.jobs j where j.job_id = v_run.job_id;
  if v_status = 'failed' then
    v_transient := etl.classify_error(v_run.job_id, v_category, finish_item.outcome ->> 'error_type',
                                      finish_item.outcome ->> 'sqlstate', (finish_item.outcome ->> 'http_status')::integer,
                                      (finish_item.outcome ->> 'is_transient')::boolean);
  end if;
  v_started := coalesce((finish_item.outcome ->> 'started_at')::timestamptz, v_item.started_at);
  update etl.run_items i
     set status = v_status, ended_at = v_now, started_at = v_started,
         duration_ms = greatest(0, (extract(epoch from v_now - v_started) * 1000)::bigint),
         records_read = (finish_item.outcome ->> 'records_read')::bigint,
         records_written = (finish_item.outcome ->> 'records_written')::bigint,
         page_count = (finish_item.outcome ->> 'page_count')::integer,
         cursor_value = finish_item.outcome -> 'cursor',
         error_category = case when v_status = 'failed' then v_category end,
         is_transient = v_transient,
         error_type = case when v_status <> 'success' then finish_item.outcome ->> 'error_type' end,
         error_message = case when v_status <> 'success' then finish_item.outcome ->> 'message' end,
         metrics = coalesce(finish_item.outcome -> 'metrics', '{}')
   where i.item_id = v_item.item_id;
  -- The item's cursor advances with its success, in this transaction, never on a dry run.
  if v_status = 'success' and v_job.supports_incremental and not v_run.dry_run then
    perform etl._advance_cursor(v_job, v_run, v_item.param_hash, v_item.params, finish_item.outcome -> 'cursor');
  end if;
  return v_status;
end;
$$;
comment on function etl.finish_item(bigint, bigint, bigint, jsonb) is
  'Records one item''s result in its own transaction: outcome = {"status": success|failed|cancelled, '
  '"error_category", "error_type", "message", "sqlstate", "http_status", "is_transient", '
  '"records_read", "records_written", "page_count", "metrics", "cursor": {"value", "tiebreak", '
  '"metadata"}, "started_at"}. A success advances the item''s cursor (job, param_hash) in the same '
  'transaction unless the run is a dry run. Refuses a stale token or an item not held by it (ETL01).';

-- Called by etl._finish for a run with items: what the items say the run's outcome is.
create or replace function etl._item_outcome(p_run etl.runs, p_job etl.jobs, p_token bigint, p_outcome jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_c record;
  v_first record;
  v_sums jsonb;
  v_attempt_sums jsonb;
  v_out jsonb;
begin
  select count(*) filter (where i.status = 'success') as ok,
         count(*) filter (where i.status = 'failed' and i.is_transient) as transient,
         count(*) filter (where i.status = 'failed' and not coalesce(i.is_transient, false)) as permanent,
         count(*) filter (where i.status in ('pending', 'running')) as open,
         count(*) filter (where i.status in ('cancelled', 'skipped')) as cancelled,
         count(*) as total
    into v_c from etl.run_items i where i.run_id = p_run.run_id;
  select pg_catalog.jsonb_build_object(
           'records_read', sum(i.records_read), 'records_written', sum(i.records_written),
           'page_count', sum(i.page_count),
           'metrics', coalesce((select pg_catalog.jsonb_object_agg(k, s) from (
              select m.key as k, sum(m.value::numeric) as s
                from etl.run_items i2, pg_catalog.jsonb_each_text(i2.metrics) m
               where i2.run_id = p_run.run_id and m.value ~ '^-?[0-9.]+$' group by m.key) t), '{}'))
    into v_sums from etl.run_items i where i.run_id = p_run.run_id;
  select pg_catalog.jsonb_build_object(
           'records_read', sum(i.records_read), 'records_written', sum(i.records_written),
           'page_count', sum(i.page_count))
    into v_attempt_sums from etl.run_items i where i.attempt_id = p_token;

  v_out := pg_catalog.jsonb_build_object(
    'items_total', v_c.total, 'items_succeeded', v_c.ok,
    'items_failed', v_c.transient + v_c.permanent, 'run_sums', v_sums, 'attempt_sums', v_attempt_sums);
  -- The runner's own failure or cancellation wins: its items did not all get a chance.
  if p_outcome ->> 'status' in ('failed', 'cancelled') then
    return v_out || pg_catalog.jsonb_build_object('outcome', p_outcome);
  end if;
  select i.error_category, i.error_type, i.error_message, i.item_no, i.is_transient into v_first
    from etl.run_items i where i.run_id = p_run.run_id and i.status = 'failed'
   order by i.is_transient desc, i.item_no limit 1;
  if v_c.open > 0 then
    return v_out || pg_catalog.jsonb_build_object('outcome', pg_catalog.jsonb_build_object(
      'status', 'failed', 'error_category', 'SYSTEM', 'error_type', 'items_unfinished', 'is_transient', true,
      'message', pg_catalog.format('%s of %s items were not reported by the attempt', v_c.open, v_c.total)));
  elsif v_c.transient > 0 then
    -- Retried (only these items) while attempts remain; etl._finish decides.
    return v_out || pg_catalog.jsonb_build_object('outcome', pg_catalog.jsonb_build_object(
      'status', 'failed', 'error_category', v_first.error_category, 'error_type', 'item_failed',
      'is_transient', true, 'items_transient', true,
      'message', pg_catalog.format('%s of %s items failed (item %s: %s)', v_c.transient + v_c.permanent,
                                   v_c.total, v_first.item_no, v_first.error_message)));
  elsif v_c.permanent > 0 or v_c.cancelled > 0 then
    return v_out || pg_catalog.jsonb_build_object('outcome', pg_catalog.jsonb_build_object(
      'status', case when p_job.allow_partial_success and v_c.ok > 0 then 'partial_success' else 'failed' end,
      'error_category', coalesce(v_first.error_category, 'SYSTEM'), 'error_type', 'item_failed',
      'is_transient', false,
      'message', pg_catalog.format('%s of %s items failed (item %s: %s)', v_c.permanent + v_c.cancelled,
                                   v_c.total, v_first.item_no, coalesce(v_first.error_message, 'cancelled'))));
  end if;
  return v_out || pg_catalog.jsonb_build_object('outcome', pg_catalog.jsonb_build_object('status', 'success'));
end;
$$;
comment on function etl._item_outcome(etl.runs, etl.jobs, bigint, jsonb) is
  'Derives a run''s outcome from its items: all succeeded -> success; any failed transiently -> a '
  'transient failure (retried for those items only); failed permanently -> partial_success where '
  'the job allows it and some succeeded, else failed. Also the run and attempt metric sums. Internal.';
