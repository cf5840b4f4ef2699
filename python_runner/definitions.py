"""Job definitions as YAML: loading and validation for `etl apply` (see apply_cli.py).

Input is one YAML file, or every ``*.yml``/``*.yaml`` file of a directory (sorted by name, not
recursive). Each file is a mapping with the optional top-level keys ``jobs:`` (list),
``groups:`` (list) and ``refresh_targets:`` (list)::

    jobs:
      - slug: silver_orders            # required, ^[a-z][a-z0-9_]{0,62}$
        name: Silver orders            # default: slug
        description: ...
        kind: sql                      # python | sql (required)
        target: silver.load_orders     # python: module:function, sql: schema.routine (required; one job per routine)
        sql_file: sql/load_orders.sql  # optional (sql jobs): checked with pglast, path relative to the YAML file
        layer: silver                  # bronze | silver | gold
        role: fact                     # dimension | fact
        domain: sales
        enabled: true                  # default true
        priority: 5                    # default 0, 0..2147483647 (as concurrency.limit, item_concurrency)
        tags: [sales, daily]
        depends_on: [bronze_orders]    # all the parents by slug (in the files, or already in the database)
        retry: {max_attempts: 3, backoff_base: 1s, backoff_factor: 2, backoff_cap: 5m,
                jitter: full, max_elapsed: 1h}      # jitter: full | equal | none; max_elapsed may be null
        timeout: 30m                   # default 1h
        lease: 30s                     # default: the engine setting
        concurrency: {key: warehouse, limit: 2}
        parameters:                    # name: {type, required, default, allowed, mode, description}
          country: {type: string, required: true, allowed: [DE, FR]}
          since: {type: date, mode: incremental, default: "2024-01-01"}
        items: {static: [{region: eu}, {region: us}]}   # or {sql: "select ..."} or {callable: "mod:fn"}
        item_concurrency: 2
        allow_partial_success: false
        incremental: {strategy: modified_date, lookback: 1h, tiebreak_key: id}   # or last_run
        allow_full_refresh: false
        upstream_wait_limit: 1h
        schedule: {cron: "0 2 * * *", timezone: Europe/Berlin, misfire: latest, overlap: skip,
                   params: {}, downstream: false, description: ...}
        refresh: [{view: gold.mv_sales, policy: on_success, sequence: 1}]
        config: {...}                  # free-form mapping
    groups:
      - {name: nightly, description: ..., members: [bronze_orders, silver_orders]}  # sequence = order
    refresh_targets:
      - {schema: gold, view: mv_sales, mode: auto, description: ...}   # mode: auto | concurrently | blocking

Parameter types: string, integer, number, boolean, date, timestamp, object, array; modes: all
(default), incremental, full. ``supports_params`` is set when a job has ``items`` or parameters.
``schedule.params`` are checked against the parameters as the engine checks a scheduled
(incremental) run's: unknown names, types, allowed values; ``items.static`` entries likewise when
the job declares parameters. ``items.sql`` must be one SELECT (it runs as a subquery).
Durations are strings ``<n>ms|s|m|h|d`` (500ms, 30s, 5m, 2h, 1d), at most 999999999d, stored as
intervals. Numbers must be finite (no .nan/.inf). A mapping key given twice is an error. The
definition is declarative: a key left out takes its default on apply, and a job's depends_on
replaces all its parents, also those only in the database.

Validation collects every error before anything is written, each as
``<file>: job <slug>: <field>: <message>``. Static checks (duplicate keys, keys, types, enums,
durations, integer ranges, parameter specs and the values checked against them, targets,
duplicate slugs and SQL routines, sql_file and items.sql syntax via pglast) are done by `load`;
checks needing the database (unknown depends_on slugs, dependency cycles together with the
database's edges, SQL routines held by other jobs, cron expressions and time zones via
etl.cron_next) by `validate_against_db`. A file that defines nothing is a warning.
"""
from __future__ import annotations

import datetime as _dt
import difflib
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_:.-]{0,62}$")
PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
SQL_TARGET_RE = re.compile(r"^[a-z_][a-z0-9_$]*\.[a-z_][a-z0-9_$]*$")
PY_TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
IDENT_RE = re.compile(r"^[a-z_][a-z0-9_$]*$")
DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h|d)$")
ISO_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?")
DURATION_HINT = "use 500ms, 30s, 5m, 2h, 1d"
# integer columns of etl.jobs and etl.job_refresh_targets (deploy/catalog.sql) are 4-byte
INT4_MAX = 2**31 - 1
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

TOP_KEYS = ("jobs", "groups", "refresh_targets")
JOB_KEYS = ("slug", "name", "description", "kind", "target", "sql_file", "layer", "role", "domain",
            "enabled", "priority", "tags", "depends_on", "retry", "timeout", "lease", "concurrency",
            "parameters", "items", "item_concurrency", "allow_partial_success", "incremental",
            "allow_full_refresh", "upstream_wait_limit", "schedule", "refresh", "config")
RETRY_KEYS = ("max_attempts", "backoff_base", "backoff_factor", "backoff_cap", "jitter", "max_elapsed")
CONC_KEYS = ("key", "limit")
PARAM_KEYS = ("type", "required", "default", "allowed", "mode", "description")
ITEMS_KEYS = ("static", "sql", "callable")
INCR_KEYS = ("strategy", "lookback", "tiebreak_key")
SCHED_KEYS = ("cron", "timezone", "misfire", "overlap", "params", "downstream", "description")
REFRESH_LINK_KEYS = ("view", "policy", "sequence")
GROUP_KEYS = ("name", "description", "members")
TARGET_KEYS = ("schema", "view", "mode", "description")
PARAM_TYPES = ("string", "integer", "number", "boolean", "date", "timestamp", "object", "array")

