"""`etl import legacy --schema NAME`: brings an existing (pre-etl) deployment across into schema etl.

The legacy tables are the ones the seed documents name (shared/seeds 000, 001, 004), in one
schema; any subset may exist, and columns are matched by name with a few aliases each (listed in
the specs below), so a legacy table with other or extra columns still imports. Everything happens
in ONE transaction on one connection (serialised against other imports by an advisory lock): an
error rolls back every row and names the legacy table, the row id and the column. `--dry-run`
does the same work and rolls back, so its summary is exactly what a real import would do.

Mapping rules (legacy -> etl)
-----------------------------
dw_etl_jobs -> etl.jobs (one row per legacy job; found again by slug)
  * slug: the legacy `slug` when there is one, else derived from job_name: lower-cased, every run
    of characters outside [a-z0-9_] becomes one '_', leading/trailing '_' dropped, 'j_' prefixed
    when it would start with a digit, cut to 63 characters (CHECK job_slug_format). Two legacy
    jobs that map to the same slug are an error. An existing etl job with that slug is "already
    present" and is never modified; legacy rows that refer to the job use it.
  * kind/target: job_type/kind 'sql' (or procedure/function) gives kind sql with target
    'schema.routine' (CHECK job_sql_target_qualified: lower-case identifiers, else an error);
    anything else is kind python with target 'module:function' taken from callable/target/
    entrypoint/handler/module_path. A dotted 'pkg.mod.func' is read as 'pkg.mod:func'. A job
    without a usable callable gets the placeholder target 'legacy:<slug>' (valid for CHECK
    job_python_target_callable, but no such module exists) and is imported DISABLED, so no
    trigger can run it before someone points it at real code; the summary lists these jobs.
  * enabled (is_enabled/enabled/is_active), supports_params, priority, layer (bronze/silver/
    gold, anything else is dropped with a note), concurrency_key, description, created_at.
  * incremental: supports_incremental with incremental_strategy/strategy 'modifiedDate'
    (any spelling: modified_date, MODIFIED_DATE) -> 'modified_date', 'last_run'/'lastRun' ->
    'last_run'; an incremental job without a strategy, or an unknown strategy, is an error.
  * retries: max_attempts = max_retries + 1 (or a legacy max_attempts), 1..100 else an error;
    retry_backoff_seconds -> backoff_base (0 -> 1 ms), backoff_multiplier -> backoff_factor,
    max_backoff_seconds -> backoff_cap (never below the base); timeout_seconds -> timeout
    (NULL or 0: the etl default of 1 hour).
  * config = {"legacy": {"schema", "table", "id"}}: where the job came from.
  * parameters: dw_etl_jobs has no parameter schema, but etl.run_job refuses parameters a job
    does not declare; a newly imported job declares the keys its legacy runs and cursors carry
    (etl.job_parameters mode 'all', optional, no default, the JSON type seen), noted.
transformation_procedure -> etl.jobs of kind sql, target 'schema_name.procedure_name'; found
  again by routine (unique (sql_schema, sql_routine)), then by slug. slug from procedure_name,
  or from schema_name_procedure_name when that slug is taken by another job. is_active ->
  enabled, supports_full_refresh -> allow_full_refresh (a full run still needs its recorded
  approval), entity_role dimension/fact -> role, supports_incremental -> strategy
  'modified_date' (a watermark is a highest-modified value) unless the row names a strategy.
dw_etl_job_dependencies, transformation_dependency -> etl.job_dependencies, dependency_type
  'explicit' (or the legacy dependency_type when it is explicit/data/lineage). The cycle
  trigger still applies: a legacy cycle is an error.
dw_etl_job_tags -> etl.job_tags (lower-cased; a tag outside the tag format is not imported).
transformation_parameter -> etl.job_parameters: mode all/both/NULL -> 'all', incremental, full;
  data_type text/varchar -> string, int* -> integer, numeric/float -> number, bool -> boolean,
  date, timestamp*, json/jsonb -> object (others -> string, noted); a text default_value is
  converted to JSON of that type (a failure is an error); a required parameter with a default
  becomes optional (CHECK parameter_required_has_no_default), noted.
transformation_group -> etl.job_groups (name slugified like a job slug); found again by name.
transformation_group_member -> etl.job_group_members. A job already in another group, or a
  sequence already taken, is not imported (existing etl data wins), with the reason.
dw_etl_runs -> one etl.pipeline_runs row (trigger_type 'import', idempotency_key
  'legacy:<schema>:dw_etl_runs:<run_id>', the same status, selection {"jobs": [slug],
  "legacy": {...}}) plus its etl.runs row:
  * status lower-cased. PENDING/QUEUED/RUNNING runs are NOT imported: as live work the engine
    would claim them; they are reported with the reason. An unknown status is an error.
  * logical_date = scheduled_at, else started_at (else created_at); scheduled_at likewise.
  * ended_at of a finished run without one is backfilled (started_at + duration_ms, started_at,
    scheduled_at), noted; duration_ms NULL is backfilled from ended_at - started_at, noted; an
    ended_at before started_at is an error.
  * error_category NONE -> NULL; a FAILED run without a category gets 'SYSTEM' and error_type
    'legacy_unknown' (CHECK run_failed_has_error_category), noted; a SUCCESS run keeps no
    category (CHECK run_success_has_no_error), noted. is_transient_error -> is_transient.
  * params (NULL -> {}), parameter_fingerprint = etl.param_fingerprint(params) (recomputed: the
    legacy fingerprint may use another canonical form), param_snapshot = params.
  * attempt_count (NULL: the number of legacy attempts), max_attempts = the job's, at least
    attempt_count; correlation_id kept when the legacy row has one; triggered_by -> requested_by.
dw_etl_run_attempts -> etl.run_attempts, unique (run_id, attempt_no), worker_id from
  worker_id/worker_host else 'legacy', claimed_at = started_at, lease_expires_at = ended_at (or
  started_at), next_attempt_at = ended_at + backoff_ms; status SUCCESS/PARTIAL_SUCCESS/FAILED/
  CANCELLED/LOST as is, SKIPPED -> cancelled, PENDING/RUNNING -> lost (its run has finished, so
  it never reported), noted; error categories as for runs (a failed attempt without one: SYSTEM /
  'legacy_unknown'). Attempts of runs not imported are not imported.
transformation_run -> etl.pipeline_runs (idempotency_key 'legacy:<schema>:transformation_run:
  <run_id>', mode, transaction_scope, parameters, approval fields; the legacy idempotency_key
  in selection.legacy). A full-mode run without confirmation, approver and reason is not
  imported (CHECK full_refresh_requires_approval); approved_at missing is backfilled, noted.
  Non-terminal runs are not imported (with their steps).
transformation_step -> etl.runs (one per transformation_run and procedure: the status, errors,
  rows_affected, parameters and SQL of its last attempt; started_at of the first) and one
  etl.run_attempts row per step that started. A failed step with an error_code (SQLSTATE) is a
  DB error (error_type the SQLSTATE's name), without one SYSTEM/'legacy_unknown'. The pipeline
  run's DAG (etl.run_dependencies, dependency_snapshot) is rebuilt from the imported catalog
  edges plus dimension-before-fact, as etl.trigger_pipeline does; under per_group the members of
  a job group get their group_id and are folded into one unit by etl._form_groups (the engine's
  own function: leader = first member by sequence, group_leader_run_id on the others), so
  `etl retry` of an imported run behaves as for a native one.
dw_etl_incremental_cursors, transformation_watermark -> etl.cursors, param_hash =
  etl.param_fingerprint(params) ({} for a watermark), strategy from the row or its job; a cursor
  of a non-incremental job is not imported. A watermark (one per procedure) is keyed by the
  job's default parameters for mode incremental, because runs carry their defaults filled in
  (etl._validate_params) and the engine looks a cursor up by the run's fingerprint; noted, with
  a second note when the job has required parameters (then only runs with exactly the default
  parameters find it). A cursor that already exists for (job_id,
  param_hash) is never moved ("already present"). cursor_value/watermark_value may be text: it
  is cast to timestamptz (a failure is an error).
Not imported at all (reported with their row counts): dw_etl_schedules (an imported schedule
  would start firing; recreate schedules with `etl apply`), dw_etl_job_locks (state of the old
  engine), dw_etl_run_items, dw_etl_run_events, dw_etl_run_logs, dw_etl_alerts,
  transformation_step_log, refresh_target, procedure_refresh_link, procedure_tag(_link).

Idempotency: every insert is keyed (slug/routine, group name, the pipeline idempotency key,
(run_id, attempt_no), (job_id, param_hash), primary keys) with ON CONFLICT DO NOTHING or a
look-up first; a second import writes nothing and its summary says 0 new rows.

Errors (exit 1, nothing written) versus "not imported" (reported, the rest imports): a value the
importer cannot interpret (unknown status, category, strategy, mode; unparsable timestamp or
number; end before start; an unusable name) is an error. A well-formed row that the target must
not or cannot hold (live work, a conflict with existing etl data, a reference to a row that was
not imported, a full refresh without approval) is not imported, with its reason.

The summary lists per legacy table the rows seen, imported, already present, not imported (per
reason, with ids), notes (adjusted values, per kind, with ids) and the legacy columns that were
not understood, so nothing is dropped silently.
"""
from __future__ import annotations

import json
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

# The shapes a job definition must have are the YAML loader's: one rule for both.
from .definitions import PARAM_RE, PY_TARGET_RE, SQL_TARGET_RE, TAG_RE

__all__ = ["LegacyImportError", "Summary", "import_legacy", "run_import"]

MAX_IDS = 20
RUN_STATUS = {"SUCCESS": "success", "PARTIAL_SUCCESS": "partial_success", "FAILED": "failed",
              "SKIPPED": "skipped", "CANCELLED": "cancelled", "CANCELED": "cancelled"}
NON_TERMINAL = ("PENDING", "QUEUED", "RUNNING")
ATTEMPT_STATUS = {"SUCCESS": "success", "PARTIAL_SUCCESS": "partial_success", "FAILED": "failed",
                  "CANCELLED": "cancelled", "CANCELED": "cancelled", "LOST": "lost"}
