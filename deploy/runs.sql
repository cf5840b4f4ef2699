-- Deploy etl:runs to pg
-- requires: catalog
-- Run history: pipeline runs (one triggered DAG execution), runs (one job in one pipeline run),
-- attempts, items, events, logs, concurrency locks, incremental cursors, view refreshes.
--
-- Vocabularies are written `col = ANY ('{...}'::text[])`, not `col IN (...)`: PostgreSQL 15 reads
-- every CHECK of a table back from its stored node text for each statement that writes it, and
-- an IN list is stored as one node per value (2.3 times the text, folded into an array again at
-- each statement). These tables are written several times per run: bench/step.py 1.83-1.86 ms
-- per step with IN lists, 1.78-1.80 ms with arrays.

BEGIN;

CREATE TABLE etl.pipeline_runs (
  pipeline_run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  idempotency_key        text CONSTRAINT pipeline_run_idempotency_key_unique UNIQUE,
  trigger_type           text NOT NULL DEFAULT 'manual'
                         CONSTRAINT pipeline_trigger_type_known
                         CHECK (trigger_type = ANY ('{manual,schedule,backfill,retry,api,import}'::text[])),
  schedule_id            bigint REFERENCES etl.schedules (schedule_id) ON DELETE SET NULL,
  logical_date           timestamptz NOT NULL DEFAULT pg_catalog.now(),
  status                 text NOT NULL DEFAULT 'queued'
                         CONSTRAINT pipeline_status_known
                         CHECK (status = ANY ('{awaiting_approval,queued,running,success,partial_success,failed,skipped,cancelled}'::text[])),
  mode                   text NOT NULL DEFAULT 'incremental'
                         CONSTRAINT pipeline_mode_known CHECK (mode = ANY ('{incremental,full}'::text[])),
  transaction_scope      text NOT NULL DEFAULT 'per_procedure'
                         CONSTRAINT pipeline_transaction_scope_known
                         CHECK (transaction_scope = ANY ('{per_procedure,per_group}'::text[])),
  dry_run                boolean NOT NULL DEFAULT false,
  params                 jsonb NOT NULL DEFAULT '{}',
  selection              jsonb NOT NULL DEFAULT '{}',
  dependency_snapshot    jsonb NOT NULL DEFAULT '[]',
  reason                 text,
  requested_by           text NOT NULL DEFAULT session_user,
  full_refresh_confirmed boolean NOT NULL DEFAULT false,
  approved_by            text,
  approved_at            timestamptz,
  approval_reason        text,
  retry_of               bigint REFERENCES etl.pipeline_runs (pipeline_run_id) ON DELETE SET NULL,
  skip_reason            text,
  created_at             timestamptz NOT NULL DEFAULT pg_catalog.now(),
  started_at             timestamptz,
  ended_at               timestamptz,
  CONSTRAINT full_refresh_requires_approval CHECK (
    mode <> 'full' OR status = ANY ('{awaiting_approval,cancelled}'::text[])
    OR (full_refresh_confirmed AND approved_by IS NOT NULL AND approved_at IS NOT NULL
        AND approval_reason IS NOT NULL)),
  CONSTRAINT pipeline_finished_has_ended_at CHECK (
    status <> ALL ('{success,partial_success,failed,skipped,cancelled}'::text[]) OR ended_at IS NOT NULL)
);
COMMENT ON TABLE etl.pipeline_runs IS
  'One triggered execution of a set of jobs (a DAG run): on demand, by a schedule, a backfill or '
  'a retry. Holds the selection, mode, transaction scope, dependency snapshot and the approval of '
  'a full refresh (seed 004 transformation_run).';
