from django.urls import path


def crud_urls(model_name: str, prefix: str, list_view, detail, edit, delete) -> list:
    """The five standard URLs of an admin catalog model, named `<model>_<suffix>`."""
    return [
        path(f"{prefix}/", list_view.as_view(), name=f"{model_name}_list"),
        path(f"{prefix}/add/", edit.as_view(), name=f"{model_name}_add"),
        path(f"{prefix}/<int:pk>/", detail.as_view(), name=f"{model_name}_detail"),
        path(f"{prefix}/<int:pk>/edit/", edit.as_view(), name=f"{model_name}_edit"),
        path(f"{prefix}/<int:pk>/delete/", delete.as_view(), name=f"{model_name}_delete"),
    ]
