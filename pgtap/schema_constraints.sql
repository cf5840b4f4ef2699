-- pgTAP: what the constraints of schema etl let in and keep out, as the specification
-- (shared/seeds) states each rule: one active schedule per job, one active lock per concurrency
-- key (and per pool slot), the delete rules (RESTRICT for history, CASCADE for configuration and
-- a run's own details), the vocabularies and invariants, and the uniqueness rules.
-- Every rejection is matched by SQLSTATE and by the name of the rule in the message.
-- Run: python -m python_runner.devtools pg_prove DB pgtap/schema_constraints.sql

BEGIN;

SELECT plan(100);

\ir lib/schema_helpers.psql

-- ---------------------------------------------------------------------------------------------

-- ---------------------------------------------------------------------------------------------
-- Schedules: at most one active schedule per job (seed 000)
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
  PERFORM etl_test.make_job('sched_a');
  PERFORM etl_test.make_job('sched_b');
END
$$;

SELECT lives_ok(
  $$INSERT INTO etl.schedules (job_id, cron_expr) VALUES (etl_test.job_id_of('sched_a'), '0 * * * *')$$,
  'the first active schedule of a job is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.schedules (job_id, cron_expr) VALUES (etl_test.job_id_of('sched_a'), '30 2 * * *')$$,
  '23505', 'duplicate key value violates unique constraint "one_active_schedule_per_job"',
  'a second active schedule for one job is rejected');

SELECT lives_ok(
  $$INSERT INTO etl.schedules (job_id, cron_expr, is_active)
    VALUES (etl_test.job_id_of('sched_a'), '30 2 * * *', false)$$,
  'a second, inactive schedule for the same job is accepted (a job may have several schedules)');

SELECT lives_ok(
  $$INSERT INTO etl.schedules (job_id, cron_expr) VALUES (etl_test.job_id_of('sched_b'), '0 * * * *')$$,
  'two different jobs may each have an active schedule');

SELECT throws_ok(
  $$UPDATE etl.schedules SET is_active = true
     WHERE job_id = etl_test.job_id_of('sched_a') AND NOT is_active$$,
  '23505', 'duplicate key value violates unique constraint "one_active_schedule_per_job"',
  'activating the inactive schedule while another is active is rejected');

SELECT is((SELECT count(*)::int FROM etl.schedules WHERE job_id = etl_test.job_id_of('sched_a') AND is_active),
          1, 'sched_a keeps exactly one active schedule among its two');

-- ---------------------------------------------------------------------------------------------
-- Locks: at most one active lock per concurrency key; a pool of N is N keys (seed 000)
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
  PERFORM etl_test.remember('lock_run',
    etl_test.make_run(etl_test.make_job('lock_job'), etl_test.make_pipeline_run(), 'running'));
END
$$;

SELECT lives_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at)
    VALUES ('orders_api', 'orders_api', 1, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker', now() + interval '30 seconds')$$,
  'the first active lock on a concurrency key is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at)
    VALUES ('orders_api', 'orders_api', 1, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-other-worker', now() + interval '30 seconds')$$,
  '23505', 'duplicate key value violates unique constraint "one_active_lock_per_key"',
  'a second active lock on the same concurrency key is rejected');

SELECT lives_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at,
                               status, released_at)
    VALUES ('orders_api', 'orders_api', 1, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker', now(), 'released', now()),
           ('orders_api', 'orders_api', 1, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker', now(), 'expired', now())$$,
  'released and expired locks on a key coexist with its active lock (only active locks exclude)');

SELECT throws_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at)
    VALUES ('something_else', 'orders_api', 1, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker', now() + interval '30 seconds')$$,
  '23514', 'new row for relation "job_locks" violates check constraint "lock_key_names_its_slot"',
  'slot 1 of a pool must be named after the pool key itself');

SELECT throws_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at)
    VALUES ('warehouse', 'warehouse', 2, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker', now() + interval '30 seconds')$$,
  '23514', 'new row for relation "job_locks" violates check constraint "lock_key_names_its_slot"',
  'slot 2 of a pool must be named pool_key#2, not the bare pool key');

SELECT lives_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at)
    VALUES ('warehouse', 'warehouse', 1, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker-1', now() + interval '30 seconds'),
           ('warehouse#2', 'warehouse', 2, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker-2', now() + interval '30 seconds')$$,
  'the slots key and key#2 of one pool are both active at once');

SELECT throws_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at)
    VALUES ('warehouse#2', 'warehouse', 2, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker-3', now() + interval '30 seconds')$$,
  '23505', 'duplicate key value violates unique constraint "one_active_lock_per_key"',
  'each pool slot is exclusive: a second active lock on key#2 is rejected');

