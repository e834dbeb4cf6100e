"""Rows written in bulk for the intake's big tables (events, messages, deliveries, status changes),
cheaper than `bulk_create` in Python and with the same one statement per table.

On PostgreSQL a list of model instances goes in as one `INSERT … SELECT … FROM unnest(…)
RETURNING id`, every column one array parameter bound on the server in binary: Django's
`bulk_create` builds the same statement, but with a cursor binding on the client (Django's default,
and ours with DATABASE_SERVER_SIDE_BINDING=false) it quotes each array element with a regular
expression (a third of an event's CPU in the intake profile, bench/README.md). Elsewhere (SQLite)
it is `bulk_create`.

Like `bulk_create`: no signals, no `save()`, defaults and `auto_now_add` applied, primary keys set.

The intake's rows go without model instances at all: `ids_reserve` takes the new rows' keys from
their tables' sequences (one statement for every table: a `nextval` block per table cost a
statement each), so rows can name each other and be answered before they are written, and
`values_copy` writes plain rows with one binary `COPY` per table, each value formatted by
psycopg's C code (an array per column is dumped in Python, element by element). With the
intake deciding a batch's rules once per distinct data, a batch of 100 went from 0.6 to 0.25 ms
of CPU per event (bench/intake_cpu.py, 2026-11-30).

The intake's few reads per event (the API key, the idempotency keys, the recipients, their
preferences) go the other way with `rows_where`: one fixed statement per (model, condition), built
once, its rows made instances with Django's own converters. The ORM compiled each of them anew per
request: building the SQL cost more CPU than PostgreSQL spent answering it.
"""

import functools
import json
import re
import time
from datetime import datetime

import orjson
from django.db import connections, router
from django.db.models import Field, Model

BULK_CHUNK = 5000  # rows per statement: bounds one parameter array, not the caller's batch
# Up to this many parameters, one `VALUES` list of plain ones: a single event writes a few rows
# per table, and dumping an array per column cost more than the rows (bench/intake_cpu.py: five
# status changes 0.13 ms of CPU as VALUES, 0.30 ms through unnest). Past 50, psycopg parses the
# statement anew each time ("Avoid caching queries ... with a huge number of parameters",
# psycopg/_queries.py): more than the arrays cost.
FEW_PARAMS = 50


def rows_insert(objs: list[Model]) -> list[Model]:
    """Insert `objs` (one model, new rows), in the caller's transaction; returns them with ids."""
    if not objs:
        return objs
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        return model.objects.bulk_create(objs, batch_size=500)
    _, columns = _insert_plan(model, connection.alias)
    pk = model._meta.pk
    for start in range(0, len(objs), BULK_CHUNK):
        chunk = objs[start : start + BULK_CHUNK]
        ids = _insert(model, connection, [[_value(obj, f, plain, connection) for f, plain in columns] for obj in chunk])
        for obj, new_id in zip(chunk, ids, strict=True):
            setattr(obj, pk.attname, new_id)
            obj._state.adding = False
            obj._state.db = connection.alias
    return objs


def values_insert(model: type[Model], rows: list[dict]) -> None:
    """Insert plain rows (attname → value; the other fields take their defaults, evaluated once
    per call), in the caller's transaction, without making a model instance per row: for rows
    nobody reads back, like a delivery's timeline (Model.__init__ was a quarter of a batch's CPU)."""
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**row) for row in rows], batch_size=500)
        return
    _, columns = _insert_plan(model, connection.alias)
    for field, _ in columns:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            raise ValueError(f"values_insert sets no automatic time: {model.__name__}.{field.name}")
    if len(rows) * len(columns) > FEW_PARAMS:  # more than a few: COPY, no array dumped in Python
        values_copy(model, rows)
        return
    defaults = {f.attname: f.get_default() for f, _ in columns}
    for start in range(0, len(rows), BULK_CHUNK):
        params = [
            [_prepared(f, plain, row.get(f.attname, defaults[f.attname]), connection) for f, plain in columns]
            for row in rows[start : start + BULK_CHUNK]
        ]
        _insert(model, connection, params)


def ids_reserve(*wanted: tuple[type[Model], int]) -> list[list[int]]:
    """New primary keys, `count` for each (model, count), from each table's own sequence, in one
    statement (SQLite: its sequence table, in the caller's transaction). Keys reserved and not
    used are a gap, as a rolled-back insert leaves."""
    models = [(model, count) for model, count in wanted if count > 0]
    if not models:
        return [[] for _ in wanted]
    connection = connections[router.db_for_write(models[0][0])]
    if connection.vendor == "postgresql":
        arrays = ", ".join(
            ["ARRAY(SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s))"] * len(models)
        )
        params = [p for model, count in models for p in (model._meta.db_table, model._meta.pk.column, count)]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {arrays}", params)
            reserved = iter(cursor.fetchone())
    elif connection.vendor == "sqlite":
        reserved = iter([_sqlite_reserve(connection, model, count) for model, count in models])
    else:
        raise NotImplementedError(f"ids_reserve on {connection.vendor}")
    return [list(next(reserved)) if count > 0 else [] for _, count in wanted]


