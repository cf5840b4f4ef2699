-- pgTAP tests for the engine's claim, heartbeat and finish: plpgsql/150_claim.sql, 160_finish.sql
-- (global slot bound, priority, concurrency keys, attempts and fencing tokens, leases, retries with
-- backoff, error classification, skips, alerts, cursors, finish_many, pipeline closure).

BEGIN;
SELECT plan(108);

-- ---------------------------------------------------------------- helpers
\ir lib/engine_helpers.psql

CREATE FUNCTION etl_test.fin(p_run bigint, p_outcome jsonb) RETURNS text LANGUAGE sql AS $$
  SELECT etl.finish(p_run, etl_test.token(p_run), p_outcome)
$$;

CREATE FUNCTION etl_test.finish_running() RETURNS void LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
  FOR r IN SELECT run_id FROM etl.runs WHERE status = 'running' ORDER BY run_id LOOP
    PERFORM etl_test.fin(r, '{"status": "success"}');
  END LOOP;
END $$;
UPDATE etl.schedules SET is_active = false;
SELECT etl.set_setting('parallel_jobs', '2', 'test');

-- ---------------------------------------------------------------- the global bound
SELECT etl_test.make_job('cf_1'); SELECT etl_test.make_job('cf_2'); SELECT etl_test.make_job('cf_3');
CREATE TEMP TABLE cf_r AS
  SELECT etl.run_job('cf_1') AS r1, etl.run_job('cf_2') AS r2, etl.run_job('cf_3') AS r3;
CREATE TEMP TABLE cf_claim1 AS SELECT * FROM etl.claim('w', 10);
SELECT is((SELECT count(*)::int FROM cf_claim1), 2, 'with parallel_jobs 2, claim(w, 10) over 3 queued runs returns 2');
SELECT is((SELECT count(*)::int FROM etl.run_slots WHERE run_id IS NOT NULL), 2, 'two run_slots are busy');
SELECT is((SELECT count(*)::int FROM etl.claim('w2', 10)), 0, 'a further claim gets nothing while both slots are busy');
SELECT is(etl_test.status((SELECT r3 FROM cf_r)), 'queued', 'the third run stays queued');
SELECT is((SELECT array_agg(run_id ORDER BY run_id) FROM cf_claim1), ARRAY[(SELECT r1 FROM cf_r), (SELECT r2 FROM cf_r)],
    'equal priority and age: the lowest run ids are claimed first');
SELECT is((SELECT (attempt_no, worker_id, status)::text FROM etl.run_attempts WHERE run_id = (SELECT r1 FROM cf_r)),
    '(1,w,running)', 'claim writes the attempt row with attempt_no 1 and the worker id');
SELECT is((SELECT token FROM cf_claim1 WHERE run_id = (SELECT r1 FROM cf_r)),
    (SELECT attempt_id FROM etl.run_attempts WHERE run_id = (SELECT r1 FROM cf_r)), 'the token is the attempt id');
SELECT ok(EXISTS (SELECT 1 FROM etl.run_events WHERE run_id = (SELECT r1 FROM cf_r) AND from_status = 'queued'
                     AND to_status = 'running' AND actor = 'w'), 'claim wrote a queued -> running event by the worker');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.pid((SELECT r1 FROM cf_r))), 'running',
    'the pipeline run becomes running with its first claim');

-- heartbeat, cancel flag, stale token
UPDATE etl.job_locks SET expires_at = now() - interval '1 second' WHERE run_id = (SELECT r1 FROM cf_r);
SELECT is((etl.heartbeat((SELECT r1 FROM cf_r), etl_test.token((SELECT r1 FROM cf_r))) ->> 'cancel_requested')::boolean, false,
    'heartbeat returns cancel_requested false for a run nobody cancelled');
SELECT ok((SELECT expires_at BETWEEN now() + interval '30 seconds' AND clock_timestamp() + interval '30 seconds'
             FROM etl.job_locks WHERE run_id = (SELECT r1 FROM cf_r) AND status = 'active'),
    'heartbeat extends the lock lease to the current time + default_lease_seconds');
SELECT is(etl.cancel((SELECT r1 FROM cf_r), 'stop it'), 'cancel_requested', 'cancel of a running run only asks');
SELECT is((etl.heartbeat((SELECT r1 FROM cf_r), etl_test.token((SELECT r1 FROM cf_r))) ->> 'cancel_requested')::boolean, true,
    'after etl.cancel the heartbeat returns cancel_requested true');
