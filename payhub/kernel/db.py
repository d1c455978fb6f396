"""The database: one engine per process, one metadata for every context's tables.

SQLite (the zero-set-up default) runs in WAL mode and takes the write lock at BEGIN
(`BEGIN IMMEDIATE`), so read-then-write transactions serialize instead of failing on lock upgrade.
PostgreSQL runs READ COMMITTED; every state change is a compare-and-set UPDATE, and uniqueness is
enforced by constraints, so the isolation level never carries correctness on its own.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import psycopg
from psycopg.adapt import PyFormat, Transformer
from psycopg.generators import execute
from psycopg.pq import DiagnosticField, ExecStatus
from psycopg.rows import namedtuple_row, tuple_row
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    TextClause,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError

from payhub.kernel.errors import Unavailable

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# A 64-bit auto-increment primary key that SQLite also auto-increments (SQLite only does so for
# INTEGER PRIMARY KEY).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def Varchar(length: int) -> String:
    """A string of at most `length` characters: String(length) (VARCHAR(length)) on SQLite, an unbounded
    varchar on PostgreSQL. The limit is kept where it is enforced (validation: every request field
    stored in such a column has a max_length of at most `length`, and server-made values are shorter),
    not checked again on each write: PostgreSQL checks a varchar(n) parameter by a call to the length
    coercion function that every statement sets up anew (an ACL check and a catalog look-up per value),
    ≈ 75 calls and 4 % of PostgreSQL's instructions per payment on the tables the payment path writes
    (migration 0026). SQLite never enforced it."""
    return String(length).with_variant(String(), "postgresql")


class UtcDateTime(TypeDecorator[Any]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        from datetime import UTC
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def overflow_for(pool_size: int) -> int:
    """Connections a PostgreSQL pool may open beyond `pool_size` for a moment."""
    return pool_size // 2


def pool_size_within(max_connections: int, reserved: int, share: float, workers: int, wanted: int) -> int:
    """The largest pool size up to `wanted` whose pool + overflow, in each of `workers` processes,
    fits in `share` of the connections PostgreSQL lets ordinary roles open."""
    per_worker = int((max_connections - reserved) * share) // max(workers, 1)
    size = wanted
    while size > 1 and size + overflow_for(size) > per_worker:
        size -= 1
    return size


class Database:
    """Owns the engine. `begin()` is a transaction; `read()` is a connection for queries."""

    def __init__(self, url: str, *, pool_size: int = 24) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # SQLite has one writer. Writers in this process queue on a lock taken BEFORE a connection is
        # checked out, so a waiting writer never holds a pooled connection that the lock holder (or a
        # reader) needs; BEGIN IMMEDIATE's busy timeout then only arbitrates between processes.
        self._write_lock: threading.Lock | None = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=4 * pool_size,
                                        connect_args={"check_same_thread": False, "timeout": 30})
            _configure_sqlite(self.engine)
        else:
            # No pool_pre_ping: it costs a round trip on every checkout. A connection found dead is
            # answered UNAVAILABLE (below), and SQLAlchemy then drops every pooled connection older
            # than the failure, so the pool recovers by itself once PostgreSQL is back.
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=overflow_for(pool_size),
                                        pool_timeout=10, connect_args={"connect_timeout": 5})
            event.listen(self.engine, "engine_connect", _transactional_on_connect)
            event.listen(self.engine, "invalidate", self._drop_idle)
        # Connections autocommit() checked out and keeps between its statements (at most a quarter of
        # the pool): a hot-path statement then skips the pool's checkout and its return (reset,
        # events), which cost about as much CPU as building and sending the statement.
        self._idle: list[Any] = []
        self._keep_idle = 0 if self.is_sqlite else pool_size // 4

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self._writer(), _unavailable_on_connection_loss(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _writer(self) -> Iterator[None]:
        if self._write_lock is None:
            yield
            return
        if not self._write_lock.acquire(timeout=30):
            raise Unavailable("the database is busy; retry with the same request_id", reason="DATABASE_BUSY")
        try:
            yield
        finally:
            self._write_lock.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with _unavailable_on_connection_loss(), self.engine.connect() as conn:
            yield conn.execution_options(payhub_readonly=True)
            # End with COMMIT, not the ROLLBACK of closing: psycopg forgets every statement it has
            # prepared on each ROLLBACK, and reads are frequent enough that nothing stayed prepared
            # (every statement measured ~30 % slower on PostgreSQL).
            conn.commit()

    def connection_limits(self) -> tuple[int, int] | None:
        """PostgreSQL's (max_connections, superuser_reserved_connections); None on SQLite."""
        if not self.is_postgres:
            return None
        with self.read() as conn:
            return (int(conn.exec_driver_sql("SHOW max_connections").scalar_one()),
                    int(conn.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one()))

    @contextmanager
    def autocommit(self) -> Iterator[Any]:
        """PostgreSQL only: a pooled connection's own psycopg connection in autocommit mode, for
        the hot path's statements that are each a whole transaction (data-modifying CTEs): one round
        trip each, no BEGIN, no separate COMMIT, and none of SQLAlchemy's per-statement work.
        Statements use psycopg's `%(name)s` parameters; psycopg prepares them after a few runs."""
        fairy = self._lease()
        try:
            yield fairy.driver_connection
        except psycopg.OperationalError as exc:
            self._lost(fairy, exc)
        except BaseException:
            self._release(fairy)
            raise
        self._release(fairy)

    @contextmanager
    def autocommit_cursor(self, row_factory: Any = tuple_row) -> Iterator[psycopg.RawCursor[Any]]:
        """`autocommit()`, as a raw cursor (PostgreSQL's `$n` parameters, values in a sequence) that
        stays with its connection between statements (one object fewer to build per statement)."""
        fairy = self._lease()
        try:
            yield self._raw_cursor(fairy, row_factory)
        except psycopg.OperationalError as exc:
            self._lost(fairy, exc)
        except BaseException:
            self._release(fairy)
            raise
        self._release(fairy)

    def autocommit_fetch(self, query: str, values: list[Any], fetch: Callable[[Any], _T],
                         row_factory: Any = tuple_row) -> _T:
        """`fetch(cursor)` after one statement in autocommit (`query` with PostgreSQL's `$n` parameters,
        `values` in order): the hot path's statements run through here. With tuple_row or namedtuple_row,
        `fetch` is given an object with the cursor's fetchone() and fetchall() (`_run_prepared`: no
        psycopg cursor), otherwise a raw cursor."""
        fairy = self._lease()
        try:
            if row_factory is tuple_row or row_factory is namedtuple_row:
                result = fetch(_run_prepared(fairy, query, values, row_factory is namedtuple_row))
            else:
                result = fetch(self._raw_cursor(fairy, row_factory).execute(query, values))
        except psycopg.OperationalError as exc:
            self._lost(fairy, exc)
        except BaseException:
            self._release(fairy)
            raise
        self._release(fairy)
        return result

    @staticmethod
    def _raw_cursor(fairy: Any, row_factory: Any) -> psycopg.RawCursor[Any]:
        conn = fairy.driver_connection
        cursor = fairy.info.get(_RAW_CURSOR)
        if cursor is None or cursor.connection is not conn or cursor.closed:
            cursor = fairy.info[_RAW_CURSOR] = psycopg.RawCursor(conn)
        cursor.row_factory = row_factory
        return cursor  # type: ignore[no-any-return]

    def _lease(self) -> Any:
        """A connection for autocommit(): one it kept, else the pool's, in autocommit mode (it stays
        so in the pool: see _transactional_on_connect)."""
        try:
            fairy = self._idle.pop()
        except IndexError:
            fairy = self.engine.raw_connection()
        conn = fairy.driver_connection
        try:
            if not conn.autocommit:
                conn.autocommit = True
        except psycopg.OperationalError as exc:
            self._lost(fairy, exc)
        return fairy

    def _release(self, fairy: Any) -> None:
        conn = fairy.driver_connection
        if (len(self._idle) < self._keep_idle and conn is not None and not conn.closed
                and conn.pgconn.transaction_status == _IDLE):
            self._idle.append(fairy)
        else:
            fairy.close()

    def _lost(self, fairy: Any, exc: psycopg.OperationalError) -> NoReturn:
        fairy.invalidate(exc)  # the pool opens a fresh connection next time (and _drop_idle runs)
        fairy.close()
        raise Unavailable("the database is unavailable; retry with the same request_id",
                          reason="DATABASE_UNAVAILABLE") from exc

    def _drop_idle(self, *_event: Any) -> None:
        """A connection was found dead: those kept idle may be too (a restarted PostgreSQL). They go
        back to the pool marked to be replaced at their next checkout."""
        while self._idle:
            try:
                fairy = self._idle.pop()
            except IndexError:
                return
            fairy.invalidate(soft=True)
            fairy.close()

    def dispose(self) -> None:
        self._drop_idle()
        self.engine.dispose()