CATEGORIES = ("API", "DB", "DATA", "SYSTEM")
PY_DOTTED = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARAM_TYPES = {
    "string": "string", "text": "string", "varchar": "string", "character varying": "string",
    "char": "string", "uuid": "string", "str": "string",
    "integer": "integer", "int": "integer", "int4": "integer", "int8": "integer", "bigint": "integer",
    "smallint": "integer", "int2": "integer",
    "number": "number", "numeric": "number", "decimal": "number", "float": "number", "double": "number",
    "double precision": "number", "real": "number", "float8": "number",
    "boolean": "boolean", "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp", "timestamptz": "timestamp", "timestamp with time zone": "timestamp",
    "timestamp without time zone": "timestamp", "datetime": "timestamp",
    "object": "object", "json": "object", "jsonb": "object", "array": "array",
}
TRUE_WORDS, FALSE_WORDS = {"t", "true", "y", "yes", "1", "on"}, {"f", "false", "n", "no", "0", "off"}


class LegacyImportError(Exception):
    """An import that cannot go on: names the legacy table, the row id and the column."""

    def __init__(self, message: str, table: str | None = None, row_id: Any = None,
                 id_column: str | None = None, column: str | None = None):
        super().__init__(message)
        self.message, self.table, self.row_id, self.id_column, self.column = (
            message, table, row_id, id_column, column)

    def __str__(self) -> str:
        where = []
        if self.table:
            where.append(f"legacy table {self.table}")
        if self.row_id is not None:
            where.append(f"row {self.id_column or 'id'}={self.row_id}")
        if self.column:
            where.append(f"column {self.column}")
        return (", ".join(where) + ": " if where else "") + self.message

    def as_dict(self) -> dict:
        return {"error": str(self), "message": self.message, "table": self.table,
                "row_id": None if self.row_id is None else str(self.row_id), "column": self.column}


# ------------------------------------------------------------------------------------- the summary


@dataclass
class TableReport:
    table: str
    target: str
    seen: int = 0
    imported: int = 0
    already_present: int = 0
    not_imported: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    notes: dict[str, dict] = field(default_factory=lambda: defaultdict(dict))   # note -> ids (ordered set)
    unmapped_columns: list[str] = field(default_factory=list)

    def skip(self, row_id: Any, reason: str) -> None:
        self.not_imported[reason].append(row_id)

    def note(self, row_id: Any, note: str) -> None:
        self.notes[note][row_id] = None

    def as_dict(self) -> dict:
        def group(d: dict, key: str) -> list[dict]:
            return [{key: k, "count": len(v), "ids": [str(i) for i in list(v)[:MAX_IDS]]} for k, v in d.items()]
        return {"table": self.table, "target": self.target, "seen": self.seen, "imported": self.imported,
                "already_present": self.already_present,
                "not_imported_count": sum(len(v) for v in self.not_imported.values()),
                "not_imported": group(self.not_imported, "reason"), "notes": group(self.notes, "note"),
                "unmapped_columns": self.unmapped_columns}


@dataclass
class Summary:
    schema: str
    dry_run: bool
    tables: list[TableReport] = field(default_factory=list)
    tables_not_imported: list[dict] = field(default_factory=list)
    tables_missing: list[str] = field(default_factory=list)
    written: Counter = field(default_factory=Counter)
    committed: bool = False

    @property
    def new_rows(self) -> int:
        return sum(self.written.values())

    def as_dict(self) -> dict:
        return {"schema": self.schema, "dry_run": self.dry_run, "committed": self.committed,
                "new_rows": self.new_rows, "written": dict(sorted(self.written.items())),
                "tables": [t.as_dict() for t in self.tables],
                "tables_not_imported": self.tables_not_imported, "tables_missing": self.tables_missing}


# --------------------------------------------------------------------------------- legacy reading


@dataclass(frozen=True)
class F:
    """One field of a legacy row: the columns that may hold it (first present wins) and its kind."""
    name: str
    cols: tuple[str, ...]
    kind: str = "text"   # text, int, num, bool, ts, json, key


def _f(name: str, *cols: str, kind: str = "text") -> F:
    return F(name, cols or (name,), kind)


SPECS: dict[str, tuple[str, list[F]]] = {
    "dw_etl_jobs": ("etl.jobs", [
        _f("id", "job_id", "id", kind="key"), _f("slug", "slug", "job_slug"),
        _f("name", "job_name", "name"), _f("description", "description"),
        _f("kind", "job_type", "kind", "type", "executor"),
        _f("target", "callable", "target", "entrypoint", "handler", "module_path"),
        _f("layer"), _f("role", "role", "entity_role", "job_role"), _f("domain"),
        _f("priority", kind="int"),
        _f("enabled", "is_enabled", "enabled", "is_active", "active", kind="bool"),
        _f("supports_params", kind="bool"), _f("supports_incremental", kind="bool"),
        _f("strategy", "incremental_strategy", "strategy", "cursor_strategy"),
        _f("max_retries", "max_retries", "retries", "retry_count", kind="int"),
        _f("max_attempts", kind="int"),
        _f("backoff_base", "retry_backoff_seconds", "backoff_seconds", "backoff_base_seconds", kind="num"),
        _f("backoff_factor", "backoff_multiplier", "backoff_factor", kind="num"),
        _f("backoff_cap", "max_backoff_seconds", "backoff_max_seconds", "backoff_cap_seconds", kind="num"),
        _f("timeout", "timeout_seconds", "timeout_sec", "timeout_s", kind="num"),
        _f("concurrency_key"),
        _f("allow_full_refresh", "allow_full_refresh", "supports_full_refresh", kind="bool"),
        _f("created_at", kind="ts"), _f("updated_at", kind="ts")]),
    "transformation_procedure": ("etl.jobs", [
        _f("id", "procedure_id", "id", kind="key"),
        _f("schema_name", "schema_name", "procedure_schema", "schema"),
        _f("procedure_name", "procedure_name", "routine_name", "name"),
        _f("description"), _f("layer"), _f("role", "entity_role", "role", "procedure_role"),
        _f("domain"), _f("priority", kind="int"),
        _f("enabled", "is_active", "enabled", "is_enabled", kind="bool"),
        _f("supports_params", kind="bool"), _f("supports_incremental", kind="bool"),
        _f("strategy", "incremental_strategy", "strategy"),
        _f("allow_full_refresh", "allow_full_refresh", "supports_full_refresh", kind="bool"),
        _f("max_retries", kind="int"), _f("max_attempts", kind="int"),
        _f("timeout", "timeout_seconds", "timeout_sec", kind="num"),
        _f("created_at", kind="ts"), _f("updated_at", kind="ts")]),
    "dw_etl_job_dependencies": ("etl.job_dependencies", [
        _f("parent", "parent_job_id", "parent_id", "upstream_job_id", kind="key"),
        _f("child", "child_job_id", "child_id", "downstream_job_id", kind="key"),
        _f("dependency_type"), _f("created_at", kind="ts")]),
    "transformation_dependency": ("etl.job_dependencies", [
        _f("parent", "parent_procedure_id", "parent_id", kind="key"),
        _f("child", "child_procedure_id", "child_id", kind="key"),
        _f("dependency_type"), _f("created_at", kind="ts")]),
    "dw_etl_job_tags": ("etl.job_tags", [
        _f("job", "job_id", kind="key"), _f("tag", "tag", "name", "tag_name")]),
    "transformation_parameter": ("etl.job_parameters", [
        _f("id", "parameter_id", "id", kind="key"), _f("procedure", "procedure_id", kind="key"),
        _f("name", "name", "parameter_name", "param_name"), _f("mode", "mode", "parameter_mode"),
        _f("data_type", "data_type", "type", "param_type"),
        _f("default_value", "default_value", "default", "default_json"),   # text literal or json
        _f("required", "is_required", "required", kind="bool"),
        _f("allowed_values", kind="json"), _f("description")]),
    "transformation_group": ("etl.job_groups", [
        _f("id", "group_id", "id", kind="key"), _f("name", "group_name", "name"), _f("description"),
        _f("created_at", kind="ts")]),
    "transformation_group_member": ("etl.job_group_members", [
        _f("group", "group_id", kind="key"), _f("procedure", "procedure_id", kind="key"),
        _f("sequence", "sequence", "seq", "position", "member_order", "sort_order", kind="int")]),
    "dw_etl_runs": ("etl.pipeline_runs + etl.runs", [
        _f("id", "run_id", "id", kind="key"), _f("job", "job_id", kind="key"),
        _f("correlation_id"), _f("status", "status", "run_status"),
        _f("triggered_by", "triggered_by", "requested_by", "run_by"),
        _f("trigger_type", "trigger_type", "trigger", "triggered_via"),
        _f("scheduled_at", "scheduled_at", "scheduled_for", "logical_date", kind="ts"),
        _f("started_at", kind="ts"), _f("ended_at", "ended_at", "finished_at", "completed_at", kind="ts"),
        _f("duration_ms", kind="int"), _f("dry_run", "dry_run", "is_dry_run", kind="bool"),
        _f("attempt_count", "attempt_count", "attempts", kind="int"),
        _f("records_read", kind="int"), _f("records_written", kind="int"), _f("page_count", kind="int"),
        _f("rows_affected", kind="int"),
        _f("error_category"), _f("is_transient", "is_transient_error", "is_transient", kind="bool"),
        _f("error_type"), _f("error_message", "error_message", "error"),
        _f("params", "params", "parameters", kind="json"),
        _f("parameter_fingerprint", "parameter_fingerprint", "param_hash"),
        _f("metrics", kind="json"), _f("skip_reason"), _f("created_at", kind="ts")]),
    "dw_etl_run_attempts": ("etl.run_attempts", [
        _f("id", "attempt_id", "id", kind="key"), _f("run", "run_id", kind="key"),
        _f("attempt_no", "attempt_no", "attempt_number", "attempt", kind="int"),
        _f("status", "status", "attempt_status"),
        _f("worker", "worker_id", "worker_host", "worker", "host"),
        _f("started_at", kind="ts"), _f("ended_at", "ended_at", "finished_at", kind="ts"),
        _f("duration_ms", kind="int"),
        _f("error_category"), _f("is_transient", "is_transient_error", "is_transient", kind="bool"),
        _f("error_type"), _f("error_message", "error_message", "error"),
        _f("error_detail", kind="json"),
        _f("backoff_ms", "backoff_ms", "backoff_delay_ms", kind="int"),
        _f("next_attempt_at", kind="ts"),
        _f("records_read", kind="int"), _f("records_written", kind="int"), _f("page_count", kind="int"),
        _f("rows_affected", kind="int"), _f("metrics", kind="json")]),
    "transformation_run": ("etl.pipeline_runs", [
        _f("id", "run_id", "id", kind="key"), _f("idempotency_key"), _f("status", "status", "run_status"),
        _f("mode", "mode", "run_mode", "refresh_mode"), _f("transaction_scope"),
        _f("params", "parameters", "params", kind="json"),
        _f("requested_by", "requested_by", "triggered_by"),
        _f("confirmed", "full_refresh_confirmed", "confirmed", kind="bool"),
        _f("approved_by", "approved_by", "approver"), _f("approved_at", kind="ts"),
        _f("approval_reason"), _f("dry_run", kind="bool"),
        _f("created_at", kind="ts"), _f("started_at", kind="ts"),
        _f("ended_at", "finished_at", "ended_at", "completed_at", kind="ts")]),
    "transformation_step": ("etl.runs + etl.run_attempts", [
        _f("id", "step_id", "id", kind="key"), _f("run", "run_id", kind="key"),
        _f("procedure", "procedure_id", kind="key"),
        _f("attempt_no", "attempt_no", "attempt", kind="int"), _f("status", "status", "step_status"),
        _f("started_at", kind="ts"), _f("ended_at", "finished_at", "ended_at", kind="ts"),
        _f("duration_ms", kind="int"), _f("rows_affected", kind="int"),
        _f("params", "parameters", "params", "parameter_snapshot", kind="json"),
        _f("sql_executed"), _f("error_code", "error_code", "sqlstate"), _f("error_category"),
        _f("error_message", "error_message", "error")]),
    "dw_etl_incremental_cursors": ("etl.cursors", [
        _f("id", "cursor_id", "id", kind="key"), _f("job", "job_id", kind="key"),
        _f("params", kind="json"), _f("param_hash", "param_hash", "parameter_fingerprint"),
        _f("cursor_value", "cursor_value", "watermark", "last_value", kind="ts"),
        _f("tiebreak", "tiebreak_value", "tiebreak_key", "last_key"), _f("strategy", "strategy", "incremental_strategy"),
        _f("metadata", kind="json"), _f("last_run", "last_run_id", kind="key"),
        _f("updated_at", kind="ts"), _f("created_at", kind="ts")]),
    "transformation_watermark": ("etl.cursors", [
        _f("id", "watermark_id", "id", "procedure_id", kind="key"), _f("procedure", "procedure_id", kind="key"),
        _f("params", "params", "parameters", kind="json"),
        _f("cursor_value", "watermark_value", "cursor_value", "value", "last_value", kind="ts"),
        _f("column", "watermark_column", "column_name"), _f("tiebreak", "tiebreak_value", "tiebreak_key"),
        _f("strategy", "strategy", "incremental_strategy"),
        _f("updated_at", kind="ts"), _f("created_at", kind="ts")]),
}

