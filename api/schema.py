"""The OpenAPI schema: every operation also documents the problem responses it may give."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from api.problems import PROBLEM_JSON, Problem

_ALWAYS = {
    "401": "No credentials, or an unknown, expired or revoked token.",
    "403": "Your role or your token's scope does not allow this.",
    "406": "The Accept header asks for a type the API cannot give.",
    "429": "Too many requests with this token; retry after the time in Retry-After.",
}
_WITH_PATH_ID = {"404": "No such object, or not one you may see."}
_PAGINATED = {"404": "No such page: `page` is past the last one."}
_WITH_INPUT = {"400": "Not valid: `errors` gives the forms' messages field by field."}
_WRITES = {
    "409": "Refused in the current state: `detail` says why (a quota, a workspace's state).",
    "415": "The body is not JSON.",
}
_CONDITIONAL = {
    "412": "If-Match does not match the current ETag: someone else changed it; read it again.",
    "428": "If-Match is missing: send the ETag you read.",
}


class PortalAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        problem = {"content": {PROBLEM_JSON: {"schema": self._problem_ref()}}}
        for code, description in self._problem_codes().items():
            responses.setdefault(code, {"description": description, **problem})
        return responses

    def _problem_ref(self):
        return self.resolve_serializer(Problem, "response").ref

    def _problem_codes(self) -> dict[str, str]:
        codes = dict(_ALWAYS)
        if "{" in self.path:
            codes |= _WITH_PATH_ID
        if self.method != "GET" or self._is_list_view():
            codes |= _WITH_INPUT
        if self.method == "GET" and self._is_list_view():
            codes |= _PAGINATED
        if self.method not in ("GET", "HEAD"):
            codes |= _WRITES
        if self.method == "PATCH" and getattr(self.view, "conditional_updates", False):
            codes |= _CONDITIONAL
        return codes


class TokenScheme(OpenApiAuthenticationExtension):
    """Personal API tokens in the schema, so the docs page can send one."""

    target_class = "api.authentication.TokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (gpp_…) from the API tokens page.",
        }
