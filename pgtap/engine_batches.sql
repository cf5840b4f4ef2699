-- pgTAP tests for the engine's batch paths: etl.claim(worker, max_runs) with its writes deferred to
-- one statement per table (plpgsql/150_claim.sql), etl.finish_many with its set-based plain
-- successes (etl._finish_successes) and the rest through etl._finish (plpgsql/160_finish.sql), and
-- etl._release_children over an array of runs (plpgsql/140_dag.sql): claim order, one attempt,
-- lock, event and slot per claimed run, concurrency keys and the global bound inside one batch,
-- equivalence of finish_many and finish, released children, cursors, alerts, mixed batches, and
-- the refusals (stale token, duplicate, unknown run) that leave the whole batch unwritten.

BEGIN;
SELECT plan(80);

-- ---------------------------------------------------------------- helpers
\ir lib/engine_helpers.psql

-- Named values of this file (run ids, pipeline run ids), so that no id is written down.
CREATE TEMP TABLE kv (k text PRIMARY KEY, id bigint);
CREATE FUNCTION etl_test.v(p_k text) RETURNS bigint LANGUAGE sql AS $$
  SELECT id FROM kv WHERE k = p_k
$$;
-- Runs each job alone, in this order, and names its run after the job.
CREATE FUNCTION etl_test.run_named(VARIADIC p_slugs text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  FOREACH s IN ARRAY p_slugs LOOP
    INSERT INTO kv VALUES (s, etl.run_job(s));
  END LOOP;
END $$;
-- One report of finish_many for the current attempt of a run.
CREATE FUNCTION etl_test.rep(p_run bigint, p_outcome jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('run_id', p_run, 'token', etl_test.token(p_run), 'outcome', p_outcome)
$$;
-- Every running run finished as a success in one finish_many batch; returns how many.
CREATE FUNCTION etl_test.finish_all() RETURNS integer LANGUAGE sql AS $$
  SELECT count(*)::int FROM etl.finish_many(coalesce(
    (SELECT jsonb_agg(etl_test.rep(run_id, '{"status": "success"}') ORDER BY run_id)
       FROM etl.runs WHERE status = 'running'), '[]'))
$$;
-- etl.claim remembers, per session, where a slow scan stopped (etl.claim_floor) and starts the
-- next claims of the next half second after it. The order tests want the exact, full scan.
CREATE FUNCTION etl_test.full_scan() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('etl.claim_floor', '', false);
END $$;
-- etl_test.claim_run after a full scan: a floored claim of one could take another queued run.
CREATE FUNCTION etl_test.claim_exact(p_run bigint, p_worker text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM etl_test.full_scan();
  RETURN etl_test.claim_run(p_run, p_worker);
END $$;
-- What a finished run, its attempt and its success event look like, to compare two runs.
CREATE FUNCTION etl_test.run_shape(p_run bigint) RETURNS text LANGUAGE sql AS $$
  SELECT row(status, ended_at IS NOT NULL, duration_ms IS NOT NULL AND duration_ms >= 0, attempt_count,
             records_read, records_written, page_count, rows_affected, metrics, lineage, sql_executed,
             error_category, is_transient, error_type, error_message, next_attempt_at,
             items_succeeded, items_failed)::text
    FROM etl.runs WHERE run_id = p_run
$$;
CREATE FUNCTION etl_test.attempt_shape(p_run bigint) RETURNS text LANGUAGE sql AS $$
  SELECT row(a.status, a.worker_id, a.ended_at IS NOT NULL, a.duration_ms IS NOT NULL AND a.duration_ms >= 0,
             a.records_read, a.records_written, a.page_count, a.rows_affected, a.metrics,
             a.error_category, a.is_transient, a.error_type, a.error_message, a.backoff_ms, a.next_attempt_at)::text
    FROM etl.run_attempts a WHERE a.attempt_id = etl_test.token(p_run)
$$;
CREATE FUNCTION etl_test.success_events(p_run bigint) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(row(event_type, from_status, to_status, actor, detail)::text, '; ' ORDER BY event_id)
    FROM etl.run_events WHERE run_id = p_run AND to_status = 'success'
$$;

UPDATE etl.schedules SET is_active = false;
SELECT etl_test.park();

-- ---------------------------------------------------------------- 1. batch claim
SELECT etl_test.make_job('bc_a'); SELECT etl_test.make_job('bc_solo'); SELECT etl_test.make_job('bc_head');
SELECT etl_test.make_job('bc_tail'); SELECT etl_test.make_job('bc_x'); SELECT etl_test.make_job('bc_y');
SELECT etl_test.make_job('bc_z'); SELECT etl_test.make_job('bc_hi');
UPDATE etl.jobs SET priority = 5 WHERE slug = 'bc_hi';
SELECT etl_test.dep('bc_head', 'bc_tail');
-- Pipeline runs in this order: a alone; solo, head -> tail; x, y, z; hi alone (priority 5).
SELECT etl_test.run_named('bc_a');
INSERT INTO kv VALUES ('bc_p2', etl.trigger_pipeline(jobs => ARRAY['bc_solo', 'bc_head', 'bc_tail']));
INSERT INTO kv VALUES ('bc_p3', etl.trigger_pipeline(jobs => ARRAY['bc_x', 'bc_y', 'bc_z']));
SELECT etl_test.run_named('bc_hi');
INSERT INTO kv SELECT 'bc_' || j.slug_short, etl_test.run_of(p.id, j.slug)
  FROM (VALUES ('bc_solo', 'solo', 'bc_p2'), ('bc_head', 'head', 'bc_p2'), ('bc_tail', 'tail', 'bc_p2'),
               ('bc_x', 'x', 'bc_p3'), ('bc_y', 'y', 'bc_p3'), ('bc_z', 'z', 'bc_p3')) j(slug, slug_short, pk)
  JOIN kv p ON p.k = j.pk;
-- In the third pipeline run y has waited longest; x and z have waited exactly as long.
UPDATE etl.runs SET next_attempt_at = now() - interval '1 minute' WHERE run_id = etl_test.v('bc_y');
UPDATE etl.runs SET next_attempt_at = now() - interval '30 seconds' WHERE run_id IN (etl_test.v('bc_x'), etl_test.v('bc_z'));

SELECT is(ARRAY(SELECT critical_path_ms FROM etl.runs WHERE run_id IN (etl_test.v('bc_solo'), etl_test.v('bc_head'))
                 ORDER BY run_id),
          ARRAY[1000, 2000]::bigint[],
          'premise: in the second pipeline run solo (lower run id) heads a 1 s chain, head a 2 s chain');
SELECT etl_test.full_scan();
CREATE TEMP TABLE bc_claim AS SELECT * FROM etl.claim('bw', 5) WITH ORDINALITY;
SELECT is(ARRAY(SELECT run_id FROM bc_claim ORDER BY ordinality),
          ARRAY[etl_test.v('bc_hi'), etl_test.v('bc_a'), etl_test.v('bc_head'), etl_test.v('bc_solo'), etl_test.v('bc_y')],
          'claim(bw, 5) returns 5 runs in claim order: priority, then pipeline run, then critical path, then age');
SELECT is((SELECT row(count(*), count(DISTINCT a.run_id),
                      bool_and(a.attempt_no = 1 AND a.worker_id = 'bw' AND a.status = 'running'))::text
             FROM etl.run_attempts a WHERE a.run_id IN (SELECT run_id FROM bc_claim)),
          '(5,5,t)', 'the batch wrote exactly one attempt row per claimed run (attempt 1, worker bw, running)');
SELECT is((SELECT count(*)::int FROM bc_claim c JOIN etl.run_attempts a ON a.run_id = c.run_id
            WHERE c.token = a.attempt_id AND c.attempt_no = a.attempt_no AND c.lease_expires_at = a.lease_expires_at),
          5, 'each returned token is the attempt id of its run (with its attempt_no and lease)');
SELECT is((SELECT row(count(*), count(DISTINCT l.run_id),
                      count(*) FILTER (WHERE l.status = 'active' AND l.holder = 'bw' AND l.attempt_id = c.token
                                         AND l.expires_at = c.lease_expires_at))::text
             FROM etl.job_locks l JOIN bc_claim c ON c.run_id = l.run_id),
          '(5,5,5)', 'exactly one active job_locks row per claimed run, held by bw with its token and lease');
SELECT is((SELECT row(count(*), count(DISTINCT e.run_id),
                      count(*) FILTER (WHERE e.actor = 'bw' AND e.event_type = 'status'
                                         AND e.detail = jsonb_build_object('attempt_no', 1, 'token', c.token)
                                         AND e.pipeline_run_id = c.pipeline_run_id))::text
             FROM etl.run_events e JOIN bc_claim c ON c.run_id = e.run_id
            WHERE e.from_status = 'queued' AND e.to_status = 'running'),
          '(5,5,5)', 'exactly one queued -> running event per claimed run, by bw, with attempt_no and token');
SELECT is((SELECT count(*)::int FROM etl.run_slots WHERE run_id IS NOT NULL), 5, 'exactly 5 run_slots are busy');
SELECT is((SELECT count(DISTINCT s.slot_no)::int FROM etl.run_slots s
             JOIN etl.run_attempts a ON a.run_slot = s.slot_no AND a.run_id = s.run_id
             JOIN bc_claim c ON c.token = a.attempt_id),
          5, 'each claimed run holds its own slot, the one its attempt names');
SELECT is((SELECT row(count(*) FILTER (WHERE r.status = 'running' AND r.attempt_count = 1 AND r.started_at IS NOT NULL),
                      count(*))::text
             FROM etl.runs r WHERE r.run_id IN (SELECT run_id FROM bc_claim)),
          '(5,5)', 'the claimed runs are running, attempt_count 1, started');
SELECT is(ARRAY[etl_test.status(etl_test.v('bc_x')), etl_test.status(etl_test.v('bc_z')), etl_test.status(etl_test.v('bc_tail'))],
          ARRAY['queued', 'queued', 'pending'], 'the runs beyond max_runs stay queued (the child pending)');
SELECT etl_test.full_scan();
SELECT is(ARRAY(SELECT run_id FROM etl.claim('bw2', 5) WITH ORDINALITY ORDER BY ordinality),
          ARRAY[etl_test.v('bc_x'), etl_test.v('bc_z')],
          'the next batch takes the rest; at equal age the lower run id first');
SELECT is(etl_test.finish_all(), 7, 'cleanup: the 7 running runs finish in one batch');

-- ---------------------------------------------------------------- 2. concurrency keys in one batch
SELECT etl_test.park();
SELECT etl_test.make_job('bk_1'); SELECT etl_test.make_job('bk_2');
UPDATE etl.jobs SET concurrency_key = 'bkey' WHERE slug IN ('bk_1', 'bk_2');
SELECT etl_test.run_named('bk_1', 'bk_2');
SELECT etl_test.full_scan();
CREATE TEMP TABLE bk_claim AS SELECT * FROM etl.claim('kw', 5);
SELECT is(ARRAY(SELECT run_id FROM bk_claim), ARRAY[etl_test.v('bk_1')],
          'two queued runs sharing a concurrency key (limit 1): one claim of 5 takes only the first');
SELECT is((SELECT array_agg(row(concurrency_key, run_id = etl_test.v('bk_1'))::text) FROM etl.job_locks WHERE status = 'active'),
          ARRAY['(bkey,t)'], 'one active lock on bkey, held by the claimed run');
SELECT is(etl_test.status(etl_test.v('bk_2')), 'queued', 'the other run of the key stays queued');
SELECT is((SELECT count(*)::int FROM etl.claim('kw2', 5)), 0,
          'a run whose key an active lock holds is not claimed by a later batch');
SELECT is(etl_test.status(etl_test.v('bk_2')), 'queued', 'and it stays queued');
SELECT etl_test.finish_all();

SELECT etl_test.park();
SELECT etl_test.make_job('bl_1'); SELECT etl_test.make_job('bl_2'); SELECT etl_test.make_job('bl_3');
UPDATE etl.jobs SET concurrency_key = 'key', concurrency_limit = 2 WHERE slug IN ('bl_1', 'bl_2', 'bl_3');
SELECT etl_test.run_named('bl_1', 'bl_2', 'bl_3');
SELECT etl_test.full_scan();
CREATE TEMP TABLE bl_claim AS SELECT * FROM etl.claim('kw', 5);
SELECT is(ARRAY(SELECT run_id FROM bl_claim ORDER BY run_id), ARRAY[etl_test.v('bl_1'), etl_test.v('bl_2')],
          'concurrency_limit 2 on a shared key: one batch of 5 takes two of the three runs');
SELECT is(ARRAY(SELECT row(l.concurrency_key, l.pool_key, l.slot_no)::text FROM etl.job_locks l
                 WHERE l.status = 'active' AND l.run_id IN (SELECT run_id FROM bl_claim) ORDER BY l.slot_no),
          ARRAY['(key,key,1)', '(key#2,key,2)'], 'their locks are key (slot 1) and key#2 (slot 2) of pool key');
SELECT is(etl_test.status(etl_test.v('bl_3')), 'queued', 'the third run of the full pool stays queued');
SELECT is((SELECT count(*)::int FROM etl.claim('kw2', 5)), 0, 'a later batch cannot take a third slot of the pool');
SELECT etl_test.finish_all();

-- The global bound.
SELECT etl_test.park();
SELECT etl.set_setting('parallel_jobs', '2', 'test');
SELECT etl_test.make_job('bg_1'); SELECT etl_test.make_job('bg_2'); SELECT etl_test.make_job('bg_3');
SELECT etl_test.run_named('bg_1', 'bg_2', 'bg_3');
SELECT etl_test.full_scan();
SELECT is((SELECT count(*)::int FROM etl.claim('gw', 5)), 2, 'with parallel_jobs 2 a claim of 5 over 3 runs returns 2');
SELECT is((SELECT row(count(*), count(run_id))::text FROM etl.run_slots), '(2,2)', 'both of the two slots are busy');
SELECT is((SELECT count(*)::int FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('bg_1'), '{"status": "success"}'))))
          , 1, 'one of them finishes through finish_many');
