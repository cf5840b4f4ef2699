-- Verify etl:engine on pg

BEGIN;

SELECT pipeline_run_id, parent_run_id, child_run_id, dependency_type FROM etl.run_dependencies WHERE false;
SELECT slot_no, run_id, retired FROM etl.run_slots WHERE false;
SELECT 'etl.run_job(text, jsonb, boolean, text, boolean, uuid, text, jsonb, timestamptz, boolean)'::regprocedure,
       'etl.trigger_pipeline(text[], text[], text, boolean, jsonb, boolean, text, text, text, text, jsonb, timestamptz, boolean)'::regprocedure,
       'etl.claim(text, integer)'::regprocedure, 'etl.heartbeat(bigint, bigint)'::regprocedure,
       'etl.finish(bigint, bigint, jsonb)'::regprocedure, 'etl.finish_many(jsonb)'::regprocedure,
       'etl.cancel(bigint, text)'::regprocedure, 'etl.retry(bigint, text)'::regprocedure,
       'etl.retry_pipeline(bigint, text)'::regprocedure, 'etl.tick()'::regprocedure,
       'etl.set_setting(text, jsonb, text)'::regprocedure, 'etl.next_wakeup()'::regprocedure,
       'etl.set_job_enabled(text, boolean, text)'::regprocedure,
       'etl.backfill(text, timestamptz, timestamptz, text, boolean, boolean, text)'::regprocedure,
       'etl.approve(bigint, text, text)'::regprocedure, 'etl.start_items(bigint, bigint, jsonb)'::regprocedure,
       'etl.finish_item(bigint, bigint, bigint, jsonb)'::regprocedure,
       'etl.refresh_plan(bigint, bigint, boolean)'::regprocedure,
       'etl.refresh_view(bigint, bigint, bigint)'::regprocedure;
SELECT 1 / pg_catalog.count(*)::int FROM pg_catalog.pg_trigger WHERE tgname = 'run_status_transition_is_legal';
SELECT 1 / pg_catalog.count(*)::int FROM pg_catalog.pg_trigger WHERE tgname = 'no_dependency_cycle';

ROLLBACK;
