-- pgTAP tests for run items: plpgsql/190_items.sql (etl.start_items, etl.finish_item, the item
-- outcome) and the item branch of etl._finish in 160_finish.sql: materialization from a static
-- list, a SQL query or a callable's list, deduplication by param_hash, fencing, per-item cursors,
-- the run outcome derived from the items, retries that redo only the unfinished items, and the
-- metrics of runs and attempts.

BEGIN;
SELECT plan(86);

-- ---------------------------------------------------------------- helpers
\ir lib/engine_helpers.psql

UPDATE etl.schedules SET is_active = false;
SELECT etl.set_setting('parallel_jobs', '20', 'items test');

CREATE FUNCTION etl_test.items_job(p_slug text, p_source jsonb) RETURNS bigint LANGUAGE sql AS $$
  INSERT INTO etl.jobs (slug, name, kind, target, supports_params, items_source)
  VALUES (p_slug, p_slug, 'python', 'm:f', true, p_source) RETURNING job_id
$$;
-- The item of a run by its number.
CREATE FUNCTION etl_test.item(p_run bigint, p_no integer) RETURNS bigint LANGUAGE sql AS $$
  SELECT item_id FROM etl.run_items WHERE run_id = p_run AND item_no = p_no
$$;
-- Reports item p_no of the run under the run's current attempt.
CREATE FUNCTION etl_test.fi(p_run bigint, p_no integer, p_outcome jsonb) RETURNS text LANGUAGE sql AS $$
  SELECT etl.finish_item(p_run, etl_test.token(p_run), etl_test.item(p_run, p_no), p_outcome)
$$;
CREATE FUNCTION etl_test.fin(p_run bigint, p_outcome jsonb) RETURNS text LANGUAGE sql AS $$
  SELECT etl.finish(p_run, etl_test.token(p_run), p_outcome)
$$;
-- Claims exactly this run and returns the whole claim row as JSON (to read cursor and the rest).
CREATE FUNCTION etl_test.claim_row(p_run bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_old int; v_row jsonb;
BEGIN
  SELECT priority INTO v_old FROM etl.runs WHERE run_id = p_run;
  UPDATE etl.runs SET priority = 2000000000 WHERE run_id = p_run;
  SELECT to_jsonb(c) INTO v_row FROM etl.claim('w', 1) c;
  UPDATE etl.runs SET priority = v_old WHERE run_id = p_run;
  IF (v_row ->> 'run_id')::bigint IS DISTINCT FROM p_run THEN
    RAISE EXCEPTION 'etl_test.claim_row: claimed % instead of %', v_row ->> 'run_id', p_run;
  END IF;
  RETURN v_row;
END $$;
-- Makes a queued run (waiting for its backoff) claimable now and claims it; returns the token.
CREATE FUNCTION etl_test.reclaim(p_run bigint) RETURNS bigint LANGUAGE sql AS $$
  UPDATE etl.runs SET next_attempt_at = now() WHERE run_id = p_run AND status = 'queued';
  SELECT etl_test.claim_run(p_run);
$$;
CREATE FUNCTION etl_test.attempt_tok(p_run bigint, p_no integer) RETURNS bigint LANGUAGE sql AS $$
  SELECT attempt_id FROM etl.run_attempts WHERE run_id = p_run AND attempt_no = p_no
$$;

-- ---------------------------------------------------------------- static source: materialization
-- Run parameters {"env": "prod"}; the items put their own on top. "us" comes twice, and the last
-- item spells out env = prod, so after the merge it equals "eu": 5 given, 3 distinct items.
SELECT etl_test.items_job('it_static', '{"static": [{"region": "us"}, {"region": "eu"}, {"region": "us"},
                                                    {"region": "ap", "env": "dev"}, {"env": "prod", "region": "eu"}]}');
INSERT INTO etl.job_parameters (job_id, name) VALUES (etl_test.job('it_static'), 'env');
CREATE TEMP TABLE it_a AS SELECT etl.run_job('it_static', '{"env": "prod"}') AS r, NULL::bigint AS tok;
UPDATE it_a SET tok = etl_test.claim_run(r);

SELECT throws_ok(format('SELECT * FROM etl.start_items(%s, %s, items => ''[{"region": "xx"}]'')', (SELECT r FROM it_a), (SELECT tok FROM it_a)),
    '22023', 'job it_static takes its items from its static source; items must not be passed',
    'passing items to a job with a static source is refused with 22023');
SELECT is((SELECT count(*)::int FROM etl.run_items WHERE run_id = (SELECT r FROM it_a)), 0,
    'the refused call materialized nothing');

CREATE TEMP TABLE it_a1 AS SELECT * FROM etl.start_items((SELECT r FROM it_a), (SELECT tok FROM it_a));
SELECT is((SELECT array_agg(params ORDER BY item_no) FROM it_a1),
    ARRAY['{"env": "prod", "region": "us"}', '{"env": "prod", "region": "eu"}', '{"env": "dev", "region": "ap"}']::jsonb[],
    'start_items returns the distinct items: run params || item object, in first-occurrence order');
