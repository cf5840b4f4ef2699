-- Catalog rules: every etl function pins its search path, every API function is commented,
-- SECURITY DEFINER only with a pinned path, and the per-role privilege matrix.
BEGIN;
SELECT plan(46);

SELECT is_empty($$
  SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'etl' AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')
     AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search_path=%')
$$, 'every etl function pins search_path');

SELECT is_empty($$
  SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'etl' AND p.prosecdef
     AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search_path=%')
$$, 'no SECURITY DEFINER function without a pinned search_path');

SELECT is_empty($$
  SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'etl' AND obj_description(p.oid, 'pg_proc') IS NULL
$$, 'every etl function has a COMMENT');

SELECT is_empty($$
  SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'etl' AND 'enable_seqscan=off' = ANY (p.proconfig) AND NOT 'jit=off' = ANY (p.proconfig)
$$, 'a function that disables seq scans disables JIT too (a disabled scan''s cost would set JIT off: 100 ms a call)');

SELECT is_empty($$
  SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'etl' AND p.proname LIKE '\_%'
     AND (has_function_privilege('etl_viewer', p.oid, 'execute')
          OR has_function_privilege('etl_operator', p.oid, 'execute')
          OR has_function_privilege('etl_admin', p.oid, 'execute')
          OR has_function_privilege('etl_runner', p.oid, 'execute'))
$$, 'internal (underscore) functions are granted to no etl role');

SELECT is_empty($$
  SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'etl' AND has_function_privilege('public', p.oid, 'execute')
$$, 'PUBLIC may execute no etl function');

SELECT is_empty($$
  SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'etl' AND c.relkind = 'r' AND obj_description(c.oid, 'pg_class') IS NULL
$$, 'every etl table has a COMMENT');

-- The privilege matrix.
SELECT ok(has_function_privilege('etl_viewer', 'etl.next_wakeup()', 'execute'), 'viewer may ask next_wakeup');
SELECT ok(NOT has_function_privilege('etl_viewer', 'etl.run_job(text, jsonb, boolean, text, boolean, uuid, text, jsonb, timestamptz, boolean)', 'execute'), 'viewer may not run jobs');
SELECT ok(NOT has_function_privilege('etl_viewer', 'etl.cancel(bigint, text)', 'execute'), 'viewer may not cancel');
SELECT ok(has_function_privilege('etl_operator', 'etl.run_job(text, jsonb, boolean, text, boolean, uuid, text, jsonb, timestamptz, boolean)', 'execute'), 'operator may run jobs');
SELECT ok(has_function_privilege('etl_operator', 'etl.cancel(bigint, text)', 'execute'), 'operator may cancel');
SELECT ok(has_function_privilege('etl_operator', 'etl.retry(bigint, text)', 'execute'), 'operator may retry');
SELECT ok(NOT has_function_privilege('etl_operator', 'etl.set_setting(text, jsonb, text)', 'execute'), 'operator may not change settings');
SELECT ok(has_function_privilege('etl_admin', 'etl.set_setting(text, jsonb, text)', 'execute'), 'admin may change settings');
SELECT ok(has_function_privilege('etl_admin', 'etl.run_job(text, jsonb, boolean, text, boolean, uuid, text, jsonb, timestamptz, boolean)', 'execute'), 'admin may run jobs (inherits operator)');
SELECT ok(has_table_privilege('etl_viewer', 'etl.runs', 'select'), 'viewer reads runs');
SELECT ok(NOT has_table_privilege('etl_viewer', 'etl.runs', 'update'), 'viewer cannot update runs');

SELECT is_empty($$
  SELECT t.tgname::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
   WHERE t.tgrelid::regclass::text LIKE 'etl.%' AND t.tginitdeferred AND NOT p.prosecdef
$$, 'a deferred trigger (it fires at commit, as the session''s role) runs SECURITY DEFINER');
SELECT ok(has_function_privilege('etl_operator', 'etl.set_job_enabled(text, boolean, text)', 'execute'), 'operator may enable and disable jobs');
SELECT ok(NOT has_function_privilege('etl_viewer', 'etl.set_job_enabled(text, boolean, text)', 'execute'), 'viewer may not enable or disable jobs');

-- An operator for real: a login-less role acting as operator runs a job to its commit (the
-- deferred NOTIFY trigger fires as that role) and disables a job, audited.
INSERT INTO etl.jobs (slug, name, kind, target) VALUES ('catalog_op_job', 'operator test', 'python', 'm:f');
CREATE ROLE etl_test_operator_user IN ROLE etl_operator;
SET LOCAL ROLE etl_test_operator_user;
SELECT lives_ok($$SELECT etl.run_job('catalog_op_job')$$, 'an operator runs a job');
SELECT lives_ok($$SET CONSTRAINTS ALL IMMEDIATE$$, 'its deferred NOTIFY trigger fires as the operator');
SELECT is(etl.set_job_enabled('catalog_op_job', false, 'maintenance window'), true,
          'an operator disables a job (set_job_enabled returns what enabled was)');
SELECT throws_ok($$SELECT etl.set_job_enabled('catalog_op_job', true, '   ')$$, '22023',
                 'reason is required to enable a job', 'a blank reason is refused');
SELECT throws_ok($$SELECT etl.set_job_enabled('no_such_job', true, 'x')$$, '22023',
                 'unknown job "no_such_job"', 'an unknown job is refused by name');
SELECT throws_ok($$SELECT etl.set_job_enabled('catalog_op_job', null, 'x')$$, '22023',
                 'enabled must be true or false, got null', 'a null enabled is refused');
