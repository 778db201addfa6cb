from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from portal.roles import Area
from portal.views.generic import require
from profiles.models import ComputeProfile


@login_required
def self_service(request):
    """The data scientist's page: the published compute profiles they may use."""
    require(request.user, Area.SELF_SERVICE, "use")
    profiles = (
        ComputeProfile.objects.filter(published=True)
        .select_related("infrastructure", "default_services_profile")
        .prefetch_related("resource_groups")
    )
    return render(request, "workspaces/self_service.html", {"profiles": profiles})