NOT_IMPORTED_TABLES = {
    "dw_etl_schedules": "schedules are not imported: an imported schedule would start firing at once; "
                        "recreate them with `etl apply` (schedule:) when the jobs are ready",
    "dw_etl_job_locks": "locks are transient state of the old engine",
    "dw_etl_run_items": "run items are not imported by this version",
    "dw_etl_run_events": "run events are not imported by this version",
    "dw_etl_run_logs": "run logs are not imported by this version",
    "dw_etl_alerts": "alerts are not imported by this version",
    "transformation_step_log": "step logs are not imported by this version",
    "refresh_target": "refresh targets are not imported by this version (etl apply refresh:)",
    "procedure_refresh_link": "refresh links are not imported by this version (etl apply refresh:)",
    "procedure_tag": "procedure tags are not imported by this version",
    "procedure_tag_link": "procedure tags are not imported by this version",
}


@dataclass
class Row:
    table: str
    id_column: str
    id: Any
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


@dataclass
class JobRef:
    job_id: int
    slug: str
    kind: str
    target: str
    strategy: str
    max_attempts: int
    priority: int


@dataclass
class RunRef:
    run_id: int
    started_at: datetime | None
    ended_at: datetime | None


def slugify(text: str | None) -> str | None:
    """Lower case, every run of characters outside [a-z0-9_] one '_', trimmed, at most 63 long."""
    if text is None:
        return None
    s = re.sub(r"[^a-z0-9_]+", "_", text.strip().lower()).strip("_")
    if not s:
        return None
    if not s[0].isalpha():
        s = "j_" + s
    return s[:63].rstrip("_")


def _norm_strategy(value: str | None) -> str | None:
    if value is None:
        return None
    key = re.sub(r"[\s_\-]", "", value).lower()
    return {"modifieddate": "modified_date", "lastrun": "last_run", "none": "none", "": "none",
            "watermark": "modified_date"}.get(key)


