-- pgTAP tests for the engine's enqueue and DAG semantics: plpgsql/120_params.sql,
-- 130_enqueue.sql, 140_dag.sql (run_job, trigger_pipeline, parameter validation, idempotency,
-- selection by slug/tag/layer/downstream, dimension-before-fact edges, cycle refusal, upstream
-- waits across pipeline runs, full-refresh approval, audit and run_events).

BEGIN;
SELECT plan(83);

-- ---------------------------------------------------------------- helpers
\ir lib/engine_helpers.psql

UPDATE etl.schedules SET is_active = false;

-- ---------------------------------------------------------------- parameters
SELECT etl_test.make_job('ed_params');
INSERT INTO etl.job_parameters (job_id, name, data_type, required, default_value, allowed_values) VALUES
  (etl_test.job('ed_params'), 'region', 'string', true, NULL, '["eu", "us"]'),
  (etl_test.job('ed_params'), 'batch', 'integer', false, '100', NULL),
  (etl_test.job('ed_params'), 'day', 'date', false, NULL, NULL);

SELECT isnt(etl.run_job('ed_params', '{"region": "eu"}', reason => 'params test'), NULL,
    'run_job returns the id of the run it created');
SELECT is((SELECT params FROM etl.runs WHERE job_id = etl_test.job('ed_params')),
    '{"region": "eu", "batch": 100}'::jsonb,
    'run_job stores the parameters with the declared default of batch filled in');
SELECT is((SELECT param_snapshot FROM etl.runs WHERE job_id = etl_test.job('ed_params')),
    '{"region": "eu", "batch": 100}'::jsonb,
    'param_snapshot holds the validated parameters with defaults');
SELECT is((SELECT parameter_fingerprint FROM etl.runs WHERE job_id = etl_test.job('ed_params')),
    etl.param_fingerprint('{"region": "eu", "batch": 100}'),
    'parameter_fingerprint is etl.param_fingerprint of the filled-in parameters');

SELECT throws_ok($$SELECT etl.run_job('ed_params', '{"region": "eu", "bogus": 1}')$$,
    '22023', 'parameter "bogus" is not a parameter of job "ed_params" (known: batch, day, region)',
    'an unknown parameter key is rejected with 22023 naming the key and the known ones');
SELECT throws_ok($$SELECT etl.run_job('ed_params', '{}')$$,
    '22023', 'parameter "region" of job "ed_params" is required (type string)',
    'a missing required parameter is rejected with 22023 naming it');
SELECT throws_ok($$SELECT etl.run_job('ed_params', '{"region": "eu", "batch": "x"}')$$,
    '22023', 'parameter "batch" of job "ed_params" must be of type integer, got "x"',
    'a string where an integer is declared is rejected with 22023');
SELECT throws_ok($$SELECT etl.run_job('ed_params', '{"region": "eu", "batch": 1.5}')$$,
    '22023', 'parameter "batch" of job "ed_params" must be of type integer, got 1.5',
    'a fractional number where an integer is declared is rejected');
-- BUG: to_date() raises 22008 on an impossible date before the type check can say 22023.
SELECT throws_ok($$SELECT etl.run_job('ed_params', '{"region": "eu", "day": "2024-02-30"}')$$,
    '22023', 'parameter "day" of job "ed_params" must be of type date, got "2024-02-30"',
    'an impossible calendar date is rejected for a date parameter');
SELECT throws_ok($$SELECT etl.run_job('ed_params', '{"region": "asia"}')$$,
    '22023', 'parameter "region" of job "ed_params" must be one of ["eu", "us"], got "asia"',
    'a value outside allowed_values is rejected with 22023 listing the allowed values');
SELECT throws_ok($$SELECT etl.run_job('ed_params', '[1]')$$,
    '22023', 'params must be a JSON object, got array',
    'parameters that are not a JSON object are rejected');

