"""`etl apply`: what validation must refuse before anything is written (python_runner/definitions.py),
and the plan for a child that drops a parent defined elsewhere (python_runner/apply_cli.py)."""
from __future__ import annotations

import pytest

from test_apply import cli, snapshot, write  # noqa: F401  (cli is a fixture)


def edges(conn) -> list[tuple[str, str]]:
    return [(r["parent"], r["child"]) for r in conn.execute(
        """select p.slug as parent, c.slug as child from etl.job_dependencies d
             join etl.jobs p on p.job_id = d.parent_job_id join etl.jobs c on c.job_id = d.child_job_id
            order by 1, 2""")]


def refused(cli, conn, tmp_path, target, *expected: str, args: tuple[str, ...] = ()) -> str:
    """Runs apply (and --dry-run) on target: exit 2, each expected text in the output, nothing written."""
    before = snapshot(conn)
    for extra in (("--dry-run",), ()):
        r = cli(target, *args, *extra)
        out = r.output.replace(str(tmp_path) + "/", "")
        assert r.exit_code == 2, out
        assert "Traceback" not in out
        for e in expected:
            assert e in out, out
        assert "nothing applied" in out
    assert snapshot(conn) == before
    return out


# --- 1. duplicate mapping keys


def test_duplicate_yaml_keys_are_refused_with_the_line(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: top1, kind: python, target: "m:f"}
        jobs:
          - slug: top2
            kind: python
            target: "m:f"
            priority: 1
            priority: 9
        """)
    refused(cli, conn, tmp_path, f,
            'a.yml: line 4: duplicate key "jobs" (first at line 2)',
            'a.yml: line 9: duplicate key "priority" (first at line 8)')


def test_a_merge_key_may_be_overridden(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - &base {slug: one, kind: python, target: "m:f", priority: 1}
          - <<: *base
            slug: two
            priority: 2
        """)
    r = cli(f)
    assert r.exit_code == 0, r.output
    assert conn.execute("select priority from etl.jobs where slug = 'two'").fetchone()["priority"] == 2


# --- 2. a child's depends_on is all its parents


def test_dropping_a_parent_defined_in_another_file(cli, conn, tmp_path):
    write(tmp_path, "defs/a.yml", """
        jobs:
          - {slug: dp_parent, kind: python, target: "m:f"}
        """)
    child = write(tmp_path, "defs/b.yml", """
        jobs:
          - {slug: dp_child, kind: python, target: "m:f", depends_on: [dp_parent]}
        """)
    assert cli(tmp_path / "defs").exit_code == 0
    assert edges(conn) == [("dp_parent", "dp_child")]
    # the child applied alone, still naming its parent (now only in the database): no change,
    # the edge stays (what dropping only parents of the files used to protect)
    r = cli(child)
    assert r.exit_code == 0 and "= 1 unchanged" in r.output, r.output
    write(tmp_path, "defs/b.yml", """
        jobs:
          - {slug: dp_child, kind: python, target: "m:f"}
        """)
    r = cli(child, "--dry-run")
    assert "~ update job dp_child (changed fields: depends_on)" in r.output, r.output
    assert "depends_on: - dp_parent" in r.output, r.output
    assert edges(conn) == [("dp_parent", "dp_child")]
    r = cli(child)
    assert r.exit_code == 0, r.output
    assert edges(conn) == []
    assert "= 1 unchanged" in cli(child).output


def test_an_edge_being_dropped_is_no_cycle(cli, conn, tmp_path):
    # database: z -> x -> c; the files make c a root and z a child of c: z -> x -> c -> z only
    # if x -> c stayed, which c's depends_on drops
    for slug in ("c", "x", "z"):
        conn.execute("insert into etl.jobs (slug, name, kind, target) values (%s, %s, 'python', 'm:f')", (slug, slug))
    conn.execute("""insert into etl.job_dependencies (parent_job_id, child_job_id)
                    select p.job_id, ch.job_id from etl.jobs p, etl.jobs ch
                     where (p.slug, ch.slug) in (('x', 'c'), ('z', 'x'))""")
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: c, kind: python, target: "m:f"}
          - {slug: z, kind: python, target: "m:f", depends_on: [c]}
        """)
    r = cli(f)
    assert r.exit_code == 0, r.output
    assert edges(conn) == [("c", "z"), ("z", "x")]


# --- 3. no tracebacks


def test_a_file_that_is_not_utf8(cli, conn, tmp_path):
    f = tmp_path / "a.yml"
    f.write_bytes(b"\x89PNG\r\n\x1a\njobs: []\n")
    refused(cli, conn, tmp_path, f, "a.yml: not UTF-8 text (byte 0x89 at offset 0)")


def test_a_sql_file_that_is_not_utf8(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: a, kind: sql, target: t.f, sql_file: f.sql}
        """)
    (tmp_path / "f.sql").write_bytes(b"select '\xff';\n")
    refused(cli, conn, tmp_path, f, "a.yml: job a: sql_file: ", "f.sql: not UTF-8 text (byte 0xff at offset 8)")


