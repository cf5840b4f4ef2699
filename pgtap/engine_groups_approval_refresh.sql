-- pgTAP tests for job groups under transaction scope per_group (plpgsql/200_groups.sql with the
-- group paths of 130_enqueue.sql, 150_claim.sql, 160_finish.sql, 170_control.sql, 180_tick.sql),
-- full refreshes and their approval (130_enqueue.sql, 170_control.sql etl.approve, the full-mode
-- cursor of 160_finish.sql), and materialized-view refreshes (210_refresh.sql).

BEGIN;
SELECT plan(99);

-- ---------------------------------------------------------------- helpers
\ir lib/engine_helpers.psql

UPDATE etl.schedules SET is_active = false;
SELECT etl.set_setting('parallel_jobs', '20', 'groups test');

CREATE FUNCTION etl_test.sql_job(p_slug text, p_target text) RETURNS bigint LANGUAGE sql AS $$
  INSERT INTO etl.jobs (slug, name, kind, target) VALUES (p_slug, p_slug, 'sql', p_target) RETURNING job_id
$$;
CREATE FUNCTION etl_test.fin(p_run bigint, p_outcome jsonb) RETURNS text LANGUAGE sql AS $$
  SELECT etl.finish(p_run, etl_test.token(p_run), p_outcome)
$$;
-- Claims exactly this run and returns the whole claim row as JSON.
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
CREATE FUNCTION etl_test.group_id(p_name text) RETURNS bigint LANGUAGE sql AS $$
  SELECT group_id FROM etl.job_groups WHERE name = p_name
$$;
CREATE FUNCTION etl_test.add_member(p_group text, p_slug text, p_sequence integer) RETURNS void LANGUAGE sql AS $$
  INSERT INTO etl.job_group_members (group_id, job_id, sequence)
  VALUES (etl_test.group_id(p_group), etl_test.job(p_slug), p_sequence)
$$;
-- A group of SQL jobs, one per (slug, target), in that sequence.
CREATE FUNCTION etl_test.sql_group(p_group text, p_slugs text[], p_targets text[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO etl.jobs (slug, name, kind, target) SELECT s, s, 'sql', t FROM unnest(p_slugs, p_targets) u(s, t);
  INSERT INTO etl.job_groups (name) VALUES (p_group);
  INSERT INTO etl.job_group_members (group_id, job_id, sequence)
  SELECT etl_test.group_id(p_group), etl_test.job(s), n::integer FROM unnest(p_slugs) WITH ORDINALITY u(s, n);
$$;
-- The edges of a pipeline run as parent>child:type, sorted.
CREATE FUNCTION etl_test.edges(p_pid bigint) RETURNS text[] LANGUAGE sql AS $$
  SELECT array_agg(pj.slug || '>' || cj.slug || ':' || d.dependency_type ORDER BY pj.slug, cj.slug)
    FROM etl.run_dependencies d
    JOIN etl.runs pr ON pr.run_id = d.parent_run_id JOIN etl.jobs pj ON pj.job_id = pr.job_id
    JOIN etl.runs cr ON cr.run_id = d.child_run_id JOIN etl.jobs cj ON cj.job_id = cr.job_id
   WHERE d.pipeline_run_id = p_pid
$$;

-- ---------------------------------------------------------------- groups: the catalog
-- up -> g2 -> after, g1 -> g2 (agrees with the sequence); g1 (sequence 1) and g2 (sequence 2) form gr_grp.
SELECT etl_test.make_job('gr_up');
SELECT etl_test.sql_group('gr_grp', ARRAY['gr_g1', 'gr_g2'], ARRAY['gr_s.p1', 'gr_s.p2']);
SELECT etl_test.make_job('gr_after');
SELECT etl_test.dep('gr_up', 'gr_g2');
SELECT etl_test.dep('gr_g1', 'gr_g2');
SELECT etl_test.dep('gr_g2', 'gr_after');

-- ---------------------------------------------------------------- per_group: forming the unit
CREATE TEMP TABLE gr_1 AS
  SELECT etl.trigger_pipeline(jobs => ARRAY['gr_up', 'gr_g1', 'gr_g2', 'gr_after'], transaction_scope => 'per_group') AS pid;
CREATE TEMP TABLE gr_1r AS
  SELECT etl_test.run_of(pid, 'gr_up') AS up, etl_test.run_of(pid, 'gr_g1') AS g1,
         etl_test.run_of(pid, 'gr_g2') AS g2, etl_test.run_of(pid, 'gr_after') AS aft FROM gr_1;
SELECT is((SELECT group_leader_run_id FROM etl.runs WHERE run_id = (SELECT g2 FROM gr_1r)), (SELECT g1 FROM gr_1r),
    'per_group: the run of g2 gets group_leader_run_id = the run of g1 (sequence 1)');
SELECT is((SELECT array_agg((group_id = etl_test.group_id('gr_grp'), group_leader_run_id IS NULL)::text ORDER BY run_id)
             FROM etl.runs WHERE run_id IN ((SELECT g1 FROM gr_1r), (SELECT g2 FROM gr_1r))),
    ARRAY['(t,t)', '(t,f)'], 'both members carry the group id; only the leader has no leader');
SELECT is((SELECT group_id FROM etl.runs WHERE run_id = (SELECT up FROM gr_1r)), NULL, 'a job outside the group has no group');
SELECT is(etl_test.edges((SELECT pid FROM gr_1)), ARRAY['gr_g2>gr_after:explicit', 'gr_up>gr_g1:group'],
    'the outside edge up -> g2 became up -> g1 (type group), the edge inside the unit is gone, g2 keeps its own child');
SELECT is((SELECT dependency_snapshot FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM gr_1)),
    '[{"parent": "gr_g1", "child": "gr_g2", "type": "explicit"}, {"parent": "gr_g2", "child": "gr_after", "type": "explicit"},
      {"parent": "gr_up", "child": "gr_g2", "type": "explicit"}]'::jsonb,
    'dependency_snapshot still shows the declared edges');