SELECT is((SELECT array_agg(item_no ORDER BY item_no) FROM it_a1), ARRAY[1, 2, 3], 'item_no runs 1..n');
SELECT is((SELECT array_agg(param_hash ORDER BY item_no) FROM it_a1),
    ARRAY[etl.param_fingerprint('{"env": "prod", "region": "us"}'), etl.param_fingerprint('{"env": "prod", "region": "eu"}'),
          etl.param_fingerprint('{"env": "dev", "region": "ap"}')],
    'param_hash is etl.param_fingerprint of the item''s parameters');
SELECT is((SELECT array_agg(duplicate_count ORDER BY item_no) FROM etl.run_items WHERE run_id = (SELECT r FROM it_a)),
    ARRAY[1, 1, 0], 'a repeated parameter set is one item with duplicate_count 1 (also when equal only after the merge)');
SELECT is((SELECT (items_total, items_duplicate)::text FROM etl.runs WHERE run_id = (SELECT r FROM it_a)), '(3,2)',
    'runs.items_total counts the distinct items and items_duplicate the repeats');
SELECT is((SELECT array_agg((attempt_count, cursor IS NULL)::text ORDER BY item_no) FROM it_a1),
    ARRAY['(1,t)', '(1,t)', '(1,t)'], 'every item is handed out with attempt_count 1 and no cursor (not incremental)');
SELECT is((SELECT array_agg(DISTINCT (status, attempt_id = (SELECT tok FROM it_a))::text) FROM etl.run_items WHERE run_id = (SELECT r FROM it_a)),
    ARRAY['(running,t)'], 'the handed-out items are running under the attempt''s token');

-- all items succeed: the engine derives the run's outcome and metrics from them
SELECT is(etl_test.fi((SELECT r FROM it_a), 1, '{"status": "success", "records_read": 10, "records_written": 1, "page_count": 1, "metrics": {"calls": 2}}'),
    'success', 'finish_item returns the item''s status');
SELECT etl_test.fi((SELECT r FROM it_a), 2, '{"status": "success", "records_read": 20, "records_written": 2, "page_count": 2, "metrics": {"calls": 3}}');
SELECT etl_test.fi((SELECT r FROM it_a), 3, '{"status": "success", "records_read": 30, "records_written": 3, "page_count": 3, "metrics": {"calls": 4}}');
SELECT throws_ok(format('SELECT etl.finish_item(%s, %s, %s, ''{"status": "success"}'')', (SELECT r FROM it_a), (SELECT tok FROM it_a),
                        etl_test.item((SELECT r FROM it_a), 1)),
    'ETL01', format('stale_token: item %s is success under attempt %s, not running under %s',
                    etl_test.item((SELECT r FROM it_a), 1), (SELECT tok FROM it_a), (SELECT tok FROM it_a)),
    'reporting an item a second time is refused with ETL01');
SELECT is(etl_test.fin((SELECT r FROM it_a), '{"status": "success", "records_read": 999, "records_written": 999}'), 'success',
    'finish success with every item succeeded: the run succeeds');
SELECT is((SELECT (records_read, records_written, page_count, items_total, items_succeeded, items_failed)::text
             FROM etl.runs WHERE run_id = (SELECT r FROM it_a)),
    '(60,6,6,3,3,0)', 'the run''s records_read, records_written, page_count are the items'' sums, not the runner''s numbers');
SELECT is((SELECT metrics FROM etl.runs WHERE run_id = (SELECT r FROM it_a)), '{"calls": 9}'::jsonb,
    'numeric metrics of the items are summed into the run');
SELECT is((SELECT (status, records_read)::text FROM etl.run_attempts WHERE attempt_id = (SELECT tok FROM it_a)), '(success,60)',
    'the attempt records the sum over the items it finished');
SELECT throws_ok(format('SELECT etl.finish_item(%s, %s, %s, ''{"status": "success"}'')', (SELECT r FROM it_a), (SELECT tok FROM it_a),
                        etl_test.item((SELECT r FROM it_a), 2)),
    'ETL01', format('stale_token: attempt %s of run %s is not running', (SELECT tok FROM it_a), (SELECT r FROM it_a)),
    'finish_item with the token of an attempt that is no longer running is refused with ETL01');

-- ---------------------------------------------------------------- sql source
SELECT etl_test.items_job('it_sql', jsonb_build_object('sql',
    'select * from (values (''eu'', 1), (''us'', 2), (''eu'', 1)) v(region, shard) order by shard'));
