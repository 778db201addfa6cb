"""A user's own notifications: the list, the header's unread count, marking read, and
which kinds come by email or in the portal (issue 16)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import notifications
from portal.models import Notification
from portal.notification_forms import NotificationChoicesForm
from portal.roles import is_admin_user

PAGE_SIZE = 50


def _own(user):
    return Notification.objects.filter(user=user, in_portal=True)


@login_required
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(_own(request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "unread": notifications.unread_count(request.user)}
    return render(request, "portal/notification_list.html", context)


@login_required
@require_GET
def notification_badge(request: HttpRequest) -> HttpResponse:
    """The header's link text with the unread count (fetched after the page, by htmx, so
    no page pays a query for it)."""
    context = {"unread": notifications.unread_count(request.user)}
    return render(request, "portal/_notification_badge.html", context)


@login_required
@require_POST
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    notification = get_object_or_404(_own(request.user), pk=pk)
    notifications.mark_read(request.user, notification.pk)
    return redirect("portal:notification_list")


@login_required
@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    marked = notifications.mark_read(request.user)
    messages.success(request, f"Marked {marked} notification(s) read.")
    return redirect("portal:notification_list")


@login_required
@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    """The user's own choices: which kinds come by email, which are listed here."""
    kinds = notifications.kinds_for(is_admin_user(request.user))
    current = notifications.stored_preferences(request.user)
    data = request.POST if request.method == "POST" else None
    form = NotificationChoicesForm(data, kinds=kinds, current=current)
    if request.method == "POST" and form.is_valid():
        notifications.save_preferences(request.user, form.choices())
        messages.success(request, "Saved your notification choices.")
        return redirect("portal:notification_settings")
    return render(request, "portal/notification_settings.html", {"form": form})