def _sqlite_reserve(connection, model: type[Model], count: int) -> list[int]:
    # AUTOINCREMENT tables keep their last key in sqlite_sequence; moving it is a write, so the
    # database's one writer lock keeps two transactions from taking the same keys.
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("UPDATE sqlite_sequence SET seq = seq + %s WHERE name = %s RETURNING seq", [count, table])
        row = cursor.fetchone()
        if row is None:
            quote = connection.ops.quote_name
            last = f"COALESCE(MAX({quote(model._meta.pk.column)}), 0)"
            cursor.execute(
                f"INSERT INTO sqlite_sequence (name, seq) SELECT %s, {last} + %s FROM {quote(table)} RETURNING seq",  # noqa: S608 (names are the model's)
                [table, count],
            )
            row = cursor.fetchone()
    return list(range(row[0] - count + 1, row[0] + 1))


def values_copy(model: type[Model], rows: list[dict], *, now: datetime | None = None) -> None:
    """Insert plain rows (attname → value) with one `COPY` (binary), in the caller's transaction.
    A row carries its primary key (from ids_reserve), or none does and the table gives them;
    fields a row leaves out take their defaults (evaluated once per call), `auto_now` and
    `auto_now_add` fields take `now`. Values are prepared as `values_insert` prepares them, so an
    encrypted field of our own is written encrypted. A clash is an IntegrityError, a value too
    long for its column a DataError, as with `bulk_create` (elsewhere than PostgreSQL, it is
    `bulk_create`)."""
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    with_pk = model._meta.pk.attname in rows[0]
    columns, sql, types, automatic = _copy_plan(model, connection.alias, with_pk)
    if automatic and now is None:
        raise ValueError(f"values_copy needs `now` for {model.__name__}'s automatic times")
    defaults = {f.attname: now if f.attname in automatic else f.get_default() for f, *_ in columns}
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**{**defaults, **row}) for row in rows], batch_size=500)
        return
    prepared = _copy_values(columns, rows, defaults, connection)
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    started = time.monotonic()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        copy.set_types(types)
        for values in prepared:
            copy.write_row(values)
    if connection.queries_logged:  # counted as Django counts its own statements (assertNumQueries)
        connection.queries_log.append(
            {"sql": f"{sql} -- {len(rows)} rows", "time": f"{time.monotonic() - started:.3f}"}
        )


@functools.cache
def _copy_plan(model: type[Model], alias: str, with_pk: bool) -> tuple[list, str, list, frozenset]:
    """The COPY statement, its columns' types (their oids: psycopg looks a name up on every
    COPY, a sixth of a one-row COPY's CPU), the fields that take `now`, and per column (field,
    kind, plain types): how a value is prepared (_copy_values)."""
    connection = connections[alias]
    fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"COPY {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN (FORMAT BINARY)"
    )
    types = [_oid(_array_type(f, connection)[:-2]) for f in fields] if connection.vendor == "postgresql" else []
    automatic = frozenset(
        f.attname for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    )
    return [(f, *_copy_kind(f)) for f in fields], sql, types, automatic


def _oid(name: str) -> int | str:
    """A built-in type's oid (fixed in every PostgreSQL); another stays a name, looked up per COPY."""
    from psycopg import postgres

    info = postgres.types.get(name)
    return info.oid if info is not None else name


_AS_IS, _MOMENT, _JSON, _DJANGO = range(4)


def _copy_kind(field) -> tuple[int, tuple]:
    django_own = type(field).__module__.startswith("django.")
    if not django_own and type(field).pre_save is not Field.pre_save and not getattr(field, "pre_save_is_value", False):
        # A plain row has no instance to compute it from (a keyed hash of an address): rows_insert.
        raise ValueError(f"values_copy cannot compute {field.model.__name__}.{field.name}: use rows_insert")
    if field.primary_key:
        return _AS_IS, (int,)
    if django_own and field.get_internal_type() == "DateTimeField":
        return _MOMENT, ()  # auto_now too: values_copy gives it `now`
    if django_own and field.get_internal_type() == "JSONField" and field.encoder is None:
        return _JSON, ()
    plain = _plain_types(field)
    return (_DJANGO, ()) if plain is None else (_AS_IS, plain)


