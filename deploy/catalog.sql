-- Deploy etl:catalog to pg
-- requires: settings
-- The job catalog: jobs (python extracts and SQL procedures alike), their DAG, tags, parameters,
-- groups, schedules, materialized-view refresh targets and the transient-error classification.

BEGIN;

CREATE TABLE etl.jobs (
  job_id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  slug                 text NOT NULL
                       CONSTRAINT job_slug_format CHECK (slug ~ '^[a-z][a-z0-9_]{0,62}$'),
  name                 text NOT NULL,
  description          text,
  kind                 text NOT NULL
                       CONSTRAINT job_kind_known CHECK (kind IN ('python', 'sql')),
  target               text NOT NULL CONSTRAINT job_target_not_blank CHECK (target <> ''),
  sql_schema           text GENERATED ALWAYS AS
                         (CASE WHEN kind = 'sql' THEN pg_catalog.split_part(target, '.', 1) END) STORED,
  sql_routine          text GENERATED ALWAYS AS
                         (CASE WHEN kind = 'sql' THEN pg_catalog.split_part(target, '.', 2) END) STORED,
  layer                text CONSTRAINT job_layer_known CHECK (layer IN ('bronze', 'silver', 'gold')),
  role                 text CONSTRAINT job_role_known CHECK (role IN ('dimension', 'fact')),
  domain               text,
  enabled              boolean NOT NULL DEFAULT true,
  priority             integer NOT NULL DEFAULT 0 CONSTRAINT job_priority_non_negative CHECK (priority >= 0),
  max_attempts         integer NOT NULL DEFAULT 3
                       CONSTRAINT job_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 100),
  backoff_base         interval NOT NULL DEFAULT '1 second'
                       CONSTRAINT job_backoff_base_positive CHECK (backoff_base > '0'),
  backoff_factor       numeric NOT NULL DEFAULT 2
                       CONSTRAINT job_backoff_factor_at_least_one CHECK (backoff_factor >= 1),
  backoff_cap          interval NOT NULL DEFAULT '5 minutes',
  backoff_jitter       text NOT NULL DEFAULT 'full'
                       CONSTRAINT job_backoff_jitter_known CHECK (backoff_jitter IN ('full', 'equal', 'none')),
  max_retry_elapsed    interval DEFAULT '1 hour',
  timeout              interval NOT NULL DEFAULT '1 hour'
                       CONSTRAINT job_timeout_positive CHECK (timeout > '0'),
  lease_duration       interval
                       CONSTRAINT job_lease_positive CHECK (lease_duration > '0'),
  concurrency_key      text CONSTRAINT job_concurrency_key_not_blank CHECK (concurrency_key <> '')
                       CONSTRAINT job_concurrency_key_has_no_hash CHECK (pg_catalog.strpos(concurrency_key, '#') = 0),
  concurrency_limit    integer NOT NULL DEFAULT 1
                       CONSTRAINT job_concurrency_limit_positive CHECK (concurrency_limit >= 1),
  supports_params      boolean NOT NULL DEFAULT false,
  items_source         jsonb,
  item_concurrency     integer NOT NULL DEFAULT 1
                       CONSTRAINT job_item_concurrency_positive CHECK (item_concurrency >= 1),
  allow_partial_success boolean NOT NULL DEFAULT false,
  supports_incremental boolean NOT NULL DEFAULT false,
  incremental_strategy text NOT NULL DEFAULT 'none'
                       CONSTRAINT job_incremental_strategy_known
                       CHECK (incremental_strategy IN ('none', 'modified_date', 'last_run')),
  cursor_lookback      interval NOT NULL DEFAULT '0'
                       CONSTRAINT job_cursor_lookback_non_negative CHECK (cursor_lookback >= '0'),
  cursor_tiebreak_key  text,
  allow_full_refresh   boolean NOT NULL DEFAULT false,
  upstream_wait_limit  interval,
  config               jsonb NOT NULL DEFAULT '{}',
  created_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
  updated_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
  CONSTRAINT job_slug_unique UNIQUE (slug),
  CONSTRAINT job_backoff_cap_not_below_base CHECK (backoff_cap >= backoff_base),
  CONSTRAINT job_incremental_has_strategy
    CHECK (supports_incremental = (incremental_strategy <> 'none')),
  CONSTRAINT job_items_need_params CHECK (items_source IS NULL OR supports_params),
  CONSTRAINT job_items_source_shape CHECK (
    items_source IS NULL
    OR (pg_catalog.jsonb_typeof(items_source) = 'object'
        AND (items_source ? 'static')::int + (items_source ? 'sql')::int
            + (items_source ? 'callable')::int = 1)),
  CONSTRAINT job_sql_target_qualified CHECK (
    kind <> 'sql' OR target ~ '^[a-z_][a-z0-9_$]*\.[a-z_][a-z0-9_$]*$'),
  CONSTRAINT job_python_target_callable CHECK (
    kind <> 'python' OR target ~ '^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$')
);
COMMENT ON TABLE etl.jobs IS
  'The job catalog: one row per ETL job, a Python extract (kind python, target module:function) '
  'or a SQL procedure/function (kind sql, target schema.routine). Serves seed 000 dw_etl_jobs, '
  '001 job capabilities, 003 etl_jobs and 004 transformation_procedure.';