SELECT throws_ok(format('SELECT etl.finish(%s, %s, ''{"status": "success"}'')', (SELECT r1 FROM cf_r), (SELECT r2 FROM cf_claim1 c, cf_r WHERE c.run_id = cf_r.r2) ),
    'ETL01', NULL, 'finish with the token of another run is refused with ETL01');
SELECT throws_ok(format('SELECT etl.heartbeat(%s, %s)', (SELECT r1 FROM cf_r), -1),
    'ETL01', format('stale_token: run %s is running and its current attempt token is %s, not -1',
                    (SELECT r1 FROM cf_r), etl_test.token((SELECT r1 FROM cf_r))),
    'heartbeat with a wrong token is refused with ETL01 stale_token');

-- an outcome's counts are whole numbers (a count from 0), named when they are not
SELECT throws_ok(format('SELECT etl.finish(%s, %s, ''{"status": "success", "records_read": "many"}'')',
                        (SELECT r1 FROM cf_r), etl_test.token((SELECT r1 FROM cf_r))), '22023',
    'outcome.records_read must be a whole number (a count: from 0), got {"status": "success", "records_read": "many"}',
    'a count that is not a number is refused by name');
SELECT throws_ok(format('SELECT etl.finish(%s, %s, ''{"status": "success", "records_written": -5}'')',
                        (SELECT r1 FROM cf_r), etl_test.token((SELECT r1 FROM cf_r))), '22023',
    'outcome.records_written must be a whole number (a count: from 0), got {"status": "success", "records_written": -5}',
    'a negative count is refused by name');
SELECT throws_like(format('SELECT etl.finish(%s, %s, ''{"status": "failed", "error_category": "API", "http_status": "abc"}'')',
                          (SELECT r1 FROM cf_r), etl_test.token((SELECT r1 FROM cf_r))),
    'outcome.http_status must be a whole number%', 'an http_status that is not a number is refused by name');
SELECT is(etl_test.status((SELECT r1 FROM cf_r)), 'running', 'a refused report changes nothing');

-- finish success: lock, slot, duration
SELECT is(etl_test.fin((SELECT r1 FROM cf_r), '{"status": "success", "records_read": 5}'), 'success', 'finish success returns success');
SELECT ok(NOT EXISTS (SELECT 1 FROM etl.job_locks WHERE run_id = (SELECT r1 FROM cf_r) AND status = 'active'),
    'finish released the run''s lock');
SELECT is((SELECT count(*)::int FROM etl.run_slots WHERE run_id IS NOT NULL), 1, 'finish freed the slot');
SELECT is((SELECT (duration_ms IS NOT NULL AND ended_at IS NOT NULL AND records_read = 5) FROM etl.runs WHERE run_id = (SELECT r1 FROM cf_r)),
    true, 'the run ends with ended_at, duration_ms and its metrics');
SELECT throws_ok(format('SELECT etl.finish(%s, %s, ''{"status": "success"}'')', (SELECT r1 FROM cf_r), etl_test.token((SELECT r1 FROM cf_r))),
    'ETL01', format('stale_token: run %s was already reported: it is success', (SELECT r1 FROM cf_r)),
    'a second report of a finished run is refused with ETL01, saying so');
SELECT etl_test.finish_running();
SELECT etl_test.finish_running();  -- cf_3 may not be running; harmless

-- ---------------------------------------------------------------- priority, age
SELECT etl_test.park();
SELECT etl_test.make_job('cf_lo'); SELECT etl_test.make_job('cf_hi');
UPDATE etl.jobs SET priority = 5 WHERE slug = 'cf_hi';
CREATE TEMP TABLE cf_p AS SELECT etl.run_job('cf_lo') AS lo, etl.run_job('cf_hi') AS hi;
SELECT is((SELECT run_id FROM etl.claim('w', 1)), (SELECT hi FROM cf_p), 'claim takes the higher priority run first');
SELECT etl_test.finish_running();
SELECT etl_test.make_job('cf_old');
CREATE TEMP TABLE cf_o AS SELECT etl.run_job('cf_old') AS r;
UPDATE etl.runs SET next_attempt_at = now() - interval '1 minute' WHERE run_id = (SELECT r FROM cf_o);
SELECT is((SELECT run_id FROM etl.claim('w', 1)), (SELECT lo FROM cf_p),
          'at equal priority the older pipeline run wins, even over a run runnable for longer in a newer one');