COMMENT ON COLUMN etl.pipeline_runs.idempotency_key IS 'Triggering again with the same key returns this pipeline run instead of a new one.';
COMMENT ON COLUMN etl.pipeline_runs.logical_date IS 'The schedule fire time this run stands for, or the trigger time for on-demand runs; backfills set it per fire time.';
COMMENT ON COLUMN etl.pipeline_runs.transaction_scope IS 'per_procedure: each run commits alone; per_group: the members of a job group run in one transaction.';
COMMENT ON COLUMN etl.pipeline_runs.selection IS 'How the jobs were chosen: {"jobs": [...], "tags": [...], "layer": ..., "downstream": bool}.';
COMMENT ON COLUMN etl.pipeline_runs.dependency_snapshot IS 'The DAG edges among the selected jobs at trigger time, as [{"parent": slug, "child": slug, "type": ...}].';
COMMENT ON COLUMN etl.pipeline_runs.full_refresh_confirmed IS 'The approver confirmed a full refresh; with approved_by, approved_at and approval_reason it makes a full-mode run legal.';
-- One pipeline run per schedule and fire time: a double tick cannot create a second one.
CREATE UNIQUE INDEX one_pipeline_run_per_fire_time
  ON etl.pipeline_runs (schedule_id, logical_date) WHERE trigger_type = 'schedule';
CREATE INDEX pipeline_runs_status_started_idx ON etl.pipeline_runs (status, started_at);
CREATE INDEX pipeline_runs_created_idx ON etl.pipeline_runs (created_at DESC);
CREATE INDEX pipeline_runs_schedule_idx ON etl.pipeline_runs (schedule_id, logical_date DESC);
CREATE INDEX pipeline_runs_dependency_snapshot_gin ON etl.pipeline_runs USING gin (dependency_snapshot jsonb_path_ops);
CREATE INDEX pipeline_runs_params_gin ON etl.pipeline_runs USING gin (params jsonb_path_ops);

CREATE TABLE etl.runs (
  run_id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  pipeline_run_id       bigint NOT NULL REFERENCES etl.pipeline_runs (pipeline_run_id) ON DELETE CASCADE,
  job_id                bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE RESTRICT,
  correlation_id        uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
  status                text NOT NULL DEFAULT 'pending'
                        CONSTRAINT run_status_known
                        CHECK (status = ANY ('{pending,queued,running,success,partial_success,failed,skipped,cancelled}'::text[])),
  mode                  text NOT NULL DEFAULT 'incremental'
                        CONSTRAINT run_mode_known CHECK (mode = ANY ('{incremental,full}'::text[])),
  dry_run               boolean NOT NULL DEFAULT false,
  params                jsonb NOT NULL DEFAULT '{}'
                        CONSTRAINT run_params_object CHECK (pg_catalog.jsonb_typeof(params) = 'object'),
  -- Lower-case SHA-256 hex, checked on every write of the row (three per run): a byte length and a
  -- negated class cost 0.5 us, '^[0-9a-f]{64}$' 8 us (7% of a batched claim and finish).
  parameter_fingerprint text NOT NULL
                        CONSTRAINT run_fingerprint_is_sha256
                        CHECK (pg_catalog.octet_length(parameter_fingerprint) = 64 AND parameter_fingerprint !~ '[^0-9a-f]'),
  priority              integer NOT NULL DEFAULT 0,
  critical_path_ms      bigint NOT NULL DEFAULT 0,
  logical_date          timestamptz NOT NULL,
  scheduled_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
  queued_at             timestamptz,
  next_attempt_at       timestamptz,
  started_at            timestamptz,
  ended_at              timestamptz,
  duration_ms           bigint CONSTRAINT run_duration_non_negative CHECK (duration_ms >= 0),
  attempt_count         integer NOT NULL DEFAULT 0 CONSTRAINT run_attempt_count_non_negative CHECK (attempt_count >= 0),
  max_attempts          integer NOT NULL CONSTRAINT run_max_attempts_positive CHECK (max_attempts >= 1),
  error_category        text CONSTRAINT run_error_category_known CHECK (error_category = ANY ('{API,DB,DATA,SYSTEM}'::text[])),
  is_transient          boolean,
  error_type            text,
  error_message         text,
  records_read          bigint,
  records_written       bigint,
  page_count            integer,
  rows_affected         bigint,
  items_total           integer,
  items_succeeded       integer,
  items_failed          integer,
  items_duplicate       integer,
  metrics               jsonb NOT NULL DEFAULT '{}',
  lineage               jsonb NOT NULL DEFAULT '{}',
  param_snapshot        jsonb,
  sql_executed          text,
  group_id              bigint REFERENCES etl.job_groups (group_id) ON DELETE SET NULL,
  group_leader_run_id   bigint REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  wait_until            timestamptz,
  cancel_requested_at   timestamptz,
  skip_reason           text,
  reason                text,
  requested_by          text NOT NULL DEFAULT session_user,
  CONSTRAINT run_correlation_id_unique UNIQUE (correlation_id),
  CONSTRAINT one_run_per_job_per_pipeline_run UNIQUE (pipeline_run_id, job_id),
  CONSTRAINT run_finished_has_ended_at CHECK (
    status <> ALL ('{success,partial_success,failed,skipped,cancelled}'::text[]) OR ended_at IS NOT NULL),
  CONSTRAINT run_started_has_started_at CHECK (status <> 'running' OR started_at IS NOT NULL),
  CONSTRAINT run_success_has_no_error CHECK (status <> 'success' OR error_category IS NULL),
  CONSTRAINT run_failed_has_error_category CHECK (status <> 'failed' OR error_category IS NOT NULL)
);
COMMENT ON TABLE etl.runs IS
  'One job''s execution within a pipeline run, across all its attempts (seed 000/001 dw_etl_runs, '
  '003 job_runs, 004 transformation_step). Lifecycle: pending (waiting on upstream) -> queued '
  '(runnable from next_attempt_at) -> running -> success | partial_success | failed | skipped | '
  'cancelled; a retry returns running -> queued.';
