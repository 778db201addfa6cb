from django.urls import path

from workspaces import views

app_name = "workspaces"

urlpatterns = [
    path("", views.self_service, name="self_service"),
    path("request/<int:profile_pk>/", views.request_workspace, name="request"),
    path("mine/", views.my_workspaces, name="mine"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/delete/", views.delete, name="delete"),
    path("<int:pk>/secret/", views.reveal_secret, name="reveal_secret"),
    path("all/", views.WorkspaceList.as_view(), name="workspace_list"),
]
