from django.urls import path

from pools import partitioning_views

app_name = "partitioning"

urlpatterns = [
    path("<int:pk>/apply/", partitioning_views.apply, name="apply"),
    path("<int:pk>/refresh/", partitioning_views.refresh, name="refresh"),
    path("<int:pk>/drain/", partitioning_views.drain, name="drain"),
    path("<int:pk>/nodes/", partitioning_views.nodes, name="nodes"),
]
