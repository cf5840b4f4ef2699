"""Table-level lineage of SQL text and routines: which tables a piece of code reads and writes.

``lineage_of_sql`` takes plain SQL (one or many statements); ``lineage_of_routine`` takes the
text of CREATE FUNCTION / CREATE PROCEDURE statements (as ``pg_get_functiondef()`` returns it
or as written in a .sql file, possibly next to other statements). Both return a ``Lineage``:
fully qualified ``schema.table`` names read and written, plus the pieces that could not be
analysed. Everything is derived from pglast's parse trees, never from regexes over SQL text:

* SQL is parsed with ``pglast.parse_sql``. Reads are the relations of FROM/JOIN/subqueries/
  CTE bodies/MERGE USING/the SELECT of INSERT; writes are the targets of INSERT, UPDATE,
  DELETE, MERGE, TRUNCATE, COPY ... FROM, CREATE TABLE AS / SELECT INTO, and REFRESH
  MATERIALIZED VIEW. A DML target is a write only; it is a read too only when it also
  appears as a source (``INSERT INTO a SELECT ... FROM a``).
* LANGUAGE sql routines: the ``AS $$...$$`` string is parsed as SQL; BEGIN ATOMIC and
  ``RETURN expr`` bodies come already parsed in the CREATE statement.
* LANGUAGE plpgsql routines (and DO blocks) are parsed with ``pglast.parse_plpgsql`` (in pglast
  8 it lives in the ``pglast`` package, not ``pglast.parser``); every ``PLpgSQL_expr`` in the
  resulting tree (statements, FOR/RETURN QUERY/PERFORM/OPEN queries, conditions, assignments,
  declarations' defaults and cursor queries) is parsed with ``pglast.parse_sql`` according to
  its parse mode. EXECUTE of a string constant is analysed as SQL; any other dynamic EXECUTE
  goes to ``unparsed`` as ``"<routine>:<line>: EXECUTE <expression>"`` (line numbers count
  from the line holding the opening quote of the body, as in PostgreSQL's error context).
* libpg_query's PL/pgSQL parser only resolves types in pg_catalog and public, and rejects
  arrays of types it does not know. A routine rejected that way (``v etl.cron_spec;``,
  ``RETURNS SETOF silver.orders``, ``p etl.id_t[]``, ``p silver.t.c%TYPE``) is parsed again
  with those parameter, return and DECLARE types replaced by ``record`` / ``text[]``: types
  do not change which tables the code touches.

Name resolution: unquoted identifiers come folded to lower case by the parser, quoted ones
keep their case; names are joined unquoted (``Sales.Orders`` for ``"Sales"."Orders"``).
Unqualified names get the default schema, which is the ``default_schema`` argument, or the
first schema of a routine's ``SET search_path`` clause, or of a preceding
``SET search_path`` statement (``$user``, ``pg_catalog`` and ``pg_temp`` are skipped).
CTE names are not tables. Temporary tables created in the analysed text (CREATE TEMP TABLE,
CREATE TEMP TABLE AS, SELECT INTO TEMP, anything in ``pg_temp``) are left out of both sets:
an unqualified reference to such a name anywhere in the same call counts as the temp table.
Function calls are not tables.

Limits (by design or not worth the cost):
* Unqualified names are resolved against one schema, not a full search_path: an unqualified
  ``pg_class`` becomes ``public.pg_class``; a table found in a later search_path schema is
  attributed to the first one.
* Control flow is ignored: every branch counts, and SET search_path applies from where it
  appears in the text onwards, whatever branch it sits in.
* Views are not expanded (reading a view is a read of the view); triggers, rules, foreign keys'
  cascades and functions called from the code are not followed (``lineage_of_routine`` of each
  callee and ``merge`` do that).
* DDL moves no data and contributes nothing (CREATE VIEW, ALTER TABLE, CREATE INDEX, ...),
  except the temp-table bookkeeping above; CREATE FUNCTION inside ``lineage_of_sql`` text is
  a definition, not an execution, and is skipped (use ``lineage_of_routine``). EXPLAIN counts
  only with ANALYZE; CREATE TABLE AS ... WITH NO DATA reads and writes nothing.
* Routines in languages other than sql and plpgsql are reported in ``unparsed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pglast
from pglast import ast
from pglast.enums import VariableSetKind
from pglast.parser import ParseError
from pglast.stream import RawStream

__all__ = ["Lineage", "LineageError", "lineage_of_routine", "lineage_of_sql", "merge"]


class LineageError(ValueError):
    """The text, or a routine body in it, is not valid SQL / PL/pgSQL."""


@dataclass(frozen=True)
class Lineage:
    """Tables read and written by some code, as ``schema.table`` names."""

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    unparsed: tuple[str, ...] = ()


def merge(*parts: Lineage) -> Lineage:
    """Union of several lineages; ``unparsed`` keeps the first occurrence order."""
    return Lineage(
        reads=frozenset().union(*(p.reads for p in parts)),
        writes=frozenset().union(*(p.writes for p in parts)),
        unparsed=tuple(dict.fromkeys(u for p in parts for u in p.unparsed)),
    )


def lineage_of_sql(sql: str, default_schema: str = "public") -> Lineage:
    """Plain SQL text (one or many statements). Raises LineageError if it does not parse."""
    collector = _Collector(default_schema)
    for raw in _parse(sql, "SQL"):
        collector.statement(raw.stmt)
    return collector.result()


def lineage_of_routine(definition: str, default_schema: str = "public") -> Lineage:
    """The text of CREATE FUNCTION / CREATE PROCEDURE statement(s), possibly with others.

    Routine bodies are analysed; other statements of the text (e.g. the INSERT seeding a table
    created next to the procedure) are analysed as plain SQL. Raises LineageError if the text or
    a routine body does not parse, or if the text defines no routine.
    """
    collector = _Collector(default_schema)
    routines = 0
    for raw in _parse(definition, "routine definition"):
        if isinstance(raw.stmt, ast.CreateFunctionStmt):
            routines += 1
            end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(definition)
            collector.routine(raw.stmt, definition[raw.stmt_location:end])
        else:
            collector.statement(raw.stmt)
    if not routines:
        raise LineageError("routine definition: no CREATE FUNCTION or CREATE PROCEDURE statement")
    return collector.result()


# --- internals -------------------------------------------------------------------------------

# (qualified, schema, name): whether the name was written qualified decides if a temp table
# of the same name shadows it, which is only known once the whole text has been seen.
_Ref = tuple[bool, str, str]

# PL/pgSQL statements whose "query" member is an expression yielding SQL text, not SQL.
_DYNAMIC_QUERY = {"PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors"}
# RawParseMode values of PLpgSQL_expr.parseMode (src/include/parser/parser.h).
_MODE_DEFAULT, _MODE_TYPE_NAME, _MODE_EXPR = 0, 1, 2
_MODES_ASSIGN = {3, 4, 5}


def _parse(text: str, what: str) -> tuple[ast.RawStmt, ...]:
    try:
        return pglast.parse_sql(text)
    except ParseError as exc:
        raise _syntax_error(what, text, exc) from exc


def _syntax_error(what: str, text: str, exc: ParseError) -> LineageError:
    message = exc.args[0] if exc.args else str(exc)
    position = exc.args[1] if len(exc.args) > 1 else None
    where = ""
    if isinstance(position, int) and 0 <= position <= len(text):  # 0-based character offset
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        where = f" at line {line}, column {column}"
    return LineageError(f"{what}: {message}{where}")


def _first_schema(args: Any) -> str | None:
    """First usable schema of a SET search_path value list."""
    for arg in args or ():
        value = getattr(getattr(arg, "val", None), "sval", None)
        if value and value not in ("$user", "pg_catalog", "pg_temp"):
            return value
    return None


def _assigned_expression(assignment: str) -> str | None:
    """``target := expr`` (or ``target = expr``) -> ``expr``, using the SQL scanner's tokens.

    The target may carry subscripts (``a[i = 1] := ...``), hence the bracket depth.
    """
    depth = 0
    try:
        tokens = pglast.parser.scan(assignment)
    except ParseError:
        return None
    for token in tokens:
        if token.name in ("ASCII_40", "ASCII_91"):  # ( [
            depth += 1
        elif token.name in ("ASCII_41", "ASCII_93"):  # ) ]
            depth -= 1
        elif depth == 0 and token.name in ("COLON_EQUALS", "ASCII_61"):  # := =
            return assignment[token.end + 1:]
    return None


# Return types giving a PL/pgSQL function special variables or RETURN rules: kept as they are.
_KEEP_RETURN_TYPES = {"void", "trigger", "event_trigger"}


# Where a type is written, as a probe routine for the PL/pgSQL parser.
_PROBES = {
    "param": "CREATE FUNCTION pg_temp.p(x {}) RETURNS void LANGUAGE plpgsql AS $p$BEGIN END$p$",
    "returns": "CREATE FUNCTION pg_temp.p() RETURNS {} LANGUAGE plpgsql AS $p$BEGIN END$p$",
    "declare": "CREATE FUNCTION pg_temp.p() RETURNS void LANGUAGE plpgsql AS $p$DECLARE x {}; BEGIN END$p$",
}


def _try_parse_plpgsql(routine: str) -> list[dict[str, Any]] | None:
    try:
        return pglast.parse_plpgsql(routine)
    except ParseError:
        return None


@lru_cache(maxsize=1024)
def _plpgsql_knows_type(type_text: str, where: str) -> bool:
    """Whether libpg_query's PL/pgSQL parser accepts this type there (param/returns/declare)."""
    return _try_parse_plpgsql(_PROBES[where].format(type_text)) is not None