_RAW_CURSOR = "payhub_raw_cursor"
_FATAL_ERROR = ExecStatus.FATAL_ERROR
_SQLSTATE = DiagnosticField.SQLSTATE
_NO_SUCH_STATEMENT = b"26000"  # invalid_sql_statement_name
_PREPARED = "payhub_prepared"  # a connection's _Prepared


# -- the hot path's statements without a psycopg cursor ---------------------------------------------
# A cursor's execute() is a stack of Python generators and objects (the query, its prepared-statement
# bookkeeping, the results, a row maker per result): about 90 k instructions of a 40-parameter
# statement's 260 k (callgrind), and the hot path runs three statements per payment. `_run_prepared`
# does what it does for these statements with psycopg's own pieces: the connection's adapters dump the
# parameters (one Transformer per connection, which keeps the dumpers it found by type), each statement
# is prepared on the connection on its first run (psycopg would after five) under a name of ours, run
# in the text result format as a cursor does, and a FATAL_ERROR result raises the error a cursor raises
# (psycopg.errors.error_from_result: UniqueViolation, DivisionByZero, ...). A lost connection raises
# OperationalError from the wait, as the cursor's.

_MAX_PREPARED = 64  # statements prepared per connection; past it, statements run unprepared
_statement_numbers = itertools.count(1)


