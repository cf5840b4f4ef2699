-- Revert etl:schema from pg

BEGIN;

ALTER DEFAULT PRIVILEGES IN SCHEMA etl REVOKE SELECT ON TABLES FROM etl_viewer;
DROP SCHEMA etl;

-- Roles are cluster-wide: drop each one only when no other database still holds grants to it.
DO $roles$
DECLARE
  v_role text;
BEGIN
  FOREACH v_role IN ARRAY ARRAY['etl_runner', 'etl_admin', 'etl_operator', 'etl_viewer'] LOOP
    BEGIN
      EXECUTE pg_catalog.format('DROP ROLE IF EXISTS %I', v_role);
    EXCEPTION WHEN dependent_objects_still_exist THEN
      RAISE NOTICE 'role % kept: another database of this cluster still uses it', v_role;
    END;
  END LOOP;
END
$roles$;

COMMIT;
