"""Operator commands of the `etl` CLI: jobs, run, runs, cancel, retry, settings, dag.

Registered on the main group by `register(main)` (see cli.py). Every database access goes through
the SQL API (etl.run_job, etl.cancel, etl.retry, etl.set_setting, etl.set_job_enabled,
etl.cron_describe, etl.cron_next_n) or a SELECT on etl tables, always with bound parameters; SQL is
composed at run time only from fixed fragments of this module (an ORDER BY whitelist, the latest-runs
subquery), never from input.

Exit codes: 0 ok, 1 the thing asked for failed, 2 bad input (unknown job or setting, bad -p, an
option that would have no effect), 3 not found (a run id), 124 `run --wait` timed out. Database
errors print `error: <message> (SQLSTATE <code>: <meaning>)`, never a traceback.
"""
from __future__ import annotations

import functools
import json
import math
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

import click
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .db import connect
from .redact import redact

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_TIMEOUT = 0, 1, 2, 3, 124
FINAL_STATUSES = ("success", "partial_success", "failed", "skipped", "cancelled")
GOOD_STATUSES = ("success", "partial_success")
RUN_STATUSES = ("pending", "queued", "running") + FINAL_STATUSES
# "Latest run" means the most recently created one, so every listing orders runs by `run_id desc`:
# run_id is an identity assigned at insert, never null and never tied. Not started_at: it is null
# until a run is claimed (skipped runs and runs cancelled before they started never get one, and
# DESC puts nulls first). Not scheduled_at: it is the logical date, which a backfill sets in the past.
# A job's latest runs are read as two index probes of runs_job_started_idx (job_id, started_at DESC,
# run_id DESC), its never-started runs (newest id first) and its started ones (newest start first),
# merged by run_id: `where job_id = $1 order by run_id desc` alone walks the primary key backwards
# from the newest run of any job, through the whole history for a job that has not run for long.
def latest_runs_sql(columns: str, job_id: str, n: int | str, where: str = "true") -> str:
    """A subquery: the n latest runs (see above), among those matching where, of the job whose id
    is the SQL expression job_id (n: a number or an SQL expression; columns and where read runs r)."""
    return f"""(select * from (
        (select {columns} from etl.runs r where r.job_id = {job_id} and r.started_at is null and ({where})
          order by r.run_id desc limit {n})
        union all
        (select {columns} from etl.runs r where r.job_id = {job_id} and r.started_at is not null and ({where})
          order by r.started_at desc, r.run_id desc limit {n})) latest
      order by run_id desc limit {n})"""


CATEGORIES = ("API", "DB", "DATA", "SYSTEM")


# --------------------------------------------------------------------------------------------
# errors and output helpers


class OpsError(Exception):
    """A failure reported as `error: <message>` with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _sqlstate_meaning(code: str | None) -> str:
    if not code:
        return "unknown"
    try:
        name = psycopg.errors.lookup(code).__name__
    except KeyError:
        return "unknown"
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def _db_exit_code(code: str | None) -> int:
    if not code:
        return EXIT_FAILED
    if code.startswith(("22", "23")):
        return EXIT_BAD_INPUT
    if code == "P0002" or code.startswith("02"):
        return EXIT_NOT_FOUND
    return EXIT_FAILED


def handle_errors(fn: Callable) -> Callable:
    """Turns OpsError and database errors into `error: ...` on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OpsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.code)
        except psycopg.Error as exc:
            code = getattr(exc, "sqlstate", None)
            diag = getattr(exc, "diag", None)
            message = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
            if code:
                click.echo(f"error: {message} (SQLSTATE {code}: {_sqlstate_meaning(code)})", err=True)
            else:
                click.echo(f"error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
            sys.exit(_db_exit_code(code))

    return wrapper


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime,)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_jsonable))


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, (dict,)):
        return json.dumps(value, default=_jsonable)
    return str(value)


def fmt_fire_time(utc: datetime, local: datetime, zone: str) -> str:
    """`2026-11-29 05:00:00 UTC (06:00 Europe/Berlin)`: the instant in UTC like every time printed,
    and the wall-clock time in the schedule's zone, the one its cron (and its summary) reads."""
    text = fmt(utc) + " UTC"
    if zone.upper() in ("UTC", "ETC/UTC"):
        return text
    same_day = local.date() == utc.astimezone(timezone.utc).date()
    return text + f" ({local:{'%H:%M' if same_day else '%Y-%m-%d %H:%M'}} {zone})"


def fmt_ms(ms: Any) -> str:
    if ms is None:
        return "-"
    ms = int(ms)
    if ms < 1000:
        return f"{ms}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def excerpt(text: Any, width: int = 60) -> str:
    if not text:
        return "-"
    one = " ".join(str(text).split())
    return one if len(one) <= width else one[: width - 1] + "…"