SELECT is((SELECT count(*)::int FROM etl.claim('gw', 5)), 1, 'a claim of 5 with one free slot returns 1');
SELECT is(ARRAY[etl_test.status(etl_test.v('bg_2')), etl_test.status(etl_test.v('bg_3'))], ARRAY['running', 'running'],
          'the last run took the freed slot');
SELECT is((SELECT count(*)::int FROM etl.claim('gw', 5)), 0, 'no free slot: a claim of 5 returns nothing');
SELECT etl_test.finish_all();
SELECT etl.set_setting('parallel_jobs', '8', 'test');

-- ---------------------------------------------------------------- 3. finish_many = finish, for plain successes
SELECT etl_test.park();
SELECT etl_test.make_job('eq_1'); SELECT etl_test.make_job('eq_2'); SELECT etl_test.make_job('eq_3');
SELECT etl_test.run_named('eq_1', 'eq_2', 'eq_3');
SELECT etl_test.full_scan();
SELECT is((SELECT count(*)::int FROM etl.claim('ew', 5)), 3, 'three runs of like jobs are claimed by ew');
CREATE TEMP TABLE eq_outcome AS SELECT
  '{"status": "success", "records_read": 10, "records_written": 7, "page_count": 3, "rows_affected": 4,
    "metrics": {"rows_per_s": 2.5}, "lineage": {"inputs": ["src.a"], "outputs": ["dw.b"]},
    "sql_executed": "select 1"}'::jsonb AS o;