SELECT etl_test.finish_running();
SELECT etl_test.claim_run((SELECT r FROM cf_o));
SELECT etl_test.finish_running();
-- In one pipeline run: the run that heads the longest remaining chain first, then the oldest runnable.
SELECT etl_test.make_job('cf_solo'); SELECT etl_test.make_job('cf_head'); SELECT etl_test.make_job('cf_tail');
SELECT etl_test.dep('cf_head', 'cf_tail');
CREATE TEMP TABLE cf_cp AS SELECT etl.trigger_pipeline(jobs => array['cf_solo', 'cf_head', 'cf_tail']) AS p;
SELECT is((SELECT array_agg(critical_path_ms ORDER BY j.slug) FROM etl.runs r JOIN etl.jobs j USING (job_id)
            WHERE r.pipeline_run_id = (SELECT p FROM cf_cp)),
          ARRAY[2000, 1000, 1000]::bigint[],
          'critical_path_ms: without history each job counts 1 s, a chain of two 2 s (cf_head, cf_solo, cf_tail)');
SELECT is((SELECT j.slug FROM etl.claim('w', 1) c JOIN etl.jobs j ON j.job_id = c.job_id), 'cf_head',
          'in one pipeline run the head of the longest chain is claimed before an older, lower run id');
UPDATE etl.runs SET next_attempt_at = now() - interval '1 minute'
 WHERE pipeline_run_id = (SELECT p FROM cf_cp) AND status = 'queued';
SELECT is((SELECT j.slug FROM etl.claim('w', 1) c JOIN etl.jobs j ON j.job_id = c.job_id), 'cf_solo',
          'then the rest in order');
SELECT etl_test.finish_running();
SELECT etl_test.finish_running();
SELECT etl_test.finish_running();

-- ---------------------------------------------------------------- concurrency keys
SELECT etl_test.park();
SELECT etl_test.make_job('cf_k1'); SELECT etl_test.make_job('cf_k2');
UPDATE etl.jobs SET concurrency_key = 'shared' WHERE slug IN ('cf_k1', 'cf_k2');
CREATE TEMP TABLE cf_k AS SELECT etl.run_job('cf_k1') AS k1, etl.run_job('cf_k2') AS k2;
SELECT is((SELECT count(*)::int FROM etl.claim('w', 10)), 1, 'two runs with the same concurrency key: only one is claimed');
SELECT is((SELECT array_agg(concurrency_key) FROM etl.job_locks WHERE status = 'active'), ARRAY['shared'],
    'the claimed run holds the lock shared');
SELECT etl_test.finish_running();
UPDATE etl.jobs SET concurrency_limit = 2 WHERE slug IN ('cf_k1', 'cf_k2');
SELECT etl_test.park();
UPDATE etl.runs SET next_attempt_at = now() WHERE run_id = (SELECT k2 FROM cf_k) AND status = 'queued';
CREATE TEMP TABLE cf_k3 AS SELECT etl.run_job('cf_k1') AS k1b;
SELECT is((SELECT count(*)::int FROM etl.claim('w', 10)), 2, 'with concurrency_limit 2 both runs of the key are claimed');
SELECT is((SELECT array_agg(concurrency_key ORDER BY concurrency_key) FROM etl.job_locks WHERE status = 'active'),
    ARRAY['shared', 'shared#2'], 'their locks are shared and shared#2');
SELECT etl_test.finish_running();

-- ---------------------------------------------------------------- release of a child
SELECT etl_test.park();
SELECT etl_test.make_job('cf_par'); SELECT etl_test.make_job('cf_chi');
SELECT etl_test.dep('cf_par', 'cf_chi');
CREATE TEMP TABLE cf_pc AS SELECT etl.trigger_pipeline(jobs => ARRAY['cf_par', 'cf_chi']) AS pid;
SELECT is(etl_test.succeed(etl_test.run_of((SELECT pid FROM cf_pc), 'cf_par')), 'success', 'the parent succeeds');
SELECT is(etl_test.status(etl_test.run_of((SELECT pid FROM cf_pc), 'cf_chi')), 'queued', 'finish success releases the child to queued');
SELECT is(etl_test.succeed(etl_test.run_of((SELECT pid FROM cf_pc), 'cf_chi')), 'success', 'the child succeeds');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM cf_pc)), 'success',
    'the pipeline run is success when all its runs succeeded');

-- ---------------------------------------------------------------- transient failure, backoff, retries
SELECT etl_test.park();
SELECT etl_test.make_job('cf_t');
CREATE TEMP TABLE cf_tr AS SELECT etl.run_job('cf_t') AS r, NULL::bigint AS tok1;
UPDATE cf_tr SET tok1 = etl_test.claim_run(r);
SELECT is(etl_test.fin((SELECT r FROM cf_tr), '{"status": "failed", "error_category": "API", "http_status": 503, "message": "busy"}'),
    'queued', 'a transient failure (API, 503) with attempts left puts the run back to queued');
