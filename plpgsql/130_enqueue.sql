-- Enqueue: a pipeline run and its runs in one transaction, idempotent on a key.

-- The edges of a selection: what its pipeline run's DAG is made of.
create or replace function etl._selection_edges(p_job_ids bigint[])
returns table (parent_job_id bigint, child_job_id bigint, dependency_type text)
language sql
stable
set search_path = ''
as $$
  -- Declared edges among the selected jobs, plus dimensions before facts (seed 004) where no
  -- declared edge says so already.
  select d.parent_job_id, d.child_job_id, d.dependency_type
    from etl.job_dependencies d
   where d.parent_job_id = any (p_job_ids) and d.child_job_id = any (p_job_ids)
  union all
  select pj.job_id, cj.job_id, 'dimension_before_fact'
    from etl.jobs pj join etl.jobs cj on cj.role = 'fact' and cj.job_id = any (p_job_ids)
   where pj.role = 'dimension' and pj.job_id = any (p_job_ids)
     and not exists (select 1 from etl.job_dependencies d
                      where d.parent_job_id = pj.job_id and d.child_job_id = cj.job_id)
$$;
comment on function etl._selection_edges(bigint[]) is
  'The DAG edges among a selection of jobs: declared ones, and dimension before fact (seed 004) '
  'where no declared edge exists. Internal to enqueue.';

-- Expected remaining chain per job of a selection, so that claims take the critical path first.
create or replace function etl._critical_paths(p_job_ids bigint[], p_parents bigint[], p_children bigint[])
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  -- Jobs by position 1..n; edges as positions, grouped by child (its parents are
  -- v_par[v_first[c] .. v_first[c + 1] - 1]). Integer arrays are updated in place: one pass of
  -- Kahn's order costs O(jobs + edges), where jsonb values would be copied on every change.
  v_ids bigint[];
  v_dur bigint[];
  v_par integer[];
  v_first integer[];
  v_left integer[];   -- children not yet ranked
  v_best bigint[];    -- longest ranked child so far
  v_rank bigint[];
  v_queue integer[];
  v_n integer;
  v_head integer := 1;
  v_node integer;
  v_p integer;
  i integer;
begin
  select pg_catalog.array_agg(id order by id) into v_ids
    from (select distinct id from pg_catalog.unnest(p_job_ids) id) x;
  v_n := coalesce(pg_catalog.cardinality(v_ids), 0);
  if v_n = 0 then
    return '{}';
  end if;
  -- A job's expected duration: the mean of its last five successes, 1 s when it has none.
  select pg_catalog.array_agg(coalesce(h.ms, 1000) order by j.pos) into v_dur
    from pg_catalog.unnest(v_ids) with ordinality j(id, pos)
    left join lateral (select avg(x.duration_ms)::bigint as ms
                         from (select r.duration_ms from etl.runs r
                                where r.job_id = j.id and r.status = 'success'
                                order by r.ended_at desc limit 5) x) h on true;
  -- The edges (parent, child) as positions.
  with pos as (
    select id, pos::integer from pg_catalog.unnest(v_ids) with ordinality u(id, pos)
  ), ep as materialized (
    select distinct pp.pos as p, cp.pos as c
      from unnest(p_parents, p_children) e(p, c)  -- (multi-argument unnest: unqualified)
      join pos pp on pp.id = e.p join pos cp on cp.id = e.c
  )
  select coalesce((select pg_catalog.array_agg(ep.p order by ep.c, ep.p) from ep), '{}'),
         (select pg_catalog.array_agg(x.first order by x.g)
            from (select g, 1 + coalesce(sum(count(ep.c)) over (order by g rows between unbounded preceding
                                                                and 1 preceding), 0)::integer as first
                    from pg_catalog.generate_series(1, v_n + 1) g left join ep on ep.c = g group by g) x),
         (select pg_catalog.array_agg(x.n order by x.g)
            from (select g, count(ep.p)::integer as n
                    from pg_catalog.generate_series(1, v_n) g left join ep on ep.p = g group by g) x)
    into v_par, v_first, v_left;
  v_best := pg_catalog.array_fill(0::bigint, array[v_n]);
  v_rank := pg_catalog.array_fill(null::bigint, array[v_n]);
  -- From the sinks up: a job's rank is its duration plus its longest child's rank.
  select coalesce(pg_catalog.array_agg(g order by g), '{}') into v_queue
    from pg_catalog.generate_series(1, v_n) g where v_left[g] = 0;
  while v_head <= pg_catalog.cardinality(v_queue) loop
    v_node := v_queue[v_head];
    v_head := v_head + 1;
    v_rank[v_node] := v_dur[v_node] + v_best[v_node];
    for i in v_first[v_node] .. v_first[v_node + 1] - 1 loop
      v_p := v_par[i];
      v_best[v_p] := greatest(v_best[v_p], v_rank[v_node]);
      v_left[v_p] := v_left[v_p] - 1;
      if v_left[v_p] = 0 then
        v_queue := v_queue || v_p;
      end if;
    end loop;
  end loop;
  -- Jobs on a cycle (refused later) get no rank.
  return (select coalesce(pg_catalog.jsonb_object_agg(v_ids[g]::text, v_rank[g]), '{}')
            from pg_catalog.generate_series(1, v_n) g where v_rank[g] is not null);
