-- pgTAP: the shape of schema etl as the specification (shared/seeds) pins it: its tables,
-- their keys and key column types, every index and unique constraint the seeds name (partial,
-- unique and GIN where they say so), table comments, the role hierarchy, deny-by-default on the
-- schema, and the parallel_jobs setting.
-- Run: python -m python_runner.devtools pg_prove DB pgtap/schema_structure.sql

BEGIN;

SELECT plan(306);

\ir lib/schema_helpers.psql

-- ---------------------------------------------------------------------------------------------

-- A role with no grants at all, standing in for PUBLIC (rolled back with the test).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'etl_test_nobody') THEN
    CREATE ROLE etl_test_nobody NOLOGIN;
  END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Schema and tables
-- ---------------------------------------------------------------------------------------------
SELECT has_schema('etl', 'schema etl exists');

SELECT isnt(obj_description('etl'::regnamespace, 'pg_namespace'), NULL,
            'schema etl carries a COMMENT saying what it holds');

SELECT tables_are('etl', ARRAY[
  'settings', 'audit_log',
  'jobs', 'job_dependencies', 'job_tags', 'job_parameters', 'job_groups', 'job_group_members',
  'schedules', 'refresh_targets', 'job_refresh_targets', 'error_classes',
  'pipeline_runs', 'runs', 'run_attempts', 'run_items', 'run_events', 'run_logs', 'job_locks',
  'cursors', 'run_refreshes',
  'alert_channels', 'alert_rules', 'alert_rule_channels', 'dq_checks', 'dq_results',
  'alert_events', 'alert_deliveries', 'service_heartbeats', 'metric_snapshots',
  'run_dependencies', 'run_slots', 'job_lineage'
]::name[], 'schema etl holds exactly the thirty-three tables of the deployed model (thirty-one from the '
           'schema changes, run_dependencies and run_slots from the engine), no more, no fewer');

SELECT has_table('etl', t::name, format('table etl.%s exists', t))
  FROM unnest(ARRAY[
    'settings', 'audit_log',
    'jobs', 'job_dependencies', 'job_tags', 'job_parameters', 'job_groups', 'job_group_members',
    'schedules', 'refresh_targets', 'job_refresh_targets', 'error_classes',
    'pipeline_runs', 'runs', 'run_attempts', 'run_items', 'run_events', 'run_logs', 'job_locks',
    'cursors', 'run_refreshes',
    'alert_channels', 'alert_rules', 'alert_rule_channels', 'dq_checks', 'dq_results',
    'alert_events', 'alert_deliveries', 'service_heartbeats', 'metric_snapshots',
    'run_dependencies', 'run_slots', 'job_lineage'
  ]) WITH ORDINALITY AS x(t, ord)
 ORDER BY ord;

-- ---------------------------------------------------------------------------------------------
-- Primary keys (job_tags is keyed by its UNIQUE NOT NULL (job_id, tag) instead; see below)
-- ---------------------------------------------------------------------------------------------
SELECT has_pk('etl', t::name, format('etl.%s has a primary key', t))
  FROM (VALUES (1, 'settings'), (2, 'audit_log'), (3, 'jobs'), (4, 'job_dependencies'),
               (5, 'job_parameters'), (6, 'job_groups'), (7, 'job_group_members'), (8, 'schedules'),
               (9, 'refresh_targets'), (10, 'job_refresh_targets'), (11, 'error_classes'),
               (12, 'pipeline_runs'), (13, 'runs'), (14, 'run_attempts'), (15, 'run_items'),
               (16, 'run_events'), (17, 'run_logs'), (18, 'job_locks'), (19, 'cursors'),
               (20, 'run_refreshes'), (21, 'alert_channels'), (22, 'alert_rules'),
               (23, 'alert_rule_channels'), (24, 'dq_checks'), (25, 'dq_results'),
               (26, 'alert_events'), (27, 'alert_deliveries'), (28, 'service_heartbeats'),
               (29, 'metric_snapshots'), (30, 'run_dependencies'), (31, 'run_slots')) AS v(ord, t)
 ORDER BY ord;

