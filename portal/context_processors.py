from django.conf import settings

from portal.navigation import navigation
from portal.roles import Area, has_perm


def portal(request) -> dict:
    user = request.user
    return {
        "site_name": settings.SITE_NAME,
        "nav_audit": has_perm(user, Area.AUDIT, "view"),
        "nav_users": has_perm(user, Area.USERS, "view"),
        **navigation(user, request.path),
    }