end;
$$;
comment on function etl._critical_paths(bigint[], bigint[], bigint[]) is
  'For the jobs of a selection and the edges among them (parents[i] -> children[i]): {job_id: '
  'expected ms of the longest chain from the job to the end}, from the mean of each job''s last five '
  'successful durations (1 s without history). Internal to enqueue.';

create or replace function etl._critical_paths(p_job_ids bigint[])
returns jsonb
language sql
stable
set search_path = ''
as $$
  select etl._critical_paths(p_job_ids, coalesce(pg_catalog.array_agg(e.parent_job_id), '{}'),
                             coalesce(pg_catalog.array_agg(e.child_job_id), '{}'))
    from etl._selection_edges(p_job_ids) e
$$;
comment on function etl._critical_paths(bigint[]) is
  'etl._critical_paths over the edges of the selection (etl._selection_edges).';

create or replace function etl._replayed_pipeline_run(
  p_idempotency_key text, p_selection jsonb, p_params jsonb, p_dry_run boolean, p_mode text)
returns bigint
language plpgsql
stable
set search_path = ''
as $$
declare
  v_pr etl.pipeline_runs;
begin
  if p_idempotency_key is null then
    return null;
  end if;
  select p.* into v_pr from etl.pipeline_runs p where p.idempotency_key = p_idempotency_key;
  if not found then
    return null;
  end if;
  -- GUARD: a key names one request. The same key with another request is a client's bug: the
  -- caller would be told its request ran when another one did.
  if v_pr.selection is distinct from coalesce(p_selection, '{}') or v_pr.params is distinct from coalesce(p_params, '{}')
     or v_pr.dry_run is distinct from p_dry_run or v_pr.mode is distinct from p_mode then
    raise exception 'idempotency key "%" belongs to pipeline run % of another request (selection %, params %, mode %, dry run %): use a new key',
      p_idempotency_key, v_pr.pipeline_run_id, v_pr.selection, v_pr.params, v_pr.mode, v_pr.dry_run
      using errcode = 'invalid_parameter_value';
  end if;
  return v_pr.pipeline_run_id;
end;
$$;
comment on function etl._replayed_pipeline_run(text, jsonb, jsonb, boolean, text) is
  'The pipeline run an idempotency key already created for this same request (selection, params, '
  'dry run, mode), NULL for a new key; 22023 when the key was used for another request.';

