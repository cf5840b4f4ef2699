"""The runner daemon: claims runs through etl.claim, executes them, heartbeats, reports.

One process, N slots. It sleeps until a NOTIFY on etl_runnable, a slot frees up, or the engine's
next wake-up time (etl.next_wakeup), with a long safety poll; it never busy-polls. SIGTERM or SIGINT:
stop claiming, let in-flight runs finish within the grace period, hand back what is left (a
transient SYSTEM failure the engine retries elsewhere), exit 0. SIGKILL loses nothing: the lease
expires, a runner with a free slot wakes then (etl.next_lease_expiry) and reaps it (or etl.tick()
does), and the engine retries the run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from . import __version__, queries, units
from .queries import STALE_TOKEN
from .context import Cancelled, JobContext, JobError
from .hotconns import HotConnections
from .http import HttpClient
from .executors import outcome_from_exception, run_python, run_sql
from .logsink import RunLogHandler, ensure_redacting
from .redact import redact_outcome, redact_text
from .metrics import RunnerMetrics

SERVICE_BEAT_SECONDS = 10.0  # the runner's etl.service_heartbeats row is refreshed this often
# Heartbeats retried during an outage at most this far apart (and a quarter of the shortest lease)...
HEARTBEAT_RETRY_CAP = 5.0
# ...so a runner that has just (re)connected leaves expired leases alone this long: after an outage
# longer than a lease, every lease looks expired, and the peers' heartbeats renew theirs meanwhile.
REAP_GRACE_SECONDS = 1.5 * HEARTBEAT_RETRY_CAP + 1.0



class JsonFormatter(logging.Formatter):
    """One JSON object a line, with stable keys (action, run_id, ...) that can double as labels."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def make_logger(name: str = "etl.runner") -> logging.Logger:
    log = logging.getLogger(name)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


class FieldsAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        fields = dict(self.extra)
        fields.update(kwargs.pop("fields", {}))
        kwargs["extra"] = {"fields": fields}
        return msg, kwargs


@dataclass(frozen=True)
class Claimed:
    run_id: int
    token: int
    attempt_no: int
    pipeline_run_id: int
    job_id: int
    job_slug: str
    kind: str
    target: str
    params: dict
    cursor: dict | None
    dry_run: bool
    mode: str
    logical_date: Any
    correlation_id: Any
    max_attempts: int
    timeout_ms: int
    lease_expires_at: Any
    items_source: dict | None = None
    item_concurrency: int = 1
    group_id: int | None = None
    group_members: list | None = None  # a group leader: the other members, in sequence
    refreshes: bool = False  # the job has materialized views to refresh after it
    lease_left: float | None = None  # seconds of lease at the claim, by the database's clock


