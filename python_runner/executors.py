"""Run one claimed job and turn what happened into the outcome etl.finish() records.

Classification of exceptions (the engine's etl.error_classes decides what is transient):
- JobError: its own category, transient hint, error type and HTTP status;
- psycopg errors: DB with their SQLSTATE (connection, serialization and lock classes are transient
  by the engine's defaults);
- ValueError, TypeError, KeyError and other validation errors: DATA;
- anything else: SYSTEM (transient by default: a crash of the host or the code path).
"""
from __future__ import annotations

import importlib
import time
from typing import Any, Callable

import psycopg
from psycopg import sql

from . import queries
from .context import Cancelled, JobContext, JobError
from .redact import redact


def outcome_from_exception(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, Cancelled):
        return {"status": "cancelled", "message": str(exc)}
    if isinstance(exc, JobError):
        out = {"status": "failed", "error_category": exc.category, "error_type": exc.error_type,
               "message": str(exc)}
        if exc.transient is not None:
            out["is_transient"] = exc.transient
        if exc.http_status is not None:
            out["http_status"] = exc.http_status
        return out
    if isinstance(exc, psycopg.Error):
        return {"status": "failed", "error_category": "DB", "error_type": type(exc).__name__,
                "sqlstate": exc.sqlstate, "message": str(exc).strip()}
    if isinstance(exc, (ValueError, TypeError, KeyError, LookupError)):
        return {"status": "failed", "error_category": "DATA", "error_type": type(exc).__name__,
                "message": str(exc)}
    return {"status": "failed", "error_category": "SYSTEM", "error_type": type(exc).__name__,
            "message": str(exc)}


def resolve_callable(target: str) -> Callable[[JobContext], Any]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # The runner's environment, not the data: retrying on this runner cannot help.
        raise JobError(f"{target}: module {module_name} cannot be imported by this runner ({exc}); "
                       "put it on the runner's PYTHONPATH", category="SYSTEM", transient=False,
                       error_type="bad_target") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise JobError(f"{target}: {attr!r} is not a callable of module {module_name}",
                       category="SYSTEM", transient=False, error_type="bad_target")
    return fn


# What a job may return: a status that is not a failure (a job fails by raising) and counts that
# fit their columns. Anything else is the job's bug, reported as such: sent on, the engine would
# refuse the report, and the run would wait for its lease to expire and run again.
RETURNED_STATUSES = ("success", "partial_success")
COUNT_LIMITS = {"records_read": 2**63 - 1, "records_written": 2**63 - 1, "page_count": 2**31 - 1}


def check_returned_outcome(target: str, out: dict[str, Any]) -> None:
    """Raises a permanent SYSTEM JobError (bad_outcome) naming the field when out is not reportable."""
    def bad(what: str) -> JobError:
        return JobError(f"{target} returned {what}", category="SYSTEM", transient=False, error_type="bad_outcome")
    if out["status"] not in RETURNED_STATUSES:
        raise bad(f"status {out['status']!r}: a job returns success or partial_success, and raises to fail")
    for name, limit in COUNT_LIMITS.items():
        value = out.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit):
            raise bad(f"{name} {value!r}: a count is a whole number from 0 to {limit}")
    if out.get("message") is not None and not isinstance(out["message"], str):
        raise bad(f"message {out['message']!r}: a message is text")


def run_python(target: str, ctx: JobContext) -> dict[str, Any]:
    fn = resolve_callable(target)
    returned = fn(ctx)
    out: dict[str, Any] = {"status": "success", **ctx.metrics}
    if isinstance(returned, dict):
        # A job may report its status (partial_success) and extra metrics itself.
        out.update({k: v for k, v in returned.items() if k in (
            "status", "records_read", "records_written", "page_count", "lineage", "message")})
    check_returned_outcome(target, out)
    if ctx.custom:
        out["metrics"] = ctx.custom
    if ctx.new_cursor is not None:
        out["cursor"] = ctx.new_cursor
    return out


def routine_kinds(conn: psycopg.Connection, targets: list[str]) -> dict[str, str]:
    """prokind ('f' function, 'p' procedure) of each schema.routine target, in one round trip."""
    rows = conn.execute(queries.ROUTINE_KINDS, {"targets": targets}).fetchall()
    kinds = {(r["target"] if isinstance(r, dict) else r[0]): (r["prokind"] if isinstance(r, dict) else r[1])
             for r in rows}
    missing = [t for t in targets if t not in kinds]
    if missing:
        raise JobError(f"routine {missing[0]} does not exist", category="DB", transient=False,
                       error_type="undefined_function")
    return kinds


def call_routine(conn: psycopg.Connection, target: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Call schema.routine with params bound by name, in the caller's transaction."""
    schema, _, name = target.partition(".")
    args = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in sorted(params))
    routine = sql.Identifier(schema, name)
    stmt = (sql.SQL("call {}({})") if kind == "p" else sql.SQL("select {}({})")).format(routine, args)
    started = time.monotonic()
    cur = conn.execute(stmt, params)
    result = cur.fetchone() if cur.description else None
    value = None
    if result is not None:
        value = result[0] if not isinstance(result, dict) else next(iter(result.values()))
    rows = value if isinstance(value, int) and not isinstance(value, bool) else cur.rowcount
    rows = rows if isinstance(rows, int) and rows >= 0 else None
    return {"rows_affected": rows, "records_written": rows,
            # (The parameters as bound, secrets redacted: viewers read this column.)
            "sql_executed": stmt.as_string(conn) + "  -- params: " + repr(redact(params)[0]),
            "duration_ms": round((time.monotonic() - started) * 1000, 3)}


def set_statement_timeout(conn: psycopg.Connection, timeout_ms: int) -> None:
    conn.execute(sql.SQL("set local statement_timeout = {}").format(sql.Literal(int(timeout_ms))))


def run_sql(conn: psycopg.Connection, target: str, ctx: JobContext, timeout_ms: int) -> dict[str, Any]:
    """Call schema.routine with the run's parameters bound by name, in a transaction of its own.

    A dry run executes and rolls back: real counts, no change.
    """
    kind = routine_kinds(conn, [target])[target]
    with conn.transaction(force_rollback=ctx.dry_run):
        set_statement_timeout(conn, timeout_ms)
        done = call_routine(conn, target, kind, ctx.params)
    return {"status": "success", "rows_affected": done["rows_affected"],
            "records_written": done["records_written"], "sql_executed": done["sql_executed"],
            "metrics": {"duration_ms": done["duration_ms"], "dry_run_rolled_back": ctx.dry_run}}
