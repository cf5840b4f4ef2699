-- Deploy etl:engine to pg
-- requires: runs
-- requires: observability
-- requires: canonical
-- requires: cron
-- The engine: run dependency edges, the global slot pool, the runnable-set indexes, the lifecycle
-- trigger, default error classes, the PL/pgSQL API, grants, and the pg_cron tick.

BEGIN;

CREATE TABLE etl.run_dependencies (
  pipeline_run_id bigint NOT NULL REFERENCES etl.pipeline_runs (pipeline_run_id) ON DELETE CASCADE,
  parent_run_id   bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  child_run_id    bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  dependency_type text NOT NULL,
  PRIMARY KEY (parent_run_id, child_run_id)
);
COMMENT ON TABLE etl.run_dependencies IS
  'The DAG of one pipeline run, fixed at trigger time: declared edges among the selected jobs plus '
  'implied dimension-before-fact edges. Release and skip walk these, not the live catalog.';
CREATE INDEX run_dependencies_child_idx ON etl.run_dependencies (child_run_id);
CREATE INDEX run_dependencies_pipeline_idx ON etl.run_dependencies (pipeline_run_id);

-- fillfactor leaves room for HOT updates: claim and finish rewrite these rows constantly.
CREATE TABLE etl.run_slots (
  slot_no    integer PRIMARY KEY CONSTRAINT slot_no_positive CHECK (slot_no >= 1),
  run_id     bigint,
  claimed_at timestamptz,
  retired    boolean NOT NULL DEFAULT false
) WITH (fillfactor = 50);
COMMENT ON TABLE etl.run_slots IS
  'The global bound as a pool: settings.parallel_jobs rows; a running run holds one. Claimers take '
  'a free slot with SKIP LOCKED, so the bound holds under any number of concurrent claimers.';