COMMENT ON COLUMN etl.runs.correlation_id IS 'Identity that travels outside (logs, alerts, idempotent run_job calls).';
COMMENT ON COLUMN etl.runs.parameter_fingerprint IS 'etl.param_fingerprint(params): SHA-256 of the canonical JSON; equality on params without JSON comparison.';
COMMENT ON COLUMN etl.runs.critical_path_ms IS 'Expected milliseconds from this run''s start to the end of the longest chain of runs after it in its pipeline run (recent durations of the jobs): among runs of equal priority in one pipeline run, the longest chain is claimed first.';
COMMENT ON COLUMN etl.runs.logical_date IS 'The data interval this run stands for: the schedule''s fire time, or the trigger time on demand.';
COMMENT ON COLUMN etl.runs.scheduled_at IS 'When the run was created to run (the fire time for scheduled runs).';
COMMENT ON COLUMN etl.runs.queued_at IS 'When the run last became runnable (left pending or was put back for a retry).';
COMMENT ON COLUMN etl.runs.next_attempt_at IS 'A queued run is not claimed before this (backoff after a transient failure).';
COMMENT ON COLUMN etl.runs.started_at IS 'Start of the first attempt.';
COMMENT ON COLUMN etl.runs.duration_ms IS 'ended_at - started_at in milliseconds, set when the run ends.';
COMMENT ON COLUMN etl.runs.is_transient IS 'Whether the last failure was classified transient (see etl.error_classes).';
COMMENT ON COLUMN etl.runs.metrics IS 'Custom counters reported by the job, summed over items when the job has items.';
COMMENT ON COLUMN etl.runs.lineage IS 'Tables read and written, checksums: {"reads": [...], "writes": [...], "checksum": ...}.';
COMMENT ON COLUMN etl.runs.param_snapshot IS 'The parameters actually used, defaults filled in (seed 004 parameter snapshot).';
COMMENT ON COLUMN etl.runs.sql_executed IS 'For sql jobs: the exact statement executed (parameters bound, shown as placeholders and values).';
COMMENT ON COLUMN etl.runs.group_id IS 'Set when the run executes as a member of a job group under transaction scope per_group.';
COMMENT ON COLUMN etl.runs.group_leader_run_id IS 'Under per_group: the run of the group''s first member, which is claimed for the whole group; the other members follow its status.';
COMMENT ON COLUMN etl.runs.wait_until IS 'A run triggered alone whose parents are outside its pipeline run is skipped if they have not succeeded by then.';
COMMENT ON COLUMN etl.runs.cancel_requested_at IS 'Cancellation asked for a running run; its runner sees it on the next heartbeat.';

