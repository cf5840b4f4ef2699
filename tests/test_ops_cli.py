"""The operator commands of `etl` (python_runner/ops_cli.py) against a fresh database per test."""
from __future__ import annotations

import json
import re
import threading
import time

import pytest
from click.testing import CliRunner

from python_runner.cli import main

SUCCESS = '{"status": "success"}'


@pytest.fixture
def cli(db):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), env={"ETL_DSN": db.dsn}, catch_exceptions=False)

    return invoke


def make_job(conn, slug: str, **cols) -> int:
    names = ["slug", "name", "kind", "target", *cols]
    values = [slug, slug, "python", "m:f", *cols.values()]
    return conn.execute(
        f"insert into etl.jobs ({', '.join(names)}) values ({', '.join(['%s'] * len(names))}) returning job_id",
        values).fetchone()["job_id"]


def depend(conn, parent: str, child: str) -> None:
    conn.execute("""insert into etl.job_dependencies (parent_job_id, child_job_id)
                    select p.job_id, c.job_id from etl.jobs p, etl.jobs c where p.slug = %s and c.slug = %s""",
                 (parent, child))


@pytest.fixture
def diamond(conn):
    """a -> b, a -> c, b -> d, c -> d; a has a tag, a schedule and a parameter."""
    for s, layer in (("a", "bronze"), ("b", "silver"), ("c", "silver"), ("d", "gold")):
        make_job(conn, s, layer=layer, supports_params=True)
    for p, c in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
        depend(conn, p, c)
    conn.execute("insert into etl.job_tags (job_id, tag) select job_id, 'finance' from etl.jobs where slug = 'a'")
    conn.execute("""insert into etl.schedules (job_id, cron_expr, timezone)
                    select job_id, '0 2 * * *', 'UTC' from etl.jobs where slug = 'a'""")
    conn.execute("""insert into etl.job_parameters (job_id, name, data_type, default_value)
                    select job_id, 'country', 'string', '"DE"' from etl.jobs where slug = 'a'""")
    conn.execute("""insert into etl.job_parameters (job_id, name, data_type)
                    select job_id, n, t from etl.jobs, (values ('n', 'integer'), ('flags', 'object')) v(n, t)
                     where slug = 'a'""")
    return conn


def test_settings_dsn_reads_env_at_call_time(db, monkeypatch):
    from python_runner import settings
    monkeypatch.setenv("ETL_DSN", db.dsn)
    assert settings.dsn() == db.dsn


def test_help_texts(cli):
    for args in (["jobs", "list"], ["jobs", "show"], ["jobs", "enable"], ["jobs", "disable"], ["run"],
                 ["runs", "list"], ["runs", "show"], ["cancel"], ["retry"], ["settings", "get"],
                 ["settings", "set"], ["dag"]):
        res = cli(*args, "--help")
        assert res.exit_code == 0, (args, res.output)
        assert "Usage:" in res.output


# ---------------------------------------------------------------------------------------- jobs


def test_jobs_list_table_json_and_filters(cli, diamond):
    res = cli("jobs", "list")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:3] == ["JOB", "LAYER", "ENABLED"]
    assert [ln.split()[0] for ln in lines[2:]] == ["a", "b", "c", "d"]

    rows = json.loads(cli("jobs", "list", "--json").output)
    by = {r["slug"]: r for r in rows}
    assert by["d"]["dependencies"] == 2 and by["a"]["tags"] == ["finance"]
    assert by["a"]["next_run_at"] is not None and by["a"]["last_status"] is None

    assert [r["slug"] for r in json.loads(cli("jobs", "list", "--tag", "finance", "--json").output)] == ["a"]
    assert [r["slug"] for r in json.loads(cli("jobs", "list", "--layer", "silver", "--json").output)] == ["b", "c"]
    assert [r["slug"] for r in json.loads(cli("jobs", "list", "--limit", "2", "--offset", "1", "--json").output)] \
        == ["b", "c"]
    assert [r["slug"] for r in json.loads(cli("jobs", "list", "--search", "D", "--json").output)] == ["d"]
    assert json.loads(cli("jobs", "list", "--disabled", "--json").output) == []
    assert cli("jobs", "list", "--sort", "nope").exit_code == 2