SELECT is(ARRAY[etl_test.status((SELECT up FROM gr_1r)), etl_test.status((SELECT g1 FROM gr_1r)),
                etl_test.status((SELECT g2 FROM gr_1r)), etl_test.status((SELECT aft FROM gr_1r))],
    ARRAY['queued', 'pending', 'pending', 'pending'], 'only up is queued: the leader waits for its member''s outside parent');
SELECT is(etl_test.succeed((SELECT up FROM gr_1r)), 'success', 'up succeeds');
SELECT is(ARRAY[etl_test.status((SELECT g1 FROM gr_1r)), etl_test.status((SELECT g2 FROM gr_1r))], ARRAY['queued', 'pending'],
    'the leader is queued once up succeeded; the member stays pending');
SELECT is(etl._try_release((SELECT g2 FROM gr_1r)), false, 'a member is never released on its own');

-- ---------------------------------------------------------------- claim of the leader
CREATE TEMP TABLE gr_c1 AS SELECT * FROM etl.claim('w', 10);
SELECT is((SELECT array_agg(run_id) FROM gr_c1), ARRAY[(SELECT g1 FROM gr_1r)],
    'claim over everything returns the leader only: the member is never claimed on its own');
SELECT is((SELECT (group_id = etl_test.group_id('gr_grp'), jsonb_array_length(group_members))::text FROM gr_c1), '(t,1)',
    'the claim of the leader carries the group id and one group member');
SELECT is((SELECT ((m ->> 'run_id')::bigint, (m ->> 'token')::bigint, m ->> 'job_slug', m ->> 'kind', m ->> 'target', (m ->> 'sequence')::int)::text
             FROM gr_c1, jsonb_array_elements(group_members) m),
    ((SELECT g2 FROM gr_1r), etl_test.token((SELECT g2 FROM gr_1r)), 'gr_g2', 'sql', 'gr_s.p2', 2)::text,
    'group_members lists g2 with its run_id, its own token, target and sequence');
SELECT is((SELECT (r.status, r.attempt_count, a.attempt_no, a.status, a.worker_id)::text
             FROM etl.runs r JOIN etl.run_attempts a USING (run_id) WHERE r.run_id = (SELECT g2 FROM gr_1r)),
    '(running,1,1,running,w)', 'the member is running with its own attempt row on the leader''s worker');
SELECT is((SELECT count(*)::int FROM etl.run_slots WHERE run_id IS NOT NULL), 1, 'the unit takes a single slot');

-- ---------------------------------------------------------------- the leader succeeds
SELECT is(etl.finish((SELECT g1 FROM gr_1r), (SELECT token FROM gr_c1),
                     jsonb_build_object('status', 'success', 'rows_affected', 5,
                                        'members', jsonb_build_array(jsonb_build_object('run_id', (SELECT g2 FROM gr_1r), 'rows_affected', 3)))),
    'success', 'finish of the leader with success and the members'' reports');
SELECT is((SELECT array_agg((status, rows_affected)::text ORDER BY run_id) FROM etl.runs WHERE run_id IN ((SELECT g1 FROM gr_1r), (SELECT g2 FROM gr_1r))),
    ARRAY['(success,5)', '(success,3)'], 'both succeed, g2 with its own rows_affected 3');
SELECT is((SELECT (status, rows_affected)::text FROM etl.run_attempts WHERE attempt_id = etl_test.token((SELECT g2 FROM gr_1r))),
    '(success,3)', 'the member''s attempt records its report');
SELECT is(etl_test.status((SELECT aft FROM gr_1r)), 'queued', 'the member''s child after is released');
SELECT etl_test.succeed((SELECT aft FROM gr_1r));
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM gr_1)), 'success', 'the pipeline run succeeds');