# etl.jobs column -> the YAML field shown in plans ("changed fields: ...")
JOB_COLUMNS = {
    "name": "name", "description": "description", "kind": "kind", "target": "target",
    "layer": "layer", "role": "role", "domain": "domain", "enabled": "enabled",
    "priority": "priority", "max_attempts": "retry.max_attempts",
    "backoff_base": "retry.backoff_base", "backoff_factor": "retry.backoff_factor",
    "backoff_cap": "retry.backoff_cap", "backoff_jitter": "retry.jitter",
    "max_retry_elapsed": "retry.max_elapsed", "timeout": "timeout", "lease_duration": "lease",
    "concurrency_key": "concurrency.key", "concurrency_limit": "concurrency.limit",
    "supports_params": "supports_params", "items_source": "items",
    "item_concurrency": "item_concurrency", "allow_partial_success": "allow_partial_success",
    "supports_incremental": "incremental", "incremental_strategy": "incremental.strategy",
    "cursor_lookback": "incremental.lookback", "cursor_tiebreak_key": "incremental.tiebreak_key",
    "allow_full_refresh": "allow_full_refresh", "upstream_wait_limit": "upstream_wait_limit",
    "config": "config",
}


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


@dataclass
class JobDef:
    file: str
    slug: str
    columns: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    schedule: dict[str, Any] | None = None
    refresh: list[dict[str, Any]] = field(default_factory=list)   # {schema, view, policy, sequence}
    sql_file: str | None = None  # resolved path of the file that defines the routine (lineage reads it)


@dataclass
class GroupDef:
    file: str
    name: str
    description: str | None
    members: list[str]


@dataclass
class RefreshTargetDef:
    file: str
    schema: str
    view: str
    mode: str
    description: str | None


@dataclass
class Definitions:
    files: list[str] = field(default_factory=list)
    jobs: list[JobDef] = field(default_factory=list)
    groups: list[GroupDef] = field(default_factory=list)
    refresh_targets: list[RefreshTargetDef] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # every job with a valid slug, also those with other errors: (file, slug, depends_on)
    declared: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def job(self, slug: str) -> JobDef | None:
        return next((j for j in self.jobs if j.slug == slug), None)


def parse_duration(value: Any) -> _dt.timedelta | None:
    """'500ms', '30s', '5m', '2h', '1d' -> timedelta; None when not a duration.

    Raises OverflowError beyond timedelta.max (999999999 days): the interval columns are read
    back as timedeltas, so a longer one could be stored but never planned against again."""
    if not isinstance(value, str):
        return None
    m = DURATION_RE.match(value.strip())
    if not m:
        return None
    try:
        amount = int(m.group(1))
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise OverflowError(m.group(1)) from None
    return _dt.timedelta(**{_UNITS[m.group(2)]: amount})


def jsonable(value: Any) -> Any:
    """YAML scalars PyYAML turns into dates become ISO strings, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value) if not isinstance(value, (dict, list)) else str(value)


class _Ctx:
    """Collects errors prefixed with the file and the object."""

    def __init__(self, defs: Definitions, file: str, obj: str):
        self.defs, self.file, self.obj = defs, file, obj

    def error(self, path: str, message: str) -> None:
        prefix = f"{self.file}: {self.obj}: " if self.obj else f"{self.file}: "
        self.defs.errors.append(f"{prefix}{path}: {message}" if path else f"{prefix}{message}")

    def keys(self, mapping: dict, allowed: tuple[str, ...], path: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            where = f"{path}.{key}" if path else str(key)
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (known keys: {', '.join(allowed)})"
            self.error(where, f'unknown key "{key}"{hint}')

    def mapping(self, value: Any, path: str) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_show(value)}")
            return None
        return value

    # typed getters: return the value, the default when absent, or MISSING after an error
    def get(self, m: dict, key: str, kind: str, path: str, default: Any = None, required: bool = False,
            enum: tuple | None = None, minimum: float | None = None, maximum: float | None = None,
            nullable: bool = False) -> Any:
        where = f"{path}.{key}" if path else key
        if key not in m:
            if required:
                self.error(where, "is required")
                return MISSING
            return default
        v = m[key]
        if v is None and nullable:
            return None
        if kind == "str":
            if not isinstance(v, str) or (required and not v.strip()):
                self.error(where, f"must be a non-empty string, got {_show(v)}" if required
                           else f"must be a string, got {_show(v)}")
                return MISSING
        elif kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                self.error(where, f"must be an integer, got {_show(v)}")
                return MISSING
        elif kind == "number":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.error(where, f"must be a number, got {_show(v)}")
                return MISSING
            if not math.isfinite(v):  # .nan/.inf: never equal to what is stored, or not storable
                self.error(where, f"must be a finite number, got {_show(v)}")
                return MISSING
        elif kind == "bool":
            if not isinstance(v, bool):
                self.error(where, f"must be true or false, got {_show(v)}")
                return MISSING
        elif kind == "duration":
            try:
                d = parse_duration(v)
            except OverflowError:
                self.error(where, f"{_show(v)} is too long (at most 999999999d)")
                return MISSING
            if d is None:
                self.error(where, f"{_show(v)} is not a duration ({DURATION_HINT})")
                return MISSING
            v = d
        elif kind == "list":
            if not isinstance(v, list):
                self.error(where, f"must be a list, got {_show(v)}")
                return MISSING
        elif kind == "dict":
            if not isinstance(v, dict):
                self.error(where, f"must be a mapping, got {_show(v)}")
                return MISSING
        if enum is not None and v not in enum:
            close = difflib.get_close_matches(str(v), [str(e) for e in enum], n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.error(where, f"{_show(v)} is not one of {', '.join(enum)}{hint}")
            return MISSING
        if minimum is not None and v < minimum:
            self.error(where, f"must be >= {minimum}, got {v}")
            return MISSING
        if maximum is not None and v > maximum:
            why = " (the largest value its integer column holds)" if maximum == INT4_MAX else ""
            self.error(where, f"must be <= {maximum}{why}, got {v}")
            return MISSING
        return v


def _ok(*values: Any) -> bool:
    return all(v is not MISSING for v in values)


def _type_matches(ptype: str, value: Any) -> bool:
    if ptype == "string":
        return isinstance(value, str)
    if ptype == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if ptype == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ptype == "boolean":
        return isinstance(value, bool)
    if ptype == "date":
        if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
            return True
        if isinstance(value, str):
            try:
                _dt.date.fromisoformat(value)
                return True
            except ValueError:
                return False
        return False
    if ptype == "timestamp":
        if isinstance(value, (_dt.datetime, _dt.date)):
            return True
        if isinstance(value, str):
            try:
                _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                return True
            except ValueError:
                return False
        return False
    if ptype == "object":
        return isinstance(value, dict)
    if ptype == "array":
        return isinstance(value, list)
    return False


def _show_yaml(value: Any) -> str:
    """A value as written in the YAML: a date PyYAML built from an unquoted scalar without quotes."""
    return value.isoformat() if isinstance(value, _dt.date) else _show(jsonable(value))


def _quote_hint(ptype: str, value: Any) -> str:
    """Why a string parameter got a non-string: YAML typed an unquoted scalar (2024-01-01, NO, 5)."""
    if ptype != "string":
        return ""
    if isinstance(value, bool):
        return " (YAML reads an unquoted yes/no/on/off/true/false as a boolean: put the value in quotes)"
    if isinstance(value, _dt.datetime):
        return " (YAML reads an unquoted date and time as a timestamp: put the value in quotes)"
    if isinstance(value, _dt.date):
        return f' (YAML reads an unquoted {value.isoformat()} as a date: write "{value.isoformat()}")'
    if isinstance(value, (int, float)):
        return " (YAML reads an unquoted number as a number: put the value in quotes)"
    return ""


def _engine_accepts(ptype: str, value: Any) -> bool:
    """etl._validate_params's type check (plpgsql/120_params.sql) of a JSON value (after jsonable)."""
    if ptype == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if ptype == "date":
        if not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
            return False
        try:
            _dt.date.fromisoformat(value)
            return True
        except ValueError:
            return False
    if ptype == "timestamp":  # etl._is_iso_timestamp: the shape, and a real instant
        if not (isinstance(value, str) and ISO_TIMESTAMP_RE.fullmatch(value)):
            return False
        try:
            _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return True
        except ValueError:
            return False
    return _type_matches(ptype, value)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 (Python says it is), 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _scalars(value: Any, path: str):
    """Every scalar inside value, mapping keys included, with its path (a.b[0])."""
    if isinstance(value, dict):
        for k, v in value.items():
            child = f"{path}.{k}" if path else str(k)
            yield child, k
            yield from _scalars(v, child)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _scalars(v, f"{path}[{i}]")
    else:
        yield path, value


