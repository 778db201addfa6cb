"""A workspace's owner keeps it: snooze an idle stop, extend its lifetime (issue 16)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from pools import idle, lifetime
from portal.roles import CHANGE
from workspaces.access import get_workspace_for_user
from workspaces.forms import ExtendLifetimeForm


def _back(request: HttpRequest, workspace) -> HttpResponse:
    """To the page the button was on (the self-service list or the workspace's page)."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(workspace)


@login_required
@require_POST
def snooze(request: HttpRequest, pk: int) -> HttpResponse:
    workspace = get_workspace_for_user(request, pk, CHANGE)
    try:
        idle.snooze(workspace, request.user)
    except idle.SnoozeRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"Workspace “{workspace}” keeps running.")
    return _back(request, workspace)


@login_required
@require_http_methods(["GET", "POST"])
def extend(request: HttpRequest, pk: int) -> HttpResponse:
    workspace = get_workspace_for_user(request, pk, CHANGE)
    data = request.POST if request.method == "POST" else None
    form = ExtendLifetimeForm(data, workspace=workspace)
    if form.is_valid():
        try:
            lifetime.extend(workspace, form.cleaned_data["hours"], request.user)
        except lifetime.ExtensionRefused as refused:
            form.add_error("hours", str(refused))
        else:
            messages.success(request, f"Workspace “{workspace}” expires later now.")
            return redirect(workspace)
    return render(request, "workspaces/extend.html", {"workspace": workspace, "form": form})
