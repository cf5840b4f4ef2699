-- pgTAP tests for the engine's operator controls and tick: plpgsql/170_control.sql, 180_tick.sql
-- (cancel, retry, retry_pipeline, set_setting, next_wakeup, schedule firing with misfire and overlap
-- policies, the lease reaper, backfill).

BEGIN;
SELECT plan(92);

-- ---------------------------------------------------------------- helpers
\ir lib/engine_helpers.psql

CREATE FUNCTION etl_test.finish_running() RETURNS void LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
  FOR r IN SELECT run_id FROM etl.runs WHERE status = 'running' ORDER BY run_id LOOP
    PERFORM etl.finish(r, (SELECT a.attempt_id FROM etl.run_attempts a JOIN etl.runs x USING (run_id)
                            WHERE a.run_id = r AND a.attempt_no = x.attempt_count), '{"status": "success"}');
  END LOOP;
END $$;

CREATE FUNCTION etl_test.hour0() RETURNS timestamptz LANGUAGE sql AS $$
  SELECT date_trunc('hour', now())
$$;
UPDATE etl.schedules SET is_active = false;

-- ---------------------------------------------------------------- cancel
SELECT etl_test.make_job('ct_a'); SELECT etl_test.make_job('ct_b'); SELECT etl_test.make_job('ct_c');
SELECT etl_test.dep('ct_a', 'ct_b'); SELECT etl_test.dep('ct_b', 'ct_c');
CREATE TEMP TABLE ct_p AS SELECT etl.trigger_pipeline(jobs => ARRAY['ct_a'], downstream => true) AS p1;
SELECT is(etl.cancel(etl_test.run_of((SELECT p1 FROM ct_p), 'ct_a'), 'not today'), 'cancelled', 'cancel of a queued run returns cancelled');
SELECT is(etl_test.status(etl_test.run_of((SELECT p1 FROM ct_p), 'ct_a')), 'cancelled', 'the queued run is cancelled');
SELECT is(ARRAY[etl_test.status(etl_test.run_of((SELECT p1 FROM ct_p), 'ct_b')), etl_test.status(etl_test.run_of((SELECT p1 FROM ct_p), 'ct_c'))],
    ARRAY['skipped', 'skipped'], 'its descendants are skipped');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT p1 FROM ct_p)), 'cancelled',
    'the pipeline run closes as cancelled');
SELECT is((SELECT reason FROM etl.audit_log WHERE action = 'cancel' AND target_id = etl_test.run_of((SELECT p1 FROM ct_p), 'ct_a')::text),
    'not today', 'cancel wrote an audit row with the reason');
