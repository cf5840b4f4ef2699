-- pgTAP tests for schedules and what the tick does with them: the trigger schedule_on_its_cron
-- (deploy/catalog.sql: bad cron or zone refused when written, next_run_at always a fire time), the
-- tick of 180_tick.sql (a schedule that fails is isolated, misfire policies past 1,000 missed fire
-- times, what it counts, settings stored as 30.0), the reaper and a requested cancel, backfill's
-- guards, and etl._cron_last_fire of 110_cron.sql.

BEGIN;
SELECT plan(59);

-- ---------------------------------------------------------------- helpers
\ir lib/engine_helpers.psql
SET LOCAL TimeZone = 'UTC';  -- error messages below print timestamps

-- The tick, with an error turned into {"error": ...} so that one failure does not end the file.
CREATE FUNCTION etl_test.tick() RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN etl.tick();
EXCEPTION WHEN others THEN
  RETURN jsonb_build_object('error', SQLERRM);
END $$;
CREATE FUNCTION etl_test.min0() RETURNS timestamptz LANGUAGE sql AS $$
  SELECT date_trunc('minute', now())
$$;
CREATE FUNCTION etl_test.sched(p_slug text) RETURNS bigint LANGUAGE sql AS $$
  SELECT schedule_id FROM etl.schedules WHERE job_id = etl_test.job(p_slug) ORDER BY schedule_id DESC LIMIT 1
$$;
CREATE FUNCTION etl_test.fires(p_slug text) RETURNS timestamptz[] LANGUAGE sql AS $$
  SELECT array_agg(p.logical_date ORDER BY p.logical_date) FROM etl.pipeline_runs p
   WHERE p.schedule_id = etl_test.sched(p_slug) AND p.trigger_type = 'schedule'
$$;
UPDATE etl.schedules SET is_active = false;

-- ---------------------------------------------------------------- a bad schedule is refused when written
SELECT etl_test.make_job('sc_bad');
-- (Inactive rows: the trigger checks every row, and a row let in must not collide with the next.)
SELECT throws_ok($$INSERT INTO etl.schedules (job_id, cron_expr, timezone, next_run_at, is_active)
                   VALUES (etl_test.job('sc_bad'), '61 * * * *', 'UTC', now() - interval '1 minute', false)$$,
    '22023', 'schedule of job "sc_bad", field cron_expr: invalid cron expression "61 * * * *": minute field "61" is out of range 0-59',
    'a schedule with an invalid cron expression is refused on insert, naming the job and the field');
SELECT throws_ok($$INSERT INTO etl.schedules (job_id, cron_expr, timezone, next_run_at, is_active)
                   VALUES (etl_test.job('sc_bad'), '0 * * * *', 'Mars/Olympus', now() - interval '1 minute', false)$$,
    '22023', 'schedule of job "sc_bad", field timezone: invalid time zone "Mars/Olympus": not found in pg_timezone_names',
    'a schedule with an unknown time zone is refused on insert, naming the job and the field');
SELECT throws_ok($$INSERT INTO etl.schedules (job_id, cron_expr, is_active) VALUES (etl_test.job('sc_bad'), '0 0 30 2 *', false)$$,
    '22023', 'schedule of job "sc_bad", field cron_expr: invalid cron expression "0 0 30 2 *": it never fires (no match within 8 years)',
    'a cron expression that never fires (February 30) is refused');
SELECT throws_ok($$INSERT INTO etl.schedules (job_id, cron_expr, next_run_at, is_active)
                   VALUES (etl_test.job('sc_bad'), '0 * * * *', '-infinity', false)$$,
    '22023', 'schedule of job "sc_bad", field next_run_at: -infinity is not a fire time (NULL: the next one after now; infinity: never)',
    'next_run_at -infinity is refused');
INSERT INTO etl.schedules (job_id, cron_expr) VALUES (etl_test.job('sc_bad'), '0 * * * *');
SELECT throws_ok($$UPDATE etl.schedules SET cron_expr = '* * * * * *' WHERE schedule_id = etl_test.sched('sc_bad')$$,
    '22023', 'schedule of job "sc_bad", field cron_expr: invalid cron expression "* * * * * *": expected 5 fields, got 6',
    'changing a schedule to an invalid cron expression is refused');