-- Seed 000 and 001 history indexes, by name of the question they answer.
CREATE INDEX runs_job_scheduled_idx ON etl.runs (job_id, scheduled_at);
-- Covering: a job's history page and its 30-day count/sum read only the index.
CREATE INDEX runs_job_started_idx ON etl.runs (job_id, started_at DESC, run_id DESC)
  INCLUDE (status, duration_ms);
CREATE INDEX runs_status_scheduled_idx ON etl.runs (status, scheduled_at);
CREATE INDEX runs_job_status_ended_idx ON etl.runs (job_id, status, ended_at);
CREATE INDEX runs_fingerprint_idx ON etl.runs (parameter_fingerprint);
CREATE INDEX runs_status_started_idx ON etl.runs (status, started_at DESC);
CREATE INDEX runs_status_ended_idx ON etl.runs (status, ended_at DESC);
CREATE INDEX runs_pipeline_status_idx ON etl.runs (pipeline_run_id, status, started_at);
CREATE INDEX runs_group_leader_idx ON etl.runs (group_leader_run_id) WHERE group_leader_run_id IS NOT NULL;
-- Latest success per job: one index descent per job (LATERAL ... LIMIT 1), never a full read.
CREATE INDEX runs_job_latest_success_idx ON etl.runs (job_id, ended_at DESC) WHERE status = 'success';
-- Failure triage (seed 001/003 partial index on failed runs): recent failures with their category.
CREATE INDEX runs_failed_ended_idx ON etl.runs (ended_at DESC)
  INCLUDE (job_id, error_category, is_transient, run_id) WHERE status = 'failed';

CREATE TABLE etl.run_attempts (
  attempt_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  attempt_no      integer NOT NULL CONSTRAINT attempt_no_positive CHECK (attempt_no >= 1),
  status          text NOT NULL DEFAULT 'running'
                  CONSTRAINT attempt_status_known
                  CHECK (status = ANY ('{running,success,partial_success,failed,cancelled,lost}'::text[])),
  worker_id       text NOT NULL,
  claimed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
  started_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
  ended_at        timestamptz,
  duration_ms     bigint CONSTRAINT attempt_duration_non_negative CHECK (duration_ms >= 0),
  lease_expires_at timestamptz NOT NULL,
  error_category  text CONSTRAINT attempt_error_category_known CHECK (error_category = ANY ('{API,DB,DATA,SYSTEM}'::text[])),
  is_transient    boolean,
  error_type      text,
  error_message   text,
  error_detail    jsonb,
  backoff_ms      bigint CONSTRAINT attempt_backoff_non_negative CHECK (backoff_ms >= 0),
  next_attempt_at timestamptz,
  records_read    bigint,
  records_written bigint,
  page_count      integer,
  rows_affected   bigint,
  metrics         jsonb NOT NULL DEFAULT '{}',
  CONSTRAINT attempt_no_unique_per_run UNIQUE (run_id, attempt_no),
  CONSTRAINT attempt_finished_has_ended_at CHECK (status = 'running' OR ended_at IS NOT NULL)
);
COMMENT ON TABLE etl.run_attempts IS
  'One claim of a run by a runner: its lease, outcome, error classification, metrics, and the '
  'backoff computed after it when it failed transiently (seed 001 dw_etl_run_attempts, 003 run_attempts). '
  'attempt_id is the fencing token: a report that names an older attempt is refused.';
