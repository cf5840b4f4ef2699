"""The demo's local HTTP API (examples/demo/api_server.py): real server, real HTTP, no database."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from examples.demo.api_server import ENTITIES, REGIONS, parse_ts, serve

ROOT = Path(__file__).resolve().parents[1]
RECORDS = 150


def call(port: int, path: str, method: str = "GET", **params):
    query = urllib.parse.urlencode(params)
    url = f"http://127.0.0.1:{port}{path}" + (f"?{query}" if query else "")
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read()), dict(err.headers)


def fetch_all(port: int, entity: str, page_size: int = 17, **filters) -> list[dict]:
    rows, page, pages = [], 1, 0
    while page is not None:
        status, body, _ = call(port, f"/api/{entity}", page=page, pageSize=page_size, **filters)
        assert status == 200, body
        assert body["page"] == page and body["pageSize"] == page_size
        rows.extend(body["data"])
        page = body["nextPage"]
        pages += 1
        assert pages < 1000
    return rows


def key(r: dict):
    return (parse_ts(r["modifiedDate"]), r["id"])


@pytest.fixture(scope="module")
def api():
    server, port = serve(port=0, records=RECORDS, rate_limit=0, fault_rate=0.0, seed=7)
    yield port
    server.stop()


def test_every_entity_is_served_with_the_record_shape(api):
    status, body, _ = call(api, "/api")
    assert status == 200 and body["entities"] == list(ENTITIES) and len(ENTITIES) == 12
    for entity in ENTITIES:
        status, body, _ = call(api, f"/api/{entity}", pageSize=5)
        assert status == 200
        assert body["total"] == RECORDS and len(body["data"]) == 5 and body["nextPage"] == 2
        for r in body["data"]:
            assert {"id", "region", "modifiedDate"} <= set(r) and len(r) > 3 and "_ms" not in r
            assert r["region"] in REGIONS
            assert r["modifiedDate"].endswith("Z")
            assert parse_ts(r["modifiedDate"]).tzinfo is not None


def test_pagination_returns_every_record_exactly_once_in_order(api):
    rows = fetch_all(api, "customers", page_size=17)
    ids = [r["id"] for r in rows]
    assert len(ids) == RECORDS and sorted(ids) == list(range(1, RECORDS + 1))
    assert [key(r) for r in rows] == sorted(key(r) for r in rows)
    # The dataset deliberately holds equal timestamps, all within the last 30 days.
    counts = Counter(r["modifiedDate"] for r in rows)
    assert max(counts.values()) >= 2
    dates = [parse_ts(r["modifiedDate"]) for r in rows]
    assert (max(dates) - min(dates)).days <= 30
    # Past the last page: empty, no next page.
    status, body, _ = call(api, "/api/customers", page=100, pageSize=17)
    assert status == 200 and body["data"] == [] and body["nextPage"] is None and body["total"] == RECORDS


def test_same_seed_same_data():
    a, pa = serve(port=0, records=30, rate_limit=0, seed=99)
    b, pb = serve(port=0, records=30, rate_limit=0, seed=99)
    try:
        strip = lambda rows: [{k: v for k, v in r.items() if k != "modifiedDate"} for r in rows]  # noqa: E731
        ra, rb = fetch_all(pa, "orders", 100), fetch_all(pb, "orders", 100)
        assert strip(ra) == strip(rb)
    finally:
        a.stop()
        b.stop()


def test_modified_since_and_after_id_resume_exactly_after_a_cursor(api):
    rows = fetch_all(api, "orders", page_size=50)
    counts = Counter(r["modifiedDate"] for r in rows)
    tied = [i for i, r in enumerate(rows) if counts[r["modifiedDate"]] >= 2]
    assert tied, "dataset should contain tied timestamps"
    # Cursor on the first of a tied group: the rest of the group must still come back.
    positions = [tied[0], len(rows) // 3, len(rows) - 1] + [i for i in tied if i + 1 < len(rows)
                                                           and rows[i + 1]["modifiedDate"] == rows[i]["modifiedDate"]][:3]
    for pos in positions:
        cursor = rows[pos]
        after = fetch_all(api, "orders", page_size=13,
                          modifiedSince=cursor["modifiedDate"], afterId=cursor["id"])
        assert [r["id"] for r in after] == [r["id"] for r in rows[pos + 1:]], pos

    # modifiedSince alone is inclusive: the whole tied group at that timestamp comes back.
    stamp = rows[tied[0]]["modifiedDate"]
    first = next(i for i, r in enumerate(rows) if r["modifiedDate"] == stamp)
    since = fetch_all(api, "orders", page_size=13, modifiedSince=stamp)
    assert [r["id"] for r in since] == [r["id"] for r in rows[first:]]
    # Equivalent spellings of the same instant behave the same.
    alt = parse_ts(stamp).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    assert fetch_all(api, "orders", page_size=13, modifiedSince=alt) == since


def test_region_filter(api):
    everything = fetch_all(api, "payments", page_size=40)
    seen = 0
    for region in REGIONS:
        rows = fetch_all(api, "payments", page_size=11, region=region)
        assert rows and all(r["region"] == region for r in rows)
        assert [r["id"] for r in rows] == [r["id"] for r in everything if r["region"] == region]
        status, body, _ = call(api, "/api/payments", region=region, pageSize=1)
        assert body["total"] == len(rows)
        seen += len(rows)
    assert seen == RECORDS


@pytest.mark.parametrize("params, parameter", [
    ({"pageSize": "0"}, "pageSize"),
    ({"pageSize": "abc"}, "pageSize"),
    ({"pageSize": "1001"}, "pageSize"),
    ({"page": "0"}, "page"),
    ({"modifiedSince": "yesterday"}, "modifiedSince"),
    ({"modifiedSince": "2024-01-01T00:00:00Z", "afterId": "x"}, "afterId"),
    ({"afterId": "3"}, "afterId"),
    ({"region": "mars"}, "region"),
    ({"colour": "red"}, "colour"),
])
def test_bad_input_is_400_naming_the_parameter(api, params, parameter):
    status, body, headers = call(api, "/api/customers", **params)
    assert status == 400
    assert body["parameter"] == parameter and parameter in body["error"]
    assert headers["Content-Type"] == "application/json"


def test_unknown_entity_and_path_are_404(api):
    status, body, _ = call(api, "/api/unicorns")
    assert status == 404 and "unicorns" in body["error"]
    assert call(api, "/nope")[0] == 404
    assert call(api, "/admin/touch/unicorns", method="POST")[0] == 404


def test_touch_then_incremental_fetch_returns_only_touched_ids(api):
    rows = fetch_all(api, "shipments", page_size=100)
    cursor = rows[-1]
    assert fetch_all(api, "shipments", modifiedSince=cursor["modifiedDate"], afterId=cursor["id"]) == []

    status, body, _ = call(api, "/admin/touch/shipments", method="POST", count=5)
    assert status == 200 and body["entity"] == "shipments" and len(set(body["ids"])) == 5
    touched = body["ids"]
    assert parse_ts(body["modifiedDate"]) > parse_ts(cursor["modifiedDate"])

    delta = fetch_all(api, "shipments", page_size=2, modifiedSince=cursor["modifiedDate"], afterId=cursor["id"])
    assert sorted(r["id"] for r in delta) == sorted(touched)
    assert all(r["modifiedDate"] == body["modifiedDate"] for r in delta)
    assert fetch_all(api, "shipments", page_size=100, modifiedSince=cursor["modifiedDate"])[1:] == delta
    # A second touch is strictly later again: the next incremental run sees only it.
    last = delta[-1]
    status, body2, _ = call(api, "/admin/touch/shipments", method="POST", count=3)
    delta2 = fetch_all(api, "shipments", modifiedSince=last["modifiedDate"], afterId=last["id"])
    assert sorted(r["id"] for r in delta2) == sorted(body2["ids"])
    # The full set is still every record exactly once.
    assert sorted(r["id"] for r in fetch_all(api, "shipments", page_size=100)) == list(range(1, RECORDS + 1))

    assert call(api, "/admin/touch/shipments", method="POST", count=0)[1]["parameter"] == "count"
    assert call(api, "/admin/touch/shipments")[0] == 405


def test_stats_count_requests_per_status(api):
    before = call(api, "/admin/stats")[1]
    call(api, "/api/customers", pageSize=1)
    call(api, "/api/customers", pageSize=0)
    call(api, "/api/unicorns")
    after = call(api, "/admin/stats")[1]
    for status in ("200", "400", "404"):
        assert after["byStatus"].get(status, 0) == before["byStatus"].get(status, 0) + (2 if status == "200" else 1)


def test_rate_limit_yields_429_with_retry_after():
    server, port = serve(port=0, records=10, rate_limit=3, seed=1)
    try:
        results = [call(port, "/api/stores", pageSize=1) for _ in range(15)]
        codes = [s for s, _, _ in results]
        assert codes[0] == 200 and 429 in codes
        for status, body, headers in results:
            if status == 429:
                assert int(headers["Retry-After"]) >= 1 and "rate limit" in body["error"]
        # Admin is not limited; stats record the 429s.
        stats = call(port, "/admin/stats")[1]
        assert stats["rateLimited"] == codes.count(429) == stats["byStatus"]["429"]
    finally:
        server.stop()


def test_fault_rate_one_yields_only_transient_faults_and_is_reconfigurable():
    server, port = serve(port=0, records=10, rate_limit=0, fault_rate=1.0, seed=3)
    try:
        codes = [call(port, "/api/inventory")[0] for _ in range(30)]
        assert set(codes) <= {503, 429} and {503, 429} == set(codes)
        status, body, headers = call(port, "/api/inventory")
        assert status in (503, 429) and headers["Retry-After"] == "1"

        assert call(port, "/admin/faults", method="POST", rate=0)[0] == 200
        assert call(port, "/api/inventory")[0] == 200
        assert call(port, "/admin/faults", method="POST", rate=2)[1]["parameter"] == "rate"

        def sequence():
            call(port, "/admin/faults", method="POST", rate=0.5, seed=11)
            return [call(port, "/api/inventory", pageSize=1)[0] for _ in range(40)]

        first, second = sequence(), sequence()
        assert first == second and set(first) >= {200} and set(first) - {200}
        assert call(port, "/admin/stats")[1]["faultsInjected"] > 0
    finally:
        server.stop()


def test_cli_serves_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.demo.api_server", "--port", "0", "--records", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, body, _ = call(port, "/api/suppliers")
        assert status == 200 and body["total"] == 20
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