SELECT is(etl.finish(etl_test.v('eq_1'), etl_test.token(etl_test.v('eq_1')), (SELECT o FROM eq_outcome)), 'success',
          'etl.finish reports the first run a success');
SELECT is(ARRAY(SELECT row(f.run_id, f.status)::text FROM etl.finish_many(jsonb_build_array(
                  etl_test.rep(etl_test.v('eq_2'), (SELECT o FROM eq_outcome)),
                  etl_test.rep(etl_test.v('eq_3'), (SELECT o FROM eq_outcome)))) f ORDER BY f.run_id),
          ARRAY[row(etl_test.v('eq_2'), 'success')::text, row(etl_test.v('eq_3'), 'success')::text],
          'finish_many reports the other two as successes and returns each run''s status');
SELECT is(ARRAY[etl_test.run_shape(etl_test.v('eq_2')), etl_test.run_shape(etl_test.v('eq_3'))],
          ARRAY[etl_test.run_shape(etl_test.v('eq_1')), etl_test.run_shape(etl_test.v('eq_1'))],
          'the runs finished by finish_many look like the run finished by finish (status, times, metrics, errors)');
SELECT ok((SELECT bool_and(r.status = 'success' AND r.ended_at IS NOT NULL AND r.duration_ms IS NOT NULL
                           AND r.records_read = 10 AND r.records_written = 7 AND r.page_count = 3 AND r.rows_affected = 4
                           AND r.metrics = '{"rows_per_s": 2.5}' AND r.lineage = '{"inputs": ["src.a"], "outputs": ["dw.b"]}'
                           AND r.sql_executed = 'select 1' AND r.error_category IS NULL AND r.next_attempt_at IS NULL)
             FROM etl.runs r WHERE r.run_id IN (etl_test.v('eq_1'), etl_test.v('eq_2'), etl_test.v('eq_3'))),
    'all three runs carry status, ended_at, duration_ms and the outcome''s counts, metrics, lineage and SQL');
