"""`etl import ...`: bring existing deployments across into schema etl.

`etl import legacy --schema NAME [--dry-run] [--json]` imports the legacy dw_etl_* (seeds 000/001)
and transformation_* (seed 004) tables of schema NAME in one transaction; the mapping rules are in
python_runner/legacy_import.py. It prints, per legacy table, the rows seen, imported, already
present and not imported (with the reason), the notes on adjusted values, the legacy columns that
were not understood, and the legacy tables not imported at all. --dry-run prints the same summary
and rolls back. A second import changes nothing and says "0 new rows".

`etl import matviews [--schema S] [--link]` turns the database's materialized views into refresh
targets (python_runner/matviews.py).

Registered on the main group by `register(main)` (see cli.py).
Exit codes: 0 ok (also for --dry-run), 1 the import failed and nothing was written (the error
names the legacy table, the row id and the column).
"""
from __future__ import annotations

import json
import sys

import click
import psycopg

from .legacy_import import LegacyImportError, Summary, run_import
from .ops_cli import echo_json, echo_table, json_option

EXIT_OK, EXIT_FAILED = 0, 1


@click.group(name="import")
def import_group() -> None:
    """Bring existing deployments across into the etl schema."""


def _echo_summary(s: Summary) -> None:
    state = "dry run: rolled back, nothing written" if s.dry_run else "committed"
    click.echo(f"legacy import from schema {s.schema!r} ({state})")
    rows = [{"table": t.table, "target": t.target, "seen": t.seen, "imported": t.imported,
             "present": t.already_present, "skipped": sum(len(v) for v in t.not_imported.values())}
            for t in s.tables]
    echo_table(rows, [("table", "LEGACY TABLE"), ("target", "TARGET"), ("seen", "SEEN"),
                      ("imported", "IMPORTED"), ("present", "ALREADY PRESENT"), ("skipped", "NOT IMPORTED")])
    skipped = [(t.table, reason, ids) for t in s.tables for reason, ids in t.not_imported.items()]
    if skipped:
        click.echo("\nnot imported:")
        for table, reason, ids in skipped:
            click.echo(f"  {table}: {len(ids)} row(s) (ids {_ids(ids)}): {reason}")
    notes = [(t.table, note, ids) for t in s.tables for note, ids in t.notes.items()]
    if notes:
        click.echo("\nnotes (values adjusted on the way in):")
        for table, note, ids in notes:
            click.echo(f"  {table}: {len(ids)} row(s) (ids {_ids(ids)}): {note}")
    unmapped = [(t.table, t.unmapped_columns) for t in s.tables if t.unmapped_columns]
    if unmapped:
        click.echo("\nlegacy columns not understood (left in the legacy schema, not imported):")
        for table, cols in unmapped:
            click.echo(f"  {table}: {', '.join(cols)}")
    if s.tables_not_imported:
        click.echo("\nlegacy tables not imported:")
        for t in s.tables_not_imported:
            click.echo(f"  {t['table']} ({t['rows']} row(s)): {t['reason']}")
    if s.written:
        click.echo("\nrows written: " + ", ".join(f"{k} {v}" for k, v in sorted(s.written.items())))
    verb = "would be written" if s.dry_run else "written"
    click.echo(f"{s.new_rows} new rows {verb}")


def _ids(ids) -> str:
    ids = list(ids)
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f", ... {len(ids) - 10} more" if len(ids) > 10 else "")


@import_group.command("legacy")
@click.option("--schema", required=True, help="The schema holding the legacy dw_etl_* / transformation_* tables.")
@click.option("--dry-run", is_flag=True, help="Compute the same summary, then roll back: nothing is written.")
@json_option
def legacy_cmd(schema: str, dry_run: bool, as_json: bool) -> None:
    """Import a legacy deployment (dw_etl_* and transformation_* tables) in one transaction.

    Jobs, procedures, dependencies, tags, parameters, groups, finished runs with their attempts,
    transformation runs and steps, cursors and watermarks. Running it again changes nothing.
    Runs still PENDING/RUNNING in the legacy tables are reported, not imported.
    """
    try:
        summary = run_import(schema, dry_run=dry_run)
    except LegacyImportError as exc:
        _fail(as_json, f"{exc}; nothing imported", exc.as_dict())
    except psycopg.Error as exc:
        diag = exc.diag
        message = (diag.message_primary or str(exc)).strip()
        if exc.sqlstate:
            message += f" (SQLSTATE {exc.sqlstate})"
        _fail(as_json, f"{message}; nothing imported", {"error": message})
    if as_json:
        echo_json(summary.as_dict())
    else:
        _echo_summary(summary)
    sys.exit(EXIT_OK)


@import_group.command("matviews")
@click.option("--schema", "schemas", multiple=True, help="Only materialized views of this schema (repeatable).")
@click.option("--link", is_flag=True,
              help="Also link each view to the jobs whose lineage writes a table it reads (policy on_success).")
@json_option
def matviews_cmd(schemas: tuple[str, ...], link: bool, as_json: bool) -> None:
    """Introspect the database's materialized views into etl.refresh_targets (one transaction).

    Views already known are left as they are. Without --link the links the lineage suggests are
    printed, not made. Running it again adds nothing.
    """
    from .db import connect
    from .matviews import import_matviews
    try:
        with connect() as conn:
            result = import_matviews(conn, list(schemas) or None, link)
    except psycopg.Error as exc:
        message = (exc.diag.message_primary or str(exc)).strip()
        _fail(as_json, f"{message}; nothing imported", {"error": message})
    if as_json:
        echo_json(result.as_dict())
        sys.exit(EXIT_OK)
    click.echo(f"{len(result.added)} materialized view(s) added as refresh targets, "
               f"{len(result.present)} already present")
    for name in result.added:
        click.echo(f"  + {name}")
    for job, view in result.links_added:
        click.echo(f"  linked: {job} refreshes {view} on success")
    for job, view in result.links_suggested:
        click.echo(f"  suggested (use --link): {job} writes what {view} reads")
    for name in result.unlinked:
        click.echo(f"  no job writes what {name} reads (run `etl apply` to derive lineage first)")
    sys.exit(EXIT_OK)


def _fail(as_json: bool, message: str, data: dict) -> None:
    click.echo(f"error: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"ok": False, **data}, indent=2))
    sys.exit(EXIT_FAILED)


def register(main: click.Group) -> None:
    main.add_command(import_group)
