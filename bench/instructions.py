"""Instruction counts of the engine's hot paths: figures this host's timing noise does not move.

    .venv/bin/python bench/instructions.py [--steps 100] [--keep | --reuse]

Wall-clock figures on this shared 2-vCPU machine move by a third within an hour; instruction counts
do not (two measurements of a step agreed to 0.02%). valgrind's callgrind counts the instructions of
a single-user backend (`postgres --single`: a new process with cold caches, as a new connection's
backend is) running, each time on a fresh copy of one prepared database:

1. `select 1`: the backend's own start-up, subtracted from the others;
2. one trigger of bench/pipeline.py's 72-job DAG: its cost on a fresh connection;
3. three of them: (3 - 2) / 2 is a trigger on a warm session;
4. `--steps` N and 3N steps of a chain (bench/step.py's statement, etl.finish joined with
   etl.claim(worker, 1), each step its own transaction): the difference / 2N is one step.

The embedded cluster is stopped while callgrind runs (single-user mode needs the data directory to
itself) and started again after. Needs valgrind (Debian package valgrind).
To compare two versions of the engine's functions: run with --keep, apply the other version's
plpgsql files to etl_bench_instr with psql, and run again with --reuse.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402

from pipeline import dag_edges  # noqa: E402
from python_runner import cluster, devtools, settings  # noqa: E402

DB = "etl_bench_instr"
RUN_DB = "etl_bench_instr_run"
TRIGGER = ("select etl.trigger_pipeline(jobs => (select array_agg(slug) from etl.jobs where layer is not null), "
           "reason => 'bench/instructions.py');")
# Each step reports the run the session holds and claims the next; the session keeps them in settings.
STEP = ("select set_config('bench.run', coalesce(c.run_id, 0)::text, false), "
        "set_config('bench.tok', coalesce(c.token, 0)::text, false) "
        "from etl.finish(current_setting('bench.run')::bigint, current_setting('bench.tok')::bigint, "
        "'{\"status\": \"success\"}') f(status) left join lateral etl.claim('bench-instr', 1) c on true;")


def setup(chain: int) -> None:
    devtools.build_template(DB)
    slugs, edges = dag_edges()
    with psycopg.connect(settings.dsn(DB), autocommit=True) as c:
        c.execute("insert into etl.jobs (slug, name, kind, target, layer) "
                  "select s, s, 'python', 'bench_jobs:sleep', split_part(s, '_', 1) from unnest(%s::text[]) s", (slugs,))
        c.execute("insert into etl.job_dependencies (parent_job_id, child_job_id) "
                  "select p.job_id, x.job_id from unnest(%s::text[], %s::text[]) e(p, c) "
                  "join etl.jobs p on p.slug = e.p join etl.jobs x on x.slug = e.c",
                  ([p for p, _ in edges], [ch for _, ch in edges]))
        c.execute("insert into etl.jobs (slug, name, kind, target) "
                  "select format('step_%%s', lpad(g::text, 4, '0')), format('step %%s', g), 'python', 'bench_jobs:noop' "
                  "from generate_series(1, %s) g", (chain,))
        c.execute("insert into etl.job_dependencies (parent_job_id, child_job_id) "
                  "select p.job_id, x.job_id from generate_series(1, %s - 1) g "
                  "join etl.jobs p on p.slug = format('step_%%s', lpad(g::text, 4, '0')) "
                  "join etl.jobs x on x.slug = format('step_%%s', lpad((g + 1)::text, 4, '0'))", (chain,))
        c.execute("select etl.set_setting('parallel_jobs', '64', 'bench/instructions.py')")
        # Runs in the tables before the statistics are taken: plans made for empty tables scan them,
        # and the figures would then grow with every run a measurement adds (no autovacuum here).
        for _ in range(5):
            c.execute(TRIGGER)
        c.execute("vacuum analyze")


def instructions(sql: str, workdir: Path) -> int:
    """Instructions of one single-user backend running `sql` (one statement a line) on a fresh copy
    of the prepared database. The cluster is up on entry and on return."""
    devtools.recreate_database(RUN_DB, template=DB)
    emb = settings.embedded()
    cluster.stop(emb, echo=lambda *_: None)
    try:
        res = cluster._as_server(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/callgrind.out.%p",
             str(cluster.bindir() / "postgres"), "--single", "-D", str(emb.data_dir),
             "-c", "shared_buffers=256MB", "-c", "shared_preload_libraries=", RUN_DB],
            input=sql)
    finally:
        cluster.start(emb, echo=lambda *_: None)
    errors = [line for line in (res.stdout + res.stderr).splitlines() if re.search(r"\b(ERROR|FATAL):", line)]
    m = re.search(r"Collected : (\d+)", res.stderr)
    if res.returncode != 0 or errors or not m:
        raise SystemExit("the single-user backend failed:\n" + "\n".join(errors or res.stderr.splitlines()[-20:]))
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="N: the steps are measured as (3N - N) / 2N")
    ap.add_argument("--keep", action="store_true", help=f"keep {DB}")
    ap.add_argument("--reuse", action="store_true", help=f"use the existing {DB} (after applying other functions)")
    args = ap.parse_args()
    if args.steps < 10:
        raise SystemExit("--steps must be at least 10")
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    if settings.external_dsn():
        raise SystemExit("this benchmark stops and starts the embedded cluster; unset ETL_DSN")
    chain = 3 * args.steps + 2
    if not args.reuse:
        setup(chain)
    workdir = Path(tempfile.mkdtemp(prefix="etl-instr-"))
    user = cluster._server_user()
    if user:
        shutil.chown(workdir, user)
    try:
        base = instructions("select 1;\n", workdir)
        fresh = instructions(TRIGGER + "\n", workdir) - base
        three = instructions((TRIGGER + "\n") * 3, workdir) - base

        def steps(n: int) -> int:
            return instructions(
                "select etl.trigger_pipeline(jobs => (select array_agg(slug) from etl.jobs where slug like 'step\\_%'), "
                "reason => 'bench/instructions.py');\n"
                "select set_config('bench.run', run_id::text, false), set_config('bench.tok', token::text, false) "
                "from etl.claim('bench-instr', 1);\n" + (STEP + "\n") * n, workdir)
        step = (steps(3 * args.steps) - steps(args.steps)) / (2 * args.steps)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        devtools.drop_database(RUN_DB)
        if not args.keep and not args.reuse:
            devtools.drop_database(DB)
    print(f"\ninstruction counts (callgrind, single-user backend; {args.steps} and {3 * args.steps} steps)")
    rows = [("backend start-up and `select 1`", base),
            ("trigger of the 72-job DAG on a fresh connection", fresh),
            ("the same trigger on a warm session", (three - fresh) / 2),
            ("one chain step: etl.finish + etl.claim(worker, 1), its own transaction", step)]
    for label, value in rows:
        print(f"{label:<75}{value / 1e6:>10.2f} M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