class _Prepared:
    """Per psycopg connection: the Transformer, and the statements prepared on it by (query, parameter
    types) (a parameter's type can depend on its value: an int's size), with their row classes."""

    __slots__ = ("conn", "statements", "tx")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.tx = Transformer(conn)
        self.statements: dict[tuple[str, tuple[int, ...]], list[Any]] = {}  # [name, namedtuple class]


class _Result:
    """A statement's result, read as the cursor's fetchone() and fetchall() read a statement's that
    returns rows."""

    __slots__ = ("make_row", "res", "tx")

    def __init__(self, res: Any, tx: Any, make_row: Callable[[Any], Any]) -> None:
        self.res, self.tx, self.make_row = res, tx, make_row

    def fetchone(self) -> Any:
        return self.tx.load_row(0, self.make_row) if self.res.ntuples else None

    def fetchall(self) -> list[Any]:
        return self.tx.load_rows(0, self.res.ntuples, self.make_row)  # type: ignore[no-any-return]


_AUTO_FORMATS: dict[int, list[PyFormat]] = {}


def _run_prepared(fairy: Any, query: str, values: list[Any], named: bool) -> _Result:
    conn = fairy.driver_connection
    prepared = fairy.info.get(_PREPARED)
    if prepared is None or prepared.conn is not conn:
        prepared = fairy.info[_PREPARED] = _Prepared(conn)
    tx = prepared.tx
    formats = _AUTO_FORMATS.get(len(values))
    if formats is None:
        formats = _AUTO_FORMATS[len(values)] = [PyFormat.AUTO] * len(values)
    with conn.lock:
        params = tx.dump_sequence(values, formats)
        types = tx.types
        key = (query, types)
        statement = prepared.statements.get(key)
        pgconn = conn.pgconn
        if statement is None and len(prepared.statements) < _MAX_PREPARED:
            statement = _prepare(conn, prepared, key)
        if statement is None:
            pgconn.send_query_params(query.encode(), params, param_types=types, param_formats=tx.formats)
            res = conn.wait(execute(pgconn))[-1]
        else:
            pgconn.send_query_prepared(statement[0], params, param_formats=tx.formats)
            res = conn.wait(execute(pgconn))[-1]
            if res.status == _FATAL_ERROR and res.error_field(_SQLSTATE) == _NO_SUCH_STATEMENT:
                # The connection's prepared statements went: psycopg sends DEALLOCATE ALL when a transaction
                # on the connection rolls back while psycopg holds statements of its own (and DISCARD ALL
                # does the same). The statement ran nothing: prepare it again and run it.
                prepared.statements.clear()
                statement = _prepare(conn, prepared, key)
                pgconn.send_query_prepared(statement[0], params, param_formats=tx.formats)
                res = conn.wait(execute(pgconn))[-1]
        res = _check(conn, res)
        tx.set_pgresult(res)
    if not named:
        return _Result(res, tx, tuple)
    if statement is None:
        return _Result(res, tx, _row_class(res, conn)._make)
    if statement[1] is None:  # a prepared statement's columns are fixed (PostgreSQL refuses a change)
        statement[1] = _row_class(res, conn)._make
    return _Result(res, tx, statement[1])


