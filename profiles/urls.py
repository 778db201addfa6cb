from django.urls import path

from portal.urlhelpers import crud_urls
from profiles import partitioning_views, views

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
    path(
        "infrastructure/<int:pk>/health/",
        views.infrastructure_health,
        name="infrastructure_health",
    ),
    path(
        "infrastructure/<int:pk>/check/",
        views.infrastructure_check,
        name="infrastructure_check",
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
    *crud_urls(
        "partitioningstrategy",
        "partitioning",
        partitioning_views.PartitioningList,
        partitioning_views.PartitioningDetail,
        partitioning_views.PartitioningEdit,
        partitioning_views.PartitioningDelete,
    ),
    path(
        "partitioning/preview/",
        partitioning_views.partitioning_preview,
        name="partitioning_preview",
    ),
    path(
        "partitioning/<int:pk>/preview/",
        partitioning_views.partitioning_preview,
        name="partitioning_preview",
    ),
    path(
        "partitioning/model-fields/",
        partitioning_views.partitioning_model_fields,
        name="partitioning_model_fields",
    ),
    path(
        "partitioning/<int:pk>/model-fields/",
        partitioning_views.partitioning_model_fields,
        name="partitioning_model_fields",
    ),
    path(
        "partitioning/layouts/<str:gpu_model>/",
        partitioning_views.partitioning_layouts,
        name="partitioning_layouts",
    ),
]