def test_jobs_list_last_run(cli, diamond):
    assert cli("run", "b").exit_code == 0
    rows = {r["slug"]: r for r in json.loads(cli("jobs", "list", "--sort", "last_run", "--json").output)}
    assert rows["b"]["last_status"] in ("pending", "queued")


def _cancel(conn, run_id: int) -> None:
    conn.execute("select etl.cancel(%s, 'not today')", (run_id,))


def test_jobs_last_run_is_the_latest_created(cli, db, conn):
    # Jobs without parents, so their runs are claimable at once. x: one failed run. y: a run
    # cancelled before it started (no started_at), then a failed one. z: its only run cancelled
    # before it started, created last. w: never ran.
    for slug in ("w", "x", "y", "z"):
        make_job(conn, slug)
    x_failed = _failed_run(db, conn, "x")
    y_cancelled = conn.execute("select etl.run_job('y') as r").fetchone()["r"]
    _cancel(conn, y_cancelled)
    y_failed = _failed_run(db, conn, "y")
    z_cancelled = conn.execute("select etl.run_job('z') as r").fetchone()["r"]
    _cancel(conn, z_cancelled)

    rows = json.loads(cli("jobs", "list", "--sort", "last_run", "--json").output)
    assert [r["slug"] for r in rows] == ["z", "y", "x", "w"]
    by = {r["slug"]: r for r in rows}
    assert (by["y"]["last_run_id"], by["y"]["last_status"]) == (y_failed, "failed")
    assert (by["x"]["last_run_id"], by["z"]["last_run_id"], by["w"]["last_run_id"]) == (x_failed, z_cancelled, None)
    line_y = next(ln for ln in cli("jobs", "list").output.splitlines() if ln.startswith("y "))
    assert "failed" in line_y and "cancelled" not in line_y

    last_runs = json.loads(cli("jobs", "show", "y", "--json").output)["last_runs"]
    assert [r["run_id"] for r in last_runs] == [y_failed, y_cancelled]


def test_jobs_list_filters_by_last_status(cli, db, diamond):
    _failed_run(db, diamond, "a")
    _cancel(diamond, diamond.execute("select etl.run_job('c') as r").fetchone()["r"])

    def slugs(*args):
        res = cli("jobs", "list", *args, "--json")
        assert res.exit_code == 0, res.output
        return [r["slug"] for r in json.loads(res.output)]

    assert slugs("--last-status", "failed") == ["a"]
    assert slugs("--last-status", "cancelled") == ["c"]
    assert slugs("--last-status", "never") == ["b", "d"]
    assert slugs("--last-status", "success") == []
    assert "--last-status" in cli("jobs", "list", "--help").output
    res = cli("jobs", "list", "--last-status", "green")
    assert res.exit_code == 2 and "green" in res.output


def test_jobs_show_labels_fire_times_utc_and_local(cli, diamond):
    diamond.execute("""insert into etl.schedules (job_id, cron_expr, timezone, is_active)
                       select job_id, '0 6 * * *', 'Europe/Berlin', true from etl.jobs where slug = 'b'""")
    out = cli("jobs", "show", "b").output
    assert "at 06:00 every day" in out
    next_line = next(ln for ln in out.splitlines() if ln.strip().startswith("next:"))
    # 06:00 in Berlin is 05:00 UTC in winter and 04:00 UTC in summer.
    assert " UTC (06:00 Europe/Berlin)" in next_line and next_line.count("UTC (") == 3, next_line
    utc_line = next(ln for ln in cli("jobs", "show", "a").output.splitlines() if ln.strip().startswith("next:"))
    assert "02:00:00 UTC" in utc_line and "(02:00" not in utc_line, utc_line


def test_jobs_show(cli, diamond):
    res = cli("jobs", "show", "a")
    assert res.exit_code == 0, res.output
    assert "0 2 * * *" in res.output and "next:" in res.output
    assert "max_attempts" in res.output and "country" in res.output
    assert "children: b (explicit), c (explicit)" in res.output
    data = json.loads(cli("jobs", "show", "a", "--json").output)
    assert len(data["schedules"][0]["next_fire_times"]) == 3
    assert data["schedules"][0]["summary"]
    assert data["retry_policy"]["max_attempts"] == 3
    assert [p["slug"] for p in data["children"]] == ["b", "c"]


def test_jobs_show_unknown(cli, db):
    res = cli("jobs", "show", "nosuchjob")
    assert res.exit_code == 2
    assert "nosuchjob" in res.output and "Traceback" not in res.output


