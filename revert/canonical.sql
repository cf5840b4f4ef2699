-- Revert etl:canonical from pg

BEGIN;

DROP FUNCTION etl.param_fingerprint(jsonb);
DROP FUNCTION etl.canonical_json(jsonb);

COMMIT;
