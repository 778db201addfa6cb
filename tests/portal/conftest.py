"""Fixtures of the SSO tests: the real OpenID Connect provider, reset around each test."""

import pytest
from django.core.cache import cache

from portal.roles import Role
from tests.oidc.provider import OidcProvider, oidc_provider  # noqa: F401

from .sso_helpers import configure_sso, map_group


@pytest.fixture
def op(oidc_provider: OidcProvider):  # noqa: F811
    cache.clear()
    oidc_provider.reset()
    yield oidc_provider
    oidc_provider.reset()


@pytest.fixture
def mapped(op):
    configure_sso(op)
    return {
        "gpu": map_group("gpu-users", "GPU users", Role.MEMBER),
        "ml": map_group("ml-team", "ML operators", Role.OPERATOR),
    }