def echo_table(rows: Iterable[dict], columns: list[tuple[str, str]],
               formatters: dict[str, Callable[[Any], str]] | None = None, indent: str = "") -> None:
    """Prints rows as an aligned table; columns are (key, header) pairs."""
    formatters = formatters or {}
    cells = [[formatters.get(k, fmt)(r.get(k)) for k, _ in columns] for r in rows]
    headers = [h for _, h in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    click.echo(indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    click.echo(indent + "  ".join("-" * w for w in widths))
    for c in cells:
        click.echo(indent + "  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    if not cells:
        click.echo(indent + "(none)")


def echo_fields(pairs: list[tuple[str, Any]], indent: str = "") -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    continuation = "\n" + indent + " " * (width + 2)     # a multi-line value stays in its column
    for k, v in pairs:
        text = v if isinstance(v, str) else fmt(v)
        click.echo(f"{indent}{k:<{width}}  {continuation.join(text.splitlines()) or text}")


class NonFiniteNumber(ValueError):
    """A NaN, Infinity or overflowing number: Python's json reads them, PostgreSQL's json refuses them."""


def _refuse_non_finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise NonFiniteNumber(token)
    return value


def load_json(text: str) -> Any:
    """json.loads that refuses NaN, Infinity and 1e400 (they would fail later in the database,
    naming no parameter)."""
    return json.loads(text, parse_constant=_refuse_non_finite, parse_float=_refuse_non_finite)


def non_finite_message(exc: NonFiniteNumber, text: str) -> str:
    """`NaN is not a finite number ...` or `Infinity in '[1, Infinity]' is not ...`."""
    where = "" if text.strip() == str(exc) else f" in {text!r}"
    return f"{exc}{where} is not a finite number (JSON has no NaN or Infinity); quote it for a string"


def parse_value(text: str) -> Any:
    """JSON when it parses (5 -> 5, true -> true, "x" -> x), else the text itself.

    Raises NonFiniteNumber for NaN, Infinity or an out-of-range number anywhere in the value."""
    try:
        return load_json(text)
    except NonFiniteNumber:
        raise
    except ValueError:
        return text


def parse_params(_ctx, _param, values: tuple[str, ...]) -> dict:
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="-p/--param")
        # The last one winning would hide a typo or a script's double expansion.
        if key in given:
            raise click.BadParameter(f"parameter {key!r} is given twice ({given[key]!r} and {item!r}); "
                                     "give it once", param_hint="-p/--param")
        given[key] = item
        try:
            out[key] = parse_value(value)
        except NonFiniteNumber as exc:
            raise click.BadParameter(f"parameter {key!r}: {non_finite_message(exc, value)}",
                                     param_hint="-p/--param") from None
    return out


def parse_since(_ctx, _param, value: str | None) -> datetime | None:
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", value)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        try:
            return datetime.now(timezone.utc) - timedelta(**{unit: int(m.group(1))})
        except OverflowError:   # from timedelta (too many days) or from the subtraction (before year 1)
            raise click.BadParameter(f"{value!r} reaches back before the year 1; give a shorter duration "
                                     "or an ISO timestamp") from None
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (24h, 7d, 30m) nor an ISO timestamp")
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _job_row(conn, slug: str) -> dict:
    row = conn.execute("select * from etl.jobs where slug = %s", (slug,)).fetchone()
    if row is None:
        raise OpsError(f"unknown job {slug!r}", EXIT_BAD_INPUT)
    return row


def _run_row(conn, run_id: int) -> dict:
    row = conn.execute("""
        select r.*, j.slug as job from etl.runs r join etl.jobs j on j.job_id = r.job_id
         where r.run_id = %s""", (run_id,)).fetchone()
    if row is None:
        raise OpsError(f"run {run_id} not found", EXIT_NOT_FOUND)
    return row


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
reason_option = click.option("--reason", required=True, help="Why (recorded in etl.audit_log). Required.")


# --------------------------------------------------------------------------------------------
# etl jobs


@click.group("jobs")
def jobs() -> None:
    """The job catalog: list, show, enable, disable."""


JOB_SORTS = {
    "slug": sql.SQL("j.slug"),
    "priority": sql.SQL("j.priority desc, j.slug"),
    "last_run": sql.SQL("lr.run_id desc nulls last, j.slug"),     # jobs that never ran go last
}


@jobs.command("list")
@click.option("--enabled/--disabled", "enabled", default=None, help="Only enabled (or only disabled) jobs.")
@click.option("--tag", help="Only jobs with this tag.")
@click.option("--layer", type=click.Choice(["bronze", "silver", "gold"]), help="Only jobs of this layer.")
@click.option("--search", help="Case-insensitive substring of slug, name or description.")
@click.option("--last-status", type=click.Choice(RUN_STATUSES + ("never",)),
              help="Only jobs whose latest run (the most recently created) has this status; "
                   "never: jobs that have no run.")
@click.option("--sort", type=click.Choice(list(JOB_SORTS)), default="slug", show_default=True,
              help="last_run: the job with the most recently created run first.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many jobs.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many jobs.")
@json_option
@handle_errors
def jobs_list(enabled, tag, layer, search, last_status, sort, limit, offset, as_json) -> None:
    """List jobs with tags, dependencies, next scheduled run and last run."""
    pattern = None
    if search:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search) + "%"
    query = sql.SQL("""
        select j.slug, j.name, j.layer, j.enabled, j.priority,
               coalesce((select array_agg(t.tag order by t.tag) from etl.job_tags t
                          where t.job_id = j.job_id), '{{}}') as tags,
               (select count(*) from etl.job_dependencies d where d.child_job_id = j.job_id) as dependencies,
               sch.next_run_at, sch.cron_expr, sch.timezone as cron_timezone,
               lr.run_id as last_run_id, lr.status as last_status, lr.started_at as last_started_at,
               lr.duration_ms as last_duration_ms
          from etl.jobs j
          left join lateral {latest_run} lr on true       -- see the note on RUN_STATUSES
          left join etl.schedules sch on sch.job_id = j.job_id and sch.is_active
         where (%(enabled)s::boolean is null or j.enabled = %(enabled)s::boolean)
           and (%(tag)s::text is null or exists (select 1 from etl.job_tags t
                                                  where t.job_id = j.job_id and t.tag = %(tag)s::text))
           and (%(layer)s::text is null or j.layer = %(layer)s::text)
           and (%(pattern)s::text is null or j.slug ilike %(pattern)s::text or j.name ilike %(pattern)s::text
                or j.description ilike %(pattern)s::text)
           and (%(last_status)s::text is null or coalesce(lr.status, 'never') = %(last_status)s::text)
         order by {order}
         limit %(limit)s offset %(offset)s""").format(
        order=JOB_SORTS[sort],
        latest_run=sql.SQL(latest_runs_sql("r.run_id, r.status, r.started_at, r.duration_ms", "j.job_id", 1)))
    with connect() as conn:
        rows = conn.execute(query, {"enabled": enabled, "tag": tag, "layer": layer, "pattern": pattern,
                                    "last_status": last_status, "limit": limit, "offset": offset}).fetchall()
        for r in rows:
            # A schedule the tick has not visited yet has no next_run_at: compute it from the cron.
            if r["next_run_at"] is None and r["cron_expr"] is not None:
                try:
                    r["next_run_at"] = conn.execute("select etl.cron_next(%s, %s) as t",
                                                    (r["cron_expr"], r["cron_timezone"])).fetchone()["t"]
                except psycopg.Error:
                    pass
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, [("slug", "JOB"), ("layer", "LAYER"), ("enabled", "ENABLED"), ("priority", "PRIO"),
                      ("tags", "TAGS"), ("dependencies", "DEPS"), ("next_run_at", "NEXT RUN (UTC)"),
                      ("last_status", "LAST STATUS"), ("last_duration_ms", "LAST DURATION")],
               {"last_duration_ms": fmt_ms})