def _neutral_type(type_text: str, is_array: bool, where: str) -> str | None:
    """None if the type is fine as it is, else a stand-in the parser accepts."""
    if _plpgsql_knows_type(type_text, where):
        return None
    return "text[]" if is_array else "record"


def _neutralise_types(routine: str) -> str | None:
    """The CREATE FUNCTION text with types unknown to the PL/pgSQL parser replaced.

    Parameter and return types are replaced in the parse tree, which is then printed back;
    variable types in DECLARE sections are replaced in the body text, token by token, keeping
    line breaks so that line numbers stay right. None if there is nothing to work on.
    """
    try:
        statements = pglast.parse_sql(routine)
    except ParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.CreateFunctionStmt):
        return None
    stmt = statements[0].stmt
    types = [(param.argType, "param") for param in stmt.parameters or ()]
    if stmt.returnType is not None and stmt.returnType.names[-1].sval not in _KEEP_RETURN_TYPES:
        types.append((stmt.returnType, "returns"))
    for type_name, where in types:
        if type_name is None:
            continue
        setof, type_name.setof = type_name.setof, False
        neutral = _neutral_type(RawStream()(type_name), bool(type_name.arrayBounds), where)
        type_name.setof = setof
        if neutral is not None:
            type_name.names = (ast.String(sval=neutral.removesuffix("[]")),)
            type_name.typmods = None
            type_name.pct_type = False
    for option in stmt.options or ():
        if option.defname == "as":
            option.arg = (ast.String(sval=_neutralise_declarations(option.arg[0].sval)),)
    return RawStream()(stmt)


