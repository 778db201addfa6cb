"""Okta single sign-on: the allauth app built from SsoConfiguration, and the group mapping.

allauth's `openid_connect` provider does the protocol (discovery from the issuer URL, code
flow, ID token checks). This module answers the questions around it:

1. Which app is configured? `social_app()` builds an unsaved SocialApp (provider_id "okta")
   from the SsoConfiguration row, so no SocialApp row or settings entry is needed.
2. Does the issuer work? `discover()` fetches its discovery document and says what is wrong
   with it (unreachable, not JSON, another issuer, endpoints missing): the settings form
   shows it next to the field, and a login does not start without it.
3. Which portal groups does this login grant? `apply_group_mapping()` sets the user's
   SSO-granted memberships to exactly the groups the `groups` claim maps to. Memberships added
   by hand are never touched. A login without any groups claim is refused while groups are
   mapped (`missing_groups_claim`), so a misconfigured Okta never strips memberships.
4. Why did a login fail? `describe_failure()` turns allauth's error into a `LoginFailure`
   (a reason for the person, a detail for the administrators); `record_failure()` logs and
   audits it.
"""

import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import requests
from allauth.socialaccount.adapter import get_adapter
from django.core.cache import cache
from django.db import transaction

from portal import audit
from portal import users as user_actions
from portal.middleware import client_ip
from portal.models import AuditAction, SsoConfiguration, SsoGroupMapping, SsoMembership, Team
from portal.roles import CHANGE, Area, has_perm

logger = logging.getLogger(__name__)

PROVIDER = "openid_connect"
PROVIDER_ID = "okta"


def social_app(config: SsoConfiguration | None = None):
    """The allauth SocialApp for the SSO configuration, or None when SSO is off."""
    from allauth.socialaccount.models import SocialApp

    config = config or SsoConfiguration.load()
    if not config.is_usable:
        return None
    return SocialApp(
        provider=PROVIDER,
        provider_id=PROVIDER_ID,
        name=config.display_name or "Okta",
        client_id=config.client_id,
        secret=config.client_secret,
        settings={"server_url": config.issuer.rstrip("/"), "scope": config.scopes.split()},
    )


# -- the issuer's discovery document ---------------------------------------------------------

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_MAX_BYTES = 256 * 1024
REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class IssuerProblem(Exception):
    """What is wrong with an issuer URL, in words for the administrator."""


def discover(issuer: str) -> dict:
    """The issuer's discovery document, checked; raises IssuerProblem saying what is wrong.

    1. GET <issuer>/.well-known/openid-configuration (allauth's HTTP session and timeout;
       redirects are not followed: the issuer URL must be the issuer itself).
    2. It must answer 200 with a JSON object of at most DISCOVERY_MAX_BYTES.
    3. Its `issuer` must be the configured one (OpenID Connect Discovery 1.0, section 4.3),
       and it must name the endpoints a login needs.
    """
    issuer = issuer.rstrip("/")
    url = issuer + DISCOVERY_PATH
    host = urlsplit(url).netloc
    try:
        with get_adapter().get_requests_session() as session:
            response = session.get(
                url, allow_redirects=False, stream=True, headers={"Accept": "application/json"}
            )
            with response:
                body = response.raw.read(DISCOVERY_MAX_BYTES + 1, decode_content=True)
    except requests.Timeout:
        raise IssuerProblem(f"{host} did not answer in time.") from None
    except requests.ConnectionError as error:
        raise IssuerProblem(f"Cannot reach {host}: {_connection_reason(error)}.") from None
    except requests.RequestException as error:
        raise IssuerProblem(f"Cannot fetch {url}: {type(error).__name__}.") from None
    except ValueError:  # urllib3's LocationParseError, an IDNA error: not a usable address
        raise IssuerProblem(f"{url[:200]} is not an address the portal can fetch.") from None
    if response.is_redirect:
        raise IssuerProblem(
            f"{url} redirects elsewhere; enter the issuer URL itself "
            "(for Okta: https://<org>.okta.com/oauth2/default)."
        )
    if response.status_code != HTTPStatus.OK:
        raise IssuerProblem(
            f"{url} answered HTTP {response.status_code}: is this the issuer URL "
            "(for Okta: https://<org>.okta.com/oauth2/default)?"
        )
    if len(body) > DISCOVERY_MAX_BYTES:
        raise IssuerProblem(f"{url} answered more than {DISCOVERY_MAX_BYTES // 1024} KiB.")
    try:
        document = json.loads(body)
    except ValueError:
        kind = response.headers.get("Content-Type", "unknown type").split(";")[0][:60]
        raise IssuerProblem(f"{url} did not answer JSON (it sent {kind}).") from None
    if not isinstance(document, dict):
        raise IssuerProblem(f"{url} did not answer a JSON object.")
    named = document.get("issuer")
    if not isinstance(named, str) or named.rstrip("/") != issuer:
        shown = named[:200] if isinstance(named, str) else "no issuer"
        raise IssuerProblem(
            f"The discovery document names the issuer “{shown}”, not “{issuer}”. "
            "Enter exactly the issuer it names."
        )
    missing = [name for name in REQUIRED_ENDPOINTS if not isinstance(document.get(name), str)]
    if missing:
        raise IssuerProblem(f"The discovery document lacks {', '.join(missing)}.")
    return document


