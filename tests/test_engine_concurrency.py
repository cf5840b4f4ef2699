"""The engine under real concurrency: several connections claim, finish, trigger and LISTEN at once.

Every test runs against a fresh database cloned from the deployed template (fixture `db`). Nothing
is mocked and nothing sleeps to synchronise: threads meet at barriers, and waits are on observable
conditions (a row, a lock wait in pg_stat_activity, a notification) with a deadline.
"""
from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

DEADLINE_S = 60.0
SUCCESS = '{"status": "success"}'


# --------------------------------------------------------------------------------------------
# helpers


def make_jobs(conn, n: int, prefix: str = "j", **columns) -> list[str]:
    slugs = [f"{prefix}{i:02d}" for i in range(1, n + 1)]
    extra_cols = "".join(f", {c}" for c in columns)
    extra_vals = "".join(", %s" for _ in columns)
    with conn.cursor() as cur:
        cur.executemany(
            f"insert into etl.jobs (slug, name, kind, target{extra_cols}) "
            f"values (%s, %s, 'python', 'm:f'{extra_vals})",
            [(s, s, *columns.values()) for s in slugs])
    return slugs


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Polls predicate until it returns something truthy; fails the test after timeout."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")


class Sampler(threading.Thread):
    """Runs each query repeatedly on its own connection; keeps every sample until stopped."""

    def __init__(self, db, queries: dict[str, str]):
        super().__init__(daemon=True)
        self.db, self.queries = db, queries
        self.samples: dict[str, list[int]] = {k: [] for k in queries}
        self.stop = threading.Event()
        self.sampling = threading.Event()
        self.error: BaseException | None = None

    def start(self):
        """Starts sampling and returns once the first samples are in: a drain begun before the
        sampler's connection was up could end unseen."""
        super().start()
        self.sampling.wait(10)

    def run(self):
        try:
            with self.db.connect() as conn:
                while not self.stop.is_set():
                    for name, sql in self.queries.items():
                        self.samples[name].append(conn.execute(sql).fetchone()["n"])
                    self.sampling.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.sampling.set()

    def finish(self) -> dict[str, list[int]]:
        self.stop.set()
        self.join(10)
        assert not self.is_alive(), "sampler did not stop"
        if self.error:
            raise self.error
        return self.samples


def drain_with_claimers(db, n_threads: int, batch: int, run_ids: list[int],
                        hold: float = 0.0) -> list[tuple[str, int]]:
    """n_threads connections claim(worker, batch) and finish each claim with success until every
    run in run_ids is finished, holding each claimed batch `hold` seconds (a run that takes time,
    so that a sampler sees it). Returns every (worker, run_id) claimed."""
    barrier = threading.Barrier(n_threads)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + DEADLINE_S

    def worker(i: int):
        name = f"w{i}"
        with db.connect() as conn:
            barrier.wait(10)
            while time.monotonic() < deadline:
                rows = conn.execute("select run_id, token from etl.claim(%s, %s)", (name, batch)).fetchall()
                if rows and hold:
                    time.sleep(hold)
                for r in rows:
                    with lock:
                        claimed.append((name, r["run_id"]))
                    conn.execute("select etl.finish(%s, %s, %s)", (r["run_id"], r["token"], SUCCESS))
                if not rows:
                    left = conn.execute(
                        "select count(*) as n from etl.runs where run_id = any(%s) "
                        "and status in ('pending', 'queued', 'running')", (run_ids,)).fetchone()["n"]
                    if left == 0:
                        return
            raise TimeoutError(f"{name}: runs still unfinished after {DEADLINE_S}s")

    with ThreadPoolExecutor(n_threads) as pool:
        for f in [pool.submit(worker, i) for i in range(n_threads)]:
            f.result()
    return claimed