def _check_finite(ctx: _Ctx, value: Any, path: str) -> bool:
    """No NaN or infinity inside a value stored as JSON (JSON has neither)."""
    found = next(((p, v) for p, v in _scalars(value, path) if isinstance(v, float) and not math.isfinite(v)), None)
    if found:
        ctx.error(found[0], f"must be a finite number (JSON has no NaN or Infinity), got {found[1]}")
    return found is None


def _check_param_values(ctx: _Ctx, path: str, values: dict, params: list[dict], modes: tuple[str, ...]) -> None:
    """Parameter values fixed in a definition (schedule.params, items.static entries) checked as
    etl._validate_params checks a run's: unknown names, types and allowed values, in each mode
    they run in (a mode-specific declaration wins over mode all)."""
    known = sorted({p["name"] for p in params})
    for name, value in values.items():
        where = f"{path}.{name}"
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(known) or 'none'})"
            ctx.error(where, f"unknown parameter {_show(name)}{hint}")
            continue
        if value is None:  # null is an omitted parameter
            continue
        specs = []
        for mode in modes:
            spec = next((p for p in params if p["name"] == name and p["mode"] == mode),
                        next((p for p in params if p["name"] == name and p["mode"] == "all"), None))
            if spec is not None and spec not in specs:
                specs.append(spec)
        shown = jsonable(value)
        for spec in specs:
            if not _engine_accepts(spec["data_type"], shown):
                ctx.error(where, f"{_show_yaml(value)} is not of type {spec['data_type']}"
                                 f"{_quote_hint(spec['data_type'], value)}")
                break
            allowed = spec["allowed_values"]
            if allowed is not None and not any(_json_equal(shown, a) for a in allowed):
                ctx.error(where, f"{_show(shown)} is not one of the allowed values "
                                 f"{', '.join(map(_show, allowed))}")
                break


def _sql_syntax_error(text: str) -> str | None:
    """pglast's syntax error in text, with the line and column, or None."""
    import pglast
    try:
        pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        msg, pos = (exc.args + (None, None))[:2]
        where = ""
        if isinstance(pos, int):
            line = text.count("\n", 0, pos) + 1
            col = pos - (text.rfind("\n", 0, pos) + 1) + 1
            where = f" (line {line}, column {col})"
        return f"SQL syntax error: {msg}{where}"
    return None


def _check_items_sql(ctx: _Ctx, query: str) -> None:
    """items.sql runs as `select ... from (<query>) q` (etl._materialize_items): one SELECT that
    parses there too (a trailing semicolon or -- comment breaks the wrapping)."""
    import pglast
    problem = _sql_syntax_error(query)
    if problem:
        ctx.error("items.sql", problem)
        return
    stmts = pglast.parse_sql(query)
    if len(stmts) != 1 or type(stmts[0].stmt).__name__ != "SelectStmt":
        got = ", ".join(type(s.stmt).__name__ for s in stmts) or "nothing"
        ctx.error("items.sql", f"must be one SELECT query (it runs as a subquery), got {got}")
        return
    wrapped = f"select coalesce(jsonb_agg(to_jsonb(q)), '[]') from ({query}) q"
    if _sql_syntax_error(wrapped):
        ctx.error("items.sql", "does not work as the subquery the engine runs it as "
                               "(select ... from (<items.sql>) q): drop a trailing semicolon, "
                               "-- comment or INTO")


def _read_utf8(path: Path) -> tuple[str, str | None]:
    """(text, None), or ("", why the file cannot be read as UTF-8 text)."""
    try:
        return path.read_text(encoding="utf-8"), None
    except OSError as exc:
        return "", f"cannot read ({exc.strerror or exc})"
    except UnicodeDecodeError as exc:
        return "", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def _check_sql_file(ctx: _Ctx, yaml_path: Path, rel: Any) -> None:
    if not isinstance(rel, str) or not rel.strip():
        ctx.error("sql_file", f"must be a path string, got {_show(rel)}")
        return
    path = (yaml_path.parent / rel)
    text, problem = _read_utf8(path)
    if problem:
        ctx.error("sql_file", f"{path}: {problem}")
        return
    problem = _sql_syntax_error(text)
    if problem:
        ctx.error("sql_file", f"{path}: {problem}")