@jobs.command("show")
@click.argument("job")
@json_option
@handle_errors
def jobs_show(job: str, as_json: bool) -> None:
    """Show a job: config, schedules (with next fire times), retry policy, parameters, DAG, last runs."""
    with connect() as conn:
        j = _job_row(conn, job)
        jid = j["job_id"]
        tags = [r["tag"] for r in conn.execute(
            "select tag from etl.job_tags where job_id = %s order by tag", (jid,))]
        schedules = conn.execute("""
            select schedule_id, cron_expr, timezone, is_active, params, with_downstream, misfire_policy,
                   overlap_policy, next_run_at, last_fire_at, description
              from etl.schedules where job_id = %s order by is_active desc, schedule_id""", (jid,)).fetchall()
        next_fires_text: dict[int, list[str]] = {}     # labelled UTC and local: text output only
        for s in schedules:
            try:
                s["summary"] = conn.execute("select etl.cron_describe(%s) as d", (s["cron_expr"],)).fetchone()["d"]
                fires = conn.execute("""
                    select t, t at time zone %(tz)s::text as local
                      from etl.cron_next_n(%(cron)s, %(tz)s, now(), 3) t""",
                                     {"cron": s["cron_expr"], "tz": s["timezone"]}).fetchall()
            except psycopg.Error as exc:
                s["summary"] = f"invalid: {exc.diag.message_primary or exc}"
                fires = []
            s["next_fire_times"] = [f["t"] for f in fires]
            next_fires_text[s["schedule_id"]] = [fmt_fire_time(f["t"], f["local"], s["timezone"]) for f in fires]
        params = conn.execute("""
            select name, mode, data_type, required, default_value, allowed_values, description
              from etl.job_parameters where job_id = %s order by name, mode""", (jid,)).fetchall()
        parents = conn.execute("""
            select p.slug, d.dependency_type from etl.job_dependencies d join etl.jobs p on p.job_id = d.parent_job_id
             where d.child_job_id = %s order by p.slug""", (jid,)).fetchall()
        children = conn.execute("""
            select c.slug, d.dependency_type from etl.job_dependencies d join etl.jobs c on c.job_id = d.child_job_id
             where d.parent_job_id = %s order by c.slug""", (jid,)).fetchall()
        runs = conn.execute("select * from " + latest_runs_sql(
            "r.run_id, r.pipeline_run_id, r.status, r.attempt_count, r.started_at, r.ended_at, r.duration_ms, "
            "r.error_category, r.error_message", "%(job_id)s", 5) + " runs",
            {"job_id": jid}).fetchall()
    retry = {k: j[k] for k in ("max_attempts", "backoff_base", "backoff_factor", "backoff_cap",
                               "backoff_jitter", "max_retry_elapsed")}
    if as_json:
        echo_json({"job": j, "tags": tags, "schedules": schedules, "retry_policy": retry,
                   "parameters": params, "parents": parents, "children": children, "last_runs": runs})
        return
    click.echo(f"job {j['slug']} (id {jid}): {j['name']}")
    echo_fields([("description", fmt(j["description"])), ("kind", j["kind"]), ("target", j["target"]),
                 ("layer", fmt(j["layer"])), ("role", fmt(j["role"])), ("domain", fmt(j["domain"])),
                 ("enabled", fmt(j["enabled"])), ("priority", str(j["priority"])),
                 ("tags", fmt(tags)), ("timeout", fmt(j["timeout"])),
                 ("concurrency", f"{j['concurrency_key'] or '(slug+params)'} x{j['concurrency_limit']}"),
                 ("params/items", f"supports_params={fmt(j['supports_params'])} items_source={fmt(j['items_source'])}"),
                 ("incremental", j["incremental_strategy"]), ("config", fmt(j["config"]))], indent="  ")
    click.echo("retry policy:")
    echo_fields([("max_attempts", str(retry["max_attempts"])),
                 ("backoff", f"base {retry['backoff_base']}, factor {retry['backoff_factor']}, "
                             f"cap {retry['backoff_cap']}, jitter {retry['backoff_jitter']}"),
                 ("max_retry_elapsed", fmt(retry["max_retry_elapsed"]))], indent="  ")
    click.echo("schedules:")
    if not schedules:
        click.echo("  (none)")
    for s in schedules:
        state = "active" if s["is_active"] else "inactive"
        click.echo(f"  #{s['schedule_id']} {s['cron_expr']!r} {s['timezone']} ({state}): {s['summary']}"
                   f"   misfire={s['misfire_policy']} overlap={s['overlap_policy']}")
        click.echo(f"    next: {', '.join(next_fires_text[s['schedule_id']]) or '-'}")
    click.echo("parameters:")
    echo_table(params, [("name", "NAME"), ("mode", "MODE"), ("data_type", "TYPE"), ("required", "REQUIRED"),
                        ("default_value", "DEFAULT"), ("allowed_values", "ALLOWED")],
               {"default_value": lambda v: "-" if v is None else json.dumps(v),
                "allowed_values": lambda v: "-" if v is None else json.dumps(v)}, indent="  ")
    click.echo("parents:  " + (", ".join(f"{p['slug']} ({p['dependency_type']})" for p in parents) or "-"))
    click.echo("children: " + (", ".join(f"{c['slug']} ({c['dependency_type']})" for c in children) or "-"))
    click.echo("last runs:")
    echo_table(runs, [("run_id", "RUN"), ("status", "STATUS"), ("attempt_count", "ATTEMPTS"),
                      ("started_at", "STARTED (UTC)"), ("duration_ms", "DURATION"), ("error_category", "CAT"),
                      ("error_message", "ERROR")],
               {"duration_ms": fmt_ms, "error_message": excerpt}, indent="  ")