-- ---------------------------------------------------------------- unknown and disabled jobs
SELECT etl_test.make_job('ed_off');
UPDATE etl.jobs SET enabled = false WHERE slug = 'ed_off';
SELECT throws_ok($$SELECT etl.run_job('ed_nope')$$, '22023', 'no such job: ed_nope',
    'run_job of an unknown job is rejected with 22023');
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_params', 'ed_nope'])$$, '22023', 'no such job: ed_nope',
    'trigger_pipeline naming an unknown job is rejected');
SELECT throws_ok($$SELECT etl.run_job('ed_off')$$, '55000',
    'job(s) ed_off are disabled: enable them first (etl jobs enable)',
    'run_job of a disabled job is rejected with 55000');

-- ---------------------------------------------------------------- idempotency
SELECT etl_test.make_job('ed_plain');
SELECT is(etl.run_job('ed_plain', correlation_id => '11111111-1111-1111-1111-111111111111'),
          etl.run_job('ed_plain', correlation_id => '11111111-1111-1111-1111-111111111111'),
    'run_job with the same correlation_id twice returns the same run id');
SELECT is((SELECT count(*)::int FROM etl.runs WHERE correlation_id = '11111111-1111-1111-1111-111111111111'), 1,
    'the repeated correlation_id created exactly one run');
SELECT is((SELECT count(*)::int FROM etl.runs WHERE job_id = etl_test.job('ed_plain')), 1,
    'and exactly one run of the job at all');
SELECT is(etl.trigger_pipeline(jobs => ARRAY['ed_plain'], idempotency_key => 'ed-key-1'),
          etl.trigger_pipeline(jobs => ARRAY['ed_plain'], idempotency_key => 'ed-key-1'),
    'trigger_pipeline with the same idempotency_key twice returns the same pipeline run');
SELECT is((SELECT count(*)::int FROM etl.pipeline_runs WHERE idempotency_key = 'ed-key-1'), 1,
    'the repeated idempotency_key created one pipeline run');
SELECT is((SELECT count(*)::int FROM etl.audit_log WHERE action = 'trigger_pipeline'
             AND target_id = (SELECT pipeline_run_id FROM etl.pipeline_runs WHERE idempotency_key = 'ed-key-1')::text), 1,
    'and one audit row: a replay is no new action');
SELECT throws_like($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_params'], idempotency_key => 'ed-key-1')$$,
    'idempotency key "ed-key-1" belongs to pipeline run % of another request (selection {"jobs": ["ed_plain"]%: use a new key',
    'the same idempotency key with another selection is refused');
SELECT throws_like($$SELECT etl.run_job('ed_off', correlation_id => '11111111-1111-1111-1111-111111111111')$$,
    'correlation id 11111111-1111-1111-1111-111111111111 belongs to run % of another request (job ed_plain%: use a new id',
    'the same correlation id for another job is refused');
SELECT is((SELECT count(*)::int FROM etl.audit_log WHERE action = 'run_job'
             AND target_id = (SELECT run_id FROM etl.runs WHERE correlation_id = '11111111-1111-1111-1111-111111111111')::text), 1,
    'a replayed run_job is audited once');

-- ---------------------------------------------------------------- selection: tags, layer, downstream
SELECT etl_test.make_job('ed_t1'); SELECT etl_test.make_job('ed_t2');
SELECT etl_test.make_job('ed_t3'); SELECT etl_test.make_job('ed_t4');
INSERT INTO etl.job_tags (job_id, tag) VALUES
  (etl_test.job('ed_t1'), 'nightly'), (etl_test.job('ed_t2'), 'nightly'),
  (etl_test.job('ed_t3'), 'weekly'), (etl_test.job('ed_t4'), 'nightly');
UPDATE etl.jobs SET enabled = false WHERE slug = 'ed_t4';
SELECT is(etl_test.slugs(etl.trigger_pipeline(tags => ARRAY['nightly'])), ARRAY['ed_t1', 'ed_t2'],
    'trigger by tag selects the enabled jobs carrying the tag and leaves out the disabled one');