-- ---------------------------------------------------------------- the leader fails: the group rolls back
CREATE TEMP TABLE gr_2 AS
  SELECT etl.trigger_pipeline(jobs => ARRAY['gr_g1', 'gr_g2', 'gr_after'], transaction_scope => 'per_group') AS pid;
CREATE TEMP TABLE gr_2r AS
  SELECT etl_test.run_of(pid, 'gr_g1') AS g1, etl_test.run_of(pid, 'gr_g2') AS g2, etl_test.run_of(pid, 'gr_after') AS aft FROM gr_2;
SELECT is(etl.finish((SELECT g1 FROM gr_2r), etl_test.claim_run((SELECT g1 FROM gr_2r)),
                     '{"status": "failed", "error_category": "DATA", "message": "bad row"}'), 'failed',
    'the leader fails permanently');
SELECT is((SELECT (status, error_category, error_type, is_transient)::text FROM etl.runs WHERE run_id = (SELECT g2 FROM gr_2r)),
    '(failed,DATA,group_rolled_back,f)', 'the member without a report of its own fails with error_type group_rolled_back');
SELECT is((SELECT error_message FROM etl.runs WHERE run_id = (SELECT g2 FROM gr_2r)),
    format('rolled back with its group (leader gr_g1 run %s): bad row', (SELECT g1 FROM gr_2r)), 'its message names the leader and the cause');
SELECT is((SELECT (status, error_type)::text FROM etl.run_attempts WHERE attempt_id = etl_test.token((SELECT g2 FROM gr_2r))),
    '(failed,group_rolled_back)', 'the member''s attempt fails too');
SELECT is((SELECT (status, skip_reason)::text FROM etl.runs WHERE run_id = (SELECT aft FROM gr_2r)),
    (SELECT ('skipped', format('upstream group member run %s failed', (SELECT g2 FROM gr_2r)))::text),
    'the member''s descendant is skipped');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM gr_2)), 'failed', 'the pipeline run fails');

-- ---------------------------------------------------------------- retry of a member retries the group
SELECT is(etl.retry((SELECT g2 FROM gr_2r), 'fixed the data'), 3,
    'etl.retry of the member retries its group: the leader, the member and the member''s skipped child are re-opened (and counted)');
SELECT is(ARRAY[etl_test.status((SELECT g1 FROM gr_2r)), etl_test.status((SELECT g2 FROM gr_2r))], ARRAY['queued', 'pending'],
    'the leader is back in the queue, the member pending with it');
SELECT ok(EXISTS (SELECT 1 FROM etl.audit_log WHERE action = 'retry' AND target_id = (SELECT g1 FROM gr_2r)::text),
    'the retry is audited on the leader');
SELECT is(etl_test.status((SELECT aft FROM gr_2r)), 'pending',
    'the member''s descendant that was skipped with the group waits again');
CREATE TEMP TABLE gr_2c AS SELECT etl_test.claim_row((SELECT g1 FROM gr_2r)) AS c;
SELECT is((SELECT ((m ->> 'run_id')::bigint, a.attempt_no)::text FROM gr_2c, jsonb_array_elements(c -> 'group_members') m
             JOIN etl.run_attempts a ON a.attempt_id = (m ->> 'token')::bigint),
    ((SELECT g2 FROM gr_2r), 2)::text, 'the group is claimed again: the member starts its attempt 2');
SELECT is(etl.finish((SELECT g1 FROM gr_2r), ((SELECT c FROM gr_2c) ->> 'token')::bigint,
                     jsonb_build_object('status', 'failed', 'error_category', 'DATA', 'message', 'constraint',
                                        'members', jsonb_build_array(jsonb_build_object('run_id', (SELECT g2 FROM gr_2r),
                                          'error_category', 'DB', 'error_type', 'unique_violation', 'message', 'duplicate key')))),
    'failed', 'the leader fails again, this time with a report of the member''s own error');
SELECT is((SELECT (status, error_category, error_type, error_message)::text FROM etl.runs WHERE run_id = (SELECT g2 FROM gr_2r)),
    '(failed,DB,unique_violation,"duplicate key")', 'a member with its own report fails with its own error');

-- ---------------------------------------------------------------- transient failure, lease loss, cancel
CREATE TEMP TABLE gr_3 AS SELECT etl.trigger_pipeline(jobs => ARRAY['gr_g1', 'gr_g2'], transaction_scope => 'per_group') AS pid;
CREATE TEMP TABLE gr_3r AS SELECT etl_test.run_of(pid, 'gr_g1') AS g1, etl_test.run_of(pid, 'gr_g2') AS g2 FROM gr_3;
SELECT is(etl.finish((SELECT g1 FROM gr_3r), etl_test.claim_run((SELECT g1 FROM gr_3r)),
                     '{"status": "failed", "error_category": "API", "http_status": 503, "message": "busy"}'), 'queued',
    'a transient failure of the leader puts it back in the queue');