class Importer:
    """One import: reads the legacy schema and writes the etl rows, in the caller's transaction."""

    def __init__(self, conn: psycopg.Connection, schema: str, summary: Summary):
        self.conn, self.schema, self.summary = conn, schema, summary
        self.jobs: dict[tuple[str, str], JobRef] = {}
        self.slugs_taken: dict[str, tuple[str, str]] = {}
        self.groups: dict[str, int] = {}
        self.runs: dict[str, RunRef] = {}
        self.run_skips: dict[str, str] = {}
        self.present: dict[str, dict[str, str]] = {}
        self.reports: dict[str, TableReport] = {}
        self.new_jobs: set[tuple[str, str]] = set()
        # legacy dw job id -> parameter name -> JSON types seen in its runs' and cursors' params
        self.param_evidence: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.user = conn.execute("select session_user as u").fetchone()["u"]

    # ------------------------------------------------------------------ reading and conversion

    def _columns(self, table: str) -> dict[str, str]:
        rows = self.conn.execute(
            """select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) as type
                 from pg_catalog.pg_attribute a
                 join pg_catalog.pg_class c on c.oid = a.attrelid
                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
                order by a.attnum""", (self.schema, table)).fetchall()
        return {r["attname"]: r["type"] for r in rows}

    def discover(self) -> None:
        exists = self.conn.execute("select 1 from pg_catalog.pg_namespace where nspname = %s",
                                   (self.schema,)).fetchone()
        if exists is None:
            raise LegacyImportError(f"schema {self.schema!r} does not exist")
        names = {r["relname"] for r in self.conn.execute(
            """select c.relname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm', 'f')""", (self.schema,))}
        for t in SPECS:
            if t in names:
                self.present[t] = self._columns(t)
            else:
                self.summary.tables_missing.append(t)
        for t, reason in NOT_IMPORTED_TABLES.items():
            if t in names:
                n = self.conn.execute(sql.SQL("select count(*) as n from {}.{}").format(
                    sql.Identifier(self.schema), sql.Identifier(t))).fetchone()["n"]
                self.summary.tables_not_imported.append({"table": t, "rows": n, "reason": reason})
        if not self.present:
            raise LegacyImportError(
                f"schema {self.schema!r} holds none of the legacy tables ({', '.join(SPECS)})")

    def read(self, table: str) -> tuple[TableReport, list[Row]]:
        target, spec = SPECS[table]
        cols = self.present[table]
        report = TableReport(table, target)
        self.summary.tables.append(report)
        self.reports[table] = report
        chosen: dict[str, str] = {}
        selects = []
        for f in spec:
            col = next((c for c in f.cols if c in cols), None)
            if col is None:
                continue
            chosen[f.name] = col
            ident, ctype = sql.Identifier(col), cols[col]
            if f.kind == "ts" and ctype in ("timestamp without time zone", "date"):
                expr = sql.SQL("{}::timestamptz").format(ident)
            elif ctype in ("json", "jsonb"):
                expr = sql.SQL("{}::text").format(ident)   # exact numbers: never through float
            elif f.kind == "key":
                expr = sql.SQL("{}::text").format(ident)
            else:
                expr = ident
            selects.append(sql.SQL("{} as {}").format(expr, sql.Identifier(f.name)))
        used = set(chosen.values())
        report.unmapped_columns = [c for c in cols if c not in used]
        id_field = "id" if "id" in chosen else None
        order = [sql.Identifier(chosen[f.name]) for f in spec if f.kind == "key" and f.name in chosen]
        q = sql.SQL("select {} from {}.{}").format(
            sql.SQL(", ").join(selects) if selects else sql.SQL("1 as one"),
            sql.Identifier(self.schema), sql.Identifier(table))
        if order:
            q = q + sql.SQL(" order by ") + sql.SQL(", ").join(order)
        raw = self.conn.execute(q).fetchall()
        rows = []
        for i, r in enumerate(raw, start=1):
            if id_field:
                id_column, rid = chosen["id"], r["id"]
            else:   # link tables: the id is the pair of keys
                keys = [f.name for f in spec if f.kind == "key" and f.name in chosen]
                id_column = "/".join(chosen[k] for k in keys) or "row"
                rid = "/".join(str(r[k]) for k in keys) if keys else i
            row = Row(table, id_column, rid, {})
            for f in spec:
                if f.name in chosen:
                    row.values[f.name] = self._convert(row, f, chosen[f.name], r[f.name])
            row.values["_cols"] = chosen
            rows.append(row)
        report.seen = len(rows)
        return report, rows

    def fail(self, row: Row, field_name: str | None, message: str) -> LegacyImportError:
        col = row["_cols"].get(field_name, field_name) if field_name else None
        return LegacyImportError(message, row.table, row.id, row.id_column, col)

    def _convert(self, row: Row, f: F, col: str, v: Any) -> Any:
        if v is None:
            return None

        def bad(why: str) -> LegacyImportError:
            return LegacyImportError(why, row.table, row.id, row.id_column, col)

        if f.kind in ("text", "key"):
            return str(v)
        if f.kind == "int":
            if isinstance(v, bool):
                return int(v)
            if isinstance(v, int):
                return v
            try:
                d = Decimal(str(v).strip())
                if d != d.to_integral_value():
                    raise InvalidOperation
                return int(d)
            except (InvalidOperation, ValueError):
                raise bad(f"{v!r} is not an integer") from None
        if f.kind == "num":
            try:
                return Decimal(str(v).strip())
            except InvalidOperation:
                raise bad(f"{v!r} is not a number") from None
        if f.kind == "bool":
            if isinstance(v, bool):
                return v
            s = str(v).strip().lower()
            if s in TRUE_WORDS:
                return True
            if s in FALSE_WORDS:
                return False
            raise bad(f"{v!r} is not a boolean")
        if f.kind == "ts":
            if isinstance(v, datetime) and v.tzinfo is not None:
                return v
            try:
                with self.conn.transaction():   # a savepoint: a bad value must not abort the import's own error path
                    return self.conn.execute("select %s::text::timestamptz as ts", (str(v),)).fetchone()["ts"]
            except psycopg.Error:
                raise bad(f"{v!r} is not a timestamp") from None
        if f.kind == "json":
            text = v if isinstance(v, str) else json.dumps(v)
            try:
                json.loads(text, parse_float=Decimal)
            except ValueError:
                raise bad(f"{v!r} is not JSON") from None
            return text
        raise AssertionError(f.kind)

    def _obj(self, row: Row, name: str) -> str:
        """A JSON-object field as JSON text ('{}' when NULL); anything else is an error."""
        text = row[name]
        if text is None:
            return "{}"
        value = json.loads(text, parse_float=Decimal)
        if value is None:
            return "{}"
        if not isinstance(value, dict):
            raise self.fail(row, name, f"{text} is not a JSON object")
        return text

    # ---------------------------------------------------------------------------- writing

    def exec(self, row: Row, column: str | None, query: Any, params: Iterable[Any] = ()) -> dict | None:
        """Runs one statement for a legacy row; a database error names the row and the column."""
        try:
            return self.conn.execute(query, tuple(params)).fetchone()
        except psycopg.Error as exc:
            diag = exc.diag
            msg = (diag.message_primary or str(exc)).strip()
            extra = [f"SQLSTATE {exc.sqlstate}"] if exc.sqlstate else []
            if diag.constraint_name:
                extra.append(f"constraint {diag.constraint_name}")
            col = row["_cols"].get(column, column) if column else diag.column_name
            raise LegacyImportError(f"{msg} ({', '.join(extra)})" if extra else msg,
                                    row.table, row.id, row.id_column, col) from exc

    def wrote(self, table: str, n: int = 1) -> None:
        self.summary.written[table] += n

    def _key(self, table: str, legacy_id: Any) -> str:
        return f"legacy:{self.schema}:{table}:{legacy_id}"

    def _legacy(self, row: Row, **extra: Any) -> dict:
        return {"legacy": {"schema": self.schema, "table": row.table, "id": str(row.id), **extra}}

    # ------------------------------------------------------------------------------ jobs

    def _job_by(self, slug: str | None = None, sql_target: str | None = None) -> JobRef | None:
        """The etl job with this slug, or the sql job with this target (unique routine)."""
        r = self.conn.execute(
            """select job_id, slug, kind, target, incremental_strategy, max_attempts, priority
                 from etl.jobs
                where slug = %s or (kind = 'sql' and target = %s)""", (slug, sql_target)).fetchone()
        return None if r is None else JobRef(r["job_id"], r["slug"], r["kind"], r["target"],
                                             r["incremental_strategy"], r["max_attempts"], r["priority"])

    def _common_job_columns(self, row: Row, report: TableReport, default_strategy: str | None) -> dict:
        cols: dict[str, Any] = {}
        layer = row["layer"]
        if layer is not None:
            if layer.strip().lower() in ("bronze", "silver", "gold"):
                cols["layer"] = layer.strip().lower()
            else:
                report.note(row.id, "layer not bronze/silver/gold: imported without a layer")
        role = row["role"]
        if role is not None:
            r = {"dimension": "dimension", "dim": "dimension", "fact": "fact"}.get(role.strip().lower())
            if r:
                cols["role"] = r
            else:
                report.note(row.id, "role not dimension/fact: imported without a role")
        if row["domain"] is not None:
            cols["domain"] = row["domain"]
        if row["priority"] is not None:
            if row["priority"] < 0:
                raise self.fail(row, "priority", f"priority {row['priority']} is negative")
            cols["priority"] = row["priority"]
        if row["supports_params"] is not None:
            cols["supports_params"] = row["supports_params"]
        # retries
        if row["max_attempts"] is not None:
            attempts, src = row["max_attempts"], "max_attempts"
        elif row["max_retries"] is not None:
            attempts, src = row["max_retries"] + 1, "max_retries"
        else:
            attempts, src = None, None
        if attempts is not None:
            if not 1 <= attempts <= 100:
                raise self.fail(row, src, f"gives max_attempts {attempts}, outside 1..100")
            cols["max_attempts"] = attempts
        base = None
        if row["backoff_base"] is not None:
            if row["backoff_base"] < 0:
                raise self.fail(row, "backoff_base", f"backoff {row['backoff_base']}s is negative")
            if row["backoff_base"] == 0:
                report.note(row.id, "backoff of 0 s imported as 1 ms (backoff_base must be positive)")
                base = timedelta(milliseconds=1)
            else:
                base = timedelta(seconds=float(row["backoff_base"]))
            cols["backoff_base"] = base
        if row["backoff_factor"] is not None:
            if row["backoff_factor"] < 1:
                raise self.fail(row, "backoff_factor", f"backoff factor {row['backoff_factor']} is below 1")
            cols["backoff_factor"] = row["backoff_factor"]
        cap = timedelta(seconds=float(row["backoff_cap"])) if row["backoff_cap"] is not None else None
        if cap is not None or base is not None:
            cols["backoff_cap"] = max(x for x in (cap or timedelta(minutes=5), base or timedelta(0)))
        if row["timeout"] is not None:
            if row["timeout"] < 0:
                raise self.fail(row, "timeout", f"timeout {row['timeout']}s is negative")
            if row["timeout"] > 0:
                cols["timeout"] = timedelta(seconds=float(row["timeout"]))
        # incremental
        strategy = _norm_strategy(row["strategy"])
        if row["strategy"] is not None and strategy is None:
            raise self.fail(row, "strategy", f"unknown incremental strategy {row['strategy']!r} "
                                             "(expected modifiedDate/modified_date or last_run)")
        incremental = row["supports_incremental"]
        if incremental is None:
            incremental = strategy not in (None, "none")
        if incremental:
            strategy = strategy if strategy not in (None, "none") else default_strategy
            if strategy is None:
                raise self.fail(row, "strategy" if "strategy" in row["_cols"] else "supports_incremental",
                                "the job is incremental but names no incremental strategy")
        cols["supports_incremental"] = bool(incremental)
        cols["incremental_strategy"] = strategy if incremental else "none"
        if row["allow_full_refresh"] is not None:
            cols["allow_full_refresh"] = row["allow_full_refresh"]
        for c in ("created_at", "updated_at"):
            if row[c] is not None:
                cols[c] = row[c]
        return cols

    def _insert_job(self, row: Row, cols: dict) -> JobRef:
        names = list(cols)
        q = sql.SQL("insert into etl.jobs ({}) values ({}) returning job_id").format(
            sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(sql.Placeholder() * len(names)))
        values = [Jsonb(v) if n == "config" else v for n, v in cols.items()]
        r = self.exec(row, None, q, values)
        self.wrote("etl.jobs")
        return JobRef(r["job_id"], cols["slug"], cols["kind"], cols["target"], cols["incremental_strategy"],
                      cols.get("max_attempts", 3), cols.get("priority", 0))

    def _claim_slug(self, row: Row, slug: str, field_name: str) -> None:
        other = self.slugs_taken.get(slug)
        if other is not None and other != (row.table, str(row.id)):
            raise self.fail(row, field_name, f"gives slug {slug!r}, which legacy {other[0]} row {other[1]} "
                                             "already maps to; rename one of them")
        self.slugs_taken[slug] = (row.table, str(row.id))

    def import_dw_jobs(self) -> None:
        report, rows = self.read("dw_etl_jobs")
        for row in rows:
            if row["slug"] is not None:
                slug, src = slugify(row["slug"]), "slug"
                if slug != row["slug"]:
                    report.note(row.id, "slug normalised to lower snake case")
            else:
                slug, src = slugify(row["name"]), "name"
            if slug is None:
                raise self.fail(row, src, "gives no usable slug (no letter or digit)")
            self._claim_slug(row, slug, src)
            kind_raw = (row["kind"] or "python").strip().lower()
            if kind_raw in ("sql", "procedure", "sql_procedure", "function", "plpgsql", "sql_function"):
                kind = "sql"
            elif kind_raw in ("python", "py", "api", "extract", "callable"):
                kind = "python"
            else:
                raise self.fail(row, "kind", f"unknown job type {row['kind']!r} (expected python or sql)")
            target, enabled = (row["target"] or "").strip(), row["enabled"]
            if kind == "sql":
                if not SQL_TARGET_RE.match(target):
                    raise self.fail(row, "target", f"{target!r} is not a lower-case schema.routine name")
            elif not PY_TARGET_RE.match(target):
                m = PY_DOTTED.match(target)
                if m:
                    target = f"{m.group(1)}:{m.group(2)}"
                    report.note(row.id, "dotted callable read as module:function")
                elif not target:
                    target, enabled = f"legacy:{slug}", False
                    report.note(row.id, "no callable: target set to the placeholder legacy:<slug> and the "
                                        "job imported disabled; point it at real code before enabling it")
                else:
                    raise self.fail(row, "target", f"{target!r} is not a Python callable (module:function)")
            existing = self._job_by(slug=slug)
            if existing is None and kind == "sql":
                existing = self._job_by(sql_target=target)
                if existing is not None:
                    report.note(row.id, "matched an existing job by its SQL routine")
            if existing is not None:
                report.already_present += 1
                self.jobs[(row.table, str(row.id))] = existing
                continue
            cols = {"slug": slug, "name": row["name"] or slug, "description": row["description"],
                    "kind": kind, "target": target}
            cols.update(self._common_job_columns(row, report, None))
            if enabled is not None:
                cols["enabled"] = enabled
            if row["concurrency_key"] is not None and row["concurrency_key"].strip():
                if "#" in row["concurrency_key"]:
                    raise self.fail(row, "concurrency_key", "a concurrency key may not contain '#'")
                cols["concurrency_key"] = row["concurrency_key"]
            cols["config"] = self._legacy(row)
            self.jobs[(row.table, str(row.id))] = self._insert_job(row, cols)
            self.new_jobs.add((row.table, str(row.id)))
            report.imported += 1

    def import_procedures(self) -> None:
        report, rows = self.read("transformation_procedure")
        for row in rows:
            schema, name = row["schema_name"], row["procedure_name"]
            if not schema or not name:
                raise self.fail(row, "procedure_name" if schema else "schema_name", "is empty")
            target = f"{schema.strip()}.{name.strip()}"
            if not SQL_TARGET_RE.match(target):
                raise self.fail(row, "procedure_name", f"{target!r} is not a lower-case schema.routine name")
            existing = self._job_by(sql_target=target)
            if existing is not None:
                report.already_present += 1
                self.jobs[(row.table, str(row.id))] = existing
                self.slugs_taken.setdefault(existing.slug, (row.table, str(row.id)))
                continue
            slug = None
            for candidate in (slugify(name), slugify(f"{schema}_{name}")):
                if candidate is None or candidate in self.slugs_taken:
                    continue
                if self._job_by(slug=candidate) is None:
                    slug = candidate
                    break
            if slug is None:
                raise self.fail(row, "procedure_name", f"no free slug for {target} (tried {slugify(name)!r} "
                                                       f"and {slugify(f'{schema}_{name}')!r})")
            if slug != slugify(name):
                report.note(row.id, "slug taken by another job: schema-qualified slug used")
            self._claim_slug(row, slug, "procedure_name")
            cols = {"slug": slug, "name": target, "description": row["description"], "kind": "sql",
                    "target": target}
            cols.update(self._common_job_columns(row, report, "modified_date"))
            if row["enabled"] is not None:
                cols["enabled"] = row["enabled"]
            cols["config"] = self._legacy(row)
            self.jobs[(row.table, str(row.id))] = self._insert_job(row, cols)
            report.imported += 1

    def _job_of(self, report: TableReport, row: Row, jobs_table: str, field_name: str) -> JobRef | None:
        legacy_id = row[field_name]
        job = self.jobs.get((jobs_table, str(legacy_id)))
        if job is None:
            report.skip(row.id, f"{row['_cols'].get(field_name, field_name)} names no job imported from "
                                f"{jobs_table}" + ("" if jobs_table in self.present else f" ({jobs_table} is missing)"))
        return job

    def import_dependencies(self, table: str, jobs_table: str) -> None:
        report, rows = self.read(table)
        for row in rows:
            parent = self._job_of(report, row, jobs_table, "parent")
            child = self._job_of(report, row, jobs_table, "child") if parent else None
            if parent is None or child is None:
                continue
            if parent.job_id == child.job_id:
                report.skip(row.id, "a job cannot depend on itself")
                continue
            dtype = (row["dependency_type"] or "explicit").strip().lower()
            if dtype not in ("explicit", "data", "lineage"):
                report.note(row.id, "dependency_type not explicit/data/lineage: imported as explicit")
                dtype = "explicit"
            r = self.exec(row, "child", """insert into etl.job_dependencies (parent_job_id, child_job_id, dependency_type)
                                             values (%s, %s, %s) on conflict do nothing returning 1 as ok""",
                          (parent.job_id, child.job_id, dtype))
            if r is None:
                report.already_present += 1
            else:
                report.imported += 1
                self.wrote("etl.job_dependencies")

    def import_tags(self) -> None:
        report, rows = self.read("dw_etl_job_tags")
        for row in rows:
            job = self._job_of(report, row, "dw_etl_jobs", "job")
            if job is None:
                continue
            tag = (row["tag"] or "").strip().lower().replace(" ", "_")
            if not TAG_RE.match(tag):
                report.skip(row.id, "tag does not fit the tag format [a-z0-9][a-z0-9_:.-]*")
                continue
            if tag != row["tag"]:
                report.note(row.id, "tag lower-cased")
            r = self.exec(row, "tag", "insert into etl.job_tags (job_id, tag) values (%s, %s) "
                                      "on conflict do nothing returning 1 as ok", (job.job_id, tag))
            if r is None:
                report.already_present += 1
            else:
                report.imported += 1
                self.wrote("etl.job_tags")

    def import_parameters(self) -> None:
        report, rows = self.read("transformation_parameter")
        for row in rows:
            job = self._job_of(report, row, "transformation_procedure", "procedure")
            if job is None:
                continue
            name = (row["name"] or "").strip()
            if not PARAM_RE.match(name):
                raise self.fail(row, "name", f"{row['name']!r} is not a parameter name ([A-Za-z_][A-Za-z0-9_]*)")
            mode_raw = (row["mode"] or "all").strip().lower()
            mode = {"all": "all", "both": "all", "any": "all", "": "all",
                    "incremental": "incremental", "full": "full", "full_refresh": "full"}.get(mode_raw)
            if mode is None:
                raise self.fail(row, "mode", f"unknown mode {row['mode']!r} (expected all, incremental or full)")
            dtype_raw = (row["data_type"] or "string").strip().lower()
            dtype = PARAM_TYPES.get(dtype_raw) or PARAM_TYPES.get(re.sub(r"\(.*\)$", "", dtype_raw).strip())
            if dtype is None:
                report.note(row.id, "data_type not understood: imported as string")
                dtype = "string"
            default = self._default(row, dtype)
            required = bool(row["required"])
            if required and default is not None:
                report.note(row.id, "required parameter with a default imported as optional")
                required = False
            allowed = row["allowed_values"]
            if allowed is not None and not isinstance(json.loads(allowed), list):
                raise self.fail(row, "allowed_values", "is not a JSON array")
            r = self.exec(row, "name", """insert into etl.job_parameters
                                            (job_id, name, mode, data_type, required, default_value, allowed_values, description)
                                          values (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)
                                          on conflict (job_id, name, mode) do nothing returning parameter_id""",
                          (job.job_id, name, mode, dtype, required, default, allowed, row["description"]))
            if r is None:
                report.already_present += 1
            else:
                report.imported += 1
                self.wrote("etl.job_parameters")

    def _default(self, row: Row, dtype: str) -> str | None:
        """The default as JSON text of the parameter's type."""
        text = row["default_value"]
        if text is None:
            return None
        if self.present[row.table][row["_cols"]["default_value"]] in ("json", "jsonb"):
            return text
        raw = text   # a text column: the literal value
        try:
            if dtype == "integer":
                value: Any = int(raw.strip())
            elif dtype == "number":
                number = Decimal(raw.strip())
                if not number.is_finite():
                    raise ValueError
                return str(number)   # JSON number text, exact
            elif dtype == "boolean":
                s = raw.strip().lower()
                if s not in TRUE_WORDS | FALSE_WORDS:
                    raise ValueError
                value = s in TRUE_WORDS
            elif dtype in ("object", "array"):
                value = json.loads(raw)
            else:
                value = raw
        except (ValueError, InvalidOperation):
            raise self.fail(row, "default_value", f"{raw!r} is not a valid {dtype}") from None
        return json.dumps(value)

    def import_groups(self) -> None:
        report, rows = self.read("transformation_group")
        for row in rows:
            name = slugify(row["name"])
            if name is None:
                raise self.fail(row, "name", "gives no usable group name")
            if name != row["name"]:
                report.note(row.id, "group name normalised to lower snake case")
            r = self.exec(row, "name", """insert into etl.job_groups (name, description) values (%s, %s)
                                          on conflict (name) do nothing returning group_id""",
                          (name, row["description"]))
            if r is None:
                r = self.conn.execute("select group_id from etl.job_groups where name = %s", (name,)).fetchone()
                report.already_present += 1
            else:
                report.imported += 1
                self.wrote("etl.job_groups")
            self.groups[str(row.id)] = r["group_id"]

    def import_group_members(self) -> None:
        report, rows = self.read("transformation_group_member")
        for row in rows:
            gid = self.groups.get(str(row["group"]))
            if gid is None:
                report.skip(row.id, "group_id names no group imported from transformation_group")
                continue
            job = self._job_of(report, row, "transformation_procedure", "procedure")
            if job is None:
                continue
            seq = row["sequence"]
            if seq is None or seq < 1:
                raise self.fail(row, "sequence", f"sequence {seq!r} is not a positive integer")
            cur = self.conn.execute(
                """select m.group_id, g.name from etl.job_group_members m join etl.job_groups g using (group_id)
                    where m.job_id = %s""", (job.job_id,)).fetchone()
            if cur is not None:
                if cur["group_id"] == gid:
                    report.already_present += 1
                else:
                    report.skip(row.id, "job already belongs to another etl group (existing membership kept)")
                continue
            taken = self.conn.execute("select 1 from etl.job_group_members where group_id = %s and sequence = %s",
                                      (gid, seq)).fetchone()
            if taken is not None:
                report.skip(row.id, "sequence already taken in the etl group (existing member kept)")
                continue
            self.exec(row, "sequence", """insert into etl.job_group_members (group_id, job_id, sequence)
                                          values (%s, %s, %s) returning 1 as ok""", (gid, job.job_id, seq))
            report.imported += 1
            self.wrote("etl.job_group_members")

    # ------------------------------------------------------------------------------ runs

    def _status(self, row: Row, table_statuses: dict[str, str] = RUN_STATUS) -> str | None:
        """The etl status, or None for a legacy status that is not finished."""
        raw = row["status"]
        s = (raw or "").strip().upper()
        if s in NON_TERMINAL:
            return None
        if s in table_statuses:
            return table_statuses[s]
        raise self.fail(row, "status", f"unknown status {raw!r} (expected one of PENDING, QUEUED, RUNNING, "
                                       "SUCCESS, PARTIAL_SUCCESS, FAILED, SKIPPED, CANCELLED)")

    def _category(self, row: Row) -> str | None:
        raw = row["error_category"]
        if raw is None or raw.strip().upper() in ("", "NONE"):
            return None
        c = raw.strip().upper()
        if c not in CATEGORIES:
            raise self.fail(row, "error_category", f"unknown error category {raw!r} "
                                                   "(expected API, DB, DATA, SYSTEM or NONE)")
        return c

    def _times(self, row: Row, report: TableReport, finished: bool,
               fallbacks: tuple[datetime | None, ...] = ()) -> tuple[datetime | None, datetime | None, int | None]:
        """started_at, ended_at (backfilled for a finished row) and duration_ms (backfilled)."""
        started, ended, duration = row["started_at"], row["ended_at"], row["duration_ms"]
        if duration is not None and duration < 0:
            raise self.fail(row, "duration_ms", f"duration {duration} ms is negative")
        if started is not None and ended is not None and ended < started:
            raise self.fail(row, "ended_at", f"ends ({ended.isoformat()}) before it starts ({started.isoformat()})")
        if ended is None and finished:
            if started is not None and duration is not None:
                ended = started + timedelta(milliseconds=duration)
            else:
                ended = next((t for t in (started, *fallbacks) if t is not None), None)
            if ended is None:
                raise self.fail(row, "ended_at", "a finished row without ended_at, started_at or any other time")
            report.note(row.id, "ended_at missing: backfilled")
        if duration is None and started is not None and ended is not None:
            duration = int((ended - started) / timedelta(milliseconds=1))
            report.note(row.id, "duration_ms backfilled from ended_at - started_at")
        return started, ended, duration

    def _run_error(self, row: Row, report: TableReport, status: str, category: str | None,
                   error_type: str | None) -> tuple[str | None, str | None]:
        if status == "failed" and category is None:
            report.note(row.id, "failed without an error category: SYSTEM / legacy_unknown")
            return "SYSTEM", error_type or "legacy_unknown"
        if status == "success" and category is not None:
            report.note(row.id, "success with an error category: category dropped")
            return None, error_type
        return category, error_type

    def _insert_pipeline(self, row: Row, key: str, cols: dict) -> int | None:
        names = ["idempotency_key", "trigger_type", *cols]
        values = [key, "import", *cols.values()]
        ph = [sql.SQL("%s::jsonb") if n == "params" else sql.Placeholder() for n in names]
        q = sql.SQL("insert into etl.pipeline_runs ({}) values ({}) on conflict (idempotency_key) do nothing "
                    "returning pipeline_run_id").format(
            sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(ph))
        r = self.exec(row, None, q, values)
        if r is None:
            return None
        self.wrote("etl.pipeline_runs")
        return r["pipeline_run_id"]

    def _insert_run(self, row: Row, cols: dict) -> int | None:
        """cols holds params as JSON text; the fingerprint is computed by etl.param_fingerprint."""
        names = list(cols) + ["parameter_fingerprint"]
        ph = []
        for n in cols:
            ph.append(sql.SQL("%s::jsonb") if n in ("params", "param_snapshot", "metrics") else sql.Placeholder())
        ph.append(sql.SQL("etl.param_fingerprint(%s::jsonb)"))
        q = sql.SQL("insert into etl.runs ({}) values ({}) on conflict (pipeline_run_id, job_id) do nothing "
                    "returning run_id").format(sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(ph))
        r = self.exec(row, None, q, [*cols.values(), cols["params"]])
        if r is None:
            return None
        self.wrote("etl.runs")
        return r["run_id"]

    def _insert_attempt(self, row: Row, cols: dict) -> bool:
        names = list(cols)
        ph = [sql.SQL("%s::jsonb") if n in ("error_detail", "metrics") else sql.Placeholder() for n in names]
        q = sql.SQL("insert into etl.run_attempts ({}) values ({}) on conflict (run_id, attempt_no) do nothing "
                    "returning attempt_id").format(sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(ph))
        r = self.exec(row, "attempt_no", q, list(cols.values()))
        if r is not None:
            self.wrote("etl.run_attempts")
        return r is not None

    def import_dw_runs(self, attempt_counts: dict[str, int]) -> None:
        report, rows = self.read("dw_etl_runs")
        for row in rows:
            self._param_evidence(row)
        for row in rows:
            rid = str(row.id)
            status = self._status(row)
            if status is None:
                reason = (f"non-terminal legacy status {row['status'].strip().upper()}: not imported as live work "
                          "(the engine would claim it); finish or cancel it in the old system, or trigger it anew")
                report.skip(row.id, reason)
                self.run_skips[rid] = "its run was not imported (non-terminal status)"
                continue
            job = self._job_of(report, row, "dw_etl_jobs", "job")
            if job is None:
                self.run_skips[rid] = "its run was not imported (no job)"
                continue
            params = self._obj(row, "params")
            started, ended, duration = self._times(row, report, True, (row["scheduled_at"], row["created_at"]))
            category, error_type = self._run_error(row, report, status, self._category(row), row["error_type"])
            logical = next(t for t in (row["scheduled_at"], started, row["created_at"], ended) if t is not None)
            attempts = row["attempt_count"]
            if attempts is None:
                attempts = attempt_counts.get(rid, 1 if started is not None else 0)
            if attempts < 0:
                raise self.fail(row, "attempt_count", f"attempt_count {attempts} is negative")
            key = self._key("dw_etl_runs", row.id)
            legacy = self._legacy(row, trigger_type=row["trigger_type"])["legacy"]
            requested_by = row["triggered_by"] or self.user
            reason = f"imported from legacy {self.schema}.dw_etl_runs run_id={row.id}"
            pid = self._insert_pipeline(row, key, {
                "logical_date": logical, "status": status, "dry_run": bool(row["dry_run"]), "params": params,
                "selection": Jsonb({"jobs": [job.slug], "legacy": legacy}),
                "reason": reason, "requested_by": requested_by,
                "created_at": row["created_at"] or logical, "started_at": started, "ended_at": ended,
                "skip_reason": row["skip_reason"] if status == "skipped" else None})
            if pid is None:
                report.already_present += 1
                r = self.conn.execute("""select r.run_id, r.started_at, r.ended_at from etl.runs r
                                           join etl.pipeline_runs p using (pipeline_run_id)
                                          where p.idempotency_key = %s""", (key,)).fetchone()
                if r is not None:
                    self.runs[rid] = RunRef(r["run_id"], r["started_at"], r["ended_at"])
                continue
            run_cols = {
                "pipeline_run_id": pid, "job_id": job.job_id, "status": status, "dry_run": bool(row["dry_run"]),
                "params": params, "param_snapshot": params, "priority": job.priority,
                "logical_date": logical,
                "scheduled_at": next(t for t in (row["scheduled_at"], started, row["created_at"], logical) if t),
                "started_at": started, "ended_at": ended, "duration_ms": duration,
                "attempt_count": attempts, "max_attempts": max(job.max_attempts, attempts, 1),
                "error_category": category, "is_transient": row["is_transient"], "error_type": error_type,
                "error_message": row["error_message"], "records_read": row["records_read"],
                "records_written": row["records_written"], "page_count": row["page_count"],
                "rows_affected": row["rows_affected"], "metrics": row["metrics"] or "{}",
                "skip_reason": row["skip_reason"] if status == "skipped" else None,
                "reason": reason, "requested_by": requested_by,
            }
            if row["correlation_id"]:
                try:
                    run_cols["correlation_id"] = uuid.UUID(row["correlation_id"].strip())
                except ValueError:
                    raise self.fail(row, "correlation_id", f"{row['correlation_id']!r} is not a UUID") from None
            run_id = self._insert_run(row, run_cols)
            self.runs[rid] = RunRef(run_id, started, ended)
            report.imported += 1

    def legacy_attempt_counts(self) -> dict[str, int]:
        if "dw_etl_run_attempts" not in self.present:
            return {}
        cols = self.present["dw_etl_run_attempts"]
        if "run_id" not in cols:
            return {}
        q = sql.SQL("select run_id::text as run, count(*) as n from {}.{} group by 1").format(
            sql.Identifier(self.schema), sql.Identifier("dw_etl_run_attempts"))
        return {r["run"]: r["n"] for r in self.conn.execute(q)}

    def _attempt_status(self, row: Row, report: TableReport) -> str:
        raw = (row["status"] or "").strip().upper()
        if raw in ATTEMPT_STATUS:
            return ATTEMPT_STATUS[raw]
        if raw in NON_TERMINAL:
            report.note(row.id, "attempt still PENDING/RUNNING in a finished run: imported as lost")
            return "lost"
        if raw == "SKIPPED":
            report.note(row.id, "SKIPPED attempt imported as cancelled")
            return "cancelled"
        raise self.fail(row, "status", f"unknown attempt status {row['status']!r} (expected SUCCESS, "
                                       "PARTIAL_SUCCESS, FAILED, CANCELLED, LOST, SKIPPED, PENDING or RUNNING)")

    def import_dw_attempts(self) -> None:
        report, rows = self.read("dw_etl_run_attempts")
        for row in rows:
            run = self.runs.get(str(row["run"]))
            if run is None:
                report.skip(row.id, self.run_skips.get(str(row["run"]), "run_id names no run in dw_etl_runs"))
                continue
            if row["attempt_no"] is None or row["attempt_no"] < 1:
                raise self.fail(row, "attempt_no", f"attempt_no {row['attempt_no']!r} is not a positive integer")
            status = self._attempt_status(row, report)
            if row["started_at"] is None and run.started_at is None:
                raise self.fail(row, "started_at", "an attempt without started_at in a run without one")
            if row["started_at"] is None:
                row.values["started_at"] = run.started_at
                report.note(row.id, "started_at missing: the run's started_at used")
            started, ended, duration = self._times(row, report, True, (run.ended_at,))
            backoff = row["backoff_ms"]
            if backoff is not None and backoff < 0:
                raise self.fail(row, "backoff_ms", f"backoff {backoff} ms is negative")
            category, error_type = self._run_error(row, report, status, self._category(row), row["error_type"])
            next_at = row["next_attempt_at"]
            if next_at is None and backoff is not None and ended is not None:
                next_at = ended + timedelta(milliseconds=backoff)
            self._insert_into_attempts(report, row, {
                "run_id": run.run_id, "attempt_no": row["attempt_no"], "status": status,
                "worker_id": row["worker"] or "legacy", "claimed_at": started, "started_at": started,
                "ended_at": ended, "duration_ms": duration, "lease_expires_at": ended or started,
                "error_category": category, "is_transient": row["is_transient"],
                "error_type": error_type, "error_message": row["error_message"],
                "error_detail": row["error_detail"], "backoff_ms": backoff, "next_attempt_at": next_at,
                "records_read": row["records_read"], "records_written": row["records_written"],
                "page_count": row["page_count"], "rows_affected": row["rows_affected"],
                "metrics": row["metrics"] or "{}"})

    def _insert_into_attempts(self, report: TableReport, row: Row, cols: dict) -> None:
        if self._insert_attempt(row, cols):
            report.imported += 1
        else:
            report.already_present += 1

    # ------------------------------------------------------------- seed 004 history

    def import_transformation_runs(self) -> dict[str, tuple[int | None, dict]]:
        """Returns legacy run id -> (pipeline_run_id, facts) for the steps; None: already imported."""
        report, rows = self.read("transformation_run")
        out: dict[str, tuple[int | None, dict]] = {}
        for row in rows:
            rid = str(row.id)
            status = self._status(row)
            if status is None:
                report.skip(row.id, f"non-terminal legacy status {row['status'].strip().upper()}: not imported "
                                    "as live work (the engine would claim it)")
                self.run_skips[f"tr:{rid}"] = "its transformation_run was not imported (non-terminal status)"
                continue
            mode = (row["mode"] or "incremental").strip().lower()
            mode = {"incremental": "incremental", "full": "full", "full_refresh": "full"}.get(mode)
            if mode is None:
                raise self.fail(row, "mode", f"unknown mode {row['mode']!r} (expected incremental or full)")
            scope = (row["transaction_scope"] or "per_procedure").strip().lower()
            if scope not in ("per_procedure", "per_group"):
                raise self.fail(row, "transaction_scope", f"unknown transaction scope {row['transaction_scope']!r} "
                                                          "(expected per_procedure or per_group)")
            approved_at = row["approved_at"]
            if mode == "full" and status != "cancelled":
                if not (row["confirmed"] and row["approved_by"] and row["approval_reason"]):
                    report.skip(row.id, "full refresh without a recorded confirmation, approver and reason "
                                        "(full_refresh_requires_approval)")
                    self.run_skips[f"tr:{rid}"] = "its transformation_run was not imported (full refresh without approval)"
                    continue
                if approved_at is None:
                    approved_at = row["started_at"] or row["created_at"]
                    report.note(row.id, "approved_at missing: backfilled from started_at")
            params = self._obj(row, "params")
            started = row["started_at"]
            ended = row["ended_at"]
            if started is not None and ended is not None and ended < started:
                raise self.fail(row, "ended_at", "ends before it starts")
            logical = next((t for t in (started, row["created_at"], ended) if t is not None), None)
            if logical is None:
                raise self.fail(row, "started_at", "a run without started_at, created_at or finished_at")
            key = self._key("transformation_run", row.id)
            facts = {"row": row, "status": status, "mode": mode, "scope": scope, "logical": logical, "params": params,
                     "dry_run": bool(row["dry_run"]), "requested_by": row["requested_by"] or self.user,
                     "reason": f"imported from legacy {self.schema}.transformation_run run_id={row.id}"}
            if ended is None:
                ended = self._last_step_end(rid) or started or logical
                report.note(row.id, "finished_at missing: backfilled from its steps or started_at")
            pid = self._insert_pipeline(row, key, {
                "logical_date": logical, "status": status, "mode": mode, "transaction_scope": scope,
                "dry_run": facts["dry_run"], "params": params,
                "selection": Jsonb({"legacy": self._legacy(
                    row, idempotency_key=row["idempotency_key"])["legacy"]}),
                "reason": facts["reason"], "requested_by": facts["requested_by"],
                "full_refresh_confirmed": bool(row["confirmed"]), "approved_by": row["approved_by"],
                "approved_at": approved_at, "approval_reason": row["approval_reason"],
                "created_at": row["created_at"] or logical, "started_at": started, "ended_at": ended})
            if pid is None:
                report.already_present += 1
                r = self.conn.execute("select pipeline_run_id from etl.pipeline_runs where idempotency_key = %s",
                                      (key,)).fetchone()
                out[rid] = (r["pipeline_run_id"], facts | {"new": False})
                continue
            report.imported += 1
            out[rid] = (pid, facts | {"new": True})
        return out

    def _last_step_end(self, legacy_run_id: str) -> datetime | None:
        cols = self.present.get("transformation_step", {})
        end = next((c for c in ("finished_at", "ended_at") if c in cols), None)
        if end is None or "run_id" not in cols:
            return None
        q = sql.SQL("select max({})::timestamptz as t from {}.{} where run_id::text = %s").format(
            sql.Identifier(end), sql.Identifier(self.schema), sql.Identifier("transformation_step"))
        return self.conn.execute(q, (legacy_run_id,)).fetchone()["t"]

    def import_steps(self, pipelines: dict[str, tuple[int | None, dict]]) -> None:
        report, rows = self.read("transformation_step")
        groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for row in rows:
            groups[(str(row["run"]), str(row["procedure"]))].append(row)
        touched: dict[int, dict] = {}
        for (run_key, _proc), steps in groups.items():
            for s in steps:
                if s["attempt_no"] is None:
                    s.values["attempt_no"] = 1
                    report.note(s.id, "attempt_no missing: 1")
            steps.sort(key=lambda s: s["attempt_no"])
            pl = pipelines.get(run_key)
            if pl is None:
                for s in steps:
                    report.skip(s.id, self.run_skips.get(f"tr:{run_key}", "run_id names no transformation_run"))
                continue
            pid, facts = pl
            job = self._job_of(report, steps[-1], "transformation_procedure", "procedure")
            if job is None:
                for s in steps[:-1]:
                    report.skip(s.id, "procedure_id names no job imported from transformation_procedure")
                continue
            last = steps[-1]
            status = self._status(last)
            if status is None:
                for s in steps:
                    report.skip(s.id, "step still PENDING/RUNNING in a finished transformation_run: not imported "
                                      "as live work")
                continue
            attempts: list[tuple[Row, dict]] = []
            for s in steps:
                s_status = self._status(s) or "lost"
                s_started, s_ended, s_duration = self._times(s, report, True, (facts["logical"],))
                if s_started is None:
                    continue   # never ran (skipped, cancelled before start): no attempt
                s_cat, s_type, s_detail = self._step_error(s, report, s_status)
                attempts.append((s, {
                    "attempt_no": s["attempt_no"], "status": "cancelled" if s_status == "skipped" else s_status,
                    "worker_id": "legacy", "claimed_at": s_started, "started_at": s_started, "ended_at": s_ended,
                    "duration_ms": s_duration, "lease_expires_at": s_ended or s_started,
                    "error_category": s_cat, "error_type": s_type, "error_message": s["error_message"],
                    "error_detail": s_detail, "rows_affected": s["rows_affected"]}))
            first_start = next((s["started_at"] for s in steps if s["started_at"] is not None), None)
            _, l_ended, l_duration = self._times(last, report, True, (facts["logical"],))
            ended = l_ended
            duration = (int((ended - first_start) / timedelta(milliseconds=1))
                        if first_start is not None and ended is not None and len(steps) > 1 else l_duration)
            category, error_type, _detail = self._step_error(last, report, status)
            params = self._obj(last, "params") if last["params"] is not None else facts["params"]
            n_attempts = len(attempts)
            existing = self.conn.execute("select run_id from etl.runs where pipeline_run_id = %s and job_id = %s",
                                         (pid, job.job_id)).fetchone()
            new_run = existing is None
            if existing is not None:
                run_id = existing["run_id"]
            else:
                group_id = None
                if facts["scope"] == "per_group":
                    g = self.conn.execute("select group_id from etl.job_group_members where job_id = %s",
                                          (job.job_id,)).fetchone()
                    group_id = g and g["group_id"]
                run_id = self._insert_run(last, {
                    "pipeline_run_id": pid, "job_id": job.job_id, "status": status, "mode": facts["mode"],
                    "dry_run": facts["dry_run"], "params": params, "param_snapshot": params,
                    "priority": job.priority, "logical_date": facts["logical"],
                    "scheduled_at": facts["logical"], "started_at": first_start, "ended_at": ended,
                    "duration_ms": duration, "attempt_count": n_attempts,
                    "max_attempts": max(job.max_attempts, n_attempts, 1), "error_category": category,
                    "error_type": error_type, "error_message": last["error_message"],
                    "rows_affected": last["rows_affected"], "sql_executed": last["sql_executed"],
                    "group_id": group_id, "skip_reason": last["error_message"] if status == "skipped" else None,
                    "reason": facts["reason"], "requested_by": facts["requested_by"], "metrics": "{}"})
                new_run = True
                touched[pid] = facts
            inserted_attempts = set()
            for s, cols in attempts:
                if self._insert_attempt(s, {"run_id": run_id, **cols}):
                    inserted_attempts.add(s.id)
            with_attempt = {s.id for s, _ in attempts}
            for s in steps:
                if s.id in inserted_attempts or (new_run and s.id not in with_attempt):
                    report.imported += 1
                else:
                    report.already_present += 1
        for pid, facts in touched.items():
            self._pipeline_dag(pid, facts)

    def _step_error(self, row: Row, report: TableReport, status: str) -> tuple[str | None, str | None, str | None]:
        code = (row["error_code"] or "").strip().upper() or None
        category = self._category(row)
        error_type, detail = None, None
        if code is not None:
            category = category or "DB"
            try:
                error_type = psycopg.errors.lookup(code).__name__
            except KeyError:
                error_type = f"sqlstate_{code}"
            detail = json.dumps({"sqlstate": code})
        category, error_type = self._run_error(row, report, status, category, error_type)
        return category, error_type, detail

    def _pipeline_dag(self, pid: int, facts: dict) -> None:
        """Edges among the runs of an imported pipeline run, as etl.trigger_pipeline records them:
        declared edges plus dimensions before facts, the snapshot, then (per_group) each job group
        folded into one unit led by its first member (etl._form_groups, the engine's own code)."""
        self.conn.execute(
            """insert into etl.run_dependencies (pipeline_run_id, parent_run_id, child_run_id, dependency_type)
               select %(pid)s, pr.run_id, cr.run_id, d.dependency_type
                 from etl.job_dependencies d
                 join etl.runs pr on pr.pipeline_run_id = %(pid)s and pr.job_id = d.parent_job_id
                 join etl.runs cr on cr.pipeline_run_id = %(pid)s and cr.job_id = d.child_job_id
               union all
               select %(pid)s, pr.run_id, cr.run_id, 'dimension_before_fact'
                 from etl.runs pr join etl.jobs pj on pj.job_id = pr.job_id and pj.role = 'dimension'
                 join etl.runs cr on cr.pipeline_run_id = %(pid)s
                 join etl.jobs cj on cj.job_id = cr.job_id and cj.role = 'fact'
                where pr.pipeline_run_id = %(pid)s
                  and not exists (select 1 from etl.job_dependencies d
                                   where d.parent_job_id = pj.job_id and d.child_job_id = cj.job_id)
               on conflict do nothing""", {"pid": pid})
        self.conn.execute(
            """update etl.pipeline_runs p
                  set selection = p.selection || jsonb_build_object('jobs',
                        (select coalesce(jsonb_agg(j.slug order by j.slug), '[]') from etl.runs r
                           join etl.jobs j using (job_id) where r.pipeline_run_id = p.pipeline_run_id)),
                      dependency_snapshot = (
                        select coalesce(jsonb_agg(jsonb_build_object('parent', pj.slug, 'child', cj.slug,
                                                                     'type', d.dependency_type)
                                                  order by pj.slug, cj.slug), '[]')
                          from etl.run_dependencies d
                          join etl.runs pr on pr.run_id = d.parent_run_id join etl.jobs pj on pj.job_id = pr.job_id
                          join etl.runs cr on cr.run_id = d.child_run_id join etl.jobs cj on cj.job_id = cr.job_id
                         where d.pipeline_run_id = p.pipeline_run_id)
                where p.pipeline_run_id = %s""", (pid,))
        if facts["scope"] == "per_group":
            self.exec(facts["row"], "transaction_scope", "select etl._form_groups(%s) as n", (pid,))
        n = self.conn.execute("select count(*) as n from etl.run_dependencies where pipeline_run_id = %s",
                              (pid,)).fetchone()["n"]
        if n:
            self.wrote("etl.run_dependencies", n)

    # ---------------------------------------------------------------------------- cursors

    def import_cursors(self, table: str, jobs_table: str, job_field: str) -> None:
        report, rows = self.read(table)
        for row in rows:
            if table == "dw_etl_incremental_cursors":
                self._param_evidence(row)
            job = self._job_of(report, row, jobs_table, job_field)
            if job is None:
                continue
            strategy = _norm_strategy(row["strategy"]) if row["strategy"] is not None else job.strategy
            if row["strategy"] is not None and strategy is None:
                raise self.fail(row, "strategy", f"unknown strategy {row['strategy']!r}")
            if strategy in (None, "none"):
                report.skip(row.id, f"job {job.slug} is not incremental: a cursor would never be read")
                continue
            if "params" in row["_cols"] or table == "transformation_watermark":
                params = self._obj(row, "params")
                if "params" not in row["_cols"]:
                    params = self._default_params(row, report, job)
                fp = self.conn.execute("select etl.param_fingerprint(%s::jsonb) as fp", (params,)).fetchone()["fp"]
                if row["param_hash"] is not None and row["param_hash"] != fp:
                    report.note(row.id, "param_hash recomputed from params (etl.param_fingerprint)")
            else:
                params = "{}"
                legacy = (row["param_hash"] or "").strip().lower()
                if not legacy:
                    fp = self.conn.execute("select etl.param_fingerprint('{}'::jsonb) as fp").fetchone()["fp"]
                elif SHA256.match(legacy):
                    fp = legacy
                    report.note(row.id, "no params column: legacy param_hash kept as is")
                else:
                    report.skip(row.id, "no params column and param_hash is not a SHA-256: the engine could "
                                        "never find this cursor")
                    continue
            meta = self._legacy(row)
            if row["column"] is not None:
                meta["column"] = row["column"]
            extra = row["metadata"]
            if extra is not None and not isinstance(json.loads(extra), dict):
                raise self.fail(row, "metadata", "is not a JSON object")
            last_run = self.runs.get(str(row["last_run"])) if row["last_run"] is not None else None
            r = self.exec(row, "cursor_value", """
                insert into etl.cursors (job_id, param_hash, params, strategy, cursor_value, tiebreak_value,
                                         metadata, last_run_id, advance_count, updated_at, created_at)
                values (%s, %s, %s::jsonb, %s, %s, %s, coalesce(%s::jsonb, '{}') || %s::jsonb, %s, 0,
                        coalesce(%s, now()), coalesce(%s, now()))
                on conflict (job_id, param_hash) do nothing returning cursor_id""",
                (job.job_id, fp, params, strategy, row["cursor_value"], row["tiebreak"], extra,
                 json.dumps(meta), last_run and last_run.run_id, row["updated_at"], row["created_at"]))
            if r is None:
                report.already_present += 1
            else:
                report.imported += 1
                self.wrote("etl.cursors")

    def _default_params(self, row: Row, report: TableReport, job: JobRef) -> str:
        """A per-procedure watermark belongs to the parameters an incremental run gets by default:
        runs carry their defaults filled in (etl._validate_params), and cursors are per fingerprint."""
        r = self.conn.execute(
            """select coalesce(jsonb_object_agg(name, default_value) filter (where default_value is not null),
                               '{}')::text as params,
                      bool_or(required and default_value is null) as has_required
                 from (select distinct on (name) name, default_value, required from etl.job_parameters
                        where job_id = %s and mode in ('all', 'incremental')
                        order by name, (mode = 'all')) p""", (job.job_id,)).fetchone()
        if r["params"] != "{}":
            report.note(row.id, "watermark keyed by the job's default parameters (what an incremental run "
                                "without parameters carries)")
        if r["has_required"]:
            report.note(row.id, "the job has required parameters: only runs with exactly the default "
                                "parameters find this cursor")
        return r["params"]

    # ------------------------------------------------------------------- inferred parameters

    def _param_evidence(self, row: Row) -> None:
        if row["params"] is None or row["job"] is None:
            return
        try:
            params = json.loads(row["params"], parse_float=Decimal)
        except ValueError:
            return
        if not isinstance(params, dict):
            return
        for key, value in params.items():
            if isinstance(value, bool):
                t = "boolean"
            elif isinstance(value, int) or (isinstance(value, Decimal) and value == value.to_integral_value()):
                t = "integer"
            elif isinstance(value, Decimal):
                t = "number"
            elif isinstance(value, str):
                t = "string"
            elif isinstance(value, dict):
                t = "object"
            elif isinstance(value, list):
                t = "array"
            else:
                continue   # null says nothing about the type
            self.param_evidence[str(row["job"])][key].add(t)

    def declare_inferred_parameters(self) -> None:
        """dw_etl_jobs had no parameter schema, but etl.run_job refuses parameters a job does not
        declare: a newly imported job that supports parameters declares the keys its legacy runs
        and cursors used (optional, no default, the JSON type seen)."""
        report = self.reports["dw_etl_jobs"]
        for (table, legacy_id) in sorted(self.new_jobs):
            evidence = self.param_evidence.get(legacy_id)
            if table != "dw_etl_jobs" or not evidence:
                continue
            job = self.jobs[(table, legacy_id)]
            declared, mixed = [], []
            for name, types in sorted(evidence.items()):
                dtype = next(iter(types)) if len(types) == 1 else (
                    "number" if types == {"integer", "number"} else None)
                if dtype is None or not PARAM_RE.match(name):
                    mixed.append(name)
                    continue
                r = self.conn.execute(
                    """insert into etl.job_parameters (job_id, name, mode, data_type, description)
                       values (%s, %s, 'all', %s, 'declared by etl import legacy from the keys of its legacy runs')
                       on conflict (job_id, name, mode) do nothing returning parameter_id""",
                    (job.job_id, name, dtype)).fetchone()
                if r is not None:
                    self.wrote("etl.job_parameters")
                    declared.append(name)
            if declared:
                report.note(legacy_id, "parameters declared from the keys of its legacy runs and cursors")
            if mixed:
                report.note(legacy_id, "a legacy parameter key with mixed JSON types (or an invalid name) "
                                       "was not declared; declare it with etl apply")
            if not self.conn.execute("select supports_params as ok from etl.jobs where job_id = %s",
                                     (job.job_id,)).fetchone()["ok"]:
                report.note(legacy_id, "legacy runs carry parameters but supports_params is false")

    # ------------------------------------------------------------------------------- all

    def run(self) -> None:
        self.discover()
        p = self.present
        if "dw_etl_jobs" in p:
            self.import_dw_jobs()
        if "transformation_procedure" in p:
            self.import_procedures()
        if "dw_etl_job_dependencies" in p:
            self.import_dependencies("dw_etl_job_dependencies", "dw_etl_jobs")
        if "transformation_dependency" in p:
            self.import_dependencies("transformation_dependency", "transformation_procedure")
        if "dw_etl_job_tags" in p:
            self.import_tags()
        if "transformation_parameter" in p:
            self.import_parameters()
        if "transformation_group" in p:
            self.import_groups()
        if "transformation_group_member" in p:
            self.import_group_members()
        if "dw_etl_runs" in p:
            self.import_dw_runs(self.legacy_attempt_counts())
        if "dw_etl_run_attempts" in p:
            self.import_dw_attempts()
        pipelines = self.import_transformation_runs() if "transformation_run" in p else {}
        if "transformation_step" in p:
            self.import_steps(pipelines)
        if "dw_etl_incremental_cursors" in p:
            self.import_cursors("dw_etl_incremental_cursors", "dw_etl_jobs", "job")
        if "transformation_watermark" in p:
            self.import_cursors("transformation_watermark", "transformation_procedure", "procedure")
        if "dw_etl_jobs" in p:
            self.declare_inferred_parameters()


def import_legacy(conn: psycopg.Connection, schema: str, dry_run: bool = False) -> Summary:
    """Imports the legacy tables of `schema` in one transaction on `conn` (autocommit connection,
    dict rows). Commits unless dry_run; any error rolls everything back and is raised."""
    summary = Summary(schema=schema, dry_run=dry_run)
    with conn.transaction() as tx:
        conn.execute("select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('etl import legacy'))")
        Importer(conn, schema, summary).run()
        if dry_run:
            raise psycopg.Rollback(tx)
    summary.committed = not dry_run
    return summary


def run_import(schema: str, dry_run: bool = False) -> Summary:
    """The CLI's entry point: one connection to the configured database."""
    from .db import connect
    with connect(application_name="etl import legacy") as conn:
        return import_legacy(conn, schema, dry_run)