CREATE TEMP TABLE it_b AS SELECT etl.run_job('it_sql') AS r, NULL::bigint AS tok;
UPDATE it_b SET tok = etl_test.claim_run(r);
SELECT throws_ok(format('SELECT * FROM etl.start_items(%s, %s)', (SELECT r FROM it_b), (SELECT tok FROM it_b)), '22023',
    'job it_sql takes its items from its items.sql query, which the runner runs under its own role: pass its rows as items',
    'a sql source is not run by the engine (it would run as the function''s owner): the runner passes its rows');
SELECT is((SELECT array_agg(params ORDER BY item_no) FROM etl.start_items((SELECT r FROM it_b), (SELECT tok FROM it_b),
             '[{"region": "eu", "shard": 1}, {"region": "us", "shard": 2}, {"region": "eu", "shard": 1}]')),
    ARRAY['{"region": "eu", "shard": 1}', '{"region": "us", "shard": 2}']::jsonb[],
    'a sql source: each row of the query becomes an item''s parameters (the repeated row is one item)');
SELECT is((SELECT (items_total, items_duplicate)::text FROM etl.runs WHERE run_id = (SELECT r FROM it_b)), '(2,1)',
    'the repeated row of the query is counted as a duplicate');
SELECT throws_ok(format('SELECT etl.finish_item(%s, %s, %s, ''{"status": "success"}'')', (SELECT r FROM it_b), (SELECT tok FROM it_b),
                        etl_test.item((SELECT r FROM it_a), 1)),
    '22023', format('item %s is not an item of run %s', etl_test.item((SELECT r FROM it_a), 1), (SELECT r FROM it_b)),
    'finish_item with an item of another run is refused with 22023');
SELECT etl_test.fi((SELECT r FROM it_b), 1, '{"status": "success"}');
SELECT etl_test.fi((SELECT r FROM it_b), 2, '{"status": "success"}');
SELECT is(etl_test.fin((SELECT r FROM it_b), '{"status": "success"}'), 'success', 'the sql-sourced run succeeds');

-- ---------------------------------------------------------------- callable source
SELECT etl_test.items_job('it_call', '{"callable": "mod:list_days"}');
CREATE TEMP TABLE it_c AS SELECT etl.run_job('it_call') AS r, NULL::bigint AS tok;
UPDATE it_c SET tok = etl_test.claim_run(r);
SELECT throws_ok(format('SELECT * FROM etl.start_items(%s, %s)', (SELECT r FROM it_c), (SELECT tok FROM it_c)),
    '22023', 'job it_call takes its items from the callable mod:list_days: pass the list it returned as items',
    'a callable source without items is refused with 22023');
SELECT throws_ok(format('SELECT * FROM etl.start_items(%s, %s, items => ''[{"day": "2024-01-01"}, 5]'')', (SELECT r FROM it_c), (SELECT tok FROM it_c)),
    '22023', 'items of job it_call: every item must be a JSON object of parameters, got 5',
    'an item that is not a JSON object is refused with 22023 naming the job');
SELECT is((SELECT array_agg(params ORDER BY item_no)
             FROM etl.start_items((SELECT r FROM it_c), (SELECT tok FROM it_c), items => '[{"day": "2024-01-02"}, {"day": "2024-01-01"}]')),
    ARRAY['{"day": "2024-01-02"}', '{"day": "2024-01-01"}']::jsonb[], 'a callable source takes the items passed by the runner, in order');
SELECT etl_test.fi((SELECT r FROM it_c), 1, '{"status": "success"}');
SELECT etl_test.fi((SELECT r FROM it_c), 2, '{"status": "success"}');
SELECT etl_test.fin((SELECT r FROM it_c), '{"status": "success"}');

SELECT etl_test.items_job('it_bad', '{"static": [{"a": 1}, "oops"]}');
CREATE TEMP TABLE it_bad AS SELECT etl.run_job('it_bad') AS r, NULL::bigint AS tok;
UPDATE it_bad SET tok = etl_test.claim_run(r);
SELECT throws_ok(format('SELECT * FROM etl.start_items(%s, %s)', (SELECT r FROM it_bad), (SELECT tok FROM it_bad)),
    '22023', 'items of job it_bad: every item must be a JSON object of parameters, got "oops"',
    'a static list with a non-object item is refused with 22023 naming the job');
SELECT etl_test.fin((SELECT r FROM it_bad), '{"status": "failed", "error_category": "DATA"}');

-- ---------------------------------------------------------------- a transient item failure: only that item is retried
SELECT etl_test.items_job('it_retry', '{"static": [{"k": 1}, {"k": 2}]}');
CREATE TEMP TABLE it_d AS SELECT etl.run_job('it_retry') AS r, NULL::bigint AS tok1, NULL::bigint AS tok2;
UPDATE it_d SET tok1 = etl_test.claim_run(r);
SELECT is((SELECT count(*)::int FROM etl.start_items((SELECT r FROM it_d), (SELECT tok1 FROM it_d))), 2, 'attempt 1 gets both items');
SELECT etl_test.fi((SELECT r FROM it_d), 1, '{"status": "success", "records_read": 10}');
SELECT is(etl_test.fi((SELECT r FROM it_d), 2, '{"status": "failed", "error_category": "API", "http_status": 503, "message": "busy", "records_read": 5}'),
    'failed', 'item 2 fails with a 503');