create or replace function etl._create_pipeline_run(
  p_job_ids bigint[], p_selection jsonb, p_params jsonb, p_dry_run boolean, p_reason text,
  p_idempotency_key text, p_mode text, p_transaction_scope text, p_approval jsonb,
  p_logical_date timestamptz, p_trigger_type text, p_schedule_id bigint,
  p_correlation_id uuid default null, p_request_approval boolean default false)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_pid bigint;
  v_cycle text;
  v_run bigint;
  v_single boolean := pg_catalog.cardinality(p_job_ids) = 1;
  v_known text[];
  v_key text;
  v_logical timestamptz := coalesce(p_logical_date, pg_catalog.now());
  v_ranks jsonb;
  v_no_params text;
  -- The selection's edges (job ids and types) and their snapshot, worked out once.
  v_parents bigint[] := '{}';
  v_children bigint[] := '{}';
  v_types text[] := '{}';
  v_snapshot jsonb := '[]';
  v_named_job bigint;
begin
  v_pid := etl._replayed_pipeline_run(p_idempotency_key, p_selection, p_params, p_dry_run, p_mode);
  if v_pid is not null then
    return v_pid;
  end if;
  if p_correlation_id is not null then
    select j.job_id into v_named_job from etl.jobs j where j.slug = p_selection #>> '{jobs,0}';
  end if;
  if coalesce(pg_catalog.cardinality(p_job_ids), 0) = 0 then
    raise exception 'the selection % matches no enabled job', p_selection using errcode = 'invalid_parameter_value';
  end if;
  if p_mode not in ('incremental', 'full') then
    raise exception 'mode must be incremental or full, got "%"', p_mode using errcode = 'invalid_parameter_value';
  end if;
  if p_transaction_scope not in ('per_procedure', 'per_group') then
    raise exception 'transaction_scope must be per_procedure or per_group, got "%"', p_transaction_scope
      using errcode = 'invalid_parameter_value';
  end if;
  if pg_catalog.jsonb_typeof(coalesce(p_params, '{}')) <> 'object' then
    raise exception 'params must be a JSON object, got %', pg_catalog.jsonb_typeof(p_params)
      using errcode = 'invalid_parameter_value';
  end if;
  -- GUARD: a full refresh needs every job's consent and a recorded approval, or nothing is enqueued.
  if p_mode = 'full' then
    select pg_catalog.string_agg(slug, ', ' order by slug) into v_key
      from etl.jobs where job_id = any (p_job_ids) and not allow_full_refresh;
    if v_key is not null then
      raise exception 'full refresh is not allowed for job(s) %: set allow_full_refresh first', v_key
        using errcode = 'insufficient_privilege';
    end if;
    if p_approval is null and p_request_approval then
      -- created awaiting_approval; etl.approve releases it. The approver is told why.
      if coalesce(pg_catalog.btrim(p_reason), '') = '' then
        raise exception 'request_approval needs a reason: why the full refresh is wanted'
          using errcode = 'invalid_parameter_value';
      end if;
    elsif p_approval is not null and etl._approval_by_another_user() then
      raise exception 'with approval_by_another_user on, a full refresh is approved by another database user: request_approval => true, then etl.approve by someone else'
        using errcode = 'insufficient_privilege';
    elsif p_approval is null or p_approval -> 'confirmed' is distinct from 'true'::jsonb  -- JSON true, not "yes"
       or coalesce(p_approval ->> 'approver', '') = '' or coalesce(p_approval ->> 'reason', '') = '' then
      raise exception 'full refresh requires an approval: approval => {"confirmed": true, "approver": "...", "reason": "..."}, or request_approval => true and a later etl.approve(pipeline_run_id, reason)'
        using errcode = 'insufficient_privilege';
    end if;
  elsif p_request_approval then
    raise exception 'request_approval applies to full refreshes (mode => ''full'') only'
      using errcode = 'invalid_parameter_value';
  end if;
  -- GUARD: every pipeline-level parameter belongs to some selected job.
  if not v_single then
    select pg_catalog.array_agg(distinct jp.name) into v_known
      from etl.job_parameters jp where jp.job_id = any (p_job_ids);
    for v_key in select pg_catalog.jsonb_object_keys(coalesce(p_params, '{}')) loop
      if v_known is null or not v_key = any (v_known) then
        raise exception 'parameter "%" is not a parameter of any selected job', v_key
          using errcode = 'invalid_parameter_value';
      end if;
    end loop;
  end if;

  -- The DAG among the selected jobs (a job alone has none): for the edges between its runs, the
  -- critical paths, and the pipeline run's snapshot, written with it rather than by a second
  -- statement (a second row version, and GIN entries written twice).
  if not v_single then
    select coalesce(pg_catalog.array_agg(e.parent_job_id order by pj.slug, cj.slug), '{}'),
           coalesce(pg_catalog.array_agg(e.child_job_id order by pj.slug, cj.slug), '{}'),
           coalesce(pg_catalog.array_agg(e.dependency_type order by pj.slug, cj.slug), '{}'),
           coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('parent', pj.slug, 'child', cj.slug,
                                                                       'type', e.dependency_type)
                                         order by pj.slug, cj.slug), '[]')
      into v_parents, v_children, v_types, v_snapshot
      from etl._selection_edges(p_job_ids) e
      join etl.jobs pj on pj.job_id = e.parent_job_id
      join etl.jobs cj on cj.job_id = e.child_job_id;
  end if;

  insert into etl.pipeline_runs (idempotency_key, trigger_type, schedule_id, logical_date, status, mode,
                                 transaction_scope, dry_run, params, selection, reason, started_at,
                                 full_refresh_confirmed, approved_by, approved_at, approval_reason,
                                 dependency_snapshot)
  values (p_idempotency_key, p_trigger_type, p_schedule_id, v_logical,
          case when p_mode = 'full' and p_approval is null then 'awaiting_approval' else 'running' end, p_mode,
          p_transaction_scope, p_dry_run, coalesce(p_params, '{}'), coalesce(p_selection, '{}'), p_reason,
          pg_catalog.now(), p_mode = 'full' and p_approval is not null,
          case when p_mode = 'full' then p_approval ->> 'approver' end,
          case when p_mode = 'full' and p_approval is not null then pg_catalog.now() end,
          case when p_mode = 'full' then p_approval ->> 'reason' end,
          v_snapshot)
  on conflict do nothing
  returning pipeline_run_id into v_pid;
  if v_pid is null then
    -- A concurrent trigger with the same key (or schedule fire time) won: return its run.
    select pipeline_run_id into v_pid from etl.pipeline_runs
     where idempotency_key = p_idempotency_key
        or (p_trigger_type = 'schedule' and schedule_id = p_schedule_id and logical_date = v_logical)
     limit 1;
    return v_pid;
  end if;

  -- One statement for all runs (a statement per run costs its own executor start and CHECK
  -- set-up on a table with many of both). Each job takes the pipeline parameters it declares (all
  -- of them when it runs alone), validated and completed with its defaults.
  v_ranks := case when v_single then '{}' else etl._critical_paths(p_job_ids, v_parents, v_children) end;
  -- etl.param_fingerprint('{}') as a constant (pgTAP checks it): a fresh session would plan that
  -- call, and compile the canonical JSON functions, on every trigger (1-1.5 ms).
  v_no_params := '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
  -- (MATERIALIZED: each job's parameters are validated once; a pulled-up subquery would call
  -- etl._validate_params once for every column that mentions them.)
  with v as materialized (
    select j.job_id, j.priority, j.max_attempts,
           etl._validate_params(j.job_id,
             case when v_single then coalesce(p_params, '{}')
                  else (select coalesce(pg_catalog.jsonb_object_agg(e.key, e.value), '{}')
                          from pg_catalog.jsonb_each(coalesce(p_params, '{}')) e
                         where exists (select 1 from etl.job_parameters jp
                                        where jp.job_id = j.job_id and jp.name = e.key)) end,
             p_mode) as params
      from etl.jobs j
     where j.job_id = any (p_job_ids)
  )
  insert into etl.runs (pipeline_run_id, job_id, correlation_id, status, mode, dry_run, params,
                        parameter_fingerprint, priority, critical_path_ms, logical_date, scheduled_at,
                        max_attempts, param_snapshot, group_id, reason)
  -- (The correlation id is the named job's: run_job names one, its downstream runs get their own.)
  select v_pid, v.job_id,
         coalesce(case when v.job_id = v_named_job then p_correlation_id end, pg_catalog.gen_random_uuid()),
         'pending', p_mode, p_dry_run, v.params,
         case when v.params = '{}'::jsonb then v_no_params else etl.param_fingerprint(v.params) end,
         v.priority, coalesce((v_ranks ->> v.job_id::text)::bigint, 0),
         v_logical, v_logical, v.max_attempts, v.params,
         case when p_transaction_scope = 'per_group'
              then (select m.group_id from etl.job_group_members m where m.job_id = v.job_id) end,
         p_reason
    from v
   order by v.job_id;

  -- The edges between the runs.
  if pg_catalog.cardinality(v_parents) > 0 then
    insert into etl.run_dependencies (pipeline_run_id, parent_run_id, child_run_id, dependency_type)
    select v_pid, pr.run_id, cr.run_id, e.dependency_type
      from unnest(v_parents, v_children, v_types) e(parent_job_id, child_job_id, dependency_type)
      join etl.runs pr on pr.pipeline_run_id = v_pid and pr.job_id = e.parent_job_id
      join etl.runs cr on cr.pipeline_run_id = v_pid and cr.job_id = e.child_job_id;
  end if;

  -- The declared DAG is the snapshot; per_group then folds each group into one unit.
  if p_transaction_scope = 'per_group' then
    perform etl._form_groups(v_pid);
  end if;

  -- GUARD: implied edges (dimensions before facts, groups as one unit) must not close a cycle with
  -- declared ones: a fact that feeds a dimension, a job between two members of one group. Declared
  -- edges are acyclic (etl.job_dependencies refuses a cycle on insert), so a cycle holds an implied
  -- edge, and the walk starts from those only: from each implied edge's parent, bounded by
  -- (implied parents x runs) pairs, and nothing at all for a selection without roles or groups (a
  -- walk from every run would cost runs x runs pairs: a quarter of a million for a chain of 700).
  -- The path is spelled out only when some run reaches itself.
  if exists (
    with recursive reach(start_id, run_id) as (
      select d.parent_run_id, d.child_run_id from etl.run_dependencies d
       where d.pipeline_run_id = v_pid and d.dependency_type in ('dimension_before_fact', 'group')
      union
      select r.start_id, d.child_run_id
        from reach r join etl.run_dependencies d on d.parent_run_id = r.run_id
       where r.start_id <> r.run_id
    )
    select 1 from reach where start_id = run_id) then
    with recursive walk(start_id, run_id, path) as (
      select d.parent_run_id, d.child_run_id, array[d.parent_run_id, d.child_run_id]
        from etl.run_dependencies d
       where d.pipeline_run_id = v_pid and d.dependency_type in ('dimension_before_fact', 'group')
      union all
      select w.start_id, d.child_run_id, w.path || d.child_run_id
        from walk w join etl.run_dependencies d on d.parent_run_id = w.run_id
       where not d.child_run_id = any (w.path[2:])
    )
    select pg_catalog.string_agg(j.slug, ' -> ' order by p.ord) into v_cycle
      from (select path from walk where run_id = start_id limit 1) c,
           pg_catalog.unnest(c.path) with ordinality p(run_id, ord)
      join etl.runs r on r.run_id = p.run_id join etl.jobs j on j.job_id = r.job_id;
  end if;
  if v_cycle is not null then
    raise exception 'dependency_cycle: the implied ordering (dimensions before facts, or a group run as one unit) closes the cycle %', v_cycle
      using errcode = 'check_violation';
  end if;

  if p_mode = 'full' and p_approval is null then
    return v_pid;  -- nothing runs before etl.approve
  end if;
  if p_mode = 'full' then
    -- An approval given with the trigger is recorded on each run, as etl.approve records its own.
    insert into etl.run_events (run_id, pipeline_run_id, event_type, from_status, to_status, actor, detail)
    select r.run_id, r.pipeline_run_id, 'approval', r.status, r.status, session_user,
           pg_catalog.jsonb_build_object('approver', p_approval ->> 'approver', 'reason', p_approval ->> 'reason',
                                         'mode', 'full')
      from etl.runs r where r.pipeline_run_id = v_pid;
  end if;
  perform etl._release_roots(v_pid);
  return v_pid;
end;
$$;
create or replace function etl._release_roots(p_pipeline_run_id bigint)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_run bigint;
  v_count integer;
  v_now timestamptz := pg_catalog.clock_timestamp();
begin
  -- The roots whose outside parents (if any) last succeeded go to queued in one statement, with
  -- their events in the same one (a statement per root costs more than the rows themselves).
  -- (Group leaders answer for their members' outside parents: etl._try_release below.)
  with ready as (
    select r.run_id from etl.runs r
     where r.pipeline_run_id = p_pipeline_run_id and r.status = 'pending' and r.group_id is null
       and not exists (select 1 from etl.run_dependencies d where d.child_run_id = r.run_id)
       -- (CASE: the latest-run lookup only for a parent outside the pipeline run, not for each edge.)
       and not exists (select 1 from etl.job_dependencies jd
                        where jd.child_job_id = r.job_id
                          and case when exists (select 1 from etl.runs pr
                                                 where pr.pipeline_run_id = p_pipeline_run_id and pr.job_id = jd.parent_job_id)
                                   then false
                                   else not etl._latest_run_succeeded(jd.parent_job_id) end)
  ), queued as (
    update etl.runs r set status = 'queued', queued_at = v_now, next_attempt_at = v_now
      from ready where r.run_id = ready.run_id
    returning r.run_id, r.pipeline_run_id
  )
  insert into etl.run_events (run_id, pipeline_run_id, event_type, from_status, to_status, actor, detail)
  select q.run_id, q.pipeline_run_id, 'status', 'pending', 'queued', session_user,
         '{"why": "a root of its pipeline run (nothing upstream in it)"}'
    from queued q;
  get diagnostics v_count = row_count;
  -- The others wait for an outside parent: etl._try_release starts their wait limit.
  for v_run in
    select r.run_id from etl.runs r where r.pipeline_run_id = p_pipeline_run_id and r.status = 'pending'
       and r.group_leader_run_id is null
       and not exists (select 1 from etl.run_dependencies d where d.child_run_id = r.run_id)
     order by r.run_id
  loop
    if etl._try_release(v_run) then
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end;
$$;
comment on function etl._release_roots(bigint) is
  'Releases the runs of a pipeline run that have no parent in it (group members follow their leader). Internal.';

comment on function etl._create_pipeline_run(bigint[], jsonb, jsonb, boolean, text, text, text, text, jsonb, timestamptz, text, bigint, uuid, boolean) is
  'Creates a pipeline run with one run per job, their dependency edges (declared and '
  'dimension-before-fact), and releases the roots; idempotent on the key. Internal.';

create or replace function etl._select_jobs(
  p_jobs text[], p_tags text[], p_layer text, p_downstream boolean)
returns bigint[]
language plpgsql
stable
set search_path = ''
as $$
declare
  v_unknown text;
  v_disabled text;
  v_ids bigint[];
begin
  if pg_catalog.array_position(p_jobs, null) is not null then
    raise exception 'jobs must name jobs by slug, got a null in %', p_jobs using errcode = 'invalid_parameter_value';
  end if;
  select pg_catalog.string_agg(s, ', ') into v_unknown
    from pg_catalog.unnest(p_jobs) s where not exists (select 1 from etl.jobs j where j.slug = s);
  if v_unknown is not null then
    raise exception 'no such job: %', v_unknown using errcode = 'invalid_parameter_value';
  end if;
  -- A tag no job carries is a typo, not an empty part of the selection.
  select pg_catalog.string_agg(s, ', ') into v_unknown
    from pg_catalog.unnest(p_tags) s where not exists (select 1 from etl.job_tags t where t.tag = s);
  if v_unknown is not null then
    raise exception 'no job has the tag(s) %', v_unknown using errcode = 'invalid_parameter_value';
  end if;
  select pg_catalog.string_agg(slug, ', ') into v_disabled
    from etl.jobs where slug = any (p_jobs) and not enabled;
  if v_disabled is not null then
    raise exception 'job(s) % are disabled: enable them first (etl jobs enable)', v_disabled
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  if p_layer is not null and p_layer not in ('bronze', 'silver', 'gold') then
    raise exception 'layer must be bronze, silver or gold, got "%"', p_layer using errcode = 'invalid_parameter_value';
  end if;
  with recursive chosen(job_id) as (
    select j.job_id from etl.jobs j
     where j.slug = any (p_jobs)
        or (p_layer is not null and j.layer = p_layer and j.enabled)
        or (p_tags is not null and j.enabled and exists (select 1 from etl.job_tags t
                                                         where t.job_id = j.job_id and t.tag = any (p_tags)))
    union
    select d.child_job_id from etl.job_dependencies d join chosen c on d.parent_job_id = c.job_id
      join etl.jobs j on j.job_id = d.child_job_id
     where p_downstream and j.enabled
  )
  select pg_catalog.array_agg(job_id order by job_id) into v_ids from chosen;
  return v_ids;
end;
$$;
comment on function etl._select_jobs(text[], text[], text, boolean) is
  'Resolves a selection (slugs, tags, layer, optionally the downstream closure) to job ids; '
  'unknown or disabled named jobs are errors, disabled jobs are left out of tag/layer selections.';

create or replace function etl.trigger_pipeline(
  jobs text[] default null, tags text[] default null, layer text default null,
  downstream boolean default false, params jsonb default '{}', dry_run boolean default false,
  reason text default null, idempotency_key text default null, mode text default 'incremental',
  transaction_scope text default 'per_procedure', approval jsonb default null,
  logical_date timestamptz default null, request_approval boolean default false)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pid bigint;
  v_selection jsonb;
begin
  perform etl._assert_primary();
  if trigger_pipeline.jobs is null and trigger_pipeline.tags is null and trigger_pipeline.layer is null then
    raise exception 'select jobs by jobs, tags or layer' using errcode = 'invalid_parameter_value';
  end if;
  v_selection := pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'jobs', trigger_pipeline.jobs, 'tags', trigger_pipeline.tags, 'layer', trigger_pipeline.layer,
    'downstream', trigger_pipeline.downstream));
  -- A replay of a request already made returns its pipeline run, and is no new action to audit.
  v_pid := etl._replayed_pipeline_run(trigger_pipeline.idempotency_key, v_selection, trigger_pipeline.params,
                                      trigger_pipeline.dry_run, trigger_pipeline.mode);
  if v_pid is not null then
    return v_pid;
  end if;
  v_pid := etl._create_pipeline_run(
    etl._select_jobs(trigger_pipeline.jobs, trigger_pipeline.tags, trigger_pipeline.layer, trigger_pipeline.downstream),
    v_selection, trigger_pipeline.params, trigger_pipeline.dry_run, trigger_pipeline.reason,
    trigger_pipeline.idempotency_key, trigger_pipeline.mode, trigger_pipeline.transaction_scope,
    trigger_pipeline.approval, trigger_pipeline.logical_date, 'manual', null, null,
    trigger_pipeline.request_approval);
  insert into etl.audit_log (action, target_type, target_id, reason, details)
  values ('trigger_pipeline', 'pipeline_run', v_pid::text, trigger_pipeline.reason,
          v_selection || pg_catalog.jsonb_build_object('params', trigger_pipeline.params,
            'dry_run', trigger_pipeline.dry_run, 'mode', trigger_pipeline.mode, 'approval', trigger_pipeline.approval));
  return v_pid;
