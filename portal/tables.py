"""The admin lists' tables: django-tables2 declares the columns, `listing()` draws a page.

A table class says, once per model, which columns a list has, their headings, links and
sort keys (NetBox's recipe). Drawing a page through django-tables2's own template costs a
BoundColumn and BoundRow lookup, a field lookup and a signature inspection per cell, the
bulk of a long list's time; `listing()` works out what does not change from row to row once
per column and hands templates/generic/_table.html plain rows of cells (a column's `attrs`
give its heading's attributes; cells are drawn without any).
"""

from dataclasses import dataclass
from datetime import datetime
from math import ceil

import django_tables2 as tables
from django.db import connections
from django.db.models import Model, QuerySet
from django.utils import formats, timezone
from django.utils.text import capfirst
from django_tables2.rows import BoundRow
from django_tables2.utils import Accessor, signature

from portal import invitations
from portal.models import AuditEntry, Invitation, Team
from portal.urlhelpers import id_param

PER_PAGE = 50
# An unfiltered list longer than this shows PostgreSQL's estimate of its length ("about N")
# instead of counting every row on every page view.
ESTIMATE_OVER = 10_000


@dataclass
class Header:
    label: str
    attrs: str  # the th's attributes, django-tables2's classes (orderable, asc, desc)
    sort_url: str  # "" when the column does not sort
    aria_sort: str  # "ascending" or "descending" on the column the list is sorted by


@dataclass
class PageLink:
    number: int | None  # None: the gap ("…") between page links
    url: str = ""