UPDATE etl.jobs SET layer = 'gold' WHERE slug IN ('ed_t1', 'ed_t3');
UPDATE etl.jobs SET layer = 'silver' WHERE slug = 'ed_t2';
SELECT is(etl_test.slugs(etl.trigger_pipeline(layer => 'gold')), ARRAY['ed_t1', 'ed_t3'],
    'trigger by layer selects exactly the jobs of that layer');
SELECT throws_ok($$SELECT etl.trigger_pipeline(layer => 'platinum')$$, '22023',
    'layer must be bronze, silver or gold, got "platinum"', 'an unknown layer is rejected');
SELECT throws_ok($$SELECT etl.trigger_pipeline(tags => ARRAY['no_such_tag'])$$, '22023',
    'no job has the tag(s) no_such_tag', 'a tag no job carries is named');
SELECT throws_ok($$SELECT etl.trigger_pipeline(layer => 'silver', tags => ARRAY['no_such_tag'])$$, '22023',
    'no job has the tag(s) no_such_tag', 'an unknown tag is named beside other selectors too');
SELECT etl_test.make_job('ed_off_tagged');
UPDATE etl.jobs SET enabled = false WHERE slug = 'ed_off_tagged';
INSERT INTO etl.job_tags (job_id, tag) SELECT job_id, 'ed_off_tag' FROM etl.jobs WHERE slug = 'ed_off_tagged';
SELECT throws_like($$SELECT etl.trigger_pipeline(tags => ARRAY['ed_off_tag'])$$,
    'the selection % matches no enabled job', 'a selection that matches nothing is rejected');
SELECT throws_ok($$SELECT etl.run_job(null)$$, '22023', 'jobs must name jobs by slug, got a null in {NULL}',
    'run_job of a null job says so');
SELECT ok(etl._is_iso_timestamp('2024-01-01T10:00') AND etl._is_iso_timestamp('2024-01-01 10:00:00.5+02:00')
          AND etl._is_iso_timestamp('2024-01-01T10:00:00Z'), 'ISO timestamps are timestamps');
SELECT ok(NOT etl._is_iso_timestamp('2024-13-45 99:99') AND NOT etl._is_iso_timestamp('2024-01-01T10:00garbage')
          AND NOT etl._is_iso_timestamp('2024-01-01T25:00'), 'impossible instants and trailing text are not');

SELECT etl_test.make_job('ed_a'); SELECT etl_test.make_job('ed_b');
SELECT etl_test.make_job('ed_c'); SELECT etl_test.make_job('ed_d');
SELECT etl_test.dep('ed_a', 'ed_b'); SELECT etl_test.dep('ed_b', 'ed_c');
SELECT is(etl_test.slugs(etl.trigger_pipeline(jobs => ARRAY['ed_a'])), ARRAY['ed_a'],
    'without downstream only the named job is selected');
SELECT is((SELECT parameter_fingerprint FROM etl.runs WHERE job_id = etl_test.job('ed_a')),
    etl.param_fingerprint('{}'),
    'a run without parameters stores the fingerprint of {} (the trigger''s constant for it)');
CREATE TEMP TABLE ed_chain AS SELECT etl.trigger_pipeline(jobs => ARRAY['ed_a'], downstream => true) AS pid;
SELECT is(etl_test.slugs((SELECT pid FROM ed_chain)), ARRAY['ed_a', 'ed_b', 'ed_c'],
    'downstream closure includes children and grandchildren but not unrelated jobs');
SELECT is(etl_test.status(etl_test.run_of((SELECT pid FROM ed_chain), 'ed_a')), 'queued',
    'the root of the pipeline run is queued');
SELECT is(ARRAY[etl_test.status(etl_test.run_of((SELECT pid FROM ed_chain), 'ed_b')),
                etl_test.status(etl_test.run_of((SELECT pid FROM ed_chain), 'ed_c'))],
    ARRAY['pending', 'pending'], 'the children are pending until their upstream succeeds');