COMMENT ON COLUMN etl.jobs.slug IS 'Stable, unique job name used by the CLI and etl.run_job(); lower snake case.';
COMMENT ON COLUMN etl.jobs.sql_schema IS 'For kind sql: the schema of the routine (derived from target); unique with sql_routine.';
COMMENT ON COLUMN etl.jobs.sql_routine IS 'For kind sql: the procedure or function name (derived from target).';
COMMENT ON COLUMN etl.jobs.role IS 'dimension or fact: in one pipeline run, every dimension runs before every fact (seed 004).';
COMMENT ON COLUMN etl.jobs.priority IS 'Higher runs first when claims compete; then the oldest runnable run.';
COMMENT ON COLUMN etl.jobs.max_attempts IS 'Attempts in all, the first included; a transient failure retries until this many.';
COMMENT ON COLUMN etl.jobs.backoff_base IS 'Delay before the second attempt; grows by backoff_factor per attempt, capped by backoff_cap, with full jitter.';
COMMENT ON COLUMN etl.jobs.backoff_jitter IS 'full: delay uniform in [0, d]; equal: in [d/2, d]; none: d, where d = min(cap, base * factor^(attempt-1)).';
COMMENT ON COLUMN etl.jobs.max_retry_elapsed IS 'No retry is scheduled once this much time has passed since the first attempt started; NULL: no limit.';
COMMENT ON COLUMN etl.jobs.timeout IS 'Execution time limit of one attempt (statement_timeout for sql jobs).';
COMMENT ON COLUMN etl.jobs.lease_duration IS 'Lease of a claim; NULL takes settings.default_lease_seconds. A runner that stops heartbeating loses its run after this.';
COMMENT ON COLUMN etl.jobs.concurrency_key IS 'Runs sharing a key exclude each other (cross-job exclusion); NULL means the job slug plus the parameter fingerprint. No "#": it names pool slots.';
COMMENT ON COLUMN etl.jobs.concurrency_limit IS 'How many runs may hold the key at once (a pool of N slots); 1 is a single active lock.';
COMMENT ON COLUMN etl.jobs.items_source IS 'Parameter iteration: {"static": [params, ...]}, {"sql": "select ... as params"} or {"callable": "module:function"}.';
COMMENT ON COLUMN etl.jobs.item_concurrency IS 'How many items of one run may execute at once inside the run.';
COMMENT ON COLUMN etl.jobs.allow_partial_success IS 'When some items fail permanently: partial_success if true, failed if false.';
COMMENT ON COLUMN etl.jobs.incremental_strategy IS 'modified_date: highest modified timestamp seen (with tie-break key and look-back); last_run: logical date of the last success.';
COMMENT ON COLUMN etl.jobs.cursor_lookback IS 'modified_date strategy: the extract re-reads this far behind the cursor to catch late records.';
COMMENT ON COLUMN etl.jobs.cursor_tiebreak_key IS 'modified_date strategy: record key that orders records with equal timestamps.';
COMMENT ON COLUMN etl.jobs.allow_full_refresh IS 'A full-mode run is possible only when true, and then only with a recorded approval.';
COMMENT ON COLUMN etl.jobs.upstream_wait_limit IS 'A run triggered alone waits this long for its parents'' latest runs to succeed; NULL takes the setting.';
COMMENT ON COLUMN etl.jobs.config IS 'Kind-specific configuration shown read-only (statement options, HTTP endpoints, notes).';