def _json_text(value):
    from psycopg.types.json import Jsonb

    try:  # several times json.dumps's speed; the text differs only in spacing and escapes
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # what orjson cannot write (an integer past 64 bits): as before
        text = json.dumps(value).encode()
    return Jsonb(text, dumps=_as_is)


def _as_is(text: bytes) -> bytes:
    return text


def _copy_values(columns: list, rows: list[dict], defaults: dict, connection) -> list[tuple]:
    """Each row's values in column order, prepared as Django would prepare them for an INSERT:
    strings, integers, aware date-times and JSON objects as they are (the cheap and common case),
    anything else through the field's get_db_prep_save (an encrypted field of ours, a naive time,
    a choices member). Column by column: one type check per column when all are plain."""
    texts: dict[int, object] = {}  # one JSON text per object, however many rows share it
    prepared = []
    for field, kind, plain in columns:
        name, default = field.attname, defaults[field.attname]
        values = [row.get(name, default) for row in rows]
        if kind == _AS_IS:
            if not set(map(type, values)) <= {*plain, type(None)}:
                values = [_as_plain(field, plain, v, connection) for v in values]
        elif kind == _MOMENT:
            values = [
                v
                if v is None or (type(v) is datetime and v.tzinfo is not None)
                else field.get_db_prep_save(v, connection)
                for v in values
            ]
        elif kind == _JSON:
            values = [
                v
                if v is None
                else (texts.get(id(v)) or texts.setdefault(id(v), _json_text(v)))
                if type(v) in (dict, list)
                else field.get_db_prep_save(v, connection)
                for v in values
            ]
        else:
            values = [field.get_db_prep_save(v, connection) for v in values]
        prepared.append(values)
    return list(zip(*prepared, strict=True))


def _as_plain(field, plain: tuple, value, connection):
    if value is None or type(value) in plain:
        return value
    if str in plain and isinstance(value, str):  # a choices member is its string
        return str(value)
    return field.get_db_prep_save(value, connection)


def _insert(model: type[Model], connection, rows: list[list]) -> list[int]:
    """The rows' values (each in the plan's column order) in one statement; their new ids."""
    sql, columns = _insert_plan(model, connection.alias)
    if len(rows) * len(columns) <= FEW_PARAMS:
        sql = _values_sql(model, connection.alias, len(rows))
        params = [value for row in rows for value in row]
    else:
        params = [list(column) for column in zip(*rows, strict=True)]
    connection.ensure_connection()
    with connection._prepare_cursor(_server_binding_cursor(connection)) as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def rows_where(model: type[Model], where: str, params: list, *, fields: tuple[str, ...] = ()) -> list[Model] | None:
    """Instances of `model` for `SELECT <fields, every column if none> WHERE <where>` (PostgreSQL
    SQL, `%s` parameters), as the ORM would give them (values through each field's converters,
    unselected fields deferred); None elsewhere than on PostgreSQL: the caller asks the ORM."""
    connection = connections[router.db_for_read(model)]
    if connection.vendor != "postgresql":
        return None
    sql, names, converters = _select_plan(model, where, fields, connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    alias = connection.alias
    out = []
    for row in rows:
        if converters:
            row = list(row)
            for index, convert in converters:
                for converter in convert:
                    row[index] = converter(row[index], None, connection)
        out.append(model.from_db(alias, names, row))
    return out


@functools.cache
def _select_plan(model: type[Model], where: str, fields: tuple[str, ...], alias: str) -> tuple[str, list, list]:
    connection = connections[alias]
    # In the model's order, as Model.from_db reads them; the key always (an instance needs it).
    wanted = {model._meta.get_field(name).attname for name in fields} | {model._meta.pk.attname}
    columns = [f for f in model._meta.concrete_fields if not fields or f.attname in wanted]
    quote = connection.ops.quote_name
    sql = (
        f"SELECT {', '.join(quote(f.column) for f in columns)} FROM {quote(model._meta.db_table)} "  # noqa: S608 (names are the model's; values are parameters)
        f"WHERE {where}"
    )
    converters = []
    for index, field in enumerate(columns):
        convert = connection.ops.get_db_converters(field.cached_col) + field.get_db_converters(connection)
        if convert:
            converters.append((index, convert))
    return sql, [f.attname for f in columns], converters


@functools.cache
def _insert_plan(model: type[Model], alias: str) -> tuple[str, list]:
    """The statement and, per column, its field and the types that pass as they are (built once:
    a single event's insert is a few rows, and building this was a third of it)."""
    connection = connections[alias]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    arrays = ", ".join(f"%b::{_array_type(f, connection)}" for f in fields)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "  # noqa: S608 (names are the model's; values are parameters)
        f"SELECT * FROM unnest({arrays}) RETURNING {quote(model._meta.pk.column)}"
    )
    return sql, [(f, _plain_types(f)) for f in fields]


