from django.urls import path

from pools import views
from portal.urlhelpers import crud_urls

app_name = "pools"

urlpatterns = [
    path("", views.pool_list, name="pool_list"),
    path("<int:profile_pk>/", views.pool_detail, name="pool_detail"),
    path("<int:profile_pk>/pause/", views.pool_pause, name="pool_pause"),
    path("<int:profile_pk>/resume/", views.pool_resume, name="pool_resume"),
    path("<int:profile_pk>/sizing/", views.PoolSizingEdit.as_view(), name="pool_sizing"),
    *crud_urls(
        "poolschedule",
        "schedules",
        views.PoolScheduleList,
        views.PoolScheduleDetail,
        views.PoolScheduleEdit,
        views.PoolScheduleDelete,
    ),
]