def test_jobs_enable_disable_audited(cli, diamond):
    assert cli("jobs", "disable", "b").exit_code == 2          # --reason is required
    res = cli("jobs", "disable", "b", "--reason", "   ")        # and not blank
    assert res.exit_code == 2 and "reason is required to disable a job" in res.output
    res = cli("jobs", "disable", "b", "--reason", "maintenance")
    assert res.exit_code == 0, res.output
    assert diamond.execute("select enabled from etl.jobs where slug = 'b'").fetchone()["enabled"] is False
    assert [r["slug"] for r in json.loads(cli("jobs", "list", "--disabled", "--json").output)] == ["b"]
    assert cli("jobs", "enable", "b", "--reason", "back").exit_code == 0
    audit = diamond.execute("""select action, target_type, target_id, reason from etl.audit_log
                                where target_type = 'job' order by audit_id""").fetchall()
    assert [(a["action"], a["target_id"], a["reason"]) for a in audit] == \
        [("disable", "b", "maintenance"), ("enable", "b", "back")]
    res = cli("jobs", "enable", "ghost", "--reason", "x")
    assert res.exit_code == 2 and "ghost" in res.output


# ----------------------------------------------------------------------------------------- run


def test_run_params_parsing(cli, diamond):
    res = cli("run", "a", "-p", "n=5", "-p", "country=FR", "-p", 'flags={"x": [1]}', "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    params = diamond.execute("select params from etl.runs where run_id = %s", (out["run_id"],)).fetchone()["params"]
    assert params["n"] == 5 and params["country"] == "FR" and params["flags"] == {"x": [1]}


def test_run_params_file_and_text(cli, diamond, tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"country": "US", "n": 1}')
    res = cli("run", "a", "--params-file", str(f), "-p", "n=2", "--reason", "test", "--dry-run")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("run ")
    run_id = int(res.output.split()[1])
    r = diamond.execute("select params, dry_run, reason from etl.runs where run_id = %s", (run_id,)).fetchone()
    assert r["params"]["country"] == "US" and r["params"]["n"] == 2 and r["dry_run"] and r["reason"] == "test"


def test_run_bad_input(cli, diamond):
    res = cli("run", "nosuch")
    assert res.exit_code == 2 and "nosuch" in res.output
    res = cli("run", "a", "-p", "novalue")
    assert res.exit_code == 2 and "key=value" in res.output
    res = cli("run", "a", "-p", "=x")
    assert res.exit_code == 2


def test_run_params_refuses_duplicates_and_non_finite_numbers(cli, diamond):
    res = cli("run", "a", "-p", "n=1", "-p", "country=FR", "-p", "n=2")
    assert res.exit_code == 2 and "'n'" in res.output and "twice" in res.output, res.output
    for value in ("NaN", "Infinity", "-Infinity", "1e400", "[1, NaN]", '{"x": Infinity}'):
        res = cli("run", "a", "-p", f"flags={value}")
        assert res.exit_code == 2, (value, res.output)
        assert "flags" in res.output and "SQLSTATE" not in res.output and "Traceback" not in res.output
    assert diamond.execute("select count(*) as n from etl.runs").fetchone()["n"] == 0
    res = cli("run", "a", "-p", 'country="NaN"', "--json")             # quoted: the string NaN
    assert res.exit_code == 0, res.output
    assert diamond.execute("select params from etl.runs").fetchone()["params"]["country"] == "NaN"
    res = cli("settings", "set", "parallel_jobs", "NaN", "--reason", "x")
    assert res.exit_code == 2 and "parallel_jobs" in res.output and "SQLSTATE" not in res.output, res.output


def test_run_refuses_options_it_would_ignore(cli, diamond):
    diamond.execute("update etl.jobs set allow_full_refresh = true where slug = 'a'")
    res = cli("run", "a", "--timeout", "5")
    assert res.exit_code == 2 and "--timeout" in res.output and "--wait" in res.output, res.output
    res = cli("run", "a", "--full", "--request-approval")
    assert res.exit_code == 2 and "--reason" in res.output, res.output
    res = cli("run", "a", "--full", "--request-approval", "--reason", "rebuild", "--wait")
    assert res.exit_code == 2 and "--wait" in res.output, res.output
    assert diamond.execute("select count(*) as n from etl.pipeline_runs").fetchone()["n"] == 0
    res = cli("run", "a", "--full", "--request-approval", "--reason", "rebuild")
    assert res.exit_code == 0 and "awaiting approval" in res.output, res.output


def test_run_disabled_job_reports_db_error(cli, diamond):
    cli("jobs", "disable", "a", "--reason", "x")
    res = cli("run", "a")
    assert res.exit_code == 1
    assert res.output.startswith("error: job(s) a are disabled")
    assert "SQLSTATE 55000" in res.output and "Traceback" not in res.output


def test_run_wait_timeout(cli, diamond):
    t0 = time.monotonic()
    res = cli("run", "a", "--wait", "--timeout", "1")
    assert res.exit_code == 124, res.output
    assert time.monotonic() - t0 < 10
    assert "timed out" in res.output


def _finish_when_claimable(db, outcome: str, errors: list, stop: threading.Event):
    try:
        with db.connect() as conn:
            end = time.monotonic() + 30
            while time.monotonic() < end and not stop.is_set():
                claimed = conn.execute("select * from etl.claim('test-worker', 1)").fetchall()
                for c in claimed:
                    conn.execute("select etl.finish(%s, %s, %s)", (c["run_id"], c["token"], outcome))
                    return
                time.sleep(0.1)
    except BaseException as exc:  # noqa: BLE001 - surfaced by the test
        errors.append(exc)


def run_while_finishing(cli, db, outcome: str, *args: str):
    """cli(*args) while a thread plays the runner: claims the runs as they come and finishes them
    with outcome; its errors fail the test."""
    errors: list = []
    stop = threading.Event()
    t = threading.Thread(target=_finish_when_claimable, args=(db, outcome, errors, stop), daemon=True)
    t.start()
    try:
        return cli(*args)
    finally:
        stop.set()
        t.join(5)
        assert not errors


def test_run_wait_success(cli, db, diamond):
    res = run_while_finishing(cli, db, SUCCESS, "run", "a", "--wait", "--timeout", "20")
    assert res.exit_code == 0, res.output
    assert "success" in res.output and "a " in res.output


def test_run_wait_failure(cli, db, diamond):
    diamond.execute("update etl.jobs set max_attempts = 1 where slug = 'a'")
    outcome = '{"status": "failed", "error_category": "DATA", "message": "bad rows", "is_transient": false}'
    res = run_while_finishing(cli, db, outcome, "run", "a", "--wait", "--timeout", "20")
    assert res.exit_code == 1, res.output
    assert "failed" in res.output


def test_run_json_wait_prints_one_json_document(cli, db, diamond):
    res = run_while_finishing(cli, db, SUCCESS, "run", "a", "--json", "--wait", "--timeout", "20")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)                       # the whole of stdout is one document
    assert data["status"] == "success" and data["wait"]["result"] == "success"
    assert [(r["job"], r["status"]) for r in data["wait"]["runs"]] == [("a", "success")]
    assert "success" in res.stderr                       # the progress lines


