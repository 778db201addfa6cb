"""The administrator's overview: the first page an admin sees, across every area."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from portal.roles import Area
from portal.views.generic import require
from profiles.models import ComputeProfile, Infrastructure, ServicesProfile


@login_required
def overview(request):
    """The administrator's getting-started checklist, in the order the product brief gives."""
    require(request.user, Area.PROFILES, "view")
    profiles = ComputeProfile.objects.all()
    steps = [
        (
            "Create infrastructure configuration",
            Infrastructure.objects.count(),
            "profiles:infrastructure_list",
        ),
        ("Create compute profiles", profiles.count(), "profiles:computeprofile_list"),
        (
            "Publish a compute profile",
            profiles.filter(published=True).count(),
            "profiles:computeprofile_list",
        ),
        (
            "Create services profiles",
            ServicesProfile.objects.count(),
            "profiles:servicesprofile_list",
        ),
    ]
    return render(request, "portal/overview.html", {"steps": steps})
