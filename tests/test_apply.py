"""`etl apply`: YAML job definitions validated, planned and applied (python_runner/apply_cli.py)."""
from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from python_runner.cli import main

BASE = """
jobs:
  - slug: bronze_orders
    kind: python
    target: extract.orders:run
    layer: bronze
    tags: [sales, daily]
    parameters:
      country: {type: string, required: true, allowed: [DE, FR]}
      since: {type: date, mode: incremental, default: "2024-01-01"}
    retry: {max_attempts: 5, backoff_base: 2s, backoff_cap: 10m}
    timeout: 30m
    schedule: {cron: "0 2 * * *", timezone: Europe/Berlin}
  - slug: silver_orders
    name: Silver orders
    kind: sql
    target: silver.load_orders
    layer: silver
    role: fact
    priority: 5
    depends_on: [bronze_orders]
    incremental: {strategy: modified_date, lookback: 1h, tiebreak_key: id}
    refresh: [{view: gold.mv_sales}]
groups:
  - {name: nightly, members: [bronze_orders, silver_orders]}
"""


@pytest.fixture
def cli(db):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["apply", *map(str, args)], env={"ETL_DSN": db.dsn}, catch_exceptions=False)

    return invoke


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def snapshot(conn) -> dict:
    q = {
        "jobs": "select * from etl.jobs order by slug",
        "tags": "select job_id, tag from etl.job_tags order by 1, 2",
        "params": "select job_id, name, mode, data_type, required, default_value from etl.job_parameters order by 1, 2, 3",
        "deps": "select parent_job_id, child_job_id from etl.job_dependencies order by 1, 2",
        "scheds": "select * from etl.schedules order by schedule_id",
        "groups": "select * from etl.job_group_members order by 1, 2",
        "targets": "select * from etl.refresh_targets order by 1",
        "links": "select * from etl.job_refresh_targets order by 1, 2",
        "audit": "select count(*) from etl.audit_log where action = 'apply'",
    }
    return {k: conn.execute(v).fetchall() for k, v in q.items()}


def test_apply_creates_everything(cli, conn, tmp_path):
    f = write(tmp_path, "defs.yml", BASE)
    r = cli(f)
    assert r.exit_code == 0, r.output
    assert "+ create job bronze_orders" in r.output
    assert "+ create job silver_orders" in r.output
    assert "+ create group nightly" in r.output
    assert "+ create refresh_target gold.mv_sales" in r.output
    jobs = {j["slug"]: j for j in conn.execute("select * from etl.jobs")}
    assert jobs["silver_orders"]["name"] == "Silver orders"
    assert jobs["bronze_orders"]["name"] == "bronze_orders"
    assert jobs["bronze_orders"]["max_attempts"] == 5
    assert str(jobs["bronze_orders"]["backoff_cap"]) == "0:10:00"
    assert jobs["bronze_orders"]["supports_params"] is True
    assert jobs["silver_orders"]["incremental_strategy"] == "modified_date"
    tags = [r["tag"] for r in conn.execute(
        "select tag from etl.job_tags join etl.jobs using (job_id) where slug = 'bronze_orders' order by tag")]
    assert tags == ["daily", "sales"]
    params = {p["name"]: p for p in conn.execute("select * from etl.job_parameters")}
    assert params["country"]["required"] and params["country"]["allowed_values"] == ["DE", "FR"]
    assert params["since"]["mode"] == "incremental" and params["since"]["default_value"] == "2024-01-01"
    dep = conn.execute("""select p.slug as parent, c.slug as child from etl.job_dependencies d
                          join etl.jobs p on p.job_id = d.parent_job_id
                          join etl.jobs c on c.job_id = d.child_job_id""").fetchall()
    assert dep == [{"parent": "bronze_orders", "child": "silver_orders"}]
    sched = conn.execute("""select s.*, s.next_run_at = etl.cron_next('0 2 * * *', 'Europe/Berlin') as ok
                            from etl.schedules s""").fetchall()
    assert len(sched) == 1 and sched[0]["is_active"] and sched[0]["next_run_at"] is not None and sched[0]["ok"]
    members = conn.execute("""select j.slug, m.sequence from etl.job_group_members m join etl.jobs j using (job_id)
                              order by m.sequence""").fetchall()
    assert [m["slug"] for m in members] == ["bronze_orders", "silver_orders"]
    assert conn.execute("select count(*) as n from etl.job_refresh_targets").fetchone()["n"] == 1
    audit = conn.execute("select * from etl.audit_log where action = 'apply'").fetchall()
    assert len(audit) == 1 and audit[0]["target_type"] == "definition"
    assert audit[0]["details"]["files"] == [str(f)]
    assert audit[0]["details"]["summary"]["create"] == 4