SELECT is((SELECT count(*)::int FROM etl.run_dependencies WHERE pipeline_run_id = (SELECT pid FROM ed_chain)
              AND dependency_type = 'explicit'), 2,
    'the two declared edges are copied into run_dependencies');
SELECT is((SELECT dependency_snapshot FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM ed_chain)),
    '[{"type": "explicit", "child": "ed_b", "parent": "ed_a"}, {"type": "explicit", "child": "ed_c", "parent": "ed_b"}]'::jsonb,
    'the dependency snapshot lists the edges by slug');
SELECT ok(EXISTS (SELECT 1 FROM etl.run_events WHERE run_id = etl_test.run_of((SELECT pid FROM ed_chain), 'ed_a')
                     AND event_type = 'status' AND from_status = 'pending' AND to_status = 'queued'),
    'releasing the root wrote a run_events row pending -> queued (the NOTIFY companion)');
SELECT ok(NOT EXISTS (SELECT 1 FROM etl.run_events WHERE run_id = etl_test.run_of((SELECT pid FROM ed_chain), 'ed_b')),
    'a pending child has no run_events row yet');

-- ---------------------------------------------------------------- cycle refusal on edge insert
SELECT throws_ok($$SELECT etl_test.dep('ed_c', 'ed_a')$$, '23514',
    'dependency_cycle: edge ed_c -> ed_a would close the cycle ed_a -> ed_b -> ed_c -> ed_a',
    'an edge that closes a cycle is refused with 23514 naming the cycle');
SELECT throws_ok($$SELECT etl_test.dep('ed_b', 'ed_a')$$, '23514',
    'dependency_cycle: edge ed_b -> ed_a would close the cycle ed_a -> ed_b -> ed_a',
    'a two-job cycle is refused as well');
SELECT lives_ok($$SELECT etl_test.dep('ed_a', 'ed_c')$$,
    'a redundant forward edge (a -> c with a -> b -> c) is not a cycle and is accepted');

-- ---------------------------------------------------------------- dimensions before facts
SELECT etl_test.make_job('ed_dim', 'dimension'); SELECT etl_test.make_job('ed_fact', 'fact');
CREATE TEMP TABLE ed_df AS SELECT etl.trigger_pipeline(jobs => ARRAY['ed_dim', 'ed_fact']) AS pid;
SELECT is((SELECT dependency_type FROM etl.run_dependencies
            WHERE parent_run_id = etl_test.run_of((SELECT pid FROM ed_df), 'ed_dim')
              AND child_run_id = etl_test.run_of((SELECT pid FROM ed_df), 'ed_fact')),
    'dimension_before_fact', 'a dimension and a fact in one pipeline run get an implied dimension_before_fact edge');
SELECT is(ARRAY[etl_test.status(etl_test.run_of((SELECT pid FROM ed_df), 'ed_dim')),
                etl_test.status(etl_test.run_of((SELECT pid FROM ed_df), 'ed_fact'))],
    ARRAY['queued', 'pending'], 'the dimension is queued and the fact waits for it');

SELECT etl_test.make_job('ed_dim2', 'dimension'); SELECT etl_test.make_job('ed_fact2', 'fact');
SELECT etl_test.dep('ed_fact2', 'ed_dim2');
CREATE TEMP TABLE ed_count AS SELECT count(*) AS n FROM etl.pipeline_runs;
SELECT throws_like($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_dim2', 'ed_fact2'])$$,
    'dependency_cycle: the implied ordering (dimensions before facts, or a group run as one unit) closes the cycle %ed_dim2%ed_fact2%',
    'a declared fact -> dimension edge plus the implied dimension -> fact edge is refused as a cycle');
SELECT is((SELECT count(*) FROM etl.pipeline_runs), (SELECT n FROM ed_count),
    'the refused trigger left no pipeline run behind');