@functools.cache
def _values_sql(model: type[Model], alias: str, rows: int) -> str:
    """`INSERT … VALUES (…), (…) RETURNING id` for this many rows; ids come back in their order."""
    connection = connections[alias]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 (names are the model's; values are parameters)
        f"VALUES {', '.join([row] * rows)} RETURNING {quote(model._meta.pk.column)}"
    )


def _array_type(field, connection) -> str:
    # unnest needs each array's element type. Without the length: a cast to varchar(n) would cut a
    # long value silently, where the INSERT into the column refuses it as bulk_create's does.
    return re.sub(r"\(\d+(,\s*\d+)?\)", "", field.db_type(connection)) + "[]"


def column_update(model: type[Model], field_name: str, values: dict[int, object]) -> None:
    """Set one column of many rows by primary key, as one `UPDATE … FROM unnest(…)` (bulk_update
    builds a CASE of one branch per row: a tenth of a batch's CPU)."""
    if not values:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        objs = [model(pk=pk, **{field_name: value}) for pk, value in values.items()]
        model.objects.bulk_update(objs, [field_name], batch_size=500)
        return
    field = model._meta.get_field(field_name)
    pk = model._meta.pk
    quote = connection.ops.quote_name
    pk_type, value_type = _array_type(pk, connection), _array_type(field, connection)
    few = len(values) * 2 <= FEW_PARAMS
    if few:  # plain parameters, as rows_insert's few rows
        pairs = ", ".join([f"(%s::{pk_type[:-2]}, %s::{value_type[:-2]})"] * len(values))
        source = f"(VALUES {pairs})"
    else:
        source = f"unnest(%b::{pk_type}, %b::{value_type})"
    sql = (
        f"UPDATE {quote(model._meta.db_table)} AS t SET {quote(field.column)} = v.value "  # noqa: S608 (names are the model's)
        f"FROM {source} AS v(pk, value) WHERE t.{quote(pk.column)} = v.pk"
    )
    prepared = [field.get_db_prep_save(value, connection) for value in values.values()]
    params = [list(values), prepared]
    if few:
        params = [p for pair in zip(values, prepared, strict=True) for p in pair]
    connection.ensure_connection()
    with connection._prepare_cursor(_server_binding_cursor(connection)) as cursor:
        cursor.execute(sql, params)


def _plain_types(field) -> tuple | None:
    """The Python types whose values a column takes as they are. Django's own preparation
    (`get_db_prep_save`) is two microseconds a value, most of a bulk insert's Python; strings,
    integers and aware date-times as our code builds them pass as they are, anything else (JSON, a
    naive date-time, auto_now) goes through Django, and so does every field class of our own (an
    encrypted address, a keyed hash computed in pre_save: taken as they are, they would be stored
    in clear, or not at all)."""
    if not type(field).__module__.startswith("django."):
        return None
    internal = field.get_internal_type()
    if internal in _TEXT:
        return (str,)
    if internal in _INTEGER or (field.is_relation and field.target_field.get_internal_type() in _INTEGER | _AUTO):
        return (int,)
    if internal == "BooleanField":
        return (bool,)
    if internal == "DateTimeField" and not (field.auto_now or field.auto_now_add):
        return (datetime,)
    return None


def _value(obj, field, plain, connection):
    value = getattr(obj, field.attname)
    if value is None and plain is not None:
        return value
    if plain is not None and type(value) in plain and (plain[0] is not datetime or value.tzinfo is not None):
        return value
    return field.get_db_prep_save(field.pre_save(obj, True), connection)


def _prepared(field, plain, value, connection):
    """A plain row's value as `_value` gives an instance's."""
    if value is None and plain is not None:
        return value
    if plain is not None and type(value) in plain and (plain[0] is not datetime or value.tzinfo is not None):
        return value
    return field.get_db_prep_save(value, connection)


_TEXT = {"CharField", "TextField", "SlugField", "EmailField", "URLField"}
_INTEGER = {
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}
_AUTO = {"AutoField", "BigAutoField", "SmallAutoField"}


def binding_cursor(alias: str = "default"):
    """A PostgreSQL cursor that binds its parameters on the server (`%b` for binary): a list goes
    as one array value, not quoted element by element on the client (psycopg's text array
    dumper runs a regular expression per element). Used as `with binding_cursor() as cursor:`."""
    connection = connections[alias]
    connection.ensure_connection()
    return connection._prepare_cursor(_server_binding_cursor(connection))


def _server_binding_cursor(connection):
    from django.db.backends.postgresql.base import ServerBindingCursor

    return ServerBindingCursor(connection.connection)
