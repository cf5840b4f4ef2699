"""Dispatch benchmark: how fast the engine hands runs out and takes results back.

    .venv/bin/python bench/dispatch.py [--clients 8] [--runs 20000] [--long-tx-seconds 60]

Builds its own database (etl_bench_dispatch) with every change deployed, creates 50 no-op jobs and a
parent->child chain, and measures on the running project cluster:

  a. runs/s through claim(worker, 1) + finish, one run per transaction, N client connections
     (driven by pgbench -M prepared, a C client, so that the figure is the engine's; the same
     from N Python threads is printed beside it)
  b. runs/s through claim(worker, 50) + finish_many, batched (pgbench too, and Python beside it);
     b2 the same through claim(worker, --big-batch) (200), pgbench only
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
BG_DB = "etl_bench_dispatch_bg"  # (d) background load: same cluster, other database
N_JOBS = 50
SUCCESS = '{"status": "success"}'


def connect(db: str = DB, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(settings.dsn(db), autocommit=autocommit, row_factory=dict_row)


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


def clone_bg() -> None:
    """BG_DB: a copy of DB as set up (jobs, settings), for (d)'s background load."""
    for attempt in range(20):
        try:
            devtools.recreate_database(BG_DB, template=DB)
            return
        except psycopg.errors.ObjectInUse:  # autovacuum on the template: try again
            time.sleep(0.5)
    devtools.recreate_database(BG_DB, template=DB)


SLUGS = [f"b{i:02d}" for i in range(1, N_JOBS + 1)]


def enqueue(n_runs: int, threads: int = 4, db: str = DB) -> float:
    """Queues n_runs (pipelines of the 50 independent jobs) from several connections; returns seconds."""
    pipelines = (n_runs + N_JOBS - 1) // N_JOBS
    counter = iter(range(pipelines))
    lock = threading.Lock()

    def work():
        with connect(db) as conn:
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


def queued(db: str = DB) -> int:
    with connect(db) as conn:
        return conn.execute("select count(*) as n from etl.runs where status = 'queued'").fetchone()["n"]


def fresh_queue(clients: int, runs: int) -> None:
    """Drains what an earlier phase left, queues `runs` runs and vacuums: each phase starts alike."""
    push(clients, 50, 10**9)
    enqueue(runs)
    vacuum()


def vacuum(db: str = DB) -> None:
    with connect(db) as conn:
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


def run_clients(work, clients: int, barrier: threading.Barrier, errors: list, done: list) -> tuple[int, float]:
    """Starts `clients` threads of work(i), releases them together, and times them to the last one."""
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


def push_chained(clients: int, target: int) -> tuple[int, float]:
    """(a2) the runner's own pattern: each transaction finishes the previous run and claims the next
    (one commit per run), sent in one round trip with psycopg's pipeline mode."""
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
                prev = None
                empty = 0
                while True:
                    with lock:
                        if total[0] >= target and prev is None:
                            return
                    try:
                        with conn.pipeline(), conn.transaction():
                            if prev is not None:
                                conn.execute("select etl.finish(%s, %s, %s)", (prev[0], prev[1], SUCCESS))
                            cur = conn.execute("select run_id, token from etl.claim(%s, 1)", (f"chain{i}",))
                        row = cur.fetchone()
                    except psycopg.errors.DeadlockDetected:
                        with lock:
                            DEADLOCKS[0] += 1
                        continue
                    if prev is not None:
                        done[i] += 1
                        with lock:
                            total[0] += 1
                    prev = (row["run_id"], row["token"]) if row else None
                    if prev is None:
                        empty += 1
                        if empty > 50:
                            return
        except BaseException as exc:
            errors.append(exc)
            raise

    return run_clients(work, clients, barrier, errors, done)


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

    return run_clients(work, clients, barrier, errors, done)


# ------------------------------------------------------------- (a), (b) through pgbench's C client