def _set_enabled(job: str, enabled: bool, reason: str) -> None:
    action = "enable" if enabled else "disable"
    with connect() as conn:
        was_enabled = conn.execute("select etl.set_job_enabled(%s, %s, %s) as was", (job, enabled, reason)
                                   ).fetchone()["was"]
    was = "already " if was_enabled == enabled else ""
    click.echo(f"job {job} {was}{action}d")


@jobs.command("enable")
@click.argument("job")
@reason_option
@handle_errors
def jobs_enable(job: str, reason: str) -> None:
    """Enable a job (audited)."""
    _set_enabled(job, True, reason)


@jobs.command("disable")
@click.argument("job")
@reason_option
@handle_errors
def jobs_disable(job: str, reason: str) -> None:
    """Disable a job: schedules and tag/layer selections leave it out (audited)."""
    _set_enabled(job, False, reason)


# --------------------------------------------------------------------------------------------
# etl run


WAIT_RESULTS = {EXIT_OK: "success", EXIT_FAILED: "failed", EXIT_TIMEOUT: "timeout"}


def _wait_pipeline(conn, pipeline_run_id: int, timeout: float | None, as_json: bool = False,
                   poll: float = 0.5) -> tuple[int, list[dict]]:
    """Follows a pipeline run until all its runs are final or the timeout; returns the exit code
    and the runs as last seen. Progress goes to stdout, or to stderr with --json (whose stdout is
    one JSON document, written by the caller)."""
    seen: dict[int, tuple] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rows = conn.execute("""
            select r.run_id, j.slug, r.status, r.attempt_count, r.dry_run from etl.runs r
              join etl.jobs j on j.job_id = r.job_id
             where r.pipeline_run_id = %s order by r.run_id""", (pipeline_run_id,)).fetchall()
        for r in rows:
            state = (r["status"], r["attempt_count"])
            if seen.get(r["run_id"]) != state:
                seen[r["run_id"]] = state
                click.echo(f"  {datetime.now(timezone.utc):%H:%M:%S}  {r['slug']:<24} {r['status']:<16} "
                           f"attempt {r['attempt_count']}" + ("  (dry run)" if r["dry_run"] else ""), err=as_json)
        if rows and all(r["status"] in FINAL_STATUSES for r in rows):
            bad = [r for r in rows if r["status"] not in GOOD_STATUSES]
            # A partial success is a good end (exit 0), but not a plain success: say which.
            partial = [r for r in rows if r["status"] == "partial_success"]
            click.echo("finished: " + (", ".join(f"{r['slug']} {r['status']}" for r in bad + partial) or "success")
                       + (" (dry run: nothing changed)" if rows[0]["dry_run"] else ""), err=as_json)
            return (EXIT_FAILED if bad else EXIT_OK), rows
        if deadline is not None and time.monotonic() >= deadline:
            click.echo(f"error: timed out after {timeout:g}s waiting for pipeline run {pipeline_run_id}", err=True)
            return EXIT_TIMEOUT, rows
        sleep = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
        time.sleep(sleep)


@click.command("run")
@click.argument("job")
@click.option("-p", "--param", "params", multiple=True, callback=parse_params, metavar="KEY=VALUE",
              help="A parameter; VALUE is JSON when it parses (n=5 is 5; NaN and Infinity are refused), "
                   "else a string. Repeatable, each KEY once.")
@click.option("--params-file", type=click.File("r"), help="A JSON object of parameters (-p wins over it).")
@click.option("--dry-run", is_flag=True, help="Run without side effects (no cursor advance).")
@click.option("--reason", help="Why (recorded with the run and in etl.audit_log).")
@click.option("--downstream", is_flag=True, help="Also run the job's enabled downstream closure.")
@click.option("--wait", is_flag=True, help="Wait until the pipeline run finishes, printing status changes.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --wait (only): give up after this many seconds (exit 124).")
@click.option("--full", is_flag=True, help="A full refresh (mode full): needs --approve or --request-approval.")
@click.option("--approve", is_flag=True, help="With --full: confirm the full refresh now (you are the approver).")
@click.option("--approver", help="With --full --approve: who approves (default: the database user).")
@click.option("--request-approval", is_flag=True,
              help="With --full and --reason: create the run awaiting approval; `etl approve PIPELINE_RUN` "
                   "releases it. Not with --wait.")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable JSON output: one document; with --wait it is written at the end, with the "
                   "final status and a `wait` object (result success|failed|timeout, the pipeline's runs), "
                   "and the progress lines go to stderr.")