def test_run_json_wait_timeout_is_still_one_json_document(cli, diamond):
    res = cli("run", "a", "--json", "--wait", "--timeout", "1")
    assert res.exit_code == 124, res.output
    data = json.loads(res.stdout)
    assert data["wait"]["result"] == "timeout" and data["status"] in ("pending", "queued")
    assert "timed out" in res.stderr


# ---------------------------------------------------------------------------------------- runs


def _failed_run(db, conn, slug="a") -> int:
    conn.execute("update etl.jobs set max_attempts = 1 where slug = %s", (slug,))
    run_id = conn.execute("select etl.run_job(%s) as r", (slug,)).fetchone()["r"]
    c = conn.execute("select * from etl.claim('w1', 1)").fetchone()
    assert c["run_id"] == run_id
    conn.execute("select etl.finish(%s, %s, %s)", (run_id, c["token"],
                 '{"status": "failed", "error_category": "API", "message": "HTTP 400 bad request", '
                 '"is_transient": false}'))
    return run_id


def test_runs_list_filters_and_json(cli, db, diamond):
    failed = _failed_run(db, diamond)
    other = diamond.execute("select etl.run_job('b') as r").fetchone()["r"]
    res = cli("runs", "list")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].split()[:3] == ["RUN", "JOB", "STATUS"]
    rows = json.loads(cli("runs", "list", "--json").output)
    assert [r["run_id"] for r in rows] == [other, failed]     # newest created first, started or not
    rows = json.loads(cli("runs", "list", "--status", "failed", "--category", "API", "--json").output)
    assert [r["run_id"] for r in rows] == [failed]
    assert json.loads(cli("runs", "list", "--category", "DB", "--json").output) == []
    assert [r["run_id"] for r in json.loads(cli("runs", "list", "--job", "b", "--json").output)] == [other]
    assert len(json.loads(cli("runs", "list", "--since", "24h", "--json").output)) == 2
    assert json.loads(cli("runs", "list", "--since", "2999-01-01T00:00:00", "--json").output) == []
    assert cli("runs", "list", "--since", "yesterday").exit_code == 2
    assert cli("runs", "list", "--job", "ghost").exit_code == 2