SELECT is(ARRAY[etl_test.attempt_shape(etl_test.v('eq_2')), etl_test.attempt_shape(etl_test.v('eq_3'))],
          ARRAY[etl_test.attempt_shape(etl_test.v('eq_1')), etl_test.attempt_shape(etl_test.v('eq_1'))],
          'their attempts look like the attempt finished by finish');
SELECT ok((SELECT bool_and(a.status = 'success' AND a.ended_at IS NOT NULL AND a.duration_ms IS NOT NULL
                           AND a.records_read = 10 AND a.records_written = 7 AND a.page_count = 3 AND a.rows_affected = 4
                           AND a.metrics = '{"rows_per_s": 2.5}' AND a.error_category IS NULL)
             FROM etl.run_attempts a
            WHERE a.attempt_id IN (etl_test.token(etl_test.v('eq_1')), etl_test.token(etl_test.v('eq_2')), etl_test.token(etl_test.v('eq_3')))),
    'all three attempts are success with the outcome''s counts and metrics');
SELECT is(ARRAY[etl_test.success_events(etl_test.v('eq_1')), etl_test.success_events(etl_test.v('eq_2')), etl_test.success_events(etl_test.v('eq_3'))],
          ARRAY['(status,running,success,ew,"{""attempt_no"": 1}")', '(status,running,success,ew,"{""attempt_no"": 1}")',
                '(status,running,success,ew,"{""attempt_no"": 1}")'],
          'each run has one running -> success event by the worker ew with detail attempt_no 1');