SELECT throws_ok($$UPDATE etl.schedules SET timezone = 'Mars/Olympus' WHERE schedule_id = etl_test.sched('sc_bad')$$,
    '22023', 'schedule of job "sc_bad", field timezone: invalid time zone "Mars/Olympus": not found in pg_timezone_names',
    'changing a schedule to an unknown time zone is refused');
UPDATE etl.schedules SET is_active = false WHERE schedule_id = etl_test.sched('sc_bad');

-- ---------------------------------------------------------------- next_run_at is a fire time
SELECT etl_test.make_job('sc_null');
INSERT INTO etl.schedules (job_id, cron_expr, timezone) VALUES (etl_test.job('sc_null'), '0 6 * * *', 'Europe/Berlin');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_null')),
    etl.cron_next('0 6 * * *', 'Europe/Berlin', now()),
    'a schedule inserted without next_run_at gets the next fire time after now');
SELECT etl_test.make_job('sc_snap');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('sc_snap'), '0 6 * * *', 'catch_up', 'queue_all', now() - interval '10 seconds');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_snap')),
    etl.cron_next('0 6 * * *', 'UTC', now() - interval '10 seconds' - interval '1 microsecond'),
    'a next_run_at off the cron moves to the first fire time at or after it');
SELECT etl_test.tick();
SELECT is((SELECT count(*)::int FROM unnest(coalesce(etl_test.fires('sc_snap'), '{}')) f
            WHERE (f AT TIME ZONE 'UTC')::time <> '06:00'), 0,
    'a schedule written 10 seconds before now does not fire off its cron');
UPDATE etl.schedules SET next_run_at = '2030-01-01 07:30Z' WHERE schedule_id = etl_test.sched('sc_snap');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_snap')), '2030-01-02 06:00Z'::timestamptz,
    'an update of next_run_at alone is moved onto the cron too');
UPDATE etl.schedules SET cron_expr = '30 7 * * *' WHERE schedule_id = etl_test.sched('sc_snap');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_snap')), '2030-01-02 07:30Z'::timestamptz,
    'a changed cron_expr moves next_run_at to its first fire time at or after the old one');
UPDATE etl.schedules SET timezone = 'Europe/Berlin' WHERE schedule_id = etl_test.sched('sc_snap');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_snap')), '2030-01-03 06:30Z'::timestamptz,
    'a changed timezone does the same (07:30 Berlin is 06:30 UTC in winter)');
UPDATE etl.schedules SET next_run_at = 'infinity' WHERE schedule_id = etl_test.sched('sc_snap');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_snap')), 'infinity'::timestamptz,
    'next_run_at infinity (never) is kept');
-- What etl apply writes: already a fire time, kept as it is.
SELECT etl_test.make_job('sc_apply');
INSERT INTO etl.schedules (job_id, cron_expr, timezone, next_run_at)
VALUES (etl_test.job('sc_apply'), '15 */2 * * *', 'America/New_York', etl.cron_next('15 */2 * * *', 'America/New_York'));
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_apply')),
    etl.cron_next('15 */2 * * *', 'America/New_York'), 'a next_run_at computed by etl.cron_next (etl apply) is kept');
UPDATE etl.schedules SET is_active = false WHERE job_id IN (etl_test.job('sc_null'), etl_test.job('sc_snap'), etl_test.job('sc_apply'));

-- ---------------------------------------------------------------- a failing schedule is isolated
SELECT etl_test.make_job('sc_iso_cron'); SELECT etl_test.make_job('sc_iso_tz'); SELECT etl_test.make_job('sc_iso_ok');
-- Rows the trigger would refuse (written before it existed): triggers off for the insert only.
SET LOCAL session_replication_role = replica;
INSERT INTO etl.schedules (job_id, cron_expr, timezone, next_run_at) VALUES
  (etl_test.job('sc_iso_cron'), '61 * * * *', 'UTC', now() - interval '1 minute'),
  (etl_test.job('sc_iso_tz'), '0 * * * *', 'Mars/Olympus', now() - interval '2 minutes');