def _connection_reason(error: requests.ConnectionError) -> str:
    """A short reason for a failed connection (the name does not resolve, refused, ...)."""
    text = str(error)
    for needle, reason in (
        ("Name or service not known", "the name does not resolve"),
        ("nodename nor servname", "the name does not resolve"),
        ("Temporary failure in name resolution", "the name does not resolve"),
        ("getaddrinfo failed", "the name does not resolve"),
        ("Connection refused", "the connection was refused"),
        ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
        ("timed out", "the connection timed out"),
    ):
        if needle in text:
            return reason
    return "the connection failed"


# -- the groups claim ---------------------------------------------------------------------


def groups_claim(extra_data: dict) -> list[str] | None:
    """The `groups` claim: from userinfo when fetched, else from the ID token; None when
    neither carries one (not the same as an empty list: "in no group")."""
    for source in ("userinfo", "id_token"):
        groups = (extra_data.get(source) or {}).get("groups")
        if groups is not None:
            if isinstance(groups, str):
                return [groups]
            if isinstance(groups, list):
                return [str(group) for group in groups]
    return None


def claimed_groups(extra_data: dict) -> list[str]:
    """The groups the login claims ([] without a groups claim)."""
    return groups_claim(extra_data) or []


def missing_groups_claim(extra_data: dict) -> bool:
    """Whether the login must be refused for want of a groups claim: groups are mapped, so
    applying "no groups" would silently take every SSO-granted membership away."""
    return groups_claim(extra_data) is None and SsoGroupMapping.objects.exists()


def mapped_teams(groups: list[str]) -> set[Team]:
    wanted = set(groups)
    return {m.team for m in SsoGroupMapping.objects.select_related("team") if m.sso_group in wanted}


@transaction.atomic
def apply_group_mapping(user, groups: list[str]) -> tuple[list[str], list[str]]:
    """Make the user's SSO-granted memberships exactly the mapped groups.

    1. Groups the claim maps to that the user is not in: join, remembered as SSO-granted.
    2. Groups the claim maps to that the user joined by hand: left as they are (manual).
    3. SSO-granted groups the claim no longer maps to: leave, unless that would take away
       the portal's last Org admin (then the membership stays, and the audit entry says so).
    Returns (joined, left) group names; both are audit-logged on the user.
    """
    target = mapped_teams(groups)
    granted = {m.team: m for m in SsoMembership.objects.filter(user=user).select_related("team")}
    current = set(user.teams.all())
    joined, left, kept = [], [], []
    for team in sorted(target - current, key=str):
        team.members.add(user)
        SsoMembership.objects.get_or_create(user=user, team=team)
        joined.append(team.name)
    for team, membership in granted.items():
        if team not in target:
            try:
                with user_actions.keeping_an_org_admin():
                    membership.delete()
                    team.members.remove(user)
            except user_actions.LastOrgAdmin:
                kept.append(team.name)
            else:
                left.append(team.name)
    if joined or left or kept:
        user._portal_permissions = None
        note = f"; kept {kept}: the portal's last Org admin" if kept else ""
        audit.record(
            None,
            AuditAction.ACTION,
            user,
            before={"groups": sorted(t.name for t in current)},
            after={"groups": sorted(user.teams.values_list("name", flat=True))},
            message=f"SSO login applied group mapping: joined {joined or 'none'}, "
            f"left {left or 'none'}{note}",
        )
    return joined, left