def pgbench_script(batch: int) -> str:
    if batch == 1:
        # one run per transaction: the claim commits, then the finish commits
        return ("select run_id, token from etl.claim('pgb' || :client_id, 1) \\gset\n"
                "select etl.finish(:run_id, :token, '{\"status\": \"success\"}')\n")
    # batched: one claim of `batch` commits, then one finish_many of them commits
    return ("select coalesce(jsonb_agg(jsonb_build_object('run_id', run_id, 'token', token,\n"
            "       'outcome', '{\"status\": \"success\"}'::jsonb)), '[]') as reports\n"
            f"  from etl.claim('pgb' || :client_id, {batch}) \\gset\n"
            "select count(*) from etl.finish_many(:reports::jsonb)\n")


def pgbench_push(clients: int, batch: int, runs: int) -> tuple[int, float, int]:
    """(a) and (b) driven by pgbench (-M prepared, a C client: the harness takes no CPU from the
    engine to speak of). Each script run claims and finishes `batch` runs in two transactions.
    Returns (runs done, seconds, failed script runs); runs done are counted in the database (a batch
    claim near the end of the queue comes back short). The queue must hold more than `runs`."""
    per_client = max(1, -(-runs // (clients * batch)))  # at least `runs` in all
    script = Path(os.environ.get("TMPDIR", "/tmp")) / f"etl_bench_dispatch_{batch}.sql"
    script.write_text(pgbench_script(batch))
    with connect() as conn:
        before = conn.execute("select count(*) as n from etl.runs where status = 'success'").fetchone()["n"]
    t0 = time.perf_counter()
    res = subprocess.run([*devtools.pgbench_command(), "-n",
                          "-M", "prepared", "--max-tries", "10", "-f", str(script), "-c", str(clients),
                          "-j", "2", "-t", str(per_client), DB], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    out = res.stdout + res.stderr
    if res.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{out}")
    scripts = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    seconds = scripts / float(m.group(1)) if m else elapsed
    with connect() as conn:
        done = conn.execute("select count(*) as n from etl.runs where status = 'success'").fetchone()["n"] - before
    return done, seconds, int(failed.group(1)) if failed else 0


# ----------------------------------------------------------------------------------------- (c)

def pgbench(clients: int, seconds: int) -> float:
    return devtools.pgbench_tps(PGBENCH_DB, clients, seconds)


# ----------------------------------------------------------------------------------------- (d)

class Listener(threading.Thread):
    """A runner that waits for work: its own autocommit connection LISTENs on etl_runnable and keeps
    reading notifications (conn.notifies holds the connection's lock while it iterates, so the claims
    go through a second connection of the same thread). On every notification it calls
    etl.claim('listener', 1); a claimed chain child gets its perf_counter() stamped and is finished.
    Anything else it claims is handed to the driver (a chain parent) through `handoff`."""

    def __init__(self):
        super().__init__(daemon=True, name="listener")
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.children: dict[int, threading.Event] = {}   # chain child run id -> set when claimed
        self.claimed_at: dict[int, float] = {}
        self.handoff: dict[int, int] = {}                # run id -> token, claimed but not a chain child
        self.handoff_cv = threading.Condition(self.lock)
        self.notifications = 0
        self.empty_claims = 0
        self.error: BaseException | None = None

    def expect_child(self, run_id: int) -> threading.Event:
        ev = threading.Event()
        with self.lock:
            self.children[run_id] = ev
        return ev

    def run(self) -> None:
        try:
            with connect() as lconn, connect() as cconn:
                cconn.prepare_threshold = 0
                lconn.execute("listen etl_runnable")
                self.ready.set()
                try:
                    while not self.stop.is_set():
                        for _n in lconn.notifies(timeout=0.2):
                            self.notifications += 1
                            rows = cconn.execute(
                                "select run_id, token, job_slug from etl.claim('listener', 1)").fetchall()
                            t = time.perf_counter()
                            if not rows:
                                self.empty_claims += 1
                            for r in rows:
                                with self.lock:
                                    ev = self.children.get(r["run_id"])
                                    if ev is not None:
                                        self.claimed_at[r["run_id"]] = t
                                    else:
                                        self.handoff[r["run_id"]] = r["token"]
                                        self.handoff_cv.notify_all()
                                if ev is not None:
                                    ev.set()
                                    cconn.execute("select etl.finish(%s, %s, %s)", (r["run_id"], r["token"], SUCCESS))
                            if self.stop.is_set():
                                break
                finally:
                    lconn.execute("unlisten *")
        except BaseException as exc:  # noqa: BLE001 - reported by the driver
            self.error = exc
            self.ready.set()


class Background(threading.Thread):
    """Background load in the separate database BG_DB (same cluster, so it competes for CPU, WAL and
    commits, but cannot take a chain run): `threads` connections claim(w, 50) + finish_many paced
    to `rate` runs/s in total (batch 50, as (b)), a side thread keeps BG_DB's queue topped up."""

    def __init__(self, rate: float, threads: int = 4, batch: int = 50):
        super().__init__(daemon=True, name="background")
        self.rate, self.n, self.batch = rate, threads, batch
        self.stop = threading.Event()
        self.done = 0
        self.enqueued = 0
        self.topups = 0
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []

    def preload(self, runs: int) -> None:
        enqueue(runs, db=BG_DB)
        with connect(BG_DB) as conn:
            self.enqueued = conn.execute("select count(*) as n from etl.runs where status = 'queued'"
                                         ).fetchone()["n"]
        vacuum(BG_DB)

    def worker(self, i: int) -> None:
        try:
            with connect(BG_DB) as conn:
                conn.prepare_threshold = 0
                per_thread = self.rate / self.n
                nxt = time.perf_counter()
                while not self.stop.is_set():
                    rows = exec_retry(conn, "select run_id, token from etl.claim(%s, %s)", (f"bg{i}", self.batch))
                    if rows:
                        reports = [{"run_id": r["run_id"], "token": r["token"], "outcome": {"status": "success"}}
                                   for r in rows]
                        exec_retry(conn, "select count(*) from etl.finish_many(%s::jsonb)", (json.dumps(reports),))
                        with self.lock:
                            self.done += len(rows)
                    nxt += max(len(rows), self.batch) / per_thread
                    delay = nxt - time.perf_counter()
                    if delay > 0:
                        self.stop.wait(delay)
                    else:
                        nxt = time.perf_counter()  # behind: no catching up in bursts
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)

    def topup(self) -> None:
        try:
            with connect(BG_DB) as conn:
                while not self.stop.is_set():
                    with self.lock:
                        left = self.enqueued - self.done
                    if left < self.rate * 3:
                        trigger_one(conn)
                        with self.lock:
                            self.enqueued += N_JOBS
                        self.topups += 1
                    else:
                        self.stop.wait(0.05)
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)

    def run(self) -> None:
        ts = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.n)]
        ts.append(threading.Thread(target=self.topup, daemon=True))
        for t in ts:
            t.start()
        self.stop.wait()
        for t in ts:
            t.join(10)