RESET session_replication_role;
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('sc_iso_ok'), '* * * * *', 'latest', 'queue_all', etl_test.min0());
-- An expired lease and an overdue upstream wait that the same tick must still handle.
SELECT etl_test.park();
SELECT etl_test.make_job('sc_lease');
CREATE TEMP TABLE sc_l AS SELECT etl.run_job('sc_lease') AS r, NULL::bigint AS tok;
UPDATE sc_l SET tok = etl_test.claim_run(r);
UPDATE etl.job_locks SET expires_at = now() - interval '1 second' WHERE run_id = (SELECT r FROM sc_l);
SELECT etl_test.make_job('sc_wp'); SELECT etl_test.make_job('sc_wc'); SELECT etl_test.dep('sc_wp', 'sc_wc');
CREATE TEMP TABLE sc_w AS SELECT etl.run_job('sc_wc', reason => 'alone') AS r;
UPDATE etl.runs SET wait_until = now() - interval '1 second' WHERE run_id = (SELECT r FROM sc_w);
-- A setting etl.set_setting accepted as 30.0.
UPDATE etl.settings SET value = '30.0' WHERE name = 'log_retention_days';
INSERT INTO etl.run_logs (run_id, level, message, ts) VALUES ((SELECT r FROM sc_l), 'INFO', 'old', now() - interval '31 days');

CREATE TEMP TABLE sc_t AS SELECT etl_test.tick() AS t;
SELECT is((SELECT t ->> 'error' FROM sc_t), NULL, 'the tick does not fail for two bad schedule rows and a setting of 30.0');
SELECT is((SELECT t -> 'schedules_failed' FROM sc_t),
    jsonb_build_array(
      jsonb_build_object('schedule_id', etl_test.sched('sc_iso_tz'), 'job', 'sc_iso_tz', 'sqlstate', '22023',
                         'error', 'invalid time zone "Mars/Olympus": not found in pg_timezone_names'),
      jsonb_build_object('schedule_id', etl_test.sched('sc_iso_cron'), 'job', 'sc_iso_cron', 'sqlstate', '22023',
                         'error', 'invalid cron expression "61 * * * *": minute field "61" is out of range 0-59')),
    'the tick reports each schedule it could not fire: id, job, SQLSTATE and error');
SELECT is(etl_test.fires('sc_iso_ok'), ARRAY[etl_test.min0()], 'the good schedule fired in the same tick');
SELECT is((SELECT (t ->> 'pipeline_runs_created')::int FROM sc_t), 1, 'and is counted as created');
SELECT is((SELECT (t ->> 'leases_reaped')::int FROM sc_t), 1, 'the tick still reaps expired leases');
SELECT is(etl_test.status((SELECT r FROM sc_l)), 'queued', 'the run whose lease expired is queued again');
SELECT is((SELECT (t ->> 'waits_expired')::int FROM sc_t), 1, 'the tick still expires overdue upstream waits');
SELECT is(etl_test.status((SELECT r FROM sc_w)), 'skipped', 'the waiting run is skipped');
SELECT is((SELECT count(*)::int FROM etl.run_logs WHERE run_id = (SELECT r FROM sc_l) AND message = 'old'), 0,
    'logs older than log_retention_days (stored as 30.0) are purged');
SELECT is((SELECT array_agg(next_run_at ORDER BY schedule_id) FROM etl.schedules
            WHERE job_id IN (etl_test.job('sc_iso_cron'), etl_test.job('sc_iso_tz'))),
    ARRAY[now() - interval '1 minute', now() - interval '2 minutes'],
    'a failed schedule is left as it was (due; it is reported again until fixed)');
DELETE FROM etl.schedules WHERE job_id IN (etl_test.job('sc_iso_cron'), etl_test.job('sc_iso_tz'));
UPDATE etl.schedules SET is_active = false WHERE job_id = etl_test.job('sc_iso_ok');
UPDATE etl.settings SET value = '30' WHERE name = 'log_retention_days';