NO_TRACEBACK = [
    ("days overflow", "timeout: 99999999999999d",
     ['job a: timeout: "99999999999999d" is too long (at most 999999999d)']),
    ("ms overflow", "retry: {backoff_cap: 99999999999999999999999ms}",
     ['job a: retry.backoff_cap: "99999999999999999999999ms" is too long']),
    ("digits beyond int()", "lease: " + "9" * 5000 + "s", ["job a: lease: ", "is too long"]),
    ("sql target without a dot", "kind: sql, target: nodot",
     ['job a: target: "nodot" is not a qualified routine name schema.routine']),
    ("an impossible unquoted date", "config: {since: 2024-13-45}",
     ["a.yml: not valid YAML: cannot read '2024-13-45': month must be in 1..12", "line 2"]),
    ("an integer beyond int()", "priority: " + "9" * 5000, ["a.yml: not valid YAML: cannot read '9999", "line 2"]),
    ("a recursive alias", "config: &c {x: *c}",
     ["a.yml: not valid YAML: alias *c inside its own anchor makes a recursive structure"]),
    # what PostgreSQL refuses at apply (dry-run passed): NUL in text, a lone surrogate (not UTF-8)
    ("NUL in a string", 'description: "a\\0b"',
     ["a.yml: job a: description: contains a NUL character (\\0), which PostgreSQL text cannot hold"]),
    ("a lone surrogate", 'config: {note: "a\\ud800b"}',
     ["a.yml: job a: config.note: contains a lone surrogate (\\ud800), which is not UTF-8"]),
]


@pytest.mark.parametrize("fields,expected", [c[1:] for c in NO_TRACEBACK], ids=[c[0] for c in NO_TRACEBACK])
def test_bad_values_are_errors_not_tracebacks(cli, conn, tmp_path, fields, expected):
    base = "slug: a, kind: python, target: \"m:f\""
    if "kind: sql" in fields:
        base = "slug: a"
    f = write(tmp_path, "a.yml", "jobs:\n  - {" + base + ", " + fields + "}\n")
    refused(cli, conn, tmp_path, f, *expected)


# --- 4. what the database would refuse, caught first


OUT_OF_RANGE = [
    ("priority", "priority: 3000000000", "job a: priority: must be <= 2147483647 (the largest value its "
                                         "integer column holds), got 3000000000"),
    ("concurrency.limit", "concurrency: {key: k, limit: 99999999999}",
     "job a: concurrency.limit: must be <= 2147483647"),
    ("item_concurrency", "item_concurrency: 99999999999", "job a: item_concurrency: must be <= 2147483647"),
    ("refresh sequence", "refresh: [{view: gold.mv, sequence: 2147483648}]",
     "job a: refresh[0].sequence: must be <= 2147483647"),
]


@pytest.mark.parametrize("fields,expected", [c[1:] for c in OUT_OF_RANGE], ids=[c[0] for c in OUT_OF_RANGE])
def test_integers_are_bounded_by_their_columns(cli, conn, tmp_path, fields, expected):
    f = write(tmp_path, "a.yml", "jobs:\n  - {slug: a, kind: python, target: \"m:f\", " + fields + "}\n")
    refused(cli, conn, tmp_path, f, expected)


def test_two_jobs_of_the_files_with_one_routine(cli, conn, tmp_path):
    write(tmp_path, "defs/a.yml", """
        jobs:
          - {slug: r1, kind: sql, target: t.g}
        """)
    write(tmp_path, "defs/b.yml", """
        jobs:
          - {slug: r2, kind: sql, target: t.g}
          - {slug: r3, kind: python, target: "t.g:run"}
        """)
    out = refused(cli, conn, tmp_path, tmp_path / "defs",
                  "defs/b.yml: job r2: target: routine t.g is already the target of job r1 (in ")
    assert "job r3" not in out


