from django.urls import include, path

from portal.urlhelpers import crud_urls
from portal.views import pages

portal_patterns = [
    path("admin/", pages.overview, name="overview"),
    path("admin/audit/", pages.AuditList.as_view(), name="auditentry_list"),
    path("admin/audit/<int:pk>/", pages.AuditDetail.as_view(), name="auditentry_detail"),
    *crud_urls(
        "team",
        "admin/groups",
        pages.TeamList,
        pages.TeamDetail,
        pages.TeamEdit,
        pages.TeamDelete,
    ),
]

urlpatterns = [
    path("", pages.home, name="home"),
    path("", include((portal_patterns, "portal"))),
    path("admin/", include("profiles.urls")),
    path("workspaces/", include("workspaces.urls")),
    path("accounts/", include("allauth.urls")),
]