-- A cycle through a job that is neither: the walk from the implied edge finds it and names it whole.
SELECT etl_test.make_job('ed_dim3', 'dimension'); SELECT etl_test.make_job('ed_fact3', 'fact');
SELECT etl_test.make_job('ed_mid3');
SELECT etl_test.dep('ed_fact3', 'ed_mid3'); SELECT etl_test.dep('ed_mid3', 'ed_dim3');
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_mid3', 'ed_dim3', 'ed_fact3'])$$,
    '23514',
    'dependency_cycle: the implied ordering (dimensions before facts, or a group run as one unit) closes the cycle ed_dim3 -> ed_fact3 -> ed_mid3 -> ed_dim3',
    'a cycle of an implied edge and two declared ones is refused, every job on it named in order');
SELECT lives_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_mid3', 'ed_dim3'])$$,
    'without the fact the same declared edges are no cycle');

-- ---------------------------------------------------------------- a selection's edges, worked out once
SELECT etl_test.make_job('ed_dim4', 'dimension'); SELECT etl_test.make_job('ed_fact4', 'fact');
SELECT etl_test.make_job('ed_out4');
SELECT etl_test.dep('ed_dim4', 'ed_fact4'); SELECT etl_test.dep('ed_fact4', 'ed_out4');
SELECT results_eq(
    $$SELECT p.slug, c.slug, e.dependency_type
        FROM etl._selection_edges(ARRAY[etl_test.job('ed_dim4'), etl_test.job('ed_fact4')]) e
        JOIN etl.jobs p ON p.job_id = e.parent_job_id JOIN etl.jobs c ON c.job_id = e.child_job_id$$,
    $$VALUES ('ed_dim4'::text, 'ed_fact4'::text, 'explicit'::text)$$,
    'a declared dimension -> fact edge is the only edge: no implied duplicate, none to a job outside the selection');
CREATE TEMP TABLE ed_df4 AS SELECT etl.trigger_pipeline(jobs => ARRAY['ed_dim4', 'ed_fact4']) AS pid;
SELECT is((SELECT dependency_snapshot FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM ed_df4)),
    '[{"type": "explicit", "child": "ed_fact4", "parent": "ed_dim4"}]'::jsonb,
    'the pipeline run is created with its snapshot: the one declared edge');
SELECT is((SELECT dependency_snapshot FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM ed_df)),
    '[{"type": "dimension_before_fact", "child": "ed_fact", "parent": "ed_dim"}]'::jsonb,
    'an implied edge is in the snapshot, with its type');
CREATE TEMP TABLE ed_alone4 AS SELECT etl.trigger_pipeline(jobs => ARRAY['ed_out4']) AS pid;
SELECT is((SELECT dependency_snapshot FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM ed_alone4)),
    '[]'::jsonb, 'a job triggered alone has an empty snapshot');

-- ---------------------------------------------------------------- waiting for a parent outside the pipeline run
SELECT etl_test.park();
-- (The runs of ed_a parked above would count as its newer runs under way: out of the way.)
SELECT count(etl.cancel(r.run_id, 'out of the way')) FROM etl.runs r JOIN etl.jobs j USING (job_id)
 WHERE j.slug = 'ed_a' AND r.status IN ('queued', 'running');
CREATE TEMP TABLE ed_alone AS SELECT etl.run_job('ed_b', reason => 'alone') AS run_id;
SELECT is(etl_test.status((SELECT run_id FROM ed_alone)), 'pending',
    'a job run alone whose parent never succeeded stays pending');
SELECT is((SELECT wait_until FROM etl.runs WHERE run_id = (SELECT run_id FROM ed_alone)), now() + interval '3600 seconds',
    'its wait_until is now() + upstream_wait_limit_seconds');
SELECT is(etl_test.succeed(etl.run_job('ed_a')), 'success',
    'the parent succeeds in another pipeline run');