COMMENT ON COLUMN etl.run_slots.retired IS 'Beyond a lowered parallel_jobs: no new claim takes it; it is removed when its run ends, and until then a slot freed elsewhere is removed in its stead.';
INSERT INTO etl.run_slots (slot_no)
SELECT g FROM pg_catalog.generate_series(1, (SELECT (value #>> '{}')::int FROM etl.settings WHERE name = 'parallel_jobs')) g;
-- Every finish asks whether a slot is retired, under enable_seqscan = off: without an index that
-- is a "disabled" seq scan whose cost (1e10) sets off JIT compilation, 100 ms a call.
CREATE INDEX run_slots_retired_idx ON etl.run_slots (slot_no) WHERE retired;

ALTER TABLE etl.run_attempts ADD COLUMN run_slot integer;
COMMENT ON COLUMN etl.run_attempts.run_slot IS 'The etl.run_slots slot this attempt holds while running.';
ALTER TABLE etl.runs SET (fillfactor = 90);
-- The small hot tables churn a row or two per run (a lock inserted and deleted, a slot taken and
-- freed): vacuum them after every 1,000 dead rows, unthrottled, not after 20% of their tiny size.
-- Their dead rows are what every claim walks.
ALTER TABLE etl.job_locks SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                               autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000,
                               autovacuum_vacuum_cost_delay = 0);
ALTER TABLE etl.run_slots SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                               autovacuum_vacuum_cost_delay = 0);

-- The runnable set stays tiny and apart from history: partial indexes on queued and waiting runs.
-- In claim order: priority, then the oldest pipeline run, then its longest remaining chain, then
-- the oldest runnable; negated columns so that a row comparison can start a claim scan where the
-- last one stopped.
CREATE INDEX runs_claimable_idx ON etl.runs ((-priority), pipeline_run_id, (-critical_path_ms), next_attempt_at, run_id)
  WHERE status = 'queued';
CREATE INDEX runs_queued_next_attempt_idx ON etl.runs (next_attempt_at) WHERE status = 'queued';
CREATE INDEX runs_waiting_upstream_idx ON etl.runs (job_id) WHERE status = 'pending' AND wait_until IS NOT NULL;
-- Not partial: a partial index on status = 'active' would also be a way to read every active lock,
-- and the planner took it for the claim's key check (one_active_lock_per_key is the way: one probe).
CREATE INDEX job_locks_attempt_idx ON etl.job_locks (attempt_id);

\ir ../plpgsql/100_core.sql
\ir ../plpgsql/120_params.sql
\ir ../plpgsql/140_dag.sql
\ir ../plpgsql/130_enqueue.sql
\ir ../plpgsql/150_claim.sql
\ir ../plpgsql/160_finish.sql
\ir ../plpgsql/170_control.sql
\ir ../plpgsql/180_tick.sql
\ir ../plpgsql/190_items.sql
\ir ../plpgsql/200_groups.sql
\ir ../plpgsql/210_refresh.sql

-- The three steps every run takes (released, claimed, succeeded: 'from>to') are legal by
-- definition and are let through by the WHEN clause, evaluated in C: the function is called for
-- the rare ones only (a PL/pgSQL call per row costs ~5% of a batched claim and finish). An array,
-- not a list of row pairs: the clause is read back from its node text by every statement that
-- updates runs (1.6 KB, against 3.1 KB for the pairs; see deploy/runs.sql).
CREATE TRIGGER run_status_transition_is_legal
  BEFORE UPDATE OF status ON etl.runs
  FOR EACH ROW WHEN (old.status IS DISTINCT FROM new.status
                     AND old.status || '>' || new.status <> ALL ('{pending>queued,queued>running,running>success}'::text[]))
  EXECUTE FUNCTION etl._check_run_transition();
-- Wakes runners at commit, for a run that became queued and is still queued then.
CREATE CONSTRAINT TRIGGER runs_notify_runnable
  AFTER UPDATE OF status ON etl.runs
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (new.status = 'queued')
  EXECUTE FUNCTION etl._notify_if_still_queued();
-- Only group leaders fire it: a run with a group and no leader of its own.
CREATE TRIGGER group_members_follow_leader
  AFTER UPDATE OF status ON etl.runs
  FOR EACH ROW WHEN (new.group_id IS NOT NULL AND new.group_leader_run_id IS NULL
                     AND old.status IS DISTINCT FROM new.status)
  EXECUTE FUNCTION etl._group_leader_moved();
CREATE TRIGGER no_dependency_cycle
  BEFORE INSERT OR UPDATE ON etl.job_dependencies
  FOR EACH ROW EXECUTE FUNCTION etl._refuse_dependency_cycle();

-- Which failures are transient, by default; jobs override with their own rows.
INSERT INTO etl.error_classes (match_kind, match_value, category, is_transient, note) VALUES
  ('category', 'API', NULL, true, 'API failures are transient unless a status says otherwise'),
  ('category', 'DB', NULL, false, 'DB failures are permanent unless their SQLSTATE class says otherwise'),
  ('category', 'DATA', NULL, false, 'bad data does not fix itself'),
  ('category', 'SYSTEM', NULL, true, 'crashes, lost leases, timeouts of the host'),
  ('http_status', '408', NULL, true, 'request timeout'),
  ('http_status', '425', NULL, true, 'too early'),
  ('http_status', '429', NULL, true, 'rate limited'),
  ('http_class', '5xx', NULL, true, 'server errors'),
  ('http_status', '501', NULL, false, 'not implemented will not change'),
  ('http_class', '4xx', NULL, false, 'client errors are permanent'),
  ('sqlstate_class', '08', NULL, true, 'connection exception'),
  ('sqlstate_class', '40', NULL, true, 'serialization failure, deadlock'),
  ('sqlstate_class', '53', NULL, true, 'insufficient resources'),
  ('sqlstate', '57P01', NULL, true, 'admin shutdown'),
  ('sqlstate', '57P03', NULL, true, 'cannot connect now'),
  ('sqlstate', '55P03', NULL, true, 'lock not available'),
  ('sqlstate', '57014', NULL, true, 'statement timeout / query cancelled'),
  ('sqlstate_class', '22', NULL, false, 'data exception'),
  ('sqlstate_class', '23', NULL, false, 'integrity constraint violation'),
  ('sqlstate_class', '42', NULL, false, 'syntax error or access rule violation'),
  ('error_type', 'lease_expired', 'SYSTEM', true, 'the runner died; retry elsewhere'),
  ('error_type', 'timeout', NULL, true, 'an attempt ran past its timeout');

\ir ../plpgsql/900_grants.sql

-- The tick: one short pg_cron job where pg_cron lives in this database; elsewhere schedule
-- "select etl.tick()" from the cron database with cron.schedule_in_database.
DO $cron$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
    PERFORM cron.schedule('etl-tick', '* * * * *', 'select etl.tick()');
    -- Keep cron.job_run_details from growing without bound.
    PERFORM cron.schedule('etl-cron-history-purge', '17 3 * * *',
      $$delete from cron.job_run_details where end_time < now() - interval '7 days'$$);
  ELSE
    RAISE NOTICE 'pg_cron is not installed in database %: tick it with cron.schedule_in_database(''etl-tick'', ''* * * * *'', ''select etl.tick()'', %L) from the cron database, or call etl.tick()',
      pg_catalog.current_database(), pg_catalog.current_database();
  END IF;
END
$cron$;

COMMIT;