def assert_each_ran_once(conn, run_ids: list[int]):
    rows = conn.execute(
        """select r.run_id, r.status, r.attempt_count,
                  (select count(*) from etl.run_attempts a where a.run_id = r.run_id) as attempts,
                  (select count(*) from etl.run_attempts a where a.run_id = r.run_id and a.status = 'success') as ok,
                  (select count(*) from etl.run_events e where e.run_id = r.run_id
                     and e.from_status = 'queued' and e.to_status = 'running') as q_to_r,
                  (select count(*) from etl.run_events e where e.run_id = r.run_id
                     and e.from_status = 'running' and e.to_status = 'success') as r_to_s
             from etl.runs r where r.run_id = any(%s) order by r.run_id""", (run_ids,)).fetchall()
    assert len(rows) == len(run_ids)
    bad = [r for r in rows if (r["status"], r["attempt_count"], r["attempts"], r["ok"], r["q_to_r"], r["r_to_s"])
           != ("success", 1, 1, 1, 1, 1)]
    assert not bad, bad
    leftovers = conn.execute(
        "select (select count(*) from etl.job_locks where status = 'active') as locks,"
        "       (select count(*) from etl.run_slots where run_id is not null) as slots").fetchone()
    assert leftovers == {"locks": 0, "slots": 0}


def trigger(conn, slugs: list[str]) -> list[int]:
    pid = conn.execute("select etl.trigger_pipeline(jobs => %s) as p", (slugs,)).fetchone()["p"]
    return [r["run_id"] for r in conn.execute(
        "select run_id from etl.runs where pipeline_run_id = %s order by run_id", (pid,))]


# --------------------------------------------------------------------------------------------
# a. the global bound


def test_parallel_jobs_bound_holds_under_concurrent_claimers(db):
    with db.connect() as conn:
        slugs = make_jobs(conn, 40)
        conn.execute("select etl.set_setting('parallel_jobs', '5', 'test')")
        run_ids = trigger(conn, slugs)
        assert len(run_ids) == 40
        assert conn.execute("select count(*) as n from etl.runs where status = 'queued'").fetchone()["n"] == 40

        sampler = Sampler(db, {
            "running": "select count(*) as n from etl.runs where status = 'running'",
            "slots": "select count(*) as n from etl.run_slots where run_id is not null",
        })
        sampler.start()
        claimed = drain_with_claimers(db, n_threads=8, batch=3, run_ids=run_ids, hold=0.005)
        samples = sampler.finish()

        assert sorted(r for _, r in claimed) == run_ids, "every run claimed exactly once"
        assert max(samples["running"]) <= 5, max(samples["running"])
        assert max(samples["slots"]) <= 5, max(samples["slots"])
        assert max(samples["running"]) >= 1, "the sampler saw the runs running"
        assert conn.execute("select count(*) as n from etl.run_slots where not retired").fetchone()["n"] == 5
        assert_each_ran_once(conn, run_ids)
        # pending -> queued once per run too
        assert conn.execute(
            "select count(*) as n from etl.run_events where run_id = any(%s) "
            "and from_status = 'pending' and to_status = 'queued'", (run_ids,)).fetchone()["n"] == 40


# --------------------------------------------------------------------------------------------
# b. the concurrency key


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_key_excludes_under_concurrent_claimers(db, limit):
    with db.connect() as conn:
        slugs = make_jobs(conn, 10, concurrency_key="shared", concurrency_limit=limit)
        others = make_jobs(conn, 10, prefix="o")  # free jobs that must not be held back
        conn.execute("select etl.set_setting('parallel_jobs', '50', 'test')")
        run_ids = trigger(conn, slugs)
        other_ids = trigger(conn, others)
        job_ids = [r["job_id"] for r in conn.execute("select job_id from etl.jobs where slug = any(%s)", (slugs,))]

        sampler = Sampler(db, {
            "locks": "select count(*) as n from etl.job_locks where pool_key = 'shared' and status = 'active'",
            "running": f"select count(*) as n from etl.runs where status = 'running' "
                       f"and job_id in ({','.join(map(str, job_ids))})",
        })
        sampler.start()
        claimed = drain_with_claimers(db, n_threads=8, batch=3, run_ids=run_ids + other_ids, hold=0.005)
        samples = sampler.finish()

        assert sorted(r for _, r in claimed) == sorted(run_ids + other_ids)
        assert max(samples["locks"]) <= limit, max(samples["locks"])
        assert max(samples["running"]) <= limit, max(samples["running"])
        assert max(samples["locks"]) >= 1
        assert_each_ran_once(conn, run_ids + other_ids)
        # the lock slots used were exactly the pool's: shared, shared#2, shared#3
        keys = {r["concurrency_key"] for r in conn.execute(
            "select distinct concurrency_key from etl.job_locks where pool_key = 'shared'")}
        assert keys <= {"shared"} | {f"shared#{k}" for k in range(2, limit + 1)}


