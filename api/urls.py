from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from api import pages
from api.v1 import catalog, people, pools, workspaces
from api.v1.generic import NoSuchPath

app_name = "api"

# Django path converters rather than regular expressions, so an id is `<int:pk>`: only
# digits reach the views, and the schema types ids as integers.
router = SimpleRouter(use_regex_path=False)
router.register("infrastructure", catalog.InfrastructureViewSet, basename="infrastructure")
router.register("compute-profiles", catalog.ComputeProfileViewSet, basename="computeprofile")
router.register("services-profiles", catalog.ServicesProfileViewSet, basename="servicesprofile")
router.register("partitioning", catalog.PartitioningViewSet, basename="partitioning")
router.register("pools/schedules", pools.PoolScheduleViewSet, basename="poolschedule")
router.register("pools", pools.PoolViewSet, basename="pool")
router.register("workspaces", workspaces.WorkspaceViewSet, basename="workspace")
router.register("users", people.UserViewSet, basename="user")
router.register("groups", people.GroupViewSet, basename="group")
router.register("invitations", people.InvitationViewSet, basename="invitation")
router.register("audit", people.AuditViewSet, basename="audit")

urlpatterns = [
    path("v1/", include((router.urls, "v1"))),
    re_path(r"^v1/", NoSuchPath.as_view(), name="no_such_path"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", template_name="api/swagger_ui.html"
        ),
        name="docs",
    ),
    # The pages where people create and revoke their tokens.
    path("tokens/", pages.token_list, name="token_list"),
    path("tokens/add/", pages.token_add, name="token_add"),
    path("tokens/<int:pk>/revoke/", pages.token_revoke, name="token_revoke"),
]
