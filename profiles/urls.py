from django.urls import path

from portal.urlhelpers import crud_urls
from profiles import views

app_name = "profiles"

urlpatterns = [
    *crud_urls(
        "infrastructure",
        "infrastructure",
        views.InfrastructureList,
        views.InfrastructureDetail,
        views.InfrastructureEdit,
        views.InfrastructureDelete,
    ),
    *crud_urls(
        "computeprofile",
        "compute-profiles",
        views.ComputeProfileList,
        views.ComputeProfileDetail,
        views.ComputeProfileEdit,
        views.ComputeProfileDelete,
    ),
    *crud_urls(
        "servicesprofile",
        "services-profiles",
        views.ServicesProfileList,
        views.ServicesProfileDetail,
        views.ServicesProfileEdit,
        views.ServicesProfileDelete,
    ),
    path(
        "services-profiles/<int:pk>/clone/",
        views.servicesprofile_clone,
        name="servicesprofile_clone",
    ),
    path("support-matrix/", views.support_matrix, name="support_matrix"),
]
