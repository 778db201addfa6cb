from django.urls import path

from workspaces import views

app_name = "workspaces"

urlpatterns = [
    path("", views.self_service, name="self_service"),
]
