"""The `etl` command line: the operator's interface to the engine."""
from __future__ import annotations

import json
import logging
import os
import sys

import click

from . import __version__, cluster, deploy, settings
from .db import connect
from .ops_cli import handle_errors


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(__version__, prog_name="etl")
def main() -> None:
    """A Postgres-native ETL orchestrator: the database decides, the runner executes.

    The target server is ETL_DSN (or PG* variables) when set, else the project's embedded
    PostgreSQL cluster (`etl db start`).
    """


@main.command("runner")
@click.option("--slots", type=click.IntRange(1, 1000), default=4, show_default=True, envvar="ETL_RUNNER_SLOTS",
              show_envvar=True, help="How many runs execute at once in this process.")
@click.option("--worker-id", default=None, help="Unique runner identity (default: host plus a random id).")
@click.option("--grace", type=click.FloatRange(0, 86400), default=30.0, show_default=True,
              help="Seconds in-flight runs get to finish after SIGTERM before they are handed back.")
# (Not below 0.1 s: the claim loop would spin, and NOTIFY wakes it anyway.)
@click.option("--safety-poll", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True,
              help="Longest sleep between claims when no NOTIFY arrives.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, envvar="ETL_METRICS_PORT",
              show_envvar=True, help="Serve Prometheus metrics on PORT (0: any free port); off when unset.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, envvar="ETL_METRICS_HOST", show_envvar=True,
              help="Address the metrics endpoint binds to (0.0.0.0: every interface, for a remote Prometheus).")
@click.option("--job-log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="INFO", show_default=True, envvar="ETL_JOB_LOG_LEVEL", show_envvar=True,
              help="The lowest level of the jobs' own log lines (ctx.log) kept, on stderr and in etl.run_logs.")
def runner_cmd(slots: int, worker_id: str | None, grace: float, safety_poll: float,
               metrics_port: int | None, metrics_host: str, job_log_level: str) -> None:
    """Run the runner daemon: claim, execute, heartbeat, report. SIGTERM drains."""
    from .runner import Runner
    runner = Runner(settings.dsn(), slots=slots, worker_id=worker_id, grace=grace,
                    safety_poll=safety_poll, metrics_port=metrics_port, metrics_host=metrics_host)
    runner.job_logger.setLevel(job_log_level.upper())
    code = runner.run()
    if runner.abandoned_jobs:
        # Their runs were handed back when the grace period ended; the threads that still run them
        # would hold the process at exit (Python joins executor threads): leave without them.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@main.group()
def db() -> None:
    """The database: the embedded cluster, migrations, a psql shell."""


def _embedded_only(action: str) -> settings.Embedded:
    if settings.external_dsn() is not None:
        _fail(f"`etl db {action}` manages the embedded cluster, but ETL_DSN/PG* variables point at "
              "an external server; unset them to use the embedded one")
    return settings.embedded()


@db.command("start")
@click.option("--deploy/--no-deploy", "do_deploy", default=True, show_default=True,
              help="Deploy the schema with sqitch after starting.")
def db_start(do_deploy: bool) -> None:
    """Create (first time) and start the embedded cluster; idempotent."""
    c = _embedded_only("start")
    try:
        cluster.start(c, echo=click.echo)
        if do_deploy:
            deploy.deploy(quiet=False)
    except (cluster.ClusterError, deploy.DeployError) as exc:
        _fail(str(exc))


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster (fast shutdown)."""
    try:
        cluster.stop(_embedded_only("stop"), echo=click.echo)
    except cluster.ClusterError as exc:
        _fail(str(exc))


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_status(as_json: bool) -> None:
    """Is the embedded cluster initialised and running? Exit 0 when running, 3 when not."""
    if settings.external_dsn() is not None:
        info = {"external": True, "dsn": settings.dsn()}
        try:
            with connect() as conn:
                info["running"] = True
                info["server_version"] = conn.execute("show server_version").fetchone()["server_version"]
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            info.update(running=False, error=str(exc).strip())
    else:
        info = cluster.status(settings.embedded())
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            click.echo(f"{k:>14}: {v}")
    sys.exit(0 if info.get("running") else 3)


@db.command("url")
def db_url() -> None:
    """Print the connection string (libpq URL) of the target server."""
    click.echo(settings.external_dsn() or settings.embedded().url())


@db.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def db_psql(args: tuple[str, ...]) -> None:
    """Open psql on the target database (extra arguments go to psql)."""
    dsn = settings.dsn()
    os.execvp("psql", ["psql", dsn, *args])


@db.command("deploy")
def db_deploy() -> None:
    """Deploy all sqitch changes (with verify); a no-op when up to date."""
    try:
        deploy.deploy()
    except deploy.DeployError as exc:
        _fail(str(exc))


@db.command("revert")
@click.confirmation_option(prompt="Revert every change (drops the etl schema and its data)?")
def db_revert() -> None:
    """Revert every sqitch change: drops the etl schema and all its data."""
    try:
        deploy.revert()
    except deploy.DeployError as exc:
        _fail(str(exc))


@db.command("summary")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def db_summary(as_json: bool) -> None:
    """Summarise the deployed schema: tables (estimated rows, indexes, constraints), functions,
    settings, sqitch changes."""
    with connect() as conn:
        tables = conn.execute("""
            select c.relname as table, c.reltuples::bigint as est_rows,
                   (select count(*) from pg_index i where i.indrelid = c.oid) as indexes,
                   (select count(*) from pg_constraint k where k.conrelid = c.oid) as constraints,
                   obj_description(c.oid, 'pg_class') is not null as commented
              from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'etl' and c.relkind in ('r', 'p')
             order by c.relname""").fetchall()
        funcs = conn.execute("""
            select count(*) as n from pg_proc p join pg_namespace n on n.oid = p.pronamespace
             where n.nspname = 'etl'""").fetchone()["n"]
        sets = conn.execute("select name, value from etl.settings order by name").fetchall()
        changes = conn.execute("""select change from sqitch.changes where project = 'etl'
                                  order by committed_at""").fetchall()
    if as_json:
        click.echo(json.dumps({"tables": tables, "functions": funcs,
                               "settings": {s["name"]: s["value"] for s in sets},
                               "changes": [c["change"] for c in changes]}, indent=2, default=str))
        return
    click.echo(f"schema etl: {len(tables)} tables, {funcs} functions, "
               f"{sum(t['indexes'] for t in tables)} indexes, "
               f"{sum(t['constraints'] for t in tables)} constraints")
    click.echo(f"sqitch changes deployed: {', '.join(c['change'] for c in changes)}")
    click.echo(f"{'table':<24} {'rows (est.)':>11} {'indexes':>7} {'constraints':>11}")
    for t in tables:
        # reltuples is -1 for a table never vacuumed or analyzed: unknown, not negative.
        rows = t["est_rows"] if t["est_rows"] >= 0 else "-"
        click.echo(f"{t['table']:<24} {rows:>11} {t['indexes']:>7} {t['constraints']:>11}")
    click.echo("settings: " + ", ".join(f"{s['name']}={json.dumps(s['value'])}" for s in sets))


from .ops_cli import register  # noqa: E402
register(main)
from .logs_cli import register as register_logs  # noqa: E402
register_logs(main)
from .apply_cli import register as register_apply  # noqa: E402
register_apply(main)
from .schedules_cli import register as register_schedules  # noqa: E402
register_schedules(main)
from .import_cli import register as register_import  # noqa: E402
register_import(main)


if __name__ == "__main__":
    main()
