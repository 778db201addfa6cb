from django.urls import path

from workspaces import overview

app_name = "overview"

urlpatterns = [path("", overview.overview, name="index")]