SELECT is(ARRAY[etl_test.status((SELECT g1 FROM gr_3r)), etl_test.status((SELECT g2 FROM gr_3r))], ARRAY['queued', 'pending'],
    'its member goes back to pending');
SELECT is((SELECT status FROM etl.run_attempts WHERE run_id = (SELECT g2 FROM gr_3r) AND attempt_no = 1), 'failed',
    'the member''s attempt ended with the leader''s');
UPDATE etl.runs SET next_attempt_at = now() WHERE run_id = (SELECT g1 FROM gr_3r);
SELECT etl_test.claim_run((SELECT g1 FROM gr_3r));
SELECT is(ARRAY[etl_test.status((SELECT g1 FROM gr_3r)), etl_test.status((SELECT g2 FROM gr_3r))], ARRAY['running', 'running'],
    'the retried group runs again, both members');
UPDATE etl.job_locks SET expires_at = now() - interval '1 second' WHERE run_id = (SELECT g1 FROM gr_3r) AND status = 'active';
SELECT is((etl.tick() ->> 'leases_reaped')::int, 1, 'etl.tick reaps the leader''s expired lease');
SELECT is(ARRAY[etl_test.status((SELECT g1 FROM gr_3r)), etl_test.status((SELECT g2 FROM gr_3r))], ARRAY['queued', 'pending'],
    'lease loss returns the leader to queued and the member to pending');
SELECT is((SELECT array_agg(status ORDER BY attempt_no) FROM etl.run_attempts WHERE run_id = (SELECT g1 FROM gr_3r)),
    ARRAY['failed', 'lost'], 'the leader''s attempt is lost');
SELECT is(etl.cancel((SELECT g2 FROM gr_3r), 'not today'), 'cancelled', 'etl.cancel of a pending member cancels its group');
SELECT is(ARRAY[etl_test.status((SELECT g1 FROM gr_3r)), etl_test.status((SELECT g2 FROM gr_3r))], ARRAY['cancelled', 'cancelled'],
    'leader and member are cancelled');
SELECT is((SELECT status FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM gr_3)), 'cancelled', 'and the pipeline run is cancelled');

-- ---------------------------------------------------------------- sequence against an edge; other scopes
SELECT etl_test.sql_group('gr_bad', ARRAY['gr_h1', 'gr_h2'], ARRAY['gr_s.q1', 'gr_s.q2']);
SELECT etl_test.dep('gr_h2', 'gr_h1');
CREATE TEMP TABLE gr_n AS SELECT count(*) AS n FROM etl.pipeline_runs;
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['gr_h1', 'gr_h2'], transaction_scope => 'per_group')$$,
    '23514', 'group gr_bad: gr_h2 (sequence 2) must run before gr_h1 (sequence 1), which depends on it; fix the sequences',
    'a sequence that contradicts an edge between members is refused with 23514 naming both jobs');
SELECT is((SELECT count(*) FROM etl.pipeline_runs), (SELECT n FROM gr_n), 'and nothing was enqueued');
SELECT etl_test.make_job('gr_py');
INSERT INTO etl.job_groups (name) VALUES ('gr_mixed');
SELECT etl_test.add_member('gr_mixed', 'gr_py', 1);
SELECT etl_test.sql_job('gr_m2', 'gr_s.q3');
SELECT etl_test.add_member('gr_mixed', 'gr_m2', 2);
SELECT throws_ok($$SELECT etl.trigger_pipeline(jobs => ARRAY['gr_py', 'gr_m2'], transaction_scope => 'per_group')$$,
    '22023', 'group gr_mixed: per_group runs SQL jobs in one transaction; gr_py is not SQL (run it per_procedure, or take them out of the group)',
    'a group with a Python job cannot run per_group: refused with 22023 naming the job');
SELECT is((SELECT count(*) FROM etl.pipeline_runs), (SELECT n FROM gr_n), 'and nothing was enqueued either');

CREATE TEMP TABLE gr_4 AS SELECT etl.trigger_pipeline(jobs => ARRAY['gr_g1', 'gr_g2']) AS pid;
SELECT is((SELECT array_agg((group_id IS NULL, group_leader_run_id IS NULL)::text) FROM etl.runs WHERE pipeline_run_id = (SELECT pid FROM gr_4)),
    ARRAY['(t,t)', '(t,t)'], 'per_procedure (the default) ignores groups: no group id, no leader');
SELECT is(etl_test.edges((SELECT pid FROM gr_4)), ARRAY['gr_g1>gr_g2:explicit'], 'and keeps the declared edge between them');
CREATE TEMP TABLE gr_5 AS SELECT etl.trigger_pipeline(jobs => ARRAY['gr_g2', 'gr_after'], transaction_scope => 'per_group') AS pid;
SELECT is((SELECT (group_id IS NULL, group_leader_run_id IS NULL)::text FROM etl.runs WHERE run_id = etl_test.run_of((SELECT pid FROM gr_5), 'gr_g2')),
    '(t,t)', 'a group with a single selected member is just a run (group_id NULL)');