COMMENT ON COLUMN etl.run_attempts.worker_id IS 'Unique runner identity (not a process id) that claimed the run.';
COMMENT ON COLUMN etl.run_attempts.status IS 'lost: the lease expired without a report (the runner died); treated as a transient SYSTEM failure.';
COMMENT ON COLUMN etl.run_attempts.backoff_ms IS 'Delay chosen after this attempt failed transiently (exponential, capped, full jitter).';
COMMENT ON COLUMN etl.run_attempts.next_attempt_at IS 'When the next attempt may start, ended_at + backoff_ms.';
CREATE INDEX run_attempts_run_ended_idx ON etl.run_attempts (run_id, ended_at DESC);

CREATE TABLE etl.run_items (
  item_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  item_no         integer NOT NULL CONSTRAINT item_no_positive CHECK (item_no >= 1),
  params          jsonb NOT NULL CONSTRAINT item_params_object CHECK (pg_catalog.jsonb_typeof(params) = 'object'),
  param_hash      text NOT NULL CONSTRAINT item_param_hash_is_sha256
                  CHECK (pg_catalog.octet_length(param_hash) = 64 AND param_hash !~ '[^0-9a-f]'),
  status          text NOT NULL DEFAULT 'pending'
                  CONSTRAINT item_status_known
                  CHECK (status = ANY ('{pending,running,success,failed,skipped,cancelled}'::text[])),
  attempt_id      bigint REFERENCES etl.run_attempts (attempt_id) ON DELETE SET NULL,
  attempt_count   integer NOT NULL DEFAULT 0,
  duplicate_count integer NOT NULL DEFAULT 0 CONSTRAINT item_duplicate_count_non_negative CHECK (duplicate_count >= 0),
  started_at      timestamptz,
  ended_at        timestamptz,
  duration_ms     bigint CONSTRAINT item_duration_non_negative CHECK (duration_ms >= 0),
  records_read    bigint,
  records_written bigint,
  page_count      integer,
  cursor_value    jsonb,
  error_category  text CONSTRAINT item_error_category_known CHECK (error_category = ANY ('{API,DB,DATA,SYSTEM}'::text[])),
  is_transient    boolean,
  error_type      text,
  error_message   text,
  metrics         jsonb NOT NULL DEFAULT '{}',
  CONSTRAINT item_no_unique_per_run UNIQUE (run_id, item_no),
  CONSTRAINT item_params_unique_per_run UNIQUE (run_id, param_hash),
  CONSTRAINT item_finished_has_ended_at CHECK (status <> ALL ('{success,failed,skipped,cancelled}'::text[]) OR ended_at IS NOT NULL)
);
COMMENT ON TABLE etl.run_items IS
  'Parameterized units of a run (seed 001 dw_etl_run_items, 003 task_runs): one per distinct '
  'parameter set; the same parameters twice in a run are one item whose duplicate_count grows. '
  'Each item commits on its own, so a retried attempt redoes only items not yet succeeded.';
COMMENT ON COLUMN etl.run_items.param_hash IS 'etl.param_fingerprint(params); equal parameters are one item.';
COMMENT ON COLUMN etl.run_items.attempt_id IS 'The attempt that last executed this item.';
COMMENT ON COLUMN etl.run_items.cursor_value IS 'The new incremental cursor this item reported (advanced only on success and not on a dry run).';
CREATE INDEX run_items_status_idx ON etl.run_items (status);
CREATE INDEX run_items_attempt_idx ON etl.run_items (attempt_id);
CREATE INDEX run_items_run_ended_idx ON etl.run_items (run_id, ended_at DESC);