SELECT is((SELECT (status, is_transient, error_category)::text FROM etl.run_items WHERE item_id = etl_test.item((SELECT r FROM it_d), 2)),
    '(failed,t,API)', 'the item failure is classified transient');
SELECT is(etl_test.fin((SELECT r FROM it_d), '{"status": "success"}'), 'queued',
    'finish success with a transiently failed item and attempts left returns queued');
SELECT is((SELECT (status, error_category, error_type, is_transient, items_succeeded, items_failed)::text
             FROM etl.runs WHERE run_id = (SELECT r FROM it_d)),
    '(queued,API,item_failed,t,1,1)', 'the run is queued again with error_type item_failed and the item counts');
SELECT is((SELECT error_message FROM etl.runs WHERE run_id = (SELECT r FROM it_d)), '1 of 2 items failed (item 2: busy)',
    'the message names the failed item');
SELECT is((SELECT (status, is_transient, records_read)::text FROM etl.run_attempts WHERE attempt_id = (SELECT tok1 FROM it_d)),
    '(failed,t,15)', 'attempt 1 failed transiently and records the sum over the two items it finished');
-- Items are fixed by the first attempt: a changed items source is not read again.
UPDATE etl.jobs SET items_source = '{"static": [{"k": 1}, {"k": 2}, {"k": 3}]}' WHERE slug = 'it_retry';
UPDATE it_d SET tok2 = etl_test.reclaim(r);
CREATE TEMP TABLE it_d2 AS SELECT * FROM etl.start_items((SELECT r FROM it_d), (SELECT tok2 FROM it_d));
SELECT is((SELECT array_agg((item_no, attempt_count)::text) FROM it_d2), ARRAY['(2,2)'],
    'attempt 2 gets only the item that did not succeed, with attempt_count 2');
SELECT is((SELECT (status, attempt_count, attempt_id = (SELECT tok1 FROM it_d))::text FROM etl.run_items
            WHERE item_id = etl_test.item((SELECT r FROM it_d), 1)),
    '(success,1,t)', 'the succeeded item is not handed out again: attempt_count stays 1');
SELECT is((SELECT (count(*), max(items_total))::text FROM etl.run_items i JOIN etl.runs r USING (run_id) WHERE i.run_id = (SELECT r FROM it_d)),
    '(2,2)', 'the items were materialized once: a later change of the source adds nothing');
SELECT throws_ok(format('SELECT etl.finish_item(%s, %s, %s, ''{"status": "success"}'')', (SELECT r FROM it_d), (SELECT tok1 FROM it_d),
                        etl_test.item((SELECT r FROM it_d), 2)),
    'ETL01', format('stale_token: attempt %s of run %s is not running', (SELECT tok1 FROM it_d), (SELECT r FROM it_d)),
    'finish_item with an old attempt''s token is refused with ETL01');
SELECT throws_ok(format('SELECT etl.finish_item(%s, %s, %s, ''{"status": "success"}'')', (SELECT r FROM it_d), (SELECT tok2 FROM it_d),
                        etl_test.item((SELECT r FROM it_d), 1)),
    'ETL01', format('stale_token: item %s is success under attempt %s, not running under %s',
                    etl_test.item((SELECT r FROM it_d), 1), (SELECT tok1 FROM it_d), (SELECT tok2 FROM it_d)),
    'the current attempt cannot report an item it does not hold');
SELECT etl_test.fi((SELECT r FROM it_d), 2, '{"status": "success", "records_read": 7}');
SELECT is(etl_test.fin((SELECT r FROM it_d), '{"status": "success"}'), 'success', 'attempt 2 finishes the run with success');
SELECT is((SELECT (records_read, items_total, items_succeeded, items_failed, error_type IS NULL)::text FROM etl.runs WHERE run_id = (SELECT r FROM it_d)),
    '(17,2,2,0,t)', 'the run sums the items'' final records (10 + 7), all succeeded, no error');
SELECT is((SELECT records_read FROM etl.run_attempts WHERE attempt_id = (SELECT tok2 FROM it_d)), 7::bigint,
    'attempt 2 records only what it finished');

