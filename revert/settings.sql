-- Revert etl:settings from pg

BEGIN;

DROP TABLE etl.audit_log;
DROP TABLE etl.settings;

COMMIT;