def _load_job(defs: Definitions, file: str, yaml_path: Path, raw: Any, index: int) -> JobDef | None:
    if not isinstance(raw, dict):
        _Ctx(defs, file, "").error(f"jobs[{index}]", f"must be a mapping, got {_show(raw)}")
        return None
    slug = raw.get("slug")
    label = f"job {slug}" if isinstance(slug, str) and slug else f"jobs[{index}]"
    c = _Ctx(defs, file, label)
    c.keys(raw, JOB_KEYS, "")
    slug = c.get(raw, "slug", "str", "", required=True)
    if _ok(slug) and not SLUG_RE.match(slug):
        c.error("slug", f"{_show(slug)} must match ^[a-z][a-z0-9_]{{0,62}}$")
        slug = MISSING
    cols: dict[str, Any] = {}
    cols["name"] = c.get(raw, "name", "str", "", default=slug if _ok(slug) else None)
    cols["description"] = c.get(raw, "description", "str", "", nullable=True)
    kind = cols["kind"] = c.get(raw, "kind", "str", "", required=True, enum=("python", "sql"))
    target = cols["target"] = c.get(raw, "target", "str", "", required=True)
    if _ok(kind, target):
        if kind == "sql" and not SQL_TARGET_RE.match(target):
            c.error("target", f"{_show(target)} is not a qualified routine name schema.routine "
                              "(lower case, e.g. silver.load_orders)")
            cols["target"] = MISSING  # keeps the job out of defs.jobs: later checks split schema.routine
        if kind == "python" and not PY_TARGET_RE.match(target):
            c.error("target", f"{_show(target)} is not a python callable module:function")
            cols["target"] = MISSING
    if "sql_file" in raw:
        if _ok(kind) and kind != "sql":
            c.error("sql_file", "only sql jobs take a sql_file")
        _check_sql_file(c, yaml_path, raw["sql_file"])
    cols["layer"] = c.get(raw, "layer", "str", "", enum=("bronze", "silver", "gold"), nullable=True)
    cols["role"] = c.get(raw, "role", "str", "", enum=("dimension", "fact"), nullable=True)
    cols["domain"] = c.get(raw, "domain", "str", "", nullable=True)
    cols["enabled"] = c.get(raw, "enabled", "bool", "", default=True)
    cols["priority"] = c.get(raw, "priority", "int", "", default=0, minimum=0, maximum=INT4_MAX)

    retry = c.mapping(raw.get("retry"), "retry") or {}
    c.keys(retry, RETRY_KEYS, "retry")
    cols["max_attempts"] = c.get(retry, "max_attempts", "int", "retry", default=3, minimum=1, maximum=100)
    base = cols["backoff_base"] = c.get(retry, "backoff_base", "duration", "retry", default=_dt.timedelta(seconds=1))
    factor = c.get(retry, "backoff_factor", "number", "retry", default=2, minimum=1)
    cols["backoff_factor"] = Decimal(str(factor)) if _ok(factor) else MISSING
    cap = cols["backoff_cap"] = c.get(retry, "backoff_cap", "duration", "retry", default=_dt.timedelta(minutes=5))
    if _ok(base, cap):
        if base <= _dt.timedelta(0):
            c.error("retry.backoff_base", "must be positive")
        elif cap < base:
            c.error("retry.backoff_cap", "must not be below retry.backoff_base")
    cols["backoff_jitter"] = c.get(retry, "jitter", "str", "retry", default="full", enum=("full", "equal", "none"))
    cols["max_retry_elapsed"] = c.get(retry, "max_elapsed", "duration", "retry", default=_dt.timedelta(hours=1),
                                      nullable=True)
    timeout = cols["timeout"] = c.get(raw, "timeout", "duration", "", default=_dt.timedelta(hours=1))
    if _ok(timeout) and timeout <= _dt.timedelta(0):
        c.error("timeout", "must be positive")
    lease = cols["lease_duration"] = c.get(raw, "lease", "duration", "", nullable=True)
    if _ok(lease) and lease is not None and lease <= _dt.timedelta(0):
        c.error("lease", "must be positive")

    conc = c.mapping(raw.get("concurrency"), "concurrency") or {}
    c.keys(conc, CONC_KEYS, "concurrency")
    ckey = cols["concurrency_key"] = c.get(conc, "key", "str", "concurrency", nullable=True)
    if _ok(ckey) and ckey is not None and (not ckey or "#" in ckey):
        c.error("concurrency.key", f"{_show(ckey)} must be non-empty and contain no '#'")
    cols["concurrency_limit"] = c.get(conc, "limit", "int", "concurrency", default=1, minimum=1,
                                      maximum=INT4_MAX)

    params: list[dict] = []
    errors_before_params = len(defs.errors)
    praw = c.mapping(raw.get("parameters"), "parameters") or {}
    for pname, spec in praw.items():
        ppath = f"parameters.{pname}"
        if not isinstance(pname, str) or not PARAM_RE.match(pname):
            c.error(ppath, f"parameter name {_show(pname)} must match ^[A-Za-z_][A-Za-z0-9_]{{0,62}}$")
            continue
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            c.error(ppath, f"must be a mapping {{type, required, default, allowed, mode, description}}, got {_show(spec)}")
            continue
        c.keys(spec, PARAM_KEYS, ppath)
        ptype = c.get(spec, "type", "str", ppath, default="string", enum=PARAM_TYPES)
        required = c.get(spec, "required", "bool", ppath, default=False)
        mode = c.get(spec, "mode", "str", ppath, default="all", enum=("all", "incremental", "full"))
        desc = c.get(spec, "description", "str", ppath, nullable=True)
        allowed = c.get(spec, "allowed", "list", ppath, nullable=True)
        default = spec.get("default")
        if allowed not in (None, MISSING) and not _check_finite(c, allowed, f"{ppath}.allowed"):
            allowed = MISSING
        if _ok(ptype) and allowed not in (None, MISSING):
            for v in allowed:
                if not _type_matches(ptype, v):
                    c.error(f"{ppath}.allowed", f"value {_show(v)} is not of type {ptype}{_quote_hint(ptype, v)}")
        if default is not None and not _check_finite(c, default, f"{ppath}.default"):
            default = None
        if default is not None:
            if _ok(required) and required:
                c.error(f"{ppath}.default", "a required parameter takes no default (required and default conflict)")
            if _ok(ptype) and not _type_matches(ptype, default):
                c.error(f"{ppath}.default",
                        f"{_show_yaml(default)} does not match type {ptype}{_quote_hint(ptype, default)}")
            elif allowed not in (None, MISSING) and jsonable(default) not in jsonable(allowed):
                c.error(f"{ppath}.default", f"{_show(jsonable(default))} is not among the allowed values")
        if _ok(ptype, required, mode, desc, allowed):
            params.append({"name": pname, "mode": mode, "data_type": ptype, "required": required,
                           "default_value": jsonable(default),
                           "allowed_values": jsonable(allowed), "description": desc})
    # values fixed elsewhere in the definition are checked against a schema only when it is whole
    params_complete = len(defs.errors) == errors_before_params

    items = c.mapping(raw.get("items"), "items")
    cols["items_source"] = None
    if items is not None:
        c.keys(items, ITEMS_KEYS, "items")
        present = [k for k in ITEMS_KEYS if k in items]
        if len(present) != 1:
            c.error("items", "needs exactly one of static, sql, callable")
        else:
            k = present[0]
            v = items[k]
            if k == "static" and not (isinstance(v, list) and all(isinstance(x, dict) for x in v)):
                c.error("items.static", "must be a list of parameter mappings")
            elif k == "sql" and not (isinstance(v, str) and v.strip()):
                c.error("items.sql", "must be a non-empty SQL string")
            elif k == "callable" and not (isinstance(v, str) and PY_TARGET_RE.match(v)):
                c.error("items.callable", f"{_show(v)} is not a python callable module:function")
            elif k == "static" and not _check_finite(c, v, "items.static"):
                cols["items_source"] = MISSING
            else:
                if k == "sql":
                    _check_items_sql(c, v)
                cols["items_source"] = {k: jsonable(v)}
            # an item's parameters are the run's with the item's on top: checked when the job
            # declares a schema (the engine itself does not check items)
            if k == "static" and params and params_complete and _ok(cols["items_source"]):
                modes = ("incremental", "full") if raw.get("allow_full_refresh") is True else ("incremental",)
                for i, item in enumerate(v):
                    if isinstance(item, dict):
                        _check_param_values(c, f"items.static[{i}]", item, params, modes)
    cols["supports_params"] = bool(items is not None or params)
    cols["item_concurrency"] = c.get(raw, "item_concurrency", "int", "", default=1, minimum=1, maximum=INT4_MAX)
    cols["allow_partial_success"] = c.get(raw, "allow_partial_success", "bool", "", default=False)

    incr = c.mapping(raw.get("incremental"), "incremental")
    if incr is not None:
        c.keys(incr, INCR_KEYS, "incremental")
        strategy = c.get(incr, "strategy", "str", "incremental", required=True, enum=("modified_date", "last_run"))
        cols["supports_incremental"] = True
        cols["incremental_strategy"] = strategy
        cols["cursor_lookback"] = c.get(incr, "lookback", "duration", "incremental", default=_dt.timedelta(0))
        cols["cursor_tiebreak_key"] = c.get(incr, "tiebreak_key", "str", "incremental", nullable=True)
    else:
        cols.update(supports_incremental=False, incremental_strategy="none",
                    cursor_lookback=_dt.timedelta(0), cursor_tiebreak_key=None)
    cols["allow_full_refresh"] = c.get(raw, "allow_full_refresh", "bool", "", default=False)
    cols["upstream_wait_limit"] = c.get(raw, "upstream_wait_limit", "duration", "", nullable=True)
    config = c.get(raw, "config", "dict", "", default={}, nullable=True)
    if config not in (None, MISSING) and not _check_finite(c, config, "config"):
        config = MISSING
    cols["config"] = jsonable(config) if config not in (None, MISSING) else ({} if config is None else MISSING)

    tags = c.get(raw, "tags", "list", "", default=[], nullable=True) or []
    tag_list: list[str] = []
    if _ok(tags):
        for t in tags:
            if not isinstance(t, str) or not TAG_RE.match(t):
                c.error("tags", f"tag {_show(t)} must match ^[a-z0-9][a-z0-9_:.-]{{0,62}}$")
            elif t not in tag_list:
                tag_list.append(t)

    deps = c.get(raw, "depends_on", "list", "", default=[], nullable=True) or []
    dep_list: list[str] = []
    if _ok(deps):
        for d in deps:
            if not isinstance(d, str) or not SLUG_RE.match(d):
                c.error("depends_on", f"{_show(d)} is not a job slug")
            elif _ok(slug) and d == slug:
                c.error("depends_on", f"job {slug} cannot depend on itself")
            elif d not in dep_list:
                dep_list.append(d)

    schedule = None
    sraw = c.mapping(raw.get("schedule"), "schedule")
    if sraw is not None:
        c.keys(sraw, SCHED_KEYS, "schedule")
        cron = c.get(sraw, "cron", "str", "schedule", required=True)
        tz = c.get(sraw, "timezone", "str", "schedule", default="UTC")
        misfire = c.get(sraw, "misfire", "str", "schedule", default="latest", enum=("catch_up", "latest"))
        overlap = c.get(sraw, "overlap", "str", "schedule", default="skip", enum=("skip", "queue_one", "queue_all"))
        sparams = c.get(sraw, "params", "dict", "schedule", default={}, nullable=True)
        if sparams not in (None, MISSING) and not _check_finite(c, sparams, "schedule.params"):
            sparams = MISSING
        if sparams is not MISSING and params_complete:
            # a schedule fires incremental runs whose parameters etl._validate_params checks
            _check_param_values(c, "schedule.params", sparams or {}, params, ("incremental",))
            for p in params:
                if (p["required"] and p["mode"] in ("all", "incremental") and p["default_value"] is None
                        and (sparams or {}).get(p["name"]) is None):
                    defs.warnings.append(f"{file}: {label}: schedule.params: required parameter "
                                         f"{p['name']} is not given: every scheduled run will be refused")
        downstream = c.get(sraw, "downstream", "bool", "schedule", default=False)
        sdesc = c.get(sraw, "description", "str", "schedule", nullable=True)
        if _ok(cron, tz, misfire, overlap, sparams, downstream, sdesc):
            schedule = {"cron_expr": cron, "timezone": tz, "misfire_policy": misfire,
                        "overlap_policy": overlap, "params": jsonable(sparams or {}),
                        "with_downstream": downstream, "description": sdesc}

    refresh: list[dict] = []
    rraw = c.get(raw, "refresh", "list", "", default=[], nullable=True) or []
    if _ok(rraw):
        for i, link in enumerate(rraw):
            rpath = f"refresh[{i}]"
            if not isinstance(link, dict):
                c.error(rpath, f"must be a mapping {{view, policy, sequence}}, got {_show(link)}")
                continue
            c.keys(link, REFRESH_LINK_KEYS, rpath)
            view = c.get(link, "view", "str", rpath, required=True)
            policy = c.get(link, "policy", "str", rpath, default="on_success", enum=("on_success", "always"))
            seq = c.get(link, "sequence", "int", rpath, default=i + 1, minimum=1, maximum=INT4_MAX)
            if _ok(view) and not SQL_TARGET_RE.match(view):
                c.error(f"{rpath}.view", f"{_show(view)} is not a qualified view name schema.view")
                continue
            if _ok(view, policy, seq):
                schema_name, view_name = view.split(".", 1)
                if any(r["schema"] == schema_name and r["view"] == view_name for r in refresh):
                    c.error(f"{rpath}.view", f"{view} listed twice")
                    continue
                refresh.append({"schema": schema_name, "view": view_name, "policy": policy, "sequence": seq})

    if _ok(slug):
        defs.declared.append((file, slug, dep_list))
    if not _ok(slug) or any(v is MISSING for v in cols.values()):
        return None
    sql_file = raw.get("sql_file")
    return JobDef(file=file, slug=slug, columns=cols, tags=tag_list, parameters=params,
                  depends_on=dep_list, schedule=schedule, refresh=refresh,
                  sql_file=str(yaml_path.parent / sql_file) if isinstance(sql_file, str) and sql_file.strip() else None)