def test_runs_list_pending_runs_are_not_hidden_and_offset(cli, db, diamond):
    started = _failed_run(db, diamond)
    pending = [diamond.execute("select etl.run_job('b') as r").fetchone()["r"] for _ in range(2)]
    rows = json.loads(cli("runs", "list", "--limit", "2", "--json").output)
    assert [r["run_id"] for r in rows] == pending[::-1]
    rows = json.loads(cli("runs", "list", "--limit", "2", "--offset", "2", "--json").output)
    assert [r["run_id"] for r in rows] == [started]
    assert cli("runs", "list", "--offset", "-1").exit_code == 2


def test_runs_list_since_out_of_range_is_bad_input(cli, db):
    for since in ("99999999999d", "3000000d", "999999999999999999999w"):
        res = cli("runs", "list", "--since", since)
        assert res.exit_code == 2, (since, res.output)
        assert since in res.output and "--since" in res.output and "Traceback" not in res.output


def test_runs_show(cli, db, diamond):
    run_id = _failed_run(db, diamond)
    res = cli("runs", "show", str(run_id))
    assert res.exit_code == 0, res.output
    assert "timeline:" in res.output and "running -> failed" in res.output
    assert "w1" in res.output and "HTTP 400" in res.output
    data = json.loads(cli("runs", "show", str(run_id), "--json").output)
    assert data["run"]["status"] == "failed" and data["attempts"][0]["worker_id"] == "w1"
    assert any(e["to_status"] == "failed" for e in data["events"])
    res = cli("runs", "show", "999999")
    assert res.exit_code == 3 and "999999" in res.output


def test_runs_show_cancelled_run_is_a_cancellation_not_an_error(cli, diamond):
    run_id = diamond.execute("select etl.run_job('a') as r").fetchone()["r"]
    c = diamond.execute("select * from etl.claim('w1', 1)").fetchone()
    assert diamond.execute("select etl.cancel(%s, 'wrong day') as r", (run_id,)).fetchone()["r"] == "cancel_requested"
    diamond.execute("select etl.finish(%s, %s, %s)",
                    (run_id, c["token"], '{"status": "cancelled", "message": "cancelled by an operator"}'))
    res = cli("runs", "show", str(run_id))
    assert res.exit_code == 0, res.output
    assert "error - -" not in res.output
    assert "cancellation  cancelled by an operator (reason: wrong day)" in res.output, res.output


def test_runs_show_indents_a_multiline_error(cli, db, diamond):
    diamond.execute("update etl.jobs set max_attempts = 1 where slug = 'a'")
    run_id = diamond.execute("select etl.run_job('a') as r").fetchone()["r"]
    c = diamond.execute("select * from etl.claim('w1', 1)").fetchone()
    diamond.execute("select etl.finish(%s, %s, %s)", (run_id, c["token"], json.dumps(
        {"status": "failed", "error_category": "DB", "message": "first line\nsecond line", "is_transient": False})))
    lines = cli("runs", "show", str(run_id)).output.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.strip().startswith("error "))
    assert lines[i].endswith("first line")
    assert lines[i + 1].strip() == "second line"
    assert lines[i + 1].index("second") == lines[i].index("DB"), (lines[i], lines[i + 1])