-- ---------------------------------------------------------------- a member's parent outside the pipeline run
SELECT etl_test.make_job('gx_up');
SELECT etl_test.sql_group('gx_grp', ARRAY['gx_g1', 'gx_g2'], ARRAY['gr_s.x1', 'gr_s.x2']);
SELECT etl_test.dep('gx_up', 'gx_g2');
CREATE TEMP TABLE gx_1 AS SELECT etl.trigger_pipeline(jobs => ARRAY['gx_g1', 'gx_g2'], transaction_scope => 'per_group') AS pid;
CREATE TEMP TABLE gx_1r AS SELECT etl_test.run_of(pid, 'gx_g1') AS g1, etl_test.run_of(pid, 'gx_g2') AS g2 FROM gx_1;
SELECT is((SELECT (status, wait_until IS NOT NULL)::text FROM etl.runs WHERE run_id = (SELECT g1 FROM gx_1r)), '(pending,t)',
    'the leader waits, with a wait limit, for its member''s parent outside the pipeline run (it never ran)');
SELECT is(etl._try_release((SELECT g1 FROM gx_1r)), false, 'and is not released while that parent has no success');

-- ---------------------------------------------------------------- full refresh: consent and approval
SELECT etl_test.park();
SELECT etl_test.make_job('fr_full');
UPDATE etl.jobs SET allow_full_refresh = true, supports_incremental = true, incremental_strategy = 'modified_date' WHERE slug = 'fr_full';
SELECT etl_test.make_job('fr_nofull');
CREATE TEMP TABLE fr_n AS SELECT count(*) AS n FROM etl.pipeline_runs;
SELECT throws_ok($$SELECT etl.run_job('fr_full', mode => 'full')$$, '42501',
    'full refresh requires an approval: approval => {"confirmed": true, "approver": "...", "reason": "..."}, or request_approval => true and a later etl.approve(pipeline_run_id, reason)',
    'run_job in full mode without an approval is refused with 42501');
SELECT is((SELECT count(*) FROM etl.pipeline_runs), (SELECT n FROM fr_n), 'the refused full refresh created no pipeline run');
SELECT throws_ok($$SELECT etl.run_job('fr_nofull', mode => 'full', approval => '{"confirmed": true, "approver": "ann", "reason": "r"}')$$,
    '42501', 'full refresh is not allowed for job(s) fr_nofull: set allow_full_refresh first',
    'a job without allow_full_refresh is refused with 42501 even with an approval');

-- a cursor to start from
CREATE TEMP TABLE fr_i AS SELECT etl.run_job('fr_full') AS r;
SELECT etl.finish((SELECT r FROM fr_i), etl_test.claim_run((SELECT r FROM fr_i)), '{"status": "success", "cursor": {"value": "2024-06-01T00:00:00Z"}}');
CREATE TEMP TABLE fr_i2 AS SELECT etl.run_job('fr_full') AS r;
SELECT is(((etl_test.claim_row((SELECT r FROM fr_i2)) -> 'cursor' ->> 'value')::timestamptz), '2024-06-01T00:00:00Z'::timestamptz,
    'an incremental run is handed the stored cursor');
SELECT etl_test.fin((SELECT r FROM fr_i2), '{"status": "success"}');

CREATE TEMP TABLE fr_a AS
  SELECT etl.run_job('fr_full', mode => 'full', approval => '{"confirmed": true, "approver": "ann", "reason": "r"}') AS r;
SELECT is((SELECT (status, mode, full_refresh_confirmed, approved_by, approved_at IS NOT NULL, approval_reason)::text
             FROM etl.pipeline_runs WHERE pipeline_run_id = etl_test.pid((SELECT r FROM fr_a))),
    '(running,full,t,ann,t,r)', 'an approved full refresh records full_refresh_confirmed, approved_by, approved_at, approval_reason');
SELECT is((SELECT detail FROM etl.run_events WHERE run_id = (SELECT r FROM fr_a) AND event_type = 'approval'),
    '{"mode": "full", "reason": "r", "approver": "ann"}'::jsonb, 'an approval given with the trigger is an approval event on the run');
CREATE TEMP TABLE fr_ac AS SELECT etl_test.claim_row((SELECT r FROM fr_a)) AS c;
SELECT is((SELECT (c ->> 'mode', c -> 'cursor')::text FROM fr_ac), '(full,null)', 'the claim of a full-mode run hands out cursor NULL although a cursor exists');
SELECT is(etl_test.fin((SELECT r FROM fr_a), '{"status": "success", "cursor": {"value": "2024-01-01T00:00:00Z"}}'), 'success',
    'the full refresh succeeds with an older cursor value');