-- ---------------------------------------------------------------- misfire past 1,000 missed fire times
SELECT etl_test.make_job('sc_latest');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('sc_latest'), '* * * * *', 'latest', 'queue_all', etl_test.min0() - interval '1500 minutes');
CREATE TEMP TABLE sc_lt AS SELECT etl_test.tick() AS t;
SELECT is(etl_test.fires('sc_latest'), ARRAY[etl_test.min0()],
    'misfire latest with 1,500 missed fire times fires exactly the latest one');
SELECT is((SELECT (next_run_at, last_fire_at)::text FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_latest')),
    (etl_test.min0() + interval '1 minute', etl_test.min0())::text, 'and moves next_run_at past now');
SELECT etl_test.make_job('sc_latest_tz');
INSERT INTO etl.schedules (job_id, cron_expr, timezone, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('sc_latest_tz'), '30 2 * * *', 'Europe/Berlin', 'latest', 'queue_all', now() - interval '5 years');
SELECT etl_test.tick();
SELECT is(etl_test.fires('sc_latest_tz'),
    ARRAY[(SELECT max(f) FROM etl.cron_next_n('30 2 * * *', 'Europe/Berlin', now() - interval '3 days', 5) f WHERE f <= now())],
    'misfire latest of a daily schedule 5 years behind fires its last 02:30 Berlin');
UPDATE etl.schedules SET is_active = false WHERE job_id IN (etl_test.job('sc_latest'), etl_test.job('sc_latest_tz'));

SELECT etl_test.make_job('sc_catch');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('sc_catch'), '* * * * *', 'catch_up', 'skip', etl_test.min0() - interval '1500 minutes');
CREATE TEMP TABLE sc_c1 AS SELECT etl_test.tick() AS t;
SELECT is((SELECT (count(*), min(p.logical_date) = etl_test.min0() - interval '1500 minutes',
                   max(p.logical_date) = etl_test.min0() - interval '501 minutes')::text
             FROM etl.pipeline_runs p WHERE p.schedule_id = etl_test.sched('sc_catch')),
    '(1000,t,t)', 'misfire catch_up handles the first 1,000 missed fire times in one tick');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_catch')), etl_test.min0() - interval '500 minutes',
    'next_run_at is left at the first fire time not yet handled, still due');
SELECT is((SELECT (t ->> 'pipeline_runs_created', t ->> 'fires_skipped')::text FROM sc_c1), '(1,999)',
    'pipeline_runs_created counts the one pipeline run; the 999 fires skipped by the overlap policy are counted apart');
CREATE TEMP TABLE sc_c2 AS SELECT etl_test.tick() AS t;
SELECT is((SELECT (count(*), count(DISTINCT p.logical_date), max(p.logical_date) = etl_test.min0())::text
             FROM etl.pipeline_runs p WHERE p.schedule_id = etl_test.sched('sc_catch')),
    '(1501,1501,t)', 'the next tick goes on with the other 501, none twice');
SELECT is((SELECT next_run_at FROM etl.schedules WHERE schedule_id = etl_test.sched('sc_catch')), etl_test.min0() + interval '1 minute',
    'then next_run_at is the next fire time after now');
SELECT is((SELECT (t ->> 'pipeline_runs_created', t ->> 'fires_skipped')::text FROM sc_c2), '(0,501)',
    'the second tick created no pipeline run (the first is still queued) and skipped 501 fires');
UPDATE etl.schedules SET is_active = false WHERE job_id = etl_test.job('sc_catch');

-- ---------------------------------------------------------------- what the tick counts
SELECT etl_test.make_job('sc_ov');
INSERT INTO etl.schedules (job_id, cron_expr, misfire_policy, overlap_policy, next_run_at)
VALUES (etl_test.job('sc_ov'), '0 * * * *', 'latest', 'skip', date_trunc('hour', now()));
INSERT INTO etl.pipeline_runs (trigger_type, schedule_id, logical_date, status, started_at)
VALUES ('schedule', etl_test.sched('sc_ov'), date_trunc('hour', now()) - interval '5 hours', 'running', now());
CREATE TEMP TABLE sc_ov AS SELECT etl_test.tick() AS t;
SELECT is((SELECT (t ->> 'pipeline_runs_created')::int FROM sc_ov), 0,
    'a fire skipped by the overlap policy is not counted as a created pipeline run');
