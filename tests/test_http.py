"""ctx.http against the real local demo API: JSON, classified failures, latency reported."""
from __future__ import annotations

import socket

import pytest

from examples.demo.api_server import serve
from python_runner.context import JobError
from python_runner.http import HttpClient


@pytest.fixture
def api():
    server, port = serve(port=0, rate_limit=0)
    yield server, f"http://127.0.0.1:{port}"
    server.stop()


def test_get_json_and_latency_reported(api):
    _, base = api
    seen = []
    body = HttpClient(timeout=5, on_request=lambda host, status, s: seen.append((host, status, s))).get_json(
        f"{base}/api/orders", {"pageSize": 5})
    assert len(body["data"]) == 5
    assert seen and seen[0][1] == 200 and seen[0][2] >= 0


def test_http_errors_carry_their_status_for_the_engine(api):
    server, base = api
    with pytest.raises(JobError) as exc:
        HttpClient(timeout=5).get_json(f"{base}/api/no_such_entity")
    assert (exc.value.category, exc.value.http_status, exc.value.error_type) == ("API", 404, "http_404")
    server_faults = HttpClient(timeout=5)
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(f"{base}/admin/faults?rate=1.0", method="POST"), timeout=5).read()
    with pytest.raises(JobError) as exc:
        server_faults.get_json(f"{base}/api/orders")
    assert exc.value.http_status in (429, 503) and exc.value.category == "API"


def test_unreachable_host_is_a_transient_api_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen = []
    with pytest.raises(JobError) as exc:
        HttpClient(timeout=2, on_request=lambda *a: seen.append(a)).get_json(f"http://127.0.0.1:{port}/x")
    assert exc.value.category == "API" and exc.value.transient is True and exc.value.error_type == "unreachable"
    assert seen[0][1] is None