SELECT is((SELECT count(*)::int FROM etl.job_locks
            WHERE run_id IN (etl_test.v('eq_1'), etl_test.v('eq_2'), etl_test.v('eq_3'))),
          0, 'the job_locks rows of all three runs are removed');
SELECT is((SELECT row(count(*), count(run_id), count(claimed_at))::text FROM etl.run_slots), '(8,0,0)',
          'all run_slots are free again');
SELECT is(ARRAY(SELECT p.status FROM etl.pipeline_runs p
                 WHERE p.pipeline_run_id IN (etl_test.pid(etl_test.v('eq_1')), etl_test.pid(etl_test.v('eq_2')),
                                             etl_test.pid(etl_test.v('eq_3'))) AND p.ended_at IS NOT NULL
                 ORDER BY p.pipeline_run_id),
          ARRAY['success', 'success', 'success'], 'and their pipeline runs close as success either way');

-- ---------------------------------------------------------------- 4. finish_many releases children
SELECT etl_test.park();
SELECT etl_test.make_job('ch_par'); SELECT etl_test.make_job('ch_chi');
SELECT etl_test.dep('ch_par', 'ch_chi');
INSERT INTO kv VALUES ('ch_p', etl.trigger_pipeline(jobs => ARRAY['ch_par', 'ch_chi']));
INSERT INTO kv VALUES ('ch_par', etl_test.run_of(etl_test.v('ch_p'), 'ch_par')),
                      ('ch_chi', etl_test.run_of(etl_test.v('ch_p'), 'ch_chi'));
SELECT is(etl_test.status(etl_test.v('ch_chi')), 'pending', 'premise: the child waits for its parent');
SELECT etl_test.claim_exact(etl_test.v('ch_par'), 'cw');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('ch_par'), '{"status": "success"}')))),
          'success', 'the parent succeeds through finish_many');
SELECT is(etl_test.status(etl_test.v('ch_chi')), 'queued', 'its child is queued');
SELECT is((SELECT count(*)::int FROM etl.run_events WHERE run_id = etl_test.v('ch_chi')
             AND from_status = 'pending' AND to_status = 'queued' AND detail ->> 'why' = 'upstream succeeded'),
          1, 'with one pending -> queued event (upstream succeeded)');
SELECT is((SELECT row(status, ended_at IS NULL)::text FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.v('ch_p')),
          '(running,t)', 'the pipeline run stays open while the child has not run');
SELECT etl_test.claim_exact(etl_test.v('ch_chi'), 'cw');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('ch_chi'), '{"status": "success"}')))),
          'success', 'the child succeeds through finish_many');
SELECT is((SELECT row(status, ended_at IS NOT NULL)::text FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.v('ch_p')),
          '(success,t)', 'the pipeline run closes as success with its last run finished through finish_many');

-- Two parents of one child finished in one batch: the child is released once.
SELECT etl_test.make_job('ch_p1'); SELECT etl_test.make_job('ch_p2'); SELECT etl_test.make_job('ch_c2');
SELECT etl_test.dep('ch_p1', 'ch_c2'); SELECT etl_test.dep('ch_p2', 'ch_c2');
INSERT INTO kv VALUES ('ch_p12', etl.trigger_pipeline(jobs => ARRAY['ch_p1', 'ch_p2', 'ch_c2']));
SELECT etl_test.claim_exact(etl_test.run_of(etl_test.v('ch_p12'), 'ch_p1'), 'cw');
SELECT etl_test.claim_exact(etl_test.run_of(etl_test.v('ch_p12'), 'ch_p2'), 'cw');
SELECT is(ARRAY(SELECT status FROM etl.finish_many(jsonb_build_array(
                  etl_test.rep(etl_test.run_of(etl_test.v('ch_p12'), 'ch_p2'), '{"status": "success"}'),
                  etl_test.rep(etl_test.run_of(etl_test.v('ch_p12'), 'ch_p1'), '{"status": "success"}')))),
          ARRAY['success', 'success'], 'both parents of a child succeed in one finish_many batch');
SELECT is((SELECT row(r.status, (SELECT count(*) FROM etl.run_events e WHERE e.run_id = r.run_id
                                   AND e.from_status = 'pending' AND e.to_status = 'queued'))::text
             FROM etl.runs r WHERE r.run_id = etl_test.run_of(etl_test.v('ch_p12'), 'ch_c2')),
          '(queued,1)', 'their child is queued, with exactly one pending -> queued event');

-- A run triggered alone that waits for its parent job's latest run (outside its pipeline run).
SELECT etl_test.make_job('ch_wpar'); SELECT etl_test.make_job('ch_wchi');
SELECT etl_test.dep('ch_wpar', 'ch_wchi');
SELECT etl_test.run_named('ch_wchi');
SELECT is((SELECT row(status, wait_until IS NOT NULL)::text FROM etl.runs WHERE run_id = etl_test.v('ch_wchi')),
          '(pending,t)', 'premise: a child run alone waits for its parent job to succeed');