@handle_errors
def run_cmd(job, params, params_file, dry_run, reason, downstream, wait, timeout, full, approve, approver,
            request_approval, as_json) -> None:
    """Run JOB now (etl.run_job) and print the run id; with --wait, follow it to the end.

    A full refresh (--full) reloads everything from scratch and resets the cursors; it needs the
    job's allow_full_refresh, a --reason, and --approve (approved now) or --request-approval
    (approved later with `etl approve`). Without them nothing is enqueued.

    Exit codes with --wait: 0 success/partial_success, 1 failed/cancelled/skipped, 124 timeout.
    """
    # Options that would be silently ignored are refused, so a script never believes it got them.
    if timeout is not None and not wait:
        raise OpsError(f"--timeout {timeout:g} goes with --wait (without it nothing waits)", EXIT_BAD_INPUT)
    if (approve or request_approval or approver) and not full:
        raise OpsError("--approve, --approver and --request-approval go with --full", EXIT_BAD_INPUT)
    if approve and request_approval:
        raise OpsError("choose --approve (now) or --request-approval (later), not both", EXIT_BAD_INPUT)
    if full and not (approve or request_approval):
        raise OpsError("a full refresh needs an approval: --approve (you approve it now, with --reason) or "
                       "--request-approval (an approver releases it with `etl approve`); nothing enqueued",
                       EXIT_BAD_INPUT)
    if request_approval and wait:
        raise OpsError("--wait cannot follow a run that awaits approval: nothing runs until `etl approve`",
                       EXIT_BAD_INPUT)
    if full and not reason:
        raise OpsError("a full refresh needs --reason (it is recorded with the approval"
                       + (" request)" if request_approval else ")"), EXIT_BAD_INPUT)
    approval = None
    if full and approve:
        approval = {"confirmed": True, "approver": approver or "", "reason": reason}
    merged: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = load_json(params_file.read())
        except NonFiniteNumber as exc:
            raise OpsError(f"--params-file: {exc} is not a finite number (JSON has no NaN or Infinity)",
                           EXIT_BAD_INPUT) from None
        except ValueError as exc:
            raise OpsError(f"--params-file is not valid JSON: {exc}", EXIT_BAD_INPUT)
        if not isinstance(loaded, dict):
            raise OpsError("--params-file must hold a JSON object", EXIT_BAD_INPUT)
        merged.update(loaded)
    merged.update(params)
    with connect() as conn:
        _job_row(conn, job)
        if approval is not None and not approval["approver"]:
            approval["approver"] = conn.execute("select session_user as u").fetchone()["u"]
        run_id = conn.execute(
            "select etl.run_job(job => %s, params => %s, dry_run => %s, reason => %s, downstream => %s,"
            " mode => %s, approval => %s, request_approval => %s) as id",
            (job, Jsonb(merged), dry_run, reason, downstream, "full" if full else "incremental",
             Jsonb(approval) if approval is not None else None, request_approval)).fetchone()["id"]
        run = conn.execute("select pipeline_run_id, status, params from etl.runs where run_id = %s",
                           (run_id,)).fetchone()
        out = {"run_id": run_id, "pipeline_run_id": run["pipeline_run_id"], "status": run["status"],
               "params": redact(run["params"])[0]}
        if not as_json:
            click.echo(f"run {run_id} (pipeline run {run['pipeline_run_id']}): {job} {run['status']}")
            if request_approval:
                click.echo(f"awaiting approval: etl approve {run['pipeline_run_id']} --reason '...'")
        if not wait:
            if as_json:
                echo_json(out)
            return
        code, runs_seen = _wait_pipeline(conn, run["pipeline_run_id"], timeout, as_json=as_json)
        if as_json:
            out["status"] = next((r["status"] for r in runs_seen if r["run_id"] == run_id), run["status"])
            out["wait"] = {"result": WAIT_RESULTS[code],
                           "runs": [{"run_id": r["run_id"], "job": r["slug"], "status": r["status"],
                                     "attempts": r["attempt_count"]} for r in runs_seen]}
            echo_json(out)
        sys.exit(code)


# --------------------------------------------------------------------------------------------
# etl runs


@click.group("runs")
def runs() -> None:
    """Run history: list and show runs."""


@runs.command("list")
@click.option("--job", help="Only runs of this job.")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs in this status.")
@click.option("--since", callback=parse_since, help="Started (or scheduled) since: 24h, 7d, 30m or an ISO timestamp.")
@click.option("--category", type=click.Choice(CATEGORIES, case_sensitive=False), help="Only this error category.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="At most this many runs.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many runs.")
@json_option
@handle_errors
def runs_list(job, status, since, category, limit, offset, as_json) -> None:
    """List runs, newest (most recently created, started or not) first."""
    columns = ("r.run_id, r.job_id, r.status, r.attempt_count as attempts, r.started_at, r.duration_ms, "
               "r.error_category as category, r.error_message")
    filters = """(%(status)s::text is null or r.status = %(status)s::text)
               and (%(since)s::timestamptz is null or coalesce(r.started_at, r.scheduled_at) >= %(since)s::timestamptz)
               and (%(category)s::text is null or r.error_category = %(category)s::text)"""
    params = {"status": status, "since": since, "category": category.upper() if category else None,
              "limit": limit, "offset": offset}
    with connect() as conn:
        if job is None:
            runs = f"""(select {columns} from etl.runs r where {filters}
                      order by r.run_id desc limit %(limit)s + %(offset)s)"""
        else:
            # One job's runs: the latest-runs probes (a job that has not run for long is not looked
            # for through everybody's newer runs), deep enough for the page.
            params["job_id"] = _job_row(conn, job)["job_id"]
            runs = latest_runs_sql(columns, "%(job_id)s", "%(limit)s + %(offset)s", filters)
        query = f"""
            select r.run_id, j.slug as job, r.status, r.attempts, r.started_at, r.duration_ms, r.category,
                   r.error_message
              from {runs} r join etl.jobs j on j.job_id = r.job_id
             order by r.run_id desc              -- newest created first: see the note on RUN_STATUSES
             offset %(offset)s"""
        rows = conn.execute(query, params).fetchall()
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, [("run_id", "RUN"), ("job", "JOB"), ("status", "STATUS"), ("attempts", "ATTEMPTS"),
                      ("started_at", "STARTED (UTC)"), ("duration_ms", "DURATION"), ("category", "CAT"),
                      ("error_message", "ERROR")], {"duration_ms": fmt_ms, "error_message": excerpt})


def _cancellation(run: dict, events: list[dict]) -> str:
    """A cancelled run's message and the operator's reason, from its cancel event (a running run's
    message comes from its runner and does not carry the reason)."""
    reason = next((e["detail"]["reason"] for e in reversed(events)
                   if (e["event_type"] == "cancel_requested" or e["to_status"] == "cancelled")
                   and isinstance(e["detail"], dict) and e["detail"].get("reason")), None)
    message = run["error_message"] or ("cancelled while running" if run["started_at"] else
                                       "cancelled before it started")
    return message + (f" (reason: {reason})" if reason else "")