@dataclass
class InFlight:
    claim: Claimed
    ctx: JobContext
    claimed_at: float
    lease_seconds: float
    future: Future | None = None
    backend_pid: int | None = None
    lost: bool = False
    handed_back: bool = False
    last_beat: float = field(default_factory=time.monotonic)
    items_failed: int = 0  # this attempt's items that failed (the engine works out the run's outcome)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, wake: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set the stop event and wake the loop; the previous handlers come back on exit."""
    def handler(signum, _frame):
        stop.set()
        wake.set()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Runner:
    def __init__(self, dsn: str, slots: int = 4, worker_id: str | None = None, grace: float = 30.0,
                 safety_poll: float = 30.0, metrics_port: int | None = None, metrics_host: str = "127.0.0.1"):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.dsn = dsn
        self.slots = slots
        self.worker_id = worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
        self.grace = grace
        self.safety_poll = safety_poll
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.in_flight: dict[int, InFlight] = {}
        # Slots promised to claims still in the database (a report's, the loop's): counted as busy
        # until their runs are in in_flight, so two claimers never take the same free slot.
        self.reserved = 0
        self.log = FieldsAdapter(make_logger(), {"worker": self.worker_id})
        self.pool: ConnectionPool | None = None
        self.reports: HotConnections | None = None
        self.fatal: BaseException | None = None
        self.metrics = RunnerMetrics(worker=self.worker_id)
        # Job logs go to stderr as JSON lines and, batched, to etl.run_logs; both see them redacted.
        self.job_logger = make_logger("etl.job")
        ensure_redacting(self.job_logger)
        ensure_redacting(self.log.logger)
        self.log_sink: RunLogHandler | None = None
        self.metrics_port = metrics_port
        self.abandoned_jobs = 0  # jobs still running in slot threads after the drain handed them back
        self.metrics_host = metrics_host

    # ------------------------------------------------------------------ connections

    def _connect(self, **kw) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row,
                               application_name=f"etl-runner {self.worker_id}", **kw)

    def _retrying(self, what: str, fn, attempts: int = 8, until: float | None = None):
        """Run fn(); on a lost connection retry with capped, jittered backoff, logging each try:
        `attempts` times, and beyond that until the monotonic time `until` when one is given."""
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except psycopg.OperationalError as exc:
                out_of_tries = attempt >= attempts and (until is None or time.monotonic() >= until)
                if out_of_tries or self.stop.is_set() and what != "finish":
                    raise
                self.log.warning("database unreachable, retrying", fields={
                    "action": what, "attempt": attempt, "error": str(exc).strip()[:200]})
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 10.0)

    # ------------------------------------------------------------------ threads

    def _listen(self) -> None:
        """LISTEN on its own connection; a NOTIFY only wakes the claim loop, etl.claim decides."""
        backoff = 0.5
        while not self.stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(queries.LISTEN)
                    backoff = 0.5
                    self.wake.set()  # notifications sent while we were away are gone: claim once
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.wake.set()
                        conn.execute("select 1")  # prove the connection lives
            except psycopg.OperationalError as exc:
                self.log.warning("listener lost its connection", fields={"action": "listen", "error": str(exc).strip()[:200]})
                time.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 10.0)
            except BaseException as exc:  # a dead side thread stops the runner loudly
                self.fatal = exc
                self.stop.set()
                self.wake.set()
                return

    def _heartbeats(self) -> None:
        conn = None
        backoff, retry_at = 0.5, 0.0  # while the database is away: capped, jittered backoff
        while not self.stop.is_set() or self.in_flight:
            time.sleep(0.2)
            now = time.monotonic()
            if now < retry_at:
                continue
            with self.lock:
                due = [f for f in self.in_flight.values()
                       if not f.lost and now - f.last_beat >= f.lease_seconds / 3]
            for f in due:
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                    beat = conn.execute(queries.HEARTBEAT, {"run_id": f.claim.run_id,
                                                            "token": f.claim.token}).fetchone()["beat"]
                    f.last_beat = now
                    backoff = 0.5
                    if beat.get("cancel_requested") and not f.ctx.cancelled:
                        self.log.info("cancel requested", fields={"action": "cancel", "run_id": f.claim.run_id})
                        self._cancel(f)
                except psycopg.Error as exc:
                    if getattr(exc, "sqlstate", None) == STALE_TOKEN:
                        f.lost = True
                        self.log.warning("lease lost; the result will be dropped", fields={
                            "action": "heartbeat", "run_id": f.claim.run_id})
                        self._cancel(f)
                    else:
                        self.log.warning("heartbeat failed", fields={"action": "heartbeat", "run_id": f.claim.run_id,
                                                                     "error": str(exc).strip()[:200]})
                        conn = None
                        if isinstance(exc, psycopg.OperationalError):
                            retry_at = time.monotonic() + backoff * (0.5 + random.random())
                            # (never so long that a lease ends between two tries)
                            with self.lock:
                                shortest = min((g.lease_seconds for g in self.in_flight.values()), default=30.0)
                            backoff = min(backoff * 2, HEARTBEAT_RETRY_CAP, max(shortest / 4, 0.5))
                            break  # the other runs' beats wait for the same database

    def _cancel(self, f: InFlight) -> None:
        f.ctx.cancel_event.set()
        if f.backend_pid:
            with contextlib.suppress(psycopg.Error), self._connect() as c:
                c.execute("select pg_cancel_backend(%s)", (f.backend_pid,))

    # ------------------------------------------------------------------ work

    def item_logger(self, c: Claimed, item: dict) -> FieldsAdapter:
        return FieldsAdapter(self.job_logger, {
            "job": c.job_slug, "job_id": c.job_id, "run_id": c.run_id, "attempt": c.attempt_no,
            "attempt_id": c.token, "item_id": item["item_id"], "item_no": item["item_no"]})

    def _execute(self, f: InFlight | None) -> None:
        """A slot thread: runs f, reports it, and goes on with the first run the report claimed
        (no hand-over to another thread between the steps of a chain)."""
        while f is not None:
            f = self._report(f, self._outcome(f))

    def _outcome(self, f: InFlight) -> dict:
        """Executes the claimed run; every failure becomes an outcome, none escapes the slot."""
        c = f.claim
        try:
            if c.group_members is not None:
                outcome = units.run_group(self, f)
            elif c.items_source:
                outcome = units.run_items(self, f)
            elif c.kind == "python":
                outcome = run_python(c.target, f.ctx)
            else:
                with self.pool.connection() as conn:
                    conn.autocommit = True
                    f.backend_pid = conn.info.backend_pid
                    try:
                        outcome = run_sql(conn, c.target, f.ctx, c.timeout_ms)
                    finally:
                        f.backend_pid = None
        except units.LeaseLost as exc:
            f.lost = True
            outcome = {"status": "failed", "error_category": "SYSTEM", "message": str(exc)}
        except BaseException as exc:  # every failure is reported, none escapes the slot
            outcome = outcome_from_exception(exc)
            if not isinstance(exc, (JobError, Cancelled)):
                # Not a failure the job classified itself: where it came from goes to the run's log.
                f.ctx.log.error("job raised %s: %s", type(exc).__name__, exc, exc_info=exc)
            if f.ctx.cancelled and isinstance(exc, psycopg.errors.QueryCanceled):
                outcome = {"status": "cancelled", "message": "cancelled by an operator"}
        wants_refresh = c.refreshes or any(m.get("refreshes") for m in (c.group_members or []))
        if wants_refresh and not f.lost and outcome.get("status") != "cancelled":
            # A run with items reports success when its items are done; it succeeded only if none
            # of them failed (else it is retried, fails, or ends a partial success: no on_success).
            succeeded = outcome.get("status") in ("success", "partial_success") and not f.items_failed
            try:
                units.refresh_views(self, f, succeeded=succeeded)
            except psycopg.Error as exc:
                if getattr(exc, "sqlstate", None) == STALE_TOKEN:
                    f.lost = True
                else:
                    self.log.error("view refresh failed", fields={"action": "refresh", "run_id": c.run_id,
                                                                  "error": str(exc).strip()[:300]})
        return outcome

    def _report(self, f: InFlight, outcome: dict, handing_back: bool = False) -> InFlight | None:
        """Reports f (with the claim of this slot's next runs, in one statement) and returns the
        first run claimed, for the calling slot thread to run next; the others go to other slots."""
        c = f.claim
        next_claims: list[Claimed] = []
        short_claim = [False]
        reservation = [0]  # slots reserved for the report's claim (see send)
        fields = {"action": "finish", "run_id": c.run_id, "job": c.job_slug, "attempt": c.attempt_no,
                  "status": outcome.get("status"), "error_category": outcome.get("error_category")}
        # Free text leaves the process redacted, as the logs do (structured fields such as a cursor
        # are data, not prose, and go as they are).
        outcome = redact_outcome(outcome)
        if f.lost or (f.handed_back and not handing_back):
            self.log.warning("dropping the result of a run whose lease was lost or handed back", fields=fields)
        else:
            def send():
                # The report and the claim of this slot's next run are one statement (one round
                # trip, one commit per step): a child released by this finish is claimable in it.
                next_claims.clear()
                claim = not self.stop.is_set() and not handing_back
                # Every free slot, this one included (reserved: the claim loop, woken by this
                # commit's NOTIFY, must not count them free again before they are registered); a
                # claim that comes back short took all there was. A retried send reserves afresh.
                self._register(reservation[0], [])
                reservation[0] = want = self._free_slots(own=1) if claim else 0
                params = {"run_id": c.run_id, "token": c.token, "outcome": json.dumps(outcome, default=str),
                          "worker": self.worker_id, "max_runs": max(1, want)}
                with self.reports.connection() as conn:
                    rows = None
                    if claim:
                        try:
                            rows = conn.execute(queries.FINISH_AND_CLAIM, params).fetchall()
                        except psycopg.OperationalError:
                            raise
                        except psycopg.errors.DatabaseError as exc:
                            # The claim must never cost the report: report alone (a finish error
                            # comes back the same), and let the loop claim.
                            claim = False
                            if getattr(exc, "sqlstate", None) != STALE_TOKEN:
                                self.log.warning("claim with the report failed; reporting alone",
                                                 fields={"action": "claim", "error": str(exc).strip()[:200]})
                    if rows is None:
                        return conn.execute(queries.FINISH, params).fetchone()
                got = [Claimed(**{k: r[k] for k in (*queries.CLAIM_FIELDS, "lease_left")})
                       for r in rows if r["run_id"] is not None]
                next_claims.extend(got)
                short_claim[0] = claim and len(got) < want
                return {"status": rows[0]["finished_status"]}
            # A result in hand is worth waiting for: while the lease lasts (the database may be back
            # before the reaper is), not only for a few tries, or a success would run again.
            lease_end = f.last_beat + f.lease_seconds
            for refused in (False, True):
                try:
                    row = self._retrying("finish", send, until=lease_end)
                    fields["run_status"] = row["status"]
                except psycopg.Error as exc:
                    if getattr(exc, "sqlstate", None) == STALE_TOKEN:
                        self.log.warning("report refused: stale token", fields=fields)
                    elif not refused and not isinstance(exc, psycopg.OperationalError):
                        # The engine refused the outcome itself: the job's bug, recorded as a permanent
                        # failure with the engine's reason (not a lease left to expire and a rerun).
                        message = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
                        self.log.error("the engine refused the outcome; reporting a failure",
                                       fields={**fields, "error": message[:300]})
                        outcome = {"status": "failed", "error_category": "SYSTEM", "is_transient": False,
                                   "error_type": "bad_outcome",
                                   "message": redact_text(f"the engine refused the reported outcome: {message}")[0]}
                        fields.update(status="failed", error_category="SYSTEM")
                        continue
                    else:
                        self.log.error("report failed; the lease will expire and the engine retries",
                                       fields={**fields, "error": str(exc).strip()[:300]})
                break
        # The runs claimed with the report started in the database: they go first, the report's
        # log line and metrics after. This run leaves as they come in, in one step.
        flights = self._register(reservation[0], next_claims, done=c.token)
        started = [self._launch(fl, submit=i > 0) for i, fl in enumerate(flights)]
        if "run_status" in fields:
            self.log.info("run reported", fields=fields)
            self.metrics.finished(c.job_slug, outcome.get("status", "failed"), outcome.get("error_category"),
                                  c.kind, time.monotonic() - f.claimed_at)
        if next_claims:
            self.metrics.claimed(len(next_claims))
        self.metrics.slots(len(self.in_flight), self.slots)  # (the claim loop may not wake: see below)
        # The claim loop fills the freed slot, unless the report's own claim already took all
        # there was (it came back short): then there is nothing to claim until a NOTIFY says so.
        if not short_claim[0]:
            self.wake.set()
        return started[0] if started else None

    def _parallel_jobs(self, conn: psycopg.Connection) -> int:
        """The global bound (etl.settings.parallel_jobs); this runner's slots when it cannot be read."""
        try:
            row = conn.execute("select (value #>> '{}')::numeric::integer as n from etl.settings "
                               "where name = 'parallel_jobs'").fetchone()
        except psycopg.Error:
            return self.slots
        return row["n"] if row and row["n"] else self.slots

    def _reap(self, conn: psycopg.Connection, own: list[int]) -> int:
        """Reaps expired leases (a dead runner's runs become retries) instead of leaving them to
        the next pg_cron tick; returns how many. Never this runner's own: after an outage longer
        than a lease its heartbeats renew them (its jobs are still running)."""
        try:
            reaped = conn.execute(queries.REAP, {"worker": self.worker_id, "spare": own}).fetchone()["reaped"]
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                raise  # the connection: the claim loop's business
            # (a deadlock with a finishing run, say): the next look, or the tick, reaps it
            self.log.warning("reaping failed", fields={"action": "reap", "error": str(exc).strip()[:200]})
            return 0
        if reaped:
            self.log.warning("reaped expired leases", fields={"action": "reap", "reaped": reaped})
            self.metrics.leases_reaped(reaped)
        return reaped

    def _claim(self, conn: psycopg.Connection, free: int) -> list[Claimed]:
        rows = conn.execute(queries.CLAIM, {"worker": self.worker_id, "max_runs": free}).fetchall()
        return [Claimed(**r) for r in rows]

    def _service_beat(self, conn: psycopg.Connection, status: str) -> None:
        conn.execute(queries.SERVICE_HEARTBEAT, {
            "instance_id": self.worker_id, "version": __version__, "host": socket.gethostname(),
            "pid": os.getpid(), "status": status, "slots": self.slots, "busy": len(self.in_flight)})

    def _free_slots(self, own: int = 0) -> int:
        """Reserves and returns the slots free for a claim (own: slots the caller frees itself).
        The caller gives them back with _register."""
        with self.lock:
            free = max(0, self.slots - len(self.in_flight) - self.reserved) + own
            self.reserved += free
            return free

    def _register(self, reserved: int, claimed: list[Claimed], done: int | None = None) -> list[InFlight]:
        """In one step: the claimed runs become in flight, the finished attempt `done` (a token)
        leaves, the reservation is given back (the claim loop never sees the slots free in
        between). Keyed by attempt: a run this runner lost and claimed again is two entries while
        the lost attempt's thread is still busy, and the late end of one never removes the other."""
        flights = [self._in_flight_of(c) for c in claimed]
        with self.lock:
            if done is not None:
                self.in_flight.pop(done, None)
            for f in flights:
                self.in_flight[f.claim.token] = f
            self.reserved -= reserved
        return flights

    def _launch(self, f: InFlight, submit: bool = True) -> InFlight:
        """Hands a registered run to a slot thread (submit), or returns it for the calling one."""
        c = f.claim
        self.log.info("claimed", fields={"action": "claim", "run_id": c.run_id,
                                         "job": c.job_slug, "attempt": c.attempt_no})
        if submit:
            f.future = self.executor.submit(self._execute, f)
        return f

    def _in_flight_of(self, c: Claimed) -> InFlight:
        # (By the database's clock when it says: a runner's clock that is off would heartbeat late.)
        left = c.lease_left if c.lease_left is not None else c.lease_expires_at.timestamp() - time.time()
        lease = max(0.5, left)
        ctx = JobContext(run_id=c.run_id, attempt_no=c.attempt_no, job=c.job_slug,
                         params=c.params, cursor=c.cursor, dry_run=c.dry_run,
                         logical_date=c.logical_date, mode=c.mode,
                         log=FieldsAdapter(self.job_logger, {
                             "job": c.job_slug, "job_id": c.job_id, "run_id": c.run_id,
                             "attempt": c.attempt_no, "attempt_id": c.token}),
                         http=HttpClient(timeout=min(60.0, max(1.0, c.timeout_ms / 1000.0)),
                                         on_request=self.metrics.api_request))
        return InFlight(claim=c, ctx=ctx, claimed_at=time.monotonic(), lease_seconds=lease)

    def run(self) -> int:
        """The claim loop; returns the process exit code."""
        if self.metrics_port is not None:
            # First: a port that is taken ends the start before anything else is opened.
            try:
                port = self.metrics.serve(self.metrics_port, addr=self.metrics_host)
            except OSError as exc:
                self.log.error("cannot serve metrics", fields={
                    "action": "metrics", "host": self.metrics_host, "port": self.metrics_port, "error": str(exc)})
                return 2
            self.log.info("metrics served", fields={"action": "metrics", "host": self.metrics_host, "port": port})
        # Reports (with the claim of the next runs) go through a stack of connections, one per slot
        # open from the start, the most recently used first: a chain's steps stay on one hot
        # backend, and the first reports of a pipeline do not wait for backend starts. SQL jobs,
        # and the items of a run with their reports, use the pool (up to item_concurrency
        # connections per slot, opened when needed): user code never shares a session with the
        # engine's calls.
        self.reports = HotConnections(self._connect)
        self.pool = ConnectionPool(self.dsn, min_size=1, max_size=self.slots * 4 + 8, open=True,
                                   kwargs={"autocommit": True, "row_factory": dict_row})
        executor = self.executor = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="slot")
        threads = [threading.Thread(target=self._listen, name="listener", daemon=True),
                   threading.Thread(target=self._heartbeats, name="heartbeats", daemon=True)]
        with stop_on_signals(self.stop, self.wake):
            for t in threads:
                t.start()
            self.log_sink = RunLogHandler(self.dsn)
            self.job_logger.addHandler(self.log_sink)
            conn = self._retrying("connect", self._connect, attempts=30)
            reap_from = time.monotonic() + REAP_GRACE_SECONDS
            # Connections for reports up front, but no more than runs can ever run at once here.
            self.reports.fill(min(self.slots, self._parallel_jobs(conn)))
            self._service_beat(conn, "running")
            self.log.info("runner started", fields={"action": "start", "slots": self.slots})
            last_beat = time.monotonic()
            while not self.stop.is_set():
                self.wake.clear()
                try:
                    if conn.closed:
                        conn = self._retrying("connect", self._connect)
                        reap_from = time.monotonic() + REAP_GRACE_SECONDS
                    free = self._free_slots()
                    if free > 0:
                        claimed = []
                        try:
                            claimed = self._claim(conn, free)
                        finally:
                            flights = self._register(free, claimed)
                        self.metrics.claimed(len(claimed))
                        for f in flights:
                            self._launch(f)
                    self.metrics.slots(len(self.in_flight), self.slots)
                    self.metrics.observe_pool(self.pool, self.reports)
                    if time.monotonic() - last_beat >= SERVICE_BEAT_SECONDS:
                        self._service_beat(conn, "running")
                        last_beat = time.monotonic()
                    # Awake for the service beat even with every slot busy: etl.tick() takes a
                    # runner unseen for 60 s for lost.
                    wait = min(self.safety_poll, max(SERVICE_BEAT_SECONDS - (time.monotonic() - last_beat), 0.01))
                    if len(self.in_flight) < self.slots:
                        with self.lock:
                            own = list(self.in_flight)  # the attempts (tokens) this process runs
                        nxt = conn.execute(queries.NEXT_WAKEUP, {"spare": own}).fetchone()
                        if nxt["seconds"] is not None:
                            wait = min(wait, max(float(nxt["seconds"]), 0.01))
                        if nxt["lease_seconds"] is not None:
                            lease = float(nxt["lease_seconds"])
                            grace = reap_from - time.monotonic()
                            if lease <= 0 and grace <= 0 and self._reap(conn, own):
                                continue  # the reaped runs are queued again (after their backoff)
                            # Just after the lease ends (or the grace after connecting); one that
                            # is past but was not reaped here (another reaper holds it) is looked
                            # at again a second later.
                            wait = min(wait, max(lease + 0.05, grace + 0.05) if lease > 0 or grace > 0 else 1.0)
                except psycopg.OperationalError as exc:
                    self.log.warning("control connection lost", fields={"action": "claim", "error": str(exc).strip()[:200]})
                    with contextlib.suppress(Exception):
                        conn.close()
                    wait = 1.0
                self.wake.wait(wait)

            # Draining: no more claims; in-flight runs get the grace period, then are handed back.
            self.log.info("draining", fields={"action": "drain", "in_flight": len(self.in_flight)})
            with contextlib.suppress(psycopg.Error):
                self._service_beat(conn, "draining")
            deadline = time.monotonic() + self.grace
            while self.in_flight and time.monotonic() < deadline:
                time.sleep(0.05)
            with self.lock:
                left = list(self.in_flight.values())
            # Jobs that ignored the cancel still run in their slot threads: the process must not wait
            # for them at exit (see abandoned_jobs), or a handed-back run could run twice at once.
            self.abandoned_jobs = len(left)
            for f in left:
                f.handed_back = True  # a late return of the job must not report again
                f.ctx.cancel_event.set()
                self._report(f, {"status": "failed", "error_category": "SYSTEM", "is_transient": True,
                                 "error_type": "runner_shutdown",
                                 "message": f"runner {self.worker_id} stopped before the run ended"},
                             handing_back=True)
            executor.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(psycopg.Error):
                self._service_beat(conn, "stopped")
                conn.close()
            self.pool.close()
            self.reports.close()
            self.metrics.stop()
            self.job_logger.removeHandler(self.log_sink)
            self.log_sink.close()
        if self.fatal:
            self.log.error("a side thread died", fields={"action": "fatal", "error": repr(self.fatal)})
            return 70
        self.log.info("runner stopped", fields={"action": "stop"})
        return 0