def is_break_glass(user, config: SsoConfiguration | None = None) -> bool:
    """Named on the break-glass list and an active Org admin (a demoted admin is not)."""
    config = config or SsoConfiguration.load()
    return user.get_username().lower() in config.break_glass() and has_perm(
        user, Area.USERS, CHANGE
    )


def record_link(sender, instance, created: bool, **kwargs) -> None:
    """Audit every Okta account linked to a local account (`post_save` of SocialAccount):
    a first SSO login, an Okta login matched by a verified address, or a user connecting
    their own Okta account. The entry is on the local user, whose account it opens."""
    if not created:
        return
    audit.record(
        instance.user,
        AuditAction.ACTION,
        instance.user,
        after={"sso_provider": instance.provider, "sso_uid": instance.uid},
        message=f"SSO account {instance.uid} ({instance.provider}) linked to this account",
    )


def record_unlink(sender, instance, **kwargs) -> None:
    """Audit an Okta account unlinked from a local account (`post_delete`)."""
    audit.record(
        None,
        AuditAction.ACTION,
        instance.user,
        before={"sso_provider": instance.provider, "sso_uid": instance.uid},
        message=f"SSO account {instance.uid} ({instance.provider}) unlinked from this account",
    )


# -- why a login failed -------------------------------------------------------------------

FAILURE_AUDIT_SECONDS = 60


@dataclass(frozen=True)
class LoginFailure:
    """Why an SSO login failed: `reason` for the person logging in, `detail` for the log
    and the audit trail. `by_admin`: only an administrator can fix it (the settings)."""

    code: str
    title: str
    reason: str
    detail: str = ""
    status: int = HTTPStatus.FORBIDDEN
    by_admin: bool = False


def unreachable_issuer(problem: IssuerProblem) -> LoginFailure:
    return LoginFailure(
        "issuer",
        "Okta cannot be reached",
        f"The portal could not start your sign-in with Okta: {problem}",
        detail=str(problem),
        status=HTTPStatus.BAD_GATEWAY,
        by_admin=True,
    )


def no_groups_claim(username: str = "") -> LoginFailure:
    who = f" for {username}" if username else ""
    return LoginFailure(
        "no_groups_claim",
        "Okta sent no groups",
        "Okta signed you in but sent no groups claim, so the portal cannot tell which of "
        "its groups you belong to. It refused the login rather than take your access away. "
        "An administrator must make Okta send the groups claim (the “groups” scope, or a "
        "groups claim on the authorization server), or add you to a group Okta passes on.",
        detail=f"no groups claim in the ID token or userinfo{who}",
        by_admin=True,
    )