class _DuplicateKeyLoader(yaml.SafeLoader):
    """SafeLoader that records every mapping key given twice in one mapping: PyYAML keeps the last
    silently, so a second `jobs:` drops a whole job list and a second `priority:` wins unseen."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[tuple[int, Any, int]] = []   # (line, key, line of the first)
        self.open_anchors: list[str | None] = []           # of the nodes being composed

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden, by design
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first_line:
                        self.duplicates.append((line, key, first_line[key]))
                    else:
                        first_line[key] = line
                except TypeError:  # an unhashable key: PyYAML's own construct_mapping reports it
                    pass
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent, index):
        # an alias inside its own anchor (&a [*a]) builds a structure that contains itself
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} inside its own anchor makes a recursive structure",
                    event.start_mark)
            return super().compose_node(parent, index)
        self.open_anchors.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.pop()

    def construct_object(self, node, deep=False):
        # a scalar PyYAML resolves but cannot build (2024-13-45 as a date, an int of 5000 digits)
        # raises a bare ValueError without a line: make it a YAML error at the scalar
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:
            shown = node.value if len(str(node.value)) <= 40 else str(node.value)[:40] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown!r}: {str(exc).split(';')[0]}", node.start_mark) from None


def _parse_yaml(text: str) -> tuple[Any, list[tuple[int, Any, int]]]:
    """The single document of text and its duplicate keys; raises yaml.YAMLError."""
    loader = _DuplicateKeyLoader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".yml", ".yaml"))
    return [path]


def _unstorable_text(value: Any) -> str | None:
    """Why PostgreSQL cannot store a string YAML escapes produced ("\\0", "\\ud800"), or None."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "contains a NUL character (\\0), which PostgreSQL text cannot hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (\\u{ord(exc.object[exc.start]):04x}), which is not UTF-8"
    return None