SELECT throws_ok($$UPDATE etl.jobs SET enabled = true WHERE slug = 'catalog_op_job'$$, '42501', NULL,
                 'an operator changes jobs only through the API');
RESET ROLE;
SELECT is((SELECT enabled FROM etl.jobs WHERE slug = 'catalog_op_job'), false, 'the job is disabled');
SELECT results_eq($$SELECT action, target_id, reason, details ->> 'old', details ->> 'new' FROM etl.audit_log
                     WHERE target_type = 'job' AND target_id = 'catalog_op_job'$$,
                  $$VALUES ('disable', 'catalog_op_job', 'maintenance window', 'true', 'false')$$,
                  'the change is audited with its reason, old and new value');

-- The runner's role: outcomes come from runners, not from people (and runners do not run jobs).
SELECT ok(NOT has_function_privilege('etl_operator', 'etl.finish(bigint, bigint, jsonb)', 'execute')
          AND NOT has_function_privilege('etl_operator', 'etl.claim(text, integer)', 'execute')
          AND NOT has_function_privilege('etl_admin', 'etl.finish(bigint, bigint, jsonb)', 'execute'),
          'operators and admins may not claim or report runs (they could forge outcomes and cursors)');
SELECT ok(NOT has_function_privilege('etl_runner', 'etl.run_job(text, jsonb, boolean, text, boolean, uuid, text, jsonb, timestamptz, boolean)', 'execute')
          AND NOT has_function_privilege('etl_runner', 'etl.cancel(bigint, text)', 'execute'),
          'a runner may not run or cancel jobs');
CREATE ROLE etl_test_runner_user IN ROLE etl_runner;
INSERT INTO etl.jobs (slug, name, kind, target) VALUES ('catalog_runner_job', 'runner test', 'python', 'm:f');
SELECT etl.run_job('catalog_runner_job', reason => 'runner role');
CREATE TEMP TABLE cat_run (r bigint, tok bigint);
GRANT SELECT, INSERT ON cat_run TO etl_test_runner_user;
SET LOCAL ROLE etl_test_runner_user;
SELECT lives_ok($$INSERT INTO cat_run SELECT c.run_id, c.token FROM etl.claim('cat-runner', 1) c$$, 'a runner claims');
SELECT is((SELECT etl.finish(r, tok, '{"status": "success"}') FROM cat_run), 'success', 'and reports the outcome');
SELECT lives_ok($$INSERT INTO etl.service_heartbeats (instance_id, service, version, host, pid, status)
                  VALUES ('cat-runner', 'runner', '1', 'h', 1, 'running')
                  ON CONFLICT (instance_id) DO UPDATE SET status = excluded.status, last_seen = now()$$,
                'and keeps its service heartbeat row');
SELECT lives_ok($$INSERT INTO etl.run_logs (level, message, run_id) SELECT 'INFO', 'hello', r FROM cat_run$$,
                'and writes run logs');
SELECT throws_ok($$UPDATE etl.runs SET status = 'failed'$$, '42501', NULL, 'but writes no run directly');
RESET ROLE;
-- The admin's job definitions: what etl apply writes.
CREATE ROLE etl_test_admin_user IN ROLE etl_admin;
SET LOCAL ROLE etl_test_admin_user;
SELECT lives_ok($$INSERT INTO etl.jobs (slug, name, kind, target) VALUES ('catalog_admin_job', 'admin test', 'python', 'm:f')$$,
                'an admin writes job definitions');
SELECT lives_ok($$INSERT INTO etl.job_dependencies (parent_job_id, child_job_id)
                  SELECT p.job_id, c.job_id FROM etl.jobs p, etl.jobs c
                   WHERE p.slug = 'catalog_op_job' AND c.slug = 'catalog_admin_job'$$, 'and their dependencies');
SELECT throws_ok($$UPDATE etl.runs SET status = 'failed'$$, '42501', NULL, 'but no run history');
SELECT throws_ok($$INSERT INTO etl.audit_log (actor, action, target_type) VALUES ('someone else', 'approve', 'pipeline_run')$$,
                 '42501', NULL, 'nor the audit log, where an admin could sign as someone else');
SELECT ok(etl.audit_definition_change('apply', '{"summary": "test"}') > 0, 'an admin audits a definition change through the API');
RESET ROLE;

-- Denial for real: a login-less role acting as viewer.
CREATE ROLE etl_test_viewer_user IN ROLE etl_viewer;
SET LOCAL ROLE etl_test_viewer_user;
SELECT throws_ok($$SELECT etl.set_setting('parallel_jobs', '4', 'x')$$, '42501', NULL, 'a viewer is refused set_setting');
SELECT throws_ok($$SELECT etl.run_job('anything')$$, '42501', NULL, 'a viewer is refused run_job');
SELECT lives_ok($$SELECT count(*) FROM etl.runs$$, 'a viewer reads run history');
SELECT lives_ok($$SELECT etl.cron_next('0 3 * * *', 'UTC', now()), etl.cron_describe('*/5 * * * *'),
                         etl.cron_next_n('@daily', 'Europe/Berlin', now(), 3), etl.cron_parse('0 3 * * 1-5'),
                         etl.param_fingerprint('{"a": 1}'), etl.canonical_json('{"a": 1}'), etl.next_wakeup(),
                         etl.next_lease_expiry('{1}')$$,
                'the functions granted to viewers work for a viewer (none trips on an internal one)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
