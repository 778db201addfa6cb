"""The Okta login's two steps, around allauth's own views, so a failure is a page, not a 500.

allauth starts the login ("Log in with Okta": discovery, then a redirect to Okta) and
finishes it (the callback: token, ID token, userinfo). What it reports as an error reaches
`PortalSocialAccountAdapter.on_authentication_error`; what it does not catch (an issuer
that does not answer while the login starts, a discovery document without endpoints)
would be a 500. These views:

1. `login`: check the issuer's discovery document first (`sso.discover`); if it fails,
   show why. Then run allauth's view; an error it lets through becomes a failure page.
2. `callback`: run allauth's view; an error it lets through becomes a failure page.

Every failure page says why and offers the way back; every failure is logged and audited
(`sso.record_failure`).
"""

import logging
from http import HTTPStatus

from allauth.socialaccount.providers.openid_connect import views as oidc
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from requests import RequestException

from portal import sso
from portal.models import SsoConfiguration

logger = logging.getLogger(__name__)

# What allauth's openid_connect views let through when Okta's answers are not what they
# expect: a network error or bad JSON while starting, a discovery document without an
# endpoint, a malformed token response.
UNCAUGHT = (RequestException, ValueError, KeyError, TypeError)


def failure_page(request: HttpRequest, failure: sso.LoginFailure, username: str = ""):
    """The failure, logged and audited, as a page with the reason and the way back."""
    sso.record_failure(request, failure, username=username)
    context = {"failure": failure, "sso": SsoConfiguration.load()}
    return render(
        request, "socialaccount/authentication_error.html", context, status=failure.status
    )


def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    config = SsoConfiguration.load()
    if provider_id == sso.PROVIDER_ID and config.is_usable and request.method == "POST":
        try:
            sso.discover(config.issuer)
        except sso.IssuerProblem as problem:
            return failure_page(request, sso.unreachable_issuer(problem))
    try:
        return oidc.login(request, provider_id)
    except UNCAUGHT as error:
        logger.exception("the Okta login could not start")
        return failure_page(request, _uncaught(error))


def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        return oidc.callback(request, provider_id)
    except UNCAUGHT as error:
        logger.exception("the Okta login could not finish")
        return failure_page(request, _uncaught(error))


def _uncaught(error: Exception) -> sso.LoginFailure:
    return sso.LoginFailure(
        "idp_answer",
        "Okta's answer was not understood",
        "The portal could not use Okta's answer to sign you in. Try again in a few "
        "minutes; if it keeps happening, an administrator must check the SSO settings.",
        detail=f"{type(error).__name__}: {str(error)[:400]}",
        status=HTTPStatus.BAD_GATEWAY,
        by_admin=True,
    )