@runs.command("show")
@click.argument("run_id", metavar="RUN", type=int)
@json_option
@handle_errors
def runs_show(run_id: int, as_json: bool) -> None:
    """Show a run: its timeline, attempts, items, lineage and metrics."""
    with connect() as conn:
        run = _run_row(conn, run_id)
        events = conn.execute("""
            select ts, event_type, from_status, to_status, actor, detail from etl.run_events
             where run_id = %s order by ts, event_id""", (run_id,)).fetchall()
        attempts = conn.execute("""
            select attempt_no, status, worker_id, started_at, ended_at, duration_ms, error_category,
                   is_transient, backoff_ms, next_attempt_at, error_type, error_message
              from etl.run_attempts where run_id = %s order by attempt_no""", (run_id,)).fetchall()
        items = conn.execute("""
            select item_no, params, status, attempt_count, duplicate_count, duration_ms, records_read,
                   records_written, error_category, error_message
              from etl.run_items where run_id = %s order by item_no""", (run_id,)).fetchall()
        refreshes = conn.execute("""
            select t.schema_name || '.' || t.view_name as view, f.sequence, f.was_concurrent, f.status,
                   f.duration_ms, f.error_message
              from etl.run_refreshes f join etl.refresh_targets t using (refresh_target_id)
             where f.run_id = %s order by f.started_at, f.run_refresh_id""", (run_id,)).fetchall()
        group = conn.execute("""
            select g.name, coalesce(r.group_leader_run_id, r.run_id) as leader,
                   (select count(*) from etl.runs m where m.group_leader_run_id = coalesce(r.group_leader_run_id, r.run_id)) + 1 as members
              from etl.runs r join etl.job_groups g using (group_id)
             where r.run_id = %s""", (run_id,)).fetchone()
        extra = conn.execute("select sql_executed, rows_affected, items_total, items_succeeded, items_failed, "
                             "items_duplicate from etl.runs where run_id = %s", (run_id,)).fetchone()
        # What the job's definition says it reads and writes (etl apply, from its SQL with pglast).
        job_lineage = conn.execute("""
            select access, array_agg(relation order by relation) as relations
              from etl.job_lineage where job_id = %s group by access order by access""",
                                   (run["job_id"],)).fetchall()
        # What a pending run waits for: its parents in the pipeline run that have not succeeded.
        waiting_for = conn.execute("""
            select j.slug, p.run_id, p.status from etl.run_dependencies d
              join etl.runs p on p.run_id = d.parent_run_id join etl.jobs j on j.job_id = p.job_id
             where d.child_run_id = %s and p.status not in ('success', 'partial_success') order by p.run_id""",
                                   (run_id,)).fetchall() if run["status"] == "pending" else []
        # A run alone waits for its parent jobs' latest runs (outside its pipeline run).
        outside = conn.execute("""
            select j.slug, l.run_id, l.status from etl.job_dependencies d join etl.jobs j on j.job_id = d.parent_job_id
              left join lateral """ + latest_runs_sql("r.run_id, r.status", "d.parent_job_id", 1) + """ l on true
             where d.child_job_id = %s order by j.slug""", (run["job_id"],)).fetchall() \
            if run["status"] == "pending" and run["wait_until"] and not waiting_for else []
        # A full refresh requested with --request-approval: its runs stay pending until `etl approve`.
        awaiting_approval = conn.execute(
            "select status = 'awaiting_approval' as a from etl.pipeline_runs where pipeline_run_id = %s",
            (run["pipeline_run_id"],)).fetchone()["a"]
    # Parameters are shown as logs are: secret-named keys and e-mail addresses redacted.
    run = {**run, "params": redact(run["params"])[0]}
    items = [{**i, "params": redact(i["params"])[0]} for i in items]
    if as_json:
        echo_json({"run": {**run, **extra}, "job_lineage": {r["access"]: r["relations"] for r in job_lineage},
                   "awaiting_approval": awaiting_approval, "events": events,
                   "attempts": attempts, "items": items, "refreshes": refreshes, "group": group})
        return
    click.echo(f"run {run['run_id']}: {run['job']} {run['status']}"
               f"{', awaiting approval' if awaiting_approval else ''} (pipeline run {run['pipeline_run_id']})")
    echo_fields([("mode", run["mode"] + (" (dry run)" if run["dry_run"] else "")),
                 ("params", fmt(run["params"])), ("logical date", fmt(run["logical_date"])),
                 ("scheduled", fmt(run["scheduled_at"])), ("started", fmt(run["started_at"])),
                 ("ended", fmt(run["ended_at"])), ("duration", fmt_ms(run["duration_ms"])),
                 ("attempts", f"{run['attempt_count']} of {run['max_attempts']}"),
                 ("records", f"read {fmt(run['records_read'])}, written {fmt(run['records_written'])}"),
                 (("cancellation", _cancellation(run, events)) if run["status"] == "cancelled" else
                  ("error", f"{fmt(run['error_category'])} {fmt(run['error_type'])}: {fmt(run['error_message'])}"
                   if run["error_category"] or run["error_message"] else "-")),
                 ("skip reason", fmt(run["skip_reason"])), ("reason", fmt(run["reason"])),
                 *([("waiting for", _waiting_for(run, waiting_for, outside))] if run["status"] == "pending" else []),
                 *([("cancel", _cancel_not_taken(run))]
                   if run["cancel_requested_at"] and run["status"] != "cancelled" else []),
                 ("requested by", run["requested_by"])]
                + ([("rows affected", fmt(extra["rows_affected"]))] if extra["rows_affected"] is not None else [])
                + ([("items", f"{extra['items_succeeded'] or 0} of {extra['items_total']} succeeded, "
                              f"{extra['items_failed'] or 0} failed, {extra['items_duplicate'] or 0} duplicates")]
                   if extra["items_total"] is not None else [])
                + ([("group", f"{group['name']}: {group['members']} members in one transaction, "
                              f"led by run {group['leader']}")] if group and group["members"] > 1 else [])
                + ([("sql executed", extra["sql_executed"])] if extra["sql_executed"] else []), indent="  ")
    click.echo("timeline:")
    echo_table([dict(e, transition=f"{e['from_status'] or '-'} -> {e['to_status'] or '-'}") for e in events],
               [("ts", "TS (UTC)"), ("event_type", "EVENT"), ("transition", "FROM -> TO"), ("actor", "ACTOR"),
                ("detail", "DETAIL")],
               {"detail": lambda v: "-" if not v else json.dumps(v, default=_jsonable)}, indent="  ")
    click.echo("attempts:")
    echo_table(attempts, [("attempt_no", "NO"), ("status", "STATUS"), ("worker_id", "WORKER"),
                          ("duration_ms", "DURATION"), ("error_category", "CAT"), ("is_transient", "TRANSIENT"),
                          ("backoff_ms", "BACKOFF_MS"), ("next_attempt_at", "NEXT ATTEMPT (UTC)"),
                          ("error_message", "ERROR")],
               {"duration_ms": fmt_ms, "error_message": excerpt}, indent="  ")
    if items:
        click.echo("items:")
        echo_table(items, [("item_no", "NO"), ("params", "PARAMS"), ("status", "STATUS"),
                           ("attempt_count", "ATTEMPTS"), ("duration_ms", "DURATION"),
                           ("records_written", "WRITTEN"), ("error_message", "ERROR")],
                   {"duration_ms": fmt_ms, "error_message": excerpt}, indent="  ")
    if refreshes:
        click.echo("view refreshes:")
        echo_table(refreshes, [("sequence", "SEQ"), ("view", "VIEW"), ("was_concurrent", "CONCURRENTLY"),
                               ("status", "STATUS"), ("duration_ms", "DURATION"), ("error_message", "ERROR")],
                   {"duration_ms": fmt_ms, "error_message": excerpt}, indent="  ")
    click.echo("lineage: " + (json.dumps(run["lineage"], default=_jsonable) if run["lineage"] else
                              "-" if not job_lineage else
                              "; ".join(f"{'reads' if r['access'] == 'read' else 'writes'} {', '.join(r['relations'])}"
                                        for r in job_lineage) + " (the job's definition)"))
    click.echo("metrics: " + (json.dumps(run["metrics"], default=_jsonable) if run["metrics"] else "-"))


