"""The risk service's SQL. Hot statements (counters, devices, events) are built once with bound
parameters (see payhub.kernel.db.insert_ignore for why text statements)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, TextClause, and_, bindparam, insert, or_, select, text, update

from payhub.kernel import deferred
from payhub.kernel.db import Database, UtcDateTime
from payhub.risk import codec
from payhub.risk.domain import (
    Action,
    BlockEntry,
    BlockKind,
    Challenge,
    ChallengeState,
    CounterIncrement,
    ReviewState,
    RiskEvent,
    Rule,
)
from payhub.risk.tables import (
    risk_blocklist,
    risk_challenges,
    risk_config,
    risk_counters,
    risk_devices,
    risk_event_rules,
    risk_events,
    risk_rules,
    risk_sandbox_messages,
)

# -- configuration version ----------------------------------------------------------------------------

_BUMP = text('INSERT INTO risk_config (id, version) VALUES (1, 1) '
             'ON CONFLICT (id) DO UPDATE SET version = risk_config.version + 1')
_VERSION = select(risk_config.c.version).where(risk_config.c.id == 1)


def bump_version(conn: Connection) -> None:
    """Every rule or block-list change calls this in its transaction: replicas notice and reload."""
    conn.execute(_BUMP)


def config_version(conn: Connection) -> int:
    return int(conn.execute(_VERSION).scalar() or 0)


# -- rules ----------------------------------------------------------------------------------------------

def insert_rule(conn: Connection, rule: Rule, *, ignore_existing: bool = False) -> bool:
    values = codec.rule_row(rule)
    if ignore_existing:
        from payhub.kernel.db import insert_ignore
        return insert_ignore(conn, risk_rules, values)
    conn.execute(insert(risk_rules).values(values))
    return True


def update_rule(conn: Connection, rule: Rule, expected_update_time: datetime | None) -> bool:
    values = codec.rule_row(rule)
    values.pop("id")
    values.pop("create_time")
    return bool(conn.execute(update(risk_rules).where(risk_rules.c.id == rule.id,
                                                      risk_rules.c.update_time == expected_update_time)
                             .values(values)).rowcount)


def get_rule(conn: Connection, rule_id: str) -> Rule | None:
    row = conn.execute(select(risk_rules).where(risk_rules.c.id == rule_id)).first()
    return codec.rule_from_row(row) if row is not None else None


def all_rules(conn: Connection) -> list[Rule]:
    rows = conn.execute(select(risk_rules).where(risk_rules.c.enabled.is_(True))
                        .order_by(risk_rules.c.create_time, risk_rules.c.id)).all()
    return [codec.rule_from_row(r) for r in rows]


def list_rules(conn: Connection, after: Any, size: int, merchant_id: str, kind: str, method: str) -> list[Rule]:
    q = select(risk_rules)
    if merchant_id:
        q = q.where(risk_rules.c.merchant_id == merchant_id)
    if kind:
        q = q.where(risk_rules.c.kind == kind)
    if method:
        q = q.where(risk_rules.c.payment_method == method)
    if after is not None:
        t = datetime.fromisoformat(after[0])
        q = q.where(or_(risk_rules.c.create_time > t, and_(risk_rules.c.create_time == t, risk_rules.c.id > after[1])))
    rows = conn.execute(q.order_by(risk_rules.c.create_time, risk_rules.c.id).limit(size + 1)).all()
    return [codec.rule_from_row(r) for r in rows]


# -- block list -------------------------------------------------------------------------------------------

def active_blocklist(conn: Connection, now: datetime) -> list[BlockEntry]:
    rows = conn.execute(select(risk_blocklist).where(
        risk_blocklist.c.removed_time.is_(None),
        or_(risk_blocklist.c.expire_time.is_(None), risk_blocklist.c.expire_time > now))).all()
    return [codec.block_from_row(r) for r in rows]


def live_entry(conn: Connection, kind: BlockKind, value: str, merchant_id: str) -> BlockEntry | None:
    row = conn.execute(select(risk_blocklist).where(
        risk_blocklist.c.kind == kind.value, risk_blocklist.c.value == value,
        risk_blocklist.c.merchant_id == merchant_id, risk_blocklist.c.removed_time.is_(None))).first()
    return codec.block_from_row(row) if row is not None else None


def insert_block(conn: Connection, entry: BlockEntry) -> None:
    conn.execute(insert(risk_blocklist).values(codec.block_row(entry)))


def remove_block(conn: Connection, entry_id: str, now: datetime) -> bool:
    return bool(conn.execute(update(risk_blocklist).where(risk_blocklist.c.id == entry_id,
                                                          risk_blocklist.c.removed_time.is_(None))
                             .values(removed_time=now)).rowcount)


def get_block(conn: Connection, entry_id: str) -> BlockEntry | None:
    row = conn.execute(select(risk_blocklist).where(risk_blocklist.c.id == entry_id)).first()
    return codec.block_from_row(row) if row is not None else None


def list_blocks(conn: Connection, after: Any, size: int, kind: str, value: str, merchant_id: str,
                include_expired: bool, now: datetime) -> list[BlockEntry]:
    t = risk_blocklist
    q = select(t).where(t.c.removed_time.is_(None))
    if kind:
        q = q.where(t.c.kind == kind)
    if value:
        q = q.where(t.c.value == value)
    if merchant_id:
        q = q.where(t.c.merchant_id == merchant_id)
    if not include_expired:
        q = q.where(or_(t.c.expire_time.is_(None), t.c.expire_time > now))
    if after is not None:
        at = datetime.fromisoformat(after[0])
        q = q.where(or_(t.c.create_time < at, and_(t.c.create_time == at, t.c.id < after[1])))
    rows = conn.execute(q.order_by(t.c.create_time.desc(), t.c.id.desc()).limit(size + 1)).all()
    return [codec.block_from_row(r) for r in rows]


# -- counters ---------------------------------------------------------------------------------------------
# One statement checks and adds a transaction to every counter of the rules in scope: a multi-row
# INSERT … ON CONFLICT DO UPDATE … WHERE <window + this <= limit> RETURNING key. A row that is not
# returned was over its limit and was not changed. On PostgreSQL the conflicting row is locked and the
# WHERE re-checked on its latest committed version, so of two concurrent transactions that a limit
# allows only one of, exactly one is returned; on SQLite the writer lock serializes them. Rows are
# given in key order so concurrent transactions lock them in the same order (no deadlock).

COUNT = '"count"'
_SAME = "excluded.bucket <= risk_counters.bucket"
_NEXT = "excluded.bucket = risk_counters.bucket + 1"


def _window(column: str, quoted: str) -> str:
    return (f"(CASE WHEN {_SAME} THEN risk_counters.{quoted} + risk_counters.prev_{column} "
            f"WHEN {_NEXT} THEN risk_counters.{quoted} ELSE 0 END)")


_UPSERT = (
    'ON CONFLICT ("key") DO UPDATE SET '
    f"prev_amount = CASE WHEN {_SAME} THEN risk_counters.prev_amount WHEN {_NEXT} THEN risk_counters.amount "
    "ELSE 0 END, "
    f'prev_count = CASE WHEN {_SAME} THEN risk_counters.prev_count WHEN {_NEXT} THEN risk_counters."count" '
    "ELSE 0 END, "
    f"amount = (CASE WHEN {_SAME} THEN risk_counters.amount ELSE 0 END) + excluded.amount, "
    f'"count" = (CASE WHEN {_SAME} THEN risk_counters."count" ELSE 0 END) + excluded."count", '
    f"bucket = CASE WHEN {_SAME} THEN risk_counters.bucket ELSE excluded.bucket END, "
    "max_amount = excluded.max_amount, max_count = excluded.max_count, expire_time = excluded.expire_time "
    f"WHERE {_window('amount', 'amount')} + excluded.amount <= excluded.max_amount "
    f"AND {_window('count', COUNT)} + excluded.\"count\" <= excluded.max_count "
    'RETURNING "key"')
_COLUMNS = ('INSERT INTO risk_counters ("key", bucket, amount, "count", prev_amount, prev_count, max_amount, '
            "max_count, expire_time) ")


@functools.cache
def _count_statement(rows: int) -> TextClause:
    """SQLite: a VALUES list (sqlite3 caches each row count's statement)."""
    values = ", ".join(f"(:k{i}, :b{i}, :a{i}, :n{i}, 0, 0, :ma{i}, :mc{i}, :e{i})" for i in range(rows))
    binds = [bindparam(f"e{i}", type_=UtcDateTime()) for i in range(rows)]
    return text(f"{_COLUMNS}VALUES {values} {_UPSERT}").bindparams(*binds)


# On PostgreSQL the rows travel as arrays through unnest: one short statement whatever the number of
# counters, so psycopg caches its parsing and PostgreSQL keeps it prepared (a VALUES list per row
# count is a new, long statement that psycopg re-parses on every call: ~0.5 ms each).
_COUNT_PG = text(
    f"{_COLUMNS}SELECT k, b, a, n, 0, 0, ma, mc, e FROM unnest(CAST(:k AS text[]), CAST(:b AS bigint[]), "
    "CAST(:a AS bigint[]), CAST(:n AS bigint[]), CAST(:ma AS bigint[]), CAST(:mc AS bigint[]), "
    f"CAST(:e AS timestamptz[])) AS v(k, b, a, n, ma, mc, e) {_UPSERT}")


class NotAsExpected(Exception):
    """The one-statement evaluation found a counter over its limit or a new device: nothing was
    written (the statement failed as a whole); evaluate in a transaction instead."""


def _pg_type(column: Any) -> str:
    """A column's type as a cast names it (short names: psycopg caches only short statements)."""
    name = type(column.type).__name__
    return {"Integer": "int", "BigInteger": "bigint", "Boolean": "bool", "UtcDateTime": "timestamptz"}.get(
        name, "text")


def _pg_casts(table: Any, prefix: str = "") -> str:
    """Typed parameters for INSERT … SELECT."""
    return ", ".join(f"CAST(%({prefix}{c.name})s AS {_pg_type(c)})" for c in table.columns)


def _pg(sql: str, prefix: str = "") -> str:
    """A statement written with :name parameters, for psycopg (%(name)s, under `prefix`)."""
    import re
    return re.sub(r"(?<![:\w]):(\w+)", rf"%({prefix}\1)s", sql)


def _device_ctes(gated: bool) -> str:
    """`{p}d`: when the customer's device was first seen (`:dm`, `:dc`, `:dd`), recorded now (`:create_time`)
    if it never was. A known device's row is read, not rewritten (an ON CONFLICT DO UPDATE that changes
    nothing still writes a new row version); a device inserted concurrently meets the ON CONFLICT, whose
    no-change update returns the first insert's time. `gated`: recorded only when `{row}` has a row."""
    return ("{p}d0 AS (SELECT first_seen FROM risk_devices WHERE merchant_id = CAST(:dm AS text) "
            "AND customer_id = CAST(:dc AS text) AND device_id = CAST(:dd AS text)), "
            "{p}d1 AS (INSERT INTO risk_devices (merchant_id, customer_id, device_id, first_seen) "
            "SELECT CAST(:dm AS text), CAST(:dc AS text), CAST(:dd AS text), CAST(:create_time AS timestamptz) "
            f"{'FROM {row} ' if gated else ''}WHERE NOT EXISTS (SELECT 1 FROM {{p}}d0) "
            "ON CONFLICT (merchant_id, customer_id, device_id) DO UPDATE SET first_seen = risk_devices.first_seen "
            "RETURNING first_seen), "
            "{p}d AS (SELECT first_seen FROM {p}d0 UNION ALL SELECT first_seen FROM {p}d1)")


@functools.cache
def _evaluation_ctes(with_device: bool, gated: bool) -> str:
    """The evaluation's writes as CTEs, names and parameters under `{p}` (payhub.kernel.deferred.Guarded):
    touch the device, add to every counter, and record the event with the decision computed on the
    expectation that every acting rule's counter stays within its limit and the device is not new.
    When that expectation fails, the guard (a division by zero) aborts the whole statement: nothing is
    written. The event's INSERT reads the guard's value, so it is evaluated. `gated`: every write
    happens only when the caller's relation `{row}` has a row (its compare-and-set won)."""
    gate = "FROM {row} " if gated else ""
    device = _device_ctes(gated) + ", "
    known = "(SELECT first_seen FROM {p}d) <= CAST(:new_since AS timestamptz)" if with_device else "true"
    counted = ('(SELECT count(*) FROM {p}c WHERE "key" IN (SELECT jsonb_array_elements_text(CAST(:acting AS jsonb)))) '
               "= jsonb_array_length(CAST(:acting AS jsonb))")
    # The guard names no column, so it is evaluated before any row is read: a lost CAS must pass it.
    lost = "NOT EXISTS (SELECT 1 FROM {row}) OR " if gated else ""
    columns = ", ".join(f'"{c.name}"' for c in risk_events.columns)
    sql = _pg(
        f"{device if with_device else ''}"
        f"{{p}}c AS ({_COLUMNS}SELECT k, b, a, n, 0, 0, ma, mc, e FROM jsonb_to_recordset(CAST(:counters AS jsonb)) "
        "AS v(k text, b bigint, a bigint, n bigint, ma bigint, mc bigint, e timestamptz) "
        f"{'WHERE EXISTS (SELECT 1 FROM {row}) ' if gated else ''}{_UPSERT}), "
        f"{{p}}g AS (SELECT {deferred.guard(f'{lost}({counted} AND {known})')} AS ok {gate}), ", "{p}")
    sql += (f"{{p}}ev AS (INSERT INTO risk_events ({columns}) SELECT {_pg_casts(risk_events, '{p}')} FROM {{p}}g "
            "WHERE {p}g.ok = 1 RETURNING id), ")
    sql += _pg("{p}er AS (INSERT INTO risk_event_rules (event_id, rule_id, create_time) "
               "SELECT {p}ev.id, r, CAST(:create_time AS timestamptz) FROM {p}ev, "
               "jsonb_array_elements_text(CAST(:rules AS jsonb)) AS r)", "{p}")
    return sql


# The counter keys added to (read as a set: no keys and NULL mean the same): an ARRAY sublink, not
# array_agg, so the statement sets up no aggregate node (1 % of the claim's PostgreSQL instructions).
_COUNTED_KEYS = 'ARRAY(SELECT "key" FROM {p}c)'


@functools.cache
def _evaluate_statement(with_device: bool) -> str:
    """PostgreSQL, one statement in autocommit (one round trip, no BEGIN/COMMIT; see
    payhub.kernel.db.Database.autocommit): `_evaluation_ctes` on their own. The guard's divisor is not
    constant, so PostgreSQL cannot fold it at planning time."""
    return f"WITH {_evaluation_ctes(with_device, False).format(p='')} SELECT {_COUNTED_KEYS.format(p='')}"


def _evaluation_params(increments: list[CounterIncrement], acting: set[str], event: RiskEvent, scope: str,
                       request_id: str, fingerprint: str, device: tuple[str, str, str, datetime] | None,
                       context: str | None = None) -> dict[str, Any]:
    ordered = sorted(increments, key=lambda i: i.key)
    counted = [[i.key, i.bucket, i.amount, i.count] for i in ordered]
    params: dict[str, Any] = codec.event_row(event, scope, request_id, fingerprint, counted, context)
    # Rows and lists travel as JSON text: one parameter each, dumped by the C json encoder (psycopg's
    # array dumping cost more than the rest of the statement's parameters together).
    params |= {"counters": _counters_json(ordered),
               "acting": json.dumps(sorted(acting)),
               "rules": json.dumps(sorted({r.rule_id for r in event.decision.reasons}
                                          | {r.rule_id for r in event.decision.shadow_reasons}))}
    if device is not None:
        params |= {"dm": device[0], "dc": device[1], "dd": device[2], "new_since": device[3]}
    return params


def evaluate_at_once(db: Database, increments: list[CounterIncrement], acting: set[str], event: RiskEvent,
                     scope: str, request_id: str, fingerprint: str,
                     device: tuple[str, str, str, datetime] | None, context: str | None = None) -> set[str]:
    """Run `_evaluate_statement`; returns the counter keys added to (a shadow rule's counter may
    have refused: the caller records that match with `record_shadow_refusals`). Raises
    NotAsExpected when an acting rule's counter refused or the device is new (nothing written)."""
    params = _evaluation_params(increments, acting, event, scope, request_id, fingerprint, device, context)
    try:
        with db.autocommit() as conn:
            row = conn.execute(_evaluate_statement(device is not None), params).fetchone()
    except Exception as exc:
        if deferred.vetoed(exc):  # the guard: the expectation failed, nothing written
            raise NotAsExpected() from exc
        raise
    return set(row[0] or ()) if row is not None else set()


# An ALLOW evaluation folded into a caller's statement (evaluation_write): the event's columns that
# only a held or dry-run evaluation sets are constants of the statement, and its CTEs are cut to what
# this evaluation writes (no matched-rule CTE when no rule matched, one counter as plain parameters,
# no guard when nothing could veto it). The rows are the same as _evaluation_ctes writes.
_ALLOW_EVENT = {"released": "false", "dry_run": "false", "review_state": f"'{ReviewState.NOT_REQUIRED.value}'",
                "review_deadline": "CAST(NULL AS timestamptz)", "reviewer": "''", "review_note": "''",
                "review_time": "CAST(NULL AS timestamptz)"}
_ALLOW_NAMES = ("id", "request_id", "fingerprint", "merchant_id", "transaction", "transaction_kind", "action",
                "score", "context", "decision", "counted", "create_time")
_ONE_COUNTER = ("k", "b", "a", "n", "ma", "mc", "e")
_DEVICE = ("dm", "dc", "dd", "new_since")


@functools.cache
def _allow_ctes(counters: int, acting: bool, device: bool, rules: bool, scope: str) -> tuple[str, tuple[str, ...]]:
    """The CTEs (names and parameters under `{p}`, gated on `{row}`) of an ALLOW evaluation folded into a
    caller's statement, and its parameters' names in order. `counters`: 0, 1 or 2 (two or more, as one
    JSON parameter); `acting`: some counter's refusal would change the decision (the guard checks that
    each was added to); `device`: the device is recorded and must not be new (the guard checks it)."""
    names = list(_ALLOW_NAMES)
    ctes = []
    if device:
        names += _DEVICE
        ctes.append(_device_ctes(True))
    if counters == 1:
        names += _ONE_COUNTER
        ctes.append(f"{{p}}c AS ({_COLUMNS}SELECT CAST(:k AS text), CAST(:b AS bigint), CAST(:a AS bigint), "
                    "CAST(:n AS bigint), 0, 0, CAST(:ma AS bigint), CAST(:mc AS bigint), CAST(:e AS timestamptz) "
                    f"FROM {{row}} {_UPSERT})")
    elif counters:
        names.append("counters")
        ctes.append(f"{{p}}c AS ({_COLUMNS}SELECT k, b, a, n, 0, 0, ma, mc, e FROM jsonb_to_recordset("
                    "CAST(:counters AS jsonb)) AS v(k text, b bigint, a bigint, n bigint, ma bigint, mc bigint, "
                    f"e timestamptz) WHERE EXISTS (SELECT 1 FROM {{row}}) {_UPSERT})")
    source = "{row}"
    if acting or device:
        checks = []
        if acting and counters == 1:  # the one counter is the acting one: it must have been added to
            checks.append("EXISTS (SELECT 1 FROM {p}c)")
        elif acting:
            names.append("acting")
            checks.append('(SELECT count(*) FROM {p}c WHERE "key" IN (SELECT jsonb_array_elements_text('
                          "CAST(:acting AS jsonb)))) = jsonb_array_length(CAST(:acting AS jsonb))")
        if device:
            checks.append("(SELECT first_seen FROM {p}d) <= CAST(:new_since AS timestamptz)")
        # As in _evaluation_ctes: a lost CAS passes the guard (and writes nothing).
        ok = deferred.guard("NOT EXISTS (SELECT 1 FROM {row}) OR (" + " AND ".join(checks) + ")")
        ctes.append(f"{{p}}g AS (SELECT {ok} AS ok FROM {{row}})")
        source = "{p}g WHERE {p}g.ok = 1"
    values = []
    for column in risk_events.columns:
        if column.name == "request_scope":
            values.append("CAST('" + scope.replace("'", "''") + "' AS text)")
        elif column.name in _ALLOW_EVENT:
            values.append(_ALLOW_EVENT[column.name])
        else:
            values.append(f"CAST(%({{p}}{column.name})s AS {_pg_type(column)})")
    columns = ", ".join(f'"{c.name}"' for c in risk_events.columns)
    event = f"{{p}}ev AS (INSERT INTO risk_events ({columns}) SELECT {', '.join(values)} FROM {source} RETURNING id)"
    if rules:
        names.append("rules")
    sql = _pg(", ".join(ctes), "{p}")
    sql = (sql + ", " if sql else "") + event
    if rules:
        sql += _pg(", {p}er AS (INSERT INTO risk_event_rules (event_id, rule_id, create_time) "
                   "SELECT {p}ev.id, r, CAST(:create_time AS timestamptz) FROM {p}ev, "
                   "jsonb_array_elements_text(CAST(:rules AS jsonb)) AS r)", "{p}")
    return sql, tuple(names)


def evaluation_write(increments: list[CounterIncrement], acting: set[str], event: RiskEvent, scope: str,
                     request_id: str, fingerprint: str, device: tuple[str, str, str, datetime] | None,
                     done: Callable[[set[str]], Any], context: str | None = None) -> deferred.Guarded:
    """What `evaluate_at_once` writes for an ALLOW decision (the same rows), as CTEs for a caller's
    statement (written only when its compare-and-set wins; the statement is vetoed when the
    expectation fails). `done` gets the counter keys added to, as evaluate_at_once returns them.
    `context`: codec.context_json(event.context) when the caller has it."""
    decision = event.decision
    assert decision.action is Action.ALLOW and event.review_state is ReviewState.NOT_REQUIRED and not event.dry_run
    ctx = event.context
    ordered = sorted(increments, key=_by_key) if len(increments) > 1 else increments
    assert acting <= {i.key for i in ordered}  # the guard checks the acting counters among those it adds to
    counted = [[i.key, i.bucket, i.amount, i.count] for i in ordered]
    matched = ({r.rule_id for r in decision.reasons} | {r.rule_id for r in decision.shadow_reasons}
               if decision.reasons or decision.shadow_reasons else None)
    sql, names = _allow_ctes(min(len(ordered), 2), bool(acting), device is not None, bool(matched), scope)
    values: list[Any] = [event.id, request_id, fingerprint, ctx.merchant_id, ctx.transaction, ctx.kind.value,
                         int(decision.action), decision.score,
                         codec.context_json(ctx) if context is None else context, codec.decision_json(decision),
                         codec.counted_json(counted), event.create_time]
    if device is not None:
        values += device
    if len(ordered) == 1:
        i = ordered[0]
        values += (i.key, i.bucket, i.amount, i.count, i.max_amount, i.max_count, i.expire_time)
    elif ordered:
        values.append(_counters_json(ordered))
    if acting and len(ordered) != 1:
        values.append(json.dumps(sorted(acting)))
    if matched:
        values.append(json.dumps(sorted(matched)))
    return deferred.Guarded(sql, _COUNTED_KEYS if ordered else "NULL", names, values,
                            lambda keys: done(set(keys or ())))


def _by_key(i: CounterIncrement) -> str:
    return i.key


def _counters_json(ordered: list[CounterIncrement]) -> str:
    return json.dumps([{"k": i.key, "b": i.bucket, "a": i.amount, "n": i.count, "ma": i.max_amount,
                        "mc": i.max_count, "e": i.expire_time.isoformat()} for i in ordered])


def record_shadow_refusals(db: Database, event: RiskEvent, counted: list[list[Any]], new_rules: set[str]) -> None:
    """After evaluate_at_once: shadow rules whose counters refused join the event's shadow reasons
    (they never act, so recording them a statement later changes no decision)."""
    with db.autocommit() as conn:
        conn.execute(_SHADOW_REFUSALS, {"id": event.id, "decision": codec.decision_json(event.decision),
                                        "counted": json.dumps(counted), "rules": json.dumps(sorted(new_rules)),
                                        "t": event.create_time})


_SHADOW_REFUSALS = _pg(
    "WITH u AS (UPDATE risk_events SET decision = :decision, counted = :counted WHERE id = :id) "
    "INSERT INTO risk_event_rules (event_id, rule_id, create_time) "
    "SELECT :id, r, CAST(:t AS timestamptz) FROM jsonb_array_elements_text(CAST(:rules AS jsonb)) AS r")


def count(conn: Connection, increments: list[CounterIncrement]) -> set[str]:
    """Add the transaction to each counter that stays within its limit; returns the keys added to."""
    if not increments:
        return set()
    ordered = sorted(increments, key=lambda i: i.key)
    if conn.dialect.name == "postgresql":
        columns: dict[str, list[Any]] = {"k": [], "b": [], "a": [], "n": [], "ma": [], "mc": [], "e": []}
        for inc in ordered:
            for name, value in zip(columns, (inc.key, inc.bucket, inc.amount, inc.count, inc.max_amount,
                                             inc.max_count, inc.expire_time), strict=True):
                columns[name].append(value)
        return {row[0] for row in conn.execute(_COUNT_PG, columns)}
    params: dict[str, Any] = {}
    for n, inc in enumerate(ordered):
        params |= {f"k{n}": inc.key, f"b{n}": inc.bucket, f"a{n}": inc.amount, f"n{n}": inc.count,
                   f"ma{n}": inc.max_amount, f"mc{n}": inc.max_count, f"e{n}": inc.expire_time}
    return {row[0] for row in conn.execute(_count_statement(len(ordered)), params)}


_UNCOUNT = text(
    'UPDATE risk_counters SET '
    'amount = CASE WHEN bucket = :b THEN amount - :a ELSE amount END, '
    '"count" = CASE WHEN bucket = :b THEN "count" - :n ELSE "count" END, '
    'prev_amount = CASE WHEN bucket = :b + 1 THEN prev_amount - :a ELSE prev_amount END, '
    'prev_count = CASE WHEN bucket = :b + 1 THEN prev_count - :n ELSE prev_count END '
    'WHERE "key" = :k')


def uncount(conn: Connection, counted: list[list[Any]]) -> None:
    """Take transactions back out of their counters ([key, bucket, amount, count] each)."""
    if counted:
        conn.execute(_UNCOUNT, [{"k": k, "b": b, "a": a, "n": n} for k, b, a, n in sorted(counted)])


def peek(conn: Connection, increments: list[CounterIncrement]) -> set[str]:
    """Dry run of `count`: the keys that would be added to, without changing anything."""
    if not increments:
        return set()
    rows = {r["key"]: r for r in conn.execute(select(risk_counters).where(
        risk_counters.c.key.in_([i.key for i in increments]))).mappings().all()}
    fits = set()
    for inc in increments:
        row = rows.get(inc.key)
        amount = count_ = 0
        if row is not None and inc.bucket <= row["bucket"]:
            amount, count_ = row["amount"] + row["prev_amount"], row["count"] + row["prev_count"]
        elif row is not None and inc.bucket == row["bucket"] + 1:
            amount, count_ = row["amount"], row["count"]
        if amount + inc.amount <= inc.max_amount and count_ + inc.count <= inc.max_count:
            fits.add(inc.key)
    return fits


def purge_counters(conn: Connection, now: datetime) -> int:
    return int(conn.execute(risk_counters.delete().where(risk_counters.c.expire_time < now)).rowcount or 0)


_TOUCH_DEVICE = text(
    "INSERT INTO risk_devices (merchant_id, customer_id, device_id, first_seen) VALUES (:m, :c, :d, :t) "
    "ON CONFLICT (merchant_id, customer_id, device_id) DO UPDATE SET first_seen = risk_devices.first_seen "
    "RETURNING first_seen").bindparams(bindparam("t", type_=UtcDateTime())).columns(first_seen=UtcDateTime())


def touch_device(conn: Connection, merchant_id: str, customer_id: str, device_id: str, now: datetime) -> datetime:
    """When this customer's device was first seen (now, if never before); records it."""
    seen: datetime = conn.execute(_TOUCH_DEVICE, {"m": merchant_id, "c": customer_id, "d": device_id,
                                                  "t": now}).scalar_one()
    return seen


def device_first_seen(conn: Connection, merchant_id: str, customer_id: str, device_id: str) -> datetime | None:
    return conn.execute(select(risk_devices.c.first_seen).where(
        risk_devices.c.merchant_id == merchant_id, risk_devices.c.customer_id == customer_id,
        risk_devices.c.device_id == device_id)).scalar()


# -- events ---------------------------------------------------------------------------------------------

_INSERT_EVENT = insert(risk_events)
_INSERT_EVENT_RULES = insert(risk_event_rules)


def insert_event(conn: Connection, event: RiskEvent, scope: str, request_id: str, fingerprint: str,
                 counted: list[list[Any]], context: str | None = None) -> None:
    conn.execute(_INSERT_EVENT, codec.event_row(event, scope, request_id, fingerprint, counted, context))
    matched = {r.rule_id for r in event.decision.reasons} | {r.rule_id for r in event.decision.shadow_reasons}
    if matched:
        conn.execute(_INSERT_EVENT_RULES, [{"event_id": event.id, "rule_id": rule_id,
                                            "create_time": event.create_time} for rule_id in sorted(matched)])


def event_by_request(conn: Connection, scope: str, request_id: str) -> tuple[RiskEvent, str] | None:
    row = conn.execute(select(risk_events).where(risk_events.c.request_scope == scope,
                                                 risk_events.c.request_id == request_id)).first()
    return (codec.event_from_row(row), row.fingerprint) if row is not None else None


def get_event(conn: Connection, event_id: str) -> RiskEvent | None:
    row = conn.execute(select(risk_events).where(risk_events.c.id == event_id)).first()
    return codec.event_from_row(row) if row is not None else None


def list_events(conn: Connection, after: Any, size: int, f: dict[str, Any]) -> list[RiskEvent]:
    t = risk_events
    q = select(t)
    if f.get("rule"):
        q = q.where(t.c.id.in_(select(risk_event_rules.c.event_id).where(risk_event_rules.c.rule_id == f["rule"])))
    for column in ("merchant_id", "transaction", "transaction_kind", "review_state"):
        if f.get(column):
            q = q.where(t.c[column] == f[column])
    if f.get("action"):
        q = q.where(t.c.action == f["action"])
    if not f.get("include_dry_runs"):
        q = q.where(t.c.dry_run.is_(False))
    if f.get("start_time"):
        q = q.where(t.c.create_time >= datetime.fromisoformat(f["start_time"]))
    if f.get("end_time"):
        q = q.where(t.c.create_time < datetime.fromisoformat(f["end_time"]))
    if after is not None:
        at = datetime.fromisoformat(after[0])
        q = q.where(or_(t.c.create_time < at, and_(t.c.create_time == at, t.c.id < after[1])))
    rows = conn.execute(q.order_by(t.c.create_time.desc(), t.c.id.desc()).limit(size + 1)).all()
    return [codec.event_from_row(r) for r in rows]


def set_review(conn: Connection, event_id: str, state: ReviewState, reviewer: str, note: str,
               now: datetime) -> bool:
    return bool(conn.execute(update(risk_events).where(
        risk_events.c.id == event_id, risk_events.c.review_state == ReviewState.PENDING.value)
        .values(review_state=state.value, reviewer=reviewer, review_note=note, review_time=now)).rowcount)


def overdue_reviews(conn: Connection, now: datetime, limit: int = 100) -> list[RiskEvent]:
    rows = conn.execute(select(risk_events).where(
        risk_events.c.review_state == ReviewState.PENDING.value, risk_events.c.review_deadline < now)
        .limit(limit)).all()
    return [codec.event_from_row(r) for r in rows]


def unreleased_counts(conn: Connection, transaction: str, request_id: str) -> list[tuple[str, list[list[Any]]]]:
    """Events of this transaction attempt whose counts were never released."""
    rows = conn.execute(select(risk_events.c.id, risk_events.c.counted).where(
        risk_events.c.transaction == transaction, risk_events.c.request_id == request_id,
        risk_events.c.released.is_(False), risk_events.c.dry_run.is_(False))).all()
    return [(r.id, json.loads(r.counted)) for r in rows if r.counted != "[]"]


def mark_released(conn: Connection, event_id: str) -> bool:
    return bool(conn.execute(update(risk_events).where(risk_events.c.id == event_id,
                                                       risk_events.c.released.is_(False))
                             .values(released=True)).rowcount)


# -- challenges -----------------------------------------------------------------------------------------

def insert_challenge(conn: Connection, challenge: Challenge, code_hash: str) -> None:
    conn.execute(insert(risk_challenges).values(codec.challenge_row(challenge, code_hash)))


def get_challenge(conn: Connection, challenge_id: str) -> tuple[Challenge, str] | None:
    row = conn.execute(select(risk_challenges).where(risk_challenges.c.id == challenge_id)).first()
    return (codec.challenge_from_row(row), row.code_hash) if row is not None else None


def cas_challenge(conn: Connection, challenge: Challenge, new: Challenge, now: datetime) -> bool:
    return bool(conn.execute(update(risk_challenges).where(
        risk_challenges.c.id == challenge.id, risk_challenges.c.state == challenge.state.value,
        risk_challenges.c.attempts_remaining == challenge.attempts_remaining)
        .values(state=new.state.value, attempts_remaining=new.attempts_remaining, update_time=now)).rowcount)


def expired_challenges(conn: Connection, now: datetime, limit: int = 100) -> list[Challenge]:
    rows = conn.execute(select(risk_challenges).where(
        risk_challenges.c.state == ChallengeState.PENDING.value, risk_challenges.c.expire_time <= now)
        .limit(limit)).all()
    return [codec.challenge_from_row(r) for r in rows]


def insert_sandbox_message(conn: Connection, challenge: Challenge, encrypted_code: str, now: datetime) -> None:
    conn.execute(insert(risk_sandbox_messages).values(challenge_id=challenge.id, merchant_id=challenge.merchant_id,
                                                      code=encrypted_code, create_time=now))


def sandbox_message(conn: Connection, challenge_id: str) -> str | None:
    return conn.execute(select(risk_sandbox_messages.c.code).where(
        risk_sandbox_messages.c.challenge_id == challenge_id)).scalar()


def with_state(challenge: Challenge, state: ChallengeState, attempts: int) -> Challenge:
    return replace(challenge, state=state, attempts_remaining=attempts)