SELECT col_is_pk('etl', t::name, cols::name[],
                 format('the primary key of etl.%s is (%s)', t, array_to_string(cols, ', ')))
  FROM (VALUES (1, 'settings', ARRAY['name']),
               (2, 'audit_log', ARRAY['audit_id']),
               (3, 'jobs', ARRAY['job_id']),
               (4, 'job_dependencies', ARRAY['parent_job_id', 'child_job_id']),
               (5, 'job_parameters', ARRAY['parameter_id']),
               (6, 'job_groups', ARRAY['group_id']),
               (7, 'job_group_members', ARRAY['group_id', 'job_id']),
               (8, 'schedules', ARRAY['schedule_id']),
               (9, 'refresh_targets', ARRAY['refresh_target_id']),
               (10, 'job_refresh_targets', ARRAY['job_id', 'refresh_target_id']),
               (11, 'error_classes', ARRAY['error_class_id']),
               (12, 'pipeline_runs', ARRAY['pipeline_run_id']),
               (13, 'runs', ARRAY['run_id']),
               (14, 'run_attempts', ARRAY['attempt_id']),
               (15, 'run_items', ARRAY['item_id']),
               (16, 'run_events', ARRAY['event_id']),
               (17, 'run_logs', ARRAY['log_id']),
               (18, 'job_locks', ARRAY['lock_id']),
               (19, 'cursors', ARRAY['cursor_id']),
               (20, 'run_refreshes', ARRAY['run_refresh_id']),
               (21, 'alert_channels', ARRAY['channel_id']),
               (22, 'alert_rules', ARRAY['rule_id']),
               (23, 'alert_rule_channels', ARRAY['rule_id', 'channel_id']),
               (24, 'dq_checks', ARRAY['check_id']),
               (25, 'dq_results', ARRAY['result_id']),
               (26, 'alert_events', ARRAY['alert_event_id']),
               (27, 'alert_deliveries', ARRAY['delivery_id']),
               (28, 'service_heartbeats', ARRAY['instance_id']),
               (29, 'metric_snapshots', ARRAY['snapshot_id']),
               (30, 'run_dependencies', ARRAY['parent_run_id', 'child_run_id']),
               (31, 'run_slots', ARRAY['slot_no'])) AS v(ord, t, cols)
 ORDER BY ord;

SELECT col_not_null('etl', 'job_tags', 'job_id', 'job_tags.job_id is NOT NULL, half of the tag key');
SELECT col_not_null('etl', 'job_tags', 'tag', 'job_tags.tag is NOT NULL, half of the tag key');

