-- Revert etl:cron from pg

BEGIN;

DO $drop$
DECLARE
  v_fn regprocedure;
BEGIN
  FOR v_fn IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'etl' AND (p.proname LIKE 'cron\_%' OR p.proname LIKE '\_cron\_%')
  LOOP
    EXECUTE pg_catalog.format('DROP FUNCTION %s', v_fn);
  END LOOP;
END
$drop$;
DROP TYPE etl.cron_spec;

COMMIT;