def test_second_apply_is_unchanged(cli, conn, tmp_path):
    f = write(tmp_path, "defs.yml", BASE)
    assert cli(f).exit_code == 0
    before = snapshot(conn)
    r = cli(f)
    assert r.exit_code == 0, r.output
    assert "= 3 unchanged" in r.output  # 2 jobs, 1 group
    assert "+ " not in r.output and "~ " not in r.output
    assert snapshot(conn) == before


def test_changed_field_is_an_update(cli, conn, tmp_path):
    f = write(tmp_path, "defs.yml", BASE)
    assert cli(f).exit_code == 0
    old = conn.execute("select updated_at from etl.jobs where slug = 'silver_orders'").fetchone()["updated_at"]
    write(tmp_path, "defs.yml", BASE.replace("priority: 5", "priority: 7").replace("tags: [sales, daily]", "tags: [sales]"))
    r = cli(f)
    assert r.exit_code == 0, r.output
    lines = [x.strip() for x in r.output.splitlines()]
    # each update says what changed, old -> new, on the lines under it
    i = lines.index("~ update job silver_orders (changed fields: priority)")
    assert lines[i + 1] == "priority: 5 -> 7"
    i = lines.index("~ update job bronze_orders (changed fields: tags)")
    assert lines[i + 1] == "tags: - daily"
    row = conn.execute("select priority, updated_at from etl.jobs where slug = 'silver_orders'").fetchone()
    assert row["priority"] == 7 and row["updated_at"] > old
    # schedule change: the active schedule is updated in place, next_run_at recomputed
    write(tmp_path, "defs.yml", BASE.replace('cron: "0 2 * * *"', 'cron: "30 3 * * *"'))
    r = cli(f)
    assert "changed fields: tags, schedule" in r.output
    s = conn.execute("""select count(*) as n, bool_and(next_run_at = etl.cron_next('30 3 * * *', 'Europe/Berlin')) ok
                        from etl.schedules""").fetchone()
    assert s["n"] == 1 and s["ok"]