def chain_latency(n_chains: int, bg: Background | None) -> dict:
    """Per chain: trigger cp -> cc, the driver claims cp (in the trigger's transaction, so the listener
    woken by cp's NOTIFY cannot take it), then finishes cp in an explicit transaction.
    (i)  finish call start -> COMMIT returned: cc is released (queued) inside that transaction, so it
         is claimable at the commit; checked afterwards: cc's 'queued' run_events row has the xmin of
         cp's 'success' row.
    (ii) COMMIT returned (driver's perf_counter) -> cc claimed by the LISTENing runner (its
         perf_counter after etl.claim returned)."""
    if queued() != 0:
        raise RuntimeError(f"{DB} still has queued runs: (d) needs the chain runs alone")
    lst = Listener()
    lst.start()
    lst.ready.wait(10)
    if lst.error:
        raise lst.error
    fin, rel, pairs = [], [], []
    missed = 0
    bg_t0 = bg_n0 = 0.0
    if bg is not None:
        bg.start()
        time.sleep(2)  # let the background reach its pace
        bg_t0, bg_n0 = time.perf_counter(), bg.done
    t_start = time.perf_counter()
    try:
        with connect() as conn:
            conn.prepare_threshold = 0
            for _ in range(n_chains):
                with conn.transaction():
                    pid = conn.execute("select etl.trigger_pipeline(jobs => array['cp', 'cc']) as p").fetchone()["p"]
                    ids = {r["job_slug"]: r["run_id"] for r in conn.execute(
                        "select j.slug as job_slug, r.run_id from etl.runs r join etl.jobs j using (job_id) "
                        "where r.pipeline_run_id = %s", (pid,))}
                    rows = conn.execute("select run_id, token from etl.claim('driver', 1)").fetchall()
                parent, child = ids["cp"], ids["cc"]
                ev = lst.expect_child(child)
                token = None
                for r in rows:
                    if r["run_id"] == parent:
                        token = r["token"]
                    else:
                        conn.execute("select etl.finish(%s, %s, %s)", (r["run_id"], r["token"], SUCCESS))
                deadline = time.perf_counter() + 5
                while token is None and time.perf_counter() < deadline:
                    # the engine did not let us claim it in the trigger's transaction: the listener
                    # may have taken it on cp's NOTIFY, or it is still ours to claim
                    with lst.handoff_cv:
                        token = lst.handoff.pop(parent, None)
                        if token is None:
                            lst.handoff_cv.wait(0.005)
                            token = lst.handoff.pop(parent, None)
                    if token is None:
                        for r in conn.execute("select run_id, token from etl.claim('driver', 1)").fetchall():
                            if r["run_id"] == parent:
                                token = r["token"]
                            else:
                                conn.execute("select etl.finish(%s, %s, %s)", (r["run_id"], r["token"], SUCCESS))
                if token is None:
                    raise RuntimeError(f"could not claim chain parent run {parent}")
                with lst.lock:  # anything else the listener took: finish it
                    stray = [(k, v) for k, v in lst.handoff.items()]
                    lst.handoff.clear()
                for rid, tok in stray:
                    conn.execute("select etl.finish(%s, %s, %s)", (rid, tok, SUCCESS))
                with conn.transaction():
                    t0 = time.perf_counter()
                    conn.execute("select etl.finish(%s, %s, %s)", (parent, token, SUCCESS))
                t_commit = time.perf_counter()
                fin.append(t_commit - t0)
                pairs.append((parent, child))
                if ev.wait(5):
                    with lst.lock:
                        rel.append(lst.claimed_at[child] - t_commit)
                else:
                    missed += 1
                if lst.error:
                    raise lst.error
        elapsed = time.perf_counter() - t_start
        bg_rate = None
        if bg is not None:
            bg_rate = (bg.done - bg_n0) / (time.perf_counter() - bg_t0)
    finally:
        lst.stop.set()
        lst.join(10)
        if bg is not None:
            bg.stop.set()
            bg.join(15)
    if bg is not None and bg.errors:
        raise bg.errors[0]
    with connect() as conn:
        same_tx = conn.execute(
            "select count(*) as n from unnest(%s::bigint[], %s::bigint[]) c(parent, child) "
            "where exists (select 1 from etl.run_events pe join etl.run_events ce on ce.xmin = pe.xmin "
            "               where pe.run_id = c.parent and pe.to_status = 'success' "
            "                 and ce.run_id = c.child and ce.to_status = 'queued')",
            ([p for p, _ in pairs], [c for _, c in pairs])).fetchone()["n"]
    return {"i": fin, "ii": rel, "chains": n_chains, "missed": missed, "same_tx": same_tx,
            "negative": sum(v < 0 for v in rel), "elapsed": elapsed, "bg_rate": bg_rate,
            "bg_topups": bg.topups if bg is not None else 0,
            "notifications": lst.notifications, "empty_claims": lst.empty_claims}