def _neutralise_declarations(body: str) -> str:
    """Replace the unknown types of DECLARE-section variables in a PL/pgSQL body."""
    try:
        tokens = [t for t in pglast.parser.scan(body) if not t.name.endswith("_COMMENT")]
    except ParseError:
        return body
    edits: list[tuple[int, int, str]] = []
    in_declare, i = False, 0
    while i < len(tokens):
        name = tokens[i].name
        if name in ("DECLARE", "BEGIN_P"):
            in_declare = name == "DECLARE"
            i += 1
            continue
        if not in_declare:
            i += 1
            continue
        # One declaration: its tokens up to the ';' outside brackets.
        j, depth = i, 0
        while j < len(tokens) and not (tokens[j].name == "ASCII_59" and depth == 0):
            if tokens[j].name in ("ASCII_40", "ASCII_91"):
                depth += 1
            elif tokens[j].name in ("ASCII_41", "ASCII_93"):
                depth -= 1
            j += 1
        span = _declared_type_span(tokens[i:j], body)
        if span is not None:
            text = body[span[0]:span[1]]
            neutral = _neutral_type(text, "[" in text or text.lower().endswith("array"), "declare")
            if neutral is not None:
                edits.append((span[0], span[1], neutral + "\n" * text.count("\n")))
        i = j + 1
    for start, end, replacement in reversed(edits):
        body = body[:start] + replacement + body[end:]
    return body


