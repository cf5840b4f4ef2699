"""RunnerMetrics: real HTTP exposition, isolated registries, pool gauges from a real pool."""
from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import ConnectionPool

from python_runner.metrics import RunnerMetrics, status_class


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def samples(text: str) -> dict[tuple, float]:
    """{(sample_name, sorted label items): value} parsed from exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metrics():
    m = RunnerMetrics(worker="w-1", version="9.9.9", host="box-a")
    yield m
    m.stop()


def test_serve_and_scrape(metrics):
    port = metrics.serve(0)
    assert isinstance(port, int) and port > 0
    assert metrics.serve(0) == port  # idempotent while serving

    metrics.claimed(2)
    metrics.claimed(1)
    metrics.claimed(0)
    metrics.finished("load_orders", "succeeded", None, "sql", 0.2)
    metrics.finished("load_orders", "succeeded", "", "sql", 12.0)
    metrics.finished("load_orders", "failed", "transient", "sql", 4000.0)
    metrics.finished("pull_api", "failed", "auth", "python", 0.003)
    metrics.slots(3, 4)
    metrics.api_request("api.example.com", 200, 0.12)
    metrics.api_request("api.example.com", 204, 0.3)
    metrics.api_request("api.example.com", 503, 1.5)
    metrics.api_request("api.example.com", None, 30.0)

    text = scrape(port)
    for name in ("etl_runner_claims_total", "etl_runner_runs_finished_total",
                 "etl_runner_run_duration_seconds", "etl_runner_slots",
                 "etl_runner_api_request_duration_seconds", "etl_runner_db_pool_connections",
                 "etl_runner_info", "etl_runner_up"):
        assert name in text

    assert 'etl_runner_claims_total{worker="w-1"} 3.0' in text
    assert value(text, "etl_runner_claims_total", worker="w-1") == 3

    assert value(text, "etl_runner_runs_finished_total", job="load_orders", status="succeeded", category="") == 2
    assert value(text, "etl_runner_runs_finished_total", job="load_orders", status="failed",
                 category="transient") == 1
    assert value(text, "etl_runner_runs_finished_total", job="pull_api", status="failed", category="auth") == 1

    assert value(text, "etl_runner_run_duration_seconds_count", job="load_orders", kind="sql") == 3
    assert value(text, "etl_runner_run_duration_seconds_sum", job="load_orders", kind="sql") == pytest.approx(4012.2)
    assert value(text, "etl_runner_run_duration_seconds_bucket", job="load_orders", kind="sql", le="0.01") == 0
    assert value(text, "etl_runner_run_duration_seconds_bucket", job="load_orders", kind="sql", le="0.25") == 1
    assert value(text, "etl_runner_run_duration_seconds_bucket", job="load_orders", kind="sql", le="3600.0") == 2
    assert value(text, "etl_runner_run_duration_seconds_bucket", job="load_orders", kind="sql", le="+Inf") == 3
    assert value(text, "etl_runner_run_duration_seconds_bucket", job="pull_api", kind="python", le="0.01") == 1

    assert value(text, "etl_runner_slots", state="busy") == 3
    assert value(text, "etl_runner_slots", state="total") == 4

    assert value(text, "etl_runner_api_request_duration_seconds_count",
                 host="api.example.com", status_class="2xx") == 2
    assert value(text, "etl_runner_api_request_duration_seconds_count",
                 host="api.example.com", status_class="5xx") == 1
    assert value(text, "etl_runner_api_request_duration_seconds_count",
                 host="api.example.com", status_class="error") == 1

    assert value(text, "etl_runner_info", version="9.9.9", worker="w-1", host="box-a") == 1
    assert value(text, "etl_runner_up") == 1

    # Later observations show up on the next scrape.
    metrics.slots(0, 4)
    metrics.claimed(5)
    text = scrape(port)
    assert value(text, "etl_runner_slots", state="busy") == 0
    assert value(text, "etl_runner_claims_total", worker="w-1") == 8


def test_stop_closes_the_port(metrics):
    port = metrics.serve(0)
    scrape(port)
    metrics.stop()
    metrics.stop()  # idempotent
    assert metrics.port is None
    with pytest.raises(OSError):
        scrape(port)


def test_two_instances_do_not_clash():
    a = RunnerMetrics(worker="w-a")
    b = RunnerMetrics(worker="w-b")
    try:
        pa, pb = a.serve(0), b.serve(0)
        assert pa != pb
        a.claimed(4)
        b.claimed(1)
        a.slots(1, 2)
        b.slots(5, 8)
        ta, tb = scrape(pa), scrape(pb)
        assert value(ta, "etl_runner_claims_total", worker="w-a") == 4
        assert value(tb, "etl_runner_claims_total", worker="w-b") == 1
        assert 'worker="w-b"' not in ta and 'worker="w-a"' not in tb
        assert value(ta, "etl_runner_slots", state="total") == 2
        assert value(tb, "etl_runner_slots", state="total") == 8
        assert a.registry is not b.registry
    finally:
        a.stop()
        b.stop()


def test_status_class():
    assert status_class(200) == "2xx"
    assert status_class("404") == "4xx"
    assert status_class(503) == "5xx"
    assert status_class(None) == "error"
    assert status_class(0) == "error"


def test_observe_pool_with_a_real_pool(db, metrics):
    port = metrics.serve(0)
    with ConnectionPool(db.dsn, min_size=2, max_size=3, open=True) as pool:
        pool.wait(timeout=10)
        metrics.observe_pool(pool)
        text = scrape(port)
        assert value(text, "etl_runner_db_pool_connections", state="max") == 3
        assert value(text, "etl_runner_db_pool_connections", state="idle") == 2
        assert value(text, "etl_runner_db_pool_connections", state="in_use") == 0

        with pool.connection() as c1, pool.connection() as c2:
            assert c1.execute("select 1").fetchone()[0] == 1
            assert c2.execute("select 2").fetchone()[0] == 2
            metrics.observe_pool(pool)
            text = scrape(port)
            assert value(text, "etl_runner_db_pool_connections", state="in_use") == 2
            assert value(text, "etl_runner_db_pool_connections", state="idle") == 0
            assert value(text, "etl_runner_db_pool_connections", state="max") == 3

        metrics.observe_pool(pool)
        text = scrape(port)
        assert value(text, "etl_runner_db_pool_connections", state="in_use") == 0
        assert value(text, "etl_runner_db_pool_connections", state="idle") == 2