-- One catalog entry per SQL routine (seed 004: unique (schema_name, procedure_name)).
CREATE UNIQUE INDEX job_sql_routine_unique ON etl.jobs (sql_schema, sql_routine) WHERE kind = 'sql';
CREATE INDEX jobs_layer_idx ON etl.jobs (layer, slug);

CREATE TABLE etl.job_dependencies (
  parent_job_id   bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  child_job_id    bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  dependency_type text NOT NULL DEFAULT 'explicit'
                  CONSTRAINT dependency_type_known CHECK (dependency_type IN ('explicit', 'data', 'lineage')),
  created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
  PRIMARY KEY (parent_job_id, child_job_id),
  CONSTRAINT no_self_dependency CHECK (parent_job_id <> child_job_id)
);
COMMENT ON TABLE etl.job_dependencies IS
  'DAG edges: the child runs only after the parent succeeded. Cycles are refused when an edge is inserted.';
COMMENT ON COLUMN etl.job_dependencies.dependency_type IS
  'explicit (declared), data (the child reads what the parent writes), lineage (derived from SQL by etl apply).';
CREATE INDEX job_dependencies_child_idx ON etl.job_dependencies (child_job_id);
CREATE INDEX job_dependencies_parent_idx ON etl.job_dependencies (parent_job_id);

CREATE TABLE etl.job_tags (
  job_id bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  tag    text NOT NULL CONSTRAINT tag_format CHECK (tag ~ '^[a-z0-9][a-z0-9_:.-]{0,62}$'),
  CONSTRAINT job_tag_unique UNIQUE (job_id, tag)
);
COMMENT ON TABLE etl.job_tags IS 'Labels for selection and filters (etl.trigger_pipeline by tag, etl jobs list --tag).';
CREATE INDEX job_tags_tag_idx ON etl.job_tags (tag, job_id);

CREATE TABLE etl.job_parameters (
  parameter_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id         bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  name           text NOT NULL CONSTRAINT parameter_name_format CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$'),
  mode           text NOT NULL DEFAULT 'all'
                 CONSTRAINT parameter_mode_known CHECK (mode IN ('all', 'incremental', 'full')),
  data_type      text NOT NULL DEFAULT 'string'
                 CONSTRAINT parameter_type_known
                 CHECK (data_type IN ('string', 'integer', 'number', 'boolean', 'date', 'timestamp', 'object', 'array')),
  required       boolean NOT NULL DEFAULT false,
  default_value  jsonb,
  allowed_values jsonb CONSTRAINT parameter_allowed_values_array
                 CHECK (allowed_values IS NULL OR pg_catalog.jsonb_typeof(allowed_values) = 'array'),
  description    text,
  CONSTRAINT parameter_unique_per_mode UNIQUE (job_id, name, mode),
  CONSTRAINT parameter_required_has_no_default CHECK (NOT (required AND default_value IS NOT NULL))
);
COMMENT ON TABLE etl.job_parameters IS
  'A job''s parameter schema: name, type, required, default; mode incremental or full scopes a '
  'default to that mode (seed 004 transformation_parameter), mode all applies to both.';