SELECT throws_ok(
  $$INSERT INTO etl.job_locks (concurrency_key, pool_key, slot_no, job_id, run_id, holder, expires_at,
                               status, released_at)
    VALUES ('orders_api', 'orders_api', 1, etl_test.job_id_of('lock_job'), etl_test.fx('lock_run'),
            'etl-test-worker', now(), 'held', now())$$,
  '23514', 'new row for relation "job_locks" violates check constraint "lock_status_known"',
  'a lock status outside active/released/expired is rejected');

-- ---------------------------------------------------------------------------------------------
-- Delete rules: history is RESTRICTed, configuration and a run's own details CASCADE
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
  PERFORM etl_test.make_run(etl_test.make_job('fk_has_runs'), etl_test.make_pipeline_run(), 'success');
END
$$;

SELECT throws_ok(
  $$DELETE FROM etl.jobs WHERE slug = 'fk_has_runs'$$,
  '23503', 'update or delete on table "jobs" violates foreign key constraint "runs_job_id_fkey" on table "runs"',
  'a job that has runs cannot be deleted (runs.job_id is ON DELETE RESTRICT)');

DO $$
DECLARE
  v_doomed bigint := etl_test.remember('fk_doomed', etl_test.make_job('fk_doomed'));
BEGIN
  PERFORM etl_test.make_job('fk_parent');
  PERFORM etl_test.make_job('fk_child');
  INSERT INTO etl.schedules (job_id, cron_expr, is_active)
  VALUES (v_doomed, '0 * * * *', true), (v_doomed, '0 3 * * *', false);
  INSERT INTO etl.job_tags (job_id, tag) VALUES (v_doomed, 'silver'), (v_doomed, 'finance');
  INSERT INTO etl.job_dependencies (parent_job_id, child_job_id)
  VALUES (etl_test.job_id_of('fk_parent'), v_doomed), (v_doomed, etl_test.job_id_of('fk_child'));
  INSERT INTO etl.job_parameters (job_id, name) VALUES (v_doomed, 'region');
END
$$;

SELECT is((SELECT (SELECT count(*) FROM etl.schedules WHERE job_id = etl_test.fx('fk_doomed'))
                 + (SELECT count(*) FROM etl.job_tags WHERE job_id = etl_test.fx('fk_doomed'))
                 + (SELECT count(*) FROM etl.job_dependencies
                     WHERE etl_test.fx('fk_doomed') IN (parent_job_id, child_job_id))
                 + (SELECT count(*) FROM etl.job_parameters WHERE job_id = etl_test.fx('fk_doomed')))::int,
          7, 'before the delete, fk_doomed has 2 schedules, 2 tags, 2 dependency edges and 1 parameter');

SELECT lives_ok($$DELETE FROM etl.jobs WHERE slug = 'fk_doomed'$$,
                'a job without runs can be deleted together with its configuration');
SELECT is((SELECT count(*)::int FROM etl.schedules WHERE job_id = etl_test.fx('fk_doomed')), 0,
          'deleting a job deletes its schedules, active and inactive (ON DELETE CASCADE)');
SELECT is((SELECT count(*)::int FROM etl.job_tags WHERE job_id = etl_test.fx('fk_doomed')), 0,
          'deleting a job deletes its tags (ON DELETE CASCADE)');
SELECT is((SELECT count(*)::int FROM etl.job_dependencies
            WHERE etl_test.fx('fk_doomed') IN (parent_job_id, child_job_id)), 0,
          'deleting a job deletes its dependency edges on both sides (ON DELETE CASCADE)');
SELECT is((SELECT count(*)::int FROM etl.job_parameters WHERE job_id = etl_test.fx('fk_doomed')), 0,
          'deleting a job deletes its parameter definitions (ON DELETE CASCADE)');
SELECT is((SELECT count(*)::int FROM etl.jobs WHERE slug IN ('fk_parent', 'fk_child')), 2,
          'deleting a job leaves its upstream and downstream jobs in place');

DO $$
DECLARE
  v_run bigint := etl_test.remember('fk_run',
    etl_test.make_run(etl_test.make_job('fk_run_job'), etl_test.make_pipeline_run(), 'running'));
  v_attempt bigint := etl_test.make_attempt(v_run);
  v_item bigint;
BEGIN
  INSERT INTO etl.run_items (run_id, item_no, params, param_hash, attempt_id)
  VALUES (v_run, 1, '{"region": "eu"}', etl_test.sha('{"region":"eu"}'), v_attempt)
  RETURNING item_id INTO v_item;
  INSERT INTO etl.run_events (run_id, pipeline_run_id, event_type, from_status, to_status)
  SELECT v_run, r.pipeline_run_id, 'status', 'queued', 'running' FROM etl.runs r WHERE r.run_id = v_run;
  INSERT INTO etl.run_logs (level, message, run_id, attempt_id, item_id)
  VALUES ('INFO', 'fk_run: extract started', v_run, v_attempt, v_item),
         ('ERROR', 'fk_run: page 3 failed', v_run, NULL, NULL);
