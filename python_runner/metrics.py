"""Prometheus metrics for the runner.

Every RunnerMetrics owns its own CollectorRegistry, so several runners (or tests) in one process
never clash on metric names, and nothing lands in prometheus_client's global REGISTRY.

Usage (integration is done in runner.py by whoever wires it in):

    m = RunnerMetrics(worker=runner.worker_id)
    port = m.serve(9187)            # or serve(0) for a free port; returns the bound port
    m.claimed(len(claims))
    m.finished(c.job_slug, outcome["status"], outcome.get("error_category"), c.kind, seconds)
    m.slots(len(in_flight), slots)
    m.observe_pool(pool)
    m.stop()
"""
from __future__ import annotations

import socket
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import start_http_server

from . import __version__

# ETL runs range from a trivial SQL statement to an hour-long load.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# Outbound HTTP calls: milliseconds to a minute or two.
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def status_class(status: Any) -> str:
    """200 -> "2xx", 503 -> "5xx"; None / non-numeric (connection error, timeout) -> "error"."""
    try:
        code = int(status)
    except (TypeError, ValueError):
        return "error"
    if 100 <= code <= 599:
        return f"{code // 100}xx"
    return "error"


class RunnerMetrics:
    def __init__(self, worker: str | None = None, version: str = __version__, host: str | None = None,
                 registry: CollectorRegistry | None = None):
        self.worker = worker or socket.gethostname()
        self.host = host or socket.gethostname()
        self.version = version
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        self.claims = Counter("etl_runner_claims", "Runs claimed by this runner.",
                              ["worker"], registry=r)
        self.reaped = Counter("etl_runner_leases_reaped", "Expired leases (a dead runner's runs) this runner reaped.",
                              ["worker"], registry=r)
        self.runs_finished = Counter("etl_runner_runs_finished", "Runs finished, by outcome.",
                                     ["job", "status", "category"], registry=r)
        self.run_duration = Histogram("etl_runner_run_duration_seconds", "Wall time of a run in its slot.",
                                      ["job", "kind"], buckets=RUN_BUCKETS, registry=r)
        self.slot_gauge = Gauge("etl_runner_slots", "Execution slots: busy and total.",
                                ["state"], registry=r)
        self.api_duration = Histogram("etl_runner_api_request_duration_seconds",
                                      "Duration of outbound HTTP requests.",
                                      ["host", "status_class"], buckets=API_BUCKETS, registry=r)
        self.pool_gauge = Gauge("etl_runner_db_pool_connections", "Database pool connections.",
                                ["state"], registry=r)
        self.info = Info("etl_runner", "Runner build and identity.", registry=r)
        self.up = Gauge("etl_runner_up", "1 while the runner process is up.", registry=r)

        self.info.info({"version": str(version), "worker": self.worker, "host": self.host})
        self.up.set(1)
        # Pre-create the label sets that always exist so they show up (as 0) before the first event.
        self.claims.labels(worker=self.worker)
        self.reaped.labels(worker=self.worker)
        for state in ("busy", "total"):
            self.slot_gauge.labels(state=state)
        for state in ("in_use", "idle", "max"):
            self.pool_gauge.labels(state=state)

        self._server = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- recording -------------------------------------------------------------------------------
    def claimed(self, n: int = 1) -> None:
        if n > 0:
            self.claims.labels(worker=self.worker).inc(n)

    def leases_reaped(self, n: int) -> None:
        if n > 0:
            self.reaped.labels(worker=self.worker).inc(n)

    def finished(self, job: str, status: str, category: str | None, kind: str, seconds: float) -> None:
        self.runs_finished.labels(job=job, status=status or "", category=category or "").inc()
        if seconds is not None and seconds >= 0:
            self.run_duration.labels(job=job, kind=kind or "").observe(seconds)

    def slots(self, busy: int, total: int) -> None:
        self.slot_gauge.labels(state="busy").set(busy)
        self.slot_gauge.labels(state="total").set(total)

    def api_request(self, host: str, status: Any, seconds: float) -> None:
        """status: an HTTP status code, or None when the request failed without a response."""
        self.api_duration.labels(host=host, status_class=status_class(status)).observe(max(seconds, 0.0))

    def observe_pool(self, pool, reports=None) -> None:
        """Feed the pool gauges from a psycopg_pool.ConnectionPool (get_stats(): pool_size,
        pool_available, pool_max), plus the runner's report connections (a HotConnections: in_use,
        idle) when given. get_stats() does not reset counters (pop_stats() would)."""
        stats = pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        in_use = max(size - idle, 0)
        top = stats.get("pool_max", getattr(pool, "max_size", 0))
        if reports is not None:
            in_use += reports.in_use
            idle += reports.idle
            top += reports.in_use + reports.idle
        self.pool_gauge.labels(state="in_use").set(in_use)
        self.pool_gauge.labels(state="idle").set(idle)
        self.pool_gauge.labels(state="max").set(top)

    # -- exposition ------------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics for this registry in a daemon thread; port 0 picks a free port.
        Returns the bound port. Calling serve() again while serving returns the existing port."""
        with self._lock:
            if self._server is None:
                self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
            return self._server.server_address[1]

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server is not None else None

    def stop(self) -> None:
        """Stop the HTTP server (idempotent) and mark the runner down."""
        self.up.set(0)
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