SELECT is((SELECT (t ->> 'fires_skipped')::int FROM sc_ov), 1, 'it is counted as a skipped fire');
UPDATE etl.schedules SET is_active = false WHERE job_id = etl_test.job('sc_ov');

-- ---------------------------------------------------------------- the reaper and a requested cancel
SELECT etl_test.park();
SELECT etl_test.make_job('sc_cx'); SELECT etl_test.make_job('sc_cx_child'); SELECT etl_test.dep('sc_cx', 'sc_cx_child');
CREATE TEMP TABLE sc_cx AS SELECT etl_test.run_of(etl.trigger_pipeline(jobs => ARRAY['sc_cx'], downstream => true), 'sc_cx') AS r,
                                 NULL::bigint AS tok;
UPDATE sc_cx SET tok = etl_test.claim_run(r);
SELECT is(etl.cancel((SELECT r FROM sc_cx), 'wrong day'), 'cancel_requested', 'a running run is asked to cancel');
UPDATE etl.job_locks SET expires_at = now() - interval '1 second' WHERE run_id = (SELECT r FROM sc_cx);
CREATE TEMP TABLE sc_cxt AS SELECT etl_test.tick() AS t;
SELECT is((SELECT (t ->> 'leases_reaped')::int FROM sc_cxt), 1, 'the tick reaps the lease of the run whose runner died');
SELECT is(etl_test.status((SELECT r FROM sc_cx)), 'cancelled', 'a run whose cancel was requested ends cancelled, not re-queued');
SELECT is((SELECT array_agg(event_type || ':' || coalesce(to_status, '') ORDER BY event_id) FROM etl.run_events
            WHERE run_id = (SELECT r FROM sc_cx) AND event_id > (SELECT max(event_id) FROM etl.run_events
                                                                  WHERE run_id = (SELECT r FROM sc_cx) AND event_type = 'cancel_requested')),
    ARRAY['lease_expired:running', 'status:cancelled'], 'its events: the lease expired, then running -> cancelled (no retry_scheduled)');
SELECT is((SELECT status FROM etl.run_attempts WHERE attempt_id = (SELECT tok FROM sc_cx)), 'lost', 'its attempt is lost');
SELECT is((SELECT count(*)::int FROM etl.job_locks WHERE run_id = (SELECT r FROM sc_cx))
          + (SELECT count(*)::int FROM etl.run_slots WHERE run_id = (SELECT r FROM sc_cx)), 0,
    'its lock and its slot are given back');
SELECT is(etl_test.status(etl_test.run_of(etl_test.pid((SELECT r FROM sc_cx)), 'sc_cx_child')), 'skipped', 'its descendant is skipped');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.pid((SELECT r FROM sc_cx))), 'cancelled',
    'the pipeline run closes as cancelled');
SELECT throws_ok(format('SELECT etl.finish(%s, %s, ''{"status": "cancelled"}'')', (SELECT r FROM sc_cx), (SELECT tok FROM sc_cx)),
    'ETL01', NULL, 'a late report of the dead runner is refused');

-- ---------------------------------------------------------------- backfill guards
SELECT etl_test.make_job('sc_bf');
INSERT INTO etl.schedules (job_id, cron_expr) VALUES (etl_test.job('sc_bf'), '0 * * * *');
CREATE TEMP TABLE sc_audit AS SELECT count(*) AS n FROM etl.audit_log WHERE action = 'backfill';
SELECT throws_ok($$SELECT * FROM etl.backfill('sc_bf', NULL, '2024-01-01 02:00Z', reason => 'gap')$$, '22023',
    'from_ts must be a finite timestamp, got NULL', 'a NULL from_ts is refused, naming the argument');
