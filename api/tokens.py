"""Personal API tokens: create (shown once), revoke, and check one presented to the API.

A token reads "gpp_<prefix>_<secret>". The prefix finds the row; only the SHA-256 of the
secret is stored, compared in constant time. Creating and revoking are audited.
"""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from api.models import ApiToken
from portal import audit
from portal.models import AuditAction

TOKEN_PREFIX = "gpp"
# last_used is written at most this often per token, so reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRefused(Exception):
    """The presented token cannot be used; the message says why (for the 401)."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def create_token(actor, name: str, scope: str, days: int) -> tuple[ApiToken, str]:
    """Make a token for `actor`; returns it and its plaintext, which is never stored."""
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=actor,
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret),
        scope=scope,
        expires_at=timezone.now() + timedelta(days=days),
    )
    audit.record_created(actor, token)
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


@transaction.atomic
def revoke_token(actor, token: ApiToken) -> bool:
    """Revoke the token at once; False if it was revoked already."""
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked != 1:
        return False
    token.refresh_from_db()
    owner = token.user.get_username()
    audit.record(actor, AuditAction.ACTION, token, message=f"API token of {owner} revoked")
    return True


def check(presented: str) -> ApiToken:
    """The live token `presented` names, its user loaded; `TokenRefused` says why not."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise TokenRefused("Malformed API token.")
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if token is None or not secrets.compare_digest(token.secret_hash, _hash(parts[2])):
        raise TokenRefused("Unknown API token.")
    if token.revoked_at:
        raise TokenRefused("This API token was revoked.")
    if token.expired:
        raise TokenRefused("This API token has expired.")
    if not token.user.is_active:
        raise TokenRefused("The account of this API token is deactivated.")
    _mark_used(token)
    return token


def _mark_used(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used and now - token.last_used < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    token.last_used = now
