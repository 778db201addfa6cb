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


def id_param(value: str | None) -> int | None:
    """An object id from a query string or form value: ASCII digits that fit a database
    integer, else None. `"²".isdigit()` is true but `int("²")` fails, and 2**63 overflows
    the column, so neither may reach `int()` or a query."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)