def test_a_routine_another_job_holds_in_the_database(cli, conn, tmp_path):
    conn.execute("insert into etl.jobs (slug, name, kind, target) values ('old', 'old', 'sql', 't.f')")
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: renamed, kind: sql, target: t.f}
        """)
    refused(cli, conn, tmp_path, f, "a.yml: job renamed: target: routine t.f is the target of job old in the "
                                    "database (one job per SQL routine)")


def test_a_routine_handed_over_within_the_files(cli, conn, tmp_path):
    conn.execute("insert into etl.jobs (slug, name, kind, target) values ('old', 'old', 'sql', 't.f')")
    # the new job comes first in the file: old must give t.f up before it is inserted
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: new, kind: sql, target: t.f}
          - {slug: old, kind: sql, target: t.old_f}
        """)
    r = cli(f)
    assert r.exit_code == 0, r.output
    rows = conn.execute("select slug, target from etl.jobs order by slug").fetchall()
    assert [(x["slug"], x["target"]) for x in rows] == [("new", "t.f"), ("old", "t.old_f")]


def test_routines_swapped_between_two_jobs(cli, conn, tmp_path):
    conn.execute("""insert into etl.jobs (slug, name, kind, target)
                    values ('a', 'a', 'sql', 't.f'), ('b', 'b', 'sql', 't.g')""")
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: a, kind: sql, target: t.g}
          - {slug: b, kind: sql, target: t.f}
        """)
    out = refused(cli, conn, tmp_path, f, "a.yml: job a: target: SQL routines change hands in a cycle "
                                          "(a takes t.g, b takes t.f)")
    assert out.count("change hands") == 1


# --- 5. the parameter schema everywhere, items.sql parsed


def test_static_items_follow_the_parameter_schema(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - slug: a
            kind: python
            target: "m:f"
            parameters: {region: {type: string, allowed: [eu, us]}, n: {type: integer}}
            items: {static: [{region: mars}, {regoin: eu}, {region: eu, n: "3"}, {region: us, n: 2}]}
        """)
    refused(cli, conn, tmp_path, f,
            'a.yml: job a: items.static[0].region: "mars" is not one of the allowed values "eu", "us"',
            'a.yml: job a: items.static[1].regoin: unknown parameter "regoin" (did you mean "region"?)',
            'a.yml: job a: items.static[2].n: "3" is not of type integer', "3 error(s)")


def test_schedule_params_follow_the_parameter_schema(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - slug: a
            kind: python
            target: "m:f"
            parameters: {n: {type: integer}, day: {type: date}}
            schedule: {cron: "0 * * * *", params: {n: abc, day: "2024-02-30", zzz: 1}}
          - slug: b
            kind: python
            target: "m:f"
            schedule: {cron: "0 * * * *", params: {n: 1}}
        """)
    refused(cli, conn, tmp_path, f,
            'a.yml: job a: schedule.params.n: "abc" is not of type integer',
            'a.yml: job a: schedule.params.day: "2024-02-30" is not of type date',
            'a.yml: job a: schedule.params.zzz: unknown parameter "zzz" (known: day, n)',
            'a.yml: job b: schedule.params.n: unknown parameter "n" (known: none)')


def test_schedule_params_that_fit_are_applied(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - slug: a
            kind: python
            target: "m:f"
            parameters: {n: {type: integer}, day: {type: date}, c: {type: string, required: true}}
            items: {static: [{n: 1}, {n: 2.0}]}
            schedule: {cron: "0 * * * *", params: {n: 5, day: 2024-02-29}}
        """)
    r = cli(f)
    assert r.exit_code == 0, r.output
    assert ("a.yml: job a: schedule.params: required parameter c is not given: every scheduled run will be "
            "refused") in r.output
    assert conn.execute("select params from etl.schedules").fetchone()["params"] == {"n": 5, "day": "2024-02-29"}


ITEMS_SQL = [
    ("syntax error", "selec region frm t",
     'items.sql: SQL syntax error: syntax error at or near "selec" (line 1, column 1)'),
    ("not a query", "delete from t", "items.sql: must be one SELECT query (it runs as a subquery), got DeleteStmt"),
    ("two queries", "select 1; select 2", "items.sql: must be one SELECT query (it runs as a subquery), got "
                                           "SelectStmt, SelectStmt"),
    ("trailing semicolon", "select 1 as n;", "items.sql: does not work as the subquery the engine runs it as"),
]


@pytest.mark.parametrize("query,expected", [c[1:] for c in ITEMS_SQL], ids=[c[0] for c in ITEMS_SQL])
def test_items_sql_is_parsed(cli, conn, tmp_path, query, expected):
    f = write(tmp_path, "a.yml", f"""
        jobs:
          - {{slug: a, kind: python, target: "m:f", items: {{sql: "{query}"}}}}
        """)
    refused(cli, conn, tmp_path, f, "a.yml: job a: " + expected)


