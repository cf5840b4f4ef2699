-- Verify etl:runs on pg

BEGIN;

SELECT pipeline_run_id, idempotency_key, trigger_type, schedule_id, logical_date, status, mode,
       transaction_scope, dry_run, params, selection, dependency_snapshot, full_refresh_confirmed,
       approved_by, approved_at, approval_reason
  FROM etl.pipeline_runs WHERE false;
SELECT run_id, pipeline_run_id, job_id, correlation_id, status, mode, dry_run, params,
       parameter_fingerprint, priority, logical_date, scheduled_at, next_attempt_at, started_at,
       ended_at, duration_ms, attempt_count, error_category, is_transient, error_type,
       records_read, records_written, page_count, rows_affected, metrics, lineage
  FROM etl.runs WHERE false;
SELECT attempt_id, run_id, attempt_no, status, worker_id, lease_expires_at, backoff_ms FROM etl.run_attempts WHERE false;
SELECT item_id, run_id, item_no, params, param_hash, status, duplicate_count FROM etl.run_items WHERE false;
SELECT event_id, run_id, ts, event_type, from_status, to_status, actor, detail FROM etl.run_events WHERE false;
SELECT log_id, ts, level, message, run_id, attempt_id, item_id, fields, redacted FROM etl.run_logs WHERE false;
SELECT lock_id, concurrency_key, pool_key, slot_no, job_id, run_id, status, expires_at FROM etl.job_locks WHERE false;
SELECT cursor_id, job_id, param_hash, strategy, cursor_value, tiebreak_value FROM etl.cursors WHERE false;
SELECT run_refresh_id, run_id, refresh_target_id, status, duration_ms FROM etl.run_refreshes WHERE false;
SELECT 1 / pg_catalog.count(*)::int FROM pg_catalog.pg_indexes
 WHERE schemaname = 'etl' AND indexname = 'one_active_lock_per_key';

ROLLBACK;