SELECT etl_test.run_named('ch_wpar');
SELECT etl_test.claim_exact(etl_test.v('ch_wpar'), 'cw');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('ch_wpar'), '{"status": "success"}')))),
          'success', 'a run of the parent job succeeds through finish_many');
SELECT is(etl_test.status(etl_test.v('ch_wchi')), 'queued', 'the waiting run in the other pipeline run is queued');
SELECT etl_test.finish_all();

-- ---------------------------------------------------------------- 5. cursors
SELECT etl_test.park();
SELECT etl_test.make_job('cu_inc');
UPDATE etl.jobs SET supports_incremental = true, incremental_strategy = 'modified_date' WHERE slug = 'cu_inc';
INSERT INTO kv VALUES ('cu_1', etl.run_job('cu_inc'));
SELECT etl_test.claim_exact(etl_test.v('cu_1'), 'uw');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('cu_1'),
             '{"status": "success", "cursor": {"value": "2024-01-02T00:00:00Z"}}')))),
          'success', 'an incremental run succeeds through finish_many reporting a cursor');
SELECT is((SELECT row(cursor_value = '2024-01-02T00:00:00Z', advance_count, last_run_id = etl_test.v('cu_1'),
                      strategy)::text
             FROM etl.cursors WHERE job_id = etl_test.job('cu_inc')),
          '(t,1,t,modified_date)', 'finish_many advanced the job''s cursor once to the reported value');
INSERT INTO kv VALUES ('cu_dry', etl.run_job('cu_inc', dry_run => true));
SELECT etl_test.claim_exact(etl_test.v('cu_dry'), 'uw');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('cu_dry'),
             '{"status": "success", "cursor": {"value": "2024-06-01T00:00:00Z"}}')))),
          'success', 'a dry run succeeds through finish_many reporting a later cursor');
SELECT is((SELECT row(count(*), bool_and(cursor_value = '2024-01-02T00:00:00Z'), max(advance_count),
                      bool_and(last_run_id = etl_test.v('cu_1')))::text
             FROM etl.cursors WHERE job_id = etl_test.job('cu_inc')),
          '(1,t,1,t)', 'the dry run did not move the cursor');

-- ---------------------------------------------------------------- 6. alerts
SELECT etl_test.park();
SELECT etl_test.make_job('al_job');
INSERT INTO kv VALUES ('al_1', etl.run_job('al_job'));
SELECT etl_test.claim_exact(etl_test.v('al_1'), 'aw');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('al_1'),
             '{"status": "failed", "error_category": "DATA", "message": "bad row"}')))),
          'failed', 'a permanent (DATA) failure through finish_many fails the run');
SELECT is((SELECT row(count(*), max(status), max(run_id) = etl_test.v('al_1'))::text
             FROM etl.alert_events WHERE dedupe_key = 'run_failed:al_job'),
          '(1,open,t)', 'it opens one run_failed alert for the job');
INSERT INTO kv VALUES ('al_2', etl.run_job('al_job'));
SELECT etl_test.claim_exact(etl_test.v('al_2'), 'aw');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('al_2'), '{"status": "success"}')))),
          'success', 'a later run of the job succeeds through finish_many');
SELECT is((SELECT row(count(*), max(status), bool_and(resolved_at IS NOT NULL), max(resolved_by))::text
             FROM etl.alert_events WHERE dedupe_key = 'run_failed:al_job'),
          '(1,resolved,t,"engine: next success")', 'the success resolves the open run_failed alert');

-- ---------------------------------------------------------------- 7. a mixed batch
SELECT etl_test.park();
SELECT etl_test.make_job('mx_s'); SELECT etl_test.make_job('mx_f'); SELECT etl_test.make_job('mx_t');
SELECT etl_test.run_named('mx_s', 'mx_f', 'mx_t');
SELECT etl_test.full_scan();
SELECT is((SELECT count(*)::int FROM etl.claim('mw', 5)), 3, 'three runs are claimed for a mixed batch');
CREATE TEMP TABLE mx_tok AS SELECT etl_test.token(etl_test.v('mx_t')) AS t;
SELECT is(ARRAY(SELECT row(f.run_id, f.status)::text FROM etl.finish_many(jsonb_build_array(
                  etl_test.rep(etl_test.v('mx_s'), '{"status": "success", "records_read": 1}'),
                  etl_test.rep(etl_test.v('mx_f'), '{"status": "failed", "error_category": "DATA", "message": "bad"}'),
                  etl_test.rep(etl_test.v('mx_t'), '{"status": "failed", "error_category": "API", "http_status": 503}'))) f
                 ORDER BY f.run_id),
          ARRAY[row(etl_test.v('mx_s'), 'success')::text, row(etl_test.v('mx_f'), 'failed')::text,
                row(etl_test.v('mx_t'), 'queued')::text],
          'a mixed batch returns success, failed (DATA) and queued (transient API 503 with attempts left)');
