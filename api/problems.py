"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error the API answers has `type`, `title`, `status` and `detail`; a request that fails
validation adds `errors`: field name → the messages the portal's forms give for it.
"""

from http import HTTPStatus

from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler as drf_exception_handler

PROBLEM_JSON = "application/problem+json"
NON_FIELD = "non_field_errors"


class Conflict(exceptions.APIException):
    """The request is valid but refused in the current state (a quota, a workspace's state)."""

    status_code = HTTPStatus.CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class PreconditionFailed(exceptions.APIException):
    status_code = HTTPStatus.PRECONDITION_FAILED
    default_detail = "The object changed since you read it; read it again (If-Match)."
    default_code = "precondition_failed"


class PreconditionRequired(exceptions.APIException):
    status_code = HTTPStatus.PRECONDITION_REQUIRED
    default_detail = "Send If-Match with the ETag you read, so no one else's change is lost."
    default_code = "precondition_required"


class Problem(serializers.Serializer):
    """What every error response carries (documented in the schema)."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


def flatten(errors, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as {"field": [...], "resource_groups[0].gpu_count": [...]}."""
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            name = NON_FIELD if key in ("__all__", NON_FIELD) and not prefix else str(key)
            flat.update(flatten(value, f"{prefix}.{name}" if prefix else name))
        return flat
    if isinstance(errors, list) and any(isinstance(item, dict | list) for item in errors):
        flat = {}
        for index, item in enumerate(errors):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat
    messages = errors if isinstance(errors, list) else [errors]
    return {prefix or NON_FIELD: [str(message) for message in messages]} if messages else {}


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling and logging
    status = response.status_code
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if isinstance(exc, exceptions.ValidationError):
        body["detail"] = "The request is not valid; the errors say why, field by field."
        body["errors"] = flatten(response.data)
    else:
        data = response.data
        body["detail"] = str(data.get("detail", "")) if isinstance(data, dict) else str(data)
    response.data = body
    response.content_type = PROBLEM_JSON
    return response