SELECT is((SELECT cursor_value FROM etl.cursors WHERE job_id = etl_test.job('fr_full')), '2024-01-01T00:00:00Z'::timestamptz,
    'a full refresh resets the cursor: it may go backwards');
CREATE TEMP TABLE fr_b AS SELECT etl.run_job('fr_full') AS r;
SELECT etl.finish((SELECT r FROM fr_b), etl_test.claim_run((SELECT r FROM fr_b)), '{"status": "success", "cursor": {"value": "2023-01-01T00:00:00Z"}}');
SELECT is((SELECT cursor_value FROM etl.cursors WHERE job_id = etl_test.job('fr_full')), '2024-01-01T00:00:00Z'::timestamptz,
    'an incremental run never moves the cursor backwards');

-- requested approval
SELECT etl_test.park();
CREATE TEMP TABLE fr_w AS SELECT etl.run_job('fr_full', mode => 'full', request_approval => true, reason => 'rebuild') AS r;
CREATE TEMP TABLE fr_wp AS SELECT etl_test.pid(r) AS pid FROM fr_w;
SELECT is((SELECT (status, full_refresh_confirmed, approved_by IS NULL)::text FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM fr_wp)),
    '(awaiting_approval,f,t)', 'request_approval creates the pipeline run awaiting_approval, unconfirmed');
SELECT is(etl_test.status((SELECT r FROM fr_w)), 'pending', 'its run stays pending');
SELECT is((SELECT count(*)::int FROM etl.claim('w', 10)), 0, 'claim returns nothing while the approval is awaited');
SELECT throws_ok(format('SELECT etl.approve(%s, NULL)', (SELECT pid FROM fr_wp)), '22023', 'reason is required to approve a full refresh',
    'approve without a reason is refused with 22023');
SELECT is(etl.approve((SELECT pid FROM fr_wp), 'checked the backup', 'bob'), 1, 'etl.approve releases the one run');
SELECT is((SELECT (status, full_refresh_confirmed, approved_by, approval_reason, approved_at IS NOT NULL)::text
             FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM fr_wp)),
    '(running,t,bob,"checked the backup",t)', 'the pipeline run is running with the approval recorded');
SELECT is(etl_test.status((SELECT r FROM fr_w)), 'queued', 'its run is queued');
SELECT is((SELECT array_agg((detail ->> 'approver', detail ->> 'reason')::text) FROM etl.run_events
            WHERE run_id = (SELECT r FROM fr_w) AND event_type = 'approval'),
    ARRAY['(bob,"checked the backup")'], 'a run_events row of type approval per run');
SELECT is((SELECT array_agg((reason, details ->> 'approver')::text) FROM etl.audit_log
            WHERE action = 'approve_full_refresh' AND target_id = (SELECT pid FROM fr_wp)::text),
    ARRAY['("checked the backup",bob)'], 'an audit_log row with action approve_full_refresh');
SELECT throws_ok(format('SELECT etl.approve(%s, ''again'')', (SELECT pid FROM fr_wp)), '55000',
    format('pipeline run %s is running, not awaiting_approval: nothing to approve', (SELECT pid FROM fr_wp)),
    'approving twice is refused with 55000');
SELECT throws_ok($$SELECT etl.run_job('fr_full', request_approval => true)$$, '22023',
    'request_approval applies to full refreshes (mode => ''full'') only', 'request_approval on an incremental run is refused with 22023');
SELECT throws_ok($$SELECT etl.run_job('fr_full', mode => 'full', request_approval => true)$$, '22023',
    'request_approval needs a reason: why the full refresh is wanted', 'a request for approval says why');
SELECT throws_ok($$SELECT etl.run_job('fr_full', mode => 'full',
                                      approval => '{"confirmed": "yes", "approver": "ann", "reason": "r"}')$$, '42501',
    'full refresh requires an approval: approval => {"confirmed": true, "approver": "...", "reason": "..."}, or request_approval => true and a later etl.approve(pipeline_run_id, reason)',
    'confirmed must be JSON true, not a string');
CREATE TEMP TABLE fr_x AS SELECT etl_test.pid(etl.run_job('fr_full', mode => 'full', request_approval => true,
                                                          reason => 'rebuild')) AS pid;
SELECT is(etl.cancel_pipeline((SELECT pid FROM fr_x), 'not approved'), 1, 'cancel_pipeline of a pipeline run awaiting approval cancels its run');
SELECT is((SELECT (status, ended_at IS NOT NULL)::text FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM fr_x)), '(cancelled,t)',
    'the pipeline run awaiting approval ends cancelled');
SELECT throws_ok(format('SELECT etl.retry_pipeline(%s, ''after all'')', (SELECT pid FROM fr_x)), '55000',
    format('pipeline run %s is a full refresh that was never approved: trigger a new one (with an approval)', (SELECT pid FROM fr_x)),
    'a rejected full refresh is not revived by retry_pipeline');
