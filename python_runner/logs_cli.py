"""`etl logs RUN`: a run's structured logs, filtered, optionally followed (LISTEN etl_logs) until the run ends."""
from __future__ import annotations

import json
import time

import click

from .db import connect
from .ops_cli import EXIT_NOT_FOUND, FINAL_STATUSES, OpsError, _jsonable, handle_errors

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# attempt: the number of the attempt that wrote the line (from its attempt_id, the attempt's token),
# else the runner's own `attempt` field; null for lines about the run as a whole.
LOGS_AFTER = """
select l.log_id, l.ts, l.level, l.message, l.attempt_id,
       coalesce(a.attempt_no, case when l.fields ->> 'attempt' ~ '^[0-9]{1,9}$'
                                   then (l.fields ->> 'attempt')::int end) as attempt,
       l.item_id, l.logger, l.fields, l.redacted
  from etl.run_logs l
  left join etl.run_attempts a on a.attempt_id = l.attempt_id
 where l.run_id = %(run_id)s and l.log_id > %(after)s
   and l.level = any(%(levels)s)
   and (%(text)s::text is null or l.message ilike %(text)s or l.fields::text ilike %(text)s)
 order by l.log_id
 limit %(limit)s
"""


def _like(text: str | None) -> str | None:
    if text is None:
        return None
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@click.command("logs")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--level", type=click.Choice(LEVELS, case_sensitive=False), default="DEBUG", show_default=True,
              help="Lowest level shown.")
@click.option("--grep", "text", default=None, help="Only lines whose message or fields contain TEXT.")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new lines until the run ends.")
@click.option("--limit", type=click.IntRange(1, 100000), default=1000, show_default=True,
              help="Most lines per read.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@handle_errors
def logs_cmd(run_id: int, level: str, text: str | None, follow: bool, limit: int, as_json: bool) -> None:
    """Show the logs of RUN (redacted at the source), oldest first."""
    levels = list(LEVELS[LEVELS.index(level.upper()):])
    with connect() as conn, connect() as listener:
        if conn.execute("select 1 from etl.runs where run_id = %s", (run_id,)).fetchone() is None:
            raise OpsError(f"run {run_id} not found", EXIT_NOT_FOUND)
        if follow:
            # Runners NOTIFY etl_logs (payload: the run id) after each batch they write.
            listener.execute("listen etl_logs")
        after = 0
        last_read = False  # the run has ended: one more read for the runner's last batch, then stop
        while True:
            rows = conn.execute(LOGS_AFTER, {"run_id": run_id, "after": after, "levels": levels,
                                             "text": _like(text), "limit": limit}).fetchall()
            for r in rows:
                after = r["log_id"]
                if as_json:
                    click.echo(json.dumps(r, default=_jsonable))
                else:
                    # The attempt tells the lines of one retry from another's; the run and job are given.
                    pairs = [] if r["attempt"] is None else [f"attempt={r['attempt']}"]
                    pairs += [f"{k}={v}" for k, v in (r["fields"] or {}).items()
                              if k not in ("run_id", "job", "attempt", "worker")]
                    extra = " ".join(pairs)
                    click.echo(f"{r['ts']:%H:%M:%S.%f}"[:-3] + f" {r['level']:<8} {r['message']}"
                               + (f"  {extra}" if extra else ""))
            if not follow:
                return
            status = conn.execute("select status from etl.runs where run_id = %s", (run_id,)).fetchone()["status"]
            if status in FINAL_STATUSES and len(rows) < limit:
                if last_read:
                    click.echo(f"-- run {run_id} ended: {status}", err=True)
                    return
                # One last read: a runner flushes its log batch right after the report. (Filtered
                # like the others: lines that --level or --grep leave out must not keep it going.)
                last_read = True
                time.sleep(1.0)
                continue
            for note in listener.notifies(timeout=1.0):
                if note.payload == str(run_id):
                    break


def register(main: click.Group) -> None:
    if "logs" not in main.commands:
        main.add_command(logs_cmd)
