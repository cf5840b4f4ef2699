"""A real, local, deterministic HTTP API for the demo's Bronze extract jobs.

Standard library only. Start it from code::

    from examples.demo.api_server import serve
    server, port = serve(port=0, records=500, rate_limit=50, fault_rate=0.0, seed=42)
    ...
    server.stop()

or from the command line::

    python -m examples.demo.api_server --port 8765 --records 500 --rate-limit 50 --fault-rate 0.05

Endpoints
---------
``GET /api``
    ``{"entities": [...], "records": N}``.

``GET /api/<entity>?modifiedSince=<iso>&afterId=<id>&region=<r>&page=<n>&pageSize=<k>``
    ``{"data": [...], "page": n, "pageSize": k, "total": T, "nextPage": n+1 | null}``.
    Records are ordered by ``(modifiedDate, id)``. ``modifiedSince`` is inclusive; ``afterId``
    (only together with ``modifiedSince``) breaks ties: records whose ``modifiedDate`` equals
    ``modifiedSince`` and whose ``id <= afterId`` are excluded. So a keyset cursor
    ``(last modifiedDate, last id)`` fetches exactly the records after it. ``page`` starts at 1
    (default 1); ``pageSize`` is 1..1000 (default 100). ``total`` counts every record matching the
    filters (all pages). Bad input answers 400 ``{"error": ..., "parameter": <name>}``
    (unknown or repeated parameters too); an unknown entity answers 404.

``POST /admin/touch/<entity>?count=k``
    Sets ``modifiedDate`` of k records (deterministic choice from the seed) to now — strictly
    later than every existing ``modifiedDate`` of that entity, all k equal — and answers
    ``{"entity": ..., "ids": [...], "modifiedDate": ...}``.

``POST /admin/faults?rate=<0..1>&seed=<int>``
    Sets the fault rate and restarts the fault sequence from ``seed`` (default: the server seed).

``GET /admin/stats``
    ``{"total": n, "byStatus": {"200": n, ...}, "rateLimited": n, "faultsInjected": n,
    "faultRate": r}``.

Rate limit and faults apply to ``/api`` requests only (``/admin`` is never limited or faulted):
first a token bucket per client address (``rate_limit`` requests/s, burst ``rate_limit``;
0 disables it) answers 429 with ``Retry-After`` when empty, then a fraction ``fault_rate`` of
requests answers 503 or 429 (each with ``Retry-After: 1``) from a seeded random sequence.

Timestamps are ISO 8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.000Z``. Generated
``modifiedDate`` values are spread over the 30 days before the anchor (server start, or the
``anchor`` argument); some records share a timestamp on purpose, to exercise tie-breaks.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ENTITIES = (
    "customers", "products", "orders", "order_items", "payments", "shipments",
    "suppliers", "stores", "employees", "inventory", "returns", "promotions",
)
REGIONS = ("eu", "us", "apac")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
WINDOW = timedelta(days=30)

_FIRST = ("Ada", "Alan", "Grace", "Linus", "Barbara", "Edsger", "Margaret", "Ken", "Frances", "Donald")
_LAST = ("Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Dijkstra", "Hamilton", "Thompson", "Allen", "Knuth")
_CITIES = {"eu": ("Berlin", "Paris", "Madrid", "Lisbon"), "us": ("Austin", "Boston", "Denver", "Seattle"),
           "apac": ("Tokyo", "Sydney", "Singapore", "Seoul")}
_CURRENCY = {"eu": "EUR", "us": "USD", "apac": "SGD"}


# --------------------------------------------------------------------------- time helpers

def format_ts(dt: datetime) -> str:
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    """Parse ISO 8601; naive values are UTC. Raises ValueError."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _ms(dt: datetime) -> int:
    """Milliseconds since the epoch (floor); timestamps compare at millisecond precision."""
    return math.floor(dt.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


# --------------------------------------------------------------------------- dataset

def _fields(entity: str, rng: random.Random, region: str, n: int) -> dict:
    def ref() -> int:
        return rng.randint(1, max(n, 1))

    def name() -> str:
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"

    if entity == "customers":
        person = name()
        return {"name": person, "email": person.lower().replace(" ", ".") + f"{rng.randint(1, 999)}@example.com",
                "tier": rng.choice(("bronze", "silver", "gold"))}
    if entity == "products":
        return {"sku": f"SKU-{rng.randint(10000, 99999)}", "name": f"Product {rng.randint(1, 9999)}",
                "category": rng.choice(("books", "garden", "tools", "toys", "kitchen")),
                "price": round(rng.uniform(1, 500), 2)}
    if entity == "orders":
        return {"customerId": ref(), "storeId": ref(), "status": rng.choice(("new", "paid", "shipped", "cancelled")),
                "totalAmount": round(rng.uniform(5, 2000), 2), "currency": _CURRENCY[region]}
    if entity == "order_items":
        return {"orderId": ref(), "productId": ref(), "quantity": rng.randint(1, 10),
                "unitPrice": round(rng.uniform(1, 500), 2)}
    if entity == "payments":
        return {"orderId": ref(), "method": rng.choice(("card", "paypal", "transfer")),
                "amount": round(rng.uniform(5, 2000), 2), "status": rng.choice(("authorized", "captured", "refunded"))}
    if entity == "shipments":
        return {"orderId": ref(), "carrier": rng.choice(("DHL", "UPS", "FedEx", "PostNL")),
                "status": rng.choice(("label", "in_transit", "delivered")),
                "trackingNumber": f"TRK{rng.randint(10**9, 10**10 - 1)}"}
    if entity == "suppliers":
        return {"name": f"{rng.choice(_LAST)} Supply Co", "country": rng.choice(("DE", "FR", "US", "JP", "AU")),
                "rating": rng.randint(1, 5)}
    if entity == "stores":
        return {"name": f"Store {rng.randint(1, 999)}", "city": rng.choice(_CITIES[region]),
                "openedYear": rng.randint(1990, 2024)}
    if entity == "employees":
        return {"name": name(), "storeId": ref(), "role": rng.choice(("cashier", "manager", "stocker")),
                "salary": rng.randint(25000, 120000)}
    if entity == "inventory":
        return {"productId": ref(), "storeId": ref(), "quantity": rng.randint(0, 500)}
    if entity == "returns":
        return {"orderId": ref(), "reason": rng.choice(("damaged", "wrong_item", "changed_mind")),
                "amount": round(rng.uniform(1, 500), 2), "status": rng.choice(("requested", "approved", "refunded"))}
    if entity == "promotions":
        return {"code": f"PROMO{rng.randint(100, 999)}", "discountPct": rng.choice((5, 10, 15, 20, 25)),
                "active": rng.random() < 0.6}
    raise KeyError(entity)


class Dataset:
    """Records per entity; each record carries an internal ``_ms`` sort key (not served)."""

    def __init__(self, records: int = 500, seed: int = 42, anchor: datetime | None = None):
        if records < 0:
            raise ValueError("records must be >= 0")
        self.records = records
        self.seed = seed
        anchor = anchor or datetime.now(timezone.utc).replace(microsecond=0)
        self.anchor_ms = _ms(anchor)
        self._lock = threading.Lock()
        self._touch_rng = random.Random(f"{seed}:touch")
        self._data: dict[str, dict[int, dict]] = {}
        window_s = int(WINDOW.total_seconds())
        for entity in ENTITIES:
            rng = random.Random(f"{seed}:{entity}")
            rows: dict[int, dict] = {}
            used: list[int] = []
            for rid in range(1, records + 1):
                if used and rng.random() < 0.15:
                    ms = rng.choice(used)  # deliberate tie with an earlier record
                else:
                    ms = self.anchor_ms - rng.randint(60, window_s) * 1000
                    used.append(ms)
                region = rng.choice(REGIONS)
                row = {"id": rid, "region": region, "modifiedDate": format_ts(_from_ms(ms))}
                row.update(_fields(entity, rng, region, records))
                row["_ms"] = ms
                rows[rid] = row
            self._data[entity] = rows

    def query(self, entity: str, since_ms: int | None, after_id: int | None, region: str | None) -> list[dict]:
        with self._lock:
            rows = [dict(r) for r in self._data[entity].values()]
        out = []
        for r in rows:
            if region is not None and r["region"] != region:
                continue
            if since_ms is not None:
                if r["_ms"] < since_ms:
                    continue
                if after_id is not None and r["_ms"] == since_ms and r["id"] <= after_id:
                    continue
            out.append(r)
        out.sort(key=lambda r: (r["_ms"], r["id"]))
        return out

    def touch(self, entity: str, count: int) -> tuple[list[int], str]:
        with self._lock:
            rows = self._data[entity]
            newest = max((r["_ms"] for r in rows.values()), default=0)
            ms = max(_ms(datetime.now(timezone.utc)), newest + 1)
            ids = sorted(self._touch_rng.sample(sorted(rows), count))
            stamp = format_ts(_from_ms(ms))
            for rid in ids:
                rows[rid]["_ms"] = ms
                rows[rid]["modifiedDate"] = stamp
        return ids, stamp


# --------------------------------------------------------------------------- limits and faults

class TokenBucket:
    """Per-client token buckets: ``rate`` tokens/s, capacity ``max(rate, 1)``; rate <= 0 disables."""

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.capacity = max(self.rate, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Take one token; return 0.0 if allowed, else seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


class FaultInjector:
    def __init__(self, rate: float, seed: int):
        self._lock = threading.Lock()
        self.configure(rate, seed)

    def configure(self, rate: float, seed: int) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be within [0, 1]")
        with self._lock:
            self.rate = rate
            self.seed = seed
            self._rng = random.Random(f"{seed}:faults")

    def next(self) -> int | None:
        """Return 503/429 for a faulted request, None otherwise (deterministic sequence)."""
        with self._lock:
            if self.rate <= 0.0:
                return None
            if self._rng.random() < self.rate:
                return self._rng.choice((503, 429))
            return None


# --------------------------------------------------------------------------- HTTP

class BadRequest(Exception):
    def __init__(self, parameter: str | None, message: str, status: int = 400):
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.status = status


def _params(query: str, allowed: set[str]) -> dict[str, str]:
    raw = parse_qs(query, keep_blank_values=True)
    out = {}
    for key, values in raw.items():
        if key not in allowed:
            raise BadRequest(key, f"unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}")
        if len(values) != 1:
            raise BadRequest(key, f"parameter {key!r} given more than once")
        out[key] = values[0]
    return out


def _int(params: dict, name: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    if name not in params:
        return default
    text = params[name].strip()
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(name, f"{name} must be an integer, got {params[name]!r}") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise BadRequest(name, f"{name} must be {bounds}, got {value}")
    return value


class DemoAPIServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, dataset: Dataset, rate_limit: float, fault_rate: float, seed: int,
                 verbose: bool = False):
        super().__init__(address, _Handler)
        self.dataset = dataset
        self.seed = seed
        self.limiter = TokenBucket(rate_limit)
        self.faults = FaultInjector(fault_rate, seed)
        self.verbose = verbose
        self._stats_lock = threading.Lock()
        self.by_status: dict[str, int] = {}
        self.rate_limited = 0
        self.faults_injected = 0
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{host}:{self.port}"

    def record(self, status: int) -> None:
        with self._stats_lock:
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def stats(self) -> dict:
        with self._stats_lock:
            return {"total": sum(self.by_status.values()), "byStatus": dict(sorted(self.by_status.items())),
                    "rateLimited": self.rate_limited, "faultsInjected": self.faults_injected,
                    "faultRate": self.faults.rate, "rateLimit": self.limiter.rate}

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: DemoAPIServer
    server_version = "DemoAPI/1.0"

    def log_message(self, fmt, *args):  # noqa: D401 - quiet unless verbose
        if self.server.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    # -- responses
    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(payload)
        self.server.record(status)

    def _error(self, status: int, message: str, parameter: str | None = None, headers: dict | None = None) -> None:
        body = {"error": message, "status": status}
        if parameter is not None:
            body["parameter"] = parameter
        self._send(status, body, headers)

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)

    # -- dispatch
    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._drain()
        self._dispatch("POST")

    def do_PUT(self):
        self._drain()
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            parts = urlsplit(self.path)
            segments = [unquote(s) for s in parts.path.split("/") if s]
            if segments[:1] == ["api"]:
                if method != "GET":
                    raise BadRequest(None, f"{method} not allowed on {parts.path}", 405)
                if not self._gate():
                    return
                if len(segments) == 1:
                    _params(parts.query, set())
                    self._send(200, {"entities": list(ENTITIES), "records": self.server.dataset.records})
                elif len(segments) == 2:
                    self._list(segments[1], parts.query)
                else:
                    raise BadRequest(None, f"no such resource {parts.path}", 404)
            elif segments[:1] == ["admin"]:
                self._admin(method, segments[1:], parts.query)
            else:
                raise BadRequest(None, f"no such resource {parts.path}", 404)
        except BadRequest as exc:
            self._error(exc.status, exc.message, exc.parameter)
        except Exception as exc:  # pragma: no cover - defensive
            self._error(500, f"internal error: {exc}")

    def _gate(self) -> bool:
        """Rate limit then fault injection; False if a 429/503 has been sent."""
        wait = self.server.limiter.take(self.client_address[0])
        if wait > 0:
            with self.server._stats_lock:
                self.server.rate_limited += 1
            self._error(429, "rate limit exceeded", headers={"Retry-After": max(1, math.ceil(wait))})
            return False
        fault = self.server.faults.next()
        if fault is not None:
            with self.server._stats_lock:
                self.server.faults_injected += 1
            message = "injected fault: service unavailable" if fault == 503 else "injected fault: too many requests"
            self._error(fault, message, headers={"Retry-After": 1})
            return False
        return True

    def _entity(self, name: str) -> str:
        if name not in ENTITIES:
            raise BadRequest(None, f"unknown entity {name!r}; known: {', '.join(ENTITIES)}", 404)
        return name

    def _list(self, entity: str, query: str) -> None:
        entity = self._entity(entity)
        p = _params(query, {"modifiedSince", "afterId", "region", "page", "pageSize"})
        since_ms = None
        if "modifiedSince" in p:
            try:
                since_ms = _ms(parse_ts(p["modifiedSince"]))
            except ValueError:
                raise BadRequest("modifiedSince",
                                 f"modifiedSince must be an ISO 8601 timestamp, got {p['modifiedSince']!r}") from None
        after_id = _int(p, "afterId", None, 0)
        if after_id is not None and since_ms is None:
            raise BadRequest("afterId", "afterId requires modifiedSince (it breaks ties at that timestamp)")
        region = p.get("region")
        if region is not None and region not in REGIONS:
            raise BadRequest("region", f"region must be one of {', '.join(REGIONS)}, got {region!r}")
        page = _int(p, "page", 1, 1)
        size = _int(p, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        rows = self.server.dataset.query(entity, since_ms, after_id, region)
        total = len(rows)
        chunk = rows[(page - 1) * size: page * size]
        for r in chunk:
            r.pop("_ms", None)
        self._send(200, {"data": chunk, "page": page, "pageSize": size, "total": total,
                         "nextPage": page + 1 if page * size < total else None})

    def _admin(self, method: str, segments: list[str], query: str) -> None:
        if segments == ["stats"]:
            if method != "GET":
                raise BadRequest(None, f"{method} not allowed on /admin/stats", 405)
            _params(query, set())
            self._send(200, self.server.stats())
        elif len(segments) == 2 and segments[0] == "touch":
            if method != "POST":
                raise BadRequest(None, f"{method} not allowed on /admin/touch", 405)
            entity = self._entity(segments[1])
            p = _params(query, {"count"})
            count = _int(p, "count", 1, 1, self.server.dataset.records)
            ids, stamp = self.server.dataset.touch(entity, count)
            self._send(200, {"entity": entity, "ids": ids, "modifiedDate": stamp})
        elif segments == ["faults"]:
            if method != "POST":
                raise BadRequest(None, f"{method} not allowed on /admin/faults", 405)
            p = _params(query, {"rate", "seed"})
            if "rate" not in p:
                raise BadRequest("rate", "rate is required (a number within [0, 1])")
            try:
                rate = float(p["rate"])
            except ValueError:
                raise BadRequest("rate", f"rate must be a number within [0, 1], got {p['rate']!r}") from None
            if not 0.0 <= rate <= 1.0:
                raise BadRequest("rate", f"rate must be within [0, 1], got {rate}")
            seed = _int(p, "seed", self.server.seed, -(2**63))
            self.server.faults.configure(rate, seed)
            self._send(200, {"faultRate": rate, "seed": seed})
        else:
            raise BadRequest(None, f"no such resource /admin/{'/'.join(segments)}", 404)


# --------------------------------------------------------------------------- entry points

def serve(host: str = "127.0.0.1", port: int = 0, records: int = 500, rate_limit: float = 50,
          fault_rate: float = 0.0, seed: int = 42, anchor: datetime | None = None,
          verbose: bool = False) -> tuple[DemoAPIServer, int]:
    """Start the API in a daemon thread; return ``(server, port)``. Stop with ``server.stop()``."""
    dataset = Dataset(records=records, seed=seed, anchor=anchor)
    server = DemoAPIServer((host, port), dataset, rate_limit, fault_rate, seed, verbose=verbose)
    thread = threading.Thread(target=server.serve_forever, name=f"demo-api-{server.port}", daemon=True)
    server._thread = thread
    thread.start()
    return server, server.port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.demo.api_server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    ap.add_argument("--records", type=int, default=500, help="records per entity")
    ap.add_argument("--rate-limit", type=float, default=50, help="requests/s per client; 0 disables")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="fraction of /api requests answering 503/429")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--anchor", default=None, help="ISO timestamp the 30-day window ends at (default: now)")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    if not 0.0 <= args.fault_rate <= 1.0:
        ap.error("--fault-rate must be within [0, 1]")
    anchor = parse_ts(args.anchor) if args.anchor else None

    server, port = serve(args.host, args.port, args.records, args.rate_limit, args.fault_rate, args.seed,
                         anchor=anchor, verbose=args.verbose)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"demo API listening on {server.url}/api ({args.records} records/entity, "
          f"rate limit {args.rate_limit}/s, fault rate {args.fault_rate}, seed {args.seed})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
