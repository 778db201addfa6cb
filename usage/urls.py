from django.urls import path

from portal.urlhelpers import crud_urls
from usage import views

app_name = "usage"

urlpatterns = [
    path("cost/", views.showback_page, name="showback"),
    path("cost/export.csv", views.export_csv, name="export"),
    *crud_urls(
        "price", "prices", views.PriceList, views.PriceDetail, views.PriceEdit, views.PriceDelete
    ),
]
