-- Deploy etl:observability to pg
-- requires: runs
-- Alerts (rules, channels, deduplicated events, a delivery outbox), data-quality checks and
-- results, service heartbeats and persisted metric snapshots (seed 003, seed 000 dw_etl_alerts).

BEGIN;

CREATE TABLE etl.alert_channels (
  channel_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name       text NOT NULL CONSTRAINT alert_channel_name_unique UNIQUE,
  kind       text NOT NULL CONSTRAINT alert_channel_kind_known CHECK (kind IN ('slack', 'email', 'webhook')),
  config     jsonb NOT NULL DEFAULT '{}',
  enabled    boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE etl.alert_channels IS 'Where alerts go: a Slack webhook, e-mail recipients or a generic webhook.';
COMMENT ON COLUMN etl.alert_channels.config IS 'slack/webhook: {"url": ...}; email: {"to": [...], "from": ...}. Secrets belong in the runner''s environment, named here by reference.';

CREATE TABLE etl.alert_rules (
  rule_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name       text NOT NULL CONSTRAINT alert_rule_name_unique UNIQUE,
  rule_type  text NOT NULL
             CONSTRAINT alert_rule_type_known
             CHECK (rule_type IN ('run_failed', 'retries_exceeded', 'dq_violation', 'runner_unhealthy', 'run_overdue')),
  job_id     bigint REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  threshold  integer CONSTRAINT alert_rule_threshold_positive CHECK (threshold > 0),
  time_window interval,
  severity   text NOT NULL DEFAULT 'warning'
             CONSTRAINT alert_rule_severity_known CHECK (severity IN ('info', 'warning', 'critical')),
  enabled    boolean NOT NULL DEFAULT true,
  config     jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  CONSTRAINT retries_rule_has_threshold_and_window
    CHECK (rule_type <> 'retries_exceeded' OR (threshold IS NOT NULL AND time_window IS NOT NULL))
);
COMMENT ON TABLE etl.alert_rules IS
  'When to alert: a run failed, a job retried more than threshold times within time_window, a DQ '
  'check violated, a runner stopped heartbeating. job_id NULL applies to every job.';

CREATE TABLE etl.alert_rule_channels (
  rule_id    bigint NOT NULL REFERENCES etl.alert_rules (rule_id) ON DELETE CASCADE,
  channel_id bigint NOT NULL REFERENCES etl.alert_channels (channel_id) ON DELETE CASCADE,
  PRIMARY KEY (rule_id, channel_id)
);
COMMENT ON TABLE etl.alert_rule_channels IS 'Which channels each rule notifies.';
CREATE INDEX alert_rule_channels_channel_idx ON etl.alert_rule_channels (channel_id);

CREATE TABLE etl.dq_checks (
  check_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text NOT NULL CONSTRAINT dq_check_name_unique UNIQUE,
  job_id        bigint REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  check_type    text NOT NULL
                CONSTRAINT dq_check_type_known CHECK (check_type IN ('row_delta', 'null_rate', 'schema_drift', 'custom_sql')),
  target_schema text,
  target_table  text,
  target_column text,
  config        jsonb NOT NULL DEFAULT '{}',
  severity      text NOT NULL DEFAULT 'fail' CONSTRAINT dq_check_severity_known CHECK (severity IN ('warn', 'fail')),
  enabled       boolean NOT NULL DEFAULT true,
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
  CONSTRAINT dq_null_rate_names_column CHECK (check_type <> 'null_rate' OR target_column IS NOT NULL),
  CONSTRAINT dq_custom_sql_has_query CHECK (check_type <> 'custom_sql' OR config ? 'sql')
);
COMMENT ON TABLE etl.dq_checks IS
  'Data-quality check definitions (seed 003 dq_check_definitions): row delta against the previous '
  'load, null-rate spike of a column, schema drift of a table, or custom SQL returning a value.';
COMMENT ON COLUMN etl.dq_checks.config IS 'Thresholds and options: {"max_delta_pct": 50}, {"max_null_rate": 0.05}, {"sql": ..., "max": ...}.';

CREATE TABLE etl.dq_results (
  result_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  check_id       bigint NOT NULL REFERENCES etl.dq_checks (check_id) ON DELETE CASCADE,
  run_id         bigint REFERENCES etl.runs (run_id) ON DELETE SET NULL,
  status         text NOT NULL CONSTRAINT dq_result_status_known CHECK (status IN ('pass', 'warn', 'fail')),
  observed_value numeric,
  threshold      numeric,
  details        jsonb NOT NULL DEFAULT '{}',
  created_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE etl.dq_results IS 'One evaluation of a DQ check, linked to the run it judged (seed 003 dq_check_results).';
CREATE INDEX dq_results_check_created_idx ON etl.dq_results (check_id, created_at DESC);
CREATE INDEX dq_results_violations_idx ON etl.dq_results (created_at DESC) WHERE status IN ('warn', 'fail');
CREATE INDEX dq_results_run_idx ON etl.dq_results (run_id);
CREATE INDEX dq_results_details_gin ON etl.dq_results USING gin (details jsonb_path_ops);

CREATE TABLE etl.alert_events (
  alert_event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule_id        bigint REFERENCES etl.alert_rules (rule_id) ON DELETE SET NULL,
  run_id         bigint REFERENCES etl.runs (run_id) ON DELETE RESTRICT,
  job_id         bigint REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  dq_result_id   bigint REFERENCES etl.dq_results (result_id) ON DELETE SET NULL,
  dedupe_key     text NOT NULL,
  status         text NOT NULL DEFAULT 'open'
                 CONSTRAINT alert_status_known CHECK (status IN ('open', 'acknowledged', 'resolved')),
  severity       text NOT NULL DEFAULT 'warning'
                 CONSTRAINT alert_severity_known CHECK (severity IN ('info', 'warning', 'critical')),
  title          text NOT NULL,
  message        text,
  details        jsonb NOT NULL DEFAULT '{}',
  occurrences    integer NOT NULL DEFAULT 1 CONSTRAINT alert_occurrences_positive CHECK (occurrences >= 1),
  fired_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
  last_seen_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
  resolved_at    timestamptz,
  resolved_by    text,
  CONSTRAINT alert_resolved_has_resolved_at CHECK (status <> 'resolved' OR resolved_at IS NOT NULL)
);
COMMENT ON TABLE etl.alert_events IS
  'Fired alerts, deduplicated by dedupe_key while not resolved (a repeat raises occurrences and '
  'last_seen_at), tracked to resolution (seed 003 alert_events, seed 000 dw_etl_alerts).';
COMMENT ON COLUMN etl.alert_events.dedupe_key IS 'Same key, same open alert: e.g. run_failed:<job slug>.';
CREATE UNIQUE INDEX one_open_alert_per_dedupe_key ON etl.alert_events (dedupe_key) WHERE status <> 'resolved';
CREATE INDEX alert_events_status_fired_idx ON etl.alert_events (status, fired_at DESC);
CREATE INDEX alert_events_dedupe_key_idx ON etl.alert_events (dedupe_key);
CREATE INDEX alert_events_run_idx ON etl.alert_events (run_id);

CREATE TABLE etl.alert_deliveries (
  delivery_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  alert_event_id  bigint NOT NULL REFERENCES etl.alert_events (alert_event_id) ON DELETE CASCADE,
  channel_id      bigint NOT NULL REFERENCES etl.alert_channels (channel_id) ON DELETE RESTRICT,
  status          text NOT NULL DEFAULT 'pending'
                  CONSTRAINT delivery_status_known CHECK (status IN ('pending', 'sent', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  sent_at         timestamptz,
  error_message   text,
  created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
  CONSTRAINT delivery_sent_has_sent_at CHECK (status <> 'sent' OR sent_at IS NOT NULL)
);
COMMENT ON TABLE etl.alert_deliveries IS
  'Outbox of notifications: the engine inserts, a runner delivers to Slack or e-mail and marks the row.';
CREATE INDEX alert_deliveries_channel_sent_idx ON etl.alert_deliveries (channel_id, sent_at);
CREATE INDEX alert_deliveries_pending_idx ON etl.alert_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX alert_deliveries_event_idx ON etl.alert_deliveries (alert_event_id);

CREATE TABLE etl.service_heartbeats (
  instance_id  text PRIMARY KEY,
  service      text NOT NULL CONSTRAINT heartbeat_service_known CHECK (service IN ('runner', 'scheduler', 'exporter', 'cli')),
  version      text NOT NULL,
  host         text NOT NULL,
  pid          integer NOT NULL,
  status       text NOT NULL DEFAULT 'starting'
               CONSTRAINT heartbeat_status_known CHECK (status IN ('starting', 'running', 'draining', 'stopped', 'lost')),
  slots        integer,
  busy_slots   integer,
  started_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
  last_seen    timestamptz NOT NULL DEFAULT pg_catalog.now(),
  details      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE etl.service_heartbeats IS
  'Health of each service instance (seed 003): version, host, pid, uptime (now() - started_at) and '
  'the last time it was seen. instance_id is a unique runner identity, not a process id. A runner '
  'beats every 10 s; etl.tick() marks one unseen for 60 s lost (killed, or cut off), and its next '
  'beat, if any, marks it running again.';
CREATE INDEX service_heartbeats_last_seen_idx ON etl.service_heartbeats (service, last_seen DESC);

CREATE TABLE etl.metric_snapshots (
  snapshot_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  captured_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  metric_name text NOT NULL,
  value_type  text NOT NULL CONSTRAINT metric_value_type_known CHECK (value_type IN ('counter', 'gauge', 'histogram')),
  value       double precision NOT NULL,
  labels      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE etl.metric_snapshots IS
  'Persisted aggregates for audit and dashboards (seed 003); Prometheus stays the real-time source.';
CREATE INDEX metric_snapshots_name_time_idx ON etl.metric_snapshots (metric_name, captured_at DESC);
CREATE INDEX metric_snapshots_labels_gin ON etl.metric_snapshots USING gin (labels jsonb_path_ops);
CREATE INDEX metric_snapshots_captured_brin ON etl.metric_snapshots USING brin (captured_at);

COMMIT;
