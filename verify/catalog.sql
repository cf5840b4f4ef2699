-- Verify etl:catalog on pg

BEGIN;

SELECT job_id, slug, name, kind, target, sql_schema, sql_routine, layer, role, enabled, priority,
       max_attempts, backoff_base, backoff_factor, backoff_cap, max_retry_elapsed, timeout,
       lease_duration, concurrency_key, concurrency_limit, supports_params, items_source,
       item_concurrency, allow_partial_success, supports_incremental, incremental_strategy,
       cursor_lookback, cursor_tiebreak_key, allow_full_refresh, upstream_wait_limit, config
  FROM etl.jobs WHERE false;
SELECT parent_job_id, child_job_id, dependency_type FROM etl.job_dependencies WHERE false;
SELECT job_id, tag FROM etl.job_tags WHERE false;
SELECT parameter_id, job_id, name, mode, data_type, required, default_value FROM etl.job_parameters WHERE false;
SELECT group_id, name FROM etl.job_groups WHERE false;
SELECT group_id, job_id, sequence FROM etl.job_group_members WHERE false;
SELECT schedule_id, job_id, cron_expr, timezone, is_active, misfire_policy, overlap_policy, next_run_at
  FROM etl.schedules WHERE false;
SELECT refresh_target_id, schema_name, view_name, refresh_mode FROM etl.refresh_targets WHERE false;
SELECT job_id, refresh_target_id, sequence, policy FROM etl.job_refresh_targets WHERE false;
SELECT error_class_id, job_id, match_kind, match_value, category, is_transient FROM etl.error_classes WHERE false;
SELECT job_id, relation, access, derived_from FROM etl.job_lineage WHERE false;
SELECT 1 / pg_catalog.count(*)::int FROM pg_catalog.pg_indexes
 WHERE schemaname = 'etl' AND indexname = 'one_active_schedule_per_job';
SELECT 1 / pg_catalog.count(*)::int FROM pg_catalog.pg_trigger
 WHERE tgrelid = 'etl.schedules'::regclass AND tgname = 'schedule_on_its_cron';

ROLLBACK;