-- ---------------------------------------------------------------- permanent item failures
SELECT etl_test.items_job('it_perm', '{"static": [{"k": 1}, {"k": 2}, {"k": 3}]}');
CREATE TEMP TABLE it_h AS SELECT etl.run_job('it_perm') AS r;
SELECT etl.start_items((SELECT r FROM it_h), etl_test.claim_run((SELECT r FROM it_h)));
SELECT etl_test.fi((SELECT r FROM it_h), 1, '{"status": "success", "records_read": 1}');
SELECT etl_test.fi((SELECT r FROM it_h), 2, '{"status": "failed", "error_category": "DATA", "message": "bad row"}');
SELECT etl_test.fi((SELECT r FROM it_h), 3, '{"status": "success", "records_read": 3}');
SELECT is(etl_test.fin((SELECT r FROM it_h), '{"status": "success"}'), 'failed',
    'an item failed permanently (DATA): the run fails at once although the runner said success');
SELECT is((SELECT (status, error_category, error_type, is_transient, items_succeeded, items_failed, records_read, attempt_count)::text
             FROM etl.runs WHERE run_id = (SELECT r FROM it_h)),
    '(failed,DATA,item_failed,f,2,1,4,1)', 'the failed run carries DATA, item_failed, the counts and the sums');
SELECT is((SELECT error_message FROM etl.runs WHERE run_id = (SELECT r FROM it_h)), '1 of 3 items failed (item 2: bad row)',
    'its message names the failed item');

SELECT etl_test.items_job('it_part', '{"static": [{"k": 1}, {"k": 2}]}');
UPDATE etl.jobs SET allow_partial_success = true WHERE slug = 'it_part';
CREATE TEMP TABLE it_i AS SELECT etl.run_job('it_part') AS r;
SELECT etl.start_items((SELECT r FROM it_i), etl_test.claim_run((SELECT r FROM it_i)));
SELECT etl_test.fi((SELECT r FROM it_i), 1, '{"status": "success"}');
SELECT etl_test.fi((SELECT r FROM it_i), 2, '{"status": "failed", "error_category": "DATA", "message": "bad row"}');
SELECT is(etl_test.fin((SELECT r FROM it_i), '{"status": "success"}'), 'partial_success',
    'with allow_partial_success and one item succeeded, a permanent item failure makes the run partial_success');
SELECT is((SELECT (status, error_category, error_type, items_succeeded, items_failed)::text FROM etl.runs WHERE run_id = (SELECT r FROM it_i)),
    '(partial_success,DATA,item_failed,1,1)', 'the partial run records error_type item_failed');
SELECT is(etl.retry((SELECT r FROM it_i), 'row 2 fixed'), 1, 'a partial success is retried for its items that did not succeed');
SELECT is((SELECT array_agg(status ORDER BY item_no) FROM etl.run_items WHERE run_id = (SELECT r FROM it_i)),
    ARRAY['success', 'pending'], 'the item that succeeded is kept, the failed one is pending again');
SELECT is((SELECT count(*)::int FROM etl.start_items((SELECT r FROM it_i), etl_test.claim_run((SELECT r FROM it_i)))), 1,
    'the retry runs the failed item only');
SELECT etl_test.fi((SELECT r FROM it_i), 2, '{"status": "success"}');
SELECT is(etl_test.fin((SELECT r FROM it_i), '{"status": "success"}'), 'success', 'and the run now succeeds');
SELECT throws_like(format('SELECT etl.retry(%s, ''again'')', (SELECT r FROM it_i)),
    '%is success: only failed, cancelled or skipped runs can be retried (or a partial success, for its items that did not succeed)',
    'a success is not retried');
CREATE TEMP TABLE it_j AS SELECT etl.run_job('it_part') AS r;
SELECT etl.start_items((SELECT r FROM it_j), etl_test.claim_run((SELECT r FROM it_j)));
SELECT etl_test.fi((SELECT r FROM it_j), 1, '{"status": "failed", "error_category": "DATA"}');
SELECT etl_test.fi((SELECT r FROM it_j), 2, '{"status": "failed", "error_category": "DATA"}');
SELECT is(etl_test.fin((SELECT r FROM it_j), '{"status": "success"}'), 'failed',
    'with allow_partial_success but no item succeeded, the run fails');

-- ---------------------------------------------------------------- items left unreported
SELECT etl_test.items_job('it_unf', '{"static": [{"k": 1}, {"k": 2}]}');
CREATE TEMP TABLE it_g AS SELECT etl.run_job('it_unf') AS r, NULL::bigint AS tok1;
UPDATE it_g SET tok1 = etl_test.claim_run(r);
SELECT etl.start_items((SELECT r FROM it_g), (SELECT tok1 FROM it_g));
SELECT etl_test.fi((SELECT r FROM it_g), 1, '{"status": "success"}');
SELECT is(etl_test.fin((SELECT r FROM it_g), '{"status": "success"}'), 'queued',
    'the runner reports success with an item still running: a transient failure, the run is queued again');
SELECT is((SELECT (status, error_category, error_type, is_transient)::text FROM etl.runs WHERE run_id = (SELECT r FROM it_g)),
    '(queued,SYSTEM,items_unfinished,t)', 'the failure is SYSTEM items_unfinished, transient');