def test_concurrency_key_overlap_in_one_transaction_is_excluded(db):
    """Even a single claimer asking for many runs in one call takes one per key."""
    with db.connect() as conn:
        slugs = make_jobs(conn, 10, concurrency_key="shared")
        run_ids = trigger(conn, slugs)
        rows = conn.execute("select run_id from etl.claim('solo', 10)").fetchall()
        assert len(rows) == 1
        assert conn.execute("select count(*) as n from etl.runs where run_id = any(%s) and status = 'running'",
                            (run_ids,)).fetchone()["n"] == 1


def test_a_hot_key_never_makes_a_claim_fail(db):
    """Eight claimers race for one key whose holder finishes at once, 250 times over. A claimer
    that takes the key's advisory lock just after the previous holder committed and let go must
    see that holder's lock row: a look made in the same statement as the lock (with a snapshot
    from before it) missed it now and then and inserted a second active lock, which the unique
    index refused (an error from etl.claim)."""
    with db.connect() as conn:
        slugs = make_jobs(conn, 250, prefix="hot", concurrency_key="hot")
        conn.execute("select etl.set_setting('parallel_jobs', '50', 'test')")
        run_ids = trigger(conn, slugs)
        claimed = drain_with_claimers(db, n_threads=8, batch=3, run_ids=run_ids)
        assert sorted(r for _, r in claimed) == sorted(run_ids)
        assert_each_ran_once(conn, run_ids)


# --------------------------------------------------------------------------------------------
# c. LISTEN etl_runnable


def test_listen_wakes_a_waiting_runner_once_per_transaction(db):
    with db.connect() as listener, db.connect() as conn:
        slugs = make_jobs(conn, 11)
        conn.execute("select etl.set_setting('parallel_jobs', '20', 'test')")
        listener.execute("listen etl_runnable")

        # one trigger of 10 roots in one transaction, then a sentinel trigger in another one:
        # notifications arrive in commit order, so everything before the sentinel is the first one's.
        first = trigger(conn, slugs[:10])
        sentinel = trigger(conn, slugs[10:])
        got = []
        for n in listener.notifies(timeout=5):
            got.append(n)
            if n.payload == str(sentinel[0]):
                break
        assert got and got[-1].payload == str(sentinel[0]), f"sentinel never arrived: {got}"
        assert [n.channel for n in got] == ["etl_runnable", "etl_runnable"], got
        assert int(got[0].payload) in first
        assert conn.execute("select status from etl.runs where run_id = %s",
                            (int(got[0].payload),)).fetchone()["status"] == "queued"

        # a runner woken by the notification claims the run
        rows = listener.execute("select run_id from etl.claim('listener', 20)").fetchall()
        assert {r["run_id"] for r in rows} == set(first + sentinel)


def test_listen_blocks_until_a_trigger_commits(db):
    """A runner waiting in notifies() is woken by a commit on another connection."""
    with db.connect() as listener, db.connect() as conn:
        make_jobs(conn, 1)
        listener.execute("listen etl_runnable")
        got: list = []
        waiting = threading.Event()

        def wait():
            waiting.set()
            for n in listener.notifies(timeout=10, stop_after=1):
                got.append(n)

        t = threading.Thread(target=wait)
        t.start()
        waiting.wait(5)
        run_id = conn.execute("select etl.run_job('j01') as r").fetchone()["r"]
        t.join(15)
        assert not t.is_alive()
        assert [n.payload for n in got] == [str(run_id)]


# --------------------------------------------------------------------------------------------
# d. fencing


