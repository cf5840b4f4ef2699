-- Verify etl:canonical on pg

BEGIN;

SELECT 1 / (etl.canonical_json('{"b": 1.0, "a": [true, null]}') = '{"a":[true,null],"b":1}')::int;
SELECT 1 / (etl.param_fingerprint('{}') = pg_catalog.encode(pg_catalog.sha256('{}'::bytea), 'hex'))::int;

ROLLBACK;