SELECT ok((SELECT next_attempt_at > now() OR next_attempt_at = now() AND backoff_ms = 0 FROM etl.run_attempts WHERE attempt_id = (SELECT tok1 FROM cf_tr)),
    'the retry is scheduled after a backoff');
SELECT is((SELECT backoff_ms FROM etl.run_attempts WHERE attempt_id = (SELECT tok1 FROM cf_tr)),
    etl.backoff_ms((SELECT r FROM cf_tr), 1), 'the attempt records backoff_ms = etl.backoff_ms(run, 1)');
SELECT ok((SELECT backoff_ms BETWEEN 0 AND 1000 FROM etl.run_attempts WHERE attempt_id = (SELECT tok1 FROM cf_tr)),
    'full jitter keeps the first delay within [0, backoff_base]');
SELECT is((SELECT next_attempt_at FROM etl.runs WHERE run_id = (SELECT r FROM cf_tr)),
    (SELECT next_attempt_at FROM etl.run_attempts WHERE attempt_id = (SELECT tok1 FROM cf_tr)),
    'the run''s next_attempt_at is the attempt''s');
SELECT ok(EXISTS (SELECT 1 FROM etl.run_events WHERE run_id = (SELECT r FROM cf_tr) AND event_type = 'retry_scheduled'
                     AND (detail ->> 'backoff_ms')::bigint = etl.backoff_ms((SELECT r FROM cf_tr), 1)),
    'a retry_scheduled event records the delay');
SELECT is((SELECT count(*)::int FROM etl.run_slots WHERE run_id IS NOT NULL), 0, 'the retrying run holds no slot');
UPDATE etl.runs SET next_attempt_at = now() WHERE run_id = (SELECT r FROM cf_tr);
SELECT isnt(etl_test.claim_run((SELECT r FROM cf_tr)), (SELECT tok1 FROM cf_tr), 'the second claim gets a new token');
SELECT is((SELECT attempt_count FROM etl.runs WHERE run_id = (SELECT r FROM cf_tr)), 2, 'the second claim is attempt 2');
SELECT throws_ok(format('SELECT etl.finish(%s, %s, ''{"status": "success"}'')', (SELECT r FROM cf_tr), (SELECT tok1 FROM cf_tr)),
    'ETL01', format('stale_token: run %s is running and its current attempt token is %s, not %s',
                    (SELECT r FROM cf_tr), etl_test.token((SELECT r FROM cf_tr)), (SELECT tok1 FROM cf_tr)),
    'the old token is refused after the new claim');
SELECT is(etl_test.fin((SELECT r FROM cf_tr), '{"status": "failed", "error_category": "API", "http_status": 503}'), 'queued',
    'attempt 2 of 3 fails transiently and is retried again');
UPDATE etl.runs SET next_attempt_at = now() WHERE run_id = (SELECT r FROM cf_tr);
SELECT is(etl.finish((SELECT r FROM cf_tr), etl_test.claim_run((SELECT r FROM cf_tr)),
                     '{"status": "failed", "error_category": "API", "http_status": 503}'), 'failed',
    'the last attempt of a transient failure fails the run');
SELECT is((SELECT (attempt_count, error_category, is_transient)::text FROM etl.runs WHERE run_id = (SELECT r FROM cf_tr)),
    '(3,API,t)', 'the failed run used 3 attempts and keeps the category');

-- ---------------------------------------------------------------- backoff_ms
SELECT etl_test.make_job('cf_bn'); SELECT etl_test.make_job('cf_be');
UPDATE etl.jobs SET backoff_jitter = 'none', backoff_base = '1 second', backoff_factor = 2, backoff_cap = '5 seconds' WHERE slug = 'cf_bn';
UPDATE etl.jobs SET backoff_jitter = 'equal', backoff_base = '10 seconds', backoff_factor = 3, backoff_cap = '1 minute' WHERE slug = 'cf_be';
SELECT etl_test.park();
CREATE TEMP TABLE cf_b AS SELECT etl.run_job('cf_bn') AS n, etl.run_job('cf_be') AS e, etl.run_job('cf_t') AS f;
SELECT is(ARRAY[etl.backoff_ms((SELECT n FROM cf_b), 1), etl.backoff_ms((SELECT n FROM cf_b), 2),
                etl.backoff_ms((SELECT n FROM cf_b), 3), etl.backoff_ms((SELECT n FROM cf_b), 4)],
    ARRAY[1000, 2000, 4000, 5000]::bigint[], 'jitter none: base * factor^(n-1), capped at backoff_cap');
