"""Rate limiting per API token (per user for session calls): DRF's throttle, keyed by token.

The counts live in Django's cache: per process unless CACHE_URL names a Redis all share.
"""

from rest_framework.throttling import SimpleRateThrottle

from api.models import ApiToken


class PerTokenThrottle(SimpleRateThrottle):
    scope = "api"

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