# ----------------------------------------------------------------------------------------- (e)

def claim_load(seconds: float, n_bg: int = 4, topup_below: int = 0) -> dict:
    """One measured connection claim(w, 1) + finish for `seconds` (claim latency recorded for every
    claim that returned a run), and n_bg background threads doing the same, unpaced. A side thread
    tops the queue up only if it runs low (topup_below runs left)."""
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"bg": 0, "topups": 0}
    errors: list[BaseException] = []
    left0 = queued()

    def bg_worker(i: int):
        try:
            with connect() as conn:
                conn.prepare_threshold = 0
                while not stop.is_set():
                    rows = exec_retry(conn, "select run_id, token from etl.claim(%s, 1)", (f"ebg{i}",))
                    for r in rows:
                        exec_retry(conn, "select etl.finish(%s, %s, %s)", (r["run_id"], r["token"], SUCCESS))
                    with lock:
                        counts["bg"] += len(rows)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    measured = {"n": 0}

    def topup():
        try:
            with connect() as conn:
                added = 0
                while not stop.is_set():
                    with lock:
                        left = left0 + added - counts["bg"] - measured["n"]
                    if left < topup_below:
                        trigger_one(conn)
                        added += N_JOBS
                        counts["topups"] += 1
                    else:
                        stop.wait(0.05)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    ts = [threading.Thread(target=bg_worker, args=(i,), daemon=True) for i in range(n_bg)]
    if topup_below:
        ts.append(threading.Thread(target=topup, daemon=True))
    lat: list[float] = []
    empty = 0
    with connect() as conn:
        conn.prepare_threshold = 0
        for t in ts:
            t.start()
        t_start = time.perf_counter()
        t_end = t_start + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            rows = exec_retry(conn, "select run_id, token from etl.claim('measured', 1)", None)
            t1 = time.perf_counter()
            if not rows:
                empty += 1
                continue
            lat.append(t1 - t0)
            exec_retry(conn, "select etl.finish(%s, %s, %s)", (rows[0]["run_id"], rows[0]["token"], SUCCESS))
            with lock:
                measured["n"] += 1
        elapsed = time.perf_counter() - t_start
        stop.set()
        for t in ts:
            t.join(10)
    if errors:
        raise errors[0]
    total = measured["n"] + counts["bg"]
    return {"lat": lat, "empty": empty, "runs": total, "secs": elapsed, "rate": total / elapsed,
            "measured_rate": measured["n"] / elapsed, "topups": counts["topups"], "left": queued()}


