-- Verify etl:settings on pg

BEGIN;

SELECT name, value, description, min_value, max_value, updated_at, updated_by
  FROM etl.settings WHERE false;
SELECT 1 / pg_catalog.count(*)::int FROM etl.settings WHERE name = 'parallel_jobs';
SELECT audit_id, at, actor, action, target_type, target_id, reason, details
  FROM etl.audit_log WHERE false;

ROLLBACK;
