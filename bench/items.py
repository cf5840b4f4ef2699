"""Items and per_group benchmark: per-item commit throughput, and the cost of a step inside a group.

    .venv/bin/python bench/items.py [--items 10000] [--clients 8] [--repeat 3] [--keep]

Builds its own database (etl_bench_items) with every change deployed, on the running project
cluster, and measures:

1. A job with --items no-op items (items_source {"sql": "select g as k from generate_series(1, N) g"},
   item_concurrency --item-concurrency), each item committed on its own through etl.finish_item:
   (a) engine only: one claimed run, one etl.start_items, then --clients threads (one autocommit
       connection each) share its items and call etl.finish_item once per item, one transaction per
       call. Timed from the first finish_item to the last commit; then etl.finish, and the run must be
       success with items_succeeded = N (else the script stops with exit status 1).
   (b) end to end: a real `etl runner --slots 1` process runs the python no-op job `items:noop`
       (this file, with bench/ on its PYTHONPATH): wall time from etl.run_job to the run's success.
   pgbench -N with the same client count on the same cluster, and items/s / tps for (a) and (b)
   (target: at least 0.4; one item = one commit, one pgbench -N transaction = one commit).
2. --members trivial SQL procedures (bench_grp.pNN inserts one row into bench_grp.t) as sql jobs,
   members 1..N of one job group, triggered with transaction_scope => 'per_group' and executed by
   the runner as one unit: leader attempt started_at -> ended_at (claim start -> finish start) and
   pipeline created -> ended, each / N = per-member overhead (target: under 1 ms); against the bare cost, the same N
   `call` statements in one transaction from a plain psycopg connection. Also the engine alone:
   etl.claim of the unit (which starts the members) and etl.finish of it (which ends them).

Each measurement runs --repeat times; the figures are medians. The runner is stopped and the
databases dropped at the end (--keep keeps etl_bench_items). Results also go to bench/out/items.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "etl_bench_items"
PGBENCH_DB = "etl_bench_items_pgbench"
TERMINAL = ("success", "partial_success", "failed", "skipped", "cancelled")
ITEM_OK = '{"status": "success", "records_read": 1}'


def noop(ctx):
    """The item job of (b): the runner imports it as items:noop (bench/ on its PYTHONPATH)."""
    return None


# Everything below runs only as the benchmark script, never when the runner imports `items`.

def _imports():
    global psycopg, dict_row, devtools, settings
    sys.path.insert(0, str(ROOT))
    import psycopg  # noqa: F401
    from psycopg.rows import dict_row  # noqa: F401
    from python_runner import devtools, settings  # noqa: F401


def connect(db: str = DB):
    return psycopg.connect(settings.dsn(db), autocommit=True, row_factory=dict_row)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def med(values):
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))]


def fail(msg: str) -> None:
    raise BenchError(msg)


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------- setup

def setup(args) -> None:
    log(f"building {DB} (deploys every change)")
    devtools.build_template(DB)
    source = json.dumps({"sql": f"select g as k from generate_series(1, {args.items}) g"})
    with connect() as c:
        c.execute("insert into etl.jobs (slug, name, kind, target, supports_params, items_source, item_concurrency) "
                  "values ('items_engine', 'items, engine only', 'python', 'items:noop', true, %s, %s), "
                  "       ('items_e2e', 'items, end to end', 'python', 'items:noop', true, %s, %s)",
                  (source, args.item_concurrency, source, args.item_concurrency))
        c.execute("create schema bench_grp")
        c.execute("create table bench_grp.t "
                  "(member integer not null, at timestamptz not null default clock_timestamp())")
        with c.transaction():
            for i in range(1, args.members + 1):
                c.execute(f"create procedure bench_grp.p{i:02d}() language sql "
                          f"as $$ insert into bench_grp.t (member) values ({i}) $$")
            c.execute("insert into etl.jobs (slug, name, kind, target) "
                      "select 'g' || lpad(g::text, 2, '0'), 'group member ' || g, 'sql', "
                      "       'bench_grp.p' || lpad(g::text, 2, '0') from generate_series(1, %s) g", (args.members,))
            gid = c.execute("insert into etl.job_groups (name, description) values ('bench_grp', 'bench/items.py') "
                            "returning group_id").fetchone()["group_id"]
            c.execute("insert into etl.job_group_members (group_id, job_id, sequence) "
                      "select %s, job_id, substr(slug, 2)::int from etl.jobs where slug ~ '^g[0-9]+$'", (gid,))


def group_slugs(n: int) -> list[str]:
    return [f"g{i:02d}" for i in range(1, n + 1)]


def vacuum() -> None:
    with connect() as c:
        c.execute("vacuum analyze etl.runs, etl.run_items, etl.run_attempts, etl.run_events, etl.pipeline_runs, "
                  "bench_grp.t")


def load() -> float:
    return os.getloadavg()[0]


def cpu_snapshot(pid: int | None = None) -> tuple[float, float, float] | None:
    """(wall clock, busy CPU seconds of the whole machine, CPU seconds of process pid) from /proc."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        vals = [int(x) for x in fields]
        busy = (sum(vals[:8]) - vals[3] - vals[4]) / tick  # all but idle and iowait
        proc = 0.0
        if pid is not None:
            st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            proc = (int(st[11]) + int(st[12])) / tick  # utime + stime
        return time.perf_counter(), busy, proc
    except (OSError, ValueError, IndexError):
        return None


