-- Revert etl:runs from pg

BEGIN;

DROP TABLE etl.run_refreshes;
DROP TABLE etl.cursors;
DROP TABLE etl.job_locks;
DROP TABLE etl.run_logs;
DROP TABLE etl.run_events;
DROP TABLE etl.run_items;
DROP TABLE etl.run_attempts;
DROP TABLE etl.runs;
DROP TABLE etl.pipeline_runs;

COMMIT;
