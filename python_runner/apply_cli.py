"""`etl apply FILE|DIR [--dry-run] [--prune] [--strict]`: declarative job definitions from YAML.

The YAML format is documented in python_runner/definitions.py. The command

1. loads and validates every file (all errors collected, each naming file, object and field);
2. opens ONE transaction (serialised against other applies by an advisory lock), runs the
   checks that need the database (unknown depends_on, cycles, cron/time zone via etl.cron_next);
   any error: every error printed, exit 2, nothing written;
3. computes and prints the plan: ``+ create``, ``~ update (changed fields: ...)``,
   ``- remove`` (--prune: jobs in the database missing from the files are disabled, never
   deleted; refused when the files define no jobs at all) and ``= N unchanged``;
4. unless --dry-run, applies it idempotently (upsert by slug; tags, parameters, each applied
   job's parents (exactly its depends_on, whether a parent is in the files or only in the
   database), the active schedule, refresh links and group members replaced), writes
   one etl.audit_log row (action apply, target_type definition) and commits. Nothing changed:
   nothing is written (updated_at untouched, no audit row).

--strict turns warnings into errors: depends_on/group members naming jobs only in the database,
sql targets whose routine does not exist, refresh views that are not materialized views, and a
job that reads a table another job writes without depending on it (lineage, derived with pglast
from the job's sql_file or the routine's definition; see lineage_check.py). The derived lineage
is stored in etl.job_lineage.

Exit codes: 0 ok (also for --dry-run), 1 a database error while applying, 2 invalid definitions.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import click
import psycopg
from psycopg.types.json import Jsonb

from . import definitions as d
from . import lineage_check
from .db import connect

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
COLS = list(d.JOB_COLUMNS)


@dataclass
class Change:
    op: str            # + ~ -
    kind: str          # job, group, refresh_target
    name: str
    fields: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # "priority: 1 -> 9", "depends_on: + a, - b"

    def line(self) -> str:
        if self.op == "+":
            return f"+ create {self.kind} {self.name}"
        if self.op == "-":
            return f"- remove {self.kind} {self.name} (disable)"
        return f"~ update {self.kind} {self.name} (changed fields: {', '.join(self.fields)})"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    # internal: what apply needs
    state: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        return {"create": sum(c.op == "+" for c in self.changes),
                "update": sum(c.op == "~" for c in self.changes),
                "remove": sum(c.op == "-" for c in self.changes),
                "unchanged": self.unchanged}

    def lines(self) -> list[str]:
        out = []
        for c in self.changes:
            out.append(c.line())
            out += [f"    {x}" for x in c.details]
        return out + [f"= {self.unchanged} unchanged"]


def _shown(value: Any, width: int = 60) -> str:
    """A value in a plan line: JSON-ish, cut to width."""
    text = "null" if value is None else json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 1] + "…"


def _set_change(name: str, old: set, new: set, diff: bool = False) -> str:
    """'tags: + a, - b' (diff: old and new are already what goes and what comes)."""
    gone, come = (old, new) if diff else (old - new, new - old)
    return f"{name}: " + ", ".join([f"+ {x}" for x in sorted(come)] + [f"- {x}" for x in sorted(gone)])


def _norm_param(p: dict) -> tuple:
    return (p["name"], p["mode"], p["data_type"], bool(p["required"]),
            json.dumps(p["default_value"], sort_keys=True), json.dumps(p["allowed_values"], sort_keys=True),
            p["description"])


def _norm_sched(s: dict) -> tuple:
    return (s["cron_expr"], s["timezone"], s["misfire_policy"], s["overlap_policy"],
            json.dumps(s["params"], sort_keys=True), bool(s["with_downstream"]), s["description"])


def _uniq(xs: list[str]) -> list[str]:
    out: list[str] = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out


def _sql_routine_order(job_work: dict[str, dict], held_by: dict[str, str]) -> list[str]:
    """The jobs to write, each after the job that now holds the SQL routine it takes over: the
    unique index job_sql_routine_unique is checked per row (validation refused swaps)."""
    order: list[str] = []
    placed: set[str] = set()
    for slug in job_work:
        chain, cur = [], slug
        while cur in job_work and cur not in placed and cur not in chain:
            chain.append(cur)
            cols = job_work[cur]["job"].columns
            cur = held_by.get(cols["target"]) if cols["kind"] == "sql" else None
        for s in reversed(chain):
            placed.add(s)
            order.append(s)
    return order


def compute_plan(conn: psycopg.Connection, defs: d.Definitions, prune: bool) -> Plan:
    plan = Plan()
    db_jobs = {r["slug"]: r for r in conn.execute(
        f"select job_id, slug, {', '.join(COLS)} from etl.jobs")}
    tags: dict[str, set] = {}
    for r in conn.execute("select j.slug, t.tag from etl.job_tags t join etl.jobs j using (job_id)"):
        tags.setdefault(r["slug"], set()).add(r["tag"])
    params: dict[str, list] = {}
    for r in conn.execute("""select j.slug, p.name, p.mode, p.data_type, p.required, p.default_value,
                                    p.allowed_values, p.description
                               from etl.job_parameters p join etl.jobs j using (job_id)"""):
        params.setdefault(r["slug"], []).append(_norm_param(r))
    parents: dict[str, set] = {}
    for r in conn.execute("""select p.slug as parent, c.slug as child from etl.job_dependencies x
                               join etl.jobs p on p.job_id = x.parent_job_id
                               join etl.jobs c on c.job_id = x.child_job_id"""):
        parents.setdefault(r["child"], set()).add(r["parent"])
    scheds = {r["slug"]: r for r in conn.execute(
        """select j.slug, s.* from etl.schedules s join etl.jobs j using (job_id) where s.is_active""")}
    links: dict[str, list] = {}
    for r in conn.execute("""select j.slug, t.schema_name, t.view_name, l.policy, l.sequence
                               from etl.job_refresh_targets l join etl.jobs j using (job_id)
                               join etl.refresh_targets t using (refresh_target_id)"""):
        links.setdefault(r["slug"], []).append((r["schema_name"], r["view_name"], r["policy"], r["sequence"]))
    db_targets = {(r["schema_name"], r["view_name"]): r for r in conn.execute(
        "select refresh_target_id, schema_name, view_name, refresh_mode, description from etl.refresh_targets")}
    db_groups = {r["name"]: r for r in conn.execute("select group_id, name, description from etl.job_groups")}
    members: dict[str, list] = {}
    for r in conn.execute("""select g.name, j.slug from etl.job_group_members m join etl.job_groups g using (group_id)
                               join etl.jobs j using (job_id) order by g.name, m.sequence"""):
        members.setdefault(r["name"], []).append(r["slug"])

    file_jobs = {j.slug for j in defs.jobs}
    job_work: dict[str, dict] = {}
    # refresh targets: declared ones, then ones a job links to that exist nowhere yet
    target_work: list[tuple[str, str, str, str | None]] = []
    declared = {(t.schema, t.view) for t in defs.refresh_targets}
    for t in defs.refresh_targets:
        cur = db_targets.get((t.schema, t.view))
        name = f"{t.schema}.{t.view}"
        if cur is None:
            plan.changes.append(Change("+", "refresh_target", name))
            target_work.append((t.schema, t.view, t.mode, t.description))
        else:
            f = [k for k, a, b in (("mode", t.mode, cur["refresh_mode"]),
                                   ("description", t.description, cur["description"])) if a != b]
            if f:
                plan.changes.append(Change("~", "refresh_target", name, f))
                target_work.append((t.schema, t.view, t.mode, t.description))
            else:
                plan.unchanged += 1
    implicit = sorted({(r["schema"], r["view"]) for j in defs.jobs for r in j.refresh}
                      - declared - set(db_targets))
    for schema, view in implicit:
        plan.changes.append(Change("+", "refresh_target", f"{schema}.{view}"))
        target_work.append((schema, view, "auto", None))

    for j in defs.jobs:
        cur = db_jobs.get(j.slug)
        want_parents = set(j.depends_on)
        have_parents = parents.get(j.slug, set())
        w = {"job": j,
             "columns": True, "tags": True, "params": True, "sched": True, "refresh": True,
             "add_parents": sorted(want_parents - have_parents),
             # declarative: the child's depends_on is all its parents, also those defined elsewhere
             "drop_parents": sorted(have_parents - want_parents)}
        if cur is None:
            plan.changes.append(Change("+", "job", j.slug))
            job_work[j.slug] = w
            continue
        changed = [d.JOB_COLUMNS[c] for c in COLS if j.columns[c] != cur[c]]
        details = [f"{d.JOB_COLUMNS[c]}: {_shown(cur[c])} -> {_shown(j.columns[c])}"
                   for c in COLS if j.columns[c] != cur[c]]
        w["columns"] = bool(changed)
        w["tags"] = set(j.tags) != tags.get(j.slug, set())
        w["params"] = sorted(map(_norm_param, j.parameters), key=repr) != sorted(params.get(j.slug, []), key=repr)
        cs = scheds.get(j.slug)
        w["sched"] = (j.schedule is None) != (cs is None) or (
            cs is not None and _norm_sched(j.schedule) != _norm_sched(cs))
        w["sched_cur"] = cs
        w["refresh"] = sorted((r["schema"], r["view"], r["policy"], r["sequence"]) for r in j.refresh) \
            != sorted(links.get(j.slug, []))
        changed += [name for key, name in (("tags", "tags"), ("params", "parameters"), ("sched", "schedule"),
                                           ("refresh", "refresh")) if w[key]]
        if w["tags"]:
            details.append(_set_change("tags", tags.get(j.slug, set()), set(j.tags)))
        if w["add_parents"] or w["drop_parents"]:
            changed.append("depends_on")
            details.append(_set_change("depends_on", set(w["drop_parents"]), set(w["add_parents"]), diff=True))
        if changed:
            plan.changes.append(Change("~", "job", j.slug, _uniq(changed), details))
            w["job_id"] = cur["job_id"]
            job_work[j.slug] = w
        else:
            plan.unchanged += 1

    group_work: list[d.GroupDef] = []
    for g in defs.groups:
        cur = db_groups.get(g.name)
        if cur is None:
            plan.changes.append(Change("+", "group", g.name))
            group_work.append(g)
            continue
        f = []
        if g.description != cur["description"]:
            f.append("description")
        if g.members != members.get(g.name, []):
            f.append("members")
        if f:
            plan.changes.append(Change("~", "group", g.name, f))
            group_work.append(g)
        else:
            plan.unchanged += 1

    held_by = {cur["target"]: slug for slug, cur in db_jobs.items() if cur["kind"] == "sql"}
    job_work = {slug: job_work[slug] for slug in _sql_routine_order(job_work, held_by)}

    prune_work: list[str] = []
    if prune:
        for slug in sorted(set(db_jobs) - file_jobs):
            if db_jobs[slug]["enabled"]:
                plan.changes.append(Change("-", "job", slug))
                prune_work.append(slug)
    plan.state = {"jobs": job_work, "targets": target_work, "groups": group_work, "prune": prune_work}
    return plan


def _value(col: str, v: Any) -> Any:
    return Jsonb(v) if col in ("items_source", "config") and v is not None else v


def apply_plan(conn: psycopg.Connection, defs: d.Definitions, plan: Plan) -> None:
    st = plan.state
    for schema, view, mode, desc in st["targets"]:
        conn.execute("""insert into etl.refresh_targets (schema_name, view_name, refresh_mode, description)
                        values (%s, %s, %s, %s)
                        on conflict (schema_name, view_name)
                        do update set refresh_mode = excluded.refresh_mode, description = excluded.description""",
                     (schema, view, mode, desc))
    ids = {r["slug"]: r["job_id"] for r in conn.execute("select slug, job_id from etl.jobs")}
    for slug, w in st["jobs"].items():
        j = w["job"]
        if slug not in ids:
            row = conn.execute(
                f"insert into etl.jobs (slug, {', '.join(COLS)}) values (%s, {', '.join(['%s'] * len(COLS))}) "
                "returning job_id", [slug] + [_value(c, j.columns[c]) for c in COLS]).fetchone()
            ids[slug] = row["job_id"]
        else:
            sets = ", ".join(f"{c} = %s" for c in COLS) if w["columns"] else ""
            conn.execute(f"update etl.jobs set {sets + ', ' if sets else ''}updated_at = now() where job_id = %s",
                         ([_value(c, j.columns[c]) for c in COLS] if w["columns"] else []) + [ids[slug]])
    # dependencies: drop first (the cycle trigger sees the final graph), then add
    for slug, w in st["jobs"].items():
        for p in w["drop_parents"]:
            conn.execute("delete from etl.job_dependencies where parent_job_id = %s and child_job_id = %s",
                         (ids[p], ids[slug]))
    for slug, w in st["jobs"].items():
        for p in w["add_parents"]:
            conn.execute("""insert into etl.job_dependencies (parent_job_id, child_job_id)
                            values (%s, %s) on conflict do nothing""", (ids[p], ids[slug]))
    for slug, w in st["jobs"].items():
        j, jid = w["job"], ids[slug]
        if w["tags"]:
            conn.execute("delete from etl.job_tags where job_id = %s", (jid,))
            for t in j.tags:
                conn.execute("insert into etl.job_tags (job_id, tag) values (%s, %s)", (jid, t))
        if w["params"]:
            conn.execute("delete from etl.job_parameters where job_id = %s", (jid,))
            for p in j.parameters:
                conn.execute("""insert into etl.job_parameters
                                  (job_id, name, mode, data_type, required, default_value, allowed_values, description)
                                values (%s, %s, %s, %s, %s, %s, %s, %s)""",
                             (jid, p["name"], p["mode"], p["data_type"], p["required"],
                              None if p["default_value"] is None else Jsonb(p["default_value"]),
                              None if p["allowed_values"] is None else Jsonb(p["allowed_values"]),
                              p["description"]))
        if w["sched"]:
            s, cur = j.schedule, w.get("sched_cur")
            if s is None:
                conn.execute("update etl.schedules set is_active = false, updated_at = now() "
                             "where job_id = %s and is_active", (jid,))
            elif cur is None:
                conn.execute("""insert into etl.schedules (job_id, cron_expr, timezone, params, with_downstream,
                                  misfire_policy, overlap_policy, description, next_run_at)
                                values (%s, %s, %s, %s, %s, %s, %s, %s, etl.cron_next(%s, %s))""",
                             (jid, s["cron_expr"], s["timezone"], Jsonb(s["params"]), s["with_downstream"],
                              s["misfire_policy"], s["overlap_policy"], s["description"],
                              s["cron_expr"], s["timezone"]))
            else:
                retime = (s["cron_expr"], s["timezone"]) != (cur["cron_expr"], cur["timezone"])
                conn.execute("""update etl.schedules set cron_expr = %s, timezone = %s, params = %s,
                                  with_downstream = %s, misfire_policy = %s, overlap_policy = %s, description = %s,
                                  next_run_at = case when %s then etl.cron_next(%s, %s) else next_run_at end,
                                  updated_at = now()
                                where schedule_id = %s""",
                             (s["cron_expr"], s["timezone"], Jsonb(s["params"]), s["with_downstream"],
                              s["misfire_policy"], s["overlap_policy"], s["description"],
                              retime, s["cron_expr"], s["timezone"], cur["schedule_id"]))
        if w["refresh"]:
            conn.execute("delete from etl.job_refresh_targets where job_id = %s", (jid,))
            for r in j.refresh:
                conn.execute("""insert into etl.job_refresh_targets (job_id, refresh_target_id, sequence, policy)
                                select %s, refresh_target_id, %s, %s from etl.refresh_targets
                                 where schema_name = %s and view_name = %s""",
                             (jid, r["sequence"], r["policy"], r["schema"], r["view"]))
    gids: dict[str, int] = {}
    for g in st["groups"]:
        gids[g.name] = conn.execute(
            """insert into etl.job_groups (name, description) values (%s, %s)
               on conflict (name) do update set description = excluded.description returning group_id""",
            (g.name, g.description)).fetchone()["group_id"]
    for g in st["groups"]:
        conn.execute("delete from etl.job_group_members where group_id = %s or job_id = any(%s)",
                     (gids[g.name], [ids[m] for m in g.members]))
    for g in st["groups"]:
        for seq, m in enumerate(g.members, start=1):
            conn.execute("insert into etl.job_group_members (group_id, job_id, sequence) values (%s, %s, %s)",
                         (gids[g.name], ids[m], seq))
    for slug in st["prune"]:
        conn.execute("update etl.jobs set enabled = false, updated_at = now() where slug = %s", (slug,))
    conn.execute("select etl.audit_definition_change('apply', %s)",
                 (Jsonb({"summary": plan.summary(), "changes": [c.line() for c in plan.changes],
                         "files": defs.files}),))


def _add_lineage_changes(conn: psycopg.Connection, plan: Plan, report: lineage_check.LineageReport) -> None:
    """A job whose derived lineage differs from the stored one is a change (field lineage)."""
    before = lineage_check.stored(conn)
    for slug, lin in sorted(report.by_job.items()):
        if before.get(slug, (frozenset(), frozenset())) == (lin.reads, lin.writes):
            continue
        change = next((c for c in plan.changes if c.kind == "job" and c.name == slug), None)
        if change is None:
            plan.changes.append(Change("~", "job", slug, ["lineage"]))
            plan.unchanged -= 1
        elif change.op == "~":
            change.fields.append("lineage")


def run_apply(path: str, dry_run: bool, prune: bool, strict: bool, echo=click.echo) -> int:
    defs = d.load(path)
    if prune and not defs.declared:
        defs.errors.append(f"{path}: --prune: the files define no jobs, so it would disable every enabled "
                           "job in the database; refused (apply the files that define the jobs to keep)")
    with connect() as conn:
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('etl apply'))")
            try:
                d.validate_against_db(defs, conn, strict=strict)
            except psycopg.Error as exc:
                defs.errors.append(f"database check failed: {exc.diag.message_primary or exc}")
            report = None
            if not defs.errors:
                report = lineage_check.derive(conn, defs)
                for file, slug, message in report.problems:
                    defs.warnings.append(f"{file}: job {slug}: lineage: {message}")
                for file, reader, table, writer in report.missing_dependencies:
                    msg = (f"{file}: job {reader}: depends_on: reads {table}, which job {writer} writes, "
                           f"but does not depend on {writer} (add it to depends_on)")
                    (defs.errors if strict else defs.warnings).append(msg + (" (--strict)" if strict else ""))
            for w in defs.warnings:
                echo(f"warning: {w}", err=True)
            if defs.errors:
                for e in defs.errors:
                    echo(f"error: {e}", err=True)
                echo(f"{len(defs.errors)} error(s); nothing applied", err=True)
                return EXIT_INVALID
            plan = compute_plan(conn, defs, prune)
            _add_lineage_changes(conn, plan, report)
            echo(f"plan for {len(defs.files)} file(s), {len(defs.jobs)} job(s):")
            for line in plan.lines():
                echo(f"  {line}")
            s = plan.summary()
            echo(f"{s['create']} to create, {s['update']} to update, {s['remove']} to remove, "
                 f"{s['unchanged']} unchanged")
            if dry_run:
                echo("dry run: nothing applied")
                return EXIT_OK
            if not plan.changes:
                echo("nothing to apply")
                return EXIT_OK
            apply_plan(conn, defs, plan)
            lineage_check.store(conn, report)
    echo("applied")
    return EXIT_OK


def register(main: click.Group) -> None:
    @main.command("apply")
    @click.argument("path", type=click.Path(exists=True))
    @click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
    @click.option("--prune", is_flag=True, help="Disable (never delete) enabled jobs missing from the files.")
    @click.option("--strict", is_flag=True,
                  help="Warnings are errors (jobs only in the database, missing routines or views).")
    def apply_cmd(path: str, dry_run: bool, prune: bool, strict: bool) -> None:
        """Apply job definitions from a YAML FILE or every *.yml/*.yaml in a DIR (one transaction).

        Validates everything first (exit 2 and every error printed when invalid), prints the plan
        (+ create, ~ update, - remove, = unchanged), then applies it unless --dry-run.
        """
        try:
            code = run_apply(path, dry_run, prune, strict)
        except psycopg.Error as exc:
            diag = exc.diag
            click.echo(f"error: {diag.message_primary or exc} (SQLSTATE {exc.sqlstate}); nothing applied", err=True)
            code = EXIT_FAILED
        sys.exit(code)