CREATE TABLE etl.run_events (
  event_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  pipeline_run_id bigint NOT NULL,
  ts              timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  event_type      text NOT NULL
                  CONSTRAINT run_event_type_known
                  CHECK (event_type = ANY ('{status,retry_scheduled,cancel_requested,lease_expired,lease_extended,approval,note}'::text[])),
  from_status     text,
  to_status       text,
  actor           text NOT NULL DEFAULT session_user,
  detail          jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE etl.run_events IS
  'Every status change of a run and other notable facts (retry scheduled with its delay, '
  'cancellation asked, lease lost), with who and why: the run''s timeline (seed 000 dw_etl_run_events).';
COMMENT ON COLUMN etl.run_events.actor IS 'The session user, or the runner''s worker id for claims and reports.';
CREATE INDEX run_events_run_ts_idx ON etl.run_events (run_id, ts);
CREATE INDEX run_events_type_idx ON etl.run_events (event_type);

CREATE TABLE etl.run_logs (
  log_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  ts         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  level      text NOT NULL CONSTRAINT log_level_known CHECK (level = ANY ('{DEBUG,INFO,WARNING,ERROR,CRITICAL}'::text[])),
  message    text NOT NULL,
  job_id     bigint,
  run_id     bigint REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  attempt_id bigint REFERENCES etl.run_attempts (attempt_id) ON DELETE CASCADE,
  item_id    bigint REFERENCES etl.run_items (item_id) ON DELETE CASCADE,
  request_id text,
  logger     text,
  fields     jsonb NOT NULL DEFAULT '{}',
  redacted   boolean NOT NULL DEFAULT false,
  pii_safe   boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE etl.run_logs IS
  'Structured logs aligned with job, run, attempt and item ids (seed 001 dw_etl_run_logs, 003 '
  'log_events, 004 step logs). Secrets and PII are redacted by the writer before insert.';
COMMENT ON COLUMN etl.run_logs.fields IS 'Structured context (stable keys such as action, http_status, table).';
COMMENT ON COLUMN etl.run_logs.redacted IS 'True when the writer replaced at least one secret or PII value in message or fields.';
COMMENT ON COLUMN etl.run_logs.pii_safe IS 'The writer vouches that the row holds no PII after redaction.';
CREATE INDEX run_logs_run_ts_idx ON etl.run_logs (run_id, ts);
CREATE INDEX run_logs_level_ts_idx ON etl.run_logs (level, ts);
CREATE INDEX run_logs_errors_idx ON etl.run_logs (ts DESC) INCLUDE (run_id) WHERE level = 'ERROR';
CREATE INDEX run_logs_fields_gin ON etl.run_logs USING gin (fields jsonb_path_ops);
CREATE INDEX run_logs_ts_brin ON etl.run_logs USING brin (ts);
-- Foreign keys that cascade need an index on the referencing side, or a delete reads the table.
CREATE INDEX run_logs_attempt_idx ON etl.run_logs (attempt_id) WHERE attempt_id IS NOT NULL;
CREATE INDEX run_logs_item_idx ON etl.run_logs (item_id) WHERE item_id IS NOT NULL;

CREATE TABLE etl.job_locks (
  lock_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  concurrency_key text NOT NULL,
  pool_key        text NOT NULL,
  slot_no         integer NOT NULL DEFAULT 1 CONSTRAINT lock_slot_positive CHECK (slot_no >= 1),
  job_id          bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE RESTRICT,
  run_id          bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE RESTRICT,
  attempt_id      bigint,
  status          text NOT NULL DEFAULT 'active'
                  CONSTRAINT lock_status_known CHECK (status = ANY ('{active,released,expired}'::text[])),
  holder          text NOT NULL,
  acquired_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
  expires_at      timestamptz NOT NULL,
  released_at     timestamptz,
  CONSTRAINT lock_key_names_its_slot CHECK (
    concurrency_key = CASE WHEN slot_no = 1 THEN pool_key ELSE pool_key || '#' || slot_no END),
  CONSTRAINT lock_released_has_released_at CHECK (status = 'active' OR released_at IS NOT NULL)
);
COMMENT ON TABLE etl.job_locks IS
  'Concurrency locks and leases of running runs (seed 000 dw_etl_job_locks). A running run holds '
  'one active lock; expires_at is its lease, extended by heartbeats and reaped by etl.tick(). '
  'A key with limit N is a pool: slot 1 is named pool_key, slot k pool_key#k, so the one-active-lock '
  'rule on concurrency_key makes every slot exclusive.';
COMMENT ON COLUMN etl.job_locks.concurrency_key IS 'The exclusive name: pool_key for slot 1, pool_key#slot_no otherwise.';
COMMENT ON COLUMN etl.job_locks.pool_key IS 'The job''s concurrency key, or its slug and parameter fingerprint by default.';
COMMENT ON COLUMN etl.job_locks.expires_at IS 'Lease expiry: without a heartbeat by then, the run is presumed lost and retried.';
CREATE UNIQUE INDEX one_active_lock_per_key ON etl.job_locks (concurrency_key) WHERE status = 'active';
CREATE INDEX job_locks_expires_idx ON etl.job_locks (expires_at);
-- No index on run_id or job_id: the table holds only live locks (released ones are deleted), so
-- the rare RESTRICT check on a run or job delete scans a handful of rows, and every claim saves
-- two index inserts.

CREATE TABLE etl.cursors (
  cursor_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id        bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  param_hash    text NOT NULL CONSTRAINT cursor_param_hash_is_sha256
                CHECK (pg_catalog.octet_length(param_hash) = 64 AND param_hash !~ '[^0-9a-f]'),
  params        jsonb NOT NULL DEFAULT '{}',
  strategy      text NOT NULL CONSTRAINT cursor_strategy_known CHECK (strategy = ANY ('{modified_date,last_run}'::text[])),
  cursor_value  timestamptz,
  tiebreak_value text,
  metadata      jsonb NOT NULL DEFAULT '{}',
  last_run_id   bigint REFERENCES etl.runs (run_id) ON DELETE SET NULL,
  advance_count bigint NOT NULL DEFAULT 0,
  updated_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
  CONSTRAINT cursor_unique_per_job_params UNIQUE (job_id, param_hash)
);
COMMENT ON TABLE etl.cursors IS
  'Incremental watermarks per job and parameter set (seed 001 dw_etl_incremental_cursors, 004 '
  'transformation_watermark). Advanced only in the transaction that records a non-dry-run success, '
  'never backwards except by a full refresh.';
COMMENT ON COLUMN etl.cursors.cursor_value IS 'modified_date: highest modified timestamp loaded; last_run: logical date of the last successful run.';
COMMENT ON COLUMN etl.cursors.tiebreak_value IS 'modified_date: highest tie-break key among records at cursor_value.';
COMMENT ON COLUMN etl.cursors.advance_count IS 'How many times the cursor advanced; exactly once per successful non-dry-run run or item.';
CREATE INDEX cursors_job_value_idx ON etl.cursors (job_id, cursor_value DESC);
CREATE INDEX cursors_params_gin ON etl.cursors USING gin (params jsonb_path_ops);

CREATE TABLE etl.run_refreshes (
  run_refresh_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id            bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
  refresh_target_id bigint NOT NULL REFERENCES etl.refresh_targets (refresh_target_id) ON DELETE RESTRICT,
  sequence          integer NOT NULL,
  was_concurrent    boolean NOT NULL,
  status            text NOT NULL CONSTRAINT refresh_status_known CHECK (status = ANY ('{success,failed,skipped}'::text[])),
  started_at        timestamptz NOT NULL,
  ended_at          timestamptz NOT NULL,
  duration_ms       bigint NOT NULL CONSTRAINT refresh_duration_non_negative CHECK (duration_ms >= 0),
  error_message     text
);
COMMENT ON TABLE etl.run_refreshes IS 'Each materialized-view refresh done after a run: how, how long, and its outcome.';
CREATE INDEX run_refreshes_run_idx ON etl.run_refreshes (run_id, sequence);
CREATE INDEX run_refreshes_target_idx ON etl.run_refreshes (refresh_target_id, started_at DESC);

COMMIT;
