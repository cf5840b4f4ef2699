-- A legacy deployment for `etl import legacy` (tests/test_legacy_import.py).
--
-- The tables are the ones the seed documents name: dw_etl_* from seeds 000 and 001, transformation_*
-- from seed 004, with the keys, checks and indexes the seeds list and a plausible column set where
-- the seeds name no columns. Names are unqualified: the loader runs
-- `create schema X; set search_path = X` first, so the same file builds any schema name.
--
-- The data covers every legacy status, a run whose duration_ms was never filled in, a failed run
-- without an error category, runs still PENDING/RUNNING, attempts with backoff, cursors of a
-- parameterized incremental job, procedures with a dependency, a group and parameters, and a few
-- tables the importer does not bring across (schedules, run events, step logs).

-- ------------------------------------------------------------------------------ seeds 000 and 001

CREATE TABLE dw_etl_jobs (
  job_id               integer PRIMARY KEY,
  slug                 text UNIQUE,
  job_name             text NOT NULL,
  description          text,
  job_type             text NOT NULL DEFAULT 'python' CHECK (job_type IN ('python', 'sql')),
  callable             text,
  layer                text,
  priority             integer NOT NULL DEFAULT 0 CHECK (priority >= 0),
  is_enabled           boolean NOT NULL DEFAULT true,
  supports_params      boolean NOT NULL DEFAULT false,
  supports_incremental boolean NOT NULL DEFAULT false,
  incremental_strategy text CHECK (incremental_strategy IN ('modifiedDate', 'last_run')),
  max_retries          integer NOT NULL DEFAULT 2,
  retry_backoff_seconds integer NOT NULL DEFAULT 1,
  backoff_multiplier   numeric NOT NULL DEFAULT 2,
  timeout_seconds      integer,
  concurrency_key      text,
  owner_email          text,
  created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dw_etl_job_dependencies (
  parent_job_id integer NOT NULL REFERENCES dw_etl_jobs ON DELETE CASCADE,
  child_job_id  integer NOT NULL REFERENCES dw_etl_jobs ON DELETE CASCADE,
  PRIMARY KEY (parent_job_id, child_job_id)
);
CREATE INDEX ON dw_etl_job_dependencies (child_job_id);
CREATE INDEX ON dw_etl_job_dependencies (parent_job_id);

CREATE TABLE dw_etl_job_tags (
  job_id integer NOT NULL REFERENCES dw_etl_jobs ON DELETE CASCADE,
  tag    text NOT NULL,
  UNIQUE (job_id, tag)
);

CREATE TABLE dw_etl_schedules (
  schedule_id integer PRIMARY KEY,
  job_id      integer NOT NULL REFERENCES dw_etl_jobs ON DELETE CASCADE,
  cron_expr   text NOT NULL,
  is_active   boolean NOT NULL DEFAULT true,
  next_run_at timestamptz
);
CREATE UNIQUE INDEX ON dw_etl_schedules (job_id) WHERE is_active;

CREATE TABLE dw_etl_runs (
  run_id                bigint PRIMARY KEY,
  job_id                integer NOT NULL REFERENCES dw_etl_jobs ON DELETE RESTRICT,
  correlation_id        uuid UNIQUE,
  status                text NOT NULL
                        CONSTRAINT dw_etl_runs_status_check
                        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCESS', 'PARTIAL_SUCCESS', 'FAILED',
                                          'SKIPPED', 'CANCELLED')),
  triggered_by          text,
  trigger_type          text,
  scheduled_at          timestamptz,
  started_at            timestamptz,
  ended_at              timestamptz,
  duration_ms           bigint,
  dry_run               boolean NOT NULL DEFAULT false,
  attempt_count         integer,
  records_read          bigint,
  records_written       bigint,
  page_count            integer,
  error_category        text NOT NULL DEFAULT 'NONE'
                        CHECK (error_category IN ('API', 'DB', 'DATA', 'SYSTEM', 'NONE')),
  is_transient_error    boolean,
  error_type            text,
  error_message         text,
  params                jsonb,
  parameter_fingerprint text,
  created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON dw_etl_runs (job_id, started_at DESC);
CREATE INDEX ON dw_etl_runs (status, started_at DESC);
CREATE INDEX ON dw_etl_runs (parameter_fingerprint);

