"""Bronze extract jobs of the demo: page through the local API incrementally into bronze tables.

HTTP goes through ctx.http: a 429 or 503 from the API becomes a transient API failure that the
engine retries with backoff; other 4xx are permanent.

Each job runs with parameters entity and region (defaults from its definition). The cursor is the
(modifiedDate, id) of the last record loaded: the next run asks for records after it, so a second
run fetches only what changed. A dry run fetches and writes for real, then rolls back.
"""
from __future__ import annotations

import json
import os

import psycopg
from psycopg import sql

from python_runner import settings

PAGE_SIZE = 100


def extract(ctx) -> None:
    base = os.environ.get("ETL_DEMO_API", "http://127.0.0.1:8765")
    entity, region = ctx.params["entity"], ctx.params["region"]
    query = {"region": region, "pageSize": PAGE_SIZE}
    if ctx.cursor and ctx.cursor.get("value"):
        query["modifiedSince"] = ctx.cursor["value"]
        if ctx.cursor.get("tiebreak"):
            query["afterId"] = int(ctx.cursor["tiebreak"])
    table = sql.Identifier("bronze", entity)
    last = None
    with psycopg.connect(os.environ.get("ETL_DSN") or settings.dsn()) as conn:
        with conn.transaction(force_rollback=ctx.dry_run):
            page = 1
            while page:
                ctx.check_cancelled()
                body = ctx.http.get_json(f"{base}/api/{entity}", {**query, "page": page})
                rows = body["data"]
                ctx.count("page_count")
                ctx.count("records_read", len(rows))
                if rows:
                    with conn.cursor() as cur:
                        cur.executemany(sql.SQL(
                            "insert into {} (id, region, modified, payload) values (%s, %s, %s, %s) "
                            "on conflict (id) do update set region = excluded.region, modified = excluded.modified, "
                            "payload = excluded.payload, loaded_at = now()").format(table),
                            [(r["id"], r["region"], r["modifiedDate"], json.dumps(r)) for r in rows])
                    ctx.count("records_written", len(rows))
                    last = rows[-1]
                page = body["nextPage"]
    ctx.log.info("extracted", fields={"action": "extract", "entity": entity, "region": region,
                                      "records": ctx.metrics["records_read"], "pages": ctx.metrics["page_count"]})
    if last is not None:
        # Zero-padded so that the engine's text comparison of tie-breaks orders ids numerically.
        ctx.set_cursor(last["modifiedDate"], tiebreak=f"{last['id']:012d}")
