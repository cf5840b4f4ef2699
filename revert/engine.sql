-- Revert etl:engine from pg

BEGIN;

DO $cron$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
    PERFORM cron.unschedule(jobid) FROM cron.job WHERE jobname IN ('etl-tick', 'etl-cron-history-purge')
       AND database = pg_catalog.current_database();
  END IF;
END
$cron$;

DROP TRIGGER IF EXISTS no_dependency_cycle ON etl.job_dependencies;
DROP TRIGGER IF EXISTS run_status_transition_is_legal ON etl.runs;
DROP TRIGGER IF EXISTS group_members_follow_leader ON etl.runs;
DROP TRIGGER IF EXISTS runs_notify_runnable ON etl.runs;
DELETE FROM etl.error_classes WHERE job_id IS NULL;

DO $drop$
DECLARE
  v_fn regprocedure;
BEGIN
  FOR v_fn IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'etl' AND p.proname IN (
       '_assert_primary', '_record_transition', '_notify_runnable', '_run_transition_is_legal',
       '_check_run_transition', '_resize_slots', '_free_slots_for_retired', '_is_iso_date', '_is_iso_timestamp', '_validate_params', '_refuse_dependency_cycle',
       '_latest_run_succeeded', '_try_release', '_release_children', '_skip_descendants',
       '_finalize_pipeline', '_replayed_pipeline_run', '_create_pipeline_run', '_select_jobs', 'trigger_pipeline', 'run_job',
       'claim', '_lock_current_attempt', 'heartbeat', 'classify_error', 'backoff_ms', '_finish',
       '_advance_cursor', '_tiebreak_after', '_raise_run_failed_alert', 'finish', 'finish_many', 'cancel',
       'cancel_pipeline', '_require_reason', '_reopen_run', 'retry', 'retry_pipeline', '_refuse_unapproved_retry', '_approval_by_another_user', '_has_items_to_retry', 'set_setting', 'set_job_enabled', 'audit_definition_change', 'next_wakeup', 'next_lease_expiry', 'reap_expired_leases',
       '_fire_schedule', '_reap_expired_leases', 'tick', 'backfill', '_release_roots', 'approve',
       '_cursor_for', '_materialize_items', 'start_items', 'finish_item', '_item_outcome',
       '_form_groups', '_group_claim_members', '_group_follow', '_group_leader_moved',
       '_can_refresh_concurrently', '_notify_if_still_queued', '_critical_paths', '_selection_edges', '_check_outcome', '_attempt_is_current', 'refresh_plan', 'refresh_view',
       '_finish_successes', '_refuse_stale_token')
  LOOP
    EXECUTE pg_catalog.format('DROP FUNCTION %s', v_fn);
  END LOOP;
END
$drop$;

DROP INDEX IF EXISTS etl.job_locks_attempt_idx;
ALTER TABLE etl.job_locks RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
                                 autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold,
                                 autovacuum_vacuum_cost_delay);
DROP INDEX IF EXISTS etl.runs_waiting_upstream_idx;
DROP INDEX IF EXISTS etl.runs_queued_next_attempt_idx;
DROP INDEX IF EXISTS etl.runs_claimable_idx;
ALTER TABLE etl.runs RESET (fillfactor);
ALTER TABLE etl.run_attempts DROP COLUMN run_slot;
DROP TABLE etl.run_slots;
DROP TABLE etl.run_dependencies;

COMMIT;
