"""The cost of one step of a chain in the engine alone: a finish and the claim of the child it released.

    .venv/bin/python bench/step.py [--chains 10] [--length 100] [--rounds 3]

Builds etl_bench_step (every change deployed), `--chains` chains of `--length` no-op jobs, and per
round triggers them all and drives pgbench -M prepared with ONE client through the statement a
runner sends after each run (etl.finish joined with etl.claim(worker, 1), one commit per step) until
every run is done. Prints the mean latency per step of each round and their median: one backend's
CPU per step of a DAG, without Python or contention, steady enough (a few percent between rounds)
to compare two versions of the engine's functions (apply the other version's plpgsql files to
etl_bench_step with --keep and psql, and run again with --reuse).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from python_runner import devtools, settings  # noqa: E402

DB = "etl_bench_step"
# The first script run claims a root; every later one reports the run it holds and claims the next.
SCRIPT = """\\if :run = 0
select run_id as run, token as tok from etl.claim('bench-step', 1) \\gset
\\else
select c.run_id as run, c.token as tok
  from etl.finish(:run, :tok, '{"status": "success"}') f(status)
  left join lateral etl.claim('bench-step', 1) c on true \\gset
\\endif
"""


def setup(chains: int, length: int) -> None:
    devtools.build_template(DB)
    with psycopg.connect(settings.dsn(DB), autocommit=True) as c:
        c.execute("insert into etl.jobs (slug, name, kind, target) "
                  "select format('s%%s_%%s', k, i), format('chain %%s step %%s', k, i), 'python', 'bench_jobs:noop' "
                  "from generate_series(1, %s) k, generate_series(1, %s) i", (chains, length))
        c.execute("insert into etl.job_dependencies (parent_job_id, child_job_id) "
                  "select p.job_id, x.job_id from generate_series(1, %s) k cross join generate_series(1, %s - 1) i "
                  "join etl.jobs p on p.slug = format('s%%s_%%s', k, i) "
                  "join etl.jobs x on x.slug = format('s%%s_%%s', k, i + 1)", (chains, length))
        c.execute("select etl.set_setting('parallel_jobs', '64', 'bench/step.py')")


def round_ms(script: str, steps: int) -> float:
    with psycopg.connect(settings.dsn(DB), autocommit=True) as c:
        c.execute("select etl.trigger_pipeline(jobs => (select array_agg(slug) from etl.jobs), reason => 'bench/step.py')")
        c.execute("vacuum analyze etl.runs, etl.run_slots, etl.job_locks, etl.run_attempts")
    # The last step reports the last run and finds nothing to claim: `steps` script runs in all.
    out = subprocess.run(devtools.pgbench_command() + ["-n", "-M", "prepared", "-D", "run=0", "-D", "tok=0",
                                                       "-f", script, "-c", "1", "-t", str(steps), DB],
                         capture_output=True, text=True)
    m = re.search(r"latency average = ([0-9.]+) ms", out.stdout)
    if out.returncode != 0 or not m:
        raise SystemExit(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    with psycopg.connect(settings.dsn(DB), autocommit=True) as c:
        left = c.execute("select count(*) from etl.runs where status <> 'success'").fetchone()[0]
    if left:
        raise SystemExit(f"{left} runs are not success after the round: the chains did not drain")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", type=int, default=10)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help=f"use the existing {DB} (after applying other functions)")
    ap.add_argument("--keep", action="store_true", help=f"keep {DB}")
    args = ap.parse_args()
    if args.chains < 1 or args.length < 2 or args.rounds < 1:
        raise SystemExit("--chains >= 1, --length >= 2 and --rounds >= 1")
    if not args.reuse:
        setup(args.chains, args.length)
    fd, script = tempfile.mkstemp(suffix=".sql")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(SCRIPT)
        steps = args.chains * args.length + 1
        rounds = [round_ms(script, steps) for _ in range(args.rounds)]
    finally:
        os.unlink(script)
        if not args.keep:
            devtools.drop_database(DB)
    print(f"\nstep benchmark: {args.chains} chains of {args.length} no-op jobs, one pgbench client, "
          f"{steps} steps per round")
    print(f"finish + claim of the released child, ms per step, each round: {', '.join(f'{r:.3f}' for r in rounds)}")
    print(f"median: {statistics.median(rounds):.3f} ms per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