END
$$;

SELECT is((SELECT (SELECT count(*) FROM etl.run_events WHERE run_id = etl_test.fx('fk_run'))
                 + (SELECT count(*) FROM etl.run_attempts WHERE run_id = etl_test.fx('fk_run'))
                 + (SELECT count(*) FROM etl.run_items WHERE run_id = etl_test.fx('fk_run'))
                 + (SELECT count(*) FROM etl.run_logs WHERE message LIKE 'fk\_run: %'))::int,
          5, 'before the delete, run fk_run has 1 event, 1 attempt, 1 item and 2 log lines');

SELECT lives_ok($$DELETE FROM etl.runs WHERE run_id = etl_test.fx('fk_run')$$,
                'a run that holds no lock and raised no alert can be deleted');
SELECT is((SELECT count(*)::int FROM etl.run_events WHERE run_id = etl_test.fx('fk_run')), 0,
          'deleting a run deletes its events (ON DELETE CASCADE)');
SELECT is((SELECT count(*)::int FROM etl.run_attempts WHERE run_id = etl_test.fx('fk_run')), 0,
          'deleting a run deletes its attempts (ON DELETE CASCADE)');
SELECT is((SELECT count(*)::int FROM etl.run_items WHERE run_id = etl_test.fx('fk_run')), 0,
          'deleting a run deletes its items (ON DELETE CASCADE)');
SELECT is((SELECT count(*)::int FROM etl.run_logs WHERE message LIKE 'fk\_run: %'), 0,
          'deleting a run deletes its logs, not just their link to it (ON DELETE CASCADE)');

SELECT throws_ok(
  $$DELETE FROM etl.runs WHERE run_id = etl_test.fx('lock_run')$$,
  '23503', 'update or delete on table "runs" violates foreign key constraint "job_locks_run_id_fkey" on table "job_locks"',
  'a run that holds a job_locks row cannot be deleted (job_locks.run_id is ON DELETE RESTRICT)');

DO $$
DECLARE
  v_run bigint := etl_test.remember('fk_alerted_run',
    etl_test.make_run(etl_test.make_job('fk_alerted'), etl_test.make_pipeline_run(), 'failed'));
BEGIN
  INSERT INTO etl.alert_events (run_id, job_id, dedupe_key, title)
  VALUES (v_run, etl_test.job_id_of('fk_alerted'), 'run_failed:fk_alerted', 'fk_alerted failed');
END
$$;

SELECT throws_ok(
  $$DELETE FROM etl.runs WHERE run_id = etl_test.fx('fk_alerted_run')$$,
  '23503', 'update or delete on table "runs" violates foreign key constraint "alert_events_run_id_fkey" on table "alert_events"',
  'a run that an alert refers to cannot be deleted (alert_events.run_id is ON DELETE RESTRICT)');

DO $$
DECLARE
  v_pipeline bigint := etl_test.remember('fk_pipeline', etl_test.make_pipeline_run());
BEGIN
  PERFORM etl_test.make_run(etl_test.make_job('fk_pipe_dim'), v_pipeline, 'success');
  PERFORM etl_test.make_run(etl_test.make_job('fk_pipe_fact'), v_pipeline, 'queued');
END
$$;

SELECT is((SELECT count(*)::int FROM etl.runs WHERE pipeline_run_id = etl_test.fx('fk_pipeline')), 2,
          'before the delete, pipeline run fk_pipeline has 2 runs');

SELECT lives_ok($$DELETE FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.fx('fk_pipeline')$$,
                'a pipeline run whose runs hold no lock and raised no alert can be deleted');
SELECT is((SELECT count(*)::int FROM etl.runs WHERE pipeline_run_id = etl_test.fx('fk_pipeline')), 0,
          'deleting a pipeline run deletes its runs (ON DELETE CASCADE)');

DO $$
DECLARE
  v_group bigint;
BEGIN
  INSERT INTO etl.job_groups (name) VALUES ('fk_group') RETURNING group_id INTO v_group;
  INSERT INTO etl.job_group_members (group_id, job_id, sequence)
  VALUES (v_group, etl_test.make_job('fk_grouped'), 1);
END
$$;

SELECT throws_ok(
  $$DELETE FROM etl.jobs WHERE slug = 'fk_grouped'$$,
  '23503', 'update or delete on table "jobs" violates foreign key constraint "job_group_members_job_id_fkey" on table "job_group_members"',
  'a job that is a member of a job group cannot be deleted (seed 004: RESTRICT for configuration)');