@dataclass
class Page:
    number: int
    per_page: int
    count: int
    estimated: bool  # count is PostgreSQL's estimate, not a count
    has_next: bool
    rows: int  # rows on this page

    @property
    def num_pages(self) -> int:
        return max(_last_page(self.count, self.per_page), self.number + self.has_next)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def start(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.rows else 0

    @property
    def end(self) -> int:
        return (self.number - 1) * self.per_page + self.rows


@dataclass
class Listing:
    """One page of a table, ready for templates/generic/_table.html."""

    headers: list[Header]
    rows: list[list]  # per row, the cells' content (escaped by the template unless safe)
    page: Page
    links: list[PageLink]
    previous_url: str
    next_url: str


def listing(table: tables.Table, request, per_page: int = PER_PAGE) -> Listing:
    """Sort a table's queryset and draw one page of it from the query string, whatever the
    query string holds: an unknown sort is ignored, a page that is not a number shows the
    first page, one past the end the last."""
    _sort(table, request)
    queryset = _total_order(table.data.data)
    requested = id_param(request.GET.get(table.prefixed_page_field)) or 1
    page, records = _page(queryset, requested, per_page)
    columns = list(table.columns)
    cells = [_CellRenderer(table, column, queryset.model) for column in columns]

    def page_url(number: int) -> str:
        return _query_url(request, table.prefixed_page_field, number)

    return Listing(
        headers=[_header(column, table, request) for column in columns],
        rows=[_row(table, record, cells) for record in records],
        page=page,
        links=[
            PageLink(n, page_url(n) if n else "")
            for n in _page_numbers(page.number, page.num_pages)
        ],
        previous_url=page_url(page.number - 1) if page.has_previous else "",
        next_url=page_url(page.number + 1) if page.has_next else "",
    )


def _sort(table: tables.Table, request) -> None:
    """Sort the table by the query string's columns; django-tables2 ignores unknown ones."""
    table.request = request
    if order_by := request.GET.getlist(table.prefixed_order_by_field):
        table.order_by = order_by


def _query_url(request, key: str, value) -> str:
    """This page's query string with `key` set to `value`, the filters kept."""
    query = request.GET.copy()
    query[key] = value
    return f"?{query.urlencode()}"


def _header(column, table: tables.Table, request) -> Header:
    sort_url, aria_sort = "", ""
    if column.orderable:
        sort_url = _query_url(request, table.prefixed_order_by_field, column.order_by_alias.next)
        if column.is_ordered:
            descending = column.order_by_alias.is_descending
            aria_sort = "descending" if descending else "ascending"
    return Header(column.header, column.attrs["th"].as_html(), sort_url, aria_sort)


def _total_order(queryset: QuerySet) -> QuerySet:
    """The queryset ordered by its sort keys and then its primary key: rows that tie on the
    sort keys keep one order, so no row shows on two pages or on none."""
    ordering = list(queryset.query.order_by or queryset.model._meta.ordering)
    keys = {str(key).lstrip("-") for key in ordering}
    if keys & {"pk", queryset.model._meta.pk.name}:
        return queryset
    descending = bool(ordering) and str(ordering[0]).startswith("-")
    return queryset.order_by(*ordering, "-pk" if descending else "pk")


def _page(queryset: QuerySet, number: int, per_page: int) -> tuple[Page, list]:
    """Page `number` of the queryset (or its last page) and its rows.

    Past an estimated total (or on an empty page of one: rows deleted since PostgreSQL last
    looked) the rows are counted after all, so "next" past a low estimate still leads on and
    a page past the end shows the real last page.
    """
    count, estimated = _count(queryset)
    records = []
    if estimated and number <= _last_page(count, per_page):
        records = _slice(queryset, number, per_page, count, estimated)
    if estimated and not records:
        count, estimated = queryset.count(), False
    if estimated:
        has_next = len(records) > per_page
        records = records[:per_page]
    else:
        number = min(number, _last_page(count, per_page))
        records = _slice(queryset, number, per_page, count, estimated)
        has_next = number * per_page < count
    return Page(number, per_page, count, estimated, has_next, len(records)), records


def _last_page(count: int, per_page: int) -> int:
    return max(ceil(count / per_page), 1)


def _slice(queryset: QuerySet, number: int, per_page: int, count: int, estimated: bool) -> list:
    """The page's rows; after an estimate, with the first row of the next page if any.

    A page in the far half of a counted list is read from the end, in the reverse order (a
    total order, so the reverse is its mirror): an OFFSET reads and drops every row before
    the page, and the last page of 10,000 rows would read them all.
    """
    start = (number - 1) * per_page
    if estimated:
        return _rows(queryset, start, start + per_page + 1)
    end = min(start + per_page, count)
    if start <= count // 2:
        return _rows(queryset, start, end)
    return _rows(queryset.reverse(), count - end, count - start)[::-1]


def _rows(queryset: QuerySet, start: int, stop: int) -> list:
    """Rows start to stop of the queryset, their ids first: the rows an OFFSET skips are
    read from an index alone when one covers the sort keys, and the joins the rows need
    run for this page's rows only."""
    ids = list(queryset.values_list("pk", flat=True)[start:stop])
    if not ids:
        return []
    rows = queryset.order_by().in_bulk(ids)
    return [rows[pk] for pk in ids if pk in rows]


def _count(queryset: QuerySet) -> tuple[int, bool]:
    """The queryset's length, and whether that is PostgreSQL's estimate.

    A whole table (no filter) that PostgreSQL estimates to be longer than ESTIMATE_OVER rows
    is not counted: counting 100,000 audit entries reads every one of them on every page
    view. The estimate is the planner's (pg_class.reltuples, scaled to the table's current
    size); a shorter table is counted, in the same single query, so the page's query count
    does not depend on the table's size.
    """
    query = queryset.query
    connection = connections[queryset.db]
    whole_table = not (query.where or query.distinct or query.group_by or query.combinator)
    if connection.vendor != "postgresql" or not whole_table:
        return queryset.count(), False
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT CASE WHEN estimate > %s THEN estimate ELSE (SELECT COUNT(*) FROM {table}) END,
                   estimate > %s
            FROM (
                SELECT CASE WHEN reltuples < 0 OR relpages = 0 THEN 0
                    ELSE (reltuples / relpages * (pg_relation_size(oid)
                        / current_setting('block_size')::integer))::bigint END AS estimate
                FROM pg_class WHERE oid = %s::regclass
            ) AS planner
            """,
            [ESTIMATE_OVER, ESTIMATE_OVER, table],
        )
        count, estimated = cursor.fetchone()
    return int(count), estimated


def _page_numbers(number: int, num_pages: int) -> list[int | None]:
    """The first and last page, the pages around this one, None for each gap between."""
    shown = sorted({1, num_pages, *range(max(number - 2, 1), min(number + 2, num_pages) + 1)})
    numbers: list[int | None] = []
    for n in shown:
        if numbers and n - numbers[-1] > 1:
            numbers.append(None)
        numbers.append(n)
    return numbers


class _CellRenderer:
    """Draws one column's cells by django-tables2's rules (`BoundRow.get_cell`): the value
    through the accessor (a field's choice label when it has choices), the column's default
    when empty, the table's `render_<name>` or the column's `render`, then its link. What
    does not change between rows, the field and the render method's arguments, is looked up
    once here."""

    def __init__(self, table: tables.Table, column, model: type[Model]):
        self.table = table
        self.column = column
        self.accessor = Accessor(column.accessor)
        path, _, name = self.accessor.rpartition(Accessor.SEPARATOR)
        field = self.accessor.get_field(model)
        self.choices_of = Accessor(path) if getattr(field, "choices", None) else None
        self.display = f"get_{name}_display"
        self.empty_values = column.column.empty_values
        self.default = column.default
        self.render = column.render
        arguments, catch_all = signature(self.render)
        self.arguments = None if catch_all else arguments
        self.link = column.link

    def __call__(self, record, row: BoundRow):
        value = self.value(record)
        if value in self.empty_values:
            return self.default
        arguments = {
            "value": value,
            "record": record,
            "column": self.column.column,
            "bound_column": self.column,
            "bound_row": row,
            "table": self.table,
        }
        if self.arguments is None:
            content = self.render(**arguments)
        else:
            content = self.render(**{name: arguments[name] for name in self.arguments})
        return self.link(content, **arguments) if self.link else content

    def value(self, record):
        if self.choices_of is not None:
            owner = self.choices_of.resolve(record, quiet=True)
            if isinstance(owner, Model):
                return getattr(owner, self.display)()
        return self.accessor.resolve(record, quiet=True)


def _row(table: tables.Table, record, cells: list[_CellRenderer]) -> list:
    row = BoundRow(record, table)
    return [cell(record, row) for cell in cells]


class DateTimeColumn(tables.Column):
    """django-tables2's DateTimeColumn without its cost: that one compiles a template for
    every cell, the bulk of a list page's time. Same output: the local time in `format`
    (a `date` filter format or a format setting's name)."""

    def __init__(self, format: str = "SHORT_DATETIME_FORMAT", **kwargs):
        self.format = format
        super().__init__(**kwargs)

    def render(self, value):
        return formats.date_format(timezone.localtime(value), self.format)

    def value(self, value):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value


class AuditTable(tables.Table):
    timestamp = DateTimeColumn(linkify=True, format="Y-m-d H:i:s")
    actor_name = tables.Column(verbose_name="Who")
    action = tables.Column()
    # Not sortable: sorting by the type's name joins and sorts the whole log (35 ms at 100,000
    # entries); the Type filter lists one type's entries instead.
    content_type = tables.Column(verbose_name="Type", orderable=False)
    object_repr = tables.Column(verbose_name="Object")
    message = tables.Column()

    class Meta:
        model = AuditEntry
        fields = ["timestamp", "actor_name", "action", "content_type", "object_repr", "message"]

    def render_content_type(self, value) -> str:
        return capfirst(value.name)  # "Compute profile", not "computeprofile"


class TeamTable(tables.Table):
    name = tables.Column(linkify=True)
    role = tables.Column()
    member_count = tables.Column(verbose_name="Members")
    max_gpus = tables.Column(verbose_name="GPUs", default="∞")
    max_mig_slices = tables.Column(verbose_name="MIG slices", default="∞")
    max_workspaces = tables.Column(verbose_name="Workspaces", default="∞")

    class Meta:
        model = Team
        fields = [
            "name",
            "role",
            "member_count",
            "max_gpus",
            "max_mig_slices",
            "max_workspaces",
            "description",
        ]


class UserTable(tables.Table):
    username = tables.Column(linkify=("portal:user_detail", {"pk": tables.A("pk")}))
    email = tables.Column()
    groups = tables.Column(accessor="pk", verbose_name="Groups", orderable=False)
    last_login = DateTimeColumn(format="Y-m-d H:i", default="Never")
    is_active = tables.BooleanColumn(verbose_name="Active")
    active_workspaces = tables.Column(
        accessor="pk", verbose_name="Active workspaces", orderable=False
    )

    class Meta:
        fields = ["username", "email", "groups", "last_login", "is_active", "active_workspaces"]

    def __init__(self, *args, workspace_counts: dict[int, int] | None = None, **kwargs):
        self.workspace_counts = workspace_counts or {}
        super().__init__(*args, **kwargs)

    def render_active_workspaces(self, record):
        return self.workspace_counts.get(record.pk, 0)

    def render_groups(self, record):
        return ", ".join(team.name for team in record.teams.all()) or "—"


class InvitationTable(tables.Table):
    email = tables.Column()
    groups = tables.Column(accessor="pk", verbose_name="Groups", orderable=False)
    invited_by = tables.Column()
    created = DateTimeColumn(format="Y-m-d H:i")
    expires_at = DateTimeColumn(format="Y-m-d H:i", verbose_name="Expires")
    status = tables.Column(accessor="pk", orderable=False)
    actions = tables.TemplateColumn(
        template_name="portal/invitation_actions.html", orderable=False, verbose_name=""
    )

    class Meta:
        model = Invitation
        fields = ["email", "groups", "invited_by", "created", "expires_at", "status", "actions"]

    def render_groups(self, record):
        return ", ".join(team.name for team in record.groups.all()) or "—"

    def render_status(self, record):
        return invitations.status(record)