SELECT is((SELECT error_message FROM etl.runs WHERE run_id = (SELECT r FROM it_g)), '1 of 2 items were not reported by the attempt',
    'its message counts the unreported items');
SELECT is((SELECT array_agg(item_no) FROM etl.start_items((SELECT r FROM it_g), etl_test.reclaim((SELECT r FROM it_g)))), ARRAY[2],
    'the next attempt gets the unreported item');

-- ---------------------------------------------------------------- the runner's own failure while items run
SELECT etl_test.items_job('it_crash', '{"static": [{"k": 1}, {"k": 2}, {"k": 3}]}');
CREATE TEMP TABLE it_f AS SELECT etl.run_job('it_crash') AS r, NULL::bigint AS tok1, NULL::bigint AS tok2;
UPDATE it_f SET tok1 = etl_test.claim_run(r);
SELECT etl.start_items((SELECT r FROM it_f), (SELECT tok1 FROM it_f));
SELECT etl_test.fi((SELECT r FROM it_f), 1, '{"status": "success", "records_read": 4}');
SELECT is(etl_test.fin((SELECT r FROM it_f), '{"status": "failed", "error_category": "SYSTEM", "message": "worker crashed"}'), 'queued',
    'the runner''s own transient SYSTEM failure with items running: the run is queued again');
SELECT is((SELECT (error_category, error_message)::text FROM etl.runs WHERE run_id = (SELECT r FROM it_f)), '(SYSTEM,"worker crashed")',
    'the runner''s failure wins over the items');
SELECT is((SELECT records_read FROM etl.run_attempts WHERE attempt_id = (SELECT tok1 FROM it_f)), 4::bigint,
    'the failed attempt records the sum over the one item it finished');
UPDATE it_f SET tok2 = etl_test.reclaim(r);
SELECT is((SELECT array_agg((item_no, attempt_count)::text ORDER BY item_no) FROM etl.start_items((SELECT r FROM it_f), (SELECT tok2 FROM it_f))),
    ARRAY['(2,2)', '(3,2)'], 'the next attempt gets the items that were running again, not the succeeded one');
SELECT etl_test.fi((SELECT r FROM it_f), 2, '{"status": "success", "records_read": 5}');
SELECT etl_test.fi((SELECT r FROM it_f), 3, '{"status": "success", "records_read": 6}');
SELECT is(etl_test.fin((SELECT r FROM it_f), '{"status": "success"}'), 'success', 'and the run succeeds');
SELECT is(ARRAY[(SELECT records_read FROM etl.run_attempts WHERE attempt_id = (SELECT tok2 FROM it_f)),
                (SELECT records_read FROM etl.runs WHERE run_id = (SELECT r FROM it_f))],
    ARRAY[11, 15]::bigint[], 'attempt 2 records 5 + 6, the run 4 + 5 + 6');

-- ---------------------------------------------------------------- attempt metrics: only the items the attempt finished
-- Attempt 1 finishes both items (one fails transiently after reading 5 records); attempt 2 is
-- handed the failed item and dies without reporting it: it finished nothing.
SELECT etl_test.items_job('it_metrics', '{"static": [{"k": 1}, {"k": 2}]}');
CREATE TEMP TABLE it_e AS SELECT etl.run_job('it_metrics') AS r, NULL::bigint AS tok1, NULL::bigint AS tok2, NULL::bigint AS tok3;
UPDATE it_e SET tok1 = etl_test.claim_run(r);
SELECT etl.start_items((SELECT r FROM it_e), (SELECT tok1 FROM it_e));
SELECT etl_test.fi((SELECT r FROM it_e), 1, '{"status": "success", "records_read": 10}');
SELECT etl_test.fi((SELECT r FROM it_e), 2, '{"status": "failed", "error_category": "API", "http_status": 503, "records_read": 5}');
SELECT is(etl_test.fin((SELECT r FROM it_e), '{"status": "success"}'), 'queued', 'attempt 1 ends with a transient item failure');
UPDATE it_e SET tok2 = etl_test.reclaim(r);
SELECT etl.start_items((SELECT r FROM it_e), (SELECT tok2 FROM it_e));
SELECT is(etl_test.fin((SELECT r FROM it_e), '{"status": "failed", "error_category": "SYSTEM", "message": "died"}'), 'queued',
    'attempt 2 dies before reporting its item');
SELECT is((SELECT array_agg(coalesce(records_read, 0) ORDER BY attempt_no) FROM etl.run_attempts WHERE run_id = (SELECT r FROM it_e)),
    ARRAY[15, 0]::bigint[], 'run_attempts.records_read: attempt 1 = 10 + 5; attempt 2 finished no item, so none (not item 2''s 5 from attempt 1)');