def _waiting_for(run: dict, parents: list[dict], outside: list[dict]) -> str:
    """Why a pending run has not started: its unfinished or failed parents, or outside ones."""
    def one(p: dict) -> str:
        if p["run_id"] is None:
            return f"{p['slug']} (never run)"
        hint = f": etl retry {p['run_id']}" if p["status"] in ("failed", "cancelled", "skipped") else ""
        return f"{p['slug']} run {p['run_id']} ({p['status']}{hint})"
    if parents:
        return ", ".join(one(p) for p in parents)
    if run["wait_until"]:
        late = [p for p in outside if p["status"] not in ("success", "partial_success")]
        return (f"its parents' latest runs outside this pipeline run to succeed, until {fmt(run['wait_until'])}"
                + (": " + ", ".join(one(p) for p in late) if late else ""))
    return "a runner (or its pipeline run's approval)"


def _cancel_not_taken(run: dict) -> str:
    """A cancel that was asked for and not (yet) carried out."""
    at = fmt(run["cancel_requested_at"])
    if run["status"] == "running":
        return f"requested {at}: the runner stops the job at its next heartbeat (a Python job when it checks ctx.cancelled)"
    if run["status"] not in FINAL_STATUSES:
        return f"requested {at}, while the run was between attempts"
    return f"requested {at}, but the job ended {run['status']} before it stopped (it did not check ctx.cancelled in time)"


# --------------------------------------------------------------------------------------------
# etl cancel / etl retry


def _pipeline_status(conn, pipeline_run_id: int) -> str:
    row = conn.execute("select status from etl.pipeline_runs where pipeline_run_id = %s", (pipeline_run_id,)).fetchone()
    if row is None:
        raise OpsError(f"pipeline run {pipeline_run_id} not found", EXIT_NOT_FOUND)
    return row["status"]


@click.command("cancel")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--pipeline", is_flag=True, help="RUN is a pipeline run: cancel every unfinished run of it.")
@reason_option
@handle_errors
def cancel_cmd(run_id: int, pipeline: bool, reason: str) -> None:
    """Cancel a run (etl.cancel), or a whole pipeline run with --pipeline (etl.cancel_pipeline):
    pending and queued runs at once, running ones at their runner's next heartbeat (a Python job
    stops when it checks ctx.cancelled; one that never does ends as it would have)."""
    with connect() as conn:
        if pipeline:
            before = _pipeline_status(conn, run_id)
            if before in FINAL_STATUSES:
                raise OpsError(f"pipeline run {run_id} is already {before}: nothing to cancel", EXIT_FAILED)
            n = conn.execute("select etl.cancel_pipeline(%s, %s) as n", (run_id, reason)).fetchone()["n"]
            click.echo(f"pipeline run {run_id}: {n} run{'s' if n != 1 else ''} cancelled, skipped (descendants of a "
                       f"cancelled run) or asked to stop (running)")
            return
        before = _run_row(conn, run_id)["status"]
        if before in FINAL_STATUSES:
            raise OpsError(f"run {run_id} is already {before}: nothing to cancel", EXIT_FAILED)
        result = conn.execute("select etl.cancel(%s, %s) as r", (run_id, reason)).fetchone()["r"]
    if result == "cancelled":
        click.echo(f"run {run_id} cancelled (its pending descendants are skipped)")
    elif result == "cancel_requested":
        click.echo(f"run {run_id} is running: cancellation requested, the runner stops it at its next heartbeat")
    else:
        raise OpsError(f"run {run_id} is already {result}: nothing to cancel", EXIT_FAILED)


@click.command("approve")
@click.argument("pipeline_run_id", metavar="PIPELINE_RUN", type=int)
@reason_option
@click.option("--approver", help="Who approves (default: the database user).")
@handle_errors
def approve_cmd(pipeline_run_id: int, reason: str, approver: str | None) -> None:
    """Approve a full refresh that awaits approval (etl.approve) and release its runs."""
    with connect() as conn:
        _pipeline_status(conn, pipeline_run_id)
        released = conn.execute("select etl.approve(%s, %s, %s) as n",
                                (pipeline_run_id, reason, approver)).fetchone()["n"]
    click.echo(f"pipeline run {pipeline_run_id} approved; {released} run(s) released")


@click.command("retry")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--pipeline", is_flag=True,
              help="RUN is a pipeline run: re-open its failed, cancelled and skipped runs (etl.retry_pipeline).")
