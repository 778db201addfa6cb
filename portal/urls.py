from django.urls import include, path

from portal import health
from portal.urlhelpers import crud_urls
from portal.views import notifications, pages, sso, users

portal_patterns = [
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
    path("admin/groups/<int:pk>/members/add/", pages.team_member_add, name="team_member_add"),
    path(
        "admin/groups/<int:pk>/members/<int:user_pk>/remove/",
        pages.team_member_remove,
        name="team_member_remove",
    ),
    path("admin/users/", users.user_list, name="user_list"),
    path("admin/users/add/", users.user_add, name="user_add"),
    path("admin/users/<int:pk>/", users.user_detail, name="user_detail"),
    path("admin/users/<int:pk>/deactivate/", users.user_deactivate, name="user_deactivate"),
    path("admin/users/<int:pk>/reactivate/", users.user_reactivate, name="user_reactivate"),
    path("admin/invitations/", users.invitation_list, name="invitation_list"),
    path("admin/invitations/add/", users.invitation_add, name="invitation_add"),
    path("admin/invitations/<int:pk>/resend/", users.invitation_resend, name="invitation_resend"),
    path("admin/invitations/<int:pk>/revoke/", users.invitation_revoke, name="invitation_revoke"),
    path("admin/sso/", users.sso_settings, name="sso_settings"),
    path("admin/sso/mappings/add/", users.sso_mapping_add, name="sso_mapping_add"),
    path(
        "admin/sso/mappings/<int:pk>/delete/", users.sso_mapping_delete, name="sso_mapping_delete"
    ),
    path("invitation/<int:pk>/<str:token>/", users.invitation_accept, name="invitation_accept"),
    path("sso/no-access/", users.sso_no_access, name="sso_no_access"),
    # A user's own notifications (issue 16).
    path("notifications/", notifications.notification_list, name="notification_list"),
    path("notifications/badge/", notifications.notification_badge, name="notification_badge"),
    path("notifications/<int:pk>/read/", notifications.notification_read, name="notification_read"),
    path(
        "notifications/read-all/",
        notifications.notification_read_all,
        name="notification_read_all",
    ),
    path(
        "notifications/choices/",
        notifications.notification_settings,
        name="notification_settings",
    ),
    # Before allauth's own page of the same path, which would let users add addresses.
    path("accounts/email/", users.email_addresses, name="email_addresses"),
]

urlpatterns = [
    path("", pages.home, name="home"),
    # Operations (portal.middleware.OperationsMiddleware answers these three first).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", include("pools.metrics")),
    path("", include((portal_patterns, "portal"))),
    path("admin/", include("workspaces.overview_urls")),
    path("admin/pools/", include("pools.urls")),
    path("admin/partitioning/", include("pools.partitioning_urls")),
    path("admin/", include("profiles.urls")),
    path("workspaces/", include("workspaces.urls")),
    # The REST API, its schema and docs, and the API tokens page (issue 15).
    path("api/", include("api.urls")),
    # Usage, cost and prices (issue 16).
    path("usage/", include("usage.urls")),
    # Before allauth's views of the same paths, which they run: a failed Okta login is a
    # page with its reason, never a 500 (portal.views.sso).
    path("accounts/oidc/<str:provider_id>/login/", sso.login, name="sso_login"),
    path("accounts/oidc/<str:provider_id>/login/callback/", sso.callback, name="sso_callback"),
    path("accounts/", include("allauth.urls")),
]

# The error pages, in the portal's layout (portal.views.errors).
handler403 = "portal.views.errors.permission_denied"
handler404 = "portal.views.errors.page_not_found"
handler500 = "portal.views.errors.server_error"