def test_runs_show_says_a_run_awaits_approval(cli, diamond):
    diamond.execute("update etl.jobs set allow_full_refresh = true where slug = 'a'")
    out = json.loads(cli("run", "a", "--full", "--request-approval", "--reason", "rebuild", "--json").output)
    res = cli("runs", "show", str(out["run_id"]))
    assert res.exit_code == 0, res.output
    assert f"awaiting approval (pipeline run {out['pipeline_run_id']})" in res.output.splitlines()[0]
    assert json.loads(cli("runs", "show", str(out["run_id"]), "--json").output)["awaiting_approval"] is True
    run_id = diamond.execute("select etl.run_job('b') as r").fetchone()["r"]
    assert "awaiting approval" not in cli("runs", "show", str(run_id)).output


# ------------------------------------------------------------------------------- cancel / retry


def test_cancel(cli, diamond):
    run_id = diamond.execute("select etl.run_job('a') as r").fetchone()["r"]
    assert cli("cancel", str(run_id)).exit_code == 2            # --reason is required
    res = cli("cancel", str(run_id), "--reason", "not today")
    assert res.exit_code == 0, res.output
    assert "cancelled" in res.output
    assert diamond.execute("select status from etl.runs where run_id = %s", (run_id,)).fetchone()["status"] \
        == "cancelled"
    res = cli("cancel", str(run_id), "--reason", "again")
    assert res.exit_code == 1 and "already cancelled" in res.output
    assert cli("cancel", "999999", "--reason", "x").exit_code == 3


def test_cancel_and_retry_a_pipeline_run(cli, diamond):
    pid = diamond.execute("select etl.trigger_pipeline(jobs => array['a','b','c','d'], reason => 't') as p").fetchone()["p"]
    res = cli("cancel", str(pid), "--pipeline", "--reason", "wrong day")
    assert res.exit_code == 0, res.output
    assert f"pipeline run {pid}: 4 runs cancelled, skipped" in res.output, res.output
    assert diamond.execute("select status from etl.pipeline_runs where pipeline_run_id = %s", (pid,)).fetchone()["status"] \
        == "cancelled"
    assert diamond.execute("select count(*) as n from etl.runs where pipeline_run_id = %s "
                           "and status not in ('cancelled', 'skipped')", (pid,)).fetchone()["n"] == 0
    res = cli("cancel", str(pid), "--pipeline", "--reason", "again")
    assert res.exit_code == 1 and "already cancelled" in res.output
    assert cli("cancel", "999999", "--pipeline", "--reason", "x").exit_code == 3
    assert cli("approve", "999999", "--reason", "x").exit_code == 3
    res = cli("retry", str(pid), "--pipeline", "--reason", "right day after all")
    assert res.exit_code == 0, res.output
    assert f"pipeline run {pid} re-opened, now running" in res.output
    assert diamond.execute("select count(*) as n from etl.runs where pipeline_run_id = %s "
                           "and status in ('pending', 'queued')", (pid,)).fetchone()["n"] == 4
    res = cli("retry", str(pid), "--pipeline", "--reason", "again")
    assert res.exit_code == 1 and "no failed, cancelled or skipped run to re-open" in res.output, res.output


def test_runs_show_says_what_a_pending_run_waits_for_and_a_cancel_not_taken(cli, diamond):
    pid = diamond.execute("select etl.trigger_pipeline(jobs => array['a','b','c','d'], reason => 't') as p").fetchone()["p"]
    runs = {r["slug"]: r["run_id"] for r in diamond.execute(
        "select j.slug, r.run_id from etl.runs r join etl.jobs j using (job_id) where r.pipeline_run_id = %s", (pid,))}
    res = cli("runs", "show", str(runs["d"]))
    assert res.exit_code == 0, res.output
    assert re.search(rf"waiting for +b run {runs['b']} \(pending\), c run {runs['c']} \(pending\)", res.output), res.output
    claimed = diamond.execute("select run_id, token from etl.claim('w', 1)").fetchone()
    assert claimed["run_id"] == runs["a"]
    diamond.execute("select etl.cancel(%s, 'stop it')", (runs["a"],))
    assert "the runner stops the job at its next heartbeat" in cli("runs", "show", str(runs["a"])).output
    diamond.execute("""select etl.finish(%s, %s, '{"status": "failed", "error_category": "DATA"}')""",
                    (runs["a"], claimed["token"]))
    assert "but the job ended failed before it stopped" in cli("runs", "show", str(runs["a"])).output
    # (a failed parent skips its descendants; a run triggered alone waits for the outside parent)
    res = cli("runs", "show", str(diamond.execute("select etl.run_job('b') as r").fetchone()["r"]))
    assert re.search(rf"waiting for +its parents' latest runs outside this pipeline run to succeed, until .*: "
                     rf"a run {runs['a']} \(failed: etl retry {runs['a']}\)", res.output), res.output