end;
$$;
comment on function etl.trigger_pipeline(text[], text[], text, boolean, jsonb, boolean, text, text, text, text, jsonb, timestamptz, boolean) is
  'Triggers a pipeline run of the jobs selected by slugs, tags or layer (plus their downstream '
  'closure when downstream), all runs created in one transaction and pending until their upstream '
  'in the run succeeded; dimensions run before facts. Idempotent on idempotency_key. '
  'transaction_scope per_group runs the selected members of each job group in one transaction. '
  'mode full needs approval => {"confirmed": true, "approver": ..., "reason": ...}, or '
  'request_approval => true, which creates it awaiting_approval until etl.approve. Returns the pipeline run id.';

create or replace function etl.run_job(
  job text, params jsonb default '{}', dry_run boolean default false, reason text default null,
  downstream boolean default false, correlation_id uuid default null, mode text default 'incremental',
  approval jsonb default null, logical_date timestamptz default null, request_approval boolean default false)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run bigint;
  v_pid bigint;
  v_job_id bigint;
  v_replay record;
begin
  perform etl._assert_primary();
  -- Idempotent: the same correlation id returns the run it created before.
  if run_job.correlation_id is not null then
    select r.run_id, j.slug, r.params, r.dry_run, r.mode into v_replay
      from etl.runs r join etl.jobs j on j.job_id = r.job_id where r.correlation_id = run_job.correlation_id;
    if found then
      -- GUARD: a correlation id names one request (its params after defaults are the run's own).
      if v_replay.slug <> run_job.job or v_replay.dry_run <> run_job.dry_run or v_replay.mode <> run_job.mode
         or not (v_replay.params @> coalesce(run_job.params, '{}')) then
        raise exception 'correlation id % belongs to run % of another request (job %, params %, mode %, dry run %): use a new id',
          run_job.correlation_id, v_replay.run_id, v_replay.slug, v_replay.params, v_replay.mode, v_replay.dry_run
          using errcode = 'invalid_parameter_value';
      end if;
      return v_replay.run_id;  -- a replay: nothing new to audit
    end if;
  end if;
  v_pid := etl._create_pipeline_run(
    etl._select_jobs(array[run_job.job], null, null, run_job.downstream),
    pg_catalog.jsonb_build_object('jobs', array[run_job.job], 'downstream', run_job.downstream),
    run_job.params, run_job.dry_run, run_job.reason,
    case when run_job.correlation_id is not null then 'run:' || run_job.correlation_id::text end,
    run_job.mode, 'per_procedure', run_job.approval, run_job.logical_date, 'manual', null,
    run_job.correlation_id, run_job.request_approval);
  select j.job_id into v_job_id from etl.jobs j where j.slug = run_job.job;
  select r.run_id into v_run from etl.runs r where r.pipeline_run_id = v_pid and r.job_id = v_job_id;
  insert into etl.audit_log (action, target_type, target_id, reason, details)
  values ('run_job', 'run', v_run::text, run_job.reason,
          pg_catalog.jsonb_build_object('job', run_job.job, 'params', run_job.params, 'dry_run', run_job.dry_run,
                                        'downstream', run_job.downstream, 'mode', run_job.mode,
                                        'pipeline_run_id', v_pid, 'approval', run_job.approval));
  return v_run;
end;
$$;
comment on function etl.run_job(text, jsonb, boolean, text, boolean, uuid, text, jsonb, timestamptz, boolean) is
  'Runs one job on demand (with its downstream closure when downstream) in a new pipeline run. '
  'params are validated against the job''s parameter schema, defaults filled in, and fingerprinted '
  '(with downstream, each job takes the parameters it declares). '
  'Idempotent: the same correlation_id returns the existing run. A job whose parents are outside '
  'the pipeline run waits for their latest runs to succeed (up to its upstream wait limit). '
  'mode => ''full'' needs the job''s allow_full_refresh and approval => {"confirmed": true, '
  '"approver", "reason"}, or request_approval => true (then etl.approve releases it). '
  'Returns the run id of the named job.';
