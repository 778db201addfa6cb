"""API fixtures: a user and a read-write token per role, and a client that sends one."""

import pytest
from django.test import Client

from api import tokens
from api.models import Scope
from portal.roles import Role

ROLES = [Role.ORG_ADMIN, Role.OPERATOR, Role.MEMBER, Role.VIEWER]


class ApiClient:
    """A test client that sends JSON and the bearer token."""

    def __init__(self, token: str = ""):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _call(self, method: str, path: str, data=None, **headers):
        kwargs = {"headers": self.headers | headers}
        if data is not None:
            kwargs |= {"data": data, "content_type": "application/json"}
        return getattr(self.client, method)(path, **kwargs)

    def get(self, path, data=None, **headers):
        return self.client.get(path, data, headers=self.headers | headers)

    def post(self, path, data=None, **headers):
        return self._call("post", path, data if data is not None else {}, **headers)

    def patch(self, path, data=None, **headers):
        return self._call("patch", path, data if data is not None else {}, **headers)

    def delete(self, path, data=None, **headers):
        return self._call("delete", path, data, **headers)


@pytest.fixture
def token_for():
    """`token_for(user, scope=..., days=...)` → the plaintext of a new token."""

    def make(user, scope: str = Scope.READ_WRITE, days: int = 30) -> str:
        return tokens.create_token(user, f"{user.username} token", scope, days)[1]

    return make


@pytest.fixture
def api_for(token_for):
    """`api_for(user, scope=...)` → an `ApiClient` with a new token of that user."""

    def make(user, scope: str = Scope.READ_WRITE) -> ApiClient:
        return ApiClient(token_for(user, scope))

    return make


from tests.workspace_fixtures import workspace_factory  # noqa: E402, F401  (shared fixture)