-- ---------------------------------------------------------------------------------------------
-- Vocabularies (CHECK ... IN (...)): a word outside the list is rejected by its named rule
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
  PERFORM etl_test.remember('chk_pipeline', etl_test.make_pipeline_run());
  PERFORM etl_test.remember('chk_run',
    etl_test.make_run(etl_test.make_job('chk_job'), etl_test.make_pipeline_run(), 'running'));
  PERFORM etl_test.make_job('chk_other');
  INSERT INTO etl.dq_checks (name, check_type) VALUES ('chk_orders_row_delta', 'row_delta');
END
$$;

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, status, parameter_fingerprint, logical_date,
                          max_attempts, started_at, ended_at)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_other'), 'done',
            etl_test.sha('{}'), '2026-01-01', 3, now(), now())$$,
  '23514', 'new row for relation "runs" violates check constraint "run_status_known"',
  'run status done is not in the run lifecycle vocabulary');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, status, parameter_fingerprint, logical_date,
                          max_attempts, started_at, ended_at, error_category)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_other'), 'failed',
            etl_test.sha('{}'), '2026-01-01', 3, now(), now(), 'Data')$$,
  '23514', 'new row for relation "runs" violates check constraint "run_error_category_known"',
  'error category Data (mixed case) is rejected: the categories are API, DB, DATA, SYSTEM');

SELECT lives_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, status, parameter_fingerprint, logical_date,
                          max_attempts, started_at, ended_at, error_category)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_other'), 'failed',
            etl_test.sha('{}'), '2026-01-01', 3, now(), now(), 'DATA')$$,
  'a failed run with ended_at and error category DATA is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.run_attempts (run_id, attempt_no, status, worker_id, lease_expires_at, ended_at)
    VALUES (etl_test.fx('chk_run'), 1, 'done', 'etl-test-worker', now(), now())$$,
  '23514', 'new row for relation "run_attempts" violates check constraint "attempt_status_known"',
  'attempt status done is not in the attempt vocabulary');

SELECT throws_ok(
  $$INSERT INTO etl.run_items (run_id, item_no, params, param_hash, status, ended_at)
    VALUES (etl_test.fx('chk_run'), 1, '{}', etl_test.sha('{}'), 'done', now())$$,
  '23514', 'new row for relation "run_items" violates check constraint "item_status_known"',
  'item status done is not in the item vocabulary');

SELECT throws_ok(
  $$INSERT INTO etl.run_logs (level, message, run_id) VALUES ('ERR', 'boom', etl_test.fx('chk_run'))$$,
  '23514', 'new row for relation "run_logs" violates check constraint "log_level_known"',
  'log level ERR is rejected: levels are DEBUG, INFO, WARNING, ERROR, CRITICAL');

SELECT throws_ok(
  $$INSERT INTO etl.schedules (job_id, cron_expr, is_active, misfire_policy)
    VALUES (etl_test.job_id_of('chk_job'), '0 * * * *', false, 'run_all')$$,
  '23514', 'new row for relation "schedules" violates check constraint "schedule_misfire_policy_known"',
  'misfire policy run_all is rejected: policies are catch_up and latest');

SELECT throws_ok(
  $$INSERT INTO etl.schedules (job_id, cron_expr, is_active, overlap_policy)
    VALUES (etl_test.job_id_of('chk_job'), '0 * * * *', false, 'parallel')$$,
  '23514', 'new row for relation "schedules" violates check constraint "schedule_overlap_policy_known"',
  'overlap policy parallel is rejected: policies are skip, queue_one and queue_all');

SELECT throws_ok(
  $$INSERT INTO etl.pipeline_runs (trigger_type) VALUES ('cron')$$,
  '23514', 'new row for relation "pipeline_runs" violates check constraint "pipeline_trigger_type_known"',
  'pipeline trigger type cron is rejected: triggers are manual, schedule, backfill, retry, api');

SELECT throws_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target) VALUES ('chk_bash', 'bash job', 'bash', 'run.sh')$$,
  '23514', 'new row for relation "jobs" violates check constraint "job_kind_known"',
  'job kind bash is rejected: kinds are python and sql');

SELECT throws_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target, layer)
    VALUES ('chk_platinum', 'platinum job', 'python', 'etl_test.jobs:chk_platinum', 'platinum')$$,
  '23514', 'new row for relation "jobs" violates check constraint "job_layer_known"',
  'job layer platinum is rejected: layers are bronze, silver, gold');

SELECT throws_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target, role)
    VALUES ('chk_bridge', 'bridge job', 'python', 'etl_test.jobs:chk_bridge', 'bridge')$$,
  '23514', 'new row for relation "jobs" violates check constraint "job_role_known"',
  'job role bridge is rejected: roles are dimension and fact');

SELECT throws_ok(
  $$INSERT INTO etl.dq_results (check_id, status)
    SELECT check_id, 'ok' FROM etl.dq_checks WHERE name = 'chk_orders_row_delta'$$,
  '23514', 'new row for relation "dq_results" violates check constraint "dq_result_status_known"',
  'DQ result status ok is rejected: statuses are pass, warn, fail');