-- ---------------------------------------------------------------------------------------------
-- Key column types: bigint ids, jsonb parameters and payloads, timestamptz times
-- ---------------------------------------------------------------------------------------------
SELECT col_type_is('etl', t::name, c::name, ty,
                   format('etl.%s.%s is %s', t, c, ty))
  FROM (VALUES
    (1, 'jobs', 'job_id', 'bigint'),
    (2, 'jobs', 'priority', 'integer'),
    (3, 'jobs', 'items_source', 'jsonb'),
    (4, 'jobs', 'config', 'jsonb'),
    (5, 'jobs', 'backoff_base', 'interval'),
    (6, 'job_dependencies', 'parent_job_id', 'bigint'),
    (7, 'job_dependencies', 'child_job_id', 'bigint'),
    (8, 'schedules', 'schedule_id', 'bigint'),
    (9, 'schedules', 'job_id', 'bigint'),
    (10, 'schedules', 'params', 'jsonb'),
    (11, 'schedules', 'next_run_at', 'timestamp with time zone'),
    (12, 'pipeline_runs', 'pipeline_run_id', 'bigint'),
    (13, 'pipeline_runs', 'schedule_id', 'bigint'),
    (14, 'pipeline_runs', 'params', 'jsonb'),
    (15, 'pipeline_runs', 'dependency_snapshot', 'jsonb'),
    (16, 'pipeline_runs', 'logical_date', 'timestamp with time zone'),
    (17, 'pipeline_runs', 'approved_at', 'timestamp with time zone'),
    (18, 'runs', 'run_id', 'bigint'),
    (19, 'runs', 'pipeline_run_id', 'bigint'),
    (20, 'runs', 'job_id', 'bigint'),
    (21, 'runs', 'correlation_id', 'uuid'),
    (22, 'runs', 'params', 'jsonb'),
    (23, 'runs', 'parameter_fingerprint', 'text'),
    (24, 'runs', 'logical_date', 'timestamp with time zone'),
    (25, 'runs', 'scheduled_at', 'timestamp with time zone'),
    (26, 'runs', 'started_at', 'timestamp with time zone'),
    (27, 'runs', 'ended_at', 'timestamp with time zone'),
    (28, 'runs', 'duration_ms', 'bigint'),
    (29, 'runs', 'records_read', 'bigint'),
    (30, 'runs', 'records_written', 'bigint'),
    (31, 'runs', 'metrics', 'jsonb'),
    (32, 'runs', 'lineage', 'jsonb'),
    (33, 'run_attempts', 'attempt_id', 'bigint'),
    (34, 'run_attempts', 'run_id', 'bigint'),
    (35, 'run_attempts', 'attempt_no', 'integer'),
    (36, 'run_attempts', 'lease_expires_at', 'timestamp with time zone'),
    (37, 'run_attempts', 'error_detail', 'jsonb'),
    (38, 'run_items', 'item_id', 'bigint'),
    (39, 'run_items', 'run_id', 'bigint'),
    (40, 'run_items', 'params', 'jsonb'),
    (41, 'run_items', 'param_hash', 'text'),
    (42, 'run_events', 'event_id', 'bigint'),
    (43, 'run_events', 'run_id', 'bigint'),
    (44, 'run_events', 'ts', 'timestamp with time zone'),
    (45, 'run_events', 'detail', 'jsonb'),
    (46, 'run_logs', 'log_id', 'bigint'),
    (47, 'run_logs', 'run_id', 'bigint'),
    (48, 'run_logs', 'ts', 'timestamp with time zone'),
    (49, 'run_logs', 'fields', 'jsonb'),
    (50, 'job_locks', 'lock_id', 'bigint'),
    (51, 'job_locks', 'run_id', 'bigint'),
    (52, 'job_locks', 'expires_at', 'timestamp with time zone'),
    (53, 'cursors', 'cursor_id', 'bigint'),
    (54, 'cursors', 'job_id', 'bigint'),
    (55, 'cursors', 'params', 'jsonb'),
    (56, 'cursors', 'cursor_value', 'timestamp with time zone'),
    (57, 'settings', 'value', 'jsonb'),
    (58, 'settings', 'min_value', 'numeric'),
    (59, 'settings', 'max_value', 'numeric'),
    (60, 'audit_log', 'audit_id', 'bigint'),
    (61, 'audit_log', 'at', 'timestamp with time zone'),
    (62, 'audit_log', 'details', 'jsonb'),
    (63, 'alert_events', 'alert_event_id', 'bigint'),
    (64, 'alert_events', 'run_id', 'bigint'),
    (65, 'alert_events', 'fired_at', 'timestamp with time zone'),
    (66, 'alert_events', 'details', 'jsonb'),
    (67, 'dq_results', 'result_id', 'bigint'),
    (68, 'dq_results', 'details', 'jsonb'),
    (69, 'dq_results', 'created_at', 'timestamp with time zone'),
    (70, 'metric_snapshots', 'snapshot_id', 'bigint'),
    (71, 'metric_snapshots', 'labels', 'jsonb'),
    (72, 'metric_snapshots', 'captured_at', 'timestamp with time zone'),
    (73, 'metric_snapshots', 'value', 'double precision'),
    (74, 'service_heartbeats', 'started_at', 'timestamp with time zone'),
    (75, 'service_heartbeats', 'last_seen', 'timestamp with time zone')
  ) AS v(ord, t, c, ty)
 ORDER BY ord;

-- Conventions over every column of every table, so a new table cannot slip past them.
SELECT is_empty($$
  SELECT c.relname || '.' || a.attname
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'etl'::regnamespace AND c.relkind IN ('r', 'p')
     AND a.attnum > 0 AND NOT a.attisdropped
     AND a.atttypid = 'timestamp without time zone'::regtype
$$, 'no column in schema etl is a timestamp without time zone: every time is timestamptz (UTC)');