CREATE TABLE dw_etl_run_attempts (
  attempt_id     bigint PRIMARY KEY,
  run_id         bigint NOT NULL REFERENCES dw_etl_runs,
  attempt_no     integer NOT NULL,
  status         text NOT NULL,
  worker_host    text,
  started_at     timestamptz NOT NULL,
  ended_at       timestamptz,
  duration_ms    bigint,
  error_category text,
  is_transient_error boolean,
  error_type     text,
  error_message  text,
  backoff_ms     bigint,
  records_read   bigint,
  records_written bigint,
  UNIQUE (run_id, attempt_no)
);
CREATE INDEX ON dw_etl_run_attempts (run_id, ended_at DESC);

CREATE TABLE dw_etl_run_events (
  event_id   bigint PRIMARY KEY,
  run_id     bigint NOT NULL REFERENCES dw_etl_runs ON DELETE CASCADE,
  ts         timestamptz NOT NULL,
  event_type text NOT NULL,
  detail     jsonb
);

CREATE TABLE dw_etl_incremental_cursors (
  cursor_id    integer PRIMARY KEY,
  job_id       integer NOT NULL REFERENCES dw_etl_jobs,
  param_hash   text NOT NULL,
  params       jsonb NOT NULL DEFAULT '{}',
  cursor_value timestamptz,
  tiebreak_value text,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (job_id, param_hash)
);
CREATE INDEX ON dw_etl_incremental_cursors (job_id, cursor_value DESC);

-- ------------------------------------------------------------------------------------ seed 004

CREATE TABLE transformation_procedure (
  procedure_id          uuid PRIMARY KEY,
  schema_name           text NOT NULL,
  procedure_name        text NOT NULL,
  description           text,
  layer                 text,
  entity_role           text CHECK (entity_role IN ('dimension', 'fact')),
  supports_incremental  boolean NOT NULL DEFAULT false,
  supports_full_refresh boolean NOT NULL DEFAULT false,
  is_active             boolean NOT NULL DEFAULT true,
  timeout_seconds       integer,
  UNIQUE (schema_name, procedure_name)
);

CREATE TABLE transformation_dependency (
  parent_procedure_id uuid NOT NULL REFERENCES transformation_procedure ON DELETE RESTRICT,
  child_procedure_id  uuid NOT NULL REFERENCES transformation_procedure ON DELETE RESTRICT,
  PRIMARY KEY (parent_procedure_id, child_procedure_id)
);
CREATE INDEX ON transformation_dependency (child_procedure_id);
CREATE INDEX ON transformation_dependency (parent_procedure_id);

CREATE TABLE transformation_parameter (
  parameter_id  integer PRIMARY KEY,
  procedure_id  uuid NOT NULL REFERENCES transformation_procedure ON DELETE RESTRICT,
  name          text NOT NULL,
  mode          text NOT NULL DEFAULT 'all' CHECK (mode IN ('all', 'incremental', 'full')),
  data_type     text NOT NULL DEFAULT 'text',
  default_value text,
  is_required   boolean NOT NULL DEFAULT false,
  UNIQUE (procedure_id, name, mode)
);
CREATE INDEX ON transformation_parameter (procedure_id, name);

CREATE TABLE transformation_group (
  group_id    uuid PRIMARY KEY,
  group_name  text NOT NULL UNIQUE,
  description text
);

CREATE TABLE transformation_group_member (
  group_id     uuid NOT NULL REFERENCES transformation_group ON DELETE RESTRICT,
  procedure_id uuid NOT NULL REFERENCES transformation_procedure ON DELETE RESTRICT,
  sequence     integer NOT NULL,
  PRIMARY KEY (group_id, procedure_id),
  UNIQUE (group_id, sequence)
);