def _ctx_of(defs: Definitions, file: str, doc: Any, where: str) -> tuple[_Ctx, str]:
    """For a path jobs[i].field of the document: the context naming job i, and the field."""
    m = re.match(r"jobs\[(\d+)\]\.(.*)", where)
    raw = doc["jobs"][int(m.group(1))] if m else None
    slug = raw.get("slug") if isinstance(raw, dict) else None
    if isinstance(slug, str) and slug:
        return _Ctx(defs, file, f"job {slug}"), m.group(2)
    return _Ctx(defs, file, ""), where


def load(path: str | Path) -> Definitions:
    """Read and statically validate a file or directory; errors are collected in .errors."""
    root = Path(path)
    defs = Definitions()
    files = _files(root)
    if not files:
        defs.errors.append(f"{root}: no *.yml or *.yaml files")
    seen_jobs: dict[str, str] = {}
    seen_groups: dict[str, str] = {}
    seen_targets: dict[tuple[str, str], str] = {}
    seen_routines: dict[str, tuple[str, str]] = {}   # sql target -> (file, slug)
    for fp in files:
        file = str(fp)
        defs.files.append(file)
        top = _Ctx(defs, file, "")
        text, problem = _read_utf8(fp)
        if problem:
            top.error("", problem + ("; job definitions are UTF-8 YAML" if problem.startswith("not UTF-8") else ""))
            continue
        try:
            doc, duplicates = _parse_yaml(text)
        except yaml.YAMLError as exc:
            top.error("", f"not valid YAML: {exc}".replace("\n", " "))
            continue
        except RecursionError:
            top.error("", "not valid YAML: nested too deeply")
            continue
        for where, v in _scalars(doc, ""):
            problem = _unstorable_text(v)
            if problem:
                ctx, field_path = _ctx_of(defs, file, doc, where)
                ctx.error(field_path, problem)
        for line, key, first in duplicates:
            top.error(f"line {line}", f"duplicate key {_show(key)} (first at line {first}); "
                                      "YAML would silently keep only the last one")
        if not isinstance(doc, (dict, type(None))):
            top.error("", "must be a mapping with jobs:, groups: and/or refresh_targets:")
            continue
        doc = doc or {}
        if not any(doc.get(k) for k in TOP_KEYS):
            defs.warnings.append(f"{file}: defines nothing (no jobs, groups or refresh_targets entries)")
        top.keys(doc, TOP_KEYS, "")
        for key in TOP_KEYS:
            if doc.get(key) is not None and not isinstance(doc[key], list):
                top.error(key, f"must be a list, got {_show(doc[key])}")
        for i, raw in enumerate(doc.get("jobs") or [] if isinstance(doc.get("jobs"), list) else []):
            job = _load_job(defs, file, fp, raw, i)
            if job is None:
                continue
            if job.slug in seen_jobs:
                _Ctx(defs, file, f"job {job.slug}").error(
                    "slug", f'duplicate slug "{job.slug}" (also defined in {seen_jobs[job.slug]})')
                continue
            seen_jobs[job.slug] = file
            if job.columns["kind"] == "sql":  # one job per routine: index job_sql_routine_unique
                target = job.columns["target"]
                if target in seen_routines:
                    other_file, other = seen_routines[target]
                    _Ctx(defs, file, f"job {job.slug}").error(
                        "target", f"routine {target} is already the target of job {other} (in {other_file}); "
                                  "one job per SQL routine")
                else:
                    seen_routines[target] = (file, job.slug)
            defs.jobs.append(job)
        for i, raw in enumerate(doc.get("groups") or [] if isinstance(doc.get("groups"), list) else []):
            if not isinstance(raw, dict):
                top.error(f"groups[{i}]", f"must be a mapping, got {_show(raw)}")
                continue
            gname = raw.get("name")
            c = _Ctx(defs, file, f"group {gname}" if isinstance(gname, str) else f"groups[{i}]")
            c.keys(raw, GROUP_KEYS, "")
            name = c.get(raw, "name", "str", "", required=True)
            if _ok(name) and not SLUG_RE.match(name):
                c.error("name", f"{_show(name)} must match ^[a-z][a-z0-9_]{{0,62}}$")
                name = MISSING
            desc = c.get(raw, "description", "str", "", nullable=True)
            members = c.get(raw, "members", "list", "", default=[], nullable=True) or []
            mlist: list[str] = []
            if _ok(members):
                for m in members:
                    if not isinstance(m, str) or not SLUG_RE.match(m):
                        c.error("members", f"{_show(m)} is not a job slug")
                    elif m in mlist:
                        c.error("members", f"{m} listed twice")
                    else:
                        mlist.append(m)
            if _ok(name, desc, members):
                if name in seen_groups:
                    c.error("name", f'duplicate group "{name}" (also defined in {seen_groups[name]})')
                    continue
                seen_groups[name] = file
                defs.groups.append(GroupDef(file, name, desc, mlist))
        for i, raw in enumerate(doc.get("refresh_targets") or []
                                if isinstance(doc.get("refresh_targets"), list) else []):
            if not isinstance(raw, dict):
                top.error(f"refresh_targets[{i}]", f"must be a mapping, got {_show(raw)}")
                continue
            label = (f"refresh target {raw.get('schema')}.{raw.get('view')}"
                     if raw.get("schema") and raw.get("view") else f"refresh_targets[{i}]")
            c = _Ctx(defs, file, label)
            c.keys(raw, TARGET_KEYS, "")
            schema = c.get(raw, "schema", "str", "", required=True)
            view = c.get(raw, "view", "str", "", required=True)
            mode = c.get(raw, "mode", "str", "", default="auto", enum=("auto", "concurrently", "blocking"))
            desc = c.get(raw, "description", "str", "", nullable=True)
            for k, v in (("schema", schema), ("view", view)):
                if _ok(v) and not IDENT_RE.match(v):
                    c.error(k, f"{_show(v)} is not a lower-case identifier")
            if _ok(schema, view, mode, desc):
                if (schema, view) in seen_targets:
                    c.error("view", f"duplicate refresh target {schema}.{view} "
                                    f"(also defined in {seen_targets[(schema, view)]})")
                    continue
                seen_targets[(schema, view)] = file
                defs.refresh_targets.append(RefreshTargetDef(file, schema, view, mode, desc))
    # a job may be a member of one group only
    owner: dict[str, str] = {}
    for g in defs.groups:
        for m in g.members:
            if m in owner:
                _Ctx(defs, g.file, f"group {g.name}").error(
                    "members", f"job {m} is already a member of group {owner[m]} (a job belongs to one group)")
            else:
                owner[m] = g.name
    return defs


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Cycles of a parent -> children graph, each as [a, b, ..., a], each cycle once."""
    WHITE, GREY, BLACK = 0, 1, 2
    color: dict[str, int] = {}
    cycles: list[list[str]] = []
    seen: set[frozenset] = set()
    nodes = sorted(set(edges) | {c for cs in edges.values() for c in cs})

    def visit(start: str) -> None:
        stack = [(start, iter(sorted(edges.get(start, ()))))]
        path = [start]
        color[start] = GREY
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = BLACK
                stack.pop()
                path.pop()
                continue
            if color.get(nxt, WHITE) == GREY:
                cyc = path[path.index(nxt):] + [nxt]
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    cycles.append(cyc)
            elif color.get(nxt, WHITE) == WHITE:
                color[nxt] = GREY
                path.append(nxt)
                stack.append((nxt, iter(sorted(edges.get(nxt, ())))))

    for n in nodes:
        if color.get(n, WHITE) == WHITE:
            visit(n)
    return cycles


def _check_routines_against_db(defs: Definitions, conn) -> None:
    """One job per SQL routine (index job_sql_routine_unique) against the database's jobs. A routine
    a job of the files gives up in this apply is free: apply_plan writes that job first. Routines
    changing hands in a cycle (a swap) cannot be written one row at a time: refused."""
    held_by = {r["target"]: r["slug"] for r in conn.execute("select slug, target from etl.jobs where kind = 'sql'")}
    wants = {j.slug: j.columns["target"] for j in defs.jobs if j.columns["kind"] == "sql"}
    declared = {slug for _, slug, _ in defs.declared}
    reported: set[frozenset] = set()
    for j in defs.jobs:
        target = wants.get(j.slug)
        holder = held_by.get(target) if target else None
        if holder is None or holder == j.slug:
            continue
        c = _Ctx(defs, j.file, f"job {j.slug}")
        if holder not in declared:
            c.error("target", f"routine {target} is the target of job {holder} in the database (one job per "
                              f"SQL routine): give job {holder} another target in the files, "
                              "or this job another routine")
            continue
        chain, nxt = [j.slug], holder
        while nxt in wants and nxt not in chain and held_by.get(wants[nxt]) != nxt:
            chain.append(nxt)
            nxt = held_by.get(wants[nxt])
        if nxt == j.slug and frozenset(chain) not in reported:
            reported.add(frozenset(chain))
            moves = ", ".join(f"{s} takes {wants[s]}" for s in chain)
            c.error("target", f"SQL routines change hands in a cycle ({moves}): a routine has one job at "
                              "every moment, so apply this in two steps (first give one of them another routine)")


def validate_against_db(defs: Definitions, conn, strict: bool = False) -> None:
    """Checks that need the database (read-only): depends_on and group members naming unknown
    jobs, dependency cycles including the database's edges, cron expressions and time zones
    (etl.cron_next), and with strict: sql targets and refresh views that do not exist."""
    import psycopg

    db_jobs = {r["slug"] for r in conn.execute("select slug from etl.jobs")}
    file_jobs = {j.slug for j in defs.jobs}
    known = db_jobs | {slug for _, slug, _ in defs.declared}

    def problem(ctx: _Ctx, path: str, message: str) -> None:
        if strict:
            ctx.error(path, message + " (--strict)")
        else:
            before = len(defs.errors)
            ctx.error(path, message)
            defs.warnings.append(defs.errors.pop(before))

    for file, slug, deps in defs.declared:
        c = _Ctx(defs, file, f"job {slug}")
        for d in deps:
            if d not in known:
                close = difflib.get_close_matches(d, sorted(known), n=1, cutoff=0.6)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                c.error("depends_on", f'unknown job "{d}": not in the files nor in the database{hint}')
            elif d in db_jobs and d not in {s for _, s, _ in defs.declared}:
                problem(c, "depends_on", f'job "{d}" is not in the files, only in the database')
    for j in defs.jobs:
        c = _Ctx(defs, j.file, f"job {j.slug}")
        if j.schedule is not None:
            try:
                with conn.transaction():
                    conn.execute("select etl.cron_next(%s, %s)", (j.schedule["cron_expr"], j.schedule["timezone"]))
            except psycopg.Error as exc:
                if exc.sqlstate != "22023":
                    raise
                msg = exc.diag.message_primary or str(exc)
                fld = "schedule.timezone" if "zone" in msg.lower() and "cron" not in msg.lower()[:4] else "schedule.cron"
                c.error(fld, msg)
        if j.columns["kind"] == "sql":
            schema_name, routine = j.columns["target"].split(".", 1)
            exists = conn.execute("""select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                                      where n.nspname = %s and p.proname = %s""", (schema_name, routine)).fetchone()
            if not exists:
                problem(c, "target", f"routine {j.columns['target']} does not exist in the database")
        for i, r in enumerate(j.refresh):
            exists = conn.execute("""select 1 from pg_matviews where schemaname = %s and matviewname = %s""",
                                  (r["schema"], r["view"])).fetchone()
            if not exists:
                problem(c, f"refresh[{i}].view",
                        f"materialized view {r['schema']}.{r['view']} does not exist in the database")
    _check_routines_against_db(defs, conn)
    for g in defs.groups:
        c = _Ctx(defs, g.file, f"group {g.name}")
        for m in g.members:
            if m not in known:
                c.error("members", f'unknown job "{m}": not in the files nor in the database')
        rows = conn.execute("""select j.slug, g.name from etl.job_group_members m
                                 join etl.jobs j using (job_id) join etl.job_groups g using (group_id)
                                where j.slug = any(%s)""", (g.members,)).fetchall()
        in_files = {x.name for x in defs.groups}
        for r in rows:
            if r["name"] != g.name and r["name"] not in in_files:
                c.error("members", f"job {r['slug']} is a member of group {r['name']} in the database "
                                   "(a job belongs to one group; move it there in the files or remove it)")

    # the dependency graph after apply: database edges, minus those replaced (a job of the files
    # has exactly the parents of its depends_on), plus the files'
    edges: dict[str, set[str]] = {}
    for r in conn.execute("""select p.slug as parent, c.slug as child from etl.job_dependencies d
                               join etl.jobs p on p.job_id = d.parent_job_id
                               join etl.jobs c on c.job_id = d.child_job_id"""):
        if r["child"] in file_jobs:
            continue
        edges.setdefault(r["parent"], set()).add(r["child"])
    for j in defs.jobs:
        for d in j.depends_on:
            edges.setdefault(d, set()).add(j.slug)
    cycles = find_cycles(edges)
    for cyc in cycles:
        first = next((defs.job(s) for s in cyc if defs.job(s) is not None), None)
        file, who = (first.file, first.slug) if first else ("(database)", cyc[0])
        _Ctx(defs, file, f"job {who}").error("depends_on", "dependency cycle " + " -> ".join(cyc))
    if not cycles:
        _check_groups_can_run_as_units(defs, edges)


def _check_groups_can_run_as_units(defs: Definitions, edges: dict[str, set[str]]) -> None:
    """A group runs as one unit under transaction_scope per_group: a job outside it that depends on
    one member and is a parent of another would have to run both before and after the unit (the
    engine refuses such a trigger; better said at apply)."""
    for g in defs.groups:
        unit = f"[group {g.name}]"
        node = {m: unit for m in g.members}
        contracted: dict[str, set[str]] = {}
        for parent, children in edges.items():
            for child in children:
                p, ch = node.get(parent, parent), node.get(child, child)
                if p != ch:
                    contracted.setdefault(p, set()).add(ch)
        for cyc in find_cycles(contracted):
            if unit in cyc:
                _Ctx(defs, g.file, f"group {g.name}").error(
                    "members", "run as one unit (transaction_scope per_group), the group closes the cycle "
                    + " -> ".join(cyc) + ": a job outside the group runs between two of its members")
                break
