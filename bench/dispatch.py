"""Dispatch benchmark: how fast the engine hands runs out and takes results back.

    .venv/bin/python bench/dispatch.py [--clients 8] [--runs 20000] [--long-tx-seconds 60]

Builds its own database (etl_bench_dispatch) with every change deployed, creates 50 no-op jobs and a
parent->child chain, and measures on the running project cluster:

  a. runs/s through claim(worker, 1) + finish, one run per transaction, N client connections
  b. runs/s through claim(worker, 50) + finish_many, batched
  c. pgbench -N tps on the same cluster, and (a), (b) against tps/2 (a run = a claim commit + a finish commit)
  d. child release latency: parent finish commit -> NOTIFY seen by a LISTENing runner (the child is
     queued and visible: released in the parent's finish transaction) and -> child claimed; idle and
     under a background load of ~2,000 runs/s
  e. claim latency p95 while another connection holds a REPEATABLE READ snapshot open, vs baseline

Enqueue time is not part of any figure. Databases are dropped at the end (--keep to keep them).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from python_runner import devtools, settings  # noqa: E402

DB = "etl_bench_dispatch"
PGBENCH_DB = "etl_bench_pgbench"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
N_JOBS = 50
SUCCESS = '{"status": "success"}'


def connect(autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(settings.dsn(DB), autocommit=autocommit, row_factory=dict_row)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- setup

def setup() -> None:
    log(f"building {DB} (deploys every change)")
    devtools.build_template(DB)
    with connect() as conn:
        conn.execute(
            "insert into etl.jobs (slug, name, kind, target) "
            "select 'b' || lpad(g::text, 2, '0'), 'bench ' || g, 'python', 'bench:noop' "
            "from generate_series(1, %s) g", (N_JOBS,))
        # a 'seq' parameter: each pipeline gets its own, so each run has its own parameter fingerprint
        # and so its own default concurrency key (slug + fingerprint); --shared-keys leaves it out.
        conn.execute("insert into etl.job_parameters (job_id, name, data_type) "
                     "select job_id, 'seq', 'integer' from etl.jobs where slug like 'b%%'")
        # the chain for (d): high priority so a runner takes it before the background load
        conn.execute("insert into etl.jobs (slug, name, kind, target, priority) values "
                     "('cp', 'chain parent', 'python', 'bench:noop', 100), "
                     "('cc', 'chain child', 'python', 'bench:noop', 100)")
        conn.execute("insert into etl.job_dependencies (parent_job_id, child_job_id) "
                     "select p.job_id, c.job_id from etl.jobs p, etl.jobs c where p.slug = 'cp' and c.slug = 'cc'")
        conn.execute("select etl.set_setting('parallel_jobs', '1000', 'bench')")


SLUGS = [f"b{i:02d}" for i in range(1, N_JOBS + 1)]


def enqueue(n_runs: int, threads: int = 4) -> float:
    """Queues n_runs (pipelines of the 50 independent jobs) from several connections; returns seconds."""
    pipelines = (n_runs + N_JOBS - 1) // N_JOBS
    counter = iter(range(pipelines))
    lock = threading.Lock()

    def work():
        with connect() as conn:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                trigger_one(conn)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


SEQ = iter(range(1, 10**12))
SHARED_KEYS = False


def trigger_one(conn) -> None:
    params = "{}" if SHARED_KEYS else json.dumps({"seq": next(SEQ)})
    conn.execute("select etl.trigger_pipeline(jobs => %s, params => %s::jsonb)", (SLUGS, params))


def queued() -> int:
    with connect() as conn:
        return conn.execute("select count(*) as n from etl.runs where status = 'queued'").fetchone()["n"]


def vacuum() -> None:
    with connect() as conn:
        conn.execute("vacuum analyze etl.runs, etl.run_slots, etl.job_locks, etl.run_attempts, etl.pipeline_runs")


# ---------------------------------------------------------------------------------- (a), (b)

DEADLOCKS = [0]


def exec_retry(conn, sql, params):
    """Engine calls deadlock under batched load (see the report): count and retry."""
    while True:
        try:
            return conn.execute(sql, params).fetchall()
        except psycopg.errors.DeadlockDetected:
            DEADLOCKS[0] += 1


def push(clients: int, batch: int, target: int, claim_lat: list[float] | None = None,
         stop_at: float | None = None) -> tuple[int, float]:
    """clients connections claim(worker, batch) and finish (finish_many when batch > 1) until target
    runs are done or the queue is empty (or stop_at). Returns (runs done, seconds)."""
    done = [0] * clients
    total = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def work(i: int):
        try:
            with connect() as conn:
                conn.prepare_threshold = 0
                barrier.wait()
                idle = 0
                while True:
                    if stop_at is not None and time.perf_counter() >= stop_at:
                        return
                    with lock:
                        if total[0] >= target:
                            return
                    t0 = time.perf_counter()
                    try:
                        rows = conn.execute("select run_id, token from etl.claim(%s, %s)",
                                            (f"bench{i}", batch)).fetchall()
                    except psycopg.errors.DeadlockDetected:
                        with lock:
                            DEADLOCKS[0] += 1
                        continue
                    if claim_lat is not None:
                        claim_lat.append(time.perf_counter() - t0)
                    if not rows:
                        idle += 1
                        if idle > 50 and stop_at is None:
                            return  # the queue is empty
                        continue
                    idle = 0
                    if batch == 1:
                        exec_retry(conn, "select etl.finish(%s, %s, %s)", (rows[0]["run_id"], rows[0]["token"], SUCCESS))
                    else:
                        reports = [{"run_id": r["run_id"], "token": r["token"], "outcome": {"status": "success"}}
                                   for r in rows]
                        exec_retry(conn, "select count(*) from etl.finish_many(%s::jsonb)", (json.dumps(reports),))
                    done[i] += len(rows)
                    with lock:
                        total[0] += len(rows)
        except BaseException as exc:
            errors.append(exc)
            raise

    ts = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(done), elapsed


# ----------------------------------------------------------------------------------------- (c)

def pgbench(clients: int, seconds: int) -> float:
    sock = str(settings.embedded().socket_dir)
    port = str(settings.embedded().port)
    devtools.recreate_database(PGBENCH_DB)
    common = ["-h", sock, "-p", port, "-U", "postgres"]
    subprocess.run([str(PG_BIN / "pgbench"), *common, "-i", "-s", "10", "-q", PGBENCH_DB],
                   check=True, capture_output=True)
    out = subprocess.run([str(PG_BIN / "pgbench"), *common, "-N", "-c", str(clients), "-j", "2",
                          "-T", str(seconds), PGBENCH_DB], check=True, capture_output=True, text=True).stdout
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    return float(m.group(1))


# ----------------------------------------------------------------------------------------- (d)

def chain_latency(n_chains: int, bg_rate: float) -> dict:
    """Per chain: trigger cp->cc, claim cp, finish it; a LISTENing runner claims cc on the NOTIFY.
    (i) finish commit -> NOTIFY for cc received (cc is queued and committed by then);
    (ii) finish commit -> cc claimed (by the listener, or by a background runner that got there first)."""
    stop = threading.Event()
    bg_done = [0]
    claimed_at: dict[int, tuple[float, str]] = {}
    notified_at: dict[int, float] = {}
    lock = threading.Lock()
    expected: set[int] = set()

    def record_claims(rows, who):
        now = time.perf_counter()
        with lock:
            for r in rows:
                if r["job_slug"] == "cc":
                    claimed_at.setdefault(r["run_id"], (now, who))

    def background(i: int, rate: float):
        # batches of 10 paced to the rate: claim(w, 10) + finish_many
        with connect() as conn:
            nxt = time.perf_counter()
            while not stop.is_set():
                rows = exec_retry(conn, "select run_id, token, job_slug from etl.claim(%s, 10)", (f"bg{i}",))
                record_claims(rows, "background")
                if rows:
                    reports = [{"run_id": r["run_id"], "token": r["token"], "outcome": {"status": "success"}}
                               for r in rows]
                    exec_retry(conn, "select count(*) from etl.finish_many(%s::jsonb)", (json.dumps(reports),))
                    with lock:
                        bg_done[0] += len(rows)
                nxt += max(len(rows), 10) / rate
                delay = nxt - time.perf_counter()
                if delay > 0:
                    stop.wait(delay)
                else:
                    nxt = time.perf_counter()

    listener_ready = threading.Event()

    def listener():
        with connect() as conn:
            conn.execute("listen etl_runnable")
            listener_ready.set()
            while not stop.is_set():
                for n in conn.notifies(timeout=0.5):
                    t = time.perf_counter()
                    rid = int(n.payload)
                    with lock:
                        mine = rid in expected
                    if not mine:
                        continue
                    notified_at.setdefault(rid, t)
                    rows = conn.execute("select run_id, token, job_slug from etl.claim('listener', 1)").fetchall()
                    record_claims(rows, "listener")
                    for r in rows:
                        conn.execute("select etl.finish(%s, %s, %s)", (r["run_id"], r["token"], SUCCESS))
                    if stop.is_set():
                        break

    threads = [threading.Thread(target=listener, daemon=True)]
    n_bg = 4
    if bg_rate:
        threads += [threading.Thread(target=background, args=(i, bg_rate / n_bg), daemon=True) for i in range(n_bg)]
    for t in threads:
        t.start()
    listener_ready.wait(10)
    release_i, release_ii, stolen_parent, by_listener = [], [], 0, 0
    t_start = time.perf_counter()
    bg_start = bg_done[0]
    with connect() as conn:
        for _ in range(n_chains):
            pid = conn.execute("select etl.trigger_pipeline(jobs => array['cp', 'cc']) as p").fetchone()["p"]
            ids = {r["job_slug"]: r["run_id"] for r in conn.execute(
                "select j.slug as job_slug, r.run_id from etl.runs r join etl.jobs j using (job_id) "
                "where r.pipeline_run_id = %s", (pid,))}
            child = ids["cc"]
            with lock:
                expected.add(child)
            rows = conn.execute("select run_id, token, job_slug from etl.claim('chain', 1)").fetchall()
            mine = [r for r in rows if r["run_id"] == ids["cp"]]
            for r in rows:
                if r["run_id"] != ids["cp"]:
                    conn.execute("select etl.finish(%s, %s, %s)", (r["run_id"], r["token"], SUCCESS))
            if not mine:
                stolen_parent += 1  # a background runner took the parent; not measured
                continue
            t0 = time.perf_counter()
            conn.execute("select etl.finish(%s, %s, %s)", (ids["cp"], mine[0]["token"], SUCCESS))
            t_commit = time.perf_counter()
            deadline = t_commit + 5
            while time.perf_counter() < deadline:
                with lock:
                    c = claimed_at.get(child)
                    nt = notified_at.get(child)
                if c is not None and (nt is not None or c[1] == "background"):
                    break
                time.sleep(0.0002)  # pacing of the measuring loop only; the runners are event driven
            with lock:
                c = claimed_at.get(child)
                nt = notified_at.get(child)
            # the commit happened between t0 and t_commit; take the midpoint... conservatively t0
            # would flatter nothing, t_commit under-reports by the round trip: use t_commit.
            if nt is not None:
                release_i.append(max(0.0, nt - t_commit))
            if c is not None:
                release_ii.append(max(0.0, c[0] - t_commit))
                by_listener += c[1] == "listener"
    elapsed = time.perf_counter() - t_start
    bg_achieved = (bg_done[0] - bg_start) / elapsed
    stop.set()
    for t in threads:
        t.join(5)
    return {"i": release_i, "ii": release_ii, "stolen_parent": stolen_parent, "by_listener": by_listener,
            "bg_rate": bg_achieved, "chains": n_chains}


# ----------------------------------------------------------------------------------------- (e)

def claim_latency_phase(seconds: float, clients: int, hold_snapshot: bool) -> dict:
    """Producers keep the queue topped up while clients claim(1)+finish for `seconds`; optionally a
    REPEATABLE READ transaction holds its snapshot all along. Returns claim latencies."""
    stop = threading.Event()
    holder = None
    if hold_snapshot:
        holder = connect(autocommit=False)
        holder.execute("set transaction isolation level repeatable read")
        holder.execute("select 1 from etl.jobs limit 1")

    def producer():
        with connect() as conn:
            while not stop.is_set():
                n = conn.execute("select count(*) as n from etl.runs where status = 'queued'").fetchone()["n"]
                if n < 3000:
                    trigger_one(conn)
                else:
                    stop.wait(0.02)

    producers = [threading.Thread(target=producer, daemon=True) for _ in range(3)]
    for t in producers:
        t.start()
    # prime the queue
    while queued() < 2000:
        time.sleep(0.05)
    lat: list[float] = []
    done, elapsed = push(clients, 1, 10**9, claim_lat=lat, stop_at=time.perf_counter() + seconds)
    stop.set()
    for t in producers:
        t.join(10)
    with connect() as conn:
        dead = conn.execute("select n_dead_tup from pg_stat_user_tables where relid = 'etl.runs'::regclass"
                            ).fetchone()["n_dead_tup"]
        plan = "\n".join(r["QUERY PLAN"] for r in conn.execute(
            "explain (analyze, buffers) select r.run_id from etl.runs r join etl.jobs j on j.job_id = r.job_id "
            "where r.status = 'queued' and r.next_attempt_at <= now() "
            "order by r.priority desc, r.next_attempt_at, r.run_id limit 4 for update of r skip locked"))
    if holder is not None:
        holder.rollback()
        holder.close()
    return {"lat": lat, "runs": done, "secs": elapsed, "dead": dead, "plan": plan}


# ----------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--chains", type=int, default=300)
    ap.add_argument("--bg-rate", type=float, default=2000)
    ap.add_argument("--long-tx-seconds", type=float, default=60)
    ap.add_argument("--pgbench-seconds", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma list of phases to skip: a,b,c,d,e")
    ap.add_argument("--shared-keys", action="store_true",
                    help="no per-pipeline parameter: runs of one job share its concurrency key")
    ap.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    global SHARED_KEYS
    SHARED_KEYS = args.shared_keys
    results: dict = {}
    setup()
    try:
        with connect() as conn:
            results["sync"] = conn.execute("show synchronous_commit").fetchone()["synchronous_commit"]
            results["fsync"] = conn.execute("show fsync").fetchone()["fsync"]
        if "a" not in skip:
            secs = enqueue(args.runs)
            log(f"(a) enqueued {args.runs} runs in {secs:.1f}s ({args.runs / secs:.0f} runs/s enqueue)")
            results["enqueue_rate"] = args.runs / secs
            vacuum()
            done, el = push(args.clients, 1, args.runs)
            results["a"] = done / el
            log(f"(a) {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
        if "b" not in skip:
            secs = enqueue(args.runs)
            vacuum()
            done, el = push(args.clients, 50, args.runs)
            results["b"] = done / el
            results["b_deadlocks"] = DEADLOCKS[0]
            log(f"(b) deadlocks so far: {DEADLOCKS[0]}")
            log(f"(b) {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
        if "c" not in skip:
            results["c"] = pgbench(args.clients, args.pgbench_seconds)
            log(f"(c) pgbench -N: {results['c']:.0f} tps")
        if "d" not in skip:
            vacuum()
            results["d_idle"] = chain_latency(args.chains, 0)
            log(f"(d) idle: p95 (i) {pct(results['d_idle']['i'], 95) * 1000:.2f} ms")
            need = int(args.bg_rate * max(20, args.chains * 0.05)) + 5000
            enqueue(need)
            vacuum()
            results["d_load"] = chain_latency(args.chains, args.bg_rate)
            log(f"(d) load: p95 (i) {pct(results['d_load']['i'], 95) * 1000:.2f} ms, "
                f"bg {results['d_load']['bg_rate']:.0f} runs/s")
            push(args.clients, 50, 10**9)  # drain
        if "e" not in skip:
            vacuum()
            results["e_base"] = claim_latency_phase(args.long_tx_seconds, args.clients, False)
            push(args.clients, 50, 10**9)
            vacuum()
            results["e_long"] = claim_latency_phase(args.long_tx_seconds, args.clients, True)
            push(args.clients, 50, 10**9)
    finally:
        if not args.keep:
            devtools.drop_database(DB)
            devtools.drop_database(PGBENCH_DB)
    results["deadlocks_total"] = DEADLOCKS[0]
    report(results, args)
    return 0


def report(r: dict, args) -> None:
    ms = lambda v: f"{v * 1000:8.2f} ms"  # noqa: E731
    rows: list[tuple[str, str, str]] = []
    half = r.get("c", 0) / 2
    if "a" in r:
        rows.append((f"(a) claim(w,1)+finish, {args.clients} clients, runs/s", f"{r['a']:10.0f}", ">= 2,500"))
        if half:
            rows.append(("    (a) / (pgbench tps / 2)", f"{r['a'] / half:10.2f}", ""))
    if "b" in r:
        rows.append((f"(b) claim(w,50)+finish_many, {args.clients} clients, runs/s", f"{r['b']:10.0f}", ">= 6,000"))
        if half:
            rows.append(("    (b) / (pgbench tps / 2)", f"{r['b'] / half:10.2f}", ""))
        rows.append(("    claim deadlocks detected (retried) during (a)+(b)", f"{r['b_deadlocks']:10d}", "0"))
    if "c" in r:
        rows.append((f"(c) pgbench -N -c {args.clients} -j 2 tps", f"{r['c']:10.0f}", ""))
        rows.append(("    physical limit tps/2 (runs/s, 2 commits per run)", f"{half:10.0f}", ""))
    if "enqueue_rate" in r:
        rows.append(("    enqueue (trigger_pipeline x50 jobs, 4 conns) runs/s", f"{r['enqueue_rate']:10.0f}", "(info)"))
    for key, label, target in (("d_idle", "idle", "< 5 ms"), ("d_load", "under load", "< 20 ms")):
        if key not in r:
            continue
        d = r[key]
        extra = f", background {d['bg_rate']:.0f} runs/s" if key == "d_load" else ""
        rows.append((f"(d) child release {label}{extra}: {len(d['i'])}/{d['chains']} chains measured, "
                     f"{d['stolen_parent']} parents taken by background, {d['by_listener']} children by listener",
                     "", ""))
        for name, vals in (("(i)  finish commit -> NOTIFY (child queued, visible)", d["i"]),
                           ("(ii) finish commit -> child claimed", d["ii"])):
            rows.append((f"    {name} p50/p95/p99",
                         f"{pct(vals, 50) * 1000:.2f}/{pct(vals, 95) * 1000:.2f}/{pct(vals, 99) * 1000:.2f} ms",
                         f"p95 {target}"))
    rows.append(("deadlocks detected and retried in the whole run", f"{r.get('deadlocks_total', 0):10d}", "0"))
    if "e_base" in r and "e_long" in r:
        b, l = r["e_base"], r["e_long"]
        rows.append((f"(e) claim p50/p95 baseline ({b['runs'] / b['secs']:.0f} runs/s, dead tuples {b['dead']})",
                     f"{pct(b['lat'], 50) * 1000:.2f}/{pct(b['lat'], 95) * 1000:.2f} ms", ""))
        rows.append((f"    with a {args.long_tx_seconds:.0f}s open snapshot ({l['runs'] / l['secs']:.0f} runs/s, "
                     f"dead tuples {l['dead']})",
                     f"{pct(l['lat'], 50) * 1000:.2f}/{pct(l['lat'], 95) * 1000:.2f} ms", "p95 < 2x baseline"))
        rows.append(("    ratio p95 long / baseline", f"{pct(l['lat'], 95) / pct(b['lat'], 95):10.2f}", "< 2"))
    width = max(len(a) for a, _, _ in rows) + 2
    print()
    print(f"dispatch benchmark — synchronous_commit={r.get('sync')} fsync={r.get('fsync')} cores={os.cpu_count()}")
    print(f"{'figure':<{width}}{'value':>22}   target")
    print("-" * (width + 40))
    for a, v, t in rows:
        print(f"{a:<{width}}{v:>22}   {t}")
    if "e_long" in r:
        print("\nclaim candidate scan at the end of (e) with the snapshot held:\n" + r["e_long"]["plan"])
        print("\nsame, baseline:\n" + r["e_base"]["plan"])


if __name__ == "__main__":
    sys.exit(main())