def describe_failure(
    error: str | None, exception: BaseException | None, params, state_found: bool
) -> LoginFailure:
    """The failure allauth reports at the callback (`on_authentication_error`).

    `error` is allauth's code ("cancelled", "unknown", ...), `exception` what it caught
    (OAuth2Error, a requests error, ...), `params` the callback's query (Okta's `error`
    and `error_description`, read only when the state matched: else anyone could write
    them), `state_found` whether the callback's state matched a sign-in in progress.
    """
    if not state_found:
        params = {}
    idp_error = str(params.get("error", ""))[:100]
    idp_description = str(params.get("error_description", ""))[:300]
    said = f"{idp_error}: {idp_description}" if idp_description else idp_error
    if exception is None and not state_found:
        return LoginFailure(
            "state",
            "This sign-in expired",
            "This sign-in was not started in this browser, or it took too long (the state "
            "sent back by Okta matches no sign-in in progress). Start again from the login "
            "page.",
            detail="state mismatch: no sign-in in progress with this state",
            status=HTTPStatus.BAD_REQUEST,
        )
    if idp_error == "access_denied" or error == "cancelled":
        return LoginFailure(
            "denied",
            "Okta did not sign you in",
            "Okta did not sign you in: you cancelled, or Okta does not let you use this "
            f"application{f' ({idp_description})' if idp_description else ''}. Ask your "
            "administrator to assign the application to you if you need it.",
            detail=f"Okta answered {said or 'access_denied'}",
        )
    if idp_error:
        return LoginFailure(
            "refused",
            "Okta refused the sign-in",
            f"Okta refused the sign-in ({said}). An administrator must check the SSO "
            "settings, such as the scopes.",
            detail=f"Okta answered {said}",
            status=HTTPStatus.BAD_GATEWAY,
            by_admin=True,
        )
    text = str(exception)[:500]
    if isinstance(exception, requests.ConnectionError | requests.Timeout):
        return LoginFailure(
            "unreachable",
            "Okta cannot be reached",
            "The portal could not reach Okta to finish your sign-in. Try again in a few "
            "minutes; if it keeps happening, tell your administrator.",
            detail=f"{type(exception).__name__}: {text}",
            status=HTTPStatus.BAD_GATEWAY,
        )
    if "invalid_client" in text:
        return LoginFailure(
            "client_rejected",
            "Okta refused the portal",
            "Okta refused the portal's client ID or client secret, so nobody can sign in "
            "with Okta until an administrator corrects them in the SSO settings.",
            detail=text,
            status=HTTPStatus.BAD_GATEWAY,
            by_admin=True,
        )
    if "invalid_grant" in text:
        return LoginFailure(
            "code_rejected",
            "This sign-in expired",
            "Okta did not accept the sign-in code: it expired or was used already. Start "
            "again from the login page.",
            detail=text,
            status=HTTPStatus.BAD_REQUEST,
        )
    if "id_token" in text or "kid" in text:
        return LoginFailure(
            "token_invalid",
            "Okta's answer could not be verified",
            "The portal could not verify the identity Okta sent (the ID token). Tell your "
            "administrator: the issuer or client ID in the SSO settings may not match Okta.",
            detail=text,
            status=HTTPStatus.BAD_GATEWAY,
            by_admin=True,
        )
    return LoginFailure(
        "failed",
        "The sign-in with Okta failed",
        "The sign-in with Okta failed. Start again from the login page; if it keeps "
        "happening, tell your administrator.",
        detail=f"{type(exception).__name__}: {text}" if exception else f"allauth: {error}",
        status=HTTPStatus.BAD_GATEWAY,
    )


def record_failure(request, failure: LoginFailure, username: str = "") -> None:
    """Log every failed SSO login; audit it (on the SSO configuration) once a minute per
    failure kind and client address, so a flood of forged callbacks cannot flood the trail."""
    address = client_ip(request) if request is not None else ""
    logger.warning(
        "SSO login failed (%s) from %s%s: %s",
        failure.code,
        address or "unknown address",
        f" as {username}" if username else "",
        failure.detail or failure.title,
    )
    if not cache.add(f"sso-failure:{failure.code}:{address}", 1, FAILURE_AUDIT_SECONDS):
        return
    audit.record(
        None,
        AuditAction.ACTION,
        SsoConfiguration.load(),
        after={
            "failure": failure.code,
            "detail": failure.detail[:500],
            "client": address,
            "user": username,
        },
        message=f"SSO login failed: {failure.title}",
    )