SELECT is(etl_test.status((SELECT run_id FROM ed_alone)), 'queued',
    'the waiting run becomes queued when the parent''s run in another pipeline succeeds');
SELECT ok(EXISTS (SELECT 1 FROM etl.run_events WHERE run_id = (SELECT run_id FROM ed_alone) AND to_status = 'queued'),
    'the release wrote its pending -> queued event');
SELECT etl_test.park();
CREATE TEMP TABLE ed_inflight AS SELECT etl.run_job('ed_a') AS run_id;
CREATE TEMP TABLE ed_inflight_token AS SELECT etl_test.claim_run((SELECT run_id FROM ed_inflight)) AS token;
CREATE TEMP TABLE ed_alone2 AS SELECT etl.run_job('ed_b', reason => 'alone again') AS run_id;
SELECT is(etl_test.status((SELECT run_id FROM ed_alone2)), 'pending',
    'a job run alone waits while a newer run of its parent is running, though an earlier one succeeded');
SELECT is(etl.finish((SELECT run_id FROM ed_inflight), (SELECT token FROM ed_inflight_token), '{"status": "success"}'),
    'success', 'the parent''s newer run succeeds');
SELECT is(etl_test.status((SELECT run_id FROM ed_alone2)), 'queued', 'and that success releases the waiting run');
SELECT etl_test.make_job('ed_dp'); SELECT etl_test.make_job('ed_dc');
SELECT etl_test.dep('ed_dp', 'ed_dc');
SELECT is(etl_test.succeed(etl.run_job('ed_dp', dry_run => true)), 'success', 'a dry run of the parent succeeds');
SELECT is(etl_test.status(etl.run_job('ed_dc')), 'pending', 'but is no upstream success: it changed no data');
CREATE TEMP TABLE ed_corr AS
  SELECT etl.run_job('ed_dp', downstream => true, correlation_id => '22222222-2222-2222-2222-222222222222') AS r;
SELECT is((SELECT j.slug FROM etl.runs r JOIN etl.jobs j USING (job_id)
            WHERE r.run_id = (SELECT r FROM ed_corr) AND r.correlation_id = '22222222-2222-2222-2222-222222222222'),
    'ed_dp', 'with downstream, the named job''s run carries the correlation id');

SELECT etl_test.make_job('ed_wp'); SELECT etl_test.make_job('ed_wc');
SELECT etl_test.dep('ed_wp', 'ed_wc');
UPDATE etl.jobs SET upstream_wait_limit = interval '5 minutes' WHERE slug = 'ed_wc';
CREATE TEMP TABLE ed_wait AS SELECT etl.run_job('ed_wc') AS run_id;
SELECT is((SELECT wait_until FROM etl.runs WHERE run_id = (SELECT run_id FROM ed_wait)), now() + interval '5 minutes',
    'a job''s own upstream_wait_limit wins over the setting');
UPDATE etl.runs SET wait_until = now() - interval '1 second' WHERE run_id = (SELECT run_id FROM ed_wait);
SELECT is((etl.tick() ->> 'waits_expired')::int, 1, 'the tick reports one expired upstream wait');
SELECT is(etl_test.status((SELECT run_id FROM ed_wait)), 'skipped',
    'a run whose wait limit passed is skipped by the tick');
SELECT is((SELECT skip_reason FROM etl.runs WHERE run_id = (SELECT run_id FROM ed_wait)),
    'upstream not successful within the wait limit', 'the skip carries its reason');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.pid((SELECT run_id FROM ed_wait))),
    'skipped', 'its pipeline run (all runs skipped) is closed as skipped');

-- ---------------------------------------------------------------- full refresh approval
SELECT etl_test.make_job('ed_full');
TRUNCATE ed_count; INSERT INTO ed_count SELECT count(*) FROM etl.pipeline_runs;
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_full'], mode => 'full',
                     approval => '{"confirmed": true, "approver": "alice", "reason": "rebuild"}')$$,
    '42501', 'full refresh is not allowed for job(s) ed_full: set allow_full_refresh first',
    'full mode is refused with 42501 when the job does not allow a full refresh');