SELECT is(ARRAY[etl_test.status(etl_test.v('mx_s')), etl_test.status(etl_test.v('mx_f')), etl_test.status(etl_test.v('mx_t'))],
          ARRAY['success', 'failed', 'queued'], 'each run is left in the status returned for it');
SELECT is((SELECT row(error_category, is_transient, ended_at IS NOT NULL)::text FROM etl.runs WHERE run_id = etl_test.v('mx_f')),
          '(DATA,f,t)', 'the failed run is permanent DATA and ended');
SELECT is((SELECT row(a.status, a.is_transient, a.backoff_ms IS NOT NULL, r.next_attempt_at = a.next_attempt_at,
                      r.attempt_count < r.max_attempts, r.ended_at IS NULL)::text
             FROM etl.run_attempts a JOIN etl.runs r USING (run_id) WHERE a.attempt_id = (SELECT t FROM mx_tok)),
          '(failed,t,t,t,t,t)', 'the transient failure''s attempt failed and the run waits for its retry after a backoff');
SELECT is((SELECT count(*)::int FROM etl.run_events WHERE run_id = etl_test.v('mx_t') AND event_type = 'retry_scheduled'),
          1, 'the retry is recorded as a retry_scheduled event');
SELECT is((SELECT row((SELECT count(*) FROM etl.run_slots WHERE run_id IS NOT NULL),
                      (SELECT count(*) FROM etl.job_locks
                        WHERE run_id IN (etl_test.v('mx_s'), etl_test.v('mx_f'), etl_test.v('mx_t')))))::text,
          '(0,0)', 'the mixed batch freed all three slots and removed all three locks');
SELECT is(ARRAY[(SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.pid(etl_test.v('mx_s'))),
                (SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.pid(etl_test.v('mx_f'))),
                (SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.pid(etl_test.v('mx_t')))],
          ARRAY['success', 'failed', 'running'], 'their pipeline runs: success, failed, still running');

-- ---------------------------------------------------------------- 8. refusals
SELECT etl_test.park();
SELECT etl_test.make_job('rf_1'); SELECT etl_test.make_job('rf_2'); SELECT etl_test.make_job('rf_3');
SELECT etl_test.run_named('rf_1', 'rf_2', 'rf_3');
SELECT etl_test.full_scan();
SELECT is((SELECT count(*)::int FROM etl.claim('rw', 5)), 3, 'three runs are claimed for the refusals');
-- rf_1 (a failure, handled by etl._finish) and rf_2 (a plain success) come before the stale rf_3.
SELECT throws_ok(format('SELECT * FROM etl.finish_many(%L)', jsonb_build_array(
                   etl_test.rep(etl_test.v('rf_1'), '{"status": "failed", "error_category": "DATA"}'),
                   etl_test.rep(etl_test.v('rf_2'), '{"status": "success"}'),
                   jsonb_build_object('run_id', etl_test.v('rf_3'), 'token', etl_test.token(etl_test.v('rf_1')),
                                      'outcome', '{"status": "success"}'::jsonb))),
    'ETL01', format('stale_token: run %s is running and its current attempt token is %s, not %s',
                    etl_test.v('rf_3'), etl_test.token(etl_test.v('rf_3')), etl_test.token(etl_test.v('rf_1'))),
    'a stale token anywhere in the batch refuses the whole batch with ETL01');
SELECT is(ARRAY[etl_test.status(etl_test.v('rf_1')), etl_test.status(etl_test.v('rf_2')), etl_test.status(etl_test.v('rf_3'))],
          ARRAY['running', 'running', 'running'], 'after the refusal every run of the batch is still running');
SELECT is((SELECT row(
             (SELECT count(*) FROM etl.run_attempts WHERE run_id IN (etl_test.v('rf_1'), etl_test.v('rf_2'), etl_test.v('rf_3'))
                                                    AND status = 'running' AND ended_at IS NULL),
             (SELECT count(*) FROM etl.job_locks WHERE run_id IN (etl_test.v('rf_1'), etl_test.v('rf_2'), etl_test.v('rf_3'))
                                                 AND status = 'active'),
             (SELECT count(*) FROM etl.run_slots WHERE run_id IN (etl_test.v('rf_1'), etl_test.v('rf_2'), etl_test.v('rf_3'))),
             (SELECT count(*) FROM etl.run_events WHERE run_id IN (etl_test.v('rf_1'), etl_test.v('rf_2'), etl_test.v('rf_3'))
                                                  AND from_status = 'running'),
             (SELECT count(*) FROM etl.alert_events WHERE dedupe_key = 'run_failed:rf_1'))::text),
          '(3,3,3,0,0)', 'nothing of the refused batch was written: attempts running, locks and slots held, no event, no alert');