SELECT throws_ok(
  $$INSERT INTO etl.metric_snapshots (metric_name, value_type, value)
    VALUES ('etl_run_duration_seconds', 'summary', 1.5)$$,
  '23514', 'new row for relation "metric_snapshots" violates check constraint "metric_value_type_known"',
  'metric value type summary is rejected: types are counter, gauge, histogram');

SELECT throws_ok(
  $$INSERT INTO etl.alert_events (dedupe_key, title, status) VALUES ('chk:closed', 'closed alert', 'closed')$$,
  '23514', 'new row for relation "alert_events" violates check constraint "alert_status_known"',
  'alert status closed is rejected: statuses are open, acknowledged, resolved');

SELECT throws_ok(
  $$INSERT INTO etl.service_heartbeats (instance_id, service, version, host, pid, status)
    VALUES ('runner-chk', 'runner', '0.1.0', 'localhost', 4242, 'healthy')$$,
  '23514', 'new row for relation "service_heartbeats" violates check constraint "heartbeat_status_known"',
  'heartbeat status healthy is rejected: statuses are starting, running, draining, stopped, lost');

-- ---------------------------------------------------------------------------------------------
-- Invariants (CHECK): each named after the rule it enforces
-- ---------------------------------------------------------------------------------------------
SELECT throws_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target, priority)
    VALUES ('chk_negative', 'negative priority', 'python', 'etl_test.jobs:chk_negative', -1)$$,
  '23514', 'new row for relation "jobs" violates check constraint "job_priority_non_negative"',
  'a job priority of -1 is rejected (seed 000 CHECK(priority >= 0))');

SELECT lives_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target, priority)
    VALUES ('chk_zero_priority', 'zero priority', 'python', 'etl_test.jobs:chk_zero_priority', 0)$$,
  'a job priority of 0 is accepted');

-- The engine's cycle trigger (BEFORE INSERT) refuses a self-edge before any CHECK is evaluated;
-- user triggers are off for this one statement so that the CHECK itself, the last line of
-- defence, is what is tested.
ALTER TABLE etl.job_dependencies DISABLE TRIGGER USER;
SELECT throws_ok(
  $$INSERT INTO etl.job_dependencies (parent_job_id, child_job_id)
    VALUES (etl_test.job_id_of('chk_job'), etl_test.job_id_of('chk_job'))$$,
  '23514', 'new row for relation "job_dependencies" violates check constraint "no_self_dependency"',
  'a job cannot depend on itself, even with the cycle trigger out of the way');
ALTER TABLE etl.job_dependencies ENABLE TRIGGER USER;

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, status, parameter_fingerprint, logical_date,
                          max_attempts, started_at)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_job'), 'success',
            etl_test.sha('{}'), '2026-01-01', 3, now())$$,
  '23514', 'new row for relation "runs" violates check constraint "run_finished_has_ended_at"',
  'a finished (success) run without ended_at is rejected');

SELECT throws_ok(
  $$UPDATE etl.runs SET status = 'cancelled' WHERE run_id = etl_test.fx('chk_run')$$,
  '23514', 'new row for relation "runs" violates check constraint "run_finished_has_ended_at"',
  'a run cannot be moved to cancelled without setting ended_at');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, status, parameter_fingerprint, logical_date,
                          max_attempts, started_at, ended_at)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_job'), 'failed',
            etl_test.sha('{}'), '2026-01-01', 3, now(), now())$$,
  '23514', 'new row for relation "runs" violates check constraint "run_failed_has_error_category"',
  'a failed run without an error category is rejected (failure triage needs one)');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, parameter_fingerprint, logical_date, max_attempts)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_job'),
            upper(etl_test.sha('{}')), '2026-01-01', 3)$$,
  '23514', 'new row for relation "runs" violates check constraint "run_fingerprint_is_sha256"',
  'a parameter fingerprint in upper-case hex is rejected: it is lower-case SHA-256 hex');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, parameter_fingerprint, logical_date, max_attempts)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_job'), 'abc123', '2026-01-01', 3)$$,
  '23514', 'new row for relation "runs" violates check constraint "run_fingerprint_is_sha256"',
  'a parameter fingerprint shorter than 64 hex digits is rejected');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, parameter_fingerprint, logical_date, max_attempts)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_job'), etl_test.sha('{}') || '0', '2026-01-01', 3)$$,
  '23514', 'new row for relation "runs" violates check constraint "run_fingerprint_is_sha256"',
  'a parameter fingerprint longer than 64 hex digits is rejected');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, parameter_fingerprint, logical_date, max_attempts)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_job'), repeat('a', 63) || 'g', '2026-01-01', 3)$$,
  '23514', 'new row for relation "runs" violates check constraint "run_fingerprint_is_sha256"',
  'a parameter fingerprint of 64 characters with one that is not hex is rejected');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, parameter_fingerprint, logical_date, max_attempts)
    VALUES (etl_test.fx('chk_pipeline'), etl_test.job_id_of('chk_job'), repeat('a', 62) || 'é', '2026-01-01', 3)$$,
  '23514', 'new row for relation "runs" violates check constraint "run_fingerprint_is_sha256"',
  'a parameter fingerprint of 64 bytes with a two-byte character in it is rejected');

