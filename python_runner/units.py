"""The shapes of work a claimed run can take besides a single call: items, a group, view refreshes.

- Items: etl.start_items hands the attempt its unfinished items (creating them on the first
  attempt; a callable source is called here and its list passed along). They run on up to
  item_concurrency threads; each result is committed on its own through etl.finish_item, so a
  retried attempt redoes only what did not succeed. The run's outcome is the engine's to derive.
- Group (transaction scope per_group): the leader and its members, in sequence, in one
  transaction on one connection; the first failure rolls every member back, and the report names
  the member that failed. A dry run executes everything and rolls back.
- Refreshes: after the work, the views etl.refresh_plan lists are refreshed one by one through
  etl.refresh_view, each in its own transaction; a failed refresh is recorded and logged, and does
  not undo or fail the work that committed before it.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from . import queries
from .queries import STALE_TOKEN
from .context import JobContext
from .redact import redact_outcome
from .executors import (call_routine, outcome_from_exception, resolve_callable, routine_kinds, run_python,
                        run_sql, set_statement_timeout)

if TYPE_CHECKING:
    from .runner import InFlight, Runner

class LeaseLost(Exception):
    """The engine refused a report: this attempt no longer holds the run."""


def run_items(runner: "Runner", f: "InFlight") -> dict[str, Any]:
    c = f.claim
    source = c.items_source or {}
    given = None
    if "callable" in source:
        produced = resolve_callable(source["callable"])(f.ctx)
        given = json.dumps(list(produced or []), default=str)
    elif "sql" in source:
        # Under the runner's role, read-only (the engine would run it as its own owner), on its
        # first attempt only (a later one resumes the items it made), and cancellable like a job.
        with runner.pool.connection() as conn:
            if conn.execute(queries.RUN_HAS_ITEMS, {"run_id": c.run_id}).fetchone()["has_items"]:
                given = None
            else:
                f.backend_pid = conn.info.backend_pid
                try:
                    with conn.transaction():
                        conn.execute("set transaction read only")
                        set_statement_timeout(conn, c.timeout_ms)
                        # (The extended protocol, as prepare=False still is with parameters: one
                        # statement only, so nothing in the query can end this read-only transaction.)
                        given = conn.execute(queries.ITEMS_OF_QUERY.format(sql.SQL(source["sql"])),
                                             {"run_id": c.run_id}).fetchone()["items"]
                finally:
                    f.backend_pid = None
    with runner.pool.connection() as conn:
        items = conn.execute(queries.START_ITEMS, {"run_id": c.run_id, "token": c.token, "items": given}).fetchall()
    total = len(items)
    f.ctx.log.info("items to run", fields={"action": "items", "items": total,
                                            "item_concurrency": c.item_concurrency})
    done = {"n": 0, "failed": 0}
    lock = threading.Lock()
    lost = threading.Event()

    def one(item: dict) -> None:
        # (A stopping runner starts no new item: the run goes back with what is left, done now.)
        if lost.is_set() or f.ctx.cancelled or runner.stop.is_set():
            return
        ictx = JobContext(run_id=c.run_id, attempt_no=c.attempt_no, job=c.job_slug, params=item["params"],
                          cursor=item["cursor"], dry_run=c.dry_run, logical_date=c.logical_date,
                          log=runner.item_logger(c, item), http=f.ctx.http, cancel_event=f.ctx.cancel_event,
                          item_id=item["item_id"], item_no=item["item_no"], mode=c.mode)
        started = datetime.now(timezone.utc)
        try:
            if c.kind == "python":
                out = run_python(c.target, ictx)
            else:
                with runner.pool.connection() as conn:
                    out = run_sql(conn, c.target, ictx, c.timeout_ms)
        except BaseException as exc:  # an item's failure is its own, the others go on
            out = outcome_from_exception(exc)
        if out.get("status") == "partial_success":
            out["status"] = "success"
        out["started_at"] = started.isoformat()
        if out["status"] == "failed":
            ictx.log.warning(f"item {item['item_no']} failed: {out.get('message', '')}", fields={
                "action": "item", "error_category": out.get("error_category"), "error_type": out.get("error_type")})
        try:
            with runner.pool.connection() as conn:
                conn.execute(queries.FINISH_ITEM, {"run_id": c.run_id, "token": c.token, "item_id": item["item_id"],
                                                   "outcome": json.dumps(redact_outcome(out), default=str)})
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) == STALE_TOKEN:
                lost.set()
                return
            raise
        with lock:
            done["n"] += 1
            done["failed"] += out["status"] != "success"
            n = done["n"]
        if n == total or n % max(1, total // 10) == 0:
            f.ctx.log.info("items progress", fields={
                "action": "items", "done": n, "total": total, "failed": done["failed"]})

    with ThreadPoolExecutor(max_workers=max(1, c.item_concurrency), thread_name_prefix=f"items-{c.run_id}") as pool:
        for fut in [pool.submit(one, item) for item in items]:
            fut.result()
    f.items_failed = done["failed"]
    if lost.is_set():
        raise LeaseLost(f"run {c.run_id}: attempt {c.token} lost its lease while running items")
    if f.ctx.cancelled:
        return {"status": "cancelled", "message": "cancelled by an operator"}
    if runner.stop.is_set() and done["n"] < total:
        return {"status": "failed", "error_category": "SYSTEM", "is_transient": True, "error_type": "runner_shutdown",
                "message": f"runner {runner.worker_id} stopped: {total - done['n']} of {total} items left for the next attempt"}
    return {"status": "success"}


def run_group(runner: "Runner", f: "InFlight") -> dict[str, Any]:
    c = f.claim
    members = [{"run_id": c.run_id, "token": c.token, "job_slug": c.job_slug, "kind": c.kind, "target": c.target,
                "params": c.params, "timeout_ms": c.timeout_ms}] + list(c.group_members or [])
    not_sql = [m["job_slug"] for m in members if m["kind"] != "sql"]
    if not_sql:
        return {"status": "failed", "error_category": "SYSTEM", "is_transient": False,
                "error_type": "group_member_not_sql",
                "message": f"a per_group transaction runs SQL jobs only; {', '.join(not_sql)} are not"}
    reports: list[dict[str, Any]] = []
    current = None
    with runner.pool.connection() as conn:
        f.backend_pid = conn.info.backend_pid
        try:
            kinds = routine_kinds(conn, [m["target"] for m in members])
            timeout = None
            with conn.transaction(force_rollback=c.dry_run):
                for m in members:
                    current = m
                    f.ctx.check_cancelled()
                    if m["timeout_ms"] != timeout:
                        timeout = m["timeout_ms"]
                        set_statement_timeout(conn, timeout)
                    reports.append({"run_id": m["run_id"], **call_routine(conn, m["target"], kinds[m["target"]],
                                                                          m["params"])})
            current = None
        except BaseException as exc:
            out = outcome_from_exception(exc)
            if f.ctx.cancelled and isinstance(exc, psycopg.errors.QueryCanceled):
                out = {"status": "cancelled", "message": "cancelled by an operator"}
            failed = current["job_slug"] if current else c.job_slug
            out["message"] = (f"{failed} failed: {out.get('message', '')}; all {len(members)} members of the group "
                              f"were rolled back")
            own = {k: out[k] for k in ("error_category", "error_type", "sqlstate") if k in out}
            own["message"] = out["message"]
            out["members"] = [{"run_id": current["run_id"], **own}] if current and current["run_id"] != c.run_id else []
            return out
        finally:
            f.backend_pid = None
    leader, rest = reports[0], reports[1:]
    return {"status": "success", "rows_affected": leader["rows_affected"],
            "records_written": leader["records_written"], "sql_executed": leader["sql_executed"],
            "metrics": {"duration_ms": leader["duration_ms"], "dry_run_rolled_back": c.dry_run,
                        "group_members": len(members)},
            "members": [{"run_id": r["run_id"], "rows_affected": r["rows_affected"],
                         "records_written": r["records_written"], "sql_executed": r["sql_executed"],
                         "metrics": {"duration_ms": r["duration_ms"], "dry_run_rolled_back": c.dry_run}}
                        for r in rest]}


def refresh_views(runner: "Runner", f: "InFlight", succeeded: bool) -> list[dict[str, Any]]:
    """Refresh the views linked to the run (and to each group member, in sequence)."""
    c = f.claim
    holders = [(c.run_id, c.token, c.job_slug)] + [(m["run_id"], m["token"], m["job_slug"])
                                                   for m in (c.group_members or [])]
    results = []
    with runner.pool.connection() as conn:
        for run_id, token, slug in holders:
            plan = conn.execute(queries.REFRESH_PLAN, {"run_id": run_id, "token": token,
                                                       "succeeded": succeeded}).fetchall()
            for target in plan:
                started = time.monotonic()
                result = conn.execute(queries.REFRESH_VIEW, {"run_id": run_id, "token": token,
                                                             "refresh_target_id": target["refresh_target_id"]}
                                      ).fetchone()["result"]
                fields = {"action": "refresh", "view": result["view"], "status": result["status"],
                          "concurrent": result["concurrent"], "duration_ms": result["duration_ms"],
                          "job": slug, "run_id": run_id}
                if result["status"] == "failed":
                    f.ctx.log.error(f"refresh of {result['view']} failed: {result['error']}", fields=fields)
                else:
                    f.ctx.log.info(f"refreshed {result['view']}", fields={
                        **fields, "wall_ms": round((time.monotonic() - started) * 1000, 1)})
                results.append(result)
    return results