def test_retry(cli, db, diamond):
    run_id = _failed_run(db, diamond)
    res = cli("retry", str(run_id), "--reason", "fixed upstream")
    assert res.exit_code == 0, res.output
    assert f"run {run_id} re-opened" in res.output
    assert diamond.execute("select status from etl.runs where run_id = %s", (run_id,)).fetchone()["status"] \
        in ("pending", "queued")
    res = cli("retry", str(run_id), "--reason", "again")           # not failed any more
    assert res.exit_code == 1 and res.output.startswith("error: ") and "SQLSTATE 55000" in res.output
    assert cli("retry", "999999", "--reason", "x").exit_code == 3


# ------------------------------------------------------------------------------------ settings


def test_settings_get(cli, db):
    res = cli("settings", "get")
    assert res.exit_code == 0 and "parallel_jobs" in res.output
    one = json.loads(cli("settings", "get", "environment", "--json").output)
    assert one["name"] == "environment" and one["value"] == "dev"
    assert len(json.loads(cli("settings", "get", "--json").output)) >= 5
    assert cli("settings", "get", "nope").exit_code == 3


def test_settings_set(cli, conn):
    res = cli("settings", "set", "parallel_jobs", "6")
    assert res.exit_code == 2 and "--reason" in res.output        # refused by Click
    res = cli("settings", "set", "parallel_jobs", "6", "--reason", "more")
    assert res.exit_code == 0, res.output
    assert "parallel_jobs:" in res.output and "-> 6" in res.output
    assert conn.execute("select value from etl.settings where name = 'parallel_jobs'").fetchone()["value"] == 6
    res = cli("settings", "set", "environment", "prod", "--reason", "go live", "--json")
    assert json.loads(res.output)["new"] == "prod"
    res = cli("settings", "set", "parallel_jobs", "0", "--reason", "x")
    assert res.exit_code == 2 and res.output.startswith("error: ") and "SQLSTATE 22023" in res.output
    assert "Traceback" not in res.output


# ----------------------------------------------------------------------------------------- dag


def test_dag_text_levels(cli, diamond):
    res = cli("dag")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines == ["level 0: a (bronze)", "level 1: b (silver), c (silver)", "level 2: d (gold)"]


def test_dag_dot_mermaid_json(cli, diamond):
    dot = cli("dag", "--format", "dot").output
    assert dot.startswith("digraph")
    for p, c in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
        assert f'"{p}" -> "{c}";' in dot
    assert 'label="a (bronze)"' in dot
    mer = cli("dag", "--format", "mermaid").output
    assert mer.startswith("graph TD") and "a --> b" in mer and 'd["d (gold)"]' in mer
    data = json.loads(cli("dag", "--format", "json").output)
    assert data["levels"] == [["a"], ["b", "c"], ["d"]]
    assert cli("dag", "--format", "png").exit_code == 2


def test_schedules_lists_cron_in_words_and_next_fires(db):
    import json as _json

    from click.testing import CliRunner

    from python_runner.cli import main
    with db.connect() as c:
        c.execute("insert into etl.jobs (slug, name, kind, target) values ('nightly', 'nightly', 'python', 'm:f')")
        c.execute("insert into etl.schedules (job_id, cron_expr, timezone) "
                  "select job_id, '0 2 * * *', 'Europe/Berlin' from etl.jobs where slug = 'nightly'")
    out = CliRunner().invoke(main, ["schedules"], env={"ETL_DSN": db.dsn})
    assert out.exit_code == 0, out.output
    assert "nightly  [0 2 * * *] at 02:00 every day, Europe/Berlin" in out.output
    data = _json.loads(CliRunner().invoke(main, ["schedules", "--json", "--next", "2"], env={"ETL_DSN": db.dsn}).output)
    assert data[0]["job"] == "nightly" and len(data[0]["next_fires"]) == 2


