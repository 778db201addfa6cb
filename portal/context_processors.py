from django.conf import settings

from portal.roles import Area, has_perm, is_admin_user


def portal(request) -> dict:
    user = request.user
    return {
        "site_name": settings.SITE_NAME,
        "nav_admin": is_admin_user(user),
        "nav_self_service": has_perm(user, Area.SELF_SERVICE, "use"),
        "nav_audit": has_perm(user, Area.AUDIT, "view"),
        "nav_users": has_perm(user, Area.USERS, "view"),
    }