SELECT throws_ok(
  $$INSERT INTO etl.pipeline_runs (mode, status) VALUES ('full', 'queued')$$,
  '23514', 'new row for relation "pipeline_runs" violates check constraint "full_refresh_requires_approval"',
  'a full-refresh pipeline run cannot be queued without a recorded approval (seed 004)');

SELECT throws_ok(
  $$INSERT INTO etl.pipeline_runs (mode, status, full_refresh_confirmed, approved_by, approved_at)
    VALUES ('full', 'queued', true, 'alice', now())$$,
  '23514', 'new row for relation "pipeline_runs" violates check constraint "full_refresh_requires_approval"',
  'a full-refresh approval without a reason is incomplete and rejected');

SELECT lives_ok(
  $$INSERT INTO etl.pipeline_runs (mode, status) VALUES ('full', 'awaiting_approval')$$,
  'a full-refresh pipeline run may wait for approval without one');

SELECT lives_ok(
  $$INSERT INTO etl.pipeline_runs (mode, status, full_refresh_confirmed, approved_by, approved_at, approval_reason)
    VALUES ('full', 'queued', true, 'alice', now(), 'rebuild after schema change')$$,
  'a full-refresh pipeline run with confirmation, approver, time and reason is queued');

SELECT throws_ok(
  $$UPDATE etl.settings SET value = '0' WHERE name = 'parallel_jobs'$$,
  '23514', 'new row for relation "settings" violates check constraint "setting_value_within_bounds"',
  'parallel_jobs = 0 is below its minimum and rejected');

SELECT throws_ok(
  $$UPDATE etl.settings SET value = to_jsonb(max_value + 1) WHERE name = 'parallel_jobs'$$,
  '23514', 'new row for relation "settings" violates check constraint "setting_value_within_bounds"',
  'parallel_jobs above its maximum is rejected');

SELECT lives_ok(
  $$UPDATE etl.settings SET value = '4' WHERE name = 'parallel_jobs'$$,
  'parallel_jobs = 4 lies within its bounds and is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target) VALUES ('chk_sql_target', 'sql job', 'sql', 'not qualified')$$,
  '23514', 'new row for relation "jobs" violates check constraint "job_sql_target_qualified"',
  'a sql job whose target is not schema.routine is rejected');

SELECT throws_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target, supports_params, items_source)
    VALUES ('chk_items', 'items job', 'python', 'etl_test.jobs:chk_items', true,
            '{"static": [{"region": "eu"}], "sql": "select 1"}')$$,
  '23514', 'new row for relation "jobs" violates check constraint "job_items_source_shape"',
  'an items_source naming two sources (static and sql) is rejected: exactly one of static, sql, callable');

SELECT lives_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target, supports_params, items_source)
    VALUES ('chk_items_ok', 'items job', 'python', 'etl_test.jobs:chk_items_ok', true,
            '{"static": [{"region": "eu"}, {"region": "us"}]}')$$,
  'an items_source with exactly one source is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.error_classes (match_kind, match_value, is_transient) VALUES ('sqlstate', '4001', true)$$,
  '23514', 'new row for relation "error_classes" violates check constraint "error_class_value_shape"',
  'a sqlstate error class must be five characters: 4001 is rejected');

SELECT lives_ok(
  $$INSERT INTO etl.error_classes (match_kind, match_value, is_transient) VALUES ('sqlstate', '40001', true)$$,
  'a sqlstate error class 40001 (serialization failure) is accepted');

-- ---------------------------------------------------------------------------------------------
-- Uniqueness
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
  v_run bigint := etl_test.remember('uq_run',
    etl_test.make_run(etl_test.make_job('uq_job'), etl_test.make_pipeline_run(), 'running'));
BEGIN
  PERFORM etl_test.make_attempt(v_run, 1);
  INSERT INTO etl.run_items (run_id, item_no, params, param_hash)
  VALUES (v_run, 1, '{"region": "eu"}', etl_test.sha('{"region":"eu"}'));
  INSERT INTO etl.cursors (job_id, param_hash, params, strategy)
  VALUES (etl_test.job_id_of('uq_job'), etl_test.sha('{"region":"eu"}'), '{"region": "eu"}', 'last_run');
  PERFORM etl_test.make_job('uq_other');
END
$$;