SELECT is((SELECT status FROM etl.finish_many(jsonb_build_array(etl_test.rep(etl_test.v('rf_2'), '{"status": "success"}')))),
          'success', 'rf_2 is then reported alone');
SELECT throws_ok(format('SELECT * FROM etl.finish_many(%L)', jsonb_build_array(
                   etl_test.rep(etl_test.v('rf_1'), '{"status": "success"}'),
                   etl_test.rep(etl_test.v('rf_2'), '{"status": "success"}'))),
    'ETL01', format('stale_token: run %s was already reported: it is success', etl_test.v('rf_2')),
    'a batch that reports a finished run again is refused with ETL01');
SELECT throws_ok(format('SELECT * FROM etl.finish_many(%L)', jsonb_build_array(
                   etl_test.rep(etl_test.v('rf_1'), '{"status": "success"}'),
                   etl_test.rep(etl_test.v('rf_3'), '{"status": "success"}'),
                   etl_test.rep(etl_test.v('rf_1'), '{"status": "success"}'))),
    '22023', format('run %s is reported twice in one batch', etl_test.v('rf_1')),
    'a run reported twice in one batch is refused with 22023 naming the run');
SELECT throws_ok(format('SELECT * FROM etl.finish_many(%L)', jsonb_build_array(
                   etl_test.rep(etl_test.v('rf_1'), '{"status": "success"}'),
                   jsonb_build_object('run_id', (SELECT max(run_id) + 1 FROM etl.runs), 'token', etl_test.token(etl_test.v('rf_1')),
                                      'outcome', '{"status": "success"}'::jsonb))),
    '22023', format('run %s does not exist', (SELECT max(run_id) + 1 FROM etl.runs)),
    'an unknown run id is refused with 22023 run N does not exist');
SELECT is(ARRAY[etl_test.status(etl_test.v('rf_1')), etl_test.status(etl_test.v('rf_3'))], ARRAY['running', 'running'],
          'after these refusals rf_1 and rf_3 are still running');
SELECT is(ARRAY(SELECT status FROM etl.finish_many(jsonb_build_array(
                  etl_test.rep(etl_test.v('rf_1'), '{"status": "success"}'),
                  etl_test.rep(etl_test.v('rf_3'), '{"status": "success"}')))),
          ARRAY['success', 'success'], 'their tokens are still good: a correct batch finishes them');

-- ---------------------------------------------------------------- 9. a floored claim that comes up short
-- etl.claim first scans after the session's floor (left by a slow scan: etl.claim_floor, for half a
-- second) and, when that pass comes up short, scans again from the start. The runs the first pass
-- took are still queued in the table then: their writes come after the scan.
SELECT etl_test.park();
SELECT etl_test.make_job('fl_early'); SELECT etl_test.make_job('fl_pool');
UPDATE etl.jobs SET concurrency_limit = 2 WHERE slug = 'fl_pool';
SELECT etl_test.run_named('fl_early');
SELECT etl_test.claim_exact(etl_test.v('fl_early'), 'fw');
-- The floor a slow claim of fl_early leaves (valid for an hour here instead of half a second).
SELECT set_config('etl.claim_floor',
    (SELECT array_to_string(ARRAY[(-priority)::text, pipeline_run_id::text, (-critical_path_ms)::text,
                                  next_attempt_at::text, run_id::text, (clock_timestamp() + interval '1 hour')::text], '|')
       FROM etl.runs WHERE run_id = etl_test.v('fl_early')), false);
SELECT etl_test.run_named('fl_pool');
-- The floored pass takes fl_pool and comes up short (1 of 5); the full pass must not take it again
-- (its pool has a second key).
SELECT lives_ok($$CREATE TEMP TABLE fl_claim AS SELECT * FROM etl.claim('fw', 5)$$,
    'a floored claim that comes up short and rescans from the start does not fail');
SELECT is((SELECT row(count(*), max(attempt_no), max(worker_id))::text FROM etl.run_attempts
            WHERE run_id = etl_test.v('fl_pool')),
          '(1,1,fw)', 'it claims the run after the floor exactly once');
SELECT etl_test.full_scan();

-- ---------------------------------------------------------------- 10. max_runs bounds
SELECT throws_ok($$SELECT * FROM etl.claim('bw', 0)$$, '22023', 'max_runs must be at least 1, got 0',
    'claim refuses max_runs 0 with 22023');
SELECT throws_ok($$SELECT * FROM etl.claim('bw', 1001)$$, '22023', 'max_runs must be at most 1000, got 1001 (claim in batches)',
    'claim refuses max_runs above 1000 with 22023: each claimed run holds two advisory locks to commit');

SELECT * FROM finish();
ROLLBACK;