SELECT is_empty($$
  SELECT c.relname || '.' || a.attname
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'etl'::regnamespace AND c.relkind IN ('r', 'p')
     AND a.attnum > 0 AND NOT a.attisdropped
     AND a.atttypid = 'json'::regtype
$$, 'no column in schema etl is json: structured values are jsonb');

SELECT is_empty($$
  SELECT c.relname || '.' || a.attname
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'etl'::regnamespace AND c.relkind IN ('r', 'p')
     AND a.attnum > 0 AND NOT a.attisdropped
     AND (a.attidentity <> '' OR a.attname LIKE '%\_id')
     AND a.atttypid IN ('smallint'::regtype, 'integer'::regtype)
$$, 'no identity column or *_id column in schema etl is smallint or integer: surrogate keys are bigint');

-- ---------------------------------------------------------------------------------------------
-- Indexes the seeds name, with their columns (INCLUDE columns listed after the keys)
-- ---------------------------------------------------------------------------------------------
SELECT has_index('etl', t::name, i::name, cols::name[],
                 format('index %s exists on etl.%s (%s): %s', i, t, array_to_string(cols, ', '), why))
  FROM (VALUES
    (1, 'jobs', 'job_slug_unique', ARRAY['slug'], 'seed 000 UNIQUE(slug)'),
    (2, 'jobs', 'job_sql_routine_unique', ARRAY['sql_schema', 'sql_routine'], 'seed 004 unique procedure (schema_name, procedure_name)'),
    (3, 'schedules', 'one_active_schedule_per_job', ARRAY['job_id'], 'seed 000 UNIQUE(job_id) WHERE is_active'),
    (4, 'schedules', 'schedules_job_next_run_idx', ARRAY['job_id', 'next_run_at'], 'seed 000 INDEX(job_id, next_run_at)'),
    (5, 'job_dependencies', 'job_dependencies_child_idx', ARRAY['child_job_id'], 'seed 000/004 INDEX(child_job_id)'),
    (6, 'job_dependencies', 'job_dependencies_parent_idx', ARRAY['parent_job_id'], 'seed 000/004 INDEX(parent_job_id)'),
    (7, 'job_tags', 'job_tag_unique', ARRAY['job_id', 'tag'], 'seed 000 UNIQUE(job_id, tag)'),
    (8, 'job_parameters', 'job_parameters_job_name_idx', ARRAY['job_id', 'name'], 'seed 004 parameter (procedure_id, name)'),
    (9, 'job_group_members', 'group_member_sequence_unique', ARRAY['group_id', 'sequence'], 'seed 004 unique group_member (group_id, sequence)'),
    (10, 'refresh_targets', 'refresh_target_unique', ARRAY['schema_name', 'view_name'], 'seed 004 unique refresh_target (schema_name, view_name)'),
    (11, 'job_refresh_targets', 'job_refresh_targets_job_sequence_idx', ARRAY['job_id', 'sequence'], 'seed 004 link (procedure_id, sequence)'),
    (12, 'pipeline_runs', 'pipeline_run_idempotency_key_unique', ARRAY['idempotency_key'], 'seed 004 unique run.idempotency_key'),
    (13, 'pipeline_runs', 'one_pipeline_run_per_fire_time', ARRAY['schedule_id', 'logical_date'], 'one pipeline run per schedule fire time'),
    (14, 'pipeline_runs', 'pipeline_runs_status_started_idx', ARRAY['status', 'started_at'], 'seed 004 run (status, started_at)'),
    (15, 'pipeline_runs', 'pipeline_runs_dependency_snapshot_gin', ARRAY['dependency_snapshot'], 'seed 004 GIN on dependency_snapshot'),
    (16, 'pipeline_runs', 'pipeline_runs_params_gin', ARRAY['params'], 'seed 004 GIN on parameters'),
    (17, 'runs', 'run_correlation_id_unique', ARRAY['correlation_id'], 'seed 000 UNIQUE(correlation_id)'),
    (18, 'runs', 'one_run_per_job_per_pipeline_run', ARRAY['pipeline_run_id', 'job_id'], 'seed 004 one step per procedure and run'),
    (19, 'runs', 'runs_job_scheduled_idx', ARRAY['job_id', 'scheduled_at'], 'seed 000 INDEX(job_id, scheduled_at)'),
    (20, 'runs', 'runs_job_started_idx', ARRAY['job_id', 'started_at', 'run_id', 'status', 'duration_ms'], 'seed 000/001 INDEX(job_id, started_at DESC)'),
    (21, 'runs', 'runs_status_scheduled_idx', ARRAY['status', 'scheduled_at'], 'seed 000 INDEX(status, scheduled_at)'),
    (22, 'runs', 'runs_job_status_ended_idx', ARRAY['job_id', 'status', 'ended_at'], 'seed 000 INDEX(job_id, status, ended_at)'),
    (23, 'runs', 'runs_fingerprint_idx', ARRAY['parameter_fingerprint'], 'seed 000 INDEX(parameter_fingerprint)'),
    (24, 'runs', 'runs_status_started_idx', ARRAY['status', 'started_at'], 'seed 001 idx(status, started_at desc)'),
    (25, 'runs', 'runs_status_ended_idx', ARRAY['status', 'ended_at'], 'seed 003 job_runs(status, finished_at DESC)'),
    (26, 'runs', 'runs_pipeline_status_idx', ARRAY['pipeline_run_id', 'status', 'started_at'], 'seed 004 step (run_id, status, started_at)'),
    (27, 'runs', 'runs_failed_ended_idx', ARRAY['ended_at', 'job_id', 'error_category', 'is_transient', 'run_id'], 'seed 003 partial index on failed runs'),
    (28, 'run_attempts', 'attempt_no_unique_per_run', ARRAY['run_id', 'attempt_no'], 'seed 001 UNIQUE(run_id, attempt_no)'),
    (29, 'run_attempts', 'run_attempts_run_ended_idx', ARRAY['run_id', 'ended_at'], 'seed 001 idx(run_id, ended_at desc)'),
    (30, 'run_items', 'item_no_unique_per_run', ARRAY['run_id', 'item_no'], 'seed 001 UNIQUE(run_id, item_no)'),
    (31, 'run_items', 'item_params_unique_per_run', ARRAY['run_id', 'param_hash'], 'seed 001 UNIQUE(run_id, param_hash)'),
    (32, 'run_items', 'run_items_status_idx', ARRAY['status'], 'seed 001/003 idx(status)'),
    (33, 'run_items', 'run_items_run_ended_idx', ARRAY['run_id', 'ended_at'], 'seed 001 idx(run_id, ended_at desc)'),
    (34, 'run_events', 'run_events_run_ts_idx', ARRAY['run_id', 'ts'], 'seed 000 INDEX(run_id, ts)'),
    (35, 'run_events', 'run_events_type_idx', ARRAY['event_type'], 'seed 000 INDEX(event_type)'),
    (36, 'run_logs', 'run_logs_run_ts_idx', ARRAY['run_id', 'ts'], 'seed 001 idx(run_id, ts)'),
    (37, 'run_logs', 'run_logs_level_ts_idx', ARRAY['level', 'ts'], 'seed 001 idx(level, ts)'),
    (38, 'run_logs', 'run_logs_errors_idx', ARRAY['ts', 'run_id'], 'seed 003 partial index on ERROR logs'),
    (39, 'run_logs', 'run_logs_fields_gin', ARRAY['fields'], 'seed 001/003 GIN(fields)'),
    (40, 'job_locks', 'one_active_lock_per_key', ARRAY['concurrency_key'], 'seed 000 UNIQUE(concurrency_key) WHERE status = active'),
    (41, 'job_locks', 'job_locks_expires_idx', ARRAY['expires_at'], 'seed 000 INDEX(expires_at)'),
    (42, 'cursors', 'cursor_unique_per_job_params', ARRAY['job_id', 'param_hash'], 'seed 001 UNIQUE(job_id, param_hash)'),
    (43, 'cursors', 'cursors_job_value_idx', ARRAY['job_id', 'cursor_value'], 'seed 001 idx(job_id, cursor_value desc)'),
    (44, 'cursors', 'cursors_params_gin', ARRAY['params'], 'seed 001 GIN params'),
    (45, 'dq_results', 'dq_results_check_created_idx', ARRAY['check_id', 'created_at'], 'seed 003 dq_check_results(check_id, created_at DESC)'),
    (46, 'dq_results', 'dq_results_violations_idx', ARRAY['created_at'], 'seed 003 partial index on warn/fail results'),
    (47, 'dq_results', 'dq_results_details_gin', ARRAY['details'], 'seed 003 GIN(details)'),
    (48, 'alert_events', 'one_open_alert_per_dedupe_key', ARRAY['dedupe_key'], 'seed 003 deduplication of open alerts'),
    (49, 'alert_events', 'alert_events_status_fired_idx', ARRAY['status', 'fired_at'], 'seed 003 alert_events(status, fired_at DESC)'),
    (50, 'alert_events', 'alert_events_dedupe_key_idx', ARRAY['dedupe_key'], 'seed 003 alert_events(dedupe_key)'),
    (51, 'alert_events', 'alert_events_run_idx', ARRAY['run_id'], 'seed 000 alerts INDEX(run_id)'),
    (52, 'alert_deliveries', 'alert_deliveries_channel_sent_idx', ARRAY['channel_id', 'sent_at'], 'seed 000 alerts INDEX(channel, sent_at)'),
    (53, 'metric_snapshots', 'metric_snapshots_name_time_idx', ARRAY['metric_name', 'captured_at'], 'persisted metrics by name and time'),
    (54, 'metric_snapshots', 'metric_snapshots_labels_gin', ARRAY['labels'], 'seed 003 GIN metric_snapshots(labels)')
  ) AS v(ord, t, i, cols, why)
 ORDER BY ord;