UPDATE it_e SET tok3 = etl_test.reclaim(r);
SELECT etl.start_items((SELECT r FROM it_e), (SELECT tok3 FROM it_e));
SELECT etl_test.fi((SELECT r FROM it_e), 2, '{"status": "success", "records_read": 6}');
SELECT is(etl_test.fin((SELECT r FROM it_e), '{"status": "success"}'), 'success', 'attempt 3 finishes the item and the run');
SELECT is((SELECT records_read FROM etl.run_attempts WHERE attempt_id = (SELECT tok3 FROM it_e)), 6::bigint,
    'attempt 3 records the one item it finished');

-- ---------------------------------------------------------------- etl.retry of a run with items
-- The runner fails permanently while item 2 still runs: item 2 is skipped with the run. A retry
-- must run item 2, and the run must not succeed before item 2 did.
SELECT etl_test.items_job('it_rs', '{"static": [{"k": 1}, {"k": 2}]}');
CREATE TEMP TABLE it_rs AS SELECT etl.run_job('it_rs') AS r;
SELECT etl.start_items((SELECT r FROM it_rs), etl_test.claim_run((SELECT r FROM it_rs)));
SELECT etl_test.fi((SELECT r FROM it_rs), 1, '{"status": "success"}');
SELECT is(etl_test.fin((SELECT r FROM it_rs), '{"status": "failed", "error_category": "DATA", "message": "boom"}'), 'failed',
    'the runner''s permanent failure fails the run');
SELECT is((SELECT array_agg(status ORDER BY item_no) FROM etl.run_items WHERE run_id = (SELECT r FROM it_rs)), ARRAY['success', 'skipped'],
    'the item left running is skipped with the run');
SELECT etl.retry((SELECT r FROM it_rs), 'try again');
SELECT is((SELECT array_agg(item_no) FROM etl.start_items((SELECT r FROM it_rs), etl_test.claim_run((SELECT r FROM it_rs)))), ARRAY[2],
    'after etl.retry, the next attempt gets the skipped item');
SELECT isnt(etl_test.fin((SELECT r FROM it_rs), '{"status": "success"}'), 'success',
    'the run does not succeed while one of its items never ran');
-- An item failed permanently; the operator fixes the data and retries the run.
SELECT etl_test.items_job('it_rp', '{"static": [{"k": 1}, {"k": 2}]}');
CREATE TEMP TABLE it_rp AS SELECT etl.run_job('it_rp') AS r;
SELECT etl.start_items((SELECT r FROM it_rp), etl_test.claim_run((SELECT r FROM it_rp)));
SELECT etl_test.fi((SELECT r FROM it_rp), 1, '{"status": "success"}');
SELECT etl_test.fi((SELECT r FROM it_rp), 2, '{"status": "failed", "error_category": "DATA", "message": "bad row"}');
SELECT etl_test.fin((SELECT r FROM it_rp), '{"status": "success"}');
SELECT etl.retry((SELECT r FROM it_rp), 'data fixed');
SELECT is((SELECT array_agg(item_no) FROM etl.start_items((SELECT r FROM it_rp), etl_test.claim_run((SELECT r FROM it_rp)))), ARRAY[2],
    'after etl.retry, the permanently failed item is handed out again (the succeeded one is not)');

-- ---------------------------------------------------------------- per-item cursors
SELECT etl_test.items_job('it_inc', '{"static": [{"region": "a"}, {"region": "b"}]}');
UPDATE etl.jobs SET supports_incremental = true, incremental_strategy = 'modified_date', cursor_lookback = '1 hour'
 WHERE slug = 'it_inc';
CREATE TEMP TABLE it_k AS SELECT etl.run_job('it_inc') AS r;
SELECT is((etl_test.claim_row((SELECT r FROM it_k)) -> 'cursor'), 'null'::jsonb, 'claim of an items job hands out no run cursor');
SELECT is((SELECT array_agg(cursor IS NULL) FROM etl.start_items((SELECT r FROM it_k), etl_test.token((SELECT r FROM it_k)))),
    ARRAY[true, true], 'no item has a cursor yet');
SELECT etl_test.fi((SELECT r FROM it_k), 1, '{"status": "success", "cursor": {"value": "2024-05-01T00:00:00Z", "tiebreak": "k7"}}');
SELECT etl_test.fi((SELECT r FROM it_k), 2, '{"status": "failed", "error_category": "DATA", "cursor": {"value": "2024-05-02T00:00:00Z"}}');
SELECT is((SELECT (cursor_value = '2024-05-01T00:00:00Z', tiebreak_value, advance_count, params = '{"region": "a"}', strategy)::text
             FROM etl.cursors WHERE job_id = etl_test.job('it_inc') AND param_hash = etl.param_fingerprint('{"region": "a"}')),
    '(t,k7,1,t,modified_date)', 'an item success advances the cursor of (job, item param_hash) at once');