def test_stale_token_after_reap_is_refused_in_a_real_race(db):
    with db.connect() as a, db.connect() as b, db.connect(autocommit=False) as b_tx:
        make_jobs(a, 1)
        run_id = a.execute("select etl.run_job('j01') as r").fetchone()["r"]
        claim_a = a.execute("select run_id, token from etl.claim('runner-a', 1)").fetchone()
        assert claim_a["run_id"] == run_id

        # runner A goes silent: its lease runs out and the reaper retries the run
        b.execute("update etl.job_locks set expires_at = now() - interval '1 second' where run_id = %s", (run_id,))
        reaped = b.execute("select etl.tick() as t").fetchone()["t"]
        assert reaped["leases_reaped"] == 1
        assert b.execute("select status from etl.runs where run_id = %s", (run_id,)).fetchone()["status"] == "queued"
        b.execute("update etl.runs set next_attempt_at = now() where run_id = %s", (run_id,))

        # B claims in a transaction it keeps open; A's late finish queues behind B's row lock
        claim_b = b_tx.execute("select run_id, token from etl.claim('runner-b', 1)").fetchone()
        assert claim_b["run_id"] == run_id and claim_b["token"] != claim_a["token"]
        a_pid = a.info.backend_pid
        result: dict = {}

        def late_finish():
            try:
                a.execute("select etl.finish(%s, %s, %s)", (run_id, claim_a["token"], SUCCESS))
                result["ok"] = True
            except psycopg.Error as exc:
                result["error"] = exc

        t = threading.Thread(target=late_finish)
        t.start()
        wait_for(lambda: b.execute("select cardinality(pg_blocking_pids(%s)) > 0 as w", (a_pid,)).fetchone()["w"]
                 or not t.is_alive(), what="A's finish to wait on B's lock")
        b_tx.commit()
        t.join(10)
        assert not t.is_alive()
        assert "ok" not in result, "a stale token was accepted"
        assert result["error"].sqlstate == "ETL01", result["error"]

        # the run's outcome is B's alone
        assert b.execute("select etl.finish(%s, %s, %s) as s",
                         (run_id, claim_b["token"], '{"status": "failed", "error_category": "DATA"}')
                         ).fetchone()["s"] == "failed"
        run = b.execute("select status, attempt_count, error_category from etl.runs where run_id = %s",
                        (run_id,)).fetchone()
        assert run == {"status": "failed", "attempt_count": 2, "error_category": "DATA"}
        attempts = b.execute("select attempt_no, worker_id, status from etl.run_attempts where run_id = %s "
                             "order by attempt_no", (run_id,)).fetchall()
        assert attempts == [{"attempt_no": 1, "worker_id": "runner-a", "status": "lost"},
                            {"attempt_no": 2, "worker_id": "runner-b", "status": "failed"}]
        # and A's token stays refused afterwards
        with pytest.raises(psycopg.Error) as exc:
            a.execute("select etl.finish(%s, %s, %s)", (run_id, claim_a["token"], SUCCESS))
        assert exc.value.sqlstate == "ETL01"
        with pytest.raises(psycopg.Error) as exc:
            a.execute("select etl.heartbeat(%s, %s)", (run_id, claim_a["token"]))
        assert exc.value.sqlstate == "ETL01"


def test_two_finishes_of_one_attempt_race_and_only_one_wins(db):
    with db.connect() as conn:
        make_jobs(conn, 1)
        run_id = conn.execute("select etl.run_job('j01') as r").fetchone()["r"]
        c = conn.execute("select run_id, token from etl.claim('w', 1)").fetchone()
    barrier = threading.Barrier(4)

    def finish(_):
        with db.connect() as conn:
            barrier.wait(10)
            try:
                return conn.execute("select etl.finish(%s, %s, %s) as s", (run_id, c["token"], SUCCESS)).fetchone()["s"]
            except psycopg.Error as exc:
                return exc.sqlstate

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(finish, range(4)))
    assert sorted(results) == ["ETL01", "ETL01", "ETL01", "success"]


