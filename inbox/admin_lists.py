"""The console's lists over tables of tens of millions of rows (deliveries, events, messages, inbox
messages): what Django's admin does on every list page, made not to read the whole table.

- The pager's count. Django counts every matching row to number the pages; on a 10-million-row
  table that is a second or more at each page. Counted exactly when that fits in COUNT_BUDGET_MS,
  otherwise PostgreSQL's planner's estimate, shown as "about N" (`LargeTablePaginator`).
- Filters whose choices Django reads as `SELECT DISTINCT column` over the whole table
  (`AllValuesFieldListFilter`): `ValuesListFilter` takes its choices from a loose index scan
  (`distinct_values`), a fixed list, or the latest rows only (`latest_values`).
- Search: Django's takes substrings and casts numbers to text, which no index serves:
  `WholeValueSearch` matches whole values, each through an index.
- Records the console shows and never writes (`ViewOnly`, and `RecordOnly` for those no one deletes
  either): logs of what happened, written by the engine alone.

Here, in the lowest layer, so that every layer's admin can use it (imports point down).
"""

import json

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction
from django.utils.functional import cached_property
from django.utils.translation import gettext
from psycopg.errors import QueryCanceled


class ViewOnly:
    """A ModelAdmin mixin: the rows are the engine's record; no one adds or changes them here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RecordOnly(ViewOnly):
    """View only, and kept: no one deletes them here either."""

    def has_delete_permission(self, request, obj=None):
        return False


# How long the pager may spend counting before it takes the planner's estimate.
COUNT_BUDGET_MS = 200
# How many of the latest rows a filter reads its choices from (by primary key, newest first).
LATEST_ROWS = 20_000


class ApproximateCount(int):
    """A count the planner estimated: a number for the pager's arithmetic, "about N" when shown."""

    def __str__(self) -> str:
        return gettext("about %(count)s") % {"count": int(self)}


class LargeTablePaginator(Paginator):
    """Counted exactly within COUNT_BUDGET_MS (on PostgreSQL; elsewhere always exactly), else
    estimated by the planner: an `ApproximateCount`."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return super().count
        try:
            with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
                # SET LOCAL ends with the block (a savepoint's rollback undoes it too).
                cursor.execute(f"SET LOCAL statement_timeout = {int(COUNT_BUDGET_MS)}")
                count = queryset.count()
                cursor.execute("SET LOCAL statement_timeout TO DEFAULT")
                return count
        except OperationalError as error:
            if not isinstance(error.__cause__, QueryCanceled):
                raise  # not the budget: the database's own trouble, as anywhere else
            sql, params = queryset.order_by().query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
                plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            return ApproximateCount(max(int(plan[0]["Plan"]["Plan Rows"]), 0))


class ValuesListFilter(admin.SimpleListFilter):
    """A filter on one column with choices given by `values(request, model_admin)` (value, label)
    pairs, not read from the whole table. The value in use is always offered, even if no longer
    among them."""

    field_name = ""

    def values(self, request, model_admin) -> list[tuple[str, str]]:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        offered = list(self.values(request, model_admin))
        current = self.value()
        if current and current not in {v for v, _ in offered}:
            offered.append((current, current))
        return offered

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field_name: self.value()}) if self.value() else queryset


def latest_values(model_admin, field_name: str, *, exclude_blank: bool = True) -> list[str]:
    """The distinct values of a column among the latest LATEST_ROWS rows (a backward scan of the
    primary key, whatever the table's size), sorted."""
    latest = model_admin.model._default_manager.order_by("-pk").values_list(field_name, flat=True)[:LATEST_ROWS]
    values = set(latest)
    if exclude_blank:
        values.discard("")
        values.discard(None)
    return sorted(values)


def distinct_values(model, column: str, *, where: str = "") -> list:
    """Every distinct value of `column` (a database column that an index leads with; `where` the
    index's own condition, if partial; both ours, never a client's), read on PostgreSQL as a loose
    index scan: one descent of the index per value, whatever the table's size. Elsewhere a plain
    DISTINCT (small tables)."""
    connection = connections[model._default_manager.db]
    table, col = connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(column)
    also = f" AND {where}" if where else ""
    if connection.vendor == "postgresql":
        sql = (
            f"WITH RECURSIVE v AS ((SELECT {col} AS value FROM {table} WHERE {col} IS NOT NULL{also} "  # noqa: S608
            f"ORDER BY {col} LIMIT 1) UNION ALL SELECT (SELECT {col} FROM {table} WHERE {col} > v.value{also} "
            f"ORDER BY {col} LIMIT 1) FROM v WHERE v.value IS NOT NULL) SELECT value FROM v WHERE value IS NOT NULL"
        )
    else:
        sql = f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL{also} ORDER BY {col}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


def whole_number(term: str) -> int | None:
    """The term as an id (it fits a bigint), or None."""
    return int(term) if term.isdigit() and len(term) < 19 else None


class WholeValueSearch:
    """A list over a large table: searched by whole values, each through an index (`search_match`
    gives the condition for a term: Django's own search takes substrings and casts numbers to
    text, which no index serves), counted by the LargeTablePaginator, without Django's second
    count of the whole table."""

    show_full_result_count = False
    paginator = LargeTablePaginator
    # Only so that Django shows the search box: get_search_results below does the searching.
    search_fields = ("pk",)

    def search_match(self, term: str):
        raise NotImplementedError

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.search_match(term)), False
