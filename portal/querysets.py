from django.db import models

from portal.roles import has_perm


class RestrictedQuerySet(models.QuerySet):
    """A queryset that answers "which of these may this user see or change".

    Each model names the permission area it belongs to; lists, detail pages and forms all go
    through `for_user`, so no page can show what the user may not see.
    """

    area: str = ""

    def for_user(self, user, action: str):
        if has_perm(user, self.area, action):
            return self
        return self.none()


def area_of(model) -> str:
    """The permission area a model's rows belong to ("" when its manager names none)."""
    return getattr(model._default_manager.get_queryset(), "area", "")


def restricted_manager(area_name: str, base=RestrictedQuerySet):
    """A manager for a model in the given permission area."""
    queryset_class = type(f"{area_name.title()}QuerySet", (base,), {"area": area_name})
    return models.Manager.from_queryset(queryset_class)()