def cpu_delta(before, after) -> dict:
    if before is None or after is None:
        return {}
    wall = after[0] - before[0]
    return {"machine_cores_busy": (after[1] - before[1]) / wall, "proc_cpu_s": after[2] - before[2]}


# ------------------------------------------------------------------------- part 1 (a): engine

def items_engine(args) -> dict:
    """One claimed run, one start_items, then args.clients threads finish its items one per transaction."""
    with connect() as c:
        run_id = c.execute("select etl.run_job('items_engine') as r").fetchone()["r"]
        t = time.perf_counter()
        rows = c.execute("select run_id, token from etl.claim('bench-items', 1)").fetchall()
        claim_s = time.perf_counter() - t
        if len(rows) != 1 or rows[0]["run_id"] != run_id:
            fail(f"(a) claim returned {rows}, expected run {run_id}")
        token = rows[0]["token"]
        t = time.perf_counter()
        items = [r["item_id"] for r in c.execute("select item_id from etl.start_items(%s, %s)",
                                                  (run_id, token)).fetchall()]
        start_items_s = time.perf_counter() - t
    if len(items) != args.items:
        fail(f"(a) start_items handed out {len(items)} items, expected {args.items}")

    shares = [items[i::args.clients] for i in range(args.clients)]
    barrier = threading.Barrier(args.clients + 1)
    lat: list[list[float]] = [[] for _ in range(args.clients)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with connect() as conn:
                conn.prepare_threshold = 0
                barrier.wait()
                mine = lat[i]
                for item_id in shares[i]:
                    t0 = time.perf_counter()
                    conn.execute("select etl.finish_item(%s, %s, %s, %s::jsonb)", (run_id, token, item_id, ITEM_OK))
                    mine.append(time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(args.clients)]
    for th in ts:
        th.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    cpu0 = cpu_snapshot(os.getpid())
    t0 = time.perf_counter()
    for th in ts:
        th.join()
    elapsed = time.perf_counter() - t0
    cpu = cpu_delta(cpu0, cpu_snapshot(os.getpid()))
    if errors:
        raise errors[0]
    with connect() as c:
        t = time.perf_counter()
        c.execute("select etl.finish(%s, %s, %s::jsonb)", (run_id, token, '{"status": "success"}'))
        finish_s = time.perf_counter() - t
        r = c.execute("select status, items_total, items_succeeded, items_failed, records_read "
                      "from etl.runs where run_id = %s", (run_id,)).fetchone()
    if r["status"] != "success" or r["items_succeeded"] != args.items:
        fail(f"(a) run {run_id} ended {r['status']} with items_succeeded = {r['items_succeeded']} "
             f"(total {r['items_total']}, failed {r['items_failed']}), expected success with {args.items}")
    all_lat = [x for part in lat for x in part]
    return {"run_id": run_id, "seconds": elapsed, "rate": args.items / elapsed, "claim_s": claim_s,
            "start_items_s": start_items_s, "finish_s": finish_s, "status": r["status"],
            "items_succeeded": r["items_succeeded"], "records_read": r["records_read"],
            "lat_p50": pct(all_lat, 50), "lat_p95": pct(all_lat, 95), "lat_p99": pct(all_lat, 99), **cpu}


# ----------------------------------------------------------------------------- part 1: pgbench

def pgbench(clients: int, seconds: int) -> float:
    try:
        return devtools.pgbench_tps(PGBENCH_DB, clients, seconds)
    except RuntimeError as exc:
        fail(str(exc))


# ------------------------------------------------------------------------------------ runner

class RunnerProcess:
    """One real `etl runner` (python -m python_runner.cli runner) on DB; its log in a temp file."""

    def __init__(self, slots: int):
        self.slots = slots
        self.logfile = tempfile.NamedTemporaryFile(prefix="bench-items-runner-", suffix=".log", delete=False)
        env = dict(os.environ, ETL_DSN=settings.dsn(DB),
                   PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-m", "python_runner.cli", "runner", "--slots", str(slots),
                                      "--worker-id", "bench-items-runner"], env=env, cwd=str(ROOT),
                                     stdout=self.logfile, stderr=subprocess.STDOUT)
        with connect() as c:
            deadline = time.monotonic() + 30
            while c.execute("select count(*) as n from etl.service_heartbeats "
                            "where instance_id = 'bench-items-runner' and status = 'running'").fetchone()["n"] < 1:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    fail(f"the runner did not start:\n{self.tail()}")
                time.sleep(0.05)

    def check(self) -> None:
        if self.proc.poll() is not None:
            fail(f"the runner exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, n: int = 20) -> str:
        self.logfile.flush()
        return "\n".join(Path(self.logfile.name).read_text(errors="replace").splitlines()[-n:])

    def stop(self, keep_log: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()
        if not keep_log:
            os.unlink(self.logfile.name)


def wait_for(conn, sql: str, params, runner: RunnerProcess, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = conn.execute(sql, params).fetchone()["status"]
        if status in TERMINAL:
            return status
        if time.monotonic() > deadline:
            fail(f"{what} still {status} after {timeout:.0f} s; runner log:\n{runner.tail()}")
        runner.check()
        time.sleep(0.01)


# ------------------------------------------------------------------------ part 1 (b): runner

def items_e2e(args, runner: RunnerProcess) -> dict:
    with connect() as c:
        cpu0 = cpu_snapshot(runner.proc.pid)
        t0 = time.perf_counter()
        run_id = c.execute("select etl.run_job('items_e2e') as r").fetchone()["r"]
        status = wait_for(c, "select status from etl.runs where run_id = %s", (run_id,), runner,
                          args.timeout, f"(b) run {run_id}")
        wall = time.perf_counter() - t0
        cpu = cpu_delta(cpu0, cpu_snapshot(runner.proc.pid))
        r = c.execute("""
            select r.status, r.items_total, r.items_succeeded, r.items_failed,
                   extract(epoch from r.ended_at - p.created_at) as makespan,
                   extract(epoch from a.claimed_at - p.created_at) as to_claim,
                   extract(epoch from i.first_start - a.claimed_at) as to_first_item,
                   extract(epoch from i.last_end - i.first_start) as item_phase,
                   extract(epoch from r.ended_at - i.last_end) as to_finish
              from etl.runs r join etl.pipeline_runs p using (pipeline_run_id)
              join etl.run_attempts a on a.run_id = r.run_id and a.attempt_no = r.attempt_count
              cross join lateral (select min(started_at) as first_start, max(ended_at) as last_end
                                    from etl.run_items where run_id = r.run_id) i
             where r.run_id = %s""", (run_id,)).fetchone()
    if status != "success" or r["items_succeeded"] != args.items:
        fail(f"(b) run {run_id} ended {status} with items_succeeded = {r['items_succeeded']} "
             f"(failed {r['items_failed']}); runner log:\n{runner.tail()}")
    out = {k: (float(v) if k not in ("status",) and v is not None else v) for k, v in r.items()}
    out.update(run_id=run_id, wall=wall, rate=args.items / wall, **cpu)
    return out


# --------------------------------------------------------------------------- part 2: per_group

def group_engine(args) -> dict:
    """The engine alone: claim of the unit (starts the leader and its members) and its finish."""
    slugs = group_slugs(args.members)
    with connect() as c:
        c.prepare_threshold = 0
        pid = c.execute("select etl.trigger_pipeline(jobs => %s, transaction_scope => 'per_group') as p",
                        (slugs,)).fetchone()["p"]
        t = time.perf_counter()
        rows = c.execute("select run_id, token, group_members from etl.claim('bench-grp', 1)").fetchall()
        claim_s = time.perf_counter() - t
        if len(rows) != 1 or len(rows[0]["group_members"] or []) != args.members - 1:
            fail(f"part 2 engine: claim returned {len(rows)} runs / "
                 f"{len((rows[0]['group_members'] if rows else None) or [])} members, expected 1 / {args.members - 1}")
        lead = rows[0]
        outcome = {"status": "success", "rows_affected": 1, "records_written": 1,
                   "metrics": {"group_members": args.members},
                   "members": [{"run_id": m["run_id"], "rows_affected": 1, "records_written": 1,
                                "metrics": {"duration_ms": 0.1}} for m in lead["group_members"]]}
        t = time.perf_counter()
        c.execute("select etl.finish(%s, %s, %s::jsonb)", (lead["run_id"], lead["token"], json.dumps(outcome)))
        finish_s = time.perf_counter() - t
        r = c.execute("select p.status, count(*) filter (where r.status = 'success') as ok "
                      "from etl.pipeline_runs p join etl.runs r using (pipeline_run_id) "
                      "where p.pipeline_run_id = %s group by p.status", (pid,)).fetchone()
    if r["status"] != "success" or r["ok"] != args.members:
        fail(f"part 2 engine: pipeline {pid} ended {r['status']} with {r['ok']}/{args.members} runs successful")
    return {"claim_s": claim_s, "finish_s": finish_s}


def group_runner(args, runner: RunnerProcess) -> dict:
    slugs = group_slugs(args.members)
    with connect() as c:
        c.execute("truncate bench_grp.t")
        t0 = time.perf_counter()
        pid = c.execute("select etl.trigger_pipeline(jobs => %s, transaction_scope => 'per_group') as p",
                        (slugs,)).fetchone()["p"]
        trigger_s = time.perf_counter() - t0
        status = wait_for(c, "select status from etl.pipeline_runs where pipeline_run_id = %s", (pid,), runner,
                          args.timeout, f"part 2 pipeline {pid}")
        wall = time.perf_counter() - t0
        r = c.execute("""
            select count(*) filter (where r.status = 'success') as ok,
                   extract(epoch from p.ended_at - p.created_at) as makespan,
                   extract(epoch from min(la.started_at) - p.created_at) as to_claim,
                   extract(epoch from min(la.ended_at) - min(la.started_at)) as unit,
                   extract(epoch from p.ended_at - min(la.ended_at)) as finish_tail,
                   (select sum((a.metrics ->> 'duration_ms')::numeric) / 1000
                      from etl.runs m join etl.run_attempts a on a.run_id = m.run_id
                     where m.pipeline_run_id = p.pipeline_run_id) as calls
              from etl.pipeline_runs p join etl.runs r using (pipeline_run_id)
              left join etl.run_attempts la on la.run_id = r.run_id and la.attempt_no = r.attempt_count
                    and r.group_id is not null and r.group_leader_run_id is null
             where p.pipeline_run_id = %s group by p.pipeline_run_id""", (pid,)).fetchone()
        t = c.execute("select count(*) as n, count(distinct xmin::text) as tx from bench_grp.t").fetchone()
    if status != "success" or r["ok"] != args.members or r["unit"] is None:
        fail(f"part 2: pipeline {pid} ended {status} with {r['ok']}/{args.members} runs successful; "
             f"runner log:\n{runner.tail()}")
    if t["n"] != args.members or t["tx"] != 1:
        fail(f"part 2: the members wrote {t['n']} rows in {t['tx']} transactions, expected {args.members} in 1")
    return {"pipeline_run_id": pid, "wall": wall, "trigger_s": trigger_s, "makespan": float(r["makespan"]),
            "unit": float(r["unit"]),
            "to_claim": float(r["to_claim"]), "finish_tail": float(r["finish_tail"]), "calls": float(r["calls"] or 0)}


def group_bare(args, conn) -> float:
    """The same calls in one transaction from a plain connection: seconds from BEGIN to COMMIT returned."""
    conn.execute("truncate bench_grp.t")
    stmts = [f"call bench_grp.p{i:02d}()" for i in range(1, args.members + 1)]
    t0 = time.perf_counter()
    with conn.transaction():
        for s in stmts:
            conn.execute(s)
    elapsed = time.perf_counter() - t0
    n = conn.execute("select count(*) as n, count(distinct xmin::text) as tx from bench_grp.t").fetchone()
    if n["n"] != args.members or n["tx"] != 1:
        fail(f"bare calls wrote {n['n']} rows in {n['tx']} transactions")
    return elapsed


# ----------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10000, help="items of the run (default 10000)")
    ap.add_argument("--clients", type=int, default=8, help="(a) finish_item threads and pgbench -c (default 8)")
    ap.add_argument("--item-concurrency", type=int, default=8, help="jobs.item_concurrency (default 8)")
    ap.add_argument("--runner-slots", type=int, default=1, help="etl runner --slots for (b) and part 2 (default 1)")
    ap.add_argument("--members", type=int, default=50, help="procedures in the per_group unit (default 50)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of each measurement; medians (default 3)")
    ap.add_argument("--pgbench-seconds", type=int, default=15)
    ap.add_argument("--timeout", type=float, default=120, help="longest wait for one run or pipeline (s)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="wait up to this long for the 1-min load average to drop below 1.2 before timing")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b,pgbench,group")
    ap.add_argument("--keep", action="store_true", help=f"keep {DB}")
    args = ap.parse_args()
    if not 1 <= args.members <= 99:
        ap.error("--members must be 1..99")
    skip = set(filter(None, args.skip.split(",")))
    _imports()

    if args.wait_quiet > 0:
        deadline = time.time() + args.wait_quiet
        while load() > 1.2 and time.time() < deadline:
            time.sleep(5)
    res: dict = {"args": vars(args), "load_start": load(), "cores": os.cpu_count()}
    runner = None
    code = 0
    try:
        setup(args)
        with connect() as c:
            res["synchronous_commit"] = c.execute("show synchronous_commit").fetchone()["synchronous_commit"]
            res["fsync"] = c.execute("show fsync").fetchone()["fsync"]
            res["server_version"] = c.execute("show server_version").fetchone()["server_version"]
        if "a" not in skip:
            res["a"] = []
            for i in range(args.repeat):
                vacuum()
                a = items_engine(args)
                res["a"].append(a)
                log(f"(a) #{i + 1}: {args.items} items in {a['seconds']:.2f} s = {a['rate']:.0f} items/s "
                    f"(start_items {a['start_items_s']:.2f} s, finish {a['finish_s'] * 1000:.0f} ms, "
                    f"finish_item p50/p95 {a['lat_p50'] * 1000:.2f}/{a['lat_p95'] * 1000:.2f} ms), "
                    f"run {a['status']}, items_succeeded {a['items_succeeded']}")
        if "group" not in skip:
            res["g_engine"] = []
            for i in range(args.repeat):
                vacuum()
                g = group_engine(args)
                res["g_engine"].append(g)
                log(f"group, engine only #{i + 1}: claim {g['claim_s'] * 1000:.1f} ms, "
                    f"finish {g['finish_s'] * 1000:.1f} ms")
        if "pgbench" not in skip:
            log(f"pgbench -N -c {args.clients} -j 2 -T {args.pgbench_seconds}")
            res["tps"] = pgbench(args.clients, args.pgbench_seconds)
            log(f"pgbench -N: {res['tps']:.0f} tps")
        if "b" not in skip or "group" not in skip:
            runner = RunnerProcess(args.runner_slots)
        if "b" not in skip:
            res["b"] = []
            for i in range(args.repeat):
                vacuum()
                b = items_e2e(args, runner)
                res["b"].append(b)
                log(f"(b) #{i + 1}: {args.items} items in {b['wall']:.2f} s = {b['rate']:.0f} items/s "
                    f"(created->claimed {b['to_claim'] * 1000:.0f} ms, claimed->first item "
                    f"{b['to_first_item']:.2f} s, items {b['item_phase']:.2f} s, last item->run ended "
                    f"{b['to_finish'] * 1000:.0f} ms)")
        if "group" not in skip:
            vacuum()
            group_runner(args, runner)  # warm-up: the runner's first unit (imports, pool connection)
            res["g_runner"], res["g_bare"] = [], []
            with connect() as bare_conn:
                group_bare(args, bare_conn)  # warm-up
                for i in range(args.repeat):
                    g = group_runner(args, runner)
                    res["g_runner"].append(g)
                    bare = group_bare(args, bare_conn)
                    res["g_bare"].append(bare)
                    log(f"group #{i + 1}: unit {g['unit'] * 1000:.1f} ms, makespan {g['makespan'] * 1000:.1f} ms, "
                        f"calls {g['calls'] * 1000:.1f} ms; bare {bare * 1000:.1f} ms")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        if runner is not None:
            runner.stop(keep_log=code != 0)
            if code:
                print(f"runner log kept: {runner.logfile.name}", file=sys.stderr)
        if not args.keep:
            devtools.drop_database(DB)
        devtools.drop_database(PGBENCH_DB)
    res["load_end"] = load()
    report(res, args)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "items.json").write_text(json.dumps(res, indent=2, default=str))
    return code


def report(r: dict, args) -> None:
    n, k = args.items, args.members
    tps = r.get("tps")
    print()
    print(f"items benchmark: PostgreSQL {r.get('server_version')}, synchronous_commit={r.get('synchronous_commit')}, "
          f"fsync={r.get('fsync')}, {r['cores']} cores, 1-min load {r['load_start']:.2f} at start, "
          f"{r['load_end']:.2f} at end; medians of {args.repeat}")
    if tps:
        print(f"pgbench -N -c {args.clients} -j 2 -T {args.pgbench_seconds}: {tps:.0f} tps")
    ratio = lambda rate: f"; ratio {rate / tps:.2f} (target >= 0.4)" if tps else ""  # noqa: E731
    if r.get("a"):
        a = r["a"]
        rate = med([x["rate"] for x in a])
        print(f"items (a) engine only, {args.clients} clients: {n} items in {med([x['seconds'] for x in a]):.2f} s "
              f"= {rate:.0f} items/s{ratio(rate)}")
        print(f"    each: " + ", ".join(f"{x['rate']:.0f}" for x in a) + " items/s; finish_item p50/p95/p99 "
              f"{med([x['lat_p50'] for x in a]) * 1000:.2f}/{med([x['lat_p95'] for x in a]) * 1000:.2f}/"
              f"{med([x['lat_p99'] for x in a]) * 1000:.2f} ms")
        print(f"    not in the figure: claim {med([x['claim_s'] for x in a]) * 1000:.1f} ms, start_items "
              f"(creates the {n} items) {med([x['start_items_s'] for x in a]):.2f} s, finish "
              f"{med([x['finish_s'] for x in a]) * 1000:.0f} ms; run status {a[-1]['status']}, "
              f"items_succeeded {a[-1]['items_succeeded']}, records_read {a[-1]['records_read']}")
        if "machine_cores_busy" in a[0]:
            print(f"    CPU while timing: machine {med([x['machine_cores_busy'] for x in a]):.2f} of {r['cores']} "
                  f"cores busy, of which this client process "
                  f"{med([x['proc_cpu_s'] / x['seconds'] for x in a]):.2f} cores")
    if r.get("b"):
        b = r["b"]
        rate = med([x["rate"] for x in b])
        print(f"items (b) end to end, etl runner --slots {args.runner_slots}, item_concurrency "
              f"{args.item_concurrency}: {n} items in {med([x['wall'] for x in b]):.2f} s = {rate:.0f} items/s"
              f"{ratio(rate)}")
        print(f"    each: " + ", ".join(f"{x['rate']:.0f}" for x in b) + " items/s; where the time goes (DB "
              f"clock): created->claimed {med([x['to_claim'] for x in b]) * 1000:.0f} ms, claimed->first item "
              f"started (start_items) {med([x['to_first_item'] for x in b]):.2f} s, first item started->last "
              f"ended {med([x['item_phase'] for x in b]):.2f} s ({n / med([x['item_phase'] for x in b]):.0f} "
              f"items/s), last item->run ended {med([x['to_finish'] for x in b]) * 1000:.0f} ms")
        if "machine_cores_busy" in b[0]:
            print(f"    CPU over the wall time: machine {med([x['machine_cores_busy'] for x in b]):.2f} "
                  f"of {r['cores']} "
                  f"cores busy, of which the runner process {med([x['proc_cpu_s'] / x['wall'] for x in b]):.2f} cores "
                  f"({med([x['proc_cpu_s'] for x in b]) / n * 1e6:.0f} us of runner CPU per item)")
    if r.get("g_runner"):
        g, bare = r["g_runner"], r["g_bare"]
        unit, mk, calls, b0 = (med([x["unit"] for x in g]), med([x["makespan"] for x in g]),
                               med([x["calls"] for x in g]), med(bare))
        print(f"per_group unit of {k} trivial procedures (one insert each), etl runner --slots {args.runner_slots}:")
        print(f"    unit (leader attempt started->ended = claim start->finish start) {unit * 1000:.1f} ms = "
              f"{unit / k * 1000:.3f} ms per member (target < 1 ms); makespan (pipeline created->ended) "
              f"{mk * 1000:.1f} ms = {mk / k * 1000:.3f} ms per member")
        print(f"    each unit: " + ", ".join(f"{x['unit'] * 1000:.1f}" for x in g) + " ms; makespan: "
              + ", ".join(f"{x['makespan'] * 1000:.1f}" for x in g) + " ms")
        print(f"    makespan = created->leader claimed {med([x['to_claim'] for x in g]) * 1000:.1f} ms (created_at is "
              f"the trigger's transaction start; the trigger_pipeline call took "
              f"{med([x['trigger_s'] for x in g]) * 1000:.1f} ms) + unit {unit * 1000:.1f} ms + finish "
              f"{med([x['finish_tail'] for x in g]) * 1000:.1f} ms (ends the {k} runs); the {k} calls as the runner "
              f"timed them {calls * 1000:.1f} ms")
        print(f"    bare: the same {k} calls in one transaction from psycopg {b0 * 1000:.1f} ms = "
              f"{b0 / k * 1000:.3f} ms per member; orchestration adds {(unit - b0) * 1000:.1f} ms to the unit "
              f"({(unit - b0) / k * 1000:.3f} ms per member), {(mk - b0) * 1000:.1f} ms to the makespan "
              f"({(mk - b0) / k * 1000:.3f} ms per member)")
    if r.get("g_engine"):
        ge = r["g_engine"]
        c, f = med([x["claim_s"] for x in ge]), med([x["finish_s"] for x in ge])
        print(f"    engine alone: claim of the unit (starts {k} runs) {c * 1000:.1f} ms, finish (ends them) "
              f"{f * 1000:.1f} ms = {(c + f) / k * 1000:.3f} ms per member")


if __name__ == "__main__":
    sys.exit(main())
