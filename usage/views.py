"""Showback pages (per group, profile, user and infrastructure for a month, with charts and
a CSV export) and the prices administrators set.

Who sees what is `UsageInterval.objects.for_user`: admins with a view of all workspaces
(Org admins, Operators, Viewers) see everything, the warm pools included; a group's members
see their groups' usage and their own.
"""

import csv
import re
from datetime import date

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal.roles import USE, VIEW, Area, has_perm
from portal.views.generic import ObjectDeleteView, ObjectDetailView, ObjectEditView, ObjectListView
from usage import charts, public_prices, showback
from usage.filtersets import PriceFilterSet
from usage.forms import MonthForm, PriceForm
from usage.models import Price, UsageInterval
from usage.prices import PriceBook
from usage.tables import PriceTable

TREND_MONTHS = 6
CSV_COLUMNS = [
    ("workspace_hours", "workspace_hours"),
    ("gpu_hours", "gpu_hours"),
    ("mig_slice_hours", "mig_slice_hours"),
    ("gpu_equivalent_hours", "gpu_hours_incl_mig_share"),
    ("storage_gb_hours", "storage_gb_hours"),
]


def _visible_usage(user):
    """The one access helper: 403 for users who may see no usage, else what they may see."""
    if not (has_perm(user, Area.WORKSPACES, VIEW) or has_perm(user, Area.SELF_SERVICE, USE)):
        raise PermissionDenied("You may not see usage.")
    return UsageInterval.objects.for_user(user)


def _month(form: MonthForm) -> tuple[date, str]:
    """The month and breakdown asked for; each one that is not valid falls back on its
    own to its default (the current month, by group), its error shown next to its field."""
    form.is_valid()
    data = form.cleaned_data
    return data.get("month", timezone.localdate().replace(day=1)), data.get("by", "group")


# Where a spreadsheet would start a cell: the field's start and after each separator it
# may split on (',' or ';', the list separator of many locales, or a tab).
_CELL_START = re.compile(r"(^|[,;\t])(?=[\t\r]|\s*[=+\-@])")


def _spreadsheet_text(text: str) -> str:
    """`text` that no spreadsheet runs as a formula: a cell of it starting with = + - @
    (or tab, CR) is prefixed with ', which makes it text."""
    return _CELL_START.sub(r"\1'", text)


def _warm_pools(intervals, start, end, now, book) -> list[dict]:
    """Per profile: the warm pools' idle hours and cost, beside the hours they saved users."""
    idle = intervals.filter(kind=UsageInterval.Kind.WARM_IDLE)
    totals = {t.label: t for t in showback.report(idle, start, end, now, book, "profile")}
    saved = showback.hours_saved(start, min(end, now))
    return [
        {"profile": name, "idle": totals.get(name), "saved_hours": saved.get(name, 0.0)}
        for name in sorted(set(totals) | set(saved))
    ]


@login_required
@require_GET
def showback_page(request):
    intervals = _visible_usage(request.user)
    form = MonthForm(request.GET)
    month, _ = _month(form)
    now = timezone.now()
    book = PriceBook()
    start = showback.month_start(month)
    end = showback.next_month(start)
    periods = showback.months_ending(start, TREND_MONTHS)
    costs, found = showback.months_overview(intervals, periods, now, book)
    sections = []
    for key, (label, _) in showback.DIMENSIONS.items():
        rows = found[key]
        chart = charts.bar_chart(
            f"Cost per {label.lower()}, {start:%B %Y}",
            [(row.label, float(row.cost)) for row in rows[:12]],
            charts.dollars,
        )
        sections.append({"key": key, "label": label, "rows": rows, "chart": chart})
    sees_all = has_perm(request.user, Area.WORKSPACES, VIEW)
    context = {
        "form": form,
        "month": start,
        "sections": sections,
        "trend": charts.bar_chart(
            "Cost per month",
            [(f"{s:%b %Y}", float(c)) for (s, _), c in zip(periods, costs, strict=True)],
            charts.dollars,
        ),
        "warm_pools": _warm_pools(intervals, start, end, now, book) if sees_all else None,
        "sees_all": sees_all,
        "now": now,
    }
    return render(request, "usage/showback.html", context)


@login_required
@require_GET
def export_csv(request):
    """The month's usage per group, profile, user or infrastructure as CSV; 400 for a query
    that is not valid (a file of another month than asked for would pass for that one)."""
    intervals = _visible_usage(request.user)
    form = MonthForm(request.GET)
    if not form.is_valid():
        errors = " ".join(message for messages in form.errors.values() for message in messages)
        return HttpResponseBadRequest(errors, content_type="text/plain; charset=utf-8")
    month, by = _month(form)
    start = showback.month_start(month)
    rows = showback.report(
        intervals, start, showback.next_month(start), timezone.now(), PriceBook(), by
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{start:%Y-%m}-by-{by}.csv"'
    writer = csv.writer(response)
    writer.writerow(["month", by, *(name for _, name in CSV_COLUMNS), "cost_usd", "all_priced"])
    for row in rows:
        hours = [f"{getattr(row, field):.4f}" for field, _ in CSV_COLUMNS]
        label = _spreadsheet_text(row.label)
        writer.writerow([f"{start:%Y-%m}", label, *hours, f"{row.cost:.2f}", row.complete])
    return response


class PriceList(ObjectListView):
    queryset = Price.objects.all()
    table = PriceTable
    filterset = PriceFilterSet
    template_name = "usage/price_list.html"
    empty_message = (
        "No prices set. Showback prices GPUs by their model, cloud instances by their type "
        "(AWS types have their public on-demand price until you set one) and storage per "
        "GB-month."
    )

    def base_context(self, request) -> dict:
        return super().base_context(request) | {
            "public_prices": public_price_rows(),
            "public_source": public_prices.SOURCE,
        }


class PriceDetail(ObjectDetailView):
    queryset = Price.objects.all()
    template_name = "usage/price_detail.html"


class PriceEdit(ObjectEditView):
    queryset = Price.objects.all()
    form_class = PriceForm


class PriceDelete(ObjectDeleteView):
    queryset = Price.objects.all()


def public_price_rows() -> list[tuple[str, str, str]]:
    return [
        (name, region, f"{amount}")
        for (_, name, region), amount in sorted(public_prices.PRICES.items())
    ]