SELECT ok(etl.backoff_ms((SELECT e FROM cf_b), 1) BETWEEN 5000 AND 10000
      AND etl.backoff_ms((SELECT e FROM cf_b), 2) BETWEEN 15000 AND 30000
      AND etl.backoff_ms((SELECT e FROM cf_b), 3) BETWEEN 30000 AND 60000,
    'jitter equal: every delay lies within [d/2, d]');
SELECT ok((SELECT bool_and(etl.backoff_ms((SELECT f FROM cf_b), n) BETWEEN 0 AND least(300000, 1000 * 2 ^ (n - 1)))
             FROM generate_series(1, 12) n),
    'jitter full: every delay lies within [0, d] for attempts 1..12');
SELECT is(etl.backoff_ms((SELECT e FROM cf_b), 2), (SELECT etl.backoff_ms((SELECT e FROM cf_b), 2)),
    'the same run and attempt always give the same delay');
SELECT isnt((SELECT count(DISTINCT etl.backoff_ms((SELECT f FROM cf_b), 9)) FROM generate_series(1, 3)), 0::bigint,
    'backoff_ms is defined for a late attempt');
UPDATE etl.jobs SET max_retry_elapsed = '2 seconds', backoff_jitter = 'none', backoff_base = '5 seconds' WHERE slug = 'cf_be';
SELECT is(etl.finish((SELECT e FROM cf_b), etl_test.claim_run((SELECT e FROM cf_b)),
                     '{"status": "failed", "error_category": "API", "http_status": 503}'), 'failed',
    'a transient failure whose retry would exceed max_retry_elapsed fails at once');
UPDATE etl.jobs SET max_retry_elapsed = '1 hour', backoff_base = '1 second' WHERE slug = 'cf_be';
UPDATE etl.runs SET started_at = now() - interval '1 day' WHERE run_id = (SELECT e FROM cf_b);
SELECT etl.retry((SELECT e FROM cf_b), 'upstream fixed');
SELECT is(etl.finish((SELECT e FROM cf_b), etl_test.claim_run((SELECT e FROM cf_b)),
                     '{"status": "failed", "error_category": "API", "http_status": 503}'), 'queued',
    'a manual retry gives a fresh max_retry_elapsed: counted from the retry, not the first start');

-- ---------------------------------------------------------------- permanent failure, skips, alerts
SELECT etl_test.park();
SELECT etl_test.make_job('cf_pa'); SELECT etl_test.make_job('cf_pb'); SELECT etl_test.make_job('cf_pc'); SELECT etl_test.make_job('cf_pd');
SELECT etl_test.dep('cf_pa', 'cf_pb'); SELECT etl_test.dep('cf_pb', 'cf_pc');
CREATE TEMP TABLE cf_pp AS SELECT etl.trigger_pipeline(jobs => ARRAY['cf_pa', 'cf_pb', 'cf_pc', 'cf_pd']) AS p1,
                                  etl.trigger_pipeline(jobs => ARRAY['cf_pa', 'cf_pb', 'cf_pc']) AS p2;
SELECT is(etl.finish(etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pa'), etl_test.claim_run(etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pa')),
                     '{"status": "failed", "error_category": "DATA", "message": "bad row"}'), 'failed',
    'a permanent (DATA) failure fails the run at the first attempt');
SELECT is(ARRAY[etl_test.status(etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pb')), etl_test.status(etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pc')),
                etl_test.status(etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pd'))],
    ARRAY['skipped', 'skipped', 'queued'], 'its descendants in the pipeline run are skipped, the unrelated root is not');
SELECT is(ARRAY[etl_test.status(etl_test.run_of((SELECT p2 FROM cf_pp), 'cf_pb')), etl_test.status(etl_test.run_of((SELECT p2 FROM cf_pp), 'cf_pc'))],
    ARRAY['pending', 'pending'], 'the same jobs in another pipeline run are untouched');
SELECT is((SELECT skip_reason FROM etl.runs WHERE run_id = etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pb')),
    format('upstream cf_pa run %s failed', etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pa')), 'the skip names the failed upstream run');
SELECT is((SELECT count(*)::int FROM etl.alert_events WHERE dedupe_key = 'run_failed:cf_pa' AND status = 'open'), 1,
    'one open alert with dedupe_key run_failed:<slug>');
UPDATE etl.runs SET next_attempt_at = now() WHERE run_id = etl_test.run_of((SELECT p2 FROM cf_pp), 'cf_pa');
SELECT is(etl.finish(etl_test.run_of((SELECT p2 FROM cf_pp), 'cf_pa'), etl_test.claim_run(etl_test.run_of((SELECT p2 FROM cf_pp), 'cf_pa')),
                     '{"status": "failed", "error_category": "DATA", "message": "bad row again"}'), 'failed',
    'the same job fails again in the other pipeline run');
SELECT is((SELECT (count(*), max(occurrences))::text FROM etl.alert_events WHERE dedupe_key = 'run_failed:cf_pa'), '(1,2)',
    'the second failure increments occurrences of the open alert instead of creating another');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT p2 FROM cf_pp)), 'failed',
    'a pipeline run with a failed run is failed');
SELECT is(etl_test.succeed(etl_test.run_of((SELECT p1 FROM cf_pp), 'cf_pd')), 'success', 'the unrelated root still runs');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT p1 FROM cf_pp)), 'failed',
    'the first pipeline run closes as failed once its last run ended');
