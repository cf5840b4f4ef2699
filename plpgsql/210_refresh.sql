-- Materialized views refreshed after a job: which ones (etl.refresh_plan), and the refresh itself
-- with its record (etl.refresh_view). The runner calls them between the job's work and its report,
-- each refresh in a transaction of its own, so a slow view never holds the job's locks.

create or replace function etl._can_refresh_concurrently(p_view regclass)
returns boolean
language sql
stable
set search_path = ''
as $$
  -- CONCURRENTLY needs a populated view and a valid unique index on plain columns, without WHERE.
  select c.relispopulated
         and exists (select 1 from pg_catalog.pg_index i
                      where i.indrelid = p_view and i.indisunique and i.indisvalid and i.indpred is null
                        and not (0 = any (i.indkey::int2[])))
    from pg_catalog.pg_class c where c.oid = p_view
$$;
comment on function etl._can_refresh_concurrently(regclass) is
  'True when REFRESH MATERIALIZED VIEW CONCURRENTLY works on the view: populated, with a valid '
  'unique index on plain columns and no WHERE clause.';

create or replace function etl.refresh_plan(run_id bigint, token bigint, succeeded boolean)
returns table (refresh_target_id bigint, schema_name text, view_name text, sequence integer,
               policy text, concurrent boolean)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform etl._attempt_is_current(refresh_plan.run_id, refresh_plan.token);
  return query
    select t.refresh_target_id, t.schema_name, t.view_name, l.sequence, l.policy,
           case t.refresh_mode
             when 'concurrently' then true
             when 'blocking' then false
             else coalesce(etl._can_refresh_concurrently(pg_catalog.to_regclass(
                    pg_catalog.quote_ident(t.schema_name) || '.' || pg_catalog.quote_ident(t.view_name))), false)
           end
      from etl.runs r
      join etl.job_refresh_targets l on l.job_id = r.job_id
      join etl.refresh_targets t on t.refresh_target_id = l.refresh_target_id
     where r.run_id = refresh_plan.run_id
       and (l.policy = 'always' or refresh_plan.succeeded)
     order by l.sequence, t.schema_name, t.view_name;
end;
$$;
comment on function etl.refresh_plan(bigint, bigint, boolean) is
  'The materialized views to refresh after the run''s job, in sequence order: all its links when '
  'succeeded, only the policy = always ones otherwise; concurrent says whether the refresh will be '
  'CONCURRENTLY (refresh_mode, or auto: when the view has a unique index).';

create or replace function etl.refresh_view(run_id bigint, token bigint, refresh_target_id bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_target etl.refresh_targets;
  v_link etl.job_refresh_targets;
  v_run etl.runs;
  v_view regclass;
  v_concurrent boolean;
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_status text := 'success';
  v_error text;
  v_ms bigint;
begin
  perform etl._assert_primary();
  perform etl._attempt_is_current(refresh_view.run_id, refresh_view.token);
  select r.* into v_run from etl.runs r where r.run_id = refresh_view.run_id;
  select t.* into v_target from etl.refresh_targets t where t.refresh_target_id = refresh_view.refresh_target_id;
  select l.* into v_link from etl.job_refresh_targets l
   where l.job_id = v_run.job_id and l.refresh_target_id = refresh_view.refresh_target_id;
  if v_link.job_id is null then
    raise exception 'refresh target % is not linked to job % of run %', refresh_view.refresh_target_id,
      v_run.job_id, refresh_view.run_id using errcode = 'invalid_parameter_value';
  end if;
  v_view := pg_catalog.to_regclass(pg_catalog.quote_ident(v_target.schema_name) || '.' || pg_catalog.quote_ident(v_target.view_name));
  v_concurrent := case v_target.refresh_mode when 'concurrently' then true when 'blocking' then false
                       else coalesce(etl._can_refresh_concurrently(v_view), false) end;
  if v_run.dry_run then
    v_status := 'skipped';
    v_error := 'dry run: views are not refreshed';
  elsif v_view is null then
    v_status := 'failed';
    v_error := pg_catalog.format('materialized view %I.%I does not exist', v_target.schema_name, v_target.view_name);
  else
    begin
      if v_concurrent then
        execute pg_catalog.format('refresh materialized view concurrently %s', v_view);
      else
        execute pg_catalog.format('refresh materialized view %s', v_view);
      end if;
    exception when others then
      v_status := 'failed';
      v_error := sqlerrm || ' (SQLSTATE ' || sqlstate || ')';
    end;
  end if;
  v_ms := (extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000)::bigint;
  insert into etl.run_refreshes (run_id, refresh_target_id, sequence, was_concurrent, status, started_at,
                                 ended_at, duration_ms, error_message)
  values (refresh_view.run_id, refresh_view.refresh_target_id, v_link.sequence, v_concurrent, v_status,
          v_started, pg_catalog.clock_timestamp(), v_ms, v_error);
  return pg_catalog.jsonb_build_object('status', v_status, 'concurrent', v_concurrent, 'duration_ms', v_ms,
                                       'view', v_target.schema_name || '.' || v_target.view_name,
                                       'error', v_error);
end;
$$;
comment on function etl.refresh_view(bigint, bigint, bigint) is
  'Refreshes one materialized view linked to the run''s job (CONCURRENTLY when planned so), as the '
  'view owner''s definer, and records it in etl.run_refreshes with its duration and outcome; a '
  'failure is recorded and returned, not raised; a dry run records it skipped. Returns '
  '{"status", "concurrent", "duration_ms", "view", "error"}.';