@pytest.mark.parametrize("via", ["finish", "finish_many"])
def test_the_last_two_finishers_of_a_pipeline_run_close_it(db, via):
    """Each of the last two runs finishes while the other is still running in its snapshot: the
    second finalizer waits for the first to commit and then closes the pipeline run."""
    with db.connect() as conn:
        slugs = make_jobs(conn, 2)
        run_ids = trigger(conn, slugs)
        claimed = {r["run_id"]: r["token"] for r in conn.execute("select run_id, token from etl.claim('w', 2)")}
        assert sorted(claimed) == run_ids
        pid = conn.execute("select pipeline_run_id as p from etl.runs where run_id = %s", (run_ids[0],)).fetchone()["p"]

    def finish_sql(conn, run_id):
        if via == "finish":
            return conn.execute("select etl.finish(%s, %s, %s) as s", (run_id, claimed[run_id], SUCCESS))
        return conn.execute("select status as s from etl.finish_many(%s::jsonb)", (
            f'[{{"run_id": {run_id}, "token": {claimed[run_id]}, "outcome": {SUCCESS}}}]',))

    with db.connect() as first, db.connect() as second, db.connect() as watch:
        first.autocommit = second.autocommit = False
        assert finish_sql(first, run_ids[0]).fetchone()["s"] == "success"   # not committed yet
        second_pid = second.info.backend_pid
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(lambda: (finish_sql(second, run_ids[1]).fetchone()["s"], second.commit()))
            # The second finisher sees the first run still running and waits for its commit.
            wait_for(lambda: watch.execute(
                "select wait_event_type = 'Lock' as w from pg_stat_activity where pid = %s",
                (second_pid,)).fetchone()["w"], what="the second finisher to wait on the first")
            first.commit()
            assert fut.result(timeout=DEADLINE_S)[0] == "success"
        row = watch.execute("select status, ended_at is not null as ended from etl.pipeline_runs "
                            "where pipeline_run_id = %s", (pid,)).fetchone()
    assert row == {"status": "success", "ended": True}


# --------------------------------------------------------------------------------------------
# e. idempotent enqueue


def test_run_job_with_one_correlation_id_is_idempotent_under_concurrency(db):
    with db.connect() as conn:
        make_jobs(conn, 1)
    cid = str(uuid.uuid4())
    n = 8
    barrier = threading.Barrier(n)

    def enqueue(_):
        with db.connect() as conn:
            barrier.wait(10)
            return conn.execute("select etl.run_job('j01', correlation_id => %s) as r", (cid,)).fetchone()["r"]

    with ThreadPoolExecutor(n) as pool:
        ids = list(pool.map(enqueue, range(n)))
    assert len(set(ids)) == 1 and ids[0] is not None, ids
    with db.connect() as conn:
        assert conn.execute("select count(*) as n from etl.runs where correlation_id = %s", (cid,)).fetchone()["n"] == 1
        assert conn.execute("select count(*) as n from etl.pipeline_runs where idempotency_key = %s",
                            (f"run:{cid}",)).fetchone()["n"] == 1
        assert conn.execute("select count(*) as n from etl.runs").fetchone()["n"] == 1


# --------------------------------------------------------------------------------------------
# f. the claim floor (the long-open-transaction mitigation) never loses a run


def test_claim_floor_finds_runs_behind_it(db):
    with db.connect() as c:
        make_jobs(c, 3)
        for slug in ("j01", "j02", "j03"):
            c.execute("select etl.run_job(%s)", (slug,))
        ids = [r["run_id"] for r in c.execute(
            "select run_id from etl.runs order by pipeline_run_id, -critical_path_ms, next_attempt_at, run_id").fetchall()]
        # Pretend a slow full scan put this session in floored mode, its floor at the second run
        # (the claim order: -priority, pipeline run, -critical_path_ms, next_attempt_at, run id).
        row = c.execute("select pipeline_run_id, critical_path_ms, next_attempt_at::text as t from etl.runs "
                        "where run_id = %s", (ids[1],)).fetchone()
        c.execute("select set_config('etl.claim_floor', %s, false)",
                  (f"0|{row['pipeline_run_id']}|{-row['critical_path_ms']}|{row['t']}|{ids[1]}|infinity",))
        first = c.execute("select run_id from etl.claim('w', 1)").fetchone()["run_id"]
        assert first == ids[2], "a floored claim starts after the floor"
        # Nothing is left ahead of the floor: the floored scan comes up short, the full scan runs.
        behind = {r["run_id"] for r in c.execute("select run_id from etl.claim('w', 5)").fetchall()}
        assert behind == {ids[0], ids[1]}, "runs behind the floor are claimed by the full scan"
