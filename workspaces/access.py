"""The one access helper of a workspace, used by every page that shows or changes one."""

from django.shortcuts import get_object_or_404

from pools.models import Workspace
from portal.roles import USE, VIEW, Area, has_perm
from portal.views.generic import require


def _require_workspace_access(user, action: str) -> None:
    """Admins of the Workspaces area, or self-service users (who then see only their own)."""
    if not has_perm(user, Area.WORKSPACES, action):
        require(user, Area.SELF_SERVICE, USE)


def get_workspace_for_user(request, pk: int, action: str = VIEW) -> Workspace:
    """The one access helper: 403 without any access, 404 for a workspace not visible."""
    _require_workspace_access(request.user, action)
    queryset = Workspace.objects.for_user(request.user, action).select_related(
        "profile", "owner", "team", "infrastructure"
    )
    return get_object_or_404(queryset, pk=pk)


def get_own_workspace(request, pk: int) -> Workspace:
    """A workspace of the user's own, for what only its owner may do (open its services
    logged in with their tokens): 403 without any access, 404 for anyone else's."""
    _require_workspace_access(request.user, VIEW)
    queryset = Workspace.objects.for_user(request.user, VIEW).filter(owner=request.user)
    return get_object_or_404(queryset.select_related("profile", "infrastructure"), pk=pk)