-- Uniqueness: every index that enforces a seed's uniqueness rule is a unique index.
SELECT index_is_unique('etl', t::name, i::name, format('index %s on etl.%s is unique', i, t))
  FROM (VALUES
    (1, 'jobs', 'job_slug_unique'),
    (2, 'jobs', 'job_sql_routine_unique'),
    (3, 'schedules', 'one_active_schedule_per_job'),
    (4, 'job_tags', 'job_tag_unique'),
    (5, 'job_group_members', 'group_member_sequence_unique'),
    (6, 'refresh_targets', 'refresh_target_unique'),
    (7, 'pipeline_runs', 'pipeline_run_idempotency_key_unique'),
    (8, 'pipeline_runs', 'one_pipeline_run_per_fire_time'),
    (9, 'runs', 'run_correlation_id_unique'),
    (10, 'runs', 'one_run_per_job_per_pipeline_run'),
    (11, 'run_attempts', 'attempt_no_unique_per_run'),
    (12, 'run_items', 'item_no_unique_per_run'),
    (13, 'run_items', 'item_params_unique_per_run'),
    (14, 'job_locks', 'one_active_lock_per_key'),
    (15, 'cursors', 'cursor_unique_per_job_params'),
    (16, 'alert_events', 'one_open_alert_per_dedupe_key')
  ) AS v(ord, t, i)
 ORDER BY ord;

