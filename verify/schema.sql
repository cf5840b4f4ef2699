-- Verify etl:schema on pg

BEGIN;

SELECT pg_catalog.has_schema_privilege('etl', 'usage');
SELECT 1 / (pg_catalog.count(*) = 3)::int FROM pg_catalog.pg_roles
 WHERE rolname IN ('etl_viewer', 'etl_operator', 'etl_admin');

ROLLBACK;