SELECT throws_ok(format('SELECT etl.retry(%s, ''after all'')', (SELECT min(run_id) FROM etl.runs WHERE pipeline_run_id = (SELECT pid FROM fr_x))),
    '55000', format('pipeline run %s is a full refresh that was never approved: trigger a new one (with an approval)', (SELECT pid FROM fr_x)),
    'nor by retry');
SELECT is((SELECT count(*)::int FROM etl.audit_log WHERE action = 'cancel_pipeline' AND target_id = (SELECT pid FROM fr_x)::text), 1,
    'cancel_pipeline is audited once for the pipeline run');

-- Four eyes (setting approval_by_another_user): no approval with the trigger, and the approver is
-- another database user (session_user, which SET ROLE does not change: SET SESSION AUTHORIZATION does).
SELECT etl.set_setting('approval_by_another_user', 'true', 'four eyes');
SELECT throws_ok($$SELECT etl.run_job('fr_full', mode => 'full', approval => '{"confirmed": true, "approver": "ann", "reason": "r"}')$$,
    '42501', 'with approval_by_another_user on, a full refresh is approved by another database user: request_approval => true, then etl.approve by someone else',
    'with four eyes on, an approval given with the trigger is refused');
CREATE TEMP TABLE fr_4 AS SELECT etl_test.pid(etl.run_job('fr_full', mode => 'full', request_approval => true,
                                                          reason => 'rebuild')) AS pid;
SELECT throws_ok(format('SELECT etl.approve(%s, ''mine'')', (SELECT pid FROM fr_4)), '42501',
    format('pipeline run %s was requested by %s: with approval_by_another_user on, another database user approves it',
           (SELECT pid FROM fr_4), session_user),
    'the requester cannot approve their own request');
CREATE ROLE etl_test_approver IN ROLE etl_operator;
CREATE TEMP TABLE fr_4_got (step text, outcome text);
GRANT SELECT ON fr_4 TO etl_test_approver;
GRANT INSERT ON fr_4_got TO etl_test_approver;
SET SESSION AUTHORIZATION etl_test_approver;
DO $$
BEGIN
  BEGIN
    PERFORM etl.approve((SELECT pid FROM fr_4), 'ok', 'cfo');
    INSERT INTO fr_4_got VALUES ('named', 'approved');
  EXCEPTION WHEN insufficient_privilege THEN INSERT INTO fr_4_got VALUES ('named', SQLERRM);
  END;
  INSERT INTO fr_4_got VALUES ('self', etl.approve((SELECT pid FROM fr_4), 'looked at it')::text);
END $$;
RESET SESSION AUTHORIZATION;
SELECT is((SELECT outcome FROM fr_4_got WHERE step = 'named'),
    'approver "cfo" is not you: with approval_by_another_user on, an approval is recorded under the database user who gives it (etl_test_approver)',
    'another user may not approve in someone else''s name');
SELECT is((SELECT outcome FROM fr_4_got WHERE step = 'self'), '1', 'another database user approves, and the run is released');
SELECT is((SELECT (approved_by, requested_by = session_user)::text FROM etl.pipeline_runs WHERE pipeline_run_id = (SELECT pid FROM fr_4)),
    '(etl_test_approver,t)', 'recorded under the approver''s own database user');
SELECT etl.set_setting('approval_by_another_user', 'false', 'back');
SELECT throws_ok($$SELECT etl.cancel_pipeline(999999999, 'x')$$, '22023', 'pipeline run 999999999 does not exist',
    'cancel_pipeline of an unknown pipeline run is refused');

-- ---------------------------------------------------------------- materialized-view refreshes
SELECT etl_test.park();
CREATE SCHEMA rf_s;
CREATE TABLE rf_s.base (id int PRIMARY KEY, v text);
INSERT INTO rf_s.base VALUES (1, 'a');
CREATE MATERIALIZED VIEW rf_s.mv_u AS SELECT id, v FROM rf_s.base;
CREATE UNIQUE INDEX mv_u_id ON rf_s.mv_u (id);
CREATE MATERIALIZED VIEW rf_s.mv_plain AS SELECT count(*) AS n FROM rf_s.base;
INSERT INTO etl.refresh_targets (schema_name, view_name) VALUES ('rf_s', 'mv_u'), ('rf_s', 'mv_plain'), ('rf_s', 'mv_missing');
CREATE FUNCTION etl_test.rt(p_view text) RETURNS bigint LANGUAGE sql AS $$
  SELECT refresh_target_id FROM etl.refresh_targets WHERE schema_name = 'rf_s' AND view_name = p_view
$$;
SELECT etl_test.make_job('rf_job');
INSERT INTO etl.job_refresh_targets (job_id, refresh_target_id, sequence, policy) VALUES
  (etl_test.job('rf_job'), etl_test.rt('mv_u'), 1, 'on_success'),
  (etl_test.job('rf_job'), etl_test.rt('mv_plain'), 2, 'always'),
  (etl_test.job('rf_job'), etl_test.rt('mv_missing'), 3, 'on_success');