-- The whole-table uniqueness rules are table constraints (usable by ON CONFLICT ON CONSTRAINT).
SELECT col_is_unique('etl', t::name, cols::name[],
                     format('etl.%s has unique constraint %s on (%s)', t, con, array_to_string(cols, ', ')))
  FROM (VALUES
    (1, 'jobs', 'job_slug_unique', ARRAY['slug']),
    (2, 'job_tags', 'job_tag_unique', ARRAY['job_id', 'tag']),
    (3, 'job_group_members', 'group_member_sequence_unique', ARRAY['group_id', 'sequence']),
    (4, 'refresh_targets', 'refresh_target_unique', ARRAY['schema_name', 'view_name']),
    (5, 'pipeline_runs', 'pipeline_run_idempotency_key_unique', ARRAY['idempotency_key']),
    (6, 'runs', 'run_correlation_id_unique', ARRAY['correlation_id']),
    (7, 'runs', 'one_run_per_job_per_pipeline_run', ARRAY['pipeline_run_id', 'job_id']),
    (8, 'run_attempts', 'attempt_no_unique_per_run', ARRAY['run_id', 'attempt_no']),
    (9, 'run_items', 'item_no_unique_per_run', ARRAY['run_id', 'item_no']),
    (10, 'run_items', 'item_params_unique_per_run', ARRAY['run_id', 'param_hash']),
    (11, 'cursors', 'cursor_unique_per_job_params', ARRAY['job_id', 'param_hash'])
  ) AS v(ord, t, con, cols)
 ORDER BY ord;

