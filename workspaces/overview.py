"""The administrator's overview: the fleet at a glance, and the setup checklist until
setup is done. htmx refreshes the dashboard part every few seconds (`workspaces.dashboard`
keeps it to a fixed number of queries)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.roles import Area
from portal.views.generic import require
from workspaces import dashboard


@login_required
@require_GET
def overview(request):
    require(request.user, Area.PROFILES, "view")
    context = {"dashboard": dashboard.build()}
    if request.headers.get("HX-Request"):
        return render(request, "portal/_dashboard.html", context)
    return render(request, "portal/overview.html", context)
