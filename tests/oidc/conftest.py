"""Make the session-scoped ``oidc_provider`` fixture available to the tests in this folder."""

from .provider import oidc_provider  # noqa: F401