SELECT is(
  (SELECT array_agg(conname::text ORDER BY conname)
     FROM pg_catalog.pg_constraint
    WHERE connamespace = 'etl'::regnamespace AND contype = 'u'
      AND conname IN ('job_slug_unique', 'job_tag_unique', 'group_member_sequence_unique',
                      'refresh_target_unique', 'pipeline_run_idempotency_key_unique',
                      'run_correlation_id_unique', 'one_run_per_job_per_pipeline_run',
                      'attempt_no_unique_per_run', 'item_no_unique_per_run',
                      'item_params_unique_per_run', 'cursor_unique_per_job_params')),
  ARRAY['attempt_no_unique_per_run', 'cursor_unique_per_job_params', 'group_member_sequence_unique',
        'item_no_unique_per_run', 'item_params_unique_per_run', 'job_slug_unique', 'job_tag_unique',
        'one_run_per_job_per_pipeline_run', 'pipeline_run_idempotency_key_unique',
        'refresh_target_unique', 'run_correlation_id_unique'],
  'the unique constraints carry the names of the rules they enforce, so a violation names the rule');

-- Partial indexes: the WHERE clause is the rule (one ACTIVE schedule, one ACTIVE lock ...).
SELECT is(pg_catalog.pg_get_expr(x.indpred, x.indrelid), pred,
          format('index %s covers only rows where %s', i, pred))
  FROM (VALUES
    (1, 'one_active_schedule_per_job', 'is_active'),
    (2, 'one_active_lock_per_key', '(status = ''active''::text)'),
    (3, 'one_pipeline_run_per_fire_time', '(trigger_type = ''schedule''::text)'),
    (4, 'one_open_alert_per_dedupe_key', '(status <> ''resolved''::text)'),
    (5, 'job_sql_routine_unique', '(kind = ''sql''::text)'),
    (6, 'runs_failed_ended_idx', '(status = ''failed''::text)'),
    (7, 'run_logs_errors_idx', '(level = ''ERROR''::text)'),
    (8, 'dq_results_violations_idx', '(status = ANY (ARRAY[''warn''::text, ''fail''::text]))')
  ) AS v(ord, i, pred)
  LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = to_regclass('etl.' || v.i)
 ORDER BY ord;

-- Newest-first history indexes keep their DESC key, as the seeds write them.
SELECT ok(EXISTS (
            SELECT FROM pg_catalog.pg_index x
             CROSS JOIN LATERAL unnest(x.indkey::int2[], x.indoption::int2[]) AS k(attnum, opt)
              JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             WHERE x.indexrelid = to_regclass('etl.' || v.i)
               AND a.attname = v.col AND (k.opt & 1) = 1),
          format('index %s orders %s descending (newest first)', i, col))
  FROM (VALUES
    (1, 'runs_job_started_idx', 'started_at'),
    (2, 'runs_status_started_idx', 'started_at'),
    (3, 'runs_status_ended_idx', 'ended_at'),
    (4, 'runs_failed_ended_idx', 'ended_at'),
    (5, 'run_attempts_run_ended_idx', 'ended_at'),
    (6, 'run_items_run_ended_idx', 'ended_at'),
    (7, 'cursors_job_value_idx', 'cursor_value'),
    (8, 'run_logs_errors_idx', 'ts'),
    (9, 'dq_results_check_created_idx', 'created_at'),
    (10, 'dq_results_violations_idx', 'created_at'),
    (11, 'alert_events_status_fired_idx', 'fired_at')
  ) AS v(ord, i, col)
 ORDER BY ord;

-- JSONB GIN indexes, with the compact jsonb_path_ops operator class (containment queries).
SELECT index_is_type('etl', t::name, i::name, 'gin', format('index %s on etl.%s is a GIN index', i, t))
  FROM (VALUES
    (1, 'run_logs', 'run_logs_fields_gin'),
    (2, 'metric_snapshots', 'metric_snapshots_labels_gin'),
    (3, 'dq_results', 'dq_results_details_gin'),
    (4, 'cursors', 'cursors_params_gin'),
    (5, 'pipeline_runs', 'pipeline_runs_dependency_snapshot_gin')
  ) AS v(ord, t, i)
 ORDER BY ord;