def test_items_sql_that_parses_is_applied(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: a, kind: python, target: "m:f", items: {sql: "select r as region from (values ('eu')) v(r)"}}
        """)
    assert cli(f).exit_code == 0


# --- 6. finite numbers only


FINITE = "must be a finite number (JSON has no NaN or Infinity), got"
NON_FINITE = [
    ("backoff_factor nan", "retry: {backoff_factor: .nan}", "job a: retry.backoff_factor: must be a finite number, got nan"),
    ("backoff_factor inf", "retry: {backoff_factor: .inf}", "job a: retry.backoff_factor: must be a finite number, got inf"),
    ("backoff_factor 1e400", "retry: {backoff_factor: 1.0e+400}", "job a: retry.backoff_factor: must be a finite number"),
    ("config", "config: {x: [1, -.inf]}", f"job a: config.x[1]: {FINITE} -inf"),
    ("default", "parameters: {x: {type: number, default: .nan}}", f"job a: parameters.x.default: {FINITE} nan"),
    ("allowed", "parameters: {x: {type: number, allowed: [1, .inf]}}", f"job a: parameters.x.allowed[1]: {FINITE} inf"),
    ("items", "parameters: {x: {type: number}}, items: {static: [{x: .nan}]}", f"job a: items.static[0].x: {FINITE}"),
    ("schedule", "schedule: {cron: '0 * * * *', params: {x: .nan}}", f"job a: schedule.params.x: {FINITE} nan"),
]


@pytest.mark.parametrize("fields,expected", [c[1:] for c in NON_FINITE], ids=[c[0] for c in NON_FINITE])
def test_non_finite_numbers_are_refused(cli, conn, tmp_path, fields, expected):
    f = write(tmp_path, "a.yml", "jobs:\n  - {slug: a, kind: python, target: \"m:f\", " + fields + "}\n")
    refused(cli, conn, tmp_path, f, expected)


# --- 7. files that define nothing


@pytest.mark.parametrize("text", ["", "jobs:\n", "jobs: []\ngroups:\n"], ids=["empty", "jobs null", "empty lists"])
def test_a_file_that_defines_nothing_warns_and_prune_is_refused(cli, conn, tmp_path, text):
    conn.execute("insert into etl.jobs (slug, name, kind, target) values ('keep', 'keep', 'python', 'm:f')")
    f = tmp_path / "a.yml"
    f.write_text(text)
    r = cli(f)
    assert r.exit_code == 0, r.output
    assert "warning: " + str(f) + ": defines nothing (no jobs, groups or refresh_targets entries)" in r.output
    refused(cli, conn, tmp_path, f, "a.yml: --prune: the files define no jobs, so it would disable every "
                                    "enabled job in the database; refused", args=("--prune",))
    assert conn.execute("select enabled from etl.jobs where slug = 'keep'").fetchone()["enabled"] is True


# --- 8. YAML typed an unquoted scalar


def test_a_hint_to_quote_what_yaml_typed(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - slug: a
            kind: python
            target: "m:f"
            parameters:
              d: {type: string, default: 2024-01-01}
              c: {type: string, allowed: [DE, NO]}
            schedule: {cron: "0 * * * *", params: {d: off}}
        """)
    refused(cli, conn, tmp_path, f,
            'job a: parameters.d.default: 2024-01-01 does not match type string (YAML reads an unquoted '
            '2024-01-01 as a date: write "2024-01-01")',
            "job a: parameters.c.allowed: value False is not of type string (YAML reads an unquoted "
            "yes/no/on/off/true/false as a boolean: put the value in quotes)")


def test_a_group_a_job_outside_it_runs_between_is_refused(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: g_a, kind: python, target: "m:f"}
          - {slug: g_x, kind: python, target: "m:f", depends_on: [g_a]}
          - {slug: g_c, kind: python, target: "m:f", depends_on: [g_x]}
        groups:
          - {name: core, members: [g_a, g_c]}
        """)
    refused(cli, conn, tmp_path, f,
            "a.yml: group core: members: run as one unit (transaction_scope per_group), the group closes the cycle",
            "g_x", "a job outside the group runs between two of its members")


def test_a_group_with_a_job_outside_it_only_downstream_is_applied(cli, conn, tmp_path):
    f = write(tmp_path, "a.yml", """
        jobs:
          - {slug: g_a, kind: python, target: "m:f"}
          - {slug: g_c, kind: python, target: "m:f", depends_on: [g_a]}
          - {slug: g_x, kind: python, target: "m:f", depends_on: [g_c]}
        groups:
          - {name: core, members: [g_a, g_c]}
        """)
    assert cli(f).exit_code == 0
