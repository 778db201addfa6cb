"""The 403, 404 and 500 pages, in the portal's layout (handler403/404/500 in `portal.urls`).

- 403 and 404 render `403.html` / `404.html` with the request, so they have the
  navigation, the logout button and a way on. A signed-in user who may open nothing at all
  (e.g. an SSO user whose groups no longer map) gets the "ask your administrator" text
  instead of a bare refusal.
- 500 renders `500.html` with the request too. But the error may have come from the
  database or a context processor, which the layout needs; then it falls back to
  `500_plain.html` rendered with no request (no context processor, no query), and if even
  that fails, to a fixed page. Each step that fails is logged; the response is always a
  500 page, never an exception.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.shortcuts import render
from django.template import loader

from portal.roles import permissions_for

logger = logging.getLogger(__name__)

FIXED_500 = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Server error</title>"
    "</head><body><h1>Something went wrong on our side</h1><p>The error has been logged. "
    "<a href='/'>Go to the start page</a>, try again in a moment, or "
    "<a href='/accounts/logout/'>log out</a>. If it keeps happening, tell your "
    "administrator.</p></body></html>"
)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    user = request.user
    no_access = user.is_authenticated and not permissions_for(user)
    context = {
        "no_access": no_access,
        "via_sso": no_access and user.socialaccount_set.exists(),
        "reason": _reason(exception),
    }
    return render(request, "403.html", context, status=403)


def _reason(exception: Exception | None) -> str:
    """The refusal's own words when they were written for the user (`require()`)."""
    if isinstance(exception, PermissionDenied) and exception.args:
        message = exception.args[0]
        if isinstance(message, str) and len(message) <= 200:
            return message
    return ""


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    request_id = getattr(request, "id", None)
    try:
        return render(request, "500.html", {"request_id": request_id}, status=500)
    except Exception:
        logger.exception("the 500 page could not be rendered in the layout; plain page instead")
    try:
        context = {"request_id": request_id, "site_name": settings.SITE_NAME}
        return HttpResponseServerError(loader.render_to_string("500_plain.html", context))
    except Exception:
        logger.exception("the plain 500 page could not be rendered; fixed page instead")
    return HttpResponseServerError(FIXED_500)