@reason_option
@handle_errors
def retry_cmd(run_id: int, pipeline: bool, reason: str) -> None:
    """Retry a failed, cancelled or skipped run (etl.retry), re-opening its skipped descendants; or,
    with --pipeline, a pipeline run from where it failed (its successes are kept)."""
    with connect() as conn:
        if pipeline:
            _pipeline_status(conn, run_id)
            n = conn.execute("select etl.retry_pipeline(%s, %s) as n", (run_id, reason)).fetchone()["n"]
            status = _pipeline_status(conn, run_id)
            if n == 0:
                raise OpsError(f"pipeline run {run_id} is {status}: no failed, cancelled or skipped run to re-open",
                               EXIT_FAILED)
            click.echo(f"pipeline run {run_id} re-opened, now {status} ({n} run{'s' if n != 1 else ''} re-opened)")
            return
        _run_row(conn, run_id)
        n = conn.execute("select etl.retry(%s, %s) as n", (run_id, reason)).fetchone()["n"]
        status = conn.execute("select status from etl.runs where run_id = %s", (run_id,)).fetchone()["status"]
    click.echo(f"run {run_id} re-opened, now {status} ({n} run{'s' if n != 1 else ''} re-opened in all)")


# --------------------------------------------------------------------------------------------
# etl settings


@click.group("settings")
def settings_group() -> None:
    """Engine settings: get and set (audited)."""


@settings_group.command("get")
@click.argument("name", required=False)
@json_option
@handle_errors
def settings_get(name: str | None, as_json: bool) -> None:
    """Show one setting, or all of them."""
    with connect() as conn:
        rows = conn.execute("""
            select name, value, min_value, max_value, description, updated_at, updated_by
              from etl.settings where %(name)s::text is null or name = %(name)s::text order by name""",
                            {"name": name}).fetchall()
    if name is not None and not rows:
        raise OpsError(f"unknown setting {name!r}", EXIT_NOT_FOUND)
    if as_json:
        echo_json(rows[0] if name is not None else rows)
        return
    echo_table(rows, [("name", "NAME"), ("value", "VALUE"), ("min_value", "MIN"), ("max_value", "MAX"),
                      ("updated_at", "UPDATED (UTC)"), ("updated_by", "BY"), ("description", "DESCRIPTION")],
               {"value": lambda v: json.dumps(v)})


@settings_group.command("set")
@click.argument("name")
@click.argument("value")
@reason_option
@json_option
@handle_errors
def settings_set(name: str, value: str, reason: str, as_json: bool) -> None:
    """Change a setting (etl.set_setting). VALUE is JSON when it parses (8, true, "x"), else a string."""
    try:
        parsed = parse_value(value)
    except NonFiniteNumber as exc:
        raise OpsError(f"setting {name}: {non_finite_message(exc, value)}", EXIT_BAD_INPUT) from None
    with connect() as conn:
        out = conn.execute("select etl.set_setting(%s, %s, %s) as r",
                           (name, Jsonb(parsed), reason)).fetchone()["r"]
    if as_json:
        echo_json(out)
    else:
        click.echo(f"{out['name']}: {json.dumps(out['old'])} -> {json.dumps(out['new'])}")


# --------------------------------------------------------------------------------------------
# etl dag


def dag_levels(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Topological levels: 0 for jobs without parents, else 1 + the deepest parent's level."""
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for p, c in edges:
        parents[c].append(p)
        children[p].append(c)
    indeg = {n: len(parents[n]) for n in nodes}
    level = {n: 0 for n in nodes}
    ready = sorted(n for n in nodes if indeg[n] == 0)
    done = 0
    while ready:
        n = ready.pop(0)
        done += 1
        for c in children[n]:
            level[c] = max(level[c], level[n] + 1)
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if done != len(nodes):
        raise OpsError("the job dependencies contain a cycle", EXIT_FAILED)
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for n in sorted(nodes):
        out[level[n]].append(n)
    return out


def _dot_id(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@click.command("dag")
@click.option("--format", "fmt_", type=click.Choice(["text", "dot", "mermaid", "json"]), default="text",
              show_default=True, help="text: topological levels; dot (Graphviz) or mermaid graphs; json.")
@handle_errors
def dag_cmd(fmt_: str) -> None:
    """Print the job DAG computed from etl.job_dependencies."""
    with connect() as conn:
        jobs_ = conn.execute("select slug, layer, enabled from etl.jobs order by slug").fetchall()
        edges = conn.execute("""
            select p.slug as parent, c.slug as child, d.dependency_type
              from etl.job_dependencies d
              join etl.jobs p on p.job_id = d.parent_job_id join etl.jobs c on c.job_id = d.child_job_id
             order by p.slug, c.slug""").fetchall()
    info = {j["slug"]: j for j in jobs_}
    levels = dag_levels(list(info), [(e["parent"], e["child"]) for e in edges])

    def label(slug: str) -> str:
        j = info[slug]
        extra = [x for x in (j["layer"], None if j["enabled"] else "disabled") if x]
        return f"{slug} ({', '.join(extra)})" if extra else slug

    if fmt_ == "json":
        echo_json({"levels": levels, "nodes": jobs_, "edges": edges})
    elif fmt_ == "text":
        for i, lvl in enumerate(levels):
            click.echo(f"level {i}: {', '.join(label(s) for s in lvl)}")
        if not levels:
            click.echo("(no jobs)")
    elif fmt_ == "dot":
        click.echo("digraph etl {")
        click.echo("  rankdir=LR;")
        click.echo("  node [shape=box];")
        for slug in info:
            style = "" if info[slug]["enabled"] else ", style=dashed"
            click.echo(f"  {_dot_id(slug)} [label={_dot_id(label(slug))}{style}];")
        for e in edges:
            click.echo(f"  {_dot_id(e['parent'])} -> {_dot_id(e['child'])};")
        click.echo("}")
    else:
        click.echo("graph TD")
        for slug in info:
            click.echo(f'  {slug}["{label(slug)}"]')
        for e in edges:
            click.echo(f"  {e['parent']} --> {e['child']}")


# --------------------------------------------------------------------------------------------


def register(main: click.Group) -> None:
    """Adds the operator commands to the `etl` group."""
    for cmd in (jobs, run_cmd, runs, cancel_cmd, retry_cmd, approve_cmd, settings_group, dag_cmd):
        if cmd.name not in main.commands:
            main.add_command(cmd)