# Tokens ending the type of a declaration: := = DEFAULT NOT (NULL) COLLATE.
_AFTER_TYPE = {"COLON_EQUALS", "ASCII_61", "DEFAULT", "NOT", "COLLATE"}


def _declared_type_span(decl: list[Any], body: str) -> tuple[int, int] | None:
    """[start, end) of the type in ``name [CONSTANT] type [COLLATE ..] [NOT NULL] [:= ..]``."""
    k = 1
    if k < len(decl) and body[decl[k].start:decl[k].end + 1].lower() == "constant":
        k += 1
    if k >= len(decl) or body[decl[k].start:decl[k].end + 1].lower() in ("alias", "cursor", "scroll", "no"):
        return None  # aliases and cursors have no type
    end = k
    while end < len(decl) and decl[end].name not in _AFTER_TYPE:
        if decl[end].name == "ASCII_37":
            return None  # %TYPE / %ROWTYPE are accepted
        end += 1
    if end == k:
        return None
    return decl[k].start, decl[end - 1].end + 1


def _dollar_quote(body: str) -> str:
    tag = "$lineage$"
    while tag in body:
        tag = tag[:-1] + "_$"
    return f"{tag}{body}{tag}"


class _Collector:
    """Accumulates references over the statements of one call."""

    def __init__(self, default_schema: str) -> None:
        self.base_schema = default_schema
        self.schema = default_schema  # current default, moved by SET search_path
        self.reads: set[_Ref] = set()
        self.writes: set[_Ref] = set()
        self.temps: set[str] = set()
        self.unparsed: list[str] = []

    def result(self) -> Lineage:
        def names(refs: set[_Ref]) -> frozenset[str]:
            return frozenset(
                f"{schema}.{name}" for qualified, schema, name in refs
                if schema != "pg_temp" and (qualified or name not in self.temps)
            )
        return Lineage(names(self.reads), names(self.writes), tuple(dict.fromkeys(self.unparsed)))

    # -- references --

    def _ref(self, rv: ast.RangeVar) -> _Ref:
        if rv.schemaname:
            return (True, rv.schemaname, rv.relname)
        return (False, self.schema, rv.relname)

    def _write(self, rv: ast.RangeVar) -> None:
        self.writes.add(self._ref(rv))

    def _created(self, rv: ast.RangeVar) -> None:
        """A table created by the code: temp tables are remembered, others are writes."""
        if rv.relpersistence == "t" or rv.schemaname == "pg_temp":
            self.temps.add(rv.relname)
        else:
            self._write(rv)

    # -- SQL --

    def statement(self, stmt: ast.Node) -> None:
        """One top-level SQL statement. Statements that move no data are ignored."""
        match stmt:
            case ast.SelectStmt() | ast.CallStmt() | ast.ReturnStmt() | ast.InsertStmt() \
                    | ast.UpdateStmt() | ast.DeleteStmt() | ast.MergeStmt():
                self.walk(stmt, frozenset())
            case ast.TruncateStmt():
                for rv in stmt.relations:
                    self._write(rv)
            case ast.CopyStmt():
                if stmt.relation is not None:
                    if stmt.is_from:
                        self._write(stmt.relation)
                    else:
                        self.walk(stmt.relation, frozenset())
                self.walk(stmt.query, frozenset())
            case ast.RefreshMatViewStmt():
                self._write(stmt.relation)
            case ast.CreateTableAsStmt():
                if stmt.into.skipData:  # WITH NO DATA: the query is not run
                    if stmt.into.rel.relpersistence == "t" or stmt.into.rel.schemaname == "pg_temp":
                        self.temps.add(stmt.into.rel.relname)
                else:
                    self._created(stmt.into.rel)
                    self.walk(stmt.query, frozenset())
            case ast.CreateStmt():
                if stmt.relation.relpersistence == "t" or stmt.relation.schemaname == "pg_temp":
                    self.temps.add(stmt.relation.relname)
            case ast.ExplainStmt():
                if any(o.defname == "analyze" for o in stmt.options or ()):
                    self.statement(stmt.query)
            case ast.DeclareCursorStmt() | ast.PrepareStmt():
                self.walk(stmt.query, frozenset())
            case ast.VariableSetStmt():
                self._set(stmt)
            case ast.DoStmt():
                self._do(stmt)
            case _:
                pass  # DDL, transaction control, CREATE FUNCTION (a definition), ...

    def _set(self, stmt: ast.VariableSetStmt) -> None:
        if stmt.kind == VariableSetKind.VAR_RESET_ALL or (
            stmt.name == "search_path"
            and stmt.kind in (VariableSetKind.VAR_RESET, VariableSetKind.VAR_SET_DEFAULT)
        ):
            self.schema = self.base_schema
        elif stmt.name == "search_path" and stmt.kind == VariableSetKind.VAR_SET_VALUE:
            self.schema = _first_schema(stmt.args) or self.schema

    def walk(self, node: Any, ctes: frozenset[str]) -> None:
        """Any node below a statement; ``ctes`` are the CTE names visible here."""
        if isinstance(node, tuple):
            for item in node:
                self.walk(item, ctes)
            return
        if not isinstance(node, ast.Node):
            return
        match node:
            case ast.RangeVar():
                if node.schemaname or node.relname not in ctes:
                    self.reads.add(self._ref(node))
            case ast.SelectStmt():
                ctes = self._with(node.withClause, ctes)
                if node.intoClause is not None:  # SELECT ... INTO new_table
                    self._created(node.intoClause.rel)
                # FOR UPDATE OF names aliases/tables already in FROM: not a read of its own.
                self._members(node, ctes, {"withClause", "intoClause", "lockingClause"})
            case ast.InsertStmt() | ast.UpdateStmt() | ast.DeleteStmt() | ast.MergeStmt():
                ctes = self._with(node.withClause, ctes)
                self._write(node.relation)  # the target is written, not read
                self._members(node, ctes, {"withClause", "relation"})
            case _:
                self._members(node, ctes, set())

    def _members(self, node: ast.Node, ctes: frozenset[str], skip: set[str]) -> None:
        for member in node:
            if member not in skip:
                self.walk(getattr(node, member), ctes)

    def _with(self, clause: ast.WithClause | None, ctes: frozenset[str]) -> frozenset[str]:
        """Walk the CTE bodies; return the names visible in the main statement."""
        if clause is None:
            return ctes
        if clause.recursive:  # every CTE sees all of them
            scope = ctes | {cte.ctename for cte in clause.ctes}
            for cte in clause.ctes:
                self.walk(cte.ctequery, scope)
            return scope
        for cte in clause.ctes:  # each CTE sees the ones before it
            self.walk(cte.ctequery, ctes)
            ctes = ctes | {cte.ctename}
        return ctes

    # -- routines --

    def routine(self, stmt: ast.CreateFunctionStmt, text: str) -> None:
        """One CREATE FUNCTION/PROCEDURE; ``text`` is that statement's source."""
        name = ".".join(part.sval for part in stmt.funcname)
        language, body = "sql", None
        saved = self.schema
        for option in stmt.options or ():
            if option.defname == "language":
                language = option.arg.sval.lower()
            elif option.defname == "as":
                body = option.arg[0].sval  # C functions have (file, symbol): not analysed anyway
            elif option.defname == "set" and option.arg.name == "search_path" \
                    and option.arg.kind == VariableSetKind.VAR_SET_VALUE:
                self.schema = _first_schema(option.arg.args) or self.schema
        try:
            if stmt.sql_body is not None:  # BEGIN ATOMIC ... END or RETURN expr
                self._sql_body(stmt.sql_body)
            elif language == "sql" and body is not None:
                for raw in _parse(body, f"{name} (LANGUAGE sql body)"):
                    self.statement(raw.stmt)
            elif language == "plpgsql":
                self._plpgsql(text, name)
            else:
                self.unparsed.append(f"{name}: LANGUAGE {language} body not analysed")
        finally:
            self.schema = saved  # the routine's search_path does not leak into the file

    def _sql_body(self, body: Any) -> None:
        # BEGIN ATOMIC bodies are a list of statements wrapped in a one-element list.
        if isinstance(body, tuple):
            for item in body:
                self._sql_body(item)
        elif isinstance(body, ast.Node):
            self.statement(body)

    def _do(self, stmt: ast.DoStmt) -> None:
        language, body = "plpgsql", ""
        for option in stmt.args:
            if option.defname == "language":
                language = option.arg.sval.lower()
            elif option.defname == "as":
                body = option.arg.sval
        if language != "plpgsql":
            self.unparsed.append(f"DO: LANGUAGE {language} body not analysed")
            return
        # parse_plpgsql wants a whole CREATE FUNCTION statement.
        wrapper = f"CREATE FUNCTION pg_temp.do_block() RETURNS void LANGUAGE plpgsql AS {_dollar_quote(body)}"
        saved = self.schema
        try:
            self._plpgsql(wrapper, "DO")
        finally:
            self.schema = saved

    def _plpgsql(self, text: str, where: str) -> None:
        try:
            tree = pglast.parse_plpgsql(text)
        except ParseError as exc:
            # libpg_query cannot resolve types outside pg_catalog/public (nor arrays of unknown
            # types); types do not matter here, so retry with those replaced by neutral ones.
            retry = _neutralise_types(text)
            if retry is None:
                raise _syntax_error(f"{where} (LANGUAGE plpgsql body)", text, exc) from exc
            try:
                tree = pglast.parse_plpgsql(retry)
            except ParseError as retry_exc:  # past the types: this error is the real one
                raise _syntax_error(f"{where} (LANGUAGE plpgsql body)", retry, retry_exc) from exc
        self._pl_walk(tree, where, 0, "")

    def _pl_walk(self, node: Any, where: str, line: int, kind: str) -> None:
        """Walk parse_plpgsql's JSON: {"PLpgSQL_xxx": {members}} dicts and lists of them."""
        if isinstance(node, list):
            for item in node:
                self._pl_walk(item, where, line, kind)
            return
        if not isinstance(node, dict):
            return
        line = node.get("lineno", line)
        for key, value in node.items():
            if key == "PLpgSQL_expr":
                self._pl_expr(value, where, line)
            elif isinstance(value, dict) and (
                    key == "dynquery" or (key == "query" and kind in _DYNAMIC_QUERY)):
                self._pl_dynamic(value.get("PLpgSQL_expr", {}), where, line)
            elif key.startswith("PLpgSQL_"):
                self._pl_walk(value, where, line, key)
            else:
                self._pl_walk(value, where, line, kind)

    def _pl_expr(self, expr: dict[str, Any], where: str, line: int) -> None:
        query, mode = expr.get("query", ""), expr.get("parseMode", _MODE_DEFAULT)
        if mode == _MODE_DEFAULT:
            sql: str | None = query
        elif mode == _MODE_EXPR:
            sql = f"SELECT {query}"  # how PL/pgSQL itself evaluates an expression
        elif mode in _MODES_ASSIGN:
            value = _assigned_expression(query)
            sql = None if value is None else f"SELECT {value}"
        elif mode == _MODE_TYPE_NAME:
            return
        else:
            sql = None
        if sql is None:
            self.unparsed.append(f"{where}:{line}: {query}")
            return
        try:
            statements = pglast.parse_sql(sql)
        except ParseError as exc:
            self.unparsed.append(f"{where}:{line}: {query} ({exc.args[0] if exc.args else exc})")
            return
        for raw in statements:
            self.statement(raw.stmt)

    def _pl_dynamic(self, expr: dict[str, Any], where: str, line: int) -> None:
        """EXECUTE <expr>: analysed only when <expr> is a string constant that parses."""
        query = expr.get("query", "")
        text = _string_constant(query)
        if text is not None:
            try:
                statements = pglast.parse_sql(text)
            except ParseError:
                pass
            else:
                for raw in statements:
                    self.statement(raw.stmt)
                return
        self.unparsed.append(f"{where}:{line}: EXECUTE {query}")


def _string_constant(expression: str) -> str | None:
    """The value of ``expression`` if it is a lone string literal, else None."""
    try:
        statements = pglast.parse_sql(f"SELECT {expression}")
    except ParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        return None
    select = statements[0].stmt
    if select.fromClause or len(select.targetList or ()) != 1:
        return None
    value = select.targetList[0].val
    if isinstance(value, ast.A_Const) and isinstance(value.val, ast.String):
        return value.val.sval
    return None
