-- Deploy etl:schema to pg
-- The etl schema and the four roles every grant in the engine is written against.

BEGIN;

CREATE SCHEMA etl;
COMMENT ON SCHEMA etl IS
  'Postgres-native ETL orchestrator: job catalog, run history, the engine''s functions. '
  'Deny by default: roles get USAGE and per-object grants only.';

-- Roles are cluster-wide, so another database of the cluster may already have made them.
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'etl_viewer') THEN
    CREATE ROLE etl_viewer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'etl_operator') THEN
    CREATE ROLE etl_operator NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'etl_admin') THEN
    CREATE ROLE etl_admin NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'etl_runner') THEN
    CREATE ROLE etl_runner NOLOGIN;
  END IF;
END
$roles$;

COMMENT ON ROLE etl_viewer IS 'Reads the catalog, run history, logs and metrics of the etl schema.';
COMMENT ON ROLE etl_operator IS 'etl_viewer plus running, cancelling and retrying jobs.';
COMMENT ON ROLE etl_admin IS 'etl_operator plus settings, the tick and job definitions (the catalog tables etl apply writes).';
COMMENT ON ROLE etl_runner IS
  'The runner processes: etl_viewer plus claiming, heartbeating and reporting runs, their items and '
  'view refreshes, reaping dead runners'' leases, and writing run logs and service heartbeats. Apart '
  'from the people: an operator cannot report an outcome, and a runner cannot run or cancel jobs.';

-- The hierarchy: each role has the rights of the one below. The runner's role is beside it.
GRANT etl_viewer TO etl_operator;
GRANT etl_operator TO etl_admin;
GRANT etl_viewer TO etl_runner;

REVOKE ALL ON SCHEMA etl FROM PUBLIC;
GRANT USAGE ON SCHEMA etl TO etl_viewer;

-- (No default privilege can take EXECUTE from PUBLIC for one schema only: per-schema defaults only
-- add. The engine change revokes it from every etl function it creates (plpgsql/900_grants.sql),
-- and pgTAP's catalog test fails on any etl function PUBLIC may execute.)
ALTER DEFAULT PRIVILEGES IN SCHEMA etl GRANT SELECT ON TABLES TO etl_viewer;

COMMIT;
