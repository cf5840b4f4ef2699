-- Revert etl:catalog from pg

BEGIN;

DROP TABLE IF EXISTS etl.job_lineage;
DROP TABLE etl.error_classes;
DROP TABLE etl.job_refresh_targets;
DROP TABLE etl.refresh_targets;
DROP TABLE etl.schedules;
DROP FUNCTION etl._schedule_on_its_cron();
DROP TABLE etl.job_group_members;
DROP TABLE etl.job_groups;
DROP TABLE etl.job_parameters;
DROP TABLE etl.job_tags;
DROP TABLE etl.job_dependencies;
DROP TABLE etl.jobs;

COMMIT;
