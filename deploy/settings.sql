-- Deploy etl:settings to pg
-- requires: schema
-- Runtime settings (ETL_PARALLEL_JOBS and friends) and the audit log of manual actions.

BEGIN;

CREATE TABLE etl.settings (
  name        text PRIMARY KEY
              CONSTRAINT setting_name_format CHECK (name ~ '^[a-z][a-z0-9_]*$'),
  value       jsonb NOT NULL,
  description text NOT NULL,
  min_value   numeric,
  max_value   numeric,
  updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
  updated_by  text NOT NULL DEFAULT session_user,
  CONSTRAINT setting_value_within_bounds CHECK (
    (min_value IS NULL AND max_value IS NULL)
    OR (pg_catalog.jsonb_typeof(value) = 'number'
        AND (value #>> '{}')::numeric = pg_catalog.trunc((value #>> '{}')::numeric)
        AND (min_value IS NULL OR (value #>> '{}')::numeric >= min_value)
        AND (max_value IS NULL OR (value #>> '{}')::numeric <= max_value)))
);
COMMENT ON TABLE etl.settings IS
  'Engine settings read at decision time (parallel_jobs is ETL_PARALLEL_JOBS). '
  'Change them with etl.set_setting(name, value, reason), which validates and audits.';
COMMENT ON COLUMN etl.settings.value IS 'The setting as JSON (a number, string or boolean).';
COMMENT ON COLUMN etl.settings.min_value IS 'Inclusive lower bound for numeric settings; NULL means none.';
COMMENT ON COLUMN etl.settings.max_value IS 'Inclusive upper bound for numeric settings; NULL means none.';

-- parallel_jobs comes from ETL_PARALLEL_JOBS at deploy time (the deploy tool passes it as the
-- custom GUC etl.parallel_jobs); 8 otherwise: four per core on the reference 2-core machine.
INSERT INTO etl.settings (name, value, description, min_value, max_value) VALUES
  ('parallel_jobs',
   pg_catalog.to_jsonb(COALESCE(NULLIF(pg_catalog.current_setting('etl.parallel_jobs', true), '')::int, 8)),
   'Global bound on runs in status running at once (ETL_PARALLEL_JOBS).', 1, 10000),
  ('default_lease_seconds', '30'::jsonb,
   'Lease a claim carries when the job names none; a runner heartbeats well within it.', 5, 86400),
  ('upstream_wait_limit_seconds', '3600'::jsonb,
   'How long a run triggered alone waits for its parents'' latest runs to succeed before it is skipped.', 0, 604800),
  ('environment', '"dev"'::jsonb,
   'Environment name (dev, stage, prod): a label for operators and dashboards.', NULL, NULL),
  ('log_retention_days', '30'::jsonb,
   'Run logs older than this are purged by the tick.', 1, 3650),
  ('approval_by_another_user', 'false'::jsonb,
   'true: a full refresh is approved by a database user other than the one who requested it (no '
   'approval given with the trigger; etl.approve records its own session user as the approver).', NULL, NULL);

CREATE TABLE etl.audit_log (
  audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
  actor       text NOT NULL DEFAULT session_user,
  action      text NOT NULL,
  target_type text NOT NULL
              CONSTRAINT audit_target_type_known CHECK (target_type IN
                ('setting', 'job', 'schedule', 'run', 'pipeline_run', 'alert', 'definition', 'system')),
  target_id   text,
  reason      text,
  details     jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE etl.audit_log IS
  'Who did what, when, to which object and why: every manual action (run, cancel, retry, '
  'approve, settings, job definitions) writes one row in the same transaction as the action.';
COMMENT ON COLUMN etl.audit_log.actor IS 'session_user of the connection that acted (not the definer of the function).';
COMMENT ON COLUMN etl.audit_log.details IS 'Action-specific facts: old and new values, parameters, approval.';
CREATE INDEX audit_log_target_idx ON etl.audit_log (target_type, target_id, at DESC);
CREATE INDEX audit_log_at_idx ON etl.audit_log (at DESC);

COMMIT;
