"""Hot statements run straight on the driver (sqlite3, asyncpg).

SQLAlchemy Core costs ~45 us per ``execute`` on top of the ~15 us SQLite itself takes
(cache-key generation, parameter processing, result metadata): with ~10 statements per
run, the single largest share of the orchestrator's CPU; on PostgreSQL its asyncpg
adapter (greenlets) doubled a statement's cost. A plan compiles a prepared statement
(``store.base.prepared``) once, with the backend's dialect, into SQL text and the recipe
for its parameters and rows; ``db.SyncConn`` runs a ``Plan`` on the sqlite3 connection,
``db.PgConn`` a ``PgPlan`` on the asyncpg one.
What comes back looks like SQLAlchemy's result where the repositories use it: iteration,
``first()``, ``all()``, ``scalar()``, ``rowcount``; rows with attribute and index access
and ``_asdict()``.

Only what a plan can reproduce exactly takes this path: a statement with Python-side
defaults computed at execution, literal-rendered parameters, or columns named so a row
cannot carry them, is left to SQLAlchemy (``build`` returns None, and logs a warning
once with the reason: every prepared statement is meant to have a plan), as is a call
that gives an empty list to an ``IN`` or leaves out a parameter the plan cannot fill.
Bind and result processors (float coercion, booleans) are applied as SQLAlchemy would.

This module reads SQLAlchemy internals (the compiled statement's ``positiontup``,
``binds``, ``_bind_processors``, ``_result_columns``, ``*_prefetch``,
``literal_execute_params``, the ``__[POSTCOMPILE_x]`` rendering of expanding parameters,
``TypeEngine._cached_result_processor``; ``db.PgConn`` the asyncpg adapter's
``_connection``, ``_transaction``, ``_start_transaction``): pyproject.toml bounds the
SQLAlchemy versions, and tests/unit/test_fastpath.py fails outside them.
"""

from __future__ import annotations

import keyword
import logging
import re
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert

_MISSING: Any = object()
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")
log = logging.getLogger("orchestrator.store")
_warned: set[tuple[str, str]] = set()  # statements whose plan failed to build, each logged once


class Unplannable(Exception):
    """A plan could not reproduce what SQLAlchemy does with this statement (why)."""