CREATE TEMP TABLE rf_r AS SELECT etl.run_job('rf_job') AS r, NULL::bigint AS tok;
UPDATE rf_r SET tok = etl_test.claim_run(r);

SELECT is((SELECT array_agg((view_name, sequence, policy, concurrent)::text ORDER BY sequence)
             FROM etl.refresh_plan((SELECT r FROM rf_r), (SELECT tok FROM rf_r), true)),
    ARRAY['(mv_u,1,on_success,t)', '(mv_plain,2,always,f)', '(mv_missing,3,on_success,f)'],
    'refresh_plan after a success lists every linked view in sequence; concurrent where a unique index exists');
SELECT is((SELECT array_agg((view_name, policy)::text) FROM etl.refresh_plan((SELECT r FROM rf_r), (SELECT tok FROM rf_r), false)),
    ARRAY['(mv_plain,always)'], 'refresh_plan after a failure keeps only the policy always links');

INSERT INTO rf_s.base VALUES (2, 'b');
SELECT is((SELECT (x ->> 'status', (x ->> 'concurrent')::boolean, x ->> 'view')::text
             FROM etl.refresh_view((SELECT r FROM rf_r), (SELECT tok FROM rf_r), etl_test.rt('mv_u')) x),
    '(success,t,rf_s.mv_u)', 'refresh_view refreshes the view with a unique index concurrently');
SELECT is((SELECT array_agg(id ORDER BY id) FROM rf_s.mv_u), ARRAY[1, 2], 'the view shows the new base row');
SELECT is((SELECT (status, was_concurrent, sequence, duration_ms >= 0, error_message IS NULL)::text FROM etl.run_refreshes
            WHERE run_id = (SELECT r FROM rf_r) AND refresh_target_id = etl_test.rt('mv_u')),
    '(success,t,1,t,t)', 'etl.run_refreshes records the refresh: success, was_concurrent, duration_ms >= 0');
SELECT is((SELECT (x ->> 'status', (x ->> 'concurrent')::boolean)::text
             FROM etl.refresh_view((SELECT r FROM rf_r), (SELECT tok FROM rf_r), etl_test.rt('mv_plain')) x),
    '(success,f)', 'a view without a unique index is refreshed blocking (concurrent false)');
SELECT is((SELECT n FROM rf_s.mv_plain), 2::bigint, 'that view changed too');
SELECT is((SELECT was_concurrent FROM etl.run_refreshes WHERE run_id = (SELECT r FROM rf_r) AND refresh_target_id = etl_test.rt('mv_plain')),
    false, 'and its record says was_concurrent false');
SELECT is((SELECT (x ->> 'status', x ->> 'error')::text
             FROM etl.refresh_view((SELECT r FROM rf_r), (SELECT tok FROM rf_r), etl_test.rt('mv_missing')) x),
    '(failed,"materialized view rf_s.mv_missing does not exist")', 'a missing view is reported failed, not raised');
SELECT is((SELECT (status, error_message)::text FROM etl.run_refreshes WHERE run_id = (SELECT r FROM rf_r) AND refresh_target_id = etl_test.rt('mv_missing')),
    '(failed,"materialized view rf_s.mv_missing does not exist")', 'and recorded failed');
SELECT etl_test.fin((SELECT r FROM rf_r), '{"status": "success"}');
SELECT throws_ok(format('SELECT etl.refresh_view(%s, %s, %s)', (SELECT r FROM rf_r), (SELECT tok FROM rf_r), etl_test.rt('mv_u')),
    'ETL01', format('stale_token: attempt %s of run %s is not running', (SELECT tok FROM rf_r), (SELECT r FROM rf_r)),
    'refresh_view with a stale token is refused with ETL01');

CREATE TEMP TABLE rf_d AS SELECT etl.run_job('rf_job', dry_run => true) AS r, NULL::bigint AS tok;
UPDATE rf_d SET tok = etl_test.claim_run(r);
INSERT INTO rf_s.base VALUES (3, 'c');
SELECT is((SELECT x ->> 'status' FROM etl.refresh_view((SELECT r FROM rf_d), (SELECT tok FROM rf_d), etl_test.rt('mv_u')) x), 'skipped',
    'a dry run does not refresh');
SELECT is((SELECT array_agg(id ORDER BY id) FROM rf_s.mv_u), ARRAY[1, 2], 'the view is unchanged after the dry run');
SELECT is((SELECT (status, error_message)::text FROM etl.run_refreshes WHERE run_id = (SELECT r FROM rf_d)),
    '(skipped,"dry run: views are not refreshed")', 'the dry run records the refresh skipped');

SELECT * FROM finish();
ROLLBACK;