SELECT throws_ok($$SELECT etl.run_job('ed_full', mode => 'full',
                     approval => '{"confirmed": true, "approver": "alice", "reason": "rebuild"}')$$,
    '42501', 'full refresh is not allowed for job(s) ed_full: set allow_full_refresh first',
    'run_job in full mode is refused the same way');
UPDATE etl.jobs SET allow_full_refresh = true WHERE slug = 'ed_full';
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_full'], mode => 'full')$$,
    '42501', 'full refresh requires an approval: approval => {"confirmed": true, "approver": "...", "reason": "..."}, or request_approval => true and a later etl.approve(pipeline_run_id, reason)',
    'full mode without an approval is refused with 42501');
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_full'], mode => 'full',
                     approval => '{"confirmed": false, "approver": "alice", "reason": "rebuild"}')$$,
    '42501', 'full refresh requires an approval: approval => {"confirmed": true, "approver": "...", "reason": "..."}, or request_approval => true and a later etl.approve(pipeline_run_id, reason)',
    'an unconfirmed approval is refused');
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['ed_full'], mode => 'full',
                     approval => '{"confirmed": true, "approver": "alice"}')$$,
    '42501', 'full refresh requires an approval: approval => {"confirmed": true, "approver": "...", "reason": "..."}, or request_approval => true and a later etl.approve(pipeline_run_id, reason)',
    'an approval without a reason is refused');
SELECT is((SELECT count(*) FROM etl.pipeline_runs), (SELECT n FROM ed_count),
    'none of the refused full refreshes enqueued anything');
CREATE TEMP TABLE ed_fullrun AS SELECT etl.trigger_pipeline(jobs => ARRAY['ed_full'], mode => 'full',
    approval => '{"confirmed": true, "approver": "alice", "reason": "rebuild"}', reason => 'full test') AS pid;
SELECT is((SELECT (mode, full_refresh_confirmed, approved_by, approval_reason, approved_at = now())::text
             FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM ed_fullrun)),
    '(full,t,alice,rebuild,t)', 'an approved full refresh is accepted and the approval recorded on the pipeline run');
SELECT is((SELECT mode FROM etl.runs WHERE pipeline_run_id = (SELECT pid FROM ed_fullrun)), 'full',
    'its run is in full mode');

-- ---------------------------------------------------------------- audit log
SELECT is((SELECT details ->> 'job' FROM etl.audit_log WHERE action = 'run_job'
             AND target_type = 'run' AND target_id = (SELECT run_id FROM ed_alone)::text), 'ed_b',
    'run_job wrote an audit_log row naming the run and the job');
SELECT is((SELECT reason FROM etl.audit_log WHERE action = 'run_job' AND target_id = (SELECT run_id FROM ed_alone)::text),
    'alone', 'the run_job audit row carries the reason');
SELECT is((SELECT (details -> 'approval' ->> 'approver') FROM etl.audit_log WHERE action = 'trigger_pipeline'
             AND target_type = 'pipeline_run' AND target_id = (SELECT pid FROM ed_fullrun)::text), 'alice',
    'trigger_pipeline wrote an audit_log row with the approval');
SELECT is((SELECT count(*)::int FROM etl.audit_log WHERE action = 'trigger_pipeline'
             AND target_id = (SELECT pid FROM ed_chain)::text), 1,
    'one audit row per triggered pipeline run');
SELECT is((SELECT count(*)::int FROM etl.run_events e JOIN etl.runs r USING (run_id)
            WHERE r.pipeline_run_id = (SELECT pid FROM ed_df) AND e.to_status = 'queued'), 1,
    'exactly one queued event in the dimension/fact pipeline run: the dimension');

SELECT * FROM finish();
ROLLBACK;