COMMENT ON COLUMN etl.job_parameters.default_value IS 'Filled in by etl.run_job when the caller omits the parameter; a mode-specific default wins over mode all.';
CREATE INDEX job_parameters_job_name_idx ON etl.job_parameters (job_id, name);

CREATE TABLE etl.job_groups (
  group_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text NOT NULL CONSTRAINT group_name_unique UNIQUE
              CONSTRAINT group_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
  description text,
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE etl.job_groups IS
  'Ordered execution groups: with transaction scope per_group, the members of a group run in '
  'sequence inside one transaction, claimed as one unit (seed 004 transformation_group).';

CREATE TABLE etl.job_group_members (
  group_id bigint NOT NULL REFERENCES etl.job_groups (group_id) ON DELETE CASCADE,
  job_id   bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE RESTRICT,
  sequence integer NOT NULL CONSTRAINT group_sequence_positive CHECK (sequence > 0),
  PRIMARY KEY (group_id, job_id),
  CONSTRAINT group_member_sequence_unique UNIQUE (group_id, sequence),
  CONSTRAINT one_group_per_job UNIQUE (job_id)
);
COMMENT ON TABLE etl.job_group_members IS 'Members of a group and their order (sequence ascending).';

CREATE TABLE etl.schedules (
  schedule_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id          bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  cron_expr       text NOT NULL,
  timezone        text NOT NULL DEFAULT 'UTC',
  is_active       boolean NOT NULL DEFAULT true,
  params          jsonb NOT NULL DEFAULT '{}'
                  CONSTRAINT schedule_params_object CHECK (pg_catalog.jsonb_typeof(params) = 'object'),
  with_downstream boolean NOT NULL DEFAULT false,
  misfire_policy  text NOT NULL DEFAULT 'latest'
                  CONSTRAINT schedule_misfire_policy_known CHECK (misfire_policy IN ('catch_up', 'latest')),
  overlap_policy  text NOT NULL DEFAULT 'skip'
                  CONSTRAINT schedule_overlap_policy_known CHECK (overlap_policy IN ('skip', 'queue_one', 'queue_all')),
  next_run_at     timestamptz,
  last_fire_at    timestamptz,
  description     text,
  created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
  updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE etl.schedules IS
  'Cron schedules; a job may have several, at most one active (seed 000). etl.tick() turns a due '
  'schedule into a pipeline run once per fire time and advances next_run_at.';
COMMENT ON COLUMN etl.schedules.cron_expr IS '5-field cron (ranges, steps, lists, names) or @hourly/@daily/...; evaluated by etl.cron_next().';
COMMENT ON COLUMN etl.schedules.timezone IS 'IANA time zone in which cron_expr is read; DST gaps fire at the gap''s end, repeated hours once.';
COMMENT ON COLUMN etl.schedules.misfire_policy IS 'After downtime: catch_up creates a pipeline run for every missed fire time, latest only for the last one.';
COMMENT ON COLUMN etl.schedules.overlap_policy IS 'When the previous fire''s run is still going: skip this fire, queue_one (at most one waiting), queue_all.';
COMMENT ON COLUMN etl.schedules.next_run_at IS 'The next fire time the tick acts on, always on the cron (trigger schedule_on_its_cron): NULL on insert means the next one after now.';
COMMENT ON COLUMN etl.schedules.with_downstream IS 'Fire the job together with its downstream closure in one pipeline run.';
CREATE UNIQUE INDEX one_active_schedule_per_job ON etl.schedules (job_id) WHERE is_active;
CREATE INDEX schedules_job_next_run_idx ON etl.schedules (job_id, next_run_at);
CREATE INDEX schedules_due_idx ON etl.schedules (next_run_at) INCLUDE (schedule_id) WHERE is_active;

-- A schedule is written on its cron: an expression or zone the tick could not read is refused
-- here, where the writer can be told which job and field, instead of failing every tick; and
-- next_run_at is always a fire time (NULL: the next one after now; otherwise the first at or
-- after the value given), so a schedule written with SQL fires, and only on its cron. The cron
-- functions come with change cron (deployed after this one); PL/pgSQL binds them at call time.
CREATE FUNCTION etl._schedule_on_its_cron()
RETURNS trigger
LANGUAGE plpgsql
-- Whoever may write schedules may have them checked: the cron internals are not granted to roles.
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  v_field text;
  v_message text;
  v_hint text;
  v_slug text;
BEGIN
  -- Missing values are NOT NULL's to name.
  IF new.cron_expr IS NULL OR new.timezone IS NULL THEN
    RETURN new;
  END IF;
  IF tg_op = 'UPDATE' AND new.cron_expr = old.cron_expr AND new.timezone = old.timezone
     AND new.next_run_at IS NOT DISTINCT FROM old.next_run_at THEN
    RETURN new;
  END IF;
  BEGIN
    v_field := 'timezone';
    PERFORM etl._cron_assert_tz(new.timezone);
    v_field := 'cron_expr';
    PERFORM etl.cron_parse(new.cron_expr);
    -- (etl.cron_next also refuses an expression that never fires.)
    IF new.next_run_at IS NULL THEN
      new.next_run_at := etl.cron_next(new.cron_expr, new.timezone, pg_catalog.now());
    ELSIF new.next_run_at = '-infinity' THEN
      v_field := 'next_run_at';
      RAISE EXCEPTION '-infinity is not a fire time (NULL: the next one after now; infinity: never)'
        USING ERRCODE = 'invalid_parameter_value';
    ELSIF pg_catalog.isfinite(new.next_run_at) THEN
      new.next_run_at := etl.cron_next(new.cron_expr, new.timezone, new.next_run_at - interval '1 microsecond');
    END IF;
  EXCEPTION WHEN invalid_parameter_value THEN
    GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
    SELECT j.slug INTO v_slug FROM etl.jobs j WHERE j.job_id = new.job_id;
    RAISE EXCEPTION 'schedule of job "%", field %: %', coalesce(v_slug, new.job_id::text), v_field, v_message
      USING ERRCODE = 'invalid_parameter_value', HINT = coalesce(v_hint, ''),
            SCHEMA = 'etl', TABLE = 'schedules', COLUMN = v_field;
  END;
  RETURN new;
END;
$$;
COMMENT ON FUNCTION etl._schedule_on_its_cron() IS
  'Trigger schedule_on_its_cron: refuses (22023, naming the job and the field) a schedule whose '
  'cron_expr or timezone etl.cron_next cannot read or that never fires; sets next_run_at to the next '
  'fire time after now when NULL, and moves a given one to the first fire time at or after it '
  '(infinity is kept: never).';
CREATE TRIGGER schedule_on_its_cron
  BEFORE INSERT OR UPDATE OF cron_expr, timezone, next_run_at ON etl.schedules
  FOR EACH ROW EXECUTE FUNCTION etl._schedule_on_its_cron();

CREATE TABLE etl.refresh_targets (
  refresh_target_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  schema_name       text NOT NULL,
  view_name         text NOT NULL,
  refresh_mode      text NOT NULL DEFAULT 'auto'
                    CONSTRAINT refresh_mode_known CHECK (refresh_mode IN ('auto', 'concurrently', 'blocking')),
  description       text,
  discovered_at     timestamptz,
  created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
  CONSTRAINT refresh_target_unique UNIQUE (schema_name, view_name)
);
COMMENT ON TABLE etl.refresh_targets IS 'Materialized views the engine refreshes after procedures (seed 004 refresh_target).';
COMMENT ON COLUMN etl.refresh_targets.refresh_mode IS 'auto: REFRESH ... CONCURRENTLY when the view has a unique index, else a blocking refresh; concurrently; blocking.';
COMMENT ON COLUMN etl.refresh_targets.discovered_at IS 'Set when etl import matviews found the view by introspection.';

CREATE TABLE etl.job_refresh_targets (
  job_id            bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  refresh_target_id bigint NOT NULL REFERENCES etl.refresh_targets (refresh_target_id) ON DELETE RESTRICT,
  sequence          integer NOT NULL DEFAULT 1 CONSTRAINT refresh_sequence_positive CHECK (sequence > 0),
  policy            text NOT NULL DEFAULT 'on_success'
                    CONSTRAINT refresh_policy_known CHECK (policy IN ('on_success', 'always')),
  PRIMARY KEY (job_id, refresh_target_id)
);
COMMENT ON TABLE etl.job_refresh_targets IS
  'Which views a job refreshes after it runs, in sequence order; on_success only after success, '
  'always after any outcome (seed 004 procedure_refresh_link).';
CREATE INDEX job_refresh_targets_job_sequence_idx ON etl.job_refresh_targets (job_id, sequence);

CREATE TABLE etl.error_classes (
  error_class_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id         bigint REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  match_kind     text NOT NULL
                 CONSTRAINT error_class_match_kind_known
                 CHECK (match_kind IN ('category', 'error_type', 'sqlstate', 'sqlstate_class', 'http_status', 'http_class')),
  match_value    text NOT NULL,
  category       text CONSTRAINT error_class_category_known CHECK (category IN ('API', 'DB', 'DATA', 'SYSTEM')),
  is_transient   boolean NOT NULL,
  note           text,
  CONSTRAINT error_class_unique UNIQUE NULLS NOT DISTINCT (job_id, match_kind, match_value, category),
  CONSTRAINT error_class_value_shape CHECK (
    CASE match_kind
      WHEN 'sqlstate' THEN match_value ~ '^[0-9A-Z]{5}$'
      WHEN 'sqlstate_class' THEN match_value ~ '^[0-9A-Z]{2}$'
      WHEN 'http_status' THEN match_value ~ '^[1-5][0-9][0-9]$'
      WHEN 'http_class' THEN match_value ~ '^[1-5]xx$'
      WHEN 'category' THEN match_value IN ('API', 'DB', 'DATA', 'SYSTEM')
      ELSE match_value <> ''
    END)
);
COMMENT ON TABLE etl.error_classes IS
  'Which failures are transient (retried with backoff) and which permanent, as data: by error '
  'category, error_type, SQLSTATE or its class, HTTP status or its class. A row with job_id '
  'overrides the global row (job_id NULL). The most specific match wins: error_type, sqlstate, '
  'http_status, sqlstate_class, http_class, category.';
COMMENT ON COLUMN etl.error_classes.category IS 'Restricts the row to failures of this category; NULL matches any.';

CREATE TABLE etl.job_lineage (
  job_id      bigint NOT NULL REFERENCES etl.jobs (job_id) ON DELETE CASCADE,
  relation    text NOT NULL CONSTRAINT lineage_relation_qualified CHECK (relation ~ '^[^.]+[.].+$'),
  access      text NOT NULL CONSTRAINT lineage_access_known CHECK (access IN ('read', 'write')),
  derived_from text NOT NULL DEFAULT 'pglast'
              CONSTRAINT lineage_source_known CHECK (derived_from IN ('pglast', 'declared')),
  derived_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
  PRIMARY KEY (job_id, relation, access)
);
COMMENT ON TABLE etl.job_lineage IS
  'Tables a job reads and writes, derived by etl apply from its SQL with pglast (or declared in its '
  'definition): a job that reads what another job writes should depend on it.';
CREATE INDEX job_lineage_relation_idx ON etl.job_lineage (relation, access);

COMMIT;
