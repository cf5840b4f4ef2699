"""Writes examples/demo/jobs.yml, the 72-job demo, from one description per entity.

    python -m examples.demo.make_jobs        # rewrites jobs.yml next to this file

Per entity (12 of them):
- bronze_<e>: a Python extract from the local API, one item per region (eu, us, apac), each
  item with its own modifiedDate cursor, three items at a time;
- silver_<e>_clean, silver_<e>_conform: SQL functions; conform jobs are dimensions or facts, so
  facts wait for every dimension; conform refreshes the view gold.mv_<e>_by_region on success;
- gold_<e>_daily (records per day and region), gold_<e>_trend (7-day rolling sum over daily),
  gold_<e>_region_share (each region's share, read from the refreshed view).
The group silver_sales_core (customers, products, orders conform, in that order) runs as one
transaction when the pipeline is triggered with transaction_scope per_group.
"""
from __future__ import annotations

from pathlib import Path

import yaml

ENTITIES = ("customers", "products", "orders", "order_items", "payments", "shipments",
            "suppliers", "stores", "employees", "inventory", "returns", "promotions")
DIMENSIONS = {"customers", "products", "suppliers", "stores", "employees", "promotions"}
REGIONS = ("eu", "us", "apac")
HEADER = """\
# The 72-job demo, written by examples/demo/make_jobs.py (edit that, not this file).
# 12 Bronze extracts from the local demo API (examples/demo/api_server.py), one item per region
# with its own modifiedDate cursor; 24 Silver SQL functions (clean, then conform; dimensions before
# facts; the group silver_sales_core runs in one transaction under per_group); 36 Gold jobs, and
# one materialized view per entity refreshed by the engine after its conform job succeeds.
"""


def jobs_for(e: str) -> list[dict]:
    tags = ["demo"]
    bronze = {
        "slug": f"bronze_{e}", "name": f"Extract {e.replace('_', ' ')}", "kind": "python",
        "target": "examples.demo.extract:extract", "layer": "bronze", "domain": e,
        "tags": tags + ["bronze", e], "priority": 10,
        "retry": {"max_attempts": 8, "backoff_base": "200ms", "backoff_factor": 2, "backoff_cap": "5s",
                  "jitter": "equal"},
        "timeout": "5m",
        "parameters": {"entity": {"type": "string", "default": e},
                       "region": {"type": "string", "allowed": list(REGIONS)}},
        "items": {"static": [{"region": r} for r in REGIONS]},
        "item_concurrency": 3,
        "incremental": {"strategy": "modified_date", "tiebreak_key": "id"},
        "allow_full_refresh": True,
    }
    clean = {"slug": f"silver_{e}_clean", "name": f"Clean {e.replace('_', ' ')}", "kind": "sql",
             "target": f"silver.clean_{e}", "layer": "silver", "domain": e, "tags": tags + ["silver", e],
             "priority": 5, "depends_on": [f"bronze_{e}"], "timeout": "10m", "allow_full_refresh": True}
    conform = {"slug": f"silver_{e}_conform", "name": f"Conform {e.replace('_', ' ')}", "kind": "sql",
               "target": f"silver.conform_{e}", "layer": "silver", "domain": e,
               "role": "dimension" if e in DIMENSIONS else "fact", "tags": tags + ["silver", e],
               "priority": 5, "depends_on": [f"silver_{e}_clean"], "timeout": "10m",
               "refresh": [{"view": f"gold.mv_{e}_by_region", "policy": "on_success"}],
               "allow_full_refresh": True}
    daily = {"slug": f"gold_{e}_daily", "name": f"Daily {e.replace('_', ' ')}", "kind": "sql",
             "target": f"gold.daily_{e}", "layer": "gold", "domain": e, "tags": tags + ["gold", e],
             "depends_on": [f"silver_{e}_conform"], "timeout": "10m"}
    trend = {"slug": f"gold_{e}_trend", "name": f"7-day trend of {e.replace('_', ' ')}", "kind": "sql",
             "target": f"gold.trend_{e}", "layer": "gold", "domain": e, "tags": tags + ["gold", e],
             "depends_on": [f"gold_{e}_daily"], "timeout": "10m"}
    share = {"slug": f"gold_{e}_region_share", "name": f"Region share of {e.replace('_', ' ')}", "kind": "sql",
             "target": f"gold.region_share_{e}", "layer": "gold", "domain": e, "tags": tags + ["gold", e],
             "depends_on": [f"silver_{e}_conform"], "timeout": "10m"}
    if e == "orders":
        bronze["schedule"] = {"cron": "*/30 * * * *", "timezone": "Europe/Berlin", "misfire": "latest",
                              "overlap": "skip"}
        daily["schedule"] = {"cron": "0 6 * * *", "timezone": "Europe/Berlin", "misfire": "catch_up",
                             "overlap": "queue_one"}
    return [bronze, clean, conform, daily, trend, share]


def document() -> dict:
    jobs = [j for e in ENTITIES for j in jobs_for(e)]
    order = {"bronze": 0, "silver": 1, "gold": 2}
    jobs.sort(key=lambda j: order[j["layer"]])  # stable: entity order within a layer
    return {
        "jobs": jobs,
        "groups": [{"name": "silver_sales_core",
                    "description": "Customers, products and orders conformed in one transaction (per_group)",
                    "members": ["silver_customers_conform", "silver_products_conform", "silver_orders_conform"]}],
        "refresh_targets": [{"schema": "gold", "view": f"mv_{e}_by_region", "mode": "auto",
                             "description": f"{e.replace('_', ' ')} per region, refreshed after conform"}
                            for e in ENTITIES],
    }


def main() -> None:
    out = Path(__file__).resolve().parent / "jobs.yml"
    out.write_text(HEADER + yaml.safe_dump(document(), sort_keys=False, width=110), encoding="utf-8")
    print(f"wrote {out}: {len(document()['jobs'])} jobs")


if __name__ == "__main__":
    main()
