"""`etl schedules`: every schedule with its cron in words, time zone, policies and next fire times."""
from __future__ import annotations

import click

from .db import connect
from .ops_cli import echo_json, fmt, fmt_fire_time, handle_errors

SCHEDULES = """
select j.slug as job, s.schedule_id, s.cron_expr, etl.cron_describe(s.cron_expr) as summary, s.timezone,
       s.is_active, s.misfire_policy, s.overlap_policy, s.with_downstream, s.next_run_at, s.last_fire_at,
       coalesce(nf.utc, '{}') as next_fires, coalesce(nf.local, '{}') as next_fires_local
  from etl.schedules s join etl.jobs j using (job_id)
  cross join lateral (
        select array_agg(t order by t) as utc, array_agg(t at time zone s.timezone order by t) as local
          from etl.cron_next_n(s.cron_expr, s.timezone, now(), %(n)s) t) nf
 where (%(all)s or s.is_active)
 order by s.next_run_at nulls last, j.slug
"""


@click.command("schedules")
@click.option("--all", "show_all", is_flag=True, help="Include inactive schedules.")
@click.option("--next", "n", type=click.IntRange(1, 50), default=3, show_default=True, help="Next fire times shown.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def schedules_cmd(show_all: bool, n: int, as_json: bool) -> None:
    """List the cron schedules: what fires when, in which time zone, with which policies.

    Fire times are printed in UTC, followed by the wall-clock time in the schedule's own zone."""
    with connect() as conn:
        rows = conn.execute(SCHEDULES, {"n": n, "all": show_all}).fetchall()
    if as_json:
        # next_fires are instants; the zone's wall-clock times (no offset) are for the text only.
        echo_json([{k: v for k, v in r.items() if k != "next_fires_local"} for r in rows])
        return
    if not rows:
        click.echo("no schedules")
        return
    for r in rows:
        state = "" if r["is_active"] else "  (inactive)"
        click.echo(f"{r['job']}  [{r['cron_expr']}] {r['summary']}, {r['timezone']}{state}")
        click.echo(f"    misfire {r['misfire_policy']}, overlap {r['overlap_policy']}"
                   f"{', with downstream' if r['with_downstream'] else ''}; last fired {fmt(r['last_fire_at'])}"
                   f"{' UTC' if r['last_fire_at'] else ''}")
        click.echo("    next: " + ", ".join(fmt_fire_time(t, local, r["timezone"])
                                        for t, local in zip(r["next_fires"], r["next_fires_local"])))


def register(main: click.Group) -> None:
    if "schedules" not in main.commands:
        main.add_command(schedules_cmd)
