"""Who may call what: the portal's roles (`portal.roles`), plus the token's scope.

A view names its permission area; reads need the area's view permission and writes its
change permission, through the pages' own `require()`. Views whose objects decide access
(workspaces: an owner or a Workspaces administrator) check with the pages' helpers instead.
"""

from django.core.exceptions import PermissionDenied
from rest_framework import permissions

from api.models import ApiToken, Scope
from portal.roles import CHANGE, VIEW
from portal.views.generic import require


def reads(request, view) -> bool:
    """A GET, or a POST that only computes an answer (`@action(..., read_only=True)`)."""
    return request.method in permissions.SAFE_METHODS or getattr(view, "read_only", False)


class TokenScope(permissions.BasePermission):
    """A read-only token may only read."""

    message = "This API token is read-only; create a read-write token to change things."

    def has_permission(self, request, view) -> bool:
        if reads(request, view):
            return True
        return not (isinstance(request.auth, ApiToken) and request.auth.scope == Scope.READ)


class AreaPermission(permissions.BasePermission):
    """The view's `area`: view permission to read, change permission to write."""

    def has_permission(self, request, view) -> bool:
        area = getattr(view, "area", None)
        if area is None:
            return True  # the view checks access itself
        action = VIEW if reads(request, view) else CHANGE
        try:
            require(request.user, area, action)
        except PermissionDenied as refused:
            self.message = str(refused)
            return False
        return True