SELECT is(etl_test.succeed(etl.run_job('cf_pa', dry_run => true)), 'success', 'a dry run of the job succeeds');
SELECT is((SELECT status FROM etl.alert_events WHERE dedupe_key = 'run_failed:cf_pa'), 'open',
    'a dry run''s success loaded nothing: the alert stays open');
SELECT is(etl_test.succeed(etl.run_job('cf_pa')), 'success', 'a later run of the job succeeds');
SELECT is((SELECT status FROM etl.alert_events WHERE dedupe_key = 'run_failed:cf_pa'), 'resolved',
    'the next success resolves the open alert');

-- ---------------------------------------------------------------- error classes
SELECT etl_test.make_job('cf_ec'); SELECT etl_test.make_job('cf_ec2');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'API', http_status => 503), true, 'a 503 is transient (http_class 5xx)');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'API', http_status => 501), false, 'a 501 is permanent: http_status beats http_class');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'API', http_status => 429), true, 'a 429 is transient although 4xx is permanent');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'DB', sqlstate => '40001'), true, 'a serialization failure (class 40) is transient');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'DB', 'timeout', '22012'), true, 'error_type beats the sqlstate class');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'DATA', hint => true), true, 'without a matching rule the runner''s hint decides');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'API'), true, 'without rule or hint the category default decides (API transient)');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'DATA'), false, 'and DATA is permanent by default');
INSERT INTO etl.error_classes (job_id, match_kind, match_value, is_transient, note)
VALUES (etl_test.job('cf_ec'), 'http_status', '503', false, 'this API never recovers');
INSERT INTO etl.error_classes (job_id, match_kind, match_value, is_transient, note)
VALUES (etl_test.job('cf_ec'), 'http_class', '5xx', false, 'nor from other 5xx');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'API', http_status => 503), false, 'a job-specific 503 rule overrides the global one');
SELECT is(etl.classify_error(etl_test.job('cf_ec'), 'API', http_status => 502), false, 'a job-specific 5xx rule beats the global 5xx rule');
SELECT is(etl.classify_error(etl_test.job('cf_ec2'), 'API', http_status => 503), true, 'other jobs keep the global rule');
SELECT etl_test.park();
SELECT is((SELECT etl.finish(r, etl_test.claim_run(r), '{"status": "failed", "error_category": "API", "http_status": 503}')
             FROM etl.run_job('cf_ec') r), 'failed', 'so a 503 of that job fails the run at once');

-- ---------------------------------------------------------------- lifecycle trigger
SELECT throws_ok(format('UPDATE etl.runs SET status = ''running'' WHERE run_id = %s', (SELECT hi FROM cf_p)), '23514',
    format('run_status_transition_is_legal: run %s cannot go from success to running', (SELECT hi FROM cf_p)),
    'the trigger refuses success -> running');
CREATE TEMP TABLE cf_q AS SELECT etl.run_job('cf_2') AS r;
SELECT throws_like(format('UPDATE etl.runs SET status = ''success'', ended_at = now() WHERE run_id = %s', (SELECT r FROM cf_q)),
    'run_status_transition_is_legal:%', 'the trigger refuses a jump that skips running');
-- Its WHEN clause lets the everyday steps through without calling the function: every pair it
-- names, read back from the catalog, must be legal in the lifecycle.
CREATE TEMP VIEW cf_when_pairs AS
SELECT pg_catalog.split_part(p, '>', 1) AS from_status, pg_catalog.split_part(p, '>', 2) AS to_status
  FROM pg_catalog.pg_trigger t,
       pg_catalog.unnest(pg_catalog.string_to_array(
         pg_catalog.substring(pg_catalog.pg_get_triggerdef(t.oid), '<> ALL \(''\{([^}]*)\}''::text\[\]\)'), ',')) p
 WHERE t.tgname = 'run_status_transition_is_legal';