def test_dry_run_writes_nothing(cli, conn, tmp_path):
    f = write(tmp_path, "defs.yml", BASE)
    before = snapshot(conn)
    r = cli(f, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "+ create job bronze_orders" in r.output and "dry run" in r.output
    assert snapshot(conn) == before


def test_prune_disables_missing_job(cli, conn, tmp_path):
    f = write(tmp_path, "defs.yml", BASE)
    assert cli(f).exit_code == 0
    conn.execute("insert into etl.jobs (slug, name, kind, target) values ('legacy', 'legacy', 'python', 'm:f')")
    r = cli(f)
    assert "- remove" not in r.output
    r = cli(f, "--prune")
    assert r.exit_code == 0, r.output
    assert "- remove job legacy (disable)" in r.output
    row = conn.execute("select enabled from etl.jobs where slug = 'legacy'").fetchone()
    assert row == {"enabled": False}


def test_depends_on_a_job_in_the_database(cli, conn, tmp_path):
    conn.execute("insert into etl.jobs (slug, name, kind, target) values ('raw_feed', 'raw', 'python', 'm:f')")
    f = write(tmp_path, "defs.yml", """
        jobs:
          - {slug: child, kind: python, target: "m:f", depends_on: [raw_feed]}
        """)
    r = cli(f)
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output
    r = cli(f, "--strict", "--dry-run")
    assert r.exit_code == 2


INVALID = [
    ("unknown key", {"a.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:f", prority: 3}
        """}, ['a.yml: job a: prority: unknown key "prority" (did you mean "priority"?)']),
    ("bad duration", {"a.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:f", retry: {backoff_cap: 5 minutes}}
        """}, ['a.yml: job a: retry.backoff_cap: "5 minutes" is not a duration (use 500ms, 30s, 5m, 2h, 1d)']),
    ("unknown depends_on", {"a.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:f", depends_on: [nope]}
        """}, ['a.yml: job a: depends_on: unknown job "nope"']),
    ("cycle", {"a.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:f", depends_on: [c]}
          - {slug: b, kind: python, target: "m:f", depends_on: [a]}
          - {slug: c, kind: python, target: "m:f", depends_on: [b]}
        """}, ["dependency cycle a -> b -> c -> a"]),
    ("bad cron", {"a.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:f", schedule: {cron: "61 * * * *"}}
        """}, ["a.yml: job a: schedule.cron: ", "61"]),
    ("bad timezone", {"a.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:f", schedule: {cron: "0 1 * * *", timezone: Mars/Olympus}}
        """}, ["a.yml: job a: schedule.timezone: ", "Mars/Olympus"]),
    ("duplicate slug", {"a.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:f"}
        """, "b.yml": """
        jobs:
          - {slug: a, kind: python, target: "m:g"}
        """}, ['b.yml: job a: slug: duplicate slug "a" (also defined in']),
    ("invalid sql", {"a.yml": """
        jobs:
          - {slug: a, kind: sql, target: silver.load_a, sql_file: sql/load_a.sql}
        """, "sql/load_a.sql": "create procedure silver.load_a() language sql as $$ selec 1 $$;\nselec x from;\n"},
     ["a.yml: job a: sql_file: ", "load_a.sql: SQL syntax error: syntax error at or near", "line 2"]),
    ("bad param", {"a.yml": """
        jobs:
          - slug: a
            kind: python
            target: "m:f"
            parameters:
              n: {type: integer, required: true, default: x}
        """}, ["parameters.n.default: a required parameter takes no default",
               'parameters.n.default: "x" does not match type integer']),
]


@pytest.mark.parametrize("files,expected", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_definitions_exit_2_and_write_nothing(cli, conn, tmp_path, files, expected):
    for name, text in files.items():
        write(tmp_path, name, text)
    target = tmp_path if len([n for n in files if n.endswith(".yml")]) > 1 else tmp_path / "a.yml"
    before = snapshot(conn)
    r = cli(target)
    assert r.exit_code == 2, r.output
    out = r.output.replace(str(tmp_path) + "/", "")
    for e in expected:
        assert e in out, out
    assert "nothing applied" in out
    assert snapshot(conn) == before


def test_all_errors_collected(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: a, kind: pyhton, target: "m:f", timeout: forever}
          - {slug: b, kind: python, target: "m:f", lease: 3x, depends_on: [zzz]}
        groups:
          - {name: g, memebers: [a]}
        """)
    r = cli(f)
    assert r.exit_code == 2
    assert 'kind: "pyhton" is not one of python, sql (did you mean "python"?)' in r.output
    assert 'timeout: "forever" is not a duration' in r.output
    assert 'lease: "3x" is not a duration' in r.output
    assert 'group g: memebers: unknown key "memebers" (did you mean "members"?)' in r.output
    assert "5 error(s)" in r.output


LINEAGE_SQL = """
create schema if not exists silver;
create schema if not exists gold;
create table silver.orders (id int primary key, amount numeric);
create table gold.daily (total numeric);
create procedure silver.load_orders() language sql as $$ insert into silver.orders values (1, 2) $$;
create procedure gold.build_daily() language plpgsql as $$
begin
  delete from gold.daily;
  insert into gold.daily select sum(amount) from silver.orders;
end $$;
"""

LINEAGE_YAML = """
jobs:
  - {slug: load_orders, kind: sql, target: silver.load_orders}
  - {slug: build_daily, kind: sql, target: gold.build_daily%s}
"""


def test_lineage_flags_a_missing_dependency_and_is_stored(db, cli, tmp_path):
    with db.connect() as c:
        c.execute(LINEAGE_SQL)
    loose = write(tmp_path, "loose.yml", LINEAGE_YAML % "")
    warned = cli(loose, "--dry-run")
    assert warned.exit_code == 0
    assert ("job build_daily: depends_on: reads silver.orders, which job load_orders writes, "
            "but does not depend on load_orders") in warned.output
    strict = cli(loose, "--strict")
    assert strict.exit_code == 2
    assert "does not depend on load_orders (add it to depends_on) (--strict)" in strict.output
    tight = write(tmp_path, "tight.yml", LINEAGE_YAML % ", depends_on: [load_orders]")
    ok = cli(tight, "--strict")
    assert ok.exit_code == 0, ok.output
    assert "does not depend" not in ok.output
    with db.connect() as c:
        rows = c.execute("select j.slug, l.relation, l.access from etl.job_lineage l join etl.jobs j using (job_id) "
                         "order by 1, 2, 3").fetchall()
    assert [(r["slug"], r["relation"], r["access"]) for r in rows] == [
        ("build_daily", "gold.daily", "write"), ("build_daily", "silver.orders", "read"),
        ("load_orders", "silver.orders", "write")]
    again = cli(tight)
    assert "nothing to apply" in again.output