SELECT is((SELECT o.opcname::text
             FROM pg_catalog.pg_index x
             JOIN pg_catalog.pg_opclass o ON o.oid = x.indclass[0]
            WHERE x.indexrelid = to_regclass('etl.' || v.i)),
          'jsonb_path_ops',
          format('GIN index %s uses the jsonb_path_ops operator class', i))
  FROM (VALUES
    (1, 'run_logs_fields_gin'),
    (2, 'metric_snapshots_labels_gin'),
    (3, 'dq_results_details_gin'),
    (4, 'cursors_params_gin'),
    (5, 'pipeline_runs_dependency_snapshot_gin')
  ) AS v(ord, i)
 ORDER BY ord;

-- ---------------------------------------------------------------------------------------------
-- Catalog: every table says what it is for
-- ---------------------------------------------------------------------------------------------
SELECT is_empty($$
  SELECT c.relname
    FROM pg_catalog.pg_class c
   WHERE c.relnamespace = 'etl'::regnamespace
     AND c.relkind IN ('r', 'p')
     AND coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '') = ''
$$, 'every table in schema etl has a COMMENT');

-- ---------------------------------------------------------------------------------------------
-- Roles and privileges: viewer < operator < admin, deny by default
-- ---------------------------------------------------------------------------------------------
SELECT has_role('etl_viewer', 'role etl_viewer exists');
SELECT has_role('etl_operator', 'role etl_operator exists');
SELECT has_role('etl_admin', 'role etl_admin exists');
SELECT is_member_of('etl_viewer', ARRAY['etl_operator']::name[],
                    'etl_operator is a member of etl_viewer (an operator can do what a viewer can)');
SELECT is_member_of('etl_operator', ARRAY['etl_admin']::name[],
                    'etl_admin is a member of etl_operator (an admin can do what an operator can)');
SELECT ok(pg_catalog.pg_has_role('etl_admin', 'etl_viewer', 'USAGE'),
          'etl_admin inherits the rights of etl_viewer through etl_operator');
SELECT ok(NOT pg_catalog.pg_has_role('etl_viewer', 'etl_operator', 'MEMBER'),
          'the hierarchy runs one way: etl_viewer does not hold the rights of etl_operator');

SELECT ok(NOT has_schema_privilege('etl_test_nobody', 'etl', 'USAGE'),
          'a role with no grants (what PUBLIC gives) has no USAGE on schema etl');
SELECT ok(NOT has_schema_privilege('etl_test_nobody', 'etl', 'CREATE'),
          'a role with no grants cannot create objects in schema etl');
SELECT is_empty($$
  SELECT a.privilege_type
    FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a
   WHERE n.nspname = 'etl' AND a.grantee = 0
$$, 'the ACL of schema etl grants nothing to PUBLIC');
SELECT ok(has_schema_privilege('etl_viewer', 'etl', 'USAGE'),
          'etl_viewer has USAGE on schema etl');
SELECT ok(NOT has_table_privilege('etl_test_nobody', 'etl.runs', 'SELECT'),
          'a role with no grants cannot read run history');
SELECT ok(has_table_privilege('etl_viewer', 'etl.runs', 'SELECT'),
          'etl_viewer can read run history (default privileges grant SELECT on etl tables)');

-- ---------------------------------------------------------------------------------------------
-- Settings: ETL_PARALLEL_JOBS
-- ---------------------------------------------------------------------------------------------
SELECT is((SELECT count(*)::int FROM etl.settings WHERE name = 'parallel_jobs'), 1,
          'settings holds one parallel_jobs row (ETL_PARALLEL_JOBS)');
SELECT is((SELECT pg_catalog.jsonb_typeof(value) FROM etl.settings WHERE name = 'parallel_jobs'), 'number',
          'parallel_jobs is a JSON number');
SELECT ok((SELECT min_value IS NOT NULL AND max_value IS NOT NULL
                  AND (value #>> '{}')::numeric BETWEEN min_value AND max_value
             FROM etl.settings WHERE name = 'parallel_jobs'),
          'parallel_jobs has bounds and its value lies between min_value and max_value');

SELECT * FROM finish();
ROLLBACK;