SELECT throws_ok($$SELECT * FROM etl.backfill('sc_bf', '2024-01-01 00:00Z', NULL, reason => 'gap')$$, '22023',
    'to_ts must be a finite timestamp, got NULL', 'a NULL to_ts is refused, naming the argument');
SELECT is((SELECT count(*) FROM etl.audit_log WHERE action = 'backfill'), (SELECT n FROM sc_audit),
    'a refused backfill writes no audit row');
SELECT throws_ok($$SELECT * FROM etl.backfill('sc_bf', '2024-01-01 00:00Z', '2024-01-01 02:00Z')$$, '22023',
    'reason is required to backfill a job', 'a backfill without a reason is refused');
SELECT throws_ok($$SELECT * FROM etl.backfill('sc_bf', '2024-01-01 00:00Z', '2024-01-01 02:00Z', reason => '  ')$$, '22023',
    'reason is required to backfill a job', 'a blank reason is refused too');
SELECT is((SELECT count(*)::int FROM etl.backfill('sc_bf', '2024-01-01 00:00Z', '2024-01-01 02:00Z', dry_run => true)), 3,
    'a dry run needs no reason (it writes nothing)');
SELECT throws_ok($$SELECT * FROM etl.backfill('sc_bf', '2020-01-01 00:00Z', '2022-01-01 00:00Z', reason => 'years', dry_run => true)$$,
    '54000', 'backfill of job "sc_bf" from 2020-01-01 00:00:00+00 to 2022-01-01 00:00:00+00: more than 10000 fire times (the cap of one backfill)',
    'a range of more than 10,000 fire times is refused, not cut short');
SELECT is((SELECT array_agg(action ORDER BY logical_date) FROM etl.backfill('sc_bf', '2024-01-01 00:00Z', '2024-01-01 01:00Z', reason => 'gap')),
    ARRAY['created', 'created'], 'a backfill with a reason creates its pipeline runs');
SELECT is((SELECT (reason, details ->> 'created')::text FROM etl.audit_log WHERE action = 'backfill' ORDER BY audit_id DESC LIMIT 1),
    '(gap,2)', 'and is audited with its reason and what it created');
-- The 00:00 run finishes; the 01:00 run is still queued.
SELECT etl_test.succeed((SELECT r.run_id FROM etl.runs r WHERE r.job_id = etl_test.job('sc_bf') AND r.logical_date = '2024-01-01 00:00Z'));
SELECT is((SELECT array_agg(action ORDER BY logical_date)
             FROM etl.backfill('sc_bf', '2024-01-01 00:00Z', '2024-01-01 01:00Z', reprocess => 'all', reason => 'redo')),
    ARRAY['created', 'skipped: queued'], 'reprocess all redoes the finished fire time and skips the one still queued');
SELECT is((SELECT count(DISTINCT pipeline_run_id)::int FROM etl.runs WHERE job_id = etl_test.job('sc_bf') AND logical_date = '2024-01-01 01:00Z'), 1,
    'the queued fire time has still one pipeline run');
SELECT is((SELECT details ->> 'skipped_open' FROM etl.audit_log WHERE action = 'backfill' ORDER BY audit_id DESC LIMIT 1), '1',
    'the audit row says how many fire times were skipped as still open');

-- ---------------------------------------------------------------- etl._cron_last_fire
SELECT is(etl._cron_last_fire('*/7 * * * *', 'UTC', '2026-01-01 00:00Z', '2026-01-01 00:59Z'), '2026-01-01 00:56Z'::timestamptz,
    '_cron_last_fire finds the last fire time of a range');
SELECT is(etl._cron_last_fire('0 6 * * *', 'UTC', '2026-01-01 06:01Z', '2026-01-02 05:59Z'), NULL,
    '_cron_last_fire is NULL when the range holds no fire time');
SELECT is(etl._cron_last_fire('0 6 * * *', 'UTC', '2026-01-01 06:00Z', '2026-01-01 06:00Z'), '2026-01-01 06:00Z'::timestamptz,
    '_cron_last_fire includes both ends of the range');

SELECT * FROM finish();
ROLLBACK;
