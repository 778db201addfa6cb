from django.urls import path

from services import views as service_views
from workspaces import lifetime_views, views

app_name = "workspaces"

urlpatterns = [
    path("", views.self_service, name="self_service"),
    path("request/<int:profile_pk>/", views.request_workspace, name="request"),
    path("mine/", views.my_workspaces, name="mine"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/delete/", views.delete, name="delete"),
    path("<int:pk>/stop/", views.stop, name="stop"),
    path("<int:pk>/start/", views.start, name="start"),
    path("<int:pk>/secret/", views.reveal_secret, name="reveal_secret"),
    # Open a web service logged in through the portal (issue 18)
    path("<int:pk>/open/<slug:service>/", service_views.open_service, name="open"),
    # Keeping a workspace: snooze its idle stop, extend its lifetime (issue 16)
    path("<int:pk>/snooze/", lifetime_views.snooze, name="snooze"),
    path("<int:pk>/extend/", lifetime_views.extend, name="extend"),
    path("all/", views.WorkspaceList.as_view(), name="workspace_list"),
    # Services deployed into a workspace (issue 7)
    path("<int:pk>/services/", service_views.panel, name="services"),
    path("<int:pk>/services/deploy/", service_views.deploy, name="services_deploy"),
    path(
        "<int:pk>/services/<int:deployment_pk>/redeploy/",
        service_views.redeploy,
        name="services_redeploy",
    ),
    path(
        "<int:pk>/services/<int:deployment_pk>/remove/",
        service_views.remove,
        name="services_remove",
    ),
    path(
        "<int:pk>/services/component/<int:component_pk>/secret/",
        service_views.reveal_secret,
        name="services_secret",
    ),
]