class Result:
    """The part of SQLAlchemy's ``CursorResult`` the repositories use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows

    fetchall = all

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


class _Slot:
    """One positional parameter: where its value comes from and how it is bound."""

    __slots__ = ("default", "expanding", "key", "process")

    def __init__(self, key: str, default: Any, expanding: bool,
                 process: Callable[[Any], Any] | None) -> None:
        self.key = key
        self.default = default
        self.expanding = expanding
        self.process = process

    def value(self, given: Mapping[str, Any]) -> Any:
        """The value to bind from the call's parameters (a list for an ``IN``), processed
        as SQLAlchemy would; ``_MISSING`` if the call does not give what the plan needs."""
        v = given.get(self.key, self.default)
        if v is _MISSING:
            return v
        if self.expanding:
            if isinstance(v, str) or not isinstance(v, Sequence | set | frozenset):
                return _MISSING
            return list(v) if self.process is None else [self.process(x) for x in v]
        return v if self.process is None or v is None else self.process(v)


class _Built:
    @classmethod
    def build(cls, stmt: Any, dialect: Dialect) -> Self | None:
        """The plan of ``stmt``, or None if SQLAlchemy is to run it: then a warning says
        why, once per statement (the statement still runs, only slower)."""
        try:
            return cls._build(stmt, dialect)
        except Exception as exc:  # unplannable, or anything unforeseen
            why = str(exc) if isinstance(exc, Unplannable) else f"{type(exc).__name__}: {exc}"
            sql = _text(stmt)
            if (dialect.name, sql) not in _warned:
                _warned.add((dialect.name, sql))
                log.warning("no %s fast-path plan for %.200s (%s); SQLAlchemy runs it",
                            cls.__name__, sql, why)
            return None

    @classmethod
    def _build(cls, stmt: Any, dialect: Dialect) -> Self:
        raise NotImplementedError


class Plan(_Built):
    """A statement compiled once for SQLite, run on the driver connection."""

    def __init__(self, stmt: Any, sql: str | list[str], slots: list[_Slot],
                 row: Any, processors: list[Callable[[Any], Any] | None] | None) -> None:
        self.stmt = stmt  # for SQLAlchemy, when this plan cannot run a call
        self._sql = sql  # text; or text split around the IN lists of expanding slots
        self._slots = slots
        self._row = row  # namedtuple class of result rows, None without rows
        self._processors = processors  # per column, None when no column needs one
        self._expands = any(s.expanding for s in slots)

    @classmethod
    def _build(cls, stmt: Any, dialect: Dialect) -> Self:
        c, slots, columns = _analyse(stmt, dialect)
        sql: str | list[str] = c.string
        if any(s.expanding for s in slots):
            # "a IN (__[POSTCOMPILE_x])": text pieces between the lists, in slot order
            assert isinstance(sql, str)
            names = _POSTCOMPILE.findall(sql)
            expanding = [n for n, s in zip(c.positiontup, slots, strict=True) if s.expanding]
            if names != expanding:
                raise Unplannable("its IN lists are not rendered in parameter order")
            sql = _POSTCOMPILE.split(sql)[::2]
        row: Any = None
        procs: list[Callable[[Any], Any] | None] | None = None
        if columns:
            row = _row_class(columns)
            procs = [rc[3]._cached_result_processor(dialect, None) for rc in c._result_columns]
            if not any(procs):
                procs = None
        return cls(stmt, sql, slots, row, procs)

    def run(self, conn: sqlite3.Connection, parameters: Any) -> Result | None:
        """Run on ``conn``; None if this call needs SQLAlchemy."""
        if isinstance(parameters, list):
            if self._expands or self._row is not None:
                return None
            rows = [self._bind(p) for p in parameters]
            if any(r is None for r in rows):
                return None
            assert isinstance(self._sql, str)
            cur = conn.executemany(self._sql, rows)  # type: ignore[arg-type]
            return Result([], cur.rowcount)
        given: Mapping[str, Any] = parameters or {}
        if self._expands:
            built = self._bind_expanding(given)
            if built is None:
                return None
            sql, values = built
        else:
            assert isinstance(self._sql, str)
            sql = self._sql
            bound = self._bind(given)
            if bound is None:
                return None
            values = bound
        cur = conn.execute(sql, values)
        if self._row is None:
            return Result([], cur.rowcount)
        make = self._row._make
        procs = self._processors
        if procs is None:
            rows = [make(r) for r in cur.fetchall()]
        else:
            rows = [make([p(v) if p is not None else v for p, v in zip(procs, r, strict=True)])
                    for r in cur.fetchall()]
        return Result(rows, cur.rowcount)

    def _bind(self, given: Mapping[str, Any]) -> list[Any] | None:
        out = [s.value(given) for s in self._slots]
        return None if any(v is _MISSING for v in out) else out

    def _bind_expanding(self, given: Mapping[str, Any]) -> tuple[str, list[Any]] | None:
        pieces = self._sql
        assert isinstance(pieces, list)
        sql = [pieces[0]]
        out: list[Any] = []
        i = 0
        for s in self._slots:
            v = s.value(given)
            if v is _MISSING:
                return None
            if not s.expanding:
                out.append(v)
                continue
            if not v:
                return None  # an empty IN list: SQLAlchemy renders its special form
            out.extend(v)
            sql.append(", ".join("?" * len(v)))
            i += 1
            sql.append(pieces[i])
        return "".join(sql), out


def _analyse(stmt: Any, dialect: Dialect) -> tuple[Any, list[_Slot], list[str]]:
    """Compile ``stmt``; its parameter slots and result column names. ``Unplannable`` if
    a plan could not reproduce what SQLAlchemy does with it."""
    c: Any = stmt.compile(dialect=dialect)
    if c.insert_prefetch or c.update_prefetch:
        raise Unplannable("Python-side defaults are computed at execution")
    if c.literal_execute_params:
        raise Unplannable("parameters are rendered as literals")
    if c.positiontup is None:
        raise Unplannable("the dialect's parameters are not positional")
    table = stmt.table if isinstance(stmt, Insert) else None
    processors = c._bind_processors
    slots = []
    for name in c.positiontup:
        bp = c.binds[name]
        if bp.callable is not None:
            raise Unplannable(f"parameter {bp.key!r} is computed by a callable")
        default = _MISSING if bp.required else bp.value
        if default is _MISSING and table is not None and bp.key in table.c:
            default = _insert_default(table.c[bp.key])
        slots.append(_Slot(bp.key, default, bool(bp.expanding), processors.get(name)))
    columns = [rc[0] for rc in c._result_columns]
    if any(not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_")
           for n in columns) or len(set(columns)) != len(columns):
        raise Unplannable(f"result columns {columns} cannot be attributes of a row")
    return c, slots, columns


# -- PostgreSQL ----------------------------------------------------------------------------

# "x IN (__[POSTCOMPILE_p])" / "x NOT IN (...)": asyncpg takes a list as one array
# parameter, so the plan says "x = ANY($n)" / "x <> ALL($n)" (the same truth table,
# empty lists included) and one statement text serves every list length.
_PG_IN = re.compile(r"(NOT )?IN \(__\[POSTCOMPILE_(\w+)\]\)")
# column types asyncpg hands back as the Python values SQLAlchemy would give
_PG_NATIVE = ("String", "Integer", "BigInteger", "Float", "Boolean", "Text", "AutoString")


class PgPlan(_Built):
    """A statement compiled once for PostgreSQL (asyncpg), run on the asyncpg connection
    (see ``db.PgConn`` for how it joins the transaction)."""

    def __init__(self, stmt: Any, sql: str, slots: list[_Slot], order: list[int],
                 row: Any, returns_rows: bool) -> None:
        self.stmt = stmt
        self._sql = sql
        self._slots = slots
        self._order = order  # slot indexes in the order of $1..$n
        self._row = row
        self._returns_rows = returns_rows

    @classmethod
    def _build(cls, stmt: Any, dialect: Dialect) -> Self:
        c, slots, columns = _analyse(stmt, dialect)
        for rc in c._result_columns:
            t = rc[3]
            if type(t).__name__ not in _PG_NATIVE or getattr(t, "asdecimal", False):
                raise Unplannable(f"asyncpg would not give column {rc[0]!r} ({t!r}) back "
                                  f"as SQLAlchemy does")
        # SQLAlchemy numbers the plain parameters $1..$m in slot order; the lists follow
        plain = [i for i, s in enumerate(slots) if not s.expanding]
        lists = {c.positiontup[i]: i for i, s in enumerate(slots) if s.expanding}
        order = list(plain)
        number: dict[str, int] = {}

        def to_any(m: re.Match[str]) -> str:
            name = m.group(2)
            if name not in number:
                order.append(lists[name])
                number[name] = len(order)
            return f"{'<> ALL' if m.group(1) else '= ANY'}(${number[name]})"

        sql = _PG_IN.sub(to_any, c.string)
        if "POSTCOMPILE" in sql or len(order) != len(slots):
            raise Unplannable("an IN list could not be made an array parameter")
        row = _row_class(columns) if columns else None
        return cls(stmt, sql, slots, order, row, bool(columns))

    async def run(self, conn: Any, parameters: Any) -> Result | None:
        """Run on the asyncpg connection ``conn``; None if this call needs SQLAlchemy."""
        if isinstance(parameters, list) and len(parameters) != 1:
            if self._returns_rows:
                return None
            rows = [self._bind(p) for p in parameters]
            if any(r is None for r in rows):
                return None
            await conn.executemany(self._sql, rows)
            return Result([], -1)
        if isinstance(parameters, list):  # one row: asyncpg's execute costs half its executemany
            if self._returns_rows:
                return None
            parameters = parameters[0]
        values = self._bind(parameters or {})
        if values is None:
            return None
        if self._returns_rows:
            make = self._row._make
            rows = [make(r) for r in await conn.fetch(self._sql, *values)]
            return Result(rows, len(rows))
        status = await conn.execute(self._sql, *values)  # e.g. "UPDATE 3"
        count = status.rsplit(" ", 1)[-1]
        return Result([], int(count) if count.isdigit() else -1)

    def _bind(self, given: Mapping[str, Any]) -> list[Any] | None:
        out = [self._slots[i].value(given) for i in self._order]
        return None if any(v is _MISSING for v in out) else out


def _text(stmt: Any) -> str:
    """The statement's SQL on one line, for a log message (its class if it has none)."""
    try:
        return " ".join(str(stmt).split())
    except Exception:
        return f"a {type(stmt).__name__}"


def _row_class(columns: list[str]) -> Any:
    return namedtuple("Row", columns)  # type: ignore[misc]


def _insert_default(column: Any) -> Any:
    """The value an INSERT stores for a column it is not given: a scalar Python-side
    default, or NULL for a nullable column without server default; else missing."""
    d = column.default
    if d is not None:
        return d.arg if d.is_scalar else _MISSING
    if column.nullable and column.server_default is None and not column.primary_key:
        return None
    return _MISSING