SELECT throws_ok(
  $$SELECT etl_test.make_attempt(etl_test.fx('uq_run'), 1)$$,
  '23505', 'duplicate key value violates unique constraint "attempt_no_unique_per_run"',
  'a run cannot have two attempts with the same attempt_no');

SELECT lives_ok(
  $$SELECT etl_test.make_attempt(etl_test.fx('uq_run'), 2)$$,
  'the next attempt_no of the same run is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.run_items (run_id, item_no, params, param_hash)
    VALUES (etl_test.fx('uq_run'), 2, '{"region": "eu"}', etl_test.sha('{"region":"eu"}'))$$,
  '23505', 'duplicate key value violates unique constraint "item_params_unique_per_run"',
  'the same parameters (param_hash) twice in one run are one item, not two');

SELECT throws_ok(
  $$INSERT INTO etl.run_items (run_id, item_no, params, param_hash)
    VALUES (etl_test.fx('uq_run'), 1, '{"region": "us"}', etl_test.sha('{"region":"us"}'))$$,
  '23505', 'duplicate key value violates unique constraint "item_no_unique_per_run"',
  'two items of one run cannot share an item_no');

SELECT throws_ok(
  $$INSERT INTO etl.cursors (job_id, param_hash, params, strategy)
    VALUES (etl_test.job_id_of('uq_job'), etl_test.sha('{"region":"eu"}'), '{"region": "eu"}', 'modified_date')$$,
  '23505', 'duplicate key value violates unique constraint "cursor_unique_per_job_params"',
  'a job has one cursor per parameter set (job_id, param_hash)');

SELECT lives_ok(
  $$INSERT INTO etl.cursors (job_id, param_hash, params, strategy)
    VALUES (etl_test.job_id_of('uq_other'), etl_test.sha('{"region":"eu"}'), '{"region": "eu"}', 'last_run')$$,
  'another job may keep a cursor for the same parameter set');

SELECT throws_ok(
  $$INSERT INTO etl.cursors (job_id, param_hash, params, strategy)
    VALUES (etl_test.job_id_of('uq_other'), upper(etl_test.sha('{"region":"us"}')), '{"region": "us"}', 'last_run')$$,
  '23514', 'new row for relation "cursors" violates check constraint "cursor_param_hash_is_sha256"',
  'a cursor''s param_hash is lower-case SHA-256 hex');

SELECT throws_ok(
  $$INSERT INTO etl.run_items (run_id, item_no, params, param_hash)
    VALUES (etl_test.fx('uq_run'), 9, '{"region": "us"}', repeat('0', 63) || 'x')$$,
  '23514', 'new row for relation "run_items" violates check constraint "item_param_hash_is_sha256"',
  'an item''s param_hash is SHA-256 hex');

SELECT throws_ok(
  $$INSERT INTO etl.runs (pipeline_run_id, job_id, correlation_id, parameter_fingerprint, logical_date, max_attempts)
    SELECT etl_test.make_pipeline_run(), etl_test.job_id_of('uq_other'), r.correlation_id,
           etl_test.sha('{}'), '2026-01-01', 3
      FROM etl.runs r WHERE r.run_id = etl_test.fx('uq_run')$$,
  '23505', 'duplicate key value violates unique constraint "run_correlation_id_unique"',
  'two runs cannot share a correlation_id');

SELECT throws_ok(
  $$SELECT etl_test.make_run(etl_test.job_id_of('uq_job'), r.pipeline_run_id)
      FROM etl.runs r WHERE r.run_id = etl_test.fx('uq_run')$$,
  '23505', 'duplicate key value violates unique constraint "one_run_per_job_per_pipeline_run"',
  'a job runs at most once in one pipeline run');

SELECT throws_ok(
  $$SELECT etl_test.make_job('uq_job')$$,
  '23505', 'duplicate key value violates unique constraint "job_slug_unique"',
  'two jobs cannot share a slug');

SELECT lives_ok(
  $$SELECT etl_test.make_job('uq_sql_a', 'sql')$$,
  'a sql job naming routine etl_test_silver.uq_sql_a is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target)
    VALUES ('uq_sql_b', 'same routine', 'sql', 'etl_test_silver.uq_sql_a')$$,
  '23505', 'duplicate key value violates unique constraint "job_sql_routine_unique"',
  'two sql jobs cannot name the same schema.routine (one catalog entry per procedure)');

SELECT lives_ok(
  $$INSERT INTO etl.jobs (slug, name, kind, target)
    VALUES ('uq_py_a', 'python a', 'python', 'etl_test.jobs:shared'),
           ('uq_py_b', 'python b', 'python', 'etl_test.jobs:shared')$$,
  'two python jobs may share a callable (the routine rule covers sql jobs only)');