SELECT set_eq('SELECT from_status, to_status FROM cf_when_pairs',
    $$VALUES ('pending', 'queued'), ('queued', 'running'), ('running', 'success')$$,
    'the trigger''s WHEN clause lets through released, claimed and succeeded');
SELECT is((SELECT pg_catalog.bool_and(etl._run_transition_is_legal(from_status, to_status)) FROM cf_when_pairs), true,
    'and each pair it lets through is legal in the lifecycle');

-- ---------------------------------------------------------------- cursors
SELECT etl_test.make_job('cf_inc');
UPDATE etl.jobs SET supports_incremental = true, incremental_strategy = 'modified_date' WHERE slug = 'cf_inc';
SELECT etl_test.park();
CREATE TEMP TABLE cf_c AS SELECT etl.run_job('cf_inc') AS r1;
SELECT is(etl.finish((SELECT r1 FROM cf_c), etl_test.claim_run((SELECT r1 FROM cf_c)),
                     '{"status": "success", "cursor": {"value": "2024-01-02T00:00:00Z", "tiebreak": "k9"}}'), 'success',
    'an incremental run succeeds reporting a cursor');
SELECT is((SELECT (cursor_value = '2024-01-02T00:00:00Z', advance_count, tiebreak_value)::text FROM etl.cursors WHERE job_id = etl_test.job('cf_inc')),
    '(t,1,k9)', 'the cursor advanced once to the reported value');
SELECT etl_test.park();
CREATE TEMP TABLE cf_dry AS SELECT etl.run_job('cf_inc', dry_run => true) AS r;
SELECT is((SELECT (cursor ->> 'value')::timestamptz FROM etl.claim('w', 1)), '2024-01-02T00:00:00Z'::timestamptz,
    'claim hands the stored cursor to the next run');
SELECT is(etl_test.fin((SELECT run_id FROM etl.runs WHERE job_id = etl_test.job('cf_inc') AND status = 'running'),
                       '{"status": "success", "cursor": {"value": "2024-06-01T00:00:00Z"}}'), 'success', 'a dry run succeeds');
SELECT is((SELECT (cursor_value = '2024-01-02T00:00:00Z', advance_count)::text FROM etl.cursors WHERE job_id = etl_test.job('cf_inc')),
    '(t,1)', 'a dry run does not advance the cursor');
SELECT is((SELECT etl.finish(r, etl_test.claim_run(r), '{"status": "failed", "error_category": "DATA", "cursor": {"value": "2024-07-01T00:00:00Z"}}')
             FROM etl.run_job('cf_inc') r), 'failed', 'a run fails reporting a cursor');
SELECT is((SELECT (cursor_value = '2024-01-02T00:00:00Z', advance_count)::text FROM etl.cursors WHERE job_id = etl_test.job('cf_inc')),
    '(t,1)', 'a failure does not advance the cursor');
SELECT is((SELECT etl.finish(r, etl_test.claim_run(r), '{"status": "success", "cursor": {"value": "2023-12-01T00:00:00Z"}}')
             FROM etl.run_job('cf_inc') r), 'success', 'a later success reports an older cursor value');
SELECT is((SELECT cursor_value FROM etl.cursors WHERE job_id = etl_test.job('cf_inc')), '2024-01-02T00:00:00Z'::timestamptz,
    'the cursor never moves backwards');
UPDATE etl.cursors SET tiebreak_value = '9' WHERE job_id = etl_test.job('cf_inc');
SELECT is((SELECT etl.finish(r, etl_test.claim_run(r), '{"status": "success", "cursor": {"value": "2024-01-02T00:00:00Z", "tiebreak": "10"}}')
             FROM etl.run_job('cf_inc') r), 'success', 'a success at the same cursor value reports tie-break 10 after 9');
SELECT is((SELECT tiebreak_value FROM etl.cursors WHERE job_id = etl_test.job('cf_inc')), '10',
    'numeric tie-breaks compare as numbers: 10 comes after 9');
SELECT ok(etl._tiebreak_after('b', 'a') AND NOT etl._tiebreak_after('a', 'b') AND etl._tiebreak_after('x', NULL)
          AND NOT etl._tiebreak_after(NULL, 'x') AND NOT etl._tiebreak_after('9', '10'),
    'other tie-breaks compare as text; none is never after one');
SELECT etl_test.make_job('cf_lr');
UPDATE etl.jobs SET supports_incremental = true, incremental_strategy = 'last_run' WHERE slug = 'cf_lr';
SELECT is((SELECT etl.finish(r, etl_test.claim_run(r), '{"status": "success"}')
             FROM etl.run_job('cf_lr', logical_date => '2024-03-01T00:00:00Z') r), 'success', 'a last_run job succeeds');