SELECT is((SELECT cursor_value FROM etl.run_items WHERE item_id = etl_test.item((SELECT r FROM it_k), 1)),
    '{"value": "2024-05-01T00:00:00Z", "tiebreak": "k7"}'::jsonb, 'the item keeps the cursor it reported');
SELECT is((SELECT count(*)::int FROM etl.cursors WHERE job_id = etl_test.job('it_inc') AND param_hash = etl.param_fingerprint('{"region": "b"}')),
    0, 'a failed item does not advance its cursor');
SELECT is(etl_test.fin((SELECT r FROM it_k), '{"status": "success"}'), 'failed', 'the run fails with its DATA item');
SELECT is((SELECT cursor_value FROM etl.cursors WHERE job_id = etl_test.job('it_inc') AND param_hash = etl.param_fingerprint('{"region": "a"}')),
    '2024-05-01T00:00:00Z'::timestamptz, 'the failed run does not take back the cursor its successful item advanced');

-- a dry run: the items get their cursors, but nothing advances
CREATE TEMP TABLE it_kd AS SELECT etl.run_job('it_inc', dry_run => true) AS r;
CREATE TEMP TABLE it_kd1 AS SELECT * FROM etl.start_items((SELECT r FROM it_kd), etl_test.claim_run((SELECT r FROM it_kd)));
SELECT is((SELECT ((cursor ->> 'value')::timestamptz, (cursor ->> 'since')::timestamptz, cursor ->> 'tiebreak', (cursor ->> 'lookback_seconds')::numeric::int)::text
             FROM it_kd1 WHERE item_no = 1),
    ('2024-05-01T00:00:00Z'::timestamptz, '2024-04-30T23:00:00Z'::timestamptz, 'k7', 3600)::text,
    'start_items hands each item its cursor: value, since = value - cursor_lookback, tiebreak');
SELECT is((SELECT cursor FROM it_kd1 WHERE item_no = 2), NULL, 'an item without a stored cursor gets none');
SELECT etl_test.fi((SELECT r FROM it_kd), 1, '{"status": "success", "cursor": {"value": "2024-06-01T00:00:00Z"}}');
SELECT etl_test.fi((SELECT r FROM it_kd), 2, '{"status": "success", "cursor": {"value": "2024-06-02T00:00:00Z"}}');
SELECT is(etl_test.fin((SELECT r FROM it_kd), '{"status": "success"}'), 'success', 'the dry run succeeds');
SELECT is((SELECT array_agg((cursor_value = '2024-05-01T00:00:00Z', advance_count)::text) FROM etl.cursors WHERE job_id = etl_test.job('it_inc')),
    ARRAY['(t,1)'], 'a dry run advances no item cursor and creates none');

-- a real run: claim still hands out no run cursor, even when one is stored for the run's parameters
INSERT INTO etl.cursors (job_id, param_hash, strategy, cursor_value)
VALUES (etl_test.job('it_inc'), etl.param_fingerprint('{}'), 'modified_date', '2030-01-01T00:00:00Z');
CREATE TEMP TABLE it_k3 AS SELECT etl.run_job('it_inc') AS r;
SELECT is((etl_test.claim_row((SELECT r FROM it_k3)) -> 'cursor'), 'null'::jsonb,
    'claim hands out cursor NULL for a job with items although a cursor exists for the run''s parameter fingerprint');
SELECT etl.start_items((SELECT r FROM it_k3), etl_test.token((SELECT r FROM it_k3)));
SELECT etl_test.fi((SELECT r FROM it_k3), 1, '{"status": "success", "cursor": {"value": "2024-06-01T00:00:00Z"}}');
SELECT etl_test.fi((SELECT r FROM it_k3), 2, '{"status": "success", "cursor": {"value": "2024-06-02T00:00:00Z"}}');
SELECT is(etl_test.fin((SELECT r FROM it_k3), '{"status": "success", "cursor": {"value": "2031-01-01T00:00:00Z"}}'), 'success',
    'the run succeeds');
SELECT is((SELECT array_agg((params ->> 'region', cursor_value, advance_count)::text ORDER BY params ->> 'region')
             FROM etl.cursors WHERE job_id = etl_test.job('it_inc') AND params ? 'region'),
    ARRAY[('a', '2024-06-01T00:00:00Z'::timestamptz, 2)::text, ('b', '2024-06-02T00:00:00Z'::timestamptz, 1)::text],
    'each item success advanced its own cursor');
SELECT is((SELECT cursor_value FROM etl.cursors WHERE job_id = etl_test.job('it_inc') AND param_hash = etl.param_fingerprint('{}')),
    '2030-01-01T00:00:00Z'::timestamptz, 'the run-level cursor of a job with items is not advanced by the run''s report');

SELECT * FROM finish();
ROLLBACK;