def claim_latency_phase(seconds: float, hold_snapshot: bool, preload: int) -> dict:
    """Enqueues `preload` runs ahead (not timed), vacuums, then runs claim_load for `seconds`; with
    hold_snapshot another connection holds a REPEATABLE READ snapshot (BEGIN ISOLATION LEVEL
    REPEATABLE READ; SELECT 1 FROM etl.jobs LIMIT 1) from before the first claim until after the last,
    and rolls it back at the end."""
    secs = enqueue(preload)
    log(f"(e) enqueued {preload} runs in {secs:.1f}s")
    vacuum()
    holder = None
    try:
        if hold_snapshot:
            holder = connect()
            holder.execute("begin isolation level repeatable read")
            holder.execute("select 1 from etl.jobs limit 1")
            with connect() as conn:
                xmin = conn.execute("select backend_xmin from pg_stat_activity where pid = %s",
                                    (holder.info.backend_pid,)).fetchone()["backend_xmin"]
            if xmin is None:
                raise RuntimeError("the long transaction holds no snapshot")
        res = claim_load(seconds, topup_below=3000)
        res["dead"] = res["plan"] = None
        with connect() as conn:
            if holder is not None:
                res["holder_state"] = conn.execute(
                    "select state, backend_xmin is not null as has_xmin, "
                    "round(extract(epoch from now() - xact_start)) as xact_secs "
                    "from pg_stat_activity where pid = %s", (holder.info.backend_pid,)).fetchone()
            res["dead"] = conn.execute("select n_dead_tup from pg_stat_user_tables where relid = 'etl.runs'::regclass"
                                       ).fetchone()["n_dead_tup"]
            try:  # informative only: the candidate scan as claim() writes it today
                res["plan"] = "\n".join(r["QUERY PLAN"] for r in conn.execute(
                    # the scan etl.claim opens (no row lock; without its floor): what a full scan walks
                    "explain (analyze, buffers) select r.run_id, r.priority, r.pipeline_run_id, r.critical_path_ms, "
                    "r.next_attempt_at from etl.runs r where r.status = 'queued' and r.next_attempt_at <= now() "
                    "order by -r.priority, r.pipeline_run_id, -r.critical_path_ms, r.next_attempt_at, r.run_id "
                    "limit 4"))
            except psycopg.Error as exc:
                res["plan"] = f"(explain failed: {exc})"
    finally:
        if holder is not None:
            holder.execute("rollback")
            holder.close()
    return res