SELECT throws_ok(
  $$INSERT INTO etl.job_tags (job_id, tag) VALUES (etl_test.job_id_of('uq_job'), 'gold'),
                                                   (etl_test.job_id_of('uq_job'), 'gold')$$,
  '23505', 'duplicate key value violates unique constraint "job_tag_unique"',
  'a job carries a tag at most once');

SELECT lives_ok(
  $$INSERT INTO etl.alert_events (dedupe_key, title, status, resolved_at)
    VALUES ('run_failed:uq_job', 'uq_job failed', 'resolved', now())$$,
  'a resolved alert is recorded');

SELECT lives_ok(
  $$INSERT INTO etl.alert_events (dedupe_key, title) VALUES ('run_failed:uq_job', 'uq_job failed again')$$,
  'an open alert may share its dedupe_key with a resolved one');

SELECT throws_ok(
  $$INSERT INTO etl.alert_events (dedupe_key, title) VALUES ('run_failed:uq_job', 'uq_job failed a third time')$$,
  '23505', 'duplicate key value violates unique constraint "one_open_alert_per_dedupe_key"',
  'a second open alert with the same dedupe_key is rejected (the repeat raises occurrences instead)');

SELECT throws_ok(
  $$INSERT INTO etl.alert_events (dedupe_key, title, status)
    VALUES ('run_failed:uq_job', 'uq_job failed, acknowledged copy', 'acknowledged')$$,
  '23505', 'duplicate key value violates unique constraint "one_open_alert_per_dedupe_key"',
  'an acknowledged alert is still unresolved and counts against the dedupe_key');

DO $$
BEGIN
  INSERT INTO etl.schedules (job_id, cron_expr) VALUES (etl_test.make_job('uq_scheduled'), '0 * * * *');
END
$$;

SELECT lives_ok(
  $$INSERT INTO etl.pipeline_runs (trigger_type, schedule_id, logical_date)
    SELECT 'schedule', s.schedule_id, '2026-01-01 01:00+00'
      FROM etl.schedules s WHERE s.job_id = etl_test.job_id_of('uq_scheduled')$$,
  'the first pipeline run of a schedule fire time is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.pipeline_runs (trigger_type, schedule_id, logical_date)
    SELECT 'schedule', s.schedule_id, '2026-01-01 01:00+00'
      FROM etl.schedules s WHERE s.job_id = etl_test.job_id_of('uq_scheduled')$$,
  '23505', 'duplicate key value violates unique constraint "one_pipeline_run_per_fire_time"',
  'a second scheduled pipeline run for the same schedule and fire time is rejected (double tick)');

SELECT lives_ok(
  $$INSERT INTO etl.pipeline_runs (trigger_type, schedule_id, logical_date)
    SELECT 'manual', s.schedule_id, timestamptz '2026-01-01 01:00+00'
      FROM etl.schedules s WHERE s.job_id = etl_test.job_id_of('uq_scheduled')
    UNION ALL
    SELECT 'manual', s.schedule_id, '2026-01-01 01:00+00'
      FROM etl.schedules s WHERE s.job_id = etl_test.job_id_of('uq_scheduled')$$,
  'manual pipeline runs for the same schedule and logical date are not limited by the fire-time rule');

SELECT lives_ok(
  $$INSERT INTO etl.pipeline_runs (trigger_type, schedule_id, logical_date)
    SELECT 'schedule', s.schedule_id, '2026-01-01 02:00+00'
      FROM etl.schedules s WHERE s.job_id = etl_test.job_id_of('uq_scheduled')$$,
  'the next fire time of the same schedule gets its own pipeline run');

SELECT lives_ok(
  $$INSERT INTO etl.pipeline_runs (idempotency_key) VALUES ('uq-request-1')$$,
  'a pipeline run with an idempotency key is accepted');

SELECT throws_ok(
  $$INSERT INTO etl.pipeline_runs (idempotency_key) VALUES ('uq-request-1')$$,
  '23505', 'duplicate key value violates unique constraint "pipeline_run_idempotency_key_unique"',
  'a second pipeline run with the same idempotency key is rejected');

SELECT throws_ok(
  $$WITH g AS (INSERT INTO etl.job_groups (name) VALUES ('uq_group') RETURNING group_id)
    INSERT INTO etl.job_group_members (group_id, job_id, sequence)
    SELECT g.group_id, j.job_id, 1 FROM g, etl.jobs j WHERE j.slug IN ('uq_py_a', 'uq_py_b')$$,
  '23505', 'duplicate key value violates unique constraint "group_member_sequence_unique"',
  'two members of one job group cannot share a sequence number');

SELECT throws_ok(
  $$INSERT INTO etl.refresh_targets (schema_name, view_name)
    VALUES ('silver', 'mv_orders_daily'), ('silver', 'mv_orders_daily')$$,
  '23505', 'duplicate key value violates unique constraint "refresh_target_unique"',
  'a materialized view is registered as a refresh target once');

SELECT * FROM finish();
ROLLBACK;