SELECT throws_ok(format('SELECT etl.cancel(%s, '''')', etl_test.run_of((SELECT p1 FROM ct_p), 'ct_b')), '22023',
    'reason is required to cancel a run', 'cancel without a reason is refused');

SELECT etl_test.park();
CREATE TEMP TABLE ct_run AS SELECT etl.run_job('ct_a') AS r;
SELECT isnt(etl_test.claim_run((SELECT r FROM ct_run)), NULL, 'a run is claimed');
SELECT is(etl.cancel((SELECT r FROM ct_run), 'stop'), 'cancel_requested', 'cancel of a running run returns cancel_requested');
SELECT is((SELECT (status, cancel_requested_at = now())::text FROM etl.runs WHERE run_id = (SELECT r FROM ct_run)),
    '(running,t)', 'the running run keeps running with cancel_requested_at set');
SELECT ok(EXISTS (SELECT 1 FROM etl.run_events WHERE run_id = (SELECT r FROM ct_run) AND event_type = 'cancel_requested'),
    'a cancel_requested event is recorded');
SELECT is(etl.finish((SELECT r FROM ct_run), etl_test.token((SELECT r FROM ct_run)), '{"status": "cancelled"}'), 'cancelled',
    'the runner reports the cancellation');
SELECT is(etl.cancel((SELECT r FROM ct_run), 'again'), 'cancelled', 'cancel of a finished run returns its status');
SELECT is((SELECT count(*)::int FROM etl.audit_log WHERE action = 'cancel' AND target_id = (SELECT r FROM ct_run)::text), 1,
    'and writes no audit row: nothing happened');

CREATE TEMP TABLE ct_cp AS SELECT etl.trigger_pipeline(jobs => ARRAY['ct_a'], downstream => true) AS p;
SELECT is(etl.cancel_pipeline((SELECT p FROM ct_cp), 'all of it'), 3, 'cancel_pipeline counts every open run it closed: the root cancelled, its descendants skipped');
SELECT is((SELECT array_agg(status ORDER BY run_id) FROM etl.runs WHERE pipeline_run_id = (SELECT p FROM ct_cp)),
    ARRAY['cancelled', 'skipped', 'skipped'], 'no run of the pipeline run is left unfinished: root cancelled, descendants skipped');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT p FROM ct_cp)), 'cancelled',
    'the cancelled pipeline run is closed');

-- ---------------------------------------------------------------- retry
SELECT etl_test.park();
CREATE TEMP TABLE ct_rp AS SELECT etl.trigger_pipeline(jobs => ARRAY['ct_a'], downstream => true) AS p;
SELECT is(etl.finish(etl_test.run_of((SELECT p FROM ct_rp), 'ct_a'), etl_test.claim_run(etl_test.run_of((SELECT p FROM ct_rp), 'ct_a')),
                     '{"status": "failed", "error_category": "DATA"}'), 'failed', 'the root fails permanently');
SELECT is(etl.retry(etl_test.run_of((SELECT p FROM ct_rp), 'ct_a'), 'data fixed'), 3, 'retry re-opens the run and its two skipped descendants');
SELECT is((SELECT (status, max_attempts)::text FROM etl.runs WHERE run_id = etl_test.run_of((SELECT p FROM ct_rp), 'ct_a')),
    '(queued,4)', 'the retried run is queued with max_attempts = attempt_count + job max_attempts');
SELECT is(ARRAY[etl_test.status(etl_test.run_of((SELECT p FROM ct_rp), 'ct_b')), etl_test.status(etl_test.run_of((SELECT p FROM ct_rp), 'ct_c'))],
    ARRAY['pending', 'pending'], 'its skipped descendants are pending again');
SELECT is((SELECT details ->> 'runs_reopened' FROM etl.audit_log WHERE action = 'retry'
             AND target_id = etl_test.run_of((SELECT p FROM ct_rp), 'ct_a')::text), '3', 'retry wrote an audit row');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT p FROM ct_rp)), 'running',
    'the pipeline run is open again');
SELECT is(etl.finish(etl_test.run_of((SELECT p FROM ct_rp), 'ct_a'), etl_test.claim_run(etl_test.run_of((SELECT p FROM ct_rp), 'ct_a')),
                     '{"status": "success"}'), 'success', 'the retried run succeeds with attempt numbers continuing');
SELECT is((SELECT attempt_count FROM etl.runs WHERE run_id = etl_test.run_of((SELECT p FROM ct_rp), 'ct_a')), 2,
    'attempt numbers continue across the retry');
SELECT throws_ok(format('SELECT etl.retry(%s, ''again'')', etl_test.run_of((SELECT p FROM ct_rp), 'ct_a')), '55000',
    format('run %s is success: only failed, cancelled or skipped runs can be retried (or a partial success, for its items that did not succeed)', etl_test.run_of((SELECT p FROM ct_rp), 'ct_a')),
    'retry of a success is refused with 55000');

SELECT etl_test.park();
CREATE TEMP TABLE ct_rp2 AS SELECT etl.trigger_pipeline(jobs => ARRAY['ct_a'], downstream => true) AS p;
SELECT is(etl.finish(etl_test.run_of((SELECT p FROM ct_rp2), 'ct_a'), etl_test.claim_run(etl_test.run_of((SELECT p FROM ct_rp2), 'ct_a')),
                     '{"status": "success"}'), 'success', 'in a second pipeline run the root succeeds');
SELECT is(etl.finish(etl_test.run_of((SELECT p FROM ct_rp2), 'ct_b'), etl_test.claim_run(etl_test.run_of((SELECT p FROM ct_rp2), 'ct_b')),
                     '{"status": "failed", "error_category": "DATA"}'), 'failed', 'and the middle job fails');
SELECT throws_ok(format('SELECT etl.retry(%s, ''again'')', etl_test.run_of((SELECT p FROM ct_rp2), 'ct_c')), '55000',
    format('run %s waits for upstream run %s (ct_b, failed): retry run %s instead, it re-opens the runs it skipped',
           etl_test.run_of((SELECT p FROM ct_rp2), 'ct_c'), etl_test.run_of((SELECT p FROM ct_rp2), 'ct_b'),
           etl_test.run_of((SELECT p FROM ct_rp2), 'ct_b')),
    'retry of a run whose upstream failed is refused, naming the run to retry');
SELECT is(etl.retry_pipeline((SELECT p FROM ct_rp2), 'again'), 2, 'retry_pipeline re-opens the failed and the skipped run');
SELECT is((SELECT array_agg(status ORDER BY run_id) FROM etl.runs WHERE pipeline_run_id = (SELECT p FROM ct_rp2)),
    ARRAY['success', 'queued', 'pending'], 'the success is kept, the failed run is queued, the skipped one pending');
SELECT ok(EXISTS (SELECT 1 FROM etl.audit_log WHERE action = 'retry_pipeline' AND target_id = (SELECT p FROM ct_rp2)::text),
    'retry_pipeline is audited');

-- ---------------------------------------------------------------- settings
SELECT throws_like($$SELECT etl.set_setting('nope', '1', 'x')$$, 'unknown setting "nope" (known: %',
    'an unknown setting is refused');
SELECT throws_ok($$SELECT etl.set_setting('nope', '1', 'x')$$, '22023', NULL, 'with SQLSTATE 22023');
SELECT throws_ok($$SELECT etl.set_setting('parallel_jobs', '"two"', 'x')$$, '22023',
    'setting "parallel_jobs" takes a number, got "two"', 'a value of the wrong type is refused');
SELECT throws_ok($$SELECT etl.set_setting('parallel_jobs', '0', 'x')$$, '22023',
    'setting "parallel_jobs" must be a whole number between 1 and 10000, got 0', 'parallel_jobs 0 is out of bounds');
SELECT throws_ok($$SELECT etl.set_setting('parallel_jobs', '10001', 'x')$$, '22023',
    'setting "parallel_jobs" must be a whole number between 1 and 10000, got 10001', 'parallel_jobs 10001 is out of bounds');
SELECT throws_ok($$SELECT etl.set_setting('parallel_jobs', '2.5', 'x')$$, '22023',
    'setting "parallel_jobs" must be a whole number between 1 and 10000, got 2.5', 'a fractional value is refused');
SELECT throws_ok($$SELECT etl.set_setting('parallel_jobs', '3', NULL)$$, '22023',
    'reason is required to change a setting', 'a change without a reason is refused');
SELECT etl_test.finish_running();
SELECT is(etl.set_setting('parallel_jobs', '3', 'smaller box') ->> 'new', '3', 'a good change is accepted');
SELECT is((SELECT array_agg(slot_no ORDER BY slot_no) FROM etl.run_slots WHERE NOT retired), ARRAY[1, 2, 3],
    'run_slots is resized to 3 claimable slots');
SELECT is((SELECT details FROM etl.audit_log WHERE action = 'set_setting' AND target_id = 'parallel_jobs'),
    '{"old": 8, "new": 3}'::jsonb, 'the change is audited with the old and new value');
SELECT is(etl.set_setting('parallel_jobs', '5', 'bigger') ->> 'old', '3', 'a second change reports the previous value');
SELECT is(etl.set_setting('parallel_jobs', '5.0', 'same') -> 'new', '5'::jsonb, 'a whole number written 5.0 is stored as 5');
SELECT is((SELECT value FROM etl.settings WHERE name = 'parallel_jobs'), '5'::jsonb, 'so readers can cast it to integer');
SELECT throws_ok($$SELECT etl.set_setting('parallel_jobs', null, 'x')$$, '22023',
    'setting "parallel_jobs" needs a value, got null', 'a null value is refused by name');
SELECT is((SELECT count(*)::int FROM etl.run_slots WHERE NOT retired), 5, 'and grows the slot pool');

-- Lowered under load: 5 running, parallel_jobs 2. No claim until fewer than 2 run, whichever ends first.
SELECT etl_test.park();
CREATE TEMP TABLE ct_load (n int, r bigint, tok bigint);
INSERT INTO ct_load SELECT g, NULL, NULL FROM generate_series(1, 6) g;
SELECT etl_test.make_job('ct_load_' || n) FROM ct_load;
UPDATE ct_load SET r = etl.run_job('ct_load_' || n);
UPDATE ct_load SET tok = etl_test.claim_run(r) WHERE n <= 5;
SELECT etl.set_setting('parallel_jobs', '2', 'shrink under load');
SELECT is((SELECT row(count(*), count(*) FILTER (WHERE retired), count(run_id))::text FROM etl.run_slots), '(5,3,5)',
    'shrunk under load: the five busy slots stay, three of them retired');
SELECT is((SELECT count(*)::int FROM etl.claim('w', 1)), 0, 'no claim while 5 run against a bound of 2');
SELECT etl.finish(r, tok, '{"status": "success"}') FROM ct_load WHERE n IN (1, 5);
SELECT is((SELECT row(count(*), count(*) FILTER (WHERE retired), count(run_id))::text FROM etl.run_slots), '(3,1,3)',
    'each slot freed goes, a retired one or one in its stead');
SELECT is((SELECT count(*)::int FROM etl.claim('w', 1)), 0, 'no claim while 3 run');
SELECT etl.finish(r, tok, '{"status": "success"}') FROM ct_load WHERE n = 2;
SELECT is((SELECT count(*)::int FROM etl.claim('w', 1)), 0, 'nor while 2 run');
SELECT etl.finish(r, tok, '{"status": "success"}') FROM ct_load WHERE n = 3;
SELECT is((SELECT row(count(*), count(*) FILTER (WHERE retired), count(run_id))::text FROM etl.run_slots), '(2,0,1)',
    'the pool is the new bound, with one run left');
UPDATE ct_load SET tok = etl_test.claim_run(r) WHERE n = 6;
SELECT is((SELECT count(*)::int FROM etl.runs x JOIN ct_load c ON c.r = x.run_id WHERE x.status = 'running'), 2,
    'one under the bound: the next run is claimed, two run');
SELECT etl.finish(r, tok, '{"status": "success"}') FROM ct_load WHERE n IN (4, 6);
SELECT etl.set_setting('parallel_jobs', '5', 'back');

-- ---------------------------------------------------------------- next_wakeup
SELECT etl_test.park();
SELECT etl_test.make_job('ct_w');
CREATE TEMP TABLE ct_w AS SELECT etl.run_job('ct_w') AS r;
SELECT is(etl.next_wakeup(), (SELECT next_attempt_at FROM etl.runs WHERE run_id = (SELECT r FROM ct_w)),
    'next_wakeup is the earliest next_attempt_at of the queued runs (the new run''s)');
SELECT ok(etl.next_wakeup() BETWEEN now() AND clock_timestamp(), 'which is the moment it was queued');
UPDATE etl.runs SET next_attempt_at = now() + interval '7 minutes' WHERE run_id = (SELECT r FROM ct_w);
SELECT is(etl.next_wakeup(), now() + interval '7 minutes', 'next_wakeup follows a later backoff');
UPDATE etl.runs SET next_attempt_at = now() - interval '1 minute' WHERE run_id = (SELECT r FROM ct_w);
SELECT ok(coalesce(etl.next_wakeup() > now(), true),
    'a run already due is not a wake-up time (it waits for a slot or its key: claimed when they are freed, not polled)');
SELECT etl.cancel((SELECT r FROM ct_w), 'done');

-- ---------------------------------------------------------------- tick: schedules
SELECT etl_test.make_job('ct_s1');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('ct_s1'), '0 * * * *', 'latest', 'queue_all', etl_test.hour0());
CREATE TEMP TABLE ct_sid AS SELECT schedule_id FROM etl.schedules WHERE job_id = etl_test.job('ct_s1');
SELECT is((etl.tick() ->> 'pipeline_runs_created')::int, 1, 'the tick reports one pipeline run created for a due schedule');
SELECT is((SELECT count(*)::int FROM etl.pipeline_runs WHERE schedule_id = (SELECT schedule_id FROM ct_sid)), 1,
    'exactly one pipeline run exists for the schedule');
SELECT is((SELECT (trigger_type, logical_date = etl_test.hour0())::text FROM etl.pipeline_runs WHERE schedule_id = (SELECT schedule_id FROM ct_sid)),
    '(schedule,t)', 'it is a schedule run whose logical_date is the fire time');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = (SELECT schedule_id FROM ct_sid)), etl_test.hour0() + interval '1 hour',
    'next_run_at advances to the next fire time in the future');
UPDATE etl.schedules SET next_run_at = etl_test.hour0() WHERE schedule_id = (SELECT schedule_id FROM ct_sid);
SELECT is((etl.tick() ->> 'pipeline_runs_created')::int, 0, 'a second tick for the same fire time reports nothing created');
SELECT is((SELECT count(*)::int FROM etl.pipeline_runs WHERE schedule_id = (SELECT schedule_id FROM ct_sid)), 1,
    'a second tick for the same fire time creates nothing (unique fire time)');

SELECT etl_test.make_job('ct_s2');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('ct_s2'), '0 * * * *', 'catch_up', 'queue_all', etl_test.hour0() - interval '3 hours');
SELECT etl.tick();
SELECT is((SELECT array_agg(p.logical_date ORDER BY p.logical_date) FROM etl.pipeline_runs p JOIN etl.schedules s USING (schedule_id)
            WHERE s.job_id = etl_test.job('ct_s2')),
    ARRAY[etl_test.hour0() - interval '3 hours', etl_test.hour0() - interval '2 hours', etl_test.hour0() - interval '1 hour', etl_test.hour0()],
    'misfire catch_up creates one pipeline run per missed fire time (4)');

SELECT etl_test.make_job('ct_s3');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('ct_s3'), '0 * * * *', 'latest', 'queue_all', etl_test.hour0() - interval '3 hours');
SELECT etl.tick();
SELECT is((SELECT array_agg(p.logical_date) FROM etl.pipeline_runs p JOIN etl.schedules s USING (schedule_id)
            WHERE s.job_id = etl_test.job('ct_s3')), ARRAY[etl_test.hour0()],
    'misfire latest creates one pipeline run, for the latest fire time');

SELECT etl_test.make_job('ct_s4');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('ct_s4'), '0 * * * *', 'latest', 'skip', etl_test.hour0() - interval '2 hours');
INSERT INTO etl.pipeline_runs (trigger_type, schedule_id, logical_date, status, started_at)
SELECT 'schedule', schedule_id, etl_test.hour0() - interval '5 hours', 'running', now() FROM etl.schedules WHERE job_id = etl_test.job('ct_s4');
SELECT etl.tick();
SELECT is((SELECT (status, skip_reason, logical_date = etl_test.hour0())::text FROM etl.pipeline_runs p JOIN etl.schedules s USING (schedule_id)
            WHERE s.job_id = etl_test.job('ct_s4') AND p.status <> 'running'),
    '(skipped,"overlap policy skip: previous fire still running",t)',
    'overlap skip records a skipped pipeline run when the previous fire is still running');
SELECT is((SELECT count(*)::int FROM etl.runs WHERE job_id = etl_test.job('ct_s4')), 0, 'and no run of the job is created');

-- ---------------------------------------------------------------- tick: lease reaper
SELECT etl_test.park();
SELECT etl_test.make_job('ct_l');
CREATE TEMP TABLE ct_l AS SELECT etl.run_job('ct_l') AS r, NULL::bigint AS tok;
UPDATE ct_l SET tok = etl_test.claim_run(r);
UPDATE etl.job_locks SET expires_at = now() - interval '1 second' WHERE run_id = (SELECT r FROM ct_l);
SELECT lives_ok('SELECT etl.tick()', 'the tick reaps an expired lease without error');
SELECT is(etl_test.status((SELECT r FROM ct_l)), 'queued', 'the run whose lease expired is queued again');
SELECT is((SELECT (status, error_type, error_category, is_transient)::text FROM etl.run_attempts WHERE attempt_id = (SELECT tok FROM ct_l)),
    '(lost,lease_expired,SYSTEM,t)', 'the attempt is lost with a transient SYSTEM lease_expired error');
SELECT throws_ok(format('SELECT etl.finish(%s, %s, ''{"status": "success"}'')', (SELECT r FROM ct_l), (SELECT tok FROM ct_l)),
    'ETL01', NULL, 'the old token of the reaped attempt is refused');

-- A runner reaps without waiting for the tick: next_lease_expiry says when, reap_expired_leases does it.
SELECT etl.cancel((SELECT r FROM ct_l), 'done');
SELECT is(etl.next_lease_expiry(), NULL, 'next_lease_expiry is NULL when no run holds a lease');
SELECT etl_test.make_job('ct_l2');
SELECT etl_test.make_job('ct_l3');
CREATE TEMP TABLE ct_l2 AS SELECT etl.run_job('ct_l2') AS r, NULL::bigint AS tok;
UPDATE ct_l2 SET tok = etl_test.claim_run(r);
CREATE TEMP TABLE ct_l3 AS SELECT etl.run_job('ct_l3') AS r, NULL::bigint AS tok;
UPDATE ct_l3 SET tok = etl_test.claim_run(r);
UPDATE etl.job_locks SET expires_at = now() + interval '40 seconds' WHERE run_id = (SELECT r FROM ct_l2);
UPDATE etl.job_locks SET expires_at = now() + interval '20 seconds' WHERE run_id = (SELECT r FROM ct_l3);
SELECT is(etl.next_lease_expiry(), now() + interval '20 seconds', 'next_lease_expiry is the earliest active lease');
GRANT SELECT ON ct_l3 TO etl_runner;
SELECT is(etl.next_lease_expiry(ARRAY[(SELECT tok FROM ct_l2), (SELECT tok FROM ct_l3)]), NULL,
    'leaving out the attempts the asking runner runs itself');
SELECT is(etl.next_lease_expiry(ARRAY[(SELECT tok FROM ct_l3)]), now() + interval '40 seconds', 'and only those');
SET LOCAL ROLE etl_runner;
SELECT is(etl.reap_expired_leases(), 0, 'a runner (etl_runner) may reap; a lease still running is left alone');
RESET ROLE;
UPDATE etl.job_locks SET expires_at = now() - interval '1 second' WHERE run_id = (SELECT r FROM ct_l3);
SELECT is(etl.next_lease_expiry(), now() - interval '1 second', 'a lease that ended unreaped is given, in the past');
SET LOCAL ROLE etl_runner;
SELECT is(etl.reap_expired_leases('w', ARRAY[(SELECT tok FROM ct_l3)]), 0,
    'a runner never reaps the attempts it runs itself (its heartbeats renew them)');
SELECT is(etl.reap_expired_leases('runner-b'), 1, 'another runner reaps the ended lease and counts it');
RESET ROLE;
SELECT is((SELECT (etl_test.status(r), a.status, a.error_type)::text FROM ct_l3 JOIN etl.run_attempts a ON a.attempt_id = tok),
    '(queued,lost,lease_expired)', 'as the tick would: the run is retried, its attempt lost');
SELECT is((SELECT actor FROM etl.run_events WHERE run_id = (SELECT r FROM ct_l3) AND event_type = 'lease_expired'),
    'runner-b', 'the lease_expired event names the runner that reaped it');
SELECT is(etl_test.status((SELECT r FROM ct_l2)), 'running', 'the live lease keeps its run');
SELECT is(etl.next_lease_expiry(), now() + interval '40 seconds', 'and is now the earliest');
SELECT ok(has_function_privilege('etl_viewer', 'etl.next_lease_expiry(bigint[])', 'execute')
          AND NOT has_function_privilege('etl_viewer', 'etl.reap_expired_leases(text, bigint[])', 'execute')
          AND NOT has_function_privilege('etl_operator', 'etl.reap_expired_leases(text, bigint[])', 'execute'),
    'viewers and operators may ask when a lease ends, not reap');
SELECT etl.cancel((SELECT r FROM ct_l2), 'done');
SELECT etl.cancel((SELECT r FROM ct_l3), 'done');

-- ---------------------------------------------------------------- tick: runners not seen
INSERT INTO etl.service_heartbeats (instance_id, service, version, host, pid, status, last_seen) VALUES
  ('ct-dead', 'runner', '1', 'h', 1, 'running', now() - interval '61 seconds'),
  ('ct-alive', 'runner', '1', 'h', 2, 'running', now() - interval '50 seconds'),
  ('ct-stopped', 'runner', '1', 'h', 3, 'stopped', now() - interval '1 day');
SELECT is((etl.tick() ->> 'runners_lost')::int, 1, 'the tick reports the runner unseen for over 60 s');
SELECT is((SELECT array_agg(instance_id || '=' || status ORDER BY instance_id) FROM etl.service_heartbeats
            WHERE instance_id LIKE 'ct-%'),
    ARRAY['ct-alive=running', 'ct-dead=lost', 'ct-stopped=stopped'],
    'it is marked lost; one seen 50 s ago and one that stopped are left as they are');

-- ---------------------------------------------------------------- backfill
SELECT etl_test.make_job('ct_bf');
INSERT INTO etl.schedules (job_id, cron_expr, next_run_at, is_active)
VALUES (etl_test.job('ct_bf'), '0 * * * *', now() + interval '1 day', true);
SELECT is((SELECT array_agg(action ORDER BY logical_date) FROM etl.backfill('ct_bf', '2024-01-01 00:00Z', '2024-01-01 02:00Z', dry_run => true)),
    ARRAY['would create', 'would create', 'would create'], 'backfill dry run lists would create per fire time');
SELECT is((SELECT count(*)::int FROM etl.runs WHERE job_id = etl_test.job('ct_bf')), 0, 'the dry run created nothing');
SELECT is((SELECT array_agg(action ORDER BY logical_date) FROM etl.backfill('ct_bf', '2024-01-01 00:00Z', '2024-01-01 02:00Z', reason => 'gap')),
    ARRAY['created', 'created', 'created'], 'backfill creates one pipeline run per fire time');
SELECT is((SELECT array_agg(action ORDER BY logical_date) FROM etl.backfill('ct_bf', '2024-01-01 00:00Z', '2024-01-01 02:00Z', reason => 'gap')),
    ARRAY['exists: queued', 'exists: queued', 'exists: queued'], 'a second backfill creates nothing and says exists');
SELECT is((SELECT count(*)::int FROM etl.runs WHERE job_id = etl_test.job('ct_bf')), 3, 'three runs in all');
SELECT throws_ok($$SELECT * FROM etl.backfill('ct_a', now(), now())$$, '22023', 'job "ct_a" has no active schedule to backfill',
    'backfill of a job without an active schedule is refused');

SELECT * FROM finish();
ROLLBACK;