# ----------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--chains", type=int, default=300)
    ap.add_argument("--bg-rate", type=float, default=2000)
    ap.add_argument("--long-tx-seconds", type=float, default=60)
    ap.add_argument("--pgbench-seconds", type=int, default=20)
    ap.add_argument("--big-batch", type=int, default=200, help="claim size of phase b2 (at most 1000)")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: a,b,b2,c,d,e")
    ap.add_argument("--shared-keys", action="store_true",
                    help="no per-pipeline parameter: runs of one job share its concurrency key")
    ap.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = ap.parse_args()
    if not 1 <= args.big_batch <= 1000:
        ap.error(f"--big-batch must be between 1 and 1000 (etl.claim's max_runs), got {args.big_batch}")
    skip = set(filter(None, args.skip.split(",")))
    global SHARED_KEYS
    SHARED_KEYS = args.shared_keys
    results: dict = {}
    setup()
    try:
        if "d" not in skip:
            clone_bg()
        with connect() as conn:
            results["sync"] = conn.execute("show synchronous_commit").fetchone()["synchronous_commit"]
            results["fsync"] = conn.execute("show fsync").fetchone()["fsync"]
        if "a" not in skip:
            secs = enqueue(args.runs)
            log(f"(a) enqueued {args.runs} runs in {secs:.1f}s ({args.runs / secs:.0f} runs/s enqueue)")
            results["enqueue_rate"] = args.runs / secs
            vacuum()
            done, el, failed = pgbench_push(args.clients, 1, args.runs)
            results["a"] = done / el
            results["a_failed"] = failed
            log(f"(a) pgbench: {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
            fresh_queue(args.clients, args.runs)
            done, el = push(args.clients, 1, args.runs)
            results["a_py"] = done / el
            log(f"(a) python: {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
            fresh_queue(args.clients, args.runs)
            done, el = push_chained(args.clients, args.runs)
            results["a2"] = done / el
            log(f"(a2) {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
        if "b" not in skip:
            fresh_queue(args.clients, args.runs + args.clients * 50)
            done, el, failed = pgbench_push(args.clients, 50, args.runs)
            results["b"] = done / el
            results["b_failed"] = failed
            log(f"(b) pgbench: {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
            fresh_queue(args.clients, args.runs)
            done, el = push(args.clients, 50, args.runs)
            results["b_py"] = done / el
            results["b_deadlocks"] = DEADLOCKS[0]
            log(f"(b) deadlocks so far: {DEADLOCKS[0]}")
            log(f"(b) {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
        if "b2" not in skip:
            # Every client's whole batch must find free slots, or claims come back short.
            with connect() as conn:
                conn.execute("select etl.set_setting('parallel_jobs', %s, 'bench')",
                             (str(max(1000, args.clients * args.big_batch + 100)),))
            fresh_queue(args.clients, args.runs + args.clients * args.big_batch)
            done, el, failed = pgbench_push(args.clients, args.big_batch, args.runs)
            results["b2"], results["b2_failed"] = done / el, failed
            log(f"(b2) pgbench: {done} runs in {el:.1f}s: {done / el:.0f} runs/s")
            with connect() as conn:
                conn.execute("select etl.set_setting('parallel_jobs', '1000', 'bench')")
        if "c" not in skip:
            results["c"] = pgbench(args.clients, args.pgbench_seconds)
            log(f"(c) pgbench -N: {results['c']:.0f} tps")
        if "d" not in skip:
            push(args.clients, 50, 10**9)  # drain whatever (a)/(b) left: the chains run alone
            vacuum()
            results["d_idle"] = chain_latency(args.chains, None)
            d = results["d_idle"]
            log(f"(d) idle: (ii) p95 {pct(d['ii'], 95) * 1000:.2f} ms, {d['elapsed']:.1f}s")
            bg = Background(args.bg_rate)
            # enough for the loaded pass ahead of time (est. 3x the idle pass + warm-up); topped up if short
            need = int(args.bg_rate * (2 + 3 * d["elapsed"]) * 1.3) + 5000
            t0 = time.perf_counter()
            bg.preload(need)
            log(f"(d) {BG_DB}: {bg.enqueued} runs queued in {time.perf_counter() - t0:.1f}s")
            vacuum()
            results["d_load"] = chain_latency(args.chains, bg)
            d = results["d_load"]
            log(f"(d) load: (ii) p95 {pct(d['ii'], 95) * 1000:.2f} ms, background {d['bg_rate']:.0f} runs/s")
        if "e" not in skip:
            push(args.clients, 50, 10**9)
            vacuum()
            # calibrate the rate of 1 + 4 claimers to enqueue enough ahead for the whole measurement
            enqueue(10000)
            vacuum()
            cal = claim_load(3)
            push(args.clients, 50, 10**9)
            preload = int(cal["rate"] * args.long_tx_seconds * 1.5) + 5000
            results["e_preload"] = preload
            log(f"(e) calibration: {cal['rate']:.0f} runs/s, enqueue {preload} ahead per pass")
            results["e_base"] = claim_latency_phase(args.long_tx_seconds, False, preload)
            push(args.clients, 50, 10**9)
            results["e_long"] = claim_latency_phase(args.long_tx_seconds, True, preload)
            push(args.clients, 50, 10**9)
    finally:
        if not args.keep:
            devtools.drop_database(DB)
            devtools.drop_database(PGBENCH_DB)
            devtools.drop_database(BG_DB)
    results["deadlocks_total"] = DEADLOCKS[0]
    report(results, args)
    return 0


def report(r: dict, args) -> None:
    ms = lambda v: f"{v * 1000:8.2f} ms"  # noqa: E731
    rows: list[tuple[str, str, str]] = []
    half = r.get("c", 0) / 2
    if "a" in r:
        rows.append((f"(a) claim(w,1)+finish, {args.clients} pgbench clients, runs/s", f"{r['a']:10.0f}", ">= 2,500"))
        if half:
            rows.append(("    (a) / (pgbench tps / 2)", f"{r['a'] / half:10.2f}", ""))
        rows.append(("    (a) failed script runs (deadlock or serialization, retried up to 10 times)",
                     f"{r['a_failed']:10d}", "0"))
        rows.append((f"    the same from {args.clients} Python threads (psycopg), runs/s", f"{r['a_py']:10.0f}", "(info)"))
    if "a2" in r:
        rows.append((f"(a2) finish(prev)+claim(w,1) in one transaction, {args.clients} clients, runs/s",
                     f"{r['a2']:10.0f}", "(info)"))
        if "c" in r:
            rows.append(("    (a2) / pgbench tps (one commit per run)", f"{r['a2'] / r['c']:10.2f}", ""))
    if "b" in r:
        rows.append((f"(b) claim(w,50)+finish_many, {args.clients} pgbench clients, runs/s", f"{r['b']:10.0f}", ">= 6,000"))
        if half:
            rows.append(("    (b) / (pgbench tps / 2)", f"{r['b'] / half:10.2f}", ""))
        rows.append(("    (b) failed script runs (deadlock or serialization, retried up to 10 times)",
                     f"{r['b_failed']:10d}", "0"))
        rows.append((f"    the same from {args.clients} Python threads (psycopg), runs/s", f"{r['b_py']:10.0f}", "(info)"))
        rows.append(("    claim deadlocks detected (retried) during (a)+(b)", f"{r['b_deadlocks']:10d}", "0"))
    if "b2" in r:
        rows.append((f"(b2) claim(w,{args.big_batch})+finish_many, {args.clients} pgbench clients, runs/s",
                     f"{r['b2']:10.0f}", ">= 6,000"))
        if half:
            rows.append(("    (b2) / (pgbench tps / 2)", f"{r['b2'] / half:10.2f}", ""))
        rows.append(("    (b2) failed script runs", f"{r['b2_failed']:10d}", "0"))
    if "c" in r:
        rows.append((f"(c) pgbench -N -c {args.clients} -j 2 tps", f"{r['c']:10.0f}", ""))
        rows.append(("    physical limit tps/2 (runs/s, 2 commits per run)", f"{half:10.0f}", ""))
    if "enqueue_rate" in r:
        rows.append(("    enqueue (trigger_pipeline x50 jobs, 4 conns) runs/s", f"{r['enqueue_rate']:10.0f}", "(info)"))
    for key, label, target in (("d_idle", "idle", "< 5 ms"), ("d_load", "under load", "< 20 ms")):
        if key not in r:
            continue
        d = r[key]
        extra = (f", background {d['bg_rate']:.0f} runs/s in {BG_DB} (target {args.bg_rate:.0f})"
                 if key == "d_load" else "")
        rows.append((f"(d) child release {label}{extra}: {len(d['ii'])}/{d['chains']} chains claimed by the "
                     f"listener ({d['missed']} not within 5 s)", "", ""))
        rows.append((f"    release in the parent's finish transaction (same xmin): {d['same_tx']}/{len(d['i'])}",
                     "", ""))
        for name, vals, tgt in (
                ("(i)  finish call -> COMMIT returned (= child claimable: released in that tx)", d["i"], "(info)"),
                ("(ii) finish COMMIT returned -> child claimed by LISTENer", d["ii"], f"p95 {target}")):
            rows.append((f"    {name} p50/p95/p99",
                         f"{pct(vals, 50) * 1000:.2f}/{pct(vals, 95) * 1000:.2f}/{pct(vals, 99) * 1000:.2f} ms", tgt))
        if d["negative"]:
            rows.append(("    (ii) samples < 0 (claim returned before the driver saw its COMMIT)",
                         f"{d['negative']:10d}", ""))
    rows.append(("deadlocks detected and retried in the whole run", f"{r.get('deadlocks_total', 0):10d}", "0"))
    if "e_base" in r and "e_long" in r:
        b, l = r["e_base"], r["e_long"]
        for e, name in ((b, "baseline"), (l, f"with a {args.long_tx_seconds:.0f}s open REPEATABLE READ snapshot")):
            rows.append((f"(e) claim(w,1) p50/p95, {name}: 1 measured + 4 claimers, {e['rate']:.0f} runs/s "
                         f"({len(e['lat'])} claims measured, {e['empty']} empty, {e['topups']} top-ups, "
                         f"{e['left']} left, dead tuples {e['dead']})",
                         f"{pct(e['lat'], 50) * 1000:.2f}/{pct(e['lat'], 95) * 1000:.2f} ms", ""))
        rows.append(("    ratio p95 long tx / baseline", f"{pct(l['lat'], 95) / pct(b['lat'], 95):10.2f}", "< 2"))
    width = max(len(a) for a, _, _ in rows) + 2
    print()
    print(f"dispatch benchmark — synchronous_commit is {r.get('sync')} (SHOW synchronous_commit), "
          f"fsync={r.get('fsync')}, cores={os.cpu_count()}")
    print(f"{'figure':<{width}}{'value':>22}   target")
    print("-" * (width + 40))
    for a, v, t in rows:
        print(f"{a:<{width}}{v:>22}   {t}")
    if "e_long" in r:
        print("\nclaim candidate scan at the end of (e) with the snapshot held:\n" + r["e_long"]["plan"])
        print("\nsame, baseline:\n" + r["e_base"]["plan"])


if __name__ == "__main__":
    sys.exit(main())