SELECT is((SELECT (strategy, cursor_value = '2024-03-01T00:00:00Z')::text FROM etl.cursors WHERE job_id = etl_test.job('cf_lr')),
    '(last_run,t)', 'last_run strategy stores the run''s logical_date');

-- ---------------------------------------------------------------- finish_many
SELECT etl_test.park();
SELECT etl_test.make_job('cf_m1'); SELECT etl_test.make_job('cf_m2');
CREATE TEMP TABLE cf_m AS SELECT etl.run_job('cf_m1') AS a, etl.run_job('cf_m2') AS b;
SELECT is((SELECT count(*)::int FROM etl.claim('w', 2)), 2, 'both runs are claimed');
SELECT is((SELECT array_agg(status ORDER BY run_id) FROM etl.finish_many(jsonb_build_array(
              jsonb_build_object('run_id', (SELECT a FROM cf_m), 'token', etl_test.token((SELECT a FROM cf_m)), 'outcome', '{"status": "success"}'::jsonb),
              jsonb_build_object('run_id', (SELECT b FROM cf_m), 'token', etl_test.token((SELECT b FROM cf_m)),
                                 'outcome', '{"status": "failed", "error_category": "DATA"}'::jsonb)))),
    ARRAY['success', 'failed'], 'finish_many finishes several runs in one call');
SELECT is(ARRAY[etl_test.status((SELECT a FROM cf_m)), etl_test.status((SELECT b FROM cf_m))], ARRAY['success', 'failed'],
    'both runs carry their outcome');
SELECT is((SELECT count(*)::int FROM etl.run_slots WHERE run_id IS NOT NULL), 0, 'finish_many freed both slots');

-- A diamond with history, an implied dimension-before-fact edge, and a job named twice.
SELECT etl_test.make_job(s) FROM unnest(array['cp_a', 'cp_b', 'cp_c', 'cp_d']) s;
SELECT etl_test.make_job('cp_dim', 'dimension'); SELECT etl_test.make_job('cp_fact', 'fact');
SELECT etl_test.dep('cp_a', 'cp_b'); SELECT etl_test.dep('cp_a', 'cp_c');
SELECT etl_test.dep('cp_b', 'cp_d'); SELECT etl_test.dep('cp_c', 'cp_d');
SELECT etl_test.finish_running();
UPDATE etl.runs SET priority = 0 WHERE status IN ('pending', 'queued');  -- out of the way of claim_run
-- (cp_b and cp_c run alone once cp_a's latest run succeeded.)
CREATE TEMP TABLE cp_root AS SELECT etl.run_job('cp_a') AS r;
SELECT etl_test.claim_run(r) FROM cp_root;
SELECT etl_test.fin(r, '{"status": "success"}') FROM cp_root;
UPDATE etl.runs SET duration_ms = 1000 WHERE run_id = (SELECT r FROM cp_root);
CREATE TEMP TABLE cp_hist AS SELECT etl.run_job(s) AS r FROM unnest(array['cp_b', 'cp_c']) s;
SELECT etl_test.claim_run(r) FROM cp_hist ORDER BY r;
SELECT etl_test.fin(r, '{"status": "success"}') FROM cp_hist ORDER BY r;
UPDATE etl.runs SET duration_ms = 500 WHERE run_id IN (SELECT r FROM cp_hist);
SELECT is((SELECT jsonb_object_agg(j.slug, (etl._critical_paths(array_agg_ids) ->> j.job_id::text)::bigint)
             FROM etl.jobs j,
                  (SELECT array_agg(job_id) || (SELECT job_id FROM etl.jobs WHERE slug = 'cp_a') AS array_agg_ids
                     FROM etl.jobs WHERE slug LIKE 'cp\_%') ids
            WHERE j.slug LIKE 'cp\_%'),
          '{"cp_a": 2500, "cp_b": 1500, "cp_c": 1500, "cp_d": 1000, "cp_dim": 2000, "cp_fact": 1000}'::jsonb,
          '_critical_paths: mean of the last successes (500 ms) or 1 s, plus the longest child; dimensions feed facts');
SELECT is(etl._critical_paths(array[(SELECT job_id FROM etl.jobs WHERE slug = 'cp_d')]),
          jsonb_build_object((SELECT job_id FROM etl.jobs WHERE slug = 'cp_d')::text, 1000),
          '_critical_paths of one job: its own expected duration');
SELECT is(etl._critical_paths('{}'), '{}'::jsonb, '_critical_paths of no job: empty');

SELECT * FROM finish();
ROLLBACK;