def test_schedules_label_fire_times_utc_and_local(cli, db):
    with db.connect() as c:
        make_job(c, "morning")
        c.execute("insert into etl.schedules (job_id, cron_expr, timezone) "
                  "select job_id, '0 6 * * *', 'Europe/Berlin' from etl.jobs where slug = 'morning'")
        make_job(c, "utc_job")
        c.execute("insert into etl.schedules (job_id, cron_expr, timezone) "
                  "select job_id, '30 1 * * *', 'UTC' from etl.jobs where slug = 'utc_job'")
    lines = cli("schedules").output.splitlines()
    berlin = lines[lines.index("morning  [0 6 * * *] at 06:00 every day, Europe/Berlin") + 2]
    assert berlin.startswith("    next: ") and berlin.count(" UTC (06:00 Europe/Berlin)") == 3, berlin
    utc = lines[next(i for i, ln in enumerate(lines) if ln.startswith("utc_job  ")) + 2]
    assert utc.count(":30:00 UTC") == 3 and "(" not in utc, utc
    assert "last fired -" in cli("schedules").output
    data = json.loads(cli("schedules", "--json").output)
    assert {r["job"] for r in data} == {"morning", "utc_job"} and all(len(r["next_fires"]) == 3 for r in data)


# ---------------------------------------------------------------------------------------- logs


def test_logs_show_the_attempt_of_each_line(cli, diamond):
    run_id = diamond.execute("select etl.run_job('a') as r").fetchone()["r"]
    token = diamond.execute("select * from etl.claim('w1', 1)").fetchone()["token"]
    diamond.execute("""insert into etl.run_logs (run_id, level, message, attempt_id, fields)
                       values (%s, 'INFO', 'from the job', %s, '{"rows": 10}'),
                              (%s, 'INFO', 'from the runner', null, '{"attempt": 2, "worker": "w1"}'),
                              (%s, 'INFO', 'about the run', null, '{}')""", (run_id, token, run_id, run_id))
    res = cli("logs", str(run_id))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].endswith("from the job  attempt=1 rows=10"), lines
    assert lines[1].endswith("from the runner  attempt=2"), lines
    assert lines[2].endswith("about the run"), lines
    data = [json.loads(ln) for ln in cli("logs", str(run_id), "--json").output.splitlines()]
    assert [d["attempt"] for d in data] == [1, 2, None]


def test_logs_usage_names_the_argument_run(cli):
    usage = cli("logs", "--help").output.splitlines()[0]
    assert usage.endswith("logs [OPTIONS] RUN"), usage


def test_runs_show_redacts_secret_parameters(cli, diamond):
    diamond.execute("""insert into etl.job_parameters (job_id, name, data_type)
                       select job_id, 'db_password', 'string' from etl.jobs where slug = 'a'""")
    res = cli("run", "a", "-p", "db_password=hunter2", "-p", "country=FR", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["params"]["db_password"] == "[REDACTED]" and out["params"]["country"] == "FR"
    shown = cli("runs", "show", str(out["run_id"]))
    assert shown.exit_code == 0 and "[REDACTED]" in shown.output and "hunter2" not in shown.output
    as_json = json.loads(cli("runs", "show", str(out["run_id"]), "--json").output)
    assert as_json["run"]["params"] == {"country": "FR", "db_password": "[REDACTED]"}


def test_runs_show_gives_the_jobs_lineage_when_the_run_reported_none(cli, diamond):
    diamond.execute("""insert into etl.job_lineage (job_id, relation, access)
                       select job_id, rel, acc from etl.jobs,
                              (values ('bronze.orders', 'read'), ('bronze.customers', 'read'),
                                      ('silver.orders', 'write')) v(rel, acc)
                        where slug = 'a'""")
    run_id = json.loads(cli("run", "a", "--json").output)["run_id"]
    shown = cli("runs", "show", str(run_id))
    assert shown.exit_code == 0, shown.output
    assert "lineage: reads bronze.customers, bronze.orders; writes silver.orders (the job's definition)" in shown.output
    as_json = json.loads(cli("runs", "show", str(run_id), "--json").output)
    assert as_json["job_lineage"] == {"read": ["bronze.customers", "bronze.orders"], "write": ["silver.orders"]}


def test_run_wait_says_partial_success(cli, db, diamond):
    res = run_while_finishing(cli, db, '{"status": "partial_success"}', "run", "a", "--wait", "--timeout", "20")
    assert res.exit_code == 0, res.output
    assert "finished: a partial_success" in res.output