CREATE TABLE transformation_watermark (
  procedure_id     uuid PRIMARY KEY REFERENCES transformation_procedure ON DELETE RESTRICT,
  watermark_column text,
  watermark_value  text,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transformation_run (
  run_id                 uuid PRIMARY KEY,
  idempotency_key        text NOT NULL UNIQUE,
  status                 text NOT NULL,
  mode                   text NOT NULL DEFAULT 'incremental' CHECK (mode IN ('incremental', 'full')),
  transaction_scope      text NOT NULL DEFAULT 'per_procedure',
  parameters             jsonb NOT NULL DEFAULT '{}',
  requested_by           text,
  full_refresh_confirmed boolean NOT NULL DEFAULT false,
  approved_by            text,
  approved_at            timestamptz,
  approval_reason        text,
  created_at             timestamptz NOT NULL DEFAULT now(),
  started_at             timestamptz,
  finished_at            timestamptz
);
CREATE INDEX ON transformation_run (status, started_at);

CREATE TABLE transformation_step (
  step_id             bigint PRIMARY KEY,
  run_id              uuid NOT NULL REFERENCES transformation_run ON DELETE RESTRICT,
  procedure_id        uuid NOT NULL REFERENCES transformation_procedure ON DELETE RESTRICT,
  attempt_no          integer NOT NULL DEFAULT 1,
  status              text NOT NULL,
  started_at          timestamptz,
  finished_at         timestamptz,
  duration_ms         bigint,
  rows_affected       bigint,
  parameters          jsonb,
  dependency_snapshot jsonb,
  sql_executed        text,
  error_code          text,
  error_message       text,
  UNIQUE (run_id, procedure_id, attempt_no)
);
CREATE INDEX ON transformation_step (run_id, status, started_at);

CREATE TABLE transformation_step_log (
  log_id  bigint PRIMARY KEY,
  step_id bigint NOT NULL REFERENCES transformation_step ON DELETE CASCADE,
  ts      timestamptz NOT NULL,
  level   text NOT NULL,
  message text NOT NULL
);

-- ------------------------------------------------------------------------------------------ data

INSERT INTO dw_etl_jobs (job_id, slug, job_name, description, job_type, callable, layer, priority,
                         is_enabled, supports_params, supports_incremental, incremental_strategy,
                         max_retries, retry_backoff_seconds, backoff_multiplier, timeout_seconds,
                         concurrency_key, owner_email, created_at) VALUES
  (1, 'bronze_orders', 'Bronze Orders (API)', 'Orders per country from the shop API', 'python',
   'extracts.orders:extract', 'bronze', 5, true, true, true, 'modifiedDate', 4, 2, 3, 900,
   'shop_api', 'data@example.com', '2023-01-10 08:00:00+00'),
  (2, 'bronze_customers', 'Bronze Customers', 'Customers, changed since the last run', 'python',
   'extracts.customers:extract', 'bronze', 0, true, false, true, 'last_run', 2, 1, 2, 600,
   'shop_api', 'data@example.com', '2023-01-10 08:00:00+00'),
  (3, 'silver_orders', 'Silver Orders', 'Cleans and joins orders with customers', 'sql',
   'silver.load_orders', 'silver', 0, true, false, false, NULL, 0, 1, 2, NULL,
   NULL, NULL, '2023-01-11 08:00:00+00'),
  (4, NULL, 'Gold Revenue Daily', 'Daily revenue (the callable lived in the old scheduler)', 'python',
   NULL, 'gold', 0, true, false, false, NULL, 1, 1, 2, 1800,
   NULL, 'bi@example.com', '2023-02-01 08:00:00+00'),
  (5, 'legacy_cleanup', 'Legacy Cleanup', NULL, 'python',
   'maintenance.cleanup.run', NULL, 0, false, false, false, NULL, 2, 1, 2, 300,
   NULL, NULL, '2023-02-01 08:00:00+00');

INSERT INTO dw_etl_job_dependencies (parent_job_id, child_job_id) VALUES (1, 3), (2, 3), (3, 4);

INSERT INTO dw_etl_job_tags (job_id, tag) VALUES (1, 'shop'), (1, 'Finance'), (3, 'shop');

INSERT INTO dw_etl_schedules (schedule_id, job_id, cron_expr) VALUES (1, 1, '0 2 * * *'), (2, 3, '30 2 * * *');

INSERT INTO dw_etl_runs (run_id, job_id, correlation_id, status, triggered_by, trigger_type, scheduled_at,
                         started_at, ended_at, duration_ms, dry_run, attempt_count, records_read,
                         records_written, page_count, error_category, is_transient_error, error_type,
                         error_message, params, parameter_fingerprint) VALUES
  (101, 1, '6f1d3c2a-0000-4000-8000-000000000101', 'SUCCESS', 'scheduler', 'schedule',
   '2024-05-01 02:00:00+00', '2024-05-01 02:00:05+00', '2024-05-01 02:02:05+00', 120000, false, 1,
   1000, 990, 10, 'NONE', NULL, NULL, NULL, '{"country": "DE"}', 'md5:1b2c'),
  (102, 1, '6f1d3c2a-0000-4000-8000-000000000102', 'FAILED', 'scheduler', 'schedule',
   '2024-05-01 02:00:00+00', '2024-05-01 02:00:05+00', '2024-05-01 02:00:20+00', 15000, false, 3,
   0, 0, 0, 'API', true, 'http_503', 'shop API answered 503 three times', '{"country": "FR"}', 'md5:77aa'),
  (103, 2, NULL, 'SUCCESS', 'scheduler', 'schedule',
   '2024-05-01 02:00:00+00', '2024-05-01 02:00:00+00', '2024-05-01 02:00:42.5+00', NULL, false, 1,
   250, 250, 1, 'NONE', NULL, NULL, NULL, NULL, NULL),
  (104, 3, NULL, 'PARTIAL_SUCCESS', 'scheduler', 'schedule',
   '2024-05-01 02:30:00+00', '2024-05-01 02:30:01+00', '2024-05-01 02:31:01+00', 60000, false, 1,
   1240, 1200, NULL, 'DATA', false, 'null_customer', '40 orders without a customer', '{}', NULL),
  (105, 3, NULL, 'FAILED', 'alice', 'manual',
   NULL, '2024-05-02 09:00:00+00', '2024-05-02 09:00:03+00', 3000, false, 1,
   NULL, NULL, NULL, 'NONE', NULL, NULL, 'worker vanished', '{}', NULL),
  (106, 4, NULL, 'SKIPPED', 'scheduler', 'schedule',
   '2024-05-02 03:00:00+00', NULL, '2024-05-02 03:00:00+00', NULL, false, 0,
   NULL, NULL, NULL, 'NONE', NULL, NULL, 'upstream silver_orders failed', NULL, NULL),
  (107, 4, NULL, 'CANCELLED', 'bob', 'manual',
   NULL, '2024-05-02 10:00:00+00', '2024-05-02 10:05:00+00', NULL, true, 1,
   NULL, NULL, NULL, 'NONE', NULL, NULL, 'cancelled by bob', NULL, NULL),
  (108, 2, NULL, 'PENDING', 'scheduler', 'schedule',
   '2024-05-03 02:00:00+00', NULL, NULL, NULL, false, 0,
   NULL, NULL, NULL, 'NONE', NULL, NULL, NULL, NULL, NULL),
  (109, 1, NULL, 'RUNNING', 'scheduler', 'schedule',
   '2024-05-03 02:00:00+00', '2024-05-03 02:00:04+00', NULL, NULL, false, 1,
   NULL, NULL, NULL, 'NONE', NULL, NULL, NULL, '{"country": "DE"}', NULL),
  (110, 3, NULL, 'SUCCESS', 'alice', 'manual',
   NULL, '2024-05-02 11:00:00+00', '2024-05-02 11:00:07.25+00', NULL, true, 1,
   1200, 1200, NULL, 'NONE', NULL, NULL, NULL, NULL, NULL);

INSERT INTO dw_etl_run_attempts (attempt_id, run_id, attempt_no, status, worker_host, started_at, ended_at,
                                 duration_ms, error_category, is_transient_error, error_type, error_message,
                                 backoff_ms, records_read, records_written) VALUES
  (1001, 101, 1, 'SUCCESS', 'etl-worker-1', '2024-05-01 02:00:05+00', '2024-05-01 02:02:05+00', 120000,
   'NONE', NULL, NULL, NULL, NULL, 1000, 990),
  (1002, 102, 1, 'FAILED', 'etl-worker-1', '2024-05-01 02:00:05+00', '2024-05-01 02:00:06+00', 1000,
   'API', true, 'http_503', 'HTTP 503', 2000, 0, 0),
  (1003, 102, 2, 'FAILED', 'etl-worker-2', '2024-05-01 02:00:08+00', '2024-05-01 02:00:09+00', 1000,
   'API', true, 'http_503', 'HTTP 503', 4000, 0, 0),
  (1004, 102, 3, 'FAILED', 'etl-worker-1', '2024-05-01 02:00:13+00', '2024-05-01 02:00:20+00', NULL,
   'API', true, 'http_503', 'HTTP 503', NULL, 0, 0),
  (1005, 103, 1, 'SUCCESS', NULL, '2024-05-01 02:00:00+00', '2024-05-01 02:00:42.5+00', NULL,
   NULL, NULL, NULL, NULL, NULL, 250, 250),
  (1006, 104, 1, 'PARTIAL_SUCCESS', 'etl-worker-2', '2024-05-01 02:30:01+00', '2024-05-01 02:31:01+00', 60000,
   'DATA', false, 'null_customer', '40 orders without a customer', NULL, 1240, 1200),
  (1007, 105, 1, 'FAILED', 'etl-worker-3', '2024-05-02 09:00:00+00', '2024-05-02 09:00:03+00', 3000,
   NULL, NULL, NULL, 'worker vanished', NULL, NULL, NULL),
  (1008, 107, 1, 'CANCELLED', 'etl-worker-1', '2024-05-02 10:00:00+00', '2024-05-02 10:05:00+00', NULL,
   'NONE', NULL, NULL, NULL, NULL, NULL, NULL),
  (1009, 109, 1, 'RUNNING', 'etl-worker-2', '2024-05-03 02:00:04+00', NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (1010, 110, 1, 'SUCCESS', 'etl-worker-3', '2024-05-02 11:00:00+00', '2024-05-02 11:00:07.25+00', NULL,
   'NONE', NULL, NULL, NULL, NULL, 1200, 1200);

INSERT INTO dw_etl_run_events (event_id, run_id, ts, event_type, detail) VALUES
  (1, 101, '2024-05-01 02:00:05+00', 'STARTED', NULL),
  (2, 101, '2024-05-01 02:02:05+00', 'SUCCEEDED', '{"records_written": 990}');

-- param_hash was a legacy digest, not the canonical SHA-256: the importer recomputes it from params.
INSERT INTO dw_etl_incremental_cursors (cursor_id, job_id, param_hash, params, cursor_value, tiebreak_value,
                                        updated_at) VALUES
  (1, 1, 'md5:1b2c', '{"country": "DE"}', '2024-05-01 01:59:58+00', 'ORD-99812', '2024-05-01 02:02:05+00'),
  (2, 1, 'md5:77aa', '{"country": "FR"}', '2024-04-30 01:59:41+00', 'ORD-99002', '2024-04-30 02:01:00+00'),
  (3, 2, 'md5:0000', '{}', '2024-05-01 02:00:00+00', NULL, '2024-05-01 02:00:42+00');

INSERT INTO transformation_procedure (procedure_id, schema_name, procedure_name, description, layer, entity_role,
                                      supports_incremental, supports_full_refresh, is_active, timeout_seconds) VALUES
  ('a0000000-0000-4000-8000-000000000001', 'silver', 'load_dim_customer', 'Customer dimension (SCD1)',
   'silver', 'dimension', true, true, true, 600),
  ('a0000000-0000-4000-8000-000000000002', 'silver', 'load_dim_product', 'Product dimension',
   'silver', 'dimension', false, true, true, NULL),
  ('a0000000-0000-4000-8000-000000000003', 'silver', 'load_fact_sales', 'Sales facts, incremental by order date',
   'silver', 'fact', true, true, true, 1200);

INSERT INTO transformation_dependency (parent_procedure_id, child_procedure_id) VALUES
  ('a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000003'),
  ('a0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000003');

INSERT INTO transformation_parameter (parameter_id, procedure_id, name, mode, data_type, default_value, is_required) VALUES
  (1, 'a0000000-0000-4000-8000-000000000001', 'country', 'all', 'text', 'DE', false),
  (2, 'a0000000-0000-4000-8000-000000000003', 'batch_size', 'all', 'integer', '5000', false),
  (3, 'a0000000-0000-4000-8000-000000000003', 'start_date', 'full', 'date', '2020-01-01', false),
  (4, 'a0000000-0000-4000-8000-000000000003', 'start_date', 'incremental', 'date', NULL, true);

INSERT INTO transformation_group (group_id, group_name, description) VALUES
  ('b0000000-0000-4000-8000-000000000001', 'Silver Sales', 'Dimensions and sales facts in one transaction');

INSERT INTO transformation_group_member (group_id, procedure_id, sequence) VALUES
  ('b0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 1),
  ('b0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002', 2),
  ('b0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000003', 3);

-- watermark_value is text in the legacy schema (ISO timestamps written by the procedures).
INSERT INTO transformation_watermark (procedure_id, watermark_column, watermark_value, updated_at) VALUES
  ('a0000000-0000-4000-8000-000000000001', 'updated_at', '2024-05-01T00:00:00Z', '2024-05-01 03:00:00+00'),
  ('a0000000-0000-4000-8000-000000000003', 'order_date', '2024-05-02 03:00:00+00', '2024-05-02 03:10:00+00');

INSERT INTO transformation_run (run_id, idempotency_key, status, mode, transaction_scope, parameters, requested_by,
                                full_refresh_confirmed, approved_by, approved_at, approval_reason, created_at,
                                started_at, finished_at) VALUES
  ('c0000000-0000-4000-8000-000000000001', 'nightly-2024-05-01', 'SUCCESS', 'incremental', 'per_group',
   '{}', 'scheduler', false, NULL, NULL, NULL,
   '2024-05-01 03:00:00+00', '2024-05-01 03:00:01+00', '2024-05-01 03:04:00+00'),
  ('c0000000-0000-4000-8000-000000000002', 'full-2024-05-01', 'SUCCESS', 'full', 'per_procedure',
   '{"start_date": "2020-01-01"}', 'alice', true, 'carol', '2024-05-01 11:55:00+00', 'schema change in sales',
   '2024-05-01 11:50:00+00', '2024-05-01 12:00:00+00', '2024-05-01 12:20:00+00'),
  ('c0000000-0000-4000-8000-000000000003', 'nightly-2024-05-02', 'FAILED', 'incremental', 'per_procedure',
   '{}', 'scheduler', false, NULL, NULL, NULL,
   '2024-05-02 03:00:00+00', '2024-05-02 03:00:01+00', '2024-05-02 03:00:30+00'),
  ('c0000000-0000-4000-8000-000000000004', 'nightly-2024-05-03', 'RUNNING', 'incremental', 'per_procedure',
   '{}', 'scheduler', false, NULL, NULL, NULL,
   '2024-05-03 03:00:00+00', '2024-05-03 03:00:01+00', NULL);

INSERT INTO transformation_step (step_id, run_id, procedure_id, attempt_no, status, started_at, finished_at,
                                 duration_ms, rows_affected, parameters, sql_executed, error_code, error_message) VALUES
  (1, 'c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 1, 'SUCCESS',
   '2024-05-01 03:00:01+00', '2024-05-01 03:00:31+00', 30000, 120, '{"country": "DE"}',
   'CALL silver.load_dim_customer($1)', NULL, NULL),
  (2, 'c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002', 1, 'SUCCESS',
   '2024-05-01 03:00:31+00', '2024-05-01 03:01:00+00', NULL, 45, '{}',
   'CALL silver.load_dim_product()', NULL, NULL),
  (3, 'c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000003', 1, 'FAILED',
   '2024-05-01 03:01:00+00', '2024-05-01 03:02:00+00', 60000, NULL, '{"batch_size": 5000}',
   'CALL silver.load_fact_sales($1)', '40P01', 'deadlock detected'),
  (4, 'c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000003', 2, 'SUCCESS',
   '2024-05-01 03:02:30+00', '2024-05-01 03:04:00+00', 90000, 5100, '{"batch_size": 5000}',
   'CALL silver.load_fact_sales($1)', NULL, NULL),
  (5, 'c0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000003', 1, 'SUCCESS',
   '2024-05-01 12:00:00+00', '2024-05-01 12:20:00+00', NULL, 880000, '{"start_date": "2020-01-01"}',
   'CALL silver.load_fact_sales($1)', NULL, NULL),
  (6, 'c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 1, 'FAILED',
   '2024-05-02 03:00:01+00', '2024-05-02 03:00:30+00', 29000, NULL, '{"country": "DE"}',
   'CALL silver.load_dim_customer($1)', '23502', 'null value in column "customer_key"'),
  (7, 'c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000003', 1, 'SKIPPED',
   NULL, '2024-05-02 03:00:30+00', NULL, NULL, NULL, NULL, NULL, NULL),
  (8, 'c0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001', 1, 'RUNNING',
   '2024-05-03 03:00:01+00', NULL, NULL, NULL, '{"country": "DE"}', NULL, NULL, NULL);

INSERT INTO transformation_step_log (log_id, step_id, ts, level, message) VALUES
  (1, 3, '2024-05-01 03:02:00+00', 'ERROR', 'deadlock detected');