def _prepare(conn: psycopg.Connection[Any], prepared: _Prepared, key: tuple[str, tuple[int, ...]]) -> list[Any]:
    name = f"payhub_{next(_statement_numbers)}".encode()  # never one a connection holds already
    conn.pgconn.send_prepare(name, key[0].encode(), param_types=key[1])
    _check(conn, conn.wait(execute(conn.pgconn))[-1])
    statement = prepared.statements[key] = [name, None]
    return statement


def _check(conn: psycopg.Connection[Any], res: Any) -> Any:
    if res.status == _FATAL_ERROR:
        raise psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
    return res


def _row_class(res: Any, conn: psycopg.Connection[Any]) -> Any:
    encoding = conn.info.encoding
    return namedtuple("Row", [res.fname(i).decode(encoding) for i in range(res.nfields)])  # type: ignore[misc]


_T = TypeVar("_T")
_IDLE = psycopg.pq.TransactionStatus.IDLE


def _transactional_on_connect(conn: Connection) -> None:
    """A pooled connection that `autocommit()` used last is still in autocommit mode (switching
    it back and forth cost two calls per hot-path statement): SQLAlchemy's connections, whose
    transactions need psycopg's implicit BEGIN, take it out of that mode first."""
    driver = conn.connection.driver_connection
    if driver is not None and driver.autocommit:
        driver.autocommit = False


@contextmanager
def _unavailable_on_connection_loss() -> Iterator[None]:
    """A lost or refused database connection is UNAVAILABLE to callers, never INTERNAL."""
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise Unavailable("the database is unavailable; retry with the same request_id",
                              reason="DATABASE_UNAVAILABLE") from exc
        raise


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get("payhub_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def is_unique_violation(exc: BaseException) -> bool:
    """True when a write failed on a unique constraint (both databases)."""
    orig = getattr(exc, "orig", exc)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(orig)


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on either database; True when the row was inserted."""
    result = conn.execute(_insert_ignore_statement(table, tuple(values)), values)
    return bool(result.rowcount)


@functools.cache
def _insert_ignore_statement(table: Table, columns: tuple[str, ...]) -> TextClause:
    # Both databases speak this statement. It is text because SQLAlchemy never caches the compiled
    # form of its dialect-specific INSERTs (on_conflict_do_nothing), which then cost a full compile
    # on every call; the typed bind parameters keep the column types' conversions. preserve_rowcount:
    # SQLAlchemy otherwise drops an INSERT's rowcount once the cursor closes (psycopg then says -1).
    # Text knows no column defaults: every column with a Python-side default must be given.
    missing = [c.name for c in table.columns if c.default is not None and c.key not in columns]
    if missing:
        raise ValueError(f"insert_ignore into {table.name} must give {missing} (column defaults do not apply)")
    quoted = ", ".join(f'"{table.c[name].name}"' for name in columns)
    binds = ", ".join(f":{name}" for name in columns)
    statement = text(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({binds}) ON CONFLICT DO NOTHING')
    return statement.bindparams(*(bindparam(name, type_=table.c[name].type) for name in columns)) \
        .execution_options(preserve_rowcount=True)
